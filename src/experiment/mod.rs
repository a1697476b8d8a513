//! Experiment support (feature `experiments`, on by default): the driver every experiment
//! binary shares, and the workloads behind them — the spectral sweep, the bifurcation model,
//! the pathological tasks of Pascanu et al. §4.1 and their training set-up.

pub mod agreement;
pub mod bidirectional;
pub mod depth;
pub mod driver;
pub mod dynamics;
pub mod lstm_vs_gru;
pub mod pathological;
pub mod sweep;
pub mod tasks;
