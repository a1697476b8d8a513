//! Token inputs (`Inputs::Tokens`): the gather of `W_ih`'s columns in the forward pass and the
//! scatter-add into `dW_ih` in the backward pass give exactly what the same one-hot dense input
//! gives (a GEMM with exact 0/1 entries), for every cell; out-of-range ids and input gradients
//! of tokens are errors, not panics.

use approx::relative_eq;
use bptt::error::BpttError;
use bptt::nn::activation::Activation;
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::gru::{Gru, GruVariant};
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::engine::{self, Inputs, MatRef, Tape, Upstream, Want};
use bptt::rng::{stream, uniform_matrix};
use nalgebra::DMatrix;
use rand::RngExt;

const VOCAB: usize = 7;
const HIDDEN: usize = 5;
const STEPS: usize = 6;
const BATCH: usize = 3;

/// Every entry of `got` equal to `want` up to rounding.
fn assert_close(what: &str, got: &DMatrix<f64>, want: &DMatrix<f64>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
        assert!(
            relative_eq!(*a, *b, epsilon = 1e-14, max_relative = 1e-13),
            "{what}[{i}]: tokens {a:e} vs one-hot {b:e}"
        );
    }
}

/// The one-hot `vocab × ids.len()` matrix: column j has a 1 at row `ids[j]`.
fn one_hot(ids: &[usize], vocab: usize) -> DMatrix<f64> {
    let mut x = DMatrix::zeros(vocab, ids.len());
    for (j, &id) in ids.iter().enumerate() {
        x[(id, j)] = 1.0;
    }
    x
}

/// Forward and backward through `cell` with `x`: the tape and the parameter gradients.
fn run<C: Cell<f64>>(
    cell: &C,
    x: Inputs<'_, f64>,
    s0: &DMatrix<f64>,
    d_outputs: &DMatrix<f64>,
) -> (Tape<f64>, bptt::nn::params::Params<f64>) {
    let mut tape = Tape::default();
    engine::forward(cell, x, MatRef::from(s0), &mut tape, None).unwrap();
    let up = Upstream {
        d_outputs: Some(MatRef::from(d_outputs)),
        ..Upstream::default()
    };
    let mut grads = cell.params().zeros_like();
    engine::backward(
        cell,
        x,
        &mut tape,
        &up,
        Default::default(),
        Want::STATES,
        Some(grads.as_mut_slice()),
        None,
    )
    .unwrap();
    (tape, grads)
}

fn check_tokens_equal_one_hot<C: Cell<f64>>(cell: &C, seed: u64) {
    let name = cell.name();
    let rng = &mut stream(seed, &[17]);
    let ids: Vec<usize> = (0..STEPS * BATCH)
        .map(|_| rng.random_range(0..VOCAB))
        .collect();
    let x = one_hot(&ids, VOCAB);
    let s0 = uniform_matrix(rng, cell.state_size(), BATCH, 1.0);
    let d_outputs = uniform_matrix(rng, HIDDEN, STEPS * BATCH, 1.0);
    let tokens = Inputs::Tokens {
        ids: &ids,
        vocab: VOCAB,
    };
    let (tape_t, grads_t) = run(cell, tokens, &s0, &d_outputs);
    let (tape_d, grads_d) = run(cell, Inputs::Dense(MatRef::from(&x)), &s0, &d_outputs);

    assert_eq!((tape_t.steps(), tape_t.batch()), (STEPS, BATCH), "{name}");
    assert_close(
        &format!("{name} states"),
        &tape_t.states().to_owned(),
        &tape_d.states().to_owned(),
    );
    assert_eq!(grads_t.names(), grads_d.names(), "{name}");
    for ((p, g_t), (_, g_d)) in grads_t.iter().zip(grads_d.iter()) {
        // not vacuous: every parameter receives a gradient
        assert!(g_d.amax() > 0.0, "{name}.{p}: zero gradient");
        assert_close(&format!("{name} d{p}"), g_t, g_d);
    }
    for k in 0..=STEPS {
        assert_close(
            &format!("{name} d_state({k})"),
            &tape_t.d_state(k).to_owned(),
            &tape_d.d_state(k).to_owned(),
        );
    }

    // an id outside the vocabulary is an error of forward, not a panic
    for bad in [VOCAB, VOCAB + 3] {
        let mut wrong = ids.clone();
        wrong[STEPS * BATCH / 2] = bad;
        let r = engine::forward(
            cell,
            Inputs::Tokens {
                ids: &wrong,
                vocab: VOCAB,
            },
            MatRef::from(&s0),
            &mut Tape::default(),
            None,
        );
        assert!(
            matches!(r, Err(BpttError::Invalid(ref m)) if m.contains(&bad.to_string())),
            "{name}: id {bad} gave {r:?}"
        );
    }

    // tokens have no input gradient: Want::ALL is an error of backward
    let mut tape = Tape::default();
    engine::forward(cell, tokens, MatRef::from(&s0), &mut tape, None).unwrap();
    let up = Upstream {
        d_outputs: Some(MatRef::from(&d_outputs)),
        ..Upstream::default()
    };
    let mut grads = cell.params().zeros_like();
    let mut dx = DMatrix::zeros(0, 0);
    let r = engine::backward(
        cell,
        tokens,
        &mut tape,
        &up,
        Default::default(),
        Want::ALL,
        Some(grads.as_mut_slice()),
        Some(&mut dx),
    );
    assert!(
        matches!(r, Err(BpttError::Invalid(ref m)) if m.contains("token")),
        "{name}: Want::ALL with tokens gave {r:?}"
    );
}

#[test]
fn token_inputs_equal_one_hot_inputs_for_every_vanilla_activation() {
    for (i, act) in Activation::ALL.into_iter().enumerate() {
        let rng = &mut stream(1, &[i as u64]);
        let cell = VanillaRnn::<f64>::pytorch_init(VOCAB, HIDDEN, act, rng);
        check_tokens_equal_one_hot(&cell, 100 + i as u64);
    }
}

#[test]
fn token_inputs_equal_one_hot_inputs_for_the_lstm() {
    let cell = Lstm::<f64>::pytorch_init(VOCAB, HIDDEN, (), &mut stream(2, &[]));
    check_tokens_equal_one_hot(&cell, 200);
}

#[test]
fn token_inputs_equal_one_hot_inputs_for_both_gru_variants() {
    for (i, variant) in [GruVariant::ResetAfter, GruVariant::ResetBefore]
        .into_iter()
        .enumerate()
    {
        let rng = &mut stream(3, &[i as u64]);
        let cell = Gru::<f64>::pytorch_init(VOCAB, HIDDEN, variant, rng);
        check_tokens_equal_one_hot(&cell, 300 + i as u64);
    }
}
