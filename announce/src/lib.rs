//! What a node does to announce LoadBalancer addresses, with no Kubernetes in it: shared by the
//! speaker DaemonSet (`ferrolb-speaker`) and standalone hosts (`ferrolb`).
//!
//! - [`membership`]: SWIM liveness between speakers over authenticated UDP.
//! - [`election`]: pure; which node announces each address in layer 2, and why others do not.
//! - [`l2`]: layer 2 mode: ARP/NDP codecs, interface choice, the raw-socket responder, the agent.
//! - [`bfd`]: BFD for BGP peers with a `bfdProfile`: packets, the state machine, the sessions.
//! - [`bgp`]: BGP mode: messages, the session state machine, sessions, what each peer is sent.
//! - [`status`]: pure; who announces a Service cluster-wide, or why nobody does (the
//!   Announced condition, `ferrolb explain`).
//! - [`views`]: pure; Kubernetes Nodes, Services and EndpointSlices as the announcer's inputs.
//! - [`driver`]: the one announcer both modes feed: the L2 agent and the BGP sessions, given
//!   new inputs as they change.

pub mod bfd;
pub mod bgp;
pub mod driver;
pub mod election;
pub mod l2;
pub mod membership;
pub mod status;
pub mod views;
