//! BIRD 2 as a real BGP peer: `bird -c CONF -s SOCK -P PID -f` inside a host's namespace.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::bgp::{
    Afi, BgpConfig, BgpDaemon, Community, LargeCommunity, Route, Session, SessionState,
};
use super::cmd::{self, COMMAND_TIMEOUT, Process};
use super::daemon::DaemonHome;
use super::error::LabError;
use super::topology::Host;

/// A running BIRD instance; stopped on drop.
#[derive(Debug)]
pub struct Bird {
    home: DaemonHome,
    process: Process,
    socket: String,
    /// Protocol name -> neighbor address, for reading sessions and route sources.
    peers: HashMap<String, IpAddr>,
}

impl Bird {
    /// Renders `config`, starts BIRD in `host`'s namespace and waits until it answers.
    pub fn start(host: &Host, config: &BgpConfig) -> Result<Bird, LabError> {
        Self::start_with(host, config, "")
    }

    /// Like [`Bird::start`] with extra BIRD configuration appended (filters, BFD, ...).
    pub fn start_with(host: &Host, config: &BgpConfig, extra: &str) -> Result<Bird, LabError> {
        let home = DaemonHome::new(host, "bird")?;
        let log = home.path_str("bird.log")?;
        let mut text = render_config(config, &log);
        text.push_str(extra);
        let conf = home.write("bird.conf", &text)?;
        let conf = super::daemon::path_string(&conf)?;
        let socket = home.path_str("bird.ctl")?;
        let pid = home.path_str("bird.pid")?;
        let mut process = host.spawn(&["bird", "-c", &conf, "-s", &socket, "-P", &pid, "-f"])?;
        let logs = [home.path("bird.log")];
        let probe_socket = socket.clone();
        home.wait_ready(&mut process, &logs, || {
            let out = cmd::run(
                &["birdc", "-s", &probe_socket, "show", "status"],
                COMMAND_TIMEOUT,
            )?;
            Ok(out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("Daemon is up"))
        })?;
        Ok(Bird {
            home,
            process,
            socket,
            peers: peer_names(config),
        })
    }

    /// Runs a `birdc` command (words as separate arguments); its output, or an error.
    pub fn birdc(&self, command: &[&str]) -> Result<String, LabError> {
        let mut argv = vec!["birdc", "-s", self.socket.as_str()];
        argv.extend_from_slice(command);
        let out = cmd::run_ok(&argv, COMMAND_TIMEOUT)?;
        // birdc exits 0 even on some errors; they are reported with a leading "syntax error"
        // or numeric reply codes only in raw mode, so check the text.
        if out
            .lines()
            .any(|l| l.starts_with("syntax error") || l.starts_with("Unknown command"))
        {
            return Err(LabError::Command {
                cmd: cmd::display(&argv),
                status: "error reply".into(),
                stdout: out,
                stderr: String::new(),
            });
        }
        Ok(out)
    }

    /// The control socket (for `birdc -s` from another thread).
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The private directory (config, socket, pid file, log).
    pub fn dir(&self) -> &std::path::Path {
        &self.home.dir
    }

    /// Protocol name BIRD uses for the `i`-th configured neighbor (`peer0`, `peer1`, ...).
    pub fn protocol_name(i: usize) -> String {
        format!("peer{i}")
    }

    /// Stops BIRD now (it is also stopped on drop).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    fn log_files(&self) -> Vec<PathBuf> {
        vec![self.home.path("bird.log")]
    }
}

impl BgpDaemon for Bird {
    fn kind(&self) -> &'static str {
        "bird"
    }

    fn sessions(&self) -> Result<Vec<Session>, LabError> {
        let out = self.birdc(&["show", "protocols", "all"])?;
        Ok(parse_protocols(&out, &self.peers))
    }

    fn routes(&self, afi: Afi) -> Result<Vec<Route>, LabError> {
        let table = match afi {
            Afi::Ipv4 => "master4",
            Afi::Ipv6 => "master6",
        };
        let out = self.birdc(&["show", "route", "all", "table", table])?;
        parse_routes(&out, &self.peers).map_err(|reason| {
            LabError::parse(format!("birdc show route all table {table}"), reason)
        })
    }

    fn log_tail(&self) -> String {
        self.home.log_tail(&self.process, &self.log_files())
    }
}

fn peer_names(config: &BgpConfig) -> HashMap<String, IpAddr> {
    config
        .neighbors
        .iter()
        .enumerate()
        .map(|(i, n)| (Bird::protocol_name(i), n.address))
        .collect()
}

/// BIRD configuration for `config`: a device protocol, static protocols holding the
/// originated routes (blackhole, with their communities) and one BGP protocol per neighbor
/// exporting only those static routes. Fast retry timers so tests converge quickly.
pub fn render_config(config: &BgpConfig, log_file: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "router id {};", config.router_id);
    let _ = writeln!(s, "log \"{log_file}\" all;");
    let _ = writeln!(s, "protocol device {{ scan time 10; }}");
    for (name, v6) in [("origin4", false), ("origin6", true)] {
        let routes: Vec<_> = config
            .routes
            .iter()
            .filter(|r| r.prefix.addr().is_ipv6() == v6)
            .collect();
        if routes.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "protocol static {name} {{\n  {};",
            if v6 { "ipv6" } else { "ipv4" }
        );
        for r in routes {
            let mut attrs = String::new();
            for c in &r.communities {
                let _ = write!(attrs, " bgp_community.add(({},{}));", c.asn, c.value);
            }
            for c in &r.large_communities {
                let _ = write!(
                    attrs,
                    " bgp_large_community.add(({},{},{}));",
                    c.global, c.local1, c.local2
                );
            }
            if attrs.is_empty() {
                let _ = writeln!(s, "  route {} blackhole;", r.prefix);
            } else {
                let _ = writeln!(s, "  route {} blackhole {{{attrs} }};", r.prefix);
            }
        }
        let _ = writeln!(s, "}}");
    }
    // Unnumbered neighbors learn our link-local address from our router advertisements
    // (lifetime 0: not a default router).
    let interfaces: Vec<&String> = config
        .neighbors
        .iter()
        .filter_map(|n| n.interface.as_ref())
        .collect();
    if !interfaces.is_empty() {
        let _ = writeln!(s, "protocol radv {{");
        for i in interfaces {
            let _ = writeln!(
                s,
                "  interface \"{i}\" {{ min ra interval 3; max ra interval 4; default lifetime 0; }};"
            );
        }
        let _ = writeln!(s, "}}");
    }
    // BFD for the neighbors that ask for it (300 ms x 3, ferrolb's and FRR's default).
    let bfd: Vec<&super::bgp::Neighbor> = (config.neighbors.iter())
        .filter(|n| n.bfd != super::bgp::Bfd::Off)
        .collect();
    if let Some(first) = bfd.first() {
        // BIRD sets session options per interface: the first BFD neighbor's role for all.
        let passive = if first.bfd == super::bgp::Bfd::Passive {
            "on"
        } else {
            "off"
        };
        let _ = writeln!(
            s,
            "protocol bfd {{\n  interface \"*\" {{ min rx interval 300 ms; min tx interval 300 ms; idle tx interval 1 s; multiplier 3; passive {passive}; }};\n  multihop {{ min rx interval 300 ms; min tx interval 300 ms; idle tx interval 1 s; multiplier 3; passive {passive}; }};\n}}"
        );
    }
    for (i, n) in config.neighbors.iter().enumerate() {
        let _ = writeln!(s, "protocol bgp {} {{", Bird::protocol_name(i));
        match config.listen_port {
            Some(p) => {
                let _ = writeln!(s, "  local port {p} as {};", config.asn);
            }
            None => {
                let _ = writeln!(s, "  local as {};", config.asn);
            }
        }
        // A link-local neighbor names its interface (unnumbered).
        let address = match &n.interface {
            Some(i) => format!("{}%{i}", n.address),
            None => n.address.to_string(),
        };
        match n.port {
            Some(p) => {
                let _ = writeln!(s, "  neighbor {address} port {p} as {};", n.remote_asn);
            }
            None => {
                let _ = writeln!(s, "  neighbor {address} as {};", n.remote_asn);
            }
        }
        if let Some(pw) = &n.password {
            let _ = writeln!(s, "  password \"{}\";", pw.replace('"', "\\\""));
        }
        if n.passive {
            let _ = writeln!(s, "  passive on;");
        }
        if n.bfd != super::bgp::Bfd::Off {
            let _ = writeln!(s, "  bfd on;");
        }
        if let Some(source) = n.multihop_source {
            let _ = writeln!(s, "  multihop 2;\n  source address {source};");
        }
        let _ = writeln!(
            s,
            "  connect retry time 1;\n  connect delay time 1;\n  error wait time 1, 5;"
        );
        let channels: &[&str] = match (n.afi, n.both_families) {
            (_, true) => &["ipv4", "ipv6"],
            (Afi::Ipv4, false) => &["ipv4"],
            (Afi::Ipv6, false) => &["ipv6"],
        };
        for channel in channels {
            // IPv4 with IPv6 next hops (RFC 8950) on an unnumbered session.
            let extended = if *channel == "ipv4" && n.interface.is_some() {
                " extended next hop on;"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  {channel} {{ import all; export where source = RTS_STATIC;{extended} }};"
            );
        }
        let _ = writeln!(s, "}}");
    }
    s
}

/// Parses `birdc show protocols all` into the BGP sessions it lists.
pub fn parse_protocols(text: &str, peers: &HashMap<String, IpAddr>) -> Vec<Session> {
    struct Block {
        name: String,
        is_bgp: bool,
        header_state: String,
        bgp_state: Option<String>,
        neighbor: Option<IpAddr>,
        asn: Option<u32>,
    }
    let mut blocks: Vec<Block> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with("BIRD ") || line.starts_with("Name ") {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            blocks.push(Block {
                name: cols.first().unwrap_or(&"").to_string(),
                is_bgp: cols.get(1) == Some(&"BGP"),
                header_state: cols.get(3).unwrap_or(&"").to_string(),
                bgp_state: None,
                neighbor: None,
                asn: None,
            });
            continue;
        }
        let Some(block) = blocks.last_mut() else {
            continue;
        };
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "BGP state" => block.bgp_state = Some(value.to_string()),
            "Neighbor address" => block.neighbor = value.parse().ok(),
            "Neighbor AS" => block.asn = value.parse().ok(),
            _ => {}
        }
    }
    blocks
        .into_iter()
        .filter(|b| b.is_bgp)
        .filter_map(|b| {
            let neighbor = b.neighbor.or_else(|| peers.get(&b.name).copied())?;
            let state = b.bgp_state.unwrap_or(b.header_state);
            Some(Session {
                neighbor,
                remote_asn: b.asn,
                state: SessionState::parse(&state),
                uptime: None,
            })
        })
        .collect()
}

/// Parses `birdc show route all [table T]`: one [`Route`] per path.
pub fn parse_routes(text: &str, peers: &HashMap<String, IpAddr>) -> Result<Vec<Route>, String> {
    let mut routes = Vec::new();
    let mut current: Option<(Route, Vec<IpAddr>)> = None;
    let mut last_prefix: Option<IpNet> = None;
    let finish = |cur: Option<(Route, Vec<IpAddr>)>, routes: &mut Vec<Route>| {
        if let Some((mut r, bgp_nh)) = cur {
            if r.next_hops.is_empty() {
                r.next_hops = bgp_nh;
            }
            routes.push(r);
        }
    };
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with("BIRD ") || line.starts_with("Table ") {
            continue;
        }
        let trimmed = line.trim();
        // A path starts at a prefix (column 0) or, for alternate paths of the same prefix, at
        // an indented `TYPE [proto ...` line.
        let starts_path = !line.starts_with(char::is_whitespace)
            || trimmed
                .split_whitespace()
                .nth(1)
                .is_some_and(|t| t.starts_with('['));
        if starts_path {
            finish(current.take(), &mut routes);
            let mut rest = trimmed;
            if !line.starts_with(char::is_whitespace) {
                let (p, r) = trimmed
                    .split_once(char::is_whitespace)
                    .unwrap_or((trimmed, ""));
                let prefix: IpNet = p.parse().map_err(|_| format!("bad prefix in {line:?}"))?;
                last_prefix = Some(prefix);
                rest = r;
            }
            let prefix = last_prefix.ok_or_else(|| format!("path without prefix: {line:?}"))?;
            let mut route = Route::empty(prefix);
            route.best = rest.contains(" * ") || rest.ends_with(" *");
            if let Some(open) = rest.find('[') {
                let inside = &rest[open + 1..];
                let inside = &inside[..inside.find(']').unwrap_or(inside.len())];
                let proto = inside.split_whitespace().next().unwrap_or("");
                route.from = peers.get(proto).copied();
                if let Some(from) = inside.split(" from ").nth(1) {
                    route.from = from.trim().parse().ok().or(route.from);
                }
            }
            current = Some((route, Vec::new()));
            continue;
        }
        let Some((route, bgp_nh)) = current.as_mut() else {
            continue;
        };
        if let Some(via) = trimmed.strip_prefix("via ") {
            if let Some(addr) = via.split_whitespace().next().and_then(|a| a.parse().ok()) {
                route.next_hops.push(addr);
            }
            continue;
        }
        let Some((key, value)) = trimmed.split_once(": ") else {
            continue;
        };
        let value = value.trim();
        match key {
            "BGP.as_path" => {
                route.as_path = value
                    .split_whitespace()
                    .filter_map(|a| a.parse().ok())
                    .collect();
            }
            "BGP.next_hop" => {
                *bgp_nh = value
                    .split_whitespace()
                    .filter_map(|a| a.parse().ok())
                    .collect();
            }
            "BGP.local_pref" => route.local_pref = value.parse().ok(),
            "BGP.med" => route.med = value.parse().ok(),
            "BGP.community" => {
                for t in tuples(value) {
                    if let [a, v] = t[..] {
                        route.communities.push(Community::new(
                            u16::try_from(a).map_err(|_| format!("bad community {value}"))?,
                            u16::try_from(v).map_err(|_| format!("bad community {value}"))?,
                        ));
                    }
                }
            }
            "BGP.large_community" => {
                for t in tuples(value) {
                    if let [g, l1, l2] = t[..] {
                        route.large_communities.push(LargeCommunity::new(g, l1, l2));
                    }
                }
            }
            _ => {}
        }
    }
    finish(current.take(), &mut routes);
    Ok(routes)
}

/// `(65000,1) (65000, 1, 2)` -> `[[65000, 1], [65000, 1, 2]]`.
fn tuples(s: &str) -> Vec<Vec<u32>> {
    s.split('(')
        .skip(1)
        .filter_map(|t| t.split(')').next())
        .map(|t| t.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "BIRD 2.0.12 ready.
Table master4:
10.98.0.0/24         unreachable [origin4 21:09:18.082] * (200)
\tType: static univ
\tBGP.community: (65000,7)
\tBGP.large_community: (65000, 1, 9)
10.99.0.0/24         unicast [peer0 21:09:03.509] * (100) [AS64513?]
\tvia 10.0.0.2 on eth0
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 64513 64600
\tBGP.next_hop: 10.0.0.2
\tBGP.local_pref: 100
\tBGP.community: (65000,1) (65000,2)
\tBGP.large_community: (65000, 1, 2)
                     unicast [peer1 21:09:04.000] (100) [AS64514?]
\tvia 10.0.0.3 on eth0
\tType: BGP univ
\tBGP.as_path: 64514
\tBGP.next_hop: 10.0.0.3
\tBGP.local_pref: 100
";

    #[test]
    fn parses_routes_with_alternate_paths() {
        let peers = HashMap::from([
            ("peer0".to_string(), "10.0.0.2".parse().unwrap()),
            ("peer1".to_string(), "10.0.0.3".parse().unwrap()),
        ]);
        let routes = parse_routes(ROUTES, &peers).unwrap();
        assert_eq!(routes.len(), 3, "{routes:#?}");
        assert_eq!(routes[0].from, None);
        assert_eq!(routes[0].communities, vec![Community::new(65000, 7)]);
        let r = &routes[1];
        assert_eq!(r.prefix.to_string(), "10.99.0.0/24");
        assert!(r.best);
        assert_eq!(r.next_hops, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.as_path, vec![64513, 64600]);
        assert_eq!(r.local_pref, Some(100));
        assert_eq!(
            r.communities,
            vec![Community::new(65000, 1), Community::new(65000, 2)]
        );
        assert_eq!(r.large_communities, vec![LargeCommunity::new(65000, 1, 2)]);
        assert_eq!(r.from, Some("10.0.0.2".parse().unwrap()));
        let alt = &routes[2];
        assert_eq!(alt.prefix, r.prefix);
        assert!(!alt.best);
        assert_eq!(alt.from, Some("10.0.0.3".parse().unwrap()));
    }

    #[test]
    fn parses_protocols() {
        let text = "BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     21:08:58.967

peer0      BGP        ---        up     21:09:03.509  Established
  BGP state:          Established
    Neighbor address: 10.0.0.2
    Neighbor AS:      64513
    Local AS:         64512
peer1      BGP        ---        start  21:09:03.509  Active
  BGP state:          Active
    Neighbor address: fd00::2
    Neighbor AS:      64514
";
        let s = parse_protocols(text, &HashMap::new());
        assert_eq!(s.len(), 2);
        assert!(s[0].is_established());
        assert_eq!(s[0].remote_asn, Some(64513));
        assert_eq!(s[1].state, SessionState::Active);
        assert_eq!(s[1].neighbor, "fd00::2".parse::<IpAddr>().unwrap());
    }
}
