//! The gradient checker: analytic gradients from BPTT against central finite differences, in
//! f64, over every entry of every parameter, every input `x_t` and the initial state.
//!
//! For each scalar θ of the problem:
//! - step `h = ∛ε · max(1, |θ|)` (ε = f64 machine epsilon), balancing the O(h²) truncation
//!   error of the central difference against its O(ε/h) rounding error; each difference
//!   quotient divides by the *representable* step `(θ+h) − (θ−h)`;
//! - numeric `n = D(h) = (L(θ+h) − L(θ−h)) / ((θ+h) − (θ−h))`, analytic `a` from BPTT;
//! - error `|a − n| / max(|a|, |n|, floor)`: relative, with an absolute floor so that
//!   near-zero pairs (where finite differences carry only rounding noise) are judged by their
//!   absolute difference (see [`Config::default`] for the floor's derivation);
//! - the finite difference's own error estimate `e = (4/3)·|D(h) − D(h/2)|` (for a truncation
//!   error `c h²`, `D(h) − D(h/2) = (3/4) c h²`). In chaotic (saturated tanh) and exploding
//!   (ReLU, linear) networks the derivatives of `L` grow like powers of the network's gain and
//!   `D(h)` itself is off by more than 1e-6 relative even for a correct gradient; an entry
//!   whose discrepancy is within `2e` is *unresolved*: not a failure, but counted and reported;
//! - *kinks*: if any ReLU pre-activation changes sign between the forward passes at `θ`,
//!   `θ ± h/2` and `θ ± h`, the loss is not differentiable within the stencil; the entry is
//!   excluded from the verdict and counted.
//!
//! An entry fails when its error exceeds the tolerance and its discrepancy is not explained by
//! the finite difference's error estimate, or when anything is non-finite.
//!
//! Under truncated BPTT the numeric side differentiates the function with the states at the
//! chunk boundaries held constant ([`crate::nn::sequence::forward_detached`]), which is exactly
//! what truncated BPTT computes the gradient of.

use std::fmt;

use nalgebra::DMatrix;

use crate::error::BpttError;
use crate::nn::arch::SeqLayer;
use crate::nn::cell::Cell;
use crate::nn::model::{Model, ModelGrads, NetworkModel, Objective};
use crate::nn::sequence::Truncation;

/// Everything the loss depends on: the model, the inputs, the initial state and the loss.
#[derive(Clone, Debug)]
pub struct Problem<C: Cell<f64>> {
    pub model: Model<f64, C>,
    /// `x_t`, each `D × B`.
    pub xs: Vec<DMatrix<f64>>,
    /// `s_0`, `S × B`.
    pub s0: DMatrix<f64>,
    pub objective: Objective<f64>,
    pub truncation: Truncation,
}

/// Settings of [`check`].
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Verdict threshold on the error of every non-kink entry.
    pub tolerance: f64,
    /// Absolute floor of the error's denominator, relative to the loss magnitude `Λ`
    /// ([`crate::nn::model::Model::loss_magnitude`]): the denominator is `max(|a|, |n|, abs_floor · max(1, Λ))`.
    pub abs_floor: f64,
}

impl Default for Config {
    /// Tolerance 1e-6, floor 1e-3.
    ///
    /// Why the floor: with `h = ∛ε ≈ 6.1e-6`, a loss evaluated to within k ulps of its
    /// magnitude `Λ` leaves the central difference an absolute rounding error of about
    /// `k·ε·Λ/h ≈ k·4e-11·Λ`. Measured on the property-test problems (T ≤ 12, H ≤ 8):
    /// k up to ≈ 7 on healthy problems, more on chaotic ones. A gradient entry of size `g` can
    /// therefore be resolved only to a relative `k·4e-11·Λ/g`, which exceeds the 1e-6 tolerance
    /// for `g < k·4e-5·Λ`. The floor `1e-3·max(1,Λ)` judges those entries by their absolute
    /// difference instead (at `1e-9·Λ`), which tolerates up to k ≈ 25 ulps of rounding. `Λ` is
    /// not `|L|`: a saturated cross-entropy over logits of size 1e3 is ≈ 0 but carries rounding
    /// errors of ≈ 1e3·ε.
    fn default() -> Self {
        Config {
            tolerance: 1e-6,
            abs_floor: 1e-3,
        }
    }
}

/// One checked scalar.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// `"weight_hh"`, `"readout.bias"`, `"x"`, `"h0"`, …
    pub tensor: String,
    /// The time step, for inputs `x_t`.
    pub step: Option<usize>,
    pub row: usize,
    pub col: usize,
    pub analytic: f64,
    pub numeric: f64,
    pub error: f64,
    /// The finite difference's error estimate `(4/3)·|D(h) − D(h/2)|`.
    pub fd_error: f64,
    pub verdict: Verdict,
}

/// The verdict on one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Error within tolerance.
    Pass,
    /// Error above tolerance, but `|a − n|` within twice the finite difference's own error
    /// estimate: the finite difference cannot decide this entry.
    Unresolved,
    /// A kink lies within the stencil: excluded.
    Kink,
    /// A wrong gradient (or a non-finite value).
    Fail,
}

/// The result of [`check`].
#[derive(Clone, Debug)]
pub struct Report {
    /// Every checked scalar, in the order parameters, readout, inputs, initial state.
    pub entries: Vec<Entry>,
    /// The loss at the unperturbed point.
    pub loss: f64,
    pub config: Config,
}

impl Report {
    /// Entries that count for the verdict (no kink).
    pub fn judged(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.verdict != Verdict::Kink)
    }
    /// Number of entries with verdict `v`.
    pub fn count(&self, v: Verdict) -> usize {
        self.entries.iter().filter(|e| e.verdict == v).count()
    }
    /// Number of entries excluded because of a kink.
    pub fn kinks(&self) -> usize {
        self.count(Verdict::Kink)
    }
    /// Largest error over judged entries (0 when there are none; NaN counts as infinite).
    pub fn max_error(&self) -> f64 {
        self.judged()
            .map(|e| {
                if e.error.is_nan() {
                    f64::INFINITY
                } else {
                    e.error
                }
            })
            .fold(0.0, f64::max)
    }
    /// Whether no entry failed.
    pub fn passed(&self) -> bool {
        self.count(Verdict::Fail) == 0
    }
    /// The `n` judged entries with the largest error, worst first (non-finite ones first).
    pub fn worst(&self, n: usize) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.judged().collect();
        let key = |e: &Entry| {
            if e.error.is_nan() {
                f64::INFINITY
            } else {
                e.error
            }
        };
        v.sort_by(|a, b| key(b).total_cmp(&key(a)));
        v.truncate(n);
        v
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "gradcheck: {} entries checked, {} kinks excluded, {} unresolved by finite differences, max error {:.3e} (tolerance {:.0e}): {}",
            self.judged().count(),
            self.kinks(),
            self.count(Verdict::Unresolved),
            self.max_error(),
            self.config.tolerance,
            if self.passed() { "PASS" } else { "FAIL" }
        )?;
        writeln!(
            f,
            "{:<16} {:>5} {:>9} {:>17} {:>17} {:>10} {:>10} {:<10}",
            "tensor", "step", "index", "analytic", "numeric", "error", "fd error", "verdict"
        )?;
        for e in self.worst(5) {
            let step = e.step.map_or("-".into(), |s| s.to_string());
            writeln!(
                f,
                "{:<16} {:>5} {:>9} {:>17.9e} {:>17.9e} {:>10.3e} {:>10.3e} {:<10?}",
                e.tensor,
                step,
                format!("({},{})", e.row, e.col),
                e.analytic,
                e.numeric,
                e.error,
                e.fd_error,
                e.verdict
            )?;
        }
        Ok(())
    }
}

/// One variable of a checkable function: a matrix of scalars and its analytic gradient.
#[derive(Clone, Debug)]
pub struct Variable {
    /// Report name (`"weight_hh"`, `"x"`, `"h0"`, …).
    pub name: String,
    /// The time step, for inputs.
    pub step: Option<usize>,
    /// `∂L/∂variable`, same shape as the variable.
    pub gradient: DMatrix<f64>,
    /// For stacked states (`[h; c]`): the name of each block of `rows` rows; entries are then
    /// reported as `names[row / rows]`, row `row % rows`.
    pub blocks: Option<(Vec<String>, usize)>,
}

/// The analytic side of a check.
#[derive(Clone, Debug)]
pub struct Analytic {
    pub loss: f64,
    /// `Λ`, the magnitude rounding errors of the loss scale with (sizes the absolute floor).
    pub magnitude: f64,
    /// Estimated absolute rounding error of one evaluation of the loss: `ε·Λ`, plus for cells
    /// the first-order propagation of every state's rounding,
    /// `ε·(H + D + 1)·Σ_k Σ |∂L/∂s_k ⊙ s_k|` (each state entry is a sum of about H + D + 1 rounded
    /// products). Sizes the rounding term of Richardson's error estimate.
    pub rounding: f64,
    /// Every variable, in the order of [`Checkable::variable_mut`].
    pub variables: Vec<Variable>,
}

/// A differentiable function of named matrices that the checker can perturb: implemented for
/// single-cell [`Problem`]s and for [`NetworkProblem`]s (stacked, bidirectional, residual, dense).
pub trait Checkable: Clone {
    /// What the numeric side needs from the analytic pass (e.g. the states held constant by
    /// truncated BPTT).
    type Context;
    /// Loss, magnitude and every analytic gradient.
    fn analytic(&self) -> Result<(Analytic, Self::Context), BpttError>;
    /// The `index`-th variable, in the order of [`Analytic::variables`].
    fn variable_mut(&mut self, index: usize) -> &mut DMatrix<f64>;
    /// The loss at the current (perturbed) values, and the kink pattern of its forward pass.
    fn evaluate(&self, context: &Self::Context) -> Result<(f64, Vec<bool>), BpttError>;
}

impl<C: Cell<f64>> Checkable for Problem<C> {
    /// The states of the unperturbed forward pass (held at the cuts of truncated BPTT).
    type Context = Vec<DMatrix<f64>>;

    fn analytic(&self) -> Result<(Analytic, Self::Context), BpttError> {
        let m = &self.model;
        let (loss, grads) =
            m.loss_and_grads(&self.xs, &self.s0, &self.objective, self.truncation)?;
        let fixed = crate::nn::sequence::forward(&m.cell, &self.xs, &self.s0)?.states();
        let ModelGrads {
            cell,
            readout,
            dxs,
            d_states,
        } = grads;
        let var = |name: String, step, gradient| Variable {
            name,
            step,
            gradient,
            blocks: None,
        };
        let mut variables: Vec<Variable> = cell
            .iter()
            .map(|(n, g)| var(n.to_string(), None, g.clone()))
            .collect();
        variables.extend(
            readout
                .iter()
                .map(|(n, g)| var(format!("readout.{n}"), None, g.clone())),
        );
        variables.extend(
            dxs.into_iter()
                .enumerate()
                .map(|(t, g)| var("x".into(), Some(t), g)),
        );
        let blocks = m
            .cell
            .state_names()
            .iter()
            .map(|b| format!("{b}0"))
            .collect();
        variables.push(Variable {
            name: "s0".into(),
            step: None,
            gradient: d_states[0].clone(),
            blocks: Some((blocks, m.cell.hidden_size())),
        });
        let magnitude = m.loss_magnitude(&self.xs, &self.s0, &self.objective)?;
        let fan_in = (m.cell.hidden_size() + m.cell.input_size() + 1) as f64;
        let propagated: f64 = fixed
            .iter()
            .zip(&d_states)
            .map(|(s, d)| s.zip_fold(d, 0.0, |acc, s, d| acc + (s * d).abs()))
            .sum();
        let rounding = f64::EPSILON * (magnitude.max(loss.abs()) + fan_in * propagated);
        Ok((
            Analytic {
                loss,
                magnitude,
                rounding,
                variables,
            },
            fixed,
        ))
    }

    fn variable_mut(&mut self, index: usize) -> &mut DMatrix<f64> {
        let n_cell = self.model.cell.params().len();
        let n_readout = self.model.readout.params().len();
        match index {
            i if i < n_cell => &mut self.model.cell.params_mut()[i],
            i if i < n_cell + n_readout => &mut self.model.readout.params_mut()[i - n_cell],
            i if i < n_cell + n_readout + self.xs.len() => &mut self.xs[i - n_cell - n_readout],
            _ => &mut self.s0,
        }
    }

    fn evaluate(&self, fixed: &Self::Context) -> Result<(f64, Vec<bool>), BpttError> {
        let (loss, traj) = self.model.loss_detached(
            &self.xs,
            &self.s0,
            &self.objective,
            self.truncation,
            fixed,
        )?;
        let mut pattern = Vec::new();
        traj.kink_pattern(&self.model.cell, &mut pattern);
        Ok((loss, pattern))
    }
}

/// A [`NetworkModel`] with its inputs, initial states and loss: what [`check`] checks for the
/// architectures.
#[derive(Clone, Debug)]
pub struct NetworkProblem<N: SeqLayer<f64>> {
    pub model: NetworkModel<f64, N>,
    /// `x_t`, each `D × B`.
    pub xs: Vec<DMatrix<f64>>,
    /// Initial states in PyTorch's `h_n` order.
    pub s0: Vec<DMatrix<f64>>,
    pub objective: Objective<f64>,
}

impl<N: SeqLayer<f64>> Checkable for NetworkProblem<N> {
    type Context = ();

    fn analytic(&self) -> Result<(Analytic, ()), BpttError> {
        let m = &self.model;
        let (loss, g) = m.loss_and_grads(&self.xs, &self.s0, &self.objective)?;
        let var = |name: String, step, gradient| Variable {
            name,
            step,
            gradient,
            blocks: None,
        };
        let mut variables: Vec<Variable> = g
            .params
            .iter()
            .map(|(n, m)| var(n.to_string(), None, m.clone()))
            .collect();
        variables.extend(
            g.readout
                .iter()
                .map(|(n, m)| var(format!("readout.{n}"), None, m.clone())),
        );
        variables.extend(
            g.dxs
                .into_iter()
                .enumerate()
                .map(|(t, m)| var("x".into(), Some(t), m)),
        );
        let labels = m.net.state_labels(0);
        let (block_names, rows) = (m.net.state_blocks(), m.net.state_block_rows());
        for (label, d) in labels.iter().zip(g.d_s0) {
            let blocks = block_names
                .iter()
                .map(|b| format!("{b}0_{label}"))
                .collect();
            variables.push(Variable {
                name: format!("s0_{label}"),
                step: None,
                gradient: d,
                blocks: Some((blocks, rows)),
            });
        }
        let magnitude = m.loss_magnitude(&self.xs, &self.s0, &self.objective)?;
        Ok((
            Analytic {
                loss,
                magnitude,
                rounding: f64::EPSILON * magnitude.max(loss.abs()),
                variables,
            },
            (),
        ))
    }

    fn variable_mut(&mut self, index: usize) -> &mut DMatrix<f64> {
        let n_net = self.model.net.param_tensors();
        let n_readout = self.model.readout.params().len();
        let n_x = self.xs.len();
        match index {
            i if i < n_net => {
                let mut params = self.model.net.params_mut().into_tensors();
                params.nth(i).expect("i < the network's parameter count")
            }
            i if i < n_net + n_readout => &mut self.model.readout.params_mut()[i - n_net],
            i if i < n_net + n_readout + n_x => &mut self.xs[i - n_net - n_readout],
            i => &mut self.s0[i - n_net - n_readout - n_x],
        }
    }

    fn evaluate(&self, _: &()) -> Result<(f64, Vec<bool>), BpttError> {
        let (loss, cache) = self.model.loss(&self.xs, &self.s0, &self.objective)?;
        let mut pattern = Vec::new();
        self.model.net.kink_pattern(&cache.workspace, &mut pattern);
        Ok((loss, pattern))
    }
}

/// Check every analytic gradient of `problem` against central differences.
pub fn check<P: Checkable>(problem: &P, config: Config) -> Result<Report, BpttError> {
    let (analytic, context) = problem.analytic()?;
    let (_, base_pattern) = problem.evaluate(&context)?;
    let floor = config.abs_floor * analytic.magnitude.max(1.0);
    let mut work = problem.clone();
    let mut entries = Vec::new();
    for (index, var) in analytic.variables.iter().enumerate() {
        let g = &var.gradient;
        for col in 0..g.ncols() {
            for row in 0..g.nrows() {
                let theta = work.variable_mut(index)[(row, col)];
                let h = f64::EPSILON.cbrt() * theta.abs().max(1.0);
                // central differences D(h) and D(h/2) on representable points θ ± step
                let mut kink = false;
                let mut central = [0.0; 2];
                for (d, step) in central.iter_mut().zip([h, h / 2.0]) {
                    let (plus, minus) = (theta + step, theta - step);
                    work.variable_mut(index)[(row, col)] = plus;
                    let (lp, pp) = work.evaluate(&context)?;
                    work.variable_mut(index)[(row, col)] = minus;
                    let (lm, pm) = work.evaluate(&context)?;
                    *d = (lp - lm) / (plus - minus);
                    kink |= pp != base_pattern || pm != base_pattern;
                }
                work.variable_mut(index)[(row, col)] = theta;

                let (a, numeric) = (g[(row, col)], central[0]);
                let error = (a - numeric).abs() / a.abs().max(numeric.abs()).max(floor);
                let fd_error = 4.0 / 3.0 * (central[0] - central[1]).abs();
                let verdict = if kink {
                    Verdict::Kink
                } else if !(a.is_finite() && numeric.is_finite() && fd_error.is_finite()) {
                    Verdict::Fail
                } else if error <= config.tolerance {
                    Verdict::Pass
                } else if (a - numeric).abs() <= 2.0 * fd_error {
                    Verdict::Unresolved
                } else {
                    Verdict::Fail
                };
                // stacked states are reported per block: h0 (and c0), row within the block
                let (tensor, row) = match &var.blocks {
                    Some((names, rows)) => {
                        (names[(row / rows).min(names.len() - 1)].clone(), row % rows)
                    }
                    None => (var.name.clone(), row),
                };
                entries.push(Entry {
                    tensor,
                    step: var.step,
                    row,
                    col,
                    analytic: a,
                    numeric,
                    error,
                    fd_error,
                    verdict,
                });
            }
        }
    }
    Ok(Report {
        entries,
        loss: analytic.loss,
        config,
    })
}

/// One entry of a Richardson (Ridders) check.
#[derive(Clone, Debug, PartialEq)]
pub struct RichardsonEntry {
    pub tensor: String,
    pub step: Option<usize>,
    pub row: usize,
    pub col: usize,
    pub analytic: f64,
    /// The extrapolated derivative.
    pub estimate: f64,
    /// Its error estimate (from the Neville tableau).
    pub error_estimate: f64,
    /// A ReLU kink lies within the largest step: excluded.
    pub kink: bool,
}

impl RichardsonEntry {
    /// Whether the analytic value lies within the estimate's error bar: `|a − n| ≤ 3·err + 4ε·|a|`.
    pub fn consistent(&self) -> bool {
        (self.analytic - self.estimate).abs()
            <= 3.0 * self.error_estimate + 4.0 * f64::EPSILON * self.analytic.abs()
    }
}

/// Richardson extrapolation of central differences (Ridders' method, as in *Numerical Recipes*
/// `dfridr`): steps `h₀, h₀/1.4, h₀/1.4², …` (h₀ = 1e-3·max(1, |θ|), at most 10), a Neville
/// tableau eliminating the h², h⁴, … error terms, stopping when the error grows; each entry gets
/// an estimate *and* an error estimate (the tableau's truncation estimate, at least the
/// rounding noise `4·δL/h` of the smallest step, δL = [`Analytic::rounding`]). The verdict compares the analytic-vs-numeric discrepancy
/// with that error estimate (FiniteDifferences.jl style) instead of a fixed tolerance.
pub fn check_richardson<P: Checkable>(problem: &P) -> Result<Vec<RichardsonEntry>, BpttError> {
    const CON: f64 = 1.4;
    const NTAB: usize = 10;
    let (analytic, context) = problem.analytic()?;
    let (_, base_pattern) = problem.evaluate(&context)?;
    let rounding = analytic
        .rounding
        .max(f64::EPSILON * analytic.magnitude.max(1.0));
    let mut work = problem.clone();
    let mut out = Vec::new();
    for (index, var) in analytic.variables.iter().enumerate() {
        let g = &var.gradient;
        for col in 0..g.ncols() {
            for row in 0..g.nrows() {
                let theta = work.variable_mut(index)[(row, col)];
                let central = |h: f64, work: &mut P| -> Result<(f64, bool), BpttError> {
                    let (p, m) = (theta + h, theta - h);
                    work.variable_mut(index)[(row, col)] = p;
                    let (lp, pp) = work.evaluate(&context)?;
                    work.variable_mut(index)[(row, col)] = m;
                    let (lm, pm) = work.evaluate(&context)?;
                    work.variable_mut(index)[(row, col)] = theta;
                    Ok((
                        (lp - lm) / (p - m),
                        pp != base_pattern || pm != base_pattern,
                    ))
                };
                // Ridders from h₀ = 1e-3·max(1,|θ|); if its error estimate is poor (strong curvature
                // at that scale: chaotic or exploding networks), restart from h₀/10 and h₀/100 and
                // keep the estimate with the smallest error
                let mut best: Option<(f64, f64, f64, bool)> = None;
                for shrink in [1.0, 1e-1, 1e-2] {
                    let mut h = 1e-3 * shrink * theta.abs().max(1.0);
                    let mut a = [[0.0f64; NTAB]; NTAB];
                    let (d0, kink) = central(h, &mut work)?;
                    a[0][0] = d0;
                    let (mut estimate, mut err) = (d0, f64::INFINITY);
                    for i in 1..NTAB {
                        h /= CON;
                        a[0][i] = central(h, &mut work)?.0;
                        let mut fac = CON * CON;
                        for j in 1..=i {
                            a[j][i] = (a[j - 1][i] * fac - a[j - 1][i - 1]) / (fac - 1.0);
                            fac *= CON * CON;
                            let e = (a[j][i] - a[j - 1][i])
                                .abs()
                                .max((a[j][i] - a[j - 1][i - 1]).abs());
                            if e <= err {
                                err = e;
                                estimate = a[j][i];
                            }
                        }
                        if (a[i][i] - a[i - 1][i - 1]).abs() >= 2.0 * err {
                            break;
                        }
                    }
                    // the tableau's error estimate measures truncation only; add the rounding
                    // noise of a central difference at the smallest step used: 4·δL/h
                    err = err.max(4.0 * rounding / h);
                    if best.is_none_or(|b| err < b.1) {
                        best = Some((estimate, err, h, kink));
                    }
                    if err <= 1e-8 * estimate.abs() {
                        break;
                    }
                }
                let (estimate, err, _, kink) = best.expect("at least one start");
                let (tensor, row_in) = match &var.blocks {
                    Some((names, rows)) => {
                        (names[(row / rows).min(names.len() - 1)].clone(), row % rows)
                    }
                    None => (var.name.clone(), row),
                };
                out.push(RichardsonEntry {
                    tensor,
                    step: var.step,
                    row: row_in,
                    col,
                    analytic: g[(row, col)],
                    estimate,
                    error_estimate: err,
                    kink,
                });
            }
        }
    }
    Ok(out)
}

/// The Taylor-remainder test: for a random unit direction d over every variable,
/// `r(h) = |L(θ + h d) − L(θ) − h ⟨∇L, d⟩|` is O(h²) for the right gradient and O(h) for a wrong
/// one. Returns `(h, r(h))` for h = 2⁻⁴ … 2⁻¹⁶ and the asymptotic order: the least-squares slope
/// of log r against log h over the four smallest h whose r is above the rounding floor
/// `100·ε·max(1, |L|, Λ)`; NaN if fewer than three points qualify.
pub fn taylor_test<P: Checkable>(
    problem: &P,
    seed: u64,
) -> Result<(Vec<(f64, f64)>, f64), BpttError> {
    let (analytic, context) = problem.analytic()?;
    let mut rng = crate::rng::stream(seed, &[0x7A]);
    let dirs: Vec<DMatrix<f64>> = analytic
        .variables
        .iter()
        .map(|v| crate::rng::uniform_matrix(&mut rng, v.gradient.nrows(), v.gradient.ncols(), 1.0))
        .collect();
    let norm = dirs.iter().map(|d| d.norm_squared()).sum::<f64>().sqrt();
    let slope: f64 = analytic
        .variables
        .iter()
        .zip(&dirs)
        .map(|(v, d)| v.gradient.dot(d))
        .sum::<f64>()
        / norm;
    let l0 = analytic.loss;
    let mut points = Vec::new();
    for k in 4..=16 {
        let h = 2f64.powi(-k);
        let mut work = problem.clone();
        for (i, d) in dirs.iter().enumerate() {
            let v = work.variable_mut(i);
            *v += d * (h / norm);
        }
        let (l, _) = work.evaluate(&context)?;
        points.push((h, (l - l0 - h * slope).abs()));
    }
    // the asymptotic order: the last four points still well above the rounding floor of L
    let floor = 100.0 * f64::EPSILON * l0.abs().max(analytic.magnitude).max(1.0);
    let above: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(_, r)| r > floor)
        .map(|(h, r)| (h.ln(), r.ln()))
        .collect();
    let used = &above[above.len().saturating_sub(4)..];
    let order = if used.len() < 3 {
        f64::NAN
    } else {
        let n = used.len() as f64;
        let (mx, my) = (
            used.iter().map(|p| p.0).sum::<f64>() / n,
            used.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxy: f64 = used.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = used.iter().map(|p| (p.0 - mx).powi(2)).sum();
        sxy / sxx
    };
    Ok((points, order))
}
