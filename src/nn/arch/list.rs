//! The one delegation of the depth wrappers ([`Stacked`](super::Stacked),
//! [`Dense`](super::Dense)) to their list of layers: [`delegate_to_layers!`] writes the
//! [`SeqLayer`](super::SeqLayer) methods in which a wrapper is just its layers in order —
//! sizes, states, names, parameters, the outputs and the workspace readers. The wrappers write
//! only how the layers are connected (`forward_slab`, `backward_slab`, `d_input`), handing each
//! layer its states ([`states_of`]) and gradients ([`grads_of`]).

use nalgebra::{DMatrix, RealField};

use super::SeqLayer;
use crate::nn::engine::MatRef;

/// The [`SeqLayer`](super::SeqLayer) methods of a depth wrapper with a list of layers
/// `self.layers` and a workspace of one workspace per layer ([`LayerWorkspaces`]): its states
/// and parameters are the layers' in order, layer `i`'s named with `_l{i}`.
macro_rules! delegate_to_layers {
    () => {
        fn input_size(&self) -> usize {
            self.layers[0].input_size()
        }
        fn output_size(&self) -> usize {
            self.layers[self.layers.len() - 1].output_size()
        }
        fn state_sizes(&self) -> Vec<usize> {
            self.layers.iter().flat_map(|l| l.state_sizes()).collect()
        }
        fn state_count(&self) -> usize {
            self.layers.iter().map(|l| l.state_count()).sum()
        }
        fn state_labels(&self, _layer: usize) -> Vec<String> {
            let labels = self.layers.iter().enumerate();
            labels.flat_map(|(i, l)| l.state_labels(i)).collect()
        }
        fn state_blocks(&self) -> Vec<&'static str> {
            self.layers[0].state_blocks()
        }
        fn state_block_rows(&self) -> usize {
            self.layers[0].state_block_rows()
        }
        fn for_each_param<'a>(
            &'a self,
            _layer: usize,
            f: &mut dyn FnMut($crate::nn::arch::ParamName<'a>, &'a nalgebra::DMatrix<T>),
        ) {
            for (i, l) in self.layers.iter().enumerate() {
                l.for_each_param(i, f);
            }
        }
        fn for_each_param_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut nalgebra::DMatrix<T>)) {
            for l in &mut self.layers {
                l.for_each_param_mut(f);
            }
        }
        fn outputs<'a>(&self, ws: &'a Self::Workspace) -> $crate::nn::engine::MatRef<'a, T> {
            let top = self.layers.len() - 1;
            let layers = $crate::nn::arch::list::LayerWorkspaces::layers(ws);
            self.layers[top].outputs(&layers[top])
        }
        fn final_state<'a>(
            &self,
            ws: &'a Self::Workspace,
            i: usize,
        ) -> $crate::nn::engine::MatRef<'a, T> {
            let (l, j) = $crate::nn::arch::list::locate(&self.layers, i, |l| l.state_count());
            let layers = $crate::nn::arch::list::LayerWorkspaces::layers(ws);
            self.layers[l].final_state(&layers[l], j)
        }
        fn d_initial<'a>(
            &self,
            ws: &'a Self::Workspace,
            i: usize,
        ) -> $crate::nn::engine::MatRef<'a, T> {
            let (l, j) = $crate::nn::arch::list::locate(&self.layers, i, |l| l.state_count());
            let layers = $crate::nn::arch::list::LayerWorkspaces::layers(ws);
            self.layers[l].d_initial(&layers[l], j)
        }
        fn kink_pattern(&self, ws: &Self::Workspace, out: &mut Vec<bool>) {
            let layers = $crate::nn::arch::list::LayerWorkspaces::layers(ws);
            for (l, w) in self.layers.iter().zip(layers) {
                l.kink_pattern(w, out);
            }
        }
        fn conditioning(&self, ws: &Self::Workspace) -> f64 {
            let layers = $crate::nn::arch::list::LayerWorkspaces::layers(ws);
            let kappas = self
                .layers
                .iter()
                .zip(layers)
                .map(|(l, w)| l.conditioning(w));
            kappas.fold(1.0, f64::max)
        }
        fn causal(&self) -> bool {
            self.layers.iter().all(|l| l.causal())
        }
    };
}
pub(crate) use delegate_to_layers;

/// A depth wrapper's workspace: one workspace per layer (and maybe more).
pub trait LayerWorkspaces {
    type Layer;
    /// The layers' workspaces, in order.
    fn layers(&self) -> &[Self::Layer];
}

impl<W> LayerWorkspaces for Vec<W> {
    type Layer = W;
    fn layers(&self) -> &[W] {
        self
    }
}

/// Which layer holds entry `i` of the end-to-end list counted by `count`, and its index
/// within that layer.
pub fn locate<L>(layers: &[L], i: usize, count: impl Fn(&L) -> usize) -> (usize, usize) {
    let mut start = 0;
    for (l, layer) in layers.iter().enumerate() {
        let n = count(layer);
        if i < start + n {
            return (l, i - start);
        }
        start += n;
    }
    panic!("index {i} beyond the {start} entries of the layers");
}

/// Layer `l`'s range in a list of every layer's states (or parameter tensors) laid end to
/// end, counted by `count` (no allocation).
fn range<L>(layers: &[L], l: usize, count: impl Fn(&L) -> usize) -> std::ops::Range<usize> {
    let start: usize = layers[..l].iter().map(&count).sum();
    start..start + count(&layers[l])
}

/// Layer `l`'s states in a wrapper's list of every layer's, in order: its initial states, or
/// its `∂L/∂(final states)` (an empty list, all zero, stays empty).
pub fn states_of<'s, 'm, T: RealField + Copy, L: SeqLayer<T>>(
    layers: &[L],
    l: usize,
    all: &'s [MatRef<'m, T>],
) -> &'s [MatRef<'m, T>] {
    if all.is_empty() {
        all
    } else {
        &all[range(layers, l, |l| l.state_count())]
    }
}

/// Layer `l`'s gradient matrices in a wrapper's (every layer's, in parameter order).
pub fn grads_of<'g, T: RealField + Copy, L: SeqLayer<T>>(
    layers: &[L],
    l: usize,
    grads: &'g mut [DMatrix<T>],
) -> &'g mut [DMatrix<T>] {
    &mut grads[range(layers, l, |l| l.param_tensors())]
}
