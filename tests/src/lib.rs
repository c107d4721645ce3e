//! ferrolb integration tests and harnesses.

pub mod bench;
pub mod cluster;
pub mod demo;
pub mod l2bench;
pub mod lab;
