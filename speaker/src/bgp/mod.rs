//! BGP mode: an in-process BGP speaker (no routing daemon sidecar).
//!
//! Pure cores, thin edges:
//! - [`message`]: typed BGP messages; encoding via zettabgp, our own panic-free decoder.
//! - [`fsm`]: the RFC 4271 session state machine, pure (events in, actions out).
//! - [`update`]: pure UPDATE builder (minimal diffs between advertised tables).
pub mod fsm;
pub mod message;
pub mod update;
