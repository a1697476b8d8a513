//! Criterion benchmark of one training update of the workloads of
//! `../shared/peers/train_nets_torch.py` (batch 32, T = 100, one-hot inputs over a vocabulary
//! of 32, softmax over 2 classes at the last step, global-norm clipping at 1.0, SGD lr 0.01,
//! inputs drawn once outside the timed loop, one thread, f64), beside the GEMM floor of each:
//! the same update's GEMMs alone (per step the recurrent product forward and backward, and the
//! `dW_hh` product over all steps), run back to back with the same faer kernel.
//!
//! Single-cell workloads only (`rnn-128`, `lstm-128`, `gru-128`, `lstm-512`): the trainer for
//! stacked and bidirectional networks (`bilstm-2x128`, `reslstm-4x128`) and f32 are not built
//! yet. `cargo bench --bench train_nets`; results in `experiments/README.md`.

use std::hint::black_box;
use std::time::Duration;

use bptt::engine::{MatMut, MatRef, Op, gemm};
use bptt::optim::{Optimizer, OptimizerState};
use bptt::rng::{Rng, stream, uniform_matrix};
use bptt::tasks::{Batch, Inputs, Target};
use bptt::train::{Grads, UpdateRule, Workspace};
use bptt::{Activation, Cell, Gru, GruVariant, Lstm, Model, Readout, VanillaRnn};
use criterion::{Criterion, criterion_group, criterion_main};
use nalgebra::DMatrix;
use rand::RngExt;

const STEPS: usize = 100;
const BATCH: usize = 32;
const VOCAB: usize = 32;
const CLASSES: usize = 2;

fn batch(rng: &mut Rng) -> Batch {
    Batch {
        inputs: Inputs::OneHot {
            dim: VOCAB,
            symbols: (0..STEPS * BATCH)
                .map(|_| rng.random_range(0..VOCAB))
                .collect(),
        },
        target: Target::Class((0..BATCH).map(|_| rng.random_range(0..CLASSES)).collect()),
        steps: STEPS,
        batch: BATCH,
    }
}

fn bench_update<C: Cell<f64>>(c: &mut Criterion, name: &str, cell: C, gates: usize) {
    let hidden = cell.hidden_size();
    let mut rng = stream(7, &[hidden as u64, gates as u64]);
    let readout = Readout::uniform(hidden, CLASSES, 1.0 / (hidden as f64).sqrt(), &mut rng);
    let mut model = Model { cell, readout };
    let batches: Vec<Batch> = (0..4).map(|_| batch(&mut rng)).collect();
    let rule = UpdateRule {
        clip: Some(1.0),
        alpha: 0.0,
        omega_bound: bptt::omega::DEFAULT_BOUND,
        safety_net: false,
        measure_omega: false,
    };
    let mut opt = OptimizerState::new(
        Optimizer::sgd(0.01),
        &[model.cell.params(), model.readout.params()],
    )
    .unwrap();
    let mut grads = Grads::zeros_like(&model);
    let mut ws = Workspace::default();
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(if hidden > 256 { 20 } else { 6 }));
    let mut i = 0;
    group.bench_function("update f64", |b| {
        b.iter(|| {
            i += 1;
            ws.update(&mut model, &batches[i % 4], &rule, &mut opt, &mut grads)
                .unwrap()
        })
    });
    // the floor: the update's GEMMs alone, 2·G·H·H·B flops each, 2T + 1 of them (the last
    // with inner dimension T·B)
    let gh = gates * hidden;
    let w = uniform_matrix::<f64>(&mut rng, gh, hidden, 0.1);
    let w_t = w.transpose();
    let h = uniform_matrix::<f64>(&mut rng, hidden, BATCH * STEPS, 1.0);
    let d = uniform_matrix::<f64>(&mut rng, gh, BATCH * STEPS, 1.0);
    let mut out = DMatrix::<f64>::zeros(gh, BATCH);
    let mut dh = DMatrix::<f64>::zeros(hidden, BATCH);
    let mut dw = DMatrix::<f64>::zeros(gh, hidden);
    group.bench_function("GEMM floor f64", |b| {
        b.iter(|| {
            for t in 0..STEPS {
                let (h_t, d_t) = (
                    MatRef::from(&h).col_block(t * BATCH, BATCH),
                    MatRef::from(&d).col_block(t * BATCH, BATCH),
                );
                gemm(
                    MatMut::from(&mut out),
                    true,
                    Op::N(MatRef::from(&w)),
                    Op::N(h_t),
                );
                gemm(
                    MatMut::from(&mut dh),
                    false,
                    Op::N(MatRef::from(&w_t)),
                    Op::N(d_t),
                );
            }
            gemm(
                MatMut::from(&mut dw),
                true,
                Op::N(MatRef::from(&d)),
                Op::T(MatRef::from(&h)),
            );
            black_box(&dw);
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let mut rng = stream(1, &[]);
    bench_update(
        c,
        "rnn-128",
        VanillaRnn::<f64>::pytorch_init(VOCAB, 128, Activation::Tanh, &mut rng),
        1,
    );
    bench_update(
        c,
        "lstm-128",
        Lstm::<f64>::pytorch_init(VOCAB, 128, &mut rng),
        4,
    );
    bench_update(
        c,
        "gru-128",
        Gru::<f64>::pytorch_init(VOCAB, 128, GruVariant::ResetAfter, &mut rng),
        3,
    );
    bench_update(
        c,
        "lstm-512",
        Lstm::<f64>::pytorch_init(VOCAB, 512, &mut rng),
        4,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
