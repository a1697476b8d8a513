//! The Jacobians of the vanilla cell: the one-step Jacobian `∂h_t/∂h_{t−1} = diag(σ'(a_t)) W_hh`
//! and Pascanu et al.'s bound on their products, `‖∂h_T/∂h_k‖ ≤ (γ σ_max(W_hh))^{T−k}`. (f32
//! against f64 is checked for every cell by the harness, `tests/cells.rs`.)
//!
//! Both compare the backward pass with quantities computed here from the definitions
//! (independent closed forms of σ', SVDs of the weights), never with the code under test.

mod harness;

use bptt::nn::activation::Activation;
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::sequence::{self, Truncation, Upstream};
use bptt::rng::{stream, uniform_matrix};
use nalgebra::DMatrix;
use proptest::prelude::*;

/// σ'(a) from closed forms written independently of `Activation::derivative`.
fn sigma_prime(act: Activation, a: f64) -> f64 {
    match act {
        Activation::Tanh => 1.0 / a.cosh().powi(2),
        Activation::Sigmoid => {
            let e = (-a.abs()).exp();
            e / (1.0 + e).powi(2)
        }
        Activation::Relu => {
            if a > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Identity => 1.0,
    }
}

fn activation() -> impl Strategy<Value = Activation> {
    prop::sample::select(Activation::ALL.to_vec())
}

fn largest_singular_value(m: &DMatrix<f64>) -> f64 {
    m.singular_values().max()
}

/// `‖∂h_T/∂h_k‖₂` for k = 0..=T (batch 1), with the Jacobians assembled row by row from BPTT:
/// upstream `e_i` on the final state gives `∂L/∂h_k = (∂h_T/∂h_k)ᵀ e_i`, the i-th row.
fn jacobian_norms(cell: &VanillaRnn<f64>, xs: &[DMatrix<f64>], h0: &DMatrix<f64>) -> Vec<f64> {
    let hidden = cell.hidden_size();
    let traj = sequence::forward(cell, xs, h0).unwrap();
    let mut jac = vec![DMatrix::zeros(hidden, hidden); xs.len() + 1];
    for i in 0..hidden {
        let mut up = Upstream::none(xs.len());
        let mut e = DMatrix::zeros(hidden, 1);
        e[i] = 1.0;
        up.d_final = Some(e);
        let g = sequence::backward(cell, &traj, &up, Truncation::Full).unwrap();
        for (k, ds) in g.d_states.iter().enumerate() {
            jac[k].row_mut(i).copy_from(&ds.transpose());
        }
    }
    jac.iter().map(largest_singular_value).collect()
}

/// Whether `‖∂h_T/∂h_k‖₂ ≤ base^{T−k}` for every k (relative slack 1e-12 for rounding).
fn bound_holds(norms: &[f64], base: f64) -> bool {
    let steps = norms.len() - 1;
    norms
        .iter()
        .enumerate()
        .all(|(k, &n)| n <= base.powi((steps - k) as i32) * (1.0 + 1e-12) + 1e-300)
}

proptest! {
    #![proptest_config(harness::config())]

    /// (a) The one-step Jacobians recovered from `step_backward` (upstream `e_i` gives row i)
    /// equal `diag(σ'(a_t)) W_hh` and `diag(σ'(a_t)) W_ih`, with `a_t` recomputed here.
    #[test]
    fn one_step_jacobian_is_diag_sigma_prime_times_w_hh(
        input in 1..=5usize, hidden in 1..=8usize, scale in 0.1f64..=3.0, seed in any::<u64>(), act in activation(),
    ) {
        let mut rng = stream(seed, &[]);
        let cell = VanillaRnn::<f64>::uniform(input, hidden, act, scale, &mut rng);
        let x = uniform_matrix::<f64>(&mut rng, input, 1, 1.0);
        let h_prev = uniform_matrix::<f64>(&mut rng, hidden, 1, 1.0);
        let traj = sequence::forward(&cell, std::slice::from_ref(&x), &h_prev).unwrap();
        let a = cell.weight_ih() * &x + cell.bias_ih() + cell.weight_hh() * &h_prev + cell.bias_hh();
        let d = DMatrix::from_diagonal(&a.column(0).map(|v| sigma_prime(act, v)));
        let (expected_h, expected_x) = (&d * cell.weight_hh(), &d * cell.weight_ih());
        let mut jac_h = DMatrix::zeros(hidden, hidden);
        let mut jac_x = DMatrix::zeros(hidden, input);
        for i in 0..hidden {
            let mut e = DMatrix::zeros(hidden, 1);
            e[i] = 1.0;
            let up = Upstream { d_outputs: vec![None], d_final: Some(e) };
            let g = sequence::backward(&cell, &traj, &up, Truncation::Full).unwrap();
            let (dx, dh_prev) = (&g.dxs[0], &g.d_states[0]);
            jac_h.row_mut(i).copy_from(&dh_prev.transpose());
            jac_x.row_mut(i).copy_from(&dx.transpose());
        }
        prop_assert!(approx::relative_eq!(jac_h, expected_h, epsilon = 1e-14, max_relative = 1e-12), "{jac_h} vs {expected_h}");
        prop_assert!(approx::relative_eq!(jac_x, expected_x, epsilon = 1e-14, max_relative = 1e-12), "{jac_x} vs {expected_x}");
    }

    /// (b) Pascanu, Mikolov & Bengio (2013): `‖∂h_T/∂h_k‖₂ ≤ (γ·σ_max(W_hh))^{T−k}` for every k.
    #[test]
    fn pascanu_bound_holds_with_the_largest_singular_value(
        input in 1..=5usize, hidden in 1..=8usize, steps in 1..=12usize,
        scale in 0.1f64..=3.0, seed in any::<u64>(), act in activation(),
    ) {
        let mut rng = stream(seed, &[]);
        let cell = VanillaRnn::<f64>::uniform(input, hidden, act, scale, &mut rng);
        let xs: Vec<_> = (0..steps).map(|_| uniform_matrix::<f64>(&mut rng, input, 1, 1.0)).collect();
        let h0 = uniform_matrix::<f64>(&mut rng, hidden, 1, 1.0);
        let norms = jacobian_norms(&cell, &xs, &h0);
        let base = act.gamma() * largest_singular_value(cell.weight_hh());
        prop_assert!(bound_holds(&norms, base), "norms {norms:?} vs base {base}");
    }
}

/// The bound test has teeth: with the spectral radius ρ in place of σ_max it is *false* for a
/// non-normal matrix, and `bound_holds` says so. Linear cell, `W_hh = [[0.5, 2], [0, 0.5]]`:
/// ρ = 0.5 but `‖W^n‖₂` first grows (≈ 2.1, 2.1, 1.6, …), so `‖∂h_T/∂h_k‖ > 0.5^{T−k}`.
#[test]
fn pascanu_bound_with_spectral_radius_fails_for_a_non_normal_matrix() {
    let mut cell = VanillaRnn::<f64>::zeros(1, 2, Activation::Identity);
    *cell.weight_hh_mut() = DMatrix::from_row_slice(2, 2, &[0.5, 2.0, 0.0, 0.5]);
    let xs = vec![DMatrix::from_element(1, 1, 0.3); 6];
    let norms = jacobian_norms(&cell, &xs, &DMatrix::zeros(2, 1));
    let rho = cell
        .weight_hh()
        .complex_eigenvalues()
        .iter()
        .map(|z| z.norm())
        .fold(0.0, f64::max);
    approx::assert_relative_eq!(rho, 0.5, epsilon = 1e-15, max_relative = 1e-12);
    assert!(
        !bound_holds(&norms, rho),
        "ρ-bound unexpectedly held: {norms:?}"
    );
    assert!(bound_holds(
        &norms,
        largest_singular_value(cell.weight_hh())
    ));
}

/// The bound is tight: for the linear cell and a symmetric `W_hh`, `∂h_T/∂h_k = W^{T−k}` and
/// `‖W^{T−k}‖₂ = σ_max^{T−k}` exactly.
#[test]
fn pascanu_bound_is_attained_by_a_linear_cell_with_symmetric_weights() {
    let mut rng = stream(11, &[]);
    let mut cell = VanillaRnn::<f64>::uniform(2, 5, Activation::Identity, 0.5, &mut rng);
    let w = cell.weight_hh().clone();
    *cell.weight_hh_mut() = (&w + w.transpose()) * 0.5;
    let xs: Vec<_> = (0..8)
        .map(|_| uniform_matrix::<f64>(&mut rng, 2, 1, 1.0))
        .collect();
    let norms = jacobian_norms(&cell, &xs, &uniform_matrix(&mut rng, 5, 1, 1.0));
    let s = largest_singular_value(cell.weight_hh());
    for (k, n) in norms.iter().enumerate() {
        approx::assert_relative_eq!(
            *n,
            s.powi((8 - k) as i32),
            epsilon = 1e-300,
            max_relative = 1e-12
        );
    }
}
