//! ferrolb's Kubernetes API (`ferrolb.io/v1beta1`), CRD generation, and the validated config model.
//!
//! - [`api`]: the custom resource types, as the API server stores them.
//! - [`config`]: one pure function from the raw objects to a validated [`config::Config`].
//! - [`selector`]: Kubernetes label selectors, compiled once and matched many times.

pub mod api;
pub mod config;
pub mod crdgen;
pub mod selector;
