//! A lab node announcing over BGP as a real `ferrolb standalone` process (issue 14's BFD and
//! graceful restart tests and benchmark): its directory (one pool, a BGPAdvertisement, the
//! router as BGPPeer, optionally a BFDProfile and graceful restart, the Node, one Service)
//! and the process.

use std::net::IpAddr;
use std::path::Path;

use crate::lab::{BgpDaemon, Host, LabError, Process};

/// The router's AS.
pub const ROUTER_ASN: u32 = 64500;
/// The nodes' AS.
pub const NODE_ASN: u32 = 64512;

/// What one host's directory says.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The router (the BGPPeer's address).
    pub router: IpAddr,
    /// The pool the Service's address comes from (`10.100.0.0/28`, or one address).
    pub pool: String,
    /// A BFDProfile with these settings (`{}`: the defaults, 300 ms x 3), or none.
    pub bfd_profile: Option<String>,
    /// `enableGracefulRestart`.
    pub graceful_restart: bool,
    /// `holdTime`.
    pub hold_time: String,
    /// `ebgpMultiHop` (the router is not on the node's link).
    pub ebgp_multihop: bool,
}

impl HostConfig {
    /// BGP to `router` with the default 90 s hold time, no BFD, no graceful restart.
    pub fn new(router: IpAddr) -> HostConfig {
        HostConfig {
            router,
            pool: "10.100.0.0/28".into(),
            bfd_profile: None,
            graceful_restart: false,
            hold_time: "90s".into(),
            ebgp_multihop: false,
        }
    }

    /// Writes the directory for node `node` into `dir`.
    pub fn write(&self, dir: &Path, node: &str) -> Result<(), LabError> {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating the config dir", e))?;
        let profile = match &self.bfd_profile {
            Some(spec) => format!(
                "---\napiVersion: ferrolb.io/v1beta1\nkind: BFDProfile\nmetadata: {{name: fast}}\nspec: {spec}\n"
            ),
            None => String::new(),
        };
        let mut peer = format!(
            "myASN: {NODE_ASN}, peerASN: {ROUTER_ASN}, peerAddress: {}, holdTime: {}, connectTime: 1s",
            self.router, self.hold_time
        );
        if self.bfd_profile.is_some() {
            peer += ", bfdProfile: fast";
        }
        if self.graceful_restart {
            peer += ", enableGracefulRestart: true";
        }
        if self.ebgp_multihop {
            peer += ", ebgpMultiHop: true";
        }
        let pool = &self.pool;
        let yaml = format!(
            r#"apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {{name: routed}}
spec: {{addresses: ["{pool}"]}}
---
apiVersion: ferrolb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: routed}}
spec: {{ipAddressPools: [routed]}}
{profile}---
apiVersion: ferrolb.io/v1beta1
kind: BGPPeer
metadata: {{name: router}}
spec: {{{peer}}}
---
apiVersion: v1
kind: Node
metadata: {{name: {node}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}
"#
        );
        std::fs::write(dir.join("config.yaml"), yaml)
            .map_err(|e| LabError::io("writing the config", e))
    }
}

/// `ferrolb standalone` announcing from `node` with the directory `conf` (no listener: it
/// connects to the router).
pub fn spawn(node: &Host, bin: &Path, conf: &Path) -> Result<Process, LabError> {
    let secret = node.workdir().join("secret");
    std::fs::write(&secret, "bgp-host-membership-secret-0123456789")
        .map_err(|e| LabError::io("writing the secret", e))?;
    let state = node.workdir().join("state.json");
    let addr = format!("{}:7946", node.ipv4);
    let s = |p: &Path| {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| LabError::Invalid(format!("not UTF-8: {}", p.display())))
    };
    node.spawn(&[
        &s(bin)?,
        "standalone",
        "--interval-ms",
        "100",
        "--config",
        &s(conf)?,
        "--state",
        &s(&state)?,
        "--node",
        &node.name,
        "--membership-addr",
        &addr,
        "--membership-secret-file",
        &s(&secret)?,
        "--bgp-listen-port",
        "0",
    ])
}

/// Whether the router holds a route for `prefix` (e.g. `10.100.0.0/32`).
pub fn has_route(router: &dyn BgpDaemon, prefix: &str) -> bool {
    router
        .routes(crate::lab::Afi::Ipv4)
        .unwrap_or_default()
        .iter()
        .any(|r| r.prefix.to_string() == prefix)
}
