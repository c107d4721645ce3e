//! Service annotations ferrolb reads and writes. MetalLB's keys (`metallb.io/` and the older
//! `metallb.universe.tf/`) are read as aliases, so MetalLB users' Services work unchanged;
//! when both are present, ferrolb's own key wins.

use std::collections::BTreeMap;

/// Prefixes, most authoritative first.
pub const PREFIXES: [&str; 3] = ["ferrolb.io/", "metallb.io/", "metallb.universe.tf/"];

/// Pick the pool to allocate from.
pub const ADDRESS_POOL: &str = "address-pool";
/// Requested addresses, comma-separated, at most one per family.
pub const LOAD_BALANCER_IPS: &str = "loadBalancerIPs";
/// Sharing key: Services with equal keys may share an IP.
pub const ALLOW_SHARED_IP: &str = "allow-shared-ip";
/// Written by the controller: the pool the Service's addresses came from.
pub const IP_ALLOCATED_FROM_POOL: &str = "ferrolb.io/ip-allocated-from-pool";

/// A value read from an annotation, with the key it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found<'a> {
    /// The full key that held the value.
    pub key: String,
    /// The value.
    pub value: &'a str,
}

impl Found<'_> {
    /// Whether the value came from a MetalLB alias rather than ferrolb's own key.
    pub fn is_alias(&self) -> bool {
        !self.key.starts_with(PREFIXES[0])
    }
}

/// Looks `name` up under every prefix; ferrolb's key wins over the aliases.
pub fn lookup<'a>(annotations: &'a BTreeMap<String, String>, name: &str) -> Option<Found<'a>> {
    PREFIXES.iter().find_map(|prefix| {
        let key = format!("{prefix}{name}");
        annotations.get(&key).map(|value| Found {
            key,
            value: value.as_str(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_key_wins_over_aliases() {
        let mut a = BTreeMap::new();
        a.insert(
            "metallb.universe.tf/address-pool".to_string(),
            "old".to_string(),
        );
        assert_eq!(lookup(&a, ADDRESS_POOL).map(|f| f.value), Some("old"));
        a.insert("metallb.io/address-pool".to_string(), "metallb".to_string());
        assert_eq!(lookup(&a, ADDRESS_POOL).map(|f| f.value), Some("metallb"));
        assert!(lookup(&a, ADDRESS_POOL).is_some_and(|f| f.is_alias()));
        a.insert("ferrolb.io/address-pool".to_string(), "ours".to_string());
        let found = lookup(&a, ADDRESS_POOL).unwrap();
        assert_eq!((found.value, found.is_alias()), ("ours", false));
        assert_eq!(lookup(&a, ALLOW_SHARED_IP), None);
    }
}
