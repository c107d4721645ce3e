//! The ferrolb controller: the Kubernetes reconciler around the pure allocator
//! (`ferrolb-allocator`).
//!
//! - [`leader`]: Lease-based leader election (client-go's semantics), pure `decide` + loop.
//! - [`membership_secret`]: the speakers' shared membership key, created when missing.
//! - [`metrics`]: the controller's Prometheus metrics and readiness.
//! - [`reconciler`]: the loop that owns the allocator, and its writers.
//! - [`service_status`]: an allocation outcome turned into minimal patches.

pub mod leader;
pub mod membership_secret;
pub mod metrics;
pub mod reconciler;
pub mod service_status;
