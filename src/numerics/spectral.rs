//! Random recurrent matrices and their spectra: the ensembles of the spectral-radius sweep,
//! an iteration-capped eigenvalue routine, and σ_max.
//!
//! - [`Ensemble::Gaussian`]: iid N(0, 1/n) entries (Ginibre; circular law of radius ≈ 1).
//! - [`Ensemble::Orthogonal`]: Haar-distributed orthogonal (QR of a Gaussian matrix with the
//!   signs of R's diagonal folded into Q, Mezzadri 2007): normal, every |λ| = σ = 1.
//! - [`Ensemble::Sparse`]: k non-zeros per row at uniformly random columns, N(0, 1/k) values
//!   (Pascanu et al.'s "smart tanh" recurrent matrix: 15 per row).
//!
//! The spectral radius comes from faer's Hessenberg reduction and our eigenvalues-only Francis
//! double-shift QR ([`crate::numerics::hqr`]) — faster at n = 128 than faer's full eigenvalue
//! solver, nalgebra's Schur and LAPACK through numpy (measured in `experiments/README.md`,
//! "Performance") — which reports non-convergence instead of looping (nalgebra's
//! `complex_eigenvalues` can loop forever, nalgebra#611). σ_max comes from Lanczos on `WᵀW`
//! with full reorthogonalisation (a fraction of a full SVD's time, same section).

use std::fmt;
use std::str::FromStr;

use faer::Par;
use faer::dyn_stack::{MemBuffer, MemStack};
use nalgebra::{DMatrix, DVector};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

use crate::error::BpttError;
use crate::numerics::hqr::{self, NoConvergence};
use crate::rng::Rng;

/// A distribution of random n × n recurrent matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ensemble {
    Gaussian,
    Orthogonal,
    /// k non-zeros per row.
    Sparse(usize),
}

impl Ensemble {
    /// Draw one n × n matrix from the ensemble.
    pub fn draw(self, n: usize, rng: &mut Rng) -> DMatrix<f64> {
        match self {
            Ensemble::Gaussian => gaussian(n, n, 1.0 / (n as f64).sqrt(), rng),
            Ensemble::Orthogonal => haar_orthogonal(n, rng),
            Ensemble::Sparse(k) => {
                let k = k.min(n);
                let sd = 1.0 / (k as f64).sqrt();
                let mut m = DMatrix::zeros(n, n);
                let mut cols: Vec<usize> = (0..n).collect();
                for i in 0..n {
                    // partial Fisher–Yates: the first k of a random permutation
                    for j in 0..k {
                        let pick = rng.random_range(j..n);
                        cols.swap(j, pick);
                    }
                    for &c in &cols[..k] {
                        let z: f64 = StandardNormal.sample(rng);
                        m[(i, c)] = sd * z;
                    }
                }
                m
            }
        }
    }

    /// Stable identifier used in seeds and file names.
    pub fn id(self) -> u64 {
        match self {
            Ensemble::Gaussian => 0,
            Ensemble::Orthogonal => 1,
            Ensemble::Sparse(k) => 1000 + k as u64,
        }
    }
}

impl fmt::Display for Ensemble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ensemble::Gaussian => f.write_str("gaussian"),
            Ensemble::Orthogonal => f.write_str("orthogonal"),
            Ensemble::Sparse(k) => write!(f, "sparse{k}"),
        }
    }
}

impl FromStr for Ensemble {
    type Err = BpttError;
    fn from_str(s: &str) -> Result<Self, BpttError> {
        match s {
            "gaussian" => Ok(Ensemble::Gaussian),
            "orthogonal" | "haar" => Ok(Ensemble::Orthogonal),
            "sparse" => Ok(Ensemble::Sparse(15)),
            _ => match s.strip_prefix("sparse").map(str::parse::<usize>) {
                Some(Ok(k)) if k > 0 => Ok(Ensemble::Sparse(k)),
                _ => Err(BpttError::Invalid(format!(
                    "unknown ensemble '{s}' (expected gaussian, orthogonal, sparse or sparseK with K ≥ 1)"
                ))),
            },
        }
    }
}

/// An `rows × cols` matrix of iid N(0, sd²) entries.
pub fn gaussian(rows: usize, cols: usize, sd: f64, rng: &mut Rng) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| {
        let z: f64 = StandardNormal.sample(rng);
        sd * z
    })
}

/// A Haar-distributed n × n orthogonal matrix: Q of a Gaussian matrix's QR, with column j
/// multiplied by sign(R_jj) so that the distribution is exactly Haar (Mezzadri 2007).
pub fn haar_orthogonal(n: usize, rng: &mut Rng) -> DMatrix<f64> {
    let qr = gaussian(n, n, 1.0, rng).qr();
    let (mut q, r) = (qr.q(), qr.r());
    for j in 0..n {
        if r[(j, j)] < 0.0 {
            q.column_mut(j).neg_mut();
        }
    }
    q
}

/// Scratch space of the eigenvalue solver, reused across matrices of one size (one per worker
/// thread): no allocation, hence no page faults, per matrix.
///
/// The solver: faer's Householder reduction to upper Hessenberg form, then
/// [`crate::numerics::hqr`]'s eigenvalues-only Francis double-shift QR (timings against faer's
/// own QR phase: `experiments/README.md`, "Performance"). Iteration-capped:
/// `Err(NoConvergence)` instead of a hang.
pub struct EigenWorkspace {
    n: usize,
    buf: MemBuffer,
    /// The matrix, reduced in place to Hessenberg form, then consumed by the QR iteration.
    h: Vec<f64>,
    /// faer's block Householder factors of the reduction (unused afterwards).
    householder: faer::Mat<f64>,
    re: Vec<f64>,
    im: Vec<f64>,
}

impl EigenWorkspace {
    pub fn new(n: usize) -> Self {
        let block = 1;
        EigenWorkspace {
            n,
            buf: MemBuffer::new(
                faer::linalg::evd::hessenberg::hessenberg_in_place_scratch::<f64>(
                    n,
                    block,
                    Par::Seq,
                    Default::default(),
                ),
            ),
            h: vec![0.0; n * n],
            householder: faer::Mat::zeros(block, n.saturating_sub(1)),
            re: vec![0.0; n],
            im: vec![0.0; n],
        }
    }

    /// All eigenvalues `(re, im)` of `m` (n × n), complex-conjugate pairs adjacent.
    pub fn eigenvalues(&mut self, m: &DMatrix<f64>) -> Result<Vec<(f64, f64)>, NoConvergence> {
        self.solve(m)?;
        Ok(self
            .re
            .iter()
            .copied()
            .zip(self.im.iter().copied())
            .collect())
    }

    /// Spectral radius `ρ(W) = max |λ|`.
    pub fn spectral_radius(&mut self, m: &DMatrix<f64>) -> Result<f64, NoConvergence> {
        self.solve(m)?;
        Ok(self
            .re
            .iter()
            .zip(&self.im)
            .map(|(re, im)| re.hypot(*im))
            .fold(0.0, f64::max))
    }

    fn solve(&mut self, m: &DMatrix<f64>) -> Result<(), NoConvergence> {
        let n = self.n;
        assert_eq!(m.shape(), (n, n), "eigenvalues: matrix is not {n} × {n}");
        if n == 0 {
            return Ok(());
        }
        if m.iter().any(|x| !x.is_finite()) {
            return Err(NoConvergence);
        }
        self.h.copy_from_slice(m.as_slice());
        faer::linalg::evd::hessenberg::hessenberg_in_place(
            faer::MatMut::from_column_major_slice_mut(&mut self.h, n, n),
            self.householder.as_mut(),
            Par::Seq,
            MemStack::new(&mut self.buf),
            Default::default(),
        );
        // faer returns with the vector registers' upper halves dirty: see `crate::cpu`
        crate::cpu::clear_upper_state();
        hqr::hessenberg_eigenvalues(&mut self.h, n, &mut self.re, &mut self.im)
    }
}

/// All eigenvalues `(re, im)` of a square matrix by faer's complete real eigenvalue solver
/// (Hessenberg reduction, multishift QR with aggressive early deflation): an implementation
/// sharing no code with [`crate::numerics::hqr`], kept as the tests' oracle and the benchmark's
/// comparison (`benches/sweep_kernel.rs`; numbers in `experiments/README.md`).
pub fn reference_eigenvalues(m: &DMatrix<f64>) -> Result<Vec<(f64, f64)>, NoConvergence> {
    let n = m.nrows();
    assert_eq!(m.ncols(), n, "eigenvalues: matrix is not square");
    let no = faer::linalg::evd::ComputeEigenvectors::No;
    let mut buf = MemBuffer::new(faer::linalg::evd::evd_scratch::<f64>(
        n,
        no,
        no,
        Par::Seq,
        Default::default(),
    ));
    let (mut re, mut im) = (faer::diag::Diag::zeros(n), faer::diag::Diag::zeros(n));
    faer::linalg::evd::evd_real(
        faer::MatRef::from_column_major_slice(m.as_slice(), n, n),
        re.as_mut(),
        im.as_mut(),
        None,
        None,
        Par::Seq,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .map_err(|_| NoConvergence)?;
    let (re, im) = (re.column_vector(), im.column_vector());
    Ok((0..n).map(|i| (re[i], im[i])).collect())
}

/// All eigenvalues `(re, im)` of a square matrix (see [`EigenWorkspace::eigenvalues`]).
pub fn eigenvalues(m: &DMatrix<f64>) -> Result<Vec<(f64, f64)>, NoConvergence> {
    EigenWorkspace::new(m.nrows()).eigenvalues(m)
}

/// Spectral radius `ρ(W) = max |λ|`.
pub fn spectral_radius(m: &DMatrix<f64>) -> Result<f64, NoConvergence> {
    EigenWorkspace::new(m.nrows()).spectral_radius(m)
}

/// Largest singular value `σ_max(W) = ‖W‖₂`, by Lanczos on `WᵀW` with full
/// reorthogonalisation from a start vector drawn from `rng`, until the largest Ritz value is
/// stable to 1e-15 relative (or the Krylov space is exhausted, where it is exact).
pub fn sigma_max(m: &DMatrix<f64>, rng: &mut Rng) -> f64 {
    let n = m.ncols();
    if n == 0 || m.nrows() == 0 {
        return 0.0;
    }
    let mut q = DVector::from_fn(n, |_, _| StandardNormal.sample(rng));
    q /= q.norm();
    // Lanczos vectors as the columns of one matrix, so reorthogonalisation is two GEMVs
    let mut basis = DMatrix::<f64>::zeros(n, n);
    let mut coeffs = DVector::<f64>::zeros(n);
    let (mut alphas, mut betas) = (Vec::new(), Vec::new());
    let m_t = m.transpose();
    let mut wq = DVector::zeros(m.nrows());
    let mut w = DVector::zeros(n);
    let mut previous: f64 = 0.0;
    for j in 0..n {
        // w = Wᵀ (W q), two matrix–vector products
        matvec(&mut wq, m.as_slice(), m.nrows(), &q);
        matvec(&mut w, m_t.as_slice(), n, &wq);
        let alpha = q.dot(&w);
        basis.set_column(j, &q);
        alphas.push(alpha);
        // full reorthogonalisation, classical Gram–Schmidt twice (Kahan–Parlett: twice is
        // enough): c = Qᵀ w, w ← w − Q c
        let q_j = &basis.as_slice()[..n * (j + 1)];
        for _ in 0..2 {
            matvec_t(&mut coeffs.as_mut_slice()[..=j], q_j, n, &w);
            matvec_sub(&mut w, q_j, n, &coeffs.as_slice()[..=j]);
        }
        let beta = w.norm();
        let exhausted = beta <= 1e-14 * previous.max(alpha).max(f64::MIN_POSITIVE) || j + 1 == n;
        // the largest Ritz value, every 4 steps (it only grows, towards σ_max²)
        if j % 4 == 3 || exhausted {
            let theta = largest_tridiagonal_eigenvalue(&alphas, &betas);
            let converged = (theta - previous).abs() <= 1e-15 * theta;
            previous = theta;
            if converged || exhausted {
                break;
            }
        }
        betas.push(beta);
        q = &w / beta;
    }
    previous.max(0.0).sqrt()
}

/// `y = A x` for a column-major `A` with `rows` rows, through faer's kernels (no copies).
fn matvec(y: &mut DVector<f64>, a: &[f64], rows: usize, x: &DVector<f64>) {
    let cols = a.len() / rows;
    faer::linalg::matmul::matmul(
        faer::MatMut::from_column_major_slice_mut(y.as_mut_slice(), rows, 1),
        faer::Accum::Replace,
        faer::MatRef::from_column_major_slice(a, rows, cols),
        faer::MatRef::from_column_major_slice(x.as_slice(), cols, 1),
        1.0,
        Par::Seq,
    );
}

/// `c = Aᵀ x`.
fn matvec_t(c: &mut [f64], a: &[f64], rows: usize, x: &DVector<f64>) {
    let cols = a.len() / rows;
    faer::linalg::matmul::matmul(
        faer::MatMut::from_column_major_slice_mut(c, cols, 1),
        faer::Accum::Replace,
        faer::MatRef::from_column_major_slice(a, rows, cols).transpose(),
        faer::MatRef::from_column_major_slice(x.as_slice(), rows, 1),
        1.0,
        Par::Seq,
    );
}

/// `w −= A c`.
fn matvec_sub(w: &mut DVector<f64>, a: &[f64], rows: usize, c: &[f64]) {
    let cols = a.len() / rows;
    faer::linalg::matmul::matmul(
        faer::MatMut::from_column_major_slice_mut(w.as_mut_slice(), rows, 1),
        faer::Accum::Add,
        faer::MatRef::from_column_major_slice(a, rows, cols),
        faer::MatRef::from_column_major_slice(c, cols, 1),
        -1.0,
        Par::Seq,
    );
}

/// Largest eigenvalue of the symmetric tridiagonal matrix with diagonal `a`, off-diagonal `b`,
/// by bisection on the Sturm count (the number of negative pivots of `T − x I = L D Lᵀ` is the
/// number of eigenvalues below x), from Gershgorin bounds to full precision: O(k) per step.
fn largest_tridiagonal_eigenvalue(a: &[f64], b: &[f64]) -> f64 {
    let k = a.len();
    let off = |i: usize| if i < b.len() { b[i].abs() } else { 0.0 };
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (i, &ai) in a.iter().enumerate() {
        let r = off(i) + if i > 0 { off(i - 1) } else { 0.0 };
        lo = lo.min(ai - r);
        hi = hi.max(ai + r);
    }
    let below = |x: f64| {
        let mut count = 0;
        let mut d = 1.0;
        for i in 0..k {
            let b2 = if i > 0 { b[i - 1] * b[i - 1] } else { 0.0 };
            d = a[i] - x - if i > 0 { b2 / d } else { 0.0 };
            if d == 0.0 {
                d = -f64::EPSILON * (x.abs() + f64::MIN_POSITIVE);
            }
            count += usize::from(d < 0.0);
        }
        count
    };
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi || hi - lo <= 2.0 * f64::EPSILON * lo.abs().max(hi.abs()) {
            break;
        }
        // all k eigenvalues below mid: the largest is in [lo, mid]
        if below(mid) == k { hi = mid } else { lo = mid }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;
    use approx::assert_relative_eq;

    #[test]
    fn eigenvalues_agree_with_nalgebra_schur() {
        for (i, ens) in [
            Ensemble::Gaussian,
            Ensemble::Orthogonal,
            Ensemble::Sparse(3),
        ]
        .into_iter()
        .enumerate()
        {
            let m = ens.draw(24, &mut stream(5, &[i as u64]));
            let ours = spectral_radius(&m).unwrap();
            let schur = m
                .clone()
                .try_schur(f64::EPSILON, 10_000)
                .expect("schur converges");
            let theirs = schur
                .complex_eigenvalues()
                .iter()
                .map(|z| z.norm())
                .fold(0.0, f64::max);
            assert_relative_eq!(ours, theirs, epsilon = 1e-14, max_relative = 1e-12);
        }
    }

    #[test]
    fn sigma_max_agrees_with_the_svd() {
        for (i, n) in [1usize, 2, 7, 40, 128].into_iter().enumerate() {
            let mut rng = stream(6, &[i as u64]);
            let m = Ensemble::Gaussian.draw(n, &mut rng);
            let ours = sigma_max(&m, &mut rng);
            let svd = m.singular_values().max();
            assert_relative_eq!(ours, svd, epsilon = 1e-15, max_relative = 1e-12);
        }
        // a non-normal matrix whose σ_max is far above its spectral radius
        let m = DMatrix::from_row_slice(2, 2, &[0.5, 2.0, 0.0, 0.5]);
        assert_relative_eq!(
            sigma_max(&m, &mut stream(1, &[])),
            m.singular_values().max(),
            epsilon = 1e-15,
            max_relative = 1e-13
        );
    }

    #[test]
    fn ensembles_have_their_defining_properties() {
        let mut rng = stream(7, &[]);
        let q = Ensemble::Orthogonal.draw(16, &mut rng);
        assert_relative_eq!(
            q.transpose() * &q,
            DMatrix::identity(16, 16),
            epsilon = 1e-13,
            max_relative = 1e-13
        );
        assert_relative_eq!(
            spectral_radius(&q).unwrap(),
            1.0,
            epsilon = 1e-13,
            max_relative = 1e-13
        );
        let s = Ensemble::Sparse(5).draw(30, &mut rng);
        for i in 0..30 {
            assert_eq!(s.row(i).iter().filter(|x| **x != 0.0).count(), 5);
        }
        // Gaussian N(0, 1/n): mean of squares ≈ 1/n
        let g = Ensemble::Gaussian.draw(200, &mut rng);
        assert_relative_eq!(
            g.norm_squared() / 200.0,
            1.0,
            epsilon = 0.0,
            max_relative = 0.02
        );
        assert_eq!(
            "sparse15".parse::<Ensemble>().unwrap(),
            Ensemble::Sparse(15)
        );
        assert!("sparse0".parse::<Ensemble>().is_err() && "normal".parse::<Ensemble>().is_err());
    }
}
