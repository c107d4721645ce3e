//! What `ferrolb explain` reads from a cluster, through `kubectl` (its usual flags, context and
//! KUBECONFIG apply), so that this binary keeps no Kubernetes client: Services, Namespaces,
//! Nodes, the Service's EndpointSlices, and the ferrolb.io objects with their status.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ferrolb_allocator::StalePolicy;
use ferrolb_config::api::BGPSessionState;
use serde::de::DeserializeOwned;

use crate::config_dir::Objects;
use crate::explain::{Source, World};

/// The config kinds, as `kubectl get` names them.
const CONFIG_RESOURCES: &str = "ipaddresspools.ferrolb.io,l2advertisements.ferrolb.io,\
bgpadvertisements.ferrolb.io,bgppeers.ferrolb.io,bfdprofiles.ferrolb.io,communities.ferrolb.io";

/// Runs `kubectl get ARGS -o json` and returns the items of the list.
fn items(kubectl: &Path, args: &[&str]) -> Result<Vec<serde_json::Value>, String> {
    let out = Command::new(kubectl)
        .arg("get")
        .args(args)
        .args(["-o", "json"])
        .output()
        .map_err(|e| format!("running {}: {e}", kubectl.display()))?;
    if !out.status.success() {
        return Err(format!(
            "kubectl get {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("kubectl get {}: not JSON: {e}", args.join(" ")))?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

fn typed<T: DeserializeOwned>(items: &[serde_json::Value], kind: &str) -> Result<Vec<T>, String> {
    (items.iter())
        .filter(|i| kind.is_empty() || i["kind"] == kind)
        .map(|i| {
            serde_json::from_value(i.clone()).map_err(|e| {
                format!(
                    "{kind} {}: {e}",
                    i["metadata"]["name"].as_str().unwrap_or("?")
                )
            })
        })
        .collect()
}

/// Reads what explaining a Service of `service_namespace` needs. `namespace` is ferrolb's.
/// Secrets are read if the caller may (a BGPPeer's password); otherwise a note says so.
pub fn read_world(
    kubectl: &Path,
    service_namespace: &str,
    namespace: &str,
    lb_class: Option<String>,
    stale_policy: StalePolicy,
) -> Result<(World, Vec<String>), String> {
    let mut notes = Vec::new();
    let mut objects = Objects {
        services: typed(&items(kubectl, &["services", "-A"])?, "")?,
        nodes: typed(&items(kubectl, &["nodes"])?, "")?,
        ..Objects::default()
    };
    let namespaces: Vec<k8s_openapi::api::core::v1::Namespace> =
        typed(&items(kubectl, &["namespaces"])?, "")?;
    let slices = typed(
        &items(
            kubectl,
            &["endpointslices.discovery.k8s.io", "-n", service_namespace],
        )?,
        "",
    )?;
    let config = items(kubectl, &[CONFIG_RESOURCES, "-n", namespace])?;
    let c = &mut objects.config;
    c.pools = typed(&config, "IPAddressPool")?;
    c.l2_advertisements = typed(&config, "L2Advertisement")?;
    c.bgp_advertisements = typed(&config, "BGPAdvertisement")?;
    c.peers = typed(&config, "BGPPeer")?;
    c.bfd_profiles = typed(&config, "BFDProfile")?;
    c.communities = typed(&config, "Community")?;
    if c.peers.iter().any(|p| p.spec.password_secret.is_some()) {
        match items(kubectl, &["secrets", "-n", namespace]) {
            Ok(s) => c.secrets = typed(&s, "")?,
            Err(e) => notes.push(format!(
                "BGPPeer passwords not read ({e}): peers with a passwordSecret show as refused"
            )),
        }
    }
    let sessions: Vec<BGPSessionState> =
        match items(kubectl, &["bgpsessionstates.ferrolb.io", "-n", namespace]) {
            Ok(s) => typed(&s, "")?,
            Err(e) => {
                notes.push(format!("BGP session states not read: {e}"));
                Vec::new()
            }
        };
    let world = World {
        objects,
        source: Source::Cluster {
            namespaces: (namespaces.into_iter())
                .filter_map(|n| Some((n.metadata.name?, n.metadata.labels.unwrap_or_default())))
                .collect::<BTreeMap<_, _>>(),
            slices,
            sessions: sessions.into_iter().filter_map(|s| s.status).collect(),
            lb_class,
        },
        stale_policy,
    };
    Ok((world, notes))
}
