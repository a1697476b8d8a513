//! Pascanu's regularizer Ω (Pascanu, Mikolov & Bengio 2013, eq. 9–10), squared-norm form, for
//! the vanilla cell `h_k = σ(a_k)`, `a_k = W_ih x_k + W_hh h_{k−1} + b`:
//!
//! ```text
//! δ_k   = ∂L/∂h_k                          (the full BPTT gradient, H per sequence)
//! u_k   = σ'(a_k) ⊙ δ_k                     so that δ_kᵀ ∂h_k/∂h_{k−1} = (W_hhᵀ u_k)ᵀ
//! r_k   = ‖W_hhᵀ u_k‖² / ‖δ_k‖²
//! Ω     = mean over the (k, b) with ‖δ_k‖² ≥ bound of (r_k − 1)²
//! ```
//!
//! Ω asks every step to preserve the norm of the error signal it passes back. As in the paper
//! (and its code), only the *immediate* gradient is used: δ and h (hence u) are held constant,
//! so with `g_k = W_hhᵀ u_k`, `∂‖g‖²/∂W_hh = 2 u gᵀ` and
//!
//! ```text
//! ∂Ω/∂W_hh = (1/M) Σ_{(k,b) used} 4 (r_k − 1)/‖δ_k‖² · u_k g_kᵀ
//! ```
//!
//! (M the number of (step, sequence) pairs used). The mean over the used pairs is the paper
//! code's normalisation (mean over the batch, sum over steps, divided by the number of steps
//! above the bound). Derivation: `proofs/training.md`; the gradient is checked against finite
//! differences of Ω with δ and h frozen by [`OmegaProblem`] and the gradient checker.

use nalgebra::{DMatrix, RealField};

use crate::error::BpttError;
use crate::nn::engine::ensure;
use crate::nn::engine::mat::{MatMut, MatRef, Op, gemm, gemm_scaled};
use crate::verify::gradcheck::{Analytic, Checkable, Variable};

/// The paper's bound on `‖δ_k‖²` below which a step is left out (its code's default).
pub const DEFAULT_BOUND: f64 = 1e-20;

/// The value of Ω and how much of the sequence it saw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Omega {
    pub value: f64,
    /// Fraction of the (step, sequence) pairs with `‖δ_k‖² ≥ bound`.
    pub used: f64,
}

/// Ω for the frozen `u` (H × N, N = B·T columns `u_k` of every step and sequence) and
/// `delta_sq` (N values `‖δ_k‖²`, same column order). With `grad = Some((g, α))`, adds
/// `α·∂Ω/∂W_hh` (u, δ frozen) to `g` (H × H).
pub fn penalty<T: RealField + Copy>(
    w_hh: &DMatrix<T>,
    u: &DMatrix<T>,
    delta_sq: &[T],
    bound: f64,
    grad: Option<(&mut DMatrix<T>, f64)>,
) -> Result<Omega, BpttError> {
    penalty_with(&mut Scratch::default(), w_hh, u, delta_sq, bound, grad)
}

/// The buffers of [`penalty_with`], kept by a training loop so that Ω allocates nothing per
/// update once warm.
#[derive(Clone, Debug)]
pub struct Scratch<T: RealField + Copy> {
    /// `G = W_hhᵀ U`, H × N.
    g: DMatrix<T>,
    /// `U diag(coef)`, H × N.
    scaled: DMatrix<T>,
    coef: Vec<T>,
}

impl<T: RealField + Copy> Default for Scratch<T> {
    fn default() -> Self {
        Scratch {
            g: DMatrix::zeros(0, 0),
            scaled: DMatrix::zeros(0, 0),
            coef: Vec::new(),
        }
    }
}

/// [`penalty`] over reusable buffers. Any scalar: the sums are in `T`, the returned value and
/// fraction in f64.
pub fn penalty_with<T: RealField + Copy>(
    scratch: &mut Scratch<T>,
    w_hh: &DMatrix<T>,
    u: &DMatrix<T>,
    delta_sq: &[T],
    bound: f64,
    grad: Option<(&mut DMatrix<T>, f64)>,
) -> Result<Omega, BpttError> {
    let (h, n) = u.shape();
    if w_hh.shape() != (h, h) || delta_sq.len() != n {
        return Err(BpttError::Invalid(format!(
            "Ω: W_hh is {}x{}, u is {h}x{n}, {} values of ‖δ‖² (expected {h}x{h}, {n})",
            w_hh.nrows(),
            w_hh.ncols(),
            delta_sq.len()
        )));
    }
    let c = |x: f64| -> T { nalgebra::convert(x) };
    // g_k = W_hhᵀ u_k for every column at once
    let Scratch { g, scaled, coef } = scratch;
    ensure(g, h, n);
    gemm(
        MatMut::from(&mut *g),
        false,
        Op::T(MatRef::from(w_hh)),
        Op::N(MatRef::from(u)),
    );
    coef.clear();
    coef.resize(n, T::zero());
    let (bound_t, one, four) = (c(bound), T::one(), c(4.0));
    let (mut sum, mut used) = (T::zero(), 0usize);
    for (j, &d2) in delta_sq.iter().enumerate() {
        // also leaves out non-finite δ (NaN fails the comparison)
        if d2 >= bound_t && d2.is_finite() {
            let r = g.column(j).norm_squared() / d2;
            sum += (r - one) * (r - one);
            coef[j] = four * (r - one) / d2;
            used += 1;
        }
    }
    if used == 0 {
        return Ok(Omega {
            value: 0.0,
            used: 0.0,
        });
    }
    let m = used as f64;
    if let Some((dw, alpha)) = grad {
        if dw.shape() != (h, h) {
            return Err(BpttError::shape("Ω gradient", (h, h), dw.shape()));
        }
        // ∂Ω/∂W_hh = (U diag(coef)) Gᵀ / M
        ensure(scaled, h, n);
        scaled.copy_from(u);
        for (mut col, c) in scaled.column_iter_mut().zip(coef.iter()) {
            col *= *c;
        }
        gemm_scaled(
            MatMut::from(dw),
            true,
            c(alpha / m),
            Op::N(MatRef::from(&*scaled)),
            Op::T(MatRef::from(&*g)),
        );
    }
    Ok(Omega {
        value: to_f64(sum / c(m)),
        used: m / n.max(1) as f64,
    })
}

/// A scalar's f64 value (f32 and f64 exactly; other scalars through their real part).
fn to_f64<T: RealField + Copy>(x: T) -> f64 {
    x.to_subset().unwrap_or(f64::NAN)
}

/// Ω as a function of `W_hh` alone, with `u` and `‖δ‖²` frozen: what [`crate::verify::gradcheck`]
/// checks the immediate gradient on.
#[derive(Clone, Debug)]
pub struct OmegaProblem {
    pub w_hh: DMatrix<f64>,
    pub u: DMatrix<f64>,
    pub delta_sq: Vec<f64>,
    pub bound: f64,
}

impl Checkable for OmegaProblem {
    type Context = ();

    fn analytic(&self) -> Result<(Analytic, ()), BpttError> {
        let mut gradient = DMatrix::zeros(self.w_hh.nrows(), self.w_hh.ncols());
        let om = penalty(
            &self.w_hh,
            &self.u,
            &self.delta_sq,
            self.bound,
            Some((&mut gradient, 1.0)),
        )?;
        // Ω is a mean of (r − 1)² with r a ratio of sums of H squares: its rounding scales with
        // the terms before cancellation, (r + 1)², times H
        let mut g = DMatrix::zeros(self.u.nrows(), self.u.ncols());
        gemm(
            MatMut::from(&mut g),
            false,
            Op::T(MatRef::from(&self.w_hh)),
            Op::N(MatRef::from(&self.u)),
        );
        let terms: Vec<f64> = self
            .delta_sq
            .iter()
            .enumerate()
            .filter(|&(_, &d)| d >= self.bound && d.is_finite())
            .map(|(j, &d)| (g.column(j).norm_squared() / d + 1.0).powi(2))
            .collect();
        let magnitude = terms.iter().sum::<f64>() / terms.len().max(1) as f64;
        Ok((
            Analytic {
                loss: om.value,
                magnitude,
                rounding: f64::EPSILON * self.u.nrows() as f64 * magnitude,
                variables: vec![Variable {
                    name: "weight_hh".into(),
                    step: None,
                    gradient,
                    blocks: None,
                }],
            },
            (),
        ))
    }

    fn variable_mut(&mut self, _index: usize) -> &mut DMatrix<f64> {
        &mut self.w_hh
    }

    fn evaluate(&self, _: &()) -> Result<(f64, Vec<bool>), BpttError> {
        // which pairs are used depends on δ only (frozen): Ω is smooth in W_hh
        Ok((
            penalty(&self.w_hh, &self.u, &self.delta_sq, self.bound, None)?.value,
            Vec::new(),
        ))
    }
}
