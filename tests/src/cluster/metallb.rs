//! MetalLB on a test cluster, for the side-by-side benchmark: its own chart (from its Go module)
//! installed by Helm (native BGP mode), its controller and speakers (built from the module) run from the installed
//! Deployment and DaemonSet the way ferrolb's are. Its admission webhook is switched off: the API
//! server could not reach it (no pod network here), and it only validates what the CRDs' schemas
//! mostly check too.

use super::Cluster;
use super::install::{PodProcess, WorkloadKind};
use super::tools::MetallbTools;
use crate::lab::{Host, LabError};

/// The namespace MetalLB is installed into.
pub const NAMESPACE: &str = "metallb-system";
/// Its controller's Deployment.
pub const CONTROLLER: &str = "metallb-controller";
/// Its speakers' DaemonSet.
pub const SPEAKER: &str = "metallb-speaker";

fn metallb(c: &Cluster) -> Result<&'static MetallbTools, LabError> {
    c.tools().metallb.as_ref().ok_or_else(|| {
        LabError::Invalid("MetalLB is not built (scripts/build-tools.sh --metallb)".into())
    })
}

impl Cluster {
    /// `helm install metallb` of MetalLB's chart (native BGP, no FRR, webhook off), then its
    /// workloads' templates are kept and the workloads parked: the harness runs the pods.
    pub fn helm_install_metallb(&self) -> Result<MetallbTemplates, LabError> {
        let tools = metallb(self)?;
        let chart = tools.chart.display().to_string();
        self.helm(&[
            "install",
            "metallb",
            &chart,
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--set",
            "controller.webhookMode=disabled",
            "--set",
            "speaker.frr.enabled=false",
            // Native BGP: v0.16's chart selects the frr-k8s backend by default.
            "--set",
            "frrk8s.enabled=false",
        ])?;
        // The webhook configuration is installed whatever the mode; nothing serves it here.
        self.kubectl(&[
            "delete",
            "validatingwebhookconfiguration",
            "metallb-webhook-configuration",
            "--ignore-not-found",
        ])?;
        let templates = MetallbTemplates {
            controller: self.workload_template(WorkloadKind::Deployment, NAMESPACE, CONTROLLER)?,
            speaker: self.workload_template(WorkloadKind::DaemonSet, NAMESPACE, SPEAKER)?,
        };
        self.park_workload(WorkloadKind::Deployment, NAMESPACE, CONTROLLER)?;
        self.park_workload(WorkloadKind::DaemonSet, NAMESPACE, SPEAKER)?;
        Ok(templates)
    }

    /// MetalLB's controller from its template.
    pub fn start_metallb_controller(
        &self,
        t: &MetallbTemplates,
        pod_name: &str,
    ) -> Result<PodProcess, LabError> {
        self.publish_pod(&t.controller, NAMESPACE, pod_name, None)?;
        let spec = t.controller.spec.clone().unwrap_or_default();
        self.run_pod_process(&spec, NAMESPACE, pod_name, None, &metallb(self)?.controller)
    }

    /// MetalLB's speaker on `node`, with a Pod object its peers find it by.
    pub fn start_metallb_speaker(
        &self,
        t: &MetallbTemplates,
        node: &Host,
    ) -> Result<PodProcess, LabError> {
        let name = format!("{SPEAKER}-{}", node.name);
        self.publish_pod(&t.speaker, NAMESPACE, &name, Some(node))?;
        let spec = t.speaker.spec.clone().unwrap_or_default();
        self.run_pod_process(&spec, NAMESPACE, &name, Some(node), &metallb(self)?.speaker)
    }
}

/// The pod templates of MetalLB's installed workloads.
#[derive(Clone, Debug)]
pub struct MetallbTemplates {
    /// The controller Deployment's.
    pub controller: k8s_openapi::api::core::v1::PodTemplateSpec,
    /// The speaker DaemonSet's.
    pub speaker: k8s_openapi::api::core::v1::PodTemplateSpec,
}
