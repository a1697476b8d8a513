//! `lstm-vs-gru`: the lecture's rule of thumb — both gated cells keep information over long
//! spans, the GRU has fewer parameters and is quicker, start with an LSTM — measured on temporal
//! order, addition and number agreement, over seeds, with the LSTM's forget gate started at bias
//! 0, bias 1 or chrono, and the GRU at the LSTM's width and at its parameter count.
//!
//! Output (schemas in experiments/README.md): `curves.csv` (learning curves against updates and
//! sequence steps), `runs.csv` (one row per run), `lstm_vs_gru.json` (provenance). Seconds are
//! the benchmark's (`scripts/bench-lstm-vs-gru.sh`), not measured here: the outputs are
//! byte-identical for any thread count. Exit status: 0 done, 1 I/O failure, 2 bad arguments.

use std::fmt::Write as _;
use std::process::ExitCode;

use bptt::experiment::driver::{
    self, CommonArgs, Context, Experiment, Outputs, Rows, ShardArgs, Summary, Table,
};
use bptt::experiment::lstm_vs_gru::{self, Hyper, Model, Outcome, Problem, RunSpec};
use clap::Parser;

/// One row of `curves.csv`: a logged update of one run.
#[derive(serde::Serialize, Default)]
struct CurveRow<'a> {
    task: &'a str,
    length: usize,
    model: &'a str,
    seed: u64,
    update: u64,
    /// Sequence steps processed so far (Σ of the batches' T).
    steps: u64,
    loss: f64,
    grad_norm: f64,
    /// Validation error rate (empty between validations).
    valid_error: Option<f64>,
}

/// One row of `runs.csv`.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct RunRow {
    task: String,
    length: usize,
    model: String,
    seed: u64,
    cell: String,
    hidden: usize,
    parameters: usize,
    updates: u64,
    /// The first validation below --success-error (empty: never).
    solved_at: Option<u64>,
    diverged: bool,
    test_error: f64,
    /// The error of the best predictor that ignores the informative inputs.
    chance_error: f64,
}

#[derive(Parser, Debug, serde::Serialize)]
#[command(
    name = "lstm-vs-gru",
    version,
    about = "LSTM (forget bias 0, 1, chrono) vs GRU (same width, same parameter count) on temporal order, addition and number agreement.",
    long_about = "LSTM (forget bias 0, 1, chrono) vs GRU (same width, same parameter count) on temporal order, addition and number agreement.\n\n\
        The lecture: LSTM and GRU both keep information over long spans; the GRU has fewer parameters and \
        is quicker; start with an LSTM, switch to a GRU for efficiency. Every run trains one model (PyTorch's \
        initialisation; the LSTMs' forget gates set to bias 0 or 1, or chrono with T_max the task's \
        dependency span; gru-matched: the GRU whose parameter count is closest to the LSTM's) on one task \
        with Adam and global-norm clipping on fresh batches for the whole budget, validates every \
        --eval-every updates on fresh sequences (the first validation under --success-error is the run's \
        solved_at), and tests it at the end. The three LSTMs of a seed share every weight but the gate \
        biases; every model of a seed sees the same batches. Learning curves are logged against updates and \
        against sequence steps processed; the seconds axis comes from the benchmark \
        (scripts/bench-lstm-vs-gru.sh), so the outputs are byte-identical for any thread count. Runs are \
        independent and run in parallel; each is a resumable chunk.\n\n\
        Example: lstm-vs-gru --tasks temporal-order --models lstm-b1,gru --seeds 2 --updates 500"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    shard: ShardArgs,
    /// Tasks, comma-separated: temporal-order, addition, agreement
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "temporal-order,addition,agreement"
    )]
    tasks: Vec<String>,
    /// Models, comma-separated: lstm-b0, lstm-b1, lstm-chrono, gru, gru-matched
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lstm-b0,lstm-b1,lstm-chrono,gru,gru-matched"
    )]
    models: Vec<String>,
    /// Seeds (replicates) per task and model
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Hidden units of the LSTMs and of gru (gru-matched: the LSTM's parameter count)
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Sequences per batch
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Updates per run (every run trains all of them)
    #[arg(long, default_value_t = 3000)]
    updates: u64,
    /// Adam's learning rate
    #[arg(long, default_value_t = 0.003)]
    lr: f64,
    /// Global-norm clipping threshold
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Validate every N updates
    #[arg(long, default_value_t = 100)]
    eval_every: u64,
    /// Fresh sequences per validation
    #[arg(long, default_value_t = 500)]
    eval_sequences: usize,
    /// Sequences of the final test
    #[arg(long, default_value_t = 2000)]
    test_sequences: usize,
    /// Write a learning-curve row every N updates (and at every validation)
    #[arg(long, default_value_t = 50)]
    log_every: u64,
    /// Validation error rate under which a run has solved its task
    #[arg(long, default_value_t = 0.01)]
    success_error: f64,
    /// Lengths T of temporal order, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "50,100")]
    order_lengths: Vec<usize>,
    /// Nominal lengths T of addition, comma-separated (each batch adds up to a tenth)
    #[arg(long, value_delimiter = ',', default_value = "50,100")]
    addition_lengths: Vec<usize>,
    /// Largest subject–verb distances of agreement, comma-separated (a run's distances are
    /// uniform in 0..=this)
    #[arg(long, value_delimiter = ',', default_value = "20")]
    agreement_distances: Vec<usize>,
    /// Most attractors of agreement (P(a) ∝ 2^−a)
    #[arg(long, default_value_t = 4)]
    agreement_attractors: usize,
    /// Most preamble nouns of the agreement grammar (0: the fixed grammar)
    #[arg(long, default_value_t = 2)]
    agreement_preamble: usize,
    /// A run of seconds (CI): 1 seed, 60 updates, 8 units, T = 20, distances ≤ 6, small evaluations
    #[arg(long)]
    quick: bool,
}

/// The resolved work: what a resumed run must match.
#[derive(Clone, Debug, serde::Serialize)]
struct Plan {
    /// (task, length) in plan order.
    tasks: Vec<(Problem, usize)>,
    models: Vec<&'static str>,
    seeds: u64,
    hyper: Hyper,
    seed: u64,
}

/// Parse a comma-separated list, refusing repeats.
fn parse_list<T: std::str::FromStr<Err = String> + PartialEq>(
    flag: &str,
    items: &[String],
) -> Result<Vec<T>, String> {
    let mut v = Vec::new();
    for s in items {
        let x: T = s.trim().parse().map_err(|e| format!("--{flag}: {e}"))?;
        if v.contains(&x) {
            return Err(format!("--{flag}: '{s}' is listed twice"));
        }
        v.push(x);
    }
    Ok(v)
}

fn plan(a: &Args) -> Result<(Plan, Vec<RunSpec>), String> {
    let tasks: Vec<Problem> = parse_list("tasks", &a.tasks)?;
    let models: Vec<Model> = parse_list("models", &a.models)?;
    let mut h = Hyper {
        hidden: a.hidden,
        batch: a.batch,
        updates: a.updates,
        lr: a.lr,
        clip: a.clip,
        eval_every: a.eval_every,
        eval_sequences: a.eval_sequences,
        test_sequences: a.test_sequences,
        log_every: a.log_every,
        success_error: a.success_error,
        agreement_attractors: a.agreement_attractors,
        agreement_preamble: a.agreement_preamble,
    };
    let mut seeds = a.seeds;
    let lengths = |p: Problem| match (p, a.quick) {
        (Problem::Agreement, true) => vec![6],
        (_, true) => vec![20],
        (Problem::TemporalOrder, false) => a.order_lengths.clone(),
        (Problem::Addition, false) => a.addition_lengths.clone(),
        (Problem::Agreement, false) => a.agreement_distances.clone(),
    };
    if a.quick {
        seeds = 1;
        h = Hyper {
            hidden: 8,
            batch: 16,
            updates: 60,
            eval_every: 20,
            eval_sequences: 50,
            test_sequences: 100,
            log_every: 10,
            ..h
        };
    }
    if seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    h.validate().map_err(|e| e.to_string())?;
    let mut work: Vec<(Problem, usize)> = Vec::new();
    for &p in &tasks {
        let flag = match p {
            Problem::TemporalOrder => "order-lengths",
            Problem::Addition => "addition-lengths",
            Problem::Agreement => "agreement-distances",
        };
        let ls = lengths(p);
        if ls.is_empty() {
            return Err(format!("--{flag}: give at least one length"));
        }
        for l in ls {
            if l < p.min_length() {
                return Err(format!(
                    "--{flag}: {l} is below the smallest {} of {p}",
                    p.min_length()
                ));
            }
            if work.contains(&(p, l)) {
                return Err(format!("--{flag}: {l} is listed twice"));
            }
            work.push((p, l));
        }
    }
    // per worker: the training tape (≤ 8 H-vectors per step of the longest sequence, of
    // max(batch, a validation draw of 500)), generous
    let longest = work
        .iter()
        .map(|&(p, l)| p.max_steps(l, &h) as u128)
        .max()
        .unwrap_or(1);
    let width = lstm_vs_gru::ALL_MODELS
        .iter()
        .map(|m| m.hidden(Problem::Agreement, h.hidden) as u128)
        .max()
        .unwrap_or(1);
    let estimate = (8 * 4 * width + 64)
        .checked_mul(longest)
        .and_then(|x| x.checked_mul(h.batch.max(500) as u128))
        .and_then(|x| x.checked_mul(8 * rayon::current_num_threads().max(1) as u128));
    driver::check_plan_memory(
        estimate,
        &format!("batches of {} sequences of up to {longest} steps", h.batch),
    )?;
    let runs: Vec<RunSpec> = work
        .iter()
        .flat_map(|&(problem, length)| {
            models.iter().flat_map(move |&model| {
                (0..seeds).map(move |replicate| RunSpec {
                    problem,
                    length,
                    model,
                    replicate,
                })
            })
        })
        .collect();
    Ok((
        Plan {
            tasks: work,
            models: models.iter().map(|m| m.name()).collect(),
            seeds,
            hyper: h,
            seed: a.shard.seed,
        },
        runs,
    ))
}

/// The tables' rows of one finished run (curves 0, runs 1).
fn run_rows(s: &RunSpec, o: &Outcome) -> Rows {
    let (task, length, model, seed) = (s.problem.name(), s.length, s.model.name(), s.replicate);
    let mut rows = Rows::new(2);
    for p in &o.curve {
        rows.push(
            0,
            &CurveRow {
                task,
                length,
                model,
                seed,
                update: p.update,
                steps: p.steps,
                loss: p.loss,
                grad_norm: p.grad_norm,
                valid_error: p.valid_error,
            },
        );
    }
    rows.push(
        1,
        &RunRow {
            task: task.into(),
            length,
            model: model.into(),
            seed,
            cell: s.model.cell().name().into(),
            hidden: o.hidden,
            parameters: o.parameters,
            updates: o.updates,
            solved_at: o.solved_at,
            diverged: o.diverged,
            test_error: o.test_error,
            chance_error: s.problem.chance_error(),
        },
    );
    rows
}

/// The experiment: one chunk per run, runs in parallel.
struct LstmVsGru {
    plan: Plan,
    runs: Vec<RunSpec>,
}

impl Experiment for LstmVsGru {
    const NAME: &'static str = "lstm-vs-gru";
    const UNIT: &'static str = "runs";

    fn plan(&self) -> serde_json::Value {
        serde_json::to_value(&self.plan).expect("the plan serializes")
    }
    fn tables(&self) -> Vec<Table> {
        vec![
            Table::of::<CurveRow>("curves.csv"),
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
        let s = &self.runs[index];
        let o = lstm_vs_gru::train(s, &self.plan.hyper, self.plan.seed).map_err(|e| {
            format!(
                "run {} (length {}) {} seed {}: {e}",
                s.problem, s.length, s.model, s.replicate
            )
        })?;
        ctx.progress(1);
        Ok(run_rows(s, &o))
    }

    fn summarize(plan: &serde_json::Value, out: &Outputs<'_>) -> Result<Summary, String> {
        let runs: Vec<RunRow> = out.rows("runs.csv")?;
        let mut table = format!(
            "\nper task and model (over seeds): solved = validation error < {} within {} updates\n\
             {:<15} {:>6} {:<12} {:>4} {:>7} {:>7} {:>14} {:>11} {:>7}",
            plan["hyper"]["success_error"],
            plan["hyper"]["updates"],
            "task",
            "length",
            "model",
            "H",
            "params",
            "solved",
            "median solved@",
            "test error",
            "chance"
        );
        let mut groups: Vec<(String, usize, String)> = Vec::new();
        for r in &runs {
            let g = (r.task.clone(), r.length, r.model.clone());
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        let mut results = Vec::new();
        for (task, length, model) in &groups {
            let rs: Vec<&RunRow> = runs
                .iter()
                .filter(|r| (&r.task, r.length, &r.model) == (task, *length, model))
                .collect();
            let mut solved: Vec<u64> = rs.iter().filter_map(|r| r.solved_at).collect();
            solved.sort_unstable();
            // the median over all seeds, an unsolved run counting as beyond the budget
            let median = if 2 * solved.len() > rs.len() {
                Some(solved[(rs.len() - 1) / 2])
            } else {
                None
            };
            let test = rs.iter().map(|r| r.test_error).sum::<f64>() / rs.len() as f64;
            write!(
                table,
                "\n{task:<15} {length:>6} {model:<12} {:>4} {:>7} {:>7} {:>14} {test:>11.4} {:>7.3}",
                rs[0].hidden,
                rs[0].parameters,
                format!("{}/{}", solved.len(), rs.len()),
                median.map_or("-".into(), |m| m.to_string()),
                rs[0].chance_error,
            )
            .unwrap();
            results.push(serde_json::json!({
                "task": task, "length": length, "model": model, "hidden": rs[0].hidden,
                "parameters": rs[0].parameters, "runs": rs.len(), "solved": solved.len(),
                "median_solved_at": median, "mean_test_error": test,
                "diverged": rs.iter().filter(|r| r.diverged).count(),
            }));
        }
        Ok(Summary {
            failure: None,
            results: serde_json::json!({ "runs": runs.len(), "models": results }),
            table,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    driver::drive(&args.common, Some(&args.shard), &args, || {
        let (plan, runs) = plan(&args)?;
        Ok(LstmVsGru { plan, runs })
    })
}
