//! The exact oracle and the error-estimated finite differences beyond the per-cell properties:
//! full Jacobians entry by entry, the Taylor test's teeth, f32 against the f64 reference, and
//! the fast projected mode.

mod harness;

use bptt::nn::activation::Activation;
use bptt::nn::cell::CellFamily;
use bptt::nn::cell::Rescalar;
use bptt::nn::cells::CellKind;
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::params::Params;
use bptt::nn::sequence::{self, Truncation, Upstream};
use bptt::rng::{Rng, stream, uniform_matrix};
use bptt::verify::gradcheck::{self, Checkable};
use bptt::verify::oracle::{adjoint_sequence, full_jacobian_discrepancy};
use nalgebra::DMatrix;

/// Full Jacobian of (outputs, final state) w.r.t. (θ, x, s0): forward mode column by column
/// (dual numbers) against reverse mode row by row (BPTT), entry by entry, at small sizes.
fn full_jacobian<C: Rescalar<f64>>(make: impl Fn(&mut Rng) -> C) {
    let mut rng = stream(31, &[]);
    let cell = make(&mut rng);
    let xs: Vec<DMatrix<f64>> = (0..3)
        .map(|_| uniform_matrix(&mut rng, cell.input_size(), 2, 1.0))
        .collect();
    let s0 = uniform_matrix(&mut rng, cell.state_size(), 2, 1.0);
    let worst = full_jacobian_discrepancy(&cell, &xs, &s0).unwrap();
    assert!(
        worst <= 1e-13,
        "{}: full Jacobian discrepancy {worst:e}",
        cell.name()
    );
}

#[test]
fn full_jacobians_agree_entry_by_entry() {
    for &kind in CellKind::ALL {
        full_jacobian(|r| kind.uniform::<f64>(2, 3, 0.8, r));
    }
}

/// A checkable problem whose analytic gradient is deliberately wrong in one entry (×1.01).
#[derive(Clone)]
struct Skewed(gradcheck::Problem<VanillaRnn<f64>>);

impl Checkable for Skewed {
    type Context = Vec<DMatrix<f64>>;
    fn analytic(&self) -> Result<(gradcheck::Analytic, Self::Context), bptt::error::BpttError> {
        let (mut a, c) = self.0.analytic()?;
        a.variables[1].gradient[(0, 0)] *= 1.01;
        Ok((a, c))
    }
    fn variable_mut(&mut self, i: usize) -> &mut DMatrix<f64> {
        self.0.variable_mut(i)
    }
    fn evaluate(&self, c: &Self::Context) -> Result<(f64, Vec<bool>), bptt::error::BpttError> {
        self.0.evaluate(c)
    }
}

#[test]
fn taylor_test_has_order_two_for_the_right_gradient_and_one_for_a_wrong_one() {
    let case = harness::Case {
        input: 3,
        hidden: 4,
        steps: 6,
        batch: 2,
        outputs: 2,
        scale: 0.9,
        seed: 17,
        at: bptt::nn::model::LossAt::EveryStep,
        classify: false,
        truncation: Truncation::Full,
    };
    let p = harness::problem(&case, |d, h, s, r: &mut Rng| {
        VanillaRnn::uniform(d, h, Activation::Tanh, s, r)
    });
    let (_, right) = gradcheck::taylor_test(&p, 3).unwrap();
    let (_, wrong) = gradcheck::taylor_test(&Skewed(p.clone()), 3).unwrap();
    assert!((right - 2.0).abs() < 0.2, "right gradient: order {right}");
    assert!((wrong - 1.0).abs() < 0.2, "wrong gradient: order {wrong}");
    // and Richardson flags the skewed entry as inconsistent with its own error estimate
    let entries = gradcheck::check_richardson(&Skewed(p)).unwrap();
    assert!(entries.iter().any(|e| !e.consistent()));
}

/// f32 runs of the same generic code, checked against the f64 reference (never f32 finite
/// differences). The achieved relative error of the parameter gradients per cell is reported
/// (run with `--nocapture`) and must stay below 1e-4 at these sizes (T = 20).
#[test]
fn f32_gradients_match_the_f64_reference() {
    fn rel_err<C: Rescalar<f64>>(make: impl Fn(&mut Rng) -> C) -> (String, f64) {
        let mut rng = stream(41, &[]);
        let cell = make(&mut rng);
        let xs: Vec<DMatrix<f64>> = (0..20)
            .map(|_| uniform_matrix(&mut rng, cell.input_size(), 4, 1.0))
            .collect();
        let s0 = uniform_matrix(&mut rng, cell.state_size(), 4, 0.5);
        let mut up = Upstream::none(20);
        up.d_final = Some(uniform_matrix(&mut rng, cell.state_size(), 4, 1.0));
        let t64 = sequence::forward(&cell, &xs, &s0).unwrap();
        let g64 = sequence::backward(&cell, &t64, &up, Truncation::Full).unwrap();
        let cell32 = cell.with_params(cell.params().map(|x| x as f32));
        let xs32: Vec<DMatrix<f32>> = xs.iter().map(|x| x.map(|v| v as f32)).collect();
        let up32 = Upstream {
            d_outputs: vec![None; 20],
            d_final: up.d_final.as_ref().map(|d| d.map(|v| v as f32)),
        };
        let t32 = sequence::forward(&cell32, &xs32, &s0.map(|v| v as f32)).unwrap();
        let g32 = sequence::backward(&cell32, &t32, &up32, Truncation::Full).unwrap();
        let diff: Params<f64> = g32.params.map(f64::from);
        let mut d = diff.clone();
        d.axpy(-1.0, &g64.params);
        (cell.name(), d.norm() / g64.params.norm())
    }
    let mut results = vec![];
    for &kind in CellKind::ALL {
        results.push(rel_err(|r| kind.uniform::<f64>(3, 8, 0.5, r)));
    }
    for (name, e) in &results {
        println!("f32 vs f64 parameter-gradient relative error, {name}: {e:.2e}");
        assert!(*e < 1e-4, "{name}: {e}");
        assert!(*e > 1e-10, "{name}: f32 suspiciously exact ({e})");
    }
}

/// Fast mode for big models: a few random projections ⟨∇L, u⟩ (dual numbers) instead of every
/// entry; hidden 256.
#[test]
fn projected_adjoint_checks_a_big_cell() {
    let mut rng = stream(51, &[]);
    let cell = Lstm::<f64>::uniform(32, 256, (), 1.0 / 16.0, &mut rng);
    let xs: Vec<DMatrix<f64>> = (0..10)
        .map(|_| uniform_matrix(&mut rng, 32, 2, 1.0))
        .collect();
    let s0 = uniform_matrix(&mut rng, 512, 2, 0.5);
    for seed in 0..3 {
        let a = adjoint_sequence(&cell, &xs, &s0, seed).unwrap();
        assert!(a.passed(), "{a:?}");
    }
}
