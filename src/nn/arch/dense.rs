//! Dense (DenseNet-like) connections: layer l reads the concatenation of the sequence input and
//! the outputs of every earlier layer, `[x_t; y¹_t; …; y^{l−1}_t]`; the network's output is the
//! last layer's. Backward: each layer's input gradient is split by rows and *added* to the
//! sequence input's gradient and to the output gradients of every earlier layer
//! (`proofs/architectures.md`).

use nalgebra::{DMatrix, RealField};

use super::{LayerUpstream, SeqLayer, list};
use crate::error::BpttError;
use crate::nn::engine::{Inputs, MatMut, MatRef, ensure};

/// Densely connected layers; layer l must read `D + Σ_{j<l} O_j` units.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense<L> {
    pub layers: Vec<L>,
}

impl<L> Dense<L> {
    pub fn new<T: RealField + Copy>(layers: Vec<L>) -> Result<Self, BpttError>
    where
        L: SeqLayer<T>,
    {
        if layers.is_empty() {
            return Err(BpttError::Invalid(
                "a dense stack needs at least one layer".into(),
            ));
        }
        let mut width = layers[0].input_size();
        for (l, layer) in layers.iter().enumerate() {
            if layer.input_size() != width {
                return Err(BpttError::Invalid(format!(
                    "dense layer {l} must read {width} units (input plus every earlier output), reads {}",
                    layer.input_size()
                )));
            }
            width += layer.output_size();
        }
        Ok(Dense { layers })
    }
}

/// Stack matrices vertically.
/// The layers' workspaces and the feature slab `F = [x; y¹; …; y^L]` (every layer's input is
/// a leading row block of it), its gradient, and a buffer for one layer's output gradient.
#[derive(Clone, Debug)]
pub struct DenseWorkspace<T: RealField + Copy, W> {
    pub layers: Vec<W>,
    features: DMatrix<T>,
    d_features: DMatrix<T>,
    d_y: DMatrix<T>,
}

impl<T: RealField + Copy, W> list::LayerWorkspaces for DenseWorkspace<T, W> {
    type Layer = W;
    fn layers(&self) -> &[W] {
        &self.layers
    }
}

impl<T: RealField + Copy, W> Default for DenseWorkspace<T, W> {
    fn default() -> Self {
        let e = || DMatrix::zeros(0, 0);
        DenseWorkspace {
            layers: Vec::new(),
            features: e(),
            d_features: e(),
            d_y: e(),
        }
    }
}

impl<T: RealField + Copy, L: SeqLayer<T>> SeqLayer<T> for Dense<L> {
    type Workspace = DenseWorkspace<T, L::Workspace>;

    fn name(&self) -> String {
        format!("dense {}x {}", self.layers.len(), self.layers[0].name())
    }
    list::delegate_to_layers!();

    fn forward_slab(
        &self,
        x: Inputs<'_, T>,
        s0: &[MatRef<'_, T>],
        ws: &mut Self::Workspace,
    ) -> Result<(), BpttError> {
        super::check_state_count(s0.len(), self.state_count())?;
        let d = self.input_size();
        let cols = x.columns();
        let rows = d + self.layers.iter().map(|l| l.output_size()).sum::<usize>();
        ensure(&mut ws.features, rows, cols);
        ws.layers.resize_with(self.layers.len(), Default::default);
        // F rows 0..D: the inputs (one-hot columns for token inputs)
        let mut f = MatMut::from(&mut ws.features);
        match x {
            Inputs::Dense(x) => f.reborrow().row_block(0, d).copy_from(x),
            Inputs::Tokens { ids, .. } => {
                let mut top = f.reborrow().row_block(0, d);
                top.fill(T::zero());
                for (j, &id) in ids.iter().enumerate() {
                    *top.at_mut(id, j) = T::one();
                }
            }
        }
        let mut width = d;
        for (l, layer) in self.layers.iter().enumerate() {
            // layer l reads [x; y¹; …; y^l], writes y^{l+1} below it
            let input = Inputs::Dense(MatRef::from(&ws.features).row_block(0, width));
            let states = list::states_of(&self.layers, l, s0);
            layer.forward_slab(input, states, &mut ws.layers[l])?;
            let o = layer.output_size();
            MatMut::from(&mut ws.features)
                .row_block(width, o)
                .copy_from(layer.outputs(&ws.layers[l]));
            width += o;
        }
        Ok(())
    }

    fn backward_slab(
        &self,
        _x: Inputs<'_, T>,
        ws: &mut Self::Workspace,
        up: &LayerUpstream<'_, T>,
        grads: &mut [DMatrix<T>],
        _want_dx: bool,
    ) -> Result<(), BpttError> {
        let (rows, cols) = ws.features.shape();
        // ∂L/∂F, accumulated from every layer that reads a block
        ensure(&mut ws.d_features, rows, cols);
        ws.d_features.fill(T::zero());
        let top = self.layers.len() - 1;
        let o_top = self.layers[top].output_size();
        if let Some(d) = up.d_outputs {
            MatMut::from(&mut ws.d_features)
                .row_block(rows - o_top, o_top)
                .copy_from(d);
        }
        let mut end = rows;
        for l in (0..=top).rev() {
            // y^{l+1}'s gradient is complete: only layers above l read it
            let o = self.layers[l].output_size();
            let width = end - o;
            ensure(&mut ws.d_y, o, cols);
            MatMut::from(&mut ws.d_y).copy_from(MatRef::from(&ws.d_features).row_block(width, o));
            let layer_up = LayerUpstream {
                d_outputs: Some(MatRef::from(&ws.d_y)),
                d_finals: list::states_of(&self.layers, l, up.d_finals),
            };
            let input = Inputs::Dense(MatRef::from(&ws.features).row_block(0, width));
            let g = list::grads_of(&self.layers, l, grads);
            self.layers[l].backward_slab(input, &mut ws.layers[l], &layer_up, g, true)?;
            MatMut::from(&mut ws.d_features)
                .row_block(0, width)
                .add_assign(self.layers[l].d_input(&ws.layers[l]));
            end = width;
        }
        Ok(())
    }
    fn d_input<'a>(&self, ws: &'a Self::Workspace) -> MatRef<'a, T> {
        MatRef::from(&ws.d_features).row_block(0, self.input_size())
    }
}
