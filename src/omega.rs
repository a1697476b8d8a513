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

use faer::{Accum, MatMut, MatRef, Par};
use nalgebra::DMatrix;

use crate::BpttError;
use crate::gradcheck::{Analytic, Checkable, Variable};

/// A faer view of a nalgebra matrix (column-major and contiguous: no copy).
fn view(m: &DMatrix<f64>) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(m.as_slice(), m.nrows(), m.ncols())
}

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
pub fn penalty(
    w_hh: &DMatrix<f64>,
    u: &DMatrix<f64>,
    delta_sq: &[f64],
    bound: f64,
    grad: Option<(&mut DMatrix<f64>, f64)>,
) -> Result<Omega, BpttError> {
    penalty_with(&mut Scratch::default(), w_hh, u, delta_sq, bound, grad)
}

/// The buffers of [`penalty_with`], kept by a training loop so that Ω allocates nothing per
/// update once warm.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    /// `G = W_hhᵀ U`, H × N.
    g: DMatrix<f64>,
    /// `U diag(coef)`, H × N.
    scaled: DMatrix<f64>,
    coef: Vec<f64>,
}

/// [`penalty`] over reusable buffers.
pub fn penalty_with(
    scratch: &mut Scratch,
    w_hh: &DMatrix<f64>,
    u: &DMatrix<f64>,
    delta_sq: &[f64],
    bound: f64,
    grad: Option<(&mut DMatrix<f64>, f64)>,
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
    // g_k = W_hhᵀ u_k for every column at once
    let Scratch { g, scaled, coef } = scratch;
    crate::engine::ensure(g, h, n);
    matmul(g, view(w_hh).transpose(), view(u), Accum::Replace, 1.0);
    coef.clear();
    coef.resize(n, 0.0);
    let (mut sum, mut used) = (0.0, 0usize);
    for (j, &d2) in delta_sq.iter().enumerate() {
        // also leaves out non-finite δ (NaN fails the comparison)
        if d2 >= bound && d2.is_finite() {
            let r = g.column(j).norm_squared() / d2;
            sum += (r - 1.0) * (r - 1.0);
            coef[j] = 4.0 * (r - 1.0) / d2;
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
        crate::engine::ensure(scaled, h, n);
        scaled.copy_from(u);
        for (mut col, c) in scaled.column_iter_mut().zip(coef.iter()) {
            col *= *c;
        }
        matmul(dw, view(scaled), view(g).transpose(), Accum::Add, alpha / m);
    }
    Ok(Omega {
        value: sum / m,
        used: m / n.max(1) as f64,
    })
}

fn matmul(dst: &mut DMatrix<f64>, a: MatRef<'_, f64>, b: MatRef<'_, f64>, acc: Accum, alpha: f64) {
    let (r, c) = dst.shape();
    faer::linalg::matmul::matmul(
        MatMut::from_column_major_slice_mut(dst.as_mut_slice(), r, c),
        acc,
        a,
        b,
        alpha,
        Par::Seq,
    );
}

/// Ω as a function of `W_hh` alone, with `u` and `‖δ‖²` frozen: what [`crate::gradcheck`]
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
        matmul(
            &mut g,
            view(&self.w_hh).transpose(),
            view(&self.u),
            Accum::Replace,
            1.0,
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
