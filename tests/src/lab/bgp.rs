//! A small BGP model shared by the daemon drivers: what to configure ([`BgpConfig`]) and what
//! to read back ([`Session`], [`Route`]), plus the [`BgpDaemon`] trait with bounded waits.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use super::error::LabError;
use super::wait::wait_for;

/// Address family of a session or a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Afi {
    Ipv4,
    Ipv6,
}

impl Afi {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Afi {
        if addr.is_ipv4() { Afi::Ipv4 } else { Afi::Ipv6 }
    }
}

/// A standard community `asn:value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community {
    pub asn: u16,
    pub value: u16,
}

impl Community {
    pub fn new(asn: u16, value: u16) -> Self {
        Community { asn, value }
    }

    /// From the 32-bit wire value.
    pub fn from_u32(v: u32) -> Self {
        Community {
            asn: (v >> 16) as u16,
            value: (v & 0xffff) as u16,
        }
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.asn, self.value)
    }
}

impl FromStr for Community {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, v) = s
            .split_once(':')
            .ok_or_else(|| format!("bad community {s:?}"))?;
        Ok(Community {
            asn: a
                .trim()
                .parse()
                .map_err(|_| format!("bad community {s:?}"))?,
            value: v
                .trim()
                .parse()
                .map_err(|_| format!("bad community {s:?}"))?,
        })
    }
}

/// A large community `global:local1:local2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global: u32,
    pub local1: u32,
    pub local2: u32,
}

impl LargeCommunity {
    pub fn new(global: u32, local1: u32, local2: u32) -> Self {
        LargeCommunity {
            global,
            local1,
            local2,
        }
    }
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global, self.local1, self.local2)
    }
}

impl FromStr for LargeCommunity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').map(str::trim).collect();
        let bad = || format!("bad large community {s:?}");
        if parts.len() != 3 {
            return Err(bad());
        }
        Ok(LargeCommunity {
            global: parts[0].parse().map_err(|_| bad())?,
            local1: parts[1].parse().map_err(|_| bad())?,
            local2: parts[2].parse().map_err(|_| bad())?,
        })
    }
}

/// One configured neighbor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub address: IpAddr,
    pub remote_asn: u32,
    /// TCP MD5 password.
    pub password: Option<String>,
    /// Remote TCP port (default 179).
    pub port: Option<u16>,
    /// Only accept the connection, never initiate it.
    pub passive: bool,
    /// The family carried (defaults to the neighbor address's family).
    pub afi: Afi,
    /// BFD on this session: BIRD runs `protocol bfd` (300 ms x 3) and `bfd on`; FRR runs zebra
    /// and bfdd next to bgpd and `neighbor X bfd` (its defaults, 300 ms x 3).
    pub bfd: Bfd,
    /// Carry both families over this session, not only `afi` (MP-BGP, RFC 4760).
    pub both_families: bool,
    /// Multihop from this source address of the daemon's (BIRD: `multihop 2; source address`,
    /// and multihop BFD, RFC 5883, for a BFD neighbor).
    pub multihop_source: Option<IpAddr>,
    /// Unnumbered: the router's interface toward the neighbor (FRR: an interface peer,
    /// learned from router advertisements, with zebra; BIRD: `address` is the neighbor's
    /// link-local address on it, and BIRD advertises itself with `radv`). Both families,
    /// IPv4 with IPv6 next hops (RFC 8950).
    pub interface: Option<String>,
}

/// Whether and how a neighbor runs BFD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bfd {
    Off,
    /// Starts the BFD session (sends first).
    Active,
    /// Waits for the other side's first packet (BIRD only).
    Passive,
}

impl Neighbor {
    /// An active neighbor carrying its address's family, no password.
    pub fn new(address: impl Into<IpAddr>, remote_asn: u32) -> Self {
        let address = address.into();
        Neighbor {
            address,
            remote_asn,
            password: None,
            port: None,
            passive: false,
            afi: Afi::of(address),
            bfd: Bfd::Off,
            multihop_source: None,
            both_families: false,
            interface: None,
        }
    }

    /// An unnumbered neighbor on `interface` (`link_local`: its address there, which BIRD
    /// needs; FRR learns it).
    pub fn unnumbered(interface: &str, link_local: std::net::Ipv6Addr, remote_asn: u32) -> Self {
        Neighbor {
            interface: Some(interface.to_string()),
            both_families: true,
            ..Neighbor::new(link_local, remote_asn)
        }
    }

    /// Both address families over this one session.
    pub fn both_families(mut self) -> Self {
        self.both_families = true;
        self
    }

    /// Multihop eBGP from `source` (an address of the daemon's host that is not on the link).
    pub fn multihop_from(mut self, source: IpAddr) -> Self {
        self.multihop_source = Some(source);
        self
    }

    /// BFD on this session.
    pub fn bfd(mut self, bfd: Bfd) -> Self {
        self.bfd = bfd;
        self
    }

    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }

    pub fn afi(mut self, afi: Afi) -> Self {
        self.afi = afi;
        self
    }
}

/// A prefix the daemon originates (for self-tests and as a "router's own" route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub prefix: IpNet,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
}

impl Origin {
    pub fn new(prefix: IpNet) -> Self {
        Origin {
            prefix,
            communities: Vec::new(),
            large_communities: Vec::new(),
        }
    }

    pub fn community(mut self, c: Community) -> Self {
        self.communities.push(c);
        self
    }

    pub fn large_community(mut self, c: LargeCommunity) -> Self {
        self.large_communities.push(c);
        self
    }
}

/// A BGP router's configuration, rendered by each driver into its own config language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// TCP port to listen on (default 179).
    pub listen_port: Option<u16>,
    pub neighbors: Vec<Neighbor>,
    pub routes: Vec<Origin>,
}

impl BgpConfig {
    pub fn new(asn: u32, router_id: Ipv4Addr) -> Self {
        BgpConfig {
            asn,
            router_id,
            listen_port: None,
            neighbors: Vec::new(),
            routes: Vec::new(),
        }
    }

    pub fn neighbor(mut self, n: Neighbor) -> Self {
        self.neighbors.push(n);
        self
    }

    pub fn route(mut self, r: Origin) -> Self {
        self.routes.push(r);
        self
    }

    pub fn listen_port(mut self, port: u16) -> Self {
        self.listen_port = Some(port);
        self
    }
}

/// BGP FSM state of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
    /// Anything else a daemon reports (e.g. BIRD's `Down`), verbatim.
    Other(String),
}

impl SessionState {
    /// Parses the usual spellings (`Established`, `ESTABLISHED`, `OpenSent`, `opensent`...).
    pub fn parse(s: &str) -> SessionState {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['_', ' '], "")
            .as_str()
        {
            "idle" => SessionState::Idle,
            "connect" => SessionState::Connect,
            "active" => SessionState::Active,
            "opensent" => SessionState::OpenSent,
            "openconfirm" => SessionState::OpenConfirm,
            "established" => SessionState::Established,
            _ => SessionState::Other(s.trim().to_string()),
        }
    }
}

/// One session as a daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub neighbor: IpAddr,
    pub remote_asn: Option<u32>,
    pub state: SessionState,
    /// Time since Established, where the daemon reports it cheaply (not BIRD).
    pub uptime: Option<Duration>,
}

impl Session {
    pub fn is_established(&self) -> bool {
        self.state == SessionState::Established
    }
}

/// One path of one prefix in a daemon's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: IpNet,
    /// Next hops (BIRD: the resolved gateways, else BGP.next_hop; FRR/GoBGP: BGP next hops).
    pub next_hops: Vec<IpAddr>,
    pub as_path: Vec<u32>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
    /// The neighbor it was learned from; `None` for a locally originated route.
    pub from: Option<IpAddr>,
    /// Selected as best path.
    pub best: bool,
}

impl Route {
    pub(crate) fn empty(prefix: IpNet) -> Self {
        Route {
            prefix,
            next_hops: Vec::new(),
            as_path: Vec::new(),
            local_pref: None,
            med: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
            from: None,
            best: false,
        }
    }
}

/// What every daemon driver offers: typed state readers and bounded waits on them.
pub trait BgpDaemon {
    /// `"bird"`, `"frr"`, `"gobgp"`.
    fn kind(&self) -> &'static str;

    /// All configured sessions and their state.
    fn sessions(&self) -> Result<Vec<Session>, LabError>;

    /// The daemon's table for a family (locally originated and received paths).
    fn routes(&self, afi: Afi) -> Result<Vec<Route>, LabError>;

    /// The tail of the daemon's log (for failure messages).
    fn log_tail(&self) -> String;

    /// The session with `neighbor`, if configured.
    fn session(&self, neighbor: IpAddr) -> Result<Option<Session>, LabError> {
        Ok(self
            .sessions()?
            .into_iter()
            .find(|s| s.neighbor == neighbor))
    }

    /// Waits until the session with `neighbor` is Established. The error names the last state
    /// seen and includes the daemon's log tail.
    fn wait_established(&self, neighbor: IpAddr, timeout: Duration) -> Result<Session, LabError> {
        let r = wait_for(
            &format!("{} session with {neighbor} to be Established", self.kind()),
            timeout,
            || match self.session(neighbor)? {
                Some(s) if s.is_established() => Ok(Some(s)),
                Some(s) => Err(LabError::Invalid(format!("state {:?}", s.state))),
                None => Err(LabError::Invalid("no such session".into())),
            },
        );
        r.map_err(|e| with_log(e, self.log_tail()))
    }

    /// Waits until `prefix` is in the table (learned from a neighbor or local) and returns
    /// its best path (or its first path if none is marked best).
    fn wait_route(&self, prefix: IpNet, timeout: Duration) -> Result<Route, LabError> {
        let afi = Afi::of(prefix.addr());
        let r = wait_for(
            &format!("{} to have {prefix}", self.kind()),
            timeout,
            || {
                let routes = self.routes(afi)?;
                let mut paths = routes.into_iter().filter(|r| r.prefix == prefix);
                let first = paths.next();
                Ok::<_, LabError>(match first {
                    Some(f) if f.best => Some(f),
                    Some(f) => Some(paths.find(|r| r.best).unwrap_or(f)),
                    None => None,
                })
            },
        );
        r.map_err(|e| with_log(e, self.log_tail()))
    }

    /// Waits until `pred` holds on the table of `afi`; returns that table.
    fn wait_routes(
        &self,
        afi: Afi,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Route]) -> bool,
    ) -> Result<Vec<Route>, LabError>
    where
        Self: Sized,
    {
        let r = wait_for(&format!("{}: {what}", self.kind()), timeout, || {
            let routes = self.routes(afi)?;
            Ok::<_, LabError>(pred(&routes).then_some(routes))
        });
        r.map_err(|e| with_log(e, self.log_tail()))
    }

    /// Waits until at least `n` paths learned from neighbors are in the table of `afi`.
    fn wait_received_count(
        &self,
        afi: Afi,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Route>, LabError>
    where
        Self: Sized,
    {
        self.wait_routes(afi, &format!("{n} received routes"), timeout, |r| {
            r.iter().filter(|r| r.from.is_some()).count() >= n
        })
    }
}

fn with_log(e: LabError, log: String) -> LabError {
    match e {
        LabError::Timeout {
            what,
            timeout,
            last,
        } => LabError::Timeout {
            what,
            timeout,
            last: format!("{last}\n--- daemon log tail ---\n{log}"),
        },
        other => other,
    }
}
