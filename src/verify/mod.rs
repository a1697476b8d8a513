//! Verification: the public gradient checker (central differences, dual numbers) and the
//! independent oracles the property tests compare every backward pass with.

pub mod gradcheck;
pub mod oracle;
