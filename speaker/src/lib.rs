//! The ferrolb speaker: announcer election, ARP/NDP responders (layer 2 mode), membership, and
//! BGP mode.
//!
//! - [`bgp`]: BGP mode (messages, sessions).
//! - [`election`]: pure; which node announces each LoadBalancer IP, and why others do not.
//! - [`l2`]: layer 2 mode: ARP/NDP codecs, interface choice, and the raw-socket responder.
//! - [`membership`]: SWIM liveness between speakers over authenticated UDP.
pub use ferrolb_config as crds;

pub mod bgp;
pub mod election;
pub mod kubernetes;
pub mod l2;
pub mod membership;
