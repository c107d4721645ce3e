//! ferrolb integration tests and harnesses.

pub mod cluster;
pub mod demo;
pub mod lab;
