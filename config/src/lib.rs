//! ferrolb's configuration: the Kubernetes API it is written in (`ferrolb.io/v1beta1`), the CRDs
//! generated from it, and the validated config model every part of ferrolb runs on.
//!
//! - [`api`]: the custom resource types, as the API server stores them.
//! - [`annotations`]: the Service annotations ferrolb reads (with MetalLB's as aliases) and writes.
//! - [`build`]: one pure function from the raw objects to a validated [`Config`], or every problem
//!   found, each naming its object, field and reason ([`ConfigErrors`]).
//! - [`crdgen`]: the CRD YAML generated from [`api`].
//! - [`migrate`]: MetalLB's objects as ferrolb.io objects, with a report of what does not carry.
//! - [`service`]: which Services are ferrolb's.
//! - [`selector`]: Kubernetes label selectors, compiled once and matched many times.

pub mod annotations;
pub mod api;
mod config;
pub mod crdgen;
pub mod migrate;
pub mod selector;
pub mod service;

pub use config::*;
