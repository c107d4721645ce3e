//! The BGP daemons as real peers: sessions reach Established and routes cross, as the typed
//! readers report them.

use std::net::IpAddr;
use std::time::Duration;

use ferrolb_tests::lab::{
    self, Afi, BgpConfig, BgpDaemon, Bird, Community, Frr, GoBgp, Lab, LabSpec, LargeCommunity,
    Neighbor, Origin,
};

const T: Duration = Duration::from_secs(15);

#[test]
fn bird_and_gobgp_ebgp_carries_prefix_with_communities() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let prefix = "10.99.0.0/24".parse().unwrap();
    let gobgp = GoBgp::start(
        node,
        &BgpConfig::new(64513, node.ipv4)
            .neighbor(Neighbor::new(router.ipv4, 64512))
            .route(
                Origin::new(prefix)
                    .community(Community::new(65000, 1))
                    .large_community(LargeCommunity::new(65000, 1, 2)),
            ),
    )
    .unwrap();
    let bird = Bird::start(
        router,
        &BgpConfig::new(64512, router.ipv4)
            .neighbor(Neighbor::new(node.ipv4, 64513))
            .route(
                Origin::new("10.98.0.0/24".parse().unwrap()).community(Community::new(64512, 7)),
            ),
    )
    .unwrap();

    let s = bird.wait_established(node.ipv4.into(), T).unwrap();
    assert_eq!(s.remote_asn, Some(64513));
    let s = gobgp.wait_established(router.ipv4.into(), T).unwrap();
    assert!(s.uptime.is_some());

    let route = bird.wait_route(prefix, T).unwrap();
    assert_eq!(route.next_hops, vec![IpAddr::from(node.ipv4)]);
    assert_eq!(route.from, Some(node.ipv4.into()));
    assert_eq!(route.as_path, vec![64513]);
    assert_eq!(route.communities, vec![Community::new(65000, 1)]);
    assert_eq!(
        route.large_communities,
        vec![LargeCommunity::new(65000, 1, 2)]
    );
    assert_eq!(route.local_pref, Some(100));

    // And the other way: BIRD's static route reaches GoBGP.
    let back = gobgp
        .wait_route("10.98.0.0/24".parse().unwrap(), T)
        .unwrap();
    assert_eq!(back.next_hops, vec![IpAddr::from(router.ipv4)]);
    assert_eq!(back.communities, vec![Community::new(64512, 7)]);
    assert_eq!(back.as_path, vec![64512]);

    // A withdrawal is seen too.
    gobgp.withdraw(prefix).unwrap();
    bird.wait_routes(Afi::Ipv4, "withdrawal of 10.99.0.0/24", T, |r| {
        r.iter().all(|r| r.prefix != prefix)
    })
    .unwrap();
}

#[test]
fn frr_and_bird_with_md5_password() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let frr = Frr::start(
        router,
        &BgpConfig::new(64512, router.ipv4)
            .neighbor(Neighbor::new(node.ipv4, 64513).password("s3cret"))
            .route(
                Origin::new("10.97.0.0/24".parse().unwrap())
                    .community(Community::new(65000, 5))
                    .large_community(LargeCommunity::new(65000, 1, 5)),
            ),
    )
    .unwrap();
    let bird = Bird::start(
        node,
        &BgpConfig::new(64513, node.ipv4)
            .neighbor(Neighbor::new(router.ipv4, 64512).password("s3cret"))
            .route(Origin::new("10.96.0.0/24".parse().unwrap())),
    )
    .unwrap();
    bird.wait_established(router.ipv4.into(), T).unwrap();
    let s = frr.wait_established(node.ipv4.into(), T).unwrap();
    assert_eq!(s.remote_asn, Some(64513));

    let r = bird.wait_route("10.97.0.0/24".parse().unwrap(), T).unwrap();
    assert_eq!(r.next_hops, vec![IpAddr::from(router.ipv4)]);
    assert_eq!(r.as_path, vec![64512]);
    assert_eq!(r.communities, vec![Community::new(65000, 5)]);
    assert_eq!(r.large_communities, vec![LargeCommunity::new(65000, 1, 5)]);
    let r = frr.wait_route("10.96.0.0/24".parse().unwrap(), T).unwrap();
    assert_eq!(r.from, Some(node.ipv4.into()));
    assert_eq!(r.next_hops, vec![IpAddr::from(node.ipv4)]);
    assert_eq!(r.as_path, vec![64513]);

    // Runtime reconfiguration through vtysh: a new network is announced.
    frr.configure(&[
        "router bgp 64512",
        "address-family ipv4 unicast",
        "network 10.95.0.0/24",
    ])
    .unwrap();
    bird.wait_route("10.95.0.0/24".parse().unwrap(), T).unwrap();
    assert!(frr.configure(&["this is not a command"]).is_err());
}

#[test]
fn md5_mismatch_keeps_the_session_down() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let frr = Frr::start(
        router,
        &BgpConfig::new(64512, router.ipv4)
            .neighbor(Neighbor::new(node.ipv4, 64513).password("right")),
    )
    .unwrap();
    let bird = Bird::start(
        node,
        &BgpConfig::new(64513, node.ipv4)
            .neighbor(Neighbor::new(router.ipv4, 64512).password("wrong")),
    )
    .unwrap();
    let err = bird
        .wait_established(router.ipv4.into(), Duration::from_secs(5))
        .unwrap_err();
    assert!(matches!(err, lab::LabError::Timeout { .. }), "{err}");
    assert!(
        !frr.session(node.ipv4.into())
            .unwrap()
            .unwrap()
            .is_established()
    );
}

#[test]
fn ipv6_session_carries_ipv6_prefix() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let prefix = "fd00:99::/64".parse().unwrap();
    let gobgp = GoBgp::start(
        node,
        &BgpConfig::new(64513, node.ipv4)
            .neighbor(Neighbor::new(router.ipv6, 64512))
            .route(Origin::new(prefix).community(Community::new(65000, 6))),
    )
    .unwrap();
    let bird = Bird::start(
        router,
        &BgpConfig::new(64512, router.ipv4).neighbor(Neighbor::new(node.ipv6, 64513)),
    )
    .unwrap();
    bird.wait_established(node.ipv6.into(), T).unwrap();
    gobgp.wait_established(router.ipv6.into(), T).unwrap();
    let r = bird.wait_route(prefix, T).unwrap();
    assert_eq!(r.prefix, prefix);
    assert!(r.next_hops.contains(&IpAddr::from(node.ipv6)), "{r:?}");
    assert_eq!(r.communities, vec![Community::new(65000, 6)]);
    // Nothing IPv6 leaks into the IPv4 table.
    assert!(bird.routes(Afi::Ipv4).unwrap().is_empty());
}

#[test]
fn frr_ipv6_session_with_gobgp() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let prefix = "fd00:98::/64".parse().unwrap();
    let gobgp = GoBgp::start(
        node,
        &BgpConfig::new(64513, node.ipv4)
            .neighbor(Neighbor::new(router.ipv6, 64512))
            .route(Origin::new(prefix).large_community(LargeCommunity::new(65000, 2, 3))),
    )
    .unwrap();
    let frr = Frr::start(
        router,
        &BgpConfig::new(64512, router.ipv4).neighbor(Neighbor::new(node.ipv6, 64513)),
    )
    .unwrap();
    frr.wait_established(node.ipv6.into(), T).unwrap();
    let r = frr.wait_route(prefix, T).unwrap();
    assert!(r.next_hops.contains(&IpAddr::from(node.ipv6)), "{r:?}");
    assert_eq!(r.from, Some(node.ipv6.into()));
    assert_eq!(r.large_communities, vec![LargeCommunity::new(65000, 2, 3)]);
    drop(gobgp);
}

#[test]
fn frr_bfdd_peers_come_up() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let mut a = Frr::start(router, &BgpConfig::new(64512, router.ipv4)).unwrap();
    let mut b = Frr::start(node, &BgpConfig::new(64513, node.ipv4)).unwrap();
    a.start_bfdd(&[node.ipv4.into()]).unwrap();
    b.start_bfdd(&[router.ipv4.into()]).unwrap();
    lab::wait_until("BFD session up on both sides", T, || {
        let up = |f: &Frr| {
            f.bfd_peers()
                .map(|p| p.iter().any(|p| p.status == "up"))
                .unwrap_or(false)
        };
        up(&a) && up(&b)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.log_tail(), b.log_tail()));
    // Cutting the node's link takes the session down on the router.
    node.link_down().unwrap();
    lab::wait_until("BFD session down on the router", T, || {
        a.bfd_peers()
            .map(|p| p.iter().all(|p| p.status != "up"))
            .unwrap_or(false)
    })
    .unwrap();
}
