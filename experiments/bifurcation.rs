//! `bifurcation`: Pascanu et al.'s (2013, §2.2–2.3) single sigmoid unit `x_t = w·σ(x_{t−1}) + b`:
//! the bifurcation diagram (Fig. 3, after Doya 1993), the error surface
//! `E_T = (σ(x_T) − target)²` with its "wall" (Fig. 6), and gradient descent hitting the wall
//! with and without global-norm clipping.
//!
//! Parts (`--part`, default all), each writing a CSV and a JSON provenance sidecar into `--out`:
//! `diagram` (`diagram_fixed_points.csv`, `diagram_attractors.csv`, `diagram.json`), `surface`
//! (`surface.csv`, `surface.json`), `trajectories` (`trajectories.csv`, `trajectories.json`).
//! Schemas: experiments/README.md. No randomness: output is a function of the flags.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use bptt::experiment::driver::{CommonArgs, git_commit, now_rfc3339, write_atomic};
use bptt::experiment::dynamics::{
    bistable_interval, descend, error_and_gradient, fixed_points, iterate,
};
use clap::{Parser, ValueEnum};
use rayon::prelude::*;

const EXPERIMENT: &str = "bifurcation";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Part {
    Diagram,
    Surface,
    Trajectories,
    All,
}

#[derive(Parser, Debug, serde::Serialize)]
#[command(
    name = "bifurcation",
    version,
    about = "The single sigmoid unit x_t = w·σ(x_{t−1}) + b: bifurcation diagram, error surface with its wall, and clipped vs unclipped gradient descent (Pascanu et al. 2013, Figs 3 and 6).",
    long_about = "The single sigmoid unit x_t = w·σ(x_{t−1}) + b of Pascanu, Mikolov & Bengio (2013), §2.2–2.3.\n\n\
        diagram: for fixed w and a grid of b, every fixed point of x = w·σ(x) + b (bracketing root finder) with \
        its stability |w·σ'(x*)| < 1, and the state x_∞ reached from a spread of x_0.\n\
        surface: E_T = (σ(x_T) − target)² from x_0 and its exact gradient (BPTT through the 1-unit RNN) on a \
        (w, b) grid; reports where the gradient is steepest (the wall).\n\
        trajectories: gradient descent on (w, b) from several starts, plain and with global-norm clipping, every \
        step recorded.\n\n\
        Grids are START:STOP:N (N points, both ends included)."
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Which part to compute
    #[arg(long, value_enum, default_value = "all")]
    part: Part,
    /// Diagram: the fixed recurrent weight w
    #[arg(long, default_value_t = 5.0)]
    w: f64,
    /// Diagram: grid of the bias b
    #[arg(long, default_value = "-4:-1:601", allow_hyphen_values = true)]
    diagram_b: String,
    /// Diagram: grid of the initial states x_0 iterated to x_∞
    #[arg(long, default_value = "-6:6:25", allow_hyphen_values = true)]
    diagram_x0: String,
    /// Diagram: iterations from x_0 to x_∞
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
    /// Surface: grid of w
    #[arg(long, default_value = "0:10:401", allow_hyphen_values = true)]
    surface_w: String,
    /// Surface: grid of b
    #[arg(long, default_value = "-8:2:401", allow_hyphen_values = true)]
    surface_b: String,
    /// Initial state x_0 of the error E_T
    #[arg(long, default_value_t = 0.5, allow_hyphen_values = true)]
    x0: f64,
    /// Target of the error E_T = (σ(x_T) − target)²
    #[arg(long, default_value_t = 0.7)]
    target: f64,
    /// Steps T of the error E_T
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Trajectories: starting points "w,b;w,b;…"
    #[arg(
        long,
        default_value = "5,-3.2;6,-3.8;5.5,-3.4;4.5,-2.9",
        allow_hyphen_values = true
    )]
    starts: String,
    /// Trajectories: learning rate
    #[arg(long, default_value_t = 0.2)]
    lr: f64,
    /// Trajectories: gradient-descent steps
    #[arg(long, default_value_t = 200)]
    descent_steps: usize,
    /// Trajectories: global-norm clipping threshold (clipped runs)
    #[arg(long, default_value_t = 1.0)]
    threshold: f64,
}

/// `START:STOP:N` → N evenly spaced values, both ends included.
fn grid(name: &str, spec: &str) -> Result<Vec<f64>, String> {
    let bad = |why: &str| format!("invalid --{name} '{spec}': {why}");
    let parts: Vec<&str> = spec.split(':').collect();
    let [a, b, n] = parts[..] else {
        return Err(bad("expected START:STOP:N"));
    };
    let (a, b): (f64, f64) = (
        a.trim().parse().map_err(|_| bad("START is not a number"))?,
        b.trim().parse().map_err(|_| bad("STOP is not a number"))?,
    );
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| bad("N is not a whole number"))?;
    if !(a.is_finite() && b.is_finite()) || b < a {
        return Err(bad("need finite START ≤ STOP"));
    }
    if n == 0 || n > 10_000_000 || (n == 1 && a != b) {
        return Err(bad(
            "N must be ≥ 2 (or 1 with START = STOP) and at most 1e7",
        ));
    }
    Ok((0..n)
        .map(|i| {
            if n == 1 {
                a
            } else {
                a + (b - a) * i as f64 / (n - 1) as f64
            }
        })
        .collect())
}

fn starts(spec: &str) -> Result<Vec<(f64, f64)>, String> {
    spec.split(';')
        .map(|p| {
            let (w, b) = p
                .split_once(',')
                .ok_or_else(|| format!("invalid --starts entry '{p}': expected w,b"))?;
            let parse = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
            Ok((
                parse(w).ok_or_else(|| format!("invalid w in '{p}'"))?,
                parse(b).ok_or_else(|| format!("invalid b in '{p}'"))?,
            ))
        })
        .collect()
}

fn save(out: &Path, name: &str, text: &str) -> Result<(), (u8, String)> {
    write_atomic(&out.join(name), text.as_bytes())
        .map_err(|e| (1, format!("{}: {e}", out.join(name).display())))
}

fn sidecar(
    out: &Path,
    name: &str,
    args: &Args,
    start: &str,
    clock: Instant,
    extra: serde_json::Value,
) -> Result<(), (u8, String)> {
    let meta = serde_json::json!({
        "experiment": EXPERIMENT,
        "part": name,
        "crate_version": env!("CARGO_PKG_VERSION"),
        "git_commit": git_commit(),
        "command_line": std::env::args().collect::<Vec<_>>(),
        "arguments": args,
        "threads": rayon::current_num_threads(),
        "start_time": start,
        "end_time": now_rfc3339(),
        "wall_seconds": clock.elapsed().as_secs_f64(),
        "results": extra,
    });
    save(
        out,
        &format!("{name}.json"),
        &serde_json::to_string_pretty(&meta).unwrap(),
    )
}

fn diagram(args: &Args, out: &Path) -> Result<(), (u8, String)> {
    let (start, clock) = (now_rfc3339(), Instant::now());
    let bs = grid("diagram-b", &args.diagram_b).map_err(|e| (2, e))?;
    let x0s = grid("diagram-x0", &args.diagram_x0).map_err(|e| (2, e))?;
    let w = args.w;
    let rows: Vec<(String, String, usize)> = bs
        .par_iter()
        .map(|&b| {
            let fps = fixed_points(w, b);
            let mut f = String::new();
            for p in &fps {
                writeln!(f, "{w},{b},{},{},{}", p.x, p.multiplier, u8::from(p.stable)).unwrap();
            }
            let mut a = String::new();
            for &x0 in &x0s {
                let x_inf = iterate(w, b, x0, args.iterations);
                writeln!(a, "{w},{b},{x0},{x_inf}").unwrap();
            }
            (f, a, fps.len())
        })
        .collect();
    let mut fp = String::from("w,b,x_star,multiplier,stable\n");
    let mut at = String::from("w,b,x0,x_inf\n");
    for (f, a, _) in &rows {
        fp += f;
        at += a;
    }
    let three: Vec<f64> = bs
        .iter()
        .zip(&rows)
        .filter(|(_, r)| r.2 == 3)
        .map(|(b, _)| *b)
        .collect();
    save(out, "diagram_fixed_points.csv", &fp)?;
    save(out, "diagram_attractors.csv", &at)?;
    let analytic = bistable_interval(w);
    sidecar(
        out,
        "diagram",
        args,
        &start,
        clock,
        serde_json::json!({
            "w": w,
            "bistable_interval_analytic": analytic.map(|(a, b)| [a, b]),
            "bistable_interval_on_grid": (!three.is_empty()).then(|| [three[0], three[three.len() - 1]]),
            "grid_spacing": if bs.len() > 1 { bs[1] - bs[0] } else { 0.0 },
        }),
    )
}

fn surface(args: &Args, out: &Path) -> Result<(), (u8, String)> {
    let (start, clock) = (now_rfc3339(), Instant::now());
    let ws = grid("surface-w", &args.surface_w).map_err(|e| (2, e))?;
    let bs = grid("surface-b", &args.surface_b).map_err(|e| (2, e))?;
    let points: Vec<(f64, f64)> = ws
        .iter()
        .flat_map(|&w| bs.iter().map(move |&b| (w, b)))
        .collect();
    let values: Vec<(f64, f64, f64)> = points
        .par_iter()
        .map(|&(w, b)| {
            error_and_gradient(w, b, args.x0, args.target, args.steps).unwrap_or((
                f64::NAN,
                f64::NAN,
                f64::NAN,
            ))
        })
        .collect();
    let mut csv = String::from("w,b,error,grad_w,grad_b,grad_norm\n");
    let mut steepest = (f64::NAN, f64::NAN, f64::NEG_INFINITY);
    for (&(w, b), &(e, gw, gb)) in points.iter().zip(&values) {
        let g = gw.hypot(gb);
        writeln!(csv, "{w},{b},{e},{gw},{gb},{g}").unwrap();
        if g > steepest.2 {
            steepest = (w, b, g);
        }
    }
    save(out, "surface.csv", &csv)?;
    sidecar(
        out,
        "surface",
        args,
        &start,
        clock,
        serde_json::json!({
            "steepest": {"w": steepest.0, "b": steepest.1, "grad_norm": steepest.2},
            "points": points.len(),
        }),
    )
}

fn trajectories(args: &Args, out: &Path) -> Result<(), (u8, String)> {
    let (start, clock) = (now_rfc3339(), Instant::now());
    let starts = starts(&args.starts).map_err(|e| (2, e))?;
    let positive = |v: f64| v > 0.0 && v.is_finite();
    if !positive(args.lr) || !positive(args.threshold) {
        return Err((2, "--lr and --threshold must be positive".into()));
    }
    let runs: Vec<(usize, (f64, f64), bool)> = starts
        .iter()
        .enumerate()
        .flat_map(|(i, &s)| [(2 * i, s, false), (2 * i + 1, s, true)])
        .collect();
    let results: Vec<_> = runs
        .par_iter()
        .map(|&(_, s, clip)| {
            descend(
                s,
                args.lr,
                args.descent_steps,
                clip.then_some(args.threshold),
                args.x0,
                args.target,
                args.steps,
            )
        })
        .collect::<Result<_, _>>()
        .map_err(|e| (1, e.to_string()))?;
    let mut csv =
        String::from("run,start_w,start_b,clipping,step,w,b,error,grad_norm,clipped,skipped\n");
    let mut largest_step = [0.0f64; 2];
    for (&(run, (sw, sb), clip), steps) in runs.iter().zip(&results) {
        for (i, s) in steps.iter().enumerate() {
            writeln!(
                csv,
                "{run},{sw},{sb},{},{},{},{},{},{},{},{}",
                u8::from(clip),
                s.step,
                s.w,
                s.b,
                s.error,
                s.grad_norm,
                u8::from(s.clipped),
                u8::from(s.skipped)
            )
            .unwrap();
            if let Some(next) = steps.get(i + 1) {
                let d = (next.w - s.w).hypot(next.b - s.b);
                largest_step[usize::from(clip)] = largest_step[usize::from(clip)].max(d);
            }
        }
    }
    save(out, "trajectories.csv", &csv)?;
    sidecar(
        out,
        "trajectories",
        args,
        &start,
        clock,
        serde_json::json!({
            "largest_parameter_step_plain": largest_step[0],
            "largest_parameter_step_clipped": largest_step[1],
            "bound_on_clipped_step": args.lr * args.threshold,
        }),
    )
}

fn run(args: &Args) -> Result<(), (u8, String)> {
    if args.common.shard.n != 1 {
        return Err((
            2,
            "--shard is not supported by bifurcation (the whole experiment takes seconds)".into(),
        ));
    }
    if args.steps == 0 {
        return Err((2, "--steps must be at least 1".into()));
    }
    args.common.init_threads().map_err(|e| (2, e.to_string()))?;
    let out = args.common.out_dir(EXPERIMENT);
    std::fs::create_dir_all(&out).map_err(|e| (1, format!("{}: {e}", out.display())))?;
    let want = |p: Part| args.part == p || args.part == Part::All;
    // --resume: a part whose sidecar exists is complete (the sidecar is written last)
    let done = |name: &str| args.common.resume && out.join(format!("{name}.json")).exists();
    if want(Part::Diagram) && !done("diagram") {
        diagram(args, &out)?;
    }
    if want(Part::Surface) && !done("surface") {
        surface(args, &out)?;
    }
    if want(Part::Trajectories) && !done("trajectories") {
        trajectories(args, &out)?;
    }
    if !args.common.quiet {
        for name in ["diagram", "surface", "trajectories"] {
            if let Ok(text) = std::fs::read_to_string(out.join(format!("{name}.json"))) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                println!("{name}: {}", v["results"]);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    bptt::experiment::driver::exit(run(&Args::parse()))
}
