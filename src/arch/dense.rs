//! Dense (DenseNet-like) connections: layer l reads the concatenation of the sequence input and
//! the outputs of every earlier layer, `[x_t; y¹_t; …; y^{l−1}_t]`; the network's output is the
//! last layer's. Backward: each layer's input gradient is split by rows and *added* to the
//! sequence input's gradient and to the output gradients of every earlier layer
//! (`proofs/architectures.md`).

use nalgebra::{DMatrix, RealField};

use super::{ForwardResult, LayerGrads, SeqLayer, list};
use crate::BpttError;

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
fn vstack<T: RealField + Copy>(parts: &[&DMatrix<T>]) -> DMatrix<T> {
    let rows = parts.iter().map(|m| m.nrows()).sum();
    let mut out = DMatrix::zeros(rows, parts[0].ncols());
    let mut r = 0;
    for m in parts {
        out.rows_mut(r, m.nrows()).copy_from(*m);
        r += m.nrows();
    }
    out
}

impl<T: RealField + Copy, L: SeqLayer<T>> SeqLayer<T> for Dense<L> {
    type Cache = Vec<L::Cache>;

    fn name(&self) -> String {
        format!("dense {}x {}", self.layers.len(), self.layers[0].name())
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
        let mut features: Vec<Vec<DMatrix<T>>> = vec![xs.to_vec()]; // x, y¹, y², …
        let mut finals = Vec::new();
        let mut caches = Vec::new();
        let mut s = 0;
        for layer in &self.layers {
            // layer input at t: [x_t; y¹_t; …]
            let input: Vec<DMatrix<T>> = (0..xs.len())
                .map(|t| vstack(&features.iter().map(|f| &f[t]).collect::<Vec<_>>()))
                .collect();
            let n = layer.state_sizes().len();
            let (ys, f, c) = layer.forward(&input, &s0[s..s + n])?;
            s += n;
            finals.extend(f);
            caches.push(c);
            features.push(ys);
        }
        Ok((features.pop().unwrap(), finals, caches))
    }

    fn backward(
        &self,
        caches: &Self::Cache,
        d_outputs: &[DMatrix<T>],
        d_finals: &[DMatrix<T>],
    ) -> LayerGrads<T> {
        let n_layers = self.layers.len();
        // d_features[0] = ∂L/∂x, d_features[j+1] = ∂L/∂y^{j+1}; accumulated from every reader
        let mut d_features: Vec<Vec<DMatrix<T>>> = std::iter::once(self.layers[0].input_size())
            .chain(self.layers.iter().map(|l| l.output_size()))
            .map(|w| {
                d_outputs
                    .iter()
                    .map(|d| DMatrix::zeros(w, d.ncols()))
                    .collect()
            })
            .collect();
        for (acc, d) in d_features[n_layers].iter_mut().zip(d_outputs) {
            *acc += d;
        }
        let state_off = list::state_offsets(&self.layers);
        let mut params = vec![Vec::new(); n_layers];
        let mut ds0 = vec![Vec::new(); n_layers];
        for l in (0..n_layers).rev() {
            let (p, d_in, d0) = self.layers[l].backward(
                &caches[l],
                &d_features[l + 1],
                &d_finals[state_off[l]..state_off[l + 1]],
            );
            params[l] = p;
            ds0[l] = d0;
            // split [x; y¹; …; y^l]'s gradient by rows, into everything layer l read
            for (t, d) in d_in.iter().enumerate() {
                let mut r = 0;
                for f in d_features.iter_mut().take(l + 1) {
                    let w = f[t].nrows();
                    f[t] += d.rows(r, w);
                    r += w;
                }
            }
        }
        (params.concat(), d_features.swap_remove(0), ds0.concat())
    }

    fn kink_pattern(&self, caches: &Self::Cache, out: &mut Vec<bool>) {
        list::kink_pattern(&self.layers, caches, out);
    }

    fn conditioning(&self, caches: &Self::Cache) -> f64 {
        list::conditioning(&self.layers, caches)
    }
}
