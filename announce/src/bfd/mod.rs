//! BFD (RFC 5880, single hop RFC 5881, multihop RFC 5883) for the BGP sessions whose BGPPeer
//! names a `bfdProfile`: a dead path is found in a few hundred milliseconds instead of a hold
//! time, and the BGP session is taken down at once.
//!
//! Pure cores, thin edge:
//! - [`packet`]: Control packets, our own encoder and panic-free decoder (no authentication:
//!   the profile has none to configure).
//! - [`fsm`]: the session state machine, asynchronous mode, events in and actions out.
//! - [`engine`]: the node's sessions on tokio: sockets (GTSM), timers with jitter, demultiplexing.
pub mod engine;
pub mod fsm;
pub mod packet;

pub use engine::{Bfd, BfdSettings, BfdStatus};
pub use fsm::Timers;
pub use packet::State;
