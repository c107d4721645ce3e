//! A client that records every request it sends (method, path, query, content type, JSON body),
//! for tests that assert on exactly what a component writes to a real API server. Its
//! connection can also be frozen ([`Recorder::freeze`]): requests are then held, unanswered, as
//! on a half-open connection, and sent when it thaws, unless their caller gave up first.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use http::Request;
use kube::client::Body;
use tower::{Layer, Service};

use super::{Cluster, kube_error};
use crate::lab::LabError;

/// One request as sent.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method.
    pub method: http::Method,
    /// The path, without the query.
    pub path: String,
    /// The query string.
    pub query: String,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: serde_json::Value,
    /// When it was sent (after the connection thawed, for one held while frozen).
    pub sent_at: Instant,
    /// Whether it was held while the connection was frozen.
    pub held: bool,
}

impl Recorded {
    /// A request that changes something.
    pub fn is_write(&self) -> bool {
        !matches!(self.method, http::Method::GET | http::Method::HEAD)
    }

    /// A query parameter's value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// The requests a recording client sent so far, and its connection's gate.
#[derive(Clone, Debug)]
pub struct Recorder {
    sent: Arc<Mutex<Vec<Recorded>>>,
    frozen: Arc<tokio::sync::watch::Sender<bool>>,
    abandoned: Arc<Mutex<Vec<Recorded>>>,
    waiting: Arc<AtomicUsize>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            sent: Default::default(),
            frozen: Arc::new(tokio::sync::watch::Sender::new(false)),
            abandoned: Default::default(),
            waiting: Default::default(),
        }
    }
}

/// Counts a held request as abandoned when its caller drops it before the connection thaws.
struct Held {
    recorded: Option<Recorded>,
    recorder: Recorder,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.recorder.waiting.fetch_sub(1, Ordering::Relaxed);
        if let (Some(r), Ok(mut a)) = (self.recorded.take(), self.recorder.abandoned.lock()) {
            a.push(r);
        }
    }
}

impl Recorder {
    /// Everything sent so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.sent.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// From now on, requests are held unanswered until [`Recorder::thaw`].
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Sends the held requests (those whose callers still wait) and lets new ones through.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Requests held while frozen whose callers gave up before the thaw (never sent).
    pub fn abandoned(&self) -> Vec<Recorded> {
        self.abandoned.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Requests held right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Forgets what was sent.
    pub fn clear(&self) {
        if let Ok(mut r) = self.sent.lock() {
            r.clear();
        }
    }

    /// The writes whose path ends with `suffix`.
    pub fn writes_to(&self, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_write() && r.path.ends_with(suffix))
            .collect()
    }
}

#[derive(Clone)]
struct RecordLayer(Recorder);

impl<S> Layer<S> for RecordLayer {
    type Service = RecordService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RecordService {
            inner,
            recorder: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct RecordService<S> {
    inner: S,
    recorder: Recorder,
}

impl<S> Service<Request<Body>> for RecordService<S>
where
    S: Service<Request<Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // Request bodies are whole buffers here, so a copy is at hand without waiting.
        let body = req
            .body()
            .try_clone()
            .and_then(|b| futures::executor::block_on(b.collect_bytes()).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(serde_json::Value::Null);
        let mut recorded = Recorded {
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or("").to_string(),
            content_type: (req.headers().get(http::header::CONTENT_TYPE))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body,
            sent_at: Instant::now(),
            held: false,
        };
        // The client's futures send nothing until polled: holding this one holds the request.
        let call = self.inner.call(req);
        let recorder = self.recorder.clone();
        Box::pin(async move {
            let mut frozen = recorder.frozen.subscribe();
            if *frozen.borrow_and_update() {
                recorded.held = true;
                recorder.waiting.fetch_add(1, Ordering::Relaxed);
                let mut held = Held {
                    recorded: Some(recorded.clone()),
                    recorder: recorder.clone(),
                };
                let _ = frozen.wait_for(|f| !*f).await;
                // Sent after all: not abandoned.
                held.recorded = None;
                drop(held);
                recorded.sent_at = Instant::now();
            }
            if let Ok(mut r) = recorder.sent.lock() {
                r.push(recorded);
            }
            call.await
        })
    }
}

impl Cluster {
    /// A client acting as ServiceAccount `namespace/name` that records every request it sends.
    pub fn recording_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(kube::Client, Recorder), LabError> {
        let path = self.service_account_kubeconfig(namespace, name, &self.server_url())?;
        let recorder = Recorder::default();
        let layer = RecordLayer(recorder.clone());
        let client = self.block_on(async {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .map_err(|e| LabError::Invalid(format!("reading {}: {e}", path.display())))?;
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| LabError::Invalid(format!("loading {}: {e}", path.display())))?;
            let builder = kube::client::ClientBuilder::try_from(config)
                .map_err(|e| kube_error("building a client", e))?;
            Ok::<_, LabError>(builder.with_layer(&layer).build())
        })?;
        Ok((client, recorder))
    }
}
