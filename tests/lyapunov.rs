//! Lyapunov spectra: Benettin's QR method (`numerics::lyapunov`) on products with known
//! spectra, and the engine-driven spectrum of a network's backward Jacobian product
//! (`experiment::sweep::Workspace::lyapunov`) for every cell against an independent oracle —
//! the Jacobian `∂s_T/∂s_0` in forward mode on dual numbers, factored once.
//!
//! Expected values come from closed forms (ln |d_i|, ln ρ, ln |det|) or from the dual-number
//! Jacobian, never from the code under test.

use approx::assert_relative_eq;
use bptt::experiment::sweep::Workspace;
use bptt::nn::activation::Activation;
use bptt::nn::cell::{BIAS_IH, Cell, CellFamily, Rescalar, WEIGHT_HH};
use bptt::nn::cells::CellKind;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::params::Params;
use bptt::nn::sequence;
use bptt::numerics::lyapunov::Benettin;
use bptt::numerics::spectral::{Ensemble, gaussian};
use bptt::rng::{stream, uniform_matrix};
use nalgebra::{DMatrix, DVector};
use num_dual::Dual64;

/// The QR method on the constant product `A^T`, every step absorbed.
fn constant_product(a: &DMatrix<f64>, steps: usize) -> Vec<f64> {
    let mut b = Benettin::new(a.nrows(), a.nrows());
    for _ in 0..steps {
        let propagated = a * b.basis();
        b.absorb(propagated, 1);
    }
    b.exponents()
}

/// ln |d_i|, largest first: the exponents of a product of the constant diagonal matrix diag(d).
fn logs_of_diagonal(d: &[f64]) -> Vec<f64> {
    let mut expected: Vec<f64> = d.iter().map(|x| x.abs().ln()).collect();
    expected.sort_by(|x, y| y.total_cmp(x));
    expected
}

/// The T-step exponents `l` of diag(d) against ln |d_i| (the first `l.len()` of them): from a
/// generic start the finite-time exponent of direction i is ln|d_i| + c_i/T, c_i the log of a
/// ratio of minors of the start basis (order 1), so 5/T is ample; for the full spectrum the
/// sum is exact at every T, ln|det| = Σ ln|d_i|.
fn assert_logs_of_diagonal(l: &[f64], d: &[f64], steps: usize) {
    let expected = logs_of_diagonal(d);
    for (got, want) in l.iter().zip(&expected) {
        assert_relative_eq!(
            *got,
            *want,
            epsilon = 5.0 / steps as f64,
            max_relative = 0.0
        );
    }
    if l.len() == d.len() {
        assert_relative_eq!(
            l.iter().sum::<f64>(),
            expected.iter().sum::<f64>(),
            epsilon = 1e-12,
            max_relative = 1e-12
        );
    }
}

#[test]
fn a_diagonal_product_has_the_logs_of_its_entries() {
    let d = [3.0, -0.5, 1.0, 0.01, -2.0];
    let a = DMatrix::from_diagonal(&DVector::from_column_slice(&d));
    let steps = 3000;
    assert_logs_of_diagonal(&constant_product(&a, steps), &d, steps);
}

#[test]
fn a_scaled_orthogonal_product_has_every_exponent_ln_rho() {
    let mut rng = stream(3, &[]);
    let q = Ensemble::Orthogonal.draw(8, &mut rng);
    let l = constant_product(&(q * 0.7), 50);
    for x in l {
        assert_relative_eq!(x, 0.7f64.ln(), epsilon = 1e-13, max_relative = 1e-12);
    }
}

#[test]
fn the_exponents_sum_to_the_log_determinant_and_the_top_one_tends_to_the_spectral_radius() {
    let mut rng = stream(4, &[]);
    let a = gaussian(6, 6, 1.0 / 6f64.sqrt(), &mut rng);
    let steps = 4000;
    let l = constant_product(&a, steps);
    // Σ λ_i = ln|det A| for any T: the product's determinant is det(A)^T
    let log_det = a.clone().lu().determinant().abs().ln();
    assert_relative_eq!(
        l.iter().sum::<f64>(),
        log_det,
        epsilon = 1e-11,
        max_relative = 1e-11
    );
    // λ_i → ln|μ_i| (the eigenvalues' moduli, nalgebra's Schur); the finite-T error is
    // O(ln(cond(V))/T) with V the eigenvector matrix: 0.01 at T = 4000 is ample
    let mut moduli: Vec<f64> = a
        .complex_eigenvalues()
        .iter()
        .map(|z| z.norm().ln())
        .collect();
    moduli.sort_by(|x, y| y.total_cmp(x));
    assert_relative_eq!(l[0], moduli[0], epsilon = 1e-2, max_relative = 0.0);
}

#[test]
fn a_nilpotent_product_annihilates_every_direction() {
    // the shift e_{i+1} → e_i: A^n = 0
    let n = 4;
    let a = DMatrix::from_fn(n, n, |i, j| if j == i + 1 { 1.0 } else { 0.0 });
    let l = constant_product(&a, 6);
    assert!(l.iter().all(|x| *x == f64::NEG_INFINITY), "{l:?}");
}

#[test]
fn a_non_finite_product_gives_nan_exponents() {
    let mut b = Benettin::new(2, 2);
    b.absorb(
        DMatrix::from_row_slice(2, 2, &[f64::INFINITY, 0.0, 0.0, 1.0]),
        1,
    );
    assert!(b.exponents().iter().all(|x| x.is_nan()));
}

// --- through the engine -------------------------------------------------------------------

/// One sequence of T inputs as the sweep lays it out (m × B·T with B = 1).
fn inputs(m: usize, steps: usize, seed: u64) -> DMatrix<f64> {
    gaussian(m, steps, 1.0, &mut stream(seed, &[1]))
}

/// A linear cell with the given recurrent matrix.
fn linear_cell(w_hh: DMatrix<f64>, m: usize) -> VanillaRnn<f64> {
    let n = w_hh.nrows();
    let mut cell = VanillaRnn::<f64>::uniform(m, n, Activation::Identity, 0.5, &mut stream(9, &[]));
    *cell.weight_hh_mut() = w_hh;
    cell
}

#[test]
fn the_linear_cell_with_scaled_orthogonal_weights_has_every_exponent_ln_rho() {
    let (n, m, steps) = (10, 3, 23);
    let q = Ensemble::Orthogonal.draw(n, &mut stream(5, &[]));
    let cell = linear_cell(q * 1.3, m);
    let mut ws = Workspace::new(n);
    for every in [1, 4, 23, 50] {
        let l = ws
            .lyapunov(&cell, &inputs(m, steps, 1), 1, 0, usize::MAX, every)
            .unwrap();
        assert_eq!(l.len(), n);
        for x in l {
            assert_relative_eq!(x, 1.3f64.ln(), epsilon = 1e-13, max_relative = 1e-12);
        }
    }
}

#[test]
fn the_linear_cell_with_diagonal_weights_has_the_logs_of_the_diagonal() {
    let d = [0.9, -1.2, 0.3, 1.05, -0.6, 0.05];
    let cell = linear_cell(DMatrix::from_diagonal(&DVector::from_column_slice(&d)), 2);
    let mut ws = Workspace::new(d.len());
    let steps = 2000;
    let xs = inputs(2, steps, 2);
    assert_logs_of_diagonal(
        &ws.lyapunov(&cell, &xs, 1, 0, usize::MAX, 7).unwrap(),
        &d,
        steps,
    );
    // the top three only: the largest three, not those of the first three unit vectors
    let top = ws.lyapunov(&cell, &xs, 1, 0, 3, 7).unwrap();
    assert_eq!(top.len(), 3);
    assert_logs_of_diagonal(&top, &d, steps);
}

/// The non-normal counterexample of `tests/jacobians.rs` (ρ = 0.5, `‖W^k‖₂` first grows):
/// `W^T = 0.5^T [[1, 4T], [0, 1]]`, so the finite-time exponents are ln 0.5 ± O(ln(4T)/T) —
/// they tend to ln ρ, not ln σ_max — and sum to 2 ln 0.5 exactly; the nilpotent `[[0, 1], [0, 0]]`
/// annihilates everything after two steps.
#[test]
fn the_non_normal_and_the_nilpotent_counterexamples() {
    let mut ws = Workspace::new(2);
    let steps = 400;
    let cell = linear_cell(DMatrix::from_row_slice(2, 2, &[0.5, 2.0, 0.0, 0.5]), 1);
    let l = ws
        .lyapunov(&cell, &inputs(1, steps, 3), 1, 0, usize::MAX, 10)
        .unwrap();
    // σ_1(W^T) = 0.5^T (2T + √(4T² + 1)) and σ_2 = 0.5^{2T}/σ_1; the QR's values lie between
    let t = steps as f64;
    let spread = (2.0 * t + (4.0 * t * t + 1.0).sqrt()).ln() / t;
    for x in &l {
        assert!((x - 0.5f64.ln()).abs() <= spread + 1e-12, "{l:?}");
    }
    assert!(l[0] > 0.5f64.ln() + 0.5 * spread, "{l:?}");
    assert_relative_eq!(
        l[0] + l[1],
        2.0 * 0.5f64.ln(),
        epsilon = 1e-12,
        max_relative = 1e-12
    );
    let nilpotent = linear_cell(DMatrix::from_row_slice(2, 2, &[0.0, 1.0, 0.0, 0.0]), 1);
    // one QR of the product, which is exactly 0
    let l = ws
        .lyapunov(&nilpotent, &inputs(1, 5, 3), 1, 0, usize::MAX, 5)
        .unwrap();
    assert!(l.iter().all(|x| *x == f64::NEG_INFINITY), "{l:?}");
    // QR every step: once a direction is annihilated its column of Q is arbitrary, so the
    // other direction's R_22 is a rounding residue (≤ ε of a unit vector) rather than 0 — the
    // product is still 0 to machine precision: every exponent ≤ ln(1e-15)/T
    let l = ws
        .lyapunov(&nilpotent, &inputs(1, 5, 3), 1, 0, usize::MAX, 1)
        .unwrap();
    assert!(l.iter().all(|x| *x <= 1e-15f64.ln() / 5.0), "{l:?}");
}

/// `∂s_T/∂s_0` (S × S) in forward mode: one dual-number pass per column, `s_0 = 0 + e_j ε`.
fn dual_jacobian<C: Rescalar<f64>>(cell: &C, xs: &DMatrix<f64>) -> DMatrix<f64> {
    let s_rows = cell.state_size();
    let mut p = Params::new();
    for (name, m) in cell.params().iter() {
        p.push(name, m.map(Dual64::from));
    }
    let dual_cell = cell.with_params(p);
    let xs: Vec<DMatrix<Dual64>> = (0..xs.ncols())
        .map(|t| xs.columns(t, 1).map(Dual64::from))
        .collect();
    let mut jac = DMatrix::zeros(s_rows, s_rows);
    for j in 0..s_rows {
        let s0 = DMatrix::from_fn(s_rows, 1, |i, _| {
            Dual64::new(0.0, if i == j { 1.0 } else { 0.0 })
        });
        let traj = sequence::forward(&dual_cell, &xs, &s0).unwrap();
        for (i, d) in traj.state(xs.len()).iter().enumerate() {
            jac[(i, j)] = d.eps;
        }
    }
    jac
}

/// For every registered cell: the engine's spectrum (QR every step, every 3 steps, once) equals
/// the ln |R_ii| / T of one QR of `(∂s_T/∂s_0)ᵀ`, the dual-number Jacobian. In exact arithmetic
/// the grouping of the QR steps does not change diag(R) (R = R_k ⋯ R_1 and the diagonal of a
/// product of upper-triangular matrices is the product of the diagonals), so this checks the
/// segments, the replicated batch and the transposed product all at once.
#[test]
fn every_cell_matches_a_qr_of_the_dual_number_jacobian() {
    let (m, n, steps) = (3, 5, 4);
    for &kind in CellKind::ALL {
        let mut rng = stream(21, &[kind.seed_id()]);
        let mut cell = kind.uniform::<f64>(m, n, 0.6, &mut rng);
        // a recurrent matrix large enough that the spectrum spreads but stays well conditioned:
        // each gate's n × n block is 0.9 I + U(−0.3, 0.3)
        let gates = cell.gate_rows() / n;
        let mut w_hh = uniform_matrix(&mut rng, gates * n, n, 0.3);
        for g in 0..gates {
            for i in 0..n {
                w_hh[(g * n + i, i)] += 0.9;
            }
        }
        cell.params_mut()[WEIGHT_HH].copy_from(&w_hh);
        if cell.has_kinks() {
            // ReLU: every unit active at every step (a dead unit makes the product singular and
            // the QR of its null directions arbitrary; the ReLU's −∞ exponents are tested in
            // the sweep): non-negative recurrent weights I + |W|/4 and a bias beyond any input
            // drive keep a > 0
            let w = &mut cell.params_mut()[WEIGHT_HH];
            w.apply(|w| *w = 0.25 * w.abs());
            for i in 0..n {
                w[(i, i)] += 1.0;
            }
            cell.params_mut()[BIAS_IH].fill(10.0);
        }
        let xs = inputs(m, steps, 7);
        let jac = dual_jacobian(&cell, &xs);
        // the same start basis the QR method uses
        let q0 = Benettin::new(cell.state_size(), cell.state_size())
            .basis()
            .clone();
        let r = (jac.transpose() * q0).qr().r();
        let log_r: Vec<f64> = (0..r.nrows()).map(|i| r[(i, i)].abs().ln()).collect();
        let mut expected: Vec<f64> = log_r.iter().map(|l| l / steps as f64).collect();
        expected.sort_by(|x, y| y.total_cmp(x));
        // Rounding: both sides compute the product to a backward error of a few ε ‖P‖, so the
        // i-th diagonal entry of R carries a relative error ~ ε κ_i with κ_i = |R_11|/|R_ii| and
        // its exponent ~ ε κ_i / T. The test is only meaningful while κ_i is far from 1/ε:
        // with the recurrent weights above and T = 4, κ stays below 100 for the vanilla cells
        // and reaches 4e6 for the LSTM, whose h = o ⊙ tanh(c) is nearly a function of c
        // (asserted below 1e8), so the tolerance 1e-12 + 1e3 ε κ_i / T is at most ~6e-6 — far
        // below the O(0.1) a wrong segment, column or transposition would make.
        let top = log_r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let kappa: Vec<f64> = expected
            .iter()
            .map(|l| (top - l * steps as f64).exp())
            .collect();
        assert!(
            kappa.iter().all(|k| *k < 1e8),
            "{kind}: the product is too ill-conditioned for this oracle: κ = {kappa:?}"
        );
        let mut ws = Workspace::new(n);
        for every in [1, 3, steps] {
            let l = ws.lyapunov(&cell, &xs, 1, 0, usize::MAX, every).unwrap();
            assert_eq!(l.len(), cell.state_size(), "{kind}");
            for ((got, want), k) in l.iter().zip(&expected).zip(&kappa) {
                let tol = 1e-12 + 1e3 * f64::EPSILON * k / steps as f64;
                assert!(
                    approx::relative_eq!(*got, *want, epsilon = tol, max_relative = 0.0),
                    "{kind}, QR every {every}: {l:?} vs {expected:?} (tolerance {tol:e})"
                );
            }
        }
    }
}

#[test]
fn a_batch_sequence_other_than_the_first_and_bad_arguments() {
    let (m, n, steps, batch) = (2, 4, 6, 3);
    let cell = VanillaRnn::<f64>::uniform(m, n, Activation::Tanh, 0.7, &mut stream(2, &[]));
    // B = 3 sequences interleaved as the sweep lays them out; sequence 2 alone must give the
    // same spectrum as a batch of one holding it
    let xs = gaussian(m, batch * steps, 1.0, &mut stream(8, &[]));
    let alone = DMatrix::from_fn(m, steps, |i, t| xs[(i, t * batch + 2)]);
    let mut ws = Workspace::new(n);
    let a = ws.lyapunov(&cell, &xs, batch, 2, 2, 2).unwrap();
    let b = ws.lyapunov(&cell, &alone, 1, 0, 2, 2).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_relative_eq!(*x, *y, epsilon = 1e-14, max_relative = 1e-13);
    }
    assert!(ws.lyapunov(&cell, &xs, batch, 3, 2, 2).is_err());
    assert!(ws.lyapunov(&cell, &xs, batch, 0, 2, 0).is_err());
    assert!(
        ws.lyapunov(&cell, &xs.rows(0, 1).into_owned(), batch, 0, 2, 1)
            .is_err()
    );
}
