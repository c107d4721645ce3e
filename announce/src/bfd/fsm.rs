//! The RFC 5880 session state machine, asynchronous mode, pure: events in (a received Control
//! packet, the detection time passing, admin up/down), actions out (state changes, a packet to
//! send at once); the I/O edge asks it for the packet to send and the intervals to run.
//!
//! - Timers (6.8.2, 6.8.4): the transmit interval is the larger of our Desired Min TX and the
//!   peer's Required Min RX (none while the peer's is 0); the detection time is the peer's
//!   multiplier times the larger of our Required Min RX and the peer's Desired Min TX.
//! - Slow start (6.8.3): while the session is not Up we ask to send at most once a second; on
//!   Up the configured interval is announced with a Poll sequence (6.5), and the peer's Final
//!   ends it.
//! - Passive (6.1): nothing is sent until the peer has sent something.

use std::time::Duration;

use super::packet::{Control, Diag, State};

/// The slowest we ask to send while the session is not Up (RFC 5880 6.8.3).
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// A session's timers, from its BFDProfile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Desired Min TX Interval.
    pub desired_min_tx: Duration,
    /// Required Min RX Interval.
    pub required_min_rx: Duration,
    /// Detect Mult.
    pub detect_mult: u8,
}

/// What happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A Control packet for this session (already decoded and demultiplexed).
    Received(Control),
    /// The detection time passed without a packet.
    DetectionExpired,
    /// Taken out of service (the peer is told AdminDown) or put back.
    Admin { up: bool },
}

/// What the edge must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The state changed.
    StateChanged { from: State, to: State, diag: Diag },
    /// Send a packet now (a Final to a Poll, or news of a state change), outside the periodic
    /// transmissions.
    SendNow,
    /// A valid packet arrived: restart the detection timer from now ([`Fsm::detection_time`]).
    RestartDetection,
}

/// Why a packet was not taken (RFC 5880 6.8.6, after demultiplexing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Discarded {
    #[error("the session is administratively down")]
    AdminDown,
    #[error("your discriminator {got} is not ours ({ours})")]
    WrongDiscriminator { got: u32, ours: u32 },
}

/// One BFD session.
#[derive(Clone, Debug)]
pub struct Fsm {
    timers: Timers,
    passive: bool,
    local_discriminator: u32,
    state: State,
    diag: Diag,
    remote_state: State,
    remote_discriminator: u32,
    /// The peer's Required Min RX (RFC: initialised to 1 µs).
    remote_min_rx: Duration,
    remote_desired_min_tx: Duration,
    remote_detect_mult: u8,
    /// The Desired Min TX we announce and send at.
    announced_tx: Duration,
    /// A Poll sequence runs (P set until a Final arrives).
    polling: bool,
}

impl Fsm {
    /// A session in Down with `local_discriminator` (non-zero, unique on the node).
    pub fn new(timers: Timers, passive: bool, local_discriminator: u32) -> Fsm {
        Fsm {
            timers,
            passive,
            local_discriminator,
            state: State::Down,
            diag: Diag::None,
            remote_state: State::Down,
            remote_discriminator: 0,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_min_tx: Duration::ZERO,
            remote_detect_mult: 0,
            announced_tx: timers.desired_min_tx.max(SLOW_TX),
            polling: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Went down because the peer said AdminDown: taken out of service on purpose, not a
    /// failure; a client must not act on it (RFC 5882 3.2).
    pub fn down_by_peer_admin(&self) -> bool {
        self.state == State::Down && self.remote_state == State::AdminDown
    }

    /// Why the session last went down.
    pub fn diag(&self) -> Diag {
        self.diag
    }

    /// The peer's state, as its last packet said.
    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discriminator
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discriminator
    }

    /// Whether periodic packets are sent now, and how often (before jitter): `None` while the
    /// peer asks for none (Required Min RX 0) or, passive, while the peer's discriminator is
    /// not known (before it has spoken, or after a detection expiry: 6.8.7).
    pub fn tx_interval(&self) -> Option<Duration> {
        if (self.passive && self.remote_discriminator == 0)
            || self.remote_min_rx.is_zero()
            || self.state == State::AdminDown && self.remote_discriminator == 0
        {
            return None;
        }
        Some(self.announced_tx.max(self.remote_min_rx))
    }

    /// How long without a packet before the session goes down (`None` before the peer has
    /// spoken, or while Down: nothing to detect).
    pub fn detection_time(&self) -> Option<Duration> {
        if self.remote_detect_mult == 0 || matches!(self.state, State::Down | State::AdminDown) {
            return None;
        }
        let interval = self.timers.required_min_rx.max(self.remote_desired_min_tx);
        Some(interval * u32::from(self.remote_detect_mult))
    }

    /// The packet to send now; `final_` answers a Poll.
    pub fn packet(&self, final_: bool) -> Control {
        Control {
            diag: self.diag,
            state: self.state,
            poll: self.polling && !final_,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.timers.detect_mult,
            my_discriminator: self.local_discriminator,
            your_discriminator: self.remote_discriminator,
            desired_min_tx: self.announced_tx,
            required_min_rx: self.timers.required_min_rx,
            required_min_echo_rx: Duration::ZERO,
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, event: Event) -> Result<Vec<Action>, Discarded> {
        let mut out = Vec::new();
        match event {
            Event::Received(c) => self.received(c, &mut out)?,
            Event::DetectionExpired => {
                self.remote_discriminator = 0;
                if matches!(self.state, State::Init | State::Up) {
                    self.go(State::Down, Diag::ControlDetectionTimeExpired, &mut out);
                }
            }
            Event::Admin { up: false } => {
                if self.state != State::AdminDown {
                    self.go(State::AdminDown, Diag::AdministrativelyDown, &mut out);
                }
            }
            Event::Admin { up: true } => {
                if self.state == State::AdminDown {
                    self.go(State::Down, Diag::None, &mut out);
                }
            }
        }
        Ok(out)
    }

    fn received(&mut self, c: Control, out: &mut Vec<Action>) -> Result<(), Discarded> {
        if c.your_discriminator != 0 && c.your_discriminator != self.local_discriminator {
            return Err(Discarded::WrongDiscriminator {
                got: c.your_discriminator,
                ours: self.local_discriminator,
            });
        }
        if self.state == State::AdminDown {
            return Err(Discarded::AdminDown);
        }
        self.remote_discriminator = c.my_discriminator;
        self.remote_state = c.state;
        self.remote_min_rx = c.required_min_rx;
        self.remote_desired_min_tx = c.desired_min_tx;
        self.remote_detect_mult = c.detect_mult;
        if c.final_ {
            self.polling = false;
        }
        match (self.state, c.state) {
            (State::Init | State::Up, State::AdminDown) => {
                self.go(State::Down, Diag::NeighborSignaledDown, out)
            }
            (_, State::AdminDown) => {}
            (State::Down, State::Down) => self.go(State::Init, Diag::None, out),
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                self.go(State::Up, Diag::None, out)
            }
            (State::Up, State::Down) => self.go(State::Down, Diag::NeighborSignaledDown, out),
            _ => {}
        }
        out.push(Action::RestartDetection);
        if c.poll {
            out.push(Action::SendNow);
        }
        Ok(())
    }

    /// The Desired Min TX to announce in the current state (slow start while not Up).
    fn wanted_tx(&self) -> Duration {
        if self.state == State::Up {
            self.timers.desired_min_tx
        } else {
            self.timers.desired_min_tx.max(SLOW_TX)
        }
    }

    fn go(&mut self, to: State, diag: Diag, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        self.diag = diag;
        // The new Desired Min TX is announced with a Poll. It holds at once: the only change
        // while Up is the speed-up on reaching Up (6.8.3 lets a slower interval wait for the
        // Final only while Up, and a profile change starts a new session).
        let wanted = self.wanted_tx();
        if wanted != self.announced_tx {
            self.polling = true;
            self.announced_tx = wanted;
        }
        out.push(Action::StateChanged { from, to, diag });
        out.push(Action::SendNow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn timers(ms: u64) -> Timers {
        Timers {
            desired_min_tx: MS(ms),
            required_min_rx: MS(ms),
            detect_mult: 3,
        }
    }

    /// Delivers every packet `from` would send now to `to`, and answers a Final if asked.
    fn deliver(from: &mut Fsm, to: &mut Fsm) -> Vec<Action> {
        let actions = to.handle(Event::Received(from.packet(false))).unwrap();
        if actions.contains(&Action::SendNow) && from.packet(false).poll {
            from.handle(Event::Received(to.packet(true))).unwrap();
        }
        actions
    }

    fn changes(actions: &[Action]) -> Vec<(State, State)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::StateChanged { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn three_way_handshake_then_fast_timers_after_poll_final() {
        let mut a = Fsm::new(timers(300), false, 1);
        let mut b = Fsm::new(timers(300), false, 2);
        // Slow start: one packet a second until Up.
        assert_eq!(a.tx_interval(), Some(SLOW_TX));
        assert_eq!(a.packet(false).desired_min_tx, SLOW_TX);
        assert_eq!(a.detection_time(), None);
        // a (Down) -> b: b goes Init.
        assert_eq!(
            changes(&deliver(&mut a, &mut b)),
            [(State::Down, State::Init)]
        );
        // b (Init) -> a: a goes Up, and polls with its fast interval.
        assert_eq!(
            changes(&deliver(&mut b, &mut a)),
            [(State::Down, State::Up)]
        );
        assert!(a.packet(false).poll);
        assert_eq!(a.packet(false).desired_min_tx, MS(300));
        // a (Up) -> b: b goes Up and answers the Poll with a Final, ending a's sequence.
        let acts = b.handle(Event::Received(a.packet(false))).unwrap();
        assert_eq!(changes(&acts), [(State::Init, State::Up)]);
        assert!(acts.contains(&Action::SendNow));
        a.handle(Event::Received(b.packet(true))).unwrap();
        assert!(!a.packet(false).poll, "the Final ended the Poll sequence");
        // b polls too; a answers.
        a.handle(Event::Received(b.packet(false))).unwrap();
        b.handle(Event::Received(a.packet(true))).unwrap();
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
        assert_eq!(a.tx_interval(), Some(MS(300)));
        assert_eq!(a.detection_time(), Some(MS(900)), "3 x max(300, 300)");
    }

    fn up_pair(a_ms: u64, b_ms: u64) -> (Fsm, Fsm) {
        let mut a = Fsm::new(timers(a_ms), false, 1);
        let mut b = Fsm::new(timers(b_ms), false, 2);
        for _ in 0..4 {
            deliver(&mut a, &mut b);
            deliver(&mut b, &mut a);
        }
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
        (a, b)
    }

    #[test]
    fn the_slower_side_sets_the_pace_both_ways() {
        let (a, b) = up_pair(100, 500);
        // a may send every 100 ms but b wants no more than every 500 ms.
        assert_eq!(a.tx_interval(), Some(MS(500)));
        assert_eq!(b.tx_interval(), Some(MS(500)));
        // a detects in 3 x max(a's rx 100, b's tx 500).
        assert_eq!(a.detection_time(), Some(MS(1500)));
    }

    #[test]
    fn detection_expiry_takes_the_session_down_and_forgets_the_peer() {
        let (mut a, _) = up_pair(300, 300);
        let acts = a.handle(Event::DetectionExpired).unwrap();
        assert_eq!(changes(&acts), [(State::Up, State::Down)]);
        assert_eq!(a.diag(), Diag::ControlDetectionTimeExpired);
        assert_eq!(a.remote_discriminator(), 0);
        assert_eq!(a.detection_time(), None);
        assert_eq!(
            a.packet(false).desired_min_tx,
            SLOW_TX,
            "slow again while not Up"
        );
        // Expiry while Down changes nothing more.
        assert!(changes(&a.handle(Event::DetectionExpired).unwrap()).is_empty());
    }

    #[test]
    fn neighbor_down_and_admin_down() {
        let (mut a, mut b) = up_pair(300, 300);
        b.handle(Event::Admin { up: false }).unwrap();
        assert_eq!(b.packet(false).state, State::AdminDown);
        assert_eq!(b.packet(false).diag, Diag::AdministrativelyDown);
        let acts = a.handle(Event::Received(b.packet(false))).unwrap();
        assert_eq!(changes(&acts), [(State::Up, State::Down)]);
        assert_eq!(a.diag(), Diag::NeighborSignaledDown);
        // AdminDown discards whatever arrives.
        assert_eq!(
            b.handle(Event::Received(a.packet(false))),
            Err(Discarded::AdminDown)
        );
        // The peer's AdminDown is not a failure: the edge tells the BGP session apart.
        assert!(a.down_by_peer_admin());
        // Back in service: Down, then up again with the peer.
        b.handle(Event::Admin { up: true }).unwrap();
        assert_eq!(b.state(), State::Down);
        for _ in 0..3 {
            deliver(&mut a, &mut b);
            deliver(&mut b, &mut a);
        }
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
        // A Down packet from an Up peer: neighbor signaled down.
        let (mut a, mut b) = up_pair(300, 300);
        b.handle(Event::DetectionExpired).unwrap();
        let acts = a.handle(Event::Received(b.packet(false))).unwrap();
        assert_eq!(changes(&acts), [(State::Up, State::Down)]);
        assert!(!a.down_by_peer_admin(), "a Down from the peer is a failure");
    }

    #[test]
    fn a_packet_for_another_session_is_discarded() {
        let mut a = Fsm::new(timers(300), false, 1);
        let mut c = Fsm::new(timers(300), false, 5).packet(false);
        c.your_discriminator = 99;
        assert_eq!(
            a.handle(Event::Received(c)),
            Err(Discarded::WrongDiscriminator { got: 99, ours: 1 })
        );
        assert_eq!(a.state(), State::Down);
    }

    #[test]
    fn passive_waits_for_the_peer_and_zero_rx_stops_sending() {
        let mut p = Fsm::new(timers(300), true, 1);
        assert_eq!(p.tx_interval(), None, "passive: silent until spoken to");
        let mut a = Fsm::new(timers(300), false, 2);
        deliver(&mut a, &mut p);
        assert_eq!(p.tx_interval(), Some(SLOW_TX));
        let mut quiet = a.packet(false);
        quiet.required_min_rx = Duration::ZERO;
        p.handle(Event::Received(quiet)).unwrap();
        assert_eq!(p.tx_interval(), None, "the peer asks for no packets");
        // After a detection expiry a passive session is silent again (6.8.7).
        p.handle(Event::Received(a.packet(false))).unwrap();
        assert!(p.tx_interval().is_some());
        p.handle(Event::DetectionExpired).unwrap();
        assert_eq!(p.tx_interval(), None, "passive, the peer forgotten: silent");
    }

    #[test]
    fn every_event_in_every_state_keeps_the_invariants() {
        // Exhaustive over the states a peer can announce and our own events.
        let peer_states = [State::AdminDown, State::Down, State::Init, State::Up];
        for start in 0..4 {
            for ps in peer_states {
                for poll in [false, true] {
                    let (mut a, b) = up_pair(300, 300);
                    match start {
                        0 => {
                            a.handle(Event::DetectionExpired).unwrap();
                        }
                        1 => {
                            a.handle(Event::Admin { up: false }).unwrap();
                        }
                        _ => {}
                    }
                    let mut c = b.packet(false);
                    c.state = ps;
                    c.poll = poll;
                    let before = a.state();
                    match a.handle(Event::Received(c)) {
                        Ok(acts) => {
                            assert_ne!(a.state(), State::AdminDown);
                            if poll {
                                assert!(acts.contains(&Action::SendNow));
                            }
                            if ps == State::AdminDown {
                                assert_eq!(a.state(), State::Down, "{before:?} {ps:?}");
                            }
                            if a.state() == State::Up {
                                assert!(matches!(ps, State::Init | State::Up));
                            }
                        }
                        Err(Discarded::AdminDown) => assert_eq!(before, State::AdminDown),
                        Err(e) => panic!("{e}"),
                    }
                    assert_eq!(a.packet(false).my_discriminator, 1);
                }
            }
        }
    }
}
