//! The node's passive side of BGP: one listener per address family on the BGP port (179),
//! shared by every session, so a router configured to connect to the node finds someone.
//!
//! - A connection from a registered peer goes to that peer's session ([`Incoming`]), which
//!   resolves a collision with its own outgoing connection (RFC 4271 6.8).
//! - A connection from anyone else is reset at once, before a byte of BGP is exchanged.
//! - A peer's TCP MD5 key is set on the listening socket for that peer's address, so the kernel
//!   itself drops unsigned or wrongly signed segments from it (RFC 2385).
//!
//! Registering is dropping-safe: dropping an [`Incoming`] removes the peer and its key.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::socket;

/// Why a peer could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("binding the BGP listener on port {port}: {error}")]
    Bind { port: u16, error: io::Error },
    #[error("peer {0} is already registered with the listener")]
    Duplicate(IpAddr),
    #[error("no listener for {0}'s address family")]
    NoFamily(IpAddr),
    #[error("setting the TCP MD5 key for {peer} on the listener: {error}")]
    Md5 { peer: IpAddr, error: io::Error },
}

struct Shared {
    v4: Option<Arc<TcpListener>>,
    v6: Option<Arc<TcpListener>>,
    peers: Mutex<HashMap<IpAddr, Registered>>,
    refused: AtomicU64,
}

struct Registered {
    to_session: mpsc::Sender<TcpStream>,
    md5: bool,
}

impl Shared {
    fn socket_for(&self, peer: IpAddr) -> Option<&Arc<TcpListener>> {
        match peer {
            IpAddr::V4(_) => self.v4.as_ref(),
            IpAddr::V6(_) => self.v6.as_ref(),
        }
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Registered>> {
        match self.peers.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        }
    }
}

/// The node's BGP listeners (IPv4 and IPv6 wildcard on one port) and their accept tasks.
pub struct Listener {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// Connections accepted for one peer. Dropping it unregisters the peer.
pub struct Incoming {
    peer: IpAddr,
    rx: mpsc::Receiver<TcpStream>,
    shared: Weak<Shared>,
}

impl Incoming {
    /// The next accepted connection; `None` once the listener is gone.
    pub async fn next(&mut self) -> Option<TcpStream> {
        self.rx.recv().await
    }

    /// Connections for `peer` handed over by whoever holds the sender instead of a listener
    /// (a test that must choose the moment a connection arrives, to force a collision).
    pub fn detached(peer: IpAddr) -> (mpsc::Sender<TcpStream>, Incoming) {
        let (tx, rx) = mpsc::channel(2);
        (
            tx,
            Incoming {
                peer,
                rx,
                shared: Weak::new(),
            },
        )
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let removed = shared.peers().remove(&self.peer);
        if removed.is_some_and(|r| r.md5)
            && let Some(l) = shared.socket_for(self.peer)
            && let Err(e) = socket::clear_md5(l.as_ref(), self.peer)
        {
            tracing::warn!(peer = %self.peer, "removing the TCP MD5 key from the listener: {e}");
        }
    }
}

/// Pending connections the kernel may queue per listener.
const BACKLOG: u32 = 64;

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    s.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        // IPv4 peers come in on the IPv4 socket, with their keys set there.
        socket2::SockRef::from(&s).set_only_v6(true)?;
    }
    s.bind(addr)?;
    s.listen(BACKLOG)
}

impl Listener {
    /// Listens on every address of both families on `port` (call inside a tokio runtime; the
    /// sockets belong to the runtime's network namespace). One family failing (say, IPv6
    /// disabled) is logged and the other used; both failing is an error.
    pub fn bind(port: u16) -> Result<Listener, ListenError> {
        let v4 = bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port));
        let v6 = bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port));
        let (v4, v6) = match (v4, v6) {
            (Err(error), Err(_)) => return Err(ListenError::Bind { port, error }),
            (v4, v6) => {
                for (family, r) in [("IPv4", &v4.as_ref().err()), ("IPv6", &v6.as_ref().err())] {
                    if let Some(e) = r {
                        tracing::warn!(port, "no {family} BGP listener: {e}");
                    }
                }
                (v4.ok().map(Arc::new), v6.ok().map(Arc::new))
            }
        };
        let shared = Arc::new(Shared {
            v4,
            v6,
            peers: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        });
        let tasks = [shared.v4.clone(), shared.v6.clone()]
            .into_iter()
            .flatten()
            .map(|l| tokio::spawn(accept_loop(l, Arc::downgrade(&shared))))
            .collect();
        Ok(Listener { shared, tasks })
    }

    /// Takes `peer`'s connections from now on, with its TCP MD5 key (if any) on the listener.
    pub fn register(&self, peer: IpAddr, md5_key: Option<&[u8]>) -> Result<Incoming, ListenError> {
        let peer = canonical(peer);
        let l = self
            .shared
            .socket_for(peer)
            .ok_or(ListenError::NoFamily(peer))?;
        let mut peers = self.shared.peers();
        if peers.contains_key(&peer) {
            return Err(ListenError::Duplicate(peer));
        }
        if let Some(k) = md5_key {
            socket::set_md5(l.as_ref(), peer, k)
                .map_err(|error| ListenError::Md5 { peer, error })?;
        }
        // A session takes one connection at a time; a few more wait, the rest are closed.
        let (to_session, rx) = mpsc::channel(2);
        peers.insert(
            peer,
            Registered {
                to_session,
                md5: md5_key.is_some(),
            },
        );
        Ok(Incoming {
            peer,
            rx,
            shared: Arc::downgrade(&self.shared),
        })
    }

    /// Connections reset because they came from no registered peer.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// An IPv4 peer seen through an IPv6 socket is the IPv4 peer.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

async fn accept_loop(listener: Arc<TcpListener>, shared: Weak<Shared>) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("accepting a BGP connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let peer = canonical(from.ip());
        let to_session = shared.peers().get(&peer).map(|r| r.to_session.clone());
        match to_session {
            Some(tx) => {
                if tx.try_send(stream).is_err() {
                    tracing::debug!(%peer, "BGP connection closed: the session has one waiting");
                }
            }
            None => {
                let n = shared.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(100) {
                    tracing::info!(%peer, refused = n, "BGP connection from an address that is no configured peer: reset");
                }
                // RST rather than FIN: nothing is going to be said on it.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
        }
    }
}
