//! BGP mode: an in-process BGP speaker (no routing daemon sidecar).
//!
//! Pure cores, thin edges:
//! - [`message`]: typed BGP messages, our own encoder and panic-free decoder (RFC 7606
//!   error handling).
//! - [`announce`]: pure; which peers this node uses and the table each gets (and why not).
//! - [`fsm`]: the RFC 4271 session state machine, pure (events in, actions out).
//! - [`update`]: pure UPDATE builder (minimal diffs between advertised tables).
//! - [`socket`]: TCP MD5 (RFC 2385) and TTL socket options.
//! - [`session`]: one session on tokio: timers, connections (reader and writer tasks with
//!   bounded queues), incremental updates, status.
//! - [`listener`]: the node's passive side on port 179, shared by the sessions.
//! - [`speaker`]: one node's sessions, kept in step with config, Services and Node.
pub mod announce;
pub mod fsm;
pub mod listener;
pub mod message;
pub mod session;
pub mod socket;
pub mod speaker;
pub mod unnumbered;
pub mod update;

pub use fsm::{FsmConfig, State};
pub use session::{PeerConfig, Session, SessionStatus};
pub use speaker::NodeSpeaker;
pub use update::{RouteAttrs, Table};
