//! The speaker's metrics, served on its metrics endpoint: BGP sessions per peer, the layer-2
//! responder's counters and the membership's.

use std::collections::BTreeMap;

use ferrolb_announce::bgp::SessionStatus;

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
    watch_downs: Total,
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
        let members = root.sub_registry_with_prefix("membership");
        members.register(
            "live_members",
            "Speakers this one sees alive, itself included",
            c.live_members.clone(),
        );
        for (name, help, total) in [
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
        let (c, r, m) = (&self.l2, &status.responder, &status.membership);
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
        c.watch_downs.record(m.watch_downs);
        c.unreachable_downs.record(m.unreachable_downs);
        c.rejected.record(m.rejected);
    }

    /// Copies the sessions' state into the gauges; a peer no longer in `sessions` loses its
    /// series.
    pub fn record(&self, sessions: &BTreeMap<String, SessionStatus>) {
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

impl ferrolb_kubernetes::serve::Exporter for SpeakerMetrics {
    fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
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
        status.responder.arp_replies = 7;
        status.responder.gratuitous = 3;
        status.membership.watch_downs = 1;
        status.live = ["a".to_string(), "b".to_string()].into();
        status
            .announced
            .insert("10.0.0.1".parse().unwrap(), ["eth0".to_string()].into());
        m.record_l2(&status);
        status.responder.arp_replies = 9;
        m.record_l2(&status);
        let text = m.encode();
        for line in [
            "ferrolb_speaker_l2_arp_replies_total 9",
            "ferrolb_speaker_l2_gratuitous_total 3",
            "ferrolb_speaker_l2_addresses_announced 1",
            "ferrolb_speaker_membership_live_members 2",
            "ferrolb_speaker_membership_watch_downs_total 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
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
        m.record(&BTreeMap::from([("tor".to_string(), status)]));
        let text = m.encode();
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
        m.record(&BTreeMap::from([(
            "tor".to_string(),
            failing("hold timer expired"),
        )]));
        m.record(&BTreeMap::from([(
            "tor".to_string(),
            failing("peer sent NOTIFICATION: bad peer AS"),
        )]));
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
        m.record(&BTreeMap::from([("tor".to_string(), up)]));
        let text = m.encode();
        assert!(
            text.contains(
                "ferrolb_speaker_bgp_session_established_since_seconds{peer=\"tor\"} 1700000000"
            ),
            "{text}"
        );

        // The peer removed: all of its series go.
        m.record(&BTreeMap::new());
        let text = m.encode();
        assert!(!text.contains("peer=\"tor\""), "{text}");
    }
}
