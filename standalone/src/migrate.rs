//! `ferrolb migrate`'s input: MetalLB's objects from YAML files, or from a cluster through
//! `kubectl` (so this binary keeps no Kubernetes client). The conversion itself is
//! [`ferrolb_config::migrate`].

use std::path::{Path, PathBuf};
use std::process::Command;

/// MetalLB's configuration resources, as `kubectl get` names them.
const METALLB_RESOURCES: [&str; 6] = [
    "ipaddresspools.metallb.io",
    "l2advertisements.metallb.io",
    "bgpadvertisements.metallb.io",
    "bgppeers.metallb.io",
    "bfdprofiles.metallb.io",
    "communities.metallb.io",
];

/// The text of `files` (`-` is standard input), one YAML stream.
pub fn read_files(files: &[PathBuf]) -> Result<String, String> {
    let mut text = String::new();
    for f in files {
        let part = if f == Path::new("-") {
            std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?
        } else {
            std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?
        };
        text.push_str("\n---\n");
        text.push_str(&part);
    }
    Ok(text)
}

/// MetalLB's objects in `namespace` of the cluster `kubectl` talks to, one YAML stream of
/// `List`s, and a note for each resource the cluster does not have.
pub fn read_cluster(kubectl: &Path, namespace: &str) -> Result<(String, Vec<String>), String> {
    let mut text = String::new();
    let mut notes = Vec::new();
    for resource in METALLB_RESOURCES {
        let out = Command::new(kubectl)
            .args(["get", resource, "-n", namespace, "-o", "yaml"])
            .output()
            .map_err(|e| format!("running {}: {e}", kubectl.display()))?;
        if out.status.success() {
            text.push_str("\n---\n");
            text.push_str(&String::from_utf8_lossy(&out.stdout));
            continue;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("the server doesn't have a resource type") {
            notes.push(format!("{resource}: not in this cluster"));
        } else {
            return Err(format!("kubectl get {resource}: {}", stderr.trim()));
        }
    }
    Ok((text, notes))
}
