//! Client probes with real tools (arping, ndisc6, `ip neigh`) and plain TCP, plus a tiny TCP
//! backend to run inside a host.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::cmd;
use super::error::LabError;
use super::mac::MacAddr;
use super::topology::{Host, NetnsThread};

/// An ARP reply seen by `arping`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpReply {
    /// The MAC that answered.
    pub mac: MacAddr,
    /// Round-trip time as arping reports it, if it printed one.
    pub rtt: Option<Duration>,
    /// Wall-clock time of the whole arping run.
    pub elapsed: Duration,
}

/// A neighbor advertisement seen by `ndisc6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdReply {
    /// The target link-layer address advertised.
    pub mac: MacAddr,
    /// Wall-clock time of the whole ndisc6 run.
    pub elapsed: Duration,
}

/// One row of `ip -j neigh show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourEntry {
    pub ip: IpAddr,
    pub mac: Option<MacAddr>,
    /// e.g. `["REACHABLE"]`, `["PERMANENT"]`, `["FAILED"]`.
    pub state: Vec<String>,
}

/// The outcome of [`Host::tcp_probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpProbe {
    /// Connected, sent the request and got a complete response line.
    pub ok: bool,
    /// Time from connect start to the response (or to the failure).
    pub latency: Duration,
    /// The response line (a [`TcpBackend`] answers `<name> <request>`).
    pub response: String,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl Host {
    /// `arping -c 1 -w SECS -I eth0 ADDR`: which MAC answers for `addr`. `Ok(None)` if nobody
    /// answered within `timeout` (whole seconds, at least 1).
    pub fn arping(&self, addr: Ipv4Addr, timeout: Duration) -> Result<Option<ArpReply>, LabError> {
        let secs = timeout.as_secs().max(1).to_string();
        let a = addr.to_string();
        let argv = [
            "arping",
            "-c",
            "1",
            "-w",
            secs.as_str(),
            "-I",
            self.ifname.as_str(),
            a.as_str(),
        ];
        let start = Instant::now();
        let out = self.exec_timeout(&argv, timeout + Duration::from_secs(5))?;
        let elapsed = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        match parse_arping(&stdout) {
            Some((mac, rtt)) => Ok(Some(ArpReply { mac, rtt, elapsed })),
            None if out.status.code() == Some(1) => Ok(None),
            None => Err(cmd::check(&argv, out).err().unwrap_or_else(|| {
                LabError::parse(cmd::display(&argv), format!("no reply line in {stdout:?}"))
            })),
        }
    }

    /// `ndisc6 -1 -n -r 1 -w MS ADDR eth0`: which MAC answers a neighbor solicitation for
    /// `addr`. `Ok(None)` if nobody answered within `timeout`.
    pub fn ndisc(&self, addr: Ipv6Addr, timeout: Duration) -> Result<Option<NdReply>, LabError> {
        let ms = timeout.as_millis().max(100).to_string();
        let a = addr.to_string();
        let argv = [
            "ndisc6",
            "-1",
            "-n",
            "-r",
            "1",
            "-w",
            ms.as_str(),
            a.as_str(),
            self.ifname.as_str(),
        ];
        let start = Instant::now();
        let out = self.exec_timeout(&argv, timeout + Duration::from_secs(5))?;
        let elapsed = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(mac) = parse_ndisc6(&stdout) {
            return Ok(Some(NdReply { mac, elapsed }));
        }
        let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        if all.contains("No response") || all.contains("Timed out") {
            return Ok(None);
        }
        Err(cmd::check(&argv, out).err().unwrap_or_else(|| {
            LabError::parse(cmd::display(&argv), format!("no answer line in {stdout:?}"))
        }))
    }

    /// The kernel neighbour table on `eth0` (`ip -j neigh show dev eth0`).
    pub fn neighbours(&self) -> Result<Vec<NeighbourEntry>, LabError> {
        let argv = ["ip", "-j", "neigh", "show", "dev", self.ifname.as_str()];
        let out = self.exec_ok(&argv)?;
        parse_neigh(&out).map_err(|r| LabError::parse(cmd::display(&argv), r))
    }

    /// The MAC the kernel has for `ip`, if any (ignores FAILED/INCOMPLETE entries).
    pub fn neighbour_mac(&self, ip: IpAddr) -> Result<Option<MacAddr>, LabError> {
        Ok(self
            .neighbours()?
            .into_iter()
            .find(|n| n.ip == ip && n.mac.is_some())
            .and_then(|n| n.mac))
    }

    /// Flushes the neighbour table of `eth0` (so the next packet re-resolves).
    pub fn flush_neighbours(&self) -> Result<(), LabError> {
        self.exec_ok(&["ip", "neigh", "flush", "dev", self.ifname.as_str()])
            .map(drop)
    }

    /// Pins `ip` to `mac` in the neighbour table (`nud permanent`).
    pub fn set_static_neighbour(&self, ip: IpAddr, mac: MacAddr) -> Result<(), LabError> {
        let (i, m) = (ip.to_string(), mac.to_string());
        self.exec_ok(&[
            "ip",
            "neigh",
            "replace",
            i.as_str(),
            "lladdr",
            m.as_str(),
            "dev",
            self.ifname.as_str(),
            "nud",
            "permanent",
        ])
        .map(drop)
    }

    /// From this host: connect to `target`, send `probe\n`, read one response line. Never
    /// errors for network failures (see [`TcpProbe::ok`]); errors only if the probe thread
    /// cannot run in the namespace. Bounded by `timeout` (connect and read each).
    pub fn tcp_probe(&self, target: SocketAddr, timeout: Duration) -> Result<TcpProbe, LabError> {
        self.in_netns(move || tcp_probe_here(target, timeout))
    }

    /// Starts a [`TcpBackend`] listening on `bind` inside this host. It answers each request
    /// line with `<name> <line>` (and a plain `GET` with an HTTP/1.0 200 whose body is the
    /// name), so probes can tell which backend answered. Stopped on drop.
    pub fn start_tcp_backend(&self, bind: SocketAddr, name: &str) -> Result<TcpBackend, LabError> {
        let listener = self
            .in_netns(move || TcpListener::bind(bind))?
            .map_err(|e| LabError::io(format!("binding {bind} in {}", self.netns), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| LabError::io("making the listener non-blocking", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (stop2, served2, name2) = (Arc::clone(&stop), Arc::clone(&served), name.to_string());
        let thread = self.spawn_thread(move || serve(listener, &name2, &stop2, &served2))?;
        Ok(TcpBackend {
            addr: bind,
            stop,
            served,
            thread: Some(thread),
        })
    }
}

/// A tiny TCP backend running on a thread inside a host's namespace; stopped on drop.
#[derive(Debug)]
pub struct TcpBackend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: Option<NetnsThread<()>>,
}

impl TcpBackend {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it has answered.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: TcpListener, name: &str, stop: &AtomicBool, served: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if answer(stream, name).is_ok() {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn answer(stream: TcpStream, name: &str) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    let mut stream = stream;
    if line.starts_with("GET ") {
        let body = format!("{name}\n");
        write!(
            stream,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
    } else {
        writeln!(stream, "{name} {line}")?;
    }
    stream.flush()
}

pub(crate) fn tcp_probe_here(target: SocketAddr, timeout: Duration) -> TcpProbe {
    let start = Instant::now();
    let fail = |e: String| TcpProbe {
        ok: false,
        latency: start.elapsed(),
        response: String::new(),
        error: Some(e),
    };
    let mut stream = match TcpStream::connect_timeout(&target, timeout) {
        Ok(s) => s,
        Err(e) => return fail(format!("connect {target}: {e}")),
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if let Err(e) = stream.write_all(b"probe\n") {
        return fail(format!("write: {e}"));
    }
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if buf.len() < 4096 => buf.push(byte[0]),
            Ok(_) => break,
            Err(e) => return fail(format!("read: {e}")),
        }
    }
    let latency = start.elapsed();
    let response = String::from_utf8_lossy(&buf).into_owned();
    if response.is_empty() {
        return TcpProbe {
            ok: false,
            latency,
            response,
            error: Some("connection closed without a response".into()),
        };
    }
    TcpProbe {
        ok: true,
        latency,
        response,
        error: None,
    }
}

/// Finds the replying MAC and RTT in arping output (Habets' arping or iputils).
pub fn parse_arping(text: &str) -> Option<(MacAddr, Option<Duration>)> {
    for line in text.lines() {
        let is_reply = line.contains(" bytes from ") || line.contains("reply from");
        if !is_reply {
            continue;
        }
        let mac = line
            .split_whitespace()
            .map(|t| t.trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')'))
            .find_map(|t| {
                if t.len() == 17 {
                    t.parse::<MacAddr>().ok()
                } else {
                    None
                }
            })?;
        return Some((mac, parse_rtt(line)));
    }
    None
}

fn parse_rtt(line: &str) -> Option<Duration> {
    // Habets: "time=9.374 usec" / "msec" / "sec"; iputils: "0.640ms".
    let tokens: Vec<&str> = line.split_whitespace().collect();
    for (i, t) in tokens.iter().enumerate() {
        let (num, unit) = if let Some(v) = t.strip_prefix("time=") {
            (v, tokens.get(i + 1).copied().unwrap_or("msec"))
        } else if let Some(v) = t.strip_suffix("ms") {
            (v, "msec")
        } else {
            continue;
        };
        let Ok(n) = num.parse::<f64>() else { continue };
        let secs = match unit {
            "usec" => n / 1e6,
            "msec" => n / 1e3,
            "sec" => n,
            "nsec" => n / 1e9,
            _ => continue,
        };
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs));
        }
    }
    None
}

/// Finds "Target link-layer address: XX:..." in ndisc6 output.
pub fn parse_ndisc6(text: &str) -> Option<MacAddr> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Target link-layer address:"))
        .and_then(|m| m.trim().parse().ok())
}

fn parse_neigh(text: &str) -> Result<Vec<NeighbourEntry>, String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            Some(NeighbourEntry {
                ip: n.get("dst")?.as_str()?.parse().ok()?,
                mac: n
                    .get("lladdr")
                    .and_then(|m| m.as_str())
                    .and_then(|m| m.parse().ok()),
                state: n
                    .get("state")
                    .and_then(|s| s.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tool_outputs() {
        let habets = "ARPING 10.0.0.1\n42 bytes from 7a:9d:e8:fd:b7:85 (10.0.0.1): index=0 time=9.374 usec\n";
        let (mac, rtt) = parse_arping(habets).unwrap();
        assert_eq!(mac.to_string(), "7a:9d:e8:fd:b7:85");
        assert_eq!(rtt, Some(Duration::from_nanos(9374)));
        let iputils = "Unicast reply from 10.0.0.1 [7A:9D:E8:FD:B7:85]  0.640ms\n";
        let (mac, rtt) = parse_arping(iputils).unwrap();
        assert_eq!(mac.to_string(), "7a:9d:e8:fd:b7:85");
        assert_eq!(rtt, Some(Duration::from_micros(640)));
        assert_eq!(parse_arping("ARPING 10.0.0.77\nTimeout\n"), None);
        let nd = "Soliciting fd00::1 (fd00::1) on eth0...\nTarget link-layer address: 7A:9D:E8:FD:B7:85\n from fd00::1\n";
        assert_eq!(parse_ndisc6(nd).unwrap().to_string(), "7a:9d:e8:fd:b7:85");
        let neigh = r#"[{"dst":"10.0.0.1","dev":"eth0","lladdr":"7a:9d:e8:fd:b7:85","state":["REACHABLE"]},{"dst":"10.0.0.9","dev":"eth0","state":["FAILED"]}]"#;
        let n = parse_neigh(neigh).unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].mac, None);
        assert_eq!(n[0].state, vec!["REACHABLE".to_string()]);
    }
}
