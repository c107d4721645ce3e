//! An in-process fake Kubernetes API server, kept for what a real kube-apiserver cannot do in a
//! test: failures injected into chosen requests ([`Fault`]), and a server in the same process
//! for the controller benchmark's baseline. Every behaviour test runs on a real kube-apiserver
//! (`ferrolb_tests::cluster`). What the fake cannot do faithfully it refuses, as the real server
//! would refuse what it does not serve: patch types other than JSON merge patches (415), paths
//! and subresources it does not know (404).
//!
//! It is a `tower::Service` that a real [`kube::Client`] talks to, speaking the Kubernetes JSON
//! wire format: list and watch with `resourceVersion` (replaying history, sending bookmarks),
//! create, replace with optimistic concurrency, JSON merge patches (with a `resourceVersion`
//! precondition) on objects and on their `status` subresource, delete, and `Status` errors.
//! Every request is recorded, so tests can assert on the exact paths, bodies and field managers
//! a controller sends; failures can be injected.
//!
//! What it does not do: authentication, admission, schema validation, server-side apply,
//! label/field selectors (lists return everything), pagination (one page), compaction.

mod merge;
mod path;
mod store;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

pub use path::ResourcePath;
use store::Store;

/// One request as the server received it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// The Content-Type header, when present.
    pub content_type: Option<String>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// When the server received it.
    pub received_at: std::time::Instant,
}

impl RecordedRequest {
    /// The value of a query parameter.
    pub fn query_param(&self, key: &str) -> Option<String> {
        query_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Whether this is a watch request.
    pub fn is_watch(&self) -> bool {
        matches!(self.query_param("watch").as_deref(), Some("true" | "1"))
    }

    /// Whether this request changes state (anything but GET).
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

/// A failure to inject: the next `times` requests with this method whose path ends with
/// `path_suffix` get `code` instead of being served.
#[derive(Clone, Debug)]
pub struct Fault {
    /// HTTP method to match.
    pub method: Method,
    /// Path suffix to match (`/status`, a service name, ...).
    pub path_suffix: String,
    /// Status code to answer with.
    pub code: u16,
    /// How many requests to fail.
    pub times: usize,
}

pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) record: bool,
}

/// The server. Clones share one state.
#[derive(Clone)]
pub struct FakeApiServer {
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Notify>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApiServer {
    /// An empty cluster.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Mutex::new(Shared {
                store: Store::default(),
                requests: Vec::new(),
                faults: Vec::new(),
                record: true,
            })),
            changed: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A test that panicked while holding the lock poisons it; the data is still usable.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client for this server; needs a Tokio runtime.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// Creates or replaces an object, as another actor (a user, kubectl) would; not recorded.
    pub fn upsert<K>(&self, obj: &K) -> Value
    where
        K: kube::Resource<DynamicType = ()> + serde::Serialize,
    {
        let mut value = serde_json::to_value(obj).unwrap_or(Value::Null);
        value["apiVersion"] = json!(K::api_version(&()));
        value["kind"] = json!(K::kind(&()));
        let path = ResourcePath::for_object::<K>(
            obj.meta().namespace.as_deref(),
            obj.meta().name.as_deref(),
        );
        let out = self.lock().store.upsert(&path, value);
        self.changed.notify_waiters();
        out
    }

    /// Deletes an object, as another actor would; not recorded.
    pub fn remove<K>(&self, namespace: Option<&str>, name: &str) -> bool
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let path = ResourcePath::for_object::<K>(namespace, Some(name));
        let gone = self.lock().store.delete(&path).is_ok();
        self.changed.notify_waiters();
        gone
    }

    /// The stored object, typed.
    pub fn get<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        let path = ResourcePath::for_object::<K>(namespace, Some(name));
        let value = self.lock().store.get(&path)?;
        serde_json::from_value(value).ok()
    }

    /// Every stored object of a kind, as JSON.
    pub fn list_json<K>(&self) -> Vec<Value>
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let path = ResourcePath::for_object::<K>(None, None);
        self.lock().store.list(&path.collection_all_namespaces())
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Stops (or resumes) recording requests, for benchmarks that send many.
    pub fn set_recording(&self, on: bool) {
        self.lock().record = on;
    }

    /// Makes matching requests fail.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Sends a BOOKMARK with the current resourceVersion to every open watch that asked for them.
    pub fn send_bookmarks(&self) {
        self.lock().store.send_bookmarks();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().store.resource_version()
    }

    /// The number of open watches.
    pub fn open_watches(&self) -> usize {
        self.lock().store.open_watches()
    }

    /// Waits until `check` holds on the server's state after a change, or `timeout` passes.
    /// Returns whether it held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&FakeApiServer) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if check(self) {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            // Wake on a change, and at least every 20 ms (changes through the client also notify).
            let step = (deadline - now).min(Duration::from_millis(20));
            let _ = tokio::time::timeout(step, notified).await;
        }
    }

    /// Serves plain HTTP on `listener` until the task is dropped, so a separate process (a
    /// controller binary with a kubeconfig pointing at `http://ADDR`) can use this server.
    pub async fn serve_http(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let server = self.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(req).await) }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    }

    async fn handle<B>(self, req: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body,
        B::Error: std::fmt::Display,
    {
        let (parts, body) = req.into_parts();
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("reading body: {e}"),
                );
            }
        };
        let body_json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let record = RecordedRequest {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            content_type: content_type.clone(),
            body: body_json.clone(),
            received_at: std::time::Instant::now(),
        };
        let response = {
            let mut shared = self.lock();
            if shared.record {
                shared.requests.push(record.clone());
            }
            if let Some(code) = take_fault(&mut shared.faults, &record) {
                drop(shared);
                let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return status_response(
                    code,
                    code.canonical_reason().unwrap_or("Error"),
                    "injected failure",
                );
            }
            self.route(&mut shared, &record, content_type.as_deref(), body_json)
        };
        self.changed.notify_waiters();
        response
    }

    fn route(
        &self,
        shared: &mut Shared,
        req: &RecordedRequest,
        content_type: Option<&str>,
        body: Value,
    ) -> Response<ResponseBody> {
        let Some(path) = ResourcePath::parse(&req.path) else {
            return status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no route for {}", req.path),
            );
        };
        let store = &mut shared.store;
        let result = match (&req.method, path.name.is_some()) {
            (&Method::GET, false) if req.is_watch() => {
                let since = req
                    .query_param("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let bookmarks = req.query_param("allowWatchBookmarks").as_deref() == Some("true");
                let (tx, rx) = mpsc::unbounded_channel();
                store.watch(&path, since, bookmarks, tx);
                return Response::builder()
                    .status(StatusCode::OK)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(ResponseBody::Stream(rx))
                    .unwrap_or_else(|_| Response::new(ResponseBody::empty()));
            }
            (&Method::GET, false) => Ok(store.list_response(&path)),
            (&Method::GET, true) => store.get(&path).ok_or_else(|| not_found(&path)),
            (&Method::POST, false) => store.create(&path, body),
            (&Method::PUT, true) => store.replace(&path, body),
            (&Method::PATCH, true) => match content_type {
                Some("application/merge-patch+json") => store.merge_patch(&path, &body),
                // A strategic merge patch merges lists by key where a JSON merge patch replaces
                // them: applied as one it would succeed here with a result the real server
                // never gives. Refused, like every patch type the fake cannot apply faithfully.
                other => Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!(
                        "the fake API server applies only application/merge-patch+json, not {other:?}"
                    ),
                )),
            },
            (&Method::DELETE, true) => store.delete(&path),
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{} {}", req.method, req.path),
            )),
        };
        match result {
            Ok(value) => json_response(StatusCode::OK, &value),
            Err(e) => status_response(e.code, &e.reason, &e.message),
        }
    }
}

fn take_fault(faults: &mut Vec<Fault>, req: &RecordedRequest) -> Option<u16> {
    let i = faults.iter().position(|f| {
        f.method == req.method && req.path.ends_with(&f.path_suffix) && f.times > 0
    })?;
    let fault = &mut faults[i];
    fault.times -= 1;
    let code = fault.code;
    if fault.times == 0 {
        faults.remove(i);
    }
    Some(code)
}

/// An error answered as a Kubernetes `Status`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: StatusCode,
    pub(crate) reason: String,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(code: StatusCode, reason: &str, message: String) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message,
        }
    }
}

pub(crate) fn not_found(path: &ResourcePath) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "{} {:?} not found",
            path.plural,
            path.name.clone().unwrap_or_default()
        ),
    )
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                k.to_string(),
                v.replace("%2F", "/")
                    .replace("%3D", "=")
                    .replace("%2C", ","),
            )
        })
        .collect()
}

fn json_response(code: StatusCode, value: &Value) -> Response<ResponseBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(ResponseBody::Full(Some(Bytes::from(bytes))))
        .unwrap_or_else(|_| Response::new(ResponseBody::empty()))
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<ResponseBody> {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    json_response(code, &status)
}

/// A response body: a whole JSON document, or a watch stream of newline-separated events.
pub enum ResponseBody {
    /// A complete body (taken once).
    Full(Option<Bytes>),
    /// Watch events as they happen; ends when the server drops the sender.
    Stream(mpsc::UnboundedReceiver<Bytes>),
}

impl ResponseBody {
    fn empty() -> Self {
        ResponseBody::Full(None)
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => {
                Poll::Ready(bytes.take().map(|b| Ok(http_body::Frame::data(b))))
            }
            ResponseBody::Stream(rx) => rx
                .poll_recv(cx)
                .map(|b| b.map(|b| Ok(http_body::Frame::data(b)))),
        }
    }
}

impl tower::Service<Request<kube::client::Body>> for FakeApiServer {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let server = self.clone();
        Box::pin(async move { Ok(server.handle(req).await) })
    }
}
