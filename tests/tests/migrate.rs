//! `ferrolb migrate` (issue 13) on every configuration sample that ships with MetalLB (from its
//! pinned Go module, tools/metallb), checked by the config model and by a real API server with
//! ferrolb's CRDs, and the same samples with only their group renamed; and `--from-cluster`, reading MetalLB's objects from a real API server with
//! MetalLB's own CRDs installed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrolb_config::{LastGood, parse_documents};
use ferrolb_tests::cluster::{self, Cluster, ferrolb::NAMESPACE, ferrolb::RELEASE};
use serde::Deserialize;
use serde_json::Value;

/// MetalLB's module source (downloaded by Go into its module cache; no build).
fn metallb_source() -> PathBuf {
    let out = Command::new("go")
        .args(["mod", "download", "-json", "go.universe.tf/metallb"])
        .current_dir(cluster::workspace_root().join("tools/metallb"))
        .output()
        .expect("go (the test command installs it)");
    assert!(
        out.status.success(),
        "go mod download: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(info["Dir"].as_str().expect("Dir"))
}

/// `ferrolb migrate ARGS`: (stdout, report lines).
fn run_migrate(args: &[&str], envs: &[(&str, &Path)]) -> (String, Vec<String>) {
    let bin = cluster::ferrolb_binary("ferrolb").expect("the ferrolb binary (cargo build)");
    let mut cmd = Command::new(bin);
    cmd.arg("migrate").args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "ferrolb migrate {args:?}: {stderr}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr.lines().map(str::to_string).collect(),
    )
}

/// The MetalLB objects of a YAML stream: (kind, name, spec field names).
fn metallb_objects(text: &str) -> Vec<(String, String, BTreeSet<String>)> {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|d| Value::deserialize(d).ok())
        .filter(|v| {
            v["apiVersion"]
                .as_str()
                .is_some_and(|a| a.starts_with("metallb.io/"))
        })
        .map(|v| {
            let fields = v["spec"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            (
                v["kind"].as_str().unwrap_or("").to_string(),
                v["metadata"]["name"].as_str().unwrap_or("").to_string(),
                fields,
            )
        })
        .collect()
}

fn apply_dry_run(c: &Cluster, yaml: &str) -> Result<String, String> {
    c.kubectl_with_stdin(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        Some(yaml),
    )
    .map_err(|e| e.to_string())
}

#[test]
fn every_metallb_sample_migrates_and_the_api_server_and_the_model_accept_it() {
    if !cluster::require_cluster() {
        return;
    }
    let samples = metallb_source().join("configsamples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&samples)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "MetalLB ships {} samples", files.len());

    let c = Cluster::start().unwrap();
    c.helm_install(RELEASE, NAMESPACE, &["controller.replicas=1"])
        .unwrap();
    let mut objects = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(file).unwrap();
        let (yaml, report) = run_migrate(&[file.to_str().unwrap()], &[]);

        // Every MetalLB object is accounted for, and each of its spec fields either comes
        // over or has a line saying why not.
        let docs = parse_documents(&yaml).unwrap_or_else(|e| panic!("{name}: {e}\n{yaml}"));
        let out: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
            .filter_map(|d| Value::deserialize(d).ok())
            .collect();
        for (kind, object, fields) in metallb_objects(&text) {
            objects += 1;
            let migrated = out
                .iter()
                .find(|v| v["kind"] == kind.as_str() && v["metadata"]["name"] == object.as_str())
                .unwrap_or_else(|| panic!("{name}: {kind} {object} missing:\n{yaml}"));
            for field in fields {
                let said = report.iter().any(|l| {
                    l.starts_with(&format!("{kind} {object}: spec.{field} not carried over: "))
                });
                assert!(
                    migrated["spec"].get(&field).is_some() || said,
                    "{name}: {kind} {object}: spec.{field} neither carried nor reported\n{report:#?}"
                );
            }
            assert!(
                report
                    .iter()
                    .any(|l| l.starts_with(&format!("{kind} {object}: "))),
                "{name}: no line for {kind} {object}"
            );
        }

        // The config model accepts it all, but for the one sample whose Secret is not in it
        // (and the report tells the user to copy it).
        let built = LastGood::default().build(&docs.config);
        if name == "bgppeer_withsecret.yaml" {
            let refused: Vec<String> = built.errors.0.iter().map(|e| e.to_string()).collect();
            assert_eq!(
                refused,
                [
                    "BGPPeer ferrolb-system/peer-with-secret: spec.passwordSecret: Secret ferrolb-system/secretname: not found"
                ],
                "{name}"
            );
            assert!(
                report
                    .iter()
                    .any(|l| l.contains("to do: copy Secret metallb-system/secretname"))
            );
        } else {
            assert!(built.errors.0.is_empty(), "{name}: {}", built.errors);
        }

        // The real API server, with ferrolb's CRDs, accepts every object as it comes out.
        if !yaml.is_empty() {
            apply_dry_run(&c, &yaml).unwrap_or_else(|e| panic!("{name}: {e}\n{yaml}"));
        }
        // And the sample with nothing but its group (and namespace) renamed, as the brief
        // promises a MetalLB user: BGPPeer v1beta2, advertisements without spec and all.
        let renamed = text
            .replace("metallb.io/", "ferrolb.io/")
            .replace("metallb-system", "ferrolb-system");
        apply_dry_run(&c, &renamed).unwrap_or_else(|e| panic!("{name} renamed: {e}"));
        let docs = parse_documents(&renamed).unwrap_or_else(|e| panic!("{name} renamed: {e}"));
        let renamed_model = LastGood::default().build(&docs.config);
        assert_eq!(
            renamed_model.errors.0.len(),
            usize::from(name == "bgppeer_withsecret.yaml"),
            "{name} renamed: {}",
            renamed_model.errors
        );
    }
    assert!(objects >= 25, "{objects} MetalLB objects in the samples");
}

#[test]
fn from_cluster_reads_metallb_objects_from_the_api_server() {
    if !cluster::require_cluster() {
        return;
    }
    let source = metallb_source();
    let c = Cluster::start().unwrap();
    // MetalLB's CRDs as MetalLB ships them (the bases, without the conversion webhook).
    let bases = source.join("config/crd/bases");
    c.kubectl(&["apply", "--server-side", "-f", bases.to_str().unwrap()])
        .unwrap();
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/bgppeers.metallb.io",
        "crd/ipaddresspools.metallb.io",
        "crd/communities.metallb.io",
    ])
    .unwrap();
    c.create_namespace("metallb-system", &[]).unwrap();
    for sample in [
        "ipaddresspool_simple.yaml",
        "bgpadvertisement_community_alias.yaml",
        "bgppeer_with_bfdprofile.yaml",
        "l2adv_with_node_selector.yaml",
    ] {
        let path = source.join("configsamples").join(sample);
        c.kubectl(&["apply", "--server-side", "-f", path.to_str().unwrap()])
            .unwrap();
    }
    // kubectl with this cluster's credentials, as a user's would have them.
    let dir = tempdir();
    let kubectl = dir.join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\nexec {} --kubeconfig {} \"$@\"\n",
            c.tools().kubectl.display(),
            c.admin_kubeconfig().display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .args(["+x", kubectl.to_str().unwrap()])
        .status()
        .unwrap();
    let (yaml, report) = run_migrate(
        &["--from-cluster", "--kubectl", kubectl.to_str().unwrap()],
        &[],
    );
    let docs = parse_documents(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let built = LastGood::default().build(&docs.config);
    assert!(built.errors.0.is_empty(), "{}\n{yaml}", built.errors);
    assert_eq!(
        built.config.pools.keys().collect::<Vec<_>>(),
        ["example"],
        "{yaml}"
    );
    assert!(built.config.peers.contains_key("peer"), "{yaml}");
    assert!(
        built.config.bfd_profiles.contains_key("testbfdprofile"),
        "{yaml}"
    );
    assert_eq!(built.config.bgp_advertisements.len(), 1, "{yaml}");
    assert_eq!(built.config.l2_advertisements.len(), 1, "{yaml}");
    assert!(
        report.iter().all(|l| l.ends_with(": carried over")),
        "{report:#?}"
    );
    // And the server with ferrolb's CRDs takes the result.
    c.helm_install(RELEASE, NAMESPACE, &["controller.replicas=1"])
        .unwrap();
    apply_dry_run(&c, &yaml).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrolb-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
