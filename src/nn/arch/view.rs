//! Named views of a layer's parameters: [`ParamName`], PyTorch's name of one parameter (made
//! without allocating), and [`ParamsRef`] / [`ParamsMut`], every parameter of a layer in order
//! with its name, borrowed from the cells that own them — shaped like [`Params`] (same names,
//! order and shapes), without copying a matrix.
//!
//! A layer's gradients are a [`Params`] of the same names, order and shapes
//! ([`ParamsRef::zeros_like`] is their accumulator).

use std::fmt;
use std::ops::{Index, IndexMut};

use nalgebra::{DMatrix, RealField, Scalar};

use crate::nn::params::Params;

/// PyTorch's name of one parameter of a network: `{base}_l{layer}`, with `_reverse` for the
/// reverse direction — `weight_ih_l0`, `bias_hh_l1_reverse`, `skip_proj_l2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamName<'a> {
    /// The name within its cell (`weight_ih`, `bias_hh`) or wrapper (`skip_proj`).
    pub base: &'a str,
    /// The layer (PyTorch's `_l{layer}`).
    pub layer: usize,
    /// Whether it belongs to the reverse direction of a bidirectional layer.
    pub reverse: bool,
}

impl<'a> ParamName<'a> {
    /// The name of `base` in layer `layer`, direction `reverse`.
    #[must_use]
    pub fn new(base: &'a str, layer: usize, reverse: bool) -> Self {
        ParamName {
            base,
            layer,
            reverse,
        }
    }
}

impl fmt::Display for ParamName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_l{}", self.base, self.layer)?;
        if self.reverse {
            f.write_str("_reverse")?;
        }
        Ok(())
    }
}

/// A network's parameters in order, named, borrowed: what [`super::SeqLayer::params`] returns.
/// Read like a [`Params`] (`names`, `get`, `iter`, indexing); [`ParamsRef::to_params`] copies.
#[derive(Clone, Debug)]
pub struct ParamsRef<'a, T: Scalar> {
    names: Vec<String>,
    tensors: Vec<&'a DMatrix<T>>,
}

impl<T: Scalar> Default for ParamsRef<'_, T> {
    fn default() -> Self {
        ParamsRef {
            names: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl<'a, T: Scalar> ParamsRef<'a, T> {
    /// An empty view.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a named matrix; returns its index.
    pub fn push(&mut self, name: impl fmt::Display, m: &'a DMatrix<T>) -> usize {
        self.names.push(name.to_string());
        self.tensors.push(m);
        self.tensors.len() - 1
    }

    /// Number of named matrices.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of scalars.
    #[must_use]
    pub fn scalar_count(&self) -> usize {
        self.tensors.iter().map(|m| m.len()).sum()
    }

    /// The names, in order.
    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The names, in order, owned (the view's borrow ends).
    #[must_use]
    pub fn into_names(self) -> Vec<String> {
        self.names
    }

    /// The matrix named `name`, if any.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&'a DMatrix<T>> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.tensors[i])
    }

    /// `(name, matrix)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a DMatrix<T>)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.tensors.iter().copied())
    }

    /// The matrices in order.
    pub fn tensors(&self) -> impl Iterator<Item = &'a DMatrix<T>> + '_ {
        self.tensors.iter().copied()
    }

    /// A copy: the same names and matrices as an owned [`Params`].
    #[must_use]
    pub fn to_params(&self) -> Params<T> {
        let mut p = Params::new();
        for (name, m) in self.iter() {
            p.push(name, m.clone());
        }
        p
    }

    /// Same names and shapes, every entry converted with `f` (e.g. f64 → f32), as
    /// [`Params::map`].
    #[must_use]
    pub fn map<U: Scalar>(&self, mut f: impl FnMut(T) -> U) -> Params<U> {
        let mut p = Params::new();
        for (name, m) in self.iter() {
            p.push(name, m.map(&mut f));
        }
        p
    }
}

impl<T: RealField + Copy> ParamsRef<'_, T> {
    /// Whether every entry is finite.
    #[must_use]
    pub fn is_finite(&self) -> bool {
        self.tensors().all(|m| m.iter().all(|x| x.is_finite()))
    }
    /// Same names and shapes, all zeros: the gradient accumulator for these parameters.
    #[must_use]
    pub fn zeros_like(&self) -> Params<T> {
        self.map(|_| T::zero())
    }

    /// Global Euclidean (Frobenius) norm over every entry of every matrix.
    #[must_use]
    pub fn norm(&self) -> T {
        self.tensors
            .iter()
            .fold(T::zero(), |acc, m| acc + m.norm_squared())
            .sqrt()
    }
}

impl<T: Scalar> Index<usize> for ParamsRef<'_, T> {
    type Output = DMatrix<T>;
    fn index(&self, i: usize) -> &DMatrix<T> {
        self.tensors[i]
    }
}

/// A network's parameters in order, named, mutably borrowed: what
/// [`super::SeqLayer::params_mut`] returns. Names and shapes must not change.
#[derive(Debug)]
pub struct ParamsMut<'a, T: Scalar> {
    names: Vec<String>,
    tensors: Vec<&'a mut DMatrix<T>>,
}

impl<'a, T: Scalar> ParamsMut<'a, T> {
    /// The view of `tensors` named `names` (one name per tensor).
    #[must_use]
    pub fn new(names: Vec<String>, tensors: Vec<&'a mut DMatrix<T>>) -> Self {
        assert_eq!(names.len(), tensors.len(), "ParamsMut: one name per tensor");
        ParamsMut { names, tensors }
    }

    /// Number of named matrices.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The names, in order.
    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Mutable access by name.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut DMatrix<T>> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(&mut *self.tensors[i])
    }

    /// `(name, matrix)` pairs in order, the matrices mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut DMatrix<T>)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.tensors.iter_mut().map(|m| &mut **m))
    }

    /// The matrices in order, mutable.
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = &mut DMatrix<T>> {
        self.tensors.iter_mut().map(|m| &mut **m)
    }

    /// The matrices in order, with the whole borrow (the names are dropped).
    pub fn into_tensors(self) -> impl Iterator<Item = &'a mut DMatrix<T>> {
        self.tensors.into_iter()
    }
}

impl<T: Scalar> Index<usize> for ParamsMut<'_, T> {
    type Output = DMatrix<T>;
    fn index(&self, i: usize) -> &DMatrix<T> {
        self.tensors[i]
    }
}

impl<T: Scalar> IndexMut<usize> for ParamsMut<'_, T> {
    fn index_mut(&mut self, i: usize) -> &mut DMatrix<T> {
        self.tensors[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_pytorchs() {
        assert_eq!(
            ParamName::new("weight_ih", 0, false).to_string(),
            "weight_ih_l0"
        );
        assert_eq!(
            ParamName::new("bias_hh", 1, true).to_string(),
            "bias_hh_l1_reverse"
        );
        assert_eq!(
            ParamName::new("skip_proj", 12, false).to_string(),
            "skip_proj_l12"
        );
    }

    #[test]
    fn views_borrow_and_copy_on_request() {
        let (mut w, b) = (
            DMatrix::from_element(2, 3, 1.5f64),
            DMatrix::from_element(2, 1, -1.0),
        );
        let mut v = ParamsRef::new();
        v.push(ParamName::new("w", 0, false), &w);
        v.push("b_l0", &b);
        assert_eq!(v.names(), ["w_l0", "b_l0"]);
        assert!(std::ptr::eq(v.get("b_l0").unwrap(), &b));
        assert_eq!(v.scalar_count(), 8);
        assert!((v.norm() - 15.5f64.sqrt()).abs() < 1e-15);
        let (p, z) = (v.to_params(), v.zeros_like());
        assert_eq!((p.names(), z.names()), (v.names(), v.names()));
        assert_eq!((&p[0], z[0].shape(), z.norm()), (&w, (2, 3), 0.0));
        let mut m = ParamsMut::new(vec!["w_l0".into()], vec![&mut w]);
        *m.get_mut("w_l0").unwrap() *= 2.0;
        m[0][(0, 0)] = 0.0;
        assert!(m.get_mut("b_l0").is_none());
        assert_eq!((w[(0, 0)], w[(1, 2)]), (0.0, 3.0));
    }
}
