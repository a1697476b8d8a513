//! Stacked layers, PyTorch's `num_layers`: layer l reads layer l−1's outputs. Initial and final
//! states are the layers' in order (PyTorch's `h_n`). Backward runs the layers in reverse, each
//! layer's input gradient becoming the output gradient of the layer below.

use nalgebra::{DMatrix, RealField};

use super::{LayerUpstream, LoadCell, SeqLayer, Unidirectional, list};
use crate::error::BpttError;
use crate::nn::cell::Cell;
use crate::nn::engine::{Inputs, MatRef};
use crate::nn::import::StateDict;

/// Layers in depth; layer 0 reads the sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Stacked<L> {
    pub layers: Vec<L>,
}

impl<L> Stacked<L> {
    /// Stack `layers` (at least one); widths must chain (checked by `forward`, and here).
    pub fn new<T: RealField + Copy>(layers: Vec<L>) -> Result<Self, BpttError>
    where
        L: SeqLayer<T>,
    {
        if layers.is_empty() {
            return Err(BpttError::Invalid(
                "a stack needs at least one layer".into(),
            ));
        }
        for (l, pair) in layers.windows(2).enumerate() {
            if pair[1].input_size() != pair[0].output_size() {
                return Err(BpttError::Invalid(format!(
                    "layer {} reads {} units but layer {l} outputs {}",
                    l + 1,
                    pair[1].input_size(),
                    pair[0].output_size()
                )));
            }
        }
        Ok(Stacked { layers })
    }
}

impl<C> Stacked<Unidirectional<C>> {
    /// A unidirectional PyTorch `nn.RNN/LSTM/GRU` of `num_layers` layers from its state_dict.
    pub fn from_state_dict<T: RealField + Copy>(
        sd: &StateDict,
        num_layers: usize,
        load: impl LoadCell<T, C>,
    ) -> Result<Self, BpttError>
    where
        C: Cell<T>,
    {
        let layers = (0..num_layers)
            .map(|l| load(sd, l, false).map(Unidirectional::new))
            .collect::<Result<Vec<_>, _>>()?;
        Stacked::new(layers)
    }
}

impl<C> Stacked<super::Bidirectional<C>> {
    /// A bidirectional PyTorch `nn.RNN/LSTM/GRU` of `num_layers` layers from its state_dict.
    pub fn from_state_dict_bidirectional<T: RealField + Copy>(
        sd: &StateDict,
        num_layers: usize,
        load: impl LoadCell<T, C>,
    ) -> Result<Self, BpttError>
    where
        C: Cell<T>,
    {
        let layers = (0..num_layers)
            .map(|l| {
                Ok(super::Bidirectional::new(
                    load(sd, l, false)?,
                    load(sd, l, true)?,
                ))
            })
            .collect::<Result<Vec<_>, BpttError>>()?;
        Stacked::new(layers)
    }
}

impl<T: RealField + Copy, L: SeqLayer<T>> SeqLayer<T> for Stacked<L> {
    type Workspace = Vec<L::Workspace>;

    fn name(&self) -> String {
        format!("{}x {}", self.layers.len(), self.layers[0].name())
    }
    list::delegate_to_layers!();

    fn forward_slab(
        &self,
        x: Inputs<'_, T>,
        s0: &[MatRef<'_, T>],
        ws: &mut Self::Workspace,
    ) -> Result<(), BpttError> {
        super::check_state_count(s0.len(), self.state_count())?;
        ws.resize_with(self.layers.len(), Default::default);
        for (l, layer) in self.layers.iter().enumerate() {
            // layer l reads layer l − 1's outputs
            let (below, here) = ws.split_at_mut(l);
            let input = match below.last() {
                None => x,
                Some(w) => Inputs::Dense(self.layers[l - 1].outputs(w)),
            };
            let states = list::states_of(&self.layers, l, s0);
            layer.forward_slab(input, states, &mut here[0])?;
        }
        Ok(())
    }

    fn backward_slab(
        &self,
        x: Inputs<'_, T>,
        ws: &mut Self::Workspace,
        up: &LayerUpstream<'_, T>,
        grads: &mut [DMatrix<T>],
        want_dx: bool,
    ) -> Result<(), BpttError> {
        let top = self.layers.len() - 1;
        for l in (0..=top).rev() {
            // layer l's output gradient is the input gradient of layer l + 1
            let (below, rest) = ws.split_at_mut(l);
            let (here, above) = rest.split_at_mut(1);
            let d_outputs = match above.first() {
                None => up.d_outputs,
                Some(w) => Some(self.layers[l + 1].d_input(w)),
            };
            let input = match below.last() {
                None => x,
                Some(w) => Inputs::Dense(self.layers[l - 1].outputs(w)),
            };
            let layer_up = LayerUpstream {
                d_outputs,
                d_finals: list::states_of(&self.layers, l, up.d_finals),
            };
            let g = list::grads_of(&self.layers, l, grads);
            self.layers[l].backward_slab(input, &mut here[0], &layer_up, g, l > 0 || want_dx)?;
        }
        Ok(())
    }
    fn d_input<'a>(&self, ws: &'a Self::Workspace) -> MatRef<'a, T> {
        self.layers[0].d_input(&ws[0])
    }
}
