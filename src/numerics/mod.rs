//! Numerics the experiments rely on: random-matrix ensembles and spectral radii, a
//! nonsymmetric Hessenberg QR eigenvalue solver.

pub mod hqr;
pub mod spectral;
