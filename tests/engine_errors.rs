//! Bad input to the engine is an error naming what is wrong, never a panic or an out-of-range
//! write: each validation of `engine::forward` / `engine::backward` on its own (written for the
//! survivors of the engine's mutation run, `proofs/README.md`).

use bptt::nn::activation::Activation;
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::engine::{self, Inputs, MatRef, Tape, Upstream, Want};
use bptt::nn::sequence::Truncation;
use bptt::rng::{stream, uniform_matrix};
use nalgebra::DMatrix;

fn cell() -> VanillaRnn<f64> {
    VanillaRnn::pytorch_init(3, 4, Activation::Tanh, &mut stream(1, &[]))
}

/// A recorded forward pass of `cell` over T = 5 steps, B = 2.
fn recorded(c: &VanillaRnn<f64>) -> (DMatrix<f64>, Tape<f64>) {
    let x = uniform_matrix::<f64>(&mut stream(2, &[]), 3, 10, 1.0);
    let s0 = DMatrix::zeros(4, 2);
    let mut tape = Tape::default();
    engine::forward(
        c,
        Inputs::Dense(MatRef::from(&x)),
        MatRef::from(&s0),
        &mut tape,
        None,
    )
    .unwrap();
    (x, tape)
}

/// `engine::backward` with full BPTT.
fn back<C: Cell<f64>>(
    c: &C,
    x: Inputs<'_, f64>,
    tape: &mut Tape<f64>,
    up: &Upstream<'_, f64>,
    want: Want,
    grads: Option<&mut [DMatrix<f64>]>,
    dx: Option<&mut DMatrix<f64>>,
) -> Result<(), bptt::error::BpttError> {
    engine::backward(c, x, tape, up, Truncation::Full, want, grads, dx)
}

#[test]
fn forward_rejects_each_bad_shape_alone() {
    let c = cell();
    let s0 = DMatrix::zeros(4, 2);
    let mut tape = Tape::default();
    // wrong input size, columns a multiple of the batch
    let x = DMatrix::zeros(5, 10);
    let e = engine::forward(
        &c,
        Inputs::Dense(MatRef::from(&x)),
        MatRef::from(&s0),
        &mut tape,
        None,
    );
    assert!(e.unwrap_err().to_string().contains("expected 3 rows"));
    // right input size, columns not a multiple of the batch
    let x = DMatrix::zeros(3, 9);
    let e = engine::forward(
        &c,
        Inputs::Dense(MatRef::from(&x)),
        MatRef::from(&s0),
        &mut tape,
        None,
    );
    assert!(e.is_err());
    // the same shapes are fine
    let x = DMatrix::zeros(3, 10);
    assert!(
        engine::forward(
            &c,
            Inputs::Dense(MatRef::from(&x)),
            MatRef::from(&s0),
            &mut tape,
            None
        )
        .is_ok()
    );
}

#[test]
fn backward_rejects_a_tape_of_other_inputs_or_another_cell() {
    let c = cell();
    let (x, mut tape) = recorded(&c);
    let mut grads = c.params().zeros_like();
    let up = Upstream::default();
    // inputs with another number of columns than the tape's
    let x_short = DMatrix::zeros(3, 8);
    let e = back(
        &c,
        Inputs::Dense(MatRef::from(&x_short)),
        &mut tape,
        &up,
        Want::PARAMS,
        Some(grads.as_mut_slice()),
        None,
    );
    assert!(e.unwrap_err().to_string().contains("not recorded"));
    // the same inputs, but a cell whose tape has other rows (an LSTM of the same sizes)
    let lstm = Lstm::<f64>::pytorch_init(3, 4, (), &mut stream(3, &[]));
    let mut lstm_grads = lstm.params().zeros_like();
    let e = back(
        &lstm,
        Inputs::Dense(MatRef::from(&x)),
        &mut tape,
        &up,
        Want::PARAMS,
        Some(lstm_grads.as_mut_slice()),
        None,
    );
    assert!(e.unwrap_err().to_string().contains("not recorded"));
    // and the right ones work
    assert!(
        back(
            &c,
            Inputs::Dense(MatRef::from(&x)),
            &mut tape,
            &up,
            Want::PARAMS,
            Some(grads.as_mut_slice()),
            None
        )
        .is_ok()
    );
}

#[test]
fn backward_rejects_upstream_gradients_of_the_wrong_shape() {
    let c = cell();
    let (x, mut tape) = recorded(&c);
    let mut grads = c.params().zeros_like();
    let (d_out, d_last, d_final) = (
        DMatrix::zeros(4, 9),
        DMatrix::zeros(4, 3),
        DMatrix::zeros(5, 2),
    );
    let ups = [
        (
            "d_outputs",
            Upstream {
                d_outputs: Some(MatRef::from(&d_out)),
                ..Upstream::default()
            },
        ),
        (
            "d_last",
            Upstream {
                d_last: Some(MatRef::from(&d_last)),
                ..Upstream::default()
            },
        ),
        (
            "d_final",
            Upstream {
                d_final: Some(MatRef::from(&d_final)),
                ..Upstream::default()
            },
        ),
    ];
    for (name, up) in &ups {
        let e = back(
            &c,
            Inputs::Dense(MatRef::from(&x)),
            &mut tape,
            up,
            Want::PARAMS,
            Some(grads.as_mut_slice()),
            None,
        );
        assert!(e.unwrap_err().to_string().contains(name), "{name}");
    }
}

#[test]
fn backward_needs_a_place_for_each_wanted_gradient() {
    let c = cell();
    let (x, mut tape) = recorded(&c);
    let up = Upstream::default();
    let mut grads = c.params().zeros_like();
    let mut dx = DMatrix::zeros(0, 0);
    let x = Inputs::Dense(MatRef::from(&x));
    // parameter gradients wanted, nowhere to put them (input gradients not wanted)
    assert!(back(&c, x, &mut tape, &up, Want::PARAMS, None, None).is_err());
    // input gradients wanted, no dx (parameter gradients have their place)
    assert!(
        back(
            &c,
            x,
            &mut tape,
            &up,
            Want::ALL,
            Some(grads.as_mut_slice()),
            None
        )
        .is_err()
    );
    // both given: fine
    assert!(
        back(
            &c,
            x,
            &mut tape,
            &up,
            Want::ALL,
            Some(grads.as_mut_slice()),
            Some(&mut dx)
        )
        .is_ok()
    );
    assert_eq!(dx.shape(), (3, 10));
}
