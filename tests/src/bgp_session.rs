//! BGP sessions of ours running in a lab node's namespace, on one tokio runtime (as the
//! speaker runs them: several sessions, optionally the node's listener), driven from a test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrolb_announce::bgp::listener::{Incoming, Listener};
use ferrolb_announce::bgp::{PeerConfig, Session, SessionStatus, State, Table};

use crate::lab::{Host, NetnsThread, wait_until};

enum Cmd {
    Routes(usize, Table),
    /// Hand session i the next connection the listener accepted for its peer.
    Deliver(usize, std::sync::mpsc::Sender<bool>),
    Stop(usize, std::sync::mpsc::Sender<Duration>),
    StopAll,
}

/// Sessions on one runtime in a node's namespace.
pub struct Sessions {
    tx: tokio::sync::mpsc::UnboundedSender<Cmd>,
    status: Arc<Mutex<Vec<Option<SessionStatus>>>>,
    refused: Arc<AtomicU64>,
    thread: Option<NetnsThread<()>>,
}

/// How the sessions start.
pub struct Start {
    pub sessions: Vec<(PeerConfig, Table)>,
    /// Run the node's listener on this port and let every session take its peer's
    /// connections from it.
    pub listen: Option<u16>,
    /// Start each session only once its peer has connected to the listener, and hold that
    /// connection until [`Sessions::deliver`] hands it over (to force a collision: the
    /// session's own connection comes second, the peer's arrives when the test chooses).
    pub hold_incoming: bool,
}

impl Sessions {
    /// One connecting session.
    pub fn one(node: &Host, cfg: PeerConfig, routes: Table) -> Sessions {
        Sessions::start(
            node,
            Start {
                sessions: vec![(cfg, routes)],
                listen: None,
                hold_incoming: false,
            },
        )
    }

    pub fn start(node: &Host, start: Start) -> Sessions {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(vec![None; start.sessions.len()]));
        let refused = Arc::new(AtomicU64::new(0));
        let (st, rf) = (status.clone(), refused.clone());
        let thread = node
            .spawn_thread(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                rt.block_on(async move {
                    let listener = start
                        .listen
                        .map(|port| Listener::bind(port).expect("binding the BGP listener"));
                    // Per session, when connections are held: the peer's first connection
                    // (awaited before the session starts, so the session's own connection
                    // comes second), the listener's side for later ones, and the session's.
                    let mut held = Vec::new();
                    let mut sessions: Vec<Option<Session>> = Vec::new();
                    for (cfg, routes) in start.sessions {
                        let mut incoming = listener.as_ref().map(|l| {
                            let key = cfg.password.as_ref().map(|p| p.as_bytes());
                            l.register(cfg.peer_address, key)
                                .expect("registering a peer")
                        });
                        if start.hold_incoming {
                            let mut from = incoming.take();
                            let first = match from.as_mut() {
                                Some(f) => tokio::time::timeout(Duration::from_secs(20), f.next())
                                    .await
                                    .ok()
                                    .flatten(),
                                None => None,
                            };
                            let (tx, detached) = Incoming::detached(cfg.peer_address);
                            held.push((first, from, tx));
                            incoming = Some(detached);
                        }
                        sessions.push(Some(Session::spawn_accepting(cfg, routes, incoming)));
                    }
                    let mut tick = tokio::time::interval(Duration::from_millis(20));
                    loop {
                        tokio::select! {
                            c = rx.recv() => match c {
                                Some(Cmd::Deliver(i, done)) => {
                                    let mut ok = false;
                                    if let Some((first, from, to)) = held.get_mut(i) {
                                        if let Some(stream) = first.take() {
                                            ok = to.send(stream).await.is_ok();
                                        }
                                        // Later connections pass straight through.
                                        if let Some(mut from) = from.take() {
                                            let to = to.clone();
                                            tokio::spawn(async move {
                                                while let Some(s) = from.next().await {
                                                    if to.send(s).await.is_err() {
                                                        break;
                                                    }
                                                }
                                            });
                                        }
                                    }
                                    let _ = done.send(ok);
                                }
                                Some(Cmd::Routes(i, t)) => {
                                    if let Some(Some(s)) = sessions.get(i) {
                                        s.set_routes(t);
                                    }
                                }
                                Some(Cmd::Stop(i, done)) => {
                                    if let Some(s) = sessions.get_mut(i).and_then(Option::take) {
                                        let t = Instant::now();
                                        s.stop().await;
                                        let _ = done.send(t.elapsed());
                                    }
                                }
                                Some(Cmd::StopAll) => {
                                    for s in sessions.iter_mut().filter_map(Option::take) {
                                        s.stop().await;
                                    }
                                    break;
                                }
                                None => break,
                            },
                            _ = tick.tick() => {
                                let mut g = st.lock().unwrap_or_else(|p| p.into_inner());
                                for (slot, s) in g.iter_mut().zip(&sessions) {
                                    if let Some(s) = s {
                                        *slot = Some(s.status());
                                    }
                                }
                                if let Some(l) = &listener {
                                    rf.store(l.refused(), Ordering::Relaxed);
                                }
                            }
                        }
                    }
                });
            })
            .expect("a thread in the node's namespace");
        Sessions {
            tx,
            status,
            refused,
            thread: Some(thread),
        }
    }

    /// Session `i`'s last published status.
    pub fn status(&self, i: usize) -> Option<SessionStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())[i].clone()
    }

    /// Waits until session `i`'s status satisfies `pred`; panics with the status if not.
    pub fn wait(
        &self,
        i: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&SessionStatus) -> bool,
    ) -> SessionStatus {
        let ok = wait_until(what, timeout, || self.status(i).as_ref().is_some_and(&pred));
        assert!(ok.is_ok(), "session {i}: {what}: {:?}", self.status(i));
        self.status(i).expect("a status")
    }

    pub fn wait_state(&self, i: usize, want: State, timeout: Duration) -> SessionStatus {
        self.wait(i, &format!("{want:?}"), timeout, |s| s.state == want)
    }

    pub fn set_routes(&self, i: usize, t: Table) {
        let _ = self.tx.send(Cmd::Routes(i, t));
    }

    /// Stops session `i` gracefully (Cease); returns how long the stop took.
    pub fn stop_one(&self, i: usize) -> Duration {
        let (done, took) = std::sync::mpsc::channel();
        let _ = self.tx.send(Cmd::Stop(i, done));
        took.recv_timeout(Duration::from_secs(30))
            .expect("the stop to end")
    }

    /// Hands session `i` the connection held for it (later ones then pass straight through);
    /// false if its peer never connected. Needs `hold_incoming`.
    pub fn deliver(&self, i: usize) -> bool {
        let (done, ok) = std::sync::mpsc::channel();
        let _ = self.tx.send(Cmd::Deliver(i, done));
        ok.recv_timeout(Duration::from_secs(30)).unwrap_or(false)
    }

    /// Connections the listener reset because they came from no configured peer.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Stops every session gracefully and waits for the thread.
    pub fn stop(mut self) {
        let _ = self.tx.send(Cmd::StopAll);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.tx.send(Cmd::StopAll);
            let _ = t.join();
        }
    }
}
