//! One BGP session on tokio: the thin edge around the pure [`Fsm`] and UPDATE builder.
//!
//! It runs the timers the FSM asks for, opens (and optionally accepts) TCP connections with
//! MD5 and TTL set, frames bytes into messages, sends the table when the session comes up and
//! only the differences afterwards, and publishes a [`SessionStatus`] for status and metrics.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::fsm::{Action, Conn, Event, Fsm, FsmConfig, State, Timer};
use super::message::{AFI_IPV4, AFI_IPV6, Codec, DecodeError, Message, frame_len};
use super::socket::{self, TcpOptions};
use super::update::{self, PeerView, Table};

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
    /// Also accept the peer's connections on this local address and port.
    pub listen: Option<SocketAddr>,
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
            listen: None,
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
}

impl SessionStatus {
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
    Stop,
}

/// A running session. Dropping it aborts the task without a Cease; call [`Session::stop`].
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
    status: Arc<Mutex<SessionStatus>>,
    task: Option<JoinHandle<()>>,
}

impl Session {
    /// Starts the session on the current tokio runtime (its sockets are created in the
    /// network namespace of the runtime's threads).
    pub fn spawn(cfg: PeerConfig, routes: Table) -> Session {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(SessionStatus {
            state: State::Idle,
            established_at: None,
            prefixes_sent: 0,
            updates_sent: 0,
            flaps: 0,
            last_error: None,
            failures: 0,
        }));
        let runner = Runner::new(cfg, routes, status.clone());
        let task = tokio::spawn(runner.run(rx));
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
    Connected(u64, std::io::Result<tokio::net::TcpStream>),
    Frame(Conn, u64, Vec<u8>),
    Unframed(Conn, u64, DecodeError),
    ReadClosed(Conn, u64, Option<String>),
}

struct Link {
    writer: OwnedWriteHalf,
    reader: JoinHandle<()>,
    generation: u64,
    local: SocketAddr,
}

struct Runner {
    cfg: PeerConfig,
    fsm: Fsm,
    codec: Codec,
    timers: HashMap<Timer, tokio::time::Instant>,
    links: HashMap<Conn, Link>,
    connecting: Option<(u64, JoinHandle<()>)>,
    generation: u64,
    events_tx: mpsc::UnboundedSender<IoEvent>,
    events_rx: mpsc::UnboundedReceiver<IoEvent>,
    desired: Table,
    sent: Table,
    view: Option<(Conn, PeerView)>,
    status: Arc<Mutex<SessionStatus>>,
    pending: std::collections::VecDeque<Event>,
}

impl Runner {
    fn new(cfg: PeerConfig, desired: Table, status: Arc<Mutex<SessionStatus>>) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
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
        }
    }

    fn status(&self, f: impl FnOnce(&mut SessionStatus)) {
        let mut s = match self.status.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        f(&mut s);
        s.state = self.fsm.state();
        s.failures = self.fsm.failures();
        s.prefixes_sent = self.sent.len();
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let listener = match self.cfg.listen {
            Some(local) => match socket::listen(&self.cfg.tcp(), local) {
                Ok(l) => Some(l),
                Err(e) => {
                    let msg = format!("listening on {local}: {e}");
                    tracing::warn!(peer = %self.cfg.peer_address, "{msg}");
                    self.status(|s| s.last_error = Some(msg));
                    None
                }
            },
            None => None,
        };
        self.pending.push_back(Event::Start);
        let mut stopping = false;
        loop {
            while let Some(ev) = self.pending.pop_front() {
                let actions = self.fsm.handle(ev);
                self.execute(actions).await;
            }
            self.status(|_| {});
            if stopping {
                break;
            }
            let deadline = self.timers.values().min().copied();
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::SetRoutes(t)) => self.set_routes(t).await,
                    Some(Command::Stop) | None => {
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
                                SocketAddr::new(self.cfg.peer_address, self.cfg.peer_port)
                            );
                            self.status(|s| s.last_error = Some(msg));
                        }
                        self.pending.push_back(Event::TimerExpired(t));
                    }
                }
                acc = accept(listener.as_ref()) => {
                    if let Ok((stream, from)) = acc
                        && from.ip() == self.cfg.peer_address && !self.links.contains_key(&Conn::Incoming) {
                            self.install(Conn::Incoming, stream);
                            self.pending.push_back(Event::Accepted);
                        }
                }
            }
        }
        for (_, l) in self.links.drain() {
            close(l).await;
        }
        if let Some((_, t)) = self.connecting.take() {
            t.abort();
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
                        let msg = format!(
                            "connecting to {}: {e}",
                            SocketAddr::new(self.cfg.peer_address, self.cfg.peer_port)
                        );
                        self.status(|s| s.last_error = Some(msg));
                        self.pending.push_back(Event::ConnectFailed);
                    }
                }
            }
            IoEvent::Connected(..) => {}
            IoEvent::Frame(c, g, bytes) if self.is_current(c, g) => {
                self.pending.push_back(match self.codec.decode(&bytes) {
                    Ok(m) => Event::Received(c, m),
                    Err(e) => Event::Malformed(c, e),
                });
            }
            IoEvent::Unframed(c, g, e) if self.is_current(c, g) => {
                self.pending.push_back(Event::Malformed(c, e))
            }
            IoEvent::ReadClosed(c, g, err) if self.is_current(c, g) => {
                if let Some(l) = self.links.remove(&c) {
                    l.reader.abort();
                }
                if let Some(e) = err {
                    self.status(|s| s.last_error = Some(format!("connection: {e}")));
                }
                self.pending.push_back(Event::Closed(c));
            }
            _ => {}
        }
    }

    fn is_current(&self, c: Conn, g: u64) -> bool {
        self.links.get(&c).is_some_and(|l| l.generation == g)
    }

    fn install(&mut self, c: Conn, stream: tokio::net::TcpStream) {
        self.generation += 1;
        let g = self.generation;
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(self.cfg.peer_address, 0));
        let (rd, wr) = stream.into_split();
        let reader = tokio::spawn(read_loop(rd, c, g, self.events_tx.clone()));
        if let Some(old) = self.links.insert(
            c,
            Link {
                writer: wr,
                reader,
                generation: g,
                local,
            },
        ) {
            old.reader.abort();
        }
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Connect => {
                    self.generation += 1;
                    let g = self.generation;
                    let opts = self.cfg.tcp();
                    let tx = self.events_tx.clone();
                    let t = tokio::spawn(async move {
                        let r = socket::connect(&opts).await;
                        let _ = tx.send(IoEvent::Connected(g, r));
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
                        tracing::info!(peer = %self.cfg.peer_address, "sending NOTIFICATION {n}");
                    }
                    match self.codec.encode(&m) {
                        Ok(bytes) => self.write(c, &bytes).await,
                        Err(e) => tracing::error!("encoding {}: {e}", m.kind()),
                    }
                }
                Action::Close(c) => {
                    if let Some(l) = self.links.remove(&c) {
                        close(l).await;
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
                    let view = PeerView {
                        local_asn: self.cfg.fsm.local_asn,
                        ibgp: self.cfg.fsm.is_ibgp(),
                        next_hop_v4: match local {
                            Some(IpAddr::V4(a)) if n.ipv4_unicast => Some(a),
                            _ => None,
                        },
                        next_hop_v6: match local {
                            Some(IpAddr::V6(a)) if n.ipv6_unicast => Some(a),
                            _ => None,
                        },
                        codec: self.codec,
                    };
                    tracing::info!(peer = %self.cfg.peer_address, hold = n.hold_time, "session established");
                    self.status(|s| s.established_at = Some(SystemTime::now()));
                    self.view = Some((c, view));
                    self.sent.clear();
                    let desired = self.desired.clone();
                    self.send_diff(&desired).await;
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
                            self.send_updates(c, ups).await;
                        }
                    }
                }
                Action::Down {
                    was_established,
                    error,
                } => {
                    tracing::warn!(peer = %self.cfg.peer_address, was_established, "session down: {error}");
                    self.view = None;
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

    async fn set_routes(&mut self, table: Table) {
        self.desired = table;
        if self.view.is_some() {
            let desired = self.desired.clone();
            self.send_diff(&desired).await;
        }
    }

    async fn send_diff(&mut self, desired: &Table) {
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
                self.send_updates(c, ups).await;
            }
            Err(e) => tracing::error!("building UPDATEs: {e}"),
        }
    }

    async fn send_updates(&mut self, c: Conn, ups: Vec<super::message::Update>) {
        let mut bytes = Vec::new();
        let n = ups.len() as u64;
        for u in ups {
            match self.codec.encode(&Message::Update(u)) {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(e) => tracing::error!("encoding UPDATE: {e}"),
            }
        }
        if !bytes.is_empty() {
            self.write(c, &bytes).await;
            self.status(|s| s.updates_sent += n);
        }
    }

    async fn write(&mut self, c: Conn, bytes: &[u8]) {
        let failed = match self.links.get_mut(&c) {
            Some(l) => l.writer.write_all(bytes).await.err(),
            None => return,
        };
        if let Some(e) = failed {
            if let Some(l) = self.links.remove(&c) {
                l.reader.abort();
            }
            self.status(|s| s.last_error = Some(format!("writing: {e}")));
            self.pending.push_back(Event::Closed(c));
        }
    }
}

async fn close(mut l: Link) {
    let _ = tokio::time::timeout(Duration::from_secs(1), l.writer.shutdown()).await;
    l.reader.abort();
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn accept(l: Option<&TcpListener>) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Reads bytes, cuts them into whole messages, hands them to the session.
async fn read_loop(mut rd: OwnedReadHalf, c: Conn, g: u64, tx: mpsc::UnboundedSender<IoEvent>) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match frame_len(&buf) {
            Ok(Some(n)) => {
                let rest = buf.split_off(n);
                let frame = std::mem::replace(&mut buf, rest);
                if tx.send(IoEvent::Frame(c, g, frame)).is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = tx.send(IoEvent::Unframed(c, g, e));
                return;
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) => {
                let _ = tx.send(IoEvent::ReadClosed(c, g, None));
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                let _ = tx.send(IoEvent::ReadClosed(c, g, Some(e.to_string())));
                return;
            }
        }
    }
}
