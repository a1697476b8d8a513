//! `spectral-sweep`: how ‖∂L/∂h_k‖ decays with the distance T − k, as a function of the spectral
//! radius ρ of the recurrent matrix, for every cell, over thousands of random matrices.
//!
//! Beside each measured decay rate, the theories of it: the mean-field prediction (vanilla cells)
//! and the finite-time Lyapunov spectrum of the backward Jacobian product (every cell).
//!
//! Output (schemas in experiments/README.md): `spectral_sweep.csv` (one row per cell, ensemble,
//! ρ, matrix, k), `matrices.csv` (one row per matrix: the measured rate beside the theories),
//! `lyapunov.csv` (one row per matrix and exponent), `summary.csv` (one row per cell, ensemble,
//! ρ) and `spectral_sweep.json` (provenance). Exit status: 0 done, 1 I/O failure, 2 bad arguments.

use std::fmt::Write as _;
use std::process::ExitCode;

use bptt::experiment::driver::{
    self, CommonArgs, Context, Experiment, Outputs, Rows, ShardArgs, Summary, Table,
};
use bptt::experiment::sweep::{MatrixResult, Sizes, Theory, Workspace, loss_direction, run_matrix};
use bptt::nn::cell::Cell;
use bptt::nn::cells::CellKind;
use bptt::numerics::spectral::Ensemble;
use clap::Parser;
use rayon::prelude::*;

/// One row of `spectral_sweep.csv`: one cell, ensemble, ρ, matrix and step k.
#[derive(serde::Serialize, Default)]
struct LongRow<'a> {
    cell: &'a str,
    ensemble: &'a str,
    rho: f64,
    matrix: usize,
    k: usize,
    grad_norm: f64,
    log10_grad_norm: f64,
    spectral_radius: f64,
    sigma_max: f64,
    pascanu_bound: f64,
    decay_rate: f64,
    nonfinite: u8,
}

/// One row of `matrices.csv`: one matrix's measured decay rate beside the theories of it.
#[derive(serde::Serialize, Default)]
struct MatrixRow<'a> {
    cell: &'a str,
    ensemble: &'a str,
    rho: f64,
    matrix: usize,
    spectral_radius: f64,
    sigma_max: f64,
    weight_scale: f64,
    input_var: f64,
    decay_rate: f64,
    pascanu_slope: f64,
    mean_field_slope: f64,
    mean_field_asymptotic: f64,
    mean_field_q: f64,
    lyapunov_exponents: usize,
    lyapunov_top: f64,
    lyapunov_above: usize,
    nonfinite: u8,
}

/// One row of `lyapunov.csv`: exponent i (0 = the largest) of one matrix.
#[derive(serde::Serialize, Default)]
struct LyapunovRow<'a> {
    cell: &'a str,
    ensemble: &'a str,
    rho: f64,
    matrix: usize,
    i: usize,
    exponent: f64,
}

/// One row of `summary.csv`: the decay rates of one cell, ensemble and ρ over its matrices.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct SummaryRow {
    cell: String,
    ensemble: String,
    rho: f64,
    ln_rho: f64,
    matrices: usize,
    nonfinite: usize,
    redraws: u64,
    decay_mean: f64,
    decay_sem: f64,
    decay_median: f64,
    decay_q05: f64,
    decay_q25: f64,
    decay_q75: f64,
    decay_q95: f64,
    log10_grad_norm_k0_mean: f64,
    spectral_radius_mean: f64,
    sigma_max_mean: f64,
    weight_scale_mean: f64,
    pascanu_slope_mean: f64,
    mean_field_slope_mean: f64,
    mean_field_asymptotic_mean: f64,
    lyapunov_top_mean: f64,
    lyapunov_above_mean: f64,
}

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
    #[command(flatten)]
    shard: ShardArgs,
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
    /// Lyapunov exponents per matrix: all (every direction of the state; an LSTM's [h; c] has 2n), a number N (the N largest) or 0 (none) [default: all; preset: 0]
    #[arg(long, value_name = "all|N", value_parser = parse_exponents)]
    lyapunov: Option<usize>,
    /// Steps between the QR re-orthonormalisations of the Lyapunov computation [default: 5]
    #[arg(long, value_name = "STEPS")]
    qr_every: Option<usize>,
    /// A direction survives if its Lyapunov exponent (nats per step) is at least this: matrices.csv's lyapunov_above counts them [default: -0.1, a factor e^-10 over 100 steps]
    #[arg(long, value_name = "NATS", allow_hyphen_values = true)]
    lyapunov_threshold: Option<f64>,
    /// Preset workload: sweep-tanh-128 = the peers' workload in experiments/peers (rnn-tanh, gaussian, n=128, m=32, T=100, B=16, 21 radii in [0.5, 1.5], 100 matrices each); explicit flags override it
    #[arg(long, value_parser = ["sweep-tanh-128"])]
    preset: Option<String>,
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

/// `--lyapunov`: `all` (usize::MAX, clamped to each cell's state size), or a count.
fn parse_exponents(s: &str) -> Result<usize, String> {
    match s {
        "all" => Ok(usize::MAX),
        _ => s
            .parse()
            .map_err(|_| format!("expected 'all' or a number of exponents, got '{s}'")),
    }
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
    /// `all` or the number of Lyapunov exponents per matrix (`0`: none).
    lyapunov: String,
    qr_every: usize,
    lyapunov_threshold: f64,
    /// The same, for the computation (`usize::MAX`: all).
    #[serde(skip)]
    theory: Theory,
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
    for e in &ensembles {
        if let Ensemble::Sparse(k) = *e
            && k > sizes.hidden
        {
            return Err(format!(
                "--ensemble {e} puts {k} non-zeros in each row, more than --hidden {}: use \
                 sparseK with K ≤ {}",
                sizes.hidden, sizes.hidden
            ));
        }
    }
    let rho = parse_rho(args.rho.as_deref().unwrap_or("0.5:1.5:0.05"))?;
    let theory = Theory {
        lyapunov_exponents: args.lyapunov.unwrap_or(if preset { 0 } else { usize::MAX }),
        qr_every: pick(args.qr_every, 5, 5, "qr-every")?,
    };
    let lyapunov_threshold = args.lyapunov_threshold.unwrap_or(-0.1);
    if !lyapunov_threshold.is_finite() {
        return Err(format!(
            "--lyapunov-threshold must be a finite number of nats per step, got {lyapunov_threshold}"
        ));
    }
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
        // the Lyapunov segments: a tape of k steps × p columns, its inputs, one trajectory
        let p = (2 * n).min(theory.lyapunov_exponents as u128);
        let k = theory.qr_every as u128;
        let lyapunov = (7 * n)
            .checked_mul(2)?
            .checked_mul((k + 1).checked_mul(p)?)?
            .checked_mul(3)?
            .checked_add(d.checked_mul(k.checked_mul(p)?)?)?
            .checked_add((2 * n).checked_mul(t + 1)?.checked_mul(2)?)?;
        let per_worker = tape
            .checked_add(lyapunov)?
            .checked_add(weights)?
            .checked_add(eigen)?
            .checked_add(inputs)?
            .checked_mul(8)?;
        // per matrix: two T+1 vectors and T+1 CSV rows of ~200 bytes, p exponents and their rows
        let per_matrix = (t + 1)
            .checked_mul(16 + 200)?
            .checked_add(p.checked_mul(8 + 100)?)?;
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
        seed: args.shard.seed,
        lyapunov: match theory.lyapunov_exponents {
            usize::MAX => "all".to_string(),
            e => e.to_string(),
        },
        qr_every: theory.qr_every,
        lyapunov_threshold,
        theory,
        cell_values: cells,
        ensemble_values: ensembles,
    })
}

/// The rows of one chunk (one cell × ensemble × ρ): the long rows of every matrix and step, one
/// row per matrix with the theories, the Lyapunov exponents, and the chunk's summary row.
fn chunk_rows(
    plan: &Plan,
    cell: CellKind,
    ens: Ensemble,
    rho: f64,
    results: &[MatrixResult],
) -> Rows {
    let steps = plan.sizes.steps;
    let mut rows = Rows::new(4);
    // Pascanu's bound (γ σ_max)^{T−k}, where it applies (the vanilla cells)
    let gamma = cell.zeros::<f64>(1, 1).derivative_bound();
    let pascanu_slope = |r: &MatrixResult| gamma.map_or(f64::NAN, |g| (g * r.sigma_max).ln());
    let ensemble = ens.to_string();
    for (m, r) in results.iter().enumerate() {
        for k in 0..=steps {
            rows.push(
                0,
                &LongRow {
                    cell: cell.name(),
                    ensemble: &ensemble,
                    rho,
                    matrix: m,
                    k,
                    grad_norm: r.grad_norm[k],
                    log10_grad_norm: r.log10_grad_norm[k],
                    spectral_radius: r.spectral_radius,
                    sigma_max: r.sigma_max,
                    pascanu_bound: gamma
                        .map_or(f64::NAN, |g| (g * r.sigma_max).powi((steps - k) as i32)),
                    decay_rate: r.decay_rate,
                    nonfinite: u8::from(r.nonfinite),
                },
            );
        }
        rows.push(
            1,
            &MatrixRow {
                cell: cell.name(),
                ensemble: &ensemble,
                rho,
                matrix: m,
                spectral_radius: r.spectral_radius,
                sigma_max: r.sigma_max,
                weight_scale: r.weight_scale,
                input_var: r.input_var,
                decay_rate: r.decay_rate,
                pascanu_slope: pascanu_slope(r),
                mean_field_slope: r.mean_field_slope,
                mean_field_asymptotic: r.mean_field_asymptotic,
                mean_field_q: r.mean_field_q,
                lyapunov_exponents: r.lyapunov.len(),
                lyapunov_top: r.lyapunov.first().copied().unwrap_or(f64::NAN),
                lyapunov_above: above(&r.lyapunov, plan.lyapunov_threshold),
                nonfinite: u8::from(r.nonfinite),
            },
        );
        for (i, &exponent) in r.lyapunov.iter().enumerate() {
            rows.push(
                2,
                &LyapunovRow {
                    cell: cell.name(),
                    ensemble: &ensemble,
                    rho,
                    matrix: m,
                    i,
                    exponent,
                },
            );
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
    // the mean over the matrices where the value is finite (NaN if none is)
    let finite_avg = |f: &dyn Fn(&MatrixResult) -> f64| {
        let v: Vec<f64> = results.iter().map(f).filter(|x| x.is_finite()).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let with_lyapunov = results.iter().any(|r| !r.lyapunov.is_empty());
    rows.push(
        3,
        &SummaryRow {
            cell: cell.name().to_string(),
            ensemble,
            rho,
            ln_rho: rho.ln(),
            matrices: results.len(),
            nonfinite: results.iter().filter(|r| r.nonfinite).count(),
            redraws: results.iter().map(|r| u64::from(r.redraws)).sum(),
            decay_mean: mean,
            decay_sem: sem,
            decay_median: q(0.5),
            decay_q05: q(0.05),
            decay_q25: q(0.25),
            decay_q75: q(0.75),
            decay_q95: q(0.95),
            log10_grad_norm_k0_mean: avg(&|r| r.log10_grad_norm[0]),
            spectral_radius_mean: avg(&|r| r.spectral_radius),
            sigma_max_mean: avg(&|r| r.sigma_max),
            weight_scale_mean: avg(&|r| r.weight_scale),
            pascanu_slope_mean: avg(&pascanu_slope),
            mean_field_slope_mean: finite_avg(&|r| r.mean_field_slope),
            mean_field_asymptotic_mean: finite_avg(&|r| r.mean_field_asymptotic),
            lyapunov_top_mean: finite_avg(&|r| r.lyapunov.first().copied().unwrap_or(f64::NAN)),
            lyapunov_above_mean: if with_lyapunov {
                avg(&|r| above(&r.lyapunov, plan.lyapunov_threshold) as f64)
            } else {
                f64::NAN
            },
        },
    );
    rows
}

/// How many exponents are at least `threshold` (NaN and −∞ never are).
fn above(exponents: &[f64], threshold: f64) -> usize {
    exponents.iter().filter(|&&l| l >= threshold).count()
}

/// The sweep as a driver experiment: one chunk per (cell, ensemble, ρ), the matrices of a chunk
/// in parallel.
struct Sweep {
    plan: Plan,
    groups: Vec<(CellKind, Ensemble, usize)>,
    /// The fixed loss direction v of this seed.
    v: nalgebra::DVector<f64>,
}

impl Experiment for Sweep {
    const NAME: &'static str = "spectral-sweep";
    const UNIT: &'static str = "matrices";

    fn plan(&self) -> serde_json::Value {
        serde_json::to_value(&self.plan).expect("the plan serializes")
    }
    fn tables(&self) -> Vec<Table> {
        vec![
            Table::of::<LongRow>("spectral_sweep.csv"),
            Table::of::<MatrixRow>("matrices.csv"),
            Table::of::<LyapunovRow>("lyapunov.csv"),
            Table::of::<SummaryRow>("summary.csv"),
        ]
    }
    fn chunks(&self) -> usize {
        self.groups.len()
    }
    fn units(&self, _index: usize) -> u64 {
        self.plan.matrices as u64
    }
    fn compute(&self, index: usize, ctx: &Context<'_>) -> Result<Rows, String> {
        let (cell, ens, r) = self.groups[index];
        let (plan, rho) = (&self.plan, self.plan.rho[r]);
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
                    run_matrix(
                        ws,
                        cell,
                        ens,
                        rho,
                        r,
                        m,
                        plan.sizes,
                        plan.seed,
                        &self.v,
                        plan.theory,
                    )
                });
                ctx.progress(1);
                res
            })
            .collect();
        Ok(chunk_rows(plan, cell, ens, rho, &results))
    }

    fn summarize(_plan: &serde_json::Value, out: &Outputs<'_>) -> Result<Summary, String> {
        let rows: Vec<SummaryRow> = out.rows("summary.csv")?;
        let results = serde_json::json!({
            "matrices": rows.iter().map(|r| r.matrices).sum::<usize>(),
            "matrices_redrawn": rows.iter().map(|r| r.redraws).sum::<u64>(),
            "matrices_nonfinite": rows.iter().map(|r| r.nonfinite).sum::<usize>(),
            "loss": "L = sum_b v . h_T^(b), v a fixed random unit vector; grad_norm = mean over b of ||dL/dh_k^(b)||_2",
        });
        Ok(Summary {
            failure: None,
            results,
            table: decay_table(&rows),
        })
    }
}

/// Per ensemble, ρ × cell tables of the mean measured decay rates, the mean-field predictions
/// and the top Lyapunov exponents (a theory's table only where it has a value).
fn decay_table(rows: &[SummaryRow]) -> String {
    type Column = fn(&SummaryRow) -> f64;
    let quantities: [(&str, Column); 3] = [
        ("measured decay rate d(ln‖∂L/∂h_k‖)/d(T−k)", |r| {
            r.decay_mean
        }),
        ("mean-field prediction of the decay rate", |r| {
            r.mean_field_slope_mean
        }),
        ("top Lyapunov exponent", |r| r.lyapunov_top_mean),
    ];
    fn unique<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut v: Vec<&str> = Vec::new();
        for x in it {
            if !v.contains(&x) {
                v.push(x);
            }
        }
        v
    }
    let cells = unique(rows.iter().map(|r| r.cell.as_str()));
    let mut text = String::new();
    for ens in unique(rows.iter().map(|r| r.ensemble.as_str())) {
        for (i, (title, column)) in quantities.into_iter().enumerate() {
            // the measurement always; a theory where it has a value
            let of_ens = || rows.iter().filter(|r| r.ensemble == ens);
            if i > 0 && !of_ens().any(|r| column(r).is_finite()) {
                continue;
            }
            quantity_table(&mut text, rows, ens, &cells, title, column);
        }
    }
    text
}

/// One ρ × cell table of `column` for ensemble `ens`.
fn quantity_table(
    text: &mut String,
    rows: &[SummaryRow],
    ens: &str,
    cells: &[&str],
    title: &str,
    column: fn(&SummaryRow) -> f64,
) {
    writeln!(text, "\nmean {title}, ensemble {ens}:").unwrap();
    write!(text, "{:>7} {:>9}", "rho", "ln rho").unwrap();
    for c in cells {
        write!(text, " {c:>16}").unwrap();
    }
    let mut rhos: Vec<f64> = Vec::new();
    for r in rows.iter().filter(|r| r.ensemble == ens) {
        if !rhos.contains(&r.rho) {
            rhos.push(r.rho);
        }
    }
    for rho in rhos {
        write!(text, "\n{rho:>7.3} {:>9.4}", rho.ln()).unwrap();
        for c in cells {
            let mean = rows
                .iter()
                .find(|r| r.ensemble == ens && r.rho == rho && r.cell == *c)
                .map_or(f64::NAN, column);
            write!(text, " {mean:>16.5}").unwrap();
        }
    }
    text.push('\n');
}

fn main() -> ExitCode {
    let args = Args::parse();
    driver::drive(&args.common, Some(&args.shard), &args, || {
        let plan = plan(&args)?;
        Ok(Sweep {
            groups: plan.groups(),
            v: loss_direction(plan.seed, plan.sizes.hidden),
            plan,
        })
    })
}
