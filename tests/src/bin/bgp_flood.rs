//! BGP flood benchmark (issue 17): a peer sends 1,000,000 UPDATEs and then 1,000,000
//! KEEPALIVEs at full speed to `ferrolb standalone`, while a second session from the same
//! process to BIRD runs with a 3 s hold time. Measured: the speaker's RSS throughout (sampled
//! every 20 ms), its CPU time per 1,000 messages, whether BIRD's session ever left
//! Established, and the RSS after the flood against the baseline before it.
//!
//! ```text
//! cargo build --release -p ferrolb-standalone -p ferrolb-tests --bins
//! sudo target/release/bgp_flood [--updates 1000000] [--keepalives 1000000]
//! ```
//!
//! Topology: the lab's router runs BIRD (AS 64512, passive for node0) and, on a second IPv4
//! address (10.0.0.250) port 1790, the flooding peer (AS 64700, our scripted peer: the handshake, then the messages
//! written back to back; a second thread reads and discards what the speaker sends). node0
//! runs the release `ferrolb standalone` with one pool announced to both BGPPeers. A phase ends
//! when the speaker answers a ROUTE-REFRESH sent after the flood (it handles messages in
//! order, so every flood message was handled by then).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrolb_announce::bgp::message::Message;
use ferrolb_tests::l2bench::spawn_standalone;
use ferrolb_tests::lab::{BgpConfig, BgpDaemon, Bird, Host, Lab, LabSpec, Neighbor};
use ferrolb_tests::scripted_peer::{self, Identity};

const BIRD_AS: u32 = 64512;
const NODE_AS: u32 = 64600;
const FLOOD_AS: u32 = 64700;
const FLOOD_PORT: u16 = 1790;
/// A second address of the router on the LAN, for the flooding peer (a BGPPeer is an
/// address; BIRD has the router's first).
const FLOOD_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 250);
/// Bytes per write of the flood.
const CHUNK: usize = 1 << 16;

fn config(router: &Host) -> String {
    format!(
        r#"apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {{name: routed}}
spec: {{addresses: [10.99.0.0/28]}}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: routed}}
spec: {{ipAddressPools: [routed]}}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {{name: bird}}
spec: {{myASN: {NODE_AS}, peerASN: {BIRD_AS}, peerAddress: {bird}, holdTime: 3s, connectTime: 1s}}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {{name: flood}}
spec: {{myASN: {NODE_AS}, peerASN: {FLOOD_AS}, peerAddress: "{flood}", peerPort: {FLOOD_PORT}, holdTime: 90s, connectTime: 1s}}
---
apiVersion: v1
kind: Node
metadata: {{name: node0}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: bench}}
spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}
"#,
        bird = router.ipv4,
        flood = FLOOD_ADDR,
    )
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of `pid`, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Makes the bytes of N messages of one kind.
type Payload = fn(usize) -> Vec<u8>;

struct Phase {
    name: &'static str,
    messages: usize,
    wall: Duration,
    cpu_ticks: u64,
    peak_kib: u64,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bgp_flood: {e}");
        std::process::exit(1);
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n_updates = arg(&args, "--updates", 1_000_000);
    let n_keepalives = arg(&args, "--keepalives", 1_000_000);
    // The release `ferrolb` next to this binary (or $FERROLB_BIN).
    let bin = std::env::var_os("FERROLB_BIN")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::env::current_exe().ok()?.parent()?.join("ferrolb")))
        .filter(|p| p.exists())
        .ok_or("no ferrolb binary: cargo build --release -p ferrolb-standalone")?;
    // Two nodes: node0 runs the speaker; node1 only gives it a membership seed to name.
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })?;
    let (router, node) = (lab.router(), lab.node(0));
    let bird = Bird::start(
        router,
        &BgpConfig::new(BIRD_AS, router.ipv4).neighbor(Neighbor::new(node.ipv4, NODE_AS).passive()),
    )?;

    // The flooding peer's listener, on the router's IPv6 address.
    router.add_address(format!("{FLOOD_ADDR}/24").parse()?)?;
    let addr = SocketAddr::new(FLOOD_ADDR.into(), FLOOD_PORT);
    let listener = router.in_netns(move || scripted_peer::listen(addr, None))??;

    let dir = node.unique_path("flood");
    std::fs::create_dir_all(dir.join("conf"))?;
    std::fs::write(dir.join("conf/config.yaml"), config(router))?;
    std::fs::write(dir.join("secret"), "flood-benchmark-secret")?;
    let mut speaker = spawn_standalone(&lab, node, &bin, &dir.join("conf"), &dir.join("secret"))?;
    let pid = speaker.pid();

    // Accept the speaker's connection and complete the handshake.
    listener.set_nonblocking(false)?;
    let (mut stream, _) = {
        let (tx, rx) = std::sync::mpsc::channel();
        let l = listener.try_clone()?;
        std::thread::spawn(move || {
            let _ = tx.send(l.accept());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the speaker never connected to the flooding peer")??
    };
    let me = Identity {
        asn: FLOOD_AS,
        id: Ipv4Addr::new(10, 255, 0, 9),
        hold_time: 90,
    };
    scripted_peer::handshake(&mut stream, me)?;
    stream.set_read_timeout(None)?;
    // Read what the speaker sends (its table, keepalives), counting its UPDATEs.
    let updates_seen = Arc::new(AtomicU64::new(0));
    let mut reader = stream.try_clone()?;
    let seen = updates_seen.clone();
    std::thread::spawn(move || {
        while let Ok(m) = scripted_peer::read_message(&mut reader) {
            if let Message::Update(_) = m {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    // The speaker's table reaches the flooding peer first.
    let deadline = Instant::now() + Duration::from_secs(30);
    while updates_seen.load(Ordering::Relaxed) == 0 {
        if Instant::now() > deadline {
            return Err("the speaker never sent its table to the flooding peer".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bird.wait_established(node.ipv4.into(), Duration::from_secs(30))?;

    // BIRD's session and the speaker's RSS, watched from now to the end.
    let done = Arc::new(AtomicBool::new(false));
    let bird_drops = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (done, drops, peak) = (done.clone(), bird_drops.clone(), peak.clone());
        let node_ip = node.ipv4;
        let bird_sessions = move || bird.session(node_ip.into());
        std::thread::spawn(move || {
            let mut last_bird = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                if last_bird.elapsed() >= Duration::from_millis(200) {
                    last_bird = Instant::now();
                    if !bird_sessions()
                        .ok()
                        .flatten()
                        .is_some_and(|s| s.is_established())
                    {
                        drops.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    std::thread::sleep(Duration::from_secs(2));
    let baseline = rss_kib(pid).ok_or("speaker gone")?;
    // Session lines the speaker prints from here on are changes during the flood.
    let log_before = speaker.log().len();
    let mut phases = Vec::new();
    let payloads: [(&'static str, usize, Payload); 2] = [
        ("UPDATE", n_updates, |n| {
            scripted_peer::updates(n, FLOOD_AS, Ipv4Addr::new(10, 0, 0, 1))
        }),
        ("KEEPALIVE", n_keepalives, scripted_peer::keepalives),
    ];
    for (name, n, make) in payloads {
        let bytes = make(n);
        peak.store(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
        let cpu0 = cpu_ticks(pid).ok_or("speaker gone")?;
        let t0 = Instant::now();
        for chunk in bytes.chunks(CHUNK) {
            stream.write_all(chunk)?;
        }
        // The end marker: a ROUTE-REFRESH, which the speaker answers with its table (an
        // UPDATE) only once it has handled every message before it.
        let answered = updates_seen.load(Ordering::Relaxed);
        scripted_peer::write_message(&mut stream, &Message::RouteRefresh { afi: 1, safi: 1 })?;
        let deadline = Instant::now() + Duration::from_secs(300);
        while updates_seen.load(Ordering::Relaxed) == answered {
            if Instant::now() > deadline {
                return Err(format!("the speaker never got through the {name} flood").into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let wall = t0.elapsed();
        let cpu = cpu_ticks(pid).ok_or("speaker gone")? - cpu0;
        phases.push(Phase {
            name,
            messages: n,
            wall,
            cpu_ticks: cpu,
            peak_kib: peak.load(Ordering::Relaxed),
        });
        if !speaker.is_running() {
            return Err(format!("the speaker exited during the {name} flood").into());
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kib(pid).ok_or("speaker gone")?;
    // The log before BIRD stops (the watcher owns it): its Cease is no flood effect.
    let log = speaker.log();
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let overall_peak = phases.iter().map(|p| p.peak_kib).max().unwrap_or(0);
    let during: Vec<&str> = log
        .get(log_before..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("BGP session to"))
        .collect();
    speaker.stop();

    let mib = |k: u64| k as f64 / 1024.0;
    println!("| phase | messages | wall | speaker CPU | CPU per 1,000 | peak RSS |");
    println!("|---|---|---|---|---|---|");
    for p in &phases {
        let cpu = Duration::from_millis(p.cpu_ticks * 10);
        println!(
            "| {} | {} | {:.2} s | {:.2} s | {:.3} ms | {:.1} MiB |",
            p.name,
            p.messages,
            p.wall.as_secs_f64(),
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1000.0 / (p.messages as f64 / 1000.0),
            mib(p.peak_kib)
        );
    }
    println!();
    println!(
        "RSS: baseline {:.1} MiB, peak {:.1} MiB, 3 s after the flood {:.1} MiB",
        mib(baseline),
        mib(overall_peak),
        mib(after)
    );
    println!(
        "BIRD session (3 s hold): not Established in {} of the 200 ms samples; session changes the speaker printed during the flood: {:?}",
        bird_drops.load(Ordering::Relaxed),
        during
    );
    let ok = overall_peak <= 64 * 1024
        && bird_drops.load(Ordering::Relaxed) == 0
        && during.is_empty()
        && after <= baseline + 1024;
    println!(
        "targets (peak RSS <= 64 MiB and back within 1 MiB of the baseline, no session changed): {}",
        if ok { "met" } else { "MISSED" }
    );
    Ok(())
}
