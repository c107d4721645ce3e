//! What ferrolb's controller and speaker share to work in a Kubernetes cluster. Nothing here
//! decides anything; these are the thin edges around the pure cores.
//!
//! - [`client`]: the API client and the deadline every request is made under.
//! - [`condition`]: setting one `metav1.Condition` in a status, the same way everywhere.
//! - [`config_source`]: reflectors for the ferrolb.io kinds and Secrets, giving a `RawConfig`.
//! - [`events`]: `events.k8s.io` Events, bounded and deduplicated.
//! - [`logging`]: log set-up for the binaries.
//! - [`metrics`]: one exposition from several registries; MetalLB's configuration gauges.
//! - [`rbac`]: the permissions each component uses, one list each.
//! - [`serve`]: `/metrics`, `/healthz`, `/readyz`, over TLS ([`tls`]) or not.
//! - [`watch_backoff`]: how fast a failed watch is retried.

pub mod client;
pub mod condition;
pub mod config_source;
pub mod events;
pub mod logging;
pub mod metrics;
pub mod rbac;
pub mod serve;
pub mod tls;
pub mod watch_backoff;
