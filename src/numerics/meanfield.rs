//! Mean-field theory of random vanilla RNNs (Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli
//! 2016; Chen, Pennington & Schoenholz 2018, "Dynamical isometry and a mean field theory of
//! RNNs", ICML): the large-n prediction of the pre-activation variance and of the gradient norm
//! `‖∂L/∂h_k‖` of `h_t = φ(a_t)`, `a_t = W_hh h_{t−1} + W_ih x_t + b`, `h_0 = 0`.
//!
//! Assumptions (derivation: `proofs/meanfield.md`): `W_hh` has iid entries of variance `g²/n`;
//! the input drive `W_ih x_t + b` has per-unit variance `input_var` (σ_u² + σ_b²), independent
//! of `W_hh`; n → ∞, so that every pre-activation is N(0, q_t) with
//!
//! ```text
//! q_1 = input_var,        q_{t+1} = V(q_t) = g² E_{z∼N(0,q_t)}[φ(z)²] + input_var;
//! ```
//!
//! and the gradient-independence assumption (the backward pass's `W_hhᵀ` is treated as a fresh
//! matrix, independent of the forward `W_hh`), so that each step of
//! `∂L/∂h_{t−1} = W_hhᵀ diag(φ'(a_t)) ∂L/∂h_t` multiplies the squared norm by
//!
//! ```text
//! χ_t = χ(q_t) = g² E_{z∼N(0,q_t)}[φ'(z)²].
//! ```
//!
//! With `‖∂L/∂h_T‖ = 1`, `ln ‖∂L/∂h_{t−1}‖ = ln ‖∂L/∂h_t‖ + ½ ln χ_t`
//! ([`predicted_log_norms`]); far from the end the slope per step back in time is `½ ln χ(q*)`
//! at the fixed point `q* = V(q*)` ([`fixed_point`], [`asymptotic_slope`]).
//!
//! The Gaussian expectations are [`GaussHermite`] quadratures. The nonlinearity comes in as
//! closures (`numerics` does not import `nn`): pass `|a| act.value(a)` and
//! `|a| act.derivative(a, act.value(a))` for an `nn::activation::Activation`.

/// The default number of quadrature points: 640, even.
///
/// *Enough points.* Gauss–Hermite converges only root-exponentially for integrands with
/// complex singularities: for `f(√var·x)` analytic in the strip `|Im x| < d` the error decays
/// like `exp(−d √(2n))`. tanh (and with it tanh², sech⁴) has poles at `±iπ/2`, so
/// `d = π/(2√var)`: at var = 3.3 (the largest the spectral sweep reaches, ≈ ρ² + 1) the error
/// of `E[sech⁴]` is 3e-5 at 96 points, 5e-8 at 200, 1e-14 at 576, 1e-15 at 640 (measured
/// against a trapezoid rule with h = 0.02, `tests/meanfield.rs::the_default_rule_is_converged_at_the_sweeps_variances`).
/// 640 keeps every tanh and sigmoid expectation below 1e-13 up to var = 4; sigmoid's poles
/// at `±iπ` (twice as far) are harmless. Beyond var ≈ 4 pass a larger rule.
///
/// *Even*, because an even rule has no node at 0: its nodes come in pairs ±x_i of equal
/// weight, so for a ReLU-type integrand `p(z)·1{z>0}` with `p` an *even* polynomial of degree
/// < 2·points the rule sums exactly half of `Σ w_i p(x_i)`, and that sum is the exact `E[p(z)]`
/// (degree < 2·points). Hence `E[relu(z)²] = E[z²·1{z>0}] = var/2` and
/// `E[relu'(z)²] = E[1{z>0}] = ½` are exact up to rounding. An odd rule puts the weight
/// `w_mid ≈ 0.8/√points` on the node 0, where `1{z>0}` (PyTorch's ReLU'(0) = 0) counts it on
/// neither side: `E[1{z>0}]` would come out `(1 − w_mid)/2`. (For an odd `p`, e.g.
/// `E[relu(z)] = √(var/2π)`, the symmetry argument fails and the rule is not exact.)
pub const DEFAULT_POINTS: usize = 640;

/// Gauss–Hermite quadrature for the standard normal: nodes `x_i` and weights `w_i`
/// (probabilists' weight e^{−x²/2}, weights normalised to Σ w_i = 1) such that
/// `Σ w_i p(x_i) = E_{x∼N(0,1)}[p(x)]` for every polynomial `p` of degree < 2·points.
///
/// Nodes are sorted ascending and exactly symmetric: `x_i = −x_{n−1−i}` and
/// `w_i = w_{n−1−i}` bit for bit (and `x_{(n−1)/2} = 0` for odd n).
#[derive(Clone, Debug, PartialEq)]
pub struct GaussHermite {
    nodes: Vec<f64>,
    weights: Vec<f64>,
}

/// Normalised probabilists' Hermite polynomials `p_k = He_k/√(k!)`, orthonormal under N(0, 1):
/// `p_{n}(x)` and `p_{n−1}(x)` by the three-term recurrence
/// `√(k+1) p_{k+1} = x p_k − √k p_{k−1}` (p_0 = 1, p_{−1} = 0), both multiplied by
/// `10^{−150·e}`; returned as `(p_n, p_{n−1}, e)`. The rescaling keeps the recurrence from
/// overflowing for large n (it only matters where the weight underflows anyway).
fn hermite_pair(n: usize, x: f64) -> (f64, f64, i32) {
    let (mut prev, mut p, mut e) = (0.0, 1.0, 0);
    for k in 0..n {
        let next = (x * p - (k as f64).sqrt() * prev) / ((k + 1) as f64).sqrt();
        prev = p;
        p = next;
        if p.abs() > 1e150 {
            p *= 1e-150;
            prev *= 1e-150;
            e += 1;
        }
    }
    (p, prev, e)
}

/// The number of eigenvalues below `x` of the n × n Jacobi matrix of the orthonormal Hermite
/// recurrence (zero diagonal, off-diagonals `√k`, k = 1..n−1) — by Sylvester's law of inertia,
/// the number of negative pivots of the LDLᵀ factorisation of `J − x I`:
/// `d_1 = −x`, `d_k = −x − (k−1)/d_{k−1}` (a zero pivot replaced by a tiny negative one, as in
/// LAPACK's `dstebz`). Backward stable: the count is exact for a matrix within a few ε‖J‖.
fn eigenvalues_below(n: usize, x: f64) -> usize {
    let mut count = 0;
    let mut d = -x;
    for k in 1..=n {
        if k > 1 {
            d = -x - (k - 1) as f64 / d;
        }
        if d == 0.0 {
            d = -f64::MIN_POSITIVE;
        }
        if d < 0.0 {
            count += 1;
        }
    }
    count
}

impl GaussHermite {
    /// The `points`-point rule, exact for polynomials of degree < 2·points.
    ///
    /// Golub & Welsch (1969): the nodes are the eigenvalues of the symmetric tridiagonal Jacobi
    /// matrix of the orthonormal recurrence (zero diagonal, off-diagonals √k). Each non-negative
    /// one is located by bisection on the matrix's Sturm count ([`eigenvalues_below`], O(n)
    /// per probe, so the whole rule is O(n²) — a few ms at [`DEFAULT_POINTS`] — where a dense
    /// eigen-decomposition is O(n³)) to 1e-6, then polished by Newton's method on the
    /// recurrence for `p_n` (with `p_n' = √n p_{n−1}`). Its weight is the Christoffel number
    /// `w_i = 1/(n p_{n−1}(x_i)²)` rather than Golub–Welsch's squared eigenvector component:
    /// the latter is accurate only to ~1e-16 *absolutely*, i.e. not at all for the outer
    /// weights (1e-70 at 96 points, below 1e-300 at 640), while the formula is accurate
    /// relatively, so high moments such as `E[z^190]` come out right (`tests/meanfield.rs`). The negative nodes are the
    /// mirror images — exact symmetry by construction — and the weights are finally divided by
    /// their sum (a change of ~1e-16). Outer weights below ~1e-308 underflow to 0 (for
    /// n ≳ 700), which changes no sum.
    ///
    /// ```
    /// use bptt::numerics::meanfield::GaussHermite;
    ///
    /// let gh = GaussHermite::new(8);
    /// // exact for polynomials of degree < 16: E[z⁴] = 3 var²
    /// let m4 = gh.expect(2.0, |z| z.powi(4));
    /// assert!((m4 - 12.0).abs() < 1e-13);
    /// // the nodes are symmetric and the weights a probability distribution
    /// assert_eq!(gh.nodes()[0], -gh.nodes()[7]);
    /// assert!((gh.weights().iter().sum::<f64>() - 1.0).abs() < 1e-15);
    /// ```
    ///
    /// # Panics
    /// If `points` is 0.
    #[must_use]
    pub fn new(points: usize) -> GaussHermite {
        assert!(
            points > 0,
            "GaussHermite: a quadrature rule needs at least 1 point"
        );
        let n = points;
        let half = n / 2;
        let sqrt_n = (n as f64).sqrt();
        // Gershgorin: every eigenvalue of J lies in [−2√(n−1), 2√(n−1)]
        let bound = 2.0 * ((n - 1) as f64).sqrt() + 1.0;
        // the positive nodes, innermost first: eigenvalue number `index` (ascending, 0-based)
        let mut positive = Vec::with_capacity(half);
        for j in 0..half {
            let index = n / 2 + n % 2 + j;
            let (mut lo, mut hi) = (0.0, bound);
            // bisection on the Sturm count, to 1e-6 absolutely
            while hi - lo > 1e-6 {
                let mid = 0.5 * (lo + hi);
                if eigenvalues_below(n, mid) > index {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            // Newton on p_n from the bracket's midpoint, kept inside the bracket
            let mut x = 0.5 * (lo + hi);
            for _ in 0..20 {
                let (p, prev, _) = hermite_pair(n, x);
                let step = p / (sqrt_n * prev);
                let next = x - step;
                if !step.is_finite() || next < lo - 1e-9 || next > hi + 1e-9 {
                    break;
                }
                x = next;
                if step.abs() <= f64::EPSILON * x {
                    break;
                }
            }
            positive.push(x);
        }
        let weight = |x: f64| {
            let (_, prev, e) = hermite_pair(n, x);
            let w = 1.0 / (n as f64 * prev * prev);
            match e {
                0 => w,
                1 => w * 1e-300,
                _ => 0.0,
            }
        };
        let mut nodes = Vec::with_capacity(n);
        let mut weights = Vec::with_capacity(n);
        for &x in positive.iter().rev() {
            nodes.push(-x);
            weights.push(weight(x));
        }
        if n % 2 == 1 {
            nodes.push(0.0);
            weights.push(weight(0.0));
        }
        for &x in &positive {
            nodes.push(x);
            weights.push(weight(x));
        }
        // the sum, smallest (outermost) terms first, pairs counted twice
        let mut total = if n % 2 == 1 { weights[half] } else { 0.0 };
        let mut pairs = 0.0;
        for w in &weights[..half] {
            pairs += w;
        }
        total += 2.0 * pairs;
        for w in &mut weights {
            *w /= total;
        }
        GaussHermite { nodes, weights }
    }

    /// `E_{z∼N(0,var)}[f(z)] ≈ Σ w_i f(√var · x_i)`, summed by symmetric pairs
    /// `w_i (f(√var x_i) + f(−√var x_i))` from the outermost (smallest weights) in; an exactly
    /// odd `f` therefore gives exactly 0. `var = 0` gives `f(0)`; a negative or NaN `var`
    /// gives NaN (no panic).
    #[must_use]
    pub fn expect(&self, var: f64, f: impl Fn(f64) -> f64) -> f64 {
        let s = var.sqrt();
        let n = self.nodes.len();
        let mut sum = 0.0;
        for i in 0..n / 2 {
            let z = s * self.nodes[n - 1 - i];
            sum += self.weights[i] * (f(z) + f(-z));
        }
        if n % 2 == 1 {
            let mid = if s.is_nan() { f64::NAN } else { 0.0 };
            sum += self.weights[n / 2] * f(mid);
        }
        sum
    }

    /// The nodes `x_i` for N(0, 1), ascending.
    #[must_use]
    pub fn nodes(&self) -> &[f64] {
        &self.nodes
    }

    /// The weights `w_i`, summing to 1.
    #[must_use]
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
}

impl Default for GaussHermite {
    /// The [`DEFAULT_POINTS`]-point rule.
    fn default() -> Self {
        GaussHermite::new(DEFAULT_POINTS)
    }
}

/// The variance map `V(q) = g² E_{z∼N(0,q)}[φ(z)²] + input_var`: the variance of
/// `a_{t+1} = W_hh φ(a_t) + (input drive)` when `a_t`'s entries are N(0, q), for `W_hh` iid of
/// variance `g²/n` (`g2` = g²) and n → ∞.
#[must_use]
pub fn variance_map(
    gh: &GaussHermite,
    phi: impl Fn(f64) -> f64,
    g2: f64,
    input_var: f64,
    q: f64,
) -> f64 {
    g2 * gh.expect(q, |z| {
        let p = phi(z);
        p * p
    }) + input_var
}

/// `χ(q) = g² E_{z∼N(0,q)}[φ'(z)²]`: the factor by which one backward step
/// `W_hhᵀ diag(φ'(a_t))` multiplies the squared gradient norm when `a_t`'s entries are N(0, q)
/// (under the gradient-independence assumption). `dphi` is φ' as a function of the
/// pre-activation.
#[must_use]
pub fn chi(gh: &GaussHermite, dphi: impl Fn(f64) -> f64, g2: f64, q: f64) -> f64 {
    g2 * gh.expect(q, |z| {
        let d = dphi(z);
        d * d
    })
}

/// Iterations of the plain map before [`fixed_point`] switches to bracketing.
const PLAIN_ITERATIONS: usize = 10_000;
/// A variance above this counts as divergence.
const DIVERGED: f64 = 1e200;
/// The bracket's upper end must satisfy `V(q) − q < −CONTRACTING · q`: clearly below the
/// diagonal, not by rounding (the map of the linear cell at g = 1 or of ReLU at g² = 2 sits on
/// `q + input_var` up to ~1e-14·q of rounding).
const CONTRACTING: f64 = 1e-12;

/// Where the variance recursion from `q_1 = input_var` goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Orbit {
    /// Converges to this fixed point.
    Fixed(f64),
    /// Grows without bound; the last iterate (≤ 1e200) before it left.
    Escaped(f64),
    /// Neither (NaN arguments or a non-monotone map that did not settle).
    Failed,
}

fn orbit(gh: &GaussHermite, phi: &impl Fn(f64) -> f64, g2: f64, input_var: f64) -> Orbit {
    let map = |q: f64| variance_map(gh, phi, g2, input_var, q);
    let mut q = input_var;
    if q.is_nan() {
        return Orbit::Failed;
    }
    let mut step = 0.0;
    for _ in 0..PLAIN_ITERATIONS {
        let next = map(q);
        if next.is_nan() {
            return Orbit::Failed;
        }
        if next > DIVERGED {
            return Orbit::Escaped(q);
        }
        step = next - q;
        if step.abs() <= 1e-15 * next.abs() {
            return Orbit::Fixed(next);
        }
        q = next;
    }
    // Slow (near criticality, V'(q*) → 1) or linear growth (no fixed point): bracket a root of
    // F(q) = V(q) − q above the current, still increasing, iterate by doubling, then bisect.
    if step <= 0.0 {
        return Orbit::Failed;
    }
    let f = |q: f64| map(q) - q;
    let mut lo = q;
    let mut hi = q;
    loop {
        hi *= 2.0;
        if hi > DIVERGED {
            return Orbit::Escaped(lo);
        }
        let fh = f(hi);
        if fh.is_nan() {
            return Orbit::Failed;
        }
        if fh < -CONTRACTING * hi {
            break;
        }
        if fh > 0.0 {
            lo = hi;
        }
    }
    for _ in 0..200 {
        let mid = lo + 0.5 * (hi - lo);
        if mid <= lo || mid >= hi {
            break;
        }
        let fm = f(mid);
        if fm.abs() <= 1e-15 * mid {
            return Orbit::Fixed(mid);
        }
        if fm > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Orbit::Fixed(if f(lo).abs() <= f(hi).abs() { lo } else { hi })
}

/// The fixed point `q* = V(q*)` that the variance recursion reaches from `q_1 = input_var`
/// (`g2` = g²), or `None` when it diverges (q > 1e200: the linear cell with g ≥ 1, ReLU with
/// g² ≥ 2, each for `input_var > 0`) or does not settle.
///
/// The map is iterated until `|V(q) − q| ≤ 1e-15 q` (so the returned value satisfies
/// `q = V(q)` to that relative residual; its distance to the exact root is about
/// `residual/(1 − V'(q*))`). Near criticality the iteration is slow — for tanh at g = 1,
/// `V(q) = q − 2q² + O(q³) + input_var`, a contraction factor `1 − 4q*` with
/// `q* ≈ √(input_var/2)` — so after 10 000 iterations a root of `V(q) − q` above the current
/// iterate is bracketed by doubling (the upper end must lie below the diagonal by more than
/// 1e-12·q, so rounding cannot fake a root: linear growth `V(q) = q + input_var` is reported
/// as divergence) and bisected; for the activations of `nn::activation` V is increasing and has
/// one crossing there, so this is the root the iteration converges to.
///
/// With `input_var = 0` and φ(0) = 0 (tanh, ReLU, linear) the recursion stays at
/// `q* = 0` — the network with zero input stays at the origin — whatever g is.
/// NaN arguments give `None`.
#[must_use]
pub fn fixed_point(
    gh: &GaussHermite,
    phi: impl Fn(f64) -> f64,
    g2: f64,
    input_var: f64,
) -> Option<f64> {
    match orbit(gh, &phi, g2, input_var) {
        Orbit::Fixed(q) => Some(q),
        Orbit::Escaped(_) | Orbit::Failed => None,
    }
}

/// The mean-field prediction of `ln ‖∂L/∂h_k‖`, k = 0..=T (T = `steps`), normalised to
/// `‖∂L/∂h_T‖ = 1`: `ln g_T = 0` and `ln g_{t−1} = ln g_t + ½ ln χ(q_t)` for t = T..1, with
/// `q_1 = input_var`, `q_{t+1} = V(q_t)`. Returns T + 1 values, the last 0.
///
/// Non-finite values propagate rather than panic: χ = 0 (e.g. ReLU at q = 0, since
/// ReLU'(0) = 0) gives −∞ from there back; an overflowing q gives whatever φ' gives there.
#[must_use]
pub fn predicted_log_norms(
    gh: &GaussHermite,
    phi: impl Fn(f64) -> f64,
    dphi: impl Fn(f64) -> f64,
    g2: f64,
    input_var: f64,
    steps: usize,
) -> Vec<f64> {
    let mut q = input_var;
    let mut half_log_chi = Vec::with_capacity(steps);
    for _ in 0..steps {
        half_log_chi.push(0.5 * chi(gh, &dphi, g2, q).ln());
        q = variance_map(gh, &phi, g2, input_var, q);
    }
    let mut out = vec![0.0; steps + 1];
    for t in (1..=steps).rev() {
        out[t - 1] = out[t] + half_log_chi[t - 1];
    }
    out
}

/// The slope of `ln ‖∂L/∂h_k‖` per step back in time far from the loss: `½ ln χ(q*)` at the
/// [`fixed_point`].
///
/// When the variance diverges (the linear cell with g ≥ 1, ReLU with g² ≥ 2) it is
/// `½ ln χ` at the last iterate before divergence: for these χ does not depend on q
/// (χ = g² for the linear cell; χ = g² P(z > 0) = g²/2 for ReLU at every q > 0), so this is
/// the slope the recursion has at every step. NaN if the recursion neither converges nor
/// diverges (NaN arguments).
#[must_use]
pub fn asymptotic_slope(
    gh: &GaussHermite,
    phi: impl Fn(f64) -> f64,
    dphi: impl Fn(f64) -> f64,
    g2: f64,
    input_var: f64,
) -> f64 {
    match orbit(gh, &phi, g2, input_var) {
        Orbit::Fixed(q) | Orbit::Escaped(q) => 0.5 * chi(gh, dphi, g2, q).ln(),
        Orbit::Failed => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    /// The textbook Golub–Welsch rule, dense: eigenvalues of the Jacobi matrix and the squared
    /// first components of its unit eigenvectors (μ_0 = 1), sorted ascending.
    fn golub_welsch(n: usize) -> (Vec<f64>, Vec<f64>) {
        let jacobi = DMatrix::from_fn(n, n, |i, j| {
            if i.abs_diff(j) == 1 {
                (i.max(j) as f64).sqrt()
            } else {
                0.0
            }
        });
        let eig = jacobi.symmetric_eigen();
        let mut pairs: Vec<(f64, f64)> = (0..n)
            .map(|i| (eig.eigenvalues[i], eig.eigenvectors[(0, i)].powi(2)))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        pairs.into_iter().unzip()
    }

    #[test]
    fn newton_polishing_keeps_the_golub_welsch_nodes_and_fixes_the_outer_weights() {
        for n in [1, 2, 3, 7, 20, 96, 200] {
            let gh = GaussHermite::new(n);
            let (x, w) = golub_welsch(n);
            assert_eq!(gh.nodes().len(), n);
            for i in 0..n {
                // nodes: Golub–Welsch is backward stable, error ≲ n ε ‖J‖ ≈ n ε √(2n)
                assert!(
                    (gh.nodes()[i] - x[i]).abs() <= 1e-16 * (n as f64).powf(1.5) * 4.0 + 1e-15,
                    "n = {n}, node {i}: {} vs {}",
                    gh.nodes()[i],
                    x[i]
                );
                // the weights agree absolutely (Golub–Welsch's accuracy), to 1e-15 × n
                assert!(
                    (gh.weights()[i] - w[i]).abs() <= 1e-15 * n as f64,
                    "n = {n}, weight {i}"
                );
            }
        }
    }

    #[test]
    fn the_closed_form_three_point_rule() {
        // He_3 = x³ − 3x: nodes 0, ±√3, weights 2/3 and 1/6 (Abramowitz & Stegun 25.4.46,
        // rescaled to the probabilists' weight)
        let gh = GaussHermite::new(3);
        let s3 = 3f64.sqrt();
        let expected = [(-s3, 1.0 / 6.0), (0.0, 2.0 / 3.0), (s3, 1.0 / 6.0)];
        for (i, (x, w)) in expected.into_iter().enumerate() {
            assert!((gh.nodes()[i] - x).abs() <= 4.0 * f64::EPSILON);
            assert!((gh.weights()[i] - w).abs() <= 4.0 * f64::EPSILON);
        }
        let one = GaussHermite::new(1);
        assert_eq!((one.nodes(), one.weights()), (&[0.0][..], &[1.0][..]));
    }

    #[test]
    #[should_panic(expected = "at least 1 point")]
    fn zero_points_panic() {
        let _ = GaussHermite::new(0);
    }

    #[test]
    fn the_fixed_point_is_found_at_the_edge_of_chaos() {
        // tanh at g = 1: V(q) − q = input_var − 2q² + (17/3)q³ + O(q⁴)
        // (E[tanh²] from tanh²x = x² − 2x⁴/3 + 17x⁶/45 − …, E z⁴ = 3q², E z⁶ = 15q³),
        // so q*² = input_var/2 + (17/6) q*³: q* ≈ √(input_var/2) (1 + 17 q*/12)
        let gh = GaussHermite::default();
        for input_var in [1e-6, 1e-12, 1e-20] {
            let q = fixed_point(&gh, f64::tanh, 1.0, input_var).expect("converges");
            let lead = (input_var / 2.0).sqrt();
            let series = lead * (1.0 + 17.0 / 12.0 * lead);
            // next term O(q*²) relatively, plus the root's rounding: ε q / (4 q*) / q* ≈ 1e-6
            // at input_var = 1e-20
            let tol = 10.0 * lead * lead + 1e-5;
            assert!(
                ((q - series) / series).abs() <= tol,
                "input_var {input_var}: q* = {q}, series {series}"
            );
        }
        // and with no input the network stays at the origin, for any g
        for g2 in [0.25, 1.0, 2.25] {
            assert_eq!(fixed_point(&gh, f64::tanh, g2, 0.0), Some(0.0));
        }
    }

    #[test]
    fn linear_growth_is_divergence_not_a_fixed_point() {
        let gh = GaussHermite::default();
        let relu = |z: f64| z.max(0.0);
        for input_var in [1e-10, 0.3, 1.0, 7.0] {
            assert_eq!(fixed_point(&gh, |z| z, 1.0, input_var), None);
            assert_eq!(fixed_point(&gh, relu, 2.0, input_var), None);
            assert_eq!(fixed_point(&gh, |z| z, 1.0 + 1e-9, input_var), None);
        }
    }

    #[test]
    fn non_finite_values_propagate() {
        let gh = GaussHermite::default();
        let relu = |z: f64| z.max(0.0);
        let step = |z: f64| if z > 0.0 { 1.0 } else { 0.0 };
        // no input: q stays 0 and ReLU'(0) = 0, so χ = 0 and every earlier norm is −∞
        let l = predicted_log_norms(&gh, relu, step, 1.0, 0.0, 3);
        assert_eq!(
            l,
            vec![f64::NEG_INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY, 0.0]
        );
        assert_eq!(predicted_log_norms(&gh, relu, step, 1.0, 1.0, 0), vec![0.0]);
        assert!(fixed_point(&gh, f64::tanh, 1.0, f64::NAN).is_none());
        assert!(
            asymptotic_slope(&gh, f64::tanh, |z| 1.0 - z.tanh().powi(2), f64::NAN, 1.0).is_nan()
        );
        assert!(gh.expect(-1.0, |z| z * z).is_nan());
        assert_eq!(gh.expect(0.0, |z| z + 2.0), 2.0);
    }
}
