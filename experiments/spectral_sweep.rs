//! `spectral-sweep`: how ‖∂L/∂h_k‖ decays with the distance T − k, as a function of the spectral
//! radius ρ of the recurrent matrix, for every cell, over thousands of random matrices.
//!
//! Output (schemas in experiments/README.md): `spectral_sweep.csv` (one row per cell, ensemble,
//! ρ, matrix, k), `summary.csv` (one row per cell, ensemble, ρ) and `spectral_sweep.json`
//! (provenance). Exit status: 0 done, 1 I/O failure, 2 bad arguments.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use bptt::experiment::driver::{ChunkStore, CommonArgs, git_commit, now_rfc3339, write_atomic};
use bptt::experiment::sweep::{MatrixResult, Sizes, Workspace, loss_direction, run_matrix};
use bptt::nn::cell::Cell;
use bptt::nn::cells::CellKind;
use bptt::numerics::spectral::Ensemble;
use clap::Parser;
use rayon::prelude::*;

const EXPERIMENT: &str = "spectral-sweep";
const LONG_HEADER: &str = "cell,ensemble,rho,matrix,k,grad_norm,log10_grad_norm,spectral_radius,sigma_max,pascanu_bound,decay_rate,nonfinite";
const SUMMARY_HEADER: &str = "cell,ensemble,rho,ln_rho,matrices,nonfinite,redraws,decay_mean,decay_sem,decay_median,decay_q05,decay_q25,decay_q75,decay_q95,log10_grad_norm_k0_mean,spectral_radius_mean,sigma_max_mean";

#[derive(Parser, Debug, serde::Serialize)]
#[command(
    name = "spectral-sweep",
    version,
    about = "Gradient-norm decay ‖∂L/∂h_k‖ against the spectral radius of W_hh, over many random matrices.",
    long_about = "Gradient-norm decay ‖∂L/∂h_k‖ against the spectral radius of W_hh, over many random matrices.\n\n\
        For every cell, ensemble, spectral radius ρ and matrix: draw the recurrent matrix (for gated cells \
        every gate's recurrent block), rescale it to spectral radius exactly ρ, draw W_ih ~ N(0, 1/input) and \
        B input sequences x_t ~ N(0, 1), run T steps from h_0 = 0 (zero biases), and back-propagate \
        L = Σ_b v·h_T (v a fixed random unit vector) to get ∂L/∂h_k for k = 0..T. Records the batch means of \
        ‖∂L/∂h_k‖ and log10‖∂L/∂h_k‖, ρ, σ_max, Pascanu's bound (γ σ_max)^(T−k) and the decay rate \
        (least-squares slope of ln‖∂L/∂h_k‖ against T−k; ln ρ is its theory value for the linear cell).\n\n\
        Example: spectral-sweep --cells rnn-tanh,rnn-linear --rho 0.8:1.2:0.1 --matrices 50"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long, value_delimiter = ',', value_parser = parse_cell, help = cells_help())]
    cells: Vec<CellKind>,
    /// Matrix ensembles, comma-separated: gaussian (iid N(0,1/n)), orthogonal (Haar), sparse or sparseK (K non-zeros per row, default 15) [default: gaussian]
    #[arg(long, value_delimiter = ',', value_parser = parse_ensemble)]
    ensemble: Vec<EnsembleArg>,
    /// Spectral radii: START:STOP:STEP (inclusive) or a comma-separated list [default: 0.5:1.5:0.05, 21 values]
    #[arg(long, value_name = "SPEC", allow_hyphen_values = true)]
    rho: Option<String>,
    /// Matrices per radius (per cell and ensemble) [default: 20; preset: 100]
    #[arg(long)]
    matrices: Option<usize>,
    /// Hidden units n [default: 128]
    #[arg(long)]
    hidden: Option<usize>,
    /// Input size m [default: 32]
    #[arg(long)]
    input: Option<usize>,
    /// Steps T [default: 100]
    #[arg(long)]
    steps: Option<usize>,
    /// Sequences per matrix B (the batch, as GEMM columns) [default: 16]
    #[arg(long)]
    batch: Option<usize>,
    /// Preset workload: sweep-tanh-128 = the peers' workload in experiments/peers (rnn-tanh, gaussian, n=128, m=32, T=100, B=16, 21 radii in [0.5, 1.5], 100 matrices each); explicit flags override it
    #[arg(long, value_parser = ["sweep-tanh-128"])]
    preset: Option<String>,
    /// Instead of computing: merge the outputs of shard runs (their --out directories, in shard order) into --out
    #[arg(long, value_name = "DIR", num_args = 1.., conflicts_with_all = ["resume"])]
    merge: Vec<PathBuf>,
}

/// `--cells`' help: the names of the cell registry.
fn cells_help() -> String {
    let names: Vec<_> = CellKind::ALL.iter().map(|k| k.name()).collect();
    format!(
        "Cells, comma-separated: {} [default: all]",
        names.join(", ")
    )
}

thread_local! {
    /// The sweep's workspace of this worker thread, with the hidden size it was built for.
    static WORKSPACE: std::cell::RefCell<Option<(usize, Workspace)>> =
        const { std::cell::RefCell::new(None) };
}

fn parse_cell(s: &str) -> Result<CellKind, String> {
    s.parse().map_err(|e: bptt::error::BpttError| e.to_string())
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(into = "String")]
struct EnsembleArg(Ensemble);
impl From<EnsembleArg> for String {
    fn from(e: EnsembleArg) -> String {
        e.0.to_string()
    }
}
fn parse_ensemble(s: &str) -> Result<EnsembleArg, String> {
    s.parse()
        .map(EnsembleArg)
        .map_err(|e: bptt::error::BpttError| e.to_string())
}

/// The resolved work of a run.
#[derive(Clone, Debug, serde::Serialize)]
struct Plan {
    cells: Vec<String>,
    ensembles: Vec<String>,
    rho: Vec<f64>,
    matrices: usize,
    sizes: Sizes,
    seed: u64,
    shard: String,
    #[serde(skip)]
    cell_values: Vec<CellKind>,
    #[serde(skip)]
    ensemble_values: Vec<Ensemble>,
}

impl Plan {
    /// One chunk per (cell, ensemble, ρ), in this lexicographic order.
    fn groups(&self) -> Vec<(CellKind, Ensemble, usize)> {
        let mut g = Vec::new();
        for &c in &self.cell_values {
            for &e in &self.ensemble_values {
                for r in 0..self.rho.len() {
                    g.push((c, e, r));
                }
            }
        }
        g
    }
}

/// Parse `START:STOP:STEP` (inclusive) or `a,b,c`.
fn parse_rho(spec: &str) -> Result<Vec<f64>, String> {
    let bad = |why: &str| format!("invalid --rho '{spec}': {why}");
    let values: Vec<f64> = if spec.contains(':') {
        let parts: Vec<f64> = spec
            .split(':')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("expected START:STOP:STEP with numbers"))?;
        let [start, stop, step] = parts[..] else {
            return Err(bad("expected START:STOP:STEP"));
        };
        if !(step > 0.0 && step.is_finite()) {
            return Err(bad("STEP must be positive"));
        }
        if stop < start || stop.is_nan() {
            return Err(bad("STOP must not be below START"));
        }
        let n = ((stop - start) / step + 1e-9).floor() as usize + 1;
        if n > 100_000 {
            return Err(bad("more than 100000 values"));
        }
        // round to 12 decimals so that 0.5 + 3·0.05 prints as 0.65
        (0..n)
            .map(|i| ((start + i as f64 * step) * 1e12).round() / 1e12)
            .collect()
    } else {
        spec.split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("expected a comma-separated list of numbers"))?
    };
    if values.is_empty() || values.iter().any(|r| !(*r > 0.0 && r.is_finite())) {
        return Err(bad("every radius must be a positive finite number"));
    }
    Ok(values)
}

fn plan(args: &Args) -> Result<Plan, String> {
    let preset = args.preset.is_some();
    let cells: Vec<CellKind> = if !args.cells.is_empty() {
        args.cells.clone()
    } else if preset {
        vec![CellKind::RnnTanh]
    } else {
        CellKind::ALL.to_vec()
    };
    let ensembles: Vec<Ensemble> = if args.ensemble.is_empty() {
        vec![Ensemble::Gaussian]
    } else {
        args.ensemble.iter().map(|e| e.0).collect()
    };
    let pick = |v: Option<usize>,
                default: usize,
                preset_value: usize,
                name: &str|
     -> Result<usize, String> {
        let x = v.unwrap_or(if preset { preset_value } else { default });
        if x == 0 {
            return Err(format!("--{name} must be at least 1"));
        }
        Ok(x)
    };
    let sizes = Sizes {
        hidden: pick(args.hidden, 128, 128, "hidden")?,
        input: pick(args.input, 32, 32, "input")?,
        steps: pick(args.steps, 100, 100, "steps")?,
        batch: pick(args.batch, 16, 16, "batch")?,
    };
    let matrices = pick(args.matrices, 20, 100, "matrices")?;
    let rho = parse_rho(args.rho.as_deref().unwrap_or("0.5:1.5:0.05"))?;
    // what one chunk (one cell × ensemble × ρ) holds at once: every worker's workspace (the
    // largest cell's tape, weights and eigenvalue buffers) and the chunk's results and CSV rows
    let (n, d, t, b) = (
        sizes.hidden as u128,
        sizes.input as u128,
        sizes.steps as u128,
        sizes.batch as u128,
    );
    // (the thread pool is not built yet: the flag, or every core)
    let workers = args
        .common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1) as u128;
    let estimate = (|| {
        let tape = (7 * n)
            .checked_mul((t + 1).checked_mul(b)?)?
            .checked_mul(3)?;
        let weights = (4 * n).checked_mul(n.checked_add(d)?)?.checked_mul(2)?;
        let eigen = n.checked_mul(n)?.checked_mul(6)?;
        let inputs = d.checked_mul(t.checked_mul(b)?)?;
        let per_worker = tape
            .checked_add(weights)?
            .checked_add(eigen)?
            .checked_add(inputs)?
            .checked_mul(8)?;
        // per matrix: two T+1 vectors and T+1 CSV rows of ~200 bytes
        let per_matrix = (t + 1).checked_mul(16 + 200)?;
        per_worker
            .checked_mul(workers)?
            .checked_add((matrices as u128).checked_mul(per_matrix)?)
    })();
    bptt::experiment::driver::check_plan_memory(
        estimate,
        &format!(
            "{workers} workspaces for --hidden {n} --input {d} --steps {t} --batch {b}, \
             and {matrices} matrices' rows per chunk"
        ),
    )?;
    Ok(Plan {
        cells: cells.iter().map(|c| c.to_string()).collect(),
        ensembles: ensembles.iter().map(|e| e.to_string()).collect(),
        rho,
        matrices,
        sizes,
        seed: args.common.seed,
        shard: args.common.shard.to_string(),
        cell_values: cells,
        ensemble_values: ensembles,
    })
}

/// The long-CSV rows and the summary row of one chunk.
fn format_chunk(
    plan: &Plan,
    cell: CellKind,
    ens: Ensemble,
    rho: f64,
    results: &[MatrixResult],
) -> (String, String) {
    let steps = plan.sizes.steps;
    let mut long = String::new();
    // Pascanu's bound (γ σ_max)^{T−k}, where it applies (the vanilla cells)
    let gamma = cell.zeros::<f64>(1, 1).derivative_bound();
    for (m, r) in results.iter().enumerate() {
        for k in 0..=steps {
            let bound = gamma.map_or(f64::NAN, |g| (g * r.sigma_max).powi((steps - k) as i32));
            writeln!(
                long,
                "{cell},{ens},{rho},{m},{k},{},{},{},{},{bound},{},{}",
                r.grad_norm[k],
                r.log10_grad_norm[k],
                r.spectral_radius,
                r.sigma_max,
                r.decay_rate,
                u8::from(r.nonfinite)
            )
            .unwrap();
        }
    }
    let mut rates: Vec<f64> = results
        .iter()
        .map(|r| r.decay_rate)
        .filter(|d| d.is_finite())
        .collect();
    rates.sort_by(f64::total_cmp);
    let n = rates.len();
    let mean = rates.iter().sum::<f64>() / n as f64;
    let sem = if n > 1 {
        (rates.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64 / n as f64).sqrt()
    } else {
        f64::NAN
    };
    // quantile with linear interpolation between order statistics (numpy's default)
    let q = |p: f64| {
        if n == 0 {
            return f64::NAN;
        }
        let x = p * (n - 1) as f64;
        let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
        rates[lo] + (rates[hi] - rates[lo]) * (x - lo as f64)
    };
    let avg = |f: &dyn Fn(&MatrixResult) -> f64| {
        results.iter().map(f).sum::<f64>() / results.len() as f64
    };
    let summary = format!(
        "{cell},{ens},{rho},{},{},{},{},{mean},{sem},{},{},{},{},{},{},{},{}\n",
        rho.ln(),
        results.len(),
        results.iter().filter(|r| r.nonfinite).count(),
        results.iter().map(|r| r.redraws).sum::<u32>(),
        q(0.5),
        q(0.05),
        q(0.25),
        q(0.75),
        q(0.95),
        avg(&|r| r.log10_grad_norm[0]),
        avg(&|r| r.spectral_radius),
        avg(&|r| r.sigma_max),
    );
    (long, summary)
}

fn io_error(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

/// Concatenate `header` and `parts` into `path` atomically.
fn assemble(
    path: &Path,
    header: &str,
    parts: impl Iterator<Item = Result<Vec<u8>, String>>,
) -> Result<(), String> {
    let mut bytes = format!("{header}\n").into_bytes();
    for p in parts {
        bytes.extend(p?);
    }
    write_atomic(path, &bytes).map_err(|e| io_error(path, e))
}

/// Merge shard output directories (in order) into `out`.
fn merge(dirs: &[PathBuf], out: &Path) -> Result<(), String> {
    let body = |dir: &PathBuf, name: &str, header: &str| -> Result<Vec<u8>, String> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        let rest = text
            .strip_prefix(header)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or_else(|| {
                format!(
                    "{}: not a {EXPERIMENT} output (unexpected header)",
                    path.display()
                )
            })?;
        Ok(rest.as_bytes().to_vec())
    };
    assemble(
        &out.join("spectral_sweep.csv"),
        LONG_HEADER,
        dirs.iter()
            .map(|d| body(d, "spectral_sweep.csv", LONG_HEADER)),
    )?;
    assemble(
        &out.join("summary.csv"),
        SUMMARY_HEADER,
        dirs.iter().map(|d| body(d, "summary.csv", SUMMARY_HEADER)),
    )?;
    let sidecars: Vec<serde_json::Value> = dirs
        .iter()
        .map(|d| {
            let p = d.join("spectral_sweep.json");
            std::fs::read(&p)
                .map_err(|e| io_error(&p, e))
                .and_then(|b| {
                    serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", p.display()))
                })
        })
        .collect::<Result<_, _>>()?;
    let meta = serde_json::json!({
        "experiment": EXPERIMENT,
        "merged_from": dirs,
        "merged_at": now_rfc3339(),
        "crate_version": env!("CARGO_PKG_VERSION"),
        "git_commit": git_commit(),
        "shards": sidecars,
    });
    let path = out.join("spectral_sweep.json");
    write_atomic(
        &path,
        serde_json::to_string_pretty(&meta).unwrap().as_bytes(),
    )
    .map_err(|e| io_error(&path, e))
}

fn print_summary_table(plan: &Plan, summaries: &[String]) {
    // summary rows are in (cell, ensemble, ρ) order; print per ensemble a ρ × cell table of mean decay rates
    let per_cell = plan.ensemble_values.len() * plan.rho.len();
    for (e, ens) in plan.ensembles.iter().enumerate() {
        println!("\nmean decay rate d(ln‖∂L/∂h_k‖)/d(T−k), ensemble {ens}:");
        let mut header = format!("{:>7} {:>9}", "rho", "ln rho");
        for c in &plan.cells {
            write!(header, " {c:>12}").unwrap();
        }
        println!("{header}");
        for (r, rho) in plan.rho.iter().enumerate() {
            let mut line = format!("{rho:>7.3} {:>9.4}", rho.ln());
            for c in 0..plan.cells.len() {
                let row = &summaries[c * per_cell + e * plan.rho.len() + r];
                let mean: f64 = row
                    .split(',')
                    .nth(7)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                write!(line, " {mean:>12.5}").unwrap();
            }
            println!("{line}");
        }
    }
}

fn run(args: &Args) -> Result<(), (u8, String)> {
    let usage = |e: String| (2u8, e);
    let failure = |e: String| (1u8, e);
    let out = args.common.out_dir(EXPERIMENT);
    if !args.merge.is_empty() {
        return merge(&args.merge, &out).map_err(failure);
    }
    let plan = plan(args).map_err(usage)?;
    let threads = args
        .common
        .init_threads()
        .map_err(|e| usage(e.to_string()))?;
    let start_time = now_rfc3339();
    let clock = Instant::now();
    let manifest = serde_json::to_value(&plan).unwrap();
    let store =
        ChunkStore::open(&out, &manifest, args.common.resume).map_err(|e| usage(e.to_string()))?;

    let groups = plan.groups();
    let mine = args.common.shard.range(groups.len());
    let todo: Vec<usize> = mine.clone().filter(|&g| !store.is_done(g)).collect();
    let bar = if args.common.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new((todo.len() * plan.matrices) as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} matrices, eta {eta}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        b
    };
    let v = loss_direction(plan.seed, plan.sizes.hidden);
    for &g in &todo {
        let (cell, ens, r) = groups[g];
        let rho = plan.rho[r];
        let results: Vec<MatrixResult> = (0..plan.matrices)
            .into_par_iter()
            .map(|m| {
                // one workspace per worker thread for the whole run (rayon's map_init would
                // build one per split: fresh buffers, page faults, ~10 % of the run)
                let res = WORKSPACE.with_borrow_mut(|slot| {
                    let ws = match slot {
                        Some((n, ws)) if *n == plan.sizes.hidden => ws,
                        _ => {
                            &mut slot
                                .insert((plan.sizes.hidden, Workspace::new(plan.sizes.hidden)))
                                .1
                        }
                    };
                    run_matrix(ws, cell, ens, rho, r, m, plan.sizes, plan.seed, &v)
                });
                bar.inc(1);
                res
            })
            .collect();
        let (long, summary) = format_chunk(&plan, cell, ens, rho, &results);
        store
            .write(
                g,
                &[("csv", long.as_bytes()), ("summary", summary.as_bytes())],
            )
            .map_err(|e| failure(format!("writing chunk {g}: {e}")))?;
    }
    bar.finish_and_clear();
    let compute_seconds = clock.elapsed().as_secs_f64();

    let read = |g: usize, part: &str| {
        store
            .read(g, part)
            .map_err(|e| format!("reading chunk {g}: {e}"))
    };
    assemble(
        &out.join("spectral_sweep.csv"),
        LONG_HEADER,
        mine.clone().map(|g| read(g, "csv")),
    )
    .map_err(failure)?;
    let summaries: Vec<String> = mine
        .clone()
        .map(|g| read(g, "summary").map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect::<Result<_, _>>()
        .map_err(failure)?;
    assemble(
        &out.join("summary.csv"),
        SUMMARY_HEADER,
        summaries.iter().map(|s| Ok(s.clone().into_bytes())),
    )
    .map_err(failure)?;
    let (redraws, nonfinite): (u64, u64) = summaries.iter().fold((0, 0), |(r, n), s| {
        let f: Vec<&str> = s.trim_end().split(',').collect();
        (
            r + f[6].parse::<u64>().unwrap_or(0),
            n + f[5].parse::<u64>().unwrap_or(0),
        )
    });
    let sidecar = serde_json::json!({
        "experiment": EXPERIMENT,
        "crate_version": env!("CARGO_PKG_VERSION"),
        "git_commit": git_commit(),
        "command_line": std::env::args().collect::<Vec<_>>(),
        "arguments": args,
        "plan": plan,
        "seed": plan.seed,
        "threads": threads,
        "shard": plan.shard,
        "chunks": {"in_shard": mine.len(), "computed_now": todo.len(), "resumed": args.common.resume},
        "start_time": start_time,
        "end_time": now_rfc3339(),
        "wall_seconds": clock.elapsed().as_secs_f64(),
        "compute_seconds_this_invocation": compute_seconds,
        "matrices": mine.len() * plan.matrices,
        "matrices_redrawn": redraws,
        "matrices_nonfinite": nonfinite,
        "loss": "L = sum_b v . h_T^(b), v a fixed random unit vector; grad_norm = mean over b of ||dL/dh_k^(b)||_2",
    });
    let path = out.join("spectral_sweep.json");
    write_atomic(
        &path,
        serde_json::to_string_pretty(&sidecar).unwrap().as_bytes(),
    )
    .map_err(|e| failure(io_error(&path, e)))?;
    store
        .remove()
        .map_err(|e| failure(format!("removing chunks: {e}")))?;

    if !args.common.quiet && mine.len() == groups.len() {
        print_summary_table(&plan, &summaries);
    }
    eprintln!(
        "wall_seconds={:.3} compute_seconds={compute_seconds:.3} matrices={} threads={threads} out={}",
        clock.elapsed().as_secs_f64(),
        mine.len() * plan.matrices,
        out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    bptt::experiment::driver::exit(run(&Args::parse()))
}
