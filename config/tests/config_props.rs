//! Property tests: the config model never panics on any input, and what it accepts keeps its promises.

use std::collections::BTreeMap;

use ferrolb_config::api::{self, BGPPeerSpec, IPAddressPoolSpec, ServiceAllocation};
use ferrolb_config::{Config, Kind, LastGood, RawConfig, Reason, build};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use proptest::prelude::*;

fn meta(name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name).filter(|n| !n.is_empty()),
        namespace: Some("ferrolb-system".into()),
        labels: Some(BTreeMap::from([("zone".into(), "a".into())])),
        ..Default::default()
    }
}

/// Names from a small alphabet so that references and duplicates happen often.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![1 => Just(String::new()), 2 => "[ab]", 12 => "[a-h][1-9]"]
}

/// Address entries: mostly plausible (small 10.x and fd00:: space, so overlaps are frequent), some garbage.
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u8..40, 0u8..=255, 20u8..=33).prop_map(|(b, c, len)| format!("10.{b}.{c}.0/{len}")),
        4 => (0u8..40, 0u8..=255, 0u8..=255).prop_map(|(b, x, y)| format!("10.{b}.0.{x}-10.{b}.0.{y}")),
        4 => (0u16..40, 100u8..=130).prop_map(|(b, len)| format!("fd00:{b}::/{len}")),
        3 => (0u16..40, 0u16..999, 0u16..999).prop_map(|(b, x, y)| format!("fd00:{b}::{x:x} - fd00:{b}::{y:x}")),
        1 => Just("10.0.0.1-fd00::1".to_string()),
        1 => ".{0,24}",
    ]
}

fn duration() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        8 => (0u32..200).prop_map(|s| format!("{s}s")),
        2 => (0u32..5000).prop_map(|s| format!("{s}ms")),
        1 => Just("1m30s".to_string()),
        1 => ".{0,8}",
    ])
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    (
        "[a-z]{0,3}",
        prop_oneof![4 => Just("In"), 4 => Just("NotIn"), 1 => Just("Exists"), 1 => Just("DoesNotExist"), 1 => Just("Bogus")],
        proptest::collection::vec("[a-z]{1,2}", 0..3),
    )
        .prop_map(|(key, op, values)| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key,
                operator: op.to_string(),
                values: Some(values),
            }]),
        })
}

fn pool() -> impl Strategy<Value = api::IPAddressPool> {
    (
        name(),
        proptest::collection::vec(address(), 0..4),
        proptest::option::of(any::<bool>()),
        proptest::option::of((
            proptest::option::of(-2i32..5),
            proptest::collection::vec("[xy]", 0..3),
            proptest::collection::vec(selector(), 0..2),
        )),
    )
        .prop_map(|(n, addresses, auto, alloc)| api::IPAddressPool {
            metadata: meta(n),
            spec: IPAddressPoolSpec {
                addresses,
                auto_assign: auto,
                avoid_buggy_ips: auto.map(|a| !a),
                service_allocation: alloc.map(|(priority, namespaces, sel)| ServiceAllocation {
                    priority,
                    namespaces,
                    namespace_selectors: sel.clone(),
                    service_selectors: sel,
                }),
            },
            status: None,
        })
}

fn peer() -> impl Strategy<Value = api::BGPPeer> {
    (
        name(),
        (prop_oneof![1 => Just(0u32), 20 => 1u32..], prop_oneof![1 => Just(0u32), 20 => 1u32..]),
        prop_oneof![8 => (1u8..250).prop_map(|x| format!("10.0.0.{x}")), 4 => (1u16..999).prop_map(|x| format!("fd00::{x:x}")), 1 => ".{0,10}"],
        proptest::option::of(prop_oneof![8 => 1u32..65536, 1 => 0u32..70000]),
        (duration(), duration(), duration()),
        proptest::option::of(prop_oneof![Just("10.0.0.2".to_string()), Just("fd00::2".to_string()), ".{0,6}"]),
        (proptest::option::weighted(0.3, ".{0,90}"), proptest::option::weighted(0.2, name()), proptest::option::weighted(0.2, name())),
    )
        .prop_map(|(n, (my, peer), address, port, (hold, keepalive, connect), source, (password, secret, bfd))| api::BGPPeer {
            status: None,
            metadata: meta(n),
            spec: BGPPeerSpec {
                my_asn: my,
                peer_asn: Some(peer),
                peer_address: Some(address),
                peer_port: port,
                source_address: source.clone(),
                hold_time: hold,
                keepalive_time: keepalive,
                connect_time: connect,
                router_id: source,
                password,
                password_secret: secret.map(|name| api::SecretReference { name, namespace: None }),
                bfd_profile: bfd,
                ..Default::default()
            },
        })
}

fn raw() -> impl Strategy<Value = RawConfig> {
    let l2 = (
        name(),
        proptest::collection::vec(name(), 0..2),
        proptest::collection::vec(prop_oneof![8 => "eth[0-3]", 1 => ".{0,17}"], 0..3),
    )
        .prop_map(|(n, pools, interfaces)| api::L2Advertisement {
            status: None,
            metadata: meta(n),
            spec: api::L2AdvertisementSpec {
                ip_address_pools: pools,
                interfaces,
                ..Default::default()
            },
        });
    let bgp = (
        name(),
        proptest::collection::vec(name(), 0..2),
        (proptest::option::of(prop_oneof![8 => 24i32..=32, 1 => -1i32..140]), proptest::option::of(prop_oneof![8 => 100i32..=128, 1 => -1i32..140])),
        proptest::collection::vec(prop_oneof![2 => name(), 4 => "[0-9]{1,5}:[0-9]{1,5}", 2 => "large:[0-9]{1,3}:[0-9]{1,3}:[0-9]{1,11}", 1 => ".{0,10}"], 0..3),
        proptest::collection::vec(name(), 0..2),
        proptest::option::of(0u32..3),
    )
        .prop_map(|(n, pools, (v4, v6), communities, peers, local_pref)| api::BGPAdvertisement {
            status: None,
            metadata: meta(n),
            spec: api::BGPAdvertisementSpec {
                aggregation_length: v4,
                aggregation_length_v6: v6,
                local_pref,
                communities,
                ip_address_pools: pools,
                peers,
                ..Default::default()
            },
        });
    let community = (
        name(),
        proptest::collection::vec(
            (
                name(),
                prop_oneof![4 => "[0-9]{1,5}:[0-9]{1,5}", 1 => ".{0,12}"],
            ),
            0..3,
        ),
    )
        .prop_map(|(n, aliases)| api::Community {
            status: None,
            metadata: meta(n),
            spec: api::CommunitySpec {
                communities: aliases
                    .into_iter()
                    .map(|(name, value)| api::CommunityAlias { name, value })
                    .collect(),
            },
        });
    let bfd = (
        name(),
        proptest::option::of(prop_oneof![8 => 10u32..=60000, 1 => 0u32..70000]),
        proptest::option::of(prop_oneof![8 => 2u32..=254, 1 => 0u32..300]),
    )
        .prop_map(|(n, interval, mult)| api::BFDProfile {
            status: None,
            metadata: meta(n),
            spec: api::BFDProfileSpec {
                receive_interval: interval,
                detect_multiplier: mult,
                minimum_ttl: mult,
                ..Default::default()
            },
        });
    let secret = (
        name(),
        prop_oneof![Just("kubernetes.io/basic-auth"), Just("Opaque")],
        proptest::collection::vec(any::<u8>(), 0..90),
    )
        .prop_map(|(n, t, bytes)| Secret {
            metadata: meta(n),
            type_: Some(t.to_string()),
            data: Some(BTreeMap::from([(
                "password".to_string(),
                ByteString(bytes),
            )])),
            ..Default::default()
        });
    (
        proptest::collection::vec(pool(), 0..5),
        proptest::collection::vec(l2, 0..2),
        proptest::collection::vec(bgp, 0..2),
        proptest::collection::vec(peer(), 0..3),
        proptest::collection::vec(bfd, 0..2),
        proptest::collection::vec(community, 0..2),
        proptest::collection::vec(secret, 0..2),
    )
        .prop_map(
            |(pools, l2, bgp, peers, bfd, communities, secrets)| RawConfig {
                pools,
                l2_advertisements: l2,
                bgp_advertisements: bgp,
                peers,
                bfd_profiles: bfd,
                communities,
                secrets,
            },
        )
}

/// What an accepted config promises to every consumer.
fn check_promises(config: &Config) {
    let mut ranges: Vec<_> = config
        .pools
        .values()
        .flat_map(|p| p.ranges.iter().map(move |r| (*r, &p.name)))
        .collect();
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(
            !w[0].0.overlaps(&w[1].0),
            "accepted overlapping ranges {:?}",
            w
        );
    }
    for pool in config.pools.values() {
        assert!(!pool.ranges.is_empty(), "accepted empty pool {}", pool.name);
    }
    for ad in &config.l2_advertisements {
        assert!(ad.pools.iter().all(|p| config.pools.contains_key(p)));
    }
    for ad in &config.bgp_advertisements {
        assert!(ad.pools.iter().all(|p| config.pools.contains_key(p)));
        // `ad.peers` may name peers that do not exist (yet): they match nothing (issue 13,
        // class 2); `dangling_references_match_nothing_and_are_told` covers that.
        assert!(
            (1..=32).contains(&ad.aggregation_length)
                && (1..=128).contains(&ad.aggregation_length_v6)
        );
    }
    for peer in config.peers.values() {
        assert!(peer.my_asn != 0 && peer.peer_asn != ferrolb_config::PeerAsn::Is(0));
        assert!(peer.hold_time.is_zero() || peer.hold_time.as_secs() >= 3);
        assert!(peer.keepalive_time <= peer.hold_time);
        assert!(
            peer.bfd_profile
                .as_ref()
                .is_none_or(|b| config.bfd_profiles.contains_key(b))
        );
        assert!(
            peer.password
                .as_ref()
                .is_none_or(|p| (1..=80).contains(&p.len()))
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_keeps_its_promises(raw in raw()) {
        let first = build(&raw);
        if let Ok(config) = &first {
            check_promises(config);
        }
        if let Err(errors) = &first {
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                prop_assert!(!e.to_string().is_empty());
            }
        }
        // Deterministic: the same objects give the same answer.
        prop_assert_eq!(first, build(&raw));
    }

    #[test]
    fn object_order_does_not_matter_for_valid_configs(raw in raw()) {
        if let Ok(config) = build(&raw) {
            let mut reversed = raw.clone();
            reversed.pools.reverse();
            reversed.peers.reverse();
            reversed.l2_advertisements.reverse();
            reversed.bgp_advertisements.reverse();
            prop_assert_eq!(Ok(config), build(&reversed));
        }
    }
}

/// A config that is valid by construction: `pools` disjoint pools, advertisements and peers
/// that refer to them, a BFD profile, a community alias and a Secret.
fn valid_raw(pools: usize, peers: usize, ads: usize) -> RawConfig {
    let named = |n: String| meta(n);
    let mut raw = RawConfig::default();
    for i in 0..pools {
        raw.pools.push(api::IPAddressPool {
            metadata: named(format!("pool{i}")),
            spec: IPAddressPoolSpec {
                addresses: vec![
                    format!("10.{i}.0.0/24"),
                    format!("10.{i}.1.1-10.{i}.1.9"),
                    format!("fd00:{i}::/120"),
                ],
                ..Default::default()
            },
            status: None,
        });
    }
    raw.bfd_profiles.push(api::BFDProfile {
        status: None,
        metadata: named("fast".into()),
        spec: Default::default(),
    });
    raw.communities.push(api::Community {
        status: None,
        metadata: named("c".into()),
        spec: api::CommunitySpec {
            communities: vec![api::CommunityAlias {
                name: "edge".into(),
                value: "65000:1".into(),
            }],
        },
    });
    raw.secrets.push(Secret {
        metadata: named("bgp".into()),
        type_: Some("kubernetes.io/basic-auth".into()),
        data: Some(BTreeMap::from([(
            "password".to_string(),
            ByteString(b"s3cret".to_vec()),
        )])),
        ..Default::default()
    });
    for i in 0..peers {
        raw.peers.push(api::BGPPeer {
            status: None,
            metadata: named(format!("peer{i}")),
            spec: BGPPeerSpec {
                my_asn: 64512,
                peer_asn: Some(64513 + i as u32),
                peer_address: Some(format!("10.200.0.{}", i + 1)),
                hold_time: Some("9s".into()),
                bfd_profile: Some("fast".into()),
                password_secret: (i % 2 == 0).then(|| api::SecretReference {
                    name: "bgp".into(),
                    namespace: None,
                }),
                ..Default::default()
            },
        });
    }
    for i in 0..ads {
        raw.bgp_advertisements.push(api::BGPAdvertisement {
            status: None,
            metadata: named(format!("bgp{i}")),
            spec: api::BGPAdvertisementSpec {
                ip_address_pools: (0..pools).map(|p| format!("pool{p}")).take(i + 1).collect(),
                communities: vec!["edge".into(), format!("65000:{}", i + 2)],
                peers: (0..peers).map(|p| format!("peer{p}")).collect(),
                aggregation_length: Some(32),
                local_pref: Some(100),
                ..Default::default()
            },
        });
        raw.l2_advertisements.push(api::L2Advertisement {
            status: None,
            metadata: named(format!("l2-{i}")),
            spec: api::L2AdvertisementSpec {
                interfaces: vec!["eth0".into()],
                ..Default::default()
            },
        });
    }
    raw
}

/// One broken field in one object: (kind, index of the object, mutation).
#[derive(Clone, Debug)]
enum Mutation {
    PoolAddress(String),
    PoolEmpty,
    PeerAddress(String),
    PeerHold(String),
    PeerAsnZero,
    PeerBfd(String),
    AdCommunity(String),
    AdAggregation(i32),
    L2Interface(String),
    BfdMultiplier(u32),
}

fn mutation() -> impl Strategy<Value = (Mutation, usize)> {
    let garbage = prop_oneof![
        ".{0,20}".prop_filter("not empty-valid", |s| !s.is_empty()),
        Just("10.0.0.9-10.0.0.1".to_string())
    ];
    (
        prop_oneof![
            garbage.clone().prop_map(Mutation::PoolAddress),
            Just(Mutation::PoolEmpty),
            garbage.clone().prop_map(Mutation::PeerAddress),
            prop_oneof![
                Just("1s".to_string()),
                Just("2s".to_string()),
                Just("abc".to_string()),
                Just("1500ms".to_string())
            ]
            .prop_map(Mutation::PeerHold),
            Just(Mutation::PeerAsnZero),
            "[x-z]{1,4}".prop_map(Mutation::PeerBfd),
            prop_oneof![
                Just("1:2:3".to_string()),
                Just("99999:1".to_string()),
                Just("unknown-alias".to_string())
            ]
            .prop_map(Mutation::AdCommunity),
            prop_oneof![-5i32..=0, 33i32..200, 1i32..24].prop_map(Mutation::AdAggregation),
            prop_oneof![
                Just("".to_string()),
                Just("a/b".to_string()),
                Just("way-too-long-name".to_string())
            ]
            .prop_map(Mutation::L2Interface),
            prop_oneof![0u32..2, 256u32..1000].prop_map(Mutation::BfdMultiplier),
        ],
        0usize..3,
    )
}

/// Applies the mutation; returns the name of the object it broke, or None when there is no such object.
fn apply(raw: &mut RawConfig, m: &Mutation, i: usize) -> Option<String> {
    let name = |meta: &ObjectMeta| meta.name.clone();
    match m {
        Mutation::PoolAddress(a) => raw.pools.get_mut(i).map(|p| {
            p.spec.addresses[0] = a.clone();
            name(&p.metadata)
        })?,
        Mutation::PoolEmpty => raw.pools.get_mut(i).map(|p| {
            p.spec.addresses.clear();
            name(&p.metadata)
        })?,
        Mutation::PeerAddress(a) => raw.peers.get_mut(i).map(|p| {
            p.spec.peer_address = Some(a.clone());
            name(&p.metadata)
        })?,
        Mutation::PeerHold(h) => raw.peers.get_mut(i).map(|p| {
            p.spec.hold_time = Some(h.clone());
            name(&p.metadata)
        })?,
        Mutation::PeerAsnZero => raw.peers.get_mut(i).map(|p| {
            p.spec.peer_asn = Some(0);
            name(&p.metadata)
        })?,
        Mutation::PeerBfd(b) => raw.peers.get_mut(i).map(|p| {
            p.spec.bfd_profile = Some(b.clone());
            name(&p.metadata)
        })?,
        Mutation::AdCommunity(c) => raw.bgp_advertisements.get_mut(i).map(|a| {
            a.spec.communities.push(c.clone());
            name(&a.metadata)
        })?,
        Mutation::AdAggregation(l) => raw.bgp_advertisements.get_mut(i).map(|a| {
            a.spec.aggregation_length = Some(*l);
            name(&a.metadata)
        })?,
        Mutation::L2Interface(n) => raw.l2_advertisements.get_mut(i).map(|a| {
            a.spec.interfaces.push(n.clone());
            name(&a.metadata)
        })?,
        Mutation::BfdMultiplier(m) => raw.bfd_profiles.get_mut(i).map(|b| {
            b.spec.detect_multiplier = Some(*m);
            name(&b.metadata)
        })?,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A valid config is accepted and keeps its promises; one broken field is refused with
    /// errors about that object only: nothing else is blamed.
    #[test]
    fn one_bad_field_is_blamed_on_its_own_object(pools in 1usize..4, peers in 0usize..3, ads in 0usize..3, (m, i) in mutation()) {
        let mut raw = valid_raw(pools, peers, ads);
        let config = build(&raw);
        prop_assert!(config.is_ok(), "generator made an invalid config: {}", config.unwrap_err());
        check_promises(config.as_ref().unwrap());
        if let Some(broken) = apply(&mut raw, &m, i) {
            let errors = build(&raw).expect_err("a broken field must be refused");
            for e in &errors.0 {
                prop_assert_eq!(&e.object.name, &broken, "error blames another object: {}", e);
            }
        }
    }

    /// Issue 13, class 2: over time, one broken edit is refused on its own. The object's last
    /// accepted version stays in force, so the config does not change at all; the next good
    /// edit of any object takes effect; and a model that never saw the good version (a restart)
    /// leaves out only the broken object.
    #[test]
    fn a_broken_edit_is_refused_alone_and_its_last_version_stays(pools in 1usize..4, peers in 0usize..3, ads in 0usize..3, (m, i) in mutation()) {
        let mut raw = valid_raw(pools, peers, ads);
        let config = build(&raw).expect("the generator makes valid configs");
        let mut model = LastGood::default();
        let first = model.build(&raw);
        prop_assert!(first.errors.0.is_empty() && first.kept.is_empty() && first.notes.is_empty());
        prop_assert_eq!(&first.config, &config);
        let good = raw.clone();
        if let Some(broken) = apply(&mut raw, &m, i) {
            let built = model.build(&raw);
            prop_assert!(!built.errors.0.is_empty(), "the broken edit was accepted");
            for e in &built.errors.0 {
                prop_assert_eq!(&e.object.name, &broken, "error blames another object: {}", e);
            }
            prop_assert_eq!(built.kept.len(), 1);
            prop_assert!(built.kept.iter().all(|o| o.name == broken));
            prop_assert_eq!(&built.config, &config, "the last accepted version is not in force");
            let (ok, message) = built.verdict(&built.errors.0[0].object);
            prop_assert!(!ok && message.ends_with("its last accepted version stays in force"), "{}", message);

            // A good edit elsewhere takes effect while the broken object stays refused.
            let mut edited = raw.clone();
            if let Some(pool) = edited.pools.iter_mut().find(|p| p.metadata.name.as_deref() != Some(broken.as_str())) {
                pool.spec.auto_assign = Some(false);
                let name = pool.metadata.name.clone().unwrap_or_default();
                let built = model.build(&edited);
                prop_assert!(built.config.pools.get(&name).is_some_and(|p| !p.auto_assign), "a good edit waited behind a broken one");
                prop_assert!(built.errors.0.iter().all(|e| e.object.name == broken));
            }

            // Fixing the object brings the model back to the good config.
            prop_assert_eq!(model.build(&good).config, config.clone());
            prop_assert!(model.build(&good).errors.0.is_empty());

            // After a restart nothing is remembered: the broken object is left out, only it.
            let fresh = LastGood::default().build(&raw);
            prop_assert!(fresh.kept.is_empty());
            prop_assert!(!fresh.errors.0.is_empty());
            // Objects that need the broken one (a peer naming a refused BFD profile) are
            // refused with it, and say that is why.
            for e in &fresh.errors.0 {
                let because = matches!(&e.reason, Reason::RefusedReference { name, .. } if *name == broken);
                prop_assert!(e.object.name == broken || because, "error blames another object: {}", e);
            }
            check_promises(&fresh.config);
            let kind = fresh.errors.0.iter().find(|e| e.object.name == broken).map(|e| e.object.kind);
            let present = match kind.unwrap_or(Kind::Secret) {
                Kind::IPAddressPool => fresh.config.pools.contains_key(&broken),
                Kind::BGPPeer => fresh.config.peers.contains_key(&broken),
                Kind::BFDProfile => fresh.config.bfd_profiles.contains_key(&broken),
                Kind::L2Advertisement => fresh.config.l2_advertisements.iter().any(|a| a.name == broken),
                Kind::BGPAdvertisement => fresh.config.bgp_advertisements.iter().any(|a| a.name == broken),
                Kind::Community | Kind::Secret => false,
            };
            prop_assert!(!present, "the refused object is in force after a restart");
        }
    }

    /// Issue 13, class 2: objects of a valid config applied one at a time, in any order (an
    /// advertisement before its pool, a peer before its BFD profile), converge on the config
    /// of all of them at once.
    #[test]
    fn objects_in_any_order_converge(pools in 1usize..4, peers in 0usize..3, ads in 0usize..3, seed in any::<u64>()) {
        use std::hash::{Hash, Hasher};
        let all = valid_raw(pools, peers, ads);
        let config = build(&all).expect("the generator makes valid configs");
        let mut steps: Vec<(u64, usize, usize)> = Vec::new();
        let counts = [all.pools.len(), all.l2_advertisements.len(), all.bgp_advertisements.len(), all.peers.len(), all.bfd_profiles.len(), all.communities.len()];
        for (kind, n) in counts.iter().enumerate() {
            for i in 0..*n {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (seed, kind, i).hash(&mut h);
                steps.push((h.finish(), kind, i));
            }
        }
        steps.sort();
        let mut model = LastGood::default();
        let mut raw = RawConfig { secrets: all.secrets.clone(), ..RawConfig::default() };
        for (_, kind, i) in steps {
            match kind {
                0 => raw.pools.push(all.pools[i].clone()),
                1 => raw.l2_advertisements.push(all.l2_advertisements[i].clone()),
                2 => raw.bgp_advertisements.push(all.bgp_advertisements[i].clone()),
                3 => raw.peers.push(all.peers[i].clone()),
                4 => raw.bfd_profiles.push(all.bfd_profiles[i].clone()),
                _ => raw.communities.push(all.communities[i].clone()),
            }
            let built = model.build(&raw);
            check_promises(&built.config);
        }
        let last = model.build(&raw);
        prop_assert_eq!(&last.config, &config);
        prop_assert!(last.errors.0.is_empty() && last.notes.is_empty(), "{:?} {:?}", last.errors, last.notes);
    }

    /// LastGood on any input (valid or not) never panics, ends, keeps the promises, and blames
    /// only objects that exist; fed the same input twice it says the same.
    #[test]
    fn last_good_on_anything_keeps_its_promises(raw in raw(), raw2 in raw()) {
        let mut model = LastGood::default();
        let a = model.build(&raw);
        check_promises(&a.config);
        let b = model.build(&raw2);
        check_promises(&b.config);
        let c = model.build(&raw2);
        prop_assert_eq!(&b.config, &c.config);
        // When the strict build accepts, the model agrees.
        if let Ok(config) = build(&raw2) {
            prop_assert_eq!(&c.config, &config);
            prop_assert!(c.errors.0.is_empty());
        }
    }
}
