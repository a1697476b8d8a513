//! Eigenvalues of a real upper Hessenberg matrix by the Francis double-shift QR algorithm,
//! eigenvalues only: a port of LAPACK's `dlahqr` with `WANTT = WANTZ = false` (so every
//! transformation is confined to the active block, which is what makes it cheaper than a
//! Schur decomposition), including its Ahues–Tisseur deflation criterion, its exceptional
//! shifts every 10 iterations without deflation, and `dlanv2` for the final 2 × 2 blocks.
//!
//! Why our own: the spectral sweep spends a third of its time on eigenvalues, and for its
//! n = 128 Gaussian matrices this QR phase is faster than faer's multishift solver and LAPACK
//! through numpy (measured in `experiments/README.md`, "Performance"): scalar code
//! compiled with FMA, the column transformations vectorised by the compiler, the far part of
//! each reflector's transformations deferred so that it overlaps the next reflector's latency
//! chain, and the row transformations of consecutive reflectors applied in pairs, four
//! columns at a time with AVX2 (bit-identical to the scalar path, tested). faer's solver
//! stays in the tests as the independent oracle.
//!
//! Iteration-capped like LAPACK (30 · max(10, n) double-shift sweeps per deflation): a matrix
//! that does not converge is reported, never looped on (nalgebra#611).

/// LAPACK's `dlamch('P')`: the machine epsilon.
const ULP: f64 = f64::EPSILON;
/// LAPACK's `dlamch('S')`: the smallest normal number, whose reciprocal does not overflow.
const SAFMIN: f64 = f64::MIN_POSITIVE;
/// Exceptional shift every `KEXSH` iterations without deflation (LAPACK 3.10+).
const KEXSH: usize = 10;

/// All eigenvalues of the n × n upper Hessenberg matrix `h` (column-major, entries below the
/// first subdiagonal ignored and overwritten with zeros), written to `wr` (real parts) and
/// `wi` (imaginary parts); complex-conjugate pairs are adjacent, positive imaginary part first.
/// `h` is destroyed. A non-finite entry gives `Err(NoConvergence)`.
pub fn hessenberg_eigenvalues(
    h: &mut [f64],
    n: usize,
    wr: &mut [f64],
    wi: &mut [f64],
) -> Result<(), NoConvergence> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features. Explicit `mul_add`s make the results identical to
        // the portable path's (which calls libm's correctly rounded fma), only slower there.
        return unsafe { hqr_avx2_fma(h, n, wr, wi) };
    }
    hqr::<false>(h, n, wr, wi)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn hqr_avx2_fma(
    h: &mut [f64],
    n: usize,
    wr: &mut [f64],
    wi: &mut [f64],
) -> Result<(), NoConvergence> {
    hqr::<true>(h, n, wr, wi)
}

/// The iteration; `SIMD` (x86-64 with AVX2 and FMA only) selects the vectorised pair update.
#[inline(always)]
fn hqr<const SIMD: bool>(
    h: &mut [f64],
    n: usize,
    wr: &mut [f64],
    wi: &mut [f64],
) -> Result<(), NoConvergence> {
    assert!(
        h.len() == n * n && wr.len() == n && wi.len() == n,
        "hqr: shapes"
    );
    if h.iter().any(|x| !x.is_finite()) {
        return Err(NoConvergence);
    }
    if n == 0 {
        return Ok(());
    }
    // the trash below the subdiagonal
    for j in 0..n {
        for i in (j + 2)..n {
            h[i + j * n] = 0.0;
        }
    }
    let idx = |i: usize, j: usize| i + j * n;
    let smlnum = SAFMIN * (n as f64 / ULP);
    let itmax = 30 * n.max(10);
    let mut kdefl = 0usize;
    // i: the last row of the active block; eigenvalues below it are done
    let mut i_end = n as isize - 1;
    while i_end >= 0 {
        let i = i_end as usize;
        let mut l = 0usize;
        let mut converged = false;
        for _its in 0..=itmax {
            // look for a single small subdiagonal element (Ahues & Tisseur's criterion)
            let mut k = i;
            while k > l {
                let hkk1 = h[idx(k, k - 1)].abs();
                if hkk1 <= smlnum {
                    break;
                }
                let mut tst = h[idx(k - 1, k - 1)].abs() + h[idx(k, k)].abs();
                if tst == 0.0 {
                    if k >= 2 {
                        tst += h[idx(k - 1, k - 2)].abs();
                    }
                    if k + 1 < n {
                        tst += h[idx(k + 1, k)].abs();
                    }
                }
                if hkk1 <= ULP * tst {
                    let hk1k = h[idx(k - 1, k)].abs();
                    let (ab, ba) = (hkk1.max(hk1k), hkk1.min(hk1k));
                    let hkk = h[idx(k, k)].abs();
                    let diff = (h[idx(k - 1, k - 1)] - h[idx(k, k)]).abs();
                    let (aa, bb) = (hkk.max(diff), hkk.min(diff));
                    let s = aa + ab;
                    if ba * (ab / s) <= smlnum.max(ULP * (bb * (aa / s))) {
                        break;
                    }
                }
                k -= 1;
            }
            l = k;
            if l > 0 {
                h[idx(l, l - 1)] = 0.0;
            }
            // a 1 × 1 or 2 × 2 block has split off
            if l + 1 >= i {
                converged = true;
                break;
            }
            kdefl += 1;

            // the shifts: eigenvalues of the trailing 2 × 2 block, or exceptional ones
            let (h11, h12, h21, h22);
            if kdefl.is_multiple_of(2 * KEXSH) {
                let s = h[idx(i, i - 1)].abs() + h[idx(i - 1, i - 2)].abs();
                h11 = 0.75 * s + h[idx(i, i)];
                h12 = -0.4375 * s;
                h21 = s;
                h22 = h11;
            } else if kdefl.is_multiple_of(KEXSH) {
                let s = h[idx(l + 1, l)].abs() + h[idx(l + 2, l + 1)].abs();
                h11 = 0.75 * s + h[idx(l, l)];
                h12 = -0.4375 * s;
                h21 = s;
                h22 = h11;
            } else {
                h11 = h[idx(i - 1, i - 1)];
                h21 = h[idx(i, i - 1)];
                h12 = h[idx(i - 1, i)];
                h22 = h[idx(i, i)];
            }
            let s = h11.abs() + h12.abs() + h21.abs() + h22.abs();
            let (rt1r, rt1i, rt2r, rt2i);
            if s == 0.0 {
                (rt1r, rt1i, rt2r, rt2i) = (0.0, 0.0, 0.0, 0.0);
            } else {
                let (h11, h12, h21, h22) = (h11 / s, h12 / s, h21 / s, h22 / s);
                let tr = (h11 + h22) / 2.0;
                let det = (h11 - tr) * (h22 - tr) - h12 * h21;
                let rtdisc = det.abs().sqrt();
                if det >= 0.0 {
                    // a complex-conjugate pair
                    rt1r = tr * s;
                    rt2r = rt1r;
                    rt1i = rtdisc * s;
                    rt2i = -rt1i;
                } else {
                    // two real shifts: use the one nearer h22, twice
                    let (a, b) = (tr + rtdisc, tr - rtdisc);
                    let r = s * if (a - h22).abs() <= (b - h22).abs() {
                        a
                    } else {
                        b
                    };
                    (rt1r, rt2r, rt1i, rt2i) = (r, r, 0.0, 0.0);
                }
            }

            // look for two consecutive small subdiagonal elements: where to start the bulge
            let mut v = [0.0f64; 3];
            let mut m = i - 2;
            loop {
                let h21s = h[idx(m + 1, m)];
                let s = (h[idx(m, m)] - rt2r).abs() + rt2i.abs() + h21s.abs();
                let h21s = h21s / s;
                v[0] = h21s * h[idx(m, m + 1)]
                    + (h[idx(m, m)] - rt1r) * ((h[idx(m, m)] - rt2r) / s)
                    - rt1i * (rt2i / s);
                v[1] = h21s * (h[idx(m, m)] + h[idx(m + 1, m + 1)] - rt1r - rt2r);
                v[2] = h21s * h[idx(m + 2, m + 1)];
                let s = v[0].abs() + v[1].abs() + v[2].abs();
                v = [v[0] / s, v[1] / s, v[2] / s];
                if m == l {
                    break;
                }
                let h00 = h[idx(m, m - 1)].abs() * (v[1].abs() + v[2].abs());
                let h11 = v[0].abs()
                    * (h[idx(m - 1, m - 1)].abs()
                        + h[idx(m, m)].abs()
                        + h[idx(m + 1, m + 1)].abs());
                if h00 <= ULP * h11 {
                    break;
                }
                m -= 1;
            }

            // the double-shift QR sweep: chase the bulge from row m to the bottom, every
            // reflector applied to the active block only (columns ≤ i, rows ≥ l). Reflector
            // k = I − τ v vᵀ acts on rows and columns k..k+2. Its transformations split into a
            // near part (rows and columns k..k+3, which reflector k+1 is computed from) and a
            // far part (columns k+3..=i of its rows, rows l..k−1 of its columns), deferred until
            // reflector k+1 is known: the reflector is a latency chain and the far part pure
            // throughput, so the two overlap. Far row parts go in pairs (k, k+1), one pass over
            // rows k..k+3 of each column (vectorised across columns with AVX2). Each entry
            // still sees the same operations in the same order as in dlahqr.
            let mut far_cols: Option<(usize, Reflector)> = None;
            let mut far_rows = FarRows::None;
            for k in m..i {
                let nr = 3.min(i - k + 1);
                if k > m {
                    v[..nr].copy_from_slice(&h[idx(k, k - 1)..idx(k, k - 1) + nr]);
                }
                let t1 = householder(&mut v[..nr]);
                if k > m {
                    h[idx(k, k - 1)] = v[0];
                    h[idx(k + 1, k - 1)] = 0.0;
                    if k + 2 <= i {
                        h[idx(k + 2, k - 1)] = 0.0;
                    }
                } else if m > l {
                    // LAPACK: not −h(k, k−1), which fails when v(2), v(3) underflow
                    h[idx(k, k - 1)] *= 1.0 - t1;
                }
                if let Some((kp, r)) = far_cols.take() {
                    r.cols(h, n, kp, l..kp);
                }
                if nr == 3 {
                    let r = Reflector::new(t1, v[1], v[2]);
                    far_rows = match far_rows {
                        FarRows::None => FarRows::One(k, r),
                        FarRows::One(p, a) => {
                            // column k+2 now (the near part below needs it), the rest of
                            // reflector k−1's far part together with reflector k's
                            a.rows(h, n, p, k + 2..k + 3);
                            FarRows::Two(p, a, r)
                        }
                        FarRows::Two(p, a, b) => {
                            rows_pair::<SIMD>(h, n, p, &a, &b, k + 2..i + 1);
                            FarRows::One(k, r)
                        }
                    };
                    r.rows(h, n, k, k..k + 3);
                    r.cols(h, n, k, k..(k + 4).min(i + 1));
                    far_cols = Some((k, r));
                } else {
                    far_rows.flush::<SIMD>(h, n, i);
                    far_rows = FarRows::None;
                    // the last reflector (k = i − 1) acts on two rows and columns
                    let (v2, t2) = (v[1], t1 * v[1]);
                    for col in h[idx(k, k)..].chunks_mut(n).take(i + 1 - k) {
                        let sum = v2.mul_add(col[1], col[0]);
                        col[0] = (-sum).mul_add(t1, col[0]);
                        col[1] = (-sum).mul_add(t2, col[1]);
                    }
                    let (left, right) = h.split_at_mut(idx(0, k + 1));
                    let col0 = &mut left[idx(l, k)..idx(i + 1, k)];
                    let col1 = &mut right[l..i + 1];
                    for (a, b) in col0.iter_mut().zip(col1.iter_mut()) {
                        let sum = v2.mul_add(*b, *a);
                        *a = (-sum).mul_add(t1, *a);
                        *b = (-sum).mul_add(t2, *b);
                    }
                }
            }
            far_rows.flush::<SIMD>(h, n, i);
            if let Some((kp, r)) = far_cols.take() {
                r.cols(h, n, kp, l..kp);
            }
        }
        if !converged {
            return Err(NoConvergence);
        }
        if l == i {
            // a 1 × 1 block: a real eigenvalue
            wr[i] = h[idx(i, i)];
            wi[i] = 0.0;
        } else {
            // a 2 × 2 block: its eigenvalues, computed stably
            let (a, b) = dlanv2(
                h[idx(i - 1, i - 1)],
                h[idx(i - 1, i)],
                h[idx(i, i - 1)],
                h[idx(i, i)],
            );
            (wr[i - 1], wi[i - 1], wr[i], wi[i]) = (a.0, a.1, b.0, b.1);
        }
        kdefl = 0;
        i_end = l as isize - 1;
    }
    Ok(())
}

/// The QR iteration did not converge within its cap (or met a non-finite entry); the sweep
/// redraws the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoConvergence;

/// LAPACK's `dlarfg`: on input `v = [α, x]`; on output `v = [β, u]` and the return value τ
/// such that `(I − τ [1; u][1; u]ᵀ) [α; x] = [β; 0]`. τ = 0 when x = 0.
#[inline(always)]
fn householder(v: &mut [f64]) -> f64 {
    let (alpha, x) = v.split_first_mut().expect("non-empty");
    // fast path, one square root: ‖[α, x]‖² where it can neither overflow nor underflow
    let ss_x = x.iter().fold(0.0, |acc, &xi| xi.mul_add(xi, acc));
    let ss = alpha.mul_add(*alpha, ss_x);
    if ss_x > 1e-290 && ss < 1e290 {
        let a = *alpha;
        let beta = -ss.sqrt().copysign(a);
        let scale = 1.0 / (a - beta);
        x.iter_mut().for_each(|xi| *xi *= scale);
        *alpha = beta;
        return (beta - a) / beta;
    }
    let xnorm = x.iter().fold(0.0f64, |acc, &xi| acc.hypot(xi));
    if xnorm == 0.0 {
        return 0.0;
    }
    let mut a = *alpha;
    let mut beta = -a.hypot(xnorm).copysign(a);
    // rescale when β would underflow (LAPACK's KNT loop)
    let rsafmn = 1.0 / (SAFMIN / ULP);
    let mut knt = 0;
    if beta.abs() < SAFMIN / ULP {
        while beta.abs() < SAFMIN / ULP && knt < 20 {
            knt += 1;
            x.iter_mut().for_each(|xi| *xi *= rsafmn);
            beta *= rsafmn;
            a *= rsafmn;
        }
        let xnorm = x.iter().fold(0.0f64, |acc, &xi| acc.hypot(xi));
        beta = -a.hypot(xnorm).copysign(a);
    }
    let tau = (beta - a) / beta;
    let scale = 1.0 / (a - beta);
    x.iter_mut().for_each(|xi| *xi *= scale);
    for _ in 0..knt {
        beta *= SAFMIN / ULP;
    }
    *alpha = beta;
    tau
}

/// LAPACK's `dlanv2`, eigenvalue part: the eigenvalues `(re, im)` of `[a b; c d]`, computed by
/// the rotation that standardises the block (accurate where the quadratic formula is not).
#[inline(always)]
fn dlanv2(mut a: f64, mut b: f64, mut c: f64, mut d: f64) -> ((f64, f64), (f64, f64)) {
    const MULTPL: f64 = 4.0;
    let eps = ULP;
    // safmn2 = base^⌊log_base(safmin / eps) / 2⌋
    let safmn2 = 2f64.powi(((SAFMIN / eps).log2() / 2.0) as i32);
    let safmx2 = 1.0 / safmn2;
    if c == 0.0 {
    } else if b == 0.0 {
        // swap rows and columns
        std::mem::swap(&mut a, &mut d);
        b = -c;
        c = 0.0;
    } else if (a - d) == 0.0 && b.signum() != c.signum() {
        // already standard: a complex pair
    } else {
        let temp = a - d;
        let mut p = 0.5 * temp;
        let bcmax = b.abs().max(c.abs());
        let bcmis = b.abs().min(c.abs()) * 1f64.copysign(b) * 1f64.copysign(c);
        let scale = p.abs().max(bcmax);
        let mut z = (p / scale) * p + (bcmax / scale) * bcmis;
        if z >= MULTPL * eps {
            // real eigenvalues: compute a and d
            z = p + (scale.sqrt() * z.sqrt()).copysign(p);
            a = d + z;
            d -= (bcmax / z) * bcmis;
            b -= c;
            c = 0.0;
        } else {
            // complex eigenvalues, or real (almost) equal ones: make the diagonal equal
            let mut count = 0;
            let mut sigma = b + c;
            let mut temp = temp;
            loop {
                count += 1;
                let scale = temp.abs().max(sigma.abs());
                if scale >= safmx2 {
                    sigma *= safmn2;
                    temp *= safmn2;
                    if count <= 20 {
                        continue;
                    }
                }
                if scale <= safmn2 {
                    sigma *= safmx2;
                    temp *= safmx2;
                    if count <= 20 {
                        continue;
                    }
                }
                break;
            }
            p = 0.5 * temp;
            let tau = sigma.hypot(temp);
            let cs = (0.5 * (1.0 + sigma.abs() / tau)).sqrt();
            let sn = -(p / (tau * cs)) * 1f64.copysign(sigma);
            // [aa bb; cc dd] = [a b; c d] [cs −sn; sn cs]
            let aa = a * cs + b * sn;
            let bb = -a * sn + b * cs;
            let cc = c * cs + d * sn;
            let dd = -c * sn + d * cs;
            // [a b; c d] = [cs sn; −sn cs] [aa bb; cc dd]
            b = bb * cs + dd * sn;
            c = -aa * sn + cc * cs;
            let temp = 0.5 * ((aa * cs + cc * sn) + (-bb * sn + dd * cs));
            a = temp;
            d = temp;
            if c != 0.0 {
                if b != 0.0 {
                    if b.signum() == c.signum() {
                        // real eigenvalues: reduce to upper triangular form
                        let sab = b.abs().sqrt();
                        let sac = c.abs().sqrt();
                        let p = (sab * sac).copysign(c);
                        a = temp + p;
                        d = temp - p;
                        b -= c;
                        c = 0.0;
                    }
                } else {
                    b = -c;
                    c = 0.0;
                }
            }
        }
    }
    if c == 0.0 {
        ((a, 0.0), (d, 0.0))
    } else {
        let im = b.abs().sqrt() * c.abs().sqrt();
        ((a, im), (d, -im))
    }
}

/// Deferred far row parts (see the sweep): reflector p on columns p+3..=i, or reflectors p
/// and p+1 on columns p+4..=i (p's column p+3 already done).
enum FarRows {
    None,
    One(usize, Reflector),
    Two(usize, Reflector, Reflector),
}

impl FarRows {
    #[inline(always)]
    fn flush<const SIMD: bool>(&self, h: &mut [f64], n: usize, i: usize) {
        match *self {
            FarRows::None => {}
            FarRows::One(p, a) => a.rows(h, n, p, p + 3..i + 1),
            FarRows::Two(p, a, b) => rows_pair::<SIMD>(h, n, p, &a, &b, p + 4..i + 1),
        }
    }
}

/// Reflector `a` on rows p..p+2, then `b` on rows p+1..p+3, of the columns `cols`.
#[inline(always)]
fn rows_pair<const SIMD: bool>(
    h: &mut [f64],
    n: usize,
    p: usize,
    a: &Reflector,
    b: &Reflector,
    cols: std::ops::Range<usize>,
) {
    if cols.is_empty() {
        return;
    }
    assert!(p + 3 < n && cols.end <= n, "rows_pair: out of the matrix");
    let mut start = cols.start;
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: SIMD is only instantiated from the AVX2 + FMA entry point, and the
        // assertion above keeps every access inside `h`.
        start = unsafe { rows_pair_avx2(h, n, p, a, b, cols.clone()) };
    }
    if start == cols.end {
        return;
    }
    for col in h[p + start * n..].chunks_mut(n).take(cols.end - start) {
        let [x0, x1, x2, x3, ..] = col else {
            unreachable!("rows p..p+3 exist")
        };
        a.apply(x0, x1, x2);
        b.apply(x1, x2, x3);
    }
}

/// [`rows_pair`] on groups of four columns: load rows p..p+3 of four columns, transpose to
/// rows, apply both reflectors with the same fused multiply-adds as the scalar code (so the
/// results are bit-identical), transpose back, store. Returns the first column not done.
///
/// # Safety
/// AVX2 and FMA available; `p + 3 < n`, `cols.end <= n`, `h.len() == n * n`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_pair_avx2(
    h: &mut [f64],
    n: usize,
    p: usize,
    a: &Reflector,
    b: &Reflector,
    cols: std::ops::Range<usize>,
) -> usize {
    use std::arch::x86_64::*;
    debug_assert!(p + 3 < n && cols.end <= n && h.len() == n * n);
    let splat = |x: f64| _mm256_set1_pd(x);
    let (av2, av3) = (splat(a.v2), splat(a.v3));
    let (at1, at2, at3) = (splat(a.t[0]), splat(a.t[1]), splat(a.t[2]));
    let (bv2, bv3) = (splat(b.v2), splat(b.v3));
    let (bt1, bt2, bt3) = (splat(b.t[0]), splat(b.t[1]), splat(b.t[2]));
    let base = h.as_mut_ptr();
    let mut j = cols.start;
    while j + 4 <= cols.end {
        // SAFETY: columns j..j+4 ≤ n, rows p..p+4 ≤ n: inside the n × n matrix
        unsafe {
            let c0 = base.add(p + j * n);
            let (c1, c2, c3) = (c0.add(n), c0.add(2 * n), c0.add(3 * n));
            let (r0, r1) = (_mm256_loadu_pd(c0), _mm256_loadu_pd(c1));
            let (r2, r3) = (_mm256_loadu_pd(c2), _mm256_loadu_pd(c3));
            // 4 × 4 transpose: x_r holds row p+r of the four columns
            let (t0, t1) = (_mm256_unpacklo_pd(r0, r1), _mm256_unpackhi_pd(r0, r1));
            let (t2, t3) = (_mm256_unpacklo_pd(r2, r3), _mm256_unpackhi_pd(r2, r3));
            let mut x0 = _mm256_permute2f128_pd::<0x20>(t0, t2);
            let mut x1 = _mm256_permute2f128_pd::<0x20>(t1, t3);
            let mut x2 = _mm256_permute2f128_pd::<0x31>(t0, t2);
            let mut x3 = _mm256_permute2f128_pd::<0x31>(t1, t3);
            // reflector a on rows p..p+2: sum = x0 + v2 x1 + v3 x2; x_r −= sum τ v_r
            let s = _mm256_fmadd_pd(av3, x2, _mm256_fmadd_pd(av2, x1, x0));
            x0 = _mm256_fnmadd_pd(s, at1, x0);
            x1 = _mm256_fnmadd_pd(s, at2, x1);
            x2 = _mm256_fnmadd_pd(s, at3, x2);
            // reflector b on rows p+1..p+3
            let s = _mm256_fmadd_pd(bv3, x3, _mm256_fmadd_pd(bv2, x2, x1));
            x1 = _mm256_fnmadd_pd(s, bt1, x1);
            x2 = _mm256_fnmadd_pd(s, bt2, x2);
            x3 = _mm256_fnmadd_pd(s, bt3, x3);
            // transpose back to columns
            let (t0, t1) = (_mm256_unpacklo_pd(x0, x1), _mm256_unpackhi_pd(x0, x1));
            let (t2, t3) = (_mm256_unpacklo_pd(x2, x3), _mm256_unpackhi_pd(x2, x3));
            _mm256_storeu_pd(c0, _mm256_permute2f128_pd::<0x20>(t0, t2));
            _mm256_storeu_pd(c1, _mm256_permute2f128_pd::<0x20>(t1, t3));
            _mm256_storeu_pd(c2, _mm256_permute2f128_pd::<0x31>(t0, t2));
            _mm256_storeu_pd(c3, _mm256_permute2f128_pd::<0x31>(t1, t3));
        }
        j += 4;
    }
    j
}

/// A 3 × 3 Householder reflector `I − τ v vᵀ`, v = [1, v2, v3].
#[derive(Clone, Copy)]
struct Reflector {
    v2: f64,
    v3: f64,
    /// τ, τ v2, τ v3
    t: [f64; 3],
}

impl Reflector {
    #[inline(always)]
    fn new(tau: f64, v2: f64, v3: f64) -> Self {
        Reflector {
            v2,
            v3,
            t: [tau, tau * v2, tau * v3],
        }
    }

    /// `[a, b, c] ← (I − τ v vᵀ) [a, b, c]`.
    #[inline(always)]
    fn apply(&self, a: &mut f64, b: &mut f64, c: &mut f64) {
        let [t1, t2, t3] = self.t;
        let sum = self.v3.mul_add(*c, self.v2.mul_add(*b, *a));
        *a = (-sum).mul_add(t1, *a);
        *b = (-sum).mul_add(t2, *b);
        *c = (-sum).mul_add(t3, *c);
    }

    /// From the left, on rows k..k+2 of the columns `cols`.
    #[inline(always)]
    fn rows(&self, h: &mut [f64], n: usize, k: usize, cols: std::ops::Range<usize>) {
        if cols.is_empty() {
            return;
        }
        for col in h[k + cols.start * n..].chunks_mut(n).take(cols.len()) {
            let [a, b, c, ..] = col else {
                unreachable!("rows k..k+2 exist")
            };
            self.apply(a, b, c);
        }
    }

    /// From the right, on columns k..k+2 of the rows `rows`: three contiguous pieces.
    #[inline(always)]
    fn cols(&self, h: &mut [f64], n: usize, k: usize, rows: std::ops::Range<usize>) {
        let (left, right) = h.split_at_mut((k + 1) * n);
        let col0 = &mut left[k * n + rows.start..k * n + rows.end];
        let (c1, c2) = right.split_at_mut(n);
        let (col1, col2) = (&mut c1[rows.clone()], &mut c2[rows]);
        for ((a, b), c) in col0.iter_mut().zip(col1.iter_mut()).zip(col2.iter_mut()) {
            self.apply(a, b, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::spectral::Ensemble;
    use crate::rng::stream;

    /// The dispatched entry point (AVX2 + FMA with the vectorised pair update, where the CPU has
    /// them) and the portable scalar path give bit-identical eigenvalues: the same fused
    /// multiply-adds in the same order.
    #[test]
    fn vectorised_and_portable_paths_agree_bitwise() {
        for (e, ensemble) in [
            Ensemble::Gaussian,
            Ensemble::Orthogonal,
            Ensemble::Sparse(3),
        ]
        .into_iter()
        .enumerate()
        {
            for n in [1usize, 2, 3, 4, 5, 7, 8, 9, 16, 33, 64, 128] {
                let m = ensemble.draw(n, &mut stream(21, &[e as u64, n as u64]));
                let (mut wr, mut wi) = (vec![0.0; n], vec![0.0; n]);
                let (mut pr, mut pi) = (vec![0.0; n], vec![0.0; n]);
                let mut h = m.as_slice().to_vec();
                hessenberg_eigenvalues(&mut h, n, &mut wr, &mut wi).unwrap();
                let mut h = m.as_slice().to_vec();
                hqr::<false>(&mut h, n, &mut pr, &mut pi).unwrap();
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!((bits(&wr), bits(&wi)), (bits(&pr), bits(&pi)), "n = {n}");
            }
        }
    }
}
