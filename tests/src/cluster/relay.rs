//! A TCP relay that makes the API server (on 127.0.0.1 of the test's own network namespace)
//! reachable from inside a lab host's namespace, at 127.0.0.1:6443 there, the way a node
//! reaches its control plane. The listening socket is created in the host's namespace and the
//! outgoing one in ours; threads copy bytes between them, so the relay adds no protocol of its
//! own (TLS runs end to end). A relay can be frozen: bytes are then held, not forwarded, and
//! connections stay open, as on a half-open connection to a server that stopped answering.

use std::collections::BTreeMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::lab::{Host, LabError};

/// The port a lab host reaches the API server at, on its own 127.0.0.1.
pub const NODE_APISERVER_PORT: u16 = 6443;

type Connections = Arc<Mutex<BTreeMap<u64, (TcpStream, TcpStream)>>>;

/// A running relay; dropping it closes the listener and every relayed connection.
#[derive(Debug)]
pub struct Relay {
    /// The lab host it serves.
    pub(crate) host: String,
    stop: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    connections: Connections,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on 127.0.0.1:`port` inside `host`'s namespace and relays to `target`.
    pub fn into_host(host: &Host, port: u16, target: SocketAddr) -> Result<Relay, LabError> {
        let listener = host
            .in_netns(move || -> io::Result<TcpListener> {
                let l = TcpListener::bind(("127.0.0.1", port))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })?
            .map_err(|e| {
                LabError::io(
                    format!("listening on 127.0.0.1:{port} in {}", host.netns),
                    e,
                )
            })?;
        Ok(Relay::start(host.name.clone(), listener, target))
    }

    /// Holds every byte from now on, both ways, keeping the connections open; `false` forwards
    /// what was held and lets bytes through again.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::Relaxed);
    }

    fn start(host: String, listener: TcpListener, target: SocketAddr) -> Relay {
        let stop = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let connections: Connections = Arc::default();
        let accept = {
            let (stop, frozen, connections) = (
                Arc::clone(&stop),
                Arc::clone(&frozen),
                Arc::clone(&connections),
            );
            thread::spawn(move || accept_loop(listener, target, &stop, &frozen, &connections))
        };
        Relay {
            host,
            stop,
            frozen,
            connections,
            accept: Some(accept),
        }
    }
}

/// Copies `from` to `to` until either ends, holding what it read while `frozen`.
fn copy_holding(from: &mut TcpStream, to: &mut TcpStream, frozen: &AtomicBool) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(10));
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    stop: &AtomicBool,
    frozen: &Arc<AtomicBool>,
    conns: &Connections,
) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    while !stop.load(Ordering::Relaxed) {
        let inbound = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // The API server down: refuse by closing, as a dead server would.
        let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            continue;
        };
        let _ = inbound.set_nonblocking(false);
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let clones = (inbound.try_clone(), outbound.try_clone());
        let (Ok(in2), Ok(out2)) = clones else {
            continue;
        };
        if let (Ok(mut c), Ok(a), Ok(b)) = (conns.lock(), inbound.try_clone(), outbound.try_clone())
        {
            c.insert(id, (a, b));
        }
        let pipe = |mut from: TcpStream, mut to: TcpStream, conns: Connections| {
            let frozen = Arc::clone(frozen);
            move || {
                copy_holding(&mut from, &mut to, &frozen);
                let _ = to.shutdown(Shutdown::Write);
                let _ = from.shutdown(Shutdown::Read);
                if let Ok(mut c) = conns.lock() {
                    c.remove(&id);
                }
            }
        };
        thread::spawn(pipe(inbound, out2, Arc::clone(conns)));
        thread::spawn(pipe(outbound, in2, Arc::clone(conns)));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        if let Ok(c) = self.connections.lock() {
            for (a, b) in c.values() {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
        }
    }
}
