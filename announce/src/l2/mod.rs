//! Layer 2 mode: answering ARP and NDP for owned LoadBalancer IPs from user space.
//!
//! - [`packet`]: pure codecs (parse requests, build replies and announcements).
//! - [`iface`]: pure rule for which interfaces may answer.
//! - [`links`]: the namespace's links over rtnetlink (thread-namespace correct).
//! - [`socket`]: a filtered AF_PACKET socket per interface and protocol.
//! - [`responder`]: per-interface threads answering for the owned set, with takeover bursts.
//! - [`agent`]: membership changes in, election, responder out (standalone mode).

pub mod agent;
pub mod flags;
pub mod iface;
pub mod links;
pub mod packet;
pub mod responder;
pub mod socket;

pub use responder::{Applied, Burst, Responder, ResponderConfig, ResponderError, Stats};
