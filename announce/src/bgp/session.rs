//! One BGP session on tokio: the thin edge around the pure [`Fsm`] and UPDATE builder.
//!
//! It runs the timers the FSM asks for, opens TCP connections with MD5 and TTL set (and takes
//! the ones the node's [`Listener`](super::listener::Listener) accepted for this peer), sends
//! the table when the session comes up and only the differences afterwards, and publishes a
//! [`SessionStatus`] for status and metrics.
//!
//! Each connection has a reader task and a writer task, so that whatever a peer does touches
//! only its own session, and nothing it does costs unbounded memory:
//! - the reader cuts the byte stream into messages and hands them over on a channel of
//!   [`READ_QUEUE`] messages; when the session loop falls behind, the reader stops reading
//!   and TCP pushes back on the peer. Received UPDATEs are decoded, counted and dropped (we
//!   import no routes);
//! - the writer takes encoded messages from a queue of [`WRITE_QUEUE`]; the session loop never
//!   waits on a socket. A peer that leaves the queue full, or takes nothing for
//!   [`WRITE_DEADLINE`], is not reading: the connection is closed as failed. A closing connection gets [`CLOSE_FLUSH`] to send what is queued (the
//!   NOTIFICATION among it), then it is dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::fsm::{Action, Conn, Event, Fsm, FsmConfig, State, Timer};
use super::listener::Incoming;
use super::message::{AFI_IPV4, AFI_IPV6, Codec, DecodeError, Framer, MAX_MESSAGE_LEN, Message};
use super::socket::{self, TcpOptions};
use super::unnumbered::LinkPeer;
use super::update::{self, PeerView, Table};

/// Messages a reader may have handed over and the session loop not yet handled. Beyond this
/// the reader waits, stops reading, and the peer's sends block in TCP: at most this many
/// 4 KiB messages (plus one 64 KiB read buffer) per connection, whatever the peer sends.
pub const READ_QUEUE: usize = 64;
/// Encoded messages (a keepalive, a NOTIFICATION, one batch of UPDATEs) queued for a writer.
/// A peer that leaves this many unread is not reading; its connection is closed as failed.
pub const WRITE_QUEUE: usize = 256;
/// How long a closing connection may take to send what is queued (the Cease among it).
pub const CLOSE_FLUSH: Duration = Duration::from_secs(1);
/// How long one queued item (a message, or a batch of UPDATEs of at most about 64 KiB) may take
/// to be written. A peer that takes none of it for this long is not reading, even if it still
/// sends keepalives (which keep the hold timer from noticing).
pub const WRITE_DEADLINE: Duration = Duration::from_secs(30);

/// Everything about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub fsm: FsmConfig,
    pub peer_address: IpAddr,
    /// Default 179.
    pub peer_port: u16,
    pub source_address: Option<IpAddr>,
    /// TCP MD5 password (RFC 2385).
    pub password: Option<String>,
    /// eBGP to a router more than one hop away: TTL 255 instead of 1.
    pub ebgp_multihop: bool,
    /// Both address families over this session, the other family's next hop being this
    /// node's address of that family on the session's interface.
    pub dual_stack: bool,
    /// The VRF device the socket is bound to.
    pub vrf: Option<String>,
    /// Unnumbered: the interface toward the peer, whose link-local address is learned from
    /// its router advertisements (`peer_address` is then unspecified).
    pub interface: Option<String>,
}

impl PeerConfig {
    pub fn new(fsm: FsmConfig, peer_address: IpAddr) -> Self {
        PeerConfig {
            fsm,
            peer_address,
            peer_port: 179,
            source_address: None,
            password: None,
            ebgp_multihop: false,
            dual_stack: false,
            vrf: None,
            interface: None,
        }
    }

    fn tcp(&self) -> TcpOptions {
        TcpOptions {
            peer: SocketAddr::new(self.peer_address, self.peer_port),
            source: self.source_address,
            md5_key: self.password.as_ref().map(|p| p.as_bytes().to_vec()),
            ttl: match (self.fsm.is_ibgp(), self.ebgp_multihop) {
                (true, _) => None,
                (false, true) => Some(255),
                (false, false) => Some(1),
            },
            vrf: self.vrf.clone(),
        }
    }
}

/// What users and metrics see of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    pub state: State,
    /// When the session last became Established (while it is).
    pub established_at: Option<SystemTime>,
    /// Prefixes the peer holds from us.
    pub prefixes_sent: usize,
    pub updates_sent: u64,
    /// Times the session went down from Established.
    pub flaps: u64,
    /// The last failure, in words (kept after recovery, for "why did it flap").
    pub last_error: Option<String>,
    /// Consecutive failed attempts (the retry backoff grows with it).
    pub failures: u32,
    /// UPDATEs received (validated, counted and dropped: we import no routes).
    pub updates_received: u64,
    /// UPDATEs with an attribute error handled as treat-as-withdraw (RFC 7606).
    pub updates_treated_as_withdraw: u64,
    /// The last NOTIFICATION sent or received, in words.
    pub last_notification: Option<String>,
}

impl SessionStatus {
    /// A session that has not started yet: Idle, nothing sent or seen.
    pub fn idle() -> SessionStatus {
        SessionStatus {
            state: State::Idle,
            established_at: None,
            prefixes_sent: 0,
            updates_sent: 0,
            flaps: 0,
            last_error: None,
            failures: 0,
            updates_received: 0,
            updates_treated_as_withdraw: 0,
            last_notification: None,
        }
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Established
    }

    /// Time since Established.
    pub fn uptime(&self) -> Option<Duration> {
        self.established_at
            .and_then(|t| SystemTime::now().duration_since(t).ok())
    }
}

enum Command {
    SetRoutes(Table),
    /// Follow this BFD session (none: stop following).
    FollowBfd(Option<watch::Receiver<crate::bfd::State>>),
    Stop,
    /// The process restarts with Graceful Restart: close without a NOTIFICATION, so the peer
    /// keeps our routes as stale until the new process sends its table and End-of-RIB.
    StopForRestart,
}

/// A running session. Dropping it aborts the task without a Cease; call [`Session::stop`].
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
    status: Arc<Mutex<SessionStatus>>,
    task: Option<JoinHandle<()>>,
}

impl Session {
    /// Starts the session on the current tokio runtime (its sockets are created in the
    /// network namespace of the runtime's threads). It only connects; see
    /// [`Session::spawn_accepting`] for the passive side too.
    pub fn spawn(cfg: PeerConfig, routes: Table) -> Session {
        Session::spawn_accepting(cfg, routes, None)
    }

    /// Like [`Session::spawn`], and also takes the peer's connections that the node's listener
    /// accepted (collisions resolved as RFC 4271 6.8 says).
    pub fn spawn_accepting(cfg: PeerConfig, routes: Table, incoming: Option<Incoming>) -> Session {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(SessionStatus::idle()));
        let runner = Runner::new(cfg, routes, status.clone());
        let task = tokio::spawn(runner.run(rx, incoming));
        Session {
            commands: tx,
            status,
            task: Some(task),
        }
    }

    /// Replaces the advertised table; the peer gets only the difference.
    pub fn set_routes(&self, table: Table) {
        let _ = self.commands.send(Command::SetRoutes(table));
    }

    /// Follows a BFD session with the peer: when it goes down after having been up, the BGP
    /// connection is closed at once (RFC 5882), without waiting for the hold timer.
    pub fn follow_bfd(&self, bfd: Option<watch::Receiver<crate::bfd::State>>) {
        let _ = self.commands.send(Command::FollowBfd(bfd));
    }

    pub fn status(&self) -> SessionStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Graceful stop: Cease / Administrative Shutdown to the peer, then the task ends.
    pub async fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    /// The process stops to restart: with Graceful Restart negotiated the connection is only
    /// closed (the peer keeps the routes as stale for the restart time); without, as
    /// [`Session::stop`].
    pub async fn stop_for_restart(mut self) {
        let _ = self.commands.send(Command::StopForRestart);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// What the socket tasks report.
enum IoEvent {
    Connected(u64, std::io::Result<TcpStream>),
    Frame(Conn, u64, Vec<u8>),
    Unframed(Conn, u64, DecodeError),
    ReadClosed(Conn, u64, Option<String>),
    WriteFailed(Conn, u64, String),
}

/// One open connection: its reader and writer tasks and the writer's queue.
struct Link {
    out: mpsc::Sender<Vec<u8>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    generation: u64,
    local: SocketAddr,
}

impl Link {
    /// Closes at once, sending nothing more (a restart that the peer is to ride out).
    fn abort(self) {
        self.reader.abort();
        self.writer.abort();
    }

    /// Stops reading at once and lets the writer send what is queued for at most
    /// [`CLOSE_FLUSH`], then closes. The returned task ends when the connection is gone.
    fn close(self) -> JoinHandle<()> {
        self.reader.abort();
        drop(self.out);
        let mut writer = self.writer;
        tokio::spawn(async move {
            if tokio::time::timeout(CLOSE_FLUSH, &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
        })
    }
}

struct Runner {
    cfg: PeerConfig,
    fsm: Fsm,
    codec: Codec,
    timers: HashMap<Timer, tokio::time::Instant>,
    links: HashMap<Conn, Link>,
    connecting: Option<(u64, JoinHandle<()>)>,
    generation: u64,
    events_tx: mpsc::Sender<IoEvent>,
    events_rx: mpsc::Receiver<IoEvent>,
    desired: Table,
    sent: Table,
    view: Option<(Conn, PeerView)>,
    status: Arc<Mutex<SessionStatus>>,
    pending: std::collections::VecDeque<Event>,
    /// Connections being flushed and closed.
    closing: Vec<JoinHandle<()>>,
    /// Unnumbered: the router at the other end of the interface, once started.
    link_peer: Option<LinkPeer>,
    /// The established session negotiated Graceful Restart.
    negotiated_gr: bool,
}

impl Runner {
    fn new(cfg: PeerConfig, desired: Table, status: Arc<Mutex<SessionStatus>>) -> Self {
        let (events_tx, events_rx) = mpsc::channel(READ_QUEUE);
        Runner {
            fsm: Fsm::new(cfg.fsm.clone()),
            cfg,
            codec: Codec::default(),
            timers: HashMap::new(),
            links: HashMap::new(),
            connecting: None,
            generation: 0,
            events_tx,
            events_rx,
            desired,
            sent: Table::new(),
            view: None,
            status,
            pending: Default::default(),
            closing: Vec::new(),
            link_peer: None,
            negotiated_gr: false,
        }
    }

    fn graceful_restart_negotiated(&self) -> bool {
        self.negotiated_gr && self.fsm.state() == State::Established
    }

    /// Updates the published status (and returns what `f` returns).
    fn status<T>(&self, f: impl FnOnce(&mut SessionStatus) -> T) -> T {
        let mut s = match self.status.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let out = f(&mut s);
        s.state = self.fsm.state();
        s.failures = self.fsm.failures();
        s.prefixes_sent = self.sent.len();
        out
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut incoming: Option<Incoming>,
    ) {
        self.pending.push_back(Event::Start);
        let mut stopping = false;
        // The BFD session followed, and whether it has been up since (a session that never
        // came up says nothing about the path).
        let mut bfd: Option<watch::Receiver<crate::bfd::State>> = None;
        let mut bfd_was_up = false;
        loop {
            while let Some(ev) = self.pending.pop_front() {
                let actions = self.fsm.handle(ev);
                self.execute(actions);
            }
            self.status(|_| {});
            self.closing.retain(|t| !t.is_finished());
            if stopping {
                break;
            }
            let deadline = self.timers.values().min().copied();
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::SetRoutes(t)) => self.set_routes(t),
                    Some(Command::FollowBfd(b)) => {
                        bfd_was_up = b.as_ref().is_some_and(|b| *b.borrow() == crate::bfd::State::Up);
                        bfd = b;
                    }
                    Some(Command::StopForRestart) if self.graceful_restart_negotiated() => {
                        tracing::info!(peer = %self.cfg.peer_address, "closing without NOTIFICATION: graceful restart");
                        for (_, l) in self.links.drain() {
                            l.abort();
                        }
                        break;
                    }
                    Some(Command::Stop | Command::StopForRestart) | None => {
                        self.pending.push_back(Event::Stop);
                        stopping = true;
                    }
                },
                Some(ev) = self.events_rx.recv() => self.io_event(ev),
                _ = sleep_until(deadline) => {
                    let now = tokio::time::Instant::now();
                    let expired: Vec<Timer> = self.timers.iter().filter(|(_, d)| **d <= now).map(|(t, _)| *t).collect();
                    for t in expired {
                        self.timers.remove(&t);
                        if t == Timer::ConnectRetry && self.fsm.state() == State::Connect {
                            let msg = format!(
                                "connecting to {}: no answer (peer down, unreachable, or TCP MD5 password mismatch)",
                                self.target()
                            );
                            self.status(|s| s.last_error = Some(msg));
                        }
                        self.pending.push_back(Event::TimerExpired(t));
                    }
                }
                state = bfd_changed(bfd.as_mut()) => match state {
                    Some(crate::bfd::State::Up) => bfd_was_up = true,
                    Some(crate::bfd::State::Down | crate::bfd::State::Init) if bfd_was_up => {
                        bfd_was_up = false;
                        self.bfd_down();
                    }
                    Some(_) => {}
                    None => bfd = None,
                },
                stream = accepted(incoming.as_mut()) => match stream {
                    Some(stream) => {
                        if self.links.contains_key(&Conn::Incoming) {
                            // One incoming connection at a time (collision handling needs no
                            // more); a second is closed unread.
                            drop(stream);
                        } else {
                            self.install(Conn::Incoming, stream);
                            self.pending.push_back(Event::Accepted);
                        }
                    }
                    None => incoming = None,
                },
            }
        }
        // Let every connection flush its Cease (bounded by CLOSE_FLUSH each, concurrently).
        for (_, l) in self.links.drain() {
            self.closing.push(l.close());
        }
        if let Some((_, t)) = self.connecting.take() {
            t.abort();
        }
        for t in self.closing.drain(..) {
            let _ = t.await;
        }
    }

    fn io_event(&mut self, ev: IoEvent) {
        match ev {
            IoEvent::Connected(g, r) if self.connecting.as_ref().is_some_and(|c| c.0 == g) => {
                self.connecting = None;
                match r {
                    Ok(stream) => {
                        self.install(Conn::Outgoing, stream);
                        self.pending.push_back(Event::Connected);
                    }
                    Err(e) => {
                        let msg = format!("connecting to {}: {e}", self.target());
                        self.status(|s| s.last_error = Some(msg));
                        self.pending.push_back(Event::ConnectFailed);
                    }
                }
            }
            IoEvent::Connected(..) => {}
            IoEvent::Frame(c, g, bytes) if self.is_current(c, g) => {
                let update = bytes.get(18) == Some(&2);
                if update {
                    self.status(|s| s.updates_received += 1);
                }
                self.pending.push_back(match self.codec.decode(&bytes) {
                    Ok(Message::Notification(n)) => {
                        tracing::warn!(peer = %self.cfg.peer_address, "received NOTIFICATION: {n}");
                        self.status(|s| s.last_notification = Some(format!("received: {n}")));
                        Event::Received(c, Message::Notification(n))
                    }
                    Ok(m) => Event::Received(c, m),
                    Err(e) => Event::Malformed(c, e),
                });
            }
            IoEvent::Unframed(c, g, e) if self.is_current(c, g) => {
                self.pending.push_back(Event::Malformed(c, e))
            }
            IoEvent::ReadClosed(c, g, err) if self.is_current(c, g) => {
                self.drop_link(c, err.map(|e| format!("connection: {e}")));
            }
            IoEvent::WriteFailed(c, g, e) if self.is_current(c, g) => {
                self.drop_link(c, Some(format!("writing: {e}")));
            }
            _ => {}
        }
    }

    /// BFD says the path is down: every connection is closed at once, as failed.
    fn bfd_down(&mut self) {
        let conns: Vec<Conn> = self.links.keys().copied().collect();
        if !conns.is_empty() {
            tracing::warn!(peer = %self.cfg.peer_address, "BFD session down: closing the BGP connection");
        }
        for c in conns {
            self.drop_link(c, Some("BFD session down".into()));
        }
    }

    /// A connection failed under us: it is closed and the FSM told.
    fn drop_link(&mut self, c: Conn, error: Option<String>) {
        if let Some(l) = self.links.remove(&c) {
            self.closing.push(l.close());
        }
        if let Some(e) = error {
            self.status(|s| s.last_error = Some(e));
        }
        self.pending.push_back(Event::Closed(c));
    }

    fn is_current(&self, c: Conn, g: u64) -> bool {
        self.links.get(&c).is_some_and(|l| l.generation == g)
    }

    fn install(&mut self, c: Conn, stream: TcpStream) {
        self.generation += 1;
        let g = self.generation;
        if c == Conn::Incoming
            && let Some(ttl) = self.cfg.tcp().ttl
            && let Err(e) = socket::set_ttl(&stream, self.cfg.peer_address.is_ipv6(), ttl)
        {
            tracing::warn!(peer = %self.cfg.peer_address, "setting the TTL on an accepted connection: {e}");
        }
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(self.cfg.peer_address, 0));
        let (rd, wr) = stream.into_split();
        let (out, queue) = mpsc::channel(WRITE_QUEUE);
        let reader = tokio::spawn(read_loop(rd, c, g, self.events_tx.clone()));
        let writer = tokio::spawn(write_loop(wr, queue, c, g, self.events_tx.clone()));
        if let Some(old) = self.links.insert(
            c,
            Link {
                out,
                reader,
                writer,
                generation: g,
                local,
            },
        ) {
            self.closing.push(old.close());
        }
    }

    /// The peer, in words: its address and port, or for an unnumbered peer its interface and
    /// the link-local address learned there, if any.
    fn target(&self) -> String {
        match &self.cfg.interface {
            None => SocketAddr::new(self.cfg.peer_address, self.cfg.peer_port).to_string(),
            Some(interface) => {
                match (self.link_peer.as_ref()).and_then(|l| l.address(self.cfg.peer_port)) {
                    Some(a) => format!("[{}%{interface}]:{}", a.ip(), a.port()),
                    None => format!("the peer on {interface}"),
                }
            }
        }
    }

    /// Where to connect: the configured address, or for an unnumbered peer the link-local
    /// address its router advertisements gave (an error until one came).
    fn connect_options(&mut self) -> std::io::Result<TcpOptions> {
        let mut opts = self.cfg.tcp();
        let Some(interface) = self.cfg.interface.clone() else {
            return Ok(opts);
        };
        if !self.link_peer.as_ref().is_some_and(LinkPeer::is_running) {
            self.link_peer = Some(LinkPeer::start(&interface)?);
        }
        let peer = (self.link_peer.as_ref()).and_then(|l| l.address(self.cfg.peer_port));
        match peer {
            Some(peer) => {
                opts.peer = SocketAddr::V6(peer);
                Ok(opts)
            }
            None => Err(std::io::Error::other(format!(
                "no router advertisement from the peer on {interface} yet (its link-local address is learned from them)"
            ))),
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Connect => {
                    self.generation += 1;
                    let g = self.generation;
                    let opts = self.connect_options();
                    let tx = self.events_tx.clone();
                    let t = tokio::spawn(async move {
                        let r = match opts {
                            Ok(opts) => socket::connect(&opts).await,
                            Err(e) => Err(e),
                        };
                        let _ = tx.send(IoEvent::Connected(g, r)).await;
                    });
                    self.connecting = Some((g, t));
                }
                Action::AbortConnect => {
                    if let Some((_, t)) = self.connecting.take() {
                        t.abort();
                    }
                }
                Action::Send(c, m) => {
                    if let Message::Notification(n) = &m {
                        tracing::warn!(peer = %self.cfg.peer_address, "sending NOTIFICATION: {n}");
                        self.status(|s| s.last_notification = Some(format!("sent: {n}")));
                    }
                    match self.codec.encode(&m) {
                        Ok(bytes) => self.write(c, bytes),
                        Err(e) => tracing::error!("encoding {}: {e}", m.kind()),
                    }
                }
                Action::Close(c) => {
                    if let Some(l) = self.links.remove(&c) {
                        self.closing.push(l.close());
                    }
                }
                Action::StartTimer(t, d) => {
                    self.timers.insert(t, tokio::time::Instant::now() + d);
                }
                Action::StopTimer(t) => {
                    self.timers.remove(&t);
                }
                Action::Established(c, n) => {
                    self.codec = Codec {
                        four_octet_as: n.four_octet_as,
                    };
                    let local = self.links.get(&c).map(|l| l.local.ip());
                    // The session's own family goes with its local address; with
                    // dualStackAddressFamily the other one with this node's address of that
                    // family on the same interface.
                    let other = local
                        .filter(|_| self.cfg.dual_stack)
                        .and_then(socket::other_family_address);
                    let (v4, v6): (Option<IpAddr>, Option<std::net::Ipv6Addr>) =
                        match (local, other) {
                            // Unnumbered: the link-local address for both families (RFC 8950 for
                            // IPv4, when the peer takes it).
                            (Some(IpAddr::V6(ll)), _) if self.cfg.interface.is_some() => {
                                (n.ipv4_over_ipv6.then_some(IpAddr::V6(ll)), Some(ll))
                            }
                            (Some(IpAddr::V4(a)), Some(IpAddr::V6(b)))
                            | (Some(IpAddr::V6(b)), Some(IpAddr::V4(a))) => {
                                (Some(a.into()), Some(b))
                            }
                            (Some(IpAddr::V4(a)), _) => (Some(a.into()), None),
                            (Some(IpAddr::V6(b)), _) => (None, Some(b)),
                            (None, _) => (None, None),
                        };
                    if self.cfg.interface.is_some() && !n.ipv4_over_ipv6 {
                        tracing::warn!(
                            peer = %self.target(),
                            "the peer does not take IPv4 routes with IPv6 next hops (RFC 8950): only IPv6 routes are sent over this unnumbered session"
                        );
                        self.status(|s| {
                            s.last_error = Some(
                                "IPv4 routes not sent: the peer did not offer Extended Next Hop (RFC 8950)".into(),
                            )
                        });
                    }
                    if self.cfg.dual_stack && other.is_none() {
                        tracing::warn!(
                            peer = %self.cfg.peer_address,
                            "dualStackAddressFamily: this node has no address of the other family on the session's interface; only the session's family is sent"
                        );
                    }
                    let view = PeerView {
                        local_asn: self.cfg.fsm.local_asn,
                        ibgp: self.cfg.fsm.is_ibgp(),
                        next_hop_v4: v4.filter(|_| n.ipv4_unicast),
                        next_hop_v6: v6.filter(|_| n.ipv6_unicast),
                        codec: self.codec,
                    };
                    tracing::info!(peer = %self.cfg.peer_address, hold = n.hold_time, "session established");
                    self.status(|s| s.established_at = Some(SystemTime::now()));
                    self.view = Some((c, view.clone()));
                    self.sent.clear();
                    let desired = self.desired.clone();
                    self.send_diff(&desired);
                    if n.graceful_restart {
                        // End-of-RIB (RFC 4724 2): the initial table is complete; a helper
                        // drops whatever stale route of ours it did not get again.
                        let mut eor = Vec::new();
                        if n.ipv4_unicast {
                            eor.push(super::message::Update::default());
                        }
                        if n.ipv6_unicast {
                            eor.push(super::message::Update {
                                attrs: super::message::PathAttrs {
                                    mp_unreach: Some(Vec::new()),
                                    ..Default::default()
                                },
                                ..Default::default()
                            });
                        }
                        self.send_updates(c, eor);
                    }
                    self.negotiated_gr = n.graceful_restart;
                }
                Action::TreatedAsWithdraw(e) => {
                    let n = self.status(|s| {
                        s.updates_treated_as_withdraw += 1;
                        s.updates_treated_as_withdraw
                    });
                    // The first, then every 1000th: a peer repeating one error is one line.
                    if n == 1 || n.is_multiple_of(1000) {
                        tracing::warn!(
                            peer = %self.cfg.peer_address,
                            count = n,
                            "UPDATE treated as withdraw (RFC 7606; the session stays up): {e}"
                        );
                    }
                }
                Action::RouteRefresh { afi, safi: _ } => {
                    if let Some((c, view)) = self.view.clone() {
                        let family: Table = self
                            .sent
                            .iter()
                            .filter(|(p, _)| match afi {
                                AFI_IPV4 => p.addr().is_ipv4(),
                                AFI_IPV6 => p.addr().is_ipv6(),
                                _ => false,
                            })
                            .map(|(p, a)| (*p, a.clone()))
                            .collect();
                        if let Ok(ups) = update::full(&view, &family) {
                            self.send_updates(c, ups);
                        }
                    }
                }
                Action::Down {
                    was_established,
                    error,
                } => {
                    tracing::warn!(peer = %self.cfg.peer_address, was_established, "session down: {error}");
                    self.view = None;
                    self.negotiated_gr = false;
                    self.sent.clear();
                    self.codec = Codec::default();
                    let stopped = matches!(error, super::fsm::SessionError::Stopped);
                    self.status(|s| {
                        s.established_at = None;
                        if was_established {
                            s.flaps += 1;
                        }
                        if !stopped {
                            s.last_error = Some(error.to_string());
                        }
                    });
                }
            }
        }
    }

    fn set_routes(&mut self, table: Table) {
        self.desired = table;
        if self.view.is_some() {
            let desired = self.desired.clone();
            self.send_diff(&desired);
        }
    }

    fn send_diff(&mut self, desired: &Table) {
        let Some((c, view)) = self.view.clone() else {
            return;
        };
        match update::diff(&view, &self.sent, desired) {
            Ok(ups) => {
                self.sent = desired
                    .iter()
                    .filter(|(p, _)| view.carries(p))
                    .map(|(p, a)| (*p, a.clone()))
                    .collect();
                self.send_updates(c, ups);
            }
            Err(e) => tracing::error!("building UPDATEs: {e}"),
        }
    }

    /// Queues UPDATEs in batches of about 64 KiB (one queue slot each).
    fn send_updates(&mut self, c: Conn, ups: Vec<super::message::Update>) {
        let mut batch = Vec::new();
        let n = ups.len() as u64;
        for u in ups {
            match self.codec.encode(&Message::Update(u)) {
                Ok(b) => batch.extend_from_slice(&b),
                Err(e) => tracing::error!("encoding UPDATE: {e}"),
            }
            if batch.len() > 16 * MAX_MESSAGE_LEN {
                self.write(c, std::mem::take(&mut batch));
            }
        }
        if !batch.is_empty() {
            self.write(c, batch);
        }
        self.status(|s| s.updates_sent += n);
    }

    /// Queues bytes for `c`'s writer, never waiting. A full queue means the peer has not read
    /// for a long time: the connection fails.
    fn write(&mut self, c: Conn, bytes: Vec<u8>) {
        let Some(l) = self.links.get(&c) else {
            return;
        };
        match l.out.try_send(bytes) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.drop_link(
                c,
                Some(format!(
                    "the peer is not reading: {WRITE_QUEUE} messages wait to be sent"
                )),
            ),
            // The writer has ended; its WriteFailed event says why.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The next connection the listener accepted for this peer; `None` when it is gone.
/// The followed BFD session's next state (`None` when its sender is gone).
async fn bfd_changed(
    bfd: Option<&mut watch::Receiver<crate::bfd::State>>,
) -> Option<crate::bfd::State> {
    match bfd {
        Some(b) => match b.changed().await {
            Ok(()) => Some(*b.borrow_and_update()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

async fn accepted(incoming: Option<&mut Incoming>) -> Option<TcpStream> {
    match incoming {
        Some(i) => i.next().await,
        None => std::future::pending().await,
    }
}

/// Reads bytes, cuts them into whole messages, hands them to the session one by one (waiting
/// when it is behind: the bound on what a peer can make us hold).
async fn read_loop(mut rd: OwnedReadHalf, c: Conn, g: u64, tx: mpsc::Sender<IoEvent>) {
    let mut framer = Framer::default();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        match framer.next_frame() {
            Ok(Some(frame)) => {
                if tx.send(IoEvent::Frame(c, g, frame)).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = tx.send(IoEvent::Unframed(c, g, e)).await;
                return;
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) => {
                let _ = tx.send(IoEvent::ReadClosed(c, g, None)).await;
                return;
            }
            Ok(n) => framer.push(&chunk[..n]),
            Err(e) => {
                let _ = tx
                    .send(IoEvent::ReadClosed(c, g, Some(e.to_string())))
                    .await;
                return;
            }
        }
    }
}

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 1 << 16;

/// Writes what the session queues, in order. When the queue's sender is dropped (the
/// connection is closing) it sends what is left, then shuts the connection down.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    c: Conn,
    g: u64,
    tx: mpsc::Sender<IoEvent>,
) {
    while let Some(bytes) = queue.recv().await {
        let failed = match tokio::time::timeout(WRITE_DEADLINE, wr.write_all(&bytes)).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "the peer took none of {} bytes in {WRITE_DEADLINE:?}: it is not reading",
                bytes.len()
            ),
        };
        let _ = tx.send(IoEvent::WriteFailed(c, g, failed)).await;
        return;
    }
    let _ = wr.shutdown().await;
}
