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
//!
//! ```
//! use bptt::verify::gradcheck::{self, Problem};
//! use bptt::rng::{stream, uniform_matrix};
//! use bptt::nn::activation::Activation;
//! use bptt::nn::model::{LossAt, Model, Objective, Targets};
//! use bptt::nn::readout::Readout;
//! use bptt::nn::sequence::Truncation;
//! use bptt::nn::cell::CellFamily; // the cells' shared constructors
//! use bptt::nn::cells::vanilla::VanillaRnn;
//!
//! // a tanh RNN (input 3, hidden 4) with a 2-unit readout, PyTorch initialisation
//! let mut rng = stream(42, &[]);
//! let cell = VanillaRnn::<f64>::pytorch_init(3, 4, Activation::Tanh, &mut rng);
//! let model = Model::new(cell, Readout::uniform(4, 2, 0.5, &mut rng)).unwrap();
//! // T = 5 steps of a batch of 2 sequences (columns), MSE at every step
//! let xs: Vec<_> = (0..5).map(|_| uniform_matrix(&mut rng, 3, 2, 1.0)).collect();
//! let h0 = nalgebra::DMatrix::zeros(4, 2);
//! let targets = Targets::Mse((0..5).map(|_| uniform_matrix(&mut rng, 2, 2, 1.0)).collect());
//! let objective = Objective { targets, at: LossAt::EveryStep };
//!
//! let (loss, grads) = model.loss_and_grads(&xs, &h0, &objective, Truncation::Full).unwrap();
//! assert!(loss > 0.0);
//! // ∂L/∂h_k for every k = 0..=T: the quantity the vanishing-gradient experiments measure
//! assert_eq!(grads.d_states.len(), 6);
//! let norms: Vec<f64> = grads.d_states.iter().map(|d| d.norm()).collect();
//! assert!(norms.iter().all(|n| n.is_finite()));
//!
//! // and the proof: every entry against central differences
//! let problem = Problem { model, xs, s0: h0, objective, truncation: Truncation::Full };
//! let report = gradcheck::check(&problem, gradcheck::Config::default()).unwrap();
//! assert!(report.passed(), "{report}");
//! ```

pub mod cpu;
pub mod error;
pub mod rng;

pub mod nn;
pub mod numerics;
pub mod train;
pub mod verify;

#[cfg(feature = "experiments")]
pub mod experiment;

/// The README's Rust blocks, compiled and run as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
