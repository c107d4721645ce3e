//! The speaker DaemonSet (`ferrolb-speaker`): the announcer (`ferrolb-announce`) fed from a
//! Kubernetes cluster, and what it reports back.
//!
//! - [`run`]: reflectors in, the announcer driver, shutdown.
//! - [`views`]: pure; Nodes, Services and EndpointSlices as the announcer's inputs.
//! - [`report`]: the `ferrolb.io/Announced` condition and Events, written off the main loop.
//! - [`sessions`]: this node's BGP sessions as `BGPSessionState` objects.
//! - [`metrics`]: BGP session metrics per peer.

pub mod metrics;
pub mod report;
pub mod run;
pub mod sessions;
pub mod views;

pub use run::{RunError, Settings, run};
