//! The BGP session state machine (RFC 4271 section 8), pure: [`Fsm::handle`] takes an
//! [`Event`] and returns [`Action`]s. No sockets and no clocks: a timer expiring is an event,
//! "start timer X for N" is an action. This keeps every transition testable without I/O.
//!
//! Connections are named by direction ([`Conn`]): at most one outgoing and one incoming
//! exist, which is what collision detection (RFC 4271 6.8) needs: while one connection is in
//! OpenSent/OpenConfirm a second one gets our OPEN too, and when the peer's BGP identifier is
//! known the loser is closed with Cease / Connection Collision Resolution.

use std::net::Ipv4Addr;
use std::time::Duration;

pub use ferrolb_config::PeerAsn;

use super::message::{
    AFI_IPV4, AFI_IPV6, AS_TRANS, DecodeError, Handling, Message, Notification, Open, SAFI_UNICAST,
    code,
};

/// Hold time proposed while waiting for the peer's OPEN (RFC 4271 8: "a large value", 4 min).
pub const OPEN_HOLD: Duration = Duration::from_secs(240);

/// Which TCP connection an event or action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conn {
    /// We connected to the peer.
    Outgoing,
    /// The peer connected to us.
    Incoming,
}

/// RFC 4271 8.2.2 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// Timers the I/O edge runs for the FSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    /// Delay before an automatic restart after an error (grows with repeated failures, so a
    /// misconfigured session retries with backoff instead of looping).
    IdleHold,
}

/// What happens to the session.
// Events are handled one at a time as they arrive, never stored in bulk: no need to box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start (or restart) the session.
    Start,
    /// Administrative stop: Cease to the peer, no automatic restart.
    Stop,
    TimerExpired(Timer),
    /// Our outgoing TCP connection is up.
    Connected,
    /// Our outgoing TCP connection attempt failed.
    ConnectFailed,
    /// The peer connected to us.
    Accepted,
    /// A connection closed or failed.
    Closed(Conn),
    /// A message arrived on a connection.
    Received(Conn, Message),
    /// Bytes on a connection were not a valid message.
    Malformed(Conn, DecodeError),
}

/// What the I/O edge must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open the outgoing TCP connection.
    Connect,
    /// Give up a connection attempt in progress.
    AbortConnect,
    Send(Conn, Message),
    Close(Conn),
    StartTimer(Timer, Duration),
    StopTimer(Timer),
    /// The session is Established: advertise the table on this connection.
    Established(Conn, Negotiated),
    /// An UPDATE with an attribute error RFC 7606 handles as treat-as-withdraw: counted and
    /// logged; the session stays up.
    TreatedAsWithdraw(DecodeError),
    /// The peer asks for our routes of one family again (RFC 2918).
    RouteRefresh {
        afi: u16,
        safi: u8,
    },
    /// An attempt or an Established session ended.
    Down {
        was_established: bool,
        error: SessionError,
    },
}

/// Why a session went down (the "last error" users see).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("peer sent NOTIFICATION: {0}")]
    PeerNotification(Notification),
    #[error("sent NOTIFICATION: {0}")]
    SentNotification(Notification),
    #[error("connection closed by peer or network")]
    ConnectionClosed,
    #[error("stopped")]
    Stopped,
}

/// Configuration of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmConfig {
    pub local_asn: u32,
    /// The AS the peer's OPEN must carry: named, or learned within a rule (`dynamicASN`).
    pub peer_asn: PeerAsn,
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds: 0 (no keepalives) or at least 3.
    pub hold_time: u16,
    /// Configured keepalive interval (`keepaliveTime`); `None` or zero: a third of the
    /// negotiated hold time. Never longer than that third, so a peer that negotiated a shorter
    /// hold time does not time the session out.
    pub keepalive: Option<Duration>,
    /// Never connect, only accept.
    pub passive: bool,
    pub connect_retry: Duration,
    /// First automatic-restart delay after an error; doubles per consecutive failure.
    pub idle_hold: Duration,
    pub idle_hold_max: Duration,
    /// Families to announce in the OPEN (`(afi, safi)`).
    pub families: Vec<(u16, u8)>,
    /// Offer IPv4 routes with IPv6 next hops (RFC 8950; unnumbered sessions).
    pub ipv4_over_ipv6: bool,
    /// Graceful Restart (RFC 4724): announce the capability with this restart time (seconds)
    /// and the forwarding state kept for every family; send End-of-RIB after the initial table.
    pub graceful_restart: Option<u16>,
}

/// The restart time ferrolb announces with Graceful Restart: how long a helper keeps a
/// restarting node's routes as stale (FRR's default).
pub const GRACEFUL_RESTART_TIME: u16 = 120;

impl FsmConfig {
    pub fn new(local_asn: u32, peer_asn: impl Into<PeerAsn>, router_id: Ipv4Addr) -> Self {
        FsmConfig {
            local_asn,
            peer_asn: peer_asn.into(),
            router_id,
            hold_time: 90,
            keepalive: None,
            passive: false,
            connect_retry: Duration::from_secs(5),
            idle_hold: Duration::from_secs(1),
            idle_hold_max: Duration::from_secs(60),
            families: vec![(AFI_IPV4, SAFI_UNICAST), (AFI_IPV6, SAFI_UNICAST)],
            ipv4_over_ipv6: false,
            graceful_restart: None,
        }
    }

    /// iBGP when both ASNs are equal.
    pub fn is_ibgp(&self) -> bool {
        self.peer_asn.is_ibgp(self.local_asn)
    }

    /// Whether the peer may have AS `asn` (never 0, RFC 7607).
    fn accepts(&self, asn: u32) -> bool {
        if asn == 0 {
            return false;
        }
        match self.peer_asn {
            PeerAsn::Is(want) => asn == want,
            PeerAsn::Internal => asn == self.local_asn,
            PeerAsn::External => asn != self.local_asn,
        }
    }

    fn open(&self) -> Open {
        let mut open = Open::new(
            self.local_asn,
            self.hold_time,
            self.router_id,
            &self.families,
        );
        if self.ipv4_over_ipv6 {
            let triple = (AFI_IPV4, u16::from(SAFI_UNICAST), AFI_IPV6);
            open.capabilities
                .push(super::message::Capability::ExtendedNextHop(vec![triple]));
        }
        if let Some(restart_time) = self.graceful_restart {
            // Forwarding is kube-proxy's, in the kernel: it goes on while the speaker restarts.
            let families = self.families.iter().map(|&(a, s)| (a, s, true)).collect();
            open.capabilities
                .push(super::message::Capability::GracefulRestart(
                    super::message::GracefulRestart {
                        restarted: false,
                        notification: false,
                        restart_time,
                        families,
                    },
                ));
        }
        open
    }
}

/// What both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Seconds; 0 means no hold timer and no keepalives.
    pub hold_time: u16,
    pub keepalive: Duration,
    pub four_octet_as: bool,
    pub peer_asn: u32,
    pub peer_id: Ipv4Addr,
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
    pub route_refresh: bool,
    /// Both sides take IPv4 routes with IPv6 next hops (RFC 8950).
    pub ipv4_over_ipv6: bool,
    /// Both sides announced Graceful Restart (RFC 4724): End-of-RIB follows the initial table.
    pub graceful_restart: bool,
}

/// The session state machine.
#[derive(Debug, Clone)]
pub struct Fsm {
    cfg: FsmConfig,
    state: State,
    /// The connection the state is about (from OpenSent on).
    primary: Option<Conn>,
    /// A second connection with our OPEN sent, awaiting the peer's OPEN (collision).
    second: Option<Conn>,
    negotiated: Option<Negotiated>,
    failures: u32,
    /// Automatic restart allowed (false after Stop).
    enabled: bool,
}

/// Checks a received OPEN (RFC 4271 6.2, RFC 6793); the NOTIFICATION to send if refused.
pub fn check_open(cfg: &FsmConfig, open: &Open) -> Result<(), Notification> {
    if open.version != 4 {
        return Err(Notification::with_data(
            code::OPEN,
            code::OPEN_UNSUPPORTED_VERSION,
            4u16.to_be_bytes().to_vec(),
        ));
    }
    let bad_as = || {
        Notification::with_data(
            code::OPEN,
            code::OPEN_BAD_PEER_AS,
            open.my_as.to_be_bytes().to_vec(),
        )
    };
    match open.four_octet_as() {
        Some(asn) if !cfg.accepts(asn) => return Err(bad_as()),
        // The 2-octet field must agree with the capability when the ASN fits.
        Some(asn) if asn <= 0xffff && u32::from(open.my_as) != asn => return Err(bad_as()),
        Some(_) => {}
        None if open.my_as == AS_TRANS || !cfg.accepts(u32::from(open.my_as)) => {
            return Err(bad_as());
        }
        None => {}
    }
    if open.hold_time == 1 || open.hold_time == 2 {
        return Err(Notification::new(
            code::OPEN,
            code::OPEN_UNACCEPTABLE_HOLD_TIME,
        ));
    }
    let id = open.bgp_id;
    if id.is_unspecified() || id.is_broadcast() || (cfg.is_ibgp() && id == cfg.router_id) {
        return Err(Notification::new(code::OPEN, code::OPEN_BAD_BGP_ID));
    }
    Ok(())
}

/// Negotiates timers and families from a checked OPEN.
pub fn negotiate(cfg: &FsmConfig, open: &Open) -> Negotiated {
    let hold_time = cfg.hold_time.min(open.hold_time);
    let mp_any = open
        .capabilities
        .iter()
        .any(|c| matches!(c, super::message::Capability::Multiprotocol { .. }));
    let ours = |afi, safi| cfg.families.contains(&(afi, safi));
    let third = Duration::from_millis(u64::from(hold_time) * 1000 / 3);
    let keepalive = match cfg.keepalive {
        Some(k) if !k.is_zero() => k.min(third),
        _ => third,
    };
    Negotiated {
        hold_time,
        keepalive,
        four_octet_as: open.four_octet_as().is_some(),
        peer_asn: open.asn(),
        peer_id: open.bgp_id,
        // Without any multiprotocol capability IPv4 unicast is implied (RFC 4760 8).
        ipv4_unicast: ours(AFI_IPV4, SAFI_UNICAST)
            && (!mp_any || open.has_family(AFI_IPV4, SAFI_UNICAST)),
        ipv6_unicast: ours(AFI_IPV6, SAFI_UNICAST) && open.has_family(AFI_IPV6, SAFI_UNICAST),
        route_refresh: open.has_route_refresh(),
        ipv4_over_ipv6: cfg.ipv4_over_ipv6 && open.has_ipv4_over_ipv6(),
        graceful_restart: cfg.graceful_restart.is_some() && open.graceful_restart().is_some(),
    }
}

impl Fsm {
    pub fn new(cfg: FsmConfig) -> Self {
        Fsm {
            cfg,
            state: State::Idle,
            primary: None,
            second: None,
            negotiated: None,
            failures: 0,
            enabled: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// The agreed parameters while OpenConfirm or Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The connection the session runs on (OpenSent onward).
    pub fn connection(&self) -> Option<Conn> {
        self.primary
    }

    /// Consecutive failed attempts (drives the restart backoff).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The restart delay after `failures` consecutive failures.
    pub fn backoff(&self) -> Duration {
        let factor = 1u32 << self.failures.saturating_sub(1).min(16);
        self.cfg
            .idle_hold
            .saturating_mul(factor)
            .min(self.cfg.idle_hold_max)
    }

    /// Feeds one event; returns what to do.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        self.step(event, &mut out);
        out
    }

    fn step(&mut self, event: Event, out: &mut Vec<Action>) {
        use State::*;
        match (self.state, event) {
            (_, Event::Stop) => self.stop(out),
            (Idle, Event::Start) => {
                self.enabled = true;
                self.start(out);
            }
            (_, Event::Start) => {}
            (Idle, Event::TimerExpired(Timer::IdleHold)) if self.enabled => self.start(out),
            (Idle, Event::Accepted) => out.push(Action::Close(Conn::Incoming)),
            (Idle, Event::Connected) => out.push(Action::Close(Conn::Outgoing)),
            (Idle, _) => {}

            (Connect | Active, Event::TimerExpired(Timer::ConnectRetry)) => {
                if self.state == Connect {
                    out.push(Action::AbortConnect);
                }
                // Unanswered attempts count as failures: the retry interval backs off.
                self.failures = self.failures.saturating_add(1);
                self.connect(out);
            }
            (Connect | Active, Event::ConnectFailed | Event::Closed(Conn::Outgoing)) => {
                self.state = Active;
            }
            (Connect | Active, Event::Connected) => self.open_on(Conn::Outgoing, out),
            (Connect | Active, Event::Accepted) => {
                if self.state == Connect {
                    out.push(Action::AbortConnect);
                }
                self.open_on(Conn::Incoming, out);
            }
            (Connect | Active, _) => {}

            // A second connection while the first one is still opening: collision candidate.
            (OpenSent | OpenConfirm | Established, ev @ (Event::Connected | Event::Accepted)) => {
                let c = if ev == Event::Connected {
                    Conn::Outgoing
                } else {
                    Conn::Incoming
                };
                if self.primary == Some(c) || self.second == Some(c) {
                    // The edge never reports a direction twice; nothing sensible to do.
                } else if self.state == Established || self.second.is_some() {
                    out.push(Action::Send(c, cease(code::CEASE_COLLISION)));
                    out.push(Action::Close(c));
                } else {
                    self.second = Some(c);
                    out.push(Action::Send(c, Message::Open(self.cfg.open())));
                }
            }
            (OpenSent | OpenConfirm | Established, Event::ConnectFailed) => {}

            (_, Event::Closed(c)) if Some(c) == self.second => self.second = None,
            (_, Event::Closed(c)) if Some(c) == self.primary => {
                self.primary = None;
                self.fail(SessionError::ConnectionClosed, out);
            }
            (_, Event::Closed(_)) => {}

            (st, Event::Malformed(c, e)) if Some(c) == self.primary || Some(c) == self.second => {
                // The state of this connection: a second one has sent its OPEN and waits.
                let st = if Some(c) == self.second { OpenSent } else { st };
                if st == Established && e.handling() == Handling::TreatAsWithdraw {
                    // RFC 7606: the UPDATE's routes count as withdrawn; we import none, so it
                    // is only counted. It still shows the peer is alive.
                    self.restart_hold(out);
                    out.push(Action::TreatedAsWithdraw(e));
                    return;
                }
                // An error inside a message this state does not expect is an FSM error
                // (RFC 6608): the message should not have come at all.
                let n = match (st, e.message_type()) {
                    (OpenSent, Some(t)) if t != 1 => {
                        Notification::new(code::FSM, code::FSM_IN_OPEN_SENT)
                    }
                    (OpenConfirm, Some(_)) => {
                        Notification::new(code::FSM, code::FSM_IN_OPEN_CONFIRM)
                    }
                    (Established, Some(1)) => {
                        Notification::new(code::FSM, code::FSM_IN_ESTABLISHED)
                    }
                    _ => e.notification(),
                };
                self.error_on(c, n, out);
            }

            (_, Event::Malformed(..)) => {}
            (_, Event::Received(c, msg)) if Some(c) == self.second => {
                self.on_second_message(c, msg, out)
            }
            (_, Event::Received(c, _)) if Some(c) != self.primary => {}
            (_, Event::Received(c, Message::Notification(n))) => {
                out.push(Action::Close(c));
                self.primary = None;
                self.fail(SessionError::PeerNotification(n), out);
            }
            (OpenSent, Event::Received(c, Message::Open(o))) => self.on_open(c, o, out),
            (OpenConfirm, Event::Received(c, Message::Keepalive)) => {
                self.state = Established;
                self.failures = 0;
                self.restart_hold(out);
                if let Some(n) = self.negotiated.clone() {
                    out.push(Action::Established(c, n));
                }
            }
            (Established, Event::Received(_, Message::Keepalive | Message::Update(_))) => {
                self.restart_hold(out)
            }
            (Established, Event::Received(_, Message::RouteRefresh { afi, safi })) => {
                self.restart_hold(out);
                out.push(Action::RouteRefresh { afi, safi });
            }
            (st, Event::Received(c, _)) => {
                let sub = match st {
                    OpenSent => 1,
                    OpenConfirm => 2,
                    _ => 3,
                };
                self.error_on(c, Notification::new(code::FSM, sub), out);
            }

            (OpenSent | OpenConfirm | Established, Event::TimerExpired(Timer::Hold)) => {
                if let Some(c) = self.primary {
                    self.error_on(c, Notification::new(code::HOLD_TIMER_EXPIRED, 0), out);
                }
            }
            (OpenConfirm | Established, Event::TimerExpired(Timer::Keepalive)) => {
                if let (Some(c), Some(n)) = (self.primary, &self.negotiated)
                    && n.hold_time > 0
                {
                    out.push(Action::Send(c, Message::Keepalive));
                    out.push(Action::StartTimer(Timer::Keepalive, n.keepalive));
                }
            }
            (_, Event::TimerExpired(_)) => {}
        }
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        if self.cfg.passive {
            self.state = State::Active;
        } else {
            self.connect(out);
        }
    }

    fn connect(&mut self, out: &mut Vec<Action>) {
        self.state = State::Connect;
        out.push(Action::Connect);
        out.push(Action::StartTimer(
            Timer::ConnectRetry,
            self.connect_retry(),
        ));
    }

    /// ConnectRetry interval: the configured one, doubled per consecutive failure, capped.
    pub fn connect_retry(&self) -> Duration {
        let cap = self.cfg.idle_hold_max.max(self.cfg.connect_retry);
        self.cfg
            .connect_retry
            .saturating_mul(1 << self.failures.min(16))
            .min(cap)
    }

    /// A connection is up in Connect/Active: send OPEN, wait for the peer's.
    fn open_on(&mut self, c: Conn, out: &mut Vec<Action>) {
        out.push(Action::StopTimer(Timer::ConnectRetry));
        out.push(Action::Send(c, Message::Open(self.cfg.open())));
        out.push(Action::StartTimer(Timer::Hold, OPEN_HOLD));
        self.primary = Some(c);
        self.state = State::OpenSent;
    }

    /// The peer's OPEN on the primary connection in OpenSent.
    fn on_open(&mut self, c: Conn, o: Open, out: &mut Vec<Action>) {
        if let Some(s) = self.second {
            // Collision: the peer's identifier is known now (RFC 4271 6.8).
            if self.collision_winner(&o) == s {
                out.push(Action::Send(c, cease(code::CEASE_COLLISION)));
                out.push(Action::Close(c));
                self.primary = Some(s);
                self.second = None;
                return; // our OPEN went out on `s`; wait for the peer's OPEN there
            }
            out.push(Action::Send(s, cease(code::CEASE_COLLISION)));
            out.push(Action::Close(s));
            self.second = None;
        }
        if let Err(n) = check_open(&self.cfg, &o) {
            return self.error_on(c, n, out);
        }
        let n = negotiate(&self.cfg, &o);
        out.push(Action::Send(c, Message::Keepalive));
        if n.hold_time > 0 {
            out.push(Action::StartTimer(Timer::Keepalive, n.keepalive));
            out.push(Action::StartTimer(
                Timer::Hold,
                Duration::from_secs(u64::from(n.hold_time)),
            ));
        } else {
            out.push(Action::StopTimer(Timer::Hold));
        }
        self.negotiated = Some(n);
        self.state = State::OpenConfirm;
    }

    fn on_second_message(&mut self, s: Conn, msg: Message, out: &mut Vec<Action>) {
        match msg {
            Message::Open(o) => {
                let winner = self.collision_winner(&o);
                let primary_open = matches!(self.state, State::OpenSent | State::OpenConfirm);
                if winner == s && primary_open {
                    if let Some(p) = self.primary {
                        out.push(Action::Send(p, cease(code::CEASE_COLLISION)));
                        out.push(Action::Close(p));
                    }
                    self.primary = Some(s);
                    self.second = None;
                    self.negotiated = None;
                    self.state = State::OpenSent;
                    self.on_open(s, o, out);
                } else {
                    out.push(Action::Send(s, cease(code::CEASE_COLLISION)));
                    out.push(Action::Close(s));
                    self.second = None;
                }
            }
            Message::Notification(_) => {
                out.push(Action::Close(s));
                self.second = None;
            }
            _ => {
                out.push(Action::Send(
                    s,
                    Message::Notification(Notification::new(code::FSM, 1)),
                ));
                out.push(Action::Close(s));
                self.second = None;
            }
        }
    }

    /// RFC 4271 6.8: the connection opened by the side with the higher BGP identifier wins.
    fn collision_winner(&self, o: &Open) -> Conn {
        if u32::from(self.cfg.router_id) < u32::from(o.bgp_id) {
            Conn::Incoming
        } else {
            Conn::Outgoing
        }
    }

    fn restart_hold(&self, out: &mut Vec<Action>) {
        if let Some(n) = &self.negotiated
            && n.hold_time > 0
        {
            out.push(Action::StartTimer(
                Timer::Hold,
                Duration::from_secs(u64::from(n.hold_time)),
            ));
        }
    }

    /// A local error on `c`: NOTIFICATION, close; the session fails if `c` is the primary.
    fn error_on(&mut self, c: Conn, n: Notification, out: &mut Vec<Action>) {
        out.push(Action::Send(c, Message::Notification(n.clone())));
        out.push(Action::Close(c));
        if Some(c) == self.second {
            self.second = None;
        } else if Some(c) == self.primary {
            self.primary = None;
            self.fail(SessionError::SentNotification(n), out);
        }
    }

    /// Back to Idle with an automatic restart after the backoff.
    fn fail(&mut self, error: SessionError, out: &mut Vec<Action>) {
        let was_established = self.state == State::Established;
        if let Some(s) = self.second.take() {
            out.push(Action::Send(s, cease(code::CEASE_ADMIN_SHUTDOWN)));
            out.push(Action::Close(s));
        }
        if let Some(p) = self.primary.take() {
            out.push(Action::Close(p));
        }
        self.stop_timers(out);
        self.state = State::Idle;
        self.negotiated = None;
        self.failures = self.failures.saturating_add(1);
        out.push(Action::Down {
            was_established,
            error,
        });
        if self.enabled {
            out.push(Action::StartTimer(Timer::IdleHold, self.backoff()));
        }
    }

    fn stop(&mut self, out: &mut Vec<Action>) {
        let was_established = self.state == State::Established;
        let was_running = self.state != State::Idle;
        if self.state == State::Connect {
            out.push(Action::AbortConnect);
        }
        for c in [self.primary.take(), self.second.take()]
            .into_iter()
            .flatten()
        {
            out.push(Action::Send(c, cease(code::CEASE_ADMIN_SHUTDOWN)));
            out.push(Action::Close(c));
        }
        self.stop_timers(out);
        out.push(Action::StopTimer(Timer::IdleHold));
        self.state = State::Idle;
        self.negotiated = None;
        self.enabled = false;
        if was_running {
            out.push(Action::Down {
                was_established,
                error: SessionError::Stopped,
            });
        }
    }

    fn stop_timers(&self, out: &mut Vec<Action>) {
        for t in [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive] {
            out.push(Action::StopTimer(t));
        }
    }
}

fn cease(sub: u8) -> Message {
    Message::Notification(Notification::new(code::CEASE, sub))
}

#[cfg(test)]
mod tests;
