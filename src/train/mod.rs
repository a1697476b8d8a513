//! Training: the one trainer (truncated BPTT over parallel streams, f32 or f64), optimisers,
//! gradient clipping and Pascanu et al.'s regulariser Ω.

pub mod clip;
pub mod omega;
pub mod optim;
pub mod trainer;
