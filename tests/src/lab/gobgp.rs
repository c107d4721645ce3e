//! GoBGP as a real BGP peer: `gobgpd -f CONF --api-hosts 127.0.0.1:PORT --pprof-disable`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde_json::Value;

use super::bgp::{
    Afi, BgpConfig, BgpDaemon, Community, LargeCommunity, Origin, Route, Session, SessionState,
};
use super::cmd::Process;
use super::daemon::DaemonHome;
use super::error::LabError;
use super::topology::Host;

static API_PORT: AtomicU16 = AtomicU16::new(50051);

/// A running gobgpd; stopped on drop.
#[derive(Debug)]
pub struct GoBgp {
    home: DaemonHome,
    process: Process,
    api_port: String,
}

impl GoBgp {
    /// Renders `config`, starts gobgpd in `host`'s namespace, waits for its API and then
    /// announces `config.routes` through the CLI.
    pub fn start(host: &Host, config: &BgpConfig) -> Result<GoBgp, LabError> {
        let home = DaemonHome::new(host, "gobgp")?;
        let conf = home.write("gobgpd.toml", &render_config(config))?;
        let conf = super::daemon::path_string(&conf)?;
        // Each namespace has its own loopback; distinct ports still allow two per host.
        let port = API_PORT.fetch_add(1, Ordering::Relaxed).to_string();
        let api = format!("127.0.0.1:{port}");
        let mut process = host.spawn(&[
            "gobgpd",
            "-f",
            &conf,
            "--api-hosts",
            &api,
            "--pprof-disable",
        ])?;
        home.wait_ready(&mut process, &[], || {
            let out = host.exec(&["gobgp", "-u", "127.0.0.1", "-p", &port, "global", "-j"])?;
            Ok(out.status.success())
        })?;
        let daemon = GoBgp {
            home,
            process,
            api_port: port,
        };
        for r in &config.routes {
            daemon.announce(r)?;
        }
        Ok(daemon)
    }

    /// Runs a `gobgp` CLI command against this instance; its stdout, or an error.
    pub fn cli(&self, args: &[&str]) -> Result<String, LabError> {
        let mut argv = vec!["gobgp", "-u", "127.0.0.1", "-p", self.api_port.as_str()];
        argv.extend_from_slice(args);
        self.home.host.exec_ok(&argv)
    }

    /// Adds a route to the global RIB (announced to every neighbor of its family).
    pub fn announce(&self, origin: &Origin) -> Result<(), LabError> {
        let prefix = origin.prefix.to_string();
        let mut args = vec!["global", "rib", "add", prefix.as_str()];
        let communities = join(&origin.communities);
        let large = join(&origin.large_communities);
        if !origin.communities.is_empty() {
            args.extend(["community", communities.as_str()]);
        }
        if !origin.large_communities.is_empty() {
            args.extend(["large-community", large.as_str()]);
        }
        args.extend(["-a", family(origin.prefix.addr())]);
        self.cli(&args).map(drop)
    }

    /// Removes a route from the global RIB.
    pub fn withdraw(&self, prefix: IpNet) -> Result<(), LabError> {
        let p = prefix.to_string();
        self.cli(&[
            "global",
            "rib",
            "del",
            p.as_str(),
            "-a",
            family(prefix.addr()),
        ])
        .map(drop)
    }

    /// The private directory (config, log).
    pub fn dir(&self) -> &std::path::Path {
        &self.home.dir
    }

    /// Stops gobgpd now (it is also stopped on drop).
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "ipv4" } else { "ipv6" }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl BgpDaemon for GoBgp {
    fn kind(&self) -> &'static str {
        "gobgp"
    }

    fn sessions(&self) -> Result<Vec<Session>, LabError> {
        let out = self.cli(&["neighbor", "-j"])?;
        parse_neighbors(&out, SystemTime::now())
            .map_err(|reason| LabError::parse("gobgp neighbor -j", reason))
    }

    fn routes(&self, afi: Afi) -> Result<Vec<Route>, LabError> {
        let fam = match afi {
            Afi::Ipv4 => "ipv4",
            Afi::Ipv6 => "ipv6",
        };
        let out = self.cli(&["global", "rib", "-j", "-a", fam])?;
        parse_rib(&out)
            .map_err(|reason| LabError::parse(format!("gobgp global rib -j -a {fam}"), reason))
    }

    fn log_tail(&self) -> String {
        self.home.log_tail(&self.process, &[])
    }
}

/// gobgpd TOML configuration for `config` (connect retry 1 s so tests converge quickly).
pub fn render_config(config: &BgpConfig) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "[global.config]");
    let _ = writeln!(s, "  as = {}", config.asn);
    let _ = writeln!(s, "  router-id = \"{}\"", config.router_id);
    let _ = writeln!(s, "  port = {}", config.listen_port.unwrap_or(179));
    for n in &config.neighbors {
        let _ = writeln!(s, "\n[[neighbors]]\n  [neighbors.config]");
        let _ = writeln!(s, "    neighbor-address = \"{}\"", n.address);
        let _ = writeln!(s, "    peer-as = {}", n.remote_asn);
        if let Some(pw) = &n.password {
            let _ = writeln!(
                s,
                "    auth-password = \"{}\"",
                pw.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
        let _ = writeln!(s, "  [neighbors.timers.config]\n    connect-retry = 1");
        if n.passive || n.port.is_some() {
            let _ = writeln!(s, "  [neighbors.transport.config]");
            if n.passive {
                let _ = writeln!(s, "    passive-mode = true");
            }
            if let Some(p) = n.port {
                let _ = writeln!(s, "    remote-port = {p}");
            }
        }
        let afi = match n.afi {
            Afi::Ipv4 => "ipv4-unicast",
            Afi::Ipv6 => "ipv6-unicast",
        };
        let _ = writeln!(
            s,
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{afi}\""
        );
    }
    s
}

/// Parses `gobgp neighbor -j`.
pub fn parse_neighbors(text: &str, now: SystemTime) -> Result<Vec<Session>, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(list) = json.as_array() else {
        return if json.is_null() {
            Ok(Vec::new())
        } else {
            Err("not an array".into())
        };
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut out = Vec::new();
    for n in list {
        let addr = n
            .pointer("/state/neighbor_address")
            .or_else(|| n.pointer("/conf/neighbor_address"))
            .and_then(Value::as_str)
            .ok_or("neighbor without neighbor_address")?;
        let neighbor: IpAddr = addr
            .parse()
            .map_err(|_| format!("bad neighbor address {addr:?}"))?;
        let state = match n.pointer("/state/session_state") {
            Some(Value::Number(num)) => match num.as_u64() {
                Some(1) => SessionState::Idle,
                Some(2) => SessionState::Connect,
                Some(3) => SessionState::Active,
                Some(4) => SessionState::OpenSent,
                Some(5) => SessionState::OpenConfirm,
                Some(6) => SessionState::Established,
                _ => SessionState::Other(num.to_string()),
            },
            Some(Value::String(s)) => SessionState::parse(s),
            _ => SessionState::Idle,
        };
        let uptime = if state == SessionState::Established {
            n.pointer("/timers/state/uptime/seconds")
                .and_then(Value::as_u64)
                .map(|since| Duration::from_secs(now.saturating_sub(since)))
        } else {
            None
        };
        let remote_asn = n
            .pointer("/state/peer_asn")
            .or_else(|| n.pointer("/conf/peer_asn"))
            .and_then(Value::as_u64)
            .and_then(|a| u32::try_from(a).ok());
        out.push(Session {
            neighbor,
            remote_asn,
            state,
            uptime,
        });
    }
    Ok(out)
}

/// Parses `gobgp global rib -j -a FAMILY`: one [`Route`] per path.
pub fn parse_rib(text: &str) -> Result<Vec<Route>, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(map) = json.as_object() else {
        return if json.is_null() {
            Ok(Vec::new())
        } else {
            Err("not an object".into())
        };
    };
    let mut out = Vec::new();
    for (prefix, paths) in map {
        let prefix: IpNet = prefix
            .parse()
            .map_err(|_| format!("bad prefix {prefix:?}"))?;
        for path in paths.as_array().ok_or("paths are not an array")? {
            let mut r = Route::empty(prefix);
            r.best = path.get("best").and_then(Value::as_bool).unwrap_or(false);
            r.from = path
                .get("neighbor-ip")
                .and_then(Value::as_str)
                .and_then(|a| a.parse().ok());
            for attr in path
                .get("attrs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match attr.get("type").and_then(Value::as_u64) {
                    Some(2) => {
                        for seg in attr
                            .get("as_paths")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            for asn in seg
                                .get("asns")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                            {
                                if let Some(a) = asn.as_u64().and_then(|a| u32::try_from(a).ok()) {
                                    r.as_path.push(a);
                                }
                            }
                        }
                    }
                    Some(3) | Some(14) => {
                        if let Some(nh) = attr
                            .get("nexthop")
                            .and_then(Value::as_str)
                            .and_then(|a| a.parse().ok())
                        {
                            r.next_hops.push(nh);
                        }
                    }
                    Some(4) => {
                        r.med = attr
                            .get("metric")
                            .and_then(Value::as_u64)
                            .and_then(|v| u32::try_from(v).ok())
                    }
                    Some(5) => {
                        r.local_pref = attr
                            .get("value")
                            .and_then(Value::as_u64)
                            .and_then(|v| u32::try_from(v).ok())
                    }
                    Some(8) => {
                        for c in attr
                            .get("communities")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            if let Some(v) = c.as_u64().and_then(|v| u32::try_from(v).ok()) {
                                r.communities.push(Community::from_u32(v));
                            }
                        }
                    }
                    Some(32) => {
                        for c in attr
                            .get("value")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            let f = |k: &str| {
                                c.get(k)
                                    .and_then(Value::as_u64)
                                    .and_then(|v| u32::try_from(v).ok())
                            };
                            if let (Some(g), Some(l1), Some(l2)) =
                                (f("ASN"), f("LocalData1"), f("LocalData2"))
                            {
                                r.large_communities.push(LargeCommunity::new(g, l1, l2));
                            }
                        }
                    }
                    _ => {}
                }
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
    fn parses_rib() {
        let text = r#"{"10.98.0.0/24":[{"nlri":{"prefix":"10.98.0.0/24"},"age":1795381758,"best":true,"attrs":[{"type":1,"value":0},{"type":2,"as_paths":[{"segment_type":2,"num":1,"asns":[64512]}]},{"type":3,"nexthop":"10.0.0.1"},{"type":5,"value":150},{"type":8,"communities":[4259840007]},{"type":32,"value":[{"ASN":65000,"LocalData1":1,"LocalData2":9}]}],"stale":false,"source-id":"10.0.0.1","neighbor-ip":"10.0.0.1"}],"fd00:99::/64":[{"nlri":{"prefix":"fd00:99::/64"},"best":true,"attrs":[{"type":14,"nexthop":"::","afi":2,"safi":1}]}]}"#;
        let mut r = parse_rib(text).unwrap();
        r.sort_by_key(|r| r.prefix.to_string());
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].as_path, vec![64512]);
        assert_eq!(r[0].communities, vec![Community::new(65000, 7)]);
        assert_eq!(
            r[0].large_communities,
            vec![LargeCommunity::new(65000, 1, 9)]
        );
        assert_eq!(r[0].local_pref, Some(150));
        assert_eq!(r[0].from, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(r[1].from, None);
        assert_eq!(r[1].next_hops, vec!["::".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn parses_neighbors() {
        let text = r#"[{"conf":{"neighbor_address":"10.0.0.1","peer_asn":64512},"state":{"neighbor_address":"10.0.0.1","peer_asn":64512,"session_state":6},"timers":{"state":{"uptime":{"seconds":1000}}}},{"conf":{"neighbor_address":"fd00::1","peer_asn":64512},"state":{"session_state":3}}]"#;
        let s = parse_neighbors(text, UNIX_EPOCH + Duration::from_secs(1010)).unwrap();
        assert!(s[0].is_established());
        assert_eq!(s[0].uptime, Some(Duration::from_secs(10)));
        assert_eq!(s[1].state, SessionState::Active);
        assert_eq!(s[1].neighbor, "fd00::1".parse::<IpAddr>().unwrap());
    }
}
