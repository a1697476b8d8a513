//! `language-model`: Pascanu et al.'s Table 1 on Penn Treebank — a sigmoid RNN trained by
//! minibatch SGD, with gradient clipping (MSGD-C) and with clipping and Ω (MSGD-CR), to predict
//! the next character or the character five steps ahead, in bits per character on the
//! published splits — and the lecture's remedy beside it: an LSTM and a GRU of the RNN's
//! parameter count. Word level too (`--level words`, perplexity).
//!
//! Output (schemas in experiments/README.md): `curves.csv` (learning curves with gradient norms
//! and validation bits), `runs.csv` (one row per run, the paper's numbers beside ours),
//! `samples.csv` (text sampled from each next-symbol model), `checkpoints/<run>.safetensors`
//! (the run's state every `--checkpoint-every` updates, the trained model at the end),
//! `language_model.json` (provenance). Reads the export of `scripts/fetch-data.sh`. Exit
//! status: 0 done, 1 I/O or numerical failure, 2 bad arguments or data (no export, a changed
//! file, an unknown symbol).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use bptt::experiment::data::{self, Corpus};
use bptt::experiment::driver::{
    self, CommonArgs, Context, Experiment, Outputs, Rows, ShardArgs, Summary, Table,
};
use bptt::experiment::language_model::{
    self, Algorithm, Checkpointing, Hyper, Level, Outcome, RunSpec,
};
use bptt::nn::arch::SeqLayer;
use bptt::nn::cells::CellKind;
use bptt::train::trainer::Dtype;
use clap::Parser;

/// One row of `curves.csv`: a logged update of one run.
#[derive(serde::Serialize, Default)]
struct CurveRow<'a> {
    level: &'a str,
    cell: &'a str,
    hidden: usize,
    algorithm: &'a str,
    ahead: usize,
    seed: u64,
    update: u64,
    epoch: f64,
    /// Mean training loss of the updates since the previous row, bits per symbol.
    train_bits: f64,
    grad_norm: f64,
    max_grad_norm: f64,
    /// The paper's clipping threshold (empty without clipping), for the cost summed over a chunk.
    clip: Option<f64>,
    /// The gradient norm as the paper measures it (of the cost summed over a chunk): grad_norm · T.
    paper_grad_norm: f64,
    clipped: u64,
    omega: f64,
    omega_weight: f64,
    valid_bits: Option<f64>,
}

/// One row of `runs.csv`.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct RunRow {
    level: String,
    cell: String,
    hidden: usize,
    parameters: usize,
    algorithm: String,
    ahead: usize,
    seed: u64,
    updates: u64,
    epochs: f64,
    diverged: bool,
    train_bits: f64,
    valid_bits: f64,
    test_bits: f64,
    valid_perplexity: f64,
    test_perplexity: f64,
    /// Table 1's bits per character (train, test) for this algorithm and task (characters).
    paper_train_bits: Option<f64>,
    paper_test_bits: Option<f64>,
}

/// One row of `samples.csv`.
#[derive(serde::Serialize, Default)]
struct SampleRow<'a> {
    level: &'a str,
    cell: &'a str,
    hidden: usize,
    algorithm: &'a str,
    seed: u64,
    prime: String,
    sample: String,
}

#[derive(Parser, Debug, serde::Serialize)]
#[command(
    name = "language-model",
    version,
    about = "Pascanu et al.'s Table 1 on Penn Treebank: MSGD, MSGD+clipping, MSGD+clipping+Ω, and an LSTM and a GRU of equal size.",
    long_about = "Pascanu et al.'s Table 1 on Penn Treebank: MSGD, MSGD+clipping, MSGD+clipping+Ω, and an LSTM and a GRU of equal size.\n\n\
        Every run trains one cell (PyTorch's initialisation; --hidden units for vanilla cells, gated cells \
        sized to the parameter count of the rnn-sigmoid of --hidden units) with a softmax readout to predict \
        the symbol --ahead steps later, by truncated BPTT: the training text cut into --batch contiguous \
        streams, each update the next --steps-step chunk of every stream, the state carried from chunk to \
        chunk and reset at each epoch's start. Learning rates, the clipping threshold and Ω's weight α are \
        the paper's, for the cost summed over a chunk's steps (the trainer's mean loss gets lr·T, clip/T, \
        α/T: the same updates); Ω's weight decreases as α·τ/(τ + t), τ = --omega-decay updates (default one \
        epoch); msgd-cr applies to vanilla cells only. Validation in bits per symbol every --eval-every \
        updates, in f64 on the trained weights over every symbol of the split (--eval-symbols caps it); \
        test bits at the end, and train bits over the first --train-eval-symbols training symbols. A checkpoint every --checkpoint-every updates: --resume continues \
        an interrupted run from it, bit-identically. Runs are independent and run in parallel.\n\n\
        Data: the export of scripts/fetch-data.sh (--data).\n\n\
        Example: language-model --runs rnn-sigmoid:msgd-c --ahead 1 --updates 500"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    shard: ShardArgs,
    /// The exported data (scripts/fetch-data.sh)
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// chars (bits per character) or words (perplexity)
    #[arg(long, default_value = "chars")]
    level: String,
    /// Runs as cell:algorithm, comma-separated (cells: bptt's registry names; algorithms: msgd, msgd-c, msgd-cr)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rnn-sigmoid:msgd,rnn-sigmoid:msgd-c,rnn-sigmoid:msgd-cr,lstm:msgd-c,gru:msgd-c"
    )]
    runs: Vec<String>,
    /// Target distances, comma-separated (1: the next symbol; Table 1 also has 5)
    #[arg(long, value_delimiter = ',', default_value = "1,5")]
    ahead: Vec<usize>,
    /// Seeds (replicates) per run
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Hidden units of vanilla cells (gated cells: the parameter count of rnn-sigmoid at this size)
    #[arg(long, default_value_t = 500)]
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
    /// MSGD's learning rate (the paper's: for the cost summed over a chunk)
    #[arg(long, default_value_t = Hyper::default().lr_msgd)]
    lr_msgd: f64,
    /// MSGD-C's learning rate
    #[arg(long, default_value_t = Hyper::default().lr_c)]
    lr_c: f64,
    /// MSGD-CR's learning rate
    #[arg(long, default_value_t = Hyper::default().lr_cr)]
    lr_cr: f64,
    /// Clipping threshold of the gradient of the cost summed over a chunk
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
    /// A learning-curve row every N updates
    #[arg(long, default_value_t = Hyper::default().log_every)]
    log_every: u64,
    /// A checkpoint every N updates (a multiple of --log-every)
    #[arg(long, default_value_t = Hyper::default().checkpoint_every)]
    checkpoint_every: u64,
    /// Parallel streams of the evaluations
    #[arg(long, default_value_t = Hyper::default().eval_streams)]
    eval_streams: usize,
    /// Evaluate at most this many symbols of each split (0: all)
    #[arg(long, default_value_t = Hyper::default().eval_symbols)]
    eval_symbols: usize,
    /// The training bits at the end: over the first N training symbols (0: all)
    #[arg(long, default_value_t = Hyper::default().train_eval_symbols)]
    train_eval_symbols: usize,
    /// Symbols sampled from each next-symbol model at the end (0: none)
    #[arg(long, default_value_t = Hyper::default().sample_symbols)]
    sample: usize,
    /// Scalar of the updates: f32 or f64 (evaluations in f64)
    #[arg(long, default_value = "f32")]
    dtype: Dtype,
    /// A run of seconds (CI): 16 units, B = 8, T = 20, 30 updates, 5000 symbols per evaluation
    #[arg(long)]
    quick: bool,
}

/// The resolved work: what a resumed run must match.
#[derive(Clone, Debug, serde::Serialize)]
struct Plan {
    level: Level,
    data: DataSummary,
    runs: Vec<RunSpec>,
    hyper: Hyper,
    /// Full chunks per epoch of each target distance.
    chunks_per_epoch: Vec<(usize, usize)>,
    seed: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
struct DataSummary {
    dir: PathBuf,
    vocabulary: usize,
    train: usize,
    valid: usize,
    test: usize,
}

fn plan(a: &Args) -> Result<(Plan, Corpus), String> {
    let level: Level = a.level.parse()?;
    let mut h = Hyper {
        batch: a.batch,
        steps: a.steps,
        updates: a.updates,
        lr_msgd: a.lr_msgd,
        lr_c: a.lr_c,
        lr_cr: a.lr_cr,
        clip: a.clip,
        alpha: a.alpha,
        omega_decay: a.omega_decay,
        eval_every: a.eval_every,
        log_every: a.log_every,
        checkpoint_every: a.checkpoint_every,
        eval_streams: a.eval_streams,
        eval_symbols: a.eval_symbols,
        train_eval_symbols: a.train_eval_symbols,
        sample_symbols: a.sample,
        dtype: a.dtype,
    };
    let mut hidden = a.hidden;
    if a.quick {
        hidden = 16;
        h = Hyper {
            batch: 8,
            steps: 20,
            updates: 30,
            eval_every: 10,
            log_every: 5,
            checkpoint_every: 10,
            eval_streams: 10,
            eval_symbols: 5000,
            train_eval_symbols: 5000,
            sample_symbols: a.sample.min(50),
            ..h
        };
    }
    if a.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    if hidden == 0 {
        return Err("--hidden must be at least 1".into());
    }
    h.validate().map_err(|e| e.to_string())?;
    let mut aheads: Vec<usize> = Vec::new();
    for &d in &a.ahead {
        if d == 0 {
            return Err("--ahead: a target is at least 1 step ahead".into());
        }
        if aheads.contains(&d) {
            return Err(format!("--ahead: {d} is listed twice"));
        }
        aheads.push(d);
    }
    if aheads.is_empty() {
        return Err("--ahead: give at least one distance".into());
    }
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
    let corpus = level.load(&a.data).map_err(|e| e.to_string())?;
    let vocab = corpus.symbols.len();
    let mut per_epoch = Vec::new();
    for &d in &aheads {
        let n = h
            .chunks_per_epoch(corpus.train.len(), d)
            .map_err(|e| e.to_string())?;
        per_epoch.push((d, n));
    }
    for (what, split) in [("valid", &corpus.valid), ("test", &corpus.test)] {
        let n = match h.eval_symbols {
            0 => split.len(),
            m => m.min(split.len()),
        };
        if n / h.eval_streams <= aheads.iter().copied().max().unwrap_or(1) {
            return Err(format!(
                "--eval-streams {}: the {what} split's {n} symbols leave too few per stream",
                h.eval_streams
            ));
        }
    }
    let size = |cell: CellKind| language_model::run_hidden(cell, vocab, hidden);
    let width = pairs.iter().map(|&(c, _)| size(c)).max().unwrap_or(hidden) as u128;
    // per worker: the training tape (≤ 8 H-vectors per step and stream, [h; c] states), the
    // readout's slabs, the evaluation's chunks
    let per_worker = 8
        * ((h.steps as u128 + 1) * h.batch as u128 * width * 10
            + 2 * vocab as u128 * h.steps as u128 * h.batch as u128
            + language_model::EVAL_CHUNK as u128
                * h.eval_streams as u128
                * (10 * width + 2 * vocab as u128));
    driver::check_plan_memory(
        per_worker.checked_mul(rayon::current_num_threads().max(1) as u128),
        &format!(
            "chunks of {} steps × {} streams at {width} units",
            h.steps, h.batch
        ),
    )?;
    let mut runs = Vec::new();
    for &ahead in &aheads {
        for &(cell, algorithm) in &pairs {
            for replicate in 0..a.seeds {
                runs.push(RunSpec {
                    level,
                    cell,
                    hidden: size(cell),
                    algorithm,
                    ahead,
                    replicate,
                });
            }
        }
    }
    let data = DataSummary {
        dir: a.data.clone(),
        vocabulary: vocab,
        train: corpus.train.len(),
        valid: corpus.valid.len(),
        test: corpus.test.len(),
    };
    Ok((
        Plan {
            level,
            data,
            runs,
            hyper: h,
            chunks_per_epoch: per_epoch,
            seed: a.shard.seed,
        },
        corpus,
    ))
}

/// A sequence of ids as text: characters with `_` as a space and a line end as a newline;
/// words separated by spaces, a sentence end as a newline.
fn decode(level: Level, symbols: &[String], ids: &[usize]) -> String {
    let mut s = String::new();
    for &i in ids {
        let sym = symbols[i].as_str();
        match (level, sym) {
            (Level::Chars, "_") => s.push(' '),
            (Level::Chars, data::EOL) | (Level::Words, data::EOS) => s.push('\n'),
            (Level::Chars, c) => s.push_str(c),
            (Level::Words, w) => {
                if !s.is_empty() && !s.ends_with('\n') {
                    s.push(' ');
                }
                s.push_str(w);
            }
        }
    }
    s
}

/// The experiment: one chunk per run, runs in parallel.
struct LanguageModel {
    plan: Plan,
    corpus: Corpus,
}

impl LanguageModel {
    fn rows(&self, s: &RunSpec, o: &Outcome) -> Rows {
        let h = &self.plan.hyper;
        let (level, cell, alg) = (s.level.name(), s.cell.name(), s.algorithm.name());
        let clip = (s.algorithm != Algorithm::Msgd).then_some(h.clip);
        let mut rows = Rows::new(3);
        for p in &o.curve {
            rows.push(
                0,
                &CurveRow {
                    level,
                    cell,
                    hidden: s.hidden,
                    algorithm: alg,
                    ahead: s.ahead,
                    seed: s.replicate,
                    update: p.update,
                    epoch: p.epoch,
                    train_bits: p.train_bits,
                    grad_norm: p.grad_norm,
                    max_grad_norm: p.max_grad_norm,
                    clip,
                    paper_grad_norm: p.grad_norm * h.steps as f64,
                    clipped: p.clipped,
                    omega: p.omega,
                    omega_weight: p.omega_weight,
                    valid_bits: p.valid_bits,
                },
            );
        }
        let paper = (s.level == Level::Chars)
            .then(|| s.algorithm.paper_bits(s.ahead))
            .flatten()
            .filter(|_| s.cell == CellKind::RnnSigmoid && s.hidden == 500);
        rows.push(
            1,
            &RunRow {
                level: level.into(),
                cell: cell.into(),
                hidden: s.hidden,
                parameters: o.model.net.params().scalar_count()
                    + o.model.readout.params().scalar_count(),
                algorithm: alg.into(),
                ahead: s.ahead,
                seed: s.replicate,
                updates: o.updates,
                epochs: o.updates as f64 / o.chunks_per_epoch as f64,
                diverged: o.diverged,
                train_bits: o.train_bits,
                valid_bits: o.valid_bits,
                test_bits: o.test_bits,
                valid_perplexity: o.valid_bits.exp2(),
                test_perplexity: o.test_bits.exp2(),
                paper_train_bits: paper.map(|p| p.0),
                paper_test_bits: paper.map(|p| p.1),
            },
        );
        if let Some((prime, sample)) = &o.sample {
            let symbols = &self.corpus.symbols;
            rows.push(
                2,
                &SampleRow {
                    level,
                    cell,
                    hidden: s.hidden,
                    algorithm: alg,
                    seed: s.replicate,
                    prime: decode(s.level, symbols, prime),
                    sample: decode(s.level, symbols, sample),
                },
            );
        }
        rows
    }
}

impl Experiment for LanguageModel {
    const NAME: &'static str = "language-model";
    const UNIT: &'static str = "runs";
    const OUTPUT_DIRS: &'static [&'static str] = &["checkpoints"];

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
        let dir = ctx.out().join("checkpoints");
        let ckpt = Checkpointing {
            dir: Some(&dir),
            stop_after: None,
        };
        let o = language_model::train(s, &self.plan.hyper, &self.corpus, self.plan.seed, ckpt)
            .map_err(|e| format!("run {}: {e}", s.id()))?
            .ok_or_else(|| format!("run {}: stopped before its budget", s.id()))?;
        ctx.progress(1);
        Ok(self.rows(s, &o))
    }

    fn summarize(plan: &serde_json::Value, out: &Outputs<'_>) -> Result<Summary, String> {
        let runs: Vec<RunRow> = out.rows("runs.csv")?;
        let words = plan["level"] == "words";
        let unit = if words { "perplexity" } else { "bits/char" };
        let mut table = format!(
            "\nPTB {}, {unit} after {} updates (paper: Table 1, train / test)\n\
             {:<12} {:>5} {:>8} {:<8} {:>5} {:>4} {:>7} {:>8} {:>8} {:>8} {:>13}",
            plan["level"].as_str().unwrap_or("?"),
            plan["hyper"]["updates"],
            "cell",
            "H",
            "params",
            "alg",
            "ahead",
            "seed",
            "epochs",
            "train",
            "valid",
            "test",
            "paper"
        );
        let show = |bits: f64| if words { bits.exp2() } else { bits };
        for r in &runs {
            let paper = match (r.paper_train_bits, r.paper_test_bits) {
                (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
                _ => "-".into(),
            };
            write!(
                table,
                "\n{:<12} {:>5} {:>8} {:<8} {:>5} {:>4} {:>7.2} {:>8.3} {:>8.3} {:>8.3} {paper:>13}{}",
                r.cell,
                r.hidden,
                r.parameters,
                r.algorithm,
                r.ahead,
                r.seed,
                r.epochs,
                show(r.train_bits),
                show(r.valid_bits),
                show(r.test_bits),
                if r.diverged { "  diverged" } else { "" }
            )
            .unwrap();
        }
        let results: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "cell": r.cell, "hidden": r.hidden, "algorithm": r.algorithm,
                    "ahead": r.ahead, "seed": r.seed, "train_bits": r.train_bits,
                    "valid_bits": r.valid_bits, "test_bits": r.test_bits,
                    "diverged": r.diverged,
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
        let (plan, corpus) = plan(&args)?;
        Ok(LanguageModel { plan, corpus })
    })
}
