//! The speaker DaemonSet (`ferrolb-speaker`): the announcer (`ferrolb-announce`) fed from a
//! Kubernetes cluster, and what it reports back.
//!
//! - [`run`]: reflectors in, the announcer driver, shutdown.
//! - [`report`]: the `ferrolb.io/Announced` condition (`ferrolb_announce::status`) and
//!   Events, written off the main loop.
//! - [`sessions`]: this node's BGP sessions as `BGPSessionState` objects.
//! - [`metrics`]: BGP session metrics per peer.

pub mod metrics;
pub mod report;
pub mod run;
pub mod sessions;

pub use run::{RunError, Settings, run};
