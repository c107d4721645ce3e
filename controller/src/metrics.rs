//! The controller's Prometheus metrics and readiness, served by [`ferrolb_kubernetes::serve`].

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Pool and family.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// Pool name.
    pub pool: String,
    /// `ipv4` or `ipv6`.
    pub family: String,
}

/// A refusal reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The reason's name (as in the Service condition).
    pub reason: String,
}

/// A Kubernetes API operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// What was attempted (`patch_status`, `patch_annotations`, `publish_event`, ...).
    pub operation: String,
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    /// Addresses a pool holds (saturating), per family.
    pub pool_addresses: Family<PoolLabels, Gauge<i64, AtomicI64>>,
    /// Addresses of a pool in use, per family.
    pub pool_addresses_in_use: Family<PoolLabels, Gauge<i64, AtomicI64>>,
    /// Successful allocations.
    pub allocations: Counter,
    /// Refused allocations, by reason.
    pub allocation_failures: Family<ReasonLabels, Counter>,
    /// Time from a change arriving to its status being decided.
    pub reconcile_seconds: Histogram,
    /// Failed API calls, by operation.
    pub api_errors: Family<OperationLabels, Counter>,
    /// 1 when the current config objects are valid, 0 when the last good config is in use.
    pub config_valid: Gauge,
    /// Config objects refused (each on its own; the rest is in force).
    pub config_objects_refused: Gauge,
    /// 1 on the replica that holds the lease.
    pub leader: Gauge,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `ferrolb_controller` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ferrolb_controller");
        let m = Self {
            pool_addresses: Family::default(),
            pool_addresses_in_use: Family::default(),
            allocations: Counter::default(),
            allocation_failures: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            api_errors: Family::default(),
            config_valid: Gauge::default(),
            config_objects_refused: Gauge::default(),
            leader: Gauge::default(),
            ready: AtomicBool::new(false),
            registry: Registry::default(),
        };
        registry.register(
            "pool_addresses",
            "Addresses in a pool, per family (saturating)",
            m.pool_addresses.clone(),
        );
        registry.register(
            "pool_addresses_in_use",
            "Addresses of a pool held by Services",
            m.pool_addresses_in_use.clone(),
        );
        registry.register("allocations", "IP assignments made", m.allocations.clone());
        registry.register(
            "allocation_failures",
            "Allocations refused, by reason",
            m.allocation_failures.clone(),
        );
        registry.register(
            "reconcile_seconds",
            "Time to decide a Service's addresses",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "api_errors",
            "Kubernetes API calls that failed, by operation",
            m.api_errors.clone(),
        );
        registry.register(
            "config_valid",
            "1 when every configuration object is accepted",
            m.config_valid.clone(),
        );
        registry.register(
            "config_objects_refused",
            "Configuration objects refused, each on its own (the others are in force)",
            m.config_objects_refused.clone(),
        );
        registry.register(
            "leader",
            "1 on the replica that holds the leader lease",
            m.leader.clone(),
        );
        Self { registry, ..m }
    }

    /// Marks the controller ready (caches synced) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the controller is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a failed API call.
    pub fn api_error(&self, operation: &str) {
        self.api_errors
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .inc();
    }
}

impl ferrolb_kubernetes::serve::Exporter for Metrics {
    fn encode(&self) -> String {
        Metrics::encode(self)
    }

    fn is_ready(&self) -> bool {
        Metrics::is_ready(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_registered_metrics() {
        use ferrolb_kubernetes::serve::Exporter;
        let m = Metrics::new();
        m.allocations.inc();
        m.pool_addresses
            .get_or_create(&PoolLabels {
                pool: "default".into(),
                family: "ipv4".into(),
            })
            .set(256);
        let text = m.encode();
        assert!(
            text.contains("ferrolb_controller_allocations_total 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "ferrolb_controller_pool_addresses{pool=\"default\",family=\"ipv4\"} 256"
            ),
            "{text}"
        );
        assert!(!m.is_ready());
        m.set_ready(true);
        assert!(Exporter::is_ready(&m));
    }
}
