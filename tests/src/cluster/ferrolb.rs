//! ferrolb on a test cluster: its pods (from the installed Deployment and DaemonSet) as
//! processes, and the Service and config helpers the end-to-end tests share.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::install::{PodProcess, WorkloadKind};
use super::{Cluster, ferrolb_binary, kube_error};
use crate::lab::{self, Host, LabError};

/// The release name and namespace the tests install ferrolb as (the manifest's too).
pub const RELEASE: &str = "ferrolb";
/// The namespace ferrolb is installed into.
pub const NAMESPACE: &str = "ferrolb-system";
/// The controller's Deployment (and ServiceAccount).
pub const CONTROLLER: &str = "ferrolb-controller";
/// The speaker's DaemonSet (and ServiceAccount).
pub const SPEAKER: &str = "ferrolb-speaker";

impl Cluster {
    /// Runs a controller replica from the installed Deployment's pod template.
    pub fn start_controller(&self, pod_name: &str) -> Result<PodProcess, LabError> {
        let template = self.pod_template(WorkloadKind::Deployment, NAMESPACE, CONTROLLER)?;
        let binary = ferrolb_binary("ferrolb-controller")?;
        self.run_pod_process(&template, NAMESPACE, pod_name, None, &binary)
    }

    /// Runs the speaker from the installed DaemonSet's pod template on `node` (its network).
    pub fn start_speaker(&self, node: &Host) -> Result<PodProcess, LabError> {
        let template = self.pod_template(WorkloadKind::DaemonSet, NAMESPACE, SPEAKER)?;
        let binary = ferrolb_binary("ferrolb-speaker")?;
        self.run_pod_process(
            &template,
            NAMESPACE,
            &format!("{SPEAKER}-{}", node.name),
            Some(node),
            &binary,
        )
    }

    /// `kubectl ferrolb ARGS` as cluster admin: the `ferrolb` binary installed as the kubectl
    /// plugin `kubectl-ferrolb` (a link on PATH, as a user would install it), found and run
    /// by the real kubectl, which the plugin runs in turn; its stdout.
    pub fn kubectl_ferrolb(&self, args: &[&str]) -> Result<String, LabError> {
        let dir = self.dir().join("plugins");
        let plugin = dir.join("kubectl-ferrolb");
        let kubectl = dir.join("kubectl");
        if !plugin.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| LabError::io("creating plugins", e))?;
            std::os::unix::fs::symlink(ferrolb_binary("ferrolb")?, &plugin)
                .map_err(|e| LabError::io("linking kubectl-ferrolb", e))?;
            std::os::unix::fs::symlink(&self.tools().kubectl, &kubectl)
                .map_err(|e| LabError::io("linking kubectl", e))?;
        }
        let path = format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let env = [
            ("PATH".to_string(), path),
            (
                "KUBECONFIG".to_string(),
                self.admin_kubeconfig().display().to_string(),
            ),
        ];
        let kubectl = kubectl.display().to_string();
        let mut argv = vec![kubectl.as_str(), "ferrolb"];
        argv.extend_from_slice(args);
        super::run_with_stdin(&argv, &env, None, Duration::from_secs(60))
    }

    /// Creates (or replaces the spec of) a LoadBalancer Service `namespace/name` selecting pods
    /// labelled `app=<name>`, port 80 to the pods' [`super::nodes::POD_PORT`]; `extra` is merged
    /// into its spec, `annotations` into its metadata.
    pub fn apply_service(
        &self,
        namespace: &str,
        name: &str,
        extra: Value,
        annotations: Value,
    ) -> Result<(), LabError> {
        let mut spec = json!({
            "type": "LoadBalancer",
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": super::nodes::POD_PORT, "protocol": "TCP"}],
        });
        merge(&mut spec, extra);
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": spec,
        });
        let api: Api<Service> = Api::namespaced(self.client(), namespace);
        let params = PatchParams::apply("ferrolb-test").force();
        self.block_on(api.patch(name, &params, &Patch::Apply(&svc)))
            .map_err(|e| kube_error(&format!("applying Service {namespace}/{name}"), e))?;
        Ok(())
    }

    /// Creates a Service from a full object.
    pub fn create_service(&self, svc: &Service) -> Result<Service, LabError> {
        let ns = svc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Service> = Api::namespaced(self.client(), &ns);
        self.block_on(api.create(&PostParams::default(), svc))
            .map_err(|e| kube_error("creating a Service", e))
    }

    /// The Service's `status.loadBalancer.ingress` IPs (empty when it has none or is gone).
    pub fn ingress(&self, namespace: &str, name: &str) -> Vec<IpAddr> {
        let api: Api<Service> = Api::namespaced(self.client(), namespace);
        let svc = self.block_on(api.get_opt(name)).ok().flatten();
        ingress_of(svc.as_ref())
    }

    /// Waits until the Service has at least one ingress IP; returns them.
    pub fn wait_ingress(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Vec<IpAddr>, LabError> {
        lab::wait_for(
            &format!("Service {namespace}/{name} to get an external IP"),
            timeout,
            || {
                let ips = self.ingress(namespace, name);
                Ok::<_, LabError>((!ips.is_empty()).then_some(ips))
            },
        )
    }

    /// A condition of the Service (`type`), as (status, reason, message).
    pub fn service_condition(
        &self,
        namespace: &str,
        name: &str,
        type_: &str,
    ) -> Option<(String, String, String)> {
        let api: Api<Service> = Api::namespaced(self.client(), namespace);
        let svc = self.block_on(api.get_opt(name)).ok().flatten()?;
        svc.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status, c.reason, c.message))
    }

    /// The reasons and notes of the Events about object `name` in `namespace` (events.k8s.io).
    pub fn events_about(&self, namespace: &str, name: &str) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client(), namespace);
        let list = self
            .block_on(api.list(&Default::default()))
            .map(|l| l.items)
            .unwrap_or_default();
        list.into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }
}

/// The ingress IPs of a Service.
pub fn ingress_of(svc: Option<&Service>) -> Vec<IpAddr> {
    svc.and_then(|s| s.status.as_ref())
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .map(|i| {
            i.iter()
                .filter_map(|x| x.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}
