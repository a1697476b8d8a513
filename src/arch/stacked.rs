//! Stacked layers, PyTorch's `num_layers`: layer l reads layer l−1's outputs. Initial and final
//! states are the layers' in order (PyTorch's `h_n`). Backward runs the layers in reverse, each
//! layer's input gradient becoming the output gradient of the layer below.

use nalgebra::{DMatrix, RealField};

use super::{ForwardResult, LayerGrads, LoadCell, SeqLayer, Unidirectional, list};
use crate::import::StateDict;
use crate::{BpttError, Cell};

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
    type Cache = Vec<L::Cache>;

    fn name(&self) -> String {
        format!("{}x {}", self.layers.len(), self.layers[0].name())
    }
    fn input_size(&self) -> usize {
        self.layers[0].input_size()
    }
    fn output_size(&self) -> usize {
        self.layers.last().unwrap().output_size()
    }
    fn state_sizes(&self) -> Vec<usize> {
        list::state_sizes(&self.layers)
    }
    fn state_labels(&self, _layer: usize) -> Vec<String> {
        list::state_labels(&self.layers)
    }
    fn state_blocks(&self) -> Vec<&'static str> {
        self.layers[0].state_blocks()
    }
    fn state_block_rows(&self) -> usize {
        self.layers[0].state_block_rows()
    }
    fn param_names(&self, _layer: usize) -> Vec<String> {
        list::param_names(&self.layers)
    }
    fn params(&self) -> Vec<&DMatrix<T>> {
        list::params(&self.layers)
    }
    fn params_mut(&mut self) -> Vec<&mut DMatrix<T>> {
        list::params_mut(&mut self.layers)
    }

    fn forward(&self, xs: &[DMatrix<T>], s0: &[DMatrix<T>]) -> ForwardResult<T, Self::Cache> {
        super::check_states(&self.state_sizes(), s0, s0.first().map_or(0, |s| s.ncols()))?;
        let off = list::state_offsets(&self.layers);
        let mut input = xs.to_vec();
        let mut finals = Vec::new();
        let mut caches = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let (ys, f, c) = layer.forward(&input, &s0[off[l]..off[l + 1]])?;
            finals.extend(f);
            caches.push(c);
            input = ys;
        }
        Ok((input, finals, caches))
    }

    fn backward(
        &self,
        caches: &Self::Cache,
        d_outputs: &[DMatrix<T>],
        d_finals: &[DMatrix<T>],
    ) -> LayerGrads<T> {
        let off = list::state_offsets(&self.layers);
        let mut d_y = d_outputs.to_vec();
        let mut params = vec![Vec::new(); self.layers.len()];
        let mut ds0 = vec![Vec::new(); self.layers.len()];
        for l in (0..self.layers.len()).rev() {
            // layer l's input gradient is the output gradient of layer l − 1
            let (p, dx, d0) =
                self.layers[l].backward(&caches[l], &d_y, &d_finals[off[l]..off[l + 1]]);
            params[l] = p;
            ds0[l] = d0;
            d_y = dx;
        }
        (params.concat(), d_y, ds0.concat())
    }

    fn kink_pattern(&self, caches: &Self::Cache, out: &mut Vec<bool>) {
        list::kink_pattern(&self.layers, caches, out);
    }

    fn conditioning(&self, caches: &Self::Cache) -> f64 {
        list::conditioning(&self.layers, caches)
    }
}
