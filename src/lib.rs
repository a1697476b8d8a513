//! # bptt — recurrent networks whose gradients are proven, not trusted
//!
//! Dense [nalgebra] implementations of recurrent cells with hand-written backward passes,
//! backpropagation through time that exposes the per-step gradient `∂L/∂h_k`, and a public
//! gradient checker. Every backward pass is checked against finite differences by the property
//! tests in `tests/`; the derivations are in `proofs/`.
//!
//! Conventions: batch as columns (`x_t` is `D × B`, `h_t` is `H × B`); parameters named and
//! shaped as PyTorch names and shapes them; everything generic over
//! `T: nalgebra::RealField + Copy` (f32, f64, dual numbers).

pub mod activation;
pub mod cell;
pub mod cells;
pub mod error;
pub mod gradcheck;
pub mod model;
pub mod params;
pub mod readout;
pub mod rng;
pub mod sequence;

pub use activation::Activation;
pub use cell::Cell;
pub use cells::vanilla::VanillaRnn;
pub use error::BpttError;
pub use model::{LossAt, Model, ModelGrads, Objective, Targets};
pub use params::Params;
pub use readout::Readout;
pub use sequence::{SequenceGrads, Trajectory, Truncation, Upstream};
