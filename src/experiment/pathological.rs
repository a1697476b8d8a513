//! Pascanu, Mikolov & Bengio (2013) §4.1: one training run of a vanilla RNN on a pathological
//! task — the paper's initialisations (§4.1.1), its three algorithms (SGD, SGD-C, SGD-CR), its
//! success criterion — reusable by the `pathological` binary and the tests.
//!
//! Randomness of a run comes from `stream(seed, [task, init, min length, max length,
//! replicate, purpose])` with purpose 0 = initial weights, 1 = training batches, 2 = validation,
//! 3 = the final test. A run on fixed length T is validated and tested at T; a run on lengths
//! drawn from `min..=max` (one per batch) at [`RANGE_TEST_LENGTHS`] lengths evenly spaced over
//! the range, ends included ([`RunSpec::test_lengths`]). The algorithm is *not* in the path: SGD, SGD-C and SGD-CR of one
//! replicate start from the same weights and see the same batches (common random numbers), so
//! their differences are the algorithms'.

use std::fmt;
use std::str::FromStr;

use nalgebra::{DMatrix, RealField};
use rand_distr::{Distribution, StandardNormal};

use crate::error::BpttError;
use crate::experiment::tasks::{Batch, Target, Task};
use crate::nn::activation::Activation;
use crate::nn::arch::Unidirectional;
use crate::nn::cell::{Cell, CellFamily};
use crate::nn::cells::vanilla::VanillaRnn;
use crate::nn::cells::vanilla::WEIGHT_HH;
use crate::nn::model::NetworkModel;
use crate::nn::readout::Readout;
use crate::nn::readout::{BIAS, WEIGHT};
use crate::rng::{Rng, stream};
use crate::train::optim::Optimizer;
use crate::train::trainer::{self, Dtype, OmegaRule, Record, Schedule, Trainer};

/// The model trained on the pathological tasks: one vanilla layer and a linear readout.
pub type RnnModel = NetworkModel<f64, Unidirectional<VanillaRnn<f64>>>;

/// The trainer of the pathological runs.
pub type RnnTrainer = Trainer<f64, Unidirectional<VanillaRnn<f64>>>;

/// Error rate below which a task counts as solved (on [`TEST_SEQUENCES`] fresh sequences).
pub const SUCCESS_ERROR: f64 = 0.01;
/// Size of the final test.
pub const TEST_SEQUENCES: usize = 10_000;
/// Lengths at which a run trained on a range of lengths is validated and tested
/// ([`RunSpec::test_lengths`]).
pub const RANGE_TEST_LENGTHS: usize = 10;

/// The initialisations of §4.1.1 (biases zero; the paper code's scales).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// Sigmoid units, every weight N(0, 0.01²).
    Sigmoid,
    /// Tanh units, every weight N(0, 0.1²).
    BasicTanh,
    /// Tanh units; input and output weights N(0, 0.01²); `W_hh` N(0, 0.01²) with 15 non-zeros
    /// per row, rescaled to spectral radius 0.95.
    SmartTanh,
}

pub const ALL_INITS: [Init; 3] = [Init::Sigmoid, Init::BasicTanh, Init::SmartTanh];

/// Non-zeros per row and spectral radius of the smart-tanh recurrent matrix.
pub const SMART_NONZEROS: usize = 15;
pub const SMART_RADIUS: f64 = 0.95;

fn normal(rows: usize, cols: usize, sd: f64, rng: &mut Rng) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| {
        let z: f64 = StandardNormal.sample(rng);
        sd * z
    })
}

impl Init {
    pub fn name(self) -> &'static str {
        match self {
            Init::Sigmoid => "sigmoid",
            Init::BasicTanh => "basic-tanh",
            Init::SmartTanh => "smart-tanh",
        }
    }
    pub fn id(self) -> u64 {
        self as u64
    }
    pub fn activation(self) -> Activation {
        match self {
            Init::Sigmoid => Activation::Sigmoid,
            Init::BasicTanh | Init::SmartTanh => Activation::Tanh,
        }
    }

    /// A model for `task` with `hidden` units, drawn from `rng`.
    pub fn build(self, task: Task, hidden: usize, rng: &mut Rng) -> Result<RnnModel, BpttError> {
        let (d, o) = (task.input_size(), task.output_size());
        let sd = if self == Init::BasicTanh { 0.1 } else { 0.01 };
        let mut cell = VanillaRnn::zeros(d, hidden, self.activation());
        let w_ih = normal(hidden, d, sd, rng);
        let w_hh = if self == Init::SmartTanh {
            smart_recurrent(hidden, rng)?
        } else {
            normal(hidden, hidden, sd, rng)
        };
        cell.params_mut()[crate::nn::cells::vanilla::WEIGHT_IH] = w_ih;
        cell.params_mut()[WEIGHT_HH] = w_hh;
        let mut readout = Readout::uniform(hidden, o, 0.0, rng);
        readout.params_mut()[WEIGHT] = normal(o, hidden, sd, rng);
        readout.params_mut()[BIAS].fill(0.0);
        NetworkModel::new(Unidirectional::new(cell), readout)
    }
}

/// Sparse N(0, 0.01²) with [`SMART_NONZEROS`] per row, rescaled to [`SMART_RADIUS`]; a matrix
/// whose eigenvalues do not converge (or with ρ = 0) is redrawn.
fn smart_recurrent(n: usize, rng: &mut Rng) -> Result<DMatrix<f64>, BpttError> {
    for _ in 0..100 {
        let k = SMART_NONZEROS.min(n);
        let mut w = DMatrix::zeros(n, n);
        let mut cols: Vec<usize> = (0..n).collect();
        for i in 0..n {
            // partial Fisher–Yates: k distinct columns
            for j in 0..k {
                let pick = rand::RngExt::random_range(rng, j..n);
                cols.swap(j, pick);
            }
            for &c in &cols[..k] {
                let z: f64 = StandardNormal.sample(rng);
                w[(i, c)] = 0.01 * z;
            }
        }
        if let Ok(rho) = crate::numerics::spectral::spectral_radius(&w)
            && rho > 0.0
        {
            return Ok(w * (SMART_RADIUS / rho));
        }
    }
    Err(BpttError::Invalid(
        "smart-tanh: 100 draws without a usable spectrum".into(),
    ))
}

impl FromStr for Init {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_INITS
            .iter()
            .copied()
            .find(|i| i.name() == s)
            .ok_or_else(|| {
                format!("unknown init '{s}' (expected sigmoid, basic-tanh or smart-tanh)")
            })
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The algorithms compared in the paper's Fig. 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Algorithm {
    /// Plain SGD: no clipping, no regularizer, no safety net.
    Sgd,
    /// SGD with global-norm clipping (and the safety net, as in the paper's code).
    SgdC,
    /// SGD-C plus the regularizer Ω with weight α.
    SgdCR,
}

pub const ALL_ALGORITHMS: [Algorithm; 3] = [Algorithm::Sgd, Algorithm::SgdC, Algorithm::SgdCR];

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sgd => "sgd",
            Algorithm::SgdC => "sgd-c",
            Algorithm::SgdCR => "sgd-cr",
        }
    }
    /// The trainer's configuration of this algorithm on `task` under the run's
    /// hyper-parameters: SGD-C and SGD-CR clip at `h.clip` with the safety net, SGD-CR adds
    /// `α·∂Ω/∂W_hh`.
    #[must_use]
    pub fn config(self, task: Task, h: &Hyper) -> trainer::Config {
        let clipping = self != Algorithm::Sgd;
        let (readout_at, loss) = task.readout();
        trainer::Config {
            readout_at,
            loss,
            optimizer: h.optimizer,
            schedule: Schedule::Constant,
            clip: clipping.then_some(h.clip),
            safety_net: clipping,
            carry_state: false,
            omega: (self == Algorithm::SgdCR)
                .then_some(OmegaRule::constant(h.alpha, h.omega_bound)),
        }
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_ALGORITHMS
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown algorithm '{s}' (expected sgd, sgd-c or sgd-cr)"))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Hyper-parameters shared by every run of a grid (defaults: the paper's, but for the update
/// budget — the `pathological` binary's 5000 instead of the paper's 5,000,000).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Hyper {
    pub hidden: usize,
    pub batch: usize,
    pub optimizer: Optimizer,
    pub clip: f64,
    pub alpha: f64,
    pub omega_bound: f64,
    /// Update budget per run.
    pub updates: u64,
    /// Validate every this many updates (and log every `log_every`).
    pub eval_every: u64,
    pub log_every: u64,
    /// Validation sequences per evaluation.
    pub eval_sequences: usize,
    /// The scalar the updates run in.
    pub dtype: Dtype,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            hidden: 50,
            batch: 20,
            optimizer: Optimizer::sgd(0.01),
            clip: 1.0,
            alpha: 2.0,
            omega_bound: crate::train::omega::DEFAULT_BOUND,
            updates: 5000,
            eval_every: 250,
            log_every: 10,
            eval_sequences: 1000,
            dtype: Dtype::F64,
        }
    }
}

/// One run of the grid.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct RunSpec {
    pub task: Task,
    pub init: Init,
    pub algorithm: Algorithm,
    /// Training lengths: each batch's length is drawn from `min..=max` (equal: fixed).
    pub min_length: usize,
    pub max_length: usize,
    /// Replicate index (the seed of the run within the grid).
    pub replicate: u64,
}

impl RunSpec {
    /// The run's ChaCha8 stream for `purpose` (0 weights, 1 batches, 2 validation, 3 test;
    /// the `pathological` binary uses `[4, i]` for the i-th generalisation length).
    pub fn stream(&self, seed: u64, purpose: &[u64]) -> Rng {
        let mut path = vec![
            self.task.id(),
            self.init.id(),
            self.min_length as u64,
            self.max_length as u64,
            self.replicate,
        ];
        path.extend_from_slice(purpose);
        stream(seed, &path)
    }
    /// The lengths at which validation and the final test measure the run: its length, or for
    /// a range [`RANGE_TEST_LENGTHS`] lengths evenly spaced over `min..=max`, both ends
    /// included, each with an equal share of the sequences — so "solved" means solved over the
    /// whole training range, not on the few lengths a random draw happened to pick.
    #[must_use]
    pub fn test_lengths(&self) -> Vec<usize> {
        let (lo, hi) = (self.min_length, self.max_length);
        if hi <= lo {
            return vec![lo];
        }
        let k = RANGE_TEST_LENGTHS;
        let mut out: Vec<usize> = (0..k)
            .map(|i| lo + ((hi - lo) as f64 * i as f64 / (k - 1) as f64).round() as usize)
            .collect();
        out.dedup();
        out
    }
    fn draw_length(&self, rng: &mut Rng) -> usize {
        if self.max_length > self.min_length {
            rand::RngExt::random_range(rng, self.min_length..=self.max_length)
        } else {
            self.min_length
        }
    }
    /// A readable identifier (file names of saved models).
    pub fn id(&self) -> String {
        let len = if self.min_length == self.max_length {
            format!("T{}", self.min_length)
        } else {
            format!("T{}-{}", self.min_length, self.max_length)
        };
        format!(
            "{}_{}_{}_{len}_s{}",
            self.task, self.init, self.algorithm, self.replicate
        )
    }
}

/// One logged point of a learning curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    /// Updates done (1-based: the record of update `update`).
    pub update: u64,
    pub record: Record,
    /// Largest gradient norm since the previous point (explosions between logged updates).
    pub max_grad_norm: f64,
    /// Updates clipped / caught by the safety net since the previous point.
    pub clipped: u64,
    pub safety: u64,
    /// Validation error rate, at evaluation points.
    pub valid_error: Option<f64>,
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub updates: u64,
    /// Error rate on [`TEST_SEQUENCES`] fresh sequences at the end.
    pub test_error: f64,
    pub success: bool,
    /// The parameters became non-finite (plain SGD after an explosion): the run stopped.
    pub diverged: bool,
    pub model: RnnModel,
    pub curve: Vec<CurvePoint>,
}

/// Numbers a chunk of an evaluation keeps in the trainer's workspace (≈ 32 MB in f64):
/// sequences of any length are evaluated chunk by chunk with the state carried.
const EVAL_ENTRIES: usize = 1 << 22;

/// The number of sequences of `batch` that `model` gets wrong (see
/// [`crate::experiment::tasks::count_errors`]), evaluated without keeping the whole history (any length).
pub fn count_errors(
    trainer: &mut RnnTrainer,
    model: &RnnModel,
    batch: &Batch,
) -> Result<usize, BpttError> {
    let (steps, bsz) = (batch.steps, batch.batch);
    let outputs = model.readout.params()[WEIGHT].nrows();
    if let Target::Value(v) = &batch.target
        && v.nrows() != outputs
    {
        return Err(BpttError::shape(
            "regression targets",
            (outputs, bsz),
            v.shape(),
        ));
    }
    let cell = &model.net.cell;
    // a chunk's tape holds about EVAL_ENTRIES numbers
    let per_step = (cell.tape_rows() + cell.state_size()) * bsz;
    let chunk = (EVAL_ENTRIES / per_step.max(1)).clamp(1, steps.max(1));
    let mut wrong = vec![false; bsz];
    let mut at_last = 0;
    let inputs = batch.for_trainer().inputs;
    trainer.predict(model, inputs, bsz, chunk, &mut |t, y| match &batch.target {
        Target::ClassEveryStep(c) => {
            let classes = &c[t * bsz..(t + 1) * bsz];
            for (b, w) in wrong.iter_mut().enumerate() {
                *w |= crate::experiment::tasks::argmax(y.column(b)) != classes[b];
            }
        }
        target => at_last = crate::experiment::tasks::count_errors(target, y, bsz),
    })?;
    Ok(match batch.target {
        Target::ClassEveryStep(_) => wrong.iter().filter(|&&w| w).count(),
        _ => at_last,
    })
}

/// A trainer that only evaluates `model` on `task` (its readout placement; no update rule).
pub fn evaluator(model: &RnnModel, task: Task) -> Result<RnnTrainer, BpttError> {
    let (readout_at, loss) = task.readout();
    Trainer::new(
        model,
        trainer::Config {
            readout_at,
            loss,
            ..trainer::Config::default()
        },
    )
}

/// Error rate of `model` on `n` fresh sequences drawn from `rng`: the `n` sequences are shared
/// out evenly over `lengths` (the first `n mod k` lengths get one more), in that order, and
/// drawn in batches of at most 1000 of one length.
pub fn error_rate(
    trainer: &mut RnnTrainer,
    model: &RnnModel,
    task: Task,
    lengths: &[usize],
    n: usize,
    rng: &mut Rng,
) -> Result<f64, BpttError> {
    if lengths.is_empty() || n == 0 {
        return Err(BpttError::Invalid(format!(
            "an error rate needs sequences and lengths (got {n} sequences over {} lengths)",
            lengths.len()
        )));
    }
    let k = lengths.len();
    let mut errors = 0;
    for (i, &l) in lengths.iter().enumerate() {
        let mut left = n / k + usize::from(i < n % k);
        while left > 0 {
            let b = left.min(1000);
            let batch = task.generate(rng, b, l)?;
            errors += count_errors(trainer, model, &batch)?;
            left -= b;
        }
    }
    Ok(errors as f64 / n as f64)
}

/// Train one run: up to `h.updates` updates, validation every `h.eval_every`; when the
/// validation error falls below 1% the final test decides, and a success stops the run.
///
/// The updates run in `h.dtype` from the weights drawn in f64 (rounded to f32 for f32);
/// validation and tests run in f64 on the trained weights (exact from f32), so error rates
/// of the two dtypes are measured alike.
pub fn train(spec: &RunSpec, h: &Hyper, seed: u64) -> Result<Outcome, BpttError> {
    match h.dtype {
        Dtype::F64 => train_in::<f64>(spec, h, seed),
        Dtype::F32 => train_in::<f32>(spec, h, seed),
    }
}

fn train_in<T: RealField + Copy>(
    spec: &RunSpec,
    h: &Hyper,
    seed: u64,
) -> Result<Outcome, BpttError> {
    let mut model = spec
        .init
        .build(spec.task, h.hidden, &mut spec.stream(seed, &[0]))?;
    let mut model_t: NetworkModel<T, Unidirectional<VanillaRnn<T>>> = model.rescalar();
    let mut data = spec.stream(seed, &[1]);
    let mut valid = spec.stream(seed, &[2]);
    let mut trainer = Trainer::new(&model_t, spec.algorithm.config(spec.task, h))?;
    let mut ws = evaluator(&model, spec.task)?;
    let (mut x, mut v) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
    let mut curve = Vec::new();
    let (mut max_norm, mut clipped, mut safety) = (0.0f64, 0, 0);
    let mut diverged = false;
    let mut tested: Option<(u64, f64)> = None;
    let test_lengths = spec.test_lengths();
    let mut n = 0;
    while n < h.updates {
        let len = spec.draw_length(&mut data);
        let batch: Batch = spec.task.generate(&mut data, h.batch, len)?;
        let rec = trainer.update(&mut model_t, &batch.for_trainer_in(&mut x, &mut v))?;
        n += 1;
        max_norm = if rec.grad_norm.is_nan() || max_norm.is_nan() {
            f64::NAN
        } else {
            max_norm.max(rec.grad_norm)
        };
        clipped += rec.clipped as u64;
        safety += rec.safety as u64;
        let finite = model_t.net.cell.params().is_finite() && model_t.readout.params().is_finite();
        let evaluate = n % h.eval_every == 0 || n == h.updates || !finite;
        if n % h.log_every == 0 || evaluate {
            let valid_error = if evaluate {
                // the trained weights, in f64
                model = model_t.rescalar();
                Some(error_rate(
                    &mut ws,
                    &model,
                    spec.task,
                    &test_lengths,
                    h.eval_sequences,
                    &mut valid,
                )?)
            } else {
                None
            };
            curve.push(CurvePoint {
                update: n,
                record: rec,
                max_grad_norm: max_norm,
                clipped,
                safety,
                valid_error,
            });
            (max_norm, clipped, safety) = (0.0, 0, 0);
            if !finite {
                diverged = true;
                break;
            }
            if valid_error.is_some_and(|e| e < SUCCESS_ERROR) {
                let e = final_test(&mut ws, &model, spec, seed)?;
                tested = Some((n, e));
                if e < SUCCESS_ERROR {
                    break;
                }
            }
        }
    }
    model = model_t.rescalar();
    let test_error = match tested {
        // tested at the final parameters already
        Some((at, e)) if at == n => e,
        _ => final_test(&mut ws, &model, spec, seed)?,
    };
    Ok(Outcome {
        updates: n,
        test_error,
        success: !diverged && test_error < SUCCESS_ERROR,
        diverged,
        model,
        curve,
    })
}

/// The final test: [`TEST_SEQUENCES`] fresh sequences from the run's test stream (the same
/// sequences whenever it is called).
fn final_test(
    ws: &mut RnnTrainer,
    model: &RnnModel,
    spec: &RunSpec,
    seed: u64,
) -> Result<f64, BpttError> {
    let mut rng = spec.stream(seed, &[3]);
    error_rate(
        ws,
        model,
        spec.task,
        &spec.test_lengths(),
        TEST_SEQUENCES,
        &mut rng,
    )
}
