//! The network trainer (`bptt::train::trainer`) against an independent per-step reference: the
//! harness-proven per-step network API (`SeqLayer::forward` / `backward` on lists of matrices),
//! a readout, losses and optimizers written out here step by step with nalgebra. K updates of
//! every wrapper, both readout placements, every loss, SGD with momentum and Adam, token and
//! dense inputs, the carried state of truncated BPTT over a stream: parameters equal to 1e-12
//! in f64. Then f32 against f64, schedules, the safety net and bad input; a trainer restored
//! from `Trainer::state` (a checkpoint) continuing bit-identically; Ω's weight decaying as 1/t.
//!
//! And the §4.1 vanilla RNN (`experiment::pathological`'s models, `tests/paper_setup/`): the
//! trainer's loss, gradients and every ‖δ_k‖² Ω reads equal the generic, finite-difference-proven
//! `Model::loss_and_grads` for every task and initialisation (and ReLU and linear cells); SGD-CR
//! adds α∇Ω before clipping; clipping bounds the step; the safety net's trigger and its
//! shrinking of W_hh.

mod paper_setup;

use approx::relative_eq;
use bptt::experiment::pathological::{ALL_INITS, Algorithm, Hyper, Init, RnnModel};
use bptt::experiment::tasks::{ALL_TASKS, Task};
use bptt::nn::activation::Activation;
use bptt::nn::arch::{Bidirectional, Dense, Residual, SeqLayer, Stacked, Unidirectional};
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::gru::{Gru, GruVariant};
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::engine::{Inputs, MatRef};
use bptt::nn::model::NetworkModel;
use bptt::nn::params::Params;
use bptt::nn::readout::Readout;
use bptt::nn::sequence::Truncation;
use bptt::rng::{Rng, stream, uniform_matrix};
use bptt::train::omega;
use bptt::train::optim::Optimizer;
use bptt::train::trainer::{
    Batch, Config, Loss, ReadoutAt, Schedule, Targets, Trainer, safety_net_triggered,
};
use nalgebra::DMatrix;
use paper_setup::{generic, model, objective, trainer};
use rand::RngExt;

const VOCAB: usize = 5;

/// A batch's data in both forms: token ids (and the equivalent one-hot per-step matrices).
struct Data {
    ids: Vec<usize>,
    xs: Vec<DMatrix<f64>>,
    x: DMatrix<f64>,
    classes: Vec<usize>,
    values: DMatrix<f64>,
    steps: usize,
    batch: usize,
}

fn data(rng: &mut Rng, steps: usize, batch: usize, outputs: usize, every: bool) -> Data {
    let ids: Vec<usize> = (0..steps * batch)
        .map(|_| rng.random_range(0..VOCAB))
        .collect();
    let mut x = DMatrix::zeros(VOCAB, steps * batch);
    for (j, &id) in ids.iter().enumerate() {
        x[(id, j)] = 1.0;
    }
    let xs = (0..steps)
        .map(|t| x.columns(t * batch, batch).into_owned())
        .collect();
    let n = if every { steps * batch } else { batch };
    let classes = (0..n).map(|_| rng.random_range(0..outputs)).collect();
    // in [0, 1]: MSE regression values and sigmoid cross-entropy's multi-label targets
    let values = uniform_matrix::<f64>(rng, outputs, n, 0.5).add_scalar(0.5);
    Data {
        ids,
        xs,
        x,
        classes,
        values,
        steps,
        batch,
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The loss and ∂L/∂y of one readout column, written out.
fn column_loss(loss: Loss, y: &[f64], class: usize, target: &[f64]) -> (f64, Vec<f64>) {
    match loss {
        Loss::SoftmaxCrossEntropy => {
            let m = y.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + y.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            let mut g: Vec<f64> = y.iter().map(|v| (v - lse).exp()).collect();
            g[class] -= 1.0;
            (lse - y[class], g)
        }
        Loss::Mse => (
            y.iter().zip(target).map(|(y, t)| (y - t) * (y - t)).sum(),
            y.iter().zip(target).map(|(y, t)| 2.0 * (y - t)).collect(),
        ),
        Loss::SigmoidCrossEntropy => (
            y.iter()
                .zip(target)
                .map(|(y, t)| (1.0 + y.exp()).ln() - t * y)
                .sum(),
            y.iter().zip(target).map(|(y, t)| sigmoid(*y) - t).collect(),
        ),
    }
}

/// The reference's optimizer state: one moment pair per tensor (network's, then readout's).
struct RefOpt {
    m: Vec<DMatrix<f64>>,
    v: Vec<DMatrix<f64>>,
    t: i32,
}

/// One reference update; returns the loss. `s0` are the initial states.
fn reference_update<N: SeqLayer<f64>>(
    model: &mut NetworkModel<f64, N>,
    d: &Data,
    s0: &[DMatrix<f64>],
    cfg: &Config,
    opt: &mut RefOpt,
) -> (f64, Vec<DMatrix<f64>>) {
    let (ys, finals, rec) = model.net.forward(&d.xs, s0).unwrap();
    let (w, b) = (
        model.readout.params()[0].clone(),
        model.readout.params()[1].clone(),
    );
    let read: Vec<usize> = match cfg.readout_at {
        ReadoutAt::Last => vec![d.steps - 1],
        ReadoutAt::EveryStep => (0..d.steps).collect(),
    };
    let n = (read.len() * d.batch) as f64;
    let mut loss = 0.0;
    let mut dw = DMatrix::zeros(w.nrows(), w.ncols());
    let mut db = DMatrix::zeros(b.nrows(), 1);
    let mut d_ys: Vec<DMatrix<f64>> = ys
        .iter()
        .map(|y| DMatrix::zeros(y.nrows(), y.ncols()))
        .collect();
    for (k, &t) in read.iter().enumerate() {
        let y = &w * &ys[t] + DMatrix::from_fn(w.nrows(), d.batch, |i, _| b[(i, 0)]);
        let mut dy = DMatrix::zeros(y.nrows(), y.ncols());
        for j in 0..d.batch {
            let col = k * d.batch + j;
            let yv: Vec<f64> = y.column(j).iter().cloned().collect();
            let tv: Vec<f64> = d.values.column(col).iter().cloned().collect();
            let (l, g) = column_loss(cfg.loss, &yv, d.classes[col], &tv);
            loss += l / n;
            for (i, g) in g.iter().enumerate() {
                dy[(i, j)] = g / n;
            }
        }
        dw += &dy * ys[t].transpose();
        db += dy.column_sum();
        d_ys[t] = w.transpose() * &dy;
    }
    let zeros: Vec<DMatrix<f64>> = finals
        .iter()
        .map(|f| DMatrix::zeros(f.nrows(), f.ncols()))
        .collect();
    let g = model.net.backward(&rec, &d_ys, &zeros).params;
    let mut grads: Vec<DMatrix<f64>> = g.iter().map(|(_, g)| g.clone()).collect();
    grads.push(dw);
    grads.push(db);
    let norm = grads.iter().map(|g| g.norm_squared()).sum::<f64>().sqrt();
    if let Some(c) = cfg.clip
        && norm >= c
    {
        for g in &mut grads {
            *g *= c / norm;
        }
    }
    opt.t += 1;
    let mut params: Vec<&mut DMatrix<f64>> = model.net.params_mut().into_tensors().collect();
    params.extend(model.readout.params_mut().tensors_mut());
    for (i, (p, g)) in params.into_iter().zip(&grads).enumerate() {
        match cfg.optimizer {
            Optimizer::Sgd { lr, momentum } => {
                opt.m[i] = &opt.m[i] * momentum + g;
                *p -= &opt.m[i] * lr;
            }
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                opt.m[i] = &opt.m[i] * beta1 + g * (1.0 - beta1);
                opt.v[i] = &opt.v[i] * beta2 + g.component_mul(g) * (1.0 - beta2);
                let (c1, c2) = (1.0 - beta1.powi(opt.t), 1.0 - beta2.powi(opt.t));
                for k in 0..p.len() {
                    p[k] -= lr * (opt.m[i][k] / c1) / ((opt.v[i][k] / c2).sqrt() + eps);
                }
            }
        }
    }
    (loss, finals)
}

fn assert_models_close<N: SeqLayer<f64>>(
    what: &str,
    got: &NetworkModel<f64, N>,
    want: &NetworkModel<f64, N>,
) {
    let (g, w) = (got.net.params(), want.net.params());
    let g = g
        .tensors()
        .chain(got.readout.params().iter().map(|(_, m)| m));
    let w = w
        .tensors()
        .chain(want.readout.params().iter().map(|(_, m)| m));
    for (k, (a, b)) in g.zip(w).enumerate() {
        let floor = 1e-12 * b.amax().max(1e-300);
        for (x, y) in a.iter().zip(b.iter()) {
            assert!(
                relative_eq!(*x, *y, epsilon = floor, max_relative = 1e-12),
                "{what}: tensor {k}: trainer {x:e} vs reference {y:e}"
            );
        }
    }
}

/// K updates of the trainer and of the reference from the same model on the same batches.
fn check_training<N: SeqLayer<f64>>(
    what: &str,
    model: NetworkModel<f64, N>,
    cfg: Config,
    tokens: bool,
    seed: u64,
) {
    let mut rng = stream(seed, &[]);
    let outputs = model.readout.output_size();
    let every = cfg.readout_at == ReadoutAt::EveryStep;
    let batches: Vec<Data> = (0..4)
        .map(|_| data(&mut rng, 5, 3, outputs, every))
        .collect();
    let (mut ours, mut theirs) = (model.clone(), model);
    let mut trainer = Trainer::new(&ours, cfg).unwrap();
    let mut all: Vec<DMatrix<f64>> = theirs.net.params().tensors().cloned().collect();
    all.extend(theirs.readout.params().iter().map(|(_, m)| m.clone()));
    let zeros: Vec<DMatrix<f64>> = all
        .iter()
        .map(|m| DMatrix::zeros(m.nrows(), m.ncols()))
        .collect();
    let mut opt = RefOpt {
        m: zeros.clone(),
        v: zeros,
        t: 0,
    };
    let mut s0: Vec<DMatrix<f64>> = theirs
        .net
        .state_sizes()
        .iter()
        .map(|&r| DMatrix::zeros(r, 3))
        .collect();
    for (k, d) in batches.iter().enumerate() {
        let targets = match cfg.loss {
            Loss::SoftmaxCrossEntropy => Targets::Classes(&d.classes),
            _ => Targets::Values(MatRef::from(&d.values)),
        };
        let inputs = if tokens {
            Inputs::Tokens {
                ids: &d.ids,
                vocab: VOCAB,
            }
        } else {
            Inputs::Dense(MatRef::from(&d.x))
        };
        let batch = Batch {
            inputs,
            batch: d.batch,
            targets,
        };
        let rec = trainer.update(&mut ours, &batch).unwrap();
        let (loss, finals) = reference_update(&mut theirs, d, &s0, &cfg, &mut opt);
        assert!(
            relative_eq!(rec.loss, loss, epsilon = 1e-13, max_relative = 1e-12),
            "{what}: update {k}: loss {} vs {loss}",
            rec.loss
        );
        assert_models_close(&format!("{what} after update {}", k + 1), &ours, &theirs);
        if cfg.carry_state {
            s0 = finals;
        }
    }
}

/// The four networks the trainer is checked on.
type Networks = (
    NetworkModel<f64, Unidirectional<Lstm<f64>>>,
    NetworkModel<f64, Stacked<Bidirectional<Gru<f64>>>>,
    NetworkModel<f64, Stacked<Residual<f64, Unidirectional<Lstm<f64>>>>>,
    NetworkModel<f64, Dense<Unidirectional<VanillaRnn<f64>>>>,
);

fn networks(seed: u64) -> Networks {
    let rng = &mut stream(seed, &[1]);
    let readout = |h: usize, rng: &mut Rng| Readout::uniform(h, 3, 0.5, rng);
    let lstm = Unidirectional::new(Lstm::pytorch_init(VOCAB, 6, (), rng));
    let gru = |d, rng: &mut Rng| Gru::pytorch_init(d, 4, GruVariant::ResetAfter, rng);
    let bi = Stacked::new(vec![
        Bidirectional::new(gru(VOCAB, rng), gru(VOCAB, rng)),
        Bidirectional::new(gru(8, rng), gru(8, rng)),
    ])
    .unwrap();
    let res = Stacked::new(vec![
        Residual::new(
            Unidirectional::new(Lstm::pytorch_init(VOCAB, 6, (), rng)),
            rng,
        ),
        Residual::new(Unidirectional::new(Lstm::pytorch_init(6, 6, (), rng)), rng),
    ])
    .unwrap();
    let rnn = |d, rng: &mut Rng| {
        Unidirectional::new(VanillaRnn::pytorch_init(d, 4, Activation::Tanh, rng))
    };
    let dense = Dense::new(vec![rnn(VOCAB, rng), rnn(VOCAB + 4, rng)]).unwrap();
    (
        NetworkModel::new(lstm, readout(6, rng)).unwrap(),
        NetworkModel::new(bi, readout(8, rng)).unwrap(),
        NetworkModel::new(res, readout(6, rng)).unwrap(),
        NetworkModel::new(dense, readout(4, rng)).unwrap(),
    )
}

fn configs() -> Vec<(&'static str, Config)> {
    let base = Config::default();
    vec![
        ("last/ce/sgd+clip", base),
        (
            "every/ce/momentum",
            Config {
                readout_at: ReadoutAt::EveryStep,
                optimizer: Optimizer::Sgd {
                    lr: 0.05,
                    momentum: 0.9,
                },
                clip: None,
                ..base
            },
        ),
        (
            "last/mse/adam/clip",
            Config {
                loss: Loss::Mse,
                optimizer: Optimizer::adam(0.01),
                clip: Some(0.5),
                ..base
            },
        ),
        (
            "every/sigmoid-ce/adam/carried",
            Config {
                readout_at: ReadoutAt::EveryStep,
                loss: Loss::SigmoidCrossEntropy,
                optimizer: Optimizer::adam(0.02),
                carry_state: true,
                ..base
            },
        ),
    ]
}

#[test]
fn k_updates_equal_the_per_step_reference_for_every_wrapper_loss_and_optimizer() {
    // (the reference has no schedule: schedules are checked on their own below)
    for (name, cfg) in configs() {
        for tokens in [true, false] {
            let (a, b, c, d) = networks(3);
            let tag = |net: &str| format!("{net} {name} tokens={tokens}");
            check_training(&tag("lstm"), a, cfg, tokens, 11);
            check_training(&tag("2x bi-gru"), b, cfg, tokens, 12);
            check_training(&tag("2x res-lstm"), c, cfg, tokens, 13);
            check_training(&tag("dense 2x rnn"), d, cfg, tokens, 14);
        }
    }
}

#[test]
fn schedules_give_their_learning_rates() {
    let close = |a: f64, b: f64| relative_eq!(a, b, epsilon = 1e-15, max_relative = 1e-14);
    assert!(close(Schedule::Constant.lr(0.1, 99), 0.1));
    let step = Schedule::Step {
        every: 10,
        factor: 0.5,
    };
    assert!(
        close(step.lr(0.1, 9), 0.1)
            && close(step.lr(0.1, 10), 0.05)
            && close(step.lr(0.1, 25), 0.025)
    );
    assert!(close(
        Schedule::Exponential { gamma: 0.9 }.lr(1.0, 3),
        0.729
    ));
    let cos = Schedule::Cosine { total: 100 };
    assert!(
        close(cos.lr(2.0, 0), 2.0) && close(cos.lr(2.0, 50), 1.0) && cos.lr(2.0, 100).abs() < 1e-15
    );
    // the trainer reports and uses the schedule's rate
    let (a, ..) = networks(5);
    let mut m = a;
    let cfg = Config {
        schedule: step,
        ..Config::default()
    };
    let mut tr = Trainer::new(&m, cfg).unwrap();
    let d = data(&mut stream(6, &[]), 4, 2, 3, false);
    let batch = Batch {
        inputs: Inputs::Tokens {
            ids: &d.ids,
            vocab: VOCAB,
        },
        batch: 2,
        targets: Targets::Classes(&d.classes),
    };
    let lrs: Vec<f64> = (0..12)
        .map(|_| tr.update(&mut m, &batch).unwrap().lr)
        .collect();
    assert!(close(lrs[9], 0.01) && close(lrs[10], 0.005), "{lrs:?}");
}

#[test]
fn f32_training_follows_f64() {
    let (_, b, ..) = networks(7);
    let mut m32 = b.rescalar::<f32>();
    let mut m64 = b;
    let cfg = Config {
        readout_at: ReadoutAt::EveryStep,
        optimizer: Optimizer::adam(0.01),
        ..Config::default()
    };
    let (mut t32, mut t64) = (
        Trainer::new(&m32, cfg).unwrap(),
        Trainer::new(&m64, cfg).unwrap(),
    );
    let mut rng = stream(8, &[]);
    for _ in 0..5 {
        let d = data(&mut rng, 6, 4, 3, true);
        let b64 = Batch {
            inputs: Inputs::Tokens {
                ids: &d.ids,
                vocab: VOCAB,
            },
            batch: 4,
            targets: Targets::Classes(&d.classes),
        };
        let b32 = Batch {
            inputs: Inputs::Tokens {
                ids: &d.ids,
                vocab: VOCAB,
            },
            batch: 4,
            targets: Targets::Classes(&d.classes),
        };
        let (r32, r64) = (
            t32.update(&mut m32, &b32).unwrap(),
            t64.update(&mut m64, &b64).unwrap(),
        );
        assert!(
            relative_eq!(r32.loss, r64.loss, epsilon = 1e-5, max_relative = 1e-5),
            "loss f32 {} vs f64 {}",
            r32.loss,
            r64.loss
        );
    }
    // parameters after 5 Adam steps of 0.01: f32 rounding (≈ 6e-8 relative per operation)
    for (a, b) in m32.net.params().tensors().zip(m64.net.params().tensors()) {
        for (x, y) in a.iter().zip(b.iter()) {
            assert!(
                relative_eq!(*x as f64, *y, epsilon = 1e-5, max_relative = 1e-4),
                "f32 {x} vs f64 {y}"
            );
        }
    }
}

#[test]
fn the_safety_net_shrinks_the_recurrent_matrices() {
    let (a, ..) = networks(9);
    let mut m = a;
    let before = m.net.params().to_params();
    let cfg = Config {
        safety_net: true,
        clip: None,
        optimizer: Optimizer::sgd(1.0),
        ..Config::default()
    };
    let mut tr = Trainer::new(&m, cfg).unwrap();
    // an infinite input makes every gradient NaN
    let mut x = DMatrix::zeros(VOCAB, 6);
    x[(0, 0)] = f64::INFINITY;
    let classes = [0, 1];
    let batch = Batch {
        inputs: Inputs::Dense(MatRef::from(&x)),
        batch: 2,
        targets: Targets::Classes(&classes),
    };
    let rec = tr.update(&mut m, &batch).unwrap();
    assert!(rec.safety && rec.grad_norm.is_nan());
    for ((name, w0), w1) in before.iter().zip(m.net.params().tensors()) {
        // lr 1: W ← W − 0.02 W for weight_hh, unchanged otherwise
        let want = if name.starts_with("weight_hh") {
            w0 * 0.98
        } else {
            w0.clone()
        };
        for (x, y) in w1.iter().zip(want.iter()) {
            assert!(
                relative_eq!(*x, *y, epsilon = 1e-15, max_relative = 1e-15),
                "{name}"
            );
        }
    }
}

#[test]
fn dtypes_parse_and_print() {
    use bptt::train::trainer::Dtype;
    for (s, d) in [("f32", Dtype::F32), ("float64", Dtype::F64)] {
        assert_eq!(s.parse::<Dtype>().unwrap(), d);
    }
    assert_eq!(Dtype::F32.to_string(), "f32");
    assert!("f16".parse::<Dtype>().is_err());
}

#[test]
fn bad_batches_are_errors() {
    let (a, ..) = networks(10);
    let mut m = a;
    let mut tr = Trainer::new(&m, Config::default()).unwrap();
    let ids = vec![0usize; 6];
    let classes = [0, 1];
    let ok = Batch {
        inputs: Inputs::Tokens {
            ids: &ids,
            vocab: VOCAB,
        },
        batch: 2,
        targets: Targets::Classes(&classes),
    };
    assert!(tr.update(&mut m, &ok).is_ok());
    let too_few = [0];
    let values = DMatrix::zeros(3, 2);
    let bad = [
        Batch {
            targets: Targets::Classes(&too_few),
            ..ok
        },
        Batch {
            targets: Targets::Values(MatRef::from(&values)),
            ..ok
        },
        Batch { batch: 4, ..ok },
        Batch {
            inputs: Inputs::Tokens {
                ids: &ids,
                vocab: VOCAB + 1,
            },
            ..ok
        },
    ];
    for b in &bad {
        assert!(tr.update(&mut m, b).is_err());
    }
    let wrong = Config {
        optimizer: Optimizer::sgd(-1.0),
        ..Config::default()
    };
    assert!(Trainer::new(&m, wrong).is_err());
    let wrong = Config {
        clip: Some(0.0),
        ..Config::default()
    };
    assert!(Trainer::new(&m, wrong).is_err());
}

#[test]
fn chunked_prediction_equals_the_whole_forward_for_every_wrapper() {
    // Trainer::predict carries the states from one chunk of steps to the next: for every
    // causal wrapper, chunks of 1, 3 and T steps give the readout of the whole-sequence pass;
    // a bidirectional network only whole (its reverse direction reads the future)
    let (a, b, c, d) = networks(21);
    fn check<N: SeqLayer<f64>>(what: &str, m: &NetworkModel<f64, N>, causal: bool) {
        assert_eq!(m.net.causal(), causal, "{what}");
        let (steps, batch) = (7, 3);
        let data = data(&mut stream(22, &[]), steps, batch, 3, true);
        let inputs = Inputs::Tokens {
            ids: &data.ids,
            vocab: VOCAB,
        };
        let s0: Vec<DMatrix<f64>> = m
            .net
            .state_sizes()
            .iter()
            .map(|&r| DMatrix::zeros(r, batch))
            .collect();
        let (outs, ..) = m.net.forward(&data.xs, &s0).unwrap();
        for at in [ReadoutAt::EveryStep, ReadoutAt::Last] {
            let cfg = Config {
                readout_at: at,
                ..Config::default()
            };
            let mut tr = Trainer::new(m, cfg).unwrap();
            let chunks: &[usize] = if m.net.causal() {
                &[1, 3, steps, 100]
            } else {
                let e = tr
                    .predict(m, inputs, batch, steps - 1, &mut |_, _| ())
                    .unwrap_err();
                assert!(e.to_string().contains("reads the whole sequence"), "{e}");
                &[steps, 100]
            };
            for &chunk in chunks {
                let mut seen = Vec::new();
                tr.predict(m, inputs, batch, chunk, &mut |t, y| {
                    seen.push((t, y.clone()))
                })
                .unwrap();
                let expect: Vec<usize> = match at {
                    ReadoutAt::EveryStep => (0..steps).collect(),
                    ReadoutAt::Last => vec![steps - 1],
                };
                assert_eq!(
                    seen.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
                    expect,
                    "{what}"
                );
                for (t, y) in &seen {
                    let want = m.readout.forward(&outs[*t]);
                    for (g, w) in y.iter().zip(want.iter()) {
                        assert!(
                            relative_eq!(*g, *w, epsilon = 1e-14, max_relative = 1e-12),
                            "{what} {at:?} chunk {chunk} step {t}: {g} vs {w}"
                        );
                    }
                }
            }
            assert!(tr.predict(m, inputs, batch, 0, &mut |_, _| ()).is_err());
            assert!(tr.predict(m, inputs, 2, 3, &mut |_, _| ()).is_err());
        }
    }
    check("lstm", &a, true);
    check("2x bi-gru", &b, false);
    check("res-lstm", &c, true);
    check("dense rnn", &d, true);
    // a residual bidirectional layer is not causal either
    let mut rng = stream(27, &[]);
    let gru = |rng: &mut Rng| Gru::<f64>::pytorch_init(4, 2, GruVariant::ResetAfter, rng);
    let res_bi = Residual::new(Bidirectional::new(gru(&mut rng), gru(&mut rng)), &mut rng);
    assert!(!res_bi.causal());
}

#[test]
fn omega_is_refused_for_networks_that_are_not_one_vanilla_layer() {
    use bptt::train::trainer::OmegaRule;
    let (lstm, _, _, dense) = networks(23);
    let cfg = Config {
        omega: Some(OmegaRule::constant(2.0, 1e-20)),
        ..Config::default()
    };
    for e in [
        Trainer::new(&lstm, cfg).unwrap_err(),
        Trainer::new(&dense, cfg).unwrap_err(),
    ] {
        assert!(e.to_string().contains("single vanilla RNN layer"), "{e}");
    }
    let rnn = NetworkModel::new(
        Unidirectional::new(VanillaRnn::<f64>::pytorch_init(
            VOCAB,
            4,
            Activation::Tanh,
            &mut stream(24, &[]),
        )),
        Readout::uniform(4, 3, 0.5, &mut stream(25, &[])),
    )
    .unwrap();
    for (alpha, bound) in [(-1.0, 1e-20), (f64::NAN, 1e-20), (1.0, f64::INFINITY)] {
        let bad = Config {
            omega: Some(OmegaRule::constant(alpha, bound)),
            ..Config::default()
        };
        let e = Trainer::new(&rnn, bad).unwrap_err();
        assert!(e.to_string().contains("Ω needs a finite α"), "{e}");
    }
    // Ω's inputs exist only where Ω was configured
    let mut plain = Trainer::new(&rnn, Config::default()).unwrap();
    assert!(plain.omega_inputs(&rnn.net).is_err());
}

#[test]
fn omega_training_in_f32_follows_f64() {
    // SGD-CR (Ω with α = 2, clipping, the safety net) in both dtypes from the same weights
    use bptt::train::trainer::OmegaRule;
    let rng = &mut stream(26, &[]);
    let cell = VanillaRnn::<f64>::pytorch_init(VOCAB, 6, Activation::Tanh, rng);
    let readout = Readout::<f64>::uniform(6, 3, 0.5, rng);
    let mut m64 = NetworkModel::new(Unidirectional::new(cell), readout).unwrap();
    let mut m32 = m64.rescalar::<f32>();
    let cfg = Config {
        safety_net: true,
        optimizer: Optimizer::sgd(0.1),
        omega: Some(OmegaRule::constant(2.0, 1e-20)),
        ..Config::default()
    };
    let (mut t32, mut t64) = (
        Trainer::new(&m32, cfg).unwrap(),
        Trainer::new(&m64, cfg).unwrap(),
    );
    for _ in 0..5 {
        let d = data(rng, 9, 4, 3, false);
        let (r32, r64) = (
            t32.update(
                &mut m32,
                &Batch {
                    inputs: Inputs::Tokens {
                        ids: &d.ids,
                        vocab: VOCAB,
                    },
                    batch: 4,
                    targets: Targets::Classes(&d.classes),
                },
            )
            .unwrap(),
            t64.update(
                &mut m64,
                &Batch {
                    inputs: Inputs::Tokens {
                        ids: &d.ids,
                        vocab: VOCAB,
                    },
                    batch: 4,
                    targets: Targets::Classes(&d.classes),
                },
            )
            .unwrap(),
        );
        assert!(r64.omega > 0.0);
        assert!(
            relative_eq!(r32.omega, r64.omega, epsilon = 1e-6, max_relative = 1e-4),
            "Ω f32 {} vs f64 {}",
            r32.omega,
            r64.omega
        );
    }
    for (a, b) in m32.net.params().tensors().zip(m64.net.params().tensors()) {
        for (x, y) in a.iter().zip(b.iter()) {
            assert!(
                relative_eq!(*x as f64, *y, epsilon = 1e-5, max_relative = 1e-4),
                "f32 {x} vs f64 {y}"
            );
        }
    }
}

#[test]
fn reset_state_starts_the_next_batch_from_zero() {
    // with the state carried, the second batch starts from the first's final states; after
    // reset_state it starts from zero, as a fresh trainer's first batch does
    let (a, ..) = networks(28);
    let cfg = Config {
        carry_state: true,
        ..Config::default()
    };
    let d1 = data(&mut stream(29, &[1]), 5, 3, 3, false);
    let d2 = data(&mut stream(29, &[2]), 5, 3, 3, false);
    let batch = |d: &Data| -> (Vec<usize>, Vec<usize>) { (d.ids.clone(), d.classes.clone()) };
    let ((i1, c1), (i2, c2)) = (batch(&d1), batch(&d2));
    let b1 = Batch {
        inputs: Inputs::Tokens {
            ids: &i1,
            vocab: VOCAB,
        },
        batch: 3,
        targets: Targets::Classes(&c1),
    };
    let b2 = Batch {
        inputs: Inputs::Tokens {
            ids: &i2,
            vocab: VOCAB,
        },
        batch: 3,
        targets: Targets::Classes(&c2),
    };
    let mut fresh = Trainer::new(&a, cfg).unwrap();
    let from_zero = fresh.loss(&a, &b2).unwrap();
    let mut tr = Trainer::new(&a, cfg).unwrap();
    tr.loss(&a, &b1).unwrap();
    let carried = tr.loss(&a, &b2).unwrap();
    assert_ne!(carried, from_zero, "the carried state changes the loss");
    tr.loss(&a, &b1).unwrap();
    tr.reset_state();
    assert_eq!(tr.loss(&a, &b2).unwrap(), from_zero);
}

/// Batches of token sequences for `steps`-step updates of a 3-class every-step readout.
fn stream_batches(seed: u64, n: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    (0..n)
        .map(|i| {
            let d = data(&mut stream(seed, &[i as u64]), 4, 3, 3, true);
            (d.ids, d.classes)
        })
        .collect()
}

fn token_batch<'a>(ids: &'a [usize], classes: &'a [usize]) -> Batch<'a, f64> {
    Batch {
        inputs: Inputs::Tokens { ids, vocab: VOCAB },
        batch: 3,
        targets: Targets::Classes(classes),
    }
}

#[test]
fn a_restored_trainer_continues_bit_identically() {
    // K updates, save (model, Trainer::state), N more; a fresh trainer restored from the saved
    // state continues on the saved model to the same bits: carried states, momentum, Adam's
    // moments and its bias correction's t all survive the round trip
    use bptt::train::trainer::TrainerState;
    let (lstm, ..) = networks(40);
    let batches = stream_batches(41, 7);
    for optimizer in [
        Optimizer::Sgd {
            lr: 0.1,
            momentum: 0.9,
        },
        Optimizer::adam(0.01),
    ] {
        let cfg = Config {
            readout_at: ReadoutAt::EveryStep,
            optimizer,
            carry_state: true,
            schedule: Schedule::Exponential { gamma: 0.9 },
            ..Config::default()
        };
        let mut model = lstm.clone();
        let mut tr = Trainer::new(&model, cfg).unwrap();
        for (ids, c) in &batches[..3] {
            tr.update(&mut model, &token_batch(ids, c)).unwrap();
        }
        let (saved_model, saved): (_, TrainerState<f64>) = (model.clone(), tr.state());
        assert_eq!(saved.updates, 3);
        assert_eq!(saved.carried.len(), 1, "the LSTM's [h; c] state is carried");
        let straight: Vec<f64> = batches[3..]
            .iter()
            .map(|(ids, c)| tr.update(&mut model, &token_batch(ids, c)).unwrap().loss)
            .collect();
        let mut resumed_model = saved_model;
        let mut resumed = Trainer::new(&resumed_model, cfg).unwrap();
        resumed.restore(&resumed_model.net, saved).unwrap();
        let again: Vec<f64> = batches[3..]
            .iter()
            .map(|(ids, c)| {
                resumed
                    .update(&mut resumed_model, &token_batch(ids, c))
                    .unwrap()
                    .loss
            })
            .collect();
        assert_eq!(straight, again, "{optimizer:?}: losses");
        assert_eq!(
            model.net.params().to_params(),
            resumed_model.net.params().to_params(),
            "{optimizer:?}"
        );
        assert_eq!(model.readout.params(), resumed_model.readout.params());
        // without a restore, the carried state is missing and the run differs
        let mut cold_model = model.clone();
        let mut cold = Trainer::new(&cold_model, cfg).unwrap();
        let (ids, c) = &batches[0];
        let mut warm_model = model.clone();
        let warm = tr.update(&mut warm_model, &token_batch(ids, c)).unwrap();
        let fresh = cold.update(&mut cold_model, &token_batch(ids, c)).unwrap();
        assert_ne!(
            warm.loss, fresh.loss,
            "{optimizer:?}: the carried state matters"
        );
    }
}

#[test]
fn restore_refuses_a_state_of_another_shape() {
    let (lstm, bi, ..) = networks(42);
    let cfg = Config {
        carry_state: true,
        readout_at: ReadoutAt::EveryStep,
        ..Config::default()
    };
    let mut a = lstm.clone();
    let mut ta = Trainer::new(&a, cfg).unwrap();
    let (ids, c) = &stream_batches(43, 1)[0];
    ta.update(&mut a, &token_batch(ids, c)).unwrap();
    // the bidirectional stack has other tensors and four states
    let mut tb = Trainer::new(&bi, cfg).unwrap();
    let e = tb.restore(&bi.net, ta.state()).unwrap_err().to_string();
    assert!(e.contains("first moments"), "{e}");
    let mut bad = ta.state();
    bad.carried[0] = DMatrix::zeros(3, 3);
    let mut tc = Trainer::new(&a, cfg).unwrap();
    let e = tc.restore(&a.net, bad).unwrap_err().to_string();
    assert!(e.contains("carried states"), "{e}");
}

#[test]
fn omega_weight_decreases_as_one_over_t() {
    // OmegaRule { decay: Some(τ) }: update t uses α·τ/(τ + t) — the same update as a constant
    // rule at that weight from the same state
    use bptt::train::trainer::OmegaRule;
    let rng = &mut stream(44, &[]);
    let cell = VanillaRnn::<f64>::pytorch_init(VOCAB, 5, Activation::Sigmoid, rng);
    let mut model =
        NetworkModel::new(Unidirectional::new(cell), Readout::uniform(5, 3, 0.5, rng)).unwrap();
    let (alpha, tau) = (2.0, 4.0);
    let rule = OmegaRule {
        alpha,
        bound: 1e-20,
        decay: Some(tau),
    };
    let cfg = |omega| Config {
        readout_at: ReadoutAt::EveryStep,
        optimizer: Optimizer::sgd(0.5),
        carry_state: true,
        clip: None,
        omega: Some(omega),
        ..Config::default()
    };
    let mut tr = Trainer::new(&model, cfg(rule)).unwrap();
    let batches = stream_batches(45, 6);
    for (t, (ids, c)) in batches.iter().enumerate().take(5) {
        let r = tr.update(&mut model, &token_batch(ids, c)).unwrap();
        assert_eq!(r.omega_weight, alpha * tau / (tau + t as f64), "update {t}");
        assert!(r.omega > 0.0, "Ω is measured");
    }
    let (ids, c) = &batches[5];
    let mut constant_model = model.clone();
    let mut constant = Trainer::new(
        &constant_model,
        cfg(OmegaRule::constant(alpha * tau / (tau + 5.0), 1e-20)),
    )
    .unwrap();
    let mut saved = tr.state();
    saved.updates = 0; // the constant rule's t does not matter
    constant.restore(&constant_model.net, saved).unwrap();
    tr.update(&mut model, &token_batch(ids, c)).unwrap();
    constant
        .update(&mut constant_model, &token_batch(ids, c))
        .unwrap();
    assert_eq!(
        model.net.params().to_params(),
        constant_model.net.params().to_params()
    );
    // and τ must be a positive number of updates
    for bad in [0.0, -1.0, f64::NAN] {
        let e = Trainer::new(
            &model,
            cfg(OmegaRule {
                decay: Some(bad),
                ..rule
            }),
        )
        .unwrap_err();
        assert!(e.to_string().contains("decay τ"), "{e}");
    }
}

// The §4.1 vanilla RNN (`experiment::pathological`'s models, `tests/paper_setup/`): the
// trainer's gradients ("the kernel") against the generic, finite-difference-proven
// `Model::loss_and_grads`; the SGD-CR, clipping and safety-net update rule.

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

fn check_kernel(task: Task, init: Init, hidden: usize, batch: usize, length: usize, seed: u64) {
    check_kernel_on(model(task, init, hidden, seed), task, batch, length, seed);
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
fn the_safety_net_triggers_above_1e10_and_on_non_finite_norms() {
    assert!(!safety_net_triggered(1e10));
    assert!(safety_net_triggered(1e10f64.next_up()));
    assert!(safety_net_triggered(f64::INFINITY) && safety_net_triggered(f64::NAN));
    assert!(!safety_net_triggered(0.0) && !safety_net_triggered(3.0));
}
