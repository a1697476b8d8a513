//! Criterion benchmark of one training update of the six workloads of
//! `experiments/peers/train_nets_torch.py` (batch 32, T = 100, one-hot inputs over a vocabulary
//! of 32, global-norm clipping at 1.0, SGD lr 0.01, inputs drawn once outside the timed loop,
//! one thread), in f64 and f32, through `bptt::train::trainer::Trainer` — beside the **GEMM floor** of
//! each: the update's GEMMs alone (per cell and step the recurrent product forward and the
//! `W_hhᵀ` product backward, `dW_hh` over all steps, and for layers with dense inputs the input
//! projection, `dW_ih` and `dX` over all steps), run back to back with the same kernel.
//!
//! `reslstm-4x128` differs from the peer's in its first layer: the peer maps the one-hot input
//! by a 32 → 128 linear layer and adds it around an LSTM reading 128 units; here the first LSTM
//! reads the 32 one-hot units (a gather) and the skip is a 128 × 32 projection (also a gather).
//! `cargo bench --bench train_nets`; results in `experiments/README.md`.

use std::hint::black_box;
use std::time::Duration;

use bptt::nn::activation::Activation;
use bptt::nn::arch::{Bidirectional, Residual, SeqLayer, Stacked, Unidirectional};
use bptt::nn::cell::CellFamily;
use bptt::nn::cells::gru::{Gru, GruVariant};
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::engine::{Inputs, MatMut, MatRef, Op, gemm};
use bptt::nn::model::NetworkModel;
use bptt::nn::readout::Readout;
use bptt::rng::{Rng, stream, uniform_matrix};
use bptt::train::trainer::{Batch, Config, ReadoutAt, Targets, Trainer};
use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use nalgebra::RealField;
use rand::RngExt;

const STEPS: usize = 100;
const BATCH: usize = 32;
const VOCAB: usize = 32;

/// One cell of a workload, for the floor: gates G, hidden H, dense input width (0: tokens).
#[derive(Clone, Copy)]
struct CellShape {
    gates: usize,
    hidden: usize,
    dense_input: usize,
}

/// The update's GEMMs alone, in the engine's `gemm` (faer), over buffers allocated once.
fn floor<T: RealField + Copy>(shapes: &[CellShape], rng: &mut Rng) -> impl FnMut() {
    let tb = STEPS * BATCH;
    let bufs: Vec<_> = shapes
        .iter()
        .map(|c| {
            let (gh, h, d) = (c.gates * c.hidden, c.hidden, c.dense_input);
            let m = |r, k, rng: &mut Rng| uniform_matrix::<T>(rng, r, k, 0.1);
            (
                *c,
                [
                    m(gh, h, rng),        // W_hh
                    m(h, gh, rng),        // W_hhᵀ
                    m(h, tb, rng),        // H
                    m(gh, tb, rng),       // D (gate gradients)
                    m(gh, BATCH, rng),    // step output
                    m(h, BATCH, rng),     // step state gradient
                    m(gh, h, rng),        // dW_hh
                    m(gh, d.max(1), rng), // W_ih
                    m(d.max(1), tb, rng), // X
                    m(gh, tb, rng),       // P
                    m(gh, d.max(1), rng), // dW_ih
                    m(d.max(1), tb, rng), // dX
                ],
            )
        })
        .collect();
    let mut bufs = bufs;
    move || {
        for (c, b) in bufs.iter_mut() {
            let [w, w_t, hs, ds, out, dh, dw, w_ih, x, p, dw_ih, dx] = b;
            for t in 0..STEPS {
                let h_t = MatRef::from(&*hs).col_block(t * BATCH, BATCH);
                let d_t = MatRef::from(&*ds).col_block(t * BATCH, BATCH);
                gemm(
                    MatMut::from(&mut *out),
                    true,
                    Op::N(MatRef::from(&*w)),
                    Op::N(h_t),
                );
                gemm(
                    MatMut::from(&mut *dh),
                    false,
                    Op::N(MatRef::from(&*w_t)),
                    Op::N(d_t),
                );
            }
            gemm(
                MatMut::from(&mut *dw),
                true,
                Op::N(MatRef::from(&*ds)),
                Op::T(MatRef::from(&*hs)),
            );
            if c.dense_input > 0 {
                let (w_ih, x) = (MatRef::from(&*w_ih), MatRef::from(&*x));
                gemm(MatMut::from(&mut *p), true, Op::N(w_ih), Op::N(x));
                gemm(
                    MatMut::from(&mut *dw_ih),
                    true,
                    Op::N(MatRef::from(&*ds)),
                    Op::T(x),
                );
                gemm(
                    MatMut::from(&mut *dx),
                    false,
                    Op::T(w_ih),
                    Op::N(MatRef::from(&*ds)),
                );
            }
            black_box(&*dw);
        }
    }
}

fn bench_workload<T: RealField + Copy, N: SeqLayer<T>>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    dtype: &str,
    net: N,
    classes: usize,
    every: bool,
    shapes: &[CellShape],
) {
    let mut rng = stream(7, &[classes as u64]);
    let width = net.output_size();
    let readout = Readout::uniform(width, classes, 1.0 / (width as f64).sqrt(), &mut rng);
    let mut model = NetworkModel::new(net, readout).unwrap();
    let cfg = Config {
        readout_at: if every {
            ReadoutAt::EveryStep
        } else {
            ReadoutAt::Last
        },
        ..Config::default()
    };
    let mut trainer = Trainer::new(&model, cfg).unwrap();
    let n_targets = if every { STEPS * BATCH } else { BATCH };
    let data: Vec<(Vec<usize>, Vec<usize>)> = (0..4)
        .map(|_| {
            let ids = (0..STEPS * BATCH)
                .map(|_| rng.random_range(0..VOCAB))
                .collect();
            let cls = (0..n_targets)
                .map(|_| rng.random_range(0..classes))
                .collect();
            (ids, cls)
        })
        .collect();
    let mut i = 0;
    group.bench_function(format!("update {dtype}"), |b| {
        b.iter(|| {
            i += 1;
            let (ids, cls) = &data[i % 4];
            let batch = Batch {
                inputs: Inputs::Tokens { ids, vocab: VOCAB },
                batch: BATCH,
                targets: Targets::Classes(cls),
            };
            trainer.update(&mut model, &batch).unwrap()
        })
    });
    let mut f = floor::<T>(shapes, &mut rng);
    group.bench_function(format!("GEMM floor {dtype}"), |b| b.iter(&mut f));
}

fn group<'a>(c: &'a mut Criterion, name: &str, secs: u64) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name.to_string());
    g.sample_size(10)
        .measurement_time(Duration::from_secs(secs));
    g
}

fn lstm<T: RealField + Copy>(d: usize, h: usize, rng: &mut Rng) -> Lstm<T> {
    Lstm::pytorch_init(d, h, (), rng)
}

fn workloads<T: RealField + Copy>(c: &mut Criterion, dtype: &str) {
    let rng = &mut stream(1, &[]);
    let cell = |gates, hidden, dense_input| CellShape {
        gates,
        hidden,
        dense_input,
    };
    {
        let mut g = group(c, "rnn-128", 4);
        let net = Unidirectional::new(VanillaRnn::<T>::pytorch_init(
            VOCAB,
            128,
            Activation::Tanh,
            rng,
        ));
        bench_workload(&mut g, dtype, net, 2, false, &[cell(1, 128, 0)]);
    }
    {
        let mut g = group(c, "lstm-128", 5);
        let net = Unidirectional::new(lstm::<T>(VOCAB, 128, rng));
        bench_workload(&mut g, dtype, net, 2, false, &[cell(4, 128, 0)]);
    }
    {
        let mut g = group(c, "gru-128", 5);
        let net = Unidirectional::new(Gru::<T>::pytorch_init(
            VOCAB,
            128,
            GruVariant::ResetAfter,
            rng,
        ));
        bench_workload(&mut g, dtype, net, 2, false, &[cell(3, 128, 0)]);
    }
    {
        let mut g = group(c, "bilstm-2x128", 15);
        let net = Stacked::new(vec![
            Bidirectional::new(lstm::<T>(VOCAB, 128, rng), lstm::<T>(VOCAB, 128, rng)),
            Bidirectional::new(lstm::<T>(256, 128, rng), lstm::<T>(256, 128, rng)),
        ])
        .unwrap();
        let shapes = [
            cell(4, 128, 0),
            cell(4, 128, 0),
            cell(4, 128, 256),
            cell(4, 128, 256),
        ];
        bench_workload(&mut g, dtype, net, 8, true, &shapes);
    }
    {
        let mut g = group(c, "reslstm-4x128", 15);
        let mut layers = vec![Residual::new(
            Unidirectional::new(lstm::<T>(VOCAB, 128, rng)),
            rng,
        )];
        for _ in 0..3 {
            layers.push(Residual::new(
                Unidirectional::new(lstm::<T>(128, 128, rng)),
                rng,
            ));
        }
        let net = Stacked::new(layers).unwrap();
        let shapes = [
            cell(4, 128, 0),
            cell(4, 128, 128),
            cell(4, 128, 128),
            cell(4, 128, 128),
        ];
        bench_workload(&mut g, dtype, net, 2, false, &shapes);
    }
    {
        let mut g = group(c, "lstm-512", 25);
        let net = Unidirectional::new(lstm::<T>(VOCAB, 512, rng));
        bench_workload(&mut g, dtype, net, 2, false, &[cell(4, 512, 0)]);
    }
}

fn bench(c: &mut Criterion) {
    workloads::<f64>(c, "f64");
    workloads::<f32>(c, "f32");
}

criterion_group!(benches, bench);
criterion_main!(benches);
