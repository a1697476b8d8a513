//! [`Params`]: an ordered set of named matrices.
//!
//! Parameters *and* their gradients are `Params`, with the same names, order and shapes, so
//! optimizers, clipping and the gradient checker treat any model generically.

use std::ops::{Index, IndexMut};

use nalgebra::{DMatrix, RealField, Scalar};

/// An ordered list of `(name, matrix)` pairs. Biases are stored as `n × 1` matrices.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<T: Scalar> {
    names: Vec<String>,
    tensors: Vec<DMatrix<T>>,
}

impl<T: Scalar> Default for Params<T> {
    fn default() -> Self {
        Params {
            names: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl<T: Scalar> Params<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a named matrix; returns its index.
    pub fn push(&mut self, name: impl Into<String>, m: DMatrix<T>) -> usize {
        self.names.push(name.into());
        self.tensors.push(m);
        self.tensors.len() - 1
    }

    /// Number of named matrices.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of scalars.
    pub fn scalar_count(&self) -> usize {
        self.tensors.iter().map(|m| m.len()).sum()
    }

    /// The names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The matrix named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&DMatrix<T>> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.tensors[i])
    }

    /// Mutable access by name.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut DMatrix<T>> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &mut self.tensors[i])
    }

    /// `(name, matrix)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &DMatrix<T>)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.tensors.iter())
    }

    /// Mutable matrices in order (names are fixed).
    /// Every tensor, in order, as one mutable slice (what the engine accumulates into).
    pub fn as_mut_slice(&mut self) -> &mut [DMatrix<T>] {
        &mut self.tensors
    }
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = &mut DMatrix<T>> {
        self.tensors.iter_mut()
    }

    /// Same names and shapes, every entry converted with `f` (e.g. f64 → f32).
    pub fn map<U: Scalar>(&self, mut f: impl FnMut(T) -> U) -> Params<U> {
        Params {
            names: self.names.clone(),
            tensors: self.tensors.iter().map(|m| m.map(&mut f)).collect(),
        }
    }
}

impl<T: RealField + Copy> Params<T> {
    /// Same names and shapes, all zeros: the gradient accumulator for these parameters.
    pub fn zeros_like(&self) -> Self {
        Params {
            names: self.names.clone(),
            tensors: self
                .tensors
                .iter()
                .map(|m| DMatrix::zeros(m.nrows(), m.ncols()))
                .collect(),
        }
    }

    /// Global Euclidean (Frobenius) norm over every entry of every matrix.
    pub fn norm(&self) -> T {
        self.tensors
            .iter()
            .fold(T::zero(), |acc, m| acc + m.norm_squared())
            .sqrt()
    }

    /// Multiply every entry by `s`.
    pub fn scale_mut(&mut self, s: T) {
        for m in &mut self.tensors {
            *m *= s;
        }
    }

    /// `self += alpha · other` (shapes must match; panics otherwise, as nalgebra does).
    pub fn axpy(&mut self, alpha: T, other: &Params<T>) {
        assert_eq!(
            self.names, other.names,
            "Params::axpy on differently named sets"
        );
        for (a, b) in self.tensors.iter_mut().zip(&other.tensors) {
            a.zip_apply(b, |x, y| *x += alpha * y);
        }
    }

    /// Whether every entry is finite.
    pub fn is_finite(&self) -> bool {
        self.tensors.iter().all(|m| m.iter().all(|x| x.is_finite()))
    }
}

impl<T: Scalar> Index<usize> for Params<T> {
    type Output = DMatrix<T>;
    fn index(&self, i: usize) -> &DMatrix<T> {
        &self.tensors[i]
    }
}

impl<T: Scalar> IndexMut<usize> for Params<T> {
    fn index_mut(&mut self, i: usize) -> &mut DMatrix<T> {
        &mut self.tensors[i]
    }
}

/// `m` in another scalar `U`, entry by entry through f64 (exact from f32 to f64, rounded to
/// nearest from f64 to f32; other scalars through their real part).
#[must_use]
pub fn rescalar_matrix<T: RealField + Copy, U: RealField + Copy>(m: &DMatrix<T>) -> DMatrix<U> {
    m.map(|x| nalgebra::convert::<f64, U>(x.to_subset().unwrap_or(f64::NAN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_like_keeps_names_and_shapes() {
        let mut p = Params::new();
        p.push("w", DMatrix::from_element(2, 3, 1.5f64));
        p.push("b", DMatrix::from_element(2, 1, -1.0));
        let z = p.zeros_like();
        assert_eq!(z.names(), p.names());
        assert_eq!(z[0].shape(), (2, 3));
        assert_eq!(z.norm(), 0.0);
        assert_eq!(p.scalar_count(), 8);
        // ‖p‖² = 6·2.25 + 2·1
        assert!((p.norm() - 15.5f64.sqrt()).abs() < 1e-15);
        let mut q = p.clone();
        q.axpy(-1.0, &p);
        assert_eq!(q.norm(), 0.0);
        assert_eq!(p.get("b").unwrap()[(1, 0)], -1.0);
    }
}
