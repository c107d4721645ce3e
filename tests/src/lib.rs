//! ferrolb integration tests and harnesses.

pub mod demo;
pub mod lab;
