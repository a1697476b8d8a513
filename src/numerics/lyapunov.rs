//! Lyapunov exponents of a matrix product by QR re-orthonormalisation (Benettin, Galgani,
//! Giorgilli & Strelcyn 1980; the "standard method" of Eckmann & Ruelle 1985, §III.A).
//!
//! For a product `P_T = M_T ⋯ M_2 M_1` of S × S matrices, the exponents are
//! `λ_i = lim (1/T) ln σ_i(P_T)`. Multiplying an orthonormal basis `Q_0` (S × p) by the factors
//! directly loses every direction but the top one to rounding (all columns align with the
//! leading singular vector at rate e^{(λ_1 − λ_2)t}); instead, every few factors the propagated
//! basis is factored `M Q = Q' R` (thin QR, `R` upper triangular), `Q'` replaces `Q` and
//! `ln |R_ii|` is added to the i-th sum. After T steps `λ_i ≈ (1/T) Σ ln |R_ii|`: the finite-time
//! exponents, whose sum over all S directions is exactly `(1/T) ln |det P_T|`.
//!
//! The caller propagates the basis (through any map: an explicit matrix, or the engine's
//! backward pass for a network's state Jacobians) and hands the result to
//! [`Benettin::absorb`]; this module only keeps the orthonormal basis and the sums.
//!
//! ```
//! use bptt::numerics::lyapunov::Benettin;
//! use nalgebra::{DMatrix, DVector};
//!
//! // M = diag(2, 0.5): exponents ln 2 and ln 0.5
//! let m = DMatrix::from_diagonal(&DVector::from_vec(vec![2.0, 0.5]));
//! let mut b = Benettin::new(2, 2);
//! for _ in 0..200 {
//!     let propagated = &m * b.basis();
//!     b.absorb(propagated, 1);
//! }
//! let l = b.exponents();
//! // finite-time values are O(1/T) from the limit; their sum, ln|det M| = 0, is exact
//! assert!((l[0] - 2f64.ln()).abs() < 0.02 && (l[1] - 0.5f64.ln()).abs() < 0.02);
//! assert!((l[0] + l[1]).abs() < 1e-14);
//! ```

use nalgebra::DMatrix;

use crate::numerics::spectral::gaussian;
use crate::rng::stream;

/// The seed of the start basis' stream (the bytes of "lyapunov").
const START_SEED: u64 = u64::from_be_bytes(*b"lyapunov");

/// The running state of the QR method: the orthonormal basis to propagate next and the sums of
/// `ln |R_ii|` so far.
#[derive(Clone, Debug)]
pub struct Benettin {
    /// S × p, orthonormal columns.
    q: DMatrix<f64>,
    /// Σ ln |R_ii| per direction, i = 0..p.
    log_r: Vec<f64>,
    /// Factors absorbed so far.
    steps: usize,
}

impl Benettin {
    /// The `exponents` largest exponents of an S-dimensional product, from a fixed
    /// pseudo-random orthonormal start (the Q of a Gaussian S × p matrix drawn from the named
    /// stream `lyapunov-start`, the same for every call with these sizes: deterministic).
    ///
    /// The start must be *generic*: a basis inside an invariant subspace (the first unit vectors
    /// of a diagonal product, say) would give that subspace's exponents, not the largest ones.
    /// With the full spectrum (p = S) any start spans the space; the finite-time values still
    /// depend on it by O(1/T), and their sum does not (it is ln |det| / T).
    ///
    /// # Panics
    /// If `exponents` is 0 or exceeds `state`.
    #[must_use]
    pub fn new(state: usize, exponents: usize) -> Self {
        assert!(
            (1..=state).contains(&exponents),
            "Benettin: {exponents} exponents of a {state}-dimensional state"
        );
        let mut rng = stream(START_SEED, &[state as u64, exponents as u64]);
        Self::with_basis(gaussian(state, exponents, 1.0, &mut rng).qr().q())
    }

    /// Start from the given basis (S × p, orthonormal columns: not checked).
    #[must_use]
    pub fn with_basis(q: DMatrix<f64>) -> Self {
        Benettin {
            log_r: vec![0.0; q.ncols()],
            q,
            steps: 0,
        }
    }

    /// The orthonormal basis `Q` (S × p) the caller multiplies by the next factors.
    #[must_use]
    pub fn basis(&self) -> &DMatrix<f64> {
        &self.q
    }

    /// Absorb `propagated = M_{t+steps} ⋯ M_{t+1} Q` (S × p), the product of the next `steps`
    /// factors with [`basis`](Self::basis): thin QR, `Q ← Q'`, `sums += ln |diag R|`.
    ///
    /// A direction the product annihilates (`R_ii = 0`, a nilpotent or rank-deficient product)
    /// gets ln 0 = −∞; a non-finite `propagated` (an exploded network) makes the exponents NaN.
    /// Both are data, not errors.
    ///
    /// # Panics
    /// If `propagated` is not S × p.
    pub fn absorb(&mut self, propagated: DMatrix<f64>, steps: usize) {
        assert_eq!(
            propagated.shape(),
            self.q.shape(),
            "Benettin::absorb: the propagated basis must keep the basis' shape"
        );
        self.steps += steps;
        if propagated.iter().any(|x| !x.is_finite()) {
            self.log_r.fill(f64::NAN);
            return;
        }
        // the QR factors the matrix in place: it takes the caller's copy, no second one
        let qr = propagated.qr();
        let r = qr.r();
        for (i, sum) in self.log_r.iter_mut().enumerate() {
            *sum += r[(i, i)].abs().ln();
        }
        self.q = qr.q();
    }

    /// Factors absorbed so far (T).
    #[must_use]
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The finite-time exponents `(1/T) Σ ln |R_ii|`, largest first; all NaN if
    /// any is (a non-finite product) and before any step.
    #[must_use]
    pub fn exponents(&self) -> Vec<f64> {
        let t = self.steps as f64;
        let mut l: Vec<f64> = self.log_r.iter().map(|s| s / t).collect();
        // descending, NaN after every number
        l.sort_by(|a, b| b.total_cmp(a));
        if l.iter().any(|x| x.is_nan()) {
            l.fill(f64::NAN);
        }
        l
    }
}
