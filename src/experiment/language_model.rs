//! Language modelling on a symbol stream (PTB characters or words, [`crate::experiment::data`]):
//! the stream cut into `B` parallel streams for truncated BPTT, and the evaluation in bits per
//! symbol — the quantities of Pascanu et al.'s Table 1 (next character, and the character five
//! steps ahead).
//!
//! **Streams.** A sequence of `N` ids becomes `B` contiguous streams of `L = ⌊N/B⌋` ids (the
//! last `N − B·L` ids are dropped): stream `b` is `ids[b·L .. (b+1)·L]`. A chunk of `T` steps at
//! offset `t₀` has, for step `t` and stream `b`, the input `ids[b·L + t₀ + t]` and the target
//! `ids[b·L + t₀ + t + ahead]` (`ahead` = 1: the next symbol), in the engine's column order
//! `t·B + b`. Consecutive chunks continue every stream where the last one stopped, so a trainer
//! with [`Config::carry_state`](crate::train::trainer::Config::carry_state) carries each
//! stream's state across them.
//!
//! **Bits per symbol** ([`bits_per_symbol`]): over every position of every stream that has a
//! target, the mean of `−log₂ softmax(y)[target]`, from zero states at the start of each stream,
//! the states carried through the whole stream.

use nalgebra::{DMatrix, RealField};

use crate::error::BpttError;
use crate::nn::arch::SeqLayer;
use crate::nn::engine::Inputs;
use crate::nn::model::NetworkModel;
use crate::train::trainer::Trainer;

/// `B` parallel streams over one id sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streams<'a> {
    ids: &'a [usize],
    batch: usize,
    len: usize,
}

impl<'a> Streams<'a> {
    /// Cut `ids` into `batch` streams of `⌊N/batch⌋` ids; an error unless every stream has at
    /// least `ahead + 1` ids (an input and its target).
    pub fn new(ids: &'a [usize], batch: usize, ahead: usize) -> Result<Self, BpttError> {
        if batch == 0 || ahead == 0 {
            return Err(BpttError::Invalid(format!(
                "streams need B ≥ 1 and a target ≥ 1 step ahead (got B = {batch}, ahead = \
                 {ahead})"
            )));
        }
        let len = ids.len() / batch;
        if len <= ahead {
            return Err(BpttError::Invalid(format!(
                "{} symbols in {batch} streams leave {len} per stream: too few for a target \
                 {ahead} steps ahead",
                ids.len()
            )));
        }
        Ok(Streams { ids, batch, len })
    }

    /// B.
    #[must_use]
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// L, the ids per stream.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: [`Streams::new`] refuses empty streams.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The positions of a stream that have a target `ahead` steps later: `L − ahead`.
    #[must_use]
    pub fn positions(&self, ahead: usize) -> usize {
        self.len.saturating_sub(ahead)
    }

    /// The chunk of up to `steps` steps at offset `t0`, targets `ahead` steps later, written
    /// into `inputs` and `targets` (column `t·B + b`); returns the steps written (fewer than
    /// `steps` at the end of the streams, 0 past it).
    pub fn chunk(
        &self,
        t0: usize,
        steps: usize,
        ahead: usize,
        inputs: &mut Vec<usize>,
        targets: &mut Vec<usize>,
    ) -> usize {
        let n = steps.min(self.positions(ahead).saturating_sub(t0));
        inputs.clear();
        targets.clear();
        for t in 0..n {
            for b in 0..self.batch {
                let i = b * self.len + t0 + t;
                inputs.push(self.ids[i]);
                targets.push(self.ids[i + ahead]);
            }
        }
        n
    }
}

/// Steps per forward pass of [`bits_per_symbol`] (the workspace holds this many; the states are
/// carried from one pass to the next).
pub const EVAL_CHUNK: usize = 200;

/// Bits per symbol of `model` on `ids` cut into `batch` streams, targets `ahead` steps later:
/// the mean over all `B·(L − ahead)` positions of `−log₂ softmax(y_t)[target]`, the states from
/// zero at each stream's start and carried through it. The readout is read at every step.
pub fn bits_per_symbol<T: RealField + Copy, N: SeqLayer<T>>(
    trainer: &mut Trainer<T, N>,
    model: &NetworkModel<T, N>,
    ids: &[usize],
    vocab: usize,
    batch: usize,
    ahead: usize,
) -> Result<f64, BpttError> {
    let streams = Streams::new(ids, batch, ahead)?;
    if model.readout.output_size() != vocab {
        return Err(BpttError::Invalid(format!(
            "the readout has {} outputs for a vocabulary of {vocab}",
            model.readout.output_size()
        )));
    }
    if let Some(&bad) = ids.iter().find(|&&i| i >= vocab) {
        return Err(BpttError::Invalid(format!(
            "symbol id {bad} outside the vocabulary of {vocab}"
        )));
    }
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    let steps = streams.chunk(0, usize::MAX, ahead, &mut inputs, &mut targets);
    let mut nats = 0.0f64;
    trainer.predict(
        model,
        Inputs::Tokens {
            ids: &inputs,
            vocab,
        },
        batch,
        EVAL_CHUNK,
        &mut |t, y: &DMatrix<T>| {
            let k = y.nrows();
            for b in 0..batch {
                let col = &y.as_slice()[b * k..(b + 1) * k];
                nats += neg_log_softmax(col, targets[t * batch + b]);
            }
        },
    )?;
    Ok(nats / (steps * batch) as f64 / std::f64::consts::LN_2)
}

/// `−log softmax(y)[c] = logsumexp(y) − y_c`, in f64, shifted by the maximum (no overflow).
fn neg_log_softmax<T: RealField + Copy>(y: &[T], c: usize) -> f64 {
    let f = |v: T| v.to_subset().unwrap_or(f64::NAN);
    let m = y.iter().map(|&v| f(v)).fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = y.iter().map(|&v| (f(v) - m).exp()).sum();
    m + sum.ln() - f(y[c])
}
