//! ferrolb integration tests and harnesses.

pub mod lab;
