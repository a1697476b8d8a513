//! Linear readout `y = W h + b` and the losses on top of it, forward and backward in pairs.
//!
//! Shapes: `h` is `H × B`, `y` and regression targets `O × B`, class targets `B` indices.

use nalgebra::{DMatrix, RealField};

use crate::error::BpttError;
use crate::error::check_shape;
use crate::nn::params::Params;
use crate::rng::{Rng, uniform_matrix};

/// Index of `weight` (O × H) in [`Readout::params`].
pub const WEIGHT: usize = 0;
/// Index of `bias` (O × 1).
pub const BIAS: usize = 1;

/// Linear readout `y = W h + b`, PyTorch `nn.Linear` names (`weight` O × H, `bias` O × 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Readout<T: RealField + Copy> {
    params: Params<T>,
}

impl<T: RealField + Copy> Readout<T> {
    /// A readout from H hidden units to O outputs with every parameter in U(−bound, bound).
    pub fn uniform(hidden_size: usize, output_size: usize, bound: f64, rng: &mut Rng) -> Self {
        let mut params = Params::new();
        params.push(
            "weight",
            uniform_matrix(rng, output_size, hidden_size, bound),
        );
        params.push("bias", uniform_matrix(rng, output_size, 1, bound));
        Readout { params }
    }
    /// The same readout in another scalar `U` (each entry through f64: exact from f32 to
    /// f64, rounded to nearest from f64 to f32).
    #[must_use]
    pub fn rescalar<U: RealField + Copy>(&self) -> Readout<U> {
        let mut params = Params::new();
        for (name, m) in self.params.iter() {
            params.push(name, crate::nn::params::rescalar_matrix(m));
        }
        Readout { params }
    }
    pub fn params(&self) -> &Params<T> {
        &self.params
    }
    pub fn params_mut(&mut self) -> &mut Params<T> {
        &mut self.params
    }
    pub fn input_size(&self) -> usize {
        self.params[WEIGHT].ncols()
    }
    pub fn output_size(&self) -> usize {
        self.params[WEIGHT].nrows()
    }

    /// `y = W h + b 1ᵀ` (`O × B`). The cache of this layer is `h` itself.
    pub fn forward(&self, h: &DMatrix<T>) -> DMatrix<T> {
        let mut y = DMatrix::zeros(self.output_size(), h.ncols());
        y.gemm(T::one(), &self.params[WEIGHT], h, T::zero());
        let b = self.params[BIAS].column(0);
        for mut col in y.column_iter_mut() {
            col += b;
        }
        y
    }

    /// Given `dy = ∂L/∂y` and the forward input `h`: `dW += dy hᵀ`, `db += dy 1`; returns
    /// `dh = Wᵀ dy`.
    pub fn backward(&self, dy: &DMatrix<T>, h: &DMatrix<T>, grads: &mut Params<T>) -> DMatrix<T> {
        let one = T::one();
        for b in 0..dy.ncols() {
            grads[WEIGHT].ger(one, &dy.column(b), &h.column(b), one);
        }
        let db = dy.column_sum();
        let mut gb = grads[BIAS].column_mut(0);
        gb += &db;
        let mut dh = DMatrix::zeros(self.input_size(), dy.ncols());
        dh.gemm_tr(one, &self.params[WEIGHT], dy, T::zero());
        dh
    }
}

/// Mean squared error, PyTorch's `MSELoss(reduction="mean")`:
/// `L = (1/(O·B)) Σ (y − t)²`, `∂L/∂y = 2 (y − t) / (O·B)`. Returns `(L, ∂L/∂y)`.
pub fn mse<T: RealField + Copy>(
    y: &DMatrix<T>,
    target: &DMatrix<T>,
) -> Result<(T, DMatrix<T>), BpttError> {
    check_shape(|| "regression target".into(), target, y.nrows(), y.ncols())?;
    let n: T = nalgebra::convert(y.len() as f64);
    let diff = y - target;
    let loss = diff.norm_squared() / n;
    let two: T = nalgebra::convert(2.0);
    Ok((loss, diff * (two / n)))
}

/// Softmax cross-entropy averaged over the batch, PyTorch's `CrossEntropyLoss`:
/// `L = (1/B) Σ_b [logsumexp(y_b) − y_b[c_b]]`, `∂L/∂y_b = (softmax(y_b) − e_{c_b}) / B`.
/// The log-sum-exp subtracts the column maximum first, so no exponential overflows.
pub fn softmax_cross_entropy<T: RealField + Copy>(
    y: &DMatrix<T>,
    classes: &[usize],
) -> Result<(T, DMatrix<T>), BpttError> {
    let mut dy = DMatrix::zeros(y.nrows(), y.ncols());
    let loss = softmax_cross_entropy_into(y, classes, &mut dy)?;
    Ok((loss, dy))
}

/// [`softmax_cross_entropy`] writing `∂L/∂y` into `dy` (reshaped to `y`'s shape, reusing its
/// storage); returns `L`.
pub fn softmax_cross_entropy_into<T: RealField + Copy>(
    y: &DMatrix<T>,
    classes: &[usize],
    dy: &mut DMatrix<T>,
) -> Result<T, BpttError> {
    if classes.len() != y.ncols() {
        return Err(BpttError::Invalid(format!(
            "{} class targets for a batch of {}",
            classes.len(),
            y.ncols()
        )));
    }
    if let Some(&c) = classes.iter().find(|&&c| c >= y.nrows()) {
        return Err(BpttError::Invalid(format!(
            "class target {c} out of range for {} outputs",
            y.nrows()
        )));
    }
    let inv_b: T = nalgebra::convert(1.0 / y.ncols() as f64);
    let mut loss = T::zero();
    crate::nn::engine::ensure(dy, y.nrows(), y.ncols());
    for (b, &c) in classes.iter().enumerate() {
        let col = y.column(b);
        let m = col
            .iter()
            .copied()
            .fold(col[0], |m, v| if v > m { v } else { m });
        let sum_exp = col.iter().fold(T::zero(), |s, &v| s + (v - m).exp());
        let lse = m + sum_exp.ln();
        loss += (lse - col[c]) * inv_b;
        // softmax(y) − onehot(c), divided by B
        for i in 0..y.nrows() {
            dy[(i, b)] = (col[i] - lse).exp() * inv_b;
        }
        dy[(c, b)] -= inv_b;
    }
    Ok(loss)
}

/// The magnitude `Λ` with which rounding errors in [`softmax_cross_entropy`] scale:
/// `(1/B) Σ_b (|logsumexp(y_b)| + |y_b[c_b]|)`. The loss is the *difference* of those two
/// terms, so with large logits it can be tiny while its rounding error is `≈ ε·Λ` — the
/// gradient checker sizes its absolute floor by this, not by `|L|`.
pub fn softmax_cross_entropy_magnitude<T: RealField + Copy>(
    y: &DMatrix<T>,
    classes: &[usize],
) -> T {
    let inv_b: T = nalgebra::convert(1.0 / y.ncols().max(1) as f64);
    let mut total = T::zero();
    for (b, &c) in classes.iter().enumerate().take(y.ncols()) {
        let col = y.column(b);
        let m = col
            .iter()
            .copied()
            .fold(col[0], |m, v| if v > m { v } else { m });
        let lse = m + col.iter().fold(T::zero(), |s, &v| s + (v - m).exp()).ln();
        total += (lse.abs() + col[c.min(y.nrows() - 1)].abs()) * inv_b;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn cross_entropy_is_stable_for_huge_logits() {
        let y = DMatrix::from_column_slice(3, 1, &[1000.0f64, 0.0, -1000.0]);
        let (l, dy) = softmax_cross_entropy(&y, &[0]).unwrap();
        assert!(l.is_finite() && l.abs() < 1e-300);
        let (l2, _) = softmax_cross_entropy(&y, &[1]).unwrap();
        assert_relative_eq!(l2, 1000.0, epsilon = 1e-12, max_relative = 1e-15);
        assert!(dy.iter().all(|v| v.is_finite()));
        // uniform logits: L = ln 3 for any class
        let z = DMatrix::from_element(3, 2, 5.0f64);
        let (l3, _) = softmax_cross_entropy(&z, &[0, 2]).unwrap();
        assert_relative_eq!(l3, 3f64.ln(), epsilon = 1e-15, max_relative = 1e-15);
    }

    #[test]
    fn mse_is_the_mean_of_squared_differences() {
        // y − t = [1, −2, 0.5, 0]: mean of squares (1 + 4 + 0.25 + 0)/4, gradient 2(y − t)/4
        let y = DMatrix::from_row_slice(2, 2, &[1.0f64, 2.0, 0.5, -1.0]);
        let t = DMatrix::from_row_slice(2, 2, &[0.0f64, 4.0, 0.0, -1.0]);
        let (l, dy) = mse(&y, &t).unwrap();
        assert_relative_eq!(l, 5.25 / 4.0, epsilon = 1e-16, max_relative = 1e-15);
        assert_relative_eq!(
            dy,
            DMatrix::from_row_slice(2, 2, &[0.5, -1.0, 0.25, 0.0]),
            epsilon = 1e-16,
            max_relative = 1e-15
        );
    }

    #[test]
    fn cross_entropy_magnitude_is_the_batch_mean_of_the_cancelling_terms() {
        // column 0: logits (−800, 800), class 0: logsumexp = 800, |800| + |−800| = 1600;
        // column 1: (1, 1), class 1: logsumexp = 1 + ln 2, plus |1|. Λ is the mean over the
        // batch, and finite although exp(1600) is not: the shift is the column maximum.
        let y = DMatrix::from_column_slice(2, 2, &[-800.0f64, 800.0, 1.0, 1.0]);
        let lambda = softmax_cross_entropy_magnitude(&y, &[0, 1]);
        let want = (1600.0 + (2.0 + 2f64.ln())) / 2.0;
        assert_relative_eq!(lambda, want, epsilon = 1e-12, max_relative = 1e-15);
    }

    #[test]
    fn cross_entropy_magnitude_clamps_classes_the_loss_would_reject() {
        // the loss itself refuses an out-of-range class; its magnitude (computed for the
        // checker's floor) must not panic on one: it reads the last logit instead
        let y = DMatrix::from_column_slice(2, 1, &[3.0f64, -1.0]);
        let clamped = softmax_cross_entropy_magnitude(&y, &[1]);
        assert_eq!(softmax_cross_entropy_magnitude(&y, &[7]), clamped);
        assert!(clamped.is_finite());
    }

    #[test]
    fn losses_reject_bad_targets() {
        let y = DMatrix::<f64>::zeros(3, 2);
        assert!(softmax_cross_entropy(&y, &[0]).is_err());
        assert!(softmax_cross_entropy(&y, &[0, 3]).is_err());
        assert!(mse(&y, &DMatrix::zeros(2, 2)).is_err());
    }

    #[test]
    fn loss_gradients_match_central_differences() {
        let y = DMatrix::from_row_slice(3, 2, &[0.3f64, -1.2, 2.0, 0.1, -0.4, 0.9]);
        let t = DMatrix::from_row_slice(3, 2, &[1.0f64, 0.0, -1.0, 0.5, 0.2, 0.3]);
        let classes = [2usize, 0];
        let (_, d_mse) = mse(&y, &t).unwrap();
        let (_, d_ce) = softmax_cross_entropy(&y, &classes).unwrap();
        let h = 1e-6;
        for i in 0..y.len() {
            let (mut p, mut m) = (y.clone(), y.clone());
            p[i] += h;
            m[i] -= h;
            let n_mse = (mse(&p, &t).unwrap().0 - mse(&m, &t).unwrap().0) / (2.0 * h);
            let n_ce = (softmax_cross_entropy(&p, &classes).unwrap().0
                - softmax_cross_entropy(&m, &classes).unwrap().0)
                / (2.0 * h);
            assert_relative_eq!(d_mse[i], n_mse, epsilon = 1e-9, max_relative = 1e-7);
            assert_relative_eq!(d_ce[i], n_ce, epsilon = 1e-9, max_relative = 1e-7);
        }
    }
}
