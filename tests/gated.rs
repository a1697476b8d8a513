//! Gated cells: parameter counts (vanilla < GRU < LSTM, PyTorch's formula) and the LSTM's
//! cell-state gradient.

use bptt::nn::activation::Activation;
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::gru::{Gru, GruVariant};
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::sequence::{self, Truncation, Upstream};
use bptt::rng::{stream, uniform_matrix};

#[test]
fn gru_has_fewer_parameters_than_lstm() {
    for (d, h) in [(1, 1), (3, 4), (10, 32), (128, 256)] {
        let rnn = VanillaRnn::<f64>::zeros(d, h, Activation::Tanh).parameter_count();
        let gru = Gru::<f64>::zeros(d, h, GruVariant::ResetAfter).parameter_count();
        let lstm = Lstm::<f64>::zeros(d, h, ()).parameter_count();
        // PyTorch: G·H·(D + H + 2) with G = 1, 3, 4 gate blocks
        assert_eq!(
            (rnn, gru, lstm),
            (h * (d + h + 2), 3 * h * (d + h + 2), 4 * h * (d + h + 2))
        );
        assert!(rnn < gru && gru < lstm);
    }
}

#[test]
fn lstm_reports_the_cell_state_gradient_at_every_step() {
    // with upstream only on c_T, ∂L/∂c_{T−1} = f_T ⊙ ∂L/∂c_T exactly (no path through h_T)
    let mut rng = stream(8, &[]);
    let cell = Lstm::<f64>::uniform(2, 3, (), 0.7, &mut rng);
    let xs: Vec<_> = (0..4)
        .map(|_| uniform_matrix(&mut rng, 2, 2, 1.0))
        .collect();
    let s0 = uniform_matrix(&mut rng, 6, 2, 1.0);
    let traj = sequence::forward(&cell, &xs, &s0).unwrap();
    let mut d_final = nalgebra::DMatrix::zeros(6, 2);
    d_final
        .rows_mut(3, 3)
        .copy_from(&uniform_matrix::<f64>(&mut rng, 3, 2, 1.0));
    let up = Upstream {
        d_outputs: vec![None; 4],
        d_final: Some(d_final.clone()),
    };
    let g = sequence::backward(&cell, &traj, &up, Truncation::Full).unwrap();
    assert_eq!(g.d_states.len(), 5);
    // the forget gate of step 3 (tape rows H..2H of the LSTM's [i; f; g; o; tanh c])
    let f_t = &traj
        .tape
        .slab()
        .col_block(3 * 2, 2)
        .row_block(3, 3)
        .to_owned();
    let expected = d_final.rows(3, 3).component_mul(f_t);
    approx::assert_relative_eq!(
        g.d_states[3].rows(3, 3).into_owned(),
        expected,
        epsilon = 1e-15,
        max_relative = 1e-14
    );
}
