//! Experiment support (feature `experiments`, on by default): the driver every experiment
//! binary shares, and the workloads behind them — the spectral sweep, the bifurcation model,
//! the pathological tasks of Pascanu et al. §4.1 and their training set-up.

pub mod agreement;
pub mod bidirectional;
pub mod data;
pub mod depth;
pub mod driver;
pub mod dynamics;
pub mod language_model;
pub mod lstm_vs_gru;
pub mod music;
pub mod pathological;
pub mod sweep;
pub mod tasks;

/// The size `h ≥ 1` whose count `total(h)` is closest to `target` (the smaller size on a tie),
/// for a `total` that increases with `h`: how a model is sized to another's parameter count
/// ([`agreement::matched_hidden`], [`lstm_vs_gru::matched_hidden`]).
#[must_use]
pub fn closest_size(total: impl Fn(usize) -> usize, target: usize) -> usize {
    let mut best = (usize::MAX, 1);
    let mut h = 1;
    loop {
        let n = total(h);
        let gap = n.abs_diff(target);
        if gap < best.0 {
            best = (gap, h);
        }
        if n > target {
            return best.1;
        }
        h += 1;
    }
}
