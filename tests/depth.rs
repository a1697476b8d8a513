//! The `depth` experiment: its measurement (`experiment::depth::last_step_gradients`) against
//! independent computations — the single cell's BPTT, the arch's `∂L/∂s0` of the continued
//! sequence, the per-step oracle's parameter and input gradients, a linear stack's closed form,
//! the identity path of a residual stack with zero inner weights — and the binary as a
//! researcher runs it: schemas and sidecar, byte-identical output for any thread count, shard
//! split and `kill -9` + `--resume`, bad flags.

mod cli;

use std::path::Path;

use approx::assert_relative_eq;
use bptt::experiment::depth::{
    self, Architecture, DeepNet, DepthGradients, last_step_gradients, readout_cross_entropy,
};
use bptt::nn::arch::{LayerGrads, SeqLayer};
use bptt::nn::cell::{BIAS_HH, BIAS_IH, Cell, WEIGHT_HH, WEIGHT_IH};
use bptt::nn::cells::CellKind;
use bptt::nn::engine::MatRef;
use bptt::nn::model::{LossAt, NetworkModel, Objective, Targets};
use bptt::nn::readout::Readout;
use bptt::nn::sequence::{self, Upstream};
use bptt::rng::{Rng, stream, uniform_matrix};
use cli::read;
use nalgebra::DMatrix;
use rand::RngExt;

const BIN: &str = env!("CARGO_BIN_EXE_depth");
const CELLS: [CellKind; 3] = [CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru];
const D: usize = 3;
const H: usize = 4;
const B: usize = 2;
const T: usize = 6;

/// Per-layer weight streams of the tests.
fn layer_rng(kind: CellKind) -> impl Fn(usize) -> Rng {
    move |l| stream(77, &[kind.seed_id(), l as u64])
}

/// Random inputs (`D × T·B`), a PyTorch-initialised readout to 3 classes, and classes.
fn problem(rng: &mut Rng) -> (DMatrix<f64>, Readout<f64>, Vec<usize>) {
    let x = uniform_matrix(rng, D, T * B, 1.0);
    let readout = Readout::uniform(H, 3, 0.5, rng);
    let classes = (0..B).map(|_| rng.random_range(0..3)).collect();
    (x, readout, classes)
}

fn steps_of(x: &DMatrix<f64>) -> Vec<DMatrix<f64>> {
    sequence::unpack(MatRef::from(x), B)
}

/// The cross-entropy objective at the last step, for the per-step oracle.
fn objective(classes: &[usize]) -> Objective<f64> {
    Objective {
        targets: Targets::CrossEntropy(vec![classes.to_vec()]),
        at: LossAt::Last,
    }
}

/// A one-layer stack's map is its cell's `∂L/∂h_t` from BPTT on the cell alone
/// (`nn::sequence`), and its input gradients are the cell's.
#[test]
fn one_layer_map_equals_the_cells_own_state_gradients() {
    for kind in CELLS {
        let rng = &mut stream(1, &[kind.seed_id()]);
        let (x, readout, classes) = problem(rng);
        let net = depth::plain(kind, D, H, 1, layer_rng(kind));
        let g =
            last_step_gradients(&net, &x, B, readout_cross_entropy(&readout, &classes)).unwrap();
        let cell = &net.layers[0].cell;
        let xs = steps_of(&x);
        let traj = sequence::forward(cell, &xs, &DMatrix::zeros(cell.state_size(), B)).unwrap();
        let h_last = traj.output(T, H);
        let (loss, d_last) = readout_cross_entropy(&readout, &classes)(&h_last).unwrap();
        let mut up = Upstream::none(T);
        up.d_outputs[T - 1] = Some(d_last);
        let own = sequence::backward(cell, &traj, &up, sequence::Truncation::Full).unwrap();
        assert_relative_eq!(g.loss, loss, epsilon = 1e-15, max_relative = 1e-14);
        for t in 1..=T {
            let mine = g.d_hidden[0].columns((t - 1) * B, B).clone_owned();
            let theirs = own.d_states[t].rows(0, H).clone_owned();
            assert_relative_eq!(mine, theirs, epsilon = 1e-15, max_relative = 1e-12);
        }
        for (mine, theirs) in g.grads.dxs.iter().zip(&own.dxs) {
            assert_relative_eq!(mine, theirs, epsilon = 1e-15, max_relative = 1e-12);
        }
        assert_eq!(g.map()[0].len(), T);
        assert_eq!(g.layer_parameters(), vec![cell.parameter_count()]);
    }
}

/// Every architecture's parameter, input and initial-state gradients equal the per-step
/// oracle's (`NetworkModel::loss_and_grads`, i.e. `SeqLayer::backward`, proven by
/// `tests/architectures.rs`); and the depth × time map equals what the arch's per-layer
/// gradients give ([`map_by_layers`]).
#[test]
fn every_architecture_matches_the_oracle_and_the_arch_per_layer_gradients() {
    for kind in CELLS {
        let rng = &mut stream(2, &[kind.seed_id()]);
        let (x, readout, classes) = problem(rng);
        let l = 3;
        let plain = depth::plain(kind, D, H, l, layer_rng(kind));
        let residual = depth::residual(kind, D, H, l, layer_rng(kind));
        let dense = depth::dense(kind, D, H, l, layer_rng(kind));
        check_against_oracle(&plain, &x, &readout, &classes);
        check_against_oracle(&residual, &x, &readout, &classes);
        check_against_oracle(&dense, &x, &readout, &classes);
        let loss = || readout_cross_entropy(&readout, &classes);
        let map = |g: DepthGradients| g.d_hidden;
        let by_layers = map_by_layers(&plain.layers, false, &x, &readout, &classes);
        check_maps(
            &map(last_step_gradients(&plain, &x, B, loss()).unwrap()),
            &by_layers,
        );
        let by_layers = map_by_layers(&residual.layers, false, &x, &readout, &classes);
        check_maps(
            &map(last_step_gradients(&residual, &x, B, loss()).unwrap()),
            &by_layers,
        );
        let by_layers = map_by_layers(&dense.layers, true, &x, &readout, &classes);
        check_maps(
            &map(last_step_gradients(&dense, &x, B, loss()).unwrap()),
            &by_layers,
        );
        // common random numbers: the residual stack's cells are the plain stack's
        for (p, r) in plain.layers.iter().zip(&residual.layers) {
            assert_eq!(p.cell, r.inner.cell);
        }
        assert_eq!(plain.layers[0].cell, dense.layers[0].cell);
    }
}

fn check_against_oracle<N: DeepNet<f64>>(
    net: &N,
    x: &DMatrix<f64>,
    readout: &Readout<f64>,
    classes: &[usize],
) {
    let g: DepthGradients =
        last_step_gradients(net, x, B, readout_cross_entropy(readout, classes)).unwrap();
    let model = NetworkModel::new(net.clone(), readout.clone()).unwrap();
    let xs = steps_of(x);
    let zeros: Vec<DMatrix<f64>> = net
        .state_sizes()
        .iter()
        .map(|&s| DMatrix::zeros(s, B))
        .collect();
    let (loss, oracle) = model
        .loss_and_grads(&xs, &zeros, &objective(classes))
        .unwrap();
    let name = net.name();
    assert_relative_eq!(g.loss, loss, epsilon = 1e-15, max_relative = 1e-13);
    assert_eq!(g.grads.params.names(), oracle.params.names(), "{name}");
    for ((_, mine), (_, theirs)) in g.grads.params.iter().zip(oracle.params.iter()) {
        assert_relative_eq!(mine, theirs, epsilon = 1e-15, max_relative = 1e-11);
    }
    for (mine, theirs) in g.grads.dxs.iter().zip(&oracle.dxs) {
        assert_relative_eq!(mine, theirs, epsilon = 1e-15, max_relative = 1e-11);
    }
    for (mine, theirs) in g.grads.d_s0.iter().zip(&oracle.d_s0) {
        assert_relative_eq!(mine, theirs, epsilon = 1e-15, max_relative = 1e-11);
    }
    // per-layer norms partition the whole gradient
    let total: f64 = g.layer_norms().iter().map(|n| n * n).sum();
    let whole: f64 = oracle.params.iter().map(|(_, m)| m.norm_squared()).sum();
    assert_relative_eq!(total, whole, epsilon = 1e-300, max_relative = 1e-12);
    assert_eq!(
        g.layer_parameters().iter().sum::<usize>(),
        net.parameter_count()
    );
}

fn check_maps(mine: &[DMatrix<f64>], theirs: &[DMatrix<f64>]) {
    assert_eq!(mine.len(), theirs.len());
    for (m, t) in mine.iter().zip(theirs) {
        assert_relative_eq!(m, t, epsilon = 1e-15, max_relative = 1e-10);
    }
}

/// The depth × time map from the arch's per-layer gradients ([`LayerGrads`] of each layer run
/// as its own [`SeqLayer`]): top-down, layer l's `∂L/∂(outputs)` is the loss's (top layer, step
/// T) plus what every layer reading it passes back (its `dxs`: the whole of it for a chain —
/// plain, residual —, the rows of layer l's block of `[x; h¹; …]` for `dense`). Then
/// `∂L/∂h^{(l)}_t` is that output gradient at step t plus the recurrent part: the `d_s0` of
/// layer l alone continued from its state at t over steps t+1..T.
fn map_by_layers<L: SeqLayer<f64>>(
    layers: &[L],
    dense: bool,
    x: &DMatrix<f64>,
    readout: &Readout<f64>,
    classes: &[usize],
) -> Vec<DMatrix<f64>> {
    let n = layers.len();
    let zeros = |l: &L| -> Vec<DMatrix<f64>> {
        l.state_sizes()
            .iter()
            .map(|&s| DMatrix::zeros(s, B))
            .collect()
    };
    // forward, layer by layer: the inputs each layer reads
    let mut inputs: Vec<Vec<DMatrix<f64>>> = Vec::new();
    let mut outputs: Vec<Vec<DMatrix<f64>>> = Vec::new();
    let mut records = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        let input: Vec<DMatrix<f64>> = (0..T)
            .map(|t| {
                let xt = x.columns(t * B, B).clone_owned();
                if l == 0 {
                    xt
                } else if dense {
                    let mut rows = vec![xt];
                    rows.extend(outputs.iter().map(|o| o[t].clone()));
                    let total = rows.iter().map(|r| r.nrows()).sum();
                    let mut m = DMatrix::zeros(total, B);
                    let mut at = 0;
                    for r in rows {
                        m.rows_mut(at, r.nrows()).copy_from(&r);
                        at += r.nrows();
                    }
                    m
                } else {
                    outputs[l - 1][t].clone()
                }
            })
            .collect();
        let (ys, _, rec) = layer.forward(&input, &zeros(layer)).unwrap();
        inputs.push(input);
        outputs.push(ys);
        records.push(rec);
    }
    // backward, top-down
    let h_last = outputs[n - 1][T - 1].clone();
    let (_, d_last) = readout_cross_entropy(readout, classes)(&h_last).unwrap();
    let mut d_out: Vec<Vec<DMatrix<f64>>> = layers
        .iter()
        .map(|l| vec![DMatrix::zeros(l.output_size(), B); T])
        .collect();
    d_out[n - 1][T - 1] = d_last;
    for l in (0..n).rev() {
        let finals: Vec<DMatrix<f64>> = zeros(&layers[l]);
        let grads: LayerGrads<f64> = layers[l].backward(&records[l], &d_out[l], &finals);
        for (t, dx) in grads.dxs.iter().enumerate() {
            if dense {
                for (j, below) in d_out[..l].iter_mut().enumerate() {
                    below[t] += dx.rows(D + j * H, H);
                }
            } else if l > 0 {
                d_out[l - 1][t] += dx;
            }
        }
    }
    // ∂L/∂h^{(l)}_t: the output gradient at t, plus the recurrence's
    (0..n)
        .map(|l| {
            let layer = &layers[l];
            let mut map = DMatrix::zeros(H, T * B);
            for t in 1..=T {
                let mut d = d_out[l][t - 1].clone();
                if t < T {
                    let (_, states_t, _) = layer.forward(&inputs[l][..t], &zeros(layer)).unwrap();
                    let (_, _, rec) = layer.forward(&inputs[l][t..], &states_t).unwrap();
                    let rest = layer.backward(&rec, &d_out[l][t..], &zeros(layer));
                    d += rest.d_s0[0].rows(0, H);
                }
                map.columns_mut((t - 1) * B, B).copy_from(&d);
            }
            map
        })
        .collect()
}

/// The loss `L = Σ g ⊙ h_T` (upstream `g` at the last step): `(0, g)`.
fn linear_loss(
    g: &DMatrix<f64>,
) -> impl FnOnce(&DMatrix<f64>) -> Result<(f64, DMatrix<f64>), bptt::error::BpttError> + '_ {
    move |_| Ok((0.0, g.clone()))
}

/// A plain stack of linear cells with `W_ih = a·I`, `W_hh = w·I` and zero biases: the gradient
/// reaches `h^{(l)}_t` along every monotone lattice path from `(L, T)`, so
/// `∂L/∂h^{(l)}_t = C(m + k, k)·a^m·w^k·g` with `m = L − l` layers and `k = T − t` steps to go,
/// and `∂L/∂x_t = a·∂L/∂h^{(1)}_t`.
#[test]
fn a_linear_plain_stack_has_the_lattice_path_closed_form() {
    let (a, w, layers) = (0.7, 0.9, 4);
    let mut net = depth::plain(
        CellKind::RnnLinear,
        H,
        H,
        layers,
        layer_rng(CellKind::RnnLinear),
    );
    for layer in &mut net.layers {
        let p = layer.cell.params_mut();
        p[WEIGHT_IH] = DMatrix::identity(H, H) * a;
        p[WEIGHT_HH] = DMatrix::identity(H, H) * w;
        p[BIAS_IH].fill(0.0);
        p[BIAS_HH].fill(0.0);
    }
    let rng = &mut stream(3, &[]);
    let x = uniform_matrix(rng, H, T * B, 1.0);
    let g = uniform_matrix(rng, H, B, 1.0);
    let grads = last_step_gradients(&net, &x, B, linear_loss(&g)).unwrap();
    let binomial =
        |n: usize, k: usize| -> f64 { (0..k).map(|i| (n - i) as f64 / (i + 1) as f64).product() };
    let map = grads.map();
    let g_norm = depth::mean_column_norm(MatRef::from(&g));
    for l in 1..=layers {
        for t in 1..=T {
            let (m, k) = (layers - l, T - t);
            let factor = binomial(m + k, k) * a.powi(m as i32) * w.powi(k as i32);
            let expected = &g * factor;
            let got = grads.d_hidden[l - 1].columns((t - 1) * B, B).clone_owned();
            assert_relative_eq!(got, expected, epsilon = 1e-15, max_relative = 1e-12);
            assert_relative_eq!(
                map[l - 1][t - 1],
                factor * g_norm,
                epsilon = 1e-15,
                max_relative = 1e-12
            );
        }
    }
    for t in 1..=T {
        let expected = grads.d_hidden[0].columns((t - 1) * B, B) * a;
        assert_relative_eq!(
            grads.grads.dxs[t - 1],
            expected,
            epsilon = 1e-15,
            max_relative = 1e-12
        );
    }
}

/// A residual stack whose cells are all zero passes the loss's gradient down the identity
/// path unchanged: `∂L/∂h^{(l)}_T = g` at every layer, `∂L/∂x_T = g` (D = H: identity skips
/// everywhere) or `Pᵀ g` (the first layer's projection), nothing at earlier steps; a plain stack
/// of the same zero cells passes nothing to its input.
#[test]
fn a_residual_stack_of_zero_cells_is_the_identity_path() {
    for kind in CELLS {
        for d in [H, D] {
            let mut net = depth::residual(kind, d, H, 5, layer_rng(kind));
            for layer in &mut net.layers {
                for m in layer.inner.cell.params_mut().tensors_mut() {
                    m.fill(0.0);
                }
            }
            assert_eq!(net.layers[0].projection.is_some(), d != H);
            let rng = &mut stream(4, &[kind.seed_id()]);
            let x = uniform_matrix(rng, d, T * B, 1.0);
            let g = uniform_matrix(rng, H, B, 1.0);
            let grads = last_step_gradients(&net, &x, B, linear_loss(&g)).unwrap();
            for l in 0..5 {
                assert_relative_eq!(
                    grads.d_hidden[l].columns((T - 1) * B, B).clone_owned(),
                    g,
                    epsilon = 0.0,
                    max_relative = 0.0
                );
            }
            let d_x_last = match &net.layers[0].projection {
                None => g.clone(),
                Some(p) => p.tr_mul(&g),
            };
            assert_relative_eq!(
                grads.grads.dxs[T - 1],
                d_x_last,
                epsilon = 1e-15,
                max_relative = 1e-14
            );
            for t in 0..T - 1 {
                assert_eq!(grads.grads.dxs[t].amax(), 0.0, "{kind:?} step {t}");
            }
            let mut plain = depth::plain(kind, d, H, 5, layer_rng(kind));
            for layer in &mut plain.layers {
                for m in layer.cell.params_mut().tensors_mut() {
                    m.fill(0.0);
                }
            }
            let grads = last_step_gradients(&plain, &x, B, linear_loss(&g)).unwrap();
            assert!(grads.grads.dxs.iter().all(|dx| dx.amax() == 0.0));
        }
    }
}

/// The measurement refuses inputs that are not whole steps of the batch, and a loss of the
/// wrong shape, with an error naming them.
#[test]
fn bad_shapes_are_clear_errors() {
    let net = depth::plain(CellKind::Lstm, D, H, 2, layer_rng(CellKind::Lstm));
    let g = DMatrix::zeros(H, B);
    let x = DMatrix::zeros(D, T * B + 1);
    let err = last_step_gradients(&net, &x, B, linear_loss(&g)).unwrap_err();
    assert!(err.to_string().contains("not T ≥ 1 steps"), "{err}");
    let x = DMatrix::zeros(D, T * B);
    let wrong = DMatrix::zeros(H + 1, B);
    let err = last_step_gradients(&net, &x, B, linear_loss(&wrong)).unwrap_err();
    assert!(err.to_string().contains("∂L/∂h_T"), "{err}");
    assert_eq!("dense".parse::<Architecture>(), Ok(Architecture::Dense));
    assert!(
        "highway"
            .parse::<Architecture>()
            .unwrap_err()
            .contains("unknown architecture 'highway'")
    );
}

// ---- the binary as a user runs it ----

/// `--quick` for 2 cells: 2 × 3 × 3 depths × 2 seeds = 36 stacks.
const SMALL: &[&str] = &["--quick", "--cells", "rnn-tanh,lstm", "--quiet"];

fn small(dir: &Path, extra: &[&str]) {
    let mut args = vec!["--out", dir.to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    cli::run_ok(BIN, &args);
}

#[test]
fn csv_schemas_and_sidecar() {
    let dir = cli::temp_dir("depth", "schema");
    small(&dir, &[]);
    let layers = read(&dir, "layers.csv");
    let mut lines = layers.lines();
    assert_eq!(
        lines.next().unwrap(),
        "cell,architecture,layers,seed,layer,parameters,grad_norm,loss"
    );
    // Σ depths (1 + 2 + 3) layers × 2 seeds × 3 architectures × 2 cells
    assert_eq!(lines.count(), 6 * 2 * 3 * 2);
    assert!(
        layers
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("rnn-tanh,plain,1,0,1,")
    );
    let map = read(&dir, "map.csv");
    assert_eq!(
        map.lines().next().unwrap(),
        "cell,architecture,layers,seed,layer,step,distance,grad_norm"
    );
    // (input + every layer) × 12 steps per stack
    assert_eq!(map.lines().count() - 1, (2 + 3 + 4) * 12 * 2 * 3 * 2);
    for l in map.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let (step, distance): (usize, usize) = (f[5].parse().unwrap(), f[6].parse().unwrap());
        assert_eq!(step + distance, 12, "{l}");
        let norm: f64 = f[7].parse().unwrap();
        assert!(norm.is_finite() && norm >= 0.0, "{l}");
    }
    let training = read(&dir, "training.csv");
    assert_eq!(
        training.lines().next().unwrap(),
        "cell,architecture,layers,seed,parameters,updates,test_error,success,diverged"
    );
    // train depths 1 and 3, 2 seeds
    assert_eq!(training.lines().count() - 1, 2 * 2 * 3 * 2);
    for l in training.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let err: f64 = f[6].parse().unwrap();
        assert!((0.0..=1.0).contains(&err), "{l}");
        assert_eq!(f[7] == "1", err < 0.01, "{l}");
    }
    let curves = read(&dir, "curves.csv");
    assert_eq!(
        curves.lines().next().unwrap(),
        "cell,architecture,layers,seed,update,loss,grad_norm,valid_error"
    );
    let side: serde_json::Value = serde_json::from_str(&read(&dir, "depth.json")).unwrap();
    assert_eq!(side["experiment"], "depth");
    assert_eq!(
        side["outputs"],
        serde_json::json!(["layers.csv", "map.csv", "training.csv", "curves.csv"])
    );
    assert_eq!(side["plan"]["setup"]["length"], 12);
    assert_eq!(side["results"]["init"].as_array().unwrap().len(), 2 * 3 * 3);
    assert_eq!(
        side["results"]["train"].as_array().unwrap().len(),
        2 * 3 * 2
    );
    // one part only: only its tables
    let dir = cli::temp_dir("depth", "part");
    small(&dir, &["--part", "init"]);
    assert!(dir.join("map.csv").exists() && !dir.join("training.csv").exists());
}

#[test]
fn output_is_byte_identical_for_any_thread_count_and_shard_split() {
    cli::assert_thread_and_shard_invariant(
        "depth",
        &["layers.csv", "map.csv", "training.csv", "curves.csv"],
        small,
    );
}

#[test]
fn a_killed_run_resumes_to_identical_bytes() {
    let args = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = ["--out", dir.to_str().unwrap(), "--threads", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(SMALL.iter().map(|s| s.to_string()));
        v.extend(["--updates", "300", "--eval-every", "100", "--length", "20"].map(String::from));
        v
    };
    cli::assert_resumes_after_kill(
        BIN,
        "depth",
        args,
        (5, 120, "depth.json"),
        &["layers.csv", "map.csv", "training.csv", "curves.csv"],
    );
}

#[test]
fn bad_flags_exit_2_with_a_clear_message() {
    cli::assert_bad_flags_exit_2(
        BIN,
        "depth",
        &["--quiet", "--quick"],
        &[
            (vec!["--cells", "elman"], "unknown cell 'elman'"),
            (
                vec!["--architectures", "highway"],
                "unknown architecture 'highway'",
            ),
            (vec!["--depths", "0"], "--depths: depth 0 is out of range"),
            (
                vec!["--train-depths", "65"],
                "--train-depths: depth 65 is out of range",
            ),
            (
                vec!["--task", "addition"],
                "is not classified at the last step",
            ),
            (vec!["--task", "adding"], "unknown task 'adding'"),
            (vec!["--length", "5"], "--length 5 is below the minimum 10"),
            (vec!["--seeds", "0"], "--seeds must be at least 1"),
            (vec!["--hidden", "0"], "--hidden must be at least 1"),
            (vec!["--lr=-1"], "the learning rate = -1 is out of range"),
            (vec!["--clip", "0"], "--clip must be a positive number"),
            (vec!["--part", "both"], "invalid value 'both'"),
            (vec!["--shard", "3/2"], "shard"),
            (vec!["--threads", "0"], "--threads must be at least 1"),
            (
                vec!["--init-seeds", "18446744073709551615"],
                "this plan needs about",
            ),
        ],
    );
}
