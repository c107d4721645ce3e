//! The ferrolb controller: the IP allocator and the Kubernetes reconciler around it.
//!
//! - [`annotations`]: the Service annotations read (with MetalLB aliases) and written.
//! - [`leader`]: Lease-based leader election.
//! - [`metrics`]: Prometheus metrics and health endpoints.
//! - [`rbac`]: the permissions the controller uses.
//! - [`watch_backoff`]: how fast a failed watch is retried (controller and speaker).

pub mod annotations;
pub mod config_source;
pub mod events;
pub mod leader;
pub mod membership_secret;
pub mod metrics;
pub mod rbac;
pub mod reconciler;
pub mod service_request;
pub mod service_status;
pub mod tls;
pub mod watch_backoff;
