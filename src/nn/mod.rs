//! The model core: parameters, activations, cells, architectures, sequences, readouts and
//! models, with the engine that runs them. Nothing here depends on training, verification or
//! experiment support.

pub mod activation;
pub mod arch;
pub mod cell;
pub mod cells;
pub mod engine;
pub mod import;
pub mod model;
pub mod params;
pub mod readout;
pub mod sequence;
