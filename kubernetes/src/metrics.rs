//! What the controller's and the speaker's metrics share: one exposition from several
//! registries (ours and MetalLB's names), and MetalLB's two configuration gauges, which both of
//! MetalLB's components export.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `registries` as one Prometheus text exposition, with the single `# EOF` OpenMetrics allows
/// (empty if one cannot be encoded).
pub fn encode(registries: &[&Registry]) -> String {
    use prometheus_client::encoding::text::{encode_eof, encode_registry};
    let mut out = String::new();
    let mut encoded = Ok(());
    for r in registries {
        encoded = encoded.and_then(|()| encode_registry(&mut out, r));
    }
    if encoded.and_then(|()| encode_eof(&mut out)).is_err() {
        out.clear();
    }
    out
}

/// MetalLB's `metallb_k8s_client_config_loaded_bool` and `_config_stale_bool`.
#[derive(Debug, Default)]
pub struct MetallbConfigGauges {
    loaded: Gauge,
    stale: Gauge,
}

impl MetallbConfigGauges {
    /// Registers both in `metallb` (the registry with the `metallb` prefix).
    pub fn register(&self, metallb: &mut Registry) {
        let client = metallb.sub_registry_with_prefix("k8s_client");
        client.register(
            "config_loaded_bool",
            "1 if the configuration was loaded at least once",
            self.loaded.clone(),
        );
        client.register(
            "config_stale_bool",
            "1 if some configuration object is refused (its last accepted version, or nothing, is in force)",
            self.stale.clone(),
        );
    }

    /// After a configuration was built with `refused` objects refused.
    pub fn set(&self, refused: usize) {
        self.loaded.set(1);
        self.stale.set(i64::from(refused > 0));
    }
}
