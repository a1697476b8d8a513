//! The training core (issue: pathological tasks): the kernel's gradients against the generic,
//! finite-difference-proven `Model::loss_and_grads`; Pascanu's Ω against an independent
//! computation and its immediate gradient against the gradient checker; the generators'
//! chance error rates against their analytic values; clipping and the safety net.

use approx::relative_eq;
use bptt::experiment::pathological::{
    self, ALL_INITS, Algorithm, Hyper, Init, RnnModel, RnnTrainer, RunSpec,
};
use bptt::experiment::tasks::{
    ALL_TASKS, Batch, Inputs, MEMORY_LENGTH, Target, Task, count_errors,
};
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::model::{LossAt, Model, Objective, Targets};
use bptt::nn::params::Params;
use bptt::nn::sequence::Truncation;
use bptt::rng::stream;
use bptt::train::omega::{self, OmegaProblem};
use bptt::train::optim::Optimizer;
use bptt::train::trainer::{Trainer, safety_net_triggered};
use bptt::verify::gradcheck::{self, Config, Verdict};
use nalgebra::DMatrix;

/// Every entry within 1e-12 relative, or 1e-12 of the tensor's largest entry (matrix by
/// matrix in order: the trainer names a network's, `weight_hh_l0`, the generic BPTT a cell's).
fn assert_params_close(what: &str, got: &Params<f64>, want: &Params<f64>, scale: f64) {
    assert_eq!(got.len(), want.len(), "{what}: tensors");
    for ((_, g), (name, w)) in got.iter().zip(want.iter()) {
        let floor = 1e-12 * w.amax().max(f64::MIN_POSITIVE);
        for (a, b) in g.iter().zip(w.iter()) {
            let a = a * scale;
            assert!(
                relative_eq!(a, *b, epsilon = floor, max_relative = 1e-12),
                "{what}.{name}: kernel {a:e} vs generic {b:e}"
            );
        }
    }
}

/// The generic objective equal to the kernel's loss times `scale`.
fn objective(batch: &Batch) -> (Objective<f64>, f64) {
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
fn model(task: Task, init: Init, hidden: usize, seed: u64) -> RnnModel {
    let mut m = init.build(task, hidden, &mut stream(seed, &[1])).unwrap();
    let mut rng = stream(seed, &[2]);
    for p in [m.net.cell.params_mut(), m.readout.params_mut()] {
        for t in p.tensors_mut() {
            *t += bptt::rng::uniform_matrix::<f64>(&mut rng, t.nrows(), t.ncols(), 0.4);
        }
    }
    m
}

fn check_kernel(task: Task, init: Init, hidden: usize, batch: usize, length: usize, seed: u64) {
    check_kernel_on(model(task, init, hidden, seed), task, batch, length, seed);
}

/// The generic per-step model (cell + readout) of the same weights: the reference.
fn generic(m: &RnnModel) -> Model<f64, VanillaRnn<f64>> {
    Model::new(m.net.cell.clone(), m.readout.clone()).unwrap()
}

/// The SGD-CR trainer of `task` (Ω's inputs recorded) with the paper's hyper-parameters.
fn trainer(m: &RnnModel, task: Task) -> RnnTrainer {
    Trainer::new(m, Algorithm::SgdCR.config(task, &Hyper::default())).unwrap()
}

fn check_kernel_on(m: RnnModel, task: Task, batch: usize, length: usize, seed: u64) {
    let (init, hidden) = (m.net.cell.activation().name(), m.net.cell.hidden_size());
    let b = task
        .generate(&mut stream(seed, &[3]), batch, length)
        .unwrap();
    let mut ws = trainer(&m, task);
    let loss = ws.loss_and_grads(&m, &b.for_trainer()).unwrap();
    let (obj, scale) = objective(&b);
    let h0 = DMatrix::zeros(hidden, batch);
    let (want, g) = generic(&m)
        .loss_and_grads(&b.xs(), &h0, &obj, Truncation::Full)
        .unwrap();
    let (cell_grads, readout_grads) = ws.grads();
    let what = format!("{task}/{init}");
    assert!(
        relative_eq!(loss * scale, want, epsilon = 1e-14, max_relative = 1e-12),
        "{what}: loss {loss} × {scale} vs {want}"
    );
    assert_params_close(&format!("{what} cell"), cell_grads, &g.cell, scale);
    assert_params_close(&format!("{what} readout"), readout_grads, &g.readout, scale);
    // Ω's frozen inputs are the generic BPTT's ∂L/∂h_k
    let (_, delta_sq) = ws.omega_inputs(&m.net).unwrap();
    for k in 1..=b.steps {
        for j in 0..batch {
            let want = g.d_states[k].column(j).norm_squared() / (scale * scale);
            let got = delta_sq[(k - 1) * batch + j];
            assert!(
                relative_eq!(got, want, epsilon = 1e-300, max_relative = 1e-11),
                "{what}: ‖δ_{k}‖² {got:e} vs {want:e}"
            );
        }
    }
}

#[test]
fn kernel_gradients_equal_the_generic_bptt_for_every_task_and_init() {
    for (i, task) in ALL_TASKS.into_iter().enumerate() {
        for (j, init) in ALL_INITS.into_iter().enumerate() {
            let length = if task == Task::Memorization { 4 } else { 12 };
            check_kernel(task, init, 7, 3, length, (10 * i + j) as u64);
        }
    }
}

#[test]
fn kernel_gradients_equal_the_generic_bptt_in_the_papers_setting() {
    // 50 units, batch 20, T = 200: the benchmarked update, at the smart-tanh initialisation
    // (ρ = 0.95; with weights in a chaotic regime the two paths' last-ulp differences —
    // summation order, the vectorised tanh — grow like the largest Lyapunov exponent over
    // 200 steps and no fixed relative tolerance would be meaningful)
    let m = Init::SmartTanh
        .build(Task::TemporalOrder, 50, &mut stream(99, &[1]))
        .unwrap();
    check_kernel_on(m, Task::TemporalOrder, 20, 200, 99);
}

/// Ω from the generic BPTT's `∂L/∂h_k` and explicit Jacobians `diag(σ'(a_k)) W_hh`.
fn omega_by_jacobians(m: &RnnModel, b: &Batch, bound: f64) -> f64 {
    let m = &generic(m);
    let (obj, scale) = objective(b);
    let xs = b.xs();
    let h0 = DMatrix::zeros(m.cell.hidden_size(), b.batch);
    let (_, g) = m.loss_and_grads(&xs, &h0, &obj, Truncation::Full).unwrap();
    let traj = bptt::nn::sequence::forward(&m.cell, &xs, &h0).unwrap();
    let act = m.cell.activation();
    let w = m.cell.weight_hh();
    let (mut sum, mut count) = (0.0, 0);
    for k in 1..=b.steps {
        let h_k = traj.output(k, m.cell.hidden_size());
        for j in 0..b.batch {
            let delta = g.d_states[k].column(j) / scale;
            if delta.norm_squared() < bound {
                continue;
            }
            let d = DMatrix::from_diagonal(&h_k.column(j).map(|h| match act {
                bptt::nn::activation::Activation::Sigmoid => h * (1.0 - h),
                _ => 1.0 - h * h,
            }));
            let jac = d * w; // ∂h_k/∂h_{k−1}
            let r = (delta.transpose() * jac).norm_squared() / delta.norm_squared();
            sum += (r - 1.0) * (r - 1.0);
            count += 1;
        }
    }
    sum / count as f64
}

#[test]
fn omega_equals_its_definition_through_explicit_jacobians() {
    for (i, (task, init)) in [
        (Task::TemporalOrder, Init::SmartTanh),
        (Task::Addition, Init::Sigmoid),
        (Task::Memorization, Init::BasicTanh),
    ]
    .into_iter()
    .enumerate()
    {
        let m = model(task, init, 6, 40 + i as u64);
        let b = task.generate(&mut stream(5, &[i as u64]), 4, 10).unwrap();
        let mut ws = trainer(&m, task);
        ws.loss_and_grads(&m, &b.for_trainer()).unwrap();
        let (u, d2) = ws.omega_inputs(&m.net).unwrap();
        let om = omega::penalty(m.net.cell.weight_hh(), u, d2, omega::DEFAULT_BOUND, None).unwrap();
        let want = omega_by_jacobians(&m, &b, omega::DEFAULT_BOUND);
        assert!(
            relative_eq!(om.value, want, epsilon = 1e-14, max_relative = 1e-11),
            "{task}/{init}: Ω {} vs {want}",
            om.value
        );
        assert!(
            om.used > 0.99,
            "every step carries gradient here: {}",
            om.used
        );
    }
}

fn omega_problem(seed: u64, hidden: usize) -> OmegaProblem {
    let task = Task::TemporalOrder;
    let m = model(task, Init::SmartTanh, hidden, seed);
    let b = task.generate(&mut stream(seed, &[7]), 3, 15).unwrap();
    let mut ws = trainer(&m, task);
    ws.loss_and_grads(&m, &b.for_trainer()).unwrap();
    let (u, d2) = ws.omega_inputs(&m.net).unwrap();
    OmegaProblem {
        w_hh: m.net.cell.weight_hh().clone(),
        u: u.clone(),
        delta_sq: d2.to_vec(),
        bound: omega::DEFAULT_BOUND,
    }
}

#[test]
fn omega_gradient_passes_the_gradient_checker() {
    for seed in 0..4 {
        let p = omega_problem(seed, 6);
        let report = gradcheck::check(&p, Config::default()).unwrap();
        assert_eq!(report.count(Verdict::Fail), 0, "{report}");
        assert_eq!(report.count(Verdict::Unresolved), 0, "{report}");
        assert_eq!(report.entries.len(), 36);
        assert!(report.max_error() < 1e-7, "{report}");
        // Richardson's verdicts agree with their own error estimates
        for e in gradcheck::check_richardson(&p).unwrap() {
            assert!(e.consistent(), "{e:?}");
        }
    }
}

#[test]
fn omega_gradient_is_right_when_some_pairs_are_below_the_bound() {
    // the vanishing case Ω exists for: some δ_k shrink to ‖δ_k‖² = 1e-30 < bound = 1e-20;
    // u_k = σ'(a_k) ⊙ δ_k shrinks with them (r_k unchanged), and those pairs leave the mean,
    // so the gradient is normalised by the M pairs used, not by all N
    const TINY: f64 = 1e-30;
    for seed in 0..4 {
        let mut p = omega_problem(seed, 6);
        assert!(TINY < p.bound);
        let n = p.delta_sq.len();
        assert!(p.delta_sq.iter().all(|&d| d >= p.bound && d.is_finite()));
        let below: Vec<usize> = (0..n).filter(|j| j % 5 == seed as usize % 5).collect();
        assert!(below.len() >= 2 && below.len() < n);
        for &j in &below {
            let scale = (TINY / p.delta_sq[j]).sqrt();
            p.u.column_mut(j).scale_mut(scale);
            p.delta_sq[j] = TINY;
        }
        let om = omega::penalty(&p.w_hh, &p.u, &p.delta_sq, p.bound, None).unwrap();
        let used = (n - below.len()) as f64 / n as f64;
        assert!(
            relative_eq!(om.used, used, epsilon = 1e-15, max_relative = 1e-15),
            "used {} vs {used}",
            om.used
        );
        let report = gradcheck::check(&p, Config::default()).unwrap();
        assert_eq!(report.count(Verdict::Fail), 0, "{report}");
        assert_eq!(report.count(Verdict::Unresolved), 0, "{report}");
        assert_eq!(report.entries.len(), 36);
        assert!(report.max_error() < 1e-7, "{report}");
        for e in gradcheck::check_richardson(&p).unwrap() {
            assert!(e.consistent(), "{e:?}");
        }
    }
}

#[test]
fn omega_gradient_is_second_order_accurate_in_the_taylor_test() {
    let p = omega_problem(11, 5);
    let (_, order) = gradcheck::taylor_test(&p, 11).unwrap();
    assert!((order - 2.0).abs() < 0.2, "Taylor remainder order {order}");
}

#[test]
fn a_step_below_the_bound_is_left_out_of_omega() {
    let p = omega_problem(3, 4);
    let full = omega::penalty(&p.w_hh, &p.u, &p.delta_sq, p.bound, None).unwrap();
    let mut d2 = p.delta_sq.clone();
    d2[0] = 1e-30;
    let part = omega::penalty(&p.w_hh, &p.u, &d2, p.bound, None).unwrap();
    let n = d2.len() as f64;
    assert!(relative_eq!(
        part.used,
        (n - 1.0) / n,
        epsilon = 1e-15,
        max_relative = 1e-15
    ));
    assert_ne!(part.value, full.value);
    // no step above the bound: Ω = 0 and no gradient
    let mut g = DMatrix::zeros(4, 4);
    let none = omega::penalty(
        &p.w_hh,
        &p.u,
        &vec![0.0; d2.len()],
        p.bound,
        Some((&mut g, 1.0)),
    )
    .unwrap();
    assert_eq!((none.value, none.used), (0.0, 0.0));
    assert_eq!(g, DMatrix::zeros(4, 4));
}

#[test]
fn sgd_cr_adds_alpha_times_the_omega_gradient_before_clipping() {
    let task = Task::TemporalOrder;
    let m0 = model(task, Init::SmartTanh, 6, 21);
    let b = task.generate(&mut stream(21, &[0]), 5, 12).unwrap();
    let h = Hyper {
        alpha: 0.7,
        clip: 1e6,
        ..Hyper::default()
    };
    let mut ws = Trainer::new(&m0, Algorithm::SgdCR.config(task, &h)).unwrap();
    // expected: θ − lr (∇L + α ∇Ω) with the trainer's own gradients
    ws.loss_and_grads(&m0, &b.for_trainer()).unwrap();
    let mut g_hh = ws.grads().0[1].clone();
    let (u, d2) = ws.omega_inputs(&m0.net).unwrap();
    let mut expected = m0.net.cell.weight_hh().clone();
    omega::penalty(
        m0.net.cell.weight_hh(),
        u,
        d2,
        h.omega_bound,
        Some((&mut g_hh, 0.7)),
    )
    .unwrap();
    expected -= g_hh * 0.01;

    let mut m = m0.clone();
    let rec = ws.update(&mut m, &b.for_trainer()).unwrap();
    assert!(!rec.clipped && rec.omega > 0.0);
    for (a, e) in m.net.cell.weight_hh().iter().zip(expected.iter()) {
        assert!(relative_eq!(*a, *e, epsilon = 1e-15, max_relative = 1e-13));
    }
}

#[test]
fn clipping_bounds_the_step_and_the_safety_net_shrinks_w_hh() {
    let task = Task::Addition;
    let mut m = model(task, Init::BasicTanh, 5, 8);
    let b = task.generate(&mut stream(8, &[0]), 4, 20).unwrap();
    let h = Hyper {
        optimizer: Optimizer::sgd(0.5),
        ..Hyper::default()
    };
    let mut ws = Trainer::new(&m, Algorithm::SgdC.config(task, &h)).unwrap();
    // a readout scaled by 1e3: 1 ≪ ‖g‖ < 1e10, clipped to 1 — the step has length lr·1
    m.readout.params_mut()[0] *= 1e3;
    let before: Vec<Params<f64>> = vec![m.net.cell.params().clone(), m.readout.params().clone()];
    let rec = ws.update(&mut m, &b.for_trainer()).unwrap();
    assert!(rec.clipped && !rec.safety && rec.grad_norm > 1e3);
    // SGD-C neither uses nor measures Ω
    assert_eq!(rec.omega, 0.0);
    let mut step = before[0].clone();
    step.axpy(-1.0, m.net.cell.params());
    let mut step_r = before[1].clone();
    step_r.axpy(-1.0, m.readout.params());
    let norm = bptt::train::clip::global_norm(&[&step, &step_r]);
    assert!(
        relative_eq!(norm, 0.5, epsilon = 1e-12, max_relative = 1e-9),
        "{norm}"
    );

    // a readout scaled by 1e11: ‖g‖ > 1e10, the safety net: W_hh ← (1 − lr·0.02) W_hh, rest untouched
    m.readout.params_mut()[0] *= 1e8;
    let before = (m.net.cell.params().clone(), m.readout.params().clone());
    let rec = ws.update(&mut m, &b.for_trainer()).unwrap();
    assert!(rec.safety && rec.grad_norm > 1e10);
    let want = before.0[1].clone() * (1.0 - 0.5 * 0.02);
    for (a, b) in m.net.cell.params()[1].iter().zip(want.iter()) {
        assert!(relative_eq!(
            *a,
            *b,
            epsilon = 1e-16,
            max_relative = 4.0 * f64::EPSILON
        ));
    }
    assert_eq!(m.net.cell.params()[0], before.0[0]);
    assert_eq!(m.readout.params(), &before.1);
}

#[test]
fn generators_match_their_analytic_chance_error_rates() {
    let n = 20_000;
    for task in ALL_TASKS {
        let mut rng = stream(77, &[task.id()]);
        let (mut chance, mut oracle) = (0, 0);
        for _ in 0..n / 1000 {
            let b = task.generate(&mut rng, 1000, 60).unwrap();
            chance += count_errors(&b.target, &task.chance_outputs(&b), b.batch);
            oracle += count_errors(&b.target, &perfect_outputs(task, &b), b.batch);
        }
        let rate = chance as f64 / n as f64;
        let p = task.chance_error();
        let se = (p * (1.0 - p) / n as f64).sqrt();
        assert!(
            (rate - p).abs() <= 4.5 * se + 1e-12,
            "{task}: measured chance error {rate} vs analytic {p} (SE {se:.2e})"
        );
        // and the error count is not blind: the targets themselves make no error
        assert_eq!(oracle, 0, "{task}");
    }
}

/// Outputs equal to the targets (one-hot classes, exact values).
fn perfect_outputs(task: Task, b: &Batch) -> DMatrix<f64> {
    let o = task.output_size();
    let one_hot = |c: &[usize]| DMatrix::from_fn(o, c.len(), |i, j| (i == c[j]) as u8 as f64);
    match &b.target {
        Target::Class(c) | Target::ClassEveryStep(c) => one_hot(c),
        Target::Value(v) => v.clone(),
    }
}

#[test]
fn generators_follow_the_documented_encodings() {
    let mut rng = stream(1, &[]);
    // temporal order: exactly two A/B symbols, in [T/10, 2T/10) and [5T/10, 6T/10)
    let b = Task::TemporalOrder.generate(&mut rng, 50, 100).unwrap();
    let (Inputs::OneHot { symbols, .. }, Target::Class(c)) = (&b.inputs, &b.target) else {
        panic!("layout")
    };
    for j in 0..50 {
        let marks: Vec<(usize, usize)> = (0..100)
            .filter(|&t| symbols[t * 50 + j] < 2)
            .map(|t| (t, symbols[t * 50 + j]))
            .collect();
        assert_eq!(marks.len(), 2);
        assert!((10..20).contains(&marks[0].0) && (50..60).contains(&marks[1].0));
        assert_eq!(c[j], marks[0].1 + 2 * marks[1].1);
    }
    // addition: two markers, target the mean of the marked values, length T..T+T/10
    let b = Task::Addition.generate(&mut rng, 30, 100).unwrap();
    assert!((100..110).contains(&b.steps));
    let (Inputs::Dense(x), Target::Value(v)) = (&b.inputs, &b.target) else {
        panic!("layout")
    };
    for j in 0..30 {
        let marked: Vec<usize> = (0..b.steps)
            .filter(|&t| x[(0, t * 30 + j)] == 1.0)
            .collect();
        assert_eq!(marked.len(), 2);
        assert!(marked[0] < b.steps / 10 && marked[1] < b.steps / 2);
        let want = (x[(1, marked[0] * 30 + j)] + x[(1, marked[1] * 30 + j)]) / 2.0;
        assert_eq!(v[(0, j)], want);
    }
    // memorization: pattern, blanks, trigger at T + 10, recall over the last 10 steps
    let t = 15;
    let b = Task::Memorization.generate(&mut rng, 4, t).unwrap();
    assert_eq!(b.steps, t + 2 * MEMORY_LENGTH);
    let (Inputs::OneHot { symbols, .. }, Target::ClassEveryStep(c)) = (&b.inputs, &b.target) else {
        panic!("layout")
    };
    for j in 0..4 {
        for s in 0..b.steps {
            let (x, y) = (symbols[s * 4 + j], c[s * 4 + j]);
            match s {
                s if s < MEMORY_LENGTH => assert!(x < 5 && y == 5),
                s if s == t + MEMORY_LENGTH => assert_eq!(x, 6),
                s if s < t + MEMORY_LENGTH => assert!(x == 5 && y == 5),
                s => {
                    assert_eq!(x, 5);
                    assert_eq!(y, symbols[(s - t - MEMORY_LENGTH) * 4 + j]);
                }
            }
        }
    }
}

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
fn omega_refuses_mismatched_shapes() {
    let p = omega_problem(5, 4);
    let n = p.delta_sq.len();
    // W_hh of the wrong size, with everything else right
    let e = omega::penalty(&DMatrix::zeros(3, 3), &p.u, &p.delta_sq, p.bound, None).unwrap_err();
    assert!(e.to_string().contains("W_hh is 3x3"), "{e}");
    // one ‖δ‖² too few, with everything else right
    let e = omega::penalty(&p.w_hh, &p.u, &p.delta_sq[..n - 1], p.bound, None).unwrap_err();
    assert!(e.to_string().contains(&format!("{} values", n - 1)), "{e}");
    // a gradient buffer of the wrong shape
    let mut g = DMatrix::zeros(4, 3);
    let e = omega::penalty(&p.w_hh, &p.u, &p.delta_sq, p.bound, Some((&mut g, 1.0))).unwrap_err();
    assert!(e.to_string().contains("Ω gradient"), "{e}");
}

#[test]
fn the_safety_net_triggers_above_1e10_and_on_non_finite_norms() {
    assert!(!safety_net_triggered(1e10));
    assert!(safety_net_triggered(1e10f64.next_up()));
    assert!(safety_net_triggered(f64::INFINITY) && safety_net_triggered(f64::NAN));
    assert!(!safety_net_triggered(0.0) && !safety_net_triggered(3.0));
}

#[test]
fn kernel_gradients_equal_the_generic_bptt_for_relu_and_linear_cells() {
    // the kernel serves any vanilla cell, not only the §4.1 initialisations: ReLU's derivative
    // reads the pre-activations, which tanh and sigmoid do not
    for (i, act) in [
        bptt::nn::activation::Activation::Relu,
        bptt::nn::activation::Activation::Identity,
    ]
    .into_iter()
    .enumerate()
    {
        for (j, task) in [Task::TemporalOrder, Task::Addition, Task::Memorization]
            .into_iter()
            .enumerate()
        {
            let seed = 60 + (3 * i + j) as u64;
            let mut rng = stream(seed, &[]);
            let (d, o) = (task.input_size(), task.output_size());
            let cell = bptt::nn::cells::vanilla::VanillaRnn::uniform(d, 6, act, 0.5, &mut rng);
            let readout = bptt::nn::readout::Readout::uniform(6, o, 0.5, &mut rng);
            let m = bptt::nn::model::NetworkModel::new(
                bptt::nn::arch::Unidirectional::new(cell),
                readout,
            )
            .unwrap();
            let length = if task == Task::Memorization { 3 } else { 11 };
            check_kernel_on(m, task, 3, length, seed);
        }
    }
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
