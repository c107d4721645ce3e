//! The HTTP endpoint every ferrolb process serves on `--metrics-addr`: `/metrics` (Prometheus
//! text), `/healthz` and `/readyz`, plain or over TLS ([`crate::tls`]), bounded in connections
//! and in the time a client may take to say what it wants.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::sync::watch;

/// What the HTTP endpoint serves: metrics in the Prometheus text format, and readiness.
pub trait Exporter: Send + Sync + 'static {
    /// The metrics text.
    fn encode(&self) -> String;
    /// Whether `/readyz` answers 200.
    fn is_ready(&self) -> bool;
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

    struct Fixed(bool);

    impl Exporter for Fixed {
        fn encode(&self) -> String {
            "up 1\n".into()
        }
        fn is_ready(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn paths() {
        assert_eq!(respond(&Fixed(false), "/metrics").status(), StatusCode::OK);
        assert_eq!(respond(&Fixed(false), "/healthz").status(), StatusCode::OK);
        assert_eq!(
            respond(&Fixed(false), "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(respond(&Fixed(true), "/readyz").status(), StatusCode::OK);
        assert_eq!(
            respond(&Fixed(true), "/other").status(),
            StatusCode::NOT_FOUND
        );
    }
}
