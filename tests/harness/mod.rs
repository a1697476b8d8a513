//! The generic gradient-property harness: every property here runs for every cell registered
//! with [`register_cell!`] (see `tests/cells.rs`). Adding a cell = one file in `src/nn/cells/` plus
//! one `register_cell!` line.
//!
//! Problems are drawn as (sizes, weight scale, seed); the matrices come from the seed's ChaCha
//! stream, so a failing case is reproduced exactly from its printed `Case`.

#![allow(dead_code)]

use bptt::nn::cell::Cell;
use bptt::nn::model::{LossAt, Model, Objective, Targets};
use bptt::nn::readout::Readout;
use bptt::nn::sequence::{self, Truncation, Upstream};
use bptt::rng::{Rng, stream, uniform_matrix};
use bptt::verify::gradcheck::{self, Problem};
use nalgebra::DMatrix;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// proptest settings shared by the harness: 1024 cases unless `PROPTEST_CASES` is set; a fixed
/// seed unless `PROPTEST_RNG_SEED` is set, so `cargo test` is reproducible and a failure is a
/// real, repeatable failure (set `PROPTEST_RNG_SEED` to explore other cases).
pub fn config() -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 1024;
    }
    if c.rng_seed == RngSeed::Random {
        c.rng_seed = RngSeed::Fixed(0xB977_2026);
    }
    c
}

/// One randomly drawn gradient problem.
#[derive(Clone, Debug)]
pub struct Case {
    pub input: usize,
    pub hidden: usize,
    pub steps: usize,
    pub batch: usize,
    pub outputs: usize,
    /// Weights of the cell are U(−scale, scale): 0.1 (near-linear) to 3 (saturated).
    pub scale: f64,
    pub seed: u64,
    pub at: LossAt,
    /// Cross-entropy (true) or MSE (false).
    pub classify: bool,
    pub truncation: Truncation,
}

/// Hidden 1..=8, input 1..=5, T 1..=12, batch 1..=4, scale 0.1..=3, both loss placements,
/// both losses, full or truncated BPTT.
pub fn cases() -> impl Strategy<Value = Case> {
    (
        (1..=5usize, 1..=8usize, 1..=12usize, 1..=4usize, 1..=3usize),
        0.1f64..=3.0,
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(1..=12usize),
    )
        .prop_map(
            |((input, hidden, steps, batch, outputs), scale, seed, every, classify, k1)| Case {
                input,
                hidden,
                steps,
                batch,
                outputs,
                scale,
                seed,
                at: if every {
                    LossAt::EveryStep
                } else {
                    LossAt::Last
                },
                classify,
                truncation: k1.map_or(Truncation::Full, Truncation::Chunks),
            },
        )
}

/// How a registered cell is built: `(input, hidden, scale, rng) -> cell`.
pub trait MakeCell<C: Cell<f64>>: Fn(usize, usize, f64, &mut Rng) -> C {}
impl<C: Cell<f64>, F: Fn(usize, usize, f64, &mut Rng) -> C> MakeCell<C> for F {}

/// The problem of `case`: cell from `make`, readout, inputs, initial state and targets all from
/// the case's ChaCha stream.
pub fn problem<C: Cell<f64>>(case: &Case, make: impl MakeCell<C>) -> Problem<C> {
    let mut rng = stream(case.seed, &[]);
    let cell = make(case.input, case.hidden, case.scale, &mut rng);
    let readout = Readout::uniform(cell.hidden_size(), case.outputs, 1.0, &mut rng);
    let xs = inputs(&mut rng, case, cell.input_size());
    let s0 = uniform_matrix(&mut rng, cell.state_size(), case.batch, 1.0);
    let n_targets = match case.at {
        LossAt::Last => 1,
        LossAt::EveryStep => case.steps,
    };
    let targets = if case.classify {
        use rand::RngExt;
        Targets::CrossEntropy(
            (0..n_targets)
                .map(|_| {
                    (0..case.batch)
                        .map(|_| rng.random_range(0..case.outputs))
                        .collect()
                })
                .collect(),
        )
    } else {
        Targets::Mse(
            (0..n_targets)
                .map(|_| uniform_matrix(&mut rng, case.outputs, case.batch, 1.0))
                .collect(),
        )
    };
    Problem {
        model: Model::new(cell, readout).expect("readout matches the cell"),
        xs,
        s0,
        objective: Objective {
            targets,
            at: case.at,
        },
        truncation: case.truncation,
    }
}

fn inputs(rng: &mut Rng, case: &Case, input: usize) -> Vec<DMatrix<f64>> {
    (0..case.steps)
        .map(|_| uniform_matrix(rng, input, case.batch, 1.0))
        .collect()
}

/// Random upstream gradients on a random subset of the outputs, and maybe on the final state.
pub fn upstream<C: Cell<f64>>(cell: &C, case: &Case, rng: &mut Rng) -> Upstream<f64> {
    use rand::RngExt;
    let mut up = Upstream::none(case.steps);
    for d in up.d_outputs.iter_mut() {
        if rng.random_bool(0.5) {
            *d = Some(uniform_matrix(rng, cell.hidden_size(), case.batch, 1.0));
        }
    }
    if rng.random_bool(0.7) {
        up.d_final = Some(uniform_matrix(rng, cell.state_size(), case.batch, 1.0));
    }
    up
}

/// Every analytic gradient (parameters, readout, inputs, initial state) agrees with central
/// differences to 1e-6 on all non-kink entries.
pub fn check_gradients<C: Cell<f64>>(
    case: &Case,
    make: impl MakeCell<C>,
) -> Result<(), TestCaseError> {
    let p = problem(case, make);
    let report = gradcheck::check(&p, gradcheck::Config::default())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(report.passed(), "{case:?}\n{report}");
    // the check must have judged something: a kink may exclude entries, never all of them
    prop_assert!(
        report.judged().count() > 0,
        "every entry was a kink: {case:?}"
    );
    Ok(())
}

fn scaled(up: &Upstream<f64>, c: f64) -> Upstream<f64> {
    Upstream {
        d_outputs: up
            .d_outputs
            .iter()
            .map(|d| d.as_ref().map(|m| m * c))
            .collect(),
        d_final: up.d_final.as_ref().map(|m| m * c),
    }
}

fn all_grads(g: &sequence::SequenceGrads<f64>) -> Vec<f64> {
    let mut v: Vec<f64> = g
        .params
        .iter()
        .flat_map(|(_, m)| m.iter().copied())
        .collect();
    v.extend(g.dxs.iter().flat_map(|m| m.iter().copied()));
    v.extend(g.d_states.iter().flat_map(|m| m.iter().copied()));
    v
}

/// Backward is linear in the upstream gradient: scaling it by a power of two scales every
/// gradient exactly (bit for bit); zero in gives zero out; sums map to sums.
pub fn check_linearity<C: Cell<f64>>(
    case: &Case,
    make: impl MakeCell<C>,
) -> Result<(), TestCaseError> {
    let p = problem(case, make);
    let cell = &p.model.cell;
    let traj = sequence::forward(cell, &p.xs, &p.s0).unwrap();
    let mut rng = stream(case.seed, &[1]);
    let (u1, u2) = (
        upstream(cell, case, &mut rng),
        upstream(cell, case, &mut rng),
    );
    let g1 = all_grads(&sequence::backward(cell, &traj, &u1, case.truncation).unwrap());
    for c in [2.0, -0.5, 0.0] {
        let gc =
            all_grads(&sequence::backward(cell, &traj, &scaled(&u1, c), case.truncation).unwrap());
        for (a, b) in g1.iter().zip(&gc) {
            prop_assert!(
                *b == a * c || (a * c == 0.0 && *b == 0.0),
                "scaling by {c}: {} vs {}",
                a * c,
                b
            );
        }
    }
    // additivity: backward(u1 + u2) = backward(u1) + backward(u2), up to rounding
    let mut sum = u1.clone();
    for (d, e) in sum.d_outputs.iter_mut().zip(&u2.d_outputs) {
        *d = match (d.take(), e) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or_else(|| b.clone()),
        };
    }
    sum.d_final = match (sum.d_final.take(), &u2.d_final) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or_else(|| b.clone()),
    };
    let g2 = all_grads(&sequence::backward(cell, &traj, &u2, case.truncation).unwrap());
    let gs = all_grads(&sequence::backward(cell, &traj, &sum, case.truncation).unwrap());
    let scale = g1.iter().chain(&g2).fold(1.0f64, |m, x| m.max(x.abs()));
    for ((a, b), s) in g1.iter().zip(&g2).zip(&gs) {
        prop_assert!(
            approx::relative_eq!(a + b, *s, epsilon = 1e-12 * scale, max_relative = 1e-12),
            "additivity: {} + {} vs {}",
            a,
            b,
            s
        );
    }
    Ok(())
}

/// A batch gives the same gradients as its sequences one by one: parameter gradients are the
/// sum over samples, input and state gradients are the samples' columns.
pub fn check_batch_consistency<C: Cell<f64>>(
    case: &Case,
    make: impl MakeCell<C>,
) -> Result<(), TestCaseError> {
    let p = problem(case, make);
    let cell = &p.model.cell;
    let traj = sequence::forward(cell, &p.xs, &p.s0).unwrap();
    let up = upstream(cell, case, &mut stream(case.seed, &[2]));
    let g = sequence::backward(cell, &traj, &up, case.truncation).unwrap();
    let mut param_sum = cell.params().zeros_like();
    let col = |m: &DMatrix<f64>, b: usize| m.columns(b, 1).into_owned();
    for b in 0..case.batch {
        let xs: Vec<_> = p.xs.iter().map(|x| col(x, b)).collect();
        let traj_b = sequence::forward(cell, &xs, &col(&p.s0, b)).unwrap();
        // equal up to rounding: faer's GEMM picks its kernel by the batch width, so a product
        // over B columns and over one column may round differently — a few ulp of the dot
        // products, relative to the largest entry of the quantity over the sequence (an entry
        // that cancels to near zero keeps an absolute, not a relative, error)
        for (t, s) in traj_b.states().iter().enumerate() {
            let scale = s.amax().max(1.0);
            prop_assert!(
                approx::relative_eq!(
                    *s,
                    col(&traj.state(t), b),
                    epsilon = 1e-13 * scale,
                    max_relative = 1e-12
                ),
                "state {} of sample {}",
                t,
                b
            );
        }
        let up_b = Upstream {
            d_outputs: up
                .d_outputs
                .iter()
                .map(|d| d.as_ref().map(|m| col(m, b)))
                .collect(),
            d_final: up.d_final.as_ref().map(|m| col(m, b)),
        };
        let gb = sequence::backward(cell, &traj_b, &up_b, case.truncation).unwrap();
        param_sum.axpy(1.0, &gb.params);
        for (t, dx) in gb.dxs.iter().enumerate() {
            let scale = g.dxs.iter().map(|m| m.amax()).fold(1.0, f64::max);
            prop_assert!(approx::relative_eq!(
                *dx,
                col(&g.dxs[t], b),
                epsilon = 1e-13 * scale,
                max_relative = 1e-12
            ));
        }
        for (k, ds) in gb.d_states.iter().enumerate() {
            let scale = g.d_states.iter().map(|m| m.amax()).fold(1.0, f64::max);
            prop_assert!(approx::relative_eq!(
                *ds,
                col(&g.d_states[k], b),
                epsilon = 1e-13 * scale,
                max_relative = 1e-12
            ));
        }
    }
    for ((name, a), (_, b)) in param_sum.iter().zip(g.params.iter()) {
        let scale = a.amax().max(1.0);
        prop_assert!(
            approx::relative_eq!(*a, *b, epsilon = 1e-12 * scale, max_relative = 1e-12),
            "{}: sum over samples {} vs batch {}",
            name,
            a,
            b
        );
    }
    Ok(())
}

/// Reruns are bit-identical: the same problem twice gives the same loss and gradients, bit for bit.
pub fn check_rerun<C: Cell<f64>>(
    case: &Case,
    make: impl MakeCell<C> + Copy,
) -> Result<(), TestCaseError> {
    let run = || {
        let p = problem(case, make);
        let (loss, g) = p
            .model
            .loss_and_grads(&p.xs, &p.s0, &p.objective, p.truncation)
            .unwrap();
        let mut bits = vec![loss.to_bits()];
        bits.extend(
            g.cell
                .iter()
                .chain(g.readout.iter())
                .flat_map(|(_, m)| m.iter().map(|x| x.to_bits())),
        );
        bits.extend(
            g.dxs
                .iter()
                .chain(&g.d_states)
                .flat_map(|m| m.iter().map(|x| x.to_bits())),
        );
        bits
    };
    prop_assert_eq!(run(), run());
    Ok(())
}

/// The adjoint identity ⟨v, J u⟩ = ⟨Jᵀ v, u⟩ with J u from dual numbers (exact forward mode):
/// error ≤ 1e-12 relative to the sum of the absolute terms.
pub fn check_adjoint<C: bptt::nn::cell::Rescalar<f64>>(
    case: &Case,
    make: impl MakeCell<C>,
) -> Result<(), TestCaseError> {
    let p = problem(case, make);
    let a = bptt::verify::oracle::adjoint_sequence(&p.model.cell, &p.xs, &p.s0, case.seed)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(a.passed(), "{case:?}: {a:?}");
    Ok(())
}

/// f32 gradients (the same generic code: faer's SGEMM, the widened activations) against f64:
/// relative error of every parameter gradient below 1e-4 and above 1e-10 (not exact: it ran
/// in f32).
pub fn check_f32<C: bptt::nn::cell::Rescalar<f64>>(
    case: &Case,
    make: impl MakeCell<C>,
) -> Result<(), TestCaseError> {
    let p = problem(case, make);
    let e = bptt::verify::oracle::f32_error_sequence(&p.model.cell, &p.xs, &p.s0, case.seed)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(e < 1e-4 && e > 1e-10, "{case:?}: f32 relative error {e:e}");
    Ok(())
}

/// Richardson extrapolation: for a correct gradient, the analytic value lies within the error
/// estimate of every non-kink entry, and the Taylor remainder shrinks at order ≈ 2 (smooth cells).
pub fn check_richardson_and_taylor<C: Cell<f64>>(
    case: &Case,
    make: impl MakeCell<C>,
) -> Result<(), TestCaseError> {
    let p = problem(case, make);
    let smooth = !p.model.cell.has_kinks();
    let entries =
        gradcheck::check_richardson(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for e in entries.iter().filter(|e| !e.kink) {
        prop_assert!(e.consistent(), "{case:?}: {e:?}");
    }
    if smooth {
        let (points, order) = gradcheck::taylor_test(&p, case.seed)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            order.is_nan() || (order - 2.0).abs() < 0.3,
            "{case:?}: Taylor order {order}, {points:?}"
        );
    }
    Ok(())
}

/// Fewer cases for the expensive oracles (Richardson: ~20 evaluations per entry).
pub fn expensive_config() -> Config {
    let mut c = config();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 64;
    }
    c
}

/// Cases that once failed (before the checker's floor was sized by the loss magnitude and
/// finite differences carried their own error estimate): tiny gradients under rounding noise,
/// exploding ReLU/linear networks, chaotic saturated tanh networks. Kept as explicit
/// regressions for every cell, on top of proptest's random cases.
pub fn regression_cases() -> Vec<Case> {
    let case = |input, hidden, steps, batch, outputs, scale, seed, at, classify| Case {
        input,
        hidden,
        steps,
        batch,
        outputs,
        scale,
        seed,
        at,
        classify,
        truncation: Truncation::Full,
    };
    use LossAt::{EveryStep, Last};
    vec![
        case(
            4,
            3,
            4,
            4,
            2,
            2.074152787436208,
            7968002392031035565,
            Last,
            false,
        ),
        case(
            1,
            6,
            6,
            3,
            2,
            2.432318235525443,
            1631462374965851650,
            Last,
            true,
        ),
        case(
            2,
            8,
            12,
            1,
            2,
            1.201873659508009,
            1942747920840462948,
            Last,
            false,
        ),
        case(
            3,
            5,
            10,
            1,
            3,
            2.2920984422806634,
            5476758796339330118,
            EveryStep,
            true,
        ),
        case(
            4,
            7,
            10,
            2,
            3,
            1.6092959470396315,
            5694802196989270126,
            Last,
            true,
        ),
        case(
            5,
            7,
            8,
            2,
            3,
            2.766202355842531,
            2274840229329336961,
            EveryStep,
            false,
        ),
    ]
}

/// Sizes above the fast kernels' thresholds: faer's GEMM past its 48-row microkernel and its
/// cache blocks (hidden 150–301 → up to 1204 gate rows, batch 40–47, T·B up to 188 columns
/// in the parameter-gradient GEMMs), the vectorised tanh/sigmoid with their tails. The small
/// random cases never reach these paths. Few cases: the dual-number forward pass multiplies
/// with a triple loop. Scales keep pre-activations O(1) at these widths.
pub fn large_cases() -> Vec<Case> {
    let case = |input, hidden, steps, batch, scale, seed, at, classify, truncation| Case {
        input,
        hidden,
        steps,
        batch,
        outputs: 3,
        scale,
        seed,
        at,
        classify,
        truncation,
    };
    use LossAt::{EveryStep, Last};
    vec![
        case(33, 150, 3, 41, 0.1, 11, Last, true, Truncation::Full),
        case(
            7,
            301,
            2,
            40,
            0.06,
            12,
            EveryStep,
            false,
            Truncation::Chunks(1),
        ),
        case(64, 160, 4, 47, 0.08, 13, EveryStep, true, Truncation::Full),
    ]
}

/// Register a cell with every generic property: `register_cell!(module_name, make)`, where
/// `make: fn(input, hidden, scale, &mut Rng) -> impl Cell<f64>`. Cells with kinks
/// ([`Cell::has_kinks`], ReLU) skip the Taylor-order check, which needs smoothness.
#[macro_export]
macro_rules! register_cell {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;
            use proptest::prelude::*;

            #[test]
            fn regressions_match_finite_differences() {
                for case in harness::regression_cases() {
                    if let Err(e) = harness::check_gradients(&case, $make) {
                        panic!("{e}");
                    }
                }
            }

            #[test]
            fn large_sizes_pass_the_adjoint_identity_linearity_batch_consistency_and_f32() {
                for case in harness::large_cases() {
                    let checks = [
                        harness::check_adjoint(&case, $make),
                        harness::check_linearity(&case, $make),
                        harness::check_batch_consistency(&case, $make),
                        harness::check_f32(&case, $make),
                    ];
                    for check in checks {
                        if let Err(e) = check {
                            panic!("{e}");
                        }
                    }
                }
            }

            proptest! {
                #![proptest_config(harness::config())]

                #[test]
                fn gradients_match_finite_differences(case in harness::cases()) {
                    harness::check_gradients(&case, $make)?;
                }

                #[test]
                fn backward_is_linear_in_the_upstream_gradient(case in harness::cases()) {
                    harness::check_linearity(&case, $make)?;
                }

                #[test]
                fn batch_equals_samples_one_by_one(case in harness::cases()) {
                    harness::check_batch_consistency(&case, $make)?;
                }

                #[test]
                fn reruns_are_bit_identical(case in harness::cases()) {
                    harness::check_rerun(&case, $make)?;
                }

                #[test]
                fn adjoint_identity_holds_with_dual_numbers(case in harness::cases()) {
                    harness::check_adjoint(&case, $make)?;
                }
            }

            proptest! {
                #![proptest_config(harness::expensive_config())]

                #[test]
                fn richardson_estimates_and_taylor_orders_agree(case in harness::cases()) {
                    harness::check_richardson_and_taylor(&case, $make)?;
                }
            }
        }
    };
}
