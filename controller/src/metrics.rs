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

/// A pool, as MetalLB labels it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetallbPoolLabels {
    /// Pool name.
    pub pool: String,
}

/// The series MetalLB's controller exports, under MetalLB's names and labels, so that its
/// dashboards and alerts work unchanged (README "Metrics" lists them side by side with ours).
#[derive(Default)]
struct Metallb {
    registry: Registry,
    addresses_total: Family<MetallbPoolLabels, Gauge<i64, AtomicI64>>,
    addresses_in_use_total: Family<MetallbPoolLabels, Gauge<i64, AtomicI64>>,
    ipv4_addresses_total: Family<MetallbPoolLabels, Gauge<i64, AtomicI64>>,
    ipv4_addresses_in_use_total: Family<MetallbPoolLabels, Gauge<i64, AtomicI64>>,
    ipv6_addresses_total: Family<MetallbPoolLabels, Gauge<i64, AtomicI64>>,
    ipv6_addresses_in_use_total: Family<MetallbPoolLabels, Gauge<i64, AtomicI64>>,
    config: ferrolb_kubernetes::metrics::MetallbConfigGauges,
}

impl Metallb {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("metallb");
        let m = Metallb::default();
        let allocator = registry.sub_registry_with_prefix("allocator");
        for (name, help, family) in [
            (
                "addresses_total",
                "Number of usable IP addresses, per pool",
                &m.addresses_total,
            ),
            (
                "addresses_in_use_total",
                "Number of IP addresses in use, per pool",
                &m.addresses_in_use_total,
            ),
            (
                "ipv4_addresses_total",
                "Number of usable IPv4 addresses, per pool",
                &m.ipv4_addresses_total,
            ),
            (
                "ipv4_addresses_in_use_total",
                "Number of IPv4 addresses in use, per pool",
                &m.ipv4_addresses_in_use_total,
            ),
            (
                "ipv6_addresses_total",
                "Number of usable IPv6 addresses, per pool",
                &m.ipv6_addresses_total,
            ),
            (
                "ipv6_addresses_in_use_total",
                "Number of IPv6 addresses in use, per pool",
                &m.ipv6_addresses_in_use_total,
            ),
        ] {
            allocator.register(name, help, family.clone());
        }
        m.config.register(&mut registry);
        Metallb { registry, ..m }
    }
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
    metallb: Metallb,
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
            metallb: Metallb::new(),
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

    /// The metrics in the Prometheus text format: ours, then MetalLB's names.
    pub fn encode(&self) -> String {
        ferrolb_kubernetes::metrics::encode(&[&self.registry, &self.metallb.registry])
    }

    /// A pool's size and use, per family (ours) and in MetalLB's series.
    pub fn set_pool(&self, pool: &str, counters: &ferrolb_allocator::PoolCounters) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let v4_total = counters.assigned_v4.saturating_add(counters.available_v4);
        let v6_total = counters.assigned_v6.saturating_add(counters.available_v6);
        for (family, total, used) in [
            ("ipv4", v4_total, counters.assigned_v4),
            ("ipv6", v6_total, counters.assigned_v6),
        ] {
            let labels = PoolLabels {
                pool: pool.to_string(),
                family: family.into(),
            };
            self.pool_addresses.get_or_create(&labels).set(clamp(total));
            self.pool_addresses_in_use
                .get_or_create(&labels)
                .set(clamp(used));
        }
        let m = &self.metallb;
        let l = MetallbPoolLabels {
            pool: pool.to_string(),
        };
        let used = counters.assigned_v4.saturating_add(counters.assigned_v6);
        m.addresses_total
            .get_or_create(&l)
            .set(clamp(v4_total.saturating_add(v6_total)));
        m.addresses_in_use_total.get_or_create(&l).set(clamp(used));
        m.ipv4_addresses_total
            .get_or_create(&l)
            .set(clamp(v4_total));
        m.ipv4_addresses_in_use_total
            .get_or_create(&l)
            .set(clamp(counters.assigned_v4));
        m.ipv6_addresses_total
            .get_or_create(&l)
            .set(clamp(v6_total));
        m.ipv6_addresses_in_use_total
            .get_or_create(&l)
            .set(clamp(counters.assigned_v6));
    }

    /// The configuration's state after a build: how many objects are refused.
    pub fn set_config(&self, refused: usize) {
        self.config_valid.set(i64::from(refused == 0));
        self.config_objects_refused
            .set(i64::try_from(refused).unwrap_or(i64::MAX));
        self.metallb.config.set(refused);
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
        m.set_pool(
            "lan",
            &ferrolb_allocator::PoolCounters {
                assigned_v4: 3,
                available_v4: 13,
                assigned_v6: 1,
                available_v6: 9,
            },
        );
        m.set_config(2);
        let text = m.encode();
        assert!(
            text.contains("ferrolb_controller_allocations_total 1"),
            "{text}"
        );
        for line in [
            "ferrolb_controller_pool_addresses_in_use{pool=\"lan\",family=\"ipv4\"} 3",
            "ferrolb_controller_config_objects_refused 2",
            "metallb_allocator_addresses_total{pool=\"lan\"} 26",
            "metallb_allocator_addresses_in_use_total{pool=\"lan\"} 4",
            "metallb_allocator_ipv4_addresses_total{pool=\"lan\"} 16",
            "metallb_allocator_ipv6_addresses_in_use_total{pool=\"lan\"} 1",
            "metallb_k8s_client_config_loaded_bool 1",
            "metallb_k8s_client_config_stale_bool 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
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
