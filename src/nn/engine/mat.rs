//! Column-major matrix views over slices, the BLAS-style `gemm` of the engine, and the
//! element-wise kernels — each one function, generic over the scalar, that dispatches to the
//! fast implementation where one exists.
//!
//! * [`gemm`]: faer's GEMM for `f32`/`f64` (the single-core peak), a plain triple loop for any
//!   other `RealField` (num-dual's dual numbers, for the exact forward-mode oracle). The
//!   dispatch is a `TypeId` comparison that the compiler folds away: one code path, the same
//!   call sites, whatever the scalar.
//! * [`tanh_into`], [`sigmoid_into`]: `crate::nn::engine::fastmath`'s vectorised kernels (≤ 4 ulp) for
//!   `f64`, the scalar's own functions otherwise.
//!
//! A view is `(data, rows, cols, ld)`: entry `(i, j)` is `data[i + j·ld]` (`ld ≥ rows`, the
//! leading dimension). Sub-blocks of rows or columns are views again, without copies.

use std::any::TypeId;

use faer::{Accum, Par};
use nalgebra::{DMatrix, RealField};

/// An immutable column-major view: entry `(i, j)` at `data[i + j·ld]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    ld: usize,
}

/// A mutable column-major view: entry `(i, j)` at `data[i + j·ld]`.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    ld: usize,
}

/// Slice length a `rows × cols` view with leading dimension `ld` needs.
fn span(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (cols - 1) * ld + rows
    }
}

impl<'a, T: Copy> MatRef<'a, T> {
    /// A view of `data` as `rows × cols` with leading dimension `ld`.
    ///
    /// # Panics
    /// If `ld < rows` or `data` is too short.
    pub fn new(data: &'a [T], rows: usize, cols: usize, ld: usize) -> Self {
        assert!(ld >= rows.max(1), "leading dimension {ld} < rows {rows}");
        assert!(data.len() >= span(rows, cols, ld), "view out of bounds");
        MatRef {
            data,
            rows,
            cols,
            ld,
        }
    }
    /// The whole matrix.
    pub fn from(m: &'a DMatrix<T>) -> Self
    where
        T: nalgebra::Scalar,
    {
        Self::new(m.as_slice(), m.nrows(), m.ncols(), m.nrows().max(1))
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn ld(&self) -> usize {
        self.ld
    }
    /// Entry `(i, j)`.
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> T {
        debug_assert!(i < self.rows && j < self.cols);
        self.data[i + j * self.ld]
    }
    /// Column `j` as a slice.
    #[inline]
    pub fn col(&self, j: usize) -> &'a [T] {
        &self.data[j * self.ld..j * self.ld + self.rows]
    }
    /// Rows `start..start + n`.
    pub fn row_block(self, start: usize, n: usize) -> Self {
        assert!(start + n <= self.rows, "row block out of range");
        if self.cols == 0 || n == 0 {
            return MatRef {
                data: &[],
                rows: n,
                cols: self.cols,
                ld: self.ld,
            };
        }
        Self::new(&self.data[start..], n, self.cols, self.ld)
    }
    /// Columns `start..start + n`.
    pub fn col_block(self, start: usize, n: usize) -> Self {
        assert!(start + n <= self.cols, "column block out of range");
        if n == 0 {
            return MatRef {
                data: &[],
                rows: self.rows,
                cols: 0,
                ld: self.ld,
            };
        }
        Self::new(&self.data[start * self.ld..], self.rows, n, self.ld)
    }
    /// Every entry as one slice, column after column, when the columns are adjacent
    /// (`ld = rows`, or a single column).
    pub fn contiguous(&self) -> Option<&'a [T]> {
        (self.ld == self.rows || self.cols <= 1).then(|| &self.data[..self.rows * self.cols])
    }
    /// An owned copy.
    pub fn to_owned(&self) -> DMatrix<T>
    where
        T: nalgebra::Scalar,
    {
        DMatrix::from_fn(self.rows, self.cols, |i, j| self.at(i, j))
    }
}

impl<'a, T: Copy> MatMut<'a, T> {
    /// A mutable view of `data` as `rows × cols` with leading dimension `ld`.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, ld: usize) -> Self {
        assert!(ld >= rows.max(1), "leading dimension {ld} < rows {rows}");
        assert!(data.len() >= span(rows, cols, ld), "view out of bounds");
        MatMut {
            data,
            rows,
            cols,
            ld,
        }
    }
    /// The whole matrix.
    pub fn from(m: &'a mut DMatrix<T>) -> Self
    where
        T: nalgebra::Scalar,
    {
        let (r, c) = m.shape();
        Self::new(m.as_mut_slice(), r, c, r.max(1))
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// A shorter-lived mutable view of the same entries.
    pub fn reborrow(&mut self) -> MatMut<'_, T> {
        MatMut {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            ld: self.ld,
        }
    }
    /// An immutable view of the same entries.
    pub fn as_ref(&self) -> MatRef<'_, T> {
        MatRef {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            ld: self.ld,
        }
    }
    /// Entry `(i, j)`.
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> T {
        self.data[i + j * self.ld]
    }
    /// Mutable entry `(i, j)`.
    #[inline]
    pub fn at_mut(&mut self, i: usize, j: usize) -> &mut T {
        debug_assert!(i < self.rows && j < self.cols);
        &mut self.data[i + j * self.ld]
    }
    /// Column `j` as a slice.
    #[inline]
    pub fn col(&self, j: usize) -> &[T] {
        &self.data[j * self.ld..j * self.ld + self.rows]
    }
    /// Every entry as one mutable slice, when the columns are adjacent (see
    /// [`MatRef::contiguous`]).
    pub fn contiguous_mut(&mut self) -> Option<&mut [T]> {
        (self.ld == self.rows || self.cols <= 1).then(|| &mut self.data[..self.rows * self.cols])
    }
    /// Column `j` as a mutable slice.
    #[inline]
    pub fn col_mut(&mut self, j: usize) -> &mut [T] {
        &mut self.data[j * self.ld..j * self.ld + self.rows]
    }
    /// Rows `start..start + n`.
    pub fn row_block(self, start: usize, n: usize) -> Self {
        assert!(start + n <= self.rows, "row block out of range");
        if self.cols == 0 || n == 0 {
            return MatMut {
                data: &mut [],
                rows: n,
                cols: self.cols,
                ld: self.ld,
            };
        }
        let ld = self.ld;
        let cols = self.cols;
        Self::new(&mut self.data[start..], n, cols, ld)
    }
    /// Columns `start..start + n`.
    pub fn col_block(self, start: usize, n: usize) -> Self {
        assert!(start + n <= self.cols, "column block out of range");
        if n == 0 {
            return MatMut {
                data: &mut [],
                rows: self.rows,
                cols: 0,
                ld: self.ld,
            };
        }
        let (rows, ld) = (self.rows, self.ld);
        Self::new(&mut self.data[start * ld..], rows, n, ld)
    }
    /// Set every entry to `v`.
    pub fn fill(&mut self, v: T) {
        for j in 0..self.cols {
            self.col_mut(j).fill(v);
        }
    }
    /// Copy `src` (same shape) into this view.
    pub fn copy_from(&mut self, src: MatRef<'_, T>) {
        assert_eq!(
            (self.rows, self.cols),
            (src.rows, src.cols),
            "copy: shapes differ"
        );
        for j in 0..self.cols {
            self.col_mut(j).copy_from_slice(src.col(j));
        }
    }
}

impl<T: RealField + Copy> MatMut<'_, T> {
    /// `self += src` (same shape).
    pub fn add_assign(&mut self, src: MatRef<'_, T>) {
        assert_eq!(
            (self.rows, self.cols),
            (src.rows, src.cols),
            "add: shapes differ"
        );
        for j in 0..self.cols {
            for (d, s) in self.col_mut(j).iter_mut().zip(src.col(j)) {
                *d += *s;
            }
        }
    }
    /// Every column set to the column vector `b` (broadcast, as a bias before a GEMM).
    pub fn fill_columns(&mut self, b: &[T]) {
        assert_eq!(b.len(), self.rows, "broadcast: length differs");
        for j in 0..self.cols {
            self.col_mut(j).copy_from_slice(b);
        }
    }
}

/// How a GEMM operand enters the product: as stored, or transposed.
#[derive(Clone, Copy, Debug)]
pub enum Op<'a, T> {
    /// `A`.
    N(MatRef<'a, T>),
    /// `Aᵀ`.
    T(MatRef<'a, T>),
}

impl<T: Copy> Op<'_, T> {
    fn shape(&self) -> (usize, usize) {
        match self {
            Op::N(a) => (a.rows, a.cols),
            Op::T(a) => (a.cols, a.rows),
        }
    }
    #[inline]
    fn at(&self, i: usize, j: usize) -> T {
        match self {
            Op::N(a) => a.at(i, j),
            Op::T(a) => a.at(j, i),
        }
    }
}

/// Whether `T` is exactly `U` (folded to a constant at compile time).
#[inline]
fn same<T: 'static, U: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<U>()
}

/// `C ← A·B` (`accumulate = false`) or `C ← C + A·B` (`accumulate = true`), with `A`, `B`
/// each optionally transposed: `C` is `m × n`, `op(A)` `m × k`, `op(B)` `k × n`.
///
/// faer's GEMM (sequential) for `f32` and `f64`; a triple loop for any other scalar.
///
/// # Panics
/// If the shapes do not conform.
pub fn gemm<T: RealField + Copy>(c: MatMut<'_, T>, accumulate: bool, a: Op<'_, T>, b: Op<'_, T>) {
    gemm_scaled(c, accumulate, T::one(), a, b);
}

/// [`gemm`] with the product scaled: `C ← α·A·B` or `C ← C + α·A·B` (BLAS's `alpha`, applied
/// by the kernel to each product sum, not to an operand).
///
/// # Panics
/// If the shapes do not conform.
pub fn gemm_scaled<T: RealField + Copy>(
    c: MatMut<'_, T>,
    accumulate: bool,
    alpha: T,
    a: Op<'_, T>,
    b: Op<'_, T>,
) {
    let (m, k) = a.shape();
    let (k2, n) = b.shape();
    assert!(
        k == k2 && c.rows == m && c.cols == n,
        "gemm: {}x{} += ({m}x{k})·({k2}x{n})",
        c.rows,
        c.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            let mut c = c;
            c.fill(T::zero());
        }
        return;
    }
    if same::<T, f64>() {
        // SAFETY: T is f64 (checked above), so the views reinterpret to identical types
        unsafe { faer_gemm::<T, f64>(c, accumulate, alpha, a, b) }
    } else if same::<T, f32>() {
        // SAFETY: T is f32
        unsafe { faer_gemm::<T, f32>(c, accumulate, alpha, a, b) }
    } else {
        let mut c = c;
        for j in 0..n {
            for i in 0..m {
                let mut s = T::zero();
                for l in 0..k {
                    s += a.at(i, l) * b.at(l, j);
                }
                let s = if alpha == T::one() { s } else { alpha * s };
                let d = c.at_mut(i, j);
                *d = if accumulate { *d + s } else { s };
            }
        }
    }
}

/// faer's GEMM on views reinterpreted as `F` (`T` must be `F`).
unsafe fn faer_gemm<T: Copy, F: faer::traits::ComplexField + Copy>(
    c: MatMut<'_, T>,
    accumulate: bool,
    alpha: T,
    a: Op<'_, T>,
    b: Op<'_, T>,
) {
    let faer_ref = |op: Op<'_, T>| {
        let (m, t) = match op {
            Op::N(m) => (m, false),
            Op::T(m) => (m, true),
        };
        // SAFETY: `m` is a valid view of `m.rows × m.cols` entries with leading dimension ld
        // (checked at construction); T = F
        let r = unsafe {
            faer::MatRef::<F>::from_raw_parts(
                m.data.as_ptr() as *const F,
                m.rows,
                m.cols,
                1,
                m.ld as isize,
            )
        };
        if t { r.transpose() } else { r }
    };
    let (lhs, rhs) = (faer_ref(a), faer_ref(b));
    // SAFETY: as above, for the destination
    let dst = unsafe {
        faer::MatMut::<F>::from_raw_parts_mut(
            c.data.as_mut_ptr() as *mut F,
            c.rows,
            c.cols,
            1,
            c.ld as isize,
        )
    };
    let acc = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    // SAFETY: T = F
    let alpha = unsafe { *(&alpha as *const T as *const F) };
    faer::linalg::matmul::matmul(dst, acc, lhs, rhs, alpha, Par::Seq);
    // faer returns with the vector registers' upper halves dirty: see `crate::cpu`
    crate::cpu::clear_upper_state();
}

/// Reinterpret a slice of `T` as `f64` when `T` is `f64`.
#[inline]
fn as_f64<T: 'static>(s: &[T]) -> Option<&[f64]> {
    // SAFETY: same type
    same::<T, f64>().then(|| unsafe { &*(s as *const [T] as *const [f64]) })
}

#[inline]
fn as_f64_mut<T: 'static>(s: &mut [T]) -> Option<&mut [f64]> {
    // SAFETY: same type
    same::<T, f64>().then(|| unsafe { &mut *(s as *mut [T] as *mut [f64]) })
}

#[inline]
fn as_f32<T: 'static>(s: &[T]) -> Option<&[f32]> {
    // SAFETY: same type
    same::<T, f32>().then(|| unsafe { &*(s as *const [T] as *const [f32]) })
}

#[inline]
fn as_f32_mut<T: 'static>(s: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: same type
    same::<T, f32>().then(|| unsafe { &mut *(s as *mut [T] as *mut [f32]) })
}

/// An f64 kernel over f32 data, in place: chunks widened to f64 on the stack, mapped, rounded
/// back (more accurate than f32 libm, vectorised, and free of libm's slow subnormal paths).
fn widened_in_place(kernel: fn(&mut [f64]), x: &mut [f32]) {
    const CHUNK: usize = 256;
    let mut buf = [0.0f64; CHUNK];
    for x in x.chunks_mut(CHUNK) {
        let buf = &mut buf[..x.len()];
        for (b, v) in buf.iter_mut().zip(x.iter()) {
            *b = f64::from(*v);
        }
        kernel(buf);
        for (v, b) in x.iter_mut().zip(buf.iter()) {
            *v = *b as f32;
        }
    }
}

/// [`widened_in_place`] from `a` into `out`.
fn widened(kernel: fn(&mut [f64]), a: &[f32], out: &mut [f32]) {
    out.copy_from_slice(a);
    widened_in_place(kernel, out);
}

/// `out = tanh(a)` element-wise: `crate::nn::engine::fastmath`'s vectorised kernel for f64 (and, widened,
/// for f32), the scalar's own function otherwise (dual numbers).
pub fn tanh_into<T: RealField + Copy>(a: &[T], out: &mut [T]) {
    if let (Some(a), Some(out)) = (as_f64(a), as_f64_mut(out)) {
        return crate::nn::engine::fastmath::tanh_slice(a, out);
    }
    if let Some(a32) = as_f32(a) {
        let out = as_f32_mut(out).expect("same scalar");
        return widened(crate::nn::engine::fastmath::tanh_in_place, a32, out);
    }
    out.iter_mut().zip(a).for_each(|(o, a)| *o = a.tanh());
}

/// `out = sigmoid(a)` element-wise, with the dispatch of [`tanh_into`].
pub fn sigmoid_into<T: RealField + Copy>(a: &[T], out: &mut [T]) {
    if let (Some(a), Some(out)) = (as_f64(a), as_f64_mut(out)) {
        return crate::nn::engine::fastmath::sigmoid_slice(a, out);
    }
    if let Some(a32) = as_f32(a) {
        let out = as_f32_mut(out).expect("same scalar");
        return widened(crate::nn::engine::fastmath::sigmoid_in_place, a32, out);
    }
    out.iter_mut()
        .zip(a)
        .for_each(|(o, a)| *o = crate::nn::activation::sigmoid(*a));
}

/// `x = tanh(x)` in place.
pub fn tanh_in_place<T: RealField + Copy>(x: &mut [T]) {
    if let Some(x) = as_f64_mut(x) {
        return crate::nn::engine::fastmath::tanh_in_place(x);
    }
    if let Some(x) = as_f32_mut(x) {
        return widened_in_place(crate::nn::engine::fastmath::tanh_in_place, x);
    }
    x.iter_mut().for_each(|v| *v = v.tanh());
}

/// `x = sigmoid(x)` in place.
pub fn sigmoid_in_place<T: RealField + Copy>(x: &mut [T]) {
    if let Some(x) = as_f64_mut(x) {
        return crate::nn::engine::fastmath::sigmoid_in_place(x);
    }
    if let Some(x) = as_f32_mut(x) {
        return widened_in_place(crate::nn::engine::fastmath::sigmoid_in_place, x);
    }
    x.iter_mut()
        .for_each(|v| *v = crate::nn::activation::sigmoid(*v));
}

/// `out = Σ_j m[:, j]` (columns in order, from zero): a bias gradient summed over every
/// (step, sequence) column.
pub fn row_sums<T: RealField + Copy>(m: MatRef<'_, T>, out: &mut [T]) {
    assert_eq!(out.len(), m.rows, "row sums: length differs");
    out.fill(T::zero());
    for j in 0..m.cols {
        for (acc, v) in out.iter_mut().zip(m.col(j)) {
            *acc += *v;
        }
    }
}

/// `out += v` element-wise.
pub fn add_to<T: RealField + Copy>(out: &mut [T], v: &[T]) {
    assert_eq!(out.len(), v.len(), "add: lengths differ");
    for (o, v) in out.iter_mut().zip(v) {
        *o += *v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn naive(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
        a * b
    }

    #[test]
    fn gemm_matches_nalgebra_for_every_transpose_and_both_dispatch_paths() {
        let mut rng = crate::rng::stream(1, &[]);
        for &(m, k, n) in &[(1, 1, 1), (7, 5, 3), (33, 17, 9), (130, 64, 41)] {
            let a = crate::rng::uniform_matrix::<f64>(&mut rng, m, k, 1.0);
            let b = crate::rng::uniform_matrix::<f64>(&mut rng, k, n, 1.0);
            let c0 = crate::rng::uniform_matrix::<f64>(&mut rng, m, n, 1.0);
            let at = a.transpose();
            let bt = b.transpose();
            let want = &c0 + naive(&a, &b);
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let op_a = if ta {
                    Op::T(MatRef::from(&at))
                } else {
                    Op::N(MatRef::from(&a))
                };
                let op_b = if tb {
                    Op::T(MatRef::from(&bt))
                } else {
                    Op::N(MatRef::from(&b))
                };
                let mut c = c0.clone();
                gemm(MatMut::from(&mut c), true, op_a, op_b);
                assert_relative_eq!(c, want, epsilon = 1e-12, max_relative = 1e-12);
                // the generic triple loop on dual numbers: real parts equal the same product
                let dual = |m: &DMatrix<f64>| m.map(num_dual::Dual64::from_re);
                let (da, dat, db, dbt) = (dual(&a), dual(&at), dual(&b), dual(&bt));
                let op_a = if ta {
                    Op::T(MatRef::from(&dat))
                } else {
                    Op::N(MatRef::from(&da))
                };
                let op_b = if tb {
                    Op::T(MatRef::from(&dbt))
                } else {
                    Op::N(MatRef::from(&db))
                };
                let mut cd = dual(&c0);
                gemm(MatMut::from(&mut cd), true, op_a, op_b);
                assert_relative_eq!(
                    cd.map(|d| d.re),
                    want,
                    epsilon = 1e-12,
                    max_relative = 1e-12
                );
            }
        }
    }

    #[test]
    fn scaled_gemm_scales_the_product_not_the_destination_on_both_paths() {
        // C ← C + α·A·B and C ← α·A·B, faer (f64, f32) and the generic loop (dual numbers)
        let mut rng = crate::rng::stream(2, &[]);
        let (a, b) = (
            crate::rng::uniform_matrix::<f64>(&mut rng, 9, 4, 1.0),
            crate::rng::uniform_matrix::<f64>(&mut rng, 4, 6, 1.0),
        );
        let c0 = crate::rng::uniform_matrix::<f64>(&mut rng, 9, 6, 1.0);
        let alpha = -0.375;
        for accumulate in [true, false] {
            let base = if accumulate { c0.clone() } else { &c0 * 0.0 };
            let want = base + (&a * &b) * alpha;
            let mut c = c0.clone();
            gemm_scaled(
                MatMut::from(&mut c),
                accumulate,
                alpha,
                Op::N(MatRef::from(&a)),
                Op::N(MatRef::from(&b)),
            );
            assert_relative_eq!(c, want, epsilon = 1e-14, max_relative = 1e-13);
            let f32s = |m: &DMatrix<f64>| m.map(|x| x as f32);
            let (a32, b32) = (f32s(&a), f32s(&b));
            let mut c32 = f32s(&c0);
            gemm_scaled(
                MatMut::from(&mut c32),
                accumulate,
                alpha as f32,
                Op::N(MatRef::from(&a32)),
                Op::N(MatRef::from(&b32)),
            );
            assert_relative_eq!(
                c32.map(f64::from),
                want,
                epsilon = 1e-5,
                max_relative = 1e-5
            );
            let dual = |m: &DMatrix<f64>| m.map(num_dual::Dual64::from_re);
            let (da, db) = (dual(&a), dual(&b));
            let mut cd = dual(&c0);
            gemm_scaled(
                MatMut::from(&mut cd),
                accumulate,
                num_dual::Dual64::from_re(alpha),
                Op::N(MatRef::from(&da)),
                Op::N(MatRef::from(&db)),
            );
            assert_relative_eq!(
                cd.map(|d| d.re),
                want,
                epsilon = 1e-14,
                max_relative = 1e-13
            );
        }
    }

    #[test]
    fn strided_blocks_address_the_right_entries() {
        let mut m = DMatrix::from_fn(6, 5, |i, j| (10 * i + j) as f64);
        let v = MatRef::from(&m).row_block(2, 3).col_block(1, 3);
        assert_eq!((v.rows(), v.cols()), (3, 3));
        assert_eq!(v.at(0, 0), 21.0);
        assert_eq!(v.at(2, 2), 43.0);
        let mut w = MatMut::from(&mut m).row_block(3, 2);
        *w.at_mut(1, 4) = -1.0;
        assert_eq!(m[(4, 4)], -1.0);
    }
}
