//! Criterion benchmark of one training update of every model of the `lstm-vs-gru` experiment at
//! the binary's default shapes (H = 32, batch 32, Adam, clipping at 1, f64, one thread): temporal
//! order and addition at T = 50 and 100, agreement at distances ≤ 20 — the seconds axis of
//! `notebooks/07_lstm_vs_gru.ipynb`. The update is the experiment's own
//! ([`bptt::experiment::lstm_vs_gru::timing_setup`]: the model, trainer and first training batch
//! of the run); the three LSTMs differ only in biases and cost the same, so `lstm` is timed once.
//!
//! `scripts/bench-lstm-vs-gru.sh` runs it and writes `results/lstm-vs-gru/ms_per_update.csv`
//! from criterion's estimates and the shapes this bench writes next to them
//! (`$CRITERION_HOME/lstm-vs-gru-shapes.csv`); the numbers are in `experiments/README.md`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use bptt::experiment::lstm_vs_gru::{ForgetInit, Hyper, Model, Problem, RunSpec, timing_setup};
use bptt::nn::cell::Cell;
use criterion::Criterion;

/// The binary's defaults (`lstm-vs-gru --help`).
const HYPER: Hyper = Hyper {
    hidden: 32,
    batch: 32,
    updates: 3000,
    lr: 0.003,
    clip: 1.0,
    eval_every: 100,
    eval_sequences: 500,
    test_sequences: 2000,
    log_every: 50,
    success_error: 0.01,
    agreement_attractors: 4,
    agreement_preamble: 2,
};

const WORKLOADS: [(Problem, usize); 5] = [
    (Problem::TemporalOrder, 50),
    (Problem::TemporalOrder, 100),
    (Problem::Addition, 50),
    (Problem::Addition, 100),
    (Problem::Agreement, 20),
];

const MODELS: [(&str, Model); 3] = [
    ("lstm", Model::Lstm(ForgetInit::One)),
    ("gru", Model::Gru),
    ("gru-matched", Model::GruMatched),
];

fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .ok();
    let home = std::env::var_os("CRITERION_HOME")
        .map_or_else(|| PathBuf::from("target/criterion"), PathBuf::from);
    let mut c = Criterion::default()
        .output_directory(&home)
        .configure_from_args();
    let mut shapes = String::from("id,task,length,model,hidden,parameters,steps,batch\n");
    let mut g = c.benchmark_group("lstm-vs-gru");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for (problem, length) in WORKLOADS {
        for (name, model) in MODELS {
            let spec = RunSpec {
                problem,
                length,
                model,
                replicate: 0,
            };
            let mut t = timing_setup(&spec, &HYPER, 0).expect("the default shapes build");
            let id = format!("{problem}-{length}_{name}");
            let parameters =
                t.model.net.cell.parameter_count() + t.model.readout.params().scalar_count();
            writeln!(
                shapes,
                "{id},{problem},{length},{name},{},{parameters},{},{}",
                t.model.net.cell.hidden_size(),
                t.batch.steps(),
                HYPER.batch
            )
            .unwrap();
            let batch = &t.batch;
            g.bench_function(&id, |b| {
                b.iter(|| black_box(t.trainer.update(&mut t.model, &batch.view()).unwrap()))
            });
        }
    }
    g.finish();
    std::fs::create_dir_all(&home).expect("the criterion directory");
    std::fs::write(home.join("lstm-vs-gru-shapes.csv"), shapes).expect("the shapes file");
    c.final_summary();
}
