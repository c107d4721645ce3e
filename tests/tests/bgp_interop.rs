//! The BGP speaker against real routers (BIRD, FRR, GoBGP) in the lab: sessions, the routes
//! routers hold (prefix, next hop, AS path, communities, local-pref), withdrawals on removal,
//! on graceful stop and on silence (hold timer), reconnect after a router restart, and clear
//! errors with backoff on misconfiguration. One daemon per test.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferrolb_announce::bgp::message::LargeCommunity as WireLarge;
use ferrolb_announce::bgp::{FsmConfig, PeerConfig, RouteAttrs, SessionStatus, State, Table};
use ferrolb_tests::bgp_session::Sessions;
use ferrolb_tests::lab::{
    self, Afi, BgpConfig, BgpDaemon, Bird, Community, Frr, GoBgp, Host, Lab, LabSpec,
    LargeCommunity, Neighbor,
};
use ipnet::IpNet;

const T: Duration = Duration::from_secs(10);

/// One session of ours in a node's namespace (see `ferrolb_tests::bgp_session`).
struct Speaker(Sessions);

impl Speaker {
    fn start(node: &Host, cfg: PeerConfig, routes: Table) -> Speaker {
        Speaker(Sessions::one(node, cfg, routes))
    }

    fn status(&self) -> SessionStatus {
        self.0.status(0).expect("no status yet")
    }

    fn wait_state(&self, want: State, timeout: Duration) {
        self.0.wait_state(0, want, timeout);
    }

    fn set_routes(&self, t: Table) {
        self.0.set_routes(0, t);
    }

    /// Graceful stop (Cease), waits for the thread.
    fn stop(self) {
        self.0.stop();
    }
}

fn fsm(local: u32, peer: u32, id: std::net::Ipv4Addr) -> FsmConfig {
    let mut f = FsmConfig::new(local, peer, id);
    f.hold_time = 3;
    f.connect_retry = Duration::from_secs(1);
    f.idle_hold = Duration::from_millis(500);
    f.idle_hold_max = Duration::from_secs(4);
    f
}

fn table(prefixes: &[&str], attrs: &RouteAttrs) -> Table {
    prefixes
        .iter()
        .map(|p| (p.parse().unwrap(), attrs.clone()))
        .collect()
}

fn attrs() -> RouteAttrs {
    RouteAttrs {
        local_pref: Some(250),
        communities: [(65000u32 << 16) | 1].into_iter().collect(),
        large_communities: [WireLarge {
            global: 65000,
            local1: 7,
            local2: 8,
        }]
        .into_iter()
        .collect(),
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn has(d: &impl BgpDaemon, afi: Afi, p: &str) -> bool {
    d.routes(afi)
        .unwrap()
        .iter()
        .any(|r| r.prefix == net(p) && r.from.is_some())
}

#[test]
fn bgp_bird_ebgp_md5_routes_withdrawals_and_cease() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let bird = Bird::start(
        router,
        &BgpConfig::new(64512, router.ipv4)
            .neighbor(Neighbor::new(node.ipv4, 64513).password("s3cret").passive()),
    )
    .unwrap();
    let mut cfg = PeerConfig::new(fsm(64513, 64512, node.ipv4), router.ipv4.into());
    cfg.password = Some("s3cret".into());
    cfg.source_address = Some(node.ipv4.into());
    let sp = Speaker::start(
        node,
        cfg,
        table(&["10.96.0.1/32", "10.96.0.2/32"], &attrs()),
    );
    bird.wait_established(node.ipv4.into(), T).unwrap();
    let r = bird.wait_route(net("10.96.0.1/32"), T).unwrap();
    assert_eq!(r.next_hops, vec![IpAddr::from(node.ipv4)]);
    assert_eq!(r.as_path, vec![64513]);
    assert_eq!(r.communities, vec![Community::new(65000, 1)]);
    assert_eq!(r.large_communities, vec![LargeCommunity::new(65000, 7, 8)]);
    bird.wait_route(net("10.96.0.2/32"), T).unwrap();
    sp.wait_state(State::Established, T);
    let st = sp.status();
    assert_eq!(st.prefixes_sent, 2);
    assert!(st.uptime().is_some());

    // Removal: one incremental UPDATE, the other prefix stays, the session stays up.
    let updates_before = sp.status().updates_sent;
    sp.set_routes(table(&["10.96.0.1/32"], &attrs()));
    bird.wait_routes(Afi::Ipv4, "10.96.0.2/32 withdrawn", T, |rs| {
        !rs.iter().any(|r| r.prefix == net("10.96.0.2/32"))
    })
    .unwrap();
    assert!(has(&bird, Afi::Ipv4, "10.96.0.1/32"));
    std::thread::sleep(Duration::from_millis(200));
    let st = sp.status();
    assert_eq!(st.updates_sent, updates_before + 1);
    assert_eq!(st.flaps, 0);

    // Graceful stop: Cease, BIRD drops the route at once (well before any hold timer).
    let t0 = Instant::now();
    sp.stop();
    bird.wait_routes(Afi::Ipv4, "all withdrawn", T, |rs| {
        rs.iter().all(|r| r.from.is_none())
    })
    .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    let s = bird.session(node.ipv4.into()).unwrap().unwrap();
    assert!(!s.is_established());
    assert!(
        bird.log_tail().contains("Administrative shutdown") || bird.log_tail().contains("shutdown"),
        "{}",
        bird.log_tail()
    );
}

/// MetalLB drop-in (issue 13, class 8): a `sourceAddress` this node does not have is not an
/// error that retries forever; the kernel chooses the source (as the CRD says) and the session
/// comes up from the node's own address.
#[test]
fn bgp_a_source_address_the_node_lacks_lets_the_kernel_choose() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let bird = Bird::start(
        router,
        &BgpConfig::new(64512, router.ipv4).neighbor(Neighbor::new(node.ipv4, 64513).passive()),
    )
    .unwrap();
    let mut cfg = PeerConfig::new(fsm(64513, 64512, node.ipv4), router.ipv4.into());
    cfg.source_address = Some("10.0.0.249".parse().unwrap()); // on no interface of the node
    let sp = Speaker::start(node, cfg, table(&["10.96.3.1/32"], &attrs()));
    bird.wait_established(node.ipv4.into(), T).unwrap();
    sp.wait_state(State::Established, T);
    let r = bird.wait_route(net("10.96.3.1/32"), T).unwrap();
    assert_eq!(r.next_hops, vec![IpAddr::from(node.ipv4)]);
    sp.stop();
}

#[test]
fn bgp_frr_ibgp_local_pref_and_communities() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let frr = Frr::start(
        router,
        &BgpConfig::new(64512, router.ipv4).neighbor(Neighbor::new(node.ipv4, 64512).passive()),
    )
    .unwrap();
    let sp = Speaker::start(
        node,
        PeerConfig::new(fsm(64512, 64512, node.ipv4), router.ipv4.into()),
        table(&["10.96.1.1/32"], &attrs()),
    );
    frr.wait_established(node.ipv4.into(), T).unwrap();
    let r = frr.wait_route(net("10.96.1.1/32"), T).unwrap();
    assert_eq!(r.next_hops, vec![IpAddr::from(node.ipv4)]);
    assert_eq!(r.local_pref, Some(250));
    assert!(
        r.as_path.is_empty(),
        "iBGP: empty AS_PATH, got {:?}",
        r.as_path
    );
    assert_eq!(r.communities, vec![Community::new(65000, 1)]);
    assert_eq!(r.large_communities, vec![LargeCommunity::new(65000, 7, 8)]);
    sp.stop();
    frr.wait_routes(Afi::Ipv4, "withdrawn", T, |rs| {
        rs.iter().all(|r| r.from.is_none())
    })
    .unwrap();
}

#[test]
fn bgp_gobgp_ipv6_session_carries_a_128() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let gobgp = GoBgp::start(
        router,
        &BgpConfig::new(64512, router.ipv4).neighbor(
            Neighbor::new(node.ipv6, 4_200_000_001)
                .password("v6pw")
                .passive(),
        ),
    )
    .unwrap();
    let mut cfg = PeerConfig::new(fsm(4_200_000_001, 64512, node.ipv4), router.ipv6.into());
    cfg.password = Some("v6pw".into());
    let sp = Speaker::start(
        node,
        cfg,
        table(&["fd00:96::1/128", "10.96.2.1/32"], &attrs()),
    );
    gobgp.wait_established(node.ipv6.into(), T).unwrap();
    let r = gobgp.wait_route(net("fd00:96::1/128"), T).unwrap();
    assert_eq!(r.next_hops, vec![IpAddr::from(node.ipv6)]);
    assert_eq!(r.as_path, vec![4_200_000_001], "4-octet ASN in AS_PATH");
    assert_eq!(r.communities, vec![Community::new(65000, 1)]);
    sp.set_routes(Table::new());
    gobgp
        .wait_routes(Afi::Ipv6, "withdrawn", T, |rs| {
            rs.iter().all(|r| r.from.is_none())
        })
        .unwrap();
    sp.stop();
}

#[test]
fn bgp_bird_hold_timer_withdraws_a_silent_speaker_and_reconnects_after_restart() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let conf =
        BgpConfig::new(64512, router.ipv4).neighbor(Neighbor::new(node.ipv4, 64513).passive());
    let mut bird = Bird::start(router, &conf).unwrap();
    let sp = Speaker::start(
        node,
        PeerConfig::new(fsm(64513, 64512, node.ipv4), router.ipv4.into()),
        table(&["10.96.3.1/32"], &attrs()),
    );
    bird.wait_route(net("10.96.3.1/32"), T).unwrap();

    // Router restart: the speaker notices, retries, and re-advertises.
    bird.stop();
    sp.wait_state(State::Active, T);
    let bird2 = Bird::start(router, &conf).unwrap();
    bird2.wait_route(net("10.96.3.1/32"), T).unwrap();
    sp.wait_state(State::Established, T);
    assert_eq!(sp.status().flaps, 1);
    drop(bird);

    // The node goes silent (link down, like a dead node): BIRD's 3 s hold timer withdraws.
    node.link_down().unwrap();
    let t0 = Instant::now();
    bird2
        .wait_routes(Afi::Ipv4, "withdrawn by hold timer", T, |rs| {
            rs.iter().all(|r| r.from.is_none())
        })
        .unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    node.link_up().unwrap();
    drop(sp);
}

/// A wrong ASN and a wrong password: clear errors in the session status, retries with
/// backoff (not a tight loop), and the router never sees the session up.
fn wrong_asn_and_wrong_password<D: BgpDaemon>(
    start: fn(&Host, &BgpConfig) -> Result<D, lab::LabError>,
) {
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let (router, n0, n1) = (lab.router(), lab.node(0), lab.node(1));
    let daemon = start(
        router,
        &BgpConfig::new(64512, router.ipv4)
            .neighbor(Neighbor::new(n0.ipv4, 64513).passive())
            .neighbor(Neighbor::new(n1.ipv4, 64514).password("right").passive()),
    )
    .unwrap();
    // n0 expects the router to be AS 65000: we refuse its OPEN with Bad Peer AS.
    let wrong_asn = Speaker::start(
        n0,
        PeerConfig::new(fsm(64513, 65000, n0.ipv4), router.ipv4.into()),
        Table::new(),
    );
    let mut cfg = PeerConfig::new(fsm(64514, 64512, n1.ipv4), router.ipv4.into());
    cfg.password = Some("wrong".into());
    let wrong_pw = Speaker::start(n1, cfg, Table::new());
    std::thread::sleep(Duration::from_secs(8));
    let kind = daemon.kind();
    let a = wrong_asn.status();
    assert_ne!(a.state, State::Established);
    let e = a.last_error.clone().unwrap_or_default();
    assert!(e.contains("bad peer AS"), "{kind}: {a:?}");
    // Backoff: 500 ms doubling to 4 s gives at most a handful of attempts in 8 s.
    assert!(a.failures >= 2 && a.failures <= 6, "{kind}: {a:?}");
    let p = wrong_pw.status();
    assert_ne!(p.state, State::Established);
    assert!(
        p.last_error.clone().unwrap_or_default().contains("MD5"),
        "{kind}: {p:?}"
    );
    assert!(p.failures >= 1 && p.failures <= 5, "{kind}: {p:?}");
    for n in [n0, n1] {
        let s = daemon.session(n.ipv4.into()).unwrap();
        assert!(
            !s.as_ref().is_some_and(|s| s.is_established()),
            "{kind}: {s:?}"
        );
    }
    wrong_asn.stop();
    wrong_pw.stop();
}

#[test]
fn bgp_wrong_asn_and_wrong_password_give_clear_errors_and_backoff_bird() {
    if !lab::require_lab() {
        return;
    }
    wrong_asn_and_wrong_password(Bird::start);
}

#[test]
fn bgp_wrong_asn_and_wrong_password_give_clear_errors_and_backoff_frr() {
    if !lab::require_lab() {
        return;
    }
    wrong_asn_and_wrong_password(Frr::start);
}

#[test]
fn bgp_wrong_asn_and_wrong_password_give_clear_errors_and_backoff_gobgp() {
    if !lab::require_lab() {
        return;
    }
    wrong_asn_and_wrong_password(GoBgp::start);
}

/// One session of the matrix: which node, which family carries it, iBGP or eBGP, with MD5 or
/// without, and the one prefix it advertises.
struct Combo {
    node: usize,
    v6: bool,
    ibgp: bool,
    md5: bool,
    prefix: &'static str,
}

/// Per daemon, four sessions at once covering each dimension both ways within each family:
/// IPv4 iBGP + MD5, IPv4 eBGP, IPv6 eBGP, IPv6 iBGP + MD5. Each reaches Established, the
/// router holds its prefix with the node's address of that family as next hop, our LOCAL_PREF
/// on iBGP (on eBGP routers set their own; `update/tests.rs` checks none is sent), an empty
/// AS_PATH on iBGP and our ASN in it on eBGP; a Cease withdraws it.
fn session_matrix<D: BgpDaemon>(start: fn(&Host, &BgpConfig) -> Result<D, lab::LabError>) {
    const ROUTER_AS: u32 = 64512;
    let combos = [
        Combo {
            node: 0,
            v6: false,
            ibgp: true,
            md5: true,
            prefix: "10.97.0.1/32",
        },
        Combo {
            node: 0,
            v6: true,
            ibgp: false,
            md5: false,
            prefix: "fd00:97::1/128",
        },
        Combo {
            node: 1,
            v6: false,
            ibgp: false,
            md5: false,
            prefix: "10.97.1.1/32",
        },
        Combo {
            node: 1,
            v6: true,
            ibgp: true,
            md5: true,
            prefix: "fd00:97:1::1/128",
        },
    ];
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let router = lab.router();
    let local_as = |c: &Combo| {
        if c.ibgp {
            ROUTER_AS
        } else {
            64600 + c.node as u32
        }
    };
    let mut conf = BgpConfig::new(ROUTER_AS, router.ipv4);
    for c in &combos {
        let mut n = Neighbor::new(lab.node(c.node).ip(c.v6), local_as(c)).passive();
        if c.md5 {
            n = n.password(&format!("pw-{}", c.prefix));
        }
        conf = conf.neighbor(n);
    }
    let daemon = start(router, &conf).unwrap();
    let speakers: Vec<Speaker> = combos
        .iter()
        .map(|c| {
            let node = lab.node(c.node);
            let mut cfg = PeerConfig::new(fsm(local_as(c), ROUTER_AS, node.ipv4), router.ip(c.v6));
            cfg.source_address = Some(node.ip(c.v6));
            if c.md5 {
                cfg.password = Some(format!("pw-{}", c.prefix));
            }
            Speaker::start(node, cfg, table(&[c.prefix], &attrs()))
        })
        .collect();
    for (c, sp) in combos.iter().zip(&speakers) {
        let node = lab.node(c.node);
        let what = format!(
            "{} {} {} {}",
            daemon.kind(),
            if c.v6 { "IPv6" } else { "IPv4" },
            if c.ibgp { "iBGP" } else { "eBGP" },
            if c.md5 { "MD5" } else { "no MD5" }
        );
        daemon.wait_established(node.ip(c.v6), T).unwrap();
        sp.wait_state(State::Established, T);
        let r = daemon.wait_route(net(c.prefix), T).unwrap();
        assert_eq!(r.next_hops, vec![node.ip(c.v6)], "{what}: {r:?}");
        if c.ibgp {
            assert_eq!(r.local_pref, Some(250), "{what}: {r:?}");
            assert!(r.as_path.is_empty(), "{what}: {r:?}");
        } else {
            assert_eq!(r.as_path, vec![local_as(c)], "{what}: {r:?}");
        }
        assert_eq!(
            r.communities,
            vec![Community::new(65000, 1)],
            "{what}: {r:?}"
        );
    }
    for sp in speakers {
        sp.stop();
    }
    for afi in [Afi::Ipv4, Afi::Ipv6] {
        daemon
            .wait_routes(afi, "every prefix withdrawn after Cease", T, |rs| {
                rs.iter().all(|r| r.from.is_none())
            })
            .unwrap();
    }
}

#[test]
fn bgp_session_matrix_bird() {
    if !lab::require_lab() {
        return;
    }
    session_matrix(Bird::start);
}

#[test]
fn bgp_session_matrix_frr() {
    if !lab::require_lab() {
        return;
    }
    session_matrix(Frr::start);
}

#[test]
fn bgp_session_matrix_gobgp() {
    if !lab::require_lab() {
        return;
    }
    session_matrix(GoBgp::start);
}
