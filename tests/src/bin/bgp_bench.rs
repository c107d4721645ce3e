//! BGP advertisement benchmark (issue 7): how fast BIRD holds N /32 prefixes announced by
//! ferrolb's session, and by gobgpd, in the same run against the same BIRD; and the speaker's
//! memory with the largest table.
//!
//! ```text
//! cargo build --release -p ferrolb-tests --bin bgp_bench
//! sudo target/release/bgp_bench [--sizes 10000,100000] [--repeat 3]
//! ```
//!
//! Topology: the lab's router runs BIRD (AS 64512, both neighbors passive, import all);
//! `node0` runs this binary again as `bgp_bench speak ...` (a separate process, so its
//! `/proc/PID/status` is the speaker's alone: one ferrolb `Session`, eBGP from AS 64513);
//! `node1` runs gobgpd (AS 64514). Per size and repetition, sequentially:
//! 1. ferrolb: the child is told (a control file) to set its table to N prefixes; timed from
//!    the command until BIRD's `show protocols all peer0` counts N imported routes; then
//!    the empty table, timed until 0.
//! 2. ferrolb initial sync: the session is stopped (Cease) and a new one started with the N
//!    prefixes loaded; timed from BIRD first showing the session Established until it counts
//!    N (so retry timers do not count); then withdrawn.
//! 3. gobgpd initial sync: the neighbor is disabled, the same N prefixes are loaded into
//!    gobgpd's RIB with `gobgp mrt inject global` (an MRT TABLE_DUMP_V2 file written
//!    beforehand; see [`inject`] for why it takes several passes; not timed), the neighbor is
//!    enabled; timed from Established until BIRD counts N from peer1. Then
//!    `gobgp global rib -a ipv4 del all` (one gRPC call), timed until BIRD counts 0.
//!
//! There is no gobgpd "live announce" figure: gobgp 3.10's bulk CLI path loses most of the
//! stream per call (see [`inject`]), so its time would measure that CLI, not gobgpd.
//!
//! BIRD is polled every 10 ms with the cheap protocol summary, never a route dump.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrolb_announce::bgp::{FsmConfig, PeerConfig, RouteAttrs, Session, Table};
use ferrolb_tests::lab::{self, BgpConfig, Bird, GoBgp, Lab, LabError, LabSpec, Neighbor};
use ipnet::{IpNet, Ipv4Net};

const BIRD_ASN: u32 = 64512;
const FERROLB_ASN: u32 = 64513;
const GOBGP_ASN: u32 = 64514;
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(10);
/// The MRT file holds the N prefixes this many times over (see [`inject`]).
const MRT_COPIES: usize = 4;
/// Records per `gobgp mrt inject` call.
const INJECT_CHUNK: usize = 100_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = if args.get(1).map(String::as_str) == Some("speak") {
        speak(&args[2..])
    } else {
        bench(&args[1..])
    };
    if let Err(e) = result {
        eprintln!("bgp_bench: {e}");
        std::process::exit(1);
    }
}

/// The N prefixes: 10.128.0.0/32 upward.
fn prefixes(n: usize) -> impl Iterator<Item = Ipv4Net> {
    let base = u32::from(Ipv4Addr::new(10, 128, 0, 0));
    (0..n as u32).map(move |i| Ipv4Net::from(Ipv4Addr::from(base + i)))
}

// ---------------------------------------------------------------- the speaker child

/// `speak CTL_DIR PEER LOCAL_ADDR`: one session to PEER; obeys control files in CTL_DIR:
/// `announce-N` (table of N prefixes), `withdraw` (empty table), `stop` (Cease and exit).
fn speak(args: &[String]) -> Result<(), String> {
    let [ctl, peer, local] = args else {
        return Err("usage: bgp_bench speak CTL_DIR PEER LOCAL_ADDR".into());
    };
    let ctl = PathBuf::from(ctl);
    let peer: IpAddr = peer.parse().map_err(|e| format!("peer: {e}"))?;
    let local: Ipv4Addr = local.parse().map_err(|e| format!("local: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut fsm = FsmConfig::new(FERROLB_ASN, BIRD_ASN, local);
        fsm.connect_retry = Duration::from_secs(1);
        fsm.idle_hold = Duration::from_millis(500);
        let mut cfg = PeerConfig::new(fsm, peer);
        cfg.source_address = Some(local.into());
        let mut session = Session::spawn(cfg.clone(), Table::new());
        // Bounded: the orchestrator stops us long before; a day is the backstop.
        let deadline = Instant::now() + Duration::from_secs(86_400);
        while Instant::now() < deadline {
            if let Some(cmd) = take_command(&ctl) {
                if cmd == "stop" {
                    break;
                } else if cmd == "withdraw" {
                    session.set_routes(Table::new());
                } else if let Some(n) = cmd.strip_prefix("restart-") {
                    // A new session that starts with the whole table (initial sync).
                    let n: usize = n.parse().map_err(|e| format!("{cmd}: {e}"))?;
                    let table: Table = prefixes(n)
                        .map(|p| (IpNet::V4(p), RouteAttrs::default()))
                        .collect();
                    let old = std::mem::replace(&mut session, idle_session(&cfg));
                    old.stop().await;
                    session = Session::spawn(cfg.clone(), table);
                } else if cmd == "stop-session" {
                    let old = std::mem::replace(&mut session, idle_session(&cfg));
                    old.stop().await;
                } else if let Some(n) = cmd.strip_prefix("announce-") {
                    let n: usize = n.parse().map_err(|e| format!("{cmd}: {e}"))?;
                    let table: Table = prefixes(n)
                        .map(|p| (IpNet::V4(p), RouteAttrs::default()))
                        .collect();
                    session.set_routes(table);
                }
                let _ = std::fs::write(ctl.join("ack"), &cmd);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        session.stop().await;
        Ok(())
    })
}

/// A placeholder session that never connects (passive, nothing to accept).
fn idle_session(cfg: &PeerConfig) -> Session {
    let mut c = cfg.clone();
    c.fsm.passive = true;
    Session::spawn(c, Table::new())
}

/// The first control file present (removed when read).
fn take_command(ctl: &Path) -> Option<String> {
    let entries = std::fs::read_dir(ctl).ok()?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("cmd-") {
            let cmd = std::fs::read_to_string(e.path()).ok()?;
            let _ = std::fs::remove_file(e.path());
            return Some(cmd.trim().to_string());
        }
    }
    None
}

// ---------------------------------------------------------------- the orchestrator

struct Figures {
    n: usize,
    ferrolb_up: Vec<Duration>,
    ferrolb_down: Vec<Duration>,
    gobgp_down: Vec<Duration>,
    /// Session start with the table loaded: Established -> all held.
    ferrolb_sync: Vec<Duration>,
    /// ferrolb: from the restart command (so including TCP connect and OPEN) to all held.
    ferrolb_sync_total: Vec<Duration>,
    gobgp_sync: Vec<Duration>,
}

fn bench(args: &[String]) -> Result<(), String> {
    let mut sizes = vec![10_000usize, 100_000];
    let mut repeat = 3usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sizes" => {
                sizes = it
                    .next()
                    .ok_or("--sizes needs a value")?
                    .split(',')
                    .map(|s| s.parse().map_err(|e| format!("--sizes: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--repeat" => {
                repeat = it
                    .next()
                    .ok_or("--repeat needs a value")?
                    .parse()
                    .map_err(|e| format!("--repeat: {e}"))?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let Some(reason) = lab::lab_unavailable() {
        return Err(format!("the lab cannot run: {reason}"));
    }
    let lab = Lab::new(LabSpec {
        nodes: 2,
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    run(&lab, &sizes, repeat.max(1)).map_err(|e| e.to_string())
}

fn run(lab: &Lab, sizes: &[usize], repeat: usize) -> Result<(), LabError> {
    let (router, n0, n1) = (lab.router(), lab.node(0), lab.node(1));
    let bird = Bird::start(
        router,
        &BgpConfig::new(BIRD_ASN, router.ipv4)
            .neighbor(Neighbor::new(n0.ipv4, FERROLB_ASN).passive())
            .neighbor(Neighbor::new(n1.ipv4, GOBGP_ASN).passive()),
    )?;
    let gobgp = GoBgp::start(
        n1,
        &BgpConfig::new(GOBGP_ASN, n1.ipv4).neighbor(Neighbor::new(router.ipv4, BIRD_ASN)),
    )?;
    let ctl = n0.unique_path("bench-ctl");
    std::fs::create_dir_all(&ctl).map_err(|e| io_err("control dir", e))?;
    let exe = std::env::current_exe().map_err(|e| io_err("current_exe", e))?;
    let exe = exe.to_string_lossy().to_string();
    let ctl_s = ctl.to_string_lossy().to_string();
    let (peer, local) = (router.ipv4.to_string(), n0.ipv4.to_string());
    let mut child = n0.spawn(&[&exe, "speak", &ctl_s, &peer, &local])?;
    let pid = child.pid();
    let mut seq = 0u32;
    let mut command = |cmd: &str| -> Result<(), LabError> {
        seq += 1;
        let _ = std::fs::remove_file(ctl.join("ack"));
        let tmp = ctl.join(format!("tmp-{seq}"));
        std::fs::write(&tmp, cmd).map_err(|e| io_err("control file", e))?;
        std::fs::rename(&tmp, ctl.join(format!("cmd-{seq}"))).map_err(|e| io_err("control file", e))
    };
    let deadline = Duration::from_secs(20);
    wait_session(&bird, "peer0", deadline)?;
    wait_session(&bird, "peer1", deadline)?;
    eprintln!("both sessions Established");

    let mut all = Vec::new();
    let mut ferrolb_rss = None;
    let mut gobgp_rss = None;
    for &n in sizes {
        let mrt = n1.unique_path("routes.mrt");
        let records = n * MRT_COPIES;
        std::fs::write(&mrt, mrt_file(n, MRT_COPIES, n1.ipv4)).map_err(|e| io_err("mrt", e))?;
        let mrt = mrt.to_string_lossy().to_string();
        eprintln!("n={n}: MRT file written");
        let mut f = Figures {
            n,
            ferrolb_up: vec![],
            ferrolb_down: vec![],
            gobgp_down: vec![],
            ferrolb_sync: vec![],
            ferrolb_sync_total: vec![],
            gobgp_sync: vec![],
        };
        for r in 0..repeat {
            let t0 = Instant::now();
            command(&format!("announce-{n}"))?;
            wait_count(&bird, "peer0", n, t0)?;
            f.ferrolb_up.push(t0.elapsed());
            eprintln!("n={n}: ferrolb announced in {:?}", t0.elapsed());
            if n == *sizes.iter().max().unwrap_or(&n) && r == 0 {
                ferrolb_rss = Some(memory(pid)?);
            }
            let t0 = Instant::now();
            command("withdraw")?;
            wait_count(&bird, "peer0", 0, t0)?;
            f.ferrolb_down.push(t0.elapsed());

            // Initial sync: a session that starts with the N prefixes loaded.
            command("stop-session")?;
            wait_down(&bird, "peer0")?;
            let t0 = Instant::now();
            command(&format!("restart-{n}"))?;
            let (est, all) = wait_sync(&bird, "peer0", n, t0)?;
            f.ferrolb_sync.push(all - est);
            f.ferrolb_sync_total.push(all);
            command("withdraw")?;
            wait_count(&bird, "peer0", 0, Instant::now())?;

            // gobgpd: its RIB loaded with the neighbor disabled (not timed), then enabled.
            let router_addr = router.ipv4.to_string();
            gobgp.cli(&["neighbor", &router_addr, "disable"])?;
            wait_down(&bird, "peer1")?;
            let tl = Instant::now();
            let passes = inject(&gobgp, &mrt, n, records, tl)?;
            eprintln!(
                "n={n}: gobgpd RIB loaded in {:?} ({passes} mrt inject passes)",
                tl.elapsed()
            );
            let t0 = Instant::now();
            gobgp.cli(&["neighbor", &router_addr, "enable"])?;
            let (gest, gall) = wait_sync(&bird, "peer1", n, t0)?;
            f.gobgp_sync.push(gall - gest);
            if n == *sizes.iter().max().unwrap_or(&n) && r == 0 {
                gobgp_rss = gobgpd_pid(n1)?.map(memory).transpose()?;
            }
            let t0 = Instant::now();
            gobgp.cli(&["global", "rib", "-a", "ipv4", "del", "all"])?;
            wait_count(&bird, "peer1", 0, t0)?;
            f.gobgp_down.push(t0.elapsed());

            eprintln!(
                "n={n} run {r}: live: ferrolb +{:?} -{:?}  gobgpd -{:?}; sync (Established->all): ferrolb {:?} (up after {est:?}) gobgpd {:?} (up after {gest:?})",
                f.ferrolb_up[r],
                f.ferrolb_down[r],
                f.gobgp_down[r],
                f.ferrolb_sync[r],
                f.gobgp_sync[r]
            );
        }
        all.push(f);
    }
    command("stop")?;
    child.stop_within(Duration::from_secs(5));

    println!(
        "| prefixes | ferrolb live announce | ferrolb live withdraw | gobgpd withdraw (del all) | ratio withdraw (gobgpd/ferrolb) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for f in &all {
        let fu = median(&f.ferrolb_up);
        let (fd, gd) = (median(&f.ferrolb_down), median(&f.gobgp_down));
        println!(
            "| {} | {} | {} | {} | {:.2} |",
            f.n,
            ms(fu),
            ms(fd),
            ms(gd),
            gd.as_secs_f64() / fd.as_secs_f64().max(1e-9),
        );
    }
    println!();
    println!(
        "| prefixes | ferrolb sync, restart command -> all | ferrolb sync, Established -> all | gobgpd sync, Established -> all | ratio gobgpd (Established -> all) / ferrolb (command -> all) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for f in &all {
        let (ft, fs) = (median(&f.ferrolb_sync_total), median(&f.ferrolb_sync));
        let gs = median(&f.gobgp_sync);
        println!(
            "| {} | {} | {} | {} | {:.2} |",
            f.n,
            ms(ft),
            if fs < POLL * 2 {
                format!("< {} (poll resolution)", ms(POLL * 2))
            } else {
                ms(fs)
            },
            ms(gs),
            gs.as_secs_f64() / ft.as_secs_f64().max(1e-9),
        );
    }
    println!("(median of {repeat} runs each; all runs: see stderr)");
    if let Some((rss, hwm)) = ferrolb_rss {
        println!(
            "ferrolb speaker process (one session, {} prefixes held): VmRSS {rss} kB, VmHWM {hwm} kB",
            sizes.iter().max().unwrap_or(&0)
        );
    }
    if let Some((rss, hwm)) = gobgp_rss {
        println!("gobgpd (same prefixes in its RIB): VmRSS {rss} kB, VmHWM {hwm} kB");
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Loads the N prefixes into gobgpd's global RIB with `gobgp mrt inject global` (a gRPC
/// stream; the fastest bulk path the CLI offers). gobgp 3.10's CLI returns before gobgpd has
/// read the whole stream (the tail is lost when the client disconnects), so the file holds the
/// prefixes [`MRT_COPIES`] times over (the repeats keep the client sending while the server
/// catches up) and the rest is injected again with the CLI's `count skip` arguments until the
/// RIB holds all N; the server consumes the stream in order, so the RIB count is the number
/// of leading records done. At most [`INJECT_CHUNK`] records per call. Returns the number of
/// CLI passes.
fn inject(g: &GoBgp, mrt: &str, n: usize, records: usize, t0: Instant) -> Result<usize, LabError> {
    let mut passes = 0;
    while t0.elapsed() < PHASE_TIMEOUT {
        let done = gobgp_rib(g)?;
        if done >= n {
            return Ok(passes);
        }
        // Chunks, so one CLI call stays well inside the lab's 10 s command timeout.
        let count = (records - done).min(INJECT_CHUNK);
        let (count, skip) = (count.to_string(), done.to_string());
        g.cli(&["mrt", "inject", "global", mrt, &count, &skip])?;
        passes += 1;
    }
    Err(LabError::Invalid(format!(
        "gobgpd RIB never reached {n} routes"
    )))
}

/// Destinations in gobgpd's IPv4 global RIB.
fn gobgp_rib(g: &GoBgp) -> Result<usize, LabError> {
    let out = g.cli(&["global", "rib", "summary", "-a", "ipv4"])?;
    Ok(out
        .split_whitespace()
        .skip_while(|w| *w != "Destination:")
        .nth(1)
        .and_then(|w| w.trim_end_matches(',').parse().ok())
        .unwrap_or(0))
}

/// Imported routes of a BIRD protocol, from `show protocols all NAME` ("Routes: N imported").
fn imported(bird: &Bird, proto: &str) -> Result<usize, LabError> {
    let out = bird.birdc(&["show", "protocols", "all", proto])?;
    Ok(out
        .lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("Routes:")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0))
}

fn wait_count(bird: &Bird, proto: &str, n: usize, t0: Instant) -> Result<(), LabError> {
    let mut last = 0;
    while t0.elapsed() < PHASE_TIMEOUT {
        last = imported(bird, proto)?;
        if last == n {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
    Err(LabError::Timeout {
        what: format!("BIRD {proto} to hold {n} routes"),
        timeout: PHASE_TIMEOUT,
        last: format!("{last} imported"),
    })
}

/// (Established, imported count) of a BIRD protocol, from one `show protocols all NAME`.
fn proto_state(bird: &Bird, proto: &str) -> Result<(bool, usize), LabError> {
    let out = bird.birdc(&["show", "protocols", "all", proto])?;
    let up = out
        .lines()
        .any(|l| l.trim().starts_with("BGP state:") && l.contains("Established"));
    let routes = out
        .lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("Routes:")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0);
    Ok((up, routes))
}

/// Waits for N routes; returns when the session was first seen Established and when all N
/// were held, both since `t0`.
fn wait_sync(
    bird: &Bird,
    proto: &str,
    n: usize,
    t0: Instant,
) -> Result<(Duration, Duration), LabError> {
    let mut est = None;
    let mut last = 0;
    while t0.elapsed() < PHASE_TIMEOUT {
        let (up, count) = proto_state(bird, proto)?;
        let now = t0.elapsed();
        if up && est.is_none() {
            est = Some(now);
        }
        last = count;
        if count == n {
            return Ok((est.unwrap_or(now), now));
        }
        std::thread::sleep(POLL);
    }
    Err(LabError::Timeout {
        what: format!("BIRD {proto} to sync {n} routes"),
        timeout: PHASE_TIMEOUT,
        last: format!("{last} imported"),
    })
}

/// Waits until the session is down and holds nothing.
fn wait_down(bird: &Bird, proto: &str) -> Result<(), LabError> {
    let t0 = Instant::now();
    while t0.elapsed() < PHASE_TIMEOUT {
        if proto_state(bird, proto)? == (false, 0) {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
    Err(LabError::Timeout {
        what: format!("BIRD {proto} down"),
        timeout: PHASE_TIMEOUT,
        last: String::new(),
    })
}

fn wait_session(bird: &Bird, proto: &str, timeout: Duration) -> Result<(), LabError> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        let out = bird.birdc(&["show", "protocols", proto])?;
        if out.contains("Established") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(LabError::Timeout {
        what: format!("BIRD {proto} Established"),
        timeout,
        last: bird.birdc(&["show", "protocols", "all", proto])?,
    })
}

/// (VmRSS, VmHWM) in kB of a process.
fn memory(pid: u32) -> Result<(u64, u64), LabError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| io_err(format!("/proc/{pid}/status"), e))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

fn gobgpd_pid(host: &lab::Host) -> Result<Option<u32>, LabError> {
    let out = lab::run_command_ok(&["ip", "netns", "pids", &host.netns], lab::COMMAND_TIMEOUT)?;
    Ok(out
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "gobgpd")
        }))
}

/// An MRT TABLE_DUMP_V2 file (RFC 6396) with the N prefixes, one path each (ORIGIN IGP, empty
/// AS_PATH, NEXT_HOP `next_hop`), for `gobgp mrt inject global`.
fn mrt_file(n: usize, copies: usize, next_hop: Ipv4Addr) -> Vec<u8> {
    fn record(out: &mut Vec<u8>, subtype: u16, body: &[u8]) {
        out.extend_from_slice(&0u32.to_be_bytes()); // timestamp
        out.extend_from_slice(&13u16.to_be_bytes()); // TABLE_DUMP_V2
        out.extend_from_slice(&subtype.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
    }
    let mut out = Vec::with_capacity(n * 40);
    // PEER_INDEX_TABLE: collector id, empty view name, one peer (AS4, IPv4).
    let mut body = Vec::new();
    body.extend_from_slice(&next_hop.octets());
    body.extend_from_slice(&0u16.to_be_bytes());
    body.extend_from_slice(&1u16.to_be_bytes());
    body.push(0x02);
    body.extend_from_slice(&next_hop.octets());
    body.extend_from_slice(&next_hop.octets());
    body.extend_from_slice(&GOBGP_ASN.to_be_bytes());
    record(&mut out, 1, &body);
    let attrs: Vec<u8> = [
        &[0x40, 1, 1, 0][..],
        &[0x40, 2, 0][..],
        &[0x40, 3, 4][..],
        &next_hop.octets()[..],
    ]
    .concat();
    for (seq, p) in (0..copies.max(1)).flat_map(|_| prefixes(n)).enumerate() {
        let mut body = Vec::with_capacity(32);
        body.extend_from_slice(&(seq as u32).to_be_bytes());
        body.push(32);
        body.extend_from_slice(&p.addr().octets());
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes()); // peer index
        body.extend_from_slice(&0u32.to_be_bytes()); // originated
        body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        body.extend_from_slice(&attrs);
        record(&mut out, 2, &body); // RIB_IPV4_UNICAST
    }
    out
}

fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> LabError {
    LabError::Invalid(format!("{what}: {e}"))
}
