//! Pascanu et al.'s dynamical-systems view of exploding gradients (2013, §2.2–2.3), on the
//! single sigmoid unit
//!
//! ```text
//! x_t = w·σ(x_{t−1}) + b,        E_T = (σ(x_T) − target)²
//! ```
//!
//! which is our vanilla sigmoid cell with hidden size 1 (`h_t = σ(x_t)`, `x_t = w h_{t−1} + b`,
//! zero input), so the error's gradient comes from our BPTT (`proofs/vanilla.md`).
//!
//! Fixed points `x* = w σ(x*) + b` are found by bracketing: `f(x) = w σ(x) + b − x` is monotone
//! between the critical points of f (where `w σ'(x) = 1`, known in closed form), and every fixed
//! point lies in `[b + min(0, w), b + max(0, w)]`; so each monotone piece holds at most one root,
//! located by a sign test and bisection to full precision. A fixed point is stable when
//! `|w σ'(x*)| < 1`. For w > 4 the map is bistable for b in an open interval whose end points are
//! saddle-node bifurcations (`w σ'(x*) = 1`).

use nalgebra::DMatrix;

use crate::error::BpttError;
use crate::nn::activation::Activation;
use crate::nn::activation::sigmoid;
use crate::nn::cell::{Cell, CellFamily};
use crate::nn::cells::vanilla::VanillaRnn;
use crate::nn::model::{LossAt, Model, Objective, Targets};
use crate::nn::params::Params;
use crate::nn::readout::Readout;
use crate::nn::sequence::Truncation;
use crate::verify::gradcheck::Problem;

/// σ'(x) = σ(x)(1 − σ(x)).
fn sigmoid_prime(x: f64) -> f64 {
    let s = sigmoid(x);
    s * (1.0 - s)
}

/// One fixed point of `x ↦ w σ(x) + b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixedPoint {
    pub x: f64,
    /// The map's derivative there, `w σ'(x*)`.
    pub multiplier: f64,
    /// `|w σ'(x*)| < 1`.
    pub stable: bool,
}

/// The points where `w σ'(x) = 1` (empty unless w ≥ 4): `σ(x) = (1 ± √(1 − 4/w))/2`.
pub fn critical_points(w: f64) -> Vec<f64> {
    if w < 4.0 {
        return Vec::new();
    }
    let r = (1.0 - 4.0 / w).sqrt();
    let logit = |s: f64| (s / (1.0 - s)).ln();
    let (lo, hi) = (logit((1.0 - r) / 2.0), logit((1.0 + r) / 2.0));
    if lo == hi { vec![lo] } else { vec![lo, hi] }
}

/// Every fixed point of `x ↦ w σ(x) + b`, increasing.
pub fn fixed_points(w: f64, b: f64) -> Vec<FixedPoint> {
    let f = |x: f64| w * sigmoid(x) + b - x;
    let (lo, hi) = (b + w.min(0.0) - 1.0, b + w.max(0.0) + 1.0);
    let mut knots = vec![lo];
    knots.extend(
        critical_points(w)
            .into_iter()
            .filter(|c| *c > lo && *c < hi),
    );
    knots.push(hi);
    let mut roots: Vec<f64> = Vec::new();
    // a tangency (saddle-node: double root) sits exactly on a critical point, where f may miss
    // zero by rounding only: accept |f| within a few ulps of the terms' size there
    for &c in &knots[1..knots.len() - 1] {
        if f(c).abs() <= 8.0 * f64::EPSILON * (1.0 + c.abs() + w.abs() + b.abs()) {
            roots.push(c);
        }
    }
    for pair in knots.windows(2) {
        let (mut a, mut c) = (pair[0], pair[1]);
        let (fa, fc) = (f(a), f(c));
        if fa == 0.0 {
            roots.push(a);
            continue;
        }
        if fa.signum() == fc.signum() {
            continue;
        }
        // bisection to adjacent floats: f is monotone on [a, c]
        let sa = fa.signum();
        loop {
            let m = 0.5 * (a + c);
            if m <= a || m >= c {
                break;
            }
            let fm = f(m);
            if fm == 0.0 {
                a = m;
                c = m;
                break;
            }
            if fm.signum() == sa { a = m } else { c = m }
        }
        roots.push(if f(a).abs() <= f(c).abs() { a } else { c });
    }
    if let Some(&last) = knots.last()
        && f(last) == 0.0
    {
        roots.push(last);
    }
    roots.sort_by(f64::total_cmp);
    roots.dedup_by(|a, b| (*a - *b).abs() <= 1e-12 * (1.0 + a.abs()));
    roots
        .into_iter()
        .map(|x| {
            let multiplier = w * sigmoid_prime(x);
            FixedPoint {
                x,
                multiplier,
                stable: multiplier.abs() < 1.0,
            }
        })
        .collect()
}

/// The open interval of b where `x ↦ w σ(x) + b` has three fixed points (two stable), bounded by
/// the saddle-node bifurcations `b = x_c − w σ(x_c)` at the critical points x_c; None for w ≤ 4.
pub fn bistable_interval(w: f64) -> Option<(f64, f64)> {
    let c = critical_points(w);
    if c.len() != 2 {
        return None;
    }
    let b_at = |x: f64| x - w * sigmoid(x);
    let (b1, b2) = (b_at(c[0]), b_at(c[1]));
    Some((b1.min(b2), b1.max(b2)))
}

/// `x_T` after T iterations of the map from x0.
pub fn iterate(w: f64, b: f64, x0: f64, steps: usize) -> f64 {
    (0..steps).fold(x0, |x, _| w * sigmoid(x) + b)
}

/// The 1-unit sigmoid RNN with `weight_hh = w`, `bias_hh = b` (other parameters 0) and an
/// identity readout, and the problem `E_T = (σ(x_T) − target)²` from `x_0`: for our BPTT and
/// for the gradient checker.
pub fn one_unit_problem(
    w: f64,
    b: f64,
    x0: f64,
    target: f64,
    steps: usize,
) -> Problem<VanillaRnn<f64>> {
    let mut cell = VanillaRnn::<f64>::zeros(1, 1, Activation::Sigmoid);
    cell.params_mut()[crate::nn::cells::vanilla::WEIGHT_HH][(0, 0)] = w;
    cell.params_mut()[crate::nn::cells::vanilla::BIAS_HH][(0, 0)] = b;
    let mut readout = Readout::uniform(1, 1, 0.0, &mut crate::rng::stream(0, &[]));
    readout.params_mut()[crate::nn::readout::WEIGHT][(0, 0)] = 1.0;
    Problem {
        model: Model::new(cell, readout).expect("1 unit"),
        xs: vec![DMatrix::zeros(1, 1); steps],
        s0: DMatrix::from_element(1, 1, sigmoid(x0)),
        objective: Objective {
            targets: Targets::Mse(vec![DMatrix::from_element(1, 1, target)]),
            at: LossAt::Last,
        },
        truncation: Truncation::Full,
    }
}

/// `(E_T, ∂E/∂w, ∂E/∂b)` by BPTT through the 1-unit RNN.
pub fn error_and_gradient(
    w: f64,
    b: f64,
    x0: f64,
    target: f64,
    steps: usize,
) -> Result<(f64, f64, f64), BpttError> {
    let p = one_unit_problem(w, b, x0, target, steps);
    let (e, g) = p
        .model
        .loss_and_grads(&p.xs, &p.s0, &p.objective, Truncation::Full)?;
    Ok((
        e,
        g.cell[crate::nn::cells::vanilla::WEIGHT_HH][(0, 0)],
        g.cell[crate::nn::cells::vanilla::BIAS_HH][(0, 0)],
    ))
}

/// One gradient-descent step's record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DescentStep {
    pub step: usize,
    pub w: f64,
    pub b: f64,
    pub error: f64,
    /// ‖∇E‖ before clipping.
    pub grad_norm: f64,
    /// Whether the step was rescaled by clipping.
    pub clipped: bool,
    /// Whether the step was skipped (non-finite gradient).
    pub skipped: bool,
}

/// Gradient descent on (w, b) from `start` for `steps` steps with learning rate `lr`, with
/// global-norm clipping at `threshold` if given (Pascanu et al. Algorithm 1, via
/// [`crate::train::clip::clip_global_norm`]); records the state before every step and after the last.
pub fn descend(
    start: (f64, f64),
    lr: f64,
    steps: usize,
    threshold: Option<f64>,
    x0: f64,
    target: f64,
    horizon: usize,
) -> Result<Vec<DescentStep>, BpttError> {
    let (mut w, mut b) = start;
    let mut out = Vec::with_capacity(steps + 1);
    for step in 0..=steps {
        let (error, gw, gb) = error_and_gradient(w, b, x0, target, horizon)?;
        let mut g = Params::new();
        g.push("w", DMatrix::from_element(1, 1, gw));
        g.push("b", DMatrix::from_element(1, 1, gb));
        let grad_norm = crate::train::clip::global_norm(&[&g]);
        let (clipped, skipped) = match threshold {
            Some(t) => match crate::train::clip::clip_global_norm(&mut [&mut g], t)? {
                crate::train::clip::Clip::Rescaled { .. } => (true, false),
                crate::train::clip::Clip::Unchanged { .. } => (false, false),
                crate::train::clip::Clip::NonFinite { .. } => (false, true),
            },
            None => (false, !grad_norm.is_finite()),
        };
        out.push(DescentStep {
            step,
            w,
            b,
            error,
            grad_norm,
            clipped,
            skipped,
        });
        if step == steps {
            break;
        }
        if !skipped {
            w -= lr * g[0][(0, 0)];
            b -= lr * g[1][(0, 0)];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn w5_has_the_textbook_bistable_interval() {
        // σ(x_c) = (1 ± √0.2)/2 for w = 5
        let (lo, hi) = bistable_interval(5.0).unwrap();
        let r = 0.2f64.sqrt();
        let xc = ((1.0 + r) / (1.0 - r)).ln();
        assert_relative_eq!(
            hi,
            -xc - 5.0 * (1.0 - r) / 2.0,
            epsilon = 1e-14,
            max_relative = 1e-14
        );
        assert_relative_eq!(
            lo,
            xc - 5.0 * (1.0 + r) / 2.0,
            epsilon = 1e-14,
            max_relative = 1e-14
        );
        assert!(bistable_interval(3.9).is_none());
        assert_eq!(fixed_points(5.0, -2.5).len(), 3);
        assert_eq!(fixed_points(5.0, -1.0).len(), 1);
    }
}
