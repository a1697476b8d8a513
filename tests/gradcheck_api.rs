//! The gradient checker itself: it must reject wrong gradients, detect kinks, and report
//! entries by name.

mod harness;

use bptt::nn::activation::Activation;
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::engine::{MatMut, MatRef, Op, gemm};
use bptt::nn::model::LossAt;
use bptt::nn::params::Params;
use bptt::nn::sequence::Truncation;
use bptt::rng::{Rng, stream};
use bptt::verify::gradcheck::{self, Problem, Verdict};
use nalgebra::DMatrix;

/// A vanilla cell whose backward pass is wrong in a chosen way: the checker must notice.
#[derive(Clone)]
struct Broken {
    inner: VanillaRnn<f64>,
    bug: Bug,
}

#[derive(Clone, Copy, Debug)]
enum Bug {
    /// backward forgets σ' (uses dh as da)
    DropSigmaPrime,
    /// dW_hh accumulated with the wrong sign
    WrongSign,
    /// bias_hh gets no gradient
    DropBiasGradient,
    /// dh_prev = W_hh da instead of W_hhᵀ da
    MissingTranspose,
}

impl Cell<f64> for Broken {
    fn name(&self) -> String {
        format!("broken-{:?}", self.bug)
    }
    fn params(&self) -> &Params<f64> {
        self.inner.params()
    }
    fn params_mut(&mut self) -> &mut Params<f64> {
        self.inner.params_mut()
    }
    fn tape_rows(&self) -> usize {
        self.inner.tape_rows()
    }
    fn projection_bias(&self, out: &mut [f64]) {
        self.inner.projection_bias(out)
    }
    fn step_forward(&self, tape: MatMut<'_, f64>, s_prev: MatRef<'_, f64>, s: MatMut<'_, f64>) {
        self.inner.step_forward(tape, s_prev, s)
    }
    fn step_backward(
        &self,
        dh: MatRef<'_, f64>,
        w_hh_t: MatRef<'_, f64>,
        tape: MatRef<'_, f64>,
        h_prev: MatRef<'_, f64>,
        h: MatRef<'_, f64>,
        d_ih: MatMut<'_, f64>,
        d_hh: Option<MatMut<'_, f64>>,
        dh_prev: MatMut<'_, f64>,
    ) {
        let (mut da, mut dh_prev) = (d_ih, dh_prev);
        self.inner.step_backward(
            dh,
            w_hh_t,
            tape,
            h_prev,
            h,
            da.reborrow(),
            d_hh,
            dh_prev.reborrow(),
        );
        let w_hh = MatRef::from(self.inner.weight_hh());
        match self.bug {
            Bug::DropSigmaPrime => {
                // redo the step as if σ' were 1: da = dh
                da.copy_from(dh);
                gemm(dh_prev, false, Op::T(w_hh), Op::N(dh));
            }
            Bug::MissingTranspose => gemm(dh_prev, false, Op::N(w_hh), Op::N(da.as_ref())),
            Bug::WrongSign | Bug::DropBiasGradient => {}
        }
    }
    fn recurrent_param_grads(
        &self,
        d_hh: MatRef<'_, f64>,
        tape: MatRef<'_, f64>,
        h_prev: MatRef<'_, f64>,
        d_hh_sums: &[f64],
        grads: &mut [nalgebra::DMatrix<f64>],
    ) {
        match self.bug {
            Bug::WrongSign => {
                // dW_hh accumulated as −D H_prevᵀ
                let mut dw = DMatrix::zeros(grads[1].nrows(), grads[1].ncols());
                gemm(MatMut::from(&mut dw), false, Op::N(d_hh), Op::T(h_prev));
                grads[1] -= dw;
                bptt::nn::engine::mat::add_to(grads[3].as_mut_slice(), d_hh_sums);
            }
            Bug::DropBiasGradient => {
                gemm(
                    MatMut::from(&mut grads[1]),
                    true,
                    Op::N(d_hh),
                    Op::T(h_prev),
                );
            }
            _ => self
                .inner
                .recurrent_param_grads(d_hh, tape, h_prev, d_hh_sums, grads),
        }
    }
}

impl bptt::nn::cell::Rescalar<f64> for Broken {
    // the forward pass is the correct cell's, so the dual-number oracle runs the correct cell
    type With<U: nalgebra::RealField + Copy> = VanillaRnn<U>;
    fn with_params<U: nalgebra::RealField + Copy>(&self, params: Params<U>) -> VanillaRnn<U> {
        self.inner.with_params(params)
    }
}

/// The dual-number oracle rejects each kind of wrong backward pass too, and fast mode's fallback
/// locates the faulty tensor.
#[test]
fn dual_oracle_rejects_and_locates_each_bug() {
    for (bug, tensor) in [
        (Bug::DropSigmaPrime, None),
        (Bug::WrongSign, Some(1)),
        (Bug::DropBiasGradient, Some(3)),
        (Bug::MissingTranspose, None),
    ] {
        let mut rng = stream(9, &[]);
        let cell = Broken {
            inner: VanillaRnn::uniform(3, 4, Activation::Tanh, 0.8, &mut rng),
            bug,
        };
        let xs: Vec<DMatrix<f64>> = (0..5)
            .map(|_| bptt::rng::uniform_matrix(&mut rng, 3, 2, 1.0))
            .collect();
        let s0 = bptt::rng::uniform_matrix(&mut rng, 4, 2, 1.0);
        let a = bptt::verify::oracle::adjoint_sequence(&cell, &xs, &s0, 1).unwrap();
        assert!(!a.passed() && a.error > 1e-6, "{bug:?}: {a:?}");
        let located = bptt::verify::oracle::locate_fault(&cell, &xs, &s0, 1)
            .unwrap()
            .expect("a fault");
        if let Some(t) = tensor {
            assert_eq!(located.0, t, "{bug:?}: located {located:?}");
        }
    }
    // and a correct cell has no fault to locate
    let mut rng = stream(9, &[]);
    let cell = VanillaRnn::<f64>::uniform(3, 4, Activation::Tanh, 0.8, &mut rng);
    let xs: Vec<DMatrix<f64>> = (0..5)
        .map(|_| bptt::rng::uniform_matrix(&mut rng, 3, 2, 1.0))
        .collect();
    assert_eq!(
        bptt::verify::oracle::locate_fault(
            &cell,
            &xs,
            &bptt::rng::uniform_matrix(&mut rng, 4, 2, 1.0),
            1
        )
        .unwrap(),
        None
    );
}

fn case(seed: u64) -> harness::Case {
    harness::Case {
        input: 3,
        hidden: 4,
        steps: 6,
        batch: 2,
        outputs: 2,
        scale: 0.8,
        seed,
        at: LossAt::EveryStep,
        classify: false,
        truncation: Truncation::Full,
    }
}

#[test]
fn checker_rejects_each_kind_of_wrong_backward_pass() {
    for bug in [
        Bug::DropSigmaPrime,
        Bug::WrongSign,
        Bug::DropBiasGradient,
        Bug::MissingTranspose,
    ] {
        let p: Problem<Broken> = harness::problem(&case(5), move |d, h, s, rng: &mut Rng| Broken {
            inner: VanillaRnn::uniform(d, h, Activation::Tanh, s, rng),
            bug,
        });
        let report = gradcheck::check(&p, gradcheck::Config::default()).unwrap();
        assert!(!report.passed(), "{bug:?} went unnoticed:\n{report}");
        assert!(
            report.max_error() > 1e-3,
            "{bug:?}: max error only {}",
            report.max_error()
        );
    }
}

#[test]
fn checker_passes_the_correct_cell_and_names_every_entry() {
    let p = harness::problem(&case(5), |d, h, s, rng: &mut Rng| {
        VanillaRnn::uniform(d, h, Activation::Tanh, s, rng)
    });
    let report = gradcheck::check(&p, gradcheck::Config::default()).unwrap();
    assert!(report.passed(), "{report}");
    assert!(report.max_error() < 1e-7, "{report}");
    // 4·3 + 4·4 + 4 + 4 cell, 2·4 + 2 readout, 6·3·2 inputs, 4·2 initial state
    assert_eq!(report.entries.len(), 36 + 10 + 36 + 8);
    let names: std::collections::BTreeSet<_> =
        report.entries.iter().map(|e| e.tensor.as_str()).collect();
    let expected = [
        "weight_ih",
        "weight_hh",
        "bias_ih",
        "bias_hh",
        "readout.weight",
        "readout.bias",
        "x",
        "h0",
    ];
    assert_eq!(names, expected.into_iter().collect());
    assert!(
        report
            .entries
            .iter()
            .filter(|e| e.tensor == "x")
            .all(|e| e.step.is_some())
    );
    assert_eq!(
        report
            .entries
            .iter()
            .filter(|e| e.tensor == "x" && e.step == Some(5))
            .count(),
        6
    );
}

#[test]
fn relu_kinks_inside_the_stencil_are_excluded_and_counted() {
    // One ReLU unit, one step: a = w·x + b_ih + b_hh with x = 1, and b_ih placed 1e-7 from the
    // kink (a = 0) — inside the ±h stencil of b_ih, b_hh, w_ih and x, none of which can be judged.
    let mut cell = VanillaRnn::<f64>::zeros(1, 1, Activation::Relu);
    cell.params_mut()[0][(0, 0)] = 0.5; // w_ih
    cell.params_mut()[2][(0, 0)] = -0.5 + 1e-7; // b_ih
    let mut rng = stream(1, &[]);
    let readout = bptt::nn::readout::Readout::uniform(1, 1, 1.0, &mut rng);
    let p = Problem {
        model: bptt::nn::model::Model::new(cell, readout).unwrap(),
        xs: vec![DMatrix::from_element(1, 1, 1.0)],
        s0: DMatrix::zeros(1, 1),
        objective: bptt::nn::model::Objective {
            targets: bptt::nn::model::Targets::Mse(vec![DMatrix::from_element(1, 1, 2.0)]),
            at: LossAt::Last,
        },
        truncation: Truncation::Full,
    };
    let report = gradcheck::check(&p, gradcheck::Config::default()).unwrap();
    let kinked: Vec<_> = report
        .entries
        .iter()
        .filter(|e| e.verdict == Verdict::Kink)
        .map(|e| e.tensor.as_str())
        .collect();
    assert_eq!(kinked, ["weight_ih", "bias_ih", "bias_hh", "x"], "{report}");
    assert_eq!(report.kinks(), 4);
    assert!(report.passed(), "{report}");
}
