//! FRR as a real BGP peer: `bgpd -Z -S` (no zebra, no user switch) in a host's namespace,
//! queried with `vtysh --vty_socket DIR`; optionally `bfdd` next to it.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;

use super::bgp::{
    Afi, BgpConfig, BgpDaemon, Community, LargeCommunity, Route, Session, SessionState,
};
use super::cmd::{self, COMMAND_TIMEOUT, Process};
use super::daemon::{DaemonHome, path_string};
use super::error::LabError;
use super::topology::Host;

const BGPD: &str = "/usr/lib/frr/bgpd";
const ZEBRA: &str = "/usr/lib/frr/zebra";
const BFDD: &str = "/usr/lib/frr/bfdd";

/// A running FRR bgpd (and optionally bfdd); stopped on drop.
#[derive(Debug)]
pub struct Frr {
    home: DaemonHome,
    bgpd: Process,
    bfdd: Option<Process>,
    /// Only for unnumbered neighbors.
    zebra: Option<Process>,
    vty_dir: String,
}

/// One BFD peer as `show bfd peers json` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdPeer {
    pub peer: IpAddr,
    /// `up`, `down`, `init`, ...
    pub status: String,
}

impl Frr {
    /// Renders `config`, starts bgpd in `host`'s namespace and waits until vtysh answers.
    pub fn start(host: &Host, config: &BgpConfig) -> Result<Frr, LabError> {
        let home = DaemonHome::new(host, "frr")?;
        let log = home.path_str("bgpd.log")?;
        let conf = home.write("bgpd.conf", &render_config(config, &host.name))?;
        let conf = path_string(&conf)?;
        let pid = home.path_str("bgpd.pid")?;
        let vty_dir = path_string(&home.dir)?;
        let log_arg = format!("file:{log}");
        let port = config.listen_port.unwrap_or(179).to_string();
        // Interface (unnumbered) peers need zebra: it sends and reads the router
        // advertisements that give bgpd the peer's link-local address.
        // BFD too: bgpd registers its sessions with bfdd through zebra.
        let unnumbered = config.neighbors.iter().any(|n| n.interface.is_some());
        let with_bfd = (config.neighbors.iter()).any(|n| n.bfd != super::bgp::Bfd::Off);
        let unnumbered = unnumbered || with_bfd;
        let zserv = home.path_str("zserv.api")?;
        let zebra = if unnumbered {
            // zebra drops to the frr user (it has no bgpd's -S): its files go here too.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&home.dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| LabError::io("opening the FRR directory to zebra", e))?;
            let zconf = home.write("zebra.conf", &format!("hostname {}\n", host.name))?;
            let zconf = path_string(&zconf)?;
            let zlog = format!("file:{}", home.path_str("zebra.log")?);
            let zpid = home.path_str("zebra.pid")?;
            let p = host.spawn(&[
                ZEBRA,
                "-f",
                &zconf,
                "-i",
                &zpid,
                "-z",
                &zserv,
                "--vty_socket",
                &vty_dir,
                "-A",
                "127.0.0.1",
                "-P",
                "0",
                "--log",
                &zlog,
            ])?;
            // bgpd connects to zebra's socket; give it a moment to exist.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !home.path("zserv.api").exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Some(p)
        } else {
            None
        };
        let no_zebra = if unnumbered { "-z" } else { "-Z" };
        let zebra_arg: &[&str] = if unnumbered { &[zserv.as_str()] } else { &[] };
        let mut args = vec![BGPD, no_zebra];
        args.extend_from_slice(zebra_arg);
        let mut bgpd = host.spawn(
            &[
                &args[..],
                &[
                    "-S",
                    "-f",
                    &conf,
                    "-i",
                    &pid,
                    "--vty_socket",
                    &vty_dir,
                    "-A",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "--log",
                    &log_arg,
                ],
            ]
            .concat(),
        )?;
        let logs = [home.path("bgpd.log")];
        home.wait_ready(&mut bgpd, &logs, || {
            let out = cmd::run(
                &[
                    "vtysh",
                    "--vty_socket",
                    &vty_dir,
                    "-c",
                    "show bgp summary json",
                ],
                COMMAND_TIMEOUT,
            )?;
            Ok(out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .trim_start()
                    .starts_with('{'))
        })?;
        let mut frr = Frr {
            home,
            bgpd,
            bfdd: None,
            zebra,
            vty_dir,
        };
        if with_bfd {
            // Sessions come from bgpd (`neighbor X bfd`), through zebra.
            frr.start_bfdd(&[])?;
        }
        Ok(frr)
    }

    /// Starts bfdd with single-hop sessions to `peers` configured in bfdd itself (without
    /// zebra bgpd cannot register them); with zebra it also takes bgpd's sessions.
    pub fn start_bfdd(&mut self, peers: &[IpAddr]) -> Result<(), LabError> {
        let mut text = String::from("frr defaults traditional\nbfd\n");
        for p in peers {
            let _ = writeln!(
                text,
                " peer {p}\n  receive-interval 300\n  transmit-interval 300\n exit"
            );
        }
        text.push_str("exit\n");
        let conf = path_string(&self.home.write("bfdd.conf", &text)?)?;
        let pid = self.home.path_str("bfdd.pid")?;
        let log_arg = format!("file:{}", self.home.path_str("bfdd.log")?);
        let ctl = self.home.path_str("bfdd.sock")?;
        // bfdd has no -S: it switches to the frr user, which must own the private dir.
        cmd::run_ok(&["chown", "frr:frr", &self.vty_dir], COMMAND_TIMEOUT)?;
        let zserv = self.home.path_str("zserv.api")?;
        let zebra: &[&str] = if self.zebra.is_some() {
            &["-z", zserv.as_str()]
        } else {
            &[]
        };
        let mut bfdd = self.home.host.spawn(
            &[
                &[BFDD][..],
                zebra,
                &[
                    "-f",
                    &conf,
                    "-i",
                    &pid,
                    "--vty_socket",
                    &self.vty_dir,
                    "-A",
                    "127.0.0.1",
                    "--bfdctl",
                    &ctl,
                    "--log",
                    &log_arg,
                ],
            ]
            .concat(),
        )?;
        let logs = [self.home.path("bfdd.log")];
        let vty = self.vty_dir.clone();
        self.home.wait_ready(&mut bfdd, &logs, || {
            let out = cmd::run(
                &["vtysh", "--vty_socket", &vty, "-c", "show bfd peers json"],
                COMMAND_TIMEOUT,
            )?;
            Ok(out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .trim_start()
                    .starts_with('['))
        })?;
        self.bfdd = Some(bfdd);
        Ok(())
    }

    /// BFD peers and their status (needs [`Frr::start_bfdd`]).
    pub fn bfd_peers(&self) -> Result<Vec<BfdPeer>, LabError> {
        let out = self.vtysh("show bfd peers json")?;
        let json: Value = serde_json::from_str(&out)
            .map_err(|e| LabError::parse("show bfd peers json", e.to_string()))?;
        Ok(json
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(BfdPeer {
                    peer: p.get("peer")?.as_str()?.parse().ok()?,
                    status: p.get("status")?.as_str()?.to_string(),
                })
            })
            .collect())
    }

    /// Runs one vtysh command; its output, or an error (also on `% ...` error replies).
    pub fn vtysh(&self, command: &str) -> Result<String, LabError> {
        let argv = [
            "vtysh",
            "--vty_socket",
            self.vty_dir.as_str(),
            "-c",
            command,
        ];
        let out = cmd::run_ok(&argv, COMMAND_TIMEOUT)?;
        if out.trim_start().starts_with('%') {
            return Err(LabError::Command {
                cmd: cmd::display(&argv),
                status: "error reply".into(),
                stdout: out,
                stderr: String::new(),
            });
        }
        Ok(out)
    }

    /// Applies configuration lines at runtime, as typed after `configure terminal` (e.g.
    /// `["router bgp 64512", "address-family ipv4 unicast", "network 10.95.0.0/24"]`).
    pub fn configure(&self, lines: &[&str]) -> Result<(), LabError> {
        let mut argv = vec![
            "vtysh",
            "--vty_socket",
            self.vty_dir.as_str(),
            "-c",
            "configure terminal",
        ];
        for l in lines {
            argv.extend(["-c", l]);
        }
        let out = cmd::run_ok(&argv, COMMAND_TIMEOUT)?;
        if out.lines().any(|l| l.trim_start().starts_with('%')) {
            return Err(LabError::Command {
                cmd: cmd::display(&argv),
                status: "error reply".into(),
                stdout: out,
                stderr: String::new(),
            });
        }
        Ok(())
    }

    /// The private directory (config, vty sockets, pid files, logs).
    pub fn dir(&self) -> &std::path::Path {
        &self.home.dir
    }

    /// Stops bgpd and bfdd now (also done on drop).
    pub fn stop(&mut self) {
        if let Some(b) = self.bfdd.as_mut() {
            b.stop();
        }
        if let Some(z) = self.zebra.as_mut() {
            z.stop();
        }
        self.bgpd.stop();
    }
}

impl BgpDaemon for Frr {
    fn kind(&self) -> &'static str {
        "frr"
    }

    fn sessions(&self) -> Result<Vec<Session>, LabError> {
        let out = self.vtysh("show bgp summary json")?;
        parse_summary(&out).map_err(|reason| LabError::parse("show bgp summary json", reason))
    }

    fn routes(&self, afi: Afi) -> Result<Vec<Route>, LabError> {
        let command = match afi {
            Afi::Ipv4 => "show bgp ipv4 unicast json detail",
            Afi::Ipv6 => "show bgp ipv6 unicast json detail",
        };
        let out = self.vtysh(command)?;
        parse_routes(&out).map_err(|reason| LabError::parse(command, reason))
    }

    fn log_tail(&self) -> String {
        let mut logs = vec![self.home.path("bgpd.log")];
        if self.bfdd.is_some() {
            logs.push(self.home.path("bfdd.log"));
        }
        if self.zebra.is_some() {
            logs.push(self.home.path("zebra.log"));
        }
        self.home.log_tail(&self.bgpd, &logs)
    }
}

/// bgpd configuration for `config`: one route-map per originated prefix for its communities,
/// `network` statements (import check off, as there is no zebra), neighbors activated only
/// for their family, connect timer 1 s.
pub fn render_config(config: &BgpConfig, hostname: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "frr defaults traditional\nhostname {hostname}\n!");
    let _ = writeln!(s, "router bgp {}", config.asn);
    let _ = writeln!(s, " bgp router-id {}", config.router_id);
    let _ = writeln!(
        s,
        " no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast"
    );
    for n in &config.neighbors {
        let a: &dyn std::fmt::Display = match &n.interface {
            Some(i) => i,
            None => &n.address,
        };
        match &n.interface {
            Some(i) => {
                let _ = writeln!(s, " neighbor {i} interface remote-as {}", n.remote_asn);
            }
            None => {
                let _ = writeln!(s, " neighbor {a} remote-as {}", n.remote_asn);
            }
        }
        if let Some(pw) = &n.password {
            let _ = writeln!(s, " neighbor {a} password {pw}");
        }
        if let Some(p) = n.port {
            let _ = writeln!(s, " neighbor {a} port {p}");
        }
        if n.passive {
            let _ = writeln!(s, " neighbor {a} passive");
        }
        if n.bfd != super::bgp::Bfd::Off {
            let _ = writeln!(s, " neighbor {a} bfd");
        }
        let _ = writeln!(s, " neighbor {a} timers connect 1");
    }
    for (afi, name) in [(Afi::Ipv4, "ipv4"), (Afi::Ipv6, "ipv6")] {
        let _ = writeln!(s, " address-family {name} unicast");
        for (i, r) in config.routes.iter().enumerate() {
            if Afi::of(r.prefix.addr()) == afi {
                let _ = writeln!(s, "  network {} route-map ORIGIN-{i}", r.prefix);
            }
        }
        for n in (config.neighbors.iter()).filter(|n| n.afi == afi || n.both_families) {
            match &n.interface {
                Some(i) => {
                    let _ = writeln!(s, "  neighbor {i} activate");
                }
                None => {
                    let _ = writeln!(s, "  neighbor {} activate", n.address);
                }
            }
        }
        let _ = writeln!(s, " exit-address-family");
    }
    let _ = writeln!(s, "exit\n!");
    for (i, r) in config.routes.iter().enumerate() {
        let _ = writeln!(s, "route-map ORIGIN-{i} permit 10");
        if !r.communities.is_empty() {
            let list: Vec<String> = r.communities.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(s, " set community {}", list.join(" "));
        }
        if !r.large_communities.is_empty() {
            let list: Vec<String> = r.large_communities.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(s, " set large-community {}", list.join(" "));
        }
        let _ = writeln!(s, "exit\n!");
    }
    s
}

/// Parses `show bgp summary json` (all families; a peer appears once).
pub fn parse_summary(text: &str) -> Result<Vec<Session>, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out: Vec<Session> = Vec::new();
    for family in json.as_object().into_iter().flat_map(|m| m.values()) {
        for (addr, peer) in family
            .get("peers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            // An interface peer (unnumbered) is listed by its interface's name.
            let neighbor: IpAddr = match addr.parse() {
                Ok(a) => a,
                Err(_) if !addr.contains(['.', ':']) => continue,
                Err(_) => return Err(format!("bad peer address {addr:?}")),
            };
            if out.iter().any(|s| s.neighbor == neighbor) {
                continue;
            }
            let state =
                SessionState::parse(peer.get("state").and_then(Value::as_str).unwrap_or("Idle"));
            let uptime = (state == SessionState::Established)
                .then(|| {
                    peer.get("peerUptimeMsec")
                        .and_then(Value::as_u64)
                        .map(Duration::from_millis)
                })
                .flatten();
            out.push(Session {
                neighbor,
                remote_asn: peer
                    .get("remoteAs")
                    .and_then(Value::as_u64)
                    .and_then(|a| u32::try_from(a).ok()),
                state,
                uptime,
            });
        }
    }
    Ok(out)
}

/// Parses `show bgp ipv4|ipv6 unicast json detail`: `routes` maps a prefix to a list whose
/// first element describes the prefix and the others are paths.
pub fn parse_routes(text: &str) -> Result<Vec<Route>, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (prefix, paths) in json
        .get("routes")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let prefix: IpNet = prefix
            .parse()
            .map_err(|_| format!("bad prefix {prefix:?}"))?;
        for path in paths.as_array().into_iter().flatten() {
            if path.get("nexthops").is_none() {
                continue; // the per-prefix header
            }
            let mut r = Route::empty(prefix);
            r.best = match path.get("bestpath") {
                Some(Value::Bool(b)) => *b,
                Some(v) => v.get("overall").and_then(Value::as_bool).unwrap_or(false),
                None => false,
            };
            for nh in path
                .get("nexthops")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(ip) = nh
                    .get("ip")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse().ok())
                {
                    r.next_hops.push(ip);
                }
            }
            for seg in path
                .pointer("/aspath/segments")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for asn in seg
                    .get("list")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(a) = asn.as_u64().and_then(|a| u32::try_from(a).ok()) {
                        r.as_path.push(a);
                    }
                }
            }
            if r.as_path.is_empty()
                && let Some(p) = path.get("path").and_then(Value::as_str)
            {
                r.as_path = p
                    .split_whitespace()
                    .filter_map(|a| a.parse().ok())
                    .collect();
            }
            let num = |k: &str| {
                path.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
            };
            r.local_pref = num("locPrf").or_else(|| num("localpref"));
            r.med = num("metric").or_else(|| num("med"));
            for c in path
                .pointer("/community/list")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(c) = c.as_str().and_then(|c| c.parse::<Community>().ok()) {
                    r.communities.push(c);
                }
            }
            for c in path
                .pointer("/largeCommunity/list")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(c) = c.as_str().and_then(|c| c.parse::<LargeCommunity>().ok()) {
                    r.large_communities.push(c);
                }
            }
            let local = path
                .get("sourced")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                || path.get("local").and_then(Value::as_bool).unwrap_or(false);
            if !local {
                r.from = path
                    .pointer("/peer/peerId")
                    .or_else(|| path.get("peerId"))
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse().ok());
            }
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_detail_routes() {
        let text = r#"{"routes": { "10.97.0.0/24": [{"prefix":"10.97.0.0/24","version":1},{"aspath":{"string":"Local","segments":[],"length":0},"origin":"IGP","metric":0,"weight":32768,"valid":true,"sourced":true,"local":true,"bestpath":{"overall":true},"community":{"string":"65000:5","list":["65000:5"]},"largeCommunity":{"string":"65000:1:5","list":["65000:1:5"]},"nexthops":[{"ip":"0.0.0.0","afi":"ipv4","used":true}],"peer":{"peerId":"0.0.0.0","routerId":"10.0.0.1"}}]
,"10.99.0.0/24": [{"prefix":"10.99.0.0/24","version":2},{"aspath":{"string":"64513","segments":[{"type":"as-sequence","list":[64513]}],"length":1},"valid":true,"bestpath":{"overall":true},"locPrf":120,"community":{"string":"65000:1","list":["65000:1"]},"largeCommunity":{"string":"65000:1:2","list":["65000:1:2"]},"nexthops":[{"ip":"10.0.0.2","afi":"ipv4","used":true}],"peer":{"peerId":"10.0.0.2","routerId":"10.0.0.2","type":"external"}}]
 }  }"#;
        let mut r = parse_routes(text).unwrap();
        r.sort_by_key(|r| r.prefix.to_string());
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].from, None);
        assert_eq!(r[0].communities, vec![Community::new(65000, 5)]);
        assert_eq!(r[1].from, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(r[1].as_path, vec![64513]);
        assert_eq!(r[1].local_pref, Some(120));
        assert_eq!(
            r[1].large_communities,
            vec![LargeCommunity::new(65000, 1, 2)]
        );
        assert!(r[1].best);
    }

    #[test]
    fn parses_summary() {
        let text = r#"{"ipv4Unicast":{"peers":{"10.0.0.2":{"remoteAs":64513,"state":"Established","peerUptimeMsec":25000},"fd00::2":{"remoteAs":64513,"state":"Active","peerUptimeMsec":0}}},"ipv6Unicast":{"peers":{"fd00::2":{"remoteAs":64513,"state":"Active"}}}}"#;
        let s = parse_summary(text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].uptime, Some(Duration::from_secs(25)));
        assert_eq!(s[1].state, SessionState::Active);
    }
}
