//! Bidirectional wrapper: a forward cell over `x_0..x_{T−1}` and a reverse cell over
//! `x_{T−1}..x_0`; the output at step t is `[h→_t; h←_t]` (PyTorch's concatenation order), the
//! final states are `[s→_T, s←_0]` (PyTorch's `h_n` order). Backward: the output gradient is
//! split by rows, each direction runs its own BPTT, and the input gradients add.

use nalgebra::{DMatrix, RealField};

use super::{ForwardResult, LayerGrads, SeqLayer, cell_backward, check_states, outputs};
use crate::import::suffix;
use crate::sequence::{self, Trajectory};
use crate::{BpttError, Cell};

/// Two cells of the same type, one per direction.
#[derive(Clone, Debug, PartialEq)]
pub struct Bidirectional<C> {
    pub forward: C,
    pub reverse: C,
}

impl<C> Bidirectional<C> {
    pub fn new(forward: C, reverse: C) -> Self {
        Bidirectional { forward, reverse }
    }
}

/// Both directions' trajectories (the reverse one in its own, reversed, time).
#[derive(Clone)]
pub struct BiCache<T: RealField + Copy, C: Cell<T>> {
    pub forward: Trajectory<T, C>,
    pub reverse: Trajectory<T, C>,
}

impl<T: RealField + Copy, C: Cell<T>> SeqLayer<T> for Bidirectional<C> {
    type Cache = BiCache<T, C>;

    fn name(&self) -> String {
        format!("bi-{}", self.forward.name())
    }
    fn input_size(&self) -> usize {
        self.forward.input_size()
    }
    fn output_size(&self) -> usize {
        self.forward.hidden_size() + self.reverse.hidden_size()
    }
    fn state_sizes(&self) -> Vec<usize> {
        vec![self.forward.state_size(), self.reverse.state_size()]
    }
    fn state_labels(&self, layer: usize) -> Vec<String> {
        vec![format!("l{layer}"), format!("l{layer}_reverse")]
    }
    fn state_blocks(&self) -> Vec<&'static str> {
        self.forward.state_names()
    }
    fn state_block_rows(&self) -> usize {
        self.forward.hidden_size()
    }
    fn param_names(&self, layer: usize) -> Vec<String> {
        let (f, r) = (suffix(layer, false), suffix(layer, true));
        let names = self.forward.params().names();
        names
            .iter()
            .map(|n| format!("{n}{f}"))
            .chain(names.iter().map(|n| format!("{n}{r}")))
            .collect()
    }
    fn params(&self) -> Vec<&DMatrix<T>> {
        let f = self.forward.params().iter().map(|(_, m)| m);
        f.chain(self.reverse.params().iter().map(|(_, m)| m))
            .collect()
    }
    fn params_mut(&mut self) -> Vec<&mut DMatrix<T>> {
        let f = self.forward.params_mut().tensors_mut();
        f.chain(self.reverse.params_mut().tensors_mut()).collect()
    }

    fn forward(&self, xs: &[DMatrix<T>], s0: &[DMatrix<T>]) -> ForwardResult<T, Self::Cache> {
        if self.forward.input_size() != self.reverse.input_size() {
            return Err(BpttError::Invalid(
                "the two directions read inputs of different sizes".into(),
            ));
        }
        if self.forward.hidden_size() != self.reverse.hidden_size() {
            // as PyTorch: one hidden size for both directions (the output is [h→; h←])
            return Err(BpttError::Invalid(format!(
                "the two directions have different hidden sizes ({} and {})",
                self.forward.hidden_size(),
                self.reverse.hidden_size()
            )));
        }
        check_states(&self.state_sizes(), s0, s0.first().map_or(0, |s| s.ncols()))?;
        let fwd = sequence::forward(&self.forward, xs, &s0[0])?;
        let reversed: Vec<DMatrix<T>> = xs.iter().rev().cloned().collect();
        let rev = sequence::forward(&self.reverse, &reversed, &s0[1])?;
        let (hf, hr) = (self.forward.hidden_size(), self.reverse.hidden_size());
        let out_f = outputs(&fwd, hf);
        let out_r = outputs(&rev, hr);
        let steps = xs.len();
        // output at t: [forward after x_t; reverse after x_t], i.e. reverse output T−1−t
        let outs = (0..steps)
            .map(|t| {
                let mut y = DMatrix::zeros(hf + hr, out_f[t].ncols());
                y.rows_mut(0, hf).copy_from(&out_f[t]);
                y.rows_mut(hf, hr).copy_from(&out_r[steps - 1 - t]);
                y
            })
            .collect();
        let finals = vec![fwd.state(steps), rev.state(steps)];
        Ok((
            outs,
            finals,
            BiCache {
                forward: fwd,
                reverse: rev,
            },
        ))
    }

    fn backward(
        &self,
        cache: &Self::Cache,
        d_outputs: &[DMatrix<T>],
        d_finals: &[DMatrix<T>],
    ) -> LayerGrads<T> {
        let (hf, hr) = (self.forward.hidden_size(), self.reverse.hidden_size());
        let steps = d_outputs.len();
        // split the output gradient by rows; the reverse half back into the reverse cell's time
        let d_f: Vec<DMatrix<T>> = d_outputs
            .iter()
            .map(|d| d.rows(0, hf).into_owned())
            .collect();
        let d_r: Vec<DMatrix<T>> = (0..steps)
            .map(|k| d_outputs[steps - 1 - k].rows(hf, hr).into_owned())
            .collect();
        let (mut params, mut dxs, ds0_f) =
            cell_backward(&self.forward, &cache.forward, &d_f, &d_finals[0]);
        let (params_r, dxs_r, ds0_r) =
            cell_backward(&self.reverse, &cache.reverse, &d_r, &d_finals[1]);
        params.extend(params_r);
        // both directions read x_t: their input gradients add
        for (t, dx) in dxs.iter_mut().enumerate() {
            *dx += &dxs_r[steps - 1 - t];
        }
        (params, dxs, vec![ds0_f, ds0_r])
    }

    fn conditioning(&self, cache: &Self::Cache) -> f64 {
        let f = cache.forward.conditioning(&self.forward);
        f.max(cache.reverse.conditioning(&self.reverse))
    }

    fn kink_pattern(&self, cache: &Self::Cache, out: &mut Vec<bool>) {
        cache.forward.kink_pattern(&self.forward, out);
        cache.reverse.kink_pattern(&self.reverse, out);
    }
}
