//! Pascanu's regularizer Ω (`bptt::train::omega`; Pascanu, Mikolov & Bengio 2013, eq. 9–10):
//! its value against an independent computation through explicit Jacobians, its immediate
//! gradient against the gradient checker (Richardson, the Taylor test), also with pairs below
//! the bound, the bound itself, and its shape checks. Ω's inputs come from the SGD-CR trainer on
//! the §4.1 models (`tests/paper_setup/`); the trainer's use of Ω is in `tests/trainer.rs`.

mod paper_setup;

use approx::relative_eq;
use bptt::experiment::pathological::{Init, RnnModel};
use bptt::experiment::tasks::{Batch, Task};
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::sequence::Truncation;
use bptt::rng::stream;
use bptt::train::omega::{self, OmegaProblem};
use bptt::verify::gradcheck::{self, Config, Verdict};
use nalgebra::DMatrix;
use paper_setup::{generic, model, objective, trainer};

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
