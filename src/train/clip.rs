//! Gradient clipping over a whole gradient structure (any number of [`Params`] groups, e.g. a
//! cell's and a readout's).
//!
//! - [`clip_global_norm`]: Pascanu, Mikolov & Bengio (2013), Algorithm 1: with `g` all gradients
//!   stacked, if `‖g‖ ≥ threshold` then `g ← (threshold/‖g‖)·g`. Returns what it did and the
//!   pre-clip norm. A non-finite norm (a NaN or ∞ entry) leaves the gradients untouched and is
//!   reported as [`Clip::NonFinite`]: the caller must skip the update rather than write NaN
//!   into the parameters (Pascanu et al.'s code skips such steps too).
//! - [`clip_value`]: element-wise clamping to `[−limit, limit]`.
//!
//! The norm is computed with scaling (as LAPACK's `dnrm2`): `m·sqrt(Σ (g_i/m)²)` with
//! `m = max |g_i|`, so gradients of 1e200 — finite, from an exploding network — give their true
//! finite norm instead of overflowing to ∞ (derivation and tests: `proofs/clipping.md`).

use nalgebra::RealField;

use crate::error::BpttError;
use crate::nn::params::Params;

/// What [`clip_global_norm`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clip<T> {
    /// `‖g‖ < threshold`: gradients untouched.
    Unchanged { norm: T },
    /// `‖g‖ ≥ threshold`: every gradient multiplied by `scale = threshold/‖g‖`.
    Rescaled { norm: T, scale: T },
    /// `‖g‖` is NaN or ∞: gradients untouched; skip this update.
    NonFinite { norm: T },
}

impl<T: RealField + Copy> Clip<T> {
    /// The norm before clipping.
    pub fn norm(&self) -> T {
        match *self {
            Clip::Unchanged { norm } | Clip::Rescaled { norm, .. } | Clip::NonFinite { norm } => {
                norm
            }
        }
    }
    /// Whether the (possibly rescaled) gradients may be applied.
    pub fn should_update(&self) -> bool {
        !matches!(self, Clip::NonFinite { .. })
    }
}

/// The Euclidean norm of all entries of all groups, computed without intermediate overflow.
/// NaN if any entry is NaN; ∞ if any entry is ±∞ (and none is NaN).
pub fn global_norm<T: RealField + Copy>(groups: &[&Params<T>]) -> T {
    norm_of(groups.iter().copied())
}

/// [`global_norm`] over any (re-iterable) sequence of groups.
fn norm_of<'a, T: RealField + Copy>(groups: impl Iterator<Item = &'a Params<T>> + Clone) -> T {
    let entries = || {
        groups
            .clone()
            .flat_map(|p| p.iter().flat_map(|(_, m)| m.iter().copied()))
    };
    let mut scale = T::zero();
    for g in entries() {
        if g.partial_cmp(&T::zero()).is_none() {
            // NaN: unordered
            return g;
        }
        let a = g.abs();
        if a > scale {
            scale = a;
        }
    }
    if scale == T::zero() || !scale.is_finite() {
        return scale;
    }
    let sum = entries().fold(T::zero(), |s, g| {
        let r = g / scale;
        s + r * r
    });
    scale * sum.sqrt()
}

fn check_positive<T: RealField + Copy>(what: &str, v: T) -> Result<(), BpttError> {
    if v > T::zero() && v.is_finite() {
        Ok(())
    } else {
        Err(BpttError::Invalid(format!(
            "{what} must be a positive finite number, got {v}"
        )))
    }
}

/// Global-norm clipping (Pascanu et al. 2013, Algorithm 1) over every group together.
pub fn clip_global_norm<T: RealField + Copy>(
    groups: &mut [&mut Params<T>],
    threshold: T,
) -> Result<Clip<T>, BpttError> {
    check_positive("the clipping threshold", threshold)?;
    let norm = norm_of(groups.iter().map(|p| &**p));
    if !norm.is_finite() {
        return Ok(Clip::NonFinite { norm });
    }
    if norm < threshold {
        return Ok(Clip::Unchanged { norm });
    }
    let scale = threshold / norm;
    for p in groups.iter_mut() {
        p.scale_mut(scale);
    }
    Ok(Clip::Rescaled { norm, scale })
}

/// Element-wise clipping of every entry to `[−limit, limit]`; returns how many entries were
/// changed. NaN entries are left as they are (and not counted): check [`global_norm`] first.
pub fn clip_value<T: RealField + Copy>(
    groups: &mut [&mut Params<T>],
    limit: T,
) -> Result<usize, BpttError> {
    check_positive("the clipping limit", limit)?;
    let mut changed = 0;
    for p in groups.iter_mut() {
        for m in p.tensors_mut() {
            for g in m.iter_mut() {
                if *g > limit {
                    *g = limit;
                    changed += 1;
                } else if *g < -limit {
                    *g = -limit;
                    changed += 1;
                }
            }
        }
    }
    Ok(changed)
}
