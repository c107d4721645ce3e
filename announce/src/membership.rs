//! Which speakers are alive: SWIM (the `foca` crate) over UDP, every datagram authenticated
//! with HMAC-SHA256 under a shared secret, tuned for sub-second failure detection.
//!
//! Why not Kubernetes Leases: a lease per IP costs API writes proportional to services and
//! fails over in seconds (see Cilium's numbers); SWIM costs one small datagram per node per
//! probe period and detects a dead peer in about `probe_period + suspect_to_down_after`.
//!
//! Identity: a node name, its UDP address, and an incarnation (start time in ms). A restarted
//! speaker has a higher incarnation, so it wins over its old, possibly "down", self at once; a
//! speaker wrongly declared down renews its incarnation and rejoins by itself, which is also how
//! the two sides of a healed partition merge again.
//!
//! Split brain: during a partition each side sees only its own members and elects an owner
//! among them, so an IP may be answered on both sides. That is the safe failure for layer 2
//! (an unanswered VIP is an outage; two answers on a partitioned segment are not seen by the
//! same client) and it ends when the partition heals. The opt-in guard is `Inputs::quorum` of
//! the L2 agent (`--l2-quorum`): a speaker seeing fewer live members announces nothing, so only
//! a majority side answers.
//!
//! Graceful hand-over: a leaving speaker names its successors (the election without it) and
//! tells them directly ([`Membership::hand_over`]); each applies the departure at once and, once
//! it announces what it took over, confirms ([`Membership::confirm_takeovers`]). The leaver keeps
//! answering until then, so a client never finds nobody answering (one round trip).
//!
//! Watching the owners this speaker would succeed: SWIM probes one random member per period,
//! so with many members a given one may go unprobed for several periods. The agent names the
//! members it would take addresses over from ([`Membership::watch`]); they are pinged directly
//! every half probe period. No answer for two of those starts the same check as below, and a
//! check that stays unanswered makes the member a suspect for `suspect_to_down_after` (SWIM's own
//! rule, with a faster probe), after which it is declared down unless it has answered.
//!
//! Process crash: a host whose speaker process died answers our probes with ICMP port
//! unreachable (read from the socket's error queue, `IP_RECVERR`). That is grounds for an
//! immediate check, not a verdict (ICMP is not authenticated): we ping the member directly and
//! through up to two others; without an authenticated answer within two probe round trips it is
//! declared down. A link or node loss sends no ICMP and still rests on SWIM's timeouts.
//!
//! Authentication: a foreign host without the secret can neither join nor declare a member down
//! (its datagrams fail the MAC and are dropped before foca sees them). Replays of captured
//! datagrams are not detected; foca's incarnation numbers make a replayed old state lose against
//! newer ones.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::num::{NonZeroU8, NonZeroUsize};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, State, Timer};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use sha2::{Digest, Sha256};

/// A speaker as the membership protocol knows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// The node name (the election's node identity).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Start time in ms since the epoch, bumped on renewal: newer wins.
    pub incarnation: u64,
}

impl foca::Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Member {
            incarnation: self.incarnation.saturating_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.incarnation, &self.name) > (adversary.incarnation, &adversary.name)
    }
}

/// Protocol timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often one random member is probed.
    pub probe_period: Duration,
    /// How long to wait for a direct ack before asking others to probe.
    pub probe_rtt: Duration,
    /// How long a suspect stays alive before being declared down.
    pub suspect_to_down_after: Duration,
    /// How often updates are gossiped to a few members.
    pub gossip_period: Duration,
}

impl Default for Timing {
    /// Tuned for a LAN: a dead peer is declared down 0.15 to 0.2 s after it dies (the probe
    /// cycle that misses it ends one to two periods later, then the suspicion runs out), so
    /// that a crash fails over in under 300 ms (issue 6; BENCHMARKS.md has the measurement
    /// before and after). Cost: one probe datagram per node every 50 ms.
    fn default() -> Self {
        Timing {
            probe_period: Duration::from_millis(50),
            probe_rtt: Duration::from_millis(20),
            suspect_to_down_after: Duration::from_millis(100),
            gossip_period: Duration::from_millis(100),
        }
    }
}

/// Membership settings.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// This node's name.
    pub name: String,
    /// UDP address to bind and to be reached at.
    pub bind: SocketAddr,
    /// Addresses of other speakers to join through (any subset will do).
    pub seeds: Vec<SocketAddr>,
    /// The shared secret every speaker holds.
    pub secret: Vec<u8>,
    /// Protocol timers.
    pub timing: Timing,
    /// Expected cluster size (sizes foca's dissemination count).
    pub cluster_size: u8,
}

/// Why membership could not start.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The UDP socket.
    #[error("membership socket on {addr}: {source}")]
    Socket {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// Timers foca refuses (e.g. rtt not below the period).
    #[error("membership timers rejected: {0}")]
    Config(String),
    /// The secret is empty.
    #[error("membership secret is empty")]
    NoSecret,
    /// The protocol thread could not start.
    #[error("starting the membership thread: {0}")]
    Thread(io::Error),
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// Datagrams dropped for a bad or missing MAC.
    pub rejected: u64,
    /// Datagrams foca refused.
    pub invalid: u64,
    /// Liveness checks started because a member's host answered with ICMP port unreachable.
    pub unreachable_checks: u64,
    /// Members declared down by such a check (no authenticated answer in time).
    pub unreachable_downs: u64,
    /// Checks the member answered (it was alive after all).
    pub unreachable_refuted: u64,
    /// Watched members that stopped answering and were checked.
    pub watch_checks: u64,
    /// Watched members declared down (unanswered check, then suspicion).
    pub watch_downs: u64,
}

#[derive(Debug, Default)]
struct Shared {
    live: Mutex<BTreeSet<String>>,
    stop: AtomicBool,
    /// A graceful leave asked for: the successors to tell directly (none for a plain leave).
    hand_over: Mutex<Option<BTreeSet<String>>>,
    /// Speakers that confirmed taking over from this one.
    took_over: Mutex<BTreeSet<String>>,
    /// Speakers that handed over to this one and wait for its confirmation: name → address.
    to_confirm: Mutex<BTreeMap<String, SocketAddr>>,
    rejected: AtomicU64,
    invalid: AtomicU64,
    unreachable_checks: AtomicU64,
    unreachable_downs: AtomicU64,
    unreachable_refuted: AtomicU64,
    /// Members to ping directly every half probe period (see [`Membership::watch`]).
    watch: Mutex<BTreeSet<String>>,
    watch_checks: AtomicU64,
    watch_downs: AtomicU64,
    /// Times this speaker came back to the group after being apart from it (see
    /// [`Membership::rejoins`]).
    rejoins: AtomicU64,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The membership's own datagrams beside foca's, sent to one speaker, sealed like foca's and
/// told apart by [`DIRECT_MAGIC`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Direct {
    /// "I am leaving and you take over from me: apply my departure now, tell me when done."
    HandOver { name: String },
    /// "I applied your departure and announce what I took over."
    TookOver { name: String },
    /// "Are you alive?": answered with `Pong` to `reply_to`, or to the sender.
    Ping {
        nonce: u64,
        reply_to: Option<SocketAddr>,
    },
    /// The answer to `Ping`.
    Pong { nonce: u64 },
    /// "Ping `target` for me" (the indirect half of a liveness check).
    PingFor { target: SocketAddr, nonce: u64 },
}

/// Starts every [`Direct`] payload. No foca datagram can begin with it: foca's first field is
/// a name whose length is a varint, and four continuation bytes followed by 0x66 encode a
/// length of hundreds of megabytes, far beyond any datagram.
const DIRECT_MAGIC: [u8; 8] = [0xff, 0xff, 0xff, 0xff, b'f', b'l', b'b', 1];

fn encode_direct(m: &Direct) -> Option<Vec<u8>> {
    let mut out = DIRECT_MAGIC.to_vec();
    out.extend(postcard::to_stdvec(m).ok()?);
    Some(out)
}

/// `Some(Ok)` for one of ours, `Some(Err)` for ours but undecodable, `None` for foca's.
fn decode_direct(payload: &[u8]) -> Option<Result<Direct, postcard::Error>> {
    payload
        .strip_prefix(&DIRECT_MAGIC[..])
        .map(postcard::from_bytes)
}

/// What an authenticated datagram turned out to be, before any state is touched.
#[derive(Debug)]
pub enum Untrusted {
    /// The MAC did not verify: dropped.
    Forged,
    /// One of our direct messages.
    Direct,
    /// Ours by its prefix, but not decodable.
    UndecodableDirect,
    /// foca's: it accepted the datagram (or refused it with an error, `false`).
    Foca(bool),
}

/// Everything that reads a received datagram before the protocol state does: the MAC check,
/// our direct messages' decoding, and foca's own decoding (into a throwaway instance named
/// `probe`). The receive path runs the same steps; this is their entry point for fuzzing.
pub fn read_untrusted(key: &[u8], datagram: &[u8]) -> Untrusted {
    let Some(payload) = open(key, datagram) else {
        return Untrusted::Forged;
    };
    match decode_direct(payload) {
        Some(Ok(_)) => Untrusted::Direct,
        Some(Err(_)) => Untrusted::UndecodableDirect,
        None => {
            let me = Member {
                name: "probe".into(),
                addr: SocketAddr::from(([127, 0, 0, 1], 7946)),
                incarnation: 1,
            };
            let config = MembershipConfig {
                name: me.name.clone(),
                bind: me.addr,
                seeds: Vec::new(),
                secret: key.to_vec(),
                timing: Timing::default(),
                cluster_size: 3,
            };
            let Ok(c) = foca_config(&config) else {
                return Untrusted::Foca(false);
            };
            let mut foca = Foca::new(me, c, SmallRng::seed_from_u64(1), PostcardCodec);
            let mut rt = AccumulatingRuntime::new();
            Untrusted::Foca(foca.handle_data(payload, &mut rt).is_ok())
        }
    }
}

/// Seals and sends one of our own messages (best effort, like every membership datagram).
fn send_direct(socket: &UdpSocket, key: &[u8], to: SocketAddr, m: &Direct) {
    if let Some(p) = encode_direct(m) {
        let _ = socket.send_to(&seal(key, &p), to);
    }
}

/// Sends datagrams from outside the protocol thread (the same socket, cloned) and wakes it.
#[derive(Debug)]
struct Outbox {
    socket: UdpSocket,
    key: Vec<u8>,
    /// Where an empty datagram reaches the protocol thread (its own bound address).
    wake_addr: SocketAddr,
}

impl Outbox {
    fn send(&self, to: SocketAddr, m: &Direct) {
        send_direct(&self.socket, &self.key, to, m);
    }

    /// An empty datagram: never valid (no MAC), so the protocol thread takes it as a wake-up.
    fn wake(&self) {
        let _ = self.socket.send_to(&[], self.wake_addr);
    }
}

/// Wakes whoever waits in [`Membership::next_change`] (with the current live set), from any
/// thread: used to make a waiting agent look at its stop flag or new inputs at once.
#[derive(Clone, Debug)]
pub struct Waker {
    shared: Arc<Shared>,
    tx: SyncSender<BTreeSet<String>>,
}

impl Waker {
    /// Wakes the waiter.
    pub fn wake(&self) {
        let _ = self.tx.try_send(locked(&self.shared.live).clone());
    }
}

/// A running membership agent. Dropping it stops it abruptly (like a crash); use
/// [`Membership::leave`] for a graceful shutdown that hands over at once.
#[derive(Debug)]
pub struct Membership {
    shared: Arc<Shared>,
    changes: Receiver<BTreeSet<String>>,
    tx: SyncSender<BTreeSet<String>>,
    outbox: Outbox,
    thread: Option<JoinHandle<()>>,
    me: Member,
}

impl Membership {
    /// Binds the socket and starts the protocol thread.
    pub fn start(config: MembershipConfig) -> Result<Membership, MembershipError> {
        if config.secret.is_empty() {
            return Err(MembershipError::NoSecret);
        }
        let socket = UdpSocket::bind(config.bind).map_err(|source| MembershipError::Socket {
            addr: config.bind,
            source,
        })?;
        // ICMP errors (port unreachable from a crashed speaker's host) to the error queue.
        let recv_err = match config.bind {
            SocketAddr::V4(_) => {
                nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv4RecvErr, &true)
            }
            SocketAddr::V6(_) => {
                nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv6RecvErr, &true)
            }
        };
        if let Err(e) = socket.set_nonblocking(true) {
            return Err(MembershipError::Socket {
                addr: config.bind,
                source: e,
            });
        }
        if let Err(e) = recv_err {
            tracing::warn!("membership: no ICMP error reports ({e}); crashes wait for timeouts");
        }
        let bound = socket.local_addr().unwrap_or(config.bind);
        let wake_addr = match bound.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bound.port())
            }
            _ => bound,
        };
        let outbox = Outbox {
            socket: socket
                .try_clone()
                .map_err(|source| MembershipError::Socket {
                    addr: config.bind,
                    source,
                })?,
            key: config.secret.clone(),
            wake_addr,
        };
        let me = Member {
            name: config.name.clone(),
            addr: bound,
            incarnation: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(1),
        };
        let foca_config = foca_config(&config)?;
        let seed = me.incarnation ^ u64::from(std::process::id()) ^ hash_u64(me.name.as_bytes());
        let foca = Foca::new(
            me.clone(),
            foca_config,
            SmallRng::seed_from_u64(seed),
            PostcardCodec,
        );
        let shared = Arc::new(Shared::default());
        if let Ok(mut live) = shared.live.lock() {
            live.insert(me.name.clone());
        }
        // Bounded: a consumer that lags loses intermediate sets, never the latest (`live`).
        let (tx, changes) = mpsc::sync_channel(64);
        let agent = Agent {
            foca,
            socket,
            key: config.secret.clone(),
            seeds: config.seeds.clone(),
            me: me.clone(),
            shared: Arc::clone(&shared),
            changes: tx.clone(),
            timers: BTreeMap::new(),
            seq: 0,
            members: BTreeMap::new(),
            check_after: config.timing.probe_rtt * 2,
            checks: BTreeMap::new(),
            suspect_after: config.timing.suspect_to_down_after,
            watch_every: config.timing.probe_period / 2,
            next_watch: Instant::now(),
            heard: BTreeMap::new(),
            left: false,
        };
        let thread = thread::Builder::new()
            .name(format!("swim-{}", config.name))
            .spawn(move || agent.run())
            .map_err(MembershipError::Thread)?;
        Ok(Membership {
            shared,
            changes,
            tx,
            outbox,
            thread: Some(thread),
            me,
        })
    }

    /// A handle that wakes [`Membership::next_change`] from another thread.
    pub fn waker(&self) -> Waker {
        Waker {
            shared: Arc::clone(&self.shared),
            tx: self.tx.clone(),
        }
    }

    /// Starts a graceful leave: tells the cluster this speaker is leaving and `successors`
    /// directly, so that they take over at once. The protocol keeps running (to receive their
    /// confirmations, [`Membership::took_over`]) until [`Membership::stop`].
    pub fn hand_over(&self, successors: BTreeSet<String>) {
        *locked(&self.shared.hand_over) = Some(successors);
        self.outbox.wake();
    }

    /// The speakers that confirmed taking over from this one since [`Membership::hand_over`].
    pub fn took_over(&self) -> BTreeSet<String> {
        locked(&self.shared.took_over).clone()
    }

    /// Confirms to every speaker that handed over to this one and is no longer in `applied`
    /// (the live set whose announcements are now in force) that its addresses are taken over.
    pub fn confirm_takeovers(&self, applied: &BTreeSet<String>) {
        let done: Vec<(String, SocketAddr)> = {
            let mut pending = locked(&self.shared.to_confirm);
            let done = pending
                .iter()
                .filter(|(name, _)| !applied.contains(*name))
                .map(|(n, a)| (n.clone(), *a))
                .collect::<Vec<_>>();
            for (name, _) in &done {
                pending.remove(name);
            }
            done
        };
        for (_, addr) in done {
            self.outbox.send(
                addr,
                &Direct::TookOver {
                    name: self.me.name.clone(),
                },
            );
        }
    }

    /// This speaker's identity (its bound address included).
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// Names of the live speakers, this one included.
    pub fn live(&self) -> BTreeSet<String> {
        self.shared
            .live
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Waits up to `timeout` for the live set to change; returns the new set.
    pub fn next_change(&self, timeout: Duration) -> Option<BTreeSet<String>> {
        self.changes.recv_timeout(timeout).ok()
    }

    /// Counters.
    pub fn stats(&self) -> MembershipStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MembershipStats {
            rejected: get(&self.shared.rejected),
            invalid: get(&self.shared.invalid),
            unreachable_checks: get(&self.shared.unreachable_checks),
            unreachable_downs: get(&self.shared.unreachable_downs),
            unreachable_refuted: get(&self.shared.unreachable_refuted),
            watch_checks: get(&self.shared.watch_checks),
            watch_downs: get(&self.shared.watch_downs),
        }
    }

    /// The members whose failure this speaker must notice first (the owners of addresses it
    /// would take over): pinged directly every half probe period, checked when silent.
    pub fn watch(&self, members: BTreeSet<String>) {
        *locked(&self.shared.watch) = members;
    }

    /// How many times this speaker has come back to the group after being apart from it: its
    /// identity renewed because others had declared it down (a freeze, a partition), or the
    /// group reached again after it saw nobody (a cut link). Others may have announced its
    /// addresses meanwhile, so the agent announces them again when this changes.
    pub fn rejoins(&self) -> u64 {
        self.shared.rejoins.load(Ordering::Relaxed)
    }

    /// Tells the other speakers this one is leaving, then stops: they fail over at once
    /// instead of waiting for the failure detector.
    pub fn leave(mut self) {
        *locked(&self.shared.hand_over) = Some(BTreeSet::new());
        self.join();
    }

    /// Stops without a word (what a crash looks like to the others).
    pub fn stop(mut self) {
        self.join();
    }

    fn join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.outbox.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.join();
    }
}

fn foca_config(c: &MembershipConfig) -> Result<foca::Config, MembershipError> {
    let t = c.timing;
    if t.probe_rtt >= t.probe_period || t.probe_rtt.is_zero() || t.suspect_to_down_after.is_zero() {
        return Err(MembershipError::Config(format!("{t:?}")));
    }
    let n = |v: usize| NonZeroUsize::new(v).unwrap_or(NonZeroUsize::MIN);
    Ok(foca::Config {
        probe_period: t.probe_period,
        probe_rtt: t.probe_rtt,
        num_indirect_probes: n(3),
        max_transmissions: NonZeroU8::new(c.cluster_size.clamp(4, 15)).unwrap_or(NonZeroU8::MIN),
        suspect_to_down_after: t.suspect_to_down_after,
        remove_down_after: Some(Duration::from_secs(3600)),
        // Room for the MAC within a 1500-byte Ethernet MTU.
        max_packet_size: n(1400),
        notify_down_members: true,
        periodic_announce: Some(foca::PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: n(1),
        }),
        periodic_announce_to_down_members: Some(foca::PeriodicParams {
            frequency: Duration::from_secs(2),
            num_members: n(2),
        }),
        periodic_gossip: Some(foca::PeriodicParams {
            frequency: t.gossip_period,
            num_members: n(3),
        }),
    })
}

/// Bytes of HMAC-SHA256 appended to each datagram.
pub const MAC_LEN: usize = 16;
/// Seeds not yet heard from are re-announced to this often.
const SEED_RETRY: Duration = Duration::from_millis(500);
/// Longest sleep in the receive loop (bounds stop latency).
const MAX_WAIT: Duration = Duration::from_millis(20);

type HmacSha256 = hmac::Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed first).
    <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key`, whole (datagrams carry [`MAC_LEN`] bytes of it).
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut m = mac(key);
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// Appends the MAC to `payload`.
pub fn seal(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = payload.to_vec();
    out.extend_from_slice(&hmac(key, payload)[..MAC_LEN]);
    out
}

/// The payload of a sealed datagram, if its truncated MAC verifies (the hmac crate compares in
/// constant time).
pub fn open<'a>(key: &[u8], datagram: &'a [u8]) -> Option<&'a [u8]> {
    use hmac::Mac;
    let split = datagram.len().checked_sub(MAC_LEN)?;
    let (payload, tag) = datagram.split_at(split);
    let mut m = mac(key);
    m.update(payload);
    m.verify_truncated_left(tag).ok().map(|()| payload)
}

fn hash_u64(b: &[u8]) -> u64 {
    let d = Sha256::digest(b);
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Why a member is being checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    /// Its host said port unreachable: no process there; down if nobody hears from it.
    Refused,
    /// A watched member stopped answering: a suspect if nobody hears from it, then down.
    Silent,
}

/// A liveness check under way.
#[derive(Debug)]
struct Check {
    member: Member,
    nonce: u64,
    deadline: Instant,
    why: Why,
    /// A silent member nobody heard from during the check: now a suspect until `deadline`.
    suspected: bool,
}

/// The nonce of watch pings (check nonces are never 0).
const WATCH_NONCE: u64 = 0;
/// How many other members are asked to ping a member under check.
const CHECK_HELPERS: usize = 2;
/// Bounds the error-queue reads per wake-up.
const MAX_ERRORS_PER_WAKE: usize = 64;
/// Bounds the hand-overs waiting for this speaker's confirmation.
const MAX_TO_CONFIRM: usize = 64;

/// The protocol thread's state.
struct Agent {
    foca: Foca<Member, PostcardCodec, SmallRng, foca::NoCustomBroadcast>,
    socket: UdpSocket,
    key: Vec<u8>,
    seeds: Vec<SocketAddr>,
    me: Member,
    shared: Arc<Shared>,
    changes: SyncSender<BTreeSet<String>>,
    timers: BTreeMap<(Instant, u64), Timer<Member>>,
    seq: u64,
    /// Live members by address (names can repeat across incarnations).
    members: BTreeMap<SocketAddr, String>,
    /// How long a checked member has to answer.
    check_after: Duration,
    /// Checks under way, by the member's address.
    checks: BTreeMap<SocketAddr, Check>,
    /// How long a silent member stays a suspect.
    suspect_after: Duration,
    /// How often watched members are pinged.
    watch_every: Duration,
    next_watch: Instant,
    /// When each watched member was last heard from.
    heard: BTreeMap<SocketAddr, Instant>,
    /// This speaker has left (hand-over sent); only direct messages are handled now.
    left: bool,
}

impl Agent {
    fn run(mut self) {
        let mut rt = AccumulatingRuntime::new();
        let mut buf = vec![0u8; 2048];
        let mut next_seed_try = Instant::now();
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let successors = locked(&self.shared.hand_over).take();
            if let Some(successors) = successors
                && !self.left
            {
                self.leave(&mut rt, &successors);
            }
            let now = Instant::now();
            if now >= next_seed_try && !self.left {
                self.announce_to_missing_seeds(&mut rt);
                next_seed_try = now + SEED_RETRY;
            }
            if now >= self.next_watch && !self.left {
                self.watch_round(now);
                self.next_watch = now + self.watch_every;
            }
            let next_timer = self.timers.keys().next().map(|(at, _)| *at);
            let next_check = self.checks.values().map(|c| c.deadline).min();
            let wait = next_timer
                .into_iter()
                .chain(next_check)
                .chain((!self.left).then_some(self.next_watch))
                .min()
                .map(|at| at.saturating_duration_since(now))
                .unwrap_or(MAX_WAIT)
                .clamp(Duration::from_millis(1), MAX_WAIT);
            // Wait for a datagram or a queued ICMP error (POLLERR, always reported): a send
            // consumes a pending socket error, so the queue is what tells, not recv's result.
            let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
            let ready = match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) => fds[0].revents().unwrap_or(PollFlags::empty()),
                Err(_) => PollFlags::empty(),
            };
            if ready.contains(PollFlags::POLLERR) {
                for addr in unreachable_ports(&self.socket) {
                    self.start_check(addr, Why::Refused);
                }
            }
            if ready.contains(PollFlags::POLLIN) {
                // Non-blocking; an error here (a pending ICMP error reported once) is already
                // read from the queue above.
                match self.socket.recv_from(&mut buf) {
                    // An empty datagram is a wake-up from this process (see `Outbox::wake`).
                    Ok((0, _)) | Err(_) => {}
                    Ok((n, from)) => self.datagram(&buf[..n], from, &mut rt),
                }
            }
            if !self.left {
                let now = Instant::now();
                while let Some(entry) = self.timers.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let timer = entry.remove();
                    let _ = self.foca.handle_timer(timer, &mut rt);
                }
                self.expire_checks(&mut rt);
            }
            self.drain(&mut rt);
        }
        // A leave asked for together with the stop.
        let successors = locked(&self.shared.hand_over).take();
        if let Some(successors) = successors
            && !self.left
        {
            self.leave(&mut rt, &successors);
        }
    }

    /// One datagram: authenticated, then ours or foca's.
    fn datagram(&mut self, data: &[u8], from: SocketAddr, rt: &mut AccumulatingRuntime<Member>) {
        let Some(payload) = open(&self.key, data) else {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.heard_from(from);
        match decode_direct(payload) {
            Some(Ok(m)) => self.direct(m, from, rt),
            Some(Err(_)) => {
                self.shared.invalid.fetch_add(1, Ordering::Relaxed);
            }
            None if self.left => {}
            None => {
                if self.foca.handle_data(payload, &mut *rt).is_err() {
                    self.shared.invalid.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Leaves the cluster (foca gossips it) and tells `successors` directly.
    fn leave(&mut self, rt: &mut AccumulatingRuntime<Member>, successors: &BTreeSet<String>) {
        let addrs: Vec<SocketAddr> = self
            .members
            .iter()
            .filter(|(_, name)| successors.contains(*name))
            .map(|(addr, _)| *addr)
            .collect();
        let _ = self.foca.leave_cluster(&mut *rt);
        self.drain(rt);
        let hand_over = Direct::HandOver {
            name: self.me.name.clone(),
        };
        for addr in addrs {
            self.send(addr, &hand_over);
        }
        self.left = true;
        self.checks.clear();
    }

    fn send(&self, to: SocketAddr, m: &Direct) {
        send_direct(&self.socket, &self.key, to, m);
    }

    /// One of our own datagrams, authenticated.
    fn direct(&mut self, m: Direct, from: SocketAddr, rt: &mut AccumulatingRuntime<Member>) {
        match m {
            Direct::HandOver { name } => {
                if self.left {
                    return;
                }
                let leaving = self
                    .foca
                    .iter_members()
                    .find(|m| m.id().addr == from && m.id().name == name)
                    .map(|m| m.id().clone());
                if let Some(id) = leaving {
                    let down = foca::Member::new(id, 0, State::Down);
                    let _ = self.foca.apply_many(std::iter::once(down), true, &mut *rt);
                }
                {
                    let mut pending = locked(&self.shared.to_confirm);
                    if pending.len() < MAX_TO_CONFIRM || pending.contains_key(&name) {
                        pending.insert(name, from);
                    }
                }
                self.drain(rt);
                // Even with no change (the leave was already known), the agent applies and
                // confirms.
                let _ = self.changes.try_send(locked(&self.shared.live).clone());
            }
            Direct::TookOver { name } => {
                locked(&self.shared.took_over).insert(name);
            }
            Direct::Ping { nonce, reply_to } => {
                if !self.left {
                    self.send(reply_to.unwrap_or(from), &Direct::Pong { nonce });
                }
            }
            Direct::Pong { nonce } if nonce == WATCH_NONCE => {}
            Direct::Pong { nonce } => {
                let answered: Vec<SocketAddr> = self
                    .checks
                    .iter()
                    .filter(|(_, c)| c.nonce == nonce)
                    .map(|(a, _)| *a)
                    .collect();
                for addr in answered {
                    self.checks.remove(&addr);
                    self.shared
                        .unreachable_refuted
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Direct::PingFor { target, nonce } => {
                if !self.left {
                    self.send(
                        target,
                        &Direct::Ping {
                            nonce,
                            reply_to: Some(from),
                        },
                    );
                }
            }
        }
    }

    /// `addr`'s host said port unreachable: ping the member there directly and through up to
    /// [`CHECK_HELPERS`] others; [`Agent::expire_checks`] declares it down if nobody hears
    /// from it in time.
    fn start_check(&mut self, addr: SocketAddr, why: Why) {
        if self.left || self.checks.contains_key(&addr) || addr == self.me.addr {
            return;
        }
        let Some(member) = self
            .foca
            .iter_members()
            .find(|m| m.id().addr == addr)
            .map(|m| m.id().clone())
        else {
            return;
        };
        let counter = match why {
            Why::Refused => &self.shared.unreachable_checks,
            Why::Silent => &self.shared.watch_checks,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.seq = self.seq.wrapping_add(1);
        // Never WATCH_NONCE.
        let nonce =
            (self.me.incarnation ^ self.seq.rotate_left(32) ^ hash_u64(member.name.as_bytes())) | 1;
        self.send(
            addr,
            &Direct::Ping {
                nonce,
                reply_to: None,
            },
        );
        let helpers: Vec<SocketAddr> = self
            .foca
            .iter_members()
            .map(|m| m.id().addr)
            .filter(|a| *a != addr && *a != self.me.addr)
            .take(CHECK_HELPERS)
            .collect();
        for helper in helpers {
            self.send(
                helper,
                &Direct::PingFor {
                    target: addr,
                    nonce,
                },
            );
        }
        self.checks.insert(
            addr,
            Check {
                member,
                nonce,
                deadline: Instant::now() + self.check_after,
                why,
                suspected: false,
            },
        );
    }

    /// An authenticated datagram from `from`: whoever listens there is alive. Ends a check of
    /// that address and restarts its watch clock.
    fn heard_from(&mut self, from: SocketAddr) {
        if let Some(at) = self.heard.get_mut(&from) {
            *at = Instant::now();
        }
        if self.checks.remove(&from).is_some() {
            self.shared
                .unreachable_refuted
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Pings every watched member; a member silent for two rounds is checked.
    fn watch_round(&mut self, now: Instant) {
        let names = locked(&self.shared.watch).clone();
        let addrs: Vec<SocketAddr> = self
            .members
            .iter()
            .filter(|(_, n)| names.contains(*n))
            .map(|(a, _)| *a)
            .collect();
        self.heard.retain(|a, _| addrs.contains(a));
        let ping = Direct::Ping {
            nonce: WATCH_NONCE,
            reply_to: None,
        };
        for addr in addrs {
            self.send(addr, &ping);
            let last = *self.heard.entry(addr).or_insert(now);
            if now.saturating_duration_since(last) > self.watch_every * 2 {
                self.start_check(addr, Why::Silent);
            }
        }
    }

    /// Checks nobody answered in time: the member is down.
    fn expire_checks(&mut self, rt: &mut AccumulatingRuntime<Member>) {
        let now = Instant::now();
        let expired: Vec<SocketAddr> = self
            .checks
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(a, _)| *a)
            .collect();
        for addr in expired {
            if let Some(c) = self.checks.get_mut(&addr)
                && c.why == Why::Silent
                && !c.suspected
            {
                // Nobody heard from it during the check: a suspect, as SWIM makes a member that
                // failed its probes; it has `suspect_after` to answer.
                c.suspected = true;
                c.deadline = now + self.suspect_after;
                continue;
            }
            if let Some(c) = self.checks.remove(&addr) {
                let counter = match c.why {
                    Why::Refused => &self.shared.unreachable_downs,
                    Why::Silent => &self.shared.watch_downs,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let down = foca::Member::new(c.member, 0, State::Down);
                let _ = self.foca.apply_many(std::iter::once(down), true, &mut *rt);
            }
        }
    }

    fn announce_to_missing_seeds(&mut self, rt: &mut AccumulatingRuntime<Member>) {
        for &seed in &self.seeds {
            if seed != self.me.addr && !self.members.contains_key(&seed) {
                // foca addresses by identity; a placeholder with the seed's address is enough
                // to reach it, and the reply brings the real identity.
                let placeholder = Member {
                    name: String::new(),
                    addr: seed,
                    incarnation: 0,
                };
                let _ = self.foca.announce(placeholder, &mut *rt);
            }
        }
    }

    /// Sends what foca wants sent, arms its timers, applies its notifications.
    fn drain(&mut self, rt: &mut AccumulatingRuntime<Member>) {
        while let Some((to, data)) = rt.to_send() {
            let _ = self.socket.send_to(&seal(&self.key, &data), to.addr);
        }
        let now = Instant::now();
        while let Some((after, timer)) = rt.to_schedule() {
            self.seq = self.seq.wrapping_add(1);
            self.timers.insert((now + after, self.seq), timer);
        }
        let mut changed = false;
        while let Some(n) = rt.to_notify() {
            match n {
                OwnedNotification::MemberUp(m) => {
                    changed |= self.members.insert(m.addr, m.name).is_none();
                }
                OwnedNotification::MemberDown(m) => {
                    self.checks.remove(&m.addr);
                    changed |= self.members.remove(&m.addr).is_some();
                }
                OwnedNotification::Rename(old, new) => {
                    let was_live = self.members.remove(&old.addr).is_some();
                    if was_live {
                        self.members.insert(new.addr, new.name);
                    }
                    changed = true;
                }
                OwnedNotification::Idle => {
                    changed |= !self.members.is_empty();
                    self.members.clear();
                }
                OwnedNotification::Rejoin(_) | OwnedNotification::Active => {
                    self.shared.rejoins.fetch_add(1, Ordering::Relaxed);
                    changed = true;
                }
                _ => {}
            }
        }
        if changed {
            let mut live: BTreeSet<String> = self.members.values().cloned().collect();
            live.insert(self.me.name.clone());
            if let Ok(mut l) = self.shared.live.lock() {
                *l = live.clone();
            }
            let _ = self.changes.try_send(live);
        }
    }
}

/// The destinations whose host answered with ICMP(v6) port unreachable, from the socket's
/// error queue (non-blocking; bounded).
fn unreachable_ports(socket: &UdpSocket) -> Vec<SocketAddr> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    let mut out = Vec::new();
    for _ in 0..MAX_ERRORS_PER_WAKE {
        let mut data = [0u8; 256];
        let mut iov = [io::IoSliceMut::new(&mut data)];
        let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
        let Ok(msg) = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        ) else {
            break;
        };
        // For a queued error the address is the original datagram's destination.
        let dest = msg.address.and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                })
        });
        let Ok(cmsgs) = msg.cmsgs() else { continue };
        for c in cmsgs {
            let port_unreachable = match c {
                ControlMessageOwned::Ipv4RecvErr(e, _) => {
                    e.ee_origin == libc::SO_EE_ORIGIN_ICMP && e.ee_type == 3 && e.ee_code == 3
                }
                ControlMessageOwned::Ipv6RecvErr(e, _) => {
                    e.ee_origin == libc::SO_EE_ORIGIN_ICMP6 && e.ee_type == 1 && e.ee_code == 4
                }
                _ => false,
            };
            if let (true, Some(d)) = (port_unreachable, dest) {
                out.push(d);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
