//! Residual (skip) connection around a layer: `y_t = F(x)_t + P x_t`, with `P` the identity when
//! the layer's input and output widths agree, and a learned projection `skip_proj` (`O × D`)
//! otherwise. Backward: the skip adds a direct path, `∂L/∂x_t = (∂F/∂x)ᵀ dy + Pᵀ dy_t`, and
//! `∂L/∂P = Σ_t dy_t x_tᵀ` (`proofs/architectures.md`).

use nalgebra::{DMatrix, RealField};

use super::{ForwardResult, LayerGrads, SeqLayer};
use crate::BpttError;
use crate::rng::{Rng, uniform_matrix};

/// A layer with a skip connection around it.
#[derive(Clone, Debug, PartialEq)]
pub struct Residual<T: RealField + Copy, L> {
    pub inner: L,
    /// `None`: identity skip (widths agree). `Some(P)`: learned `O × D` projection.
    pub projection: Option<DMatrix<T>>,
}

impl<T: RealField + Copy, L: SeqLayer<T>> Residual<T, L> {
    /// Identity skip when `inner`'s input and output widths agree; otherwise a projection drawn
    /// from U(−1/√D, 1/√D) (PyTorch's `nn.Linear` default).
    pub fn new(inner: L, rng: &mut Rng) -> Self {
        let (d, o) = (inner.input_size(), inner.output_size());
        let projection =
            (d != o).then(|| uniform_matrix(rng, o, d, 1.0 / (d.max(1) as f64).sqrt()));
        Residual { inner, projection }
    }
}

impl<T: RealField + Copy, L: SeqLayer<T>> SeqLayer<T> for Residual<T, L> {
    type Cache = (L::Cache, Vec<DMatrix<T>>);

    fn name(&self) -> String {
        format!("res-{}", self.inner.name())
    }
    fn input_size(&self) -> usize {
        self.inner.input_size()
    }
    fn output_size(&self) -> usize {
        self.inner.output_size()
    }
    fn state_sizes(&self) -> Vec<usize> {
        self.inner.state_sizes()
    }
    fn state_labels(&self, layer: usize) -> Vec<String> {
        self.inner.state_labels(layer)
    }
    fn state_blocks(&self) -> Vec<&'static str> {
        self.inner.state_blocks()
    }
    fn state_block_rows(&self) -> usize {
        self.inner.state_block_rows()
    }
    fn param_names(&self, layer: usize) -> Vec<String> {
        let mut names = self.inner.param_names(layer);
        if self.projection.is_some() {
            names.push(format!("skip_proj_l{layer}"));
        }
        names
    }
    fn params(&self) -> Vec<&DMatrix<T>> {
        let mut p = self.inner.params();
        p.extend(self.projection.as_ref());
        p
    }
    fn params_mut(&mut self) -> Vec<&mut DMatrix<T>> {
        let mut p = self.inner.params_mut();
        p.extend(self.projection.as_mut());
        p
    }

    fn forward(&self, xs: &[DMatrix<T>], s0: &[DMatrix<T>]) -> ForwardResult<T, Self::Cache> {
        let (d, o) = (self.inner.input_size(), self.inner.output_size());
        match &self.projection {
            None if d != o => {
                return Err(BpttError::Invalid(format!(
                    "identity skip around a layer of input {d} and output {o}: a projection is needed"
                )));
            }
            Some(p) => crate::error::check_shape(|| "skip_proj".into(), p, o, d)?,
            None => {}
        }
        let (mut ys, finals, cache) = self.inner.forward(xs, s0)?;
        // y_t = F(x)_t + P x_t
        for (y, x) in ys.iter_mut().zip(xs) {
            match &self.projection {
                None => *y += x,
                Some(p) => y.gemm(T::one(), p, x, T::one()),
            }
        }
        Ok((ys, finals, (cache, xs.to_vec())))
    }

    fn backward(
        &self,
        (cache, xs): &Self::Cache,
        d_outputs: &[DMatrix<T>],
        d_finals: &[DMatrix<T>],
    ) -> LayerGrads<T> {
        let (mut params, mut dxs, ds0) = self.inner.backward(cache, d_outputs, d_finals);
        // the skip adds a direct path from every y_t back to x_t
        match &self.projection {
            None => {
                for (dx, dy) in dxs.iter_mut().zip(d_outputs) {
                    *dx += dy;
                }
            }
            Some(p) => {
                let mut dp = DMatrix::zeros(p.nrows(), p.ncols());
                for ((dx, dy), x) in dxs.iter_mut().zip(d_outputs).zip(xs) {
                    dx.gemm_tr(T::one(), p, dy, T::one()); // dx += Pᵀ dy
                    dp.gemm(T::one(), dy, &x.transpose(), T::one()); // dP += dy xᵀ
                }
                params.push(dp);
            }
        }
        (params, dxs, ds0)
    }

    fn kink_pattern(&self, (cache, _): &Self::Cache, out: &mut Vec<bool>) {
        self.inner.kink_pattern(cache, out);
    }

    fn conditioning(&self, (cache, _): &Self::Cache) -> f64 {
        self.inner.conditioning(cache)
    }
}
