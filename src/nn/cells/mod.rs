//! Recurrent cells, one per file. Adding a cell: one new file here implementing
//! [`crate::nn::cell::Cell`], plus one registration in the generic test harness (`tests/harness/`).

pub mod gru;
pub mod lstm;
pub mod vanilla;
