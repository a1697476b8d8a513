//! Residual (skip) connection around a layer: `y_t = F(x)_t + P x_t`, with `P` the identity when
//! the layer's input and output widths agree, and a learned projection `skip_proj` (`O × D`)
//! otherwise. Backward: the skip adds a direct path, `∂L/∂x_t = (∂F/∂x)ᵀ dy + Pᵀ dy_t`, and
//! `∂L/∂P = Σ_t dy_t x_tᵀ` (`proofs/architectures.md`).

use nalgebra::{DMatrix, RealField};

use super::{LayerUpstream, ParamName, SeqLayer};
use crate::error::BpttError;
use crate::nn::engine::{Inputs, MatMut, MatRef, Op, ensure, gemm};
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

/// The inner layer's workspace, the outputs `y = f(x) + P x` and the input gradient.
#[derive(Clone, Debug)]
pub struct ResidualWorkspace<T: RealField + Copy, W> {
    pub inner: W,
    y: DMatrix<T>,
    dx: DMatrix<T>,
}

impl<T: RealField + Copy, W: Default> Default for ResidualWorkspace<T, W> {
    fn default() -> Self {
        ResidualWorkspace {
            inner: W::default(),
            y: DMatrix::zeros(0, 0),
            dx: DMatrix::zeros(0, 0),
        }
    }
}

impl<T: RealField + Copy, L: SeqLayer<T>> SeqLayer<T> for Residual<T, L> {
    type Workspace = ResidualWorkspace<T, L::Workspace>;

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
    fn state_count(&self) -> usize {
        self.inner.state_count()
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
    fn for_each_param<'a>(
        &'a self,
        layer: usize,
        f: &mut dyn FnMut(ParamName<'a>, &'a DMatrix<T>),
    ) {
        // the inner layer's, then `skip_proj_l{layer}`
        self.inner.for_each_param(layer, f);
        if let Some(p) = &self.projection {
            f(ParamName::new("skip_proj", layer, false), p);
        }
    }
    fn for_each_param_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut DMatrix<T>)) {
        self.inner.for_each_param_mut(f);
        if let Some(p) = &mut self.projection {
            f(p);
        }
    }

    fn forward_slab(
        &self,
        x: Inputs<'_, T>,
        s0: &[MatRef<'_, T>],
        ws: &mut Self::Workspace,
    ) -> Result<(), BpttError> {
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
        self.inner.forward_slab(x, s0, &mut ws.inner)?;
        // y = f(x) + x, or f(x) + P x
        let f = self.inner.outputs(&ws.inner);
        ensure(&mut ws.y, f.rows(), f.cols());
        let mut y = MatMut::from(&mut ws.y);
        y.copy_from(f);
        match (x, &self.projection) {
            (Inputs::Dense(x), None) => y.add_assign(x),
            (Inputs::Dense(x), Some(p)) => gemm(y, true, Op::N(MatRef::from(p)), Op::N(x)),
            (Inputs::Tokens { ids, .. }, None) => {
                // one-hot x: add 1 at row id
                for (j, &id) in ids.iter().enumerate() {
                    *y.at_mut(id, j) += T::one();
                }
            }
            (Inputs::Tokens { ids, .. }, Some(p)) => {
                // one-hot x: P x is column id of P
                let p = MatRef::from(p);
                for (j, &id) in ids.iter().enumerate() {
                    for (d, v) in y.col_mut(j).iter_mut().zip(p.col(id)) {
                        *d += *v;
                    }
                }
            }
        }
        Ok(())
    }
    fn outputs<'a>(&self, ws: &'a Self::Workspace) -> MatRef<'a, T> {
        MatRef::from(&ws.y)
    }
    fn final_state<'a>(&self, ws: &'a Self::Workspace, i: usize) -> MatRef<'a, T> {
        self.inner.final_state(&ws.inner, i)
    }

    fn backward_slab(
        &self,
        x: Inputs<'_, T>,
        ws: &mut Self::Workspace,
        up: &LayerUpstream<'_, T>,
        grads: &mut [DMatrix<T>],
        want_dx: bool,
    ) -> Result<(), BpttError> {
        let n = self.inner.param_tensors();
        let (g_inner, g_proj) = grads.split_at_mut(n);
        self.inner
            .backward_slab(x, &mut ws.inner, up, g_inner, want_dx)?;
        if let (Some(p), Some(dy)) = (&self.projection, up.d_outputs) {
            // dP += dy xᵀ (a scatter-add for one-hot x)
            match x {
                Inputs::Dense(x) => gemm(MatMut::from(&mut g_proj[0]), true, Op::N(dy), Op::T(x)),
                Inputs::Tokens { ids, .. } => {
                    let mut g = MatMut::from(&mut g_proj[0]);
                    for (j, &id) in ids.iter().enumerate() {
                        for (d, v) in g.col_mut(id).iter_mut().zip(dy.col(j)) {
                            *d += *v;
                        }
                    }
                }
            }
            debug_assert_eq!(
                (p.nrows(), p.ncols()),
                (g_proj[0].nrows(), g_proj[0].ncols())
            );
        }
        if want_dx {
            // the skip path: dx = ∂f/∂x + dy (or + Pᵀ dy)
            let d_inner = self.inner.d_input(&ws.inner);
            ensure(&mut ws.dx, d_inner.rows(), d_inner.cols());
            let mut dx = MatMut::from(&mut ws.dx);
            dx.copy_from(d_inner);
            if let Some(dy) = up.d_outputs {
                match &self.projection {
                    None => dx.add_assign(dy),
                    Some(p) => gemm(dx, true, Op::T(MatRef::from(p)), Op::N(dy)),
                }
            }
        }
        Ok(())
    }
    fn d_input<'a>(&self, ws: &'a Self::Workspace) -> MatRef<'a, T> {
        MatRef::from(&ws.dx)
    }
    fn d_initial<'a>(&self, ws: &'a Self::Workspace, i: usize) -> MatRef<'a, T> {
        self.inner.d_initial(&ws.inner, i)
    }

    fn kink_pattern(&self, ws: &Self::Workspace, out: &mut Vec<bool>) {
        self.inner.kink_pattern(&ws.inner, out);
    }

    fn causal(&self) -> bool {
        self.inner.causal()
    }
    fn conditioning(&self, ws: &Self::Workspace) -> f64 {
        self.inner.conditioning(&ws.inner)
    }
}
