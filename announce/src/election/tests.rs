use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_config::api::LabelSelector;
use ferrolb_config::selector::{Labels, Selector};
use ferrolb_config::{Config, L2Advertisement};
use proptest::prelude::*;

use super::*;

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

fn ad(name: &str, pool: &str) -> L2Advertisement {
    L2Advertisement {
        name: name.into(),
        pools: BTreeSet::from([pool.to_string()]),
        node_selectors: vec![],
        interfaces: BTreeSet::new(),
        service_selectors: vec![],
    }
}

fn config(ads: Vec<L2Advertisement>) -> Config {
    Config {
        l2_advertisements: ads,
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

fn service(ip: &str) -> Service {
    Service {
        name: "default/web".into(),
        ips: vec![ip.parse().unwrap()],
        pool: "lan".into(),
        has_serving_endpoint: true,
        ..Default::default()
    }
}

fn all_live(nodes: &[Node]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.name.clone()).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The node that the plain hash ranks first among `names` for `ip`.
fn hash_first(names: &[&str], ip: IpAddr) -> String {
    names
        .iter()
        .min_by_key(|n| rank(n, ip))
        .unwrap()
        .to_string()
}

#[test]
fn rank_is_a_stable_sha256() {
    // sha256("node0#10.0.0.200"), computed independently (coreutils sha256sum).
    let digest = rank("node0", ip("10.0.0.200"));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "17a34ef06bc2194b86e88755a71eea27912a09d48829fd004a40f6a7d6eb9bc1"
    );
}

#[test]
fn exactly_one_node_announces_and_it_is_the_hash_winner() {
    let nodes = vec![node("a", &[]), node("b", &[]), node("c", &[])];
    let cfg = config(vec![ad("l2", "lan")]);
    let live = all_live(&nodes);
    let cluster = Cluster {
        shared: &Default::default(),
        config: &cfg,
        nodes: &nodes,
        live: &live,
        ignore_exclude_label: false,
    };
    for addr in ["10.0.0.200", "10.0.0.201", "fd00::200", "fd00::201"] {
        let svc = service(addr);
        let want = hash_first(&["a", "b", "c"], ip(addr));
        let announcers: Vec<String> = ["a", "b", "c"]
            .iter()
            .filter(|n| decide(&cluster, &svc, n)[0].1.is_ok())
            .map(|n| n.to_string())
            .collect();
        assert_eq!(announcers, vec![want.clone()], "{addr}");
        for n in ["a", "b", "c"].iter().filter(|n| **n != want) {
            assert_eq!(
                decide(&cluster, &svc, n)[0].1,
                Err(Reason::NotOwner {
                    owner: want.clone()
                })
            );
        }
        let got = owner(&cluster, &svc, ip(addr)).unwrap();
        assert_eq!(got.node, want);
        assert_eq!(got.interfaces, Interfaces::All);
        assert_eq!(got.advertisements, vec!["l2".to_string()]);
    }
}

/// MetalLB drop-in (issue 13, class 7): a dual-stack Service's IPv4 and IPv6 addresses are
/// answered by one node, the one its first address elects (as under MetalLB), for many pairs
/// whose per-address winners would differ.
#[test]
fn a_dual_stack_service_is_answered_by_one_node() {
    let names = ["a", "b", "c", "d", "e"];
    let nodes: Vec<Node> = names.iter().map(|n| node(n, &[])).collect();
    let cfg = config(vec![ad("l2", "lan")]);
    let live = all_live(&nodes);
    let cluster = Cluster {
        shared: &Default::default(),
        config: &cfg,
        nodes: &nodes,
        live: &live,
        ignore_exclude_label: false,
    };
    let mut split_before = 0;
    for i in 0..50 {
        let (v4, v6) = (ip(&format!("10.0.0.{i}")), ip(&format!("fd00::{i:x}")));
        if hash_first(&names, v4) != hash_first(&names, v6) {
            split_before += 1;
        }
        for (first, second) in [(v4, v6), (v6, v4)] {
            let mut svc = service("10.0.0.1");
            svc.ips = vec![first, second];
            let want = hash_first(&names, first);
            for addr in [first, second] {
                assert_eq!(owner(&cluster, &svc, addr).unwrap().node, want, "{addr}");
            }
            let announcers: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| decide(&cluster, &svc, n).iter().all(|(_, d)| d.is_ok()))
                .collect();
            assert_eq!(announcers, vec![want.as_str()], "{first} {second}");
        }
    }
    assert!(
        split_before > 20,
        "the pairs exercise the case: {split_before} of 50 split per address"
    );
}

/// One row: a tweak of the standard world (nodes a, b, c; ad "l2" for pool "lan") and what
/// node `me` must conclude.
struct Case {
    name: &'static str,
    me: &'static str,
    tweak: fn(&mut World),
    want: Result<(), Reason>,
}

struct World {
    nodes: Vec<Node>,
    cfg: Config,
    live: BTreeSet<String>,
    svc: Service,
    ignore_exclude_label: bool,
}

fn world() -> World {
    let nodes = vec![
        node("a", &[("zone", "x")]),
        node("b", &[("zone", "y")]),
        node("c", &[("zone", "y")]),
    ];
    let live = all_live(&nodes);
    World {
        nodes,
        cfg: config(vec![ad("l2", "lan")]),
        live,
        svc: service("10.0.0.200"),
        ignore_exclude_label: false,
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn decision_table() {
    let cases = [
        Case {
            name: "no serving endpoint anywhere: nobody announces, even ETP Cluster",
            me: "a",
            tweak: |w| w.svc.has_serving_endpoint = false,
            want: Err(Reason::NoEndpoints),
        },
        Case {
            name: "no advertisement for the pool",
            me: "a",
            tweak: |w| w.svc.pool = "other".into(),
            want: Err(Reason::NoMatchingAdvertisement),
        },
        Case {
            name: "advertisement's service selector does not match",
            me: "a",
            tweak: |w| {
                w.cfg.l2_advertisements[0].service_selectors = vec![selector(&[("app", "db")])]
            },
            want: Err(Reason::NoMatchingAdvertisement),
        },
        Case {
            name: "node not selected by the advertisement",
            me: "a",
            tweak: |w| w.cfg.l2_advertisements[0].node_selectors = vec![selector(&[("zone", "y")])],
            want: Err(Reason::NodeNotSelected),
        },
        Case {
            name: "network unavailable",
            me: "a",
            tweak: |w| {
                w.nodes.retain(|n| n.name == "a");
                w.nodes[0].network_unavailable = true;
            },
            want: Err(Reason::NodeNetworkUnavailable),
        },
        Case {
            name: "exclude label (any value)",
            me: "a",
            tweak: |w| {
                w.nodes.retain(|n| n.name == "a");
                w.nodes[0]
                    .labels
                    .insert(EXCLUDE_LABEL.into(), String::new());
            },
            want: Err(Reason::Excluded),
        },
        Case {
            name: "exclude label ignored by flag: sole node announces",
            me: "a",
            tweak: |w| {
                w.nodes.retain(|n| n.name == "a");
                w.nodes[0]
                    .labels
                    .insert(EXCLUDE_LABEL.into(), "true".into());
                w.ignore_exclude_label = true;
            },
            want: Ok(()),
        },
        Case {
            name: "ETP Local without a local endpoint",
            me: "a",
            tweak: |w| {
                w.svc.traffic_policy = TrafficPolicy::Local;
                w.svc.local_endpoint_nodes = set(&["b"]);
            },
            want: Err(Reason::NoLocalEndpoints),
        },
        Case {
            name: "ETP Local: the only node with an endpoint announces",
            me: "b",
            tweak: |w| {
                w.svc.traffic_policy = TrafficPolicy::Local;
                w.svc.local_endpoint_nodes = set(&["b"]);
            },
            want: Ok(()),
        },
        Case {
            name: "ETP Cluster ignores where endpoints are",
            me: "a",
            tweak: |w| {
                w.nodes.retain(|n| n.name == "a");
                w.svc.local_endpoint_nodes = set(&["b"]);
            },
            want: Ok(()),
        },
        Case {
            name: "this node's speaker is not live",
            me: "a",
            tweak: |w| {
                w.live.remove("a");
            },
            want: Err(Reason::NotLive),
        },
        Case {
            name: "unknown node",
            me: "zz",
            tweak: |_| {},
            want: Err(Reason::UnknownNode),
        },
        Case {
            name: "the only live node announces",
            me: "c",
            tweak: |w| w.live = set(&["c"]),
            want: Ok(()),
        },
        Case {
            name: "a second advertisement selecting the node is enough",
            me: "a",
            tweak: |w| {
                w.nodes.retain(|n| n.name == "a");
                w.cfg.l2_advertisements[0].node_selectors = vec![selector(&[("zone", "y")])];
                let mut second = ad("l2-x", "lan");
                second.node_selectors = vec![selector(&[("zone", "x")])];
                w.cfg.l2_advertisements.push(second);
            },
            want: Ok(()),
        },
    ];
    for case in cases {
        let mut w = world();
        (case.tweak)(&mut w);
        let cluster = Cluster {
            shared: &Default::default(),
            config: &w.cfg,
            nodes: &w.nodes,
            live: &w.live,
            ignore_exclude_label: w.ignore_exclude_label,
        };
        let got = decide(&cluster, &w.svc, case.me);
        assert_eq!(got.len(), 1, "{}", case.name);
        let got = got[0]
            .1
            .as_ref()
            .map(|a| assert_eq!(a.node, case.me))
            .map_err(Clone::clone);
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[test]
fn interfaces_come_from_the_advertisements_that_select_the_owner() {
    let nodes = vec![node("a", &[("zone", "x")])];
    let live = all_live(&nodes);
    let mut ad1 = ad("one", "lan");
    ad1.interfaces = set(&["eth0"]);
    let mut ad2 = ad("two", "lan");
    ad2.interfaces = set(&["eth1"]);
    let mut ad3 = ad("elsewhere", "lan");
    ad3.interfaces = set(&["eth9"]);
    ad3.node_selectors = vec![selector(&[("zone", "y")])];
    let cfg = config(vec![ad1.clone(), ad2.clone(), ad3.clone()]);
    let cluster = Cluster {
        shared: &Default::default(),
        config: &cfg,
        nodes: &nodes,
        live: &live,
        ignore_exclude_label: false,
    };
    let a = owner(&cluster, &service("10.0.0.200"), ip("10.0.0.200")).unwrap();
    assert_eq!(a.interfaces, Interfaces::Named(set(&["eth0", "eth1"])));
    assert_eq!(a.advertisements, vec!["one".to_string(), "two".to_string()]);
    assert!(a.interfaces.includes("eth1") && !a.interfaces.includes("eth9"));

    // One selecting advertisement without a list means every interface.
    let cfg = config(vec![ad1, ad("all", "lan")]);
    let cluster = Cluster {
        shared: &Default::default(),
        config: &cfg,
        ..cluster
    };
    let a = owner(&cluster, &service("10.0.0.200"), ip("10.0.0.200")).unwrap();
    assert_eq!(a.interfaces, Interfaces::All);
}

#[test]
fn services_sharing_an_ip_get_the_same_owner() {
    let nodes: Vec<Node> = (0..8).map(|i| node(&format!("n{i}"), &[])).collect();
    let live = all_live(&nodes);
    let cfg = config(vec![ad("l2", "lan")]);
    let cluster = Cluster {
        shared: &Default::default(),
        config: &cfg,
        nodes: &nodes,
        live: &live,
        ignore_exclude_label: false,
    };
    for last in 1..=40u8 {
        let addr = IpAddr::from([10, 0, 0, last]);
        let mut web = service(&addr.to_string());
        web.name = "default/web".into();
        let mut dns = service(&addr.to_string());
        dns.name = "kube-system/dns".into();
        dns.labels = labels(&[("app", "dns")]);
        assert_eq!(
            owner(&cluster, &web, addr).unwrap().node,
            owner(&cluster, &dns, addr).unwrap().node
        );
    }
}

#[test]
fn ownership_spreads_over_nodes() {
    let nodes: Vec<Node> = (0..4).map(|i| node(&format!("n{i}"), &[])).collect();
    let live = all_live(&nodes);
    let cfg = config(vec![ad("l2", "lan")]);
    let cluster = Cluster {
        shared: &Default::default(),
        config: &cfg,
        nodes: &nodes,
        live: &live,
        ignore_exclude_label: false,
    };
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for last in 0..=255u8 {
        let addr = IpAddr::from([10, 0, 1, last]);
        *per_node
            .entry(
                owner(&cluster, &service(&addr.to_string()), addr)
                    .unwrap()
                    .node,
            )
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), 4, "{per_node:?}");
    assert!(per_node.values().all(|&c| c > 30), "{per_node:?}");
}

#[test]
fn owner_reports_no_eligible_node() {
    let nodes = vec![node("a", &[])];
    let live = BTreeSet::new();
    let cfg = config(vec![ad("l2", "lan")]);
    let cluster = Cluster {
        shared: &Default::default(),
        config: &cfg,
        nodes: &nodes,
        live: &live,
        ignore_exclude_label: false,
    };
    assert_eq!(
        owner(&cluster, &service("10.0.0.200"), ip("10.0.0.200")),
        Err(Reason::NoEligibleNode)
    );
}

// ---- properties ----

#[derive(Clone, Debug)]
struct Scenario {
    nodes: Vec<Node>,
    live: BTreeSet<String>,
    svc: Service,
    selector_zone: Option<&'static str>,
    ignore_exclude_label: bool,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let node_strategy = (
        prop::sample::select(vec!["x", "y"]),
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
        any::<bool>(),
        prop::bool::weighted(0.8),
    );
    (
        prop::collection::vec(node_strategy, 1..8),
        prop::collection::vec(any::<u32>(), 1..4),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![None, Some("x"), Some("y")]),
        any::<bool>(),
        any::<u128>(),
    )
        .prop_map(|(ns, v4s, local, has_eps, zone, ignore, v6)| {
            let mut nodes = Vec::new();
            let mut live = BTreeSet::new();
            let mut local_nodes = BTreeSet::new();
            for (i, (z, _, unavail, excluded, endpoint, alive)) in ns.into_iter().enumerate() {
                let name = format!("node-{i}");
                let mut l = labels(&[("zone", z)]);
                if excluded {
                    l.insert(EXCLUDE_LABEL.into(), String::new());
                }
                if alive {
                    live.insert(name.clone());
                }
                if endpoint {
                    local_nodes.insert(name.clone());
                }
                nodes.push(Node {
                    name,
                    labels: l,
                    network_unavailable: unavail,
                });
            }
            let mut ips: Vec<IpAddr> = v4s
                .into_iter()
                .map(|a| IpAddr::from(a.to_be_bytes()))
                .collect();
            ips.push(IpAddr::from(v6.to_be_bytes()));
            Scenario {
                nodes,
                live,
                svc: Service {
                    name: "ns/svc".into(),
                    ips,
                    pool: "lan".into(),
                    labels: Labels::new(),
                    traffic_policy: if local {
                        TrafficPolicy::Local
                    } else {
                        TrafficPolicy::Cluster
                    },
                    local_endpoint_nodes: local_nodes,
                    has_serving_endpoint: has_eps,
                },
                selector_zone: zone,
                ignore_exclude_label: ignore,
            }
        })
}

fn scenario_config(s: &Scenario) -> Config {
    let mut a = ad("l2", "lan");
    if let Some(z) = s.selector_zone {
        a.node_selectors = vec![selector(&[("zone", z)])];
    }
    config(vec![a])
}

/// Who announces each IP, as seen by every node in turn (a node's own decision).
fn announcers(s: &Scenario, cfg: &Config) -> Vec<(IpAddr, Vec<String>)> {
    let cluster = Cluster {
        shared: &Default::default(),
        config: cfg,
        nodes: &s.nodes,
        live: &s.live,
        ignore_exclude_label: s.ignore_exclude_label,
    };
    s.svc
        .ips
        .iter()
        .map(|&ip| {
            let yes = s
                .nodes
                .iter()
                .filter(|n| {
                    decide(&cluster, &s.svc, &n.name)
                        .into_iter()
                        .any(|(i, d)| i == ip && d.is_ok())
                })
                .map(|n| n.name.clone())
                .collect();
            (ip, yes)
        })
        .collect()
}

proptest! {
    #[test]
    fn every_node_agrees_on_at_most_one_owner(s in scenario()) {
        let cfg = scenario_config(&s);
        let cluster = Cluster { shared: &Default::default(), config: &cfg, nodes: &s.nodes, live: &s.live, ignore_exclude_label: s.ignore_exclude_label };
        for (ip, yes) in announcers(&s, &cfg) {
            let o = owner(&cluster, &s.svc, ip);
            match &o {
                Ok(a) => prop_assert_eq!(&yes, &vec![a.node.clone()]),
                Err(_) => prop_assert!(yes.is_empty()),
            }
            // Every non-owner that is eligible and live names the same owner.
            for n in &s.nodes {
                if let Some((_, Err(Reason::NotOwner { owner: named }))) =
                    decide(&cluster, &s.svc, &n.name).into_iter().find(|(i, _)| *i == ip)
                {
                    prop_assert_eq!(Some(named), o.as_ref().ok().map(|a| a.node.clone()));
                }
            }
        }
    }

    #[test]
    fn input_order_does_not_matter(s in scenario(), seed in any::<u64>()) {
        let cfg = scenario_config(&s);
        let mut shuffled = s.clone();
        // A deterministic rotation plus reversal: enough to change every position.
        let k = (seed as usize) % shuffled.nodes.len();
        shuffled.nodes.rotate_left(k);
        if seed & 1 == 1 { shuffled.nodes.reverse(); }
        let c1 = Cluster { shared: &Default::default(), config: &cfg, nodes: &s.nodes, live: &s.live, ignore_exclude_label: s.ignore_exclude_label };
        let c2 = Cluster { nodes: &shuffled.nodes, ..c1 };
        for &ip in &s.svc.ips {
            prop_assert_eq!(owner(&c1, &s.svc, ip), owner(&c2, &s.svc, ip));
        }
    }

    #[test]
    fn the_owner_is_eligible_and_live(s in scenario()) {
        let cfg = scenario_config(&s);
        let cluster = Cluster { shared: &Default::default(), config: &cfg, nodes: &s.nodes, live: &s.live, ignore_exclude_label: s.ignore_exclude_label };
        for &ip in &s.svc.ips {
            if let Ok(a) = owner(&cluster, &s.svc, ip) {
                let n = s.nodes.iter().find(|n| n.name == a.node).unwrap();
                prop_assert!(s.live.contains(&n.name));
                prop_assert!(!n.network_unavailable);
                prop_assert!(s.ignore_exclude_label || !n.labels.contains_key(EXCLUDE_LABEL));
                prop_assert!(s.svc.has_serving_endpoint);
                if s.svc.traffic_policy == TrafficPolicy::Local {
                    prop_assert!(s.svc.local_endpoint_nodes.contains(&n.name));
                }
                if let Some(z) = s.selector_zone {
                    prop_assert_eq!(n.labels.get("zone").map(String::as_str), Some(z));
                }
            }
        }
    }

    #[test]
    fn removing_a_non_owner_never_moves_an_ip(s in scenario(), pick in any::<prop::sample::Index>(), as_death in any::<bool>()) {
        let cfg = scenario_config(&s);
        let cluster = Cluster { shared: &Default::default(), config: &cfg, nodes: &s.nodes, live: &s.live, ignore_exclude_label: s.ignore_exclude_label };
        let victim = s.nodes[pick.index(s.nodes.len())].name.clone();
        let mut fewer = s.clone();
        if as_death {
            // The speaker dies: it leaves the member set, the Node stays.
            fewer.live.remove(&victim);
        } else {
            // The Node is deleted.
            fewer.nodes.retain(|n| n.name != victim);
            fewer.live.remove(&victim);
        }
        let after = Cluster { nodes: &fewer.nodes, live: &fewer.live, ..cluster };
        for &ip in &s.svc.ips {
            let before = owner(&cluster, &s.svc, ip);
            if let Ok(a) = &before
                && a.node != victim
            {
                prop_assert_eq!(owner(&after, &s.svc, ip), before.clone());
            }
        }
    }
}

/// Every node's own decision for `ip` of each Service in `services`: the nodes that answer.
fn answering(cluster: &Cluster<'_>, services: &[Service], ip: IpAddr) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for n in cluster.nodes {
        for svc in services {
            if decide(cluster, svc, &n.name)
                .iter()
                .any(|(i, d)| *i == ip && d.is_ok())
            {
                out.insert(n.name.clone());
            }
        }
    }
    out
}

/// MetalLB drop-in (issue 13, class 5; MetalLB #3025): two Services share an address and
/// match different L2Advertisements (through serviceSelectors) whose nodeSelectors differ.
/// Elected one by one they got different owners, so two nodes answered ARP for one address.
/// Now one node answers, one eligible for both; when none is, nobody answers and says why.
#[test]
fn services_sharing_an_address_through_different_advertisements_get_one_owner() {
    let mut primary = ad("primary", "lan");
    primary.service_selectors = vec![selector(&[("app", "a")])];
    primary.node_selectors = vec![selector(&[("role", "primary")])];
    let mut secondary = ad("secondary", "lan");
    secondary.service_selectors = vec![selector(&[("app", "b")])];
    secondary.node_selectors = vec![selector(&[("edge", "yes")])];
    let cfg = config(vec![primary, secondary]);
    let svc = |name: &str, app: &str, addr: &str| Service {
        name: name.into(),
        labels: labels(&[("app", app)]),
        ..service(addr)
    };
    let mut split_before = 0;
    for i in 0..50 {
        let addr: IpAddr = format!("10.0.1.{i}").parse().unwrap();
        let services = vec![
            svc("default/a", "a", &addr.to_string()),
            svc("default/b", "b", &addr.to_string()),
        ];
        // Two nodes only primary, two only edge, and (in the second half) one both.
        let mut nodes = vec![
            node("p1", &[("role", "primary")]),
            node("p2", &[("role", "primary")]),
            node("e1", &[("edge", "yes")]),
            node("e2", &[("edge", "yes")]),
        ];
        if i >= 25 {
            nodes.push(node("both", &[("role", "primary"), ("edge", "yes")]));
        }
        let live = all_live(&nodes);
        let shared = SharedAddresses::of(&services);
        let cluster = Cluster {
            shared: &shared,
            config: &cfg,
            nodes: &nodes,
            live: &live,
            ignore_exclude_label: false,
        };
        // What the election did before: each Service on its own.
        let alone = Cluster {
            shared: &Default::default(),
            ..cluster
        };
        let before = answering(&alone, &services, addr).len();
        // Disjoint node sets always split; with a node in both, when it does not rank first.
        assert!(i >= 25 || before == 2, "{addr}: {before}");
        if before > 1 {
            split_before += 1;
        }
        let now = answering(&cluster, &services, addr);
        if i >= 25 {
            assert_eq!(now, BTreeSet::from(["both".to_string()]), "{addr}");
            for s in &services {
                assert_eq!(owner(&cluster, s, addr).unwrap().node, "both");
            }
        } else {
            assert!(now.is_empty(), "{addr}: {now:?}");
            assert_eq!(
                owner(&cluster, &services[0], addr),
                Err(Reason::NoCommonNode {
                    sharing_with: vec!["default/b".into()]
                })
            );
        }
    }
    // 44 of the 50 (all 25 disjoint ones, 19 of the others) were split before.
    assert_eq!(split_before, 44);
}

/// externalTrafficPolicy=Local Services sharing an address (MetalLB #558): the owner has
/// local endpoints of both; a Service without endpoints, or matched by no L2Advertisement,
/// does not hold the others back.
#[test]
fn local_services_sharing_an_address_agree_and_idle_siblings_do_not_block() {
    let cfg = config(vec![ad("l2", "lan")]);
    let nodes: Vec<Node> = ["n1", "n2", "n3", "n4"]
        .iter()
        .map(|n| node(n, &[]))
        .collect();
    let live = all_live(&nodes);
    for i in 0..30 {
        let addr = format!("10.0.2.{i}");
        let local = |name: &str, on: &[&str]| Service {
            name: name.into(),
            traffic_policy: TrafficPolicy::Local,
            local_endpoint_nodes: on.iter().map(|n| n.to_string()).collect(),
            ..service(&addr)
        };
        let services = vec![
            local("default/tcp", &["n1", "n2", "n3"]),
            local("default/udp", &["n2", "n3", "n4"]),
        ];
        let shared = SharedAddresses::of(&services);
        let cluster = Cluster {
            shared: &shared,
            config: &cfg,
            nodes: &nodes,
            live: &live,
            ignore_exclude_label: false,
        };
        let now = answering(&cluster, &services, ip(&addr));
        assert_eq!(now.len(), 1, "{addr}: {now:?}");
        let owner_node = now.into_iter().next().unwrap();
        assert!(owner_node == "n2" || owner_node == "n3", "{owner_node}");
        assert_eq!(owner_node, hash_first(&["n2", "n3"], ip(&addr)));

        // A sibling with no endpoint at all, and one in a pool no L2Advertisement covers,
        // leave the first Service's election as if alone.
        let idle = Service {
            has_serving_endpoint: false,
            ..local("default/idle", &[])
        };
        let bgp_only = Service {
            pool: "bgp-only".into(),
            ..local("default/bgp", &[])
        };
        let services = vec![local("default/tcp", &["n1", "n2", "n3"]), idle, bgp_only];
        let shared = SharedAddresses::of(&services);
        let cluster = Cluster {
            shared: &shared,
            ..cluster
        };
        assert_eq!(
            owner(&cluster, &services[0], ip(&addr)).unwrap().node,
            hash_first(&["n1", "n2", "n3"], ip(&addr))
        );
    }
}

/// The owner of a shared address does not move when another holder's endpoints come and go
/// (the election key is chosen from every holder), and a holder no live node can serve holds
/// nobody back.
#[test]
fn a_shared_address_owner_stays_when_a_sibling_flaps() {
    let cfg = config(vec![ad("l2", "lan")]);
    let names = ["a", "b", "c", "d", "e"];
    let nodes: Vec<Node> = names.iter().map(|n| node(n, &[])).collect();
    let live = all_live(&nodes);
    let mut moved_by_key = 0;
    for i in 0..40 {
        let (first, shared_ip) = (format!("10.0.3.{i}"), format!("10.0.4.{i}"));
        let mut s = service(&first);
        s.name = "default/s".into();
        s.ips.push(ip(&shared_ip));
        let o = |serving: bool| Service {
            name: "default/o".into(),
            has_serving_endpoint: serving,
            ..service(&shared_ip)
        };
        let owner_with = |serving: bool| {
            let services = vec![s.clone(), o(serving)];
            let shared = SharedAddresses::of(&services);
            let cluster = Cluster {
                shared: &shared,
                config: &cfg,
                nodes: &nodes,
                live: &live,
                ignore_exclude_label: false,
            };
            owner(&cluster, &s, ip(&shared_ip)).unwrap().node
        };
        assert_eq!(owner_with(true), owner_with(false), "{shared_ip}");
        if hash_first(&names, ip(&first)) != hash_first(&names, ip(&shared_ip)) {
            moved_by_key += 1;
        }
    }
    // The two keys pick different nodes for most pairs: the test would see a move.
    assert!(moved_by_key > 20, "{moved_by_key}");

    // A Local sibling whose endpoints are only on a node that is not live.
    let services = vec![
        Service {
            name: "default/web".into(),
            ..service("10.0.5.1")
        },
        Service {
            name: "default/stuck".into(),
            traffic_policy: TrafficPolicy::Local,
            local_endpoint_nodes: ["gone".to_string()].into(),
            ..service("10.0.5.1")
        },
    ];
    let shared = SharedAddresses::of(&services);
    let cluster = Cluster {
        shared: &shared,
        config: &cfg,
        nodes: &nodes,
        live: &live,
        ignore_exclude_label: false,
    };
    assert_eq!(
        owner(&cluster, &services[0], ip("10.0.5.1")).unwrap().node,
        hash_first(&names, ip("10.0.5.1"))
    );
}
