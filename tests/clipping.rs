//! Gradient clipping: Pascanu et al.'s Algorithm 1 and element-wise clipping, as properties.

mod harness;

use bptt::nn::params::Params;
use bptt::rng::{stream, uniform_matrix};
use bptt::train::clip::{Clip, clip_global_norm, clip_value, global_norm};
use proptest::prelude::*;

/// Two groups of random gradients with entries of size ~`magnitude`.
fn groups(seed: u64, magnitude: f64) -> (Params<f64>, Params<f64>) {
    let mut rng = stream(seed, &[]);
    let mut a = Params::new();
    a.push(
        "weight_hh",
        uniform_matrix::<f64>(&mut rng, 4, 4, 1.0) * magnitude,
    );
    a.push(
        "bias_hh",
        uniform_matrix::<f64>(&mut rng, 4, 1, 1.0) * magnitude,
    );
    let mut b = Params::new();
    b.push(
        "readout.weight",
        uniform_matrix::<f64>(&mut rng, 2, 4, 1.0) * magnitude,
    );
    (a, b)
}

fn entries(p: &[&Params<f64>]) -> Vec<f64> {
    p.iter()
        .flat_map(|g| g.iter().flat_map(|(_, m)| m.iter().copied()))
        .collect()
}

/// ‖g‖ computed the plain way, for comparison where it does not overflow.
fn naive_norm(p: &[&Params<f64>]) -> f64 {
    entries(p).iter().map(|x| x * x).sum::<f64>().sqrt()
}

proptest! {
    #![proptest_config(harness::config())]

    /// Above the threshold: the result's norm is the threshold (≤, up to rounding), every entry
    /// is the same positive multiple of the original (direction preserved), and the pre-clip
    /// norm is returned.
    #[test]
    fn norm_clipping_rescales_onto_the_threshold_and_keeps_the_direction(
        seed in any::<u64>(), magnitude in 1e-3f64..1e3, fraction in 0.01f64..1.0,
    ) {
        let (mut a, mut b) = groups(seed, magnitude);
        let before = entries(&[&a, &b]);
        let norm = naive_norm(&[&a, &b]);
        let threshold = fraction * norm;
        let clip = clip_global_norm(&mut [&mut a, &mut b], threshold).unwrap();
        let rescaled = matches!(clip, Clip::Rescaled { .. });
        prop_assert!(rescaled && clip.should_update(), "{:?}", clip);
        prop_assert!(approx::relative_eq!(clip.norm(), norm, epsilon = 0.0, max_relative = 1e-14));
        let after = entries(&[&a, &b]);
        let new_norm = naive_norm(&[&a, &b]);
        prop_assert!(new_norm <= threshold * (1.0 + 1e-14), "{new_norm} > {threshold}");
        prop_assert!(approx::relative_eq!(new_norm, threshold, epsilon = 0.0, max_relative = 1e-14));
        let scale = threshold / norm;
        for (x, y) in before.iter().zip(&after) {
            prop_assert!(approx::relative_eq!(*y, x * scale, epsilon = 0.0, max_relative = 1e-15));
            prop_assert!(x.signum() == y.signum() || *x == 0.0);
        }
    }

    /// Below the threshold: nothing changes, bit for bit.
    #[test]
    fn norm_clipping_is_the_identity_below_the_threshold(seed in any::<u64>(), magnitude in 1e-3f64..1e3, factor in 1.0001f64..100.0) {
        let (mut a, mut b) = groups(seed, magnitude);
        let (a0, b0) = (a.clone(), b.clone());
        let threshold = factor * naive_norm(&[&a, &b]);
        let clip = clip_global_norm(&mut [&mut a, &mut b], threshold).unwrap();
        let unchanged = matches!(clip, Clip::Unchanged { .. });
        prop_assert!(unchanged, "{:?}", clip);
        prop_assert_eq!((a, b), (a0, b0));
    }

    /// Value clipping: every entry ends in [−limit, limit]; entries inside are untouched; the
    /// count of changed entries is right.
    #[test]
    fn value_clipping_clamps_each_entry(seed in any::<u64>(), limit in 0.01f64..1.0) {
        let (mut a, mut b) = groups(seed, 1.0);
        let before = entries(&[&a, &b]);
        let changed = clip_value(&mut [&mut a, &mut b], limit).unwrap();
        let after = entries(&[&a, &b]);
        prop_assert_eq!(changed, before.iter().filter(|x| x.abs() > limit).count());
        for (x, y) in before.iter().zip(&after) {
            prop_assert_eq!(*y, x.clamp(-limit, limit));
        }
    }
}

#[test]
fn non_finite_norms_skip_the_update_and_leave_gradients_untouched() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let (mut a, mut b) = groups(1, 1.0);
        a[0][(1, 2)] = bad;
        let before: Vec<u64> = entries(&[&a, &b]).iter().map(|x| x.to_bits()).collect();
        let clip = clip_global_norm(&mut [&mut a, &mut b], 1.0).unwrap();
        assert!(
            matches!(clip, Clip::NonFinite { .. }) && !clip.should_update(),
            "{bad}: {clip:?}"
        );
        assert_eq!(clip.norm().is_nan(), bad.is_nan());
        let after: Vec<u64> = entries(&[&a, &b]).iter().map(|x| x.to_bits()).collect();
        assert_eq!(before, after);
    }
}

#[test]
fn huge_finite_gradients_have_a_finite_norm_and_are_clipped() {
    // entries of 1e200 (an exploding network): Σ g² overflows, the scaled norm does not
    let (mut a, mut b) = groups(2, 1e200);
    assert!(naive_norm(&[&a, &b]).is_infinite());
    let expected = 1e200 * naive_norm(&[&groups(2, 1.0).0, &groups(2, 1.0).1]);
    let norm = global_norm(&[&a, &b]);
    approx::assert_relative_eq!(norm, expected, epsilon = 0.0, max_relative = 1e-14);
    let clip = clip_global_norm(&mut [&mut a, &mut b], 5.0).unwrap();
    assert!(matches!(clip, Clip::Rescaled { .. }));
    approx::assert_relative_eq!(
        naive_norm(&[&a, &b]),
        5.0,
        epsilon = 0.0,
        max_relative = 1e-14
    );
}

#[test]
fn thresholds_must_be_positive_and_finite() {
    let (mut a, mut b) = groups(3, 1.0);
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(clip_global_norm(&mut [&mut a, &mut b], t).is_err());
        assert!(clip_value(&mut [&mut a, &mut b], t).is_err());
    }
    let zero = Params::<f64>::new();
    assert_eq!(global_norm(&[&zero]), 0.0);
}

/// Algorithm 1 clips when ‖g‖ ≥ threshold: at exact equality the step is "rescaled" by 1.
#[test]
fn norm_equal_to_the_threshold_counts_as_clipped() {
    let mut g = Params::new();
    g.push("w", nalgebra::DMatrix::from_row_slice(1, 2, &[3.0f64, 4.0]));
    let clip = clip_global_norm(&mut [&mut g], 5.0).unwrap();
    assert_eq!(
        clip,
        Clip::Rescaled {
            norm: 5.0,
            scale: 1.0
        }
    );
    assert_eq!(g[0].as_slice(), &[3.0, 4.0]);
    let clip = clip_global_norm(&mut [&mut g], 5.000000000000001).unwrap();
    assert_eq!(clip, Clip::Unchanged { norm: 5.0 });
}

/// Entries exactly at ±limit are inside the interval: not counted as changed.
#[test]
fn value_clipping_leaves_entries_at_the_limit_alone() {
    let mut g = Params::new();
    g.push(
        "w",
        nalgebra::DMatrix::from_row_slice(1, 4, &[0.5f64, -0.5, 0.7, -0.9]),
    );
    assert_eq!(clip_value(&mut [&mut g], 0.5).unwrap(), 2);
    assert_eq!(g[0].as_slice(), &[0.5, -0.5, 0.5, -0.5]);
}
