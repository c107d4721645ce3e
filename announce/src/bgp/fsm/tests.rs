use super::*;
use crate::bgp::message::RawAttribute;
use proptest::prelude::*;

const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const LOW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const HIGH: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);

fn cfg() -> FsmConfig {
    let mut c = FsmConfig::new(64513, 64512, ME);
    c.hold_time = 9;
    c
}

fn peer_open(hold: u16, id: Ipv4Addr) -> Open {
    Open::new(64512, hold, id, &[(1, 1), (2, 1)])
}

fn sends(actions: &[Action]) -> Vec<(Conn, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(c, m) => Some((*c, m.clone())),
            _ => None,
        })
        .collect()
}

fn notif(actions: &[Action]) -> Option<(u8, u8)> {
    sends(actions).into_iter().find_map(|(_, m)| match m {
        Message::Notification(n) => Some((n.code, n.subcode)),
        _ => None,
    })
}

/// Drives an active session to OpenSent on the outgoing connection.
fn open_sent() -> Fsm {
    let mut f = Fsm::new(cfg());
    let a = f.handle(Event::Start);
    assert_eq!(f.state(), State::Connect);
    assert!(a.contains(&Action::Connect));
    assert!(a.contains(&Action::StartTimer(
        Timer::ConnectRetry,
        Duration::from_secs(5)
    )));
    let a = f.handle(Event::Connected);
    assert_eq!(f.state(), State::OpenSent);
    assert!(matches!(
        &sends(&a)[..],
        [(Conn::Outgoing, Message::Open(_))]
    ));
    assert!(a.contains(&Action::StartTimer(Timer::Hold, OPEN_HOLD)));
    f
}

fn established() -> Fsm {
    let mut f = open_sent();
    let a = f.handle(Event::Received(
        Conn::Outgoing,
        Message::Open(peer_open(90, LOW)),
    ));
    assert_eq!(f.state(), State::OpenConfirm);
    assert_eq!(sends(&a), vec![(Conn::Outgoing, Message::Keepalive)]);
    let a = f.handle(Event::Received(Conn::Outgoing, Message::Keepalive));
    assert_eq!(f.state(), State::Established);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Established(Conn::Outgoing, _)))
    );
    f
}

#[test]
fn happy_path_negotiates_min_hold_and_keepalive_third() {
    let f = established();
    let n = f.negotiated().unwrap();
    assert_eq!(n.hold_time, 9);
    assert_eq!(n.keepalive, Duration::from_secs(3));
    assert!(n.four_octet_as && n.ipv4_unicast && n.ipv6_unicast && n.route_refresh);
}

#[test]
fn configured_keepalive_is_used_up_to_a_third_of_the_negotiated_hold() {
    // (configured keepalive, our hold, peer's hold) -> keepalive interval used
    for (keepalive, ours, theirs, want_ms) in [
        (Some(1), 90, 90, 1000),   // keepaliveTime 1 s with hold 90: 1 s
        (Some(30), 90, 90, 30000), // exactly a third
        (Some(30), 90, 9, 3000),   // the peer negotiated 9 s: capped at 3 s
        (Some(0), 90, 90, 30000),  // zero: the default third
        (None, 90, 60, 20000),
    ] {
        let mut c = cfg();
        c.hold_time = ours;
        c.keepalive = keepalive.map(Duration::from_secs);
        let n = negotiate(&c, &peer_open(theirs, LOW));
        assert_eq!(
            n.keepalive,
            Duration::from_millis(want_ms),
            "{keepalive:?} {ours} {theirs}"
        );
    }
}

#[test]
fn hold_time_zero_means_no_keepalives() {
    let mut f = open_sent();
    let a = f.handle(Event::Received(
        Conn::Outgoing,
        Message::Open(peer_open(0, LOW)),
    ));
    assert!(a.contains(&Action::StopTimer(Timer::Hold)));
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::StartTimer(Timer::Keepalive, _)))
    );
    f.handle(Event::Received(Conn::Outgoing, Message::Keepalive));
    assert_eq!(f.negotiated().unwrap().hold_time, 0);
    assert!(f.handle(Event::TimerExpired(Timer::Keepalive)).is_empty());
}

#[test]
fn open_checks_send_the_right_notification() {
    let cases: Vec<(Open, (u8, u8))> = vec![
        (
            Open {
                version: 3,
                ..peer_open(90, LOW)
            },
            (2, 1),
        ),
        (Open::new(64999, 90, LOW, &[(1, 1)]), (2, 2)),
        // AS_TRANS without the 4-octet capability
        (
            Open {
                capabilities: vec![],
                my_as: AS_TRANS,
                ..peer_open(90, LOW)
            },
            (2, 2),
        ),
        // 2-octet field disagreeing with a small 4-octet ASN
        (
            Open {
                my_as: 1,
                ..peer_open(90, LOW)
            },
            (2, 2),
        ),
        (peer_open(1, LOW), (2, 6)),
        (peer_open(2, LOW), (2, 6)),
        (peer_open(90, Ipv4Addr::UNSPECIFIED), (2, 3)),
    ];
    for (open, want) in cases {
        let mut f = open_sent();
        let a = f.handle(Event::Received(Conn::Outgoing, Message::Open(open.clone())));
        assert_eq!(notif(&a), Some(want), "{open:?}");
        assert!(a.contains(&Action::Close(Conn::Outgoing)));
        assert_eq!(f.state(), State::Idle);
        assert!(a.iter().any(|a| matches!(
            a,
            Action::Down {
                was_established: false,
                error: SessionError::SentNotification(_)
            }
        )));
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::StartTimer(Timer::IdleHold, _)))
        );
    }
    // Hold 3 and a peer with only a 2-octet ASN are fine.
    let mut f = open_sent();
    let o = Open {
        capabilities: vec![],
        ..Open::new(64512, 3, LOW, &[])
    };
    f.handle(Event::Received(Conn::Outgoing, Message::Open(o)));
    assert_eq!(f.state(), State::OpenConfirm);
    let n = f.negotiated().unwrap();
    assert!(
        !n.four_octet_as && n.ipv4_unicast && !n.ipv6_unicast,
        "{n:?}"
    );
}

#[test]
fn four_octet_peer_asn() {
    let mut c = cfg();
    c.peer_asn = 4_200_000_000.into();
    let mut f = Fsm::new(c);
    f.handle(Event::Start);
    f.handle(Event::Connected);
    let o = Open::new(4_200_000_000, 90, LOW, &[(1, 1)]);
    assert_eq!(o.my_as, AS_TRANS);
    f.handle(Event::Received(Conn::Outgoing, Message::Open(o)));
    assert_eq!(f.state(), State::OpenConfirm);
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    let mut f = open_sent();
    let a = f.handle(Event::Received(Conn::Outgoing, Message::Keepalive));
    assert_eq!(notif(&a), Some((5, 1)));
    let mut f = open_sent();
    f.handle(Event::Received(
        Conn::Outgoing,
        Message::Open(peer_open(90, LOW)),
    ));
    let a = f.handle(Event::Received(
        Conn::Outgoing,
        Message::Update(Default::default()),
    ));
    assert_eq!(notif(&a), Some((5, 2)));
    let mut f = established();
    let a = f.handle(Event::Received(
        Conn::Outgoing,
        Message::Open(peer_open(90, LOW)),
    ));
    assert_eq!(notif(&a), Some((5, 3)));
    assert!(a.iter().any(|a| matches!(
        a,
        Action::Down {
            was_established: true,
            ..
        }
    )));
}

fn bad_origin() -> DecodeError {
    DecodeError::InvalidOrigin {
        value: 9,
        attr: RawAttribute(vec![0x40, 1, 1, 9]),
    }
}

#[test]
fn a_structural_update_error_resets_the_session_with_its_notification() {
    let mut f = established();
    let a = f.handle(Event::Malformed(
        Conn::Outgoing,
        DecodeError::InvalidNetwork("prefix length"),
    ));
    assert_eq!(notif(&a), Some((3, 10)));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn an_attribute_error_is_treat_as_withdraw_and_keeps_the_session() {
    let mut f = established();
    let a = f.handle(Event::Malformed(Conn::Outgoing, bad_origin()));
    assert_eq!(notif(&a), None, "{a:?}");
    assert_eq!(f.state(), State::Established);
    assert_eq!(
        a,
        vec![
            Action::StartTimer(Timer::Hold, Duration::from_secs(9)),
            Action::TreatedAsWithdraw(bad_origin()),
        ],
        "it counts as a sign of life and is reported"
    );
}

#[test]
fn a_malformed_update_before_established_is_an_fsm_error() {
    // RFC 6608: in OpenSent 5/1, in OpenConfirm 5/2, whatever is wrong inside the UPDATE.
    let mut f = open_sent();
    let a = f.handle(Event::Malformed(Conn::Outgoing, bad_origin()));
    assert_eq!(notif(&a), Some((5, 1)));
    assert_eq!(f.state(), State::Idle);
    let mut f = open_sent();
    f.handle(Event::Received(
        Conn::Outgoing,
        Message::Open(peer_open(90, LOW)),
    ));
    assert_eq!(f.state(), State::OpenConfirm);
    let a = f.handle(Event::Malformed(
        Conn::Outgoing,
        DecodeError::InvalidNetwork("prefix length"),
    ));
    assert_eq!(notif(&a), Some((5, 2)));
    // A malformed OPEN in Established is unexpected too (5/3); a header error is itself.
    let mut f = established();
    let a = f.handle(Event::Malformed(
        Conn::Outgoing,
        DecodeError::UnsupportedVersion(3),
    ));
    assert_eq!(notif(&a), Some((5, 3)));
    let mut f = open_sent();
    let a = f.handle(Event::Malformed(Conn::Outgoing, DecodeError::BadType(9)));
    assert_eq!(notif(&a), Some((1, 3)));
}

#[test]
fn hold_timer_expiry() {
    let mut f = established();
    let a = f.handle(Event::TimerExpired(Timer::Hold));
    assert_eq!(notif(&a), Some((4, 0)));
    assert!(a.contains(&Action::Close(Conn::Outgoing)));
}

#[test]
fn keepalive_timer_sends_keepalive_and_rearms() {
    let mut f = established();
    let a = f.handle(Event::TimerExpired(Timer::Keepalive));
    assert_eq!(
        a,
        vec![
            Action::Send(Conn::Outgoing, Message::Keepalive),
            Action::StartTimer(Timer::Keepalive, Duration::from_secs(3)),
        ]
    );
    let a = f.handle(Event::Received(Conn::Outgoing, Message::Keepalive));
    assert_eq!(
        a,
        vec![Action::StartTimer(Timer::Hold, Duration::from_secs(9))]
    );
}

#[test]
fn route_refresh_is_reported() {
    let mut f = established();
    let a = f.handle(Event::Received(
        Conn::Outgoing,
        Message::RouteRefresh { afi: 1, safi: 1 },
    ));
    assert!(a.contains(&Action::RouteRefresh { afi: 1, safi: 1 }));
}

#[test]
fn stop_sends_cease_and_does_not_restart() {
    let mut f = established();
    let a = f.handle(Event::Stop);
    assert_eq!(notif(&a), Some((6, 2)));
    assert!(a.contains(&Action::Close(Conn::Outgoing)));
    assert!(a.contains(&Action::Down {
        was_established: true,
        error: SessionError::Stopped
    }));
    assert_eq!(f.state(), State::Idle);
    assert!(f.handle(Event::TimerExpired(Timer::IdleHold)).is_empty());
}

#[test]
fn peer_notification_and_close() {
    let mut f = established();
    let n = Notification::new(6, 2);
    let a = f.handle(Event::Received(
        Conn::Outgoing,
        Message::Notification(n.clone()),
    ));
    assert!(notif(&a).is_none(), "never answer a NOTIFICATION");
    assert!(a.contains(&Action::Down {
        was_established: true,
        error: SessionError::PeerNotification(n)
    }));
    let mut f = established();
    let a = f.handle(Event::Closed(Conn::Outgoing));
    assert!(a.contains(&Action::Down {
        was_established: true,
        error: SessionError::ConnectionClosed
    }));
}

#[test]
fn connect_retry_and_backoff() {
    let mut f = Fsm::new(cfg());
    f.handle(Event::Start);
    f.handle(Event::ConnectFailed);
    assert_eq!(f.state(), State::Active);
    let a = f.handle(Event::TimerExpired(Timer::ConnectRetry));
    assert_eq!(f.state(), State::Connect);
    assert!(a.contains(&Action::Connect));
    // The unanswered attempt counted: the next ConnectRetry interval doubled.
    assert!(a.contains(&Action::StartTimer(
        Timer::ConnectRetry,
        Duration::from_secs(10)
    )));
    // Repeated OPEN refusals: restart delays double (from 2 s after that first failure),
    // capped at 60 s.
    let mut delays = vec![];
    for _ in 0..9 {
        f.handle(Event::Connected);
        let a = f.handle(Event::Received(
            Conn::Outgoing,
            Message::Open(Open::new(1, 90, LOW, &[])),
        ));
        let d = a.iter().find_map(|a| match a {
            Action::StartTimer(Timer::IdleHold, d) => Some(d.as_secs()),
            _ => None,
        });
        delays.push(d.unwrap());
        assert_eq!(f.state(), State::Idle);
        let a = f.handle(Event::TimerExpired(Timer::IdleHold));
        assert!(a.contains(&Action::Connect));
    }
    assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60, 60, 60]);
    // Success resets the backoff.
    f.handle(Event::Connected);
    f.handle(Event::Received(
        Conn::Outgoing,
        Message::Open(peer_open(90, LOW)),
    ));
    f.handle(Event::Received(Conn::Outgoing, Message::Keepalive));
    assert_eq!(f.failures(), 0);
}

#[test]
fn passive_waits_for_the_peer() {
    let mut c = cfg();
    c.passive = true;
    let mut f = Fsm::new(c);
    assert!(f.handle(Event::Start).is_empty());
    assert_eq!(f.state(), State::Active);
    let a = f.handle(Event::Accepted);
    assert!(matches!(
        &sends(&a)[..],
        [(Conn::Incoming, Message::Open(_))]
    ));
    assert_eq!(f.connection(), Some(Conn::Incoming));
}

#[test]
fn idle_refuses_connections() {
    let mut f = Fsm::new(cfg());
    assert_eq!(
        f.handle(Event::Accepted),
        vec![Action::Close(Conn::Incoming)]
    );
}

#[test]
fn collision_higher_peer_id_keeps_the_peers_connection() {
    // Our outgoing is in OpenSent, the peer (higher id) connects too.
    let mut f = open_sent();
    let a = f.handle(Event::Accepted);
    assert!(matches!(
        &sends(&a)[..],
        [(Conn::Incoming, Message::Open(_))]
    ));
    let a = f.handle(Event::Received(
        Conn::Incoming,
        Message::Open(peer_open(90, HIGH)),
    ));
    assert!(a.contains(&Action::Send(
        Conn::Outgoing,
        Message::Notification(Notification::new(6, 7))
    )));
    assert!(a.contains(&Action::Close(Conn::Outgoing)));
    assert_eq!(f.connection(), Some(Conn::Incoming));
    assert_eq!(f.state(), State::OpenConfirm);
    f.handle(Event::Received(Conn::Incoming, Message::Keepalive));
    assert_eq!(f.state(), State::Established);
}

#[test]
fn collision_lower_peer_id_keeps_ours() {
    let mut f = open_sent();
    f.handle(Event::Accepted);
    let a = f.handle(Event::Received(
        Conn::Incoming,
        Message::Open(peer_open(90, LOW)),
    ));
    assert_eq!(
        sends(&a),
        vec![(
            Conn::Incoming,
            Message::Notification(Notification::new(6, 7))
        )]
    );
    assert!(a.contains(&Action::Close(Conn::Incoming)));
    assert_eq!(f.connection(), Some(Conn::Outgoing));
    assert_eq!(f.state(), State::OpenSent);
}

#[test]
fn collision_detected_on_the_primary_open() {
    // Second connection exists; the OPEN arrives first on the primary, from a higher id.
    let mut f = open_sent();
    f.handle(Event::Accepted);
    let a = f.handle(Event::Received(
        Conn::Outgoing,
        Message::Open(peer_open(90, HIGH)),
    ));
    assert!(a.contains(&Action::Close(Conn::Outgoing)));
    assert_eq!(f.connection(), Some(Conn::Incoming));
    assert_eq!(f.state(), State::OpenSent);
    f.handle(Event::Received(
        Conn::Incoming,
        Message::Open(peer_open(90, HIGH)),
    ));
    assert_eq!(f.state(), State::OpenConfirm);
}

#[test]
fn connection_while_established_is_refused() {
    let mut f = established();
    let a = f.handle(Event::Accepted);
    assert_eq!(
        a,
        vec![
            Action::Send(
                Conn::Incoming,
                Message::Notification(Notification::new(6, 7))
            ),
            Action::Close(Conn::Incoming),
        ]
    );
    assert_eq!(f.state(), State::Established);
}

fn arb_open() -> impl Strategy<Value = Open> {
    (
        prop_oneof![Just(64512u32), Just(64999), Just(4_200_000_000)],
        0u16..12,
        prop_oneof![Just(LOW), Just(HIGH), Just(ME), Just(Ipv4Addr::UNSPECIFIED)],
        3u8..5,
    )
        .prop_map(|(asn, hold, id, v)| Open {
            version: v,
            ..Open::new(asn, hold, id, &[(1, 1)])
        })
}

fn arb_conn() -> impl Strategy<Value = Conn> {
    prop_oneof![Just(Conn::Outgoing), Just(Conn::Incoming)]
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::Start),
        Just(Event::Stop),
        prop_oneof![
            Just(Timer::ConnectRetry),
            Just(Timer::Hold),
            Just(Timer::Keepalive),
            Just(Timer::IdleHold)
        ]
        .prop_map(Event::TimerExpired),
        Just(Event::Connected),
        Just(Event::ConnectFailed),
        Just(Event::Accepted),
        arb_conn().prop_map(Event::Closed),
        (arb_conn(), arb_open()).prop_map(|(c, o)| Event::Received(c, Message::Open(o))),
        arb_conn().prop_map(|c| Event::Received(c, Message::Keepalive)),
        arb_conn().prop_map(|c| Event::Received(c, Message::Keepalive)),
        arb_conn().prop_map(|c| Event::Received(c, Message::Update(Default::default()))),
        arb_conn().prop_map(|c| Event::Received(c, Message::Notification(Notification::new(6, 4)))),
        arb_conn().prop_map(|c| Event::Received(c, Message::RouteRefresh { afi: 1, safi: 1 })),
        arb_conn().prop_map(|c| Event::Malformed(c, DecodeError::BadLength(3))),
    ]
}

#[derive(Default, Clone)]
struct ConnLog {
    open_sent: bool,
    open_received: bool,
    keepalive_sent: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random event sequences (including nonsense ones the edge would never produce): never
    /// panics; Established only after OPEN sent, OPEN received, KEEPALIVE sent and a
    /// KEEPALIVE received on that connection; every close we initiate on a connection where
    /// BGP was spoken follows a NOTIFICATION on it (except when the peer closed or notified).
    #[test]
    fn random_event_sequences(events in proptest::collection::vec(arb_event(), 0..60), passive in any::<bool>()) {
        let mut c = cfg();
        c.passive = passive;
        let mut f = Fsm::new(c);
        let mut logs: std::collections::HashMap<Conn, ConnLog> = Default::default();
        for ev in events {
            let before = f.state();
            // connections that are (re)opened start a fresh log; a direction the FSM already
            // holds (as its connection or as the collision candidate) is not reopened: the
            // FSM ignores a repeated report of it
            let holds = |c: Conn| f.connection() == Some(c) || f.second == Some(c);
            match &ev {
                Event::Connected if !holds(Conn::Outgoing) => { logs.remove(&Conn::Outgoing); }
                Event::Accepted if !holds(Conn::Incoming) => { logs.remove(&Conn::Incoming); }
                _ => {}
            }
            if let Event::Received(c, Message::Open(o)) = &ev
                && o.version == 4 { logs.entry(*c).or_default().open_received = true; }
            let peer_done = matches!(&ev, Event::Closed(_) | Event::Received(_, Message::Notification(_)));
            let actions = f.handle(ev.clone());
            let mut notified: Vec<Conn> = vec![];
            for a in &actions {
                match a {
                    Action::Send(c, Message::Open(_)) => logs.entry(*c).or_default().open_sent = true,
                    Action::Send(c, Message::Keepalive) => logs.entry(*c).or_default().keepalive_sent = true,
                    Action::Send(c, Message::Notification(_)) => notified.push(*c),
                    Action::Close(c) => {
                        let spoke = logs.get(c).is_some_and(|l| l.open_sent);
                        let peer_side = peer_done && matches!(&ev, Event::Closed(x) | Event::Received(x, _) if x == c);
                        prop_assert!(!spoke || peer_side || notified.contains(c), "close without NOTIFICATION on {c:?} after {ev:?}: {actions:?}");
                        logs.remove(c);
                    }
                    _ => {}
                }
            }
            if f.state() == State::Established && before != State::Established {
                let c = f.connection().unwrap();
                prop_assert!(matches!(&ev, Event::Received(x, Message::Keepalive) if *x == c), "{ev:?}");
                let l = logs.get(&c).cloned().unwrap_or_default();
                prop_assert!(l.open_sent && l.open_received && l.keepalive_sent);
                prop_assert!(actions.iter().any(|a| matches!(a, Action::Established(x, _) if *x == c)));
            }
            if f.state() == State::Idle {
                prop_assert!(f.connection().is_none());
            }
        }
    }
}

/// MetalLB drop-in (issue 13, dynamicASN): the peer's AS is learned from its OPEN within the
/// rule: `internal` takes only our AS, `external` any other; a wrong one gets Bad Peer AS
/// (2/2) with the AS it sent. The session is iBGP or eBGP by the rule, not by a named AS.
#[test]
fn dynamic_peer_asn_is_learned_within_its_rule() {
    let reached = |rule: PeerAsn, peer_as: u32| {
        let mut c = cfg();
        c.peer_asn = rule;
        let mut f = Fsm::new(c);
        f.handle(Event::Start);
        f.handle(Event::Connected);
        let a = f.handle(Event::Received(
            Conn::Outgoing,
            Message::Open(Open::new(peer_as, 90, LOW, &[(1, 1)])),
        ));
        (f.state(), notif(&a), f.negotiated().map(|n| n.peer_asn))
    };
    // Our AS is 64513 (cfg()).
    assert_eq!(
        reached(PeerAsn::External, 64999),
        (State::OpenConfirm, None, Some(64999))
    );
    assert_eq!(
        reached(PeerAsn::External, 4_200_000_000),
        (State::OpenConfirm, None, Some(4_200_000_000))
    );
    assert_eq!(reached(PeerAsn::External, 64513).1, Some((2, 2)));
    assert_eq!(
        reached(PeerAsn::Internal, 64513),
        (State::OpenConfirm, None, Some(64513))
    );
    assert_eq!(reached(PeerAsn::Internal, 64512).1, Some((2, 2)));
    let mut c = cfg();
    c.peer_asn = PeerAsn::Internal;
    assert!(c.is_ibgp());
    c.peer_asn = PeerAsn::External;
    assert!(!c.is_ibgp());
}
