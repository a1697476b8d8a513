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
use std::time::Instant;

use bptt::experiment::driver::{ChunkStore, CommonArgs, git_commit, now_rfc3339, write_atomic};
use bptt::experiment::pathological::{
    self, ALL_ALGORITHMS, ALL_INITS, Algorithm, Hyper, Init, Outcome, RunSpec,
};
use bptt::experiment::tasks::Task;
use bptt::nn::cell::Cell;
use bptt::train::optim::Optimizer;
use bptt::train::trainer::Dtype;
use clap::Parser;
use rayon::prelude::*;

const EXPERIMENT: &str = "pathological";
const CURVE_HEADER: &str = "task,init,algorithm,length,seed,update,loss,grad_norm,max_grad_norm,clipped,safety,omega,valid_error";
const FINAL_HEADER: &str = "task,init,algorithm,length,seed,updates,test_error,success,diverged,clipped_updates,safety_updates";
const GEN_HEADER: &str =
    "task,init,algorithm,train_lengths,seed,length,sequences,errors,error_rate";

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
    seed: u64,
    shard: String,
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
        generalize,
        seed: a.common.seed,
        shard: a.common.shard.to_string(),
    })
}

/// Optional values as CSV fields (empty when absent).
fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn length_label(s: &RunSpec) -> String {
    if s.min_length == s.max_length {
        s.min_length.to_string()
    } else {
        format!("{}:{}", s.min_length, s.max_length)
    }
}

/// Curve rows, final row and generalisation rows of one finished run.
fn format_run(
    s: &RunSpec,
    o: &Outcome,
    generalized: &[(usize, usize, usize)],
) -> (String, String, String) {
    let key = format!(
        "{},{},{},{},{}",
        s.task,
        s.init,
        s.algorithm,
        length_label(s),
        s.replicate
    );
    let mut curve = String::new();
    for p in &o.curve {
        let r = &p.record;
        writeln!(
            curve,
            "{key},{},{},{},{},{},{},{},{}",
            p.update,
            r.loss,
            r.grad_norm,
            p.max_grad_norm,
            p.clipped,
            p.safety,
            r.omega,
            opt(p.valid_error)
        )
        .unwrap();
    }
    let clipped: u64 = o.curve.iter().map(|p| p.clipped).sum();
    let safety: u64 = o.curve.iter().map(|p| p.safety).sum();
    let fin = format!(
        "{key},{},{},{},{},{clipped},{safety}\n",
        o.updates,
        o.test_error,
        u8::from(o.success),
        u8::from(o.diverged)
    );
    let mut g = String::new();
    for &(len, n, errors) in generalized {
        writeln!(g, "{key},{len},{n},{errors},{}", errors as f64 / n as f64).unwrap();
    }
    (curve, fin, g)
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
        let rate = pathological::error_rate(&mut ws, &o.model, spec.task, n, &mut rng, |_| len)
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

fn print_table(plan: &Plan, finals: &[String]) {
    // success counts per (task, init, algorithm) × length
    println!(
        "\nsuccesses (of {} seeds) — under 1% errors on 10,000 fresh sequences:",
        plan.seeds
    );
    let mut header = format!("{:<22} {:<11} {:<7}", "task", "init", "alg");
    for &(lo, hi) in &plan.lengths {
        let l = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}:{hi}")
        };
        write!(header, " {l:>8}").unwrap();
    }
    println!("{header}");
    let per_alg = plan.lengths.len() * plan.seeds as usize;
    for (g, chunk) in finals.chunks(per_alg).enumerate() {
        let t = g / (plan.inits.len() * plan.algorithms.len());
        let i = g / plan.algorithms.len() % plan.inits.len();
        let a = g % plan.algorithms.len();
        let mut line = format!(
            "{:<22} {:<11} {:<7}",
            plan.tasks[t].name(),
            plan.inits[i].name(),
            plan.algorithms[a].name()
        );
        for per_len in chunk.chunks(plan.seeds as usize) {
            let wins = per_len
                .iter()
                .filter(|r| r.trim_end().split(',').nth(7) == Some("1"))
                .count();
            write!(line, " {wins:>8}").unwrap();
        }
        println!("{line}");
    }
}

fn run(args: &Args) -> Result<(), (u8, String)> {
    let usage = |e: String| (2u8, e);
    let failure = |e: String| (1u8, e);
    let plan = plan(args).map_err(usage)?;
    let out = args.common.out_dir(EXPERIMENT);
    let threads = args
        .common
        .init_threads()
        .map_err(|e| usage(e.to_string()))?;
    // the run list and its results, held at once, and a worker's evaluation workspace
    let count = (plan.tasks.len() as u128)
        .checked_mul(plan.inits.len() as u128)
        .and_then(|x| x.checked_mul(plan.algorithms.len() as u128))
        .and_then(|x| x.checked_mul(plan.lengths.len() as u128))
        .and_then(|x| x.checked_mul(plan.seeds as u128));
    let longest = plan
        .lengths
        .iter()
        .map(|l| l.1)
        .chain(plan.generalize.iter().flatten().copied())
        .max()
        .unwrap_or(1) as u128;
    let h = plan.hyper.hidden as u128;
    let estimate = count.and_then(|runs| {
        // ~1 KB per run's spec and summary; a worker: the training tape (T·B steps) and a
        // 1000-sequence evaluation chunk (≤ 32 MB), in f64
        let per_worker = (4 * h + 8)
            .checked_mul(longest.checked_mul(plan.hyper.batch as u128)?)?
            .checked_mul(8)?
            .checked_add(1 << 25)?;
        runs.checked_mul(1024)?
            .checked_add(per_worker.checked_mul(rayon::current_num_threads().max(1) as u128)?)
    });
    bptt::experiment::driver::check_plan_memory(
        estimate,
        &format!(
            "{} runs of up to {longest} steps",
            count.unwrap_or(u128::MAX)
        ),
    )
    .map_err(usage)?;
    let runs = plan.runs();
    let range = args.common.shard.range(runs.len());
    let start_time = now_rfc3339();
    let clock = Instant::now();
    let manifest = serde_json::to_value(&plan).unwrap();
    let store =
        ChunkStore::open(&out, &manifest, args.common.resume).map_err(|e| usage(e.to_string()))?;
    let models = out.join("models");
    std::fs::create_dir_all(&models).map_err(|e| failure(format!("{}: {e}", models.display())))?;
    let todo: Vec<usize> = range.clone().filter(|&i| !store.is_done(i)).collect();
    let bar = if args.common.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(todo.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} runs, eta {eta}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        b
    };
    todo.par_iter()
        .try_for_each(|&i| -> Result<(), (u8, String)> {
            let spec = &runs[i];
            let o = pathological::train(spec, &plan.hyper, plan.seed)
                .map_err(|e| failure(format!("run {}: {e}", spec.id())))?;
            let generalized = match &plan.generalize {
                Some(lengths) => {
                    generalization(spec, &o, lengths, plan.hyper.eval_sequences, plan.seed)
                        .map_err(failure)?
                }
                None => Vec::new(),
            };
            save_model(&models, spec, &o, &plan).map_err(failure)?;
            let (curve, fin, g) = format_run(spec, &o, &generalized);
            store
                .write(
                    i,
                    &[
                        ("curve", curve.as_bytes()),
                        ("final", fin.as_bytes()),
                        ("gen", g.as_bytes()),
                    ],
                )
                .map_err(|e| failure(format!("{}: {e}", out.display())))?;
            bar.inc(1);
            Ok(())
        })?;
    bar.finish_and_clear();

    let read = |i: usize, part: &str| {
        store
            .read(i, part)
            .map_err(|e| failure(format!("chunk {i} of {}: {e}", out.display())))
    };
    let mut files = vec![
        ("curves.csv", CURVE_HEADER, "curve"),
        ("final.csv", FINAL_HEADER, "final"),
    ];
    if plan.generalize.is_some() {
        files.push(("generalization.csv", GEN_HEADER, "gen"));
    }
    let mut finals = Vec::new();
    for (name, header, part) in files {
        let mut bytes = format!("{header}\n").into_bytes();
        for i in range.clone() {
            let chunk = read(i, part)?;
            if part == "final" {
                finals.push(String::from_utf8_lossy(&chunk).into_owned());
            }
            bytes.extend(chunk);
        }
        let path = out.join(name);
        write_atomic(&path, &bytes).map_err(|e| failure(format!("{}: {e}", path.display())))?;
    }
    let sidecar = serde_json::json!({
        "experiment": EXPERIMENT,
        "crate_version": env!("CARGO_PKG_VERSION"),
        "git_commit": git_commit(),
        "arguments": args,
        "plan": plan,
        "runs": range.len(),
        "threads": threads,
        "start_time": start_time,
        "end_time": now_rfc3339(),
        "wall_seconds": clock.elapsed().as_secs_f64(),
        "resumed": args.common.resume,
    });
    let path = out.join("pathological.json");
    write_atomic(
        &path,
        serde_json::to_string_pretty(&sidecar).unwrap().as_bytes(),
    )
    .map_err(|e| failure(format!("{}: {e}", path.display())))?;
    store
        .remove()
        .map_err(|e| failure(format!("{}: {e}", out.display())))?;
    if !args.common.quiet && args.common.shard.range(runs.len()) == (0..runs.len()) {
        print_table(&plan, &finals);
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    bptt::experiment::driver::exit(run(&args))
}
