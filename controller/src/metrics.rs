//! Prometheus metrics and the health endpoints, served on `--metrics-addr`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Pool and family.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// Pool name.
    pub pool: String,
    /// `ipv4` or `ipv6`.
    pub family: String,
}

/// A refusal reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The reason's name (as in the Service condition).
    pub reason: String,
}

/// A Kubernetes API operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// What was attempted (`patch_status`, `patch_annotations`, `publish_event`, ...).
    pub operation: String,
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    /// Addresses a pool holds (saturating), per family.
    pub pool_addresses: Family<PoolLabels, Gauge<i64, AtomicI64>>,
    /// Addresses of a pool in use, per family.
    pub pool_addresses_in_use: Family<PoolLabels, Gauge<i64, AtomicI64>>,
    /// Successful allocations.
    pub allocations: Counter,
    /// Refused allocations, by reason.
    pub allocation_failures: Family<ReasonLabels, Counter>,
    /// Time from a change arriving to its status being decided.
    pub reconcile_seconds: Histogram,
    /// Failed API calls, by operation.
    pub api_errors: Family<OperationLabels, Counter>,
    /// 1 when the current config objects are valid, 0 when the last good config is in use.
    pub config_valid: Gauge,
    /// 1 on the replica that holds the lease.
    pub leader: Gauge,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `ferrolb_controller` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ferrolb_controller");
        let m = Self {
            pool_addresses: Family::default(),
            pool_addresses_in_use: Family::default(),
            allocations: Counter::default(),
            allocation_failures: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            api_errors: Family::default(),
            config_valid: Gauge::default(),
            leader: Gauge::default(),
            ready: AtomicBool::new(false),
            registry: Registry::default(),
        };
        registry.register(
            "pool_addresses",
            "Addresses in a pool, per family (saturating)",
            m.pool_addresses.clone(),
        );
        registry.register(
            "pool_addresses_in_use",
            "Addresses of a pool held by Services",
            m.pool_addresses_in_use.clone(),
        );
        registry.register("allocations", "IP assignments made", m.allocations.clone());
        registry.register(
            "allocation_failures",
            "Allocations refused, by reason",
            m.allocation_failures.clone(),
        );
        registry.register(
            "reconcile_seconds",
            "Time to decide a Service's addresses",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "api_errors",
            "Kubernetes API calls that failed, by operation",
            m.api_errors.clone(),
        );
        registry.register(
            "config_valid",
            "1 when the configuration objects are valid",
            m.config_valid.clone(),
        );
        registry.register(
            "leader",
            "1 on the replica that holds the leader lease",
            m.leader.clone(),
        );
        Self { registry, ..m }
    }

    /// Marks the controller ready (caches synced) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the controller is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a failed API call.
    pub fn api_error(&self, operation: &str) {
        self.api_errors
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .inc();
    }
}

/// What the HTTP endpoint serves: metrics in the Prometheus text format, and readiness.
pub trait Exporter: Send + Sync + 'static {
    /// The metrics text.
    fn encode(&self) -> String;
    /// Whether `/readyz` answers 200.
    fn is_ready(&self) -> bool;
}

impl Exporter for Metrics {
    fn encode(&self) -> String {
        Metrics::encode(self)
    }

    fn is_ready(&self) -> bool {
        Metrics::is_ready(self)
    }
}

fn respond<E: Exporter + ?Sized>(metrics: &E, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (StatusCode::OK, metrics.encode()),
        "/healthz" => (StatusCode::OK, "ok\n".to_string()),
        "/readyz" if metrics.is_ready() => (StatusCode::OK, "ready\n".to_string()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "caches not synced\n".to_string(),
        ),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` fires; over TLS when `tls` is
/// given (see [`crate::tls::server_config`]), else plain HTTP.
pub async fn serve<E: Exporter>(
    addr: SocketAddr,
    metrics: Arc<E>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, metrics, tls, shutdown).await
}

/// [`serve`] on a listener already bound (tests bind port 0 and read it back).
pub async fn serve_on<E: Exporter>(
    listener: tokio::net::TcpListener,
    metrics: Arc<E>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "serving metrics and health endpoints");
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = shutdown.changed() => return Ok(()),
        };
        // Over the limit: the connection is closed at once (scrapers and probes retry).
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many metrics connections; closing this one");
            continue;
        };
        let metrics = metrics.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => serve_connection(stream, metrics).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(tls_stream)) => serve_connection(tls_stream, metrics).await,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "metrics TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "metrics TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// A client that does not finish its TLS handshake, or send its request headers, in this time
/// is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Connections served at once; Prometheus and the kubelet's probes need a handful.
const MAX_CONNECTIONS: usize = 64;

async fn serve_connection<E, IO>(io: IO, metrics: Arc<E>)
where
    E: Exporter,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let response = respond(metrics.as_ref(), req.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    let io = hyper_util::rt::TokioIo::new(io);
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(io, service)
        .await
    {
        tracing::debug!(error = %e, "metrics connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_registered_metrics() {
        let m = Metrics::new();
        m.allocations.inc();
        m.pool_addresses
            .get_or_create(&PoolLabels {
                pool: "default".into(),
                family: "ipv4".into(),
            })
            .set(256);
        let text = m.encode();
        assert!(
            text.contains("ferrolb_controller_allocations_total 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "ferrolb_controller_pool_addresses{pool=\"default\",family=\"ipv4\"} 256"
            ),
            "{text}"
        );
        assert_eq!(
            respond(&m, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        m.set_ready(true);
        assert_eq!(respond(&m, "/readyz").status(), StatusCode::OK);
    }
}
