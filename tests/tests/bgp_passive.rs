//! The BGP speaker's passive side and its behaviour with a peer that stops reading, in the
//! lab against real routers (BIRD, FRR, GoBGP) and a scripted peer:
//! - passive open: the router connects to the node's listener on port 179 (IPv4 with TCP MD5,
//!   IPv6 without) while our sessions never connect themselves;
//! - a collision, forced (the router's connection held back until ours is open): a Cease 6/7
//!   is exchanged, one session stays Established on one TCP connection;
//! - a connection from an address that is no configured peer is reset before any BGP byte;
//! - a stalled peer (handshake done, then it reads and sends nothing) affects only its own
//!   session: the hold timer ends it with a NOTIFICATION attempt, a stop takes about a second,
//!   and a session to BIRD on the same runtime keeps its routes flowing.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferrolb_announce::bgp::{FsmConfig, PeerConfig, RouteAttrs, State, Table};
use ferrolb_tests::bgp_session::{Sessions, Start};
use ferrolb_tests::lab::{
    self, Afi, BgpConfig, BgpDaemon, Bird, Frr, GoBgp, Host, Lab, LabSpec, Neighbor,
};
use ferrolb_tests::scripted_peer::{self, Identity};
use ipnet::IpNet;

const T: Duration = Duration::from_secs(15);
const ROUTER_AS: u32 = 64512;
const NODE_AS: u32 = 64600;
const BGP_PORT: u16 = 179;

fn fsm(id: Ipv4Addr, passive: bool) -> FsmConfig {
    let mut f = FsmConfig::new(NODE_AS, ROUTER_AS, id);
    f.hold_time = 3;
    f.connect_retry = Duration::from_secs(1);
    f.idle_hold = Duration::from_millis(500);
    f.idle_hold_max = Duration::from_secs(2);
    f.passive = passive;
    f
}

fn table(prefix: &str) -> Table {
    [(prefix.parse().unwrap(), RouteAttrs::default())]
        .into_iter()
        .collect()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Established TCP connections in `host` between it and `peer` on port 179.
fn bgp_connections(host: &Host, peer: IpAddr) -> usize {
    let out = host
        .exec_ok(&["ss", "-Htn", "state", "established"])
        .unwrap_or_default();
    let peer_s = match peer {
        IpAddr::V4(a) => format!("{a}:"),
        IpAddr::V6(a) => format!("[{a}]:"),
    };
    out.lines()
        .filter(|l| l.contains(&peer_s) && l.contains(":179"))
        .count()
}

/// Bytes in `host`'s send queues of established connections to remote port `port`.
fn send_queue(host: &Host, port: u16) -> usize {
    let out = host
        .exec_ok(&["ss", "-Htn", "state", "established"])
        .unwrap_or_default();
    out.lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(3)
                .is_some_and(|p| p.ends_with(&format!(":{port}")))
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        .sum()
}

/// The router connects; our sessions only listen (node 0: IPv4 with MD5 and IPv6 without).
/// Both come up and the router holds both prefixes; an unknown address's connection to the
/// node's port 179 is reset without a byte; a Cease withdraws both prefixes.
fn passive_open<D: BgpDaemon>(start: fn(&Host, &BgpConfig) -> Result<D, lab::LabError>) {
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let (router, node, stranger) = (lab.router(), lab.node(0), lab.node(1));
    // Our listener first: the routers retry every second, but need not.
    let mut v4 = PeerConfig::new(fsm(node.ipv4, true), router.ipv4.into());
    v4.password = Some("passive-pw".into());
    let v6 = PeerConfig::new(fsm(node.ipv4, true), router.ipv6.into());
    let ours = Sessions::start(
        node,
        Start {
            sessions: vec![(v4, table("10.98.0.1/32")), (v6, table("fd00:98::1/128"))],
            listen: Some(BGP_PORT),
            hold_incoming: false,
        },
    );
    let conf = BgpConfig::new(ROUTER_AS, router.ipv4)
        .neighbor(Neighbor::new(node.ipv4, NODE_AS).password("passive-pw"))
        .neighbor(Neighbor::new(node.ipv6, NODE_AS));
    let daemon = start(router, &conf).unwrap();
    let kind = daemon.kind();
    for (i, ip, prefix) in [
        (0, IpAddr::from(node.ipv4), "10.98.0.1/32"),
        (1, IpAddr::from(node.ipv6), "fd00:98::1/128"),
    ] {
        daemon
            .wait_established(ip, T)
            .unwrap_or_else(|e| panic!("{kind}: {e}\n{}", daemon.log_tail()));
        ours.wait_state(i, State::Established, T);
        let r = daemon.wait_route(net(prefix), T).unwrap();
        assert_eq!(r.next_hops, vec![ip], "{kind}: {r:?}");
        assert_eq!(bgp_connections(node, router.ip(ip.is_ipv6())), 1, "{kind}");
    }
    // An address that is no configured peer: reset before OPEN.
    let target = SocketAddr::new(node.ipv4.into(), BGP_PORT);
    let got = stranger
        .in_netns(move || -> std::io::Result<usize> {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut buf = [0u8; 64];
            s.read(&mut buf)
        })
        .unwrap();
    match got {
        Ok(0) => {}
        Ok(n) => panic!("{kind}: an unknown address got {n} bytes from the listener"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{kind}: {e}"),
    }
    lab::wait_until("the refusal counted", T, || ours.refused() >= 1).unwrap();
    ours.stop();
    for afi in [Afi::Ipv4, Afi::Ipv6] {
        daemon
            .wait_routes(afi, "withdrawn after Cease", T, |rs| {
                rs.iter().all(|r| r.from.is_none())
            })
            .unwrap();
    }
}

#[test]
fn bgp_passive_open_bird() {
    if !lab::require_lab() {
        return;
    }
    passive_open(Bird::start);
}

#[test]
fn bgp_passive_open_frr() {
    if !lab::require_lab() {
        return;
    }
    passive_open(Frr::start);
}

#[test]
fn bgp_passive_open_gobgp() {
    if !lab::require_lab() {
        return;
    }
    passive_open(GoBgp::start);
}

/// A collision, forced: the router's connection to the node is accepted by the listener but
/// held from the session until the session's own connection has reached OpenSent (or beyond),
/// so both connections exist at once on both sides. Two nodes: one with a BGP identifier above
/// the router's (its own connection should survive), one below (the router's should). Whichever
/// side resolves it (RFC 4271 6.8), a Cease / Connection Collision Resolution (6/7) is exchanged
/// (GoBGP 3.10 instead closes the second connection at once, without a NOTIFICATION), and each
/// pair ends with one session Established on both sides on one TCP connection, stable for three
/// hold times. (Seen with FRR 8.4: when our side closes FRR's connection with the Cease while our
/// own is already Established, FRR sometimes drops the Established session too, once; it comes
/// back at once. The test prints the flaps and requires none after the session settles.) (Which side's rule fires depends on who sees both OPENs first; the
/// FSM's own resolution is unit-tested both ways in `announce/src/bgp/fsm/tests.rs`.)
fn collision<D: BgpDaemon>(start: fn(&Host, &BgpConfig) -> Result<D, lab::LabError>) {
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .unwrap();
    let router = lab.router();
    let rid = u32::from(router.ipv4);
    let ids = [Ipv4Addr::from(rid + 1000), Ipv4Addr::from(rid - 1)];
    let ours: Vec<Sessions> = (0..2)
        .map(|i| {
            let cfg = PeerConfig::new(fsm(ids[i], false), router.ipv4.into());
            Sessions::start(
                lab.node(i),
                Start {
                    sessions: vec![(cfg, table(&format!("10.98.{i}.1/32")))],
                    listen: Some(BGP_PORT),
                    hold_incoming: true,
                },
            )
        })
        .collect();
    let conf = BgpConfig::new(ROUTER_AS, router.ipv4)
        .neighbor(Neighbor::new(lab.node(0).ipv4, NODE_AS))
        .neighbor(Neighbor::new(lab.node(1).ipv4, NODE_AS));
    let daemon = start(router, &conf).unwrap();
    let kind = daemon.kind();
    for (i, s) in ours.iter().enumerate() {
        // Our own connection while the router's is held: open, or closed by the router.
        s.wait(
            0,
            "our connection open, or refused by the router",
            T,
            |st| {
                matches!(
                    st.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) || st.failures >= 2
            },
        );
        assert!(
            s.deliver(0),
            "{kind}: node {i}: the router never connected to the node"
        );
    }
    for (i, s) in ours.iter().enumerate() {
        let node = lab.node(i);
        daemon
            .wait_established(node.ipv4.into(), T)
            .unwrap_or_else(|e| panic!("{kind}: {e}\n{}", daemon.log_tail()));
        s.wait_state(0, State::Established, T);
        daemon
            .wait_route(net(&format!("10.98.{i}.1/32")), T)
            .unwrap();
    }
    // Settled: from here nothing may change for three hold times.
    let settled: Vec<u64> = ours.iter().map(|s| s.status(0).unwrap().flaps).collect();
    std::thread::sleep(Duration::from_secs(9));
    for (i, s) in ours.iter().enumerate() {
        let node = lab.node(i);
        let st = s.status(0).unwrap();
        assert!(
            st.is_up() && st.flaps == settled[i],
            "{kind}: node {i} (id {}): {st:?}",
            ids[i]
        );
        let cease = st
            .last_notification
            .as_deref()
            .is_some_and(|n| n.contains("connection collision resolution (6/7)"));
        eprintln!(
            "{kind}: node {i} (id {} vs the router's {}): {}; flaps while resolving: {}",
            ids[i],
            router.ipv4,
            if cease {
                "resolved with a Cease 6/7"
            } else {
                "the router closed one of the two connections without a NOTIFICATION"
            },
            st.flaps
        );
        // GoBGP's way: our connection closed under us, no NOTIFICATION.
        let closed = st.last_notification.is_none()
            && st.last_error.as_deref() == Some("connection closed by peer or network");
        assert!(
            cease || closed,
            "{kind}: node {i} (id {}): neither a Cease 6/7 nor a closed connection: {st:?}",
            ids[i]
        );
        assert!(
            daemon
                .session(node.ipv4.into())
                .unwrap()
                .unwrap()
                .is_established(),
            "{kind}"
        );
        assert_eq!(
            bgp_connections(node, router.ipv4.into()),
            1,
            "{kind}: node {i}"
        );
    }
    for s in ours {
        s.stop();
    }
}

#[test]
fn bgp_collision_bird() {
    if !lab::require_lab() {
        return;
    }
    collision(Bird::start);
}

#[test]
fn bgp_collision_frr() {
    if !lab::require_lab() {
        return;
    }
    collision(Frr::start);
}

#[test]
fn bgp_collision_gobgp() {
    if !lab::require_lab() {
        return;
    }
    collision(GoBgp::start);
}

/// Port of the scripted (stalling) peer on the router, next to BIRD's 179.
const STALL_PORT: u16 = 1790;

/// A node runs two sessions on one runtime: to BIRD, and to a scripted peer that completes
/// the handshake and then neither reads nor sends, with a 4 KiB receive buffer, while our
/// table for it is 20,000 prefixes (about 1 MB of UPDATEs: the writer blocks). The stalled
/// session ends on its hold timer (3 s) with a NOTIFICATION attempt; meanwhile BIRD's session
/// stays up and gets a route change. The peer stalls again after the reconnect; stopping the
/// session then takes about a second (the flush bound), not the full stop timeout.
#[test]
fn bgp_a_stalled_peer_affects_only_its_own_session() {
    if !lab::require_lab() {
        return;
    }
    let lab = Lab::new(LabSpec::default()).unwrap();
    let (router, node) = (lab.router(), lab.node(0));
    let bird = Bird::start(
        router,
        &BgpConfig::new(ROUTER_AS, router.ipv4)
            .neighbor(Neighbor::new(node.ipv4, NODE_AS).passive()),
    )
    .unwrap();
    // The scripted peer: every connection gets a handshake, then silence.
    let addr = SocketAddr::new(router.ipv4.into(), STALL_PORT);
    let listener = router
        .in_netns(move || scripted_peer::listen(addr, Some(4096)))
        .unwrap()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let me = Identity {
        asn: 64700,
        id: Ipv4Addr::new(10, 255, 0, 7),
        hold_time: 3,
    };
    let peer = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let mut handshakes = 0;
        while !stop2.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    if scripted_peer::handshake(&mut s, me).is_ok() {
                        handshakes += 1;
                    }
                    held.push(s); // kept open, never read again
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        handshakes
    });
    let big: Table = (0..20_000u32)
        .map(|i| {
            let p = IpNet::new(
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) + i).into(),
                32,
            )
            .unwrap();
            (p, RouteAttrs::default())
        })
        .collect();
    let mut stalled = PeerConfig::new(
        {
            let mut f = fsm(node.ipv4, false);
            f.peer_asn = 64700.into();
            f
        },
        router.ipv4.into(),
    );
    stalled.peer_port = STALL_PORT;
    let to_bird = PeerConfig::new(fsm(node.ipv4, false), router.ipv4.into());
    let ours = Sessions::start(
        node,
        Start {
            sessions: vec![(to_bird, table("10.98.0.1/32")), (stalled, big)],
            listen: None,
            hold_incoming: false,
        },
    );
    ours.wait_state(0, State::Established, T);
    bird.wait_route(net("10.98.0.1/32"), T).unwrap();
    ours.wait_state(1, State::Established, T);
    // The stall: the table cannot all go out (bytes wait in the node's send queue). A route
    // change to BIRD still goes through.
    std::thread::sleep(Duration::from_millis(500));
    let queued = send_queue(node, STALL_PORT);
    assert!(
        queued > 10_000,
        "the stalled peer should hold up our table: {queued} bytes queued"
    );
    ours.set_routes(0, table("10.98.0.2/32"));
    bird.wait_route(net("10.98.0.2/32"), Duration::from_secs(3))
        .expect("a route change to BIRD during the stall");
    // The stalled session ends on its hold timer, with a NOTIFICATION attempt.
    let st = ours.wait(1, "hold timer expiry", Duration::from_secs(8), |s| {
        s.flaps >= 1
    });
    assert!(
        st.last_notification
            .as_deref()
            .is_some_and(|n| n.starts_with("sent: hold timer expired")),
        "{st:?}"
    );
    // It reconnects and stalls again; a stop then takes about the flush bound.
    ours.wait(1, "Established again", T, |s| s.is_up() && s.flaps >= 1);
    std::thread::sleep(Duration::from_millis(500));
    let took = ours.stop_one(1);
    assert!(
        took < Duration::from_secs(4),
        "stopping a session to a stalled peer took {took:?}"
    );
    // BIRD's session never dropped through all this.
    let st = ours.status(0).unwrap();
    assert!(st.is_up() && st.flaps == 0, "{st:?}");
    assert!(
        bird.session(node.ipv4.into())
            .unwrap()
            .unwrap()
            .is_established()
    );
    ours.stop();
    stop.store(true, Ordering::Relaxed);
    let handshakes = peer.join().unwrap();
    assert!(handshakes >= 2, "{handshakes}");
}
