//! ferrolb integration tests and harnesses.

pub mod bench;
pub mod bgp_host;
pub mod bgp_session;
pub mod cluster;
pub mod demo;
pub mod l2bench;
pub mod lab;
pub mod scripted_peer;
