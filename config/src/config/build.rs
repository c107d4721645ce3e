//! [`build`]: the one pure function from raw objects to a validated [`Config`]. It checks every
//! object, collects every error (it does not stop at the first), and never panics.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::error::{ConfigError, ConfigErrors, Kind, ObjectRef, Reason};
use super::model::*;
use super::parse;
use crate::api::{self, LabelSelector, bfdprofile};
use crate::selector::Selector;

/// Hold time when neither holdTime nor keepaliveTime is set (RFC 4271's suggestion).
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(90);
/// First connect-retry interval when connectTime is unset; the speaker backs off from it.
pub const DEFAULT_CONNECT_TIME: Duration = Duration::from_secs(5);

/// Everything the config is made of, as read from the API server or from files.
#[derive(Clone, Debug, Default)]
pub struct RawConfig {
    /// IPAddressPools.
    pub pools: Vec<api::IPAddressPool>,
    /// L2Advertisements.
    pub l2_advertisements: Vec<api::L2Advertisement>,
    /// BGPAdvertisements.
    pub bgp_advertisements: Vec<api::BGPAdvertisement>,
    /// BGPPeers.
    pub peers: Vec<api::BGPPeer>,
    /// BFDProfiles.
    pub bfd_profiles: Vec<api::BFDProfile>,
    /// Communities.
    pub communities: Vec<api::Community>,
    /// Secrets that BGPPeers may refer to.
    pub secrets: Vec<Secret>,
}

/// Validates `raw` and returns the [`Config`], or every error found.
pub fn build(raw: &RawConfig) -> Result<Config, ConfigErrors> {
    let mut b = Builder::default();
    let pools = b.pools(&raw.pools);
    let bfd_profiles = b.bfd_profiles(&raw.bfd_profiles);
    let aliases = b.community_aliases(&raw.communities);
    let peers = b.peers(&raw.peers, &bfd_profiles, &raw.secrets);
    let l2_advertisements = b.l2_advertisements(&raw.l2_advertisements, &pools);
    let bgp_advertisements =
        b.bgp_advertisements(&raw.bgp_advertisements, &pools, &peers, &aliases);
    if b.errors.is_empty() {
        Ok(Config {
            pools,
            l2_advertisements,
            bgp_advertisements,
            peers,
            bfd_profiles,
        })
    } else {
        b.errors
            .sort_by(|x, y| (&x.object, &x.field).cmp(&(&y.object, &y.field)));
        Err(ConfigErrors(b.errors))
    }
}

#[derive(Default)]
struct Builder {
    errors: Vec<ConfigError>,
}

fn object_ref<K: kube::Resource>(kind: Kind, obj: &K) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: obj.meta().namespace.clone(),
        name: obj.meta().name.clone().unwrap_or_default(),
    }
}

impl Builder {
    fn error(&mut self, object: &ObjectRef, field: impl Into<String>, reason: Reason) {
        self.errors.push(ConfigError {
            object: object.clone(),
            field: field.into(),
            reason,
        });
    }

    /// Keeps objects with a name that no earlier object of the kind has; reports the others.
    fn unique_names<'a, K: kube::Resource>(
        &mut self,
        kind: Kind,
        objects: &'a [K],
    ) -> Vec<(ObjectRef, &'a K)> {
        let mut seen = BTreeSet::new();
        let mut kept = Vec::new();
        for obj in objects {
            let r = object_ref(kind, obj);
            if r.name.is_empty() {
                self.error(&r, "metadata.name", Reason::MissingName);
            } else if !seen.insert(r.name.clone()) {
                self.error(&r, "metadata.name", Reason::DuplicateName { kind });
            } else {
                kept.push((r, obj));
            }
        }
        kept
    }

    fn selectors(
        &mut self,
        object: &ObjectRef,
        field: &str,
        selectors: &[LabelSelector],
    ) -> Vec<Selector> {
        let mut compiled = Vec::new();
        for (i, s) in selectors.iter().enumerate() {
            match Selector::compile(s) {
                Ok(s) => compiled.push(s),
                Err(e) => self.error(object, format!("{field}[{i}]"), Reason::InvalidSelector(e)),
            }
        }
        compiled
    }

    fn no_duplicates(
        &mut self,
        object: &ObjectRef,
        field: &str,
        values: &[String],
    ) -> BTreeSet<String> {
        let mut set = BTreeSet::new();
        for (i, v) in values.iter().enumerate() {
            if !set.insert(v.clone()) {
                self.error(
                    object,
                    format!("{field}[{i}]"),
                    Reason::Duplicate { value: v.clone() },
                );
            }
        }
        set
    }

    fn pools(&mut self, raw: &[api::IPAddressPool]) -> BTreeMap<String, Pool> {
        // Every parsed entry of every pool, for the overlap sweep: (range, pool, entry index).
        let mut entries: Vec<(IpRange, ObjectRef, usize)> = Vec::new();
        let mut pools = BTreeMap::new();
        for (r, obj) in self.unique_names(Kind::IPAddressPool, raw) {
            let spec = &obj.spec;
            if spec.addresses.is_empty() {
                self.error(&r, "spec.addresses", Reason::EmptyPool);
            }
            let mut ranges = Vec::new();
            let mut seen = BTreeSet::new();
            for (i, text) in spec.addresses.iter().enumerate() {
                let field = format!("spec.addresses[{i}]");
                match parse::address_entry(text) {
                    Ok(range) if !seen.insert(range) => self.error(
                        &r,
                        field,
                        Reason::Duplicate {
                            value: text.clone(),
                        },
                    ),
                    Ok(range) => {
                        entries.push((range, r.clone(), i));
                        ranges.push(range);
                    }
                    Err(reason) => self.error(&r, field, reason),
                }
            }
            let allocation = spec.service_allocation.as_ref().map(|a| {
                if let Some(p) = a.priority.filter(|p| *p < 0) {
                    self.error(
                        &r,
                        "spec.serviceAllocation.priority",
                        Reason::OutOfRange {
                            value: p.into(),
                            min: 0,
                            max: i32::MAX.into(),
                        },
                    );
                }
                ServiceAllocation {
                    priority: a.priority,
                    namespaces: self.no_duplicates(
                        &r,
                        "spec.serviceAllocation.namespaces",
                        &a.namespaces,
                    ),
                    namespace_selectors: self.selectors(
                        &r,
                        "spec.serviceAllocation.namespaceSelectors",
                        &a.namespace_selectors,
                    ),
                    service_selectors: self.selectors(
                        &r,
                        "spec.serviceAllocation.serviceSelectors",
                        &a.service_selectors,
                    ),
                }
            });
            pools.insert(
                r.name.clone(),
                Pool {
                    name: r.name.clone(),
                    labels: obj.labels().clone(),
                    ranges: merge_adjacent(ranges),
                    auto_assign: spec.auto_assign.unwrap_or(true),
                    avoid_buggy_ips: spec.avoid_buggy_ips.unwrap_or(false),
                    allocation,
                },
            );
        }
        self.overlaps(entries, raw);
        pools
    }

    /// Reports every pair of overlapping entries, within a pool or across pools, with one sweep.
    fn overlaps(
        &mut self,
        mut entries: Vec<(IpRange, ObjectRef, usize)>,
        raw: &[api::IPAddressPool],
    ) {
        entries.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| (&a.1, a.2).cmp(&(&b.1, b.2))));
        let text = |pool: &ObjectRef, i: usize| {
            raw.iter()
                .find(|p| p.metadata.name.as_deref() == Some(pool.name.as_str()))
                .and_then(|p| p.spec.addresses.get(i))
                .cloned()
                .unwrap_or_default()
        };
        // `open` holds the entries that may still overlap later ones (their last address is not yet passed).
        let mut open: Vec<&(IpRange, ObjectRef, usize)> = Vec::new();
        for entry in &entries {
            open.retain(|o| o.0.family() == entry.0.family() && o.0.last() >= entry.0.first());
            for o in &open {
                let reason = Reason::AddressOverlap {
                    entry: text(&entry.1, entry.2),
                    other: o.1.clone(),
                    other_entry: text(&o.1, o.2),
                };
                self.error(&entry.1, format!("spec.addresses[{}]", entry.2), reason);
            }
            open.push(entry);
        }
    }

    fn bfd_profiles(&mut self, raw: &[api::BFDProfile]) -> BTreeMap<String, BfdProfile> {
        use bfdprofile::{defaults, limits};
        let mut profiles = BTreeMap::new();
        for (r, obj) in self.unique_names(Kind::BFDProfile, raw) {
            let s = &obj.spec;
            let mut field =
                |name: &str, value: Option<u32>, (min, max): (u32, u32), default: u32| {
                    let v = value.unwrap_or(default);
                    if !(min..=max).contains(&v) {
                        self.error(
                            &r,
                            format!("spec.{name}"),
                            Reason::OutOfRange {
                                value: v.into(),
                                min: min.into(),
                                max: max.into(),
                            },
                        );
                    }
                    v
                };
            let profile = BfdProfile {
                name: r.name.clone(),
                receive_interval_ms: field(
                    "receiveInterval",
                    s.receive_interval,
                    limits::INTERVAL_MS,
                    defaults::INTERVAL_MS,
                ),
                transmit_interval_ms: field(
                    "transmitInterval",
                    s.transmit_interval,
                    limits::INTERVAL_MS,
                    defaults::INTERVAL_MS,
                ),
                detect_multiplier: field(
                    "detectMultiplier",
                    s.detect_multiplier,
                    limits::DETECT_MULTIPLIER,
                    defaults::DETECT_MULTIPLIER,
                ),
                echo_interval_ms: field(
                    "echoInterval",
                    s.echo_interval,
                    limits::INTERVAL_MS,
                    defaults::ECHO_INTERVAL_MS,
                ),
                minimum_ttl: field(
                    "minimumTtl",
                    s.minimum_ttl,
                    limits::MINIMUM_TTL,
                    defaults::MINIMUM_TTL,
                ),
                echo_mode: s.echo_mode.unwrap_or(false),
                passive_mode: s.passive_mode.unwrap_or(false),
            };
            profiles.insert(r.name.clone(), profile);
        }
        profiles
    }

    fn community_aliases(&mut self, raw: &[api::Community]) -> BTreeMap<String, CommunityValue> {
        let mut aliases = BTreeMap::new();
        for (r, obj) in self.unique_names(Kind::Community, raw) {
            for (i, alias) in obj.spec.communities.iter().enumerate() {
                let field = format!("spec.communities[{i}]");
                if alias.name.is_empty() {
                    self.error(&r, format!("{field}.name"), Reason::MissingName);
                    continue;
                }
                if aliases.contains_key(&alias.name) {
                    self.error(
                        &r,
                        format!("{field}.name"),
                        Reason::Duplicate {
                            value: alias.name.clone(),
                        },
                    );
                    continue;
                }
                match parse::community_literal(&alias.value) {
                    Ok(Some(value)) => {
                        aliases.insert(alias.name.clone(), value);
                    }
                    Ok(None) => self.error(
                        &r,
                        format!("{field}.value"),
                        Reason::InvalidCommunity {
                            value: alias.value.clone(),
                            detail: "an alias value must be 'a:b' or 'large:a:b:c'".into(),
                        },
                    ),
                    Err(reason) => self.error(&r, format!("{field}.value"), reason),
                }
            }
        }
        aliases
    }

    fn peers(
        &mut self,
        raw: &[api::BGPPeer],
        bfd_profiles: &BTreeMap<String, BfdProfile>,
        secrets: &[Secret],
    ) -> BTreeMap<String, Peer> {
        let mut peers: BTreeMap<String, Peer> = BTreeMap::new();
        // (address, port, node selectors as given) -> peer name, to find duplicates.
        let mut sessions: BTreeMap<(IpAddr, u16, String), String> = BTreeMap::new();
        for (r, obj) in self.unique_names(Kind::BGPPeer, raw) {
            let s = &obj.spec;
            let before = self.errors.len();
            for (field, asn) in [("spec.myASN", s.my_asn), ("spec.peerASN", s.peer_asn)] {
                if asn == 0 {
                    self.error(&r, field, Reason::AsnZero);
                }
            }
            let address = self.ip(&r, "spec.peerAddress", &s.peer_address);
            let port = s
                .peer_port
                .unwrap_or(api::bgppeer::DEFAULT_PEER_PORT.into());
            if !(1..=65535).contains(&port) {
                self.error(
                    &r,
                    "spec.peerPort",
                    Reason::OutOfRange {
                        value: port.into(),
                        min: 1,
                        max: 65535,
                    },
                );
            }
            let source_address = s
                .source_address
                .as_ref()
                .and_then(|a| self.ip(&r, "spec.sourceAddress", a));
            if let (Some(src), Some(dst)) = (source_address, address)
                && src.is_ipv4() != dst.is_ipv4()
            {
                self.error(
                    &r,
                    "spec.sourceAddress",
                    Reason::SourceFamilyMismatch {
                        source_address: src.to_string(),
                        peer_address: dst.to_string(),
                    },
                );
            }
            let router_id = s
                .router_id
                .as_ref()
                .and_then(|id| match id.parse::<Ipv4Addr>() {
                    Ok(id) => Some(id),
                    Err(_) => {
                        self.error(
                            &r,
                            "spec.routerID",
                            Reason::InvalidIp {
                                value: id.clone(),
                                expected: "an IPv4 address",
                            },
                        );
                        None
                    }
                });
            let (hold_time, keepalive_time) =
                self.timers(&r, s.hold_time.as_deref(), s.keepalive_time.as_deref());
            let connect_time = match s.connect_time.as_deref() {
                None => DEFAULT_CONNECT_TIME,
                Some(text) => self
                    .whole_seconds(&r, "spec.connectTime", text, 1)
                    .unwrap_or(DEFAULT_CONNECT_TIME),
            };
            let password = self.password(&r, obj, secrets);
            if let Some(name) = &s.bfd_profile
                && !bfd_profiles.contains_key(name)
            {
                self.error(
                    &r,
                    "spec.bfdProfile",
                    Reason::UnknownReference {
                        kind: Kind::BFDProfile,
                        name: name.clone(),
                    },
                );
            }
            let node_selectors = self.selectors(&r, "spec.nodeSelectors", &s.node_selectors);
            if let Some(address) = address {
                let key = (
                    address,
                    port as u16,
                    serde_json::to_string(&s.node_selectors).unwrap_or_default(),
                );
                if let Some(other) = sessions.get(&key) {
                    self.error(
                        &r,
                        "spec.peerAddress",
                        Reason::DuplicatePeer {
                            other: other.clone(),
                            address: address.to_string(),
                            port: port as u16,
                        },
                    );
                } else {
                    sessions.insert(key, r.name.clone());
                }
            }
            if self.errors.len() > before {
                continue;
            }
            let (Some(address), Ok(port)) = (address, u16::try_from(port)) else {
                continue;
            };
            peers.insert(
                r.name.clone(),
                Peer {
                    name: r.name.clone(),
                    my_asn: s.my_asn,
                    peer_asn: s.peer_asn,
                    address,
                    port,
                    source_address,
                    hold_time,
                    keepalive_time,
                    connect_time,
                    router_id,
                    node_selectors,
                    password,
                    bfd_profile: s.bfd_profile.clone(),
                    graceful_restart: s.enable_graceful_restart.unwrap_or(false),
                    ebgp_multihop: s.ebgp_multi_hop.unwrap_or(false),
                },
            );
        }
        peers
    }

    fn ip(&mut self, r: &ObjectRef, field: &str, text: &str) -> Option<IpAddr> {
        match text.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(
                    r,
                    field,
                    Reason::InvalidIp {
                        value: text.to_string(),
                        expected: "an IP address",
                    },
                );
                None
            }
        }
    }

    /// A BGP timer: a duration that is a whole number of seconds from `min_secs` to 65535.
    fn whole_seconds(
        &mut self,
        r: &ObjectRef,
        field: &str,
        text: &str,
        min_secs: u64,
    ) -> Option<Duration> {
        let d = match parse::duration(text) {
            Ok(d) => d,
            Err(reason) => {
                self.error(r, field, reason);
                return None;
            }
        };
        if d.subsec_nanos() != 0 || d.as_secs() < min_secs || d.as_secs() > 65535 {
            self.error(
                r,
                field,
                Reason::TimerNotWholeSeconds {
                    value: text.to_string(),
                    min_secs,
                },
            );
            return None;
        }
        Some(d)
    }

    /// Hold and keepalive, each derived from the other when only one is set (hold = 3 x keepalive).
    fn timers(
        &mut self,
        r: &ObjectRef,
        hold: Option<&str>,
        keepalive: Option<&str>,
    ) -> (Duration, Duration) {
        let hold = hold.map(|t| self.whole_seconds(r, "spec.holdTime", t, 0));
        let keepalive = keepalive.map(|t| self.whole_seconds(r, "spec.keepaliveTime", t, 0));
        let (hold, keepalive) = match (hold, keepalive) {
            (Some(None), _) | (_, Some(None)) => return (DEFAULT_HOLD_TIME, DEFAULT_HOLD_TIME / 3),
            (None, None) => (DEFAULT_HOLD_TIME, DEFAULT_HOLD_TIME / 3),
            (Some(Some(h)), None) => (h, Duration::from_secs(h.as_secs() / 3)),
            (None, Some(Some(k))) => (k.saturating_mul(3), k),
            (Some(Some(h)), Some(Some(k))) => (h, k),
        };
        if !hold.is_zero() && hold < Duration::from_secs(3) {
            self.error(r, "spec.holdTime", Reason::HoldTimeTooShort { hold });
        } else if hold.as_secs() > 65535 {
            self.error(
                r,
                "spec.keepaliveTime",
                Reason::TimerNotWholeSeconds {
                    value: format!("{}s (3 x keepaliveTime)", hold.as_secs()),
                    min_secs: 0,
                },
            );
        }
        if keepalive > hold {
            self.error(
                r,
                "spec.keepaliveTime",
                Reason::KeepaliveExceedsHold { keepalive, hold },
            );
        }
        (hold, keepalive)
    }

    fn password(
        &mut self,
        r: &ObjectRef,
        peer: &api::BGPPeer,
        secrets: &[Secret],
    ) -> Option<String> {
        let s = &peer.spec;
        let password = match (&s.password, &s.password_secret) {
            (Some(_), Some(_)) => {
                self.error(r, "spec.passwordSecret", Reason::PasswordConflict);
                return None;
            }
            (None, None) => return None,
            (Some(p), None) => p.clone(),
            (None, Some(reference)) => {
                let namespace = reference
                    .namespace
                    .clone()
                    .or_else(|| peer.metadata.namespace.clone())
                    .unwrap_or_default();
                let problem = |problem: &str| Reason::BadSecret {
                    namespace: namespace.clone(),
                    name: reference.name.clone(),
                    problem: problem.to_string(),
                };
                let secret = secrets.iter().find(|sec| {
                    sec.metadata.name.as_deref() == Some(reference.name.as_str())
                        && sec.metadata.namespace.clone().unwrap_or_default() == namespace
                });
                let Some(secret) = secret else {
                    self.error(r, "spec.passwordSecret", problem("not found"));
                    return None;
                };
                if secret.type_.as_deref() != Some("kubernetes.io/basic-auth") {
                    let found = secret.type_.clone().unwrap_or_else(|| "Opaque".into());
                    self.error(
                        r,
                        "spec.passwordSecret",
                        problem(&format!(
                            "type is {found:?}, want \"kubernetes.io/basic-auth\""
                        )),
                    );
                    return None;
                }
                let value = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get("password"))
                    .map(|b| String::from_utf8(b.0.clone()).map_err(|_| ()))
                    .or_else(|| {
                        secret
                            .string_data
                            .as_ref()
                            .and_then(|d| d.get("password"))
                            .cloned()
                            .map(Ok)
                    });
                match value {
                    None => {
                        self.error(r, "spec.passwordSecret", problem("has no \"password\" key"));
                        return None;
                    }
                    Some(Err(())) => {
                        self.error(
                            r,
                            "spec.passwordSecret",
                            problem("\"password\" is not UTF-8 text"),
                        );
                        return None;
                    }
                    Some(Ok(p)) => p,
                }
            }
        };
        if !(1..=80).contains(&password.len()) {
            let field = if s.password.is_some() {
                "spec.password"
            } else {
                "spec.passwordSecret"
            };
            self.error(
                r,
                field,
                Reason::PasswordLength {
                    len: password.len(),
                },
            );
            return None;
        }
        Some(password)
    }

    /// Resolves `ipAddressPools` and `ipAddressPoolSelectors`; neither set means every pool.
    fn pool_selection(
        &mut self,
        r: &ObjectRef,
        names: &[String],
        selectors: &[LabelSelector],
        pools: &BTreeMap<String, Pool>,
    ) -> BTreeSet<String> {
        let names = self.no_duplicates(r, "spec.ipAddressPools", names);
        for (i, name) in names.iter().enumerate() {
            if !pools.contains_key(name) {
                self.error(
                    r,
                    format!("spec.ipAddressPools[{i}]"),
                    Reason::UnknownReference {
                        kind: Kind::IPAddressPool,
                        name: name.clone(),
                    },
                );
            }
        }
        let selectors = self.selectors(r, "spec.ipAddressPoolSelectors", selectors);
        if names.is_empty() && selectors.is_empty() {
            return pools.keys().cloned().collect();
        }
        let mut selected: BTreeSet<String> = names
            .into_iter()
            .filter(|n| pools.contains_key(n))
            .collect();
        for pool in pools.values() {
            if selectors.iter().any(|s| s.matches(&pool.labels)) {
                selected.insert(pool.name.clone());
            }
        }
        selected
    }

    fn l2_advertisements(
        &mut self,
        raw: &[api::L2Advertisement],
        pools: &BTreeMap<String, Pool>,
    ) -> Vec<L2Advertisement> {
        let mut ads = Vec::new();
        for (r, obj) in self.unique_names(Kind::L2Advertisement, raw) {
            let s = &obj.spec;
            for (i, name) in s.interfaces.iter().enumerate() {
                if !parse::is_interface_name(name) {
                    self.error(
                        &r,
                        format!("spec.interfaces[{i}]"),
                        Reason::InvalidInterface {
                            value: name.clone(),
                        },
                    );
                }
            }
            ads.push(L2Advertisement {
                name: r.name.clone(),
                pools: self.pool_selection(
                    &r,
                    &s.ip_address_pools,
                    &s.ip_address_pool_selectors,
                    pools,
                ),
                node_selectors: self.selectors(&r, "spec.nodeSelectors", &s.node_selectors),
                interfaces: self.no_duplicates(&r, "spec.interfaces", &s.interfaces),
                service_selectors: self.selectors(
                    &r,
                    "spec.serviceSelectors",
                    &s.service_selectors,
                ),
            });
        }
        ads.sort_by(|a, b| a.name.cmp(&b.name));
        ads
    }

    fn bgp_advertisements(
        &mut self,
        raw: &[api::BGPAdvertisement],
        pools: &BTreeMap<String, Pool>,
        peers: &BTreeMap<String, Peer>,
        aliases: &BTreeMap<String, CommunityValue>,
    ) -> Vec<BgpAdvertisement> {
        let mut ads = Vec::new();
        for (r, obj) in self.unique_names(Kind::BGPAdvertisement, raw) {
            let s = &obj.spec;
            let aggregation_length =
                self.aggregation(&r, "spec.aggregationLength", s.aggregation_length, 32);
            let aggregation_length_v6 =
                self.aggregation(&r, "spec.aggregationLengthV6", s.aggregation_length_v6, 128);
            let selected =
                self.pool_selection(&r, &s.ip_address_pools, &s.ip_address_pool_selectors, pools);
            for pool in selected.iter().filter_map(|name| pools.get(name)) {
                self.aggregation_fits(&r, pool, aggregation_length, aggregation_length_v6);
            }
            let mut communities = BTreeSet::new();
            for (i, text) in s.communities.iter().enumerate() {
                let field = format!("spec.communities[{i}]");
                let value = match parse::community_literal(text) {
                    Ok(Some(v)) => v,
                    Ok(None) => match aliases.get(text) {
                        Some(v) => *v,
                        None => {
                            let reason = Reason::UnknownReference {
                                kind: Kind::Community,
                                name: text.clone(),
                            };
                            self.error(&r, field, reason);
                            continue;
                        }
                    },
                    Err(reason) => {
                        self.error(&r, field, reason);
                        continue;
                    }
                };
                if !communities.insert(value) {
                    self.error(
                        &r,
                        field,
                        Reason::Duplicate {
                            value: text.clone(),
                        },
                    );
                }
            }
            let peer_names = self.no_duplicates(&r, "spec.peers", &s.peers);
            for (i, name) in s.peers.iter().enumerate() {
                if !peers.contains_key(name) && !peer_was_refused(name, &self.errors) {
                    self.error(
                        &r,
                        format!("spec.peers[{i}]"),
                        Reason::UnknownReference {
                            kind: Kind::BGPPeer,
                            name: name.clone(),
                        },
                    );
                }
            }
            ads.push(BgpAdvertisement {
                name: r.name.clone(),
                pools: selected,
                aggregation_length,
                aggregation_length_v6,
                local_pref: s.local_pref,
                communities,
                node_selectors: self.selectors(&r, "spec.nodeSelectors", &s.node_selectors),
                peers: peer_names,
                service_selectors: self.selectors(
                    &r,
                    "spec.serviceSelectors",
                    &s.service_selectors,
                ),
            });
        }
        ads.sort_by(|a, b| a.name.cmp(&b.name));
        self.local_pref_conflicts(&ads, raw);
        ads
    }

    fn aggregation(&mut self, r: &ObjectRef, field: &str, value: Option<i32>, max: u8) -> u8 {
        let v = value.unwrap_or(max.into());
        match u8::try_from(v) {
            Ok(len) if (1..=max).contains(&len) => len,
            _ => {
                self.error(
                    r,
                    field,
                    Reason::OutOfRange {
                        value: v.into(),
                        min: 1,
                        max: max.into(),
                    },
                );
                max
            }
        }
    }

    /// The aggregation length may not be shorter than any prefix of the pool, or the announced
    /// aggregate would cover addresses that the pool does not hold.
    fn aggregation_fits(&mut self, r: &ObjectRef, pool: &Pool, v4: u8, v6: u8) {
        for range in &pool.ranges {
            let length = match range.family() {
                Family::V4 => v4,
                Family::V6 => v6,
            };
            if let Some(prefix) = range.cidrs().into_iter().find(|c| c.prefix_len() > length) {
                let field = match range.family() {
                    Family::V4 => "spec.aggregationLength",
                    Family::V6 => "spec.aggregationLengthV6",
                };
                self.error(
                    r,
                    field,
                    Reason::AggregationTooShort {
                        length,
                        pool: pool.name.clone(),
                        prefix: prefix.to_string(),
                    },
                );
            }
        }
    }

    /// Two advertisements that send one pool's prefixes, aggregated alike, from the same nodes to
    /// the same peers must agree on LOCAL_PREF: a router would otherwise get two values for one route.
    fn local_pref_conflicts(&mut self, ads: &[BgpAdvertisement], raw: &[api::BGPAdvertisement]) {
        let node_selectors = |name: &str| {
            raw.iter()
                .find(|a| a.metadata.name.as_deref() == Some(name))
                .map(|a| serde_json::to_string(&a.spec.node_selectors).unwrap_or_default())
        };
        for (i, a) in ads.iter().enumerate() {
            for b in &ads[..i] {
                let same_route = (a.aggregation_length, a.aggregation_length_v6, &a.peers)
                    == (b.aggregation_length, b.aggregation_length_v6, &b.peers)
                    && node_selectors(&a.name) == node_selectors(&b.name)
                    && a.local_pref != b.local_pref;
                if let Some(pool) = a.pools.intersection(&b.pools).next().filter(|_| same_route) {
                    let object = raw
                        .iter()
                        .find(|x| x.metadata.name.as_deref() == Some(a.name.as_str()))
                        .map(|x| object_ref(Kind::BGPAdvertisement, x));
                    if let Some(object) = object {
                        let reason = Reason::ConflictingLocalPref {
                            other: b.name.clone(),
                            pool: pool.clone(),
                            pref: a.local_pref,
                            other_pref: b.local_pref,
                        };
                        self.error(&object, "spec.localPref", reason);
                    }
                }
            }
        }
    }
}

/// A peer that exists but was refused is not also "unknown": its own errors say why.
fn peer_was_refused(name: &str, errors: &[ConfigError]) -> bool {
    errors
        .iter()
        .any(|e| e.object.kind == Kind::BGPPeer && e.object.name == name)
}

/// Joins ranges that touch (`.0-.4` and `.5-.9` become `.0-.9`), after sorting.
fn merge_adjacent(mut ranges: Vec<IpRange>) -> Vec<IpRange> {
    ranges.sort();
    let mut merged: Vec<IpRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        if let Some(last) = merged.last_mut()
            && last.family() == r.family()
            && to_u128(last.last())
                .checked_add(1)
                .is_some_and(|n| n >= to_u128(r.first()))
        {
            if r.last() > last.last()
                && let Some(joined) = IpRange::new(last.first(), r.last())
            {
                *last = joined;
            }
            continue;
        }
        merged.push(r);
    }
    merged
}
