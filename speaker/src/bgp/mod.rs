//! BGP mode: an in-process BGP speaker (no routing daemon sidecar).
//!
//! Pure cores, thin edges:
//! - [`message`]: typed BGP messages; encoding via zettabgp, our own panic-free decoder.
pub mod message;
