//! `agreement`: subject–verb number agreement (Linzen, Dupoux & Goldberg 2016) on a synthetic
//! grammar — "the writer of the books ___" takes *is* (the subject), not *are* (the nearest
//! noun). Tanh RNN, LSTM and GRU at equal hidden size and at equal parameter count, trained on
//! number prediction and as language models, on two grammars (the subject first, or after a
//! preamble of random-number nouns); error by number of attractors, by subject–verb distance
//! and by preamble size against the sequential-recency, first-noun and majority baselines, and
//! the gradient norm that reaches the subject during training.
//!
//! Output (schemas in experiments/README.md): `curves.csv`, `errors.csv`, `baselines.csv`,
//! `models.csv`, `runs.csv`, `agreement.json` (provenance). Exit status: 0 done, 1 I/O
//! failure, 2 bad arguments.

use std::fmt::Write as _;
use std::process::ExitCode;

use bptt::experiment::agreement::{
    self, ALL_GRAMMARS, ALL_TASKS, Grammar, GrammarKind, Hyper, Outcome, RunSpec, Sizing, Task,
    min_distance, parameter_count, preamble_tokens,
};
use bptt::experiment::driver::{
    self, CommonArgs, Context, Experiment, Outputs, Rows, ShardArgs, Summary, Table,
};
use bptt::nn::cells::CellKind;
use bptt::train::optim::Optimizer;
use bptt::train::trainer::Dtype;
use clap::Parser;

/// One row of `curves.csv`: a logged update of one run.
#[derive(serde::Serialize, Default)]
struct CurveRow<'a> {
    grammar: &'a str,
    task: &'a str,
    model: &'a str,
    seed: u64,
    update: u64,
    loss: f64,
    grad_norm: f64,
    clipped: u8,
    subject_grad_norm: f64,
    probe_loss: f64,
    probe_error: f64,
}

/// One row of `errors.csv`: one run's errors on one (attractors, distance) test stratum.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct ErrorRow {
    grammar: String,
    task: String,
    model: String,
    cell: String,
    sizing: String,
    hidden: usize,
    seed: u64,
    attractors: usize,
    distance: usize,
    /// Preamble nouns before the subject (0 in the fixed grammar).
    preamble: usize,
    /// Index of the subject in the sentence.
    subject_position: usize,
    sentences: usize,
    errors: usize,
    error_rate: f64,
}

/// One row of `baselines.csv`: the baselines on one test stratum of one seed (the test sets
/// every model of that seed is scored on).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct BaselineRow {
    grammar: String,
    seed: u64,
    attractors: usize,
    distance: usize,
    preamble: usize,
    subject_position: usize,
    sentences: usize,
    recency_errors: usize,
    recency_error: f64,
    first_noun_errors: usize,
    first_noun_error: f64,
    majority_errors: usize,
    majority_error: f64,
}

/// One row of `models.csv`: a model of a task and its parameter count.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct ModelRow {
    task: String,
    model: String,
    cell: String,
    sizing: String,
    hidden: usize,
    params: usize,
    cell_params: usize,
    readout_params: usize,
    /// The LSTM's count at --hidden: what the `params` sizing matches.
    lstm_params: usize,
}

/// One row of `runs.csv`.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct RunRow {
    grammar: String,
    task: String,
    model: String,
    seed: u64,
    updates: u64,
    diverged: u8,
    final_loss: f64,
    final_subject_grad_norm: f64,
    /// Over the whole test grid.
    test_sentences: usize,
    test_errors: usize,
    test_error: f64,
}

#[derive(Parser, Debug, serde::Serialize)]
#[command(
    name = "agreement",
    version,
    about = "Subject–verb number agreement (Linzen et al. 2016): tanh RNN vs LSTM vs GRU, error by number of attractors.",
    long_about = "Subject–verb number agreement (Linzen, Dupoux & Goldberg 2016): tanh RNN vs LSTM vs GRU, error by number of attractors.\n\n\
        \"The writer of the books ___\" takes \"is\" (syntactic recency: the subject), not \"are\" (sequential \
        recency: the nearest noun). A synthetic grammar makes such sentences: a subject, 0 or more \
        intervening nouns inside prepositional phrases (\"of the books\") and object relative clauses \
        (\"that the critics praise\", whose verb agrees with its own noun) — attractors when their number \
        is the subject's opposite — fillers (adjectives, adverbs) up to a chosen subject–verb distance, the \
        verb (is/are, has/have, likes/like) and an object.\n\n\
        Two grammars (--grammar, default both): fixed — the subject is always the first noun, at position 1, \
        so \"remember the first noun's number\" solves the task — and preamble — a sentence-initial preamble of \
        0..=--max-preamble nouns of random number before the subject, prepositional phrases or an adverbial \
        clause (\"near the tables , the writer of the books is ...\", \"because the critics praise the author , \
        the writers ...\"), so that neither the first noun nor the nearest noun gives the verb's number, only \
        the syntax does.\n\n\
        Two tasks: number (read the prefix before the verb, predict singular/plural at the last step) \
        and lm (a next-token language model on whole sentences, scored by whether P(verb in the subject's \
        number) > P(verb in the other number) at the verb position). Models: every --cells cell at \
        --hidden units, and every cell but the LSTM at the hidden size whose parameter count (cell + \
        readout) is closest to the LSTM's (--sizing). Training: fresh batches from the training \
        distribution (distance uniform in 0..=--train-max-distance per batch, P(a attractors) ∝ 2^−a), \
        Adam with global-norm clipping; every --log-every updates a fixed probe set measures the gradient \
        norm that reaches the subject, ‖∂ℓ/∂h‖ at the state after the subject. Then every run is scored \
        on fresh test sets stratified by attractors (0..=--max-attractors) and distance (--test-distances), \
        shared by all models of a seed and grammar, beside the recency baseline (predict the nearest noun's \
        number), the first-noun baseline (predict the first noun's number) and the majority baseline, \
        computed on the same sentences.\n\n\
        One chunk per (seed, task, model) run, in parallel. --quick: toy sizes (CI); \
        every size flag not given takes its --quick value (in brackets).\n\n\
        Example: agreement --tasks number --cells rnn-tanh,lstm --seeds 5 --threads 2"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    shard: ShardArgs,
    /// Toy sizes for CI
    #[arg(long)]
    quick: bool,
    /// Grammar: fixed (the subject is the first noun, at position 1), preamble (0..=--max-preamble nouns of random number before the subject) or both
    #[arg(long, default_value = "both", value_parser = ["fixed", "preamble", "both"])]
    grammar: String,
    /// Most nouns of the preamble grammar's sentence-initial preamble (uniform in 0..=this)
    #[arg(long, default_value_t = 2)]
    max_preamble: usize,
    /// P(a preamble of ≥ 2 nouns opens with an adverbial clause "because the N V the N")
    #[arg(long, default_value_t = 0.5)]
    p_clause: f64,
    /// Tasks, comma-separated: number, lm
    #[arg(long, value_delimiter = ',', default_value = "number,lm")]
    tasks: Vec<String>,
    /// Cells, comma-separated (any registered cell)
    #[arg(long, value_delimiter = ',', default_value = "rnn-tanh,lstm,gru")]
    cells: Vec<String>,
    /// Sizings, comma-separated: hidden (--hidden units each), params (the LSTM's parameter count)
    #[arg(long, value_delimiter = ',', default_value = "hidden,params")]
    sizing: Vec<String>,
    /// Hidden units (of every cell with sizing hidden, and of the LSTM whose count sizing params matches) [default: 50; quick: 12]
    #[arg(long)]
    hidden: Option<usize>,
    /// Seeds (replicates) per model [default: 3; quick: 1]
    #[arg(long)]
    seeds: Option<u64>,
    /// Updates per run [default: 1500; quick: 60]
    #[arg(long)]
    updates: Option<u64>,
    /// Sentences per batch [default: 32; quick: 16]
    #[arg(long)]
    batch: Option<usize>,
    /// Optimizer: adam or sgd
    #[arg(long, default_value = "adam", value_parser = ["adam", "sgd"])]
    optimizer: String,
    /// Learning rate
    #[arg(long, default_value_t = 0.003)]
    lr: f64,
    /// Global-norm clipping threshold (0: none)
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Largest subject–verb distance of the training batches [default: 20; quick: 12]
    #[arg(long)]
    train_max_distance: Option<usize>,
    /// Most attractors, in training and in the test grid (0..=this)
    #[arg(long, default_value_t = 4)]
    max_attractors: usize,
    /// Most non-attractor intervening nouns per sentence
    #[arg(long, default_value_t = 2)]
    max_nonattractors: usize,
    /// P(the subject is singular)
    #[arg(long, default_value_t = 0.5)]
    p_singular: f64,
    /// P(a modifier is a relative clause, where the distance leaves room)
    #[arg(long, default_value_t = 1.0 / 3.0)]
    p_relative: f64,
    /// Subject–verb distances of the test grid, comma-separated [default: 0,4,8,12,16,20; quick: 0,6,12]
    #[arg(long, value_delimiter = ',')]
    test_distances: Vec<usize>,
    /// Test sentences per (attractors, distance) stratum [default: 500; quick: 40]
    #[arg(long)]
    test_sentences: Option<usize>,
    /// Subject–verb distance of the gradient probe [default: 12; quick: 6]
    #[arg(long)]
    probe_distance: Option<usize>,
    /// Sentences of the gradient probe [default: 100; quick: 16]
    #[arg(long)]
    probe_sentences: Option<usize>,
    /// Write a learning-curve row (with the probe) every N updates [default: 50; quick: 20]
    #[arg(long)]
    log_every: Option<u64>,
    /// Scalar of training and scoring: f32 or f64
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: Dtype,
}

fn parse_dtype(s: &str) -> Result<Dtype, String> {
    s.parse().map_err(|e: bptt::error::BpttError| e.to_string())
}

/// The resolved work: what a resumed run must match.
#[derive(Clone, Debug, serde::Serialize)]
struct Plan {
    grammars: Vec<GrammarKind>,
    tasks: Vec<Task>,
    cells: Vec<CellKind>,
    sizing: Vec<Sizing>,
    hidden: usize,
    seeds: u64,
    hyper: Hyper,
    /// The test distances that hold every attractor count (the summary pools over them).
    common_distances: Vec<usize>,
    seed: u64,
}

/// Parse a comma-separated list of distinct items.
fn distinct<X: PartialEq>(
    flag: &str,
    items: &[String],
    parse: impl Fn(&str) -> Result<X, String>,
) -> Result<Vec<X>, String> {
    let mut v = Vec::new();
    for s in items {
        let x = parse(s.trim()).map_err(|e| format!("--{flag}: {e}"))?;
        if v.contains(&x) {
            return Err(format!("--{flag}: '{s}' is listed twice"));
        }
        v.push(x);
    }
    if v.is_empty() {
        return Err(format!("--{flag}: give at least one"));
    }
    Ok(v)
}

fn plan(a: &Args) -> Result<(Plan, Vec<RunSpec>), String> {
    let tasks = distinct("tasks", &a.tasks, |s| s.parse::<Task>())?;
    let cells = distinct("cells", &a.cells, |s| {
        s.parse::<CellKind>().map_err(|e| e.to_string())
    })?;
    let sizing = distinct("sizing", &a.sizing, |s| s.parse::<Sizing>())?;
    let grammars: Vec<GrammarKind> = match a.grammar.as_str() {
        "both" => ALL_GRAMMARS.to_vec(),
        g => vec![g.parse()?],
    };
    let q = a.quick;
    let pick =
        |v: Option<usize>, normal: usize, quick: usize| v.unwrap_or(if q { quick } else { normal });
    let pick64 =
        |v: Option<u64>, normal: u64, quick: u64| v.unwrap_or(if q { quick } else { normal });
    let hidden = pick(a.hidden, 50, 12);
    let seeds = pick64(a.seeds, 3, 1);
    let updates = pick64(a.updates, 1500, 60);
    let batch = pick(a.batch, 32, 16);
    let train_max_distance = pick(a.train_max_distance, 20, 12);
    let test_sentences = pick(a.test_sentences, 500, 40);
    let probe_distance = pick(a.probe_distance, 12, 6);
    let probe_sentences = pick(a.probe_sentences, 100, 16);
    let log_every = pick64(a.log_every, 50, 20);
    let test_distances = if a.test_distances.is_empty() {
        if q {
            vec![0, 6, 12]
        } else {
            vec![0, 4, 8, 12, 16, 20]
        }
    } else {
        a.test_distances.clone()
    };
    for (name, v) in [
        ("hidden", hidden as u64),
        ("seeds", seeds),
        ("updates", updates),
        ("batch", batch as u64),
        ("test-sentences", test_sentences as u64),
        ("probe-sentences", probe_sentences as u64),
        ("log-every", log_every),
    ] {
        if v == 0 {
            return Err(format!("--{name} must be at least 1"));
        }
    }
    const MAX_DISTANCE: usize = 1000;
    const MAX_ATTRACTORS: usize = 20;
    const MAX_PREAMBLE: usize = 20;
    if grammars.contains(&GrammarKind::Preamble) && !(1..=MAX_PREAMBLE).contains(&a.max_preamble) {
        return Err(format!(
            "--max-preamble must be in 1..={MAX_PREAMBLE} for the preamble grammar, got {}",
            a.max_preamble
        ));
    }
    if a.max_attractors > MAX_ATTRACTORS {
        return Err(format!(
            "--max-attractors must be at most {MAX_ATTRACTORS}, got {}",
            a.max_attractors
        ));
    }
    for (name, d) in test_distances
        .iter()
        .map(|&d| ("test-distances", d))
        .chain([
            ("train-max-distance", train_max_distance),
            ("probe-distance", probe_distance),
        ])
    {
        if d > MAX_DISTANCE {
            return Err(format!(
                "--{name}: a distance of at most {MAX_DISTANCE}, got {d}"
            ));
        }
    }
    let mut sorted = test_distances.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != test_distances.len() {
        return Err("--test-distances: a distance is listed twice".into());
    }
    let widest = *sorted.last().expect("non-empty");
    if widest < min_distance(a.max_attractors) {
        return Err(format!(
            "--test-distances: {} attractors need a distance of at least {} (3 per attractor); the \
             largest given is {widest}",
            a.max_attractors,
            min_distance(a.max_attractors)
        ));
    }
    let common_distances: Vec<usize> = test_distances
        .iter()
        .copied()
        .filter(|&d| d >= min_distance(a.max_attractors))
        .collect();
    if !(a.clip >= 0.0 && a.clip.is_finite()) {
        return Err(format!("--clip must be a number ≥ 0, got {}", a.clip));
    }
    let optimizer = match a.optimizer.as_str() {
        "sgd" => Optimizer::sgd(a.lr),
        _ => Optimizer::adam(a.lr),
    };
    optimizer.validate().map_err(|e| e.to_string())?;
    let grammar = Grammar {
        p_singular: a.p_singular,
        max_nonattractors: a.max_nonattractors,
        p_relative: a.p_relative,
        max_preamble: if grammars.contains(&GrammarKind::Preamble) {
            a.max_preamble
        } else {
            0
        },
        p_clause: a.p_clause,
        ..Grammar::default()
    };
    grammar
        .validate()
        .map_err(|e| format!("--{}", e.to_string().replace('_', "-")))?;
    let hyper = Hyper {
        grammar,
        updates,
        batch,
        optimizer,
        clip: (a.clip > 0.0).then_some(a.clip),
        train_max_distance,
        max_attractors: a.max_attractors,
        log_every,
        probe_distance,
        probe_sentences,
        test_distances,
        test_sentences,
        dtype: a.dtype,
    };
    let mut runs = Vec::new();
    for replicate in 0..seeds {
        for &grammar in &grammars {
            for &task in &tasks {
                for model in agreement::models(task, &cells, hidden, &sizing) {
                    runs.push(RunSpec {
                        grammar,
                        task,
                        model,
                        replicate,
                    });
                }
            }
        }
    }
    // a worker's tapes: the largest model's states and gate slabs over the longest batch and
    // the test chunks of ≤ 1000 sentences, in f64; the run list and its rows
    let widest_h = runs.iter().map(|r| r.model.hidden).max().unwrap_or(1) as u128;
    let steps = (train_max_distance.max(widest).max(probe_distance)
        + 6
        + preamble_tokens(hyper.grammar.max_preamble)) as u128;
    let cols = steps * (batch.max(1000).max(probe_sentences) as u128);
    let estimate = (16 * widest_h + 2 * agreement::VOCAB as u128)
        .checked_mul(cols)
        .and_then(|x| x.checked_mul(8 * rayon::current_num_threads().max(1) as u128))
        .and_then(|x| x.checked_add(runs.len() as u128 * 65_536));
    driver::check_plan_memory(estimate, &format!("{} runs", runs.len()))?;
    Ok((
        Plan {
            grammars,
            tasks,
            cells,
            sizing,
            hidden,
            seeds,
            hyper,
            common_distances,
            seed: a.shard.seed,
        },
        runs,
    ))
}

/// The agreement grid as a driver experiment: one chunk per (seed, task, model) run.
struct Grid {
    plan: Plan,
    runs: Vec<RunSpec>,
}

const CURVES: usize = 0;
const ERRORS: usize = 1;
const BASELINES: usize = 2;
const MODELS: usize = 3;
const RUNS: usize = 4;

impl Grid {
    /// The rows of the run `spec`'s outcome, and — for the first run of a (seed, grammar) — the
    /// baselines on its test sets, and — for seed 0 of the first grammar — the model's parameter
    /// counts (the same models for both grammars).
    fn rows(&self, index: usize, o: &Outcome) -> Result<Rows, String> {
        let (spec, h) = (&self.runs[index], &self.plan.hyper);
        let (task, model) = (spec.task.to_string(), spec.model.name());
        let (cell, sizing) = (spec.model.cell.to_string(), spec.model.sizing.name());
        let seed = spec.replicate;
        let grammar = spec.grammar.name();
        let mut rows = Rows::new(5);
        for p in &o.curve {
            rows.push(
                CURVES,
                &CurveRow {
                    grammar,
                    task: &task,
                    model: &model,
                    seed,
                    update: p.update,
                    loss: p.loss,
                    grad_norm: p.grad_norm,
                    clipped: u8::from(p.clipped),
                    subject_grad_norm: p.subject_grad_norm,
                    probe_loss: p.probe_loss,
                    probe_error: p.probe_error,
                },
            );
        }
        for s in &o.test {
            rows.push(
                ERRORS,
                &ErrorRow {
                    grammar: grammar.to_string(),
                    task: task.clone(),
                    model: model.clone(),
                    cell: cell.clone(),
                    sizing: sizing.to_string(),
                    hidden: spec.model.hidden,
                    seed,
                    attractors: s.attractors,
                    distance: s.distance,
                    preamble: s.preamble,
                    subject_position: preamble_tokens(s.preamble) + 1,
                    sentences: s.sentences,
                    errors: s.errors,
                    error_rate: s.errors as f64 / s.sentences as f64,
                },
            );
        }
        let first_of_group = index == 0
            || self.runs[index - 1].replicate != seed
            || self.runs[index - 1].grammar != spec.grammar;
        if first_of_group {
            let majority = h.grammar.majority();
            for (a, d) in h.strata() {
                let all = agreement::test_set(h, spec.grammar, self.plan.seed, seed, a, d)
                    .map_err(|e| e.to_string())?;
                for p in 0..=spec.grammar.apply(&h.grammar).max_preamble {
                    let set: Vec<_> = all.iter().filter(|s| s.preamble == p).cloned().collect();
                    if set.is_empty() {
                        continue;
                    }
                    let (r, f, m) = (
                        agreement::recency_errors(&set),
                        agreement::first_noun_errors(&set),
                        agreement::majority_errors(&set, majority),
                    );
                    let n = set.len();
                    rows.push(
                        BASELINES,
                        &BaselineRow {
                            grammar: grammar.to_string(),
                            seed,
                            attractors: a,
                            distance: d,
                            preamble: p,
                            subject_position: preamble_tokens(p) + 1,
                            sentences: n,
                            recency_errors: r,
                            recency_error: r as f64 / n as f64,
                            first_noun_errors: f,
                            first_noun_error: f as f64 / n as f64,
                            majority_errors: m,
                            majority_error: m as f64 / n as f64,
                        },
                    );
                }
            }
        }
        if seed == 0 && spec.grammar == self.plan.grammars[0] {
            let (c, r) = parameter_count(spec.model.cell, spec.task, spec.model.hidden);
            let (lc, lr) = parameter_count(CellKind::Lstm, spec.task, self.plan.hidden);
            rows.push(
                MODELS,
                &ModelRow {
                    task: task.clone(),
                    model: model.clone(),
                    cell: cell.clone(),
                    sizing: sizing.to_string(),
                    hidden: spec.model.hidden,
                    params: c + r,
                    cell_params: c,
                    readout_params: r,
                    lstm_params: lc + lr,
                },
            );
        }
        let (sentences, errors) = o
            .test
            .iter()
            .fold((0, 0), |(n, e), s| (n + s.sentences, e + s.errors));
        let last = o.curve.last();
        rows.push(
            RUNS,
            &RunRow {
                grammar: grammar.to_string(),
                task,
                model,
                seed,
                updates: o.updates,
                diverged: u8::from(o.diverged),
                final_loss: last.map_or(f64::NAN, |p| p.loss),
                final_subject_grad_norm: last.map_or(f64::NAN, |p| p.subject_grad_norm),
                test_sentences: sentences,
                test_errors: errors,
                test_error: errors as f64 / sentences.max(1) as f64,
            },
        );
        Ok(rows)
    }
}

impl Experiment for Grid {
    const NAME: &'static str = "agreement";
    const UNIT: &'static str = "runs";

    fn plan(&self) -> serde_json::Value {
        serde_json::to_value(&self.plan).expect("the plan serializes")
    }
    fn tables(&self) -> Vec<Table> {
        vec![
            Table::of::<CurveRow>("curves.csv"),
            Table::of::<ErrorRow>("errors.csv"),
            Table::of::<BaselineRow>("baselines.csv"),
            Table::of::<ModelRow>("models.csv"),
            Table::of::<RunRow>("runs.csv"),
        ]
    }
    fn chunks(&self) -> usize {
        self.runs.len()
    }
    fn parallel_chunks(&self) -> bool {
        true
    }
    fn compute(&self, index: usize, ctx: &Context<'_>) -> Result<Rows, String> {
        let spec = &self.runs[index];
        let o = agreement::train(spec, &self.plan.hyper, self.plan.seed).map_err(|e| {
            format!(
                "run {} {} {} seed {}: {e}",
                spec.grammar,
                spec.task,
                spec.model.name(),
                spec.replicate
            )
        })?;
        let rows = self.rows(index, &o)?;
        ctx.progress(1);
        Ok(rows)
    }

    fn summarize(plan: &serde_json::Value, out: &Outputs<'_>) -> Result<Summary, String> {
        let errors: Vec<ErrorRow> = out.rows("errors.csv")?;
        let baselines: Vec<BaselineRow> = out.rows("baselines.csv")?;
        let models: Vec<ModelRow> = out.rows("models.csv")?;
        let max_a = plan["hyper"]["max_attractors"].as_u64().unwrap_or(0) as usize;
        let usizes = |v: &serde_json::Value| -> Vec<usize> {
            v.as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(serde_json::Value::as_u64)
                        .map(|d| d as usize)
                        .collect()
                })
                .unwrap_or_default()
        };
        let common = usizes(&plan["common_distances"]);
        let distances = usizes(&plan["hyper"]["test_distances"]);
        // pooled error rate over seeds and the selected strata
        let pooled = |rows: &mut dyn Iterator<Item = (usize, usize)>| {
            let (n, e) = rows.fold((0, 0), |(n, e), (sn, se)| (n + sn, e + se));
            (n > 0).then(|| e as f64 / n as f64)
        };
        let cell =
            |x: Option<f64>| x.map_or_else(|| format!("{:>7}", "–"), |v| format!("{v:>7.3}"));
        let mut table = String::new();
        let mut results = Vec::new();
        let mut baseline_results = Vec::new();
        let dist_list = common
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let grammars: Vec<&str> = ALL_GRAMMARS
            .iter()
            .map(|g| g.name())
            .filter(|g| errors.iter().any(|r| r.grammar == *g))
            .collect();
        let tasks: Vec<String> = ALL_TASKS
            .iter()
            .map(ToString::to_string)
            .filter(|t| errors.iter().any(|r| &r.task == t))
            .collect();
        let header = |table: &mut String, what: &str, cols: &[String]| {
            write!(
                table,
                "\n{what}\n{:<18} {:<7} {:>7}",
                "model", "sizing", "params"
            )
            .unwrap();
            for c in cols {
                write!(table, " {c:>7}").unwrap();
            }
        };
        let a_cols: Vec<String> = (0..=max_a).map(|a| format!("a={a}")).collect();
        let d_cols: Vec<String> = distances.iter().map(|d| format!("d={d}")).collect();
        type Pick = fn(&BaselineRow) -> usize;
        let picks: [(&str, &str, Pick); 3] = [
            ("recency baseline", "recency_error", |r| r.recency_errors),
            ("first-noun basel.", "first_noun_error", |r| {
                r.first_noun_errors
            }),
            ("majority baseline", "majority_error", |r| r.majority_errors),
        ];
        for &grammar in &grammars {
            let base: Vec<&BaselineRow> = baselines
                .iter()
                .filter(|r| r.grammar == grammar && common.contains(&r.distance))
                .collect();
            let preambles: Vec<usize> = {
                let mut v: Vec<usize> = errors
                    .iter()
                    .filter(|r| r.grammar == grammar)
                    .map(|r| r.preamble)
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let p_cols: Vec<String> = preambles.iter().map(|p| format!("p={p}")).collect();
            for a in 0..=max_a {
                let mut entry = serde_json::json!({"grammar": grammar, "attractors": a});
                for (_, key, pick) in picks {
                    entry[key] = serde_json::json!(pooled(
                        &mut base
                            .iter()
                            .filter(|r| r.attractors == a)
                            .map(|r| (r.sentences, pick(r)))
                    ));
                }
                baseline_results.push(entry);
            }
            for task in &tasks {
                let rows: Vec<&ErrorRow> = errors
                    .iter()
                    .filter(|r| r.grammar == grammar && &r.task == task)
                    .collect();
                if rows.is_empty() {
                    continue;
                }
                // the models in plan order: from models.csv, or (a shard without seed 0) the rows
                let mut model_names: Vec<(String, String, String)> = models
                    .iter()
                    .filter(|m| &m.task == task)
                    .map(|m| (m.model.clone(), m.sizing.clone(), m.params.to_string()))
                    .collect();
                if model_names.is_empty() {
                    for r in &rows {
                        let k = (r.model.clone(), r.sizing.clone(), String::new());
                        if !model_names.contains(&k) {
                            model_names.push(k);
                        }
                    }
                }
                header(
                    &mut table,
                    &format!(
                        "grammar {grammar}, task {task}: error rate by number of attractors (all seeds; distances {dist_list} pooled)"
                    ),
                    &a_cols,
                );
                for (model, sizing, params) in &model_names {
                    write!(table, "\n{model:<18} {sizing:<7} {params:>7}").unwrap();
                    for a in 0..=max_a {
                        let e = pooled(
                            &mut rows
                                .iter()
                                .filter(|r| &r.model == model && r.attractors == a)
                                .filter(|r| common.contains(&r.distance))
                                .map(|r| (r.sentences, r.errors)),
                        );
                        write!(table, " {}", cell(e)).unwrap();
                        results.push(serde_json::json!({
                            "grammar": grammar, "task": task, "model": model, "sizing": sizing,
                            "attractors": a, "distances": common, "error": e,
                        }));
                    }
                }
                for (name, _, pick) in picks {
                    write!(table, "\n{name:<18} {:<7} {:>7}", "", "").unwrap();
                    for a in 0..=max_a {
                        let e = pooled(
                            &mut base
                                .iter()
                                .filter(|r| r.attractors == a)
                                .map(|r| (r.sentences, pick(r))),
                        );
                        write!(table, " {}", cell(e)).unwrap();
                    }
                }
                header(
                    &mut table,
                    &format!(
                        "grammar {grammar}, task {task}: error rate by subject–verb distance, 0 attractors (all seeds)"
                    ),
                    &d_cols,
                );
                for (model, sizing, params) in &model_names {
                    write!(table, "\n{model:<18} {sizing:<7} {params:>7}").unwrap();
                    for &d in &distances {
                        let e = pooled(
                            &mut rows
                                .iter()
                                .filter(|r| &r.model == model)
                                .filter(|r| r.attractors == 0 && r.distance == d)
                                .map(|r| (r.sentences, r.errors)),
                        );
                        write!(table, " {}", cell(e)).unwrap();
                    }
                }
                if preambles.len() > 1 {
                    header(
                        &mut table,
                        &format!(
                            "grammar {grammar}, task {task}: error rate by preamble nouns before the subject (all attractors; distances {dist_list} pooled)"
                        ),
                        &p_cols,
                    );
                    for (model, sizing, params) in &model_names {
                        write!(table, "\n{model:<18} {sizing:<7} {params:>7}").unwrap();
                        for &p in &preambles {
                            let e = pooled(
                                &mut rows
                                    .iter()
                                    .filter(|r| &r.model == model && r.preamble == p)
                                    .filter(|r| common.contains(&r.distance))
                                    .map(|r| (r.sentences, r.errors)),
                            );
                            write!(table, " {}", cell(e)).unwrap();
                        }
                    }
                    for (name, _, pick) in picks {
                        write!(table, "\n{name:<18} {:<7} {:>7}", "", "").unwrap();
                        for &p in &preambles {
                            let e = pooled(
                                &mut base
                                    .iter()
                                    .filter(|r| r.preamble == p)
                                    .map(|r| (r.sentences, pick(r))),
                            );
                            write!(table, " {}", cell(e)).unwrap();
                        }
                    }
                }
                table.push('\n');
            }
        }
        Ok(Summary {
            failure: None,
            results: serde_json::json!({
                "common_distances": common,
                "error_by_attractors": results,
                "baselines_by_attractors": baseline_results,
                "models": models.iter().map(|m| serde_json::json!({
                    "task": m.task, "model": m.model, "sizing": m.sizing, "hidden": m.hidden,
                    "params": m.params,
                })).collect::<Vec<_>>(),
            }),
            table,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    driver::drive(&args.common, Some(&args.shard), &args, || {
        let (plan, runs) = plan(&args)?;
        Ok(Grid { plan, runs })
    })
}
