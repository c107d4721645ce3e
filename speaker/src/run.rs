//! The speaker's Kubernetes mode: reflectors for Services, EndpointSlices, Nodes and the ferrolb
//! config feed the announcer driver (`ferrolb_announce::driver`); what it announces goes to the
//! report writer ([`crate::report`]) without waiting for the API server. Every wait here also
//! watches for shutdown.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferrolb_announce::driver::{self, Driver, MissingNode};
use ferrolb_announce::l2::agent::Inputs;
use ferrolb_announce::l2::{Burst, ResponderConfig};
use ferrolb_announce::membership::{MembershipConfig, Timing};
use ferrolb_config as config;
use ferrolb_config::api::BGPSessionState;
use ferrolb_kubernetes::config_source::{self, Scope};
use ferrolb_kubernetes::events::Publisher;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};

use crate::metrics::SpeakerMetrics;
use crate::report::{self, Report, WriterSettings};
use crate::sessions;
use ferrolb_announce::status::{SessionSeen, SessionsSeen, advertised_over_bgp};
use ferrolb_announce::views;

/// How the speaker runs in a cluster.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This Node's name.
    pub node: String,
    /// Namespace of the config objects.
    pub namespace: String,
    /// `--lb-class`.
    pub lb_class: Option<String>,
    /// UDP port for membership (on the Node's InternalIP).
    pub membership_port: u16,
    /// The shared membership secret.
    pub secret: Vec<u8>,
    /// Interface patterns never announced on.
    pub exclude: Vec<String>,
    /// Ignore the exclude-from-external-load-balancers label.
    pub ignore_exclude_label: bool,
    /// Where BGP session state is exported, if anywhere.
    pub metrics: Option<Arc<SpeakerMetrics>>,
    /// Gratuitous ARP / unsolicited NA rounds sent on takeover.
    pub burst: Burst,
    /// Announce over ARP/NDP (L2Advertisements are ignored when false).
    pub l2: bool,
    /// Announce over BGP (no session is opened when false).
    pub bgp: bool,
    /// Split-brain guard for L2: announce only while this many speakers are live; 0: off.
    pub l2_quorum: usize,
    /// TCP port for peers' connections (0: only connect).
    pub bgp_listen_port: u16,
}

fn reflect<K>(api: Api<K>) -> (Store<K>, futures::stream::BoxStream<'static, ()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .backoff(ferrolb_kubernetes::watch_backoff::WatchBackoff::default())
        .filter_map(|e| async move {
            match e {
                Ok(
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone,
                ) => Some(()),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "watch failed; retrying");
                    None
                }
            }
        })
        .boxed();
    (reader, stream)
}

/// Why the speaker stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The watches ended before their first list (the client is gone).
    #[error("watches ended before their first list")]
    WatchesEnded,
    /// Membership or the L2 agent could not start.
    #[error("cannot start announcing: {0}")]
    Start(#[from] ferrolb_announce::membership::MembershipError),
}

/// Waits for `what`, or returns `None` when `shutdown` fires first.
async fn or_shutdown<T>(
    shutdown: &mut watch::Receiver<bool>,
    what: impl std::future::Future<Output = T>,
) -> Option<T> {
    if *shutdown.borrow() {
        return None;
    }
    tokio::select! {
        v = what => Some(v),
        _ = shutdown.changed() => None,
    }
}

/// This Node's InternalIP, waiting for it (and for changes) until `shutdown`.
async fn wait_for_internal_ip(
    settings: &Settings,
    nodes: &Store<Node>,
    changes: &mut mpsc::UnboundedReceiver<()>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<IpAddr> {
    loop {
        let mine = (nodes.state().iter())
            .find(|n| n.name_any() == settings.node)
            .and_then(|n| views::internal_ip(n));
        if let Some(ip) = mine {
            return Some(ip);
        }
        tracing::warn!(node = %settings.node, "this Node has no InternalIP yet; waiting");
        let wait = async {
            tokio::select! {
                _ = changes.recv() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        };
        or_shutdown(shutdown, wait).await?;
    }
}

/// Runs announcing for this Node until `shutdown` fires; a shutdown sends a Cease to the BGP
/// peers and leaves the membership gracefully so another node takes over at once, then reports
/// the withdrawals (bounded by [`report::SHUTDOWN_REPORT_DEADLINE`]).
pub async fn run(
    client: Client,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let (svc_store, a) = reflect(Api::<Service>::all(client.clone()));
    let (slice_store, b) = reflect(Api::<EndpointSlice>::all(client.clone()));
    let (node_store, c) = reflect(Api::<Node>::all(client.clone()));
    let (config_stores, d) = config_source::watch(&client, &settings.namespace, Scope::Namespace);
    // Every node's BGPSessionStates: what the Announced condition says about BGP.
    let (session_store, e) = reflect(Api::<BGPSessionState>::namespaced(
        client.clone(),
        &settings.namespace,
    ));
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut changes = futures::stream::select_all([a, b, c, d.boxed(), e]);
    tokio::spawn(async move {
        while changes.next().await.is_some() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    let ready = async {
        svc_store.wait_until_ready().await.is_ok()
            && slice_store.wait_until_ready().await.is_ok()
            && node_store.wait_until_ready().await.is_ok()
            && config_stores.wait_until_ready().await
        // Not the BGPSessionStates: announcing must not wait for them (a cluster upgraded
        // without the new CRD yet lists them never); until they are read, sessions count as
        // not reported.
    };
    match or_shutdown(&mut shutdown, ready).await {
        None => return Ok(()),
        Some(false) => return Err(RunError::WatchesEnded),
        Some(true) => {}
    }
    let Some(my_ip) = wait_for_internal_ip(&settings, &node_store, &mut rx, &mut shutdown).await
    else {
        return Ok(());
    };
    let seeds: Vec<SocketAddr> = (node_store.state().iter())
        .filter(|n| n.name_any() != settings.node)
        .filter_map(|n| views::internal_ip(n))
        .map(|ip| SocketAddr::new(ip, settings.membership_port))
        .collect();
    let membership = MembershipConfig {
        name: settings.node.clone(),
        bind: SocketAddr::new(my_ip, settings.membership_port),
        seeds,
        secret: settings.secret.clone(),
        timing: Timing::default(),
        cluster_size: 1,
    };
    let mut driver = Driver::new(
        driver::Settings {
            node: settings.node.clone(),
            // The Node's first IPv4 InternalIP, even when an IPv6 one comes first.
            router_id: node_store
                .state()
                .iter()
                .find(|n| n.name_any() == settings.node)
                .and_then(|n| views::router_id(n))
                .or(match my_ip {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                }),
            responder: ResponderConfig {
                exclude: settings.exclude.clone(),
                burst: settings.burst,
                ..ResponderConfig::default()
            },
            quorum: settings.l2_quorum,
            ignore_exclude_label: settings.ignore_exclude_label,
            l2: settings.l2,
            bgp: settings.bgp,
            missing_node: MissingNode::Wait,
            bgp_listen_port: settings.bgp_listen_port,
        },
        membership,
    );

    let (sessions_tx, sessions_rx) = watch::channel(Default::default());
    let node_uid = (node_store.state().iter())
        .find(|n| n.name_any() == settings.node)
        .and_then(|n| n.metadata.uid.clone());
    let session_writer = tokio::spawn(sessions::write(
        client.clone(),
        sessions::Writer {
            node: settings.node.clone(),
            node_uid,
            namespace: settings.namespace.clone(),
        },
        sessions_rx,
    ));

    let (report_tx, report_rx) = watch::channel(Report::default());
    let writer = tokio::spawn(report::write(
        client.clone(),
        WriterSettings {
            node: settings.node.clone(),
            l2: settings.l2,
            quorum: settings.l2_quorum,
            metrics: settings.metrics.clone(),
        },
        Publisher::new(client.clone(), "ferrolb-speaker", &settings.node, 1024),
        report_rx,
    ));

    // Each config object accepted or refused on its own, as the controller does; the
    // controller reports the verdicts, the speaker only logs a change of them.
    let mut config_model = config::LastGood::default();
    let mut refused = config::ConfigErrors(Vec::new());
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        let built = config_model.build(&config_stores.snapshot());
        if let Some(m) = &settings.metrics {
            m.record_config(built.refused().len());
        }
        if built.errors != refused {
            if !built.errors.0.is_empty() {
                tracing::warn!(
                    errors = %built.errors,
                    "configuration objects refused; each keeps its last accepted version, if any"
                );
            }
            refused = built.errors;
        }
        let services = Arc::new(svc_store.state());
        let inputs = Inputs {
            config: built.config,
            nodes: node_store.state().iter().map(|n| views::node(n)).collect(),
            services: views::services(
                &services,
                &slice_store.state(),
                settings.lb_class.as_deref(),
            ),
            ..Inputs::default()
        };
        let applied = driver.apply(inputs).await?;
        for e in &applied.peer_errors {
            tracing::warn!(error = %e, "BGP peer skipped");
        }
        // Any change (even one the announcer ignores, like a Service's resourceVersion after a
        // refused condition write) has the writer look again.
        let mut changed_inputs = true;
        // Wait for a change, handing what this node announces to the writer as it changes.
        loop {
            tokio::select! {
                got = rx.recv() => {
                    if got.is_none() { return Ok(()); }
                    // Let a burst of changes settle into one update.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while rx.try_recv().is_ok() {}
                    break;
                }
                _ = tick.tick() => {
                    let bgp_status = driver.bgp_status();
                    if let (Some(m), Some(inputs)) = (&settings.metrics, driver.inputs()) {
                        let addresses = (inputs.config.peers.iter())
                            .map(|(name, p)| (name.clone(), p.address.to_string()))
                            .collect();
                        m.record(&bgp_status, &addresses);
                        m.record_refused(driver.bgp_refused_connections());
                    }
                    if let Some(inputs) = driver.inputs() {
                        let bfd = driver.bfd_status();
                        if let Some(m) = &settings.metrics {
                            m.record_bfd(&bfd);
                        }
                        let wanted =
                            sessions::desired(&settings.node, &bgp_status, &bfd, &inputs.config);
                        sessions_tx.send_if_modified(|w| {
                            let changed = *w != wanted;
                            if changed {
                                *w = wanted;
                            }
                            changed
                        });
                    }
                    let established: std::collections::BTreeSet<String> = (bgp_status.iter())
                        .filter(|(_, s)| s.is_up())
                        .map(|(p, _)| p.clone())
                        .collect();
                    let Some(status) = driver.status() else { continue };
                    if let Some(m) = &settings.metrics {
                        m.record_l2(&status);
                    }
                    let stale = {
                        let r = report_tx.borrow();
                        changed_inputs
                            || r.announced != status.announced
                            || r.live != status.live
                            || r.established != established
                            || r.unanswered != status.unanswered
                    };
                    if stale {
                        // What this node advertises over BGP: once per change, for the Events
                        // and the metrics both.
                        let advertised_bgp = (driver.inputs())
                            .map(|i| advertised_over_bgp(i, &settings.node, &established))
                            .unwrap_or_default();
                        if let (Some(m), Some(inputs)) = (&settings.metrics, driver.inputs()) {
                            m.record_announced(&announcing(
                                &settings.node,
                                inputs,
                                &status.announced,
                                &advertised_bgp,
                            ));
                        }
                        report_tx.send_replace(Report {
                            announced: status.announced,
                            live: status.live,
                            inputs: driver.inputs().cloned().map(Arc::new),
                            services: services.clone(),
                            sessions: Arc::new(sessions_seen(&session_store)),
                            established,
                            advertised_bgp,
                            unanswered: status.unanswered,
                        });
                        changed_inputs = false;
                    }
                }
                _ = shutdown.changed() => {
                    driver.leave().await;
                    // Then tell users this node no longer announces; bounded, so that an API
                    // server that does not answer cannot hold the exit.
                    report_tx.send_modify(|r| {
                        r.announced.clear();
                        r.established.clear();
                        r.advertised_bgp.clear();
                    });
                    drop(report_tx);
                    drop(sessions_tx);
                    let withdrawn = tokio::time::timeout(
                        report::SHUTDOWN_REPORT_DEADLINE,
                        futures::future::join(writer, session_writer),
                    );
                    if withdrawn.await.is_err() {
                        tracing::warn!("could not report the withdrawals before exiting");
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// Every node's sessions as their `BGPSessionState` objects say.
fn sessions_seen(store: &Store<BGPSessionState>) -> SessionsSeen {
    (store.state().iter())
        .filter_map(|o| {
            let s = o.status.as_ref()?;
            let seen = SessionSeen {
                state: s.bgp_status.clone(),
                last_error: s.last_error.clone(),
            };
            Some(((s.node.clone(), s.peer_name.clone()), seen))
        })
        .collect()
}

/// What this node announces, per mode, with the Services holding each address (for metrics).
fn announcing(
    node: &str,
    inputs: &Inputs,
    layer2: &std::collections::BTreeMap<IpAddr, std::collections::BTreeSet<String>>,
    bgp: &std::collections::BTreeMap<IpAddr, std::collections::BTreeSet<String>>,
) -> crate::metrics::Announcing {
    let mut services: std::collections::BTreeMap<IpAddr, std::collections::BTreeSet<String>> =
        Default::default();
    for s in &inputs.services {
        for ip in &s.ips {
            services.entry(*ip).or_default().insert(s.name.clone());
        }
    }
    crate::metrics::Announcing {
        node: node.to_string(),
        layer2: layer2.keys().copied().collect(),
        bgp: bgp.keys().copied().collect(),
        services,
    }
}
