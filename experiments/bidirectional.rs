//! `bidirectional`: the lecture's bidirectional claim — "terribly" in "the movie was terribly
//! exciting!" is positive only because of the word after it — measured on a tagging task whose
//! intensifiers take the polarity of an adjective `d` steps later (right-dependent) and whose
//! anaphors take that of an adjective `d` steps earlier (left-dependent, the control), for uni-
//! and bidirectional networks of every cell, against the computed chance level.
//!
//! Output (schemas in experiments/README.md): `curves.csv`, `accuracy.csv` (per run, dependency
//! and distance), `runs.csv` (one row per run), `bidirectional.json` (provenance). Exit status:
//! 0 done, 1 I/O failure, 2 bad arguments.

use std::fmt::Write as _;
use std::process::ExitCode;

use bptt::experiment::bidirectional::{
    self, Dependency, Direction, Hyper, Outcome, Tagged, chance_accuracy, min_length,
};
use bptt::experiment::driver::{
    self, CommonArgs, Context, Experiment, Outputs, Rows, ShardArgs, Summary, Table,
};
use bptt::nn::cells::CellKind;
use bptt::train::trainer::Dtype;
use clap::Parser;

/// One row of `curves.csv`: a logged update of one run.
#[derive(serde::Serialize, Default)]
struct CurveRow<'a> {
    cell: &'a str,
    direction: &'a str,
    seed: u64,
    update: u64,
    loss: f64,
    grad_norm: f64,
}

/// One row of `accuracy.csv`: one run's accuracy on the probes of one dependency and distance,
/// beside the chance accuracy of those probes.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct AccuracyRow {
    cell: String,
    direction: String,
    seed: u64,
    dependency: String,
    distance: usize,
    probes: usize,
    correct: usize,
    accuracy: f64,
    chance: f64,
}

/// One row of `runs.csv`.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct RunRow {
    cell: String,
    direction: String,
    seed: u64,
    parameters: usize,
    final_loss: f64,
    right_accuracy: f64,
    left_accuracy: f64,
    /// Accuracy on the tokens whose label is local (fillers and adjectives).
    local_accuracy: f64,
    /// Chance accuracy of all right- / left-dependent probes of the (shared) test set.
    right_chance: f64,
    left_chance: f64,
}

#[derive(Parser, Debug, serde::Serialize)]
#[command(
    name = "bidirectional",
    version,
    about = "Uni- vs bidirectional RNNs on a tagging task whose labels depend on a later (or an earlier) token.",
    long_about = "Uni- vs bidirectional RNNs on a tagging task whose labels depend on a later (or an earlier) token.\n\n\
        The lecture: in \"the movie was terribly exciting!\", \"terribly\" is positive only because of the \
        word after it; a left-to-right RNN cannot know that at \"terribly\", a bidirectional one can. Every \
        sequence of --steps tokens is filler words with two patterns: an intensifier whose label is the \
        polarity of the adjective d steps later (right-dependent), and an anaphor whose label is the \
        polarity of the adjective d steps earlier (left-dependent, the control), d uniform in \
        1..=--max-distance, polarities fair coins. Every run trains one cell, uni- or bidirectional \
        (--hidden units per direction, PyTorch's initialisation), with Adam and clipping on fresh \
        batches, every-step softmax cross-entropy over the labels neutral/positive/negative; then scores \
        it on one test set shared by all runs: accuracy by dependency and distance, beside the chance \
        accuracy (the majority rate of those probes' labels: what any model that does not see the \
        partner token can reach). Runs are independent and run in parallel; each is a resumable chunk.\n\n\
        Example: bidirectional --cells rnn-tanh,lstm --max-distance 8 --seeds 2"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    shard: ShardArgs,
    /// Cells, comma-separated (any registered cell, e.g. rnn-tanh, lstm, gru)
    #[arg(long, value_delimiter = ',', default_value = "rnn-tanh,lstm,gru")]
    cells: Vec<String>,
    /// Directions, comma-separated: uni, bi
    #[arg(long, value_delimiter = ',', default_value = "uni,bi")]
    directions: Vec<String>,
    /// Seeds (replicates) per cell and direction
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Hidden units per direction
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Sequence length T (at least 2·(max distance + 1))
    #[arg(long, default_value_t = 40)]
    steps: usize,
    /// Largest distance d between a dependent token and its adjective
    #[arg(long, default_value_t = 16)]
    max_distance: usize,
    /// Sequences per minibatch
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Updates per run
    #[arg(long, default_value_t = 3000)]
    updates: u64,
    /// Adam's learning rate
    #[arg(long, default_value_t = 0.003)]
    lr: f64,
    /// Global-norm clipping threshold
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Write a learning-curve row every N updates
    #[arg(long, default_value_t = 50)]
    log_every: u64,
    /// Test sequences (one test set for every run)
    #[arg(long, default_value_t = 4000)]
    test_sequences: usize,
    /// Scalar of training and scoring: f64 or f32
    #[arg(long, default_value = "f64", value_parser = parse_dtype)]
    dtype: Dtype,
    /// A run of seconds (CI): 300 updates, 1 seed, 500 test sequences, max distance 6, T = 16
    #[arg(long)]
    quick: bool,
}

fn parse_dtype(s: &str) -> Result<Dtype, String> {
    s.parse().map_err(|e: bptt::error::BpttError| e.to_string())
}

/// The resolved work: what a resumed run must match.
#[derive(Clone, Debug, serde::Serialize)]
struct Plan {
    cells: Vec<&'static str>,
    directions: Vec<Direction>,
    seeds: u64,
    hyper: Hyper,
    seed: u64,
}

/// One run: a cell, a direction, a replicate.
#[derive(Clone, Copy, Debug)]
struct RunSpec {
    cell: CellKind,
    direction: Direction,
    replicate: u64,
}

fn plan(a: &Args) -> Result<(Plan, Vec<RunSpec>), String> {
    let mut cells = Vec::new();
    for c in &a.cells {
        let kind: CellKind = c.trim().parse().map_err(|e| format!("--cells: {e}"))?;
        if cells.contains(&kind) {
            return Err(format!("--cells: '{c}' is listed twice"));
        }
        cells.push(kind);
    }
    let mut directions = Vec::new();
    for d in &a.directions {
        let dir: Direction = d.trim().parse().map_err(|e| format!("--directions: {e}"))?;
        if directions.contains(&dir) {
            return Err(format!("--directions: '{d}' is listed twice"));
        }
        directions.push(dir);
    }
    let (mut updates, mut seeds, mut test, mut max_distance, mut steps) = (
        a.updates,
        a.seeds,
        a.test_sequences,
        a.max_distance,
        a.steps,
    );
    if a.quick {
        (updates, seeds, test, max_distance, steps) = (300, 1, 500, 6, 16);
    }
    for (name, v) in [
        ("seeds", seeds),
        ("updates", updates),
        ("hidden", a.hidden as u64),
        ("batch", a.batch as u64),
        ("log-every", a.log_every),
        ("test-sequences", test as u64),
        ("max-distance", max_distance as u64),
    ] {
        if v == 0 {
            return Err(format!("--{name} must be at least 1"));
        }
    }
    if steps < min_length(max_distance) {
        return Err(format!(
            "--steps {steps} is too short for --max-distance {max_distance}: both patterns need \
             T ≥ 2·(d + 1) = {}",
            min_length(max_distance)
        ));
    }
    if !(a.lr > 0.0 && a.lr.is_finite()) {
        return Err(format!("--lr must be a positive number, got {}", a.lr));
    }
    if !(a.clip > 0.0 && a.clip.is_finite()) {
        return Err(format!("--clip must be a positive number, got {}", a.clip));
    }
    let runs: Vec<RunSpec> = cells
        .iter()
        .flat_map(|&cell| {
            directions.iter().flat_map(move |&direction| {
                (0..seeds).map(move |replicate| RunSpec {
                    cell,
                    direction,
                    replicate,
                })
            })
        })
        .collect();
    // the test set, and per worker the training tape and a scoring batch (f64, generous)
    let h = a.hidden as u128;
    let estimate = (test as u128 * steps as u128)
        .checked_mul(8 * 4)
        .and_then(|t| {
            let per_worker = (2 * 4 * h + 64)
                .checked_mul(steps as u128)?
                .checked_mul(a.batch.max(500) as u128)?
                .checked_mul(8)?;
            t.checked_add(per_worker.checked_mul(rayon::current_num_threads().max(1) as u128)?)
        });
    driver::check_plan_memory(estimate, &format!("{test} test sequences of {steps} steps"))?;
    Ok((
        Plan {
            cells: cells.iter().map(|c| c.name()).collect(),
            directions,
            seeds,
            hyper: Hyper {
                hidden: a.hidden,
                steps,
                max_distance,
                batch: a.batch,
                updates,
                lr: a.lr,
                clip: a.clip,
                log_every: a.log_every,
                test_sequences: test,
                dtype: a.dtype,
            },
            seed: a.shard.seed,
        },
        runs,
    ))
}

/// The tables' rows of one finished run (curves 0, accuracy 1, runs 2).
fn run_rows(s: &RunSpec, o: &Outcome, max_distance: usize) -> Rows {
    let (cell, direction, seed) = (s.cell.name(), s.direction.name(), s.replicate);
    let mut rows = Rows::new(3);
    for p in &o.curve {
        rows.push(
            0,
            &CurveRow {
                cell,
                direction,
                seed,
                update: p.update,
                loss: p.loss,
                grad_norm: p.grad_norm,
            },
        );
    }
    let (mut mean, mut chance) = ([0.0; 2], [0.0; 2]);
    for (k, dependency) in [Dependency::Right, Dependency::Left]
        .into_iter()
        .enumerate()
    {
        let of = |d: Option<usize>| {
            o.scored
                .iter()
                .filter(move |x| x.probe.dependency == dependency)
                .filter(move |x| d.is_none_or(|d| x.probe.distance == d))
        };
        let all: Vec<_> = of(None).collect();
        mean[k] = all.iter().filter(|x| x.correct).count() as f64 / all.len() as f64;
        chance[k] = chance_accuracy(&all.iter().map(|x| x.probe).collect::<Vec<_>>());
        for d in 1..=max_distance {
            let probes: Vec<_> = of(Some(d)).map(|x| x.probe).collect();
            let correct = of(Some(d)).filter(|x| x.correct).count();
            rows.push(
                1,
                &AccuracyRow {
                    cell: cell.into(),
                    direction: direction.into(),
                    seed,
                    dependency: dependency.name().into(),
                    distance: d,
                    probes: probes.len(),
                    correct,
                    accuracy: correct as f64 / probes.len() as f64,
                    chance: chance_accuracy(&probes),
                },
            );
        }
    }
    rows.push(
        2,
        &RunRow {
            cell: cell.into(),
            direction: direction.into(),
            seed,
            parameters: o.parameters,
            final_loss: o.curve.last().map_or(f64::NAN, |p| p.loss),
            right_accuracy: mean[0],
            left_accuracy: mean[1],
            local_accuracy: o.local_accuracy,
            right_chance: chance[0],
            left_chance: chance[1],
        },
    );
    rows
}

/// The experiment: one chunk per run, runs in parallel, one shared test set.
struct Tagging {
    plan: Plan,
    runs: Vec<RunSpec>,
    test: Tagged,
}

impl Experiment for Tagging {
    const NAME: &'static str = "bidirectional";
    const UNIT: &'static str = "runs";

    fn plan(&self) -> serde_json::Value {
        serde_json::to_value(&self.plan).expect("the plan serializes")
    }
    fn tables(&self) -> Vec<Table> {
        vec![
            Table::of::<CurveRow>("curves.csv"),
            Table::of::<AccuracyRow>("accuracy.csv"),
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
        let h = &self.plan.hyper;
        let o = bidirectional::run(
            s.cell,
            s.direction,
            s.replicate,
            self.plan.seed,
            h,
            &self.test,
        )
        .map_err(|e| {
            format!(
                "run {} {} seed {}: {e}",
                s.cell,
                s.direction.name(),
                s.replicate
            )
        })?;
        ctx.progress(1);
        Ok(run_rows(s, &o, h.max_distance))
    }

    fn summarize(plan: &serde_json::Value, out: &Outputs<'_>) -> Result<Summary, String> {
        let runs: Vec<RunRow> = out.rows("runs.csv")?;
        let first = runs.first().ok_or("runs.csv has no rows")?;
        // every run is scored on the same test set: the same probes, the same chance
        let (chance_right, chance_left) = (first.right_chance, first.left_chance);
        let per_run = plan["hyper"]["test_sequences"].as_u64().unwrap_or(1) as f64;
        let mut table = format!(
            "\naccuracy on the dependent tokens (mean over seeds and distances 1..={}; chance: right \
             {chance_right:.3}, left {chance_left:.3}; one probe of each per test sequence):\n\
             {:<16} {:<4} {:>7} {:>8} {:>8} {:>8}",
            plan["hyper"]["max_distance"], "cell", "dir", "params", "right", "left", "local"
        );
        let mut groups: Vec<(String, String)> = Vec::new();
        for r in &runs {
            let g = (r.cell.clone(), r.direction.clone());
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        let mut results = Vec::new();
        for (cell, direction) in &groups {
            let rs: Vec<&RunRow> = runs
                .iter()
                .filter(|r| (&r.cell, &r.direction) == (cell, direction))
                .collect();
            let mean =
                |f: fn(&RunRow) -> f64| rs.iter().map(|r| f(r)).sum::<f64>() / rs.len() as f64;
            let (right, left, local) = (
                mean(|r| r.right_accuracy),
                mean(|r| r.left_accuracy),
                mean(|r| r.local_accuracy),
            );
            // distance of the right-dependent accuracy from chance, in binomial standard errors
            let se = (chance_right * (1.0 - chance_right) / (per_run * rs.len() as f64)).sqrt();
            write!(
                table,
                "\n{cell:<16} {direction:<4} {:>7} {right:>8.3} {left:>8.3} {local:>8.3}",
                rs[0].parameters
            )
            .unwrap();
            results.push(serde_json::json!({
                "cell": cell, "direction": direction, "parameters": rs[0].parameters,
                "right_accuracy": right, "left_accuracy": left, "local_accuracy": local,
                "right_minus_chance_in_se": (right - chance_right) / se,
            }));
        }
        Ok(Summary {
            failure: None,
            results: serde_json::json!({
                "runs": runs.len(),
                "chance_right": chance_right,
                "chance_left": chance_left,
                "models": results,
            }),
            table,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    driver::drive(&args.common, Some(&args.shard), &args, || {
        let (plan, runs) = plan(&args)?;
        let test = bidirectional::test_set(plan.seed, &plan.hyper).map_err(|e| e.to_string())?;
        Ok(Tagging { plan, runs, test })
    })
}
