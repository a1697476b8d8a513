//! Seeded, named random streams.
//!
//! Every random draw in `bptt` comes from a ChaCha8 stream derived from a user seed and a *path*
//! of integers naming the work item (e.g. `[cell, ensemble, rho_index, matrix_index]`). A work
//! item's numbers therefore do not depend on thread count, scheduling or sharding.

use nalgebra::{DMatrix, RealField};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

pub use rand::rngs::ChaCha8Rng as Rng;

/// SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mixer.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The ChaCha8 stream for work item `path` under `seed`.
///
/// The 256-bit key is built by chaining SplitMix64 over `seed` and every path component, so
/// distinct paths give unrelated streams and the same path always gives the same stream.
pub fn stream(seed: u64, path: &[u64]) -> ChaCha8Rng {
    let mut state = splitmix64(seed);
    for &p in path {
        state = splitmix64(state ^ splitmix64(p.wrapping_add(0x632B_E59B_D9B4_E019)));
    }
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        state = splitmix64(state.wrapping_add(i as u64));
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// A `rows × cols` matrix with entries drawn from U(−bound, bound).
pub fn uniform_matrix<T: RealField + Copy>(
    rng: &mut ChaCha8Rng,
    rows: usize,
    cols: usize,
    bound: f64,
) -> DMatrix<T> {
    DMatrix::from_fn(rows, cols, |_, _| {
        let u: f64 = if bound > 0.0 {
            rng.random_range(-bound..bound)
        } else {
            0.0
        };
        nalgebra::convert(u)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: DMatrix<f64> = uniform_matrix(&mut stream(7, &[1, 2]), 3, 3, 1.0);
        let b: DMatrix<f64> = uniform_matrix(&mut stream(7, &[1, 2]), 3, 3, 1.0);
        let c: DMatrix<f64> = uniform_matrix(&mut stream(7, &[2, 1]), 3, 3, 1.0);
        let d: DMatrix<f64> = uniform_matrix(&mut stream(8, &[1, 2]), 3, 3, 1.0);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert!(a.iter().all(|x| x.abs() < 1.0));
    }
}
