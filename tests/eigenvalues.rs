//! The eigenvalue solver of the spectral sweep (faer's Hessenberg reduction + our
//! eigenvalues-only Francis QR, `bptt::numerics::hqr`) against independent oracles: faer's complete
//! eigenvalue solver (multishift QR with aggressive early deflation, a different algorithm and
//! implementation), nalgebra's Schur decomposition, and matrices whose spectra are known in
//! closed form.

mod harness;

use approx::assert_relative_eq;
use bptt::numerics::hqr::{NoConvergence, hessenberg_eigenvalues};
use bptt::numerics::spectral::{EigenWorkspace, Ensemble, haar_orthogonal, reference_eigenvalues};
use bptt::rng::stream;
use nalgebra::DMatrix;
use proptest::prelude::*;
use std::f64::consts::PI;

/// Every eigenvalue of `m` by faer's own solver (no code shared with `bptt::numerics::hqr`).
fn faer_eigenvalues(m: &DMatrix<f64>) -> Vec<(f64, f64)> {
    reference_eigenvalues(m).expect("faer converges")
}

fn ours(m: &DMatrix<f64>) -> Vec<(f64, f64)> {
    EigenWorkspace::new(m.nrows())
        .eigenvalues(m)
        .expect("converges")
}

/// The two multisets agree to `tol` (absolute, per component): each of `ours` is paired with
/// the nearest unpaired one of `theirs`.
fn assert_same_spectrum(ours: &[(f64, f64)], theirs: &[(f64, f64)], tol: f64) {
    assert_eq!(ours.len(), theirs.len());
    let mut left: Vec<(f64, f64)> = theirs.to_vec();
    for &(re, im) in ours {
        let (pos, _) = left
            .iter()
            .enumerate()
            .map(|(p, &(r, i))| (p, (r - re).hypot(i - im)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("as many as ours");
        let (r, i) = left.swap_remove(pos);
        assert_relative_eq!(re, r, epsilon = tol, max_relative = 1e-10);
        assert_relative_eq!(im, i, epsilon = tol, max_relative = 1e-10);
    }
}

/// Complex-conjugate pairs are adjacent, positive imaginary part first, equal real parts.
fn assert_pairs_adjacent(eig: &[(f64, f64)]) {
    let mut k = 0;
    while k < eig.len() {
        if eig[k].1 == 0.0 {
            k += 1;
            continue;
        }
        assert!(eig[k].1 > 0.0 && k + 1 < eig.len(), "pair at {k}: {eig:?}");
        assert_eq!(eig[k + 1], (eig[k].0, -eig[k].1), "pair at {k}");
        k += 2;
    }
}

/// `Q D Qᵀ` for a Haar-random orthogonal Q.
fn similar(d: &DMatrix<f64>, seed: u64) -> DMatrix<f64> {
    let q = haar_orthogonal(d.nrows(), &mut stream(seed, &[]));
    &q * d * q.transpose()
}

proptest! {
    #![proptest_config(harness::config())]

    /// Gaussian and Haar-orthogonal matrices (well-conditioned spectra), sizes 1..48, scaled
    /// over 300 orders of magnitude: the same multiset of eigenvalues as faer's solver, pairs
    /// adjacent, and the trace identity Σλ = tr W.
    #[test]
    fn agrees_with_faers_solver(
        n in 1usize..48,
        orthogonal in any::<bool>(),
        exponent in -150i32..150,
        seed in any::<u64>(),
    ) {
        let ensemble = if orthogonal { Ensemble::Orthogonal } else { Ensemble::Gaussian };
        let m = ensemble.draw(n, &mut stream(seed, &[])) * 10f64.powi(exponent);
        let eig = ours(&m);
        assert_pairs_adjacent(&eig);
        let norm = m.norm();
        assert_same_spectrum(&eig, &faer_eigenvalues(&m), 1e-10 * norm);
        let trace: f64 = eig.iter().map(|e| e.0).sum();
        assert_relative_eq!(trace, m.trace(), epsilon = 1e-12 * norm * n as f64, max_relative = 1e-10);
    }

    /// Sparse matrices (k non-zeros per row) often have defective eigenvalues — Jordan blocks
    /// at 0, whose computed values scatter by ε^{1/size} in any backward-stable solver, so two
    /// solvers legitimately differ there. What the sweep uses, the spectral radius, and the
    /// trace identity must agree.
    #[test]
    fn sparse_spectral_radius_agrees_with_faers(
        n in 1usize..48,
        k in 1usize..6,
        seed in any::<u64>(),
    ) {
        let m = Ensemble::Sparse(k).draw(n, &mut stream(seed, &[]));
        let eig = ours(&m);
        assert_pairs_adjacent(&eig);
        let radius = |e: &[(f64, f64)]| e.iter().map(|(r, i)| r.hypot(*i)).fold(0.0, f64::max);
        let norm = m.norm();
        assert_relative_eq!(radius(&eig), radius(&faer_eigenvalues(&m)), epsilon = 1e-10 * norm, max_relative = 1e-10);
        let trace: f64 = eig.iter().map(|e| e.0).sum();
        assert_relative_eq!(trace, m.trace(), epsilon = 1e-12 * norm * n as f64, max_relative = 1e-10);
    }
}

/// The sweep's own size: 30 Gaussian 128 × 128 matrices, spectral radius equal to faer's to
/// 1e-13 relative and to nalgebra's Schur decomposition's to 1e-12.
#[test]
fn spectral_radius_of_the_sweeps_matrices() {
    let mut ws = EigenWorkspace::new(128);
    for i in 0..30 {
        let m = Ensemble::Gaussian.draw(128, &mut stream(11, &[i]));
        let rho = ws.spectral_radius(&m).unwrap();
        let faer = faer_eigenvalues(&m)
            .iter()
            .map(|(r, i)| r.hypot(*i))
            .fold(0.0, f64::max);
        assert_relative_eq!(rho, faer, epsilon = 1e-15, max_relative = 1e-13);
        if i < 5 {
            let schur = m.clone().try_schur(f64::EPSILON, 100_000).unwrap();
            let nalgebra = schur
                .complex_eigenvalues()
                .iter()
                .map(|z| z.norm())
                .fold(0.0, f64::max);
            assert_relative_eq!(rho, nalgebra, epsilon = 1e-15, max_relative = 1e-12);
        }
    }
}

/// Block-diagonal D with real eigenvalues and rotation–scaling blocks `r [cos θ −sin θ; sin θ
/// cos θ]` (eigenvalues `r e^{±iθ}`), hidden by a random orthogonal similarity.
#[test]
fn known_spectra_under_orthogonal_similarity() {
    let real = [3.0, -2.5, 1.0, 1e-3, 0.0, -0.75];
    let pairs = [(1.5, 0.3), (0.9, 2.0), (2.0, PI / 2.0), (0.01, 1.0)];
    let n = real.len() + 2 * pairs.len();
    let mut d = DMatrix::zeros(n, n);
    let mut expected = Vec::new();
    for (k, &x) in real.iter().enumerate() {
        d[(k, k)] = x;
        expected.push((x, 0.0));
    }
    for (p, &(r, theta)) in pairs.iter().enumerate() {
        let k = real.len() + 2 * p;
        let (s, c) = theta.sin_cos();
        d[(k, k)] = r * c;
        d[(k, k + 1)] = -r * s;
        d[(k + 1, k)] = r * s;
        d[(k + 1, k + 1)] = r * c;
        expected.push((r * c, r * s));
        expected.push((r * c, -r * s));
    }
    for seed in 0..20 {
        let eig = ours(&similar(&d, seed));
        assert_pairs_adjacent(&eig);
        assert_same_spectrum(&eig, &expected, 1e-13);
    }
}

/// The cyclic permutation matrix: its eigenvalues are the n-th roots of unity, a unitary
/// matrix on which the plain Francis iteration stalls (every shift is 0) until the
/// exceptional shifts break the symmetry.
#[test]
fn cyclic_permutation_has_the_roots_of_unity() {
    for n in (1..=20).chain([64, 128]) {
        let mut p = DMatrix::zeros(n, n);
        for i in 0..n {
            p[((i + 1) % n, i)] = 1.0;
        }
        let expected: Vec<(f64, f64)> = (0..n)
            .map(|k| {
                let (s, c) = (2.0 * PI * k as f64 / n as f64).sin_cos();
                (c, s)
            })
            .collect();
        let eig = ours(&p);
        assert_pairs_adjacent(&eig);
        assert_same_spectrum(&eig, &expected, 1e-12);
    }
}

/// Triangular matrices deflate at once: their eigenvalues are the diagonal, exactly; the zero
/// and the empty matrix are handled.
#[test]
fn triangular_zero_and_empty() {
    let mut rng = stream(3, &[]);
    let mut t = Ensemble::Gaussian.draw(30, &mut rng);
    for j in 0..30 {
        for i in j + 1..30 {
            t[(i, j)] = 0.0;
        }
    }
    let mut h = t.as_slice().to_vec();
    let (mut wr, mut wi) = (vec![0.0; 30], vec![0.0; 30]);
    hessenberg_eigenvalues(&mut h, 30, &mut wr, &mut wi).unwrap();
    for k in 0..30 {
        assert_eq!((wr[k], wi[k]), (t[(k, k)], 0.0));
    }
    assert_eq!(ours(&DMatrix::zeros(7, 7)), vec![(0.0, 0.0); 7]);
    assert_eq!(ours(&DMatrix::from_element(1, 1, -4.0)), vec![(-4.0, 0.0)]);
    assert!(ours(&DMatrix::zeros(0, 0)).is_empty());
}

/// A non-finite entry is reported as non-convergence (the sweep redraws), never looped on.
#[test]
fn non_finite_entries_are_reported() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut m = Ensemble::Gaussian.draw(9, &mut stream(4, &[]));
        m[(3, 5)] = bad;
        assert_eq!(
            EigenWorkspace::new(9).spectral_radius(&m),
            Err(NoConvergence)
        );
        let mut h = vec![0.0; 4];
        h[1] = bad;
        let (mut wr, mut wi) = (vec![0.0; 2], vec![0.0; 2]);
        assert_eq!(
            hessenberg_eigenvalues(&mut h, 2, &mut wr, &mut wi),
            Err(NoConvergence)
        );
    }
}

/// 2 × 2 matrices through every branch of the final block's standardisation (LAPACK's
/// `dlanv2`), against the closed form `(a + d)/2 ± √(((a − d)/2)² + bc)`.
#[test]
fn two_by_two_blocks() {
    let cases: &[[f64; 4]] = &[
        [1.0, 2.0, 3.0, 4.0],          // real, distinct
        [0.0, -1.0, 1.0, 0.0],         // ±i, already standard
        [2.0, 5.0, 0.0, -1.0],         // c = 0: upper triangular
        [2.0, 0.0, 5.0, -1.0],         // b = 0: swapped
        [1.0, 3.0, -2.0, 4.0],         // complex, unequal diagonal
        [1.0, 1.0, 1e-17, 1.0],        // real, nearly equal: 1 ± 3.16e-9
        [1.0, 1e-20, -1e-20, 1.0],     // complex, tiny imaginary part
        [1e200, 3e199, -2e200, 5e199], // huge entries
        [3.0, 4.0, 4.0, -3.0],         // symmetric: ±5
    ];
    for &[a, b, c, d] in cases {
        let mut h = vec![a, c, b, d]; // column-major
        let (mut wr, mut wi) = (vec![0.0; 2], vec![0.0; 2]);
        hessenberg_eigenvalues(&mut h, 2, &mut wr, &mut wi).unwrap();
        // the closed form, scaled to avoid overflow
        let s = a.abs().max(b.abs()).max(c.abs()).max(d.abs());
        let (a_, b_, c_, d_) = (a / s, b / s, c / s, d / s);
        let mean = (a_ + d_) / 2.0;
        let disc = ((a_ - d_) / 2.0).powi(2) + b_ * c_;
        let mut expected = if disc >= 0.0 {
            vec![
                (s * (mean + disc.sqrt()), 0.0),
                (s * (mean - disc.sqrt()), 0.0),
            ]
        } else {
            let im = s * (-disc).sqrt();
            vec![(s * mean, im), (s * mean, -im)]
        };
        let mut got = vec![(wr[0], wi[0]), (wr[1], wi[1])];
        for v in [&mut expected, &mut got] {
            v.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1)));
        }
        for (g, e) in got.iter().zip(&expected) {
            assert_relative_eq!(g.0, e.0, epsilon = 1e-15 * s, max_relative = 1e-9);
            assert_relative_eq!(g.1, e.1, epsilon = 1e-15 * s, max_relative = 1e-9);
        }
        assert_pairs_adjacent(&got_in_solver_order(&wr, &wi));
    }
}

fn got_in_solver_order(wr: &[f64], wi: &[f64]) -> Vec<(f64, f64)> {
    wr.iter().copied().zip(wi.iter().copied()).collect()
}
