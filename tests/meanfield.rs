//! Mean-field theory of random vanilla RNNs (`numerics::meanfield`): Gauss–Hermite quadrature,
//! the variance map, χ, fixed points and the predicted gradient norms.
//!
//! Every expected value comes from an independent source: a closed form (double factorials,
//! the normal characteristic function, the linear and ReLU cells), a Monte-Carlo sample mean
//! (with its standard error), or a simulated finite network — never from the module itself
//! (the one exception, the 96- against the 200-point rule, is a convergence check and says so).
//! Tolerances are justified where they are set; `derivation: proofs/meanfield.md`.

use approx::assert_relative_eq;
use bptt::nn::activation::Activation;
use bptt::numerics::meanfield::{
    DEFAULT_POINTS, GaussHermite, asymptotic_slope, chi, fixed_point, predicted_log_norms,
    variance_map,
};
use bptt::numerics::spectral::gaussian;
use bptt::rng::stream;
use nalgebra::DMatrix;

const EPS: f64 = f64::EPSILON;

fn phi(act: Activation) -> impl Fn(f64) -> f64 {
    move |z| act.value(z)
}

fn dphi(act: Activation) -> impl Fn(f64) -> f64 {
    move |z| act.derivative(z, act.value(z))
}

/// (2k − 1)!! = 1·3·5⋯(2k − 1), exact in f64 while below 2^53 and to k ulps after.
fn double_factorial(k: u32) -> f64 {
    (1..=k).map(|i| f64::from(2 * i - 1)).product()
}

/// Sample mean and its standard error (sample standard deviation / √N).
fn mean_and_se(xs: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = xs.clone().count() as f64;
    let mean = xs.clone().sum::<f64>() / n;
    let var = xs.map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

// ---------------------------------------------------------------------------------------------
// 1. Gauss–Hermite moments

#[test]
fn even_moments_are_double_factorials_up_to_the_rules_degree() {
    for points in [1, 2, 3, 5, 16, 33, DEFAULT_POINTS, 200] {
        let gh = GaussHermite::new(points);
        let mut worst: f64 = 0.0;
        for var in [1.0, 0.37, 2.5] {
            // every even degree 2k < 2·points is integrated exactly — as far as f64 reaches:
            // above ~1e300 the terms overflow (from 2k ≈ 176 at 640 points)
            for k in 0..points as u32 {
                let got = gh.expect(var, |z| z.powi(2 * k as i32));
                let want = double_factorial(k) * f64::powi(var, k as i32);
                if !got.is_finite() || want > 1e300 {
                    break;
                }
                worst = worst.max(((got - want) / want).abs());
                // Exact up to rounding. The sum Σ w_i (√var x_i)^{2k} has positive terms, each
                // with relative error ≈ 2k·δx + δw + (rounding of the power, ~log2(2k) ε): the
                // nodes are correct to a few ulps (δx ≈ 2ε) and the Christoffel weights to
                // ~n ε (they come from an n-term recurrence). The expected value carries k ulps
                // of its own. 8k ε + 2n ε + 16 ε covers these with a factor ~2 to spare;
                // epsilon is irrelevant (every moment is ≥ 0.37^k ≫ it) but set to the
                // smallest meaningful scale, one ulp of the smallest value tested.
                assert_relative_eq!(
                    got,
                    want,
                    epsilon = 1e-300,
                    max_relative = (8.0 * f64::from(k) + 2.0 * points as f64 + 16.0) * EPS
                );
            }
        }
        eprintln!("{points:>3} points: worst relative error of the even moments {worst:.2e}");
    }
}

#[test]
fn odd_moments_vanish_and_the_rule_is_symmetric() {
    for points in [1, 2, 3, 16, DEFAULT_POINTS, 97, 200] {
        let gh = GaussHermite::new(points);
        let (x, w) = (gh.nodes(), gh.weights());
        assert_eq!((x.len(), w.len()), (points, points));
        for i in 0..points {
            // symmetric by construction, bit for bit
            assert_eq!(x[i], -x[points - 1 - i], "{points} points, node {i}");
            assert_eq!(w[i], w[points - 1 - i], "{points} points, weight {i}");
            assert!(w[i] >= 0.0);
        }
        assert!(x.windows(2).all(|p| p[0] < p[1]), "nodes ascending");
        if points % 2 == 1 {
            assert_eq!(x[points / 2], 0.0);
        }
        for k in 0..points as i32 {
            if !gh.expect(1.7, |z| z.powi(2 * k + 2)).is_finite() {
                break; // the terms overflow (f64), as the even moments above
            }
            // z^{2k+1} is exactly odd in floating point and the rule sums ±x pairs together:
            // exactly zero, not merely up to rounding
            assert_eq!(gh.expect(1.7, |z| z.powi(2 * k + 1)), 0.0);
        }
        // sum of weights: n rounded additions of positive terms ≤ 1, plus the normalisation
        assert_relative_eq!(
            w.iter().sum::<f64>(),
            1.0,
            epsilon = 1e-300,
            max_relative = points as f64 * EPS
        );
    }
}

#[test]
fn cosine_expectation_is_the_normal_characteristic_function() {
    // E[cos(a z)] = exp(−a² var/2) for z ∼ N(0, var): an entire integrand that is no
    // polynomial, so this checks the rule's convergence, not only its polynomial exactness.
    let gh = GaussHermite::default();
    let mut worst: f64 = 0.0;
    for var in [0.3, 1.0, 3.0] {
        for a in [0.1, 0.5, 1.0, 2.0, 3.0] {
            let got = gh.expect(var, |z| (a * z).cos());
            let want = (-a * a * var / 2.0).exp();
            worst = worst.max((got - want).abs());
            // The quadrature error of an entire function of this growth is far below rounding
            // at 96 points; what remains is the sum's rounding, |cos| ≤ 1 so ≤ ~n ε absolutely
            // (1e-14) — which dominates when the result is small (exp(−13.5) ≈ 1.4e-6 at
            // a = 3, var = 3), hence epsilon 1e-14 with 1e-13 relative for the large values.
            assert_relative_eq!(got, want, epsilon = 1e-14, max_relative = 1e-13);
        }
    }
    eprintln!("E[cos(az)]: worst absolute error {worst:.2e}");
}

// ---------------------------------------------------------------------------------------------
// 2. Closed forms: the linear cell and ReLU

#[test]
fn the_linear_cell_has_chi_g_squared_and_a_geometric_fixed_point() {
    let gh = GaussHermite::default();
    let id = phi(Activation::Identity);
    let one = dphi(Activation::Identity);
    for g in [0.3, 0.7, 0.95, 1.0, 1.3] {
        let g2: f64 = g * g;
        for q in [0.0, 0.5, 3.0, 1e6] {
            // χ = g² Σ w_i: one rounded sum of weights that add up to 1 (n ε)
            assert_relative_eq!(
                chi(&gh, &one, g2, q),
                g2,
                epsilon = 1e-300,
                max_relative = DEFAULT_POINTS as f64 * EPS
            );
        }
        for input_var in [0.5, 1.0] {
            // the linear map q ↦ g² q + input_var: fixed point input_var/(1 − g²) for g < 1,
            // unbounded growth (no fixed point) for g ≥ 1
            let q = fixed_point(&gh, &id, g2, input_var);
            if g < 1.0 {
                let want = input_var / (1.0 - g2);
                // the iteration stops at |Δq| ≤ 1e-15 q, which is (1 − g²)/g² times the
                // remaining distance to q* (geometric convergence), and E[z²] itself carries
                // ~n ε: at g = 0.95 that is ≤ 1e-15·g²/(1 − g²) + 2e-14 ≈ 3e-14; 1e-13
                assert_relative_eq!(q.unwrap(), want, epsilon = 1e-300, max_relative = 1e-13);
            } else {
                assert_eq!(q, None, "g = {g}");
            }
        }
    }
}

#[test]
fn relu_has_chi_half_g_squared_and_half_the_variance() {
    let gh = GaussHermite::default();
    let relu = phi(Activation::Relu);
    let step = dphi(Activation::Relu);
    for q in [0.01, 0.3, 1.0, 3.0, 1e4] {
        // exact for an even rule: E[z² 1{z>0}] = q/2 and E[1{z>0}] = ½ (proofs/meanfield.md);
        // what is left is the rounding of one n-term sum (n ε)
        assert_relative_eq!(
            gh.expect(q, |z| relu(z).powi(2)),
            q / 2.0,
            epsilon = 1e-300,
            max_relative = DEFAULT_POINTS as f64 * EPS
        );
        for g in [0.5, 1.0, 1.4, 2.0] {
            assert_relative_eq!(
                chi(&gh, &step, g * g, q),
                g * g / 2.0,
                epsilon = 1e-300,
                max_relative = DEFAULT_POINTS as f64 * EPS
            );
        }
    }
    for g in [0.5, 1.0, 1.3, 1.41, 1.5, 2.0] {
        let g2: f64 = g * g;
        for input_var in [0.5, 1.0] {
            // q ↦ g² q/2 + input_var
            let q = fixed_point(&gh, &relu, g2, input_var);
            if g2 < 2.0 {
                let want = input_var / (1.0 - g2 / 2.0);
                // as for the linear cell; at g = 1.41, g²/2 = 0.994 amplifies the stopping
                // criterion 1e-15 q by 1/(1 − 0.994) ≈ 170 and E[relu²]'s n ε likewise:
                // ≲ 5e-12; 1e-11
                assert_relative_eq!(q.unwrap(), want, epsilon = 1e-300, max_relative = 1e-11);
            } else {
                assert_eq!(q, None, "g = {g}");
            }
        }
    }
}

#[test]
fn the_linear_cells_predicted_log_norms_are_exactly_geometric() {
    let gh = GaussHermite::default();
    let steps = 60;
    for g in [0.5, 0.9, 1.0, 1.1, 2.0] {
        let l = predicted_log_norms(
            &gh,
            phi(Activation::Identity),
            dphi(Activation::Identity),
            g * g,
            1.0,
            steps,
        );
        assert_eq!(l.len(), steps + 1);
        assert_eq!(l[steps], 0.0);
        for (k, &lk) in l.iter().enumerate() {
            let want = (steps - k) as f64 * f64::ln(g);
            // (T − k) additions of ½ ln(g²(1 ± n ε)): absolute error ≤ (T − k)(n ε/2 + ε|ln g|)
            // ≈ 60 · 1.1e-14 ≈ 7e-13 at worst; epsilon 1e-12 covers ln g = 0 (g = 1), where
            // the relative test is meaningless
            assert_relative_eq!(lk, want, epsilon = 1e-12, max_relative = 1e-12);
        }
    }
}

#[test]
fn asymptotic_slopes_of_the_linear_cell_and_relu() {
    let gh = GaussHermite::default();
    for g in [0.5, 0.9, 1.0, 1.2, 1.41, 1.5, 3.0] {
        for input_var in [0.5, 1.0] {
            // on both sides of the critical point: with g ≥ 1 (linear) or g² ≥ 2 (ReLU) the
            // variance diverges and χ does not depend on it. Errors: ½ ln(1 ± n ε) ≈ 1e-14
            // absolutely; epsilon 1e-13 for the slope 0 (linear at g = 1)
            assert_relative_eq!(
                asymptotic_slope(
                    &gh,
                    phi(Activation::Identity),
                    dphi(Activation::Identity),
                    g * g,
                    input_var
                ),
                f64::ln(g),
                epsilon = 1e-13,
                max_relative = 1e-13
            );
            assert_relative_eq!(
                asymptotic_slope(
                    &gh,
                    phi(Activation::Relu),
                    dphi(Activation::Relu),
                    g * g,
                    input_var
                ),
                f64::ln(g) - 0.5 * f64::ln(2.0),
                epsilon = 1e-13,
                max_relative = 1e-13
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Monte-Carlo

const SAMPLES: usize = 200_000;

/// `SAMPLES` draws of N(0, var) from a named stream.
fn normal_sample(var: f64, path: &[u64]) -> DMatrix<f64> {
    gaussian(SAMPLES, 1, var.sqrt(), &mut stream(20_260_101, path))
}

#[test]
fn expectations_agree_with_monte_carlo_within_five_standard_errors() {
    let gh = GaussHermite::default();
    let mut worst: f64 = 0.0;
    for (a, act) in [Activation::Tanh, Activation::Sigmoid, Activation::Relu]
        .into_iter()
        .enumerate()
    {
        for (v, var) in [0.3, 1.0, 3.0].into_iter().enumerate() {
            let z = normal_sample(var, &[1, a as u64, v as u64]);
            let (f, df) = (phi(act), dphi(act));
            let quad_phi2 = gh.expect(var, |x| f(x).powi(2));
            let quad_dphi2 = gh.expect(var, |x| df(x).powi(2));
            let (mc_phi2, se_phi2) = mean_and_se(z.iter().map(|&x| f(x).powi(2)));
            let (mc_dphi2, se_dphi2) = mean_and_se(z.iter().map(|&x| df(x).powi(2)));
            let z_phi = (quad_phi2 - mc_phi2) / se_phi2;
            let z_dphi = (quad_dphi2 - mc_dphi2) / se_dphi2;
            eprintln!(
                "{act:>7} var {var}: E[φ²] {quad_phi2:.6} (MC z = {z_phi:+.2}), \
                 E[φ'²] {quad_dphi2:.6} (MC z = {z_dphi:+.2})"
            );
            worst = worst.max(z_phi.abs()).max(z_dphi.abs());
            // 18 comparisons at 5 SE: a false failure has probability ≈ 18 × 5.7e-7 ≈ 1e-5
            // (and the streams are fixed, so the outcome is reproducible); the quadrature's
            // own error (< 1e-13) is invisible next to SE ≈ 1e-3
            assert!(z_phi.abs() <= 5.0, "{act} var {var}: E[φ²] z = {z_phi}");
            assert!(z_dphi.abs() <= 5.0, "{act} var {var}: E[φ'²] z = {z_dphi}");
        }
    }
    eprintln!("worst |z| = {worst:.2}");
}

#[test]
fn chi_at_the_fixed_point_agrees_with_a_sample_fixed_point() {
    // tanh at g = 1.2, input_var = 1. Monte-Carlo of the whole construction: for each of R
    // independent batches of N standard normals x_i, iterate the *sample* variance map
    // q ← g² mean_i tanh²(√q x_i) + input_var to its fixed point q̂ (a contraction, common
    // random numbers across iterations), then χ̂ = g² mean_i sech⁴(√q̂ x_i). The batches are
    // iid, so their spread gives the standard error of the mean of χ̂ without linearising;
    // the bias of a sample fixed point is O(1/N), ~1e-4 relative at N = 10 000, a tenth of
    // the SE.
    let (g2, input_var) = (1.2f64 * 1.2, 1.0f64);
    let (batches, n) = (20, 10_000);
    let tanh = phi(Activation::Tanh);
    let sech2 = dphi(Activation::Tanh);
    let mut q_hat = Vec::new();
    let mut chi_hat = Vec::new();
    for b in 0..batches {
        let x = gaussian(n, 1, 1.0, &mut stream(20_260_101, &[2, b]));
        let mut q = input_var;
        for _ in 0..500 {
            let s = q.sqrt();
            let next =
                g2 * x.iter().map(|&xi| tanh(s * xi).powi(2)).sum::<f64>() / n as f64 + input_var;
            let done = (next - q).abs() <= 1e-14 * q;
            q = next;
            if done {
                break;
            }
        }
        let s = q.sqrt();
        q_hat.push(q);
        chi_hat.push(g2 * x.iter().map(|&xi| sech2(s * xi).powi(2)).sum::<f64>() / n as f64);
    }
    let (mc_q, se_q) = mean_and_se(q_hat.iter().copied());
    let (mc_chi, se_chi) = mean_and_se(chi_hat.iter().copied());

    let gh = GaussHermite::default();
    let q_star = fixed_point(&gh, &tanh, g2, input_var).unwrap();
    let chi_star = chi(&gh, &sech2, g2, q_star);
    let (zq, zc) = ((q_star - mc_q) / se_q, (chi_star - mc_chi) / se_chi);
    eprintln!(
        "tanh g = 1.2: q* = {q_star:.6} (MC {mc_q:.6} ± {se_q:.1e}, z = {zq:+.2}), \
         χ(q*) = {chi_star:.6} (MC {mc_chi:.6} ± {se_chi:.1e}, z = {zc:+.2})"
    );
    // 5 SE: with 20 batches the SE itself is uncertain by ~16%, so 5 estimated SE is still
    // > 4 true ones (Student t with 19 degrees of freedom: P(|t| > 5) ≈ 8e-5)
    assert!(zq.abs() <= 5.0, "q*: z = {zq}");
    assert!(zc.abs() <= 5.0, "χ(q*): z = {zc}");
}

// ---------------------------------------------------------------------------------------------
// 4. A finite network, independent of the quadrature

#[test]
fn a_finite_tanh_network_has_the_mean_field_variance_and_gradient_decay() {
    let (n, columns, steps, g) = (2000, 6, 50, 1.2f64);
    let input_var = 1.0f64;
    let mut rng = stream(20_260_101, &[3]);
    let w = gaussian(n, n, g / (n as f64).sqrt(), &mut rng);
    let wt = w.transpose();
    // forward: a_t = W h_{t−1} + u_t, u_t iid N(0, 1) per unit, step and column (the input
    // drive W_ih x_t + b of variance input_var = 1), h_0 = 0; `columns` independent sequences
    let mut h = DMatrix::<f64>::zeros(n, columns);
    let mut derivs = Vec::with_capacity(steps);
    let mut second_moment = vec![0.0; columns];
    let last = 10; // average E[a_t²] over t = 41..=50
    for t in 1..=steps {
        let a = &w * &h + gaussian(n, columns, input_var.sqrt(), &mut rng);
        if t > steps - last {
            for (c, m) in second_moment.iter_mut().enumerate() {
                *m += a.column(c).norm_squared() / (n * last) as f64;
            }
        }
        h = a.map(f64::tanh);
        derivs.push(h.map(|x| 1.0 - x * x));
    }
    // backward from a random unit ∂L/∂h_T per column: ∂L/∂h_{t−1} = Wᵀ (φ'(a_t) ∘ ∂L/∂h_t)
    let mut d = gaussian(n, columns, 1.0, &mut rng);
    for mut c in d.column_iter_mut() {
        c.normalize_mut();
    }
    for dt in derivs.iter().rev() {
        d = &wt * d.component_mul(dt);
    }
    let log_norm_0: Vec<f64> = d.column_iter().map(|c| c.norm().ln()).collect();

    let gh = GaussHermite::default();
    let q_star = fixed_point(&gh, phi(Activation::Tanh), g * g, input_var).unwrap();
    let predicted = predicted_log_norms(
        &gh,
        phi(Activation::Tanh),
        dphi(Activation::Tanh),
        g * g,
        input_var,
        steps,
    )[0];
    let (q_emp, se_q) = mean_and_se(second_moment.iter().copied());
    let (l_emp, se_l) = mean_and_se(log_norm_0.iter().copied());
    eprintln!(
        "n = {n}: E[a²] over t = 41..50 = {q_emp:.5} ± {se_q:.1e} vs q* = {q_star:.5} \
         ({:+.2}%, z = {:+.2}); ln‖∂L/∂h_0‖ = {l_emp:.4} ± {se_l:.1e} vs {predicted:.4} \
         (z = {:+.2})",
        100.0 * (q_emp / q_star - 1.0),
        (q_emp - q_star) / se_q,
        (l_emp - predicted) / se_l
    );
    // Tolerances from the statistics. Each column's E[a²] is a mean of n·10 squared Gaussians,
    // relative SD √(2/(n·10)) ≈ 0.3% if the 10 steps were independent (they are correlated
    // through h, measured ≈ 0.4%), i.e. ≈ 0.17% for the mean of 6 columns; the finite-size
    // corrections to mean-field theory are O(1/n) = 0.05%. 2% is ≈ 10 SE: only a wrong q*
    // (an error in V, or a wrong fixed point) fails it.
    assert_relative_eq!(q_emp, q_star, epsilon = 1e-12, max_relative = 0.02);
    // ln‖∂L/∂h_0‖ ≈ −12 accumulates 50 per-step log-ratios, each fluctuating by O(1/√n):
    // measured SE ≈ 0.01 over 6 columns. The gradient-independence assumption is not exact
    // at finite n either; 3% (≈ 0.36) is many SE, and a wrong χ (e.g. E[φ'] for E[φ'²]) is
    // off by far more.
    assert_relative_eq!(l_emp, predicted, epsilon = 1e-12, max_relative = 0.03);
}

// ---------------------------------------------------------------------------------------------
// 5. Quadrature convergence

/// E_{z∼N(0,var)} f(z) by the trapezoid rule with step h = 0.02 on [−40, 40] in the standard
/// variable: independent of Gauss–Hermite. For an integrand analytic in the strip
/// |Im x| < d the trapezoid rule on ℝ errs by O(exp(−2πd/h)) — with tanh's d = π/(2√var)
/// ≥ 0.78 for var ≤ 4 that is < 1e-100 — and the truncation by e^{−800}: what is left is the
/// rounding of 4001 terms, ~1e-16.
fn trapezoid(var: f64, f: &dyn Fn(f64) -> f64) -> f64 {
    let (h, m) = (0.02, 2000);
    let s = var.sqrt();
    let mut sum = 0.0;
    for i in (1..=m).rev() {
        let x = f64::from(i) * h;
        sum += (-x * x / 2.0).exp() * (f(s * x) + f(-s * x));
    }
    sum += f(0.0);
    sum * h / (2.0 * std::f64::consts::PI).sqrt()
}

#[test]
fn the_default_rule_is_converged_at_the_sweeps_variances() {
    // The sweep reaches variances up to ~ρ² + 1 ≈ 3.3; 4 leaves room. tanh(√var x) has poles
    // at x = ±iπ/(2√var), the nearest singularities of all four integrands, so the largest
    // variance is the hardest (Gauss–Hermite errs like exp(−π√(2n)/(2√var))).
    let gh = GaussHermite::default();
    let (fine, coarse) = (GaussHermite::new(2 * DEFAULT_POINTS), GaussHermite::new(96));
    let (mut worst, mut worst_96): (f64, f64) = (0.0, 0.0);
    for act in [Activation::Tanh, Activation::Sigmoid] {
        let (f, df) = (phi(act), dphi(act));
        let square: &dyn Fn(f64) -> f64 = &|x| f(x).powi(2);
        let dsquare: &dyn Fn(f64) -> f64 = &|x| df(x).powi(2);
        for var in [0.3, 1.0, 2.0, 3.0, 3.3, 4.0] {
            for (name, h) in [("φ²", square), ("φ'²", dsquare)] {
                let reference = trapezoid(var, h);
                let (a, b) = (gh.expect(var, h), fine.expect(var, h));
                let c = coarse.expect(var, h);
                worst = worst.max((a - reference).abs()).max((a - b).abs());
                worst_96 = worst_96.max((c - reference).abs());
                eprintln!(
                    "{act:>7} var {var}: E[{name}] = {reference:.15}; {DEFAULT_POINTS} points \
                     {:+.1e}, {} points {:+.1e}, 96 points {:+.1e}",
                    a - reference,
                    2 * DEFAULT_POINTS,
                    b - reference,
                    c - reference
                );
                // values are 0.03–0.6: 1e-13 absolutely (the relative test is the looser)
                assert_relative_eq!(a, reference, epsilon = 1e-13, max_relative = 1e-13);
                assert_relative_eq!(a, b, epsilon = 1e-13, max_relative = 1e-13);
            }
        }
    }
    eprintln!(
        "worst |{DEFAULT_POINTS} points − reference| = {worst:.1e}; \
         96 points: {worst_96:.1e}"
    );
    // why the default is not 96: at var 3.3 the 96-point rule errs by ~3e-5 (E[sech⁴])
    assert!(worst_96 > 1e-6, "96 points err by only {worst_96:e}");
}

// ---------------------------------------------------------------------------------------------
// 6. Fixed points

#[test]
fn fixed_points_satisfy_the_variance_map() {
    let gh = GaussHermite::default();
    let mut worst: f64 = 0.0;
    for act in [Activation::Tanh, Activation::Sigmoid] {
        let f = phi(act);
        for i in 0..=10 {
            let g = 0.5 + 0.1 * f64::from(i);
            for input_var in [0.5, 1.0] {
                let q = fixed_point(&gh, &f, g * g, input_var).expect("bounded φ: converges");
                let image = variance_map(&gh, &f, g * g, input_var, q);
                worst = worst.max(((image - q) / q).abs());
                // the stopping rule is |V(q) − q| ≤ 1e-15 q; 1e-13 leaves room for the
                // bisection fallback, which stops at adjacent floats (≤ a few ε q)
                assert_relative_eq!(image, q, epsilon = 1e-300, max_relative = 1e-13);
            }
        }
    }
    eprintln!("worst relative residual |V(q*) − q*|/q* = {worst:.1e}");
}
