//! Installing ferrolb as users do (real `helm install`, the plain manifest with server-side
//! apply) and running its pods as processes, the part a kubelet would do: the container's args
//! and env (field references, Secret keys), its Secret volumes, its ServiceAccount's token, and
//! its network (the node's namespace with `hostNetwork`, a private one otherwise).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, PodTemplateSpec, Secret};
use kube::api::Api;

use super::{Cluster, kube_error};
use crate::lab::{self, Host, LabError, MacAddr, Process, Signal};

/// Where a pod finds its ServiceAccount's token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The chart in this repository.
pub fn chart_dir() -> PathBuf {
    super::workspace_root().join("deploy/helm/ferrolb")
}

/// The plain manifest in this repository.
pub fn manifest_path() -> PathBuf {
    super::workspace_root().join("deploy/manifests/ferrolb.yaml")
}

impl Cluster {
    /// `helm install RELEASE deploy/helm/ferrolb -n NAMESPACE --create-namespace` with
    /// `--set` values; Helm's output.
    pub fn helm_install(
        &self,
        release: &str,
        namespace: &str,
        set: &[&str],
    ) -> Result<String, LabError> {
        let chart = chart_dir().display().to_string();
        let mut args = vec![
            "install",
            release,
            chart.as_str(),
            "--namespace",
            namespace,
            "--create-namespace",
        ];
        for s in set {
            args.extend_from_slice(&["--set", s]);
        }
        self.helm(&args)
    }

    /// `kubectl apply --server-side -f deploy/manifests/ferrolb.yaml`.
    pub fn apply_manifest(&self) -> Result<String, LabError> {
        let path = manifest_path().display().to_string();
        self.kubectl(&["apply", "--server-side", "-f", &path])
    }

    /// Applies a YAML stream with server-side apply (field manager `ferrolb-test`).
    pub fn apply_yaml(&self, yaml: &str) -> Result<String, LabError> {
        self.kubectl_with_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager=ferrolb-test",
                "-f",
                "-",
            ],
            Some(yaml),
        )
    }

    /// The pod template of Deployment or DaemonSet `namespace/name`.
    pub fn pod_template(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<PodSpec, LabError> {
        let what = format!("{kind:?} {namespace}/{name}");
        self.workload_template(kind, namespace, name)?
            .spec
            .ok_or_else(|| LabError::Invalid(format!("{what} has no pod template")))
    }

    /// The whole pod template (labels and spec) of Deployment or DaemonSet `namespace/name`.
    pub fn workload_template(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<PodTemplateSpec, LabError> {
        let what = format!("{kind:?} {namespace}/{name}");
        Ok(match kind {
            WorkloadKind::Deployment => {
                let api: Api<Deployment> = Api::namespaced(self.client(), namespace);
                self.block_on(api.get(name))
                    .map_err(|e| kube_error(&what, e))?
                    .spec
                    .template
            }
            WorkloadKind::DaemonSet => {
                let api: Api<DaemonSet> = Api::namespaced(self.client(), namespace);
                self.block_on(api.get(name))
                    .map_err(|e| kube_error(&what, e))?
                    .spec
                    .template
            }
        })
    }

    /// A Pod object for a pod the harness runs as a process: the template's labels; on `node`
    /// (hostNetwork) bound to it, Running and Ready with the node's IPv4 address as its IP. For
    /// software that looks up its own Pod or finds its peers by listing pods (MetalLB's
    /// controller and speakers do). Run after the workload itself is gone (see
    /// [`Cluster::park_workload`]), so that no controller adopts or deletes it.
    pub fn publish_pod(
        &self,
        template: &PodTemplateSpec,
        namespace: &str,
        pod_name: &str,
        node: Option<&Host>,
    ) -> Result<(), LabError> {
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let containers: Vec<serde_json::Value> = (template.spec.iter())
            .flat_map(|s| s.containers.iter())
            .map(|c| serde_json::json!({"name": c.name, "image": c.image}))
            .collect();
        let mut spec = serde_json::json!({"containers": containers, "automountServiceAccountToken": false,
                                          "terminationGracePeriodSeconds": 0});
        if let Some(node) = node {
            spec["nodeName"] = serde_json::json!(node.name);
            spec["hostNetwork"] = serde_json::json!(true);
        }
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": pod_name, "namespace": namespace, "labels": labels}, "spec": spec,
        }))
        .map_err(|e| LabError::Invalid(e.to_string()))?;
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.client(), namespace);
        if self
            .block_on(api.get_opt(pod_name))
            .ok()
            .flatten()
            .is_some()
        {
            return Ok(());
        }
        self.block_on(api.create(&kube::api::PostParams::default(), &pod))
            .map_err(|e| kube_error(&format!("creating Pod {namespace}/{pod_name}"), e))?;
        let Some(node) = node else { return Ok(()) };
        let ip = node.ipv4.to_string();
        let status = serde_json::json!({"status": {
            "phase": "Running", "hostIP": ip, "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
        }});
        self.block_on(api.patch_status(
            pod_name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&status),
        ))
        .map_err(|e| kube_error(&format!("setting Pod {namespace}/{pod_name} status"), e))?;
        Ok(())
    }

    /// Stops the pods of a Deployment or DaemonSet (the harness runs its template itself): a
    /// Deployment is scaled to 0 and stays for what refers to it (MetalLB's controller owns its
    /// memberlist Secret by it; its ReplicaSets select by template hash, so they adopt no pod of
    /// the harness's); a DaemonSet is deleted.
    pub fn park_workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<(), LabError> {
        match kind {
            WorkloadKind::Deployment => {
                self.kubectl(&["scale", "deployment", name, "-n", namespace, "--replicas=0"])?;
            }
            // A DaemonSet would adopt (and delete) pods with its labels on any node: it goes.
            WorkloadKind::DaemonSet => {
                self.kubectl(&[
                    "delete",
                    "daemonset",
                    name,
                    "-n",
                    namespace,
                    "--cascade=foreground",
                    "--wait=true",
                ])?;
            }
        }
        Ok(())
    }

    /// Runs the first container of `template` as a process of `binary`, as pod `pod_name` of
    /// `namespace`: on `node`'s network with `hostNetwork`, else in a namespace of its own
    /// (loopback only, the API server relayed to it). Everything the kubelet would resolve is
    /// resolved from the API with the admin's rights; the process itself gets what a kubelet
    /// gives a pod to reach the API: `KUBERNETES_SERVICE_HOST`/`_PORT` and the ServiceAccount
    /// volume at /var/run/secrets/kubernetes.io/serviceaccount (a fresh token of the pod's
    /// account, the CA, the namespace; bind-mounted in a mount namespace of the process's own),
    /// and a kubeconfig with the same token (`KUBECONFIG`, which kube-rs and client-go prefer),
    /// so RBAC applies to it.
    pub fn run_pod_process(
        &self,
        template: &PodSpec,
        namespace: &str,
        pod_name: &str,
        node: Option<&Host>,
        binary: &Path,
    ) -> Result<PodProcess, LabError> {
        let container = template
            .containers
            .first()
            .ok_or_else(|| LabError::Invalid(format!("pod {pod_name} has no container")))?;
        let dir = self.unique_path(pod_name, "pod");
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;

        let account = template
            .service_account_name
            .as_deref()
            .unwrap_or("default");
        let token = self.service_account_token(namespace, account)?;
        let sa_dir = dir.join("serviceaccount");
        std::fs::create_dir_all(&sa_dir)
            .map_err(|e| LabError::io(format!("creating {}", sa_dir.display()), e))?;
        let ca = super::pki::pki(&self.tools().openssl)?.ca_cert.clone();
        for (file, result) in [
            ("token", std::fs::write(sa_dir.join("token"), &token)),
            (
                "namespace",
                std::fs::write(sa_dir.join("namespace"), namespace),
            ),
            (
                "ca.crt",
                std::fs::copy(&ca, sa_dir.join("ca.crt")).map(drop),
            ),
        ] {
            result.map_err(|e| LabError::io(format!("writing the pod's {file}"), e))?;
        }
        // The same token in a kubeconfig (see KUBECONFIG below).
        let kubeconfig = self.unique_path(&format!("{namespace}-{account}"), "kubeconfig");
        super::write_kubeconfig(
            &kubeconfig,
            &Cluster::node_server_url(),
            &ca,
            account,
            &token,
        )?;
        // The mount point must exist on the host for the bind mount; it stays empty there.
        std::fs::create_dir_all(SERVICE_ACCOUNT_DIR)
            .map_err(|e| LabError::io(format!("creating {SERVICE_ACCOUNT_DIR}"), e))?;

        // Secret, ConfigMap and emptyDir volumes: written to files (a missing optional source is
        // an empty directory); their mount paths are mapped into `dir`.
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let volume = (template.volumes.iter().flatten())
                .find(|v| v.name == m.name)
                .ok_or_else(|| {
                    LabError::Invalid(format!("pod {pod_name}: no volume {}", m.name))
                })?;
            type Items = Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>;
            let (what, data, items): (String, BTreeMap<String, Vec<u8>>, &Items) = if let Some(
                secret,
            ) =
                &volume.secret
            {
                let name = secret.secret_name.clone().unwrap_or_default();
                let data = match self.secret_data(namespace, &name) {
                    Ok(d) => d,
                    Err(_) if secret.optional == Some(true) => BTreeMap::new(),
                    Err(e) => return Err(e),
                };
                (format!("Secret {name}"), data, &secret.items)
            } else if let Some(cm) = &volume.config_map {
                let api: Api<ConfigMap> = Api::namespaced(self.client(), namespace);
                let found = self
                    .block_on(api.get_opt(&cm.name))
                    .map_err(|e| kube_error(&format!("reading ConfigMap {}", cm.name), e))?;
                let data: BTreeMap<String, Vec<u8>> = match found {
                    Some(c) => (c.data.unwrap_or_default().into_iter())
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect(),
                    None if cm.optional == Some(true) => BTreeMap::new(),
                    None => {
                        return Err(LabError::Invalid(format!(
                            "pod {pod_name}: ConfigMap {} does not exist",
                            cm.name
                        )));
                    }
                };
                (format!("ConfigMap {}", cm.name), data, &cm.items)
            } else if volume.empty_dir.is_some() {
                (String::from("emptyDir"), BTreeMap::new(), &None)
            } else {
                return Err(LabError::Invalid(format!(
                    "pod {pod_name}: volume {} is not a Secret, ConfigMap or emptyDir volume (the harness mounts only those)",
                    m.name
                )));
            };
            let target = dir.join(&m.name);
            std::fs::create_dir_all(&target)
                .map_err(|e| LabError::io(format!("creating {}", target.display()), e))?;
            let files: Vec<(String, String)> = match items {
                Some(items) => items
                    .iter()
                    .map(|i| (i.key.clone(), i.path.clone()))
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, path) in files {
                let bytes = data.get(&key).ok_or_else(|| {
                    LabError::Invalid(format!("pod {pod_name}: {what} has no key {key}"))
                })?;
                let file = target.join(path);
                std::fs::write(&file, bytes)
                    .map_err(|e| LabError::io(format!("writing {}", file.display()), e))?;
            }
            mounts.push((m.mount_path.clone(), target));
        }
        let remap = |s: &str| -> String {
            let mut out = s.to_string();
            for (mount, target) in &mounts {
                out = out.replace(mount.as_str(), &target.display().to_string());
            }
            out
        };

        let node_name = node.map(|h| h.name.clone()).unwrap_or_default();
        let mut env: Vec<(String, String)> = vec![
            ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
            (
                "KUBERNETES_SERVICE_PORT".into(),
                super::NODE_APISERVER_PORT.to_string(),
            ),
            // No kubeconfig of the machine's user in reach.
            ("HOME".into(), dir.display().to_string()),
            // And a kubeconfig of the same account, which kube-rs and client-go prefer to the
            // in-cluster configuration: the speakers' recovery after an API server outage is
            // proven with it (k8s_lab); with the in-cluster configuration alone it was not.
            ("KUBECONFIG".into(), kubeconfig.display().to_string()),
        ];
        for e in container.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                v.clone()
            } else if let Some(from) = &e.value_from {
                if let Some(f) = &from.field_ref {
                    match f.field_path.as_str() {
                        "spec.nodeName" => node_name.clone(),
                        "metadata.namespace" => namespace.to_string(),
                        "metadata.name" => pod_name.to_string(),
                        "status.hostIP" | "status.podIP" if template.host_network == Some(true) => {
                            node.map(|h| h.ipv4.to_string()).unwrap_or_default()
                        }
                        other => {
                            return Err(LabError::Invalid(format!(
                                "pod {pod_name}: env {} refers to {other}, which the harness does not provide",
                                e.name
                            )));
                        }
                    }
                } else if let Some(s) = &from.secret_key_ref {
                    let data = self.secret_data(namespace, &s.name)?;
                    let bytes = data.get(&s.key).ok_or_else(|| {
                        LabError::Invalid(format!(
                            "pod {pod_name}: Secret {} has no key {}",
                            s.name, s.key
                        ))
                    })?;
                    String::from_utf8_lossy(bytes).into_owned()
                } else if let Some(c) = &from.config_map_key_ref {
                    let api: Api<ConfigMap> = Api::namespaced(self.client(), namespace);
                    let cm = self
                        .block_on(api.get(&c.name))
                        .map_err(|err| kube_error(&c.name, err))?;
                    cm.data
                        .and_then(|d| d.get(&c.key).cloned())
                        .unwrap_or_default()
                } else {
                    return Err(LabError::Invalid(format!(
                        "pod {pod_name}: env {} has an unsupported source",
                        e.name
                    )));
                }
            } else {
                String::new()
            };
            env.push((e.name.clone(), remap(&value)));
        }
        let args: Vec<String> = container.args.iter().flatten().map(|a| remap(a)).collect();

        let host_network = template.host_network == Some(true);
        let (host, own_netns) = if host_network {
            let host = node.ok_or_else(|| {
                LabError::Invalid(format!(
                    "pod {pod_name} uses the host network: give it a node"
                ))
            })?;
            (host.clone(), None)
        } else {
            let netns = PrivateNetns::create(&format!("{}-{pod_name}", dir_tag(self.dir())), &dir)?;
            self.reach_from(&netns.host)?;
            (netns.host.clone(), Some(netns))
        };
        let binary = binary.display().to_string();
        let sa = sa_dir.display().to_string();
        let bind = format!("mount --bind \"$0\" {SERVICE_ACCOUNT_DIR} && exec \"$@\"");
        // unshare and sh exec in place: the process's pid is the binary's.
        let mut argv: Vec<&str> = vec![
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            bind.as_str(),
            sa.as_str(),
            binary.as_str(),
        ];
        argv.extend(args.iter().map(String::as_str));
        let process = host.spawn_with_env(&argv, &env)?;
        Ok(PodProcess {
            name: pod_name.to_string(),
            process,
            grace: Duration::from_secs(
                template
                    .termination_grace_period_seconds
                    .unwrap_or(30)
                    .max(0) as u64,
            ),
            _netns: own_netns,
            host,
        })
    }

    fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, LabError> {
        let api: Api<Secret> = Api::namespaced(self.client(), namespace);
        let secret = self
            .block_on(api.get(name))
            .map_err(|e| kube_error(&format!("reading Secret {namespace}/{name}"), e))?;
        let mut out: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in secret.string_data.unwrap_or_default() {
            out.insert(k, v.into_bytes());
        }
        Ok(out)
    }
}

fn dir_tag(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A workload kind whose pod template the harness can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

/// A pod's container running as a process.
#[derive(Debug)]
pub struct PodProcess {
    /// The pod's name.
    pub name: String,
    /// The process.
    pub process: Process,
    /// The pod's terminationGracePeriodSeconds.
    pub grace: Duration,
    /// The namespace it runs in (the node's, or its own).
    pub host: Host,
    _netns: Option<PrivateNetns>,
}

impl PodProcess {
    /// GET `path` on 127.0.0.1:`port` inside the pod's network, as a kubelet's HTTP probe does:
    /// the status code and body, or `None` when nothing answers within a second.
    pub fn http_get(&self, port: u16, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let reply = self
            .host
            .in_netns(move || -> std::io::Result<String> {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                s.write_all(request.as_bytes())?;
                let mut text = String::new();
                s.read_to_string(&mut text)?;
                Ok(text)
            })
            .ok()?
            .ok()?;
        let code = reply.split_whitespace().nth(1)?.parse().ok()?;
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// What the kubelet does to delete a pod: SIGTERM, then SIGKILL after the grace period.
    /// Returns how long it took to exit and whether it exited by itself.
    pub fn terminate(&mut self) -> (Duration, bool) {
        let start = std::time::Instant::now();
        self.process.signal(Signal::Term);
        while start.elapsed() < self.grace {
            if self.process.exited().is_some() {
                return (start.elapsed(), true);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.process.kill();
        (start.elapsed(), false)
    }
}

/// A network namespace with only loopback (a non-hostNetwork pod's); deleted on drop.
#[derive(Debug)]
pub(crate) struct PrivateNetns {
    pub(crate) host: Host,
}

impl PrivateNetns {
    pub(crate) fn create(name: &str, workdir: &Path) -> Result<Self, LabError> {
        static N: AtomicU32 = AtomicU32::new(0);
        let netns = format!("{}-{}", name, N.fetch_add(1, Ordering::Relaxed));
        lab::run_command_ok(&["ip", "netns", "add", &netns], lab::COMMAND_TIMEOUT)?;
        let me = PrivateNetns {
            host: Host {
                name: name.to_string(),
                netns,
                ifname: "lo".into(),
                mac: MacAddr([0; 6]),
                ipv4: std::net::Ipv4Addr::LOCALHOST,
                ipv6: std::net::Ipv6Addr::LOCALHOST,
                ipv4_net: Default::default(),
                ipv6_net: Default::default(),
                workdir: workdir.to_path_buf(),
                counter: Arc::new(AtomicU32::new(0)),
            },
        };
        me.host.exec_ok(&["ip", "link", "set", "lo", "up"])?;
        Ok(me)
    }
}

impl Drop for PrivateNetns {
    fn drop(&mut self) {
        lab::destroy_netns(&self.host.netns);
    }
}
