//! What the layer-2 failover benchmarks with real processes share (`l2_benchmark`,
//! `l2_limits`): the client's TCP probes (who answers VIP:80 and when), the ARP and NDP reply
//! probes, percentile rows, the machine's context and a process's memory.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::lab::{self, Host, Lab, LabError, NetnsThread, Process};

/// Gap between the client's probe connections.
pub const PROBE_EVERY: Duration = Duration::from_millis(5);
/// Connect and read timeout of one probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
/// A failover that takes longer than this fails the run.
pub const FAILOVER_BOUND: Duration = Duration::from_secs(15);

/// An environment variable as a number, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One TCP exchange: connect, send a line, read the response line.
pub fn exchange(target: SocketAddr, timeout: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&target, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(b"probe\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    (!line.is_empty()).then_some(line)
}

/// The node named by a backend's answer (its first word).
pub fn answered_by(response: &str) -> &str {
    response.split_whitespace().next().unwrap_or("")
}

/// From the client: a new probe every [`PROBE_EVERY`], each on its own thread (a SYN lost to a
/// dead MAC does not hold the next back), until one is answered by a node for which `done` is
/// true; the time from `t0` to that answer (None if not within [`FAILOVER_BOUND`]).
pub fn probe_until(
    client: &Host,
    target: SocketAddr,
    done: impl Fn(&str) -> bool + Send + 'static,
    t0: Instant,
) -> NetnsThread<Option<Duration>> {
    client
        .spawn_thread(move || {
            // Threads spawned here inherit the client's network namespace.
            let (tx, rx) = mpsc::channel::<(String, Instant)>();
            let mut found = None;
            let mut next = Instant::now();
            while found.is_none() && t0.elapsed() < FAILOVER_BOUND {
                let now = Instant::now();
                if now < next {
                    if let Ok((resp, at)) = rx.recv_timeout(next - now)
                        && done(answered_by(&resp))
                    {
                        found = Some(at - t0);
                    }
                    continue;
                }
                next += PROBE_EVERY;
                let tx = tx.clone();
                thread::spawn(move || {
                    if let Some(resp) = exchange(target, PROBE_TIMEOUT) {
                        let _ = tx.send((resp, Instant::now()));
                    }
                });
            }
            // Probes still in flight end within PROBE_TIMEOUT (x2) on their own.
            found
        })
        .expect("probe thread in the client namespace")
}

/// From the client: probes as [`probe_until`] from now until `t0 + window`; every answer as
/// (time since `t0`, the node that answered), in order.
pub fn probe_window(
    client: &Host,
    target: SocketAddr,
    t0: Instant,
    window: Duration,
) -> NetnsThread<Vec<(Duration, String)>> {
    client
        .spawn_thread(move || {
            let (tx, rx) = mpsc::channel::<(String, Instant)>();
            let mut next = Instant::now();
            while t0.elapsed() < window {
                next += PROBE_EVERY;
                let tx = tx.clone();
                thread::spawn(move || {
                    if let Some(resp) = exchange(target, PROBE_TIMEOUT) {
                        let _ = tx.send((resp, Instant::now()));
                    }
                });
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            drop(tx);
            let mut seen: Vec<(Duration, String)> = rx
                .iter()
                .map(|(resp, at)| (at - t0, answered_by(&resp).to_string()))
                .collect();
            seen.sort();
            seen
        })
        .expect("probe thread in the client namespace")
}

/// Blocking: which node answers VIP:80 now (one probe, retried for up to `within`).
pub fn served_by(client: &Host, target: SocketAddr, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let r = client
            .in_netns(move || exchange(target, Duration::from_millis(200)))
            .ok()
            .flatten();
        if let Some(r) = r {
            return Some(answered_by(&r).to_string());
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// `want` consecutive probes answered through `via` (within `within`).
pub fn steadily_served_by(
    client: &Host,
    target: SocketAddr,
    via: &str,
    want: usize,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    let mut streak = 0;
    while Instant::now() < deadline {
        if served_by(client, target, Duration::from_millis(500)).as_deref() == Some(via) {
            streak += 1;
            if streak >= want {
                return true;
            }
        } else {
            streak = 0;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Polls `f` every 50 ms; panics with `what` if it is not true within `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {within:?}");
}

/// Nearest-rank percentile of sorted samples; with n = 20 the p99 is the largest sample.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Milliseconds, with µs resolution under 10 ms.
pub fn ms(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.3} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    }
}

/// A named series of durations, printed as a Markdown row (n, min, p50, p99, max).
#[derive(Default)]
pub struct Series {
    /// The row's label.
    pub name: String,
    /// The samples.
    pub samples: Vec<Duration>,
}

impl Series {
    /// An empty series.
    pub fn new(name: &str) -> Series {
        Series {
            name: name.into(),
            samples: Vec::new(),
        }
    }

    /// The p50 (None without samples).
    pub fn p50(&self) -> Option<Duration> {
        let mut s = self.samples.clone();
        s.sort();
        (!s.is_empty()).then(|| pct(&s, 0.5))
    }

    /// `| name | n | min | p50 | p99 | max |`.
    pub fn row(&self) -> String {
        let mut s = self.samples.clone();
        s.sort();
        if s.is_empty() {
            return format!("| {} | 0 | – | – | – | – |", self.name);
        }
        format!(
            "| {} | {} | {} | {} | {} | {} |",
            self.name,
            s.len(),
            ms(s[0]),
            ms(pct(&s, 0.5)),
            ms(pct(&s, 0.99)),
            ms(s[s.len() - 1])
        )
    }
}

/// nproc, CPU model, the date and the load average.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let date = lab::run_command_ok(
        &["date", "-u", "+%Y-%m-%d %H:%M:%S UTC"],
        Duration::from_secs(5),
    )
    .unwrap_or_default();
    format!(
        "nproc {nproc}, CPU {cpu}, {}, load average {}",
        date.trim(),
        loadavg()
    )
}

/// The three load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `VmRSS … / VmHWM …` of a process.
pub fn proc_status(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!("VmRSS {} / VmHWM {}", field("VmRSS:"), field("VmHWM:"))
}

/// `FERROLB_BIN`, or the `ferrolb` beside the test binary's directory (target/debug/ferrolb).
pub fn ferrolb_bin() -> PathBuf {
    let bin = std::env::var_os("FERROLB_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| Some(p.parent()?.parent()?.join("ferrolb")))
        })
        .expect("test binary path");
    assert!(
        bin.exists(),
        "build it first: cargo build -p ferrolb-standalone ({})",
        bin.display()
    );
    bin
}

/// The membership port the lab's speakers use.
pub const MEMBERSHIP_PORT: u16 = 7946;

/// `ferrolb standalone` on `node` as the lab runs it: `conf` scanned every 100 ms, its state in
/// the node's work directory, membership on the node's IPv4 address, seeded with every other
/// node of `lab`, the shared secret in `secret`.
pub fn spawn_standalone(
    lab: &Lab,
    node: &Host,
    bin: &Path,
    conf: &Path,
    secret: &Path,
) -> Result<Process, LabError> {
    let state = node.workdir().join("state.json");
    let addr = format!("{}:{MEMBERSHIP_PORT}", node.ipv4);
    let seeds: Vec<String> = lab
        .nodes()
        .iter()
        .filter(|h| h.name != node.name)
        .map(|h| format!("{}:{MEMBERSHIP_PORT}", h.ipv4))
        .collect();
    let seeds = seeds.join(",");
    let utf8 = |p: &Path| {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| LabError::Invalid(format!("not UTF-8: {}", p.display())))
    };
    let (bin, conf, state, secret) = (utf8(bin)?, utf8(conf)?, utf8(&state)?, utf8(secret)?);
    node.spawn(&[
        bin.as_str(),
        "standalone",
        "--interval-ms",
        "100",
        "--config",
        conf.as_str(),
        "--state",
        state.as_str(),
        "--node",
        node.name.as_str(),
        "--membership-addr",
        addr.as_str(),
        "--membership-seeds",
        seeds.as_str(),
        "--membership-secret-file",
        secret.as_str(),
    ])
}

/// A copy of `bin` in `dir` (the shared target/ may be rebuilt during a run), with its sha256.
pub fn private_copy(bin: &std::path::Path, dir: &std::path::Path) -> (PathBuf, String) {
    let copy = dir.join("ferrolb");
    std::fs::copy(bin, &copy).expect("copy the ferrolb binary");
    let sum = lab::run_command_ok(
        &["sha256sum", copy.to_str().expect("UTF-8 path")],
        Duration::from_secs(10),
    )
    .unwrap_or_default();
    let sum = sum.split_whitespace().next().unwrap_or("?").to_string();
    (copy, sum)
}

/// Parses every "time=N unit" of Habets' arping output.
pub fn arping_rtts(text: &str) -> Vec<Duration> {
    text.lines()
        .filter_map(|l| {
            let toks: Vec<&str> = l.split_whitespace().collect();
            let i = toks.iter().position(|t| t.starts_with("time="))?;
            let n: f64 = toks[i].strip_prefix("time=")?.parse().ok()?;
            let scale = match *toks.get(i + 1)? {
                "nsec" => 1e-9,
                "usec" => 1e-6,
                "msec" => 1e-3,
                "sec" => 1.0,
                _ => return None,
            };
            Some(Duration::from_secs_f64(n * scale))
        })
        .collect()
}

/// The MACs of every reply to `count` ARP requests, 50 ms apart (Habets' arping).
pub fn arp_macs(client: &Host, addr: Ipv4Addr, count: usize) -> Vec<String> {
    let (a, c) = (addr.to_string(), count.to_string());
    let Ok(out) = client.exec_timeout(
        &[
            "arping", "-c", &c, "-W", "0.05", "-w", "2", "-i", "eth0", &a,
        ],
        Duration::from_secs(5),
    ) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|t| t.len() == 17 && t.matches(':').count() == 5)
                .map(str::to_lowercase)
        })
        .collect()
}

/// `n` ARP requests to `addr`, 10 ms apart: the RTT of each reply (arping's own timing).
pub fn arping_batch(client: &Host, addr: Ipv4Addr, n: usize) -> Vec<Duration> {
    let (a, c) = (addr.to_string(), n.to_string());
    let w = (n / 50 + 5).to_string();
    let Ok(out) = client.exec_timeout(
        &["arping", "-c", &c, "-W", "0.01", "-w", &w, "-i", "eth0", &a],
        Duration::from_secs(n as u64 / 50 + 15),
    ) else {
        return Vec::new();
    };
    arping_rtts(&String::from_utf8_lossy(&out.stdout))
}

/// One neighbour solicitation for `target` from `host` (a raw ICMPv6 socket in its namespace,
/// sent to the solicited-node group as a resolving host does): every advertisement for `target`
/// within `wait`, as (the advertised MAC, the time from sending). Empty if nobody answered.
pub fn solicit(host: &Host, target: Ipv6Addr, wait: Duration) -> Vec<(String, Duration)> {
    let (src, mac) = (host.ipv6, host.mac.to_string());
    // `ip netns exec` mounts the namespace's own sysfs (a thread that only entered the
    // namespace still sees the host's).
    let Some(ifindex) = host
        .exec_ok(&["cat", &format!("/sys/class/net/{}/ifindex", host.ifname)])
        .ok()
        .and_then(|s| s.trim().parse().ok())
    else {
        return Vec::new();
    };
    host.in_netns(move || solicit_here(ifindex, src, &mac, target, wait))
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn solicit_here(
    ifindex: u32,
    src: Ipv6Addr,
    mac: &str,
    target: Ipv6Addr,
    wait: Duration,
) -> Option<Vec<(String, Duration)>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mac: Vec<u8> = mac
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).ok()?;
    s.set_multicast_hops_v6(255).ok()?;
    s.set_multicast_loop_v6(false).ok()?;
    s.set_multicast_if_v6(ifindex).ok()?;
    s.bind(&SocketAddr::V6(SocketAddrV6::new(src, 0, 0, 0)).into())
        .ok()?;
    // NS: type 135, code 0, checksum (the kernel fills it in), reserved, target, SLLA option.
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&target.octets());
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&mac);
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let sent = Instant::now();
    s.send_to(
        &ns,
        &SocketAddr::V6(SocketAddrV6::new(group, 0, 0, ifindex)).into(),
    )
    .ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while sent.elapsed() < wait {
        s.set_read_timeout(Some((wait - sent.elapsed()).max(Duration::from_millis(1))))
            .ok()?;
        // A raw ICMPv6 socket delivers the ICMPv6 message without the IPv6 header.
        let Ok(n) = std::io::Read::read(&mut &s, &mut buf) else {
            break;
        };
        let at = sent.elapsed();
        let pkt = &buf[..n];
        if pkt.len() < 24 || pkt[0] != 136 || pkt[8..24] != t {
            continue;
        }
        // Options: type 2 (target link-layer address), length 1.
        let mut i = 24;
        while i + 8 <= pkt.len() {
            let (ty, len) = (pkt[i], usize::from(pkt[i + 1]) * 8);
            if len == 0 {
                break;
            }
            if ty == 2 && i + 8 <= pkt.len() {
                let m = pkt[i + 2..i + 8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":");
                out.push((m, at));
            }
            i += len;
        }
    }
    Some(out)
}
