//! The speaker's metrics, served on its metrics endpoint: BGP sessions per peer, the layer-2
//! responder's counters (in total and per interface) and the membership's, the addresses this
//! node announces per mode, and the same facts under MetalLB's names ([`Metallb`]), so its
//! dashboards and alerts work unchanged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::net::IpAddr;

use ferrolb_announce::bgp::SessionStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters per label set, fed from running totals that another part keeps: each grows by the
/// difference; a label set no longer reported loses its series.
#[derive(Debug)]
struct Totals<L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static> {
    family: Family<L, Counter>,
    seen: std::sync::Mutex<HashMap<L, u64>>,
}

impl<L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static> Default
    for Totals<L>
{
    fn default() -> Self {
        Totals {
            family: Family::default(),
            seen: Default::default(),
        }
    }
}

impl<L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static> Totals<L> {
    fn record(&self, now: impl IntoIterator<Item = (L, u64)>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut present = HashMap::new();
        for (labels, total) in now {
            let before = seen.get(&labels).copied().unwrap_or(0);
            self.family
                .get_or_create(&labels)
                .inc_by(total.saturating_sub(before));
            present.insert(labels, total);
        }
        for gone in seen.keys().filter(|l| !present.contains_key(*l)) {
            self.family.remove(gone);
        }
        *seen = present;
    }
}

/// One interface's frames of one kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterfaceLabels {
    /// The interface.
    pub interface: String,
    /// `arp_reply`, `na_reply`, `gratuitous`, `request_not_owned`, `undecodable`, `error`.
    pub kind: String,
}

/// Addresses announced by a node in one mode.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    /// The node.
    pub node: String,
    /// `layer2` or `bgp`.
    pub mode: String,
}

/// What this node announces now: per mode, each address with the Service that holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announcing {
    /// This node.
    pub node: String,
    /// Addresses answered over ARP/NDP.
    pub layer2: BTreeSet<IpAddr>,
    /// Addresses advertised to at least one established BGP session.
    pub bgp: BTreeSet<IpAddr>,
    /// The Services (`namespace/name`) holding each address.
    pub services: BTreeMap<IpAddr, BTreeSet<String>>,
}

/// MetalLB's `peer` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct MetallbPeerLabels {
    /// The peer's address (as MetalLB's FRR mode labels it).
    pub peer: String,
}

/// MetalLB's `ip` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct MetallbIpLabels {
    /// The address.
    pub ip: String,
}

/// MetalLB's `metallb_speaker_announced` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct MetallbAnnouncedLabels {
    /// `namespace/name`.
    pub service: String,
    /// `layer2` or `bgp`.
    pub protocol: String,
    /// The node.
    pub node: String,
    /// The address.
    pub ip: String,
}

/// The series MetalLB's speaker exports, under its names and labels. MetalLB's layer-2 counters
/// have no `_total` suffix, which OpenMetrics requires of a counter, so they are exported as
/// gauges holding the running count (`rate()` works on them the same).
#[derive(Debug, Default)]
struct Metallb {
    registry: Registry,
    session_up: Family<MetallbPeerLabels, Gauge>,
    updates: Totals<MetallbPeerLabels>,
    announced_prefixes: Family<MetallbPeerLabels, Gauge>,
    peers: std::sync::Mutex<BTreeSet<MetallbPeerLabels>>,
    requests_received: Family<MetallbIpLabels, Gauge>,
    responses_sent: Family<MetallbIpLabels, Gauge>,
    gratuitous_sent: Family<MetallbIpLabels, Gauge>,
    ips: std::sync::Mutex<BTreeSet<MetallbIpLabels>>,
    announced: Family<MetallbAnnouncedLabels, Gauge>,
    announced_now: std::sync::Mutex<BTreeSet<MetallbAnnouncedLabels>>,
    config: ferrolb_kubernetes::metrics::MetallbConfigGauges,
}

impl Metallb {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("metallb");
        let m = Metallb::default();
        let bgp = registry.sub_registry_with_prefix("bgp");
        bgp.register(
            "session_up",
            "BGP session state (1 is up, 0 is down)",
            m.session_up.clone(),
        );
        bgp.register(
            "updates",
            "Number of BGP UPDATE messages sent",
            m.updates.family.clone(),
        );
        bgp.register(
            "announced_prefixes_total",
            "Number of prefixes currently being advertised on the BGP session",
            m.announced_prefixes.clone(),
        );
        let l2 = registry.sub_registry_with_prefix("layer2");
        l2.register(
            "requests_received",
            "Number of layer2 requests received for owned IPs",
            m.requests_received.clone(),
        );
        l2.register(
            "responses_sent",
            "Number of layer2 responses sent for owned IPs in response to requests",
            m.responses_sent.clone(),
        );
        l2.register(
            "gratuitous_sent",
            "Number of gratuitous layer2 packets sent for owned IPs",
            m.gratuitous_sent.clone(),
        );
        registry.sub_registry_with_prefix("speaker").register(
            "announced",
            "Services being announced from this node",
            m.announced.clone(),
        );
        m.config.register(&mut registry);
        Metallb { registry, ..m }
    }
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A gauge per BGP peer.
type PeerGauge = prometheus_client::metrics::family::Family<
    PeerLabels,
    prometheus_client::metrics::gauge::Gauge,
>;

/// The speaker's BGP session metrics, per peer.
#[derive(Debug)]
pub struct SpeakerMetrics {
    registry: prometheus_client::registry::Registry,
    up: PeerGauge,
    prefixes: PeerGauge,
    updates: PeerGauge,
    updates_received: PeerGauge,
    treated_as_withdraw: PeerGauge,
    flaps: PeerGauge,
    established_since: PeerGauge,
    failures: PeerGauge,
    last_error: prometheus_client::metrics::family::Family<
        ErrorLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
    /// The last error exported per peer, so a changed or gone one is removed, not left behind.
    exported_errors: std::sync::Mutex<BTreeMap<String, String>>,
    refused: Total,
    l2: L2Metrics,
    interface_frames: Totals<InterfaceLabels>,
    bfd_up: Family<PeerLabels, Gauge>,
    bfd_flaps: Family<PeerLabels, Gauge>,
    bfd_peers: std::sync::Mutex<BTreeSet<String>>,
    announced: Family<ModeLabels, Gauge>,
    services_not_announced: Gauge,
    metallb: Metallb,
}

/// A counter fed from a running total that another part keeps: it grows by the difference.
#[derive(Debug, Default)]
struct Total {
    counter: prometheus_client::metrics::counter::Counter,
    seen: std::sync::atomic::AtomicU64,
}

impl Total {
    fn record(&self, total: u64) {
        let seen = self.seen.swap(total, std::sync::atomic::Ordering::Relaxed);
        self.counter.inc_by(total.saturating_sub(seen));
    }
}

/// The layer-2 responder's and the membership's figures.
#[derive(Debug, Default)]
struct L2Metrics {
    arp_replies: Total,
    na_replies: Total,
    gratuitous: Total,
    not_owned: Total,
    undecodable: Total,
    errors: Total,
    announced: prometheus_client::metrics::gauge::Gauge,
    live_members: prometheus_client::metrics::gauge::Gauge,
    watch_checks: Total,
    watch_downs: Total,
    unreachable_checks: Total,
    unreachable_downs: Total,
    rejected: Total,
}

/// A BGP peer and the last error of its session.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ErrorLabels {
    /// The BGPPeer's name.
    pub peer: String,
    /// The last failure, in words.
    pub error: String,
}

/// A BGP peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PeerLabels {
    /// The BGPPeer's name.
    pub peer: String,
}

impl Default for SpeakerMetrics {
    fn default() -> Self {
        let mut root = prometheus_client::registry::Registry::with_prefix("ferrolb_speaker");
        let m = SpeakerMetrics {
            registry: Default::default(),
            up: Default::default(),
            prefixes: Default::default(),
            updates: Default::default(),
            updates_received: Default::default(),
            treated_as_withdraw: Default::default(),
            flaps: Default::default(),
            established_since: Default::default(),
            failures: Default::default(),
            last_error: Default::default(),
            exported_errors: Default::default(),
            refused: Default::default(),
            l2: Default::default(),
            interface_frames: Default::default(),
            bfd_up: Default::default(),
            bfd_flaps: Default::default(),
            bfd_peers: Default::default(),
            announced: Default::default(),
            services_not_announced: Default::default(),
            metallb: Metallb::new(),
        };
        let registry = root.sub_registry_with_prefix("bgp");
        registry.register(
            "session_up",
            "1 while the session to the peer is Established",
            m.up.clone(),
        );
        registry.register(
            "prefixes_sent",
            "Prefixes the peer holds from this node",
            m.prefixes.clone(),
        );
        registry.register(
            "updates_sent",
            "UPDATE messages sent to the peer",
            m.updates.clone(),
        );
        registry.register(
            "updates_received",
            "UPDATE messages received from the peer (validated, counted and dropped: no route is imported)",
            m.updates_received.clone(),
        );
        registry.register(
            "updates_treated_as_withdraw",
            "Received UPDATEs with an attribute error, handled as treat-as-withdraw (RFC 7606) without resetting the session",
            m.treated_as_withdraw.clone(),
        );
        registry.register(
            "session_flaps",
            "Times the session went down from Established",
            m.flaps.clone(),
        );
        registry.register(
            "session_established_since_seconds",
            "Unix time the session last became Established; 0 while it is down",
            m.established_since.clone(),
        );
        registry.register(
            "session_failures",
            "Consecutive failed attempts to establish the session (the retry backoff grows with it)",
            m.failures.clone(),
        );
        registry.register(
            "session_last_error_info",
            "1, labelled with the session's last failure in words (kept after recovery)",
            m.last_error.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections to the node's BGP port from addresses that are no configured peer, reset before any BGP byte",
            m.refused.counter.clone(),
        );
        let l2 = root.sub_registry_with_prefix("l2");
        let c = &m.l2;
        for (name, help, total) in [
            (
                "arp_replies",
                "ARP replies sent for addresses this node announces",
                &c.arp_replies,
            ),
            (
                "na_replies",
                "Solicited Neighbor Advertisements sent",
                &c.na_replies,
            ),
            (
                "gratuitous",
                "Gratuitous ARPs and unsolicited Neighbor Advertisements sent",
                &c.gratuitous,
            ),
            (
                "requests_not_owned",
                "ARP/NDP requests heard for addresses another node answers",
                &c.not_owned,
            ),
            (
                "undecodable_frames",
                "Frames read that were not ARP or NDP requests",
                &c.undecodable,
            ),
            (
                "errors",
                "Socket errors while receiving or sending",
                &c.errors,
            ),
        ] {
            l2.register(name, help, total.counter.clone());
        }
        l2.register(
            "addresses_announced",
            "Addresses this node answers ARP/NDP for",
            c.announced.clone(),
        );
        l2.register(
            "interface_frames",
            "Frames per interface: replies (arp_reply, na_reply), gratuitous, requests for others' addresses (request_not_owned), undecodable, errors",
            m.interface_frames.family.clone(),
        );
        let bfd = root.sub_registry_with_prefix("bfd");
        bfd.register(
            "session_up",
            "1 while the BFD session with the peer is Up (peers with a bfdProfile)",
            m.bfd_up.clone(),
        );
        bfd.register(
            "session_flaps",
            "Times the BFD session went down from Up",
            m.bfd_flaps.clone(),
        );
        root.register(
            "addresses_announced",
            "Addresses this node announces, per mode (layer2: answers ARP/NDP; bgp: advertised to an established session)",
            m.announced.clone(),
        );
        root.register(
            "services_not_announced",
            "Services with an address that no node announces, among those whose Announced condition this node writes",
            m.services_not_announced.clone(),
        );
        let members = root.sub_registry_with_prefix("membership");
        members.register(
            "live_members",
            "Speakers this one sees alive, itself included",
            c.live_members.clone(),
        );
        for (name, help, total) in [
            (
                "watch_checks",
                "Watched speakers that stopped answering and were checked (suspicions)",
                &c.watch_checks,
            ),
            (
                "unreachable_checks",
                "Speakers checked because their host answered ICMP port unreachable (suspicions)",
                &c.unreachable_checks,
            ),
            (
                "watch_downs",
                "Watched speakers declared down (an owner this one would succeed)",
                &c.watch_downs,
            ),
            (
                "unreachable_downs",
                "Speakers declared down after their host answered ICMP port unreachable",
                &c.unreachable_downs,
            ),
            (
                "rejected_datagrams",
                "Membership datagrams dropped for a bad or missing MAC",
                &c.rejected,
            ),
        ] {
            members.register(name, help, total.counter.clone());
        }
        SpeakerMetrics {
            registry: root,
            ..m
        }
    }
}

impl SpeakerMetrics {
    /// Records the listener's count of refused connections (a running total).
    pub fn record_refused(&self, total: u64) {
        self.refused.record(total);
    }

    /// Copies the layer-2 agent's state (responder and membership counters) into the metrics.
    pub fn record_l2(&self, status: &ferrolb_announce::l2::agent::AgentStatus) {
        let (c, r, m) = (&self.l2, &status.responder.total, &status.membership);
        c.arp_replies.record(r.arp_replies);
        c.na_replies.record(r.na_replies);
        c.gratuitous.record(r.gratuitous);
        c.not_owned.record(r.not_owned);
        c.undecodable.record(r.undecodable);
        c.errors.record(r.errors);
        c.announced
            .set(i64::try_from(status.announced.len()).unwrap_or(i64::MAX));
        c.live_members
            .set(i64::try_from(status.live.len()).unwrap_or(i64::MAX));
        c.watch_checks.record(m.watch_checks);
        c.watch_downs.record(m.watch_downs);
        c.unreachable_checks.record(m.unreachable_checks);
        c.unreachable_downs.record(m.unreachable_downs);
        c.rejected.record(m.rejected);
        let per_interface = (status.responder.interfaces.iter()).flat_map(|(name, c)| {
            [
                ("arp_reply", c.arp_replies),
                ("na_reply", c.na_replies),
                ("gratuitous", c.gratuitous),
                ("request_not_owned", c.not_owned),
                ("undecodable", c.undecodable),
                ("error", c.errors),
            ]
            .map(|(kind, n)| {
                let labels = InterfaceLabels {
                    interface: name.clone(),
                    kind: kind.into(),
                };
                (labels, n)
            })
        });
        self.interface_frames.record(per_interface);
        // MetalLB's per-address series, for the addresses answered now.
        let mm = &self.metallb;
        let mut ips = mm.ips.lock().unwrap_or_else(|p| p.into_inner());
        let now: BTreeSet<MetallbIpLabels> = (status.responder.addresses.keys())
            .map(|ip| MetallbIpLabels { ip: ip.to_string() })
            .collect();
        for gone in ips.difference(&now) {
            mm.requests_received.remove(gone);
            mm.responses_sent.remove(gone);
            mm.gratuitous_sent.remove(gone);
        }
        for (ip, a) in &status.responder.addresses {
            let l = MetallbIpLabels { ip: ip.to_string() };
            mm.requests_received
                .get_or_create(&l)
                .set(count(a.requests));
            mm.responses_sent.get_or_create(&l).set(count(a.responses));
            mm.gratuitous_sent
                .get_or_create(&l)
                .set(count(a.gratuitous));
        }
        *ips = now;
    }

    /// What this node announces, per mode and (MetalLB's series) per Service and address.
    pub fn record_announced(&self, a: &Announcing) {
        for (mode, set) in [("layer2", &a.layer2), ("bgp", &a.bgp)] {
            let labels = ModeLabels {
                node: a.node.clone(),
                mode: mode.into(),
            };
            self.announced
                .get_or_create(&labels)
                .set(i64::try_from(set.len()).unwrap_or(i64::MAX));
        }
        let mm = &self.metallb;
        let mut before = mm.announced_now.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = BTreeSet::new();
        for (protocol, set) in [("layer2", &a.layer2), ("bgp", &a.bgp)] {
            for ip in set {
                for service in a.services.get(ip).into_iter().flatten() {
                    now.insert(MetallbAnnouncedLabels {
                        service: service.clone(),
                        protocol: protocol.into(),
                        node: a.node.clone(),
                        ip: ip.to_string(),
                    });
                }
            }
        }
        for gone in before.difference(&now) {
            mm.announced.remove(gone);
        }
        for l in &now {
            mm.announced.get_or_create(l).set(1);
        }
        *before = now;
    }

    /// Each BFD session's state; a peer no longer with BFD loses its series.
    pub fn record_bfd(&self, sessions: &BTreeMap<String, ferrolb_announce::bfd::BfdStatus>) {
        let mut before = self.bfd_peers.lock().unwrap_or_else(|p| p.into_inner());
        for gone in before.iter().filter(|p| !sessions.contains_key(*p)) {
            let l = PeerLabels { peer: gone.clone() };
            self.bfd_up.remove(&l);
            self.bfd_flaps.remove(&l);
        }
        for (peer, s) in sessions {
            let l = PeerLabels { peer: peer.clone() };
            let up = s.state == ferrolb_announce::bfd::State::Up;
            self.bfd_up.get_or_create(&l).set(i64::from(up));
            self.bfd_flaps.get_or_create(&l).set(count(s.flaps));
        }
        *before = sessions.keys().cloned().collect();
    }

    /// How many Services this node, as their condition's writer, finds announced by nobody.
    pub fn record_not_announced(&self, services: usize) {
        self.services_not_announced
            .set(i64::try_from(services).unwrap_or(i64::MAX));
    }

    /// The configuration's state after a build: how many objects are refused.
    pub fn record_config(&self, refused: usize) {
        self.metallb.config.set(refused);
    }

    /// Copies the sessions' state into the gauges; a peer no longer in `sessions` loses its
    /// series. `addresses` gives each peer's address, for MetalLB's series (labelled by it).
    pub fn record(
        &self,
        sessions: &BTreeMap<String, SessionStatus>,
        addresses: &BTreeMap<String, String>,
    ) {
        self.record_metallb_sessions(sessions, addresses);
        let mut exported = self
            .exported_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = (exported.keys())
            .filter(|p| !sessions.contains_key(*p))
            .cloned()
            .collect();
        for peer in gone {
            if let Some(error) = exported.remove(&peer) {
                self.last_error.remove(&ErrorLabels {
                    peer: peer.clone(),
                    error,
                });
            }
            let l = PeerLabels { peer };
            for family in [
                &self.up,
                &self.prefixes,
                &self.updates,
                &self.updates_received,
                &self.treated_as_withdraw,
                &self.flaps,
                &self.established_since,
                &self.failures,
            ] {
                family.remove(&l);
            }
        }
        for (peer, s) in sessions {
            // Keep a placeholder for every live peer so its other series are cleared when it goes.
            let error = s.last_error.clone().unwrap_or_default();
            match exported.insert(peer.clone(), error.clone()) {
                Some(old) if old == error => {}
                Some(old) => {
                    self.last_error.remove(&ErrorLabels {
                        peer: peer.clone(),
                        error: old,
                    });
                }
                None => {}
            }
            if !error.is_empty() {
                self.last_error
                    .get_or_create(&ErrorLabels {
                        peer: peer.clone(),
                        error,
                    })
                    .set(1);
            }
            let l = PeerLabels { peer: peer.clone() };
            let since = (s.established_at)
                .filter(|_| s.is_up())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            self.established_since.get_or_create(&l).set(since);
            self.failures.get_or_create(&l).set(i64::from(s.failures));
            self.up.get_or_create(&l).set(i64::from(s.is_up()));
            self.prefixes
                .get_or_create(&l)
                .set(i64::try_from(s.prefixes_sent).unwrap_or(i64::MAX));
            self.updates
                .get_or_create(&l)
                .set(i64::try_from(s.updates_sent).unwrap_or(i64::MAX));
            self.updates_received
                .get_or_create(&l)
                .set(i64::try_from(s.updates_received).unwrap_or(i64::MAX));
            self.treated_as_withdraw
                .get_or_create(&l)
                .set(i64::try_from(s.updates_treated_as_withdraw).unwrap_or(i64::MAX));
            self.flaps
                .get_or_create(&l)
                .set(i64::try_from(s.flaps).unwrap_or(i64::MAX));
        }
    }
}

impl SpeakerMetrics {
    fn record_metallb_sessions(
        &self,
        sessions: &BTreeMap<String, SessionStatus>,
        addresses: &BTreeMap<String, String>,
    ) {
        let mm = &self.metallb;
        let label = |peer: &String| MetallbPeerLabels {
            peer: addresses.get(peer).cloned().unwrap_or_else(|| peer.clone()),
        };
        let now: BTreeSet<MetallbPeerLabels> = sessions.keys().map(label).collect();
        let mut before = mm.peers.lock().unwrap_or_else(|p| p.into_inner());
        for gone in before.difference(&now) {
            mm.session_up.remove(gone);
            mm.announced_prefixes.remove(gone);
        }
        mm.updates
            .record(sessions.iter().map(|(p, s)| (label(p), s.updates_sent)));
        for (peer, s) in sessions {
            let l = label(peer);
            mm.session_up.get_or_create(&l).set(i64::from(s.is_up()));
            mm.announced_prefixes
                .get_or_create(&l)
                .set(count(s.prefixes_sent as u64));
        }
        *before = now;
    }
}

impl ferrolb_kubernetes::serve::Exporter for SpeakerMetrics {
    fn encode(&self) -> String {
        ferrolb_kubernetes::metrics::encode(&[&self.registry, &self.metallb.registry])
    }

    fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_kubernetes::serve::Exporter;
    use std::time::Duration;

    /// Issue 18: the responder's and the membership's counters reach /metrics (they were
    /// never exported), as counters that follow the agent's running totals.
    #[test]
    fn layer2_and_membership_metrics() {
        let m = SpeakerMetrics::default();
        let mut status = ferrolb_announce::l2::agent::AgentStatus::default();
        status.responder.total.arp_replies = 7;
        status.responder.total.gratuitous = 3;
        status
            .responder
            .interfaces
            .insert("eth0".into(), status.responder.total);
        status.responder.addresses.insert(
            "10.0.0.1".parse().unwrap(),
            ferrolb_announce::l2::responder::AddressCounts {
                requests: 8,
                responses: 7,
                gratuitous: 3,
            },
        );
        status.membership.watch_checks = 2;
        status.membership.watch_downs = 1;
        status.live = ["a".to_string(), "b".to_string()].into();
        status
            .announced
            .insert("10.0.0.1".parse().unwrap(), ["eth0".to_string()].into());
        m.record_l2(&status);
        status.responder.total.arp_replies = 9;
        status
            .responder
            .interfaces
            .insert("eth0".into(), status.responder.total);
        m.record_l2(&status);
        let text = m.encode();
        for line in [
            "ferrolb_speaker_l2_arp_replies_total 9",
            "ferrolb_speaker_l2_gratuitous_total 3",
            "ferrolb_speaker_l2_addresses_announced 1",
            "ferrolb_speaker_l2_interface_frames_total{interface=\"eth0\",kind=\"arp_reply\"} 9",
            "ferrolb_speaker_l2_interface_frames_total{interface=\"eth0\",kind=\"gratuitous\"} 3",
            "ferrolb_speaker_membership_live_members 2",
            "ferrolb_speaker_membership_watch_checks_total 2",
            "ferrolb_speaker_membership_watch_downs_total 1",
            "metallb_layer2_requests_received{ip=\"10.0.0.1\"} 8",
            "metallb_layer2_responses_sent{ip=\"10.0.0.1\"} 7",
            "metallb_layer2_gratuitous_sent{ip=\"10.0.0.1\"} 3",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        // An address no longer answered loses its MetalLB series.
        status.responder.addresses.clear();
        m.record_l2(&status);
        assert!(!m.encode().contains("metallb_layer2_requests_received{"));
    }

    #[test]
    fn announced_addresses_per_mode_and_as_metallb_says() {
        let m = SpeakerMetrics::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let bgp_ip: IpAddr = "10.100.0.1".parse().unwrap();
        let mut a = Announcing {
            node: "node0".into(),
            layer2: [ip].into(),
            bgp: [bgp_ip].into(),
            services: [
                (ip, ["shop/web".to_string()].into()),
                (bgp_ip, ["shop/api".to_string()].into()),
            ]
            .into(),
        };
        m.record_announced(&a);
        m.record_not_announced(2);
        m.record_config(0);
        let text = m.encode();
        for line in [
            "ferrolb_speaker_addresses_announced{node=\"node0\",mode=\"layer2\"} 1",
            "ferrolb_speaker_addresses_announced{node=\"node0\",mode=\"bgp\"} 1",
            "ferrolb_speaker_services_not_announced 2",
            "metallb_speaker_announced{service=\"shop/web\",protocol=\"layer2\",node=\"node0\",ip=\"10.0.0.1\"} 1",
            "metallb_speaker_announced{service=\"shop/api\",protocol=\"bgp\",node=\"node0\",ip=\"10.100.0.1\"} 1",
            "metallb_k8s_client_config_loaded_bool 1",
            "metallb_k8s_client_config_stale_bool 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        a.bgp.clear();
        m.record_announced(&a);
        let text = m.encode();
        assert!(!text.contains("protocol=\"bgp\""), "{text}");
        assert!(
            text.contains("ferrolb_speaker_addresses_announced{node=\"node0\",mode=\"bgp\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn refused_connections_count_up() {
        let m = SpeakerMetrics::default();
        m.record_refused(2);
        m.record_refused(2);
        m.record_refused(5);
        let text = m.encode();
        assert!(
            text.contains("ferrolb_speaker_bgp_connections_refused_total 5"),
            "{text}"
        );
    }

    #[test]
    fn bgp_session_metrics() {
        let m = SpeakerMetrics::default();
        let status = SessionStatus {
            state: ferrolb_announce::bgp::State::Established,
            established_at: None,
            prefixes_sent: 3,
            updates_sent: 5,
            flaps: 1,
            last_error: None,
            failures: 0,
            updates_received: 4,
            updates_treated_as_withdraw: 1,
            last_notification: None,
        };
        let addresses = BTreeMap::from([("tor".to_string(), "10.0.0.254".to_string())]);
        m.record(&BTreeMap::from([("tor".to_string(), status)]), &addresses);
        let text = m.encode();
        for line in [
            "metallb_bgp_session_up{peer=\"10.0.0.254\"} 1",
            "metallb_bgp_updates_total{peer=\"10.0.0.254\"} 5",
            "metallb_bgp_announced_prefixes_total{peer=\"10.0.0.254\"} 3",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(
            text.contains("ferrolb_speaker_bgp_session_up{peer=\"tor\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferrolb_speaker_bgp_prefixes_sent{peer=\"tor\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ferrolb_speaker_bgp_updates_received{peer=\"tor\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("ferrolb_speaker_bgp_updates_treated_as_withdraw{peer=\"tor\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferrolb_speaker_bgp_session_established_since_seconds{peer=\"tor\"} 0"),
            "{text}"
        );
        assert!(!text.contains("last_error_info{"), "{text}");

        // A failure: its words as a label, the old words gone when they change.
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let failing = |error: &str| SessionStatus {
            state: ferrolb_announce::bgp::State::Active,
            established_at: Some(at),
            prefixes_sent: 0,
            updates_sent: 5,
            flaps: 2,
            last_error: Some(error.into()),
            failures: 3,
            updates_received: 0,
            updates_treated_as_withdraw: 0,
            last_notification: None,
        };
        m.record(
            &BTreeMap::from([("tor".to_string(), failing("hold timer expired"))]),
            &addresses,
        );
        m.record(
            &BTreeMap::from([(
                "tor".to_string(),
                failing("peer sent NOTIFICATION: bad peer AS"),
            )]),
            &addresses,
        );
        let text = m.encode();
        assert!(
            text.contains("ferrolb_speaker_bgp_session_last_error_info{peer=\"tor\",error=\"peer sent NOTIFICATION: bad peer AS\"} 1"),
            "{text}"
        );
        assert!(!text.contains("hold timer expired"), "{text}");
        assert!(
            text.contains("ferrolb_speaker_bgp_session_failures{peer=\"tor\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ferrolb_speaker_bgp_session_established_since_seconds{peer=\"tor\"} 0"),
            "down: 0 whatever the stale time says\n{text}"
        );
        let mut up = failing("hold timer expired");
        up.state = ferrolb_announce::bgp::State::Established;
        m.record(&BTreeMap::from([("tor".to_string(), up)]), &addresses);
        let text = m.encode();
        assert!(
            text.contains(
                "ferrolb_speaker_bgp_session_established_since_seconds{peer=\"tor\"} 1700000000"
            ),
            "{text}"
        );

        // The peer removed: all of its series go.
        m.record(&BTreeMap::new(), &addresses);
        let text = m.encode();
        assert!(!text.contains("peer=\"tor\""), "{text}");
        assert!(!text.contains("peer=\"10.0.0.254\""), "{text}");
    }
}
