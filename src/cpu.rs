//! What the CPU needs after foreign SIMD code.
//!
//! faer's GEMM and Hessenberg kernels (AVX-512 / AVX2) return with the upper halves of the
//! vector registers dirty — they issue no `vzeroupper`. Every SSE-encoded instruction that runs
//! afterwards pays for it, and that is all of the scalar floating-point code of a baseline
//! x86-64 build (and libm's `exp`, the softmax's): on this machine a libm `exp` took 15 ns
//! before one GEMM and 410–650 ns after, so the element-wise work between GEMMs ran tens of
//! times slower than it should (measured in experiments/README.md, "Performance of one update").
//! [`clear_upper_state`] after each such call clears them: `vzeroupper` changes no value, so
//! every result stays bit-identical.

/// `vzeroupper` when the CPU has AVX (a no-op elsewhere): call after foreign SIMD code that
/// does not.
#[inline]
pub fn clear_upper_state() {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx")]
        fn zeroupper() {
            std::arch::x86_64::_mm256_zeroupper();
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: AVX is available (checked above)
            unsafe { zeroupper() }
        }
    }
}
