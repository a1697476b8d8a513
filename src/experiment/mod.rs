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

/// An error naming the first `(flag, value)` that is not a positive finite number.
pub(crate) fn check_positive(values: &[(&str, f64)]) -> Result<(), crate::error::BpttError> {
    match values.iter().find(|(_, v)| !(*v > 0.0 && v.is_finite())) {
        Some((what, v)) => Err(crate::error::BpttError::Invalid(format!(
            "--{what} must be positive, got {v}"
        ))),
        None => Ok(()),
    }
}

/// An error unless Ω's weight α is ≥ 0 and its decay τ (if any) a positive number of updates.
pub(crate) fn check_omega(alpha: f64, decay: Option<f64>) -> Result<(), crate::error::BpttError> {
    if !(alpha >= 0.0 && alpha.is_finite()) {
        return Err(crate::error::BpttError::Invalid(format!(
            "--alpha must be ≥ 0, got {alpha}"
        )));
    }
    if let Some(tau) = decay
        && !(tau > 0.0 && tau.is_finite())
    {
        return Err(crate::error::BpttError::Invalid(format!(
            "--omega-decay must be a positive number of updates, got {tau}"
        )));
    }
    Ok(())
}

/// The statistics of a learning curve's window — the updates since its last logged point:
/// the mean loss, the largest gradient norm (NaN once any is NaN) and the updates clipped.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Window {
    sum_loss: f64,
    max_norm: f64,
    clipped: u64,
    updates: u64,
}

impl Window {
    pub(crate) fn add(&mut self, rec: &crate::train::trainer::Record) {
        self.sum_loss += rec.loss;
        self.max_norm = if rec.grad_norm.is_nan() || self.max_norm.is_nan() {
            f64::NAN
        } else {
            self.max_norm.max(rec.grad_norm)
        };
        self.clipped += u64::from(rec.clipped);
        self.updates += 1;
    }
    /// (mean loss, largest gradient norm, updates clipped), and a fresh window.
    pub(crate) fn take(&mut self) -> (f64, f64, u64) {
        let w = std::mem::take(self);
        (w.sum_loss / w.updates as f64, w.max_norm, w.clipped)
    }
}
