//! A real Kubernetes control plane for tests, the way controller projects use envtest: etcd
//! (Debian), kube-apiserver and kube-controller-manager (built from the pinned Go modules by
//! `scripts/build-tools.sh`), fresh for each [`Cluster`], with TLS, token authentication and
//! RBAC enforced. No kubelet and no container runtime: the lab's network namespaces are the
//! nodes ([`nodes`]), pods are backend processes whose Pod objects the harness marks Ready, and
//! kube-proxy runs in each node namespace.
//!
//! ```no_run
//! use ferrolb_tests::cluster::{self, Cluster};
//! if !cluster::require_cluster() { return; }
//! let c = Cluster::start().unwrap();
//! c.kubectl(&["get", "namespaces"]).unwrap();
//! ```
//!
//! Dropping a `Cluster` stops its processes and deletes its files; the leftovers of a killed test
//! process are swept by the next `Cluster::start`.

pub mod ferrolb;
pub mod install;
pub mod metallb;
pub mod nodes;
mod pki;
pub mod record;
mod relay;
pub mod tools;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};

use crate::lab::{self, Host, LabError, Process};
pub use relay::NODE_APISERVER_PORT;
use relay::Relay;
pub use tools::{Tools, ferrolb_binary, require_cluster, tools, workspace_root};

/// Prefix of every directory (and so of every process's paths) a cluster makes:
/// `flbk-<pid>-<n>`.
pub const PREFIX: &str = "flbk-";

/// The Service CIDRs (dual-stack).
pub const SERVICE_CIDRS: &str = "10.96.0.0/16,fd00:96::/112";

/// How long the API server may take to become ready (it is slower on a loaded 2-core machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// The bearer tokens of the static users (the token file).
const ADMIN_TOKEN: &str = "ferrolb-test-admin";
const PROXY_TOKEN: &str = "ferrolb-test-kube-proxy";

/// A directory of this test process: `<tmp>/flbk-<pid>-<what>`.
pub(crate) fn process_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{PREFIX}{}-{what}", std::process::id()))
}

/// A running control plane.
pub struct Cluster {
    dir: PathBuf,
    etcd_dir: PathBuf,
    tools: &'static Tools,
    etcd_url: String,
    apiserver_port: u16,
    etcd: Process,
    apiserver: Option<Process>,
    controller_manager: Option<Process>,
    admin_kubeconfig: PathBuf,
    relays: Mutex<Vec<Relay>>,
    runtime: tokio::runtime::Runtime,
    admin: kube::Client,
}

impl Cluster {
    /// Starts etcd, kube-apiserver and kube-controller-manager, and waits until the API server
    /// is ready and the `default` namespace has its ServiceAccount.
    pub fn start() -> Result<Cluster, LabError> {
        let tools = tools::tools().map_err(LabError::Invalid)?;
        SWEEP.call_once(sweep_stale);
        let pki = pki::pki(&tools.openssl)?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = process_dir(&n.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        // etcd fsyncs every write: on tmpfs that costs nothing.
        let shm = Path::new("/dev/shm");
        let etcd_dir = if shm.is_dir() {
            shm.join(format!("{PREFIX}{}-{n}-etcd", std::process::id()))
        } else {
            dir.join("etcd")
        };
        let _ = std::fs::remove_dir_all(&etcd_dir);

        let (client_port, peer_port, apiserver_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Process::spawn(
            &[
                &path_str(&tools.etcd),
                "--name=test",
                &format!("--data-dir={}", etcd_dir.display()),
                &format!("--listen-client-urls={etcd_url}"),
                &format!("--advertise-client-urls={etcd_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                &format!("--initial-cluster=test={peer_url}"),
                "--initial-cluster-state=new",
                "--log-level=warn",
            ],
            &dir.join("etcd.log"),
        )?;

        std::fs::write(
            dir.join("tokens.csv"),
            format!(
                "{ADMIN_TOKEN},admin,admin,system:masters\n\
                 {PROXY_TOKEN},system:kube-proxy,kube-proxy\n"
            ),
        )
        .map_err(|e| LabError::io("writing tokens.csv", e))?;
        let server = format!("https://127.0.0.1:{apiserver_port}");
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(
            &admin_kubeconfig,
            &server,
            &pki.ca_cert,
            "admin",
            ADMIN_TOKEN,
        )?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| LabError::io("starting a tokio runtime", e))?;
        let admin = runtime.block_on(client_from(&admin_kubeconfig))?;
        let mut cluster = Cluster {
            dir,
            etcd_dir,
            tools,
            etcd_url,
            apiserver_port,
            etcd,
            apiserver: None,
            controller_manager: None,
            admin_kubeconfig,
            relays: Mutex::new(Vec::new()),
            runtime,
            admin,
        };
        cluster.start_apiserver()?;
        cluster.start_controller_manager(pki)?;
        cluster.wait_for_default_service_account("default")?;
        Ok(cluster)
    }

    fn start_apiserver(&mut self) -> Result<(), LabError> {
        let pki = pki::pki(&self.tools.openssl)?;
        let d = &self.dir;
        let p = |path: &Path| path_str(path);
        let argv: Vec<String> = vec![
            p(&self.tools.apiserver),
            format!("--etcd-servers={}", self.etcd_url),
            format!("--secure-port={}", self.apiserver_port),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--tls-cert-file={}", p(&pki.server_cert)),
            format!("--tls-private-key-file={}", p(&pki.server_key)),
            format!("--client-ca-file={}", p(&pki.ca_cert)),
            format!("--token-auth-file={}", p(&d.join("tokens.csv"))),
            format!("--service-account-key-file={}", p(&pki.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDRS}"),
            "--authorization-mode=RBAC".into(),
            "--endpoint-reconciler-type=none".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            format!("--cert-dir={}", p(&d.join("apiserver-certs"))),
        ];
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut process = Process::spawn(&argv, &d.join("kube-apiserver.log"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.exited() {
                return Err(LabError::Daemon {
                    daemon: "kube-apiserver".into(),
                    reason: format!("exited during startup: {status}"),
                    log: lab::tail(&process.log(), 40),
                });
            }
            if self.block_on(ready(&self.admin)) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(LabError::Daemon {
                    daemon: "kube-apiserver".into(),
                    reason: format!("not ready within {START_TIMEOUT:?}"),
                    log: lab::tail(&process.log(), 40),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.apiserver = Some(process);
        Ok(())
    }

    fn start_controller_manager(&mut self, pki: &pki::Pki) -> Result<(), LabError> {
        let p = |path: &Path| path_str(path);
        let kc = p(&self.admin_kubeconfig);
        let argv: Vec<String> = vec![
            p(&self.tools.controller_manager),
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            // Every default controller but node lifecycle: no kubelet heartbeats here, so it
            // would mark every node NotReady after 40 s and every pod with it.
            "--controllers=*,-node-lifecycle-controller".into(),
            format!("--service-account-private-key-file={}", p(&pki.sa_key)),
            format!("--root-ca-file={}", p(&pki.ca_cert)),
            format!("--cluster-signing-cert-file={}", p(&pki.ca_cert)),
            format!("--cluster-signing-key-file={}", p(&pki.ca_key)),
            "--leader-elect=false".into(),
            "--use-service-account-credentials=false".into(),
            "--secure-port=0".into(),
            "--profiling=false".into(),
        ];
        // Its client's rate limit (default 20 requests/s, as on most clusters): raised by the
        // MetalLB benchmark, where thousands of EndpointSlices would otherwise queue behind it.
        let mut argv = argv;
        if let Ok(qps) = std::env::var("FERROLB_KCM_API_QPS") {
            argv.push(format!("--kube-api-qps={qps}"));
            argv.push(format!("--kube-api-burst={qps}"));
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let process = Process::spawn(&argv, &self.dir.join("kube-controller-manager.log"))?;
        self.controller_manager = Some(process);
        Ok(())
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL): clients see their connections end and
    /// new ones refused, as when the control plane is down.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut p) = self.apiserver.take() {
            p.stop_within(Duration::from_secs(10));
        }
    }

    /// Starts kube-apiserver again on the same port and etcd (after [`Cluster::stop_apiserver`]).
    pub fn restart_apiserver(&mut self) -> Result<(), LabError> {
        self.stop_apiserver();
        self.start_apiserver()
    }

    /// `etcdctl ARGS` against this cluster's etcd; its stdout.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, LabError> {
        let etcdctl = path_str(&self.tools.etcdctl);
        let endpoints = format!("--endpoints={}", self.etcd_url);
        let mut argv = vec![etcdctl.as_str(), endpoints.as_str()];
        argv.extend_from_slice(args);
        lab::run_command_ok(&argv, Duration::from_secs(30))
    }

    /// Compacts etcd's history up to its current revision, so that every watch resuming from an
    /// older resourceVersion gets 410 Gone. Returns the revision compacted to.
    pub fn compact_etcd(&self) -> Result<u64, LabError> {
        // A write of our own (outside the API server's keys) moves the revision past every
        // resourceVersion a client has seen.
        self.etcdctl(&["put", "/ferrolb-test/compaction-marker", "x"])?;
        let status = self.etcdctl(&["endpoint", "status", "--write-out=json"])?;
        let json: serde_json::Value = serde_json::from_str(&status)
            .map_err(|e| LabError::parse("etcdctl endpoint status", e.to_string()))?;
        let revision = json
            .get(0)
            .and_then(|s| s.pointer("/Status/header/revision"))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| LabError::parse("etcdctl endpoint status", "no revision"))?;
        self.etcdctl(&["compaction", &revision.to_string(), "--physical"])?;
        Ok(revision)
    }

    /// The API server's URL from this (the test's) network namespace.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// The API server's address from this namespace.
    pub fn server_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.apiserver_port))
    }

    /// The URL a lab host reaches the API server at, once [`Cluster::reach_from`] made it so.
    pub fn node_server_url() -> String {
        format!("https://127.0.0.1:{NODE_APISERVER_PORT}")
    }

    /// Freezes (or thaws) the connections from lab host `host` to the API server: bytes are
    /// held both ways and the connections stay open, as on a half-open connection. Returns
    /// whether `host` has a relay.
    pub fn freeze_api_from(&self, host: &str, frozen: bool) -> bool {
        let Ok(relays) = self.relays.lock() else {
            return false;
        };
        let mine: Vec<&Relay> = relays.iter().filter(|r| r.host == host).collect();
        for r in &mine {
            r.freeze(frozen);
        }
        !mine.is_empty()
    }

    /// Makes the API server reachable from inside `host` at [`Cluster::node_server_url`].
    pub fn reach_from(&self, host: &Host) -> Result<(), LabError> {
        let relay = Relay::into_host(host, NODE_APISERVER_PORT, self.server_addr())?;
        if let Ok(mut r) = self.relays.lock() {
            r.push(relay);
        }
        Ok(())
    }

    /// A client with cluster-admin rights (for the test's own setup and checks).
    pub fn client(&self) -> kube::Client {
        self.admin.clone()
    }

    /// Runs a future on the cluster's runtime (where its clients live).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Spawns a task on the cluster's runtime.
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(f)
    }

    /// The cluster's private directory (logs, kubeconfigs); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin kubeconfig (for kubectl and helm).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// A kubeconfig for kube-proxy's static user (`system:kube-proxy`, bound to
    /// `system:node-proxier` by the API server's bootstrap policy), for `server`.
    pub fn kube_proxy_kubeconfig(&self, server: &str) -> Result<PathBuf, LabError> {
        let pki = pki::pki(&self.tools.openssl)?;
        let path = self.unique_path("kube-proxy", "kubeconfig");
        write_kubeconfig(&path, server, &pki.ca_cert, "kube-proxy", PROXY_TOKEN)?;
        Ok(path)
    }

    /// A kubeconfig holding a fresh token of ServiceAccount `namespace/name` (TokenRequest,
    /// valid 24 h), for `server`: the identity a pod of that account has, so the server
    /// enforces that account's RBAC.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
    ) -> Result<PathBuf, LabError> {
        let token = self.service_account_token(namespace, name)?;
        let pki = pki::pki(&self.tools.openssl)?;
        let path = self.unique_path(&format!("{namespace}-{name}"), "kubeconfig");
        write_kubeconfig(&path, server, &pki.ca_cert, name, &token)?;
        Ok(path)
    }

    /// A token of ServiceAccount `namespace/name`.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Result<String, LabError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec!["https://kubernetes.default.svc".into()]),
                expiration_seconds: Some(24 * 3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let issued = self
            .block_on(api.create_token_request(name, &PostParams::default(), &request))
            .map_err(|e| kube_error(&format!("token for {namespace}/{name}"), e))?;
        issued
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| LabError::Invalid(format!("no token issued for {namespace}/{name}")))
    }

    /// A client acting as ServiceAccount `namespace/name`.
    pub fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<kube::Client, LabError> {
        let path = self.service_account_kubeconfig(namespace, name, &self.server_url())?;
        self.block_on(client_from(&path))
    }

    /// Creates a namespace (with labels) and waits for its `default` ServiceAccount, which
    /// Pods need.
    pub fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) -> Result<(), LabError> {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_string(),
                    serde_json::Value::String((*v).to_string()),
                )
            })
            .collect();
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels}
        }))
        .map_err(|e| LabError::Invalid(e.to_string()))?;
        let api: Api<Namespace> = Api::all(self.client());
        self.block_on(api.create(&PostParams::default(), &ns))
            .map_err(|e| kube_error(&format!("creating namespace {name}"), e))?;
        self.wait_for_default_service_account(name)
    }

    fn wait_for_default_service_account(&self, namespace: &str) -> Result<(), LabError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        lab::wait_for(
            &format!(
                "the default ServiceAccount of namespace {namespace} (kube-controller-manager)"
            ),
            START_TIMEOUT,
            || {
                self.block_on(api.get_opt("default"))
                    .map(|sa| sa.map(drop))
                    .map_err(|e| e.to_string())
            },
        )
        .map_err(|e| self.with_logs(e))
    }

    /// `kubectl ARGS` as cluster admin; its stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, LabError> {
        self.kubectl_with_stdin(args, None)
    }

    /// `kubectl ARGS` as cluster admin, `stdin` piped in (`-f -`); its stdout.
    pub fn kubectl_with_stdin(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, LabError> {
        let kubectl = path_str(&self.tools.kubectl);
        let kc = format!("--kubeconfig={}", self.admin_kubeconfig.display());
        let mut argv = vec![kubectl.as_str(), kc.as_str()];
        argv.extend_from_slice(args);
        run_with_stdin(&argv, &[], stdin, Duration::from_secs(120))
    }

    /// `helm ARGS` as cluster admin (Helm's cache and config kept in the cluster's directory);
    /// its stdout.
    pub fn helm(&self, args: &[&str]) -> Result<String, LabError> {
        let helm = path_str(&self.tools.helm);
        let kc = format!("--kubeconfig={}", self.admin_kubeconfig.display());
        let mut argv = vec![helm.as_str(), kc.as_str()];
        argv.extend_from_slice(args);
        run_with_stdin(&argv, &helm_env(&self.dir), None, Duration::from_secs(300))
    }

    /// The tools this cluster runs.
    pub fn tools(&self) -> &'static Tools {
        self.tools
    }

    /// A fresh path in the cluster's directory.
    pub fn unique_path(&self, stem: &str, ext: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{stem}-{n}.{ext}"))
    }

    /// The tails of the control plane's logs, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in [
            &Some(&self.etcd),
            &self.apiserver.as_ref(),
            &self.controller_manager.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            out.push_str(&format!(
                "[{}]\n{}\n",
                p.log_path().display(),
                lab::tail(&p.log(), 20)
            ));
        }
        out
    }

    fn with_logs(&self, e: LabError) -> LabError {
        LabError::Daemon {
            daemon: "control plane".into(),
            reason: e.to_string(),
            log: self.logs(),
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .field("server", &self.server_url())
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(mut r) = self.relays.lock() {
            r.clear();
        }
        if let Some(mut p) = self.controller_manager.take() {
            p.stop_within(Duration::from_secs(5));
        }
        self.stop_apiserver();
        self.etcd.stop_within(Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&self.etcd_dir);
        if std::env::var_os("FERROLB_KEEP_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Helm's environment: caches and config in `dir`, not the user's home.
pub fn helm_env(dir: &Path) -> Vec<(String, String)> {
    ["HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                dir.join("helm").join(k).display().to_string(),
            )
        })
        .collect()
}

/// Runs a command with extra environment and optional stdin, bounded; its stdout.
pub fn run_with_stdin(
    argv: &[&str],
    env: &[(String, String)],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<String, LabError> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Some((program, args)) = argv.split_first() else {
        return Err(LabError::Invalid("empty command".into()));
    };
    let shown = argv.join(" ");
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            cmd: shown.clone(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let text = text.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(timeout)
        .map_err(|_| LabError::CommandTimeout {
            cmd: shown.clone(),
            timeout,
        })?
        .map_err(|e| LabError::io(format!("waiting for `{shown}`"), e))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(LabError::Command {
            cmd: shown,
            status: format!("{}", output.status),
            stdout: stdout.trim().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// An error of the Kubernetes client, as a lab error naming what was being done.
pub fn kube_error(what: &str, e: kube::Error) -> LabError {
    LabError::Invalid(format!("{what}: {e}"))
}

/// A client from a kubeconfig file.
pub async fn client_from(path: &Path) -> Result<kube::Client, LabError> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| LabError::Invalid(format!("reading {}: {e}", path.display())))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| LabError::Invalid(format!("loading {}: {e}", path.display())))?;
    kube::Client::try_from(config).map_err(|e| kube_error("building a client", e))
}

async fn ready(client: &kube::Client) -> bool {
    let Ok(req) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), client.request_text(req)).await,
        Ok(Ok(body)) if body.trim() == "ok"
    )
}

/// Writes a kubeconfig with one cluster, one token user and one context.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    token: &str,
) -> Result<(), LabError> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: test\n  context:\n    cluster: test\n    user: {user}\n\
         current-context: test\n",
        ca = ca.display()
    );
    std::fs::write(path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

fn free_port() -> Result<u16, LabError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LabError::io("finding a free port", e))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Best effort: kills the processes and removes the directories of clusters whose test process
/// is gone (a killed test cannot clean up after itself).
pub fn sweep_stale() {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    let owner =
        |name: &str| -> Option<u32> { name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok() };
    let mut stale = Vec::new();
    for dir in [std::env::temp_dir(), PathBuf::from("/dev/shm")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if owner(&name).is_some_and(|pid| !alive(pid)) {
                stale.push(e.path());
            }
        }
    }
    for ns in lab::list_netns().unwrap_or_default() {
        if owner(&ns).is_some_and(|pid| !alive(pid)) {
            lab::destroy_netns(&ns);
        }
    }
    if stale.is_empty() {
        return;
    }
    // Processes whose command line or environment names a stale directory.
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let mut text = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            text.extend(std::fs::read(p.path().join("environ")).unwrap_or_default());
            let text = String::from_utf8_lossy(&text);
            if stale.iter().any(|d| text.contains(&*d.to_string_lossy())) {
                lab::signal_pid(pid, lab::Signal::Kill);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    for d in stale {
        let _ = std::fs::remove_dir_all(d);
    }
}
