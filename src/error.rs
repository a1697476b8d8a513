//! The crate's error type: every fallible public function returns `Result<_, BpttError>`.

use std::fmt;

/// What can go wrong when calling into `bptt` with user data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BpttError {
    /// A matrix had the wrong shape. `what` names it (e.g. `"x[3]"`), shapes are `(rows, cols)`.
    Shape {
        what: String,
        expected: (usize, usize),
        got: (usize, usize),
    },
    /// Any other invalid argument, with a sentence saying what and why.
    Invalid(String),
}

impl BpttError {
    pub(crate) fn shape(
        what: impl Into<String>,
        expected: (usize, usize),
        got: (usize, usize),
    ) -> Self {
        BpttError::Shape {
            what: what.into(),
            expected,
            got,
        }
    }
}

impl fmt::Display for BpttError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BpttError::Shape {
                what,
                expected,
                got,
            } => write!(
                f,
                "shape mismatch for {what}: expected {}x{}, got {}x{}",
                expected.0, expected.1, got.0, got.1
            ),
            BpttError::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for BpttError {}

/// Check that `m` is `rows × cols`, naming it in the error.
pub(crate) fn check_shape<T: nalgebra::Scalar>(
    what: impl FnOnce() -> String,
    m: &nalgebra::DMatrix<T>,
    rows: usize,
    cols: usize,
) -> Result<(), BpttError> {
    if m.shape() == (rows, cols) {
        Ok(())
    } else {
        Err(BpttError::shape(what(), (rows, cols), m.shape()))
    }
}
