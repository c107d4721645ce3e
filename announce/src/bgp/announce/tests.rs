use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ferrolb_config::api::LabelSelector;
use ferrolb_config::selector::{Labels, Selector};
use ferrolb_config::{BgpAdvertisement, CommunityValue, Config, Peer};
use ipnet::IpNet;
use proptest::prelude::*;

use super::*;
use crate::election::{Node, Service, TrafficPolicy};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn selector(pairs: &[(&str, &str)]) -> Selector {
    Selector::compile(&LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    })
    .unwrap()
}

fn ad(name: &str, pool: &str) -> BgpAdvertisement {
    BgpAdvertisement {
        name: name.into(),
        pools: BTreeSet::from([pool.to_string()]),
        aggregation_length: 32,
        aggregation_length_v6: 128,
        local_pref: None,
        communities: BTreeSet::new(),
        node_selectors: vec![],
        peers: BTreeSet::new(),
        service_selectors: vec![],
    }
}

fn peer(name: &str, asn: u32, address: &str) -> Peer {
    Peer {
        name: name.into(),
        my_asn: 64512,
        peer_asn: asn.into(),
        address: PeerAddress::Ip(address.parse().unwrap()),
        port: 179,
        source_address: None,
        hold_time: Duration::from_secs(90),
        keepalive_time: Duration::from_secs(30),
        connect_time: Duration::from_secs(5),
        router_id: None,
        node_selectors: vec![],
        password: None,
        bfd_profile: None,
        graceful_restart: false,
        ebgp_multihop: false,
        dual_stack: false,
        vrf: None,
    }
}

fn config(ads: Vec<BgpAdvertisement>, peers: Vec<Peer>) -> Config {
    Config {
        bgp_advertisements: ads,
        peers: peers.into_iter().map(|p| (p.name.clone(), p)).collect(),
        ..Default::default()
    }
}

fn node(name: &str, l: &[(&str, &str)]) -> Node {
    Node {
        name: name.into(),
        labels: labels(l),
        network_unavailable: false,
    }
}

fn service(name: &str, ips: &[&str]) -> Service {
    Service {
        name: format!("default/{name}"),
        ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
        pool: "lan".into(),
        has_serving_endpoint: true,
        ..Default::default()
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn run(cfg: &Config, n: &Node, services: &[Service]) -> Plan {
    plan(
        &Local {
            config: cfg,
            node: n,
            ignore_exclude_label: false,
        },
        services,
    )
}

fn prefixes(t: &Table) -> Vec<IpNet> {
    t.keys().copied().collect()
}

fn reason(p: &Plan, i: usize) -> Option<Reason> {
    p.decisions[i].decision.clone().err()
}

#[test]
fn announces_each_ip_as_host_prefix_to_every_peer() {
    let cfg = config(
        vec![ad("a", "lan")],
        vec![
            peer("r1", 64513, "10.0.0.1"),
            peer("r2", 64514, "10.0.0.2"),
            peer("r6", 64515, "fd00::1"),
        ],
    );
    let p = run(
        &cfg,
        &node("n1", &[]),
        &[service("web", &["10.96.0.1", "fd00:96::1"])],
    );
    // Each address goes to the peers whose session carries its family.
    for r in ["r1", "r2"] {
        assert_eq!(prefixes(&p.tables[r]), vec![net("10.96.0.1/32")]);
    }
    assert_eq!(prefixes(&p.tables["r6"]), vec![net("fd00:96::1/128")]);
    assert!(p.decisions.iter().all(|d| d.decision.is_ok()));
    let ann = p.decisions[0].decision.clone().unwrap();
    assert_eq!(ann.advertisements, vec!["a".to_string()]);
    assert_eq!(ann.peers.keys().collect::<Vec<_>>(), ["r1", "r2"]);
    let ann = p.decisions[1].decision.clone().unwrap();
    assert_eq!(ann.peers.keys().collect::<Vec<_>>(), ["r6"]);
}

/// MetalLB drop-in (issue 13, class 8): an IPv6 address with only IPv4 peers is not
/// announced, and the decision says why instead of "announced" (the session never carried
/// it); the IPv4 address of the same Service is announced.
#[test]
fn an_address_no_session_carries_is_not_called_announced() {
    let cfg = config(vec![ad("a", "lan")], vec![peer("r1", 64513, "10.0.0.1")]);
    let p = run(
        &cfg,
        &node("n1", &[]),
        &[service("web", &["10.96.0.1", "fd00:96::1"])],
    );
    assert!(p.decisions[0].decision.is_ok());
    assert_eq!(reason(&p, 1), Some(Reason::NoPeerOfFamily));
    assert_eq!(prefixes(&p.tables["r1"]), vec![net("10.96.0.1/32")]);
    // And the reverse: an IPv4 address with only an IPv6 peer.
    let cfg = config(vec![ad("a", "lan")], vec![peer("r6", 64513, "fd00::1")]);
    let p = run(&cfg, &node("n1", &[]), &[service("web", &["10.96.0.1"])]);
    assert_eq!(reason(&p, 0), Some(Reason::NoPeerOfFamily));
    assert_eq!(Reason::NoPeerOfFamily.tag(), "noPeerOfAddressFamily");

    // Unnumbered (interface): one link-local session carries both (IPv4 by RFC 8950).
    let mut link = peer("r1", 64513, "10.0.0.1");
    link.address = PeerAddress::Interface("eth1".into());
    let cfg = config(vec![ad("a", "lan")], vec![link]);
    let p = run(
        &cfg,
        &node("n1", &[]),
        &[service("web", &["10.96.0.1", "fd00:96::1"])],
    );
    assert!(p.decisions.iter().all(|d| d.decision.is_ok()));
    assert_eq!(p.tables["r1"].len(), 2);

    // dualStackAddressFamily: one IPv4 session carries both.
    let mut both = peer("r1", 64513, "10.0.0.1");
    both.dual_stack = true;
    let cfg = config(vec![ad("a", "lan")], vec![both]);
    let p = run(
        &cfg,
        &node("n1", &[]),
        &[service("web", &["10.96.0.1", "fd00:96::1"])],
    );
    assert!(p.decisions.iter().all(|d| d.decision.is_ok()));
    assert_eq!(
        prefixes(&p.tables["r1"]),
        vec![net("10.96.0.1/32"), net("fd00:96::1/128")]
    );
}

#[test]
fn peers_are_selected_by_node_selectors() {
    let mut rack1 = peer("rack1", 64513, "10.0.0.1");
    rack1.node_selectors = vec![selector(&[("rack", "1")])];
    let mut rack2 = peer("rack2", 64513, "10.0.0.2");
    rack2.node_selectors = vec![selector(&[("rack", "2")])];
    let all = peer("core", 64513, "10.0.0.3");
    let cfg = config(vec![ad("a", "lan")], vec![rack1, rack2, all]);
    let n = node("n1", &[("rack", "1")]);
    let names: Vec<&str> = selected_peers(&cfg, &n)
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, vec!["core", "rack1"]);
    let p = run(&cfg, &n, &[service("web", &["10.96.0.1"])]);
    assert_eq!(
        p.tables.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["core", "rack1"]
    );
}

#[test]
fn selected_peer_without_routes_keeps_an_empty_table() {
    let cfg = config(vec![], vec![peer("r1", 64513, "10.0.0.1")]);
    let p = run(&cfg, &node("n1", &[]), &[]);
    assert_eq!(p.tables.len(), 1);
    assert!(p.tables["r1"].is_empty());
}

#[test]
fn advertisement_peers_restrict_the_peers() {
    let mut a = ad("a", "lan");
    a.peers = BTreeSet::from(["r2".to_string()]);
    let cfg = config(
        vec![a],
        vec![peer("r1", 64513, "10.0.0.1"), peer("r2", 64514, "10.0.0.2")],
    );
    let p = run(&cfg, &node("n1", &[]), &[service("web", &["10.96.0.1"])]);
    assert!(p.tables["r1"].is_empty());
    assert_eq!(prefixes(&p.tables["r2"]), vec![net("10.96.0.1/32")]);
}

#[test]
fn advertisement_naming_only_unused_peers_gives_no_peer() {
    let mut a = ad("a", "lan");
    a.peers = BTreeSet::from(["elsewhere".to_string()]);
    let cfg = config(vec![a], vec![peer("r1", 64513, "10.0.0.1")]);
    let p = run(&cfg, &node("n1", &[]), &[service("web", &["10.96.0.1"])]);
    assert_eq!(reason(&p, 0), Some(Reason::NoPeer));
    // No peers at all.
    let cfg = config(vec![ad("a", "lan")], vec![]);
    let p = run(&cfg, &node("n1", &[]), &[service("web", &["10.96.0.1"])]);
    assert_eq!(reason(&p, 0), Some(Reason::NoPeer));
    assert!(p.tables.is_empty());
}

#[test]
fn aggregation_masks_and_merges() {
    let mut a = ad("a", "lan");
    a.aggregation_length = 30;
    a.aggregation_length_v6 = 124;
    let cfg = config(
        vec![a],
        vec![peer("r1", 64513, "10.0.0.1"), peer("r6", 64513, "fd00::1")],
    );
    let p = run(
        &cfg,
        &node("n1", &[]),
        &[
            service("a", &["10.96.0.1"]),
            service("b", &["10.96.0.2", "fd00::13"]),
            service("c", &["10.96.0.5"]),
        ],
    );
    assert_eq!(
        prefixes(&p.tables["r1"]),
        vec![net("10.96.0.0/30"), net("10.96.0.4/30")]
    );
    assert_eq!(prefixes(&p.tables["r6"]), vec![net("fd00::10/124")]);
}

#[test]
fn attributes_local_pref_and_communities() {
    let mut a = ad("a", "lan");
    a.local_pref = Some(150);
    a.communities = BTreeSet::from([
        CommunityValue::Standard(65535, 65281),
        CommunityValue::Large(64512, 1, 2),
    ]);
    let cfg = config(vec![a], vec![peer("r1", 64512, "10.0.0.1")]);
    let p = run(&cfg, &node("n1", &[]), &[service("web", &["10.96.0.1"])]);
    let r = &p.tables["r1"][&net("10.96.0.1/32")];
    assert_eq!(r.local_pref, Some(150));
    assert_eq!(r.communities, BTreeSet::from([(65535u32 << 16) | 65281]));
    assert_eq!(
        r.large_communities,
        BTreeSet::from([LargeCommunity {
            global: 64512,
            local1: 1,
            local2: 2
        }])
    );
}

#[test]
fn two_advertisements_on_one_prefix_union_communities() {
    let mut a = ad("a", "lan");
    a.communities = BTreeSet::from([CommunityValue::Standard(1, 1)]);
    a.local_pref = Some(200);
    let mut b = ad("b", "lan");
    b.communities = BTreeSet::from([
        CommunityValue::Standard(2, 2),
        CommunityValue::Large(3, 3, 3),
    ]);
    // A different length gives a second, distinct prefix.
    let mut c = ad("c", "lan");
    c.aggregation_length = 24;
    let cfg = config(vec![a, b, c], vec![peer("r1", 64512, "10.0.0.1")]);
    let p = run(&cfg, &node("n1", &[]), &[service("web", &["10.96.0.1"])]);
    let t = &p.tables["r1"];
    assert_eq!(prefixes(t), vec![net("10.96.0.0/24"), net("10.96.0.1/32")]);
    let r = &t[&net("10.96.0.1/32")];
    assert_eq!(
        r.communities,
        BTreeSet::from([(1u32 << 16) | 1, (2 << 16) | 2])
    );
    assert_eq!(r.large_communities.len(), 1);
    assert_eq!(r.local_pref, Some(200));
    assert!(t[&net("10.96.0.0/24")].communities.is_empty());
    let ann = p.decisions[0].decision.clone().unwrap();
    assert_eq!(ann.advertisements, vec!["a", "b", "c"]);
    assert_eq!(ann.peers["r1"].len(), 2);
}

#[test]
fn aggregate_shared_by_services_unions_their_advertisements() {
    // Two pools, each with its own community, folding into one /24.
    let mut a = ad("a", "lan");
    a.aggregation_length = 24;
    a.communities = BTreeSet::from([CommunityValue::Standard(1, 1)]);
    let mut b = ad("b", "other");
    b.aggregation_length = 24;
    b.communities = BTreeSet::from([CommunityValue::Standard(2, 2)]);
    let cfg = config(vec![a, b], vec![peer("r1", 64513, "10.0.0.1")]);
    let mut s2 = service("s2", &["10.96.0.200"]);
    s2.pool = "other".into();
    let p = run(&cfg, &node("n1", &[]), &[service("s1", &["10.96.0.1"]), s2]);
    let t = &p.tables["r1"];
    assert_eq!(prefixes(t), vec![net("10.96.0.0/24")]);
    assert_eq!(t[&net("10.96.0.0/24")].communities.len(), 2);
}

#[test]
fn pool_and_service_selectors() {
    let mut a = ad("a", "lan");
    a.service_selectors = vec![selector(&[("expose", "bgp")])];
    let cfg = config(vec![a], vec![peer("r1", 64513, "10.0.0.1")]);
    let mut other_pool = service("x", &["10.97.0.1"]);
    other_pool.pool = "other".into();
    let mut labelled = service("y", &["10.96.0.2"]);
    labelled.labels = labels(&[("expose", "bgp")]);
    let p = run(
        &cfg,
        &node("n1", &[]),
        &[service("web", &["10.96.0.1"]), other_pool, labelled],
    );
    assert_eq!(reason(&p, 0), Some(Reason::NoMatchingAdvertisement));
    assert_eq!(reason(&p, 1), Some(Reason::NoMatchingAdvertisement));
    assert!(p.decisions[2].decision.is_ok());
    assert_eq!(prefixes(&p.tables["r1"]), vec![net("10.96.0.2/32")]);
}

#[test]
fn advertisement_node_selectors() {
    let mut a = ad("a", "lan");
    a.node_selectors = vec![selector(&[("bgp", "yes")])];
    let cfg = config(vec![a], vec![peer("r1", 64513, "10.0.0.1")]);
    let svc = [service("web", &["10.96.0.1"])];
    let p = run(&cfg, &node("n1", &[]), &svc);
    assert_eq!(reason(&p, 0), Some(Reason::NodeNotSelected));
    assert!(p.tables["r1"].is_empty());
    let p = run(&cfg, &node("n2", &[("bgp", "yes")]), &svc);
    assert!(p.decisions[0].decision.is_ok());
}

#[test]
fn traffic_policy_cluster_needs_any_endpoint() {
    let cfg = config(vec![ad("a", "lan")], vec![peer("r1", 64513, "10.0.0.1")]);
    let mut s = service("web", &["10.96.0.1"]);
    s.has_serving_endpoint = false;
    let p = run(&cfg, &node("n1", &[]), &[s.clone()]);
    assert_eq!(reason(&p, 0), Some(Reason::NoEndpoints));
    assert!(p.tables["r1"].is_empty());
    // Endpoints elsewhere are enough for Cluster.
    s.has_serving_endpoint = true;
    s.local_endpoint_nodes = BTreeSet::from(["n2".to_string()]);
    let p = run(&cfg, &node("n1", &[]), &[s]);
    assert!(p.decisions[0].decision.is_ok());
}

#[test]
fn traffic_policy_local_needs_a_local_endpoint() {
    let cfg = config(vec![ad("a", "lan")], vec![peer("r1", 64513, "10.0.0.1")]);
    let mut s = service("web", &["10.96.0.1"]);
    s.traffic_policy = TrafficPolicy::Local;
    s.local_endpoint_nodes = BTreeSet::from(["n2".to_string()]);
    let p = run(&cfg, &node("n1", &[]), &[s.clone()]);
    assert_eq!(reason(&p, 0), Some(Reason::NoLocalEndpoints));
    let p = run(&cfg, &node("n2", &[]), &[s.clone()]);
    assert!(p.decisions[0].decision.is_ok());
    s.has_serving_endpoint = false;
    let p = run(&cfg, &node("n2", &[]), &[s]);
    assert_eq!(reason(&p, 0), Some(Reason::NoEndpoints));
}

#[test]
fn excluded_node_announces_nothing_unless_overridden() {
    let cfg = config(vec![ad("a", "lan")], vec![peer("r1", 64513, "10.0.0.1")]);
    let n = node("cp", &[(EXCLUDE_LABEL, "")]);
    let svc = [service("web", &["10.96.0.1"])];
    let p = run(&cfg, &n, &svc);
    assert_eq!(reason(&p, 0), Some(Reason::Excluded));
    assert!(p.tables["r1"].is_empty(), "the session stays, empty");
    let p = plan(
        &Local {
            config: &cfg,
            node: &n,
            ignore_exclude_label: true,
        },
        &svc,
    );
    assert!(p.decisions[0].decision.is_ok());
}

#[test]
fn network_unavailable_node_announces_nothing() {
    let cfg = config(vec![ad("a", "lan")], vec![peer("r1", 64513, "10.0.0.1")]);
    let mut n = node("n1", &[]);
    n.network_unavailable = true;
    let p = run(&cfg, &n, &[service("web", &["10.96.0.1"])]);
    assert_eq!(reason(&p, 0), Some(Reason::NetworkUnavailable));
    assert_eq!(Reason::NetworkUnavailable.tag(), "nodeNetworkUnavailable");
    assert!(p.tables["r1"].is_empty());
}

#[test]
fn reason_order_follows_the_election() {
    // No endpoints wins over everything, then advertisement, node selection, node state.
    let mut a = ad("a", "lan");
    a.node_selectors = vec![selector(&[("bgp", "yes")])];
    let cfg = config(vec![a], vec![peer("r1", 64513, "10.0.0.1")]);
    let mut n = node("n1", &[(EXCLUDE_LABEL, "")]);
    n.network_unavailable = true;
    let mut s = service("web", &["10.96.0.1"]);
    s.traffic_policy = TrafficPolicy::Local;
    assert_eq!(
        reason(&run(&cfg, &n, &[s.clone()]), 0),
        Some(Reason::NodeNotSelected)
    );
    n.labels.insert("bgp".into(), "yes".into());
    assert_eq!(
        reason(&run(&cfg, &n, &[s.clone()]), 0),
        Some(Reason::NetworkUnavailable)
    );
    n.network_unavailable = false;
    assert_eq!(
        reason(&run(&cfg, &n, &[s.clone()]), 0),
        Some(Reason::Excluded)
    );
    n.labels.remove(EXCLUDE_LABEL);
    assert_eq!(
        reason(&run(&cfg, &n, &[s.clone()]), 0),
        Some(Reason::NoLocalEndpoints)
    );
    s.has_serving_endpoint = false;
    assert_eq!(reason(&run(&cfg, &n, &[s]), 0), Some(Reason::NoEndpoints));
}

#[test]
fn explain_matches_plan() {
    let cfg = config(vec![ad("a", "lan")], vec![peer("r1", 64513, "10.0.0.1")]);
    let n = node("n1", &[]);
    let s = service("web", &["10.96.0.1", "10.96.0.2"]);
    let local = Local {
        config: &cfg,
        node: &n,
        ignore_exclude_label: false,
    };
    assert_eq!(
        explain(&local, &s),
        plan(&local, std::slice::from_ref(&s)).decisions
    );
    assert_eq!(explain(&local, &s).len(), 2);
}

#[test]
fn out_of_range_aggregation_is_the_full_width() {
    let mut a = ad("a", "lan");
    a.aggregation_length = 99;
    a.aggregation_length_v6 = 200;
    assert_eq!(prefix(ip("10.1.2.3"), &a), net("10.1.2.3/32"));
    assert_eq!(prefix(ip("fd00::1"), &a), net("fd00::1/128"));
    a.aggregation_length = 0;
    assert_eq!(prefix(ip("10.1.2.3"), &a), net("0.0.0.0/0"));
}

// ---- property ----

fn arb_selectors() -> impl Strategy<Value = Vec<Selector>> {
    prop_oneof![
        Just(vec![]),
        (0..2u8).prop_map(|v| vec![selector(&[("zone", if v == 0 { "a" } else { "b" })])]),
    ]
}

fn arb_ad(i: usize) -> impl Strategy<Value = BgpAdvertisement> {
    (
        0..3usize,
        prop_oneof![Just(32u8), Just(31), Just(30), Just(24), Just(40)],
        prop_oneof![Just(128u8), Just(124), Just(64)],
        proptest::option::of(0..300u32),
        proptest::collection::btree_set((0..3u16, 0..3u16), 0..3),
        arb_selectors(),
        proptest::collection::btree_set(0..3usize, 0..2),
        arb_selectors(),
    )
        .prop_map(
            move |(pool, l4, l6, lp, comms, nodes, peers, svcs)| BgpAdvertisement {
                name: format!("ad{i}"),
                pools: BTreeSet::from([format!("p{pool}")]),
                aggregation_length: l4,
                aggregation_length_v6: l6,
                local_pref: lp,
                communities: comms
                    .into_iter()
                    .map(|(a, b)| CommunityValue::Standard(a, b))
                    .collect(),
                node_selectors: nodes,
                peers: peers.into_iter().map(|p| format!("r{p}")).collect(),
                service_selectors: svcs,
            },
        )
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0..16u8).prop_map(|x| IpAddr::from([10, 96, 0, x])),
        (0..16u16).prop_map(|x| IpAddr::from([0xfd00, 0x96, 0, 0, 0, 0, 0, x])),
    ]
}

fn arb_service(i: usize) -> impl Strategy<Value = Service> {
    (
        proptest::collection::vec(arb_ip(), 0..3),
        0..3usize,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(ips, pool, labelled, local, here, serving)| Service {
            name: format!("default/s{i}"),
            ips,
            pool: format!("p{pool}"),
            labels: if labelled {
                labels(&[("zone", "a")])
            } else {
                Labels::new()
            },
            traffic_policy: if local {
                TrafficPolicy::Local
            } else {
                TrafficPolicy::Cluster
            },
            local_endpoint_nodes: if here {
                BTreeSet::from(["me".to_string()])
            } else {
                BTreeSet::new()
            },
            has_serving_endpoint: serving,
        })
}

fn arb_world() -> impl Strategy<Value = (Config, Node, Vec<Service>, bool)> {
    (
        proptest::collection::vec(any::<(bool, bool)>(), 0..3),
        (0..4usize).prop_flat_map(|n| (0..n).map(arb_ad).collect::<Vec<_>>()),
        (0..5usize).prop_flat_map(|n| (0..n).map(arb_service).collect::<Vec<_>>()),
        any::<(bool, bool, bool, bool)>(),
    )
        .prop_map(
            |(peers, ads, services, (zone_a, excluded, unavail, ignore))| {
                let peers = peers
                    .into_iter()
                    .enumerate()
                    .map(|(i, (ibgp, restricted))| {
                        let mut p = peer(
                            &format!("r{i}"),
                            if ibgp { 64512 } else { 64513 },
                            "10.0.0.1",
                        );
                        if restricted {
                            p.node_selectors = vec![selector(&[("zone", "a")])];
                        }
                        p
                    })
                    .collect();
                let mut l = Vec::new();
                if zone_a {
                    l.push(("zone", "a"));
                }
                if excluded {
                    l.push((EXCLUDE_LABEL, ""));
                }
                let mut n = node("me", &l);
                n.network_unavailable = unavail;
                (config(ads, peers), n, services, ignore)
            },
        )
}

fn all_ips(services: &[Service]) -> Vec<IpAddr> {
    services
        .iter()
        .flat_map(|s| s.ips.iter().copied())
        .collect()
}

proptest! {
    #[test]
    fn tables_cover_only_service_ips_and_removal_is_local(
        (cfg, n, services, ignore) in arb_world(),
        drop_index in any::<prop::sample::Index>(),
    ) {
        let local = Local { config: &cfg, node: &n, ignore_exclude_label: ignore };
        let p = plan(&local, &services);
        let ips = all_ips(&services);
        let selected: BTreeSet<String> =
            selected_peers(&cfg, &n).iter().map(|p| p.name.clone()).collect();
        prop_assert_eq!(p.tables.keys().cloned().collect::<BTreeSet<_>>(), selected);
        for t in p.tables.values() {
            for prefix in t.keys() {
                prop_assert!(ips.iter().any(|ip| prefix.contains(ip)), "{} covers no Service IP", prefix);
            }
        }
        // One decision per IP; an announced IP is in the named tables, a refused one in none
        // unless another Service's IP shares the prefix.
        prop_assert_eq!(p.decisions.len(), ips.len());
        for d in &p.decisions {
            if let Ok(ann) = &d.decision {
                for (peer, prefixes) in &ann.peers {
                    for prefix in prefixes {
                        prop_assert!(prefix.contains(&d.ip));
                        prop_assert!(p.tables[peer].contains_key(prefix));
                    }
                }
            }
        }
        // An excluded or NetworkUnavailable node announces nothing.
        if n.network_unavailable || (!ignore && n.labels.contains_key(EXCLUDE_LABEL)) {
            prop_assert!(p.decisions.iter().all(|d| d.decision.is_err()));
            prop_assert!(p.tables.values().all(|t| t.is_empty()));
        }
        // Removing one Service removes only prefixes that covered its IPs.
        if !services.is_empty() {
            let i = drop_index.index(services.len());
            let mut rest = services.clone();
            let gone = rest.remove(i);
            let q = plan(&local, &rest);
            for (peer, t) in &p.tables {
                let after = &q.tables[peer];
                for prefix in after.keys() {
                    prop_assert!(t.contains_key(prefix), "{} appeared", prefix);
                }
                for prefix in t.keys().filter(|k| !after.contains_key(k)) {
                    prop_assert!(gone.ips.iter().any(|ip| prefix.contains(ip)), "{} removed", prefix);
                }
            }
        }
    }
}

#[test]
fn config_from_yaml_resolves_community_aliases() {
    let yaml = r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: ferrolb-system}
spec: {addresses: [10.96.0.0/28]}
---
apiVersion: ferrolb.io/v1beta1
kind: Community
metadata: {name: communities, namespace: ferrolb-system}
spec:
  communities:
    - {name: no-export, value: "65535:65281"}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: lan, namespace: ferrolb-system}
spec:
  ipAddressPools: [lan]
  aggregationLength: 30
  localPref: 150
  communities: [no-export, "64512:7", "large:64512:1:2"]
---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {name: tor, namespace: ferrolb-system}
spec: {myASN: 64512, peerASN: 64512, peerAddress: 10.0.0.1}
"#;
    let docs = ferrolb_config::parse_documents(yaml).unwrap();
    let cfg = ferrolb_config::build(&docs.config).unwrap();
    let p = run(
        &cfg,
        &node("n1", &[]),
        &[service("web", &["10.96.0.1", "10.96.0.2"])],
    );
    let t = &p.tables["tor"];
    assert_eq!(prefixes(t), vec![net("10.96.0.0/30")]);
    let r = &t[&net("10.96.0.0/30")];
    assert_eq!(r.local_pref, Some(150));
    assert_eq!(
        r.communities,
        BTreeSet::from([(65535u32 << 16) | 65281, (64512 << 16) | 7])
    );
    assert_eq!(r.large_communities.len(), 1);
}
