//! Criterion benchmark of one training update in Pascanu et al.'s temporal-order setting — the
//! workload of `../shared/peers/train_step_torch.py`: vanilla tanh RNN, 6 one-hot inputs,
//! 50 hidden units, a linear readout to 4 classes at the last step, softmax cross-entropy,
//! batch 20, T = 200, f64; forward, backward, global-norm clipping at 1.0, SGD step
//! (lr 0.01). Inputs are generated once, outside the timed loop (as in the peer).
//! `cargo bench --bench train_step`.

use bptt::pathological::{Algorithm, Hyper, Init};
use bptt::rng::stream;
use bptt::tasks::Task;
use bptt::trainer::Trainer;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let task = Task::TemporalOrder;
    let mut model = Init::SmartTanh
        .build(task, 50, &mut stream(0, &[0]))
        .unwrap();
    let mut rng = stream(0, &[1]);
    let batches: Vec<_> = (0..16)
        .map(|_| task.generate(&mut rng, 20, 200).unwrap())
        .collect();
    let h = Hyper::default();
    for (name, alg) in [
        ("train step sgd-c (H=50, T=200, B=20, f64)", Algorithm::SgdC),
        (
            "train step sgd-cr (H=50, T=200, B=20, f64, Ω)",
            Algorithm::SgdCR,
        ),
    ] {
        let mut ws = Trainer::new(&model, alg.config(task, &h)).unwrap();
        let mut i = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                ws.update(&mut model, &batches[i % 16].for_trainer())
                    .unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
