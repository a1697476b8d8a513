//! The pathological long-term tasks of Hochreiter & Schmidhuber (1997) in the form Pascanu,
//! Mikolov & Bengio (2013, §4.1) trained on (their released code fixes the encodings; the
//! encodings here follow it and are documented in `experiments/README.md`).
//!
//! A [`Batch`] holds `B` sequences of `T` steps, batch as columns: step `t` of sequence `b` is
//! column `t·B + b` of the inputs (the layout of the training kernel). Every task is one of
//! three loss shapes ([`Target`]): a class read at the last step (temporal order, 3-bit temporal
//! order, random permutation), a value read at the last step (addition, multiplication) or a
//! class at every step (noiseless memorization).
//!
//! Success, as in the paper: under 1% errors on 10,000 fresh sequences, where a sequence is an
//! error if its class is wrong (argmax), any of its per-step classes is wrong (memorization), or
//! its squared error exceeds 0.04 (regression).

use std::fmt;
use std::str::FromStr;

use nalgebra::{DMatrix, RealField};
use rand::RngExt;

use crate::error::BpttError;
use crate::rng::Rng;

/// Squared error above which a regression output counts as an error.
pub const REGRESSION_TOLERANCE: f64 = 0.04;
/// Memorization: symbols per pattern and values per symbol.
pub const MEMORY_LENGTH: usize = 10;
pub const MEMORY_VALUES: usize = 5;

/// One of the synthetic problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// 6 one-hot symbols: A or B at a position in [T/10, 2T/10) and again in [5T/10, 6T/10),
    /// distractors c–f elsewhere; 4 classes (AA, BA, AB, BB) at the last step.
    TemporalOrder,
    /// As `TemporalOrder` with three marked positions ([T/10, 2T/10), [3T/10, 4T/10),
    /// [6T/10, 7T/10)) and 8 classes.
    TemporalOrder3Bit,
    /// Two channels (marker, value ~ U[0, 1)); the length is T plus U{0..T/10−1} per batch; the
    /// markers are in [0, L/10) and [L/10, L/2); target `(a₁ + a₂)/2` at the last step.
    Addition,
    /// As `Addition` with target `a₁·a₂`.
    Multiplication,
    /// 100 one-hot symbols: the first is 0 or 1, the others from 2..99; the class of the first
    /// symbol is to be produced at the last step (100-way softmax).
    Permutation,
    /// 7 one-hot channels (5 values, blank, trigger): a 10-step pattern of 5 values, T blank
    /// steps, then 10 recall steps (the first carries the trigger, the rest blank) over which
    /// the pattern is to be reproduced; 6 classes (5 values + blank) at every step, the blank
    /// class everywhere but the last 10 steps. Length T + 20.
    Memorization,
}

/// Every task, in a fixed order (their stream ids).
pub const ALL_TASKS: [Task; 6] = [
    Task::TemporalOrder,
    Task::TemporalOrder3Bit,
    Task::Addition,
    Task::Multiplication,
    Task::Permutation,
    Task::Memorization,
];

/// Inputs of a batch, D × (B·T), column `t·B + b`.
#[derive(Clone, Debug, PartialEq)]
pub enum Inputs {
    /// One-hot: the index of the hot channel of each column (the kernel gathers columns of
    /// `W_ih` instead of multiplying by a sparse matrix).
    OneHot {
        dim: usize,
        symbols: Vec<usize>,
    },
    Dense(DMatrix<f64>),
}

impl Inputs {
    pub fn dim(&self) -> usize {
        match self {
            Inputs::OneHot { dim, .. } => *dim,
            Inputs::Dense(m) => m.nrows(),
        }
    }
    /// The dense D × (B·T) matrix.
    pub fn to_dense(&self) -> DMatrix<f64> {
        match self {
            Inputs::Dense(m) => m.clone(),
            Inputs::OneHot { dim, symbols } => {
                let mut m = DMatrix::zeros(*dim, symbols.len());
                for (j, &s) in symbols.iter().enumerate() {
                    m[(s, j)] = 1.0;
                }
                m
            }
        }
    }
}

/// What the loss compares the readout with.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// One class per sequence, read at the last step (softmax cross-entropy, mean over the batch).
    Class(Vec<usize>),
    /// O × B values read at the last step (squared error summed over outputs, mean over the
    /// batch).
    Value(DMatrix<f64>),
    /// One class per step and sequence (index `t·B + b`); cross-entropy averaged over all
    /// `T·B` (step, sequence) pairs, as in the paper's code.
    ClassEveryStep(Vec<usize>),
}

/// `B` sequences of `T` steps of one task.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub inputs: Inputs,
    pub target: Target,
    /// T.
    pub steps: usize,
    /// B.
    pub batch: usize,
}

impl Batch {
    /// The batch as [`crate::train::trainer::Trainer`] reads it: one-hot inputs as token ids (a
    /// gather, not a GEMM with one-hot columns), targets as views.
    #[must_use]
    pub fn for_trainer(&self) -> crate::train::trainer::Batch<'_, f64> {
        use crate::nn::engine::MatRef;
        let dense = match &self.inputs {
            Inputs::Dense(x) => MatRef::from(x),
            Inputs::OneHot { .. } => MatRef::new(&[], 0, 0, 1),
        };
        let values = match &self.target {
            Target::Value(v) => MatRef::from(v),
            _ => MatRef::new(&[], 0, 0, 1),
        };
        self.trainer_view(dense, values)
    }

    /// [`Batch::for_trainer`] in the scalar `T`: token ids as they are, dense inputs and
    /// regression targets converted into `x` and `v` (buffers reused across batches).
    pub fn for_trainer_in<'a, T: RealField + Copy>(
        &'a self,
        x: &'a mut DMatrix<T>,
        v: &'a mut DMatrix<T>,
    ) -> crate::train::trainer::Batch<'a, T> {
        let convert = |src: &DMatrix<f64>, dst: &mut DMatrix<T>| {
            crate::nn::engine::ensure(dst, src.nrows(), src.ncols());
            for (d, s) in dst.iter_mut().zip(src.iter()) {
                *d = nalgebra::convert(*s);
            }
        };
        if let Inputs::Dense(m) = &self.inputs {
            convert(m, x);
        }
        if let Target::Value(t) = &self.target {
            convert(t, v);
        }
        use crate::nn::engine::MatRef;
        self.trainer_view(MatRef::from(&*x), MatRef::from(&*v))
    }

    /// The trainer's batch with `dense` as the dense inputs and `values` as the regression
    /// targets (each read only when the batch has them).
    fn trainer_view<'a, T: Copy>(
        &'a self,
        dense: crate::nn::engine::MatRef<'a, T>,
        values: crate::nn::engine::MatRef<'a, T>,
    ) -> crate::train::trainer::Batch<'a, T> {
        use crate::nn::engine;
        use crate::train::trainer::Targets;
        crate::train::trainer::Batch {
            inputs: match &self.inputs {
                Inputs::OneHot { dim, symbols } => engine::Inputs::Tokens {
                    ids: symbols,
                    vocab: *dim,
                },
                Inputs::Dense(_) => engine::Inputs::Dense(dense),
            },
            batch: self.batch,
            targets: match &self.target {
                Target::Class(c) | Target::ClassEveryStep(c) => Targets::Classes(c),
                Target::Value(_) => Targets::Values(values),
            },
        }
    }

    /// The inputs as a list of T matrices `x_t` (D × B), for the generic (reference) code.
    pub fn xs(&self) -> Vec<DMatrix<f64>> {
        let dense = self.inputs.to_dense();
        (0..self.steps)
            .map(|t| dense.columns(t * self.batch, self.batch).into_owned())
            .collect()
    }
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::TemporalOrder => "temporal-order",
            Task::TemporalOrder3Bit => "temporal-order-3bit",
            Task::Addition => "addition",
            Task::Multiplication => "multiplication",
            Task::Permutation => "permutation",
            Task::Memorization => "memorization",
        }
    }

    /// Stream id of the task (its position in [`ALL_TASKS`]).
    pub fn id(self) -> u64 {
        ALL_TASKS.iter().position(|&t| t == self).unwrap_or(0) as u64
    }

    /// D.
    pub fn input_size(self) -> usize {
        match self {
            Task::TemporalOrder | Task::TemporalOrder3Bit => 6,
            Task::Addition | Task::Multiplication => 2,
            Task::Permutation => 100,
            Task::Memorization => MEMORY_VALUES + 2,
        }
    }

    /// Where the readout reads the network and the loss it trains on (the [`Target`]s
    /// [`Task::generate`] makes): softmax cross-entropy at the last step (temporal order,
    /// 3-bit, permutation), squared error at the last step (addition, multiplication),
    /// softmax cross-entropy at every step (memorization).
    #[must_use]
    pub fn readout(
        self,
    ) -> (
        crate::train::trainer::ReadoutAt,
        crate::train::trainer::Loss,
    ) {
        use crate::train::trainer::{Loss, ReadoutAt};
        match self {
            Task::TemporalOrder | Task::TemporalOrder3Bit | Task::Permutation => {
                (ReadoutAt::Last, Loss::SoftmaxCrossEntropy)
            }
            Task::Addition | Task::Multiplication => (ReadoutAt::Last, Loss::Mse),
            Task::Memorization => (ReadoutAt::EveryStep, Loss::SoftmaxCrossEntropy),
        }
    }

    /// O.
    pub fn output_size(self) -> usize {
        match self {
            Task::TemporalOrder => 4,
            Task::TemporalOrder3Bit => 8,
            Task::Addition | Task::Multiplication => 1,
            Task::Permutation => 100,
            Task::Memorization => MEMORY_VALUES + 1,
        }
    }

    /// The smallest nominal length the generator accepts (every marker window non-empty).
    pub fn min_length(self) -> usize {
        match self {
            Task::TemporalOrder | Task::TemporalOrder3Bit | Task::Addition => 10,
            Task::Multiplication => 10,
            Task::Permutation | Task::Memorization => 1,
        }
    }

    /// B sequences of nominal length `length` (the batch's actual `steps`: `length` plus
    /// U{0..length/10 − 1} for addition/multiplication, `length + 20` for memorization).
    pub fn generate(self, rng: &mut Rng, batch: usize, length: usize) -> Result<Batch, BpttError> {
        if length < self.min_length() {
            return Err(BpttError::Invalid(format!(
                "{}: length {length} is below the minimum {}",
                self.name(),
                self.min_length()
            )));
        }
        if batch == 0 {
            return Err(BpttError::Invalid("batch size must be at least 1".into()));
        }
        Ok(match self {
            Task::TemporalOrder => temporal_order(rng, batch, length, &[(1, 2), (5, 6)]),
            Task::TemporalOrder3Bit => {
                temporal_order(rng, batch, length, &[(1, 2), (3, 4), (6, 7)])
            }
            Task::Addition => marked_pair(rng, batch, length, |a, b| (a + b) / 2.0),
            Task::Multiplication => marked_pair(rng, batch, length, |a, b| a * b),
            Task::Permutation => permutation(rng, batch, length),
            Task::Memorization => memorization(rng, batch, length),
        })
    }

    /// The error rate of the best predictor that ignores the informative inputs (it may use
    /// the position in the sequence): the rate a test measures on generated data.
    ///
    /// - temporal order: 1 − 1/4; 3-bit: 1 − 1/8; permutation: 1 − 1/2 (first symbol 0 or 1);
    /// - memorization: 1 − 5⁻¹⁰ (blank is predictable, the 10 values are not);
    /// - addition: output 1/2, error iff |a₁ + a₂ − 1| > 0.4: the sum is triangular on [0, 2],
    ///   P = (1 − 0.4)² = 0.36;
    /// - multiplication: P(a₁a₂ ≤ z) = z − z ln z; the best constant c maximises
    ///   P(|a₁a₂ − c| ≤ 0.2), whose derivative in c is −ln(c + 0.2) + ln(c − 0.2) < 0 for
    ///   c > 0.2 and −ln(c + 0.2) > 0 below: c = 0.2, error 1 − (0.4 − 0.4 ln 0.4).
    pub fn chance_error(self) -> f64 {
        let tol = REGRESSION_TOLERANCE.sqrt();
        match self {
            Task::TemporalOrder => 0.75,
            Task::TemporalOrder3Bit => 0.875,
            Task::Permutation => 0.5,
            Task::Memorization => 1.0 - (MEMORY_VALUES as f64).powi(-(MEMORY_LENGTH as i32)),
            Task::Addition => (1.0 - 2.0 * tol).powi(2),
            Task::Multiplication => {
                let z = 2.0 * tol;
                1.0 - (z - z * z.ln())
            }
        }
    }

    /// The readout outputs of that best input-blind predictor for `batch` (as
    /// [`count_errors`] reads them): class 0 (or the blank class where it is the target),
    /// 1/2 for addition, 0.2 for multiplication.
    pub fn chance_outputs(self, batch: &Batch) -> DMatrix<f64> {
        let o = self.output_size();
        match &batch.target {
            Target::Class(c) => DMatrix::from_fn(o, c.len(), |i, _| if i == 0 { 1.0 } else { 0.0 }),
            Target::Value(v) => {
                let c = if self == Task::Addition { 0.5 } else { 0.2 };
                DMatrix::from_element(v.nrows(), v.ncols(), c)
            }
            Target::ClassEveryStep(_) => {
                let first_recall = batch.steps - MEMORY_LENGTH;
                DMatrix::from_fn(o, batch.steps * batch.batch, |i, j| {
                    let t = j / batch.batch;
                    let guess = if t < first_recall { MEMORY_VALUES } else { 0 };
                    if i == guess { 1.0 } else { 0.0 }
                })
            }
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_TASKS
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL_TASKS.iter().map(|t| t.name()).collect();
                format!("unknown task '{s}' (expected one of: {})", names.join(", "))
            })
    }
}

/// Index of the largest entry of a column (the first one on ties); `usize::MAX` — no class —
/// if any entry is NaN (a diverged network gets every sequence wrong).
pub(crate) fn argmax(col: nalgebra::DVectorView<'_, f64>) -> usize {
    if col.iter().any(|v| v.is_nan()) {
        return usize::MAX;
    }
    let mut best = 0;
    for i in 1..col.len() {
        if col[i] > col[best] {
            best = i;
        }
    }
    best
}

/// Number of sequences of a batch of `batch` sequences the outputs get wrong. `outputs` is
/// O × B for last-step targets, O × (B·T) (column `t·B + b`) for per-step targets.
pub fn count_errors(target: &Target, outputs: &DMatrix<f64>, batch: usize) -> usize {
    match target {
        Target::Class(c) => c
            .iter()
            .enumerate()
            .filter(|&(b, &c)| argmax(outputs.column(b)) != c)
            .count(),
        Target::Value(v) => (0..v.ncols())
            .filter(|&b| {
                let se = (outputs.column(b) - v.column(b)).norm_squared();
                // NaN (a diverged network) is an error too
                se.is_nan() || se > REGRESSION_TOLERANCE
            })
            .count(),
        Target::ClassEveryStep(c) => {
            let mut wrong = vec![false; batch];
            for (j, &c) in c.iter().enumerate() {
                if argmax(outputs.column(j)) != c {
                    wrong[j % batch] = true;
                }
            }
            wrong.iter().filter(|&&w| w).count()
        }
    }
}

/// `U{lo..hi−1}`, `lo` when the range is empty.
fn pick(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// Temporal order with marks in the windows `[a·T/10, a·T/10 + T/10)` for each `(a, _)`.
fn temporal_order(rng: &mut Rng, batch: usize, length: usize, windows: &[(usize, usize)]) -> Batch {
    let tenth = length / 10;
    let mut symbols = vec![0; length * batch];
    let mut classes = vec![0; batch];
    for b in 0..batch {
        for t in 0..length {
            symbols[t * batch + b] = 2 + rng.random_range(0..4usize);
        }
        for (bit, &(a, _)) in windows.iter().enumerate() {
            let start = length * a / 10;
            let p = start + pick(rng, 0, tenth);
            let v = rng.random_range(0..2usize);
            symbols[p * batch + b] = v;
            classes[b] += v << bit;
        }
    }
    Batch {
        inputs: Inputs::OneHot { dim: 6, symbols },
        target: Target::Class(classes),
        steps: length,
        batch,
    }
}

/// Addition / multiplication: marker channel 0, value channel 1.
fn marked_pair(rng: &mut Rng, batch: usize, length: usize, f: impl Fn(f64, f64) -> f64) -> Batch {
    let steps = length + pick(rng, 0, length / 10);
    let mut x = DMatrix::zeros(2, steps * batch);
    for j in 0..steps * batch {
        x[(1, j)] = rng.random::<f64>();
    }
    let mut target = DMatrix::zeros(1, batch);
    for b in 0..batch {
        let p0 = pick(rng, 0, steps / 10);
        let p1 = steps / 10 + pick(rng, 0, steps * 4 / 10);
        x[(0, p0 * batch + b)] = 1.0;
        x[(0, p1 * batch + b)] = 1.0;
        target[(0, b)] = f(x[(1, p0 * batch + b)], x[(1, p1 * batch + b)]);
    }
    Batch {
        inputs: Inputs::Dense(x),
        target: Target::Value(target),
        steps,
        batch,
    }
}

fn permutation(rng: &mut Rng, batch: usize, length: usize) -> Batch {
    let mut symbols = vec![0; length * batch];
    let mut classes = vec![0; batch];
    for b in 0..batch {
        let first = rng.random_range(0..2usize);
        symbols[b] = first;
        classes[b] = first;
        for t in 1..length {
            symbols[t * batch + b] = 2 + rng.random_range(0..98usize);
        }
    }
    Batch {
        inputs: Inputs::OneHot { dim: 100, symbols },
        target: Target::Class(classes),
        steps: length,
        batch,
    }
}

/// Steps 0..10: the pattern; then the blank channel (5) until step `length + 10`, which carries
/// the trigger (channel 6); the blank channel again for the remaining 9 steps. Targets: the
/// blank class (5) for steps 0..length+10, the pattern for the last 10.
fn memorization(rng: &mut Rng, batch: usize, length: usize) -> Batch {
    let steps = length + 2 * MEMORY_LENGTH;
    let blank = MEMORY_VALUES;
    let trigger = MEMORY_VALUES + 1;
    let mut symbols = vec![blank; steps * batch];
    let mut classes = vec![blank; steps * batch];
    for b in 0..batch {
        for t in 0..MEMORY_LENGTH {
            let v = rng.random_range(0..MEMORY_VALUES);
            symbols[t * batch + b] = v;
            classes[(steps - MEMORY_LENGTH + t) * batch + b] = v;
        }
        symbols[(length + MEMORY_LENGTH) * batch + b] = trigger;
    }
    Batch {
        inputs: Inputs::OneHot {
            dim: MEMORY_VALUES + 2,
            symbols,
        },
        target: Target::ClassEveryStep(classes),
        steps,
        batch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for t in ALL_TASKS {
            assert_eq!(t.name().parse::<Task>(), Ok(t));
        }
        let e = "adding".parse::<Task>().unwrap_err();
        assert!(
            e.contains("unknown task 'adding'") && e.contains("addition"),
            "{e}"
        );
    }

    #[test]
    fn lengths_below_the_minimum_are_refused() {
        let e = Task::TemporalOrder
            .generate(&mut stream(0, &[]), 3, 5)
            .unwrap_err();
        assert!(e.to_string().contains("below the minimum"), "{e}");
    }
}
