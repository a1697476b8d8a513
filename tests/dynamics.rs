//! `bptt::experiment::dynamics`, the single sigmoid unit of Pascanu et al. §2.2–2.3: fixed
//! points, stability, the saddle-node ends of the bistable interval, the error surface's
//! gradient, and clipping at the wall. (The `bifurcation` binary built on it:
//! `tests/bifurcation.rs`.)

mod harness;

use bptt::experiment::dynamics::{
    bistable_interval, descend, error_and_gradient, fixed_points, iterate, one_unit_problem,
};
use bptt::nn::activation::sigmoid;
use bptt::verify::gradcheck;
use proptest::prelude::*;

proptest! {
    #![proptest_config(harness::config())]

    /// Every reported fixed point satisfies x* = w σ(x*) + b, and there are 1 or 3 of them
    /// (2 only at a bifurcation, which random draws do not hit).
    #[test]
    fn fixed_points_satisfy_the_fixed_point_equation(w in -10.0f64..12.0, b in -10.0f64..10.0) {
        let fps = fixed_points(w, b);
        prop_assert!(fps.len() == 1 || fps.len() == 3, "{} fixed points", fps.len());
        for p in &fps {
            let residual = w * sigmoid(p.x) + b - p.x;
            prop_assert!(residual.abs() <= 1e-12 * (1.0 + p.x.abs() + w.abs()), "residual {residual} at {}", p.x);
        }
        // with three, they alternate stable / unstable / stable
        if fps.len() == 3 {
            prop_assert!(fps[0].stable && !fps[1].stable && fps[2].stable);
        }
    }

    /// Stability from |w σ'(x*)| < 1 agrees with the dynamics: a small perturbation of a stable
    /// fixed point dies out, of an unstable one grows.
    #[test]
    fn stability_agrees_with_the_dynamics(w in 0.5f64..12.0, b in -10.0f64..4.0) {
        for p in fixed_points(w, b) {
            prop_assume!((p.multiplier.abs() - 1.0).abs() > 0.05);
            let delta = 1e-7;
            let after = iterate(w, b, p.x + delta, 200) - p.x;
            if p.stable {
                prop_assert!(after.abs() < delta, "stable x* = {} drifted to {after:e}", p.x);
            } else {
                prop_assert!(after.abs() > 1e3 * delta, "unstable x* = {} stayed ({after:e})", p.x);
            }
        }
    }

    /// The surface's gradient (BPTT through the 1-unit RNN) passes the gradient checker, and
    /// agrees with central differences of the error computed by iterating the map directly.
    #[test]
    fn surface_gradient_passes_the_checker(w in 0.0f64..10.0, b in -8.0f64..2.0) {
        let p = one_unit_problem(w, b, 0.5, 0.7, 50);
        let report = gradcheck::check(&p, gradcheck::Config::default()).unwrap();
        prop_assert!(report.passed(), "{report}");
        let e = |w: f64, b: f64| (sigmoid(iterate(w, b, 0.5, 50)) - 0.7).powi(2);
        let (value, gw, gb) = error_and_gradient(w, b, 0.5, 0.7, 50).unwrap();
        prop_assert!(approx::relative_eq!(value, e(w, b), epsilon = 1e-15, max_relative = 1e-12));
        let h = 1e-6;
        let (nw, nb) = ((e(w + h, b) - e(w - h, b)) / (2.0 * h), (e(w, b + h) - e(w, b - h)) / (2.0 * h));
        let report_unresolved = report.count(gradcheck::Verdict::Unresolved) > 0;
        if !report_unresolved {
            prop_assert!(approx::relative_eq!(gw, nw, epsilon = 1e-6, max_relative = 1e-4), "dE/dw {gw} vs {nw}");
            prop_assert!(approx::relative_eq!(gb, nb, epsilon = 1e-6, max_relative = 1e-4), "dE/db {gb} vs {nb}");
        }
    }
}

/// The ends of the bistable interval are saddle-node bifurcations: there, the fixed point born
/// or lost has multiplier w σ'(x*) = 1; just inside there are three fixed points, just outside one.
#[test]
fn bistable_interval_ends_are_saddle_nodes() {
    for w in [4.5, 5.0, 7.0, 10.0] {
        let (lo, hi) = bistable_interval(w).unwrap();
        for b in [lo, hi] {
            let fps = fixed_points(w, b);
            let tangent = fps
                .iter()
                .map(|p| (p.multiplier - 1.0).abs())
                .fold(f64::INFINITY, f64::min);
            assert!(
                tangent < 1e-6,
                "w = {w}, b = {b}: no fixed point with w σ' = 1 ({fps:?})"
            );
        }
        let eps = 1e-6 * (hi - lo);
        assert_eq!(fixed_points(w, lo + eps).len(), 3);
        assert_eq!(fixed_points(w, hi - eps).len(), 3);
        assert_eq!(fixed_points(w, lo - eps).len(), 1);
        assert_eq!(fixed_points(w, hi + eps).len(), 1);
    }
}

/// With clipping, no parameter step exceeds lr · threshold; without, the step is lr · ‖∇E‖.
#[test]
fn clipped_steps_never_exceed_the_threshold() {
    let (lr, threshold) = (0.2, 1.0);
    for start in [(5.0, -3.2), (5.5, -3.4), (4.5, -2.9)] {
        let clipped = descend(start, lr, 200, Some(threshold), 0.5, 0.7, 50).unwrap();
        for pair in clipped.windows(2) {
            let step = (pair[1].w - pair[0].w).hypot(pair[1].b - pair[0].b);
            assert!(
                step <= lr * threshold * (1.0 + 1e-12),
                "step {step} from {start:?}"
            );
            approx::assert_relative_eq!(
                step,
                lr * pair[0].grad_norm.min(threshold),
                epsilon = 1e-14,
                max_relative = 1e-10
            );
        }
        assert!(
            clipped.iter().any(|s| s.clipped),
            "{start:?} never reached the wall"
        );
        let plain = descend(start, lr, 200, None, 0.5, 0.7, 50).unwrap();
        let biggest = plain
            .windows(2)
            .map(|p| (p[1].w - p[0].w).hypot(p[1].b - p[0].b))
            .fold(0.0, f64::max);
        assert!(
            biggest > 10.0 * lr * threshold,
            "{start:?}: plain descent never jumped ({biggest})"
        );
    }
}
