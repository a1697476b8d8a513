//! Bidirectional wrapper: a forward cell over `x_0..x_{T−1}` and a reverse cell over
//! `x_{T−1}..x_0`; the output at step t is `[h→_t; h←_t]` (PyTorch's concatenation order), the
//! final states are `[s→_T, s←_0]` (PyTorch's `h_n` order). Backward: the output gradient is
//! split by rows, each direction runs its own BPTT, and the input gradients add.

use nalgebra::{DMatrix, RealField};

use super::{CellWorkspace, LayerUpstream, ParamName, SeqLayer, check_views};
use crate::error::BpttError;
use crate::nn::cell::Cell;
use crate::nn::engine::Inputs;
use crate::nn::engine::{MatMut, MatRef, ensure};

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

/// Both directions' workspaces (the reverse one in its own, reversed, time) and the buffers
/// that reorder time: the reversed inputs, the concatenated outputs, the reverse half of the
/// output gradient, the input gradient.
#[derive(Clone, Debug)]
pub struct BiWorkspace<T: RealField + Copy> {
    pub forward: CellWorkspace<T>,
    pub reverse: CellWorkspace<T>,
    x_rev: DMatrix<T>,
    ids_rev: Vec<usize>,
    y: DMatrix<T>,
    d_rev: DMatrix<T>,
    dx: DMatrix<T>,
}

impl<T: RealField + Copy> Default for BiWorkspace<T> {
    fn default() -> Self {
        let e = || DMatrix::zeros(0, 0);
        BiWorkspace {
            forward: CellWorkspace::default(),
            reverse: CellWorkspace::default(),
            x_rev: e(),
            ids_rev: Vec::new(),
            y: e(),
            d_rev: e(),
            dx: e(),
        }
    }
}

/// `dst` block t = `src` block T−1−t (blocks of `batch` columns): time reversed.
fn reverse_time<T: RealField + Copy>(src: MatRef<'_, T>, mut dst: MatMut<'_, T>, batch: usize) {
    let steps = src.cols() / batch.max(1);
    for t in 0..steps {
        dst.reborrow()
            .col_block(t * batch, batch)
            .copy_from(src.col_block((steps - 1 - t) * batch, batch));
    }
}

/// Both directions must read the same inputs and, as in PyTorch, have one hidden size.
fn check<T: RealField + Copy, C: Cell<T>>(b: &Bidirectional<C>) -> Result<(), BpttError> {
    {
        let s = b;
        if s.forward.input_size() != s.reverse.input_size() {
            return Err(BpttError::Invalid(
                "the two directions read inputs of different sizes".into(),
            ));
        }
        if s.forward.hidden_size() != s.reverse.hidden_size() {
            // as PyTorch: one hidden size for both directions (the output is [h→; h←])
            return Err(BpttError::Invalid(format!(
                "the two directions have different hidden sizes ({} and {})",
                s.forward.hidden_size(),
                s.reverse.hidden_size()
            )));
        }
        Ok(())
    }
}

impl<T: RealField + Copy, C: Cell<T>> SeqLayer<T> for Bidirectional<C> {
    type Workspace = BiWorkspace<T>;

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
    fn state_count(&self) -> usize {
        2
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
    fn for_each_param<'a>(
        &'a self,
        layer: usize,
        f: &mut dyn FnMut(ParamName<'a>, &'a DMatrix<T>),
    ) {
        // PyTorch's order: the forward direction's, then the reverse one's (`_reverse`)
        for (cell, reverse) in [(&self.forward, false), (&self.reverse, true)] {
            for (name, m) in cell.params().iter() {
                f(ParamName::new(name, layer, reverse), m);
            }
        }
    }
    fn for_each_param_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut DMatrix<T>)) {
        self.forward.params_mut().tensors_mut().for_each(&mut *f);
        self.reverse.params_mut().tensors_mut().for_each(f);
    }

    fn forward_slab(
        &self,
        x: Inputs<'_, T>,
        s0: &[MatRef<'_, T>],
        ws: &mut Self::Workspace,
    ) -> Result<(), BpttError> {
        check(self)?;
        check_views(&[self.forward.state_size(), self.reverse.state_size()], s0)?;
        let batch = s0[0].cols();
        ws.forward.forward(&self.forward, x, s0[0])?;
        // the reverse cell reads x_{T−1} … x_0
        let x_rev = match x {
            Inputs::Dense(x) => {
                ensure(&mut ws.x_rev, x.rows(), x.cols());
                reverse_time(x, MatMut::from(&mut ws.x_rev), batch);
                Inputs::Dense(MatRef::from(&ws.x_rev))
            }
            Inputs::Tokens { ids, vocab } => {
                ws.ids_rev.clear();
                let steps = ids.len() / batch;
                for t in (0..steps).rev() {
                    ws.ids_rev
                        .extend_from_slice(&ids[t * batch..(t + 1) * batch]);
                }
                Inputs::Tokens {
                    ids: &ws.ids_rev,
                    vocab,
                }
            }
        };
        ws.reverse.forward(&self.reverse, x_rev, s0[1])?;
        // output at t: [forward after x_t; reverse after x_t], i.e. the reverse output T−1−t
        let (hf, hr) = (self.forward.hidden_size(), self.reverse.hidden_size());
        let cols = ws.forward.tape.outputs().cols();
        ensure(&mut ws.y, hf + hr, cols);
        let mut y = MatMut::from(&mut ws.y);
        y.reborrow()
            .row_block(0, hf)
            .copy_from(ws.forward.tape.outputs());
        reverse_time(ws.reverse.tape.outputs(), y.row_block(hf, hr), batch);
        Ok(())
    }
    fn outputs<'a>(&self, ws: &'a Self::Workspace) -> MatRef<'a, T> {
        MatRef::from(&ws.y)
    }
    fn final_state<'a>(&self, ws: &'a Self::Workspace, i: usize) -> MatRef<'a, T> {
        if i == 0 {
            ws.forward.final_state()
        } else {
            ws.reverse.final_state()
        }
    }

    fn backward_slab(
        &self,
        x: Inputs<'_, T>,
        ws: &mut Self::Workspace,
        up: &LayerUpstream<'_, T>,
        grads: &mut [DMatrix<T>],
        want_dx: bool,
    ) -> Result<(), BpttError> {
        let (hf, hr) = (self.forward.hidden_size(), self.reverse.hidden_size());
        let batch = ws.forward.tape.batch();
        let n = self.forward.params().len();
        let (g_f, g_r) = grads.split_at_mut(n);
        let (fin_f, fin_r) = match up.d_finals {
            [f, r] => (Some(*f), Some(*r)),
            _ => (None, None),
        };
        // split the output gradient by rows; the reverse half back into the reverse cell's time
        let d_f = up.d_outputs.map(|d| d.row_block(0, hf));
        if let Some(d) = up.d_outputs {
            ensure(&mut ws.d_rev, hr, d.cols());
            reverse_time(d.row_block(hf, hr), MatMut::from(&mut ws.d_rev), batch);
        }
        let d_r = up.d_outputs.map(|_| MatRef::from(&ws.d_rev));
        ws.forward
            .backward(&self.forward, x, d_f, fin_f, g_f, want_dx)?;
        let x_rev = match x {
            Inputs::Dense(_) => Inputs::Dense(MatRef::from(&ws.x_rev)),
            Inputs::Tokens { vocab, .. } => Inputs::Tokens {
                ids: &ws.ids_rev,
                vocab,
            },
        };
        ws.reverse
            .backward(&self.reverse, x_rev, d_r, fin_r, g_r, want_dx)?;
        if want_dx {
            // both directions read x_t: their input gradients add
            let dx_f = MatRef::from(&ws.forward.dx);
            ensure(&mut ws.dx, dx_f.rows(), dx_f.cols());
            reverse_time(
                MatRef::from(&ws.reverse.dx),
                MatMut::from(&mut ws.dx),
                batch,
            );
            MatMut::from(&mut ws.dx).add_assign(dx_f);
        }
        Ok(())
    }
    fn d_input<'a>(&self, ws: &'a Self::Workspace) -> MatRef<'a, T> {
        MatRef::from(&ws.dx)
    }
    fn d_initial<'a>(&self, ws: &'a Self::Workspace, i: usize) -> MatRef<'a, T> {
        if i == 0 {
            ws.forward.tape.d_state(0)
        } else {
            ws.reverse.tape.d_state(0)
        }
    }

    fn causal(&self) -> bool {
        false
    }
    fn conditioning(&self, ws: &Self::Workspace) -> f64 {
        let f = ws.forward.conditioning(&self.forward);
        f.max(ws.reverse.conditioning(&self.reverse))
    }

    fn kink_pattern(&self, ws: &Self::Workspace, out: &mut Vec<bool>) {
        ws.forward.kink_pattern(&self.forward, out);
        ws.reverse.kink_pattern(&self.reverse, out);
    }
}
