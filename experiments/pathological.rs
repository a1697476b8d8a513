//! `pathological`: Pascanu, Mikolov & Bengio (2013) §4.1 — a 50-unit vanilla RNN trained on the
//! pathological long-term tasks with SGD, SGD with clipping (SGD-C) and SGD-C with the
//! regularizer Ω (SGD-CR), over sequence lengths and seeds; success = under 1% errors on 10,000
//! fresh sequences.
//!
//! Output (schemas in experiments/README.md): `curves.csv` (learning curves), `final.csv` (one
//! row per run), `generalization.csv` (with `--generalize`), `models/<run>.safetensors`,
//! `pathological.json` (provenance). Exit status: 0 done, 1 I/O failure, 2 bad arguments.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use bptt::experiment::driver::{
    self, CommonArgs, Context, Experiment, Outputs, Rows, ShardArgs, Summary, Table, write_atomic,
};
use bptt::experiment::pathological::{
    self, ALL_ALGORITHMS, ALL_INITS, Algorithm, Hyper, Init, Outcome, RunSpec,
};
use bptt::experiment::tasks::Task;
use bptt::nn::cell::Cell;
use bptt::train::optim::Optimizer;
use bptt::train::trainer::Dtype;
use clap::Parser;

/// One row of `curves.csv`: a logged update of one run.
#[derive(serde::Serialize, Default)]
struct CurveRow<'a> {
    task: &'a str,
    init: &'a str,
    algorithm: &'a str,
    length: &'a str,
    seed: u64,
    update: u64,
    loss: f64,
    grad_norm: f64,
    max_grad_norm: f64,
    clipped: u64,
    safety: u64,
    omega: f64,
    /// Empty where the update was not validated.
    valid_error: Option<f64>,
}

/// One row of `final.csv`: one run's outcome. A run is named by task, init, algorithm, length
/// (`T`, or `MIN:MAX` with `--generalize`) and seed (the replicate).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct FinalRow {
    task: String,
    init: String,
    algorithm: String,
    length: String,
    seed: u64,
    updates: u64,
    test_error: f64,
    success: u8,
    diverged: u8,
    clipped_updates: u64,
    safety_updates: u64,
}

/// One row of `generalization.csv`: one run's error rate at one test length.
#[derive(serde::Serialize, Default)]
struct GenRow<'a> {
    task: &'a str,
    init: &'a str,
    algorithm: &'a str,
    train_lengths: &'a str,
    seed: u64,
    length: usize,
    sequences: usize,
    errors: usize,
    error_rate: f64,
}

#[derive(Parser, Debug, serde::Serialize)]
#[command(
    name = "pathological",
    version,
    about = "Pascanu et al. (2013) §4.1: SGD vs SGD-C vs SGD-CR on the pathological long-term tasks.",
    long_about = "Pascanu et al. (2013) §4.1: SGD vs SGD-C vs SGD-CR on the pathological long-term tasks.\n\n\
        Every run trains a vanilla RNN (50 units by default) with a linear readout on one task at one \
        sequence length, from one of the paper's initialisations, with one algorithm: sgd (plain), sgd-c \
        (global-norm clipping at --clip, plus the paper code's safety net: a gradient norm that is NaN, ∞ \
        or above 1e10 shrinks W_hh instead of stepping), sgd-cr (sgd-c plus α·∂Ω/∂W_hh). Minibatches of \
        fresh sequences, validation on --eval-sequences fresh sequences every --eval-every updates; when \
        the validation error drops below 1% the final test (10,000 fresh sequences) decides and a success \
        ends the run. The three algorithms of one seed start from the same weights and see the same \
        batches. Runs are independent and run in parallel (rayon); each is a resumable chunk.\n\n\
        The paper's budget is 5,000,000 updates per run; the default here is sized so that the default \
        grid (temporal order, 3 inits × 3 algorithms × 4 lengths × 5 seeds = 180 runs) takes about 15 \
        minutes on 2 cores.\n\n\
        Example: pathological --tasks temporal-order,addition --inits smart-tanh --lengths 50,100 --seeds 3"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    shard: ShardArgs,
    /// Tasks, comma-separated: temporal-order, temporal-order-3bit, addition, multiplication, permutation, memorization, or all
    #[arg(long, value_delimiter = ',', default_value = "temporal-order")]
    tasks: Vec<String>,
    /// Initialisations, comma-separated: sigmoid, basic-tanh, smart-tanh [default: all]
    #[arg(long, value_delimiter = ',', value_parser = parse_init)]
    inits: Vec<InitArg>,
    /// Algorithms, comma-separated: sgd, sgd-c, sgd-cr [default: all]
    #[arg(long, value_delimiter = ',', value_parser = parse_algorithm)]
    algorithms: Vec<AlgorithmArg>,
    /// Training sequence lengths T, comma-separated (each run trains at one fixed length)
    #[arg(long, value_delimiter = ',', default_value = "50,100,150,200")]
    lengths: Vec<usize>,
    /// Seeds (replicates) per configuration
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Update budget per run (the paper: 5000000)
    #[arg(long, default_value_t = 5000)]
    updates: u64,
    /// Hidden units
    #[arg(long, default_value_t = 50)]
    hidden: usize,
    /// Sequences per minibatch
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Optimizer: sgd (the paper) or adam (for comparison)
    #[arg(long, default_value = "sgd", value_parser = ["sgd", "adam"])]
    optimizer: String,
    /// Learning rate
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Scalar of the training updates: f64 or f32 (validation and tests run in f64 on the trained weights)
    #[arg(long, default_value = "f64", value_parser = parse_dtype)]
    dtype: Dtype,
    /// SGD momentum (0: plain SGD, as in the paper)
    #[arg(long, default_value_t = 0.0)]
    momentum: f64,
    /// Global-norm clipping threshold of sgd-c and sgd-cr
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Weight α of the regularizer Ω in sgd-cr (the paper code's default 2)
    #[arg(long, default_value_t = 2.0)]
    alpha: f64,
    /// Steps with ‖∂L/∂h_k‖² below this bound are left out of Ω
    #[arg(long, default_value_t = bptt::train::omega::DEFAULT_BOUND)]
    omega_bound: f64,
    /// Validate every N updates
    #[arg(long, default_value_t = 250)]
    eval_every: u64,
    /// Write a learning-curve row every N updates (with the largest gradient norm and the clipping/safety counts since the previous row)
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Fresh sequences per validation
    #[arg(long, default_value_t = 1000)]
    eval_sequences: usize,
    /// Generalisation mode: train every run on lengths drawn uniformly from --train-lengths (not --lengths), then measure the error rate at every --eval-lengths
    #[arg(long)]
    generalize: bool,
    /// Training lengths of --generalize, MIN:MAX
    #[arg(long, default_value = "50:200")]
    train_lengths: String,
    /// Test lengths of --generalize, comma-separated
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,100,200,500,1000,2000,5000"
    )]
    eval_lengths: Vec<usize>,
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(into = "String")]
struct InitArg(Init);
impl From<InitArg> for String {
    fn from(i: InitArg) -> String {
        i.0.to_string()
    }
}
fn parse_dtype(s: &str) -> Result<Dtype, String> {
    s.parse().map_err(|e: bptt::error::BpttError| e.to_string())
}
fn parse_init(s: &str) -> Result<InitArg, String> {
    s.parse().map(InitArg)
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(into = "String")]
struct AlgorithmArg(Algorithm);
impl From<AlgorithmArg> for String {
    fn from(a: AlgorithmArg) -> String {
        a.0.to_string()
    }
}
fn parse_algorithm(s: &str) -> Result<AlgorithmArg, String> {
    s.parse().map(AlgorithmArg)
}

/// The resolved work of a run: what a resumed run must match.
#[derive(Clone, Debug, serde::Serialize)]
struct Plan {
    tasks: Vec<Task>,
    inits: Vec<Init>,
    algorithms: Vec<Algorithm>,
    /// (min, max) training lengths, one entry per length of the grid.
    lengths: Vec<(usize, usize)>,
    seeds: u64,
    hyper: Hyper,
    generalize: Option<Vec<usize>>,
    /// Runs on a range of lengths are validated and tested at this many lengths evenly spaced
    /// over it ([`RunSpec::test_lengths`]); absent when every length is fixed. (Its presence
    /// keeps `--resume` from continuing runs of the earlier criterion, one random length per
    /// 1000 test sequences.)
    #[serde(skip_serializing_if = "Option::is_none")]
    range_test_lengths: Option<usize>,
    seed: u64,
}

impl Plan {
    /// Every run, in (task, init, algorithm, length, seed) order.
    fn runs(&self) -> Vec<RunSpec> {
        let mut v = Vec::new();
        for &task in &self.tasks {
            for &init in &self.inits {
                for &algorithm in &self.algorithms {
                    for &(min_length, max_length) in &self.lengths {
                        for replicate in 0..self.seeds {
                            v.push(RunSpec {
                                task,
                                init,
                                algorithm,
                                min_length,
                                max_length,
                                replicate,
                            });
                        }
                    }
                }
            }
        }
        v
    }
}

fn plan(a: &Args) -> Result<Plan, String> {
    let tasks: Vec<Task> = if a.tasks.iter().any(|t| t == "all") {
        bptt::experiment::tasks::ALL_TASKS.to_vec()
    } else {
        a.tasks
            .iter()
            .map(|t| t.parse())
            .collect::<Result<_, _>>()?
    };
    let inits = if a.inits.is_empty() {
        ALL_INITS.to_vec()
    } else {
        a.inits.iter().map(|i| i.0).collect()
    };
    let algorithms = if a.algorithms.is_empty() {
        ALL_ALGORITHMS.to_vec()
    } else {
        a.algorithms.iter().map(|x| x.0).collect()
    };
    let positive = |what: &str, v: u64| {
        if v == 0 {
            Err(format!("--{what} must be at least 1"))
        } else {
            Ok(())
        }
    };
    positive("seeds", a.seeds)?;
    positive("updates", a.updates)?;
    positive("hidden", a.hidden as u64)?;
    positive("batch", a.batch as u64)?;
    positive("eval-every", a.eval_every)?;
    positive("log-every", a.log_every)?;
    positive("eval-sequences", a.eval_sequences as u64)?;
    if !(a.clip > 0.0 && a.clip.is_finite()) {
        return Err(format!("--clip must be a positive number, got {}", a.clip));
    }
    if !(a.alpha >= 0.0 && a.alpha.is_finite()) {
        return Err(format!(
            "--alpha must be a non-negative number, got {}",
            a.alpha
        ));
    }
    if a.omega_bound.is_nan() || a.omega_bound < 0.0 {
        return Err(format!(
            "--omega-bound must be non-negative, got {}",
            a.omega_bound
        ));
    }
    let optimizer = match a.optimizer.as_str() {
        "adam" => Optimizer::adam(a.lr),
        _ => Optimizer::Sgd {
            lr: a.lr,
            momentum: a.momentum,
        },
    };
    optimizer.validate().map_err(|e| e.to_string())?;
    let check_length = |l: usize| -> Result<(), String> {
        for &t in &tasks {
            if l < t.min_length() {
                return Err(format!(
                    "length {l} is below the minimum {} of {t}",
                    t.min_length()
                ));
            }
        }
        Ok(())
    };
    let (lengths, generalize) = if a.generalize {
        let (lo, hi) = a
            .train_lengths
            .split_once(':')
            .and_then(|(l, h)| Some((l.trim().parse().ok()?, h.trim().parse().ok()?)))
            .ok_or_else(|| {
                format!(
                    "--train-lengths: expected MIN:MAX, got '{}'",
                    a.train_lengths
                )
            })?;
        if lo > hi {
            return Err(format!("--train-lengths: MIN {lo} is above MAX {hi}"));
        }
        check_length(lo)?;
        for &l in &a.eval_lengths {
            check_length(l)?;
        }
        (vec![(lo, hi)], Some(a.eval_lengths.clone()))
    } else {
        for &l in &a.lengths {
            check_length(l)?;
        }
        (a.lengths.iter().map(|&l| (l, l)).collect(), None)
    };
    // the run list and its results, held at once, and every worker's evaluation workspace
    let count = (tasks.len() as u128)
        .checked_mul(inits.len() as u128)
        .and_then(|x| x.checked_mul(algorithms.len() as u128))
        .and_then(|x| x.checked_mul(lengths.len() as u128))
        .and_then(|x| x.checked_mul(u128::from(a.seeds)));
    let longest = lengths
        .iter()
        .map(|l| l.1)
        .chain(generalize.iter().flatten().copied())
        .max()
        .unwrap_or(1) as u128;
    let h = a.hidden as u128;
    let estimate = count.and_then(|runs| {
        // ~1 KB per run's spec and summary; a worker: the training tape (T·B steps) and a
        // 1000-sequence evaluation chunk (≤ 32 MB), in f64
        let per_worker = (4 * h + 8)
            .checked_mul(longest.checked_mul(a.batch as u128)?)?
            .checked_mul(8)?
            .checked_add(1 << 25)?;
        runs.checked_mul(1024)?
            .checked_add(per_worker.checked_mul(rayon::current_num_threads().max(1) as u128)?)
    });
    driver::check_plan_memory(
        estimate,
        &format!(
            "{} runs of up to {longest} steps",
            count.unwrap_or(u128::MAX)
        ),
    )?;
    let range_test_lengths = lengths
        .iter()
        .any(|&(lo, hi)| lo < hi)
        .then_some(pathological::RANGE_TEST_LENGTHS);
    Ok(Plan {
        tasks,
        inits,
        algorithms,
        lengths,
        seeds: a.seeds,
        hyper: Hyper {
            hidden: a.hidden,
            batch: a.batch,
            optimizer,
            clip: a.clip,
            alpha: a.alpha,
            omega_bound: a.omega_bound,
            updates: a.updates,
            eval_every: a.eval_every,
            log_every: a.log_every,
            eval_sequences: a.eval_sequences,
            dtype: a.dtype,
        },
        range_test_lengths,
        generalize,
        seed: a.shard.seed,
    })
}

fn length_label(s: &RunSpec) -> String {
    if s.min_length == s.max_length {
        s.min_length.to_string()
    } else {
        format!("{}:{}", s.min_length, s.max_length)
    }
}

/// The tables' rows of one finished run (curves 0, final 1, generalisation 2).
fn run_rows(s: &RunSpec, o: &Outcome, generalized: &[(usize, usize, usize)]) -> Rows {
    let (task, init, algorithm) = (
        s.task.to_string(),
        s.init.to_string(),
        s.algorithm.to_string(),
    );
    let (length, seed) = (length_label(s), s.replicate);
    let mut rows = Rows::new(3);
    for p in &o.curve {
        rows.push(
            0,
            &CurveRow {
                task: &task,
                init: &init,
                algorithm: &algorithm,
                length: &length,
                seed,
                update: p.update,
                loss: p.record.loss,
                grad_norm: p.record.grad_norm,
                max_grad_norm: p.max_grad_norm,
                clipped: p.clipped,
                safety: p.safety,
                omega: p.record.omega,
                valid_error: p.valid_error,
            },
        );
    }
    rows.push(
        1,
        &FinalRow {
            task: task.clone(),
            init: init.clone(),
            algorithm: algorithm.clone(),
            length: length.clone(),
            seed,
            updates: o.updates,
            test_error: o.test_error,
            success: u8::from(o.success),
            diverged: u8::from(o.diverged),
            clipped_updates: o.curve.iter().map(|p| p.clipped).sum(),
            safety_updates: o.curve.iter().map(|p| p.safety).sum(),
        },
    );
    for &(len, n, errors) in generalized {
        rows.push(
            2,
            &GenRow {
                task: &task,
                init: &init,
                algorithm: &algorithm,
                train_lengths: &length,
                seed,
                length: len,
                sequences: n,
                errors,
                error_rate: errors as f64 / n as f64,
            },
        );
    }
    rows
}

/// The generalisation test: `n` fresh sequences at each length from the run's stream 4.
fn generalization(
    spec: &RunSpec,
    o: &Outcome,
    lengths: &[usize],
    n: usize,
    seed: u64,
) -> Result<Vec<(usize, usize, usize)>, String> {
    let mut ws = pathological::evaluator(&o.model, spec.task).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (i, &len) in lengths.iter().enumerate() {
        let mut rng = spec.stream(seed, &[4, i as u64]);
        let rate = pathological::error_rate(&mut ws, &o.model, spec.task, &[len], n, &mut rng)
            .map_err(|e| e.to_string())?;
        out.push((len, n, (rate * n as f64).round() as usize));
    }
    Ok(out)
}

fn save_model(dir: &Path, spec: &RunSpec, o: &Outcome, plan: &Plan) -> Result<(), String> {
    let mut meta = BTreeMap::new();
    meta.insert("run".to_string(), spec.id());
    meta.insert(
        "activation".into(),
        o.model.net.cell.activation().name().into(),
    );
    meta.insert("updates".into(), o.updates.to_string());
    meta.insert("test_error".into(), o.test_error.to_string());
    meta.insert("seed".into(), plan.seed.to_string());
    let bytes = bptt::nn::import::to_safetensors(
        &[
            ("", o.model.net.cell.params(), "_l0"),
            ("readout.", o.model.readout.params(), ""),
        ],
        meta,
    )
    .map_err(|e| e.to_string())?;
    let path = dir.join(format!("{}.safetensors", spec.id()));
    write_atomic(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The §4.1 grid as a driver experiment: one chunk per run, runs in parallel.
struct Grid {
    plan: Plan,
    runs: Vec<RunSpec>,
}

impl Experiment for Grid {
    const NAME: &'static str = "pathological";
    const UNIT: &'static str = "runs";
    const OUTPUT_DIRS: &'static [&'static str] = &["models"];

    fn plan(&self) -> serde_json::Value {
        serde_json::to_value(&self.plan).expect("the plan serializes")
    }
    fn tables(&self) -> Vec<Table> {
        let mut t = vec![
            Table::of::<CurveRow>("curves.csv"),
            Table::of::<FinalRow>("final.csv"),
        ];
        if self.plan.generalize.is_some() {
            t.push(Table::of::<GenRow>("generalization.csv"));
        }
        t
    }
    fn chunks(&self) -> usize {
        self.runs.len()
    }
    fn parallel_chunks(&self) -> bool {
        true
    }
    fn compute(&self, index: usize, ctx: &Context<'_>) -> Result<Rows, String> {
        let (spec, plan) = (&self.runs[index], &self.plan);
        let o = pathological::train(spec, &plan.hyper, plan.seed)
            .map_err(|e| format!("run {}: {e}", spec.id()))?;
        let generalized = match &plan.generalize {
            Some(lengths) => {
                generalization(spec, &o, lengths, plan.hyper.eval_sequences, plan.seed)?
            }
            None => Vec::new(),
        };
        save_model(&ctx.out().join("models"), spec, &o, plan)?;
        ctx.progress(1);
        Ok(run_rows(spec, &o, &generalized))
    }

    fn summarize(plan: &serde_json::Value, out: &Outputs<'_>) -> Result<Summary, String> {
        let finals: Vec<FinalRow> = out.rows("final.csv")?;
        // success counts per (task, init, algorithm) × length, in the order of the rows
        let mut groups: Vec<(String, String, String)> = Vec::new();
        let mut lengths: Vec<String> = Vec::new();
        for r in &finals {
            let g = (r.task.clone(), r.init.clone(), r.algorithm.clone());
            if !groups.contains(&g) {
                groups.push(g);
            }
            if !lengths.contains(&r.length) {
                lengths.push(r.length.clone());
            }
        }
        let wins = |g: &(String, String, String), l: &str| {
            finals
                .iter()
                .filter(|r| (&r.task, &r.init, &r.algorithm) == (&g.0, &g.1, &g.2))
                .filter(|r| r.length == l && r.success == 1)
                .count()
        };
        let mut table = format!(
            "\nsuccesses (of {} seeds) — under 1% errors on 10,000 fresh sequences:\n{:<22} {:<11} {:<7}",
            plan["seeds"], "task", "init", "alg"
        );
        for l in &lengths {
            write!(table, " {l:>8}").unwrap();
        }
        let mut successes = Vec::new();
        for g in &groups {
            write!(table, "\n{:<22} {:<11} {:<7}", g.0, g.1, g.2).unwrap();
            for l in &lengths {
                let n = wins(g, l);
                write!(table, " {n:>8}").unwrap();
                successes.push(serde_json::json!({
                    "task": g.0, "init": g.1, "algorithm": g.2, "length": l, "successes": n,
                }));
            }
        }
        Ok(Summary {
            failure: None,
            results: serde_json::json!({
                "runs": finals.len(),
                "successes": successes,
                "diverged": finals.iter().filter(|r| r.diverged == 1).count(),
            }),
            table,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    driver::drive(&args.common, Some(&args.shard), &args, || {
        let plan = plan(&args)?;
        Ok(Grid {
            runs: plan.runs(),
            plan,
        })
    })
}
