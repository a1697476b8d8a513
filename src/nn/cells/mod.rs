//! Recurrent cells, one file each, and **the cell registry**: the one list of every cell the
//! toolkit ships. Everything that runs "for every cell" reads it — the property harness
//! (`tests/cells.rs`), the architecture and oracle tests, the `gradcheck` binary, the sweep's
//! `--cells`, and (through the files of this folder) `scripts/mutants.sh`.
//!
//! Adding a cell = one file here implementing [`Cell`](crate::nn::cell::Cell) and
//! [`CellFamily`](crate::nn::cell::CellFamily), plus one line in [`for_each_cell!`](crate::for_each_cell) (with
//! `mod <file>` on the first line that uses the file), plus its derivation in `proofs/`.
//!
//! ```
//! use bptt::nn::cell::Cell;
//! use bptt::nn::cells::{AnyCell, CellKind};
//!
//! let kind: CellKind = "lstm".parse().unwrap();
//! let cell: AnyCell<f64> = kind.pytorch_init(3, 8, &mut bptt::rng::stream(1, &[]));
//! assert_eq!(cell.name(), "lstm");
//! assert_eq!(cell.state_size(), 16); // [h; c]
//! assert!(CellKind::ALL.iter().any(|k| k.name() == "mgu"));
//! ```

/// The cell registry, one line per cell:
///
/// ```text
/// [[mod <file>]] <test module> <CellKind variant> "<name>" <seed id> <cell type>, <configuration>;
/// ```
///
/// `<name>` is what [`Cell::name`](crate::nn::cell::Cell::name) returns and what the binaries
/// accept; `<seed id>` keys the cell's random streams in experiments (never reuse or change one:
/// committed results depend on it); the cell is `<cell type>::zeros(d, h, <configuration>)`
/// through [`CellFamily`](crate::nn::cell::CellFamily). `for_each_cell!(callback)` expands to
/// `callback! { <the lines> }`.
#[macro_export]
macro_rules! for_each_cell {
    ($callback:ident) => {
        $callback! {
            [mod vanilla] rnn_tanh RnnTanh "rnn-tanh" 0 $crate::nn::cells::vanilla::VanillaRnn<T>, $crate::nn::activation::Activation::Tanh;
            rnn_sigmoid RnnSigmoid "rnn-sigmoid" 1 $crate::nn::cells::vanilla::VanillaRnn<T>, $crate::nn::activation::Activation::Sigmoid;
            rnn_relu RnnRelu "rnn-relu" 2 $crate::nn::cells::vanilla::VanillaRnn<T>, $crate::nn::activation::Activation::Relu;
            rnn_linear RnnLinear "rnn-linear" 3 $crate::nn::cells::vanilla::VanillaRnn<T>, $crate::nn::activation::Activation::Identity;
            [mod lstm] lstm Lstm "lstm" 10 $crate::nn::cells::lstm::Lstm<T>, ();
            [mod gru] gru Gru "gru" 11 $crate::nn::cells::gru::Gru<T>, $crate::nn::cells::gru::GruVariant::ResetAfter;
            gru_reset_before GruResetBefore "gru-reset-before" 13 $crate::nn::cells::gru::Gru<T>, $crate::nn::cells::gru::GruVariant::ResetBefore;
            [mod mgu] mgu Mgu "mgu" 12 $crate::nn::cells::mgu::Mgu<T>, ();
        }
    };
}

/// `match` over the registered cells: `any_cell!(self, [kinds], c => expr)`.
macro_rules! any_cell {
    ($self:expr, [$($kind:ident)*], $c:ident => $body:expr) => {
        match $self {
            $(AnyCell::$kind($c) => $body,)*
        }
    };
}

/// Expands the registry into the cell modules, [`CellKind`] and [`AnyCell`].
macro_rules! define_registry {
    ($($([mod $file:ident])? $module:ident $kind:ident $name:literal $seed:literal $cell:ty, $config:expr;)*) => {
        $($(pub mod $file;)?)*

        /// Every registered cell, by name (see [`for_each_cell!`](crate::for_each_cell)).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum CellKind {
            $(#[doc = concat!("`", $name, "`")] $kind,)*
        }

        impl CellKind {
            /// Every registered cell, in registry order.
            pub const ALL: &'static [CellKind] = &[$(CellKind::$kind,)*];

            /// The cell's name, as [`Cell::name`] returns it and the binaries accept it.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $(CellKind::$kind => $name,)*
                }
            }

            /// The stable id that keys this cell's random streams in experiments.
            #[must_use]
            pub fn seed_id(self) -> u64 {
                match self {
                    $(CellKind::$kind => $seed,)*
                }
            }

            /// The cell with all parameters zero.
            #[must_use]
            pub fn zeros<T: RealField + Copy>(self, input_size: usize, hidden_size: usize) -> AnyCell<T> {
                match self {
                    $(CellKind::$kind => AnyCell::$kind(<$cell>::zeros(input_size, hidden_size, $config)),)*
                }
            }

            /// Every parameter from U(−bound, bound), matrix by matrix in parameter order (the
            /// draws of the concrete cell's [`CellFamily::uniform`]).
            #[must_use]
            pub fn uniform<T: RealField + Copy>(
                self,
                input_size: usize,
                hidden_size: usize,
                bound: f64,
                rng: &mut Rng,
            ) -> AnyCell<T> {
                match self {
                    $(CellKind::$kind => AnyCell::$kind(<$cell>::uniform(input_size, hidden_size, $config, bound, rng)),)*
                }
            }

            /// PyTorch's default initialisation, U(−1/√H, 1/√H).
            #[must_use]
            pub fn pytorch_init<T: RealField + Copy>(
                self,
                input_size: usize,
                hidden_size: usize,
                rng: &mut Rng,
            ) -> AnyCell<T> {
                match self {
                    $(CellKind::$kind => AnyCell::$kind(<$cell>::pytorch_init(input_size, hidden_size, $config, rng)),)*
                }
            }
        }

        /// Any registered cell, chosen at run time (`--cell lstm`): a [`Cell`] that forwards
        /// every method to the concrete cell it holds.
        #[derive(Clone, Debug, PartialEq)]
        pub enum AnyCell<T: RealField + Copy> {
            $(#[doc = concat!("`", $name, "`")] $kind($cell),)*
        }

        impl<T: RealField + Copy> AnyCell<T> {
            /// Which registered cell this is.
            #[must_use]
            pub fn kind(&self) -> CellKind {
                match self {
                    $(AnyCell::$kind(_) => CellKind::$kind,)*
                }
            }
        }

        impl<T: RealField + Copy> Cell<T> for AnyCell<T> {
            fn name(&self) -> String {
                any_cell!(self, [$($kind)*], c => c.name())
            }
            fn input_size(&self) -> usize {
                any_cell!(self, [$($kind)*], c => c.input_size())
            }
            fn hidden_size(&self) -> usize {
                any_cell!(self, [$($kind)*], c => c.hidden_size())
            }
            fn state_size(&self) -> usize {
                any_cell!(self, [$($kind)*], c => c.state_size())
            }
            fn state_names(&self) -> Vec<&'static str> {
                any_cell!(self, [$($kind)*], c => c.state_names())
            }
            fn params(&self) -> &Params<T> {
                any_cell!(self, [$($kind)*], c => c.params())
            }
            fn params_mut(&mut self) -> &mut Params<T> {
                any_cell!(self, [$($kind)*], c => c.params_mut())
            }
            fn parameter_count(&self) -> usize {
                any_cell!(self, [$($kind)*], c => c.parameter_count())
            }
            fn gate_rows(&self) -> usize {
                any_cell!(self, [$($kind)*], c => c.gate_rows())
            }
            fn tape_rows(&self) -> usize {
                any_cell!(self, [$($kind)*], c => c.tape_rows())
            }
            fn projection_bias(&self, out: &mut [T]) {
                any_cell!(self, [$($kind)*], c => c.projection_bias(out));
            }
            fn split_recurrent_grad(&self) -> bool {
                any_cell!(self, [$($kind)*], c => c.split_recurrent_grad())
            }
            fn step_forward(&self, tape: MatMut<'_, T>, s_prev: MatRef<'_, T>, s: MatMut<'_, T>) {
                any_cell!(self, [$($kind)*], c => c.step_forward(tape, s_prev, s));
            }
            fn step_backward(
                &self,
                ds: MatRef<'_, T>,
                w_hh_t: MatRef<'_, T>,
                tape: MatRef<'_, T>,
                s_prev: MatRef<'_, T>,
                s: MatRef<'_, T>,
                d_ih: MatMut<'_, T>,
                d_hh: Option<MatMut<'_, T>>,
                ds_prev: MatMut<'_, T>,
            ) {
                any_cell!(self, [$($kind)*], c => c.step_backward(ds, w_hh_t, tape, s_prev, s, d_ih, d_hh, ds_prev));
            }
            fn recurrent_param_grads(
                &self,
                d_hh: MatRef<'_, T>,
                tape: MatRef<'_, T>,
                h_prev: MatRef<'_, T>,
                d_hh_sums: &[T],
                grads: &mut [DMatrix<T>],
            ) {
                any_cell!(self, [$($kind)*], c => c.recurrent_param_grads(d_hh, tape, h_prev, d_hh_sums, grads));
            }
            fn kink_pattern(&self, tape: MatRef<'_, T>, out: &mut Vec<bool>) {
                any_cell!(self, [$($kind)*], c => c.kink_pattern(tape, out));
            }
            fn conditioning(&self, tape: MatRef<'_, T>, states: MatRef<'_, T>) -> f64 {
                any_cell!(self, [$($kind)*], c => c.conditioning(tape, states))
            }
            fn has_kinks(&self) -> bool {
                any_cell!(self, [$($kind)*], c => c.has_kinks())
            }
            fn derivative_bound(&self) -> Option<f64> {
                any_cell!(self, [$($kind)*], c => c.derivative_bound())
            }
            fn elementwise_activation(&self) -> Option<crate::nn::activation::Activation> {
                any_cell!(self, [$($kind)*], c => c.elementwise_activation())
            }
            fn omega_applies(&self) -> bool {
                any_cell!(self, [$($kind)*], c => c.omega_applies())
            }
        }

        impl<T: RealField + Copy> Rescalar<T> for AnyCell<T> {
            type With<U: RealField + Copy> = AnyCell<U>;
            fn with_params<U: RealField + Copy>(&self, params: Params<U>) -> AnyCell<U> {
                match self {
                    $(AnyCell::$kind(c) => AnyCell::$kind(c.with_params(params)),)*
                }
            }
        }
    };
}

use nalgebra::{DMatrix, RealField};

use crate::error::BpttError;
use crate::nn::cell::{Cell, CellFamily, Rescalar};
use crate::nn::engine::{MatMut, MatRef};
use crate::nn::params::Params;
use crate::rng::Rng;

crate::for_each_cell!(define_registry);

impl std::fmt::Display for CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CellKind {
    type Err = BpttError;
    fn from_str(s: &str) -> Result<Self, BpttError> {
        CellKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = CellKind::ALL.iter().map(|k| k.name()).collect();
                BpttError::Invalid(format!(
                    "unknown cell '{s}' (expected one of {})",
                    names.join(", ")
                ))
            })
    }
}

impl serde::Serialize for CellKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry's names are the cells' own, unique, and parse back; seed ids are unique.
    #[test]
    fn registry_names_and_seed_ids_are_the_cells_own_and_unique() {
        let mut names = std::collections::HashSet::new();
        let mut seeds = std::collections::HashSet::new();
        for &kind in CellKind::ALL {
            let cell = kind.zeros::<f64>(2, 3);
            assert_eq!(cell.name(), kind.name());
            assert_eq!(cell.kind(), kind);
            assert_eq!(kind.name().parse::<CellKind>().unwrap(), kind);
            assert!(names.insert(kind.name()) && seeds.insert(kind.seed_id()));
        }
        let err = "elman".parse::<CellKind>().unwrap_err().to_string();
        assert!(err.contains("rnn-tanh") && err.contains("mgu"), "{err}");
    }

    /// `AnyCell` forwards the provided methods the concrete cells override (a missed one
    /// would fall back to the trait's default and differ here).
    #[test]
    fn any_cell_forwards_what_the_concrete_cells_override() {
        let lstm = CellKind::Lstm.zeros::<f64>(2, 3);
        assert_eq!((lstm.state_size(), lstm.state_names()), (6, vec!["h", "c"]));
        assert_eq!(
            lstm.tape_rows(),
            crate::nn::cells::lstm::Lstm::<f64>::zeros(2, 3, ()).tape_rows()
        );
        assert!(CellKind::Gru.zeros::<f64>(2, 3).split_recurrent_grad());
        assert!(
            !CellKind::GruResetBefore
                .zeros::<f64>(2, 3)
                .split_recurrent_grad()
        );
        assert!(CellKind::RnnRelu.zeros::<f64>(2, 3).has_kinks());
        assert!(CellKind::RnnTanh.zeros::<f64>(2, 3).omega_applies());
        assert_eq!(
            CellKind::RnnSigmoid.zeros::<f64>(2, 3).derivative_bound(),
            Some(0.25)
        );
        assert_eq!(CellKind::Mgu.zeros::<f64>(2, 3).gate_rows(), 6);
    }
}
