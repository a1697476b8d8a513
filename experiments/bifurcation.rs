//! `bifurcation`: Pascanu et al.'s (2013, §2.2–2.3) single sigmoid unit `x_t = w·σ(x_{t−1}) + b`:
//! the bifurcation diagram (Fig. 3, after Doya 1993), the error surface
//! `E_T = (σ(x_T) − target)²` with its "wall" (Fig. 6), and gradient descent hitting the wall
//! with and without global-norm clipping.
//!
//! Parts (`--part`, default all; one chunk each), writing into `--out`: `diagram`
//! (`diagram_fixed_points.csv`, `diagram_attractors.csv`), `surface` (`surface.csv`),
//! `trajectories` (`trajectories.csv`), and one provenance sidecar `bifurcation.json` whose
//! `results` hold each part's findings. Schemas: experiments/README.md. No randomness: output
//! is a function of the flags, every one of which is validated before any part runs.

use std::fmt::Write as _;
use std::process::ExitCode;

use bptt::experiment::driver::{
    self, CommonArgs, Context, Experiment, Outputs, Rows, Summary, Table,
};
use bptt::experiment::dynamics::{
    bistable_interval, descend, error_and_gradient, fixed_points, iterate,
};
use clap::{Parser, ValueEnum};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Part {
    Diagram,
    Surface,
    Trajectories,
    All,
}

#[derive(Parser, Debug, Serialize)]
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

/// A grid `START:STOP:N`: N evenly spaced values, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Grid {
    start: f64,
    stop: f64,
    n: usize,
}

impl Grid {
    fn parse(name: &str, spec: &str) -> Result<Grid, String> {
        let bad = |why: &str| format!("invalid --{name} '{spec}': {why}");
        let parts: Vec<&str> = spec.split(':').collect();
        let [a, b, n] = parts[..] else {
            return Err(bad("expected START:STOP:N"));
        };
        let (start, stop): (f64, f64) = (
            a.trim().parse().map_err(|_| bad("START is not a number"))?,
            b.trim().parse().map_err(|_| bad("STOP is not a number"))?,
        );
        let n: usize = n
            .trim()
            .parse()
            .map_err(|_| bad("N is not a whole number"))?;
        if !(start.is_finite() && stop.is_finite()) || stop < start {
            return Err(bad("need finite START ≤ STOP"));
        }
        if n == 0 || n > 10_000_000 || (n == 1 && start != stop) {
            return Err(bad(
                "N must be ≥ 2 (or 1 with START = STOP) and at most 1e7",
            ));
        }
        Ok(Grid { start, stop, n })
    }

    fn values(&self) -> Vec<f64> {
        (0..self.n)
            .map(|i| {
                if self.n == 1 {
                    self.start
                } else {
                    self.start + (self.stop - self.start) * i as f64 / (self.n - 1) as f64
                }
            })
            .collect()
    }

    fn spacing(&self) -> f64 {
        if self.n > 1 {
            (self.stop - self.start) / (self.n - 1) as f64
        } else {
            0.0
        }
    }
}

/// The resolved work: the parts to compute and every parameter, validated.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    parts: Vec<Part>,
    w: f64,
    diagram_b: Grid,
    diagram_x0: Grid,
    iterations: usize,
    surface_w: Grid,
    surface_b: Grid,
    x0: f64,
    target: f64,
    steps: usize,
    starts: Vec<(f64, f64)>,
    lr: f64,
    descent_steps: usize,
    threshold: f64,
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

/// Every flag of every part, validated (whichever parts run).
fn plan(a: &Args) -> Result<Plan, String> {
    let finite = |name: &str, v: f64| {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("--{name} must be a finite number, got {v}"))
        }
    };
    let positive = |name: &str, v: f64| {
        if v > 0.0 && v.is_finite() {
            Ok(v)
        } else {
            Err(format!("--{name} must be a positive number, got {v}"))
        }
    };
    let at_least_one = |name: &str, v: usize| {
        if v >= 1 {
            Ok(v)
        } else {
            Err(format!("--{name} must be at least 1"))
        }
    };
    let parts = match a.part {
        Part::All => vec![Part::Diagram, Part::Surface, Part::Trajectories],
        p => vec![p],
    };
    let plan = Plan {
        parts,
        w: finite("w", a.w)?,
        diagram_b: Grid::parse("diagram-b", &a.diagram_b)?,
        diagram_x0: Grid::parse("diagram-x0", &a.diagram_x0)?,
        iterations: at_least_one("iterations", a.iterations)?,
        surface_w: Grid::parse("surface-w", &a.surface_w)?,
        surface_b: Grid::parse("surface-b", &a.surface_b)?,
        x0: finite("x0", a.x0)?,
        target: finite("target", a.target)?,
        steps: at_least_one("steps", a.steps)?,
        starts: starts(&a.starts)?,
        lr: positive("lr", a.lr)?,
        descent_steps: at_least_one("descent-steps", a.descent_steps)?,
        threshold: positive("threshold", a.threshold)?,
    };
    // the largest table held at once (~100 bytes a row)
    let rows = |g: &Grid, h: &Grid| (g.n as u128).checked_mul(h.n as u128);
    let estimate = [
        rows(&plan.diagram_b, &plan.diagram_x0),
        rows(&plan.surface_w, &plan.surface_b),
        (plan.starts.len() as u128).checked_mul(2 * (plan.descent_steps as u128 + 1)),
    ]
    .into_iter()
    .try_fold(0u128, |m, r| Some(m.max(r?)))
    .and_then(|r| r.checked_mul(200));
    driver::check_plan_memory(estimate, "the largest grid's rows")?;
    Ok(plan)
}

/// `diagram_fixed_points.csv`: every fixed point x* of x = w·σ(x) + b at each b.
#[derive(Serialize, Deserialize, Default)]
struct FixedPointRow {
    w: f64,
    b: f64,
    x_star: f64,
    multiplier: f64,
    stable: u8,
}

/// `diagram_attractors.csv`: the state reached from x_0 after `--iterations` steps.
#[derive(Serialize, Default)]
struct AttractorRow {
    w: f64,
    b: f64,
    x0: f64,
    x_inf: f64,
}

/// `surface.csv`: E_T and its gradient at one (w, b).
#[derive(Serialize, Deserialize, Default)]
struct SurfaceRow {
    w: f64,
    b: f64,
    error: f64,
    grad_w: f64,
    grad_b: f64,
    grad_norm: f64,
}

/// `trajectories.csv`: one gradient-descent step of one run (runs 2i plain, 2i+1 clipped).
#[derive(Serialize, Deserialize, Default)]
struct TrajectoryRow {
    run: usize,
    start_w: f64,
    start_b: f64,
    clipping: u8,
    step: usize,
    w: f64,
    b: f64,
    error: f64,
    grad_norm: f64,
    clipped: u8,
    skipped: u8,
}

/// The tables of `part`, in the order they are listed.
fn part_tables(part: Part) -> Vec<Table> {
    match part {
        Part::Diagram => vec![
            Table::of::<FixedPointRow>("diagram_fixed_points.csv"),
            Table::of::<AttractorRow>("diagram_attractors.csv"),
        ],
        Part::Surface => vec![Table::of::<SurfaceRow>("surface.csv")],
        Part::Trajectories => vec![Table::of::<TrajectoryRow>("trajectories.csv")],
        Part::All => Vec::new(),
    }
}

/// The experiment: one chunk per part.
struct Bifurcation {
    plan: Plan,
}

impl Bifurcation {
    /// The index of `part`'s first table among [`Experiment::tables`].
    fn first_table(&self, part: Part) -> usize {
        self.plan
            .parts
            .iter()
            .take_while(|&&p| p != part)
            .map(|&p| part_tables(p).len())
            .sum()
    }

    fn diagram(&self, rows: &mut Rows, t: usize) {
        let p = &self.plan;
        let x0s = p.diagram_x0.values();
        let per_b: Vec<(Vec<FixedPointRow>, Vec<AttractorRow>)> = p
            .diagram_b
            .values()
            .into_par_iter()
            .map(|b| {
                let fps = fixed_points(p.w, b)
                    .iter()
                    .map(|f| FixedPointRow {
                        w: p.w,
                        b,
                        x_star: f.x,
                        multiplier: f.multiplier,
                        stable: u8::from(f.stable),
                    })
                    .collect();
                let xs = x0s
                    .iter()
                    .map(|&x0| AttractorRow {
                        w: p.w,
                        b,
                        x0,
                        x_inf: iterate(p.w, b, x0, p.iterations),
                    })
                    .collect();
                (fps, xs)
            })
            .collect();
        for (fps, xs) in &per_b {
            fps.iter().for_each(|r| rows.push(t, r));
            xs.iter().for_each(|r| rows.push(t + 1, r));
        }
    }

    fn surface(&self, rows: &mut Rows, t: usize) {
        let p = &self.plan;
        let bs = p.surface_b.values();
        let points: Vec<(f64, f64)> = p
            .surface_w
            .values()
            .into_iter()
            .flat_map(|w| bs.iter().map(move |&b| (w, b)))
            .collect();
        let values: Vec<SurfaceRow> = points
            .par_iter()
            .map(|&(w, b)| {
                // a non-finite E_T (or gradient) is data: NaN in the table
                let (error, grad_w, grad_b) = error_and_gradient(w, b, p.x0, p.target, p.steps)
                    .unwrap_or((f64::NAN, f64::NAN, f64::NAN));
                SurfaceRow {
                    w,
                    b,
                    error,
                    grad_w,
                    grad_b,
                    grad_norm: grad_w.hypot(grad_b),
                }
            })
            .collect();
        values.iter().for_each(|r| rows.push(t, r));
    }

    fn trajectories(&self, rows: &mut Rows, t: usize) -> Result<(), String> {
        let p = &self.plan;
        let runs: Vec<(usize, (f64, f64), bool)> = p
            .starts
            .iter()
            .enumerate()
            .flat_map(|(i, &s)| [(2 * i, s, false), (2 * i + 1, s, true)])
            .collect();
        let results: Vec<_> = runs
            .par_iter()
            .map(|&(_, s, clip)| {
                descend(
                    s,
                    p.lr,
                    p.descent_steps,
                    clip.then_some(p.threshold),
                    p.x0,
                    p.target,
                    p.steps,
                )
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for (&(run, (start_w, start_b), clip), steps) in runs.iter().zip(&results) {
            for s in steps {
                rows.push(
                    t,
                    &TrajectoryRow {
                        run,
                        start_w,
                        start_b,
                        clipping: u8::from(clip),
                        step: s.step,
                        w: s.w,
                        b: s.b,
                        error: s.error,
                        grad_norm: s.grad_norm,
                        clipped: u8::from(s.clipped),
                        skipped: u8::from(s.skipped),
                    },
                );
            }
        }
        Ok(())
    }
}

impl Experiment for Bifurcation {
    const NAME: &'static str = "bifurcation";
    const UNIT: &'static str = "parts";

    fn plan(&self) -> serde_json::Value {
        serde_json::to_value(&self.plan).expect("the plan serializes")
    }
    fn tables(&self) -> Vec<Table> {
        self.plan
            .parts
            .iter()
            .flat_map(|&p| part_tables(p))
            .collect()
    }
    fn chunks(&self) -> usize {
        self.plan.parts.len()
    }
    fn compute(&self, index: usize, ctx: &Context<'_>) -> Result<Rows, String> {
        let mut rows = Rows::new(self.tables().len());
        let part = self.plan.parts[index];
        let t = self.first_table(part);
        match part {
            Part::Diagram => self.diagram(&mut rows, t),
            Part::Surface => self.surface(&mut rows, t),
            Part::Trajectories => self.trajectories(&mut rows, t)?,
            Part::All => unreachable!("the plan lists single parts"),
        }
        ctx.progress(1);
        Ok(rows)
    }

    fn summarize(plan: &serde_json::Value, out: &Outputs<'_>) -> Result<Summary, String> {
        let p: Plan = serde_json::from_value(plan.clone()).map_err(|e| e.to_string())?;
        let mut results = serde_json::Map::new();
        if p.parts.contains(&Part::Diagram) {
            let fps: Vec<FixedPointRow> = out.rows("diagram_fixed_points.csv")?;
            // the b with three fixed points (both attractors and the saddle between them)
            let mut three: Vec<f64> = Vec::new();
            for chunk in fps.chunk_by(|x, y| x.b == y.b) {
                if chunk.len() == 3 {
                    three.push(chunk[0].b);
                }
            }
            results.insert(
                "diagram".into(),
                serde_json::json!({
                    "w": p.w,
                    "bistable_interval_analytic": bistable_interval(p.w).map(|(a, b)| [a, b]),
                    "bistable_interval_on_grid": three.first().zip(three.last()).map(|(a, b)| [*a, *b]),
                    "grid_spacing": p.diagram_b.spacing(),
                }),
            );
        }
        if p.parts.contains(&Part::Surface) {
            let rows: Vec<SurfaceRow> = out.rows("surface.csv")?;
            let steepest = rows
                .iter()
                .filter(|r| r.grad_norm.is_finite())
                .max_by(|a, b| a.grad_norm.total_cmp(&b.grad_norm));
            results.insert(
                "surface".into(),
                serde_json::json!({
                    "steepest": steepest.map(|r| serde_json::json!({"w": r.w, "b": r.b, "grad_norm": r.grad_norm})),
                    "points": rows.len(),
                }),
            );
        }
        if p.parts.contains(&Part::Trajectories) {
            let rows: Vec<TrajectoryRow> = out.rows("trajectories.csv")?;
            let mut largest = [0.0f64; 2];
            for w in rows.windows(2) {
                if w[0].run == w[1].run {
                    let d = (w[1].w - w[0].w).hypot(w[1].b - w[0].b);
                    let c = usize::from(w[0].clipping);
                    largest[c] = largest[c].max(d);
                }
            }
            results.insert(
                "trajectories".into(),
                serde_json::json!({
                    "largest_parameter_step_plain": largest[0],
                    "largest_parameter_step_clipped": largest[1],
                    "bound_on_clipped_step": p.lr * p.threshold,
                }),
            );
        }
        let mut table = String::new();
        for (part, r) in &results {
            writeln!(table, "{part}: {r}").unwrap();
        }
        Ok(Summary {
            failure: None,
            results: serde_json::Value::Object(results),
            table,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    driver::drive(&args.common, None, &args, || {
        Ok(Bifurcation { plan: plan(&args)? })
    })
}
