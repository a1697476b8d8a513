//! Numerics the experiments rely on: random-matrix ensembles and spectral radii, a
//! nonsymmetric Hessenberg QR eigenvalue solver, Lyapunov spectra, and the mean-field theory of
//! random vanilla RNNs (Gauss–Hermite quadrature, the variance map, χ, predicted gradient norms).

pub mod hqr;
pub mod lyapunov;
pub mod meanfield;
pub mod spectral;
