//! The node's BFD sessions on tokio: the thin edge around the pure [`Fsm`].
//!
//! One task owns every session, so nothing is shared but the status it publishes:
//! - receiving: one UDP socket per address family and hop mode, bound when the first session
//!   of that kind is added (single hop: port 3784, RFC 5881; multihop: 4784, RFC 5883). A
//!   packet goes to the session its Your Discriminator names, or, while that is 0, to the
//!   session with the sender's address. The kernel drops packets under the minimum TTL
//!   (`IP_MINTTL` / `IPV6_MINHOPCOUNT`): 255 for single hop, the profile's `minimumTtl` for
//!   multihop (GTSM, RFC 5082);
//! - sending: one socket per session, from a source port of 49152-65535 unique to it, TTL 255,
//!   every transmit interval less 0-25 % of jitter (6.8.7), and at once on a state change or
//!   to answer a Poll;
//! - timers: the next transmission and the detection deadline of each session, one sleep for
//!   the earliest.
//!
//! Each session's state is published on a `watch` channel (the BGP session follows it: Down
//! after Up takes the BGP session down at once) and in [`Bfd::status`].

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::fsm::{Action, Event, Fsm, Timers};
use super::packet::{Control, Diag, State};

/// UDP port of single-hop Control packets (RFC 5881).
pub const SINGLE_HOP_PORT: u16 = 3784;
/// UDP port of multihop Control packets (RFC 5883).
pub const MULTIHOP_PORT: u16 = 4784;
/// Source ports a session sends from (RFC 5881 4).
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// One session's settings, from the peer and its BFDProfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdSettings {
    pub timers: Timers,
    /// Wait for the peer to speak first.
    pub passive: bool,
    /// RFC 5883 (the BGP peer is more than one hop away): port 4784, `minimum_ttl`.
    pub multihop: bool,
    /// Lowest TTL accepted on multihop packets (single hop always requires 255).
    pub minimum_ttl: u8,
    /// The address to send from (the BGP session's `sourceAddress`); none: the kernel's choice.
    pub source: Option<IpAddr>,
}

/// What users and metrics see of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdStatus {
    pub state: State,
    /// Why it last went down.
    pub diag: Diag,
    /// Since when it is Up.
    pub up_since: Option<SystemTime>,
    /// Times it went down from Up.
    pub flaps: u64,
    /// Why the session could not be started (retried every [`RETRY`]), if it could not.
    pub error: Option<String>,
}

impl BfdStatus {
    /// A session not up yet.
    fn new() -> BfdStatus {
        BfdStatus {
            state: State::Down,
            diag: Diag::None,
            up_since: None,
            flaps: 0,
            error: None,
        }
    }
}

/// How often a session that could not be started (no route to a multihop peer yet, a port
/// taken) is tried again.
pub const RETRY: Duration = Duration::from_secs(1);
/// How long a session that ends keeps telling the peer AdminDown (RFC 5880 6.8.16: at least a
/// detection time), bounded so that a stopping speaker is not held up.
const LEAVING: Duration = Duration::from_secs(1);

enum Command {
    Add(IpAddr, BfdSettings, watch::Sender<State>),
    Remove(IpAddr),
    Stop,
}

/// The node's BFD sessions, by peer address.
pub struct Bfd {
    commands: mpsc::UnboundedSender<Command>,
    status: Arc<Mutex<BTreeMap<IpAddr, BfdStatus>>>,
    task: Option<JoinHandle<()>>,
}

impl Bfd {
    /// Starts the task on the current tokio runtime (its sockets are made in that runtime's
    /// network namespace). No socket is bound before the first session.
    pub fn start() -> Bfd {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(BTreeMap::new()));
        let engine = Engine {
            sessions: BTreeMap::new(),
            failed: BTreeMap::new(),
            leaving: Vec::new(),
            sockets: BTreeMap::new(),
            status: status.clone(),
            seed: seed(),
        };
        let task = tokio::spawn(engine.run(rx));
        Bfd {
            commands: tx,
            status,
            task: Some(task),
        }
    }

    /// Runs a session with `peer` (replacing any with other settings); its state follows on
    /// the returned channel.
    pub fn add(&self, peer: IpAddr, settings: BfdSettings) -> watch::Receiver<State> {
        let (tx, rx) = watch::channel(State::Down);
        let _ = self.commands.send(Command::Add(peer, settings, tx));
        rx
    }

    /// Ends the session with `peer`, telling it AdminDown (so it does not count a failure).
    pub fn remove(&self, peer: IpAddr) {
        let _ = self.commands.send(Command::Remove(peer));
    }

    /// Every session's state.
    pub fn status(&self) -> BTreeMap<IpAddr, BfdStatus> {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tells every peer AdminDown, then ends (bounded).
    pub async fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

impl Drop for Bfd {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A seed for discriminators and jitter: they need to differ between runs and nodes, not to
/// be secret.
fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    t ^ (u64::from(std::process::id()) << 32) | 1
}

/// xorshift64: jitter and discriminators (no cryptographic use).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

struct Running {
    fsm: Fsm,
    settings: BfdSettings,
    tx: UdpSocket,
    state_tx: watch::Sender<State>,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
}

/// Which receiving socket: family and hop mode.
type SocketKind = (bool, bool); // (ipv6, multihop)

/// A session that could not start, waiting for its next try.
struct Failed {
    settings: BfdSettings,
    state_tx: watch::Sender<State>,
    retry_at: Instant,
}

/// An ended session still telling its peer AdminDown.
struct Leaving {
    tx: UdpSocket,
    packet: [u8; super::packet::LEN],
    next: Instant,
    until: Instant,
    every: Duration,
}

struct Engine {
    sessions: BTreeMap<IpAddr, Running>,
    failed: BTreeMap<IpAddr, Failed>,
    leaving: Vec<Leaving>,
    sockets: BTreeMap<SocketKind, Arc<UdpSocket>>,
    status: Arc<Mutex<BTreeMap<IpAddr, BfdStatus>>>,
    seed: u64,
}

/// A datagram read by one of the receiving sockets.
struct Datagram {
    multihop: bool,
    from: SocketAddr,
    bytes: Vec<u8>,
}

impl Engine {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let (dgram_tx, mut dgrams) = mpsc::channel::<Datagram>(256);
        let mut readers: Vec<JoinHandle<()>> = Vec::new();
        // Stopping: every session ended; the loop runs on while they tell their peers.
        let mut stopping = false;
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                cmd = commands.recv(), if !stopping => match cmd {
                    Some(Command::Add(peer, settings, state_tx)) => {
                        self.try_add(peer, settings, state_tx, &dgram_tx, &mut readers).await;
                    }
                    Some(Command::Remove(peer)) => self.remove(peer).await,
                    Some(Command::Stop) | None => {
                        let peers: Vec<IpAddr> = self.sessions.keys().copied().collect();
                        for p in peers {
                            self.remove(p).await;
                        }
                        self.failed.clear();
                        stopping = true;
                    }
                },
                Some(d) = dgrams.recv() => self.received(d).await,
                _ = sleep_until(deadline) => {
                    self.timers().await;
                    let now = Instant::now();
                    let due: Vec<IpAddr> = (self.failed.iter())
                        .filter(|(_, f)| f.retry_at <= now)
                        .map(|(p, _)| *p)
                        .collect();
                    for peer in due {
                        if let Some(f) = self.failed.remove(&peer) {
                            self.try_add(peer, f.settings, f.state_tx, &dgram_tx, &mut readers).await;
                        }
                    }
                }
            }
            if stopping && self.leaving.is_empty() {
                break;
            }
        }
        for r in readers {
            r.abort();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .sessions
            .values()
            .flat_map(|s| [s.next_tx, s.detect_at]);
        let retries = self.failed.values().map(|f| Some(f.retry_at));
        let leaving = self.leaving.iter().map(|l| Some(l.next));
        sessions.chain(retries).chain(leaving).flatten().min()
    }

    /// Starts a session; one that cannot start now is retried every [`RETRY`] and shown Down
    /// with the error.
    async fn try_add(
        &mut self,
        peer: IpAddr,
        settings: BfdSettings,
        state_tx: watch::Sender<State>,
        dgrams: &mpsc::Sender<Datagram>,
        readers: &mut Vec<JoinHandle<()>>,
    ) {
        self.failed.remove(&peer);
        let Err((e, state_tx)) = self
            .add(peer, settings.clone(), state_tx, dgrams, readers)
            .await
        else {
            return;
        };
        let error = e.to_string();
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let st = all.entry(peer).or_insert_with(BfdStatus::new);
        if st.error.as_deref() != Some(error.as_str()) {
            tracing::warn!(peer = %peer, "BFD session not started (retrying every {RETRY:?}): {error}");
        }
        st.error = Some(error);
        drop(all);
        self.failed.insert(
            peer,
            Failed {
                settings,
                state_tx,
                retry_at: Instant::now() + RETRY,
            },
        );
    }

    async fn add(
        &mut self,
        peer: IpAddr,
        settings: BfdSettings,
        state_tx: watch::Sender<State>,
        dgrams: &mpsc::Sender<Datagram>,
        readers: &mut Vec<JoinHandle<()>>,
    ) -> Result<(), (io::Error, watch::Sender<State>)> {
        if let Some(old) = self.sessions.get(&peer)
            && old.settings == settings
        {
            // Same session: only the new follower.
            let _ = state_tx.send(old.fsm.state());
            if let Some(s) = self.sessions.get_mut(&peer) {
                s.state_tx = state_tx;
            }
            return Ok(());
        }
        self.remove(peer).await;
        let kind = (peer.is_ipv6(), settings.multihop);
        let min_ttl = if settings.multihop {
            settings.minimum_ttl
        } else {
            255
        };
        match self.sockets.get(&kind) {
            Some(sock) => {
                if settings.multihop {
                    // One socket serves every multihop session of a family: the lowest
                    // minimum wins.
                    let lowest = (self.sessions.iter())
                        .filter(|(p, s)| p.is_ipv6() == kind.0 && s.settings.multihop)
                        .map(|(_, s)| s.settings.minimum_ttl)
                        .chain([min_ttl])
                        .min()
                        .unwrap_or(min_ttl);
                    if let Err(e) = set_min_ttl(sock, kind.0, lowest) {
                        return Err((e, state_tx));
                    }
                }
            }
            None => {
                let sock = match bind_receiver(kind, min_ttl) {
                    Ok(s) => Arc::new(s),
                    Err(e) => return Err((e, state_tx)),
                };
                self.sockets.insert(kind, sock.clone());
                let dgrams = dgrams.clone();
                readers.push(tokio::spawn(read_loop(sock, kind.1, dgrams)));
            }
        }
        let tx = match bind_sender(peer, &settings, &mut self.seed).await {
            Ok(tx) => tx,
            Err(e) => return Err((e, state_tx)),
        };
        let mut discriminator = 0;
        while discriminator == 0
            || self
                .sessions
                .values()
                .any(|s| s.fsm.local_discriminator() == discriminator)
        {
            discriminator = next(&mut self.seed) as u32;
        }
        let fsm = Fsm::new(settings.timers, settings.passive, discriminator);
        let mut running = Running {
            fsm,
            settings,
            tx,
            state_tx,
            next_tx: None,
            detect_at: None,
        };
        running.next_tx = running.fsm.tx_interval().map(|i| {
            Instant::now() + jitter(i, running.settings.timers.detect_mult, &mut self.seed) / 4
        });
        tracing::info!(peer = %peer, multihop = running.settings.multihop, "BFD session started");
        self.sessions.insert(peer, running);
        self.publish(peer, None);
        Ok(())
    }

    async fn remove(&mut self, peer: IpAddr) {
        self.failed.remove(&peer);
        if let Some(mut s) = self.sessions.remove(&peer) {
            if s.fsm.handle(Event::Admin { up: false }).is_ok() {
                // AdminDown for about a detection time, so the peer takes it as a shutdown
                // even if a packet is lost (6.8.16).
                let packet = s.fsm.packet(false).encode();
                let _ = s.tx.send(&packet).await;
                let every = s.fsm.tx_interval().unwrap_or(LEAVING).min(LEAVING / 4);
                let now = Instant::now();
                self.leaving.push(Leaving {
                    tx: s.tx,
                    packet,
                    next: now + every,
                    until: now + LEAVING,
                    every,
                });
            }
            let _ = s.state_tx.send(State::AdminDown);
            tracing::info!(peer = %peer, "BFD session ended");
        }
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&peer);
    }

    async fn received(&mut self, d: Datagram) {
        let c = match Control::decode(&d.bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(from = %d.from, "BFD packet discarded: {e}");
                return;
            }
        };
        let peer = if c.your_discriminator != 0 {
            self.sessions
                .iter()
                .find(|(_, s)| s.fsm.local_discriminator() == c.your_discriminator)
                .map(|(p, _)| *p)
        } else {
            Some(canonical(d.from.ip())).filter(|p| self.sessions.contains_key(p))
        };
        let Some(peer) = peer else {
            tracing::debug!(from = %d.from, "BFD packet for no session");
            return;
        };
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        if s.settings.multihop != d.multihop || canonical(d.from.ip()) != peer {
            tracing::debug!(from = %d.from, "BFD packet from another address or hop mode");
            return;
        }
        match s.fsm.handle(Event::Received(c)) {
            Ok(actions) => self.execute(peer, actions, c.poll).await,
            Err(e) => tracing::debug!(peer = %peer, "BFD packet discarded: {e}"),
        }
    }

    async fn timers(&mut self) {
        let now = Instant::now();
        for l in &mut self.leaving {
            if l.next <= now {
                let _ = l.tx.send(&l.packet).await;
                l.next = now + l.every;
            }
        }
        self.leaving.retain(|l| l.until > now);
        let peers: Vec<IpAddr> = self.sessions.keys().copied().collect();
        for peer in peers {
            let Some(s) = self.sessions.get_mut(&peer) else {
                continue;
            };
            if s.detect_at.is_some_and(|t| t <= now) {
                s.detect_at = None;
                if let Ok(actions) = s.fsm.handle(Event::DetectionExpired) {
                    self.execute(peer, actions, false).await;
                }
            }
            let Some(s) = self.sessions.get_mut(&peer) else {
                continue;
            };
            if s.next_tx.is_some_and(|t| t <= now) {
                let _ = s.tx.send(&s.fsm.packet(false).encode()).await;
                s.next_tx = s
                    .fsm
                    .tx_interval()
                    .map(|i| now + jitter(i, s.settings.timers.detect_mult, &mut self.seed));
            }
        }
    }

    async fn execute(&mut self, peer: IpAddr, actions: Vec<Action>, answer_poll: bool) {
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        let now = Instant::now();
        let mut change = None;
        let mut send = false;
        for a in actions {
            match a {
                Action::StateChanged { from, to, diag } => change = Some((from, to, diag)),
                Action::SendNow => send = true,
                Action::RestartDetection => s.detect_at = s.fsm.detection_time().map(|d| now + d),
            }
        }
        if s.fsm.detection_time().is_none() {
            s.detect_at = None;
        }
        if send {
            let _ = s.tx.send(&s.fsm.packet(answer_poll).encode()).await;
        }
        // A new interval (the peer's or ours) holds from the next transmission on, or sooner.
        let interval = s.fsm.tx_interval();
        s.next_tx = match (interval, s.next_tx) {
            (None, _) => None,
            (Some(i), Some(t)) if t <= now + i => Some(t),
            (Some(i), _) => Some(now + jitter(i, s.settings.timers.detect_mult, &mut self.seed)),
        };
        if let Some((from, to, diag)) = change {
            // The peer taking the session out of service is not a path failure: the BGP session
            // is not to act on it (RFC 5882 3.2).
            let shown = if s.fsm.down_by_peer_admin() {
                State::AdminDown
            } else {
                to
            };
            let _ = s.state_tx.send(shown);
            if to == State::Up || from == State::Up {
                tracing::info!(peer = %peer, "BFD session {from} -> {to} ({diag})");
            } else {
                tracing::debug!(peer = %peer, "BFD session {from} -> {to} ({diag})");
            }
            self.publish(peer, Some((from, to)));
        }
    }

    fn publish(&self, peer: IpAddr, change: Option<(State, State)>) {
        let Some(s) = self.sessions.get(&peer) else {
            return;
        };
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let st = all.entry(peer).or_insert_with(BfdStatus::new);
        st.error = None;
        st.state = s.fsm.state();
        st.diag = s.fsm.diag();
        match change {
            Some((_, State::Up)) => st.up_since = Some(SystemTime::now()),
            Some((State::Up, _)) => {
                st.up_since = None;
                st.flaps += 1;
            }
            _ => {}
        }
    }
}

/// The interval less 0-25 % (0-10 % more off with a multiplier of 1), as 6.8.7 asks.
fn jitter(interval: Duration, detect_mult: u8, seed: &mut u64) -> Duration {
    let min_off = if detect_mult == 1 { 10 } else { 0 };
    let off = min_off + (next(seed) % (25 - min_off + 1));
    interval * (100 - off as u32) / 100
}

/// An IPv4 peer seen through an IPv6 socket is still the IPv4 peer.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn read_loop(sock: Arc<UdpSocket>, multihop: bool, out: mpsc::Sender<Datagram>) {
    let mut buf = [0u8; 512];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let d = Datagram {
                    multihop,
                    from,
                    bytes: buf[..n.min(buf.len())].to_vec(),
                };
                // Full: the engine is behind; dropping a packet is what a congested link does.
                if let Err(mpsc::error::TrySendError::Closed(_)) = out.try_send(d) {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("BFD receive: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn bind_receiver((ipv6, multihop): SocketKind, min_ttl: u8) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let port = if multihop {
        MULTIHOP_PORT
    } else {
        SINGLE_HOP_PORT
    };
    let (domain, addr) = if ipv6 {
        (
            Domain::IPV6,
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        )
    } else {
        (
            Domain::IPV4,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        )
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if ipv6 {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("binding BFD port {addr}: {e}")))?;
    let s = UdpSocket::from_std(s.into())?;
    set_min_ttl(&s, ipv6, min_ttl)?;
    Ok(s)
}

/// A socket for sending to `peer`, from the session's source address (if set) and a free port
/// of 49152-65535, TTL 255.
async fn bind_sender(
    peer: IpAddr,
    settings: &BfdSettings,
    seed: &mut u64,
) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let port = if settings.multihop {
        MULTIHOP_PORT
    } else {
        SINGLE_HOP_PORT
    };
    let span = u64::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let start = next(seed) % span;
    let mut last = None;
    for i in 0..64u64 {
        let source = SOURCE_PORTS.start() + ((start + i * 7919) % span) as u16;
        let (domain, any): (Domain, IpAddr) = match peer {
            IpAddr::V4(_) => (Domain::IPV4, Ipv4Addr::UNSPECIFIED.into()),
            IpAddr::V6(_) => (Domain::IPV6, Ipv6Addr::UNSPECIFIED.into()),
        };
        let local = SocketAddr::new(settings.source.unwrap_or(any), source);
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if peer.is_ipv6() {
            s.set_only_v6(true)?;
            s.set_unicast_hops_v6(255)?;
        } else {
            s.set_ttl_v4(255)?;
        }
        s.set_nonblocking(true)?;
        match s.bind(&local.into()) {
            Ok(()) => {
                let s = UdpSocket::from_std(s.into())?;
                s.connect(SocketAddr::new(peer, port)).await?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free BFD source port")))
}

/// Packets under `ttl` (TTL or hop limit) are dropped by the kernel: GTSM, RFC 5082. No
/// maintained crate offers IP_MINTTL / IPV6_MINHOPCOUNT, hence libc.
fn set_min_ttl(sock: &UdpSocket, ipv6: bool, ttl: u8) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT)
    } else {
        (libc::IPPROTO_IP, libc::IP_MINTTL)
    };
    let value: libc::c_int = libc::c_int::from(ttl);
    // SAFETY: a valid socket descriptor, an int option, and a pointer to a live c_int with its
    // exact size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_75_to_100_percent() {
        let mut seed = 42;
        let i = Duration::from_millis(300);
        for _ in 0..1000 {
            let j = jitter(i, 3, &mut seed);
            assert!(j >= Duration::from_millis(225) && j <= i, "{j:?}");
            let j1 = jitter(i, 1, &mut seed);
            assert!(
                j1 >= Duration::from_millis(225) && j1 <= Duration::from_millis(270),
                "{j1:?}"
            );
        }
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_peer() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(canonical("::ffff:10.0.0.1".parse().unwrap()), v4);
        assert_eq!(canonical(v4), v4);
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
