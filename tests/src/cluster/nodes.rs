//! The lab's node namespaces as Kubernetes Nodes, pods without a kubelet, and kube-proxy.
//!
//! Node `i` of the lab (LAN addresses 10.0.0.(11+i) and fd00::(11+i)) is registered as a Node
//! with those InternalIPs and owns the pod ranges 10.244.i.0/24 and fd00:244:0:i::/64. A pod is
//! a network namespace behind its node (a veth; the node routes the pod's /32 and /128 to it, and
//! every node routes the other nodes' pod ranges over the LAN) running a TCP backend that answers
//! with the pod's name. Its Pod object is bound to the node and the harness writes the status a
//! kubelet would (Running, Ready, the pod IPs), so the real EndpointSlice controller publishes
//! real EndpointSlices. kube-proxy runs in each node namespace (nftables mode) with the
//! `system:kube-proxy` identity and forwards Service traffic to those pods.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{Cluster, kube_error};
use crate::lab::{self, Host, Lab, LabError, MacAddr, Process, TcpBackend};

/// The port every simulated pod's backend listens on.
pub const POD_PORT: u16 = 8080;

/// Node `i`'s IPv4 pod range.
pub fn pod_cidr_v4(node: usize) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 244, node as u8, 0), 24).unwrap_or_default()
}

/// Node `i`'s IPv6 pod range.
pub fn pod_cidr_v6(node: usize) -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::new(0xfd00, 0x244, 0, node as u16, 0, 0, 0, 0), 64).unwrap_or_default()
}

impl Cluster {
    /// Registers every node of `lab` as a Node (InternalIPs from the LAN, pod CIDRs, the
    /// hostname label, Ready), turns on forwarding and pod routes in each node namespace, and
    /// makes the API server reachable from each at [`Cluster::node_server_url`].
    pub fn register_nodes(&self, lab: &Lab) -> Result<(), LabError> {
        let api: Api<Node> = Api::all(self.client());
        for (i, host) in lab.nodes().iter().enumerate() {
            let (v4, v6) = (pod_cidr_v4(i), pod_cidr_v6(i));
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": host.name, "labels": {
                    "kubernetes.io/hostname": host.name,
                    "kubernetes.io/os": "linux",
                }},
                "spec": {"podCIDR": v4.to_string(), "podCIDRs": [v4.to_string(), v6.to_string()]},
            }))
            .map_err(|e| LabError::Invalid(e.to_string()))?;
            self.block_on(api.create(&PostParams::default(), &node))
                .map_err(|e| kube_error(&format!("creating Node {}", host.name), e))?;
            let status = json!({"status": {
                "addresses": [
                    {"type": "InternalIP", "address": host.ipv4.to_string()},
                    {"type": "InternalIP", "address": host.ipv6.to_string()},
                    {"type": "Hostname", "address": host.name},
                ],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "simulated by the ferrolb test harness"}],
            }});
            self.block_on(api.patch_status(
                &host.name,
                &PatchParams::default(),
                &Patch::Merge(&status),
            ))
            .map_err(|e| kube_error(&format!("setting Node {} status", host.name), e))?;

            host.exec_ok(&[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ])?;
            for (j, other) in lab.nodes().iter().enumerate() {
                if j != i {
                    host.add_route(pod_cidr_v4(j).into(), IpAddr::V4(other.ipv4))?;
                    host.add_route(pod_cidr_v6(j).into(), IpAddr::V6(other.ipv6))?;
                }
            }
            self.reach_from(host)?;
        }
        Ok(())
    }

    /// Starts kube-proxy (nftables mode) in `host`'s namespace, as Node `host.name`.
    pub fn start_kube_proxy(&self, host: &Host) -> Result<Process, LabError> {
        let kubeconfig = self.kube_proxy_kubeconfig(&Cluster::node_server_url())?;
        let proxy = self.tools().proxy.to_string_lossy().into_owned();
        let argv = [
            proxy.as_str(),
            &format!("--kubeconfig={}", kubeconfig.display()),
            &format!("--hostname-override={}", host.name),
            "--proxy-mode=nftables",
            "--cluster-cidr=10.244.0.0/16,fd00:244::/48",
            "--conntrack-max-per-core=0",
            "--metrics-bind-address=127.0.0.1:10249",
            "--healthz-bind-address=127.0.0.1:10256",
        ];
        let mut process = host.spawn(&argv)?;
        // Ready once it has programmed its table (it syncs right after its first lists).
        let ready = lab::wait_until(
            &format!("kube-proxy in {} to program nftables", host.netns),
            Duration::from_secs(60),
            || {
                process.is_running()
                    && host
                        .exec(&["nft", "list", "table", "ip", "kube-proxy"])
                        .is_ok_and(|o| o.status.success())
            },
        );
        match ready {
            Ok(()) => Ok(process),
            Err(e) => Err(LabError::Daemon {
                daemon: "kube-proxy".into(),
                reason: e.to_string(),
                log: lab::tail(&process.log(), 40),
            }),
        }
    }

    /// Starts a pod: a namespace behind node `node` of `lab` running a TCP backend on
    /// [`POD_PORT`] (IPv4 and IPv6) that answers with the pod's name, and its Pod object,
    /// bound to the node and marked Ready.
    pub fn run_pod(
        &self,
        lab: &Lab,
        node: usize,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<SimulatedPod, LabError> {
        let host = lab.node(node);
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let k = 10 + SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 240;
        let ipv4 = Ipv4Addr::new(10, 244, node as u8, k as u8);
        let ipv6 = Ipv6Addr::new(0xfd00, 0x244, 0, node as u16, 0, 0, 0, k as u16);
        let netns = format!("{}-pod{node}x{k}", lab.id());
        let pod_host = PodNetns::create(host, &netns, k, ipv4, ipv6)?;
        let backend_v4 = pod_host
            .host
            .start_tcp_backend(SocketAddr::new(IpAddr::V4(ipv4), POD_PORT), name)?;
        let backend_v6 = pod_host
            .host
            .start_tcp_backend(SocketAddr::new(IpAddr::V6(ipv6), POD_PORT), name)?;

        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "nodeName": host.name,
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "backend", "image": "ferrolb.test/backend:simulated",
                                "ports": [{"containerPort": POD_PORT, "name": "http"}]}],
            },
        }))
        .map_err(|e| LabError::Invalid(e.to_string()))?;
        let api: Api<Pod> = Api::namespaced(self.client(), namespace);
        self.block_on(api.create(&PostParams::default(), &pod))
            .map_err(|e| kube_error(&format!("creating Pod {namespace}/{name}"), e))?;
        let pod = SimulatedPod {
            namespace: namespace.into(),
            name: name.into(),
            node: host.name.clone(),
            host_ip: host.ipv4,
            ipv4,
            ipv6,
            _backends: [backend_v4, backend_v6],
            _netns: pod_host,
        };
        self.set_pod_ready(&pod, true)?;
        Ok(pod)
    }

    /// Writes the pod's status as a kubelet would: Running, Ready (or not), its IPs.
    pub fn set_pod_ready(&self, pod: &SimulatedPod, ready: bool) -> Result<(), LabError> {
        let flag = if ready { "True" } else { "False" };
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = json!({"status": {
            "phase": "Running",
            "hostIP": pod.host_ip.to_string(),
            "hostIPs": [{"ip": pod.host_ip.to_string()}],
            "podIP": pod.ipv4.to_string(),
            "podIPs": [{"ip": pod.ipv4.to_string()}, {"ip": pod.ipv6.to_string()}],
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
                {"type": "Ready", "status": flag, "lastTransitionTime": now},
            ],
            "containerStatuses": [{
                "name": "backend", "image": "ferrolb.test/backend:simulated", "imageID": "",
                "ready": ready, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }],
        }});
        let api: Api<Pod> = Api::namespaced(self.client(), &pod.namespace);
        self.block_on(api.patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(&status)))
            .map_err(|e| {
                kube_error(
                    &format!("setting Pod {}/{} status", pod.namespace, pod.name),
                    e,
                )
            })?;
        Ok(())
    }

    /// Deletes the Pod object at once (no kubelet to wait for); the backend goes with `pod`.
    pub fn delete_pod(&self, pod: SimulatedPod) -> Result<(), LabError> {
        let api: Api<Pod> = Api::namespaced(self.client(), &pod.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        self.block_on(api.delete(&pod.name, &params))
            .map_err(|e| kube_error(&format!("deleting Pod {}/{}", pod.namespace, pod.name), e))?;
        Ok(())
    }
}

/// A pod: its Pod object's identity, addresses, and the running backend.
#[derive(Debug)]
pub struct SimulatedPod {
    /// Namespace of the Pod object.
    pub namespace: String,
    /// Its name (also what its backend answers).
    pub name: String,
    /// The Node it runs on.
    pub node: String,
    /// The node's IPv4 address.
    pub host_ip: Ipv4Addr,
    /// The pod's IPv4 address.
    pub ipv4: Ipv4Addr,
    /// The pod's IPv6 address.
    pub ipv6: Ipv6Addr,
    _backends: [TcpBackend; 2],
    _netns: PodNetns,
}

/// A pod's network namespace, wired to its node; deleted on drop.
#[derive(Debug)]
struct PodNetns {
    host: Host,
    node_netns: String,
    node_if: String,
}

impl PodNetns {
    fn create(
        node: &Host,
        netns: &str,
        k: u32,
        ipv4: Ipv4Addr,
        ipv6: Ipv6Addr,
    ) -> Result<Self, LabError> {
        let run = |argv: &[&str]| lab::run_command_ok(argv, lab::COMMAND_TIMEOUT);
        run(&["ip", "netns", "add", netns])?;
        // Named like a CNI's host-side veth, so the speaker's default exclusions apply.
        let node_if = format!("veth{k}");
        let host = Host {
            name: format!("pod{k}"),
            netns: netns.to_string(),
            ifname: "eth0".into(),
            mac: MacAddr([0; 6]),
            ipv4,
            ipv6,
            ipv4_net: Ipv4Net::new(ipv4, 32).unwrap_or_default(),
            ipv6_net: Ipv6Net::new(ipv6, 128).unwrap_or_default(),
            workdir: node.workdir().join(format!("pod{k}")),
            counter: Arc::new(AtomicU32::new(0)),
        };
        let me = PodNetns {
            host,
            node_netns: node.netns.clone(),
            node_if: node_if.clone(),
        };
        std::fs::create_dir_all(&me.host.workdir)
            .map_err(|e| LabError::io(format!("creating {}", me.host.workdir.display()), e))?;
        let gw4 = Ipv4Addr::new(ipv4.octets()[0], ipv4.octets()[1], ipv4.octets()[2], 1);
        let (v4, v6) = (ipv4.to_string(), ipv6.to_string());
        let (gw, v4_32, v6_128) = (gw4.to_string(), format!("{v4}/32"), format!("{v6}/128"));
        let pod = |args: &[&str]| -> Result<String, LabError> { me.host.exec_ok(args) };
        pod(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ])?;
        pod(&["ip", "link", "set", "lo", "up"])?;
        run(&[
            "ip",
            "-n",
            &node.netns,
            "link",
            "add",
            &node_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns,
        ])?;
        let nodecmd = |args: &[&str]| -> Result<String, LabError> { node.exec_ok(args) };
        nodecmd(&["ip", "addr", "add", &format!("{gw}/32"), "dev", &node_if])?;
        nodecmd(&["ip", "addr", "add", "fe80::1/64", "dev", &node_if, "nodad"])?;
        nodecmd(&["ip", "link", "set", &node_if, "up"])?;
        nodecmd(&["ip", "route", "replace", &v4_32, "dev", &node_if])?;
        nodecmd(&["ip", "-6", "route", "replace", &v6_128, "dev", &node_if])?;
        pod(&["ip", "addr", "add", &v4_32, "dev", "eth0"])?;
        pod(&["ip", "addr", "add", &v6_128, "dev", "eth0", "nodad"])?;
        pod(&["ip", "link", "set", "eth0", "up"])?;
        pod(&["ip", "route", "add", &gw, "dev", "eth0"])?;
        pod(&["ip", "route", "add", "default", "via", &gw, "dev", "eth0"])?;
        pod(&[
            "ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
        ])?;
        Ok(me)
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        let _ = lab::run_command(
            &["ip", "-n", &self.node_netns, "link", "del", &self.node_if],
            lab::COMMAND_TIMEOUT,
        );
        lab::destroy_netns(&self.host.netns);
        let _ = std::fs::remove_dir_all(Path::new(&self.host.workdir));
    }
}
