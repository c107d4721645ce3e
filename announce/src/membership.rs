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
//! Authentication: a foreign host without the secret can neither join nor declare a member down
//! (its datagrams fail the MAC and are dropped before foca sees them). Replays of captured
//! datagrams are not detected; foca's incarnation numbers make a replayed old state lose against
//! newer ones.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
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
}

#[derive(Debug, Default)]
struct Shared {
    live: Mutex<BTreeSet<String>>,
    stop: AtomicBool,
    leave: AtomicBool,
    rejected: AtomicU64,
    invalid: AtomicU64,
}

/// A running membership agent. Dropping it stops it abruptly (like a crash); use
/// [`Membership::leave`] for a graceful shutdown that hands over at once.
#[derive(Debug)]
pub struct Membership {
    shared: Arc<Shared>,
    changes: Receiver<BTreeSet<String>>,
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
        let me = Member {
            name: config.name.clone(),
            addr: socket.local_addr().unwrap_or(config.bind),
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
            changes: tx,
            timers: BTreeMap::new(),
            seq: 0,
            members: BTreeMap::new(),
        };
        let thread = thread::Builder::new()
            .name(format!("swim-{}", config.name))
            .spawn(move || agent.run())
            .map_err(MembershipError::Thread)?;
        Ok(Membership {
            shared,
            changes,
            thread: Some(thread),
            me,
        })
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
        MembershipStats {
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            invalid: self.shared.invalid.load(Ordering::Relaxed),
        }
    }

    /// Tells the other speakers this one is leaving, then stops: they fail over at once
    /// instead of waiting for the failure detector.
    pub fn leave(mut self) {
        self.shared.leave.store(true, Ordering::Relaxed);
        self.join();
    }

    /// Stops without a word (what a crash looks like to the others).
    pub fn stop(mut self) {
        self.join();
    }

    fn join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
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
            let now = Instant::now();
            if now >= next_seed_try {
                self.announce_to_missing_seeds(&mut rt);
                next_seed_try = now + SEED_RETRY;
            }
            let wait = self
                .timers
                .keys()
                .next()
                .map(|(at, _)| at.saturating_duration_since(now))
                .unwrap_or(MAX_WAIT)
                .clamp(Duration::from_millis(1), MAX_WAIT);
            let _ = self.socket.set_read_timeout(Some(wait));
            if let Ok((n, _from)) = self.socket.recv_from(&mut buf) {
                match open(&self.key, &buf[..n]) {
                    Some(payload) => {
                        if self.foca.handle_data(payload, &mut rt).is_err() {
                            self.shared.invalid.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => {
                        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let now = Instant::now();
            while let Some(entry) = self.timers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let timer = entry.remove();
                let _ = self.foca.handle_timer(timer, &mut rt);
            }
            self.drain(&mut rt);
        }
        if self.shared.leave.load(Ordering::Relaxed) {
            let _ = self.foca.leave_cluster(&mut rt);
            self.drain(&mut rt);
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

#[cfg(test)]
mod tests;
