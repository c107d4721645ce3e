//! The per-node BGP speaker: one [`Session`] per peer selected for this node, kept in step with
//! the inputs (config, Services, Node) by [`NodeSpeaker::apply`].
//!
//! Each `apply` computes the tables with the pure [`announce::plan`] and then, per peer:
//! - new peer: start a session with its table;
//! - peer gone (deleted, or its `nodeSelectors` no longer match): stop it (Cease, so the
//!   router withdraws at once);
//! - peer's session settings changed (address, ASNs, password, ...): stop it and start anew
//!   (the only case that resets a session);
//! - otherwise, if its table changed: `set_routes`, which sends only the difference.
//!
//! Sessions run on the tokio runtime `apply` is called from; their sockets are created in that
//! runtime's network namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ferrolb_config::{Config, Peer, PeerAddress};

use super::announce::{self, Local, Plan};
use super::fsm::FsmConfig;
use super::listener::Listener;
use super::session::{PeerConfig, Session, SessionStatus};
use super::update::Table;
use crate::bfd::{Bfd, BfdSettings, BfdStatus, Timers};
use crate::election::{Node, Service};

/// Why a selected peer gets no session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No `routerID` on the BGPPeer and the node has no IPv4 address to use instead.
    #[error(
        "peer {peer}: no routerID set and the node has no IPv4 address to use as BGP identifier"
    )]
    NoRouterId {
        /// The BGPPeer's name.
        peer: String,
    },
}

/// The session settings for `peer` from this node. The BGP identifier is the peer's
/// `routerID`, else `node_ipv4`. Hold times the FSM cannot use are brought into range
/// (1-2 s become 3 s, more than 65535 s become 65535 s; the config model refuses both).
/// The keepalive interval is `keepaliveTime`, at most a third of the negotiated hold time.
pub fn peer_config(peer: &Peer, node_ipv4: Option<Ipv4Addr>) -> Result<PeerConfig, PeerError> {
    let router_id = peer
        .router_id
        .or(node_ipv4)
        .ok_or_else(|| PeerError::NoRouterId {
            peer: peer.name.clone(),
        })?;
    let mut fsm = FsmConfig::new(peer.my_asn, peer.peer_asn, router_id);
    fsm.hold_time = match peer.hold_time.as_secs() {
        0 => 0,
        1..=2 => 3,
        s => u16::try_from(s).unwrap_or(u16::MAX),
    };
    fsm.keepalive = Some(peer.keepalive_time);
    if !peer.connect_time.is_zero() {
        fsm.connect_retry = peer.connect_time;
        // Restart backoff starts at the connect time (capped low so a short connectTime gives
        // quick recovery) and doubles up to a minute.
        fsm.idle_hold = peer.connect_time.min(Duration::from_secs(5));
    }
    let (address, interface) = match &peer.address {
        PeerAddress::Ip(ip) => (*ip, None),
        // Learned from the peer's router advertisements when the session connects.
        PeerAddress::Interface(name) => (
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            Some(name.clone()),
        ),
    };
    // An unnumbered session sends IPv4 routes with its IPv6 link-local next hop.
    fsm.ipv4_over_ipv6 = interface.is_some();
    fsm.graceful_restart = peer
        .graceful_restart
        .then_some(super::fsm::GRACEFUL_RESTART_TIME);
    let mut cfg = PeerConfig::new(fsm, address);
    cfg.interface = interface;
    cfg.peer_port = peer.port;
    cfg.source_address = peer.source_address;
    cfg.password = peer.password.clone().filter(|p| !p.is_empty());
    cfg.ebgp_multihop = peer.ebgp_multihop;
    cfg.dual_stack = peer.dual_stack;
    cfg.vrf = peer.vrf.clone();
    Ok(cfg)
}

/// The BFD session a peer asks for with its `bfdProfile` (none without one, or when the profile
/// is missing: the config model refuses that), from the peer's `sourceAddress`. Multihop for
/// an `ebgpMultiHop` peer; [`NodeSpeaker`] also makes it multihop for a peer that is not on a
/// subnet of the node (an iBGP route reflector on a loopback, say), as FRR does.
pub fn bfd_settings(peer: &Peer, config: &Config) -> Option<BfdSettings> {
    let profile = config.bfd_profiles.get(peer.bfd_profile.as_deref()?)?;
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    Some(BfdSettings {
        timers: Timers {
            desired_min_tx: ms(profile.transmit_interval_ms),
            required_min_rx: ms(profile.receive_interval_ms),
            detect_mult: u8::try_from(profile.detect_multiplier).unwrap_or(u8::MAX),
        },
        passive: profile.passive_mode,
        multihop: peer.ebgp_multihop,
        minimum_ttl: u8::try_from(profile.minimum_ttl).unwrap_or(u8::MAX),
        source: peer.source_address,
    })
}

/// What one [`NodeSpeaker::apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The decision it acted on (tables and per-IP reasons, for status and `explain`).
    pub plan: Plan,
    /// Peers whose session was started (new, or restarted after a settings change).
    pub started: Vec<String>,
    /// Peers whose session was stopped with a Cease (gone, or restarted).
    pub stopped: Vec<String>,
    /// Peers that were sent a new table (only the difference goes on the wire).
    pub updated: Vec<String>,
    /// Selected peers that get no session, and why.
    pub errors: Vec<PeerError>,
}

struct Running {
    cfg: PeerConfig,
    session: Session,
    table: Table,
    /// The BFD session it follows, if any.
    bfd: Option<BfdSettings>,
}

/// One node's BGP sessions.
pub struct NodeSpeaker {
    node_ipv4: Option<Ipv4Addr>,
    sessions: BTreeMap<String, Running>,
    /// Port for the passive side (0: connect only).
    listen_port: u16,
    listener: Option<Listener>,
    /// Why the listener is not there, while it is not (retried on every apply; logged once
    /// per distinct reason).
    listen_error: Option<String>,
    /// Addresses no session carries (only peers of the other family), logged when they change.
    no_peer_of_family: BTreeSet<IpAddr>,
    /// The BFD sessions, once a peer asks for one.
    bfd: Option<Bfd>,
}

impl NodeSpeaker {
    /// A speaker with no sessions that only connects. `node_ipv4` is the BGP identifier for
    /// peers without a `routerID` (the node's IPv4 address).
    pub fn new(node_ipv4: Option<Ipv4Addr>) -> Self {
        NodeSpeaker {
            node_ipv4,
            sessions: BTreeMap::new(),
            listen_port: 0,
            listener: None,
            listen_error: None,
            no_peer_of_family: BTreeSet::new(),
            bfd: None,
        }
    }

    /// Also accepts the peers' connections on `port` (every address of the node; 179 is
    /// BGP's), bound on the first [`NodeSpeaker::apply`]. 0: connect only.
    pub fn listening_on(mut self, port: u16) -> Self {
        self.listen_port = port;
        self
    }

    /// Binds the listener if asked for and not yet bound.
    fn ensure_listener(&mut self) {
        if self.listen_port == 0 || self.listener.is_some() {
            return;
        }
        match Listener::bind(self.listen_port) {
            Ok(l) => {
                tracing::info!(port = self.listen_port, "BGP listener up");
                self.listener = Some(l);
                self.listen_error = None;
            }
            Err(e) => {
                let msg = e.to_string();
                if self.listen_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!("{msg}; sessions only connect until it can be bound");
                }
                self.listen_error = Some(msg);
            }
        }
    }

    /// The session for one peer, taking its incoming connections when there is a listener.
    fn start_session(&self, name: &str, cfg: &PeerConfig, table: Table) -> Session {
        // The listener is in the default VRF: a peer in another VRF is only connected to;
        // an unnumbered peer too (its address is not known when the session starts).
        let listener =
            (self.listener.as_ref()).filter(|_| cfg.vrf.is_none() && cfg.interface.is_none());
        let incoming = listener.and_then(|l| {
            let key = cfg.password.as_ref().map(|p| p.as_bytes());
            l.register(cfg.peer_address, key)
                .inspect_err(|e| {
                    tracing::warn!(peer = %name, "{e}; this session only connects");
                })
                .ok()
        });
        Session::spawn_accepting(cfg.clone(), table, incoming)
    }

    /// Says (once per change) which addresses are not announced because every peer they would
    /// go to has a session of the other address family: counts and the first few, so the line
    /// does not grow with the number of Services.
    fn log_unannounced_families(&mut self, plan: &announce::Plan) {
        let now: BTreeSet<IpAddr> = (plan.decisions.iter())
            .filter(|d| d.decision == Err(announce::Reason::NoPeerOfFamily))
            .map(|d| d.ip)
            .collect();
        if now != self.no_peer_of_family && !now.is_empty() {
            let first: Vec<String> = now.iter().take(5).map(|ip| ip.to_string()).collect();
            tracing::warn!(
                count = now.len(),
                "addresses not announced over BGP: every peer they would go to is of the other \
                 address family (first: {})",
                first.join(", ")
            );
        }
        self.no_peer_of_family = now;
    }

    /// Brings the sessions and their tables in line with the inputs. Call it on every change
    /// of the config, the Services (IPs, endpoints) or this Node, from inside a tokio runtime.
    pub async fn apply(
        &mut self,
        config: &Config,
        node: &Node,
        services: &[Service],
        ignore_exclude_label: bool,
    ) -> Applied {
        let plan = announce::plan(
            &Local {
                config,
                node,
                ignore_exclude_label,
            },
            services,
        );
        self.log_unannounced_families(&plan);
        let mut out = Applied::default();
        let mut wanted: BTreeMap<String, (PeerConfig, Table)> = BTreeMap::new();
        for (name, table) in &plan.tables {
            let Some(peer) = config.peers.get(name) else {
                continue;
            };
            match peer_config(peer, self.node_ipv4) {
                Ok(cfg) => {
                    wanted.insert(name.clone(), (cfg, table.clone()));
                }
                Err(e) => out.errors.push(e),
            }
        }
        let mut stopping = Vec::new();
        let names: Vec<String> = self.sessions.keys().cloned().collect();
        for name in names {
            let keep = wanted
                .get(&name)
                .is_some_and(|(cfg, _)| self.sessions.get(&name).is_some_and(|r| r.cfg == *cfg));
            if keep {
                continue;
            }
            if let Some(r) = self.sessions.remove(&name) {
                if let (Some(b), Some(_)) = (&self.bfd, &r.bfd) {
                    b.remove(r.cfg.peer_address);
                }
                out.stopped.push(name);
                stopping.push(r.session);
            }
        }
        stop_all(stopping).await;
        self.ensure_listener();
        for (name, (cfg, table)) in wanted {
            match self.sessions.get_mut(&name) {
                Some(r) => {
                    if r.table != table {
                        r.session.set_routes(table.clone());
                        r.table = table;
                        out.updated.push(name);
                    }
                }
                None => {
                    let session = self.start_session(&name, &cfg, table.clone());
                    tracing::info!(peer = %name, address = %cfg.peer_address, "BGP session started");
                    self.sessions.insert(
                        name.clone(),
                        Running {
                            cfg,
                            session,
                            table,
                            bfd: None,
                        },
                    );
                    out.started.push(name);
                }
            }
        }
        self.apply_bfd(config);
        out.plan = plan;
        out
    }

    /// Starts, changes or ends each session's BFD session as its peer's profile says, and has
    /// the BGP session follow it.
    fn apply_bfd(&mut self, config: &Config) {
        for (name, r) in self.sessions.iter_mut() {
            // An unnumbered peer's address is learned later; the config model refuses BFD there.
            let want = (config.peers.get(name))
                .and_then(|p| bfd_settings(p, config))
                .filter(|_| !r.cfg.peer_address.is_unspecified());
            if want == r.bfd {
                continue;
            }
            if let (Some(b), Some(_)) = (&self.bfd, &r.bfd) {
                b.remove(r.cfg.peer_address);
            }
            match &want {
                Some(settings) => {
                    let mut settings = settings.clone();
                    let addr = r.cfg.peer_address;
                    if super::socket::directly_connected(addr) == Some(false) {
                        settings.multihop = true;
                    }
                    let bfd = self.bfd.get_or_insert_with(Bfd::start);
                    let state = bfd.add(r.cfg.peer_address, settings);
                    r.session.follow_bfd(Some(state));
                }
                None => r.session.follow_bfd(None),
            }
            r.bfd = want;
        }
    }

    /// Each BFD session's state, by peer name (only peers with a `bfdProfile`).
    pub fn bfd_status(&self) -> BTreeMap<String, BfdStatus> {
        let Some(bfd) = &self.bfd else {
            return BTreeMap::new();
        };
        let all = bfd.status();
        self.sessions
            .iter()
            .filter(|(_, r)| r.bfd.is_some())
            .filter_map(|(n, r)| Some((n.clone(), all.get(&r.cfg.peer_address)?.clone())))
            .collect()
    }

    /// Each session's state, by peer name.
    pub fn status(&self) -> BTreeMap<String, SessionStatus> {
        self.sessions
            .iter()
            .map(|(n, r)| (n.clone(), r.session.status()))
            .collect()
    }

    /// Connections to the node's BGP port from addresses that are no configured peer, reset
    /// before any BGP byte (0 without a listener).
    pub fn refused_connections(&self) -> u64 {
        self.listener.as_ref().map_or(0, |l| l.refused())
    }

    /// The table currently given to each peer.
    pub fn tables(&self) -> BTreeMap<String, Table> {
        self.sessions
            .iter()
            .map(|(n, r)| (n.clone(), r.table.clone()))
            .collect()
    }

    /// The peer addresses of the sessions, by peer name.
    pub fn peers(&self) -> BTreeMap<String, IpAddr> {
        self.sessions
            .iter()
            .map(|(n, r)| (n.clone(), r.cfg.peer_address))
            .collect()
    }

    /// Stops every session (shutdown), concurrently: with a Cease, so the routers withdraw at
    /// once, except where Graceful Restart was negotiated: there the connection is only
    /// closed and the routers keep the routes until the next process sends them again. Then
    /// the BFD sessions (AdminDown, so the routers do not count a failure).
    pub async fn stop(mut self) {
        let handles: Vec<_> = std::mem::take(&mut self.sessions)
            .into_values()
            .map(|r| tokio::spawn(r.session.stop_for_restart()))
            .collect();
        for h in handles {
            let _ = h.await;
        }
        if let Some(b) = self.bfd.take() {
            b.stop().await;
        }
    }
}

async fn stop_all(sessions: Vec<Session>) {
    let handles: Vec<_> = sessions
        .into_iter()
        .map(|s| tokio::spawn(s.stop()))
        .collect();
    for h in handles {
        let _ = h.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer {
            name: "tor".into(),
            my_asn: 64512,
            peer_asn: ferrolb_config::PeerAsn::Is(64513),
            address: PeerAddress::Ip("10.0.0.1".parse().unwrap()),
            port: 1179,
            source_address: Some("10.0.0.2".parse().unwrap()),
            hold_time: Duration::from_secs(9),
            keepalive_time: Duration::from_secs(3),
            connect_time: Duration::from_secs(2),
            router_id: None,
            node_selectors: vec![],
            password: Some("pw".into()),
            bfd_profile: None,
            graceful_restart: false,
            ebgp_multihop: true,
            dual_stack: false,
            vrf: None,
        }
    }

    #[test]
    fn peer_config_from_bgppeer() {
        let node: Ipv4Addr = "10.0.0.2".parse().unwrap();
        let c = peer_config(&peer(), Some(node)).unwrap();
        assert_eq!(c.fsm.local_asn, 64512);
        assert_eq!(c.fsm.peer_asn, ferrolb_config::PeerAsn::Is(64513));
        assert_eq!(c.fsm.router_id, node);
        assert_eq!(c.fsm.hold_time, 9);
        assert_eq!(c.fsm.keepalive, Some(Duration::from_secs(3)));
        assert_eq!(c.fsm.connect_retry, Duration::from_secs(2));
        assert_eq!(c.peer_address, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(c.peer_port, 1179);
        assert_eq!(c.source_address, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(c.password.as_deref(), Some("pw"));
        assert!(c.ebgp_multihop);
        assert!(!c.fsm.passive);
    }

    #[test]
    fn router_id_prefers_the_peer_setting_and_needs_one() {
        let mut p = peer();
        p.router_id = Some("192.0.2.9".parse().unwrap());
        let c = peer_config(&p, Some("10.0.0.2".parse().unwrap())).unwrap();
        assert_eq!(c.fsm.router_id, "192.0.2.9".parse::<Ipv4Addr>().unwrap());
        let c = peer_config(&p, None).unwrap();
        assert_eq!(c.fsm.router_id, "192.0.2.9".parse::<Ipv4Addr>().unwrap());
        p.router_id = None;
        assert_eq!(
            peer_config(&p, None),
            Err(PeerError::NoRouterId { peer: "tor".into() })
        );
    }

    #[test]
    fn hold_times_are_brought_into_range() {
        let mut p = peer();
        for (secs, want) in [
            (0, 0),
            (1, 3),
            (2, 3),
            (3, 3),
            (90, 90),
            (1 << 20, u16::MAX),
        ] {
            p.hold_time = Duration::from_secs(secs);
            let c = peer_config(&p, Some(Ipv4Addr::LOCALHOST)).unwrap();
            assert_eq!(c.fsm.hold_time, want, "{secs}");
        }
        p.password = Some(String::new());
        assert_eq!(
            peer_config(&p, Some(Ipv4Addr::LOCALHOST)).unwrap().password,
            None
        );
    }

    fn svc(ip: &str) -> Service {
        Service {
            name: "default/web".into(),
            ips: vec![ip.parse().unwrap()],
            pool: "lan".into(),
            has_serving_endpoint: true,
            ..Default::default()
        }
    }

    fn cfg(peers: Vec<Peer>) -> Config {
        Config {
            bgp_advertisements: vec![ferrolb_config::BgpAdvertisement {
                name: "a".into(),
                pools: ["lan".to_string()].into(),
                aggregation_length: 32,
                aggregation_length_v6: 128,
                local_pref: None,
                communities: Default::default(),
                node_selectors: vec![],
                peers: Default::default(),
                service_selectors: vec![],
            }],
            peers: peers.into_iter().map(|p| (p.name.clone(), p)).collect(),
            ..Default::default()
        }
    }

    /// Bookkeeping without a router: the peer (a closed port on loopback) never answers, so
    /// the sessions only retry; what matters is which sessions start, stop or get a table.
    #[test]
    fn apply_starts_updates_and_stops_sessions() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut p = peer();
            p.address = PeerAddress::Ip("127.0.0.1".parse().unwrap());
            p.source_address = None;
            p.password = None;
            p.port = 9; // discard: nothing listens
            let node = Node {
                name: "n1".into(),
                labels: Default::default(),
                network_unavailable: false,
            };
            let mut sp = NodeSpeaker::new(Some(Ipv4Addr::LOCALHOST));
            let c = cfg(vec![p.clone()]);
            let a = sp.apply(&c, &node, &[svc("10.96.0.1")], false).await;
            assert_eq!(a.started, vec!["tor"]);
            assert!(a.updated.is_empty() && a.stopped.is_empty() && a.errors.is_empty());
            assert_eq!(sp.tables()["tor"].len(), 1);
            // Same inputs: nothing to do.
            let a = sp.apply(&c, &node, &[svc("10.96.0.1")], false).await;
            assert!(a.started.is_empty() && a.updated.is_empty() && a.stopped.is_empty());
            // A Service change: only a table update, the session is kept.
            let a = sp.apply(&c, &node, &[svc("10.96.0.2")], false).await;
            assert_eq!(a.updated, vec!["tor"]);
            assert!(a.started.is_empty() && a.stopped.is_empty());
            // A settings change restarts that session.
            let mut p2 = p.clone();
            p2.hold_time = Duration::from_secs(30);
            let a = sp
                .apply(&cfg(vec![p2]), &node, &[svc("10.96.0.2")], false)
                .await;
            assert_eq!(
                (a.stopped, a.started),
                (vec!["tor".to_string()], vec!["tor".to_string()])
            );
            // Peer removed: stopped.
            let a = sp
                .apply(&cfg(vec![]), &node, &[svc("10.96.0.2")], false)
                .await;
            assert_eq!(a.stopped, vec!["tor"]);
            assert!(sp.status().is_empty());
            // No router id anywhere: a typed error, no session.
            let mut sp = NodeSpeaker::new(None);
            let a = sp.apply(&c, &node, &[], false).await;
            assert_eq!(a.errors, vec![PeerError::NoRouterId { peer: "tor".into() }]);
            assert!(sp.status().is_empty());
            sp.stop().await;
        });
    }
}
