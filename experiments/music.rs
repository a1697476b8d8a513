//! `music`: polyphonic music modelling on the Bach chorales (music21's corpus, the split of
//! `scripts/fetch-data.sh`) — a tanh RNN trained by MSGD, MSGD-C and MSGD-CR as in Pascanu et
//! al.'s Table 1, and an LSTM and a GRU of its parameter count — in negative log-likelihood
//! per time step (nats), beside a memoryless baseline and the published JSB numbers.
//!
//! Output (schemas in experiments/README.md): `curves.csv` (learning curves with gradient norms
//! and validation NLL), `runs.csv` (one row per run at its best validation), `samples.csv` (a
//! piano roll sampled from each model, one row per step), `music.json` (provenance; its plan
//! holds the data's sizes and the baseline). Exit status: 0 done, 1 I/O or numerical failure,
//! 2 bad arguments or data (no export, a changed or malformed file).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use bptt::experiment::data::{self, Chorales, LOWEST_PITCH};
use bptt::experiment::driver::{
    self, CommonArgs, Context, Experiment, Outputs, Rows, ShardArgs, Summary, Table,
};
use bptt::experiment::language_model::{self, Algorithm};
use bptt::experiment::music::{self, Hyper, Outcome, RunSpec};
use bptt::nn::arch::SeqLayer;
use bptt::nn::cells::CellKind;
use bptt::train::trainer::Dtype;
use clap::Parser;

/// One row of `curves.csv`: a logged update of one run.
#[derive(serde::Serialize, Default)]
struct CurveRow<'a> {
    cell: &'a str,
    hidden: usize,
    algorithm: &'a str,
    seed: u64,
    update: u64,
    epoch: f64,
    /// Mean training loss of the updates since the previous row, nats per time step.
    train_nll: f64,
    grad_norm: f64,
    max_grad_norm: f64,
    /// The clipping threshold (empty without clipping).
    clip: Option<f64>,
    clipped: u64,
    omega: f64,
    omega_weight: f64,
    valid_nll: Option<f64>,
}

/// One row of `runs.csv`: a run's model of the best validation NLL.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct RunRow {
    cell: String,
    hidden: usize,
    parameters: usize,
    algorithm: String,
    lr: f64,
    seed: u64,
    updates: u64,
    epochs: f64,
    diverged: bool,
    /// The update of the best validation NLL (the reported model).
    best_update: u64,
    train_nll: f64,
    valid_nll: f64,
    test_nll: f64,
    /// The validation NLL after the last update (NaN: diverged).
    final_valid_nll: f64,
    /// Updates whose gradient was clipped, of all updates.
    clipped_fraction: f64,
}

/// One row of `samples.csv`: a step of the piano roll sampled from a run's model.
#[derive(serde::Serialize, Default)]
struct SampleRow<'a> {
    cell: &'a str,
    hidden: usize,
    algorithm: &'a str,
    seed: u64,
    step: usize,
    /// The MIDI pitches sounding, ascending, space-separated (empty: a rest).
    pitches: String,
}

#[derive(Parser, Debug, serde::Serialize)]
#[command(
    name = "music",
    version,
    about = "Polyphonic music on the Bach chorales: a tanh RNN by MSGD, MSGD+clipping, MSGD+clipping+Ω, and an LSTM and a GRU of equal size, in NLL per time step.",
    long_about = "Polyphonic music on the Bach chorales: a tanh RNN by MSGD, MSGD+clipping, MSGD+clipping+Ω, and an LSTM and a GRU of equal size, in NLL per time step.\n\n\
        Every run trains one cell (PyTorch's initialisation; --hidden units for vanilla cells, gated cells \
        sized to the parameter count of the rnn-tanh of --hidden units) reading a piano roll (88 pitches and \
        a start channel) and predicting the next frame with an independent sigmoid per pitch. Training: the \
        training pieces concatenated and cut into --batch contiguous streams, each update the next \
        --steps-step chunk of every stream, the state carried from chunk to chunk and reset at each epoch. \
        Every hyper-parameter is for the trainer's loss, the mean NLL per time step (nats); Ω's weight \
        decreases as α·τ/(τ + t), τ = --omega-decay updates (default one epoch); msgd-cr applies to vanilla \
        cells only. Validation every --eval-every updates, each piece from zero states; the model of the best \
        validation NLL is the run's, tested once at the end. Runs are independent and run in parallel.\n\n\
        Data: the export of scripts/fetch-data.sh (--data).\n\n\
        Example: music --runs rnn-tanh:msgd-c,gru:msgd-c --updates 2000 --seeds 3"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    shard: ShardArgs,
    /// The exported data (scripts/fetch-data.sh)
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Runs as cell:algorithm, comma-separated (cells: bptt's registry names; algorithms: msgd, msgd-c, msgd-cr)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rnn-tanh:msgd,rnn-tanh:msgd-c,rnn-tanh:msgd-cr,lstm:msgd-c,gru:msgd-c"
    )]
    runs: Vec<String>,
    /// Seeds (replicates) per run
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Hidden units of vanilla cells (gated cells: the parameter count of rnn-tanh at this size)
    #[arg(long, default_value_t = 100)]
    hidden: usize,
    /// B, parallel streams per batch
    #[arg(long, default_value_t = Hyper::default().batch)]
    batch: usize,
    /// T, steps per chunk (truncated BPTT)
    #[arg(long, default_value_t = Hyper::default().steps)]
    steps: usize,
    /// Updates per run
    #[arg(long, default_value_t = Hyper::default().updates)]
    updates: u64,
    /// MSGD's learning rate
    #[arg(long, default_value_t = Hyper::default().lr_msgd)]
    lr_msgd: f64,
    /// MSGD-C's learning rate
    #[arg(long, default_value_t = Hyper::default().lr_c)]
    lr_c: f64,
    /// MSGD-CR's learning rate
    #[arg(long, default_value_t = Hyper::default().lr_cr)]
    lr_cr: f64,
    /// The learning rate of gated cells (LSTM, GRU, …), whatever the algorithm
    #[arg(long, default_value_t = Hyper::default().lr_gated)]
    lr_gated: f64,
    /// Clipping threshold of the gradient norm of the mean loss
    #[arg(long, default_value_t = Hyper::default().clip)]
    clip: f64,
    /// Ω's weight α at the first update
    #[arg(long, default_value_t = Hyper::default().alpha)]
    alpha: f64,
    /// τ of Ω's weight α·τ/(τ + t), in updates [default: one epoch]
    #[arg(long)]
    omega_decay: Option<f64>,
    /// Validate every N updates (and after the last)
    #[arg(long, default_value_t = Hyper::default().eval_every)]
    eval_every: u64,
    /// A learning-curve row every N updates (a divisor of --eval-every)
    #[arg(long, default_value_t = Hyper::default().log_every)]
    log_every: u64,
    /// Steps sampled from each model at the end (0: none)
    #[arg(long, default_value_t = Hyper::default().sample_steps)]
    sample: usize,
    /// Scalar of the updates: f32 or f64 (evaluations in f64)
    #[arg(long, default_value = "f64")]
    dtype: Dtype,
    /// A run of seconds (CI): 8 units, B = 4, T = 10, 20 updates, one seed
    #[arg(long)]
    quick: bool,
}

/// The resolved work: what a resumed run must match.
#[derive(Clone, Debug, serde::Serialize)]
struct Plan {
    data: DataSummary,
    runs: Vec<RunSpec>,
    hyper: Hyper,
    chunks_per_epoch: usize,
    seed: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
struct DataSummary {
    dir: PathBuf,
    /// Pieces and time steps of each split.
    pieces: [usize; 3],
    steps: [usize; 3],
    /// NLL per time step of the memoryless baseline (train, valid, test).
    bernoulli_nll: [f64; 3],
}

fn plan(a: &Args) -> Result<(Plan, Chorales), String> {
    let mut h = Hyper {
        batch: a.batch,
        steps: a.steps,
        updates: a.updates,
        lr_msgd: a.lr_msgd,
        lr_c: a.lr_c,
        lr_cr: a.lr_cr,
        lr_gated: a.lr_gated,
        clip: a.clip,
        alpha: a.alpha,
        omega_decay: a.omega_decay,
        eval_every: a.eval_every,
        log_every: a.log_every,
        sample_steps: a.sample,
        dtype: a.dtype,
    };
    if a.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    if a.hidden == 0 {
        return Err("--hidden must be at least 1".into());
    }
    let (mut hidden, mut seeds) = (a.hidden, a.seeds);
    if a.quick {
        (hidden, seeds) = (8, 1);
        h = Hyper {
            batch: 4,
            steps: 10,
            updates: 20,
            eval_every: 10,
            log_every: 5,
            sample_steps: a.sample.min(16),
            ..h
        };
    }
    h.validate().map_err(|e| e.to_string())?;
    let mut pairs: Vec<(CellKind, Algorithm)> = Vec::new();
    for r in &a.runs {
        let (cell, alg) = r
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("--runs: '{r}' is not cell:algorithm (e.g. lstm:msgd-c)"))?;
        let cell: CellKind = cell.parse().map_err(|e| format!("--runs: {e}"))?;
        let alg: Algorithm = alg.parse().map_err(|e| format!("--runs: {e}"))?;
        language_model::check_applicable(cell, alg).map_err(|e| format!("--runs: {r}: {e}"))?;
        if pairs.contains(&(cell, alg)) {
            return Err(format!("--runs: '{r}' is listed twice"));
        }
        pairs.push((cell, alg));
    }
    if pairs.is_empty() {
        return Err("--runs: give at least one cell:algorithm".into());
    }
    // the data last: flags are checked without an export
    let splits = data::chorales(&a.data).map_err(|e| e.to_string())?;
    let steps = |s: &[data::PianoRoll]| s.iter().map(|p| p.steps.len()).sum::<usize>();
    let train_steps = steps(&splits.train);
    let per_epoch = h.chunks_per_epoch(train_steps).map_err(|e| e.to_string())?;
    let mut bernoulli_nll = [0.0; 3];
    for (i, split) in [&splits.train, &splits.valid, &splits.test]
        .into_iter()
        .enumerate()
    {
        bernoulli_nll[i] =
            music::bernoulli_baseline(&splits.train, split).map_err(|e| e.to_string())?;
    }
    let size = |cell: CellKind| music::run_hidden(cell, hidden);
    let width = pairs.iter().map(|&(c, _)| size(c)).max().unwrap_or(hidden) as u128;
    let longest = [&splits.train, &splits.valid, &splits.test]
        .iter()
        .flat_map(|s| s.iter().map(|p| p.steps.len()))
        .max()
        .unwrap_or(1) as u128;
    // per worker: the training tape (≤ 10 H-vectors per step and stream), inputs and targets,
    // the evaluation of the longest piece
    let columns = (h.steps as u128 + 1) * h.batch as u128 + longest;
    let per_worker = 8 * columns * (10 * width + 2 * music::INPUTS as u128);
    driver::check_plan_memory(
        per_worker.checked_mul(rayon::current_num_threads().max(1) as u128),
        &format!(
            "chunks of {} steps × {} streams at {width} units",
            h.steps, h.batch
        ),
    )?;
    let mut runs = Vec::new();
    for &(cell, algorithm) in &pairs {
        for replicate in 0..seeds {
            runs.push(RunSpec {
                cell,
                hidden: size(cell),
                algorithm,
                replicate,
            });
        }
    }
    let data = DataSummary {
        dir: a.data.clone(),
        pieces: [splits.train.len(), splits.valid.len(), splits.test.len()],
        steps: [train_steps, steps(&splits.valid), steps(&splits.test)],
        bernoulli_nll,
    };
    Ok((
        Plan {
            data,
            runs,
            hyper: h,
            chunks_per_epoch: per_epoch,
            seed: a.shard.seed,
        },
        splits,
    ))
}

/// The experiment: one chunk per run, runs in parallel.
struct Music {
    plan: Plan,
    splits: Chorales,
}

impl Music {
    fn rows(&self, s: &RunSpec, o: &Outcome) -> Rows {
        let h = &self.plan.hyper;
        let (cell, alg) = (s.cell.name(), s.algorithm.name());
        let clip = (s.algorithm != Algorithm::Msgd).then_some(h.clip);
        let mut rows = Rows::new(3);
        for p in &o.curve {
            rows.push(
                0,
                &CurveRow {
                    cell,
                    hidden: s.hidden,
                    algorithm: alg,
                    seed: s.replicate,
                    update: p.update,
                    epoch: p.epoch,
                    train_nll: p.train_nll,
                    grad_norm: p.grad_norm,
                    max_grad_norm: p.max_grad_norm,
                    clip,
                    clipped: p.clipped,
                    omega: p.omega,
                    omega_weight: p.omega_weight,
                    valid_nll: p.valid_nll,
                },
            );
        }
        let clipped: u64 = o.curve.iter().map(|p| p.clipped).sum();
        rows.push(
            1,
            &RunRow {
                cell: cell.into(),
                hidden: s.hidden,
                parameters: o.model.net.params().scalar_count()
                    + o.model.readout.params().scalar_count(),
                algorithm: alg.into(),
                lr: h.lr(s.cell, s.algorithm),
                seed: s.replicate,
                updates: o.updates,
                epochs: o.updates as f64 / o.chunks_per_epoch as f64,
                diverged: o.diverged,
                best_update: o.best_update,
                train_nll: o.train_nll,
                valid_nll: o.valid_nll,
                test_nll: o.test_nll,
                final_valid_nll: o.final_valid_nll,
                clipped_fraction: clipped as f64 / o.updates.max(1) as f64,
            },
        );
        for (step, frame) in o.sample.iter().enumerate() {
            let pitches: Vec<String> = frame
                .iter()
                .map(|&c| (c + LOWEST_PITCH).to_string())
                .collect();
            rows.push(
                2,
                &SampleRow {
                    cell,
                    hidden: s.hidden,
                    algorithm: alg,
                    seed: s.replicate,
                    step,
                    pitches: pitches.join(" "),
                },
            );
        }
        rows
    }
}

impl Experiment for Music {
    const NAME: &'static str = "music";
    const UNIT: &'static str = "runs";

    fn plan(&self) -> serde_json::Value {
        serde_json::to_value(&self.plan).expect("the plan serializes")
    }
    fn tables(&self) -> Vec<Table> {
        vec![
            Table::of::<CurveRow>("curves.csv"),
            Table::of::<RunRow>("runs.csv"),
            Table::of::<SampleRow>("samples.csv"),
        ]
    }
    fn chunks(&self) -> usize {
        self.plan.runs.len()
    }
    fn parallel_chunks(&self) -> bool {
        true
    }
    fn compute(&self, index: usize, ctx: &Context<'_>) -> Result<Rows, String> {
        let s = &self.plan.runs[index];
        let o = music::train(s, &self.plan.hyper, &self.splits, self.plan.seed)
            .map_err(|e| format!("run {}: {e}", s.id()))?;
        ctx.progress(1);
        Ok(self.rows(s, &o))
    }

    fn summarize(plan: &serde_json::Value, out: &Outputs<'_>) -> Result<Summary, String> {
        let runs: Vec<RunRow> = out.rows("runs.csv")?;
        let base = &plan["data"]["bernoulli_nll"];
        let mut table = format!(
            "\nBach chorales, NLL per time step (nats) at the best validation of {} updates\n\
             memoryless baseline (independent Bernoulli per pitch): train {:.3}, valid {:.3}, test {:.3}\n\
             published, on JSB Chorales (382 pieces, another split): GRU 8.54 test (Chung et al. 2014)\n\
             {:<12} {:>5} {:>7} {:<8} {:>4} {:>6} {:>8} {:>8} {:>8} {:>8}",
            plan["hyper"]["updates"],
            base[0].as_f64().unwrap_or(f64::NAN),
            base[1].as_f64().unwrap_or(f64::NAN),
            base[2].as_f64().unwrap_or(f64::NAN),
            "cell",
            "H",
            "params",
            "alg",
            "seed",
            "best",
            "train",
            "valid",
            "test",
            "clipped"
        );
        for r in &runs {
            write!(
                table,
                "\n{:<12} {:>5} {:>7} {:<8} {:>4} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>7.0}%{}",
                r.cell,
                r.hidden,
                r.parameters,
                r.algorithm,
                r.seed,
                r.best_update,
                r.train_nll,
                r.valid_nll,
                r.test_nll,
                100.0 * r.clipped_fraction,
                if r.diverged { "  diverged" } else { "" }
            )
            .unwrap();
        }
        let results: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "cell": r.cell, "hidden": r.hidden, "algorithm": r.algorithm,
                    "seed": r.seed, "best_update": r.best_update, "train_nll": r.train_nll,
                    "valid_nll": r.valid_nll, "test_nll": r.test_nll, "diverged": r.diverged,
                })
            })
            .collect();
        Ok(Summary {
            failure: None,
            results: serde_json::json!({ "runs": results }),
            table,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    driver::drive(&args.common, Some(&args.shard), &args, || {
        let (plan, splits) = plan(&args)?;
        Ok(Music { plan, splits })
    })
}
