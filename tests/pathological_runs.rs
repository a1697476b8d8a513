//! One §4.1 training run as a library call (`bptt::experiment::pathological`; the binary of
//! the same name is `tests/pathological.rs`): a run is reproducible and common to SGD, SGD-C
//! and SGD-CR (common random numbers), Adam learns a short task, an f32 run follows the f64
//! run; evaluation (`evaluator`, `count_errors`) without the history equals the generic forward
//! pass, and wrong shapes are errors, not panics.

mod paper_setup;

use approx::relative_eq;
use bptt::experiment::pathological::{self, Algorithm, Hyper, Init, RunSpec};
use bptt::experiment::tasks::{Target, Task, count_errors};
use bptt::nn::cell::Cell;
use bptt::rng::stream;
use bptt::train::optim::Optimizer;
use nalgebra::DMatrix;
use paper_setup::{generic, model, objective};

#[test]
fn a_run_is_reproducible_and_common_to_the_three_algorithms() {
    let h = Hyper {
        updates: 60,
        eval_every: 30,
        eval_sequences: 200,
        ..Hyper::default()
    };
    let spec = |algorithm| RunSpec {
        task: Task::TemporalOrder,
        init: Init::SmartTanh,
        algorithm,
        min_length: 20,
        max_length: 20,
        replicate: 2,
    };
    let a = pathological::train(&spec(Algorithm::SgdC), &h, 5).unwrap();
    let b = pathological::train(&spec(Algorithm::SgdC), &h, 5).unwrap();
    assert_eq!(a.curve, b.curve);
    assert_eq!(a.model, b.model);
    assert_eq!(a.updates, 60);
    assert_eq!(a.curve.len(), 6);
    assert!(a.curve[2].valid_error.is_some() && a.curve[1].valid_error.is_none());
    assert!((0.0..=1.0).contains(&a.test_error));
    // same initial weights and batches (common random numbers): the first update's loss is
    // the same for every algorithm, the parameters after it are not
    let one = Hyper {
        updates: 1,
        eval_every: 1,
        log_every: 1,
        eval_sequences: 10,
        ..h
    };
    let firsts: Vec<pathological::Outcome> = [Algorithm::Sgd, Algorithm::SgdC, Algorithm::SgdCR]
        .into_iter()
        .map(|alg| pathological::train(&spec(alg), &one, 5).unwrap())
        .collect();
    assert_eq!(
        firsts[0].curve[0].record.loss,
        firsts[1].curve[0].record.loss
    );
    assert_eq!(
        firsts[0].curve[0].record.loss,
        firsts[2].curve[0].record.loss
    );
    assert_ne!(firsts[1].model, firsts[2].model);
}

#[test]
fn adam_learns_a_short_temporal_order_task() {
    // the whole pipeline can learn: T = 10, Adam — solved well within the budget
    let h = Hyper {
        optimizer: Optimizer::adam(0.01),
        updates: 3000,
        eval_every: 100,
        ..Hyper::default()
    };
    let spec = RunSpec {
        task: Task::TemporalOrder,
        init: Init::SmartTanh,
        algorithm: Algorithm::SgdC,
        min_length: 10,
        max_length: 10,
        replicate: 0,
    };
    let o = pathological::train(&spec, &h, 1).unwrap();
    assert!(
        o.success,
        "test error {} after {} updates",
        o.test_error, o.updates
    );
    assert!(o.updates < 3000);
}

#[test]
fn wrong_shapes_are_errors_not_panics() {
    let m = model(Task::TemporalOrder, Init::SmartTanh, 4, 0);
    let b = Task::Addition.generate(&mut stream(0, &[]), 2, 10).unwrap();
    let mut ws = pathological::evaluator(&m, Task::TemporalOrder).unwrap();
    // regression targets for a 4-class readout
    let e = pathological::count_errors(&mut ws, &m, &b).unwrap_err();
    assert!(e.to_string().contains("regression targets"), "{e}");
    assert!(ws.loss_and_grads(&m, &b.for_trainer()).is_err());
    // 7-dimensional inputs for a cell with 6
    let b = Task::Memorization
        .generate(&mut stream(0, &[]), 2, 3)
        .unwrap();
    let e = pathological::count_errors(&mut ws, &m, &b).unwrap_err();
    assert!(e.to_string().contains("inputs: expected 6 rows"), "{e}");
    assert!(ws.loss_and_grads(&m, &b.for_trainer()).is_err());
}

#[test]
fn evaluation_without_history_equals_the_generic_forward() {
    for (i, task) in [Task::TemporalOrder, Task::Addition, Task::Memorization]
        .into_iter()
        .enumerate()
    {
        let m = model(task, Init::SmartTanh, 6, 80 + i as u64);
        let b = task.generate(&mut stream(81, &[i as u64]), 40, 12).unwrap();
        let mut ws = pathological::evaluator(&m, task).unwrap();
        let errors = pathological::count_errors(&mut ws, &m, &b).unwrap();
        let loss = ws.loss(&m, &b.for_trainer()).unwrap();
        // the generic path: every state, the readout at the steps the loss reads
        let xs = b.xs();
        let h0 = DMatrix::zeros(6, b.batch);
        let traj = bptt::nn::sequence::forward(&m.net.cell, &xs, &h0).unwrap();
        let outputs = match &b.target {
            Target::ClassEveryStep(_) => {
                let ys: Vec<DMatrix<f64>> = (1..=b.steps)
                    .map(|k| m.readout.forward(&traj.output(k, 6)))
                    .collect();
                DMatrix::from_fn(task.output_size(), b.steps * b.batch, |r, c| {
                    ys[c / b.batch][(r, c % b.batch)]
                })
            }
            _ => m.readout.forward(&traj.output(b.steps, 6)),
        };
        assert_eq!(errors, count_errors(&b.target, &outputs, b.batch), "{task}");
        let (obj, scale) = objective(&b);
        let want = generic(&m).loss(&xs, &h0, &obj).unwrap();
        assert!(
            relative_eq!(loss * scale, want, epsilon = 1e-14, max_relative = 1e-12),
            "{task}: {loss} × {scale} vs {want}"
        );
    }
}

#[test]
fn an_f32_run_follows_the_f64_run_and_is_reproducible() {
    // SGD-CR (Ω, clipping, the safety net) on temporal order, T = 20: the f32 updates from
    // the same f64-drawn weights (rounded) and batches track the f64 run
    let h64 = Hyper {
        updates: 40,
        eval_every: 20,
        log_every: 5,
        eval_sequences: 100,
        ..Hyper::default()
    };
    let h32 = Hyper {
        dtype: bptt::train::trainer::Dtype::F32,
        ..h64
    };
    let spec = RunSpec {
        task: Task::TemporalOrder,
        init: Init::SmartTanh,
        algorithm: Algorithm::SgdCR,
        min_length: 20,
        max_length: 20,
        replicate: 1,
    };
    let a = pathological::train(&spec, &h64, 3).unwrap();
    let b = pathological::train(&spec, &h32, 3).unwrap();
    let again = pathological::train(&spec, &h32, 3).unwrap();
    assert_eq!(b.curve, again.curve);
    assert_eq!(b.model, again.model);
    assert_eq!((a.curve.len(), b.curve.len()), (8, 8));
    for (p, q) in a.curve.iter().zip(&b.curve) {
        let (r64, r32) = (p.record, q.record);
        assert!(r64.omega > 0.0);
        for (what, x, y) in [
            ("loss", r64.loss, r32.loss),
            ("grad norm", r64.grad_norm, r32.grad_norm),
            ("Ω", r64.omega, r32.omega),
        ] {
            assert!(
                relative_eq!(x, y, epsilon = 1e-6, max_relative = 1e-3),
                "update {}: {what} f64 {x} vs f32 {y}",
                p.update
            );
        }
    }
    for (x, y) in a.model.net.cell.params()[1]
        .iter()
        .zip(b.model.net.cell.params()[1].iter())
    {
        assert!(relative_eq!(*x, *y, epsilon = 1e-5, max_relative = 1e-3));
    }
    // f32 weights, exactly representable after the run
    assert!(
        b.model.net.cell.params()[1]
            .iter()
            .all(|&x| x as f32 as f64 == x)
    );
}

#[test]
fn a_range_of_training_lengths_is_tested_over_the_whole_range() {
    let spec = |min_length, max_length| RunSpec {
        task: Task::TemporalOrder,
        init: Init::SmartTanh,
        algorithm: Algorithm::SgdCR,
        min_length,
        max_length,
        replicate: 0,
    };
    // the paper's generalisation range: ten lengths, both ends included, evenly spaced
    assert_eq!(
        spec(50, 200).test_lengths(),
        [50, 67, 83, 100, 117, 133, 150, 167, 183, 200]
    );
    assert_eq!(spec(200, 200).test_lengths(), [200]);
    // a range narrower than ten lengths: each length once
    assert_eq!(spec(3, 5).test_lengths(), [3, 4, 5]);
    assert_eq!(spec(7, 8).test_lengths(), [7, 8]);
    assert_eq!(pathological::RANGE_TEST_LENGTHS, 10);

    // the error rate over lengths: the sequences shared out in order (7 = 3 + 2 + 2), drawn
    // from the one stream in batches of one length — counted here batch by batch
    let task = Task::TemporalOrder;
    let m = model(task, Init::SmartTanh, 6, 90);
    let mut ws = pathological::evaluator(&m, task).unwrap();
    let rate = pathological::error_rate(&mut ws, &m, task, &[12, 19, 15], 7, &mut stream(91, &[]))
        .unwrap();
    let mut rng = stream(91, &[]);
    let mut errors = 0;
    for (b, l) in [(3, 12), (2, 19), (2, 15)] {
        let batch = task.generate(&mut rng, b, l).unwrap();
        errors += pathological::count_errors(&mut ws, &m, &batch).unwrap();
    }
    assert_eq!(rate, errors as f64 / 7.0);
    // nothing to measure: an error, not a division by zero
    let e = pathological::error_rate(&mut ws, &m, task, &[], 7, &mut stream(91, &[]));
    assert!(e.unwrap_err().to_string().contains("needs sequences"));
    assert!(pathological::error_rate(&mut ws, &m, task, &[12], 0, &mut stream(91, &[])).is_err());
}
