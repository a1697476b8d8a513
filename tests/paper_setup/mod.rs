//! The §4.1 setting shared by `tests/trainer.rs`, `tests/omega.rs` and
//! `tests/pathological_runs.rs`: vanilla-RNN models of the paper's initialisations with weights
//! perturbed so that every path carries gradient, the SGD-CR trainer, and the generic per-step
//! reference (`Model` and the `Objective` equal to the kernel's loss up to a known scale).

#![allow(dead_code)]

use bptt::experiment::pathological::{Algorithm, Hyper, Init, RnnModel, RnnTrainer};
use bptt::experiment::tasks::{Batch, Target, Task};
use bptt::nn::cell::Cell;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::model::{LossAt, Model, Objective, Targets};
use bptt::rng::stream;
use bptt::train::trainer::Trainer;

/// The generic objective equal to the kernel's loss times `scale`.
pub fn objective(batch: &Batch) -> (Objective<f64>, f64) {
    match &batch.target {
        Target::Class(c) => (
            Objective {
                targets: Targets::CrossEntropy(vec![c.clone()]),
                at: LossAt::Last,
            },
            1.0,
        ),
        // kernel: (1/B) Σ (y − t)², generic MSE: (1/(O·B)) Σ (y − t)²
        Target::Value(v) => (
            Objective {
                targets: Targets::Mse(vec![v.clone()]),
                at: LossAt::Last,
            },
            1.0 / v.nrows() as f64,
        ),
        // kernel: mean over steps of the per-step mean cross-entropy; generic: sum over steps
        Target::ClassEveryStep(c) => (
            Objective {
                targets: Targets::CrossEntropy(c.chunks(batch.batch).map(|s| s.to_vec()).collect()),
                at: LossAt::EveryStep,
            },
            batch.steps as f64,
        ),
    }
}

/// A model with weights large enough that every path carries gradient.
pub fn model(task: Task, init: Init, hidden: usize, seed: u64) -> RnnModel {
    let mut m = init.build(task, hidden, &mut stream(seed, &[1])).unwrap();
    let mut rng = stream(seed, &[2]);
    for p in [m.net.cell.params_mut(), m.readout.params_mut()] {
        for t in p.tensors_mut() {
            *t += bptt::rng::uniform_matrix::<f64>(&mut rng, t.nrows(), t.ncols(), 0.4);
        }
    }
    m
}

/// The generic per-step model (cell + readout) of the same weights: the reference.
pub fn generic(m: &RnnModel) -> Model<f64, VanillaRnn<f64>> {
    Model::new(m.net.cell.clone(), m.readout.clone()).unwrap()
}

/// The SGD-CR trainer of `task` (Ω's inputs recorded) with the paper's hyper-parameters.
pub fn trainer(m: &RnnModel, task: Task) -> RnnTrainer {
    Trainer::new(m, Algorithm::SgdCR.config(task, &Hyper::default())).unwrap()
}
