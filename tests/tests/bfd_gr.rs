//! BFD and BGP graceful restart against real routers (issue 14): the `ferrolb` binary
//! (standalone mode, one host) in a lab node, BIRD 2 and FRR (bgpd + bfdd + zebra) as the
//! router.
//!
//! - BFD comes up with each, started from either side (our `passiveMode` or the router's), and
//!   a cut node link takes the node's routes off the router long before the 90 s hold time
//!   would; the link back brings them back.
//! - Graceful restart: SIGTERM and a new process on the same node leave the route at the router
//!   the whole time (the router keeps it as stale, then gets it again with End-of-RIB); without
//!   graceful restart the same restart withdraws it (the Cease), which is what the check can
//!   see.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrolb_tests::bgp_host::{self, HostConfig, NODE_ASN as ASN, ROUTER_ASN};
use ferrolb_tests::l2bench::ferrolb_bin;
use ferrolb_tests::lab::{
    self, Bfd, BgpConfig, BgpDaemon, Bird, Frr, Host, Lab, LabSpec, Neighbor, Process, wait_until,
};

const PREFIX: &str = "10.100.0.0/32";

fn has_route(router: &dyn BgpDaemon) -> bool {
    bgp_host::has_route(router, PREFIX)
}

/// The host's directory: the router as BGPPeer (hold time 90 s), optionally a BFDProfile
/// (`passive`) and graceful restart.
fn write_config(dir: &Path, router: IpAddr, node: &str, bfd_passive: Option<bool>, gr: bool) {
    let mut c = HostConfig::new(router);
    c.bfd_profile = bfd_passive.map(|p| format!("{{passiveMode: {p}}}"));
    c.graceful_restart = gr;
    c.write(dir, node).unwrap();
}

fn spawn(node: &Host, bin: &Path, conf: &Path) -> Process {
    bgp_host::spawn(node, bin, conf).unwrap()
}

/// The router's BFD session with `node` is up.
fn bfd_up(router: &Router, node: IpAddr) -> bool {
    match router {
        Router::Bird(b) => b
            .birdc(&["show", "bfd", "sessions"])
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&node.to_string()) && l.contains(" Up ")),
        Router::Frr(f) => f
            .bfd_peers()
            .unwrap_or_default()
            .iter()
            .any(|p| p.peer == node && p.status == "up"),
    }
}

enum Router {
    Bird(Bird),
    Frr(Frr),
}

impl Router {
    fn start(kind: &str, host: &Host, node: IpAddr, bfd: Bfd) -> Router {
        let cfg = BgpConfig::new(ROUTER_ASN, host.ipv4)
            .neighbor(Neighbor::new(node, ASN).passive().bfd(bfd));
        match kind {
            "bird" => Router::Bird(Bird::start(host, &cfg).unwrap()),
            _ => Router::Frr(Frr::start(host, &cfg).unwrap()),
        }
    }

    fn daemon(&self) -> &dyn BgpDaemon {
        match self {
            Router::Bird(b) => b,
            Router::Frr(f) => f,
        }
    }
}

struct Node {
    lab: Lab,
    conf: PathBuf,
    bin: PathBuf,
}

impl Node {
    fn new() -> Node {
        let lab = Lab::new(LabSpec {
            nodes: 1,
            ..Default::default()
        })
        .unwrap();
        let conf = lab.node(0).workdir().join("conf");
        Node {
            lab,
            conf,
            bin: ferrolb_bin(),
        }
    }

    fn host(&self) -> &Host {
        self.lab.node(0)
    }

    fn ip(&self) -> IpAddr {
        IpAddr::V4(self.host().ipv4)
    }
}

/// BFD up with `kind`, started from the side that is not passive; a cut node link takes the
/// route off the router through BFD (the 90 s hold time would take far longer); back again.
fn bfd_case(kind: &str, ours_passive: bool, router_bfd: Bfd) {
    let n = Node::new();
    let router_host = n.lab.router();
    write_config(
        &n.conf,
        IpAddr::V4(router_host.ipv4),
        &n.host().name,
        Some(ours_passive),
        false,
    );
    let router = Router::start(kind, router_host, n.ip(), router_bfd);
    let mut p = spawn(n.host(), &n.bin, &n.conf);
    let what = format!("{kind}: ours passive {ours_passive}, router {router_bfd:?}");
    let r = wait_until(
        "the route and BFD up at the router",
        Duration::from_secs(30),
        || has_route(router.daemon()) && bfd_up(&router, n.ip()),
    );
    if let Err(e) = r {
        panic!(
            "{what}: {e}\n[ferrolb]\n{}\n[router]\n{}",
            lab::tail(&p.log(), 30),
            router.daemon().log_tail()
        );
    }
    assert!(
        p.log().contains("BFD session Init -> Up") || p.log().contains("BFD session Down -> Up"),
        "{what}: our side says Up:\n{}",
        lab::tail(&p.log(), 30)
    );
    // The node's link is cut: BFD at the router notices; the route goes.
    let cut = Instant::now();
    n.host().link_down().unwrap();
    wait_until(
        "the router to drop the route",
        Duration::from_secs(10),
        || !has_route(router.daemon()),
    )
    .unwrap_or_else(|e| panic!("{what}: {e} (BFD should act in about 1 s; hold time is 90 s)"));
    eprintln!("{what}: route dropped {:?} after the cut", cut.elapsed());
    // Our side: BFD down takes the BGP session down at once.
    wait_until("our side to see BFD down", Duration::from_secs(5), || {
        p.log()
            .contains("BFD session down: closing the BGP connection")
    })
    .unwrap_or_else(|e| panic!("{what}: {e}\n{}", lab::tail(&p.log(), 30)));
    // Back: BFD and the route return.
    n.host().link_up().unwrap();
    wait_until("the route back", Duration::from_secs(30), || {
        has_route(router.daemon()) && bfd_up(&router, n.ip())
    })
    .unwrap_or_else(|e| panic!("{what}: {e}\n{}", lab::tail(&p.log(), 30)));
    p.kill();
}

#[test]
fn bfd_with_bird_both_ways_and_a_cut_link_drops_the_route() {
    if !lab::require_lab() {
        return;
    }
    bfd_case("bird", true, Bfd::Active);
    bfd_case("bird", false, Bfd::Passive);
}

#[test]
fn bfd_with_frr_both_ways_and_a_cut_link_drops_the_route() {
    if !lab::require_lab() {
        return;
    }
    bfd_case("frr", true, Bfd::Active);
    bfd_case("frr", false, Bfd::Active);
}

/// Multihop BFD (RFC 5883, port 4784, `minimumTtl`): the router's BGP address is on its
/// loopback, reached through its LAN address; BIRD runs a multihop BGP session and BFD from it.
#[test]
fn multihop_bfd_with_bird_and_a_cut_link_drops_the_route() {
    if !lab::require_lab() {
        return;
    }
    let n = Node::new();
    let router_host = n.lab.router();
    let loopback: IpAddr = "10.99.0.1".parse().unwrap();
    router_host
        .exec_ok(&["ip", "addr", "add", "10.99.0.1/32", "dev", "lo"])
        .unwrap();
    let via = router_host.ipv4.to_string();
    n.host()
        .exec_ok(&["ip", "route", "add", "10.99.0.1/32", "via", &via])
        .unwrap();
    let mut c = HostConfig::new(loopback);
    c.bfd_profile = Some("{}".into());
    c.ebgp_multihop = true;
    c.write(&n.conf, &n.host().name).unwrap();
    let cfg = BgpConfig::new(ROUTER_ASN, router_host.ipv4).neighbor(
        Neighbor::new(n.ip(), ASN)
            .passive()
            .bfd(Bfd::Active)
            .multihop_from(loopback),
    );
    let router = Router::Bird(Bird::start(router_host, &cfg).unwrap());
    let mut p = spawn(n.host(), &n.bin, &n.conf);
    wait_until(
        "the route and multihop BFD up",
        Duration::from_secs(30),
        || has_route(router.daemon()) && bfd_up(&router, n.ip()),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n[ferrolb]\n{}\n[router]\n{}",
            lab::tail(&p.log(), 30),
            router.daemon().log_tail()
        )
    });
    assert!(
        p.log().contains("multihop=true"),
        "{}",
        lab::tail(&p.log(), 30)
    );
    n.host().link_down().unwrap();
    wait_until(
        "the router to drop the route",
        Duration::from_secs(10),
        || !has_route(router.daemon()),
    )
    .unwrap_or_else(|e| panic!("{e} (BFD should act in about 1 s; hold time is 90 s)"));
    p.kill();
}

/// Restarts the process (SIGTERM, then a new one) while the router's routes are read every
/// few milliseconds; returns how many reads found the route missing.
fn restart_and_count_misses(kind: &str, gr: bool) -> (u64, u64) {
    let n = Node::new();
    let router_host = n.lab.router();
    write_config(
        &n.conf,
        IpAddr::V4(router_host.ipv4),
        &n.host().name,
        None,
        gr,
    );
    let router = Arc::new(Router::start(kind, router_host, n.ip(), Bfd::Off));
    let mut p = spawn(n.host(), &n.bin, &n.conf);
    wait_until("the route at the router", Duration::from_secs(30), || {
        has_route(router.daemon())
    })
    .unwrap_or_else(|e| panic!("{kind}: {e}\n{}", lab::tail(&p.log(), 30)));
    let stop = Arc::new(AtomicBool::new(false));
    let (misses, reads) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let watcher = {
        let (router, stop, misses, reads) =
            (router.clone(), stop.clone(), misses.clone(), reads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if !has_route(router.daemon()) {
                    misses.fetch_add(1, Ordering::Relaxed);
                }
                reads.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    p.signal(lab::Signal::Term);
    let exited = wait_until("the old process to exit", Duration::from_secs(10), || {
        p.exited().is_some()
    });
    assert!(exited.is_ok(), "{kind}: SIGTERM");
    let mut q = spawn(n.host(), &n.bin, &n.conf);
    // The new process's session, its table and End-of-RIB.
    let up = wait_until("the new session", Duration::from_secs(30), || {
        q.log().contains("session established")
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    up.unwrap_or_else(|e| panic!("{kind}: {e}\n{}", lab::tail(&q.log(), 30)));
    assert!(
        has_route(router.daemon()),
        "{kind}: the route is there after the restart"
    );
    q.kill();
    (
        misses.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
    )
}

#[test]
fn graceful_restart_keeps_the_route_at_bird_and_frr() {
    if !lab::require_lab() {
        return;
    }
    for kind in ["bird", "frr"] {
        let (misses, reads) = restart_and_count_misses(kind, true);
        eprintln!("{kind}, graceful restart: route missing in {misses} of {reads} reads");
        assert!(reads > 50, "{kind}: the watcher ran ({reads} reads)");
        assert_eq!(
            misses, 0,
            "{kind}: with graceful restart the route never leaves"
        );
        // The same restart without graceful restart: the Cease withdraws it.
        let (misses, reads) = restart_and_count_misses(kind, false);
        eprintln!("{kind}, no graceful restart: route missing in {misses} of {reads} reads");
        assert!(
            misses > 0,
            "{kind}: without graceful restart the restart is seen"
        );
    }
}
