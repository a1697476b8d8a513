//! Criterion benchmark of one training update in Pascanu et al.'s temporal-order setting — the
//! workload of `experiments/peers/train_step_torch.py`: vanilla tanh RNN, 6 one-hot inputs,
//! 50 hidden units, a linear readout to 4 classes at the last step, softmax cross-entropy,
//! batch 20, T = 200; forward, backward, global-norm clipping at 1.0, SGD step (lr 0.01) —
//! and SGD-CR (Ω) beside it; f64 and f32, through `bptt::train::trainer::Trainer` (what
//! `pathological` runs). Inputs are generated once, outside the timed loop (as in the peer).
//! `cargo bench --bench train_step`.

use bptt::experiment::pathological::{Algorithm, Hyper, Init};
use bptt::experiment::tasks::{self, Task};
use bptt::nn::engine::Inputs;
use bptt::rng::stream;
use bptt::train::trainer::{Batch, Targets, Trainer};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let task = Task::TemporalOrder;
    let model = Init::SmartTanh
        .build(task, 50, &mut stream(0, &[0]))
        .unwrap();
    let mut rng = stream(0, &[1]);
    let batches: Vec<_> = (0..16)
        .map(|_| task.generate(&mut rng, 20, 200).unwrap())
        .collect();
    let h = Hyper::default();
    for (name, alg) in [
        ("train step sgd-c (H=50, T=200, B=20", Algorithm::SgdC),
        ("train step sgd-cr (H=50, T=200, B=20, Ω", Algorithm::SgdCR),
    ] {
        let mut m = model.clone();
        let mut ws = Trainer::new(&m, alg.config(task, &h)).unwrap();
        let mut i = 0;
        c.bench_function(&format!("{name}, f64)"), |b| {
            b.iter(|| {
                i += 1;
                ws.update(&mut m, &batches[i % 16].for_trainer()).unwrap()
            })
        });

        // the same weights and batches in f32
        let mut m32 = model.rescalar::<f32>();
        let mut ws = Trainer::new(&m32, alg.config(task, &h)).unwrap();
        let f32_batch = |b: &tasks::Batch| -> (Vec<usize>, Vec<usize>) {
            match (&b.inputs, &b.target) {
                (tasks::Inputs::OneHot { symbols, .. }, tasks::Target::Class(c)) => {
                    (symbols.clone(), c.clone())
                }
                _ => unreachable!("temporal order: one-hot inputs, one class per sequence"),
            }
        };
        let data: Vec<(Vec<usize>, Vec<usize>)> = batches.iter().map(f32_batch).collect();
        let mut i = 0;
        c.bench_function(&format!("{name}, f32)"), |b| {
            b.iter(|| {
                i += 1;
                let (ids, classes) = &data[i % 16];
                let batch = Batch {
                    inputs: Inputs::Tokens {
                        ids,
                        vocab: task.input_size(),
                    },
                    batch: 20,
                    targets: Targets::Classes(classes),
                };
                ws.update(&mut m32, &batch).unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
