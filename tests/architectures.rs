//! Every architecture wrapper through the gradient checker and the structural properties:
//! depth 1..=3 with per-layer hidden sizes, both directions, plain / residual / dense
//! connections, every cell type; and the wrappers' shape errors (widths that do not chain,
//! bidirectional directions of different hidden sizes).

mod harness;

use bptt::nn::activation::Activation;
use bptt::nn::arch::{
    Bidirectional, Dense, RescalarLayer, Residual, SeqLayer, Stacked, Unidirectional,
};
use bptt::nn::cell::CellFamily;
use bptt::nn::cells::CellKind;
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::model::{LossAt, NetworkModel, Objective, Targets};
use bptt::nn::readout::Readout;
use bptt::rng::{Rng, stream, uniform_matrix};
use bptt::verify::gradcheck::{self, NetworkProblem};
use nalgebra::DMatrix;
use proptest::prelude::*;
use proptest::test_runner::Config;

#[derive(Clone, Copy, Debug)]
enum Connection {
    Plain,
    Residual,
    Dense,
}

#[derive(Clone, Debug)]
struct ArchCase {
    input: usize,
    /// Hidden size of each layer (depth = len).
    hidden: Vec<usize>,
    bidirectional: bool,
    connection: Connection,
    steps: usize,
    batch: usize,
    scale: f64,
    seed: u64,
    at: LossAt,
    classify: bool,
}

fn arch_cases() -> impl Strategy<Value = ArchCase> {
    (
        1..=3usize,
        prop::collection::vec(1..=4usize, 1..=3),
        any::<bool>(),
        prop::sample::select(vec![
            Connection::Plain,
            Connection::Residual,
            Connection::Dense,
        ]),
        (1..=5usize, 1..=2usize),
        0.1f64..=2.0,
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                input,
                hidden,
                bidirectional,
                connection,
                (steps, batch),
                scale,
                seed,
                every,
                classify,
            )| ArchCase {
                input,
                hidden,
                bidirectional,
                connection,
                steps,
                batch,
                scale,
                seed,
                at: if every {
                    LossAt::EveryStep
                } else {
                    LossAt::Last
                },
                classify,
            },
        )
}

/// Fewer cases than the cell harness: each architecture problem has up to thousands of entries.
fn config() -> Config {
    let mut c = harness::config();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 256;
    }
    c
}

/// The problem for `net`, with readout, inputs, initial states and targets from `rng`.
fn network_problem<N: SeqLayer<f64>>(net: N, case: &ArchCase, rng: &mut Rng) -> NetworkProblem<N> {
    let outputs = 2;
    let readout = Readout::uniform(net.output_size(), outputs, 1.0, rng);
    let xs = (0..case.steps)
        .map(|_| uniform_matrix(rng, net.input_size(), case.batch, 1.0))
        .collect();
    let s0 = net
        .state_sizes()
        .iter()
        .map(|&s| uniform_matrix(rng, s, case.batch, 1.0))
        .collect();
    let n = if case.at == LossAt::Last {
        1
    } else {
        case.steps
    };
    let targets = if case.classify {
        use rand::RngExt;
        Targets::CrossEntropy(
            (0..n)
                .map(|_| {
                    (0..case.batch)
                        .map(|_| rng.random_range(0..outputs))
                        .collect()
                })
                .collect(),
        )
    } else {
        Targets::Mse(
            (0..n)
                .map(|_| uniform_matrix(rng, outputs, case.batch, 1.0))
                .collect(),
        )
    };
    NetworkProblem {
        model: NetworkModel::new(net, readout).unwrap(),
        xs,
        s0,
        objective: Objective {
            targets,
            at: case.at,
        },
    }
}

fn assert_checks<N: RescalarLayer<f64>>(
    net: N,
    case: &ArchCase,
    rng: &mut Rng,
) -> Result<(), TestCaseError> {
    let p = network_problem(net, case, rng);
    // the exact oracle: ⟨v, J u⟩ by dual numbers = ⟨Jᵀ v, u⟩ by our backward
    let a = bptt::verify::oracle::adjoint_network(&p.model.net, &p.xs, &p.s0, case.seed)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(a.passed(), "{case:?} {}: {a:?}", p.model.net.name());
    let report = gradcheck::check(&p, gradcheck::Config::default())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(report.passed(), "{case:?} {}\n{report}", p.model.net.name());
    prop_assert!(report.judged().count() > 0);
    Ok(())
}

/// Build the architecture of `case` from cells made by `make(input, hidden, scale, rng)`, and check it.
fn check_architecture<C: bptt::nn::cell::Rescalar<f64>>(
    case: &ArchCase,
    make: impl harness::MakeCell<C>,
) -> Result<(), TestCaseError> {
    let mut rng = stream(case.seed, &[]);
    let dirs = if case.bidirectional { 2 } else { 1 };
    // input width of layer l: chained (plain, residual) or concatenated (dense)
    let mut widths = vec![case.input];
    for (l, &h) in case.hidden.iter().enumerate() {
        let w = match case.connection {
            Connection::Dense => widths[l] + dirs * h,
            _ => dirs * h,
        };
        widths.push(w);
    }
    macro_rules! layers {
        ($wrap:expr) => {
            case.hidden
                .iter()
                .enumerate()
                .map(|(l, &h)| {
                    let d = widths[l];
                    $wrap(d, h, &mut rng)
                })
                .collect::<Vec<_>>()
        };
    }
    let scale = case.scale;
    match (case.bidirectional, case.connection) {
        (false, Connection::Plain) => {
            let layers = layers!(|d, h, rng: &mut Rng| Unidirectional::new(make(d, h, scale, rng)));
            assert_checks(Stacked::new(layers).unwrap(), case, &mut rng)
        }
        (true, Connection::Plain) => {
            let layers = layers!(|d, h, rng: &mut Rng| Bidirectional::new(
                make(d, h, scale, rng),
                make(d, h, scale, rng)
            ));
            assert_checks(Stacked::new(layers).unwrap(), case, &mut rng)
        }
        (false, Connection::Residual) => {
            let layers = layers!(|d, h, rng: &mut Rng| Residual::new(
                Unidirectional::new(make(d, h, scale, rng)),
                rng
            ));
            assert_checks(Stacked::new(layers).unwrap(), case, &mut rng)
        }
        (true, Connection::Residual) => {
            let layers = layers!(|d, h, rng: &mut Rng| Residual::new(
                Bidirectional::new(make(d, h, scale, rng), make(d, h, scale, rng)),
                rng
            ));
            assert_checks(Stacked::new(layers).unwrap(), case, &mut rng)
        }
        (false, Connection::Dense) => {
            let layers = layers!(|d, h, rng: &mut Rng| Unidirectional::new(make(d, h, scale, rng)));
            assert_checks(Dense::new(layers).unwrap(), case, &mut rng)
        }
        (true, Connection::Dense) => {
            let layers = layers!(|d, h, rng: &mut Rng| Bidirectional::new(
                make(d, h, scale, rng),
                make(d, h, scale, rng)
            ));
            assert_checks(Dense::new(layers).unwrap(), case, &mut rng)
        }
    }
}

/// One property test per registry line (`bptt::for_each_cell!`): every architecture built
/// from that cell, named `architectures_<cell>_match_finite_differences`.
macro_rules! register_architectures {
    ($($([mod $file:ident])? $module:ident $kind:ident $name:literal $seed:literal $cell:ty, $config:expr;)*) => {
        $(architecture_test! { $module, $kind })*
    };
}

macro_rules! architecture_test {
    ($module:ident, $kind:ident) => {
        mod $module {
            use super::*;
            proptest! {
                #![proptest_config(config())]
                #[test]
                fn architectures_match_finite_differences(case in arch_cases()) {
                    check_architecture(&case, |d, h, s, rng: &mut Rng| {
                        CellKind::$kind.uniform::<f64>(d, h, s, rng)
                    })?;
                }
            }
        }
    };
}

bptt::for_each_cell!(register_architectures);

/// Widths that do not chain are rejected with a message naming the layer.
#[test]
fn mismatched_widths_are_clear_errors() {
    let mut rng = stream(1, &[]);
    let l0 = Unidirectional::new(VanillaRnn::<f64>::uniform(
        3,
        4,
        Activation::Tanh,
        0.5,
        &mut rng,
    ));
    let l1 = Unidirectional::new(VanillaRnn::<f64>::uniform(
        5,
        4,
        Activation::Tanh,
        0.5,
        &mut rng,
    ));
    let e = Stacked::new(vec![l0.clone(), l1.clone()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("layer 1 reads 5 units but layer 0 outputs 4"),
        "{e}"
    );
    let e = Dense::new(vec![l0.clone(), l0.clone()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("dense layer 1 must read 7 units"), "{e}");
    let net = Stacked::new(vec![l0]).unwrap();
    let e = net
        .forward(&[DMatrix::zeros(3, 1)], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("0 initial states given, the network has 1"),
        "{e}"
    );
}

/// A residual layer with an identity skip passes the output gradient straight to the input:
/// with the inner layer's weights zeroed (F ≡ const), ∂L/∂x_t = ∂L/∂y_t exactly.
#[test]
fn identity_skip_is_a_direct_gradient_path() {
    let cell = VanillaRnn::<f64>::zeros(3, 3, Activation::Tanh);
    let layer = Residual::new(Unidirectional::new(cell), &mut stream(2, &[]));
    assert!(layer.projection.is_none());
    let mut rng = stream(3, &[]);
    let xs: Vec<DMatrix<f64>> = (0..4)
        .map(|_| uniform_matrix(&mut rng, 3, 2, 1.0))
        .collect();
    let (ys, finals, cache) = layer.forward(&xs, &[DMatrix::zeros(3, 2)]).unwrap();
    for (y, x) in ys.iter().zip(&xs) {
        assert_eq!(y, x); // F(x) = tanh(0) = 0
    }
    let d_ys: Vec<DMatrix<f64>> = (0..4)
        .map(|_| uniform_matrix(&mut rng, 3, 2, 1.0))
        .collect();
    let dxs = layer.backward(&cache, &d_ys, &[DMatrix::zeros(3, 2)]).dxs;
    assert_eq!(dxs, d_ys);
    assert_eq!(finals.len(), 1);
}

/// PyTorch's four names of a cell with layer suffix `sfx`.
fn cell_names(sfx: &str) -> Vec<String> {
    ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
        .iter()
        .map(|n| format!("{n}{sfx}"))
        .collect()
}

/// `net`'s parameters are named `want`, and a backward pass's gradients have the same names,
/// order and shapes.
fn assert_named<N: SeqLayer<f64>>(net: &N, want: &[String]) {
    let params = net.params();
    assert_eq!(params.names(), want, "{}", net.name());
    assert_eq!(net.param_tensors(), want.len());
    assert_eq!(params.scalar_count(), net.parameter_count());
    let mut rng = stream(4, &[]);
    let xs: Vec<DMatrix<f64>> = (0..3)
        .map(|_| uniform_matrix(&mut rng, net.input_size(), 2, 1.0))
        .collect();
    let s0: Vec<DMatrix<f64>> = net
        .state_sizes()
        .iter()
        .map(|&r| DMatrix::zeros(r, 2))
        .collect();
    let (ys, finals, cache) = net.forward(&xs, &s0).unwrap();
    let g = net.backward(&cache, &ys, &finals);
    assert_eq!(g.params.names(), want, "{}: gradient names", net.name());
    for ((name, p), (_, d)) in params.iter().zip(g.params.iter()) {
        assert_eq!(p.shape(), d.shape(), "{}: {name}", net.name());
    }
}

/// Every wrapper names its parameters as PyTorch does (`weight_ih_l0`, …, `_reverse` for the
/// reverse direction, `skip_proj_l{i}` for a residual projection), and its gradients alike.
#[test]
fn parameters_and_gradients_carry_pytorchs_names() {
    let mut rng = stream(5, &[]);
    let lstm = |d, rng: &mut Rng| Lstm::<f64>::uniform(d, 2, (), 0.5, rng);
    let bi = Stacked::new(vec![
        Bidirectional::new(lstm(3, &mut rng), lstm(3, &mut rng)),
        Bidirectional::new(lstm(4, &mut rng), lstm(4, &mut rng)),
    ])
    .unwrap();
    let sfx = ["_l0", "_l0_reverse", "_l1", "_l1_reverse"];
    assert_named(
        &bi,
        &sfx.iter().flat_map(|s| cell_names(s)).collect::<Vec<_>>(),
    );

    let rnn = |d, h, rng: &mut Rng| {
        Unidirectional::new(VanillaRnn::<f64>::uniform(d, h, Activation::Tanh, 0.5, rng))
    };
    // layer 0 projects 3 → 4 units; layer 1 is an identity skip
    let res = Stacked::new(vec![
        Residual::new(rnn(3, 4, &mut rng), &mut rng),
        Residual::new(rnn(4, 4, &mut rng), &mut rng),
    ])
    .unwrap();
    let mut want = cell_names("_l0");
    want.push("skip_proj_l0".into());
    want.extend(cell_names("_l1"));
    assert_named(&res, &want);

    let dense = Dense::new(vec![rnn(3, 2, &mut rng), rnn(5, 2, &mut rng)]).unwrap();
    let want: Vec<String> = cell_names("_l0")
        .into_iter()
        .chain(cell_names("_l1"))
        .collect();
    assert_named(&dense, &want);
    assert_named(&rnn(3, 2, &mut rng), &cell_names("_l0"));
}

/// A model hands out its network's parameters borrowed from the cells (nothing copied), and
/// the mutable view writes through to them.
#[test]
fn network_parameters_are_views_of_the_cells() {
    let mut rng = stream(6, &[]);
    let lstm = |d, rng: &mut Rng| Lstm::<f64>::uniform(d, 2, (), 0.5, rng);
    let net = Stacked::new(vec![
        Bidirectional::new(lstm(3, &mut rng), lstm(3, &mut rng)),
        Bidirectional::new(lstm(4, &mut rng), lstm(4, &mut rng)),
    ])
    .unwrap();
    let mut m = NetworkModel::new(net, Readout::uniform(4, 2, 0.5, &mut rng)).unwrap();
    let view = m.net_params();
    let w = view.get("weight_hh_l1_reverse").unwrap();
    assert!(std::ptr::eq(w, m.net.layers[1].reverse.weight_hh()));
    assert!(std::ptr::eq(&view[0], m.net.layers[0].forward.weight_ih()));
    assert_eq!(view.to_params().names(), view.names());
    let mut params = m.net.params_mut();
    params.get_mut("bias_ih_l0_reverse").unwrap().fill(7.0);
    assert!(m.net.layers[0].reverse.bias_ih().iter().all(|&b| b == 7.0));
    assert!(m.net.layers[0].forward.bias_ih().iter().all(|&b| b != 7.0));
}

/// A bidirectional layer whose directions differ in hidden size is rejected (as PyTorch allows
/// only one size): an error, not a panic in the backward pass's row split.
#[test]
fn bidirectional_rejects_unequal_hidden_sizes() {
    use bptt::nn::arch::{Bidirectional, SeqLayer};
    let mut rng = bptt::rng::stream(5, &[]);
    let f = bptt::nn::cells::lstm::Lstm::<f64>::pytorch_init(3, 4, (), &mut rng);
    let r = bptt::nn::cells::lstm::Lstm::<f64>::pytorch_init(3, 5, (), &mut rng);
    let layer = Bidirectional::new(f, r);
    let xs = vec![nalgebra::DMatrix::zeros(3, 2); 3];
    let s0 = vec![
        nalgebra::DMatrix::zeros(8, 2),
        nalgebra::DMatrix::zeros(10, 2),
    ];
    let err = layer
        .forward(&xs, &s0)
        .expect_err("unequal sizes must be an error");
    assert!(err.to_string().contains("different hidden sizes"), "{err}");
}
