//! Checks of `deploy/` and the `Dockerfile`: the generated files are current, every object of the
//! plain manifest (and of the chart rendered with each values file) parses as the Kubernetes type
//! it claims to be, losing no field, the chart's controller RBAC equals `kubernetes/src/rbac/controller.rs`,
//! the pods are locked down as documented, the controller flags the chart passes exist, the
//! example configs build, the Dockerfile is multi-stage, non-root and copies the workspace's
//! binaries, and `helm lint --strict` passes with every values file.
//!
//! Every rendering is real Helm's (`helm template`, built by `scripts/build-tools.sh`); the
//! generated files are checked by `deploy/generate.sh --check` (python3 with PyYAML for the
//! example values). Installing on a real API server: tests/tests/k8s_install.rs.
//! Run alone with `cargo test -p ferrolb-tests --test deploy`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn files_in(rel: &str, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join(rel))
        .unwrap_or_else(|e| panic!("listing {rel}: {e}"))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    names
}

/// Runs a command from the workspace root; panics with its output unless it succeeds.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (is it installed?)"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The YAML documents of a stream, as JSON values, empty ones dropped.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind_of(doc: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&doc["apiVersion"]),
        s(&doc["kind"]),
        s(&doc["metadata"]["name"]),
    )
}

/// Equal as Kubernetes would read them: numbers by value (255 == 255.0).
fn same(a: &Value, b: &Value, path: &str, diffs: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()).collect::<BTreeSet<_>>() {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => same(p, q, &format!("{path}.{k}"), diffs),
                    (Some(p), None) => {
                        diffs.push(format!("{path}.{k} = {p} is lost (unknown field?)"))
                    }
                    (None, Some(q)) => diffs.push(format!("{path}.{k} = {q} appears")),
                    (None, None) => unreachable!(),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                same(p, q, &format!("{path}[{i}]"), diffs);
            }
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a == b => {}
        _ => diffs.push(format!("{path}: {a} became {b}")),
    }
}

/// Parses `doc` as `T` (whose Deserialize checks apiVersion and kind) and requires that
/// serialising it again gives the same object: a misspelt or misplaced field fails here.
fn strict<T: DeserializeOwned + serde::Serialize>(doc: &Value) -> Result<T, String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut diffs = Vec::new();
    same(doc, &back, "", &mut diffs);
    if diffs.is_empty() {
        Ok(typed)
    } else {
        Err(diffs.join("\n"))
    }
}

/// Every object a rendering of the chart may hold, parsed as its type. Returns the typed objects
/// that later checks look at; ferrolb.io objects are checked with the config model instead.
#[derive(Default)]
struct Objects {
    deployments: Vec<Deployment>,
    daemonsets: Vec<DaemonSet>,
    cluster_roles: Vec<ClusterRole>,
    roles: Vec<Role>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    role_bindings: Vec<RoleBinding>,
    service_accounts: Vec<ServiceAccount>,
    crds: Vec<CustomResourceDefinition>,
    kinds: Vec<String>,
    config_yaml: String,
    rules: Vec<Value>,
    config_maps: Vec<k8s_openapi::api::core::v1::ConfigMap>,
}

fn parse_objects(text: &str, source: &str) -> Objects {
    let mut o = Objects::default();
    let mut errors = Vec::new();
    for doc in documents(text) {
        let (api, kind, name) = kind_of(&doc);
        let what = format!("{source}: {api} {kind} {name}");
        let result = match (api.as_str(), kind.as_str()) {
            ("v1", "Namespace") => strict::<Namespace>(&doc).map(drop),
            ("v1", "ServiceAccount") => strict(&doc).map(|x| o.service_accounts.push(x)),
            ("v1", "Secret") => strict::<Secret>(&doc).map(drop),
            ("v1", "Service") => strict::<Service>(&doc).map(drop),
            ("apps/v1", "Deployment") => strict(&doc).map(|x| o.deployments.push(x)),
            ("apps/v1", "DaemonSet") => strict(&doc).map(|x| o.daemonsets.push(x)),
            ("policy/v1", "PodDisruptionBudget") => strict::<PodDisruptionBudget>(&doc).map(drop),
            ("networking.k8s.io/v1", "NetworkPolicy") => strict::<NetworkPolicy>(&doc).map(drop),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                strict(&doc).map(|x| o.cluster_roles.push(x))
            }
            ("rbac.authorization.k8s.io/v1", "Role") => strict(&doc).map(|x| o.roles.push(x)),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                strict(&doc).map(|x| o.cluster_role_bindings.push(x))
            }
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                strict(&doc).map(|x| o.role_bindings.push(x))
            }
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                strict(&doc).map(|x| o.crds.push(x))
            }
            ("ferrolb.io/v1beta1", _) => {
                // Read below with the config model (ferrolb_config).
                o.config_yaml += &format!("---\n{}", serde_yaml::to_string(&doc).unwrap());
                Ok(())
            }
            // The Prometheus Operator's kinds: no Rust types here; check their shape by hand.
            ("monitoring.coreos.com/v1", "ServiceMonitor") => monitor(&doc, "endpoints"),
            ("monitoring.coreos.com/v1", "PodMonitor") => monitor(&doc, "podMetricsEndpoints"),
            ("monitoring.coreos.com/v1", "PrometheusRule") => {
                let groups = doc["spec"]["groups"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if groups.is_empty() {
                    Err("a PrometheusRule without groups".into())
                } else {
                    o.rules.push(doc.clone());
                    Ok(())
                }
            }
            ("v1", "ConfigMap") => {
                strict::<k8s_openapi::api::core::v1::ConfigMap>(&doc).map(|x| o.config_maps.push(x))
            }
            _ => Err("a kind this test does not know: add it here with its type".to_string()),
        };
        if let Err(e) = result {
            errors.push(format!("{what}:\n{e}"));
        }
        o.kinds.push(kind);
    }
    assert!(
        errors.is_empty(),
        "objects that do not parse as their kind:\n{}",
        errors.join("\n\n")
    );
    if !o.config_yaml.is_empty() {
        let docs = ferrolb_config::parse_documents(&o.config_yaml)
            .unwrap_or_else(|e| panic!("{source}: config objects: {e}"));
        // A Secret a peer refers to may sit elsewhere in the stream: add the typed Secrets.
        let mut raw = docs.config;
        for doc in documents(text) {
            if kind_of(&doc).1 == "Secret" {
                raw.secrets.push(serde_json::from_value(doc).unwrap());
            }
        }
        ferrolb_config::build(&raw)
            .unwrap_or_else(|e| panic!("{source}: config objects do not build: {e:?}"));
    }
    o
}

fn monitor(doc: &Value, endpoints: &str) -> Result<(), String> {
    let spec = &doc["spec"];
    let ok = spec["selector"]["matchLabels"].is_object()
        && spec[endpoints].as_array().is_some_and(|e| {
            !e.is_empty()
                && e.iter()
                    .all(|p| p["port"] == "metrics" && p["path"] == "/metrics")
        });
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected monitor spec: {spec}"))
    }
}

fn manifest() -> Objects {
    parse_objects(
        &read("deploy/manifests/ferrolb.yaml"),
        "deploy/manifests/ferrolb.yaml",
    )
}

/// Helm, or `None` (with a skip message, or a panic under CI=true) when it is not built.
fn helm() -> Option<String> {
    if !ferrolb_tests::cluster::require_cluster() {
        return None;
    }
    let tools = ferrolb_tests::cluster::tools().ok()?;
    Some(tools.helm.display().to_string())
}

/// `helm template` of the chart (release ferrolb in ferrolb-system) with `values` files.
fn helm_template(helm: &str, values: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(helm);
    cmd.args([
        "template",
        "ferrolb",
        "deploy/helm/ferrolb",
        "--namespace",
        "ferrolb-system",
    ]);
    for v in values {
        cmd.args(["-f", v]);
    }
    let out = cmd
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {helm}: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The chart rendered by Helm with one values file.
fn render_with(helm: &str, values: &str) -> Objects {
    let text =
        helm_template(helm, &[values]).unwrap_or_else(|e| panic!("helm template -f {values}: {e}"));
    parse_objects(&text, values)
}

/// Every values file the chart is checked with (besides its defaults).
fn values_files() -> Vec<String> {
    let mut files = vec!["deploy/manifests/values.yaml".to_string()];
    for dir in ["deploy/examples/values", "deploy/helm/ferrolb/ci"] {
        files.extend(
            files_in(dir, ".yaml")
                .into_iter()
                .map(|n| format!("{dir}/{n}")),
        );
    }
    files
}

#[test]
fn generated_files_are_current() {
    let Some(helm) = helm() else { return };
    // The chart's crds/ are byte copies of what crdgen writes.
    let source = files_in("deploy/crds", ".yaml");
    let copies = files_in("deploy/helm/ferrolb/crds", ".yaml");
    assert_eq!(
        source, copies,
        "deploy/helm/ferrolb/crds/ lists other files than deploy/crds/"
    );
    for n in &source {
        assert_eq!(
            read(&format!("deploy/crds/{n}")),
            read(&format!("deploy/helm/ferrolb/crds/{n}")),
            "deploy/helm/ferrolb/crds/{n} is stale: run deploy/generate.sh"
        );
    }
    // Everything generated (CRDs, the manifest by `helm template`, the example values), made
    // again and compared byte for byte.
    let out = Command::new("deploy/generate.sh")
        .arg("--check")
        .env("HELM", &helm)
        .current_dir(root())
        .output()
        .expect("deploy/generate.sh runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = read("deploy/manifests/ferrolb.yaml");
    assert!(manifest.starts_with("# Generated by deploy/generate.sh: helm template"));
    assert!(manifest.contains("Do not edit."));
    for n in files_in("deploy/examples/values", ".yaml") {
        assert!(read(&format!("deploy/examples/values/{n}")).starts_with("# Generated by"));
    }
}

#[test]
fn manifest_objects_parse_as_their_kinds() {
    let o = manifest();
    let count = |k: &str| o.kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("Namespace"), 1);
    assert_eq!(
        count("CustomResourceDefinition"),
        files_in("deploy/crds", ".yaml").len()
    );
    assert_eq!(count("Deployment"), 1);
    assert_eq!(count("DaemonSet"), 1);
    assert_eq!(count("ServiceAccount"), 2);
    assert_eq!(count("ClusterRole"), 2);
    assert_eq!(count("ClusterRoleBinding"), 2);
    assert_eq!(count("Role"), 2);
    assert_eq!(count("RoleBinding"), 2);
    assert_eq!(count("PodDisruptionBudget"), 1);
    // No per-cluster secret in a public file (deploy/README.md: created at install).
    assert_eq!(
        count("Secret"),
        0,
        "the plain manifest must not carry a membership key"
    );
    // ... so its controller creates the Secret the speakers mount (one-command install).
    let speaker = o.daemonsets[0].spec.template.spec.as_ref().unwrap();
    let mounted =
        secret_volume(speaker, "membership").expect("the speaker mounts the membership Secret");
    let controller = &o.deployments[0]
        .spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert!(
        args(controller).contains(&format!("--membership-secret-name={mounted}")),
        "the manifest's controller must create the Secret {mounted}: {:?}",
        args(controller)
    );
    // CRDs first (Helm's crds/), then the Namespace before anything that lives in it.
    let namespace_at = o.kinds.iter().position(|k| k == "Namespace").unwrap();
    assert!(
        o.kinds[..namespace_at]
            .iter()
            .all(|k| k == "CustomResourceDefinition")
    );
    let crd_last = o
        .kinds
        .iter()
        .rposition(|k| k == "CustomResourceDefinition")
        .unwrap();
    assert!(
        o.kinds[..crd_last]
            .iter()
            .all(|k| k != "Deployment" && k != "DaemonSet")
    );
    // The CRDs are the generated ones.
    let names: BTreeSet<String> = o
        .crds
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    let files: BTreeSet<String> = files_in("deploy/crds", ".yaml")
        .into_iter()
        .map(|n| n.trim_end_matches(".yaml").to_string())
        .collect();
    assert_eq!(names, files);
}

#[test]
fn chart_renders_with_every_values_file() {
    let Some(helm) = helm() else { return };
    let defaults = parse_objects(&helm_template(&helm, &[]).unwrap(), "defaults");
    assert_eq!(defaults.daemonsets.len(), 1);
    for values in values_files() {
        let o = render_with(&helm, &values);
        assert_eq!(
            o.deployments.len(),
            1,
            "{values}: one controller Deployment"
        );
    }
    // Optional parts appear when switched on, the speaker goes with both announcers off.
    let all = render_with(&helm, "deploy/helm/ferrolb/ci/all-features-values.yaml");
    for k in [
        "ServiceMonitor",
        "PodMonitor",
        "NetworkPolicy",
        "Service",
        "IPAddressPool",
    ] {
        assert!(all.kinds.iter().any(|x| x == k), "all-features: no {k}");
    }
    let controller_only = render_with(&helm, "deploy/helm/ferrolb/ci/controller-only-values.yaml");
    assert!(controller_only.daemonsets.is_empty());
    assert!(
        !controller_only
            .kinds
            .iter()
            .any(|k| k == "PodDisruptionBudget"),
        "1 replica: no PDB"
    );
    // Values the binaries cannot honour are refused with a message.
    let dir = std::env::temp_dir().join(format!("ferrolb-deploy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body, message) in [
        (
            "tls.yaml",
            "metrics:\n  tls:\n    enabled: true\n",
            "metrics.tls.enabled needs metrics.tls.secretName",
        ),
        (
            "replicas.yaml",
            "controller:\n  leaderElection:\n    enabled: false\n",
            "needs controller.leaderElection.enabled",
        ),
        (
            "both-secrets.yaml",
            "speaker:\n  membership:\n    controllerCreatesSecret: true\n",
            "not both",
        ),
        (
            "burst.yaml",
            "speaker:\n  l2:\n    burstIntervalMs: 0\n",
            "speaker.l2.burstIntervalMs must be between 1 and 60000",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        match helm_template(&helm, &[path.to_str().unwrap()]) {
            Ok(_) => panic!("{name}: rendered, but {message:?} should refuse it"),
            Err(stderr) => assert!(stderr.contains(message), "{name}: {stderr}"),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The membership key: generated (64 characters) at each fresh rendering, kept on uninstall;
/// and it is the Secret the speaker mounts. (That `helm upgrade` keeps it, through `lookup`, is
/// seen on a real API server in tests/tests/k8s_install.rs.)
#[test]
fn membership_secret_is_generated_once_and_kept() {
    let Some(helm) = helm() else { return };
    let secret_of = |text: &str| -> Secret {
        let doc = documents(text)
            .into_iter()
            .find(|d| kind_of(d).1 == "Secret")
            .expect("a Secret");
        strict(&doc).unwrap()
    };
    let key = |s: &Secret| s.data.as_ref().unwrap()["secretkey"].0.clone();
    let first_text = helm_template(&helm, &[]).unwrap();
    let first = secret_of(&first_text);
    let second = secret_of(&helm_template(&helm, &[]).unwrap());
    assert_eq!(key(&first).len(), 64);
    assert!(key(&first).iter().all(u8::is_ascii_alphanumeric));
    assert_ne!(
        key(&first),
        key(&second),
        "a fresh install gets a random key"
    );
    let annotations = first.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["helm.sh/resource-policy"], "keep");
    let o = parse_objects(&first_text, "defaults");
    let pod = o.daemonsets[0].spec.template.spec.as_ref().unwrap();
    assert_eq!(secret_volume(pod, "membership"), first.metadata.name);
}

/// The Secret behind the pod's volume `volume`, if it is a Secret volume.
fn secret_volume(pod: &k8s_openapi::api::core::v1::PodSpec, volume: &str) -> Option<String> {
    (pod.volumes.iter().flatten())
        .find(|v| v.name == volume)
        .and_then(|v| v.secret.as_ref())
        .and_then(|s| s.secret_name.clone())
}

fn args(c: &k8s_openapi::api::core::v1::Container) -> Vec<String> {
    c.args.clone().unwrap_or_default()
}

#[test]
fn pods_are_locked_down() {
    let Some(helm) = helm() else { return };
    let o = manifest();
    // Controller: 2 replicas electing a leader, non-root, read-only, no capabilities.
    let d = &o.deployments[0];
    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.as_ref().unwrap();
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_ne!(psc.run_as_user, Some(0));
    let c = &pod.containers[0];
    assert!(args(c).contains(&"--leader-elect=true".to_string()));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(caps.add.is_none());
    assert!(c.resources.as_ref().unwrap().limits.is_some());
    assert!(c.resources.as_ref().unwrap().requests.is_some());
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(probe_path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(probe_path(&c.readiness_probe).as_deref(), Some("/readyz"));

    // Speaker: host network, NET_RAW and NET_ADMIN, and NET_BIND_SERVICE for the BGP listener
    // on port 179 (below, without it: none); not privileged, read-only, on control-plane nodes
    // too, with the membership key mounted.
    let pod = o.daemonsets[0].spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(
        added_capabilities(c),
        BTreeSet::from(["NET_RAW", "NET_ADMIN", "NET_BIND_SERVICE"])
    );
    assert!(
        args(c).contains(&"--bgp-listen-port=179".to_string()),
        "{:?}",
        args(c)
    );
    let tolerated: BTreeSet<&str> = pod
        .tolerations
        .iter()
        .flatten()
        .filter_map(|t| t.key.as_deref())
        .collect();
    assert!(tolerated.contains("node-role.kubernetes.io/control-plane"));
    assert_eq!(probe_path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(probe_path(&c.readiness_probe).as_deref(), Some("/readyz"));
    let a = args(c);
    for flag in [
        "--metrics-addr=",
        "--membership-port=",
        "--membership-secret-file=",
        "--exclude-interfaces=",
    ] {
        assert!(
            a.iter().any(|x| x.starts_with(flag)),
            "speaker lacks {flag}: {a:?}"
        );
    }
    let env: BTreeSet<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(env.contains("NODE_NAME") && env.contains("POD_NAMESPACE"));
    assert!(c.resources.as_ref().unwrap().limits.is_some());

    // Without the BGP listener, and no port below 1024: NET_RAW and NET_ADMIN only.
    let values =
        std::env::temp_dir().join(format!("ferrolb-no-listener-{}.yaml", std::process::id()));
    std::fs::write(&values, "speaker:\n  bgp:\n    listenPort: 0\n").unwrap();
    let quiet = render_with(&helm, values.to_str().unwrap());
    let _ = std::fs::remove_file(&values);
    let c = speaker_container(&quiet);
    assert_eq!(
        added_capabilities(c),
        BTreeSet::from(["NET_RAW", "NET_ADMIN"])
    );
    assert!(
        args(c).contains(&"--bgp-listen-port=0".to_string()),
        "{:?}",
        args(c)
    );

    // A port below 1024 adds NET_BIND_SERVICE, nothing else.
    let all = render_with(&helm, "deploy/helm/ferrolb/ci/all-features-values.yaml");
    assert_eq!(
        added_capabilities(speaker_container(&all)),
        BTreeSet::from(["NET_RAW", "NET_ADMIN", "NET_BIND_SERVICE"])
    );
}

/// The speaker DaemonSet's container.
fn speaker_container(o: &Objects) -> &k8s_openapi::api::core::v1::Container {
    &o.daemonsets[0]
        .spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

/// The capabilities a container adds.
fn added_capabilities(c: &k8s_openapi::api::core::v1::Container) -> BTreeSet<&str> {
    let caps = c
        .security_context
        .as_ref()
        .unwrap()
        .capabilities
        .as_ref()
        .unwrap();
    caps.add.iter().flatten().map(String::as_str).collect()
}

/// (group, resource, verb) triples of RBAC rules; wildcards and name/URL rules are refused.
fn triples(rules: &[PolicyRule], what: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        assert!(
            r.resource_names.is_none() && r.non_resource_urls.is_none(),
            "{what}: {r:?}"
        );
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    assert!(
                        !g.contains('*') && !res.contains('*') && !v.contains('*'),
                        "{what}: wildcard in {r:?}"
                    );
                    assert!(
                        out.insert((g.clone(), res.clone(), v.clone())),
                        "{what}: repeated {g} {res} {v}"
                    );
                }
            }
        }
    }
    out
}

fn code_triples(rules: &[ferrolb_kubernetes::rbac::Rule]) -> Triples {
    rules
        .iter()
        .flat_map(|r| {
            r.verbs
                .iter()
                .map(move |v| (r.group.to_string(), r.resource.to_string(), v.to_string()))
        })
        .collect()
}

/// RBAC grants as (API group, resource, verb).
type Triples = BTreeSet<(String, String, String)>;

/// The chart grants the account `who` (ClusterRole and Role of that name) exactly `cluster` and
/// `namespaced`.
fn assert_roles_grant(o: &Objects, who: &str, cluster: Triples, namespaced: Triples) {
    let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.name.clone().unwrap_or_default()
    };
    let cluster_role = (o.cluster_roles.iter())
        .find(|r| name(&r.metadata) == who)
        .unwrap_or_else(|| panic!("no ClusterRole {who}"));
    let role = (o.roles.iter())
        .find(|r| name(&r.metadata) == who)
        .unwrap_or_else(|| panic!("no Role {who}"));
    let what = format!("{who} ClusterRole");
    assert_eq!(
        triples(cluster_role.rules.as_deref().unwrap_or_default(), &what),
        cluster,
        "chart {what} vs the code's list"
    );
    let what = format!("{who} Role");
    assert_eq!(
        triples(role.rules.as_deref().unwrap_or_default(), &what),
        namespaced,
        "chart {what} vs the code's list"
    );
}

#[test]
fn controller_rbac_matches_the_code() {
    let Some(helm) = helm() else { return };
    use ferrolb_kubernetes::rbac::controller::{
        CLUSTER_RULES, MEMBERSHIP_SECRET_RULES, NAMESPACE_RULES,
    };
    let o = manifest();
    let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.name.clone().unwrap_or_default()
    };
    let namespaced = || -> Triples { code_triples(NAMESPACE_RULES) };
    // The plain manifest: the controller creates the membership Secret, so it may create Secrets.
    let mut with_create = namespaced();
    with_create.extend(code_triples(MEMBERSHIP_SECRET_RULES));
    assert_roles_grant(
        &o,
        "ferrolb-controller",
        code_triples(CLUSTER_RULES),
        with_create,
    );
    // The chart's defaults: Helm makes the Secret; the controller may not create Secrets.
    assert_roles_grant(
        &render_with(&helm, "deploy/helm/ferrolb/values.yaml"),
        "ferrolb-controller",
        code_triples(CLUSTER_RULES),
        namespaced(),
    );
    // Every role: no wildcards, no repeats (triples checks).
    for r in &o.cluster_roles {
        triples(r.rules.as_deref().unwrap_or_default(), &name(&r.metadata));
    }
    for r in &o.roles {
        triples(r.rules.as_deref().unwrap_or_default(), &name(&r.metadata));
    }
    // Each binding ties its role to the ServiceAccount of the same name in the namespace.
    let accounts: BTreeSet<String> = o
        .service_accounts
        .iter()
        .map(|s| name(&s.metadata))
        .collect();
    for b in &o.cluster_role_bindings {
        assert_eq!(b.role_ref.name, name(&b.metadata));
        let s = &b.subjects.as_ref().unwrap()[0];
        assert!(s.kind == "ServiceAccount" && accounts.contains(&s.name));
        assert_eq!(s.namespace.as_deref(), Some("ferrolb-system"));
    }
    for b in &o.role_bindings {
        assert_eq!(b.role_ref.name, name(&b.metadata));
        assert!(accounts.contains(&b.subjects.as_ref().unwrap()[0].name));
    }
}

/// The chart's speaker roles grant exactly kubernetes/src/rbac/speaker.rs. (That the list covers every call
/// the speaker makes is seen on a real API server: the speakers run with their ServiceAccount's
/// token in tests/tests/k8s_lab.rs, where a missing permission is a 403.)
#[test]
fn speaker_rbac_matches_the_list() {
    use ferrolb_kubernetes::rbac::speaker::{CLUSTER_RULES, namespace_rules};
    assert_roles_grant(
        &manifest(),
        "ferrolb-speaker",
        code_triples(CLUSTER_RULES),
        code_triples(&namespace_rules()),
    );
}

/// The long flags a binary accepts, read from the clap `struct Args` of its main.rs.
/// The flags a ferrolb binary accepts, from its own `--help` (the binary `cargo build
/// --workspace` put next to this test's directory: target/debug/deps/deploy-HASH ->
/// target/debug/NAME).
fn flags_of(binary: &str) -> BTreeSet<String> {
    let path = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join(binary)))
        .expect("test binary path");
    let out = std::process::Command::new(&path)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it first: cargo build --workspace)",
                path.display()
            )
        });
    assert!(out.status.success(), "{} --help failed", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|t| t.starts_with("--"))
        .map(|t| {
            t.trim_end_matches(',')
                .split('=')
                .next()
                .unwrap_or(t)
                .to_string()
        })
        .collect()
}

#[test]
fn flags_in_the_chart_exist() {
    let Some(helm) = helm() else { return };
    let controller = flags_of("ferrolb-controller");
    assert!(
        controller.contains("--metrics-addr") && controller.contains("--leader-elect"),
        "{controller:?}"
    );
    let speaker = flags_of("ferrolb-speaker");
    assert!(speaker.contains("--membership-secret-file"), "{speaker:?}");
    for values in values_files() {
        let o = render_with(&helm, &values);
        let pods = (o.deployments.iter())
            .map(|d| (&controller, "controller", &d.spec.template))
            .chain(
                o.daemonsets
                    .iter()
                    .map(|d| (&speaker, "speaker", &d.spec.template)),
            );
        for (known, who, template) in pods {
            for c in &template.spec.as_ref().unwrap().containers {
                for a in args(c) {
                    let flag = a.split('=').next().unwrap();
                    assert!(
                        known.contains(flag),
                        "{values}: the {who} has no flag {flag}"
                    );
                }
            }
        }
    }
}

#[test]
fn examples_build_as_config() {
    let names = files_in("deploy/examples", ".yaml");
    for n in [
        "l2-only.yaml",
        "bgp-only.yaml",
        "dual-stack.yaml",
        "shared-ip.yaml",
        "per-namespace-pools.yaml",
    ] {
        assert!(
            names.contains(&n.to_string()),
            "missing deploy/examples/{n}"
        );
    }
    for n in names {
        let text = read(&format!("deploy/examples/{n}"));
        let docs = ferrolb_config::parse_documents(&text)
            .unwrap_or_else(|e| panic!("deploy/examples/{n}: {e}"));
        let config = ferrolb_config::build(&docs.config)
            .unwrap_or_else(|e| panic!("deploy/examples/{n} does not build: {e:?}"));
        assert!(!config.pools.is_empty(), "{n}: no pool");
        assert!(
            !config.l2_advertisements.is_empty() || !config.bgp_advertisements.is_empty(),
            "{n}: nothing announces the pools"
        );
        // Config objects live in the namespace the controller reads.
        for doc in documents(&text) {
            let (api, kind, name) = kind_of(&doc);
            if api == "ferrolb.io/v1beta1" || kind == "Secret" {
                assert_eq!(
                    doc["metadata"]["namespace"], "ferrolb-system",
                    "{n}: {kind} {name}"
                );
            }
        }
        // The other objects (Services) are valid Kubernetes objects.
        for (i, other) in docs.others {
            strict::<Service>(&other).unwrap_or_else(|e| panic!("{n} document {i}: {e}"));
        }
    }
    let dual = ferrolb_config::build(
        &ferrolb_config::parse_documents(&read("deploy/examples/dual-stack.yaml"))
            .unwrap()
            .config,
    )
    .unwrap();
    let text = format!("{:?}", dual.pools["dual"]);
    assert!(
        text.contains("192.168.10.240") && text.contains("fd00:10::f0"),
        "{text}"
    );
}

#[test]
fn chart_version_follows_the_workspace() {
    let chart: Value = serde_yaml::from_str(&read("deploy/helm/ferrolb/Chart.yaml")).unwrap();
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion"
    );
    assert_eq!(chart["name"], "ferrolb");
}

/// `name = "..."` entries of [package] and [[bin]] sections, and whether src/main.rs exists:
/// the binaries a member builds.
fn workspace_binaries() -> BTreeMap<String, String> {
    let mut bins = BTreeMap::new();
    let ws = read("Cargo.toml");
    let members = ws
        .split("members = [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    for m in members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
    {
        let toml = read(&format!("{m}/Cargo.toml"));
        let mut section = String::new();
        let mut package = String::new();
        for line in toml.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_string();
            } else if let Some(v) = line.strip_prefix("name = ") {
                let v = v.trim_matches('"').to_string();
                if section == "[package]" {
                    package = v;
                    if root().join(m).join("src/main.rs").exists() {
                        bins.insert(package.clone(), package.clone());
                    }
                } else if section == "[[bin]]" {
                    bins.insert(v, package.clone());
                }
            }
        }
    }
    bins
}

#[test]
fn dockerfile_is_multistage_static_and_non_root() {
    let text = read("Dockerfile");
    // Logical lines (continuations joined), comments dropped.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut stages: Vec<(String, Vec<&str>)> = Vec::new();
    let mut args = BTreeMap::new();
    for l in &lines {
        let (instr, rest) = l.split_once(' ').unwrap_or((l, ""));
        match instr.to_ascii_uppercase().as_str() {
            "FROM" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let name = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                    _ => panic!("FROM without a stage name: {l}"),
                };
                stages.push((name, Vec::new()));
            }
            "ARG" if stages.is_empty() => {
                if let Some((k, v)) = rest.split_once('=') {
                    args.insert(k.to_string(), v.to_string());
                }
            }
            "ADD" => assert!(
                !rest.contains("http://") && !rest.contains("https://"),
                "ADD of a URL: {l}"
            ),
            _ => {}
        }
        if let Some(s) = stages.last_mut() {
            s.1.push(l);
        }
    }
    assert!(stages.len() >= 2, "not multi-stage");
    // The builder is a Rust image at least as new as the workspace's rust-version.
    let rust_image = args.get("RUST_IMAGE").expect("ARG RUST_IMAGE");
    let version = rust_image
        .strip_prefix("rust:")
        .expect("rust: image")
        .split('-')
        .next()
        .unwrap();
    let minor = |v: &str| v.split('.').nth(1).unwrap().parse::<u32>().unwrap();
    let ws = read("Cargo.toml");
    let required = ws
        .split("rust-version = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(
        minor(version) >= minor(required),
        "{rust_image} older than rust-version {required}"
    );
    // Static binaries: a musl target.
    assert!(text.contains("unknown-linux-musl"), "no musl target");

    let bins = workspace_binaries();
    let runtime: Vec<_> = stages.iter().filter(|(n, _)| n != "builder").collect();
    assert!(!runtime.is_empty());
    let builder = &stages
        .iter()
        .find(|(n, _)| n == "builder")
        .expect("builder stage")
        .1;
    let build = builder
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("cargo build");
    let mut shipped = BTreeSet::new();
    for (name, body) in runtime {
        // The final USER of every image is a non-root one.
        let user = body
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{name}: no USER"));
        let uid = user.split(':').next().unwrap().trim();
        assert!(uid != "0" && uid != "root", "{name}: USER {user}");
        // It copies a binary the workspace builds, built by the builder's cargo command.
        let copies: Vec<&str> = body
            .iter()
            .filter(|l| l.starts_with("COPY"))
            .copied()
            .collect();
        assert_eq!(copies.len(), 1, "{name}: {copies:?}");
        let bin = copies[0]
            .split_whitespace()
            .nth(2)
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        let package = bins
            .get(bin)
            .unwrap_or_else(|| panic!("{name}: {bin} is no workspace binary ({bins:?})"));
        assert!(
            build.contains(&format!("-p {package}")) && build.contains(&format!("--bin {bin}")),
            "{build}"
        );
        let entry = body
            .iter()
            .find_map(|l| l.strip_prefix("ENTRYPOINT "))
            .expect("ENTRYPOINT");
        assert!(
            entry.contains(&format!("/{bin}\"")),
            "{name}: ENTRYPOINT {entry}"
        );
        assert!(
            !body.iter().any(|l| l.starts_with("RUN")),
            "{name}: RUN in a shell-less image"
        );
        shipped.insert(bin.to_string());
    }
    assert_eq!(
        shipped,
        BTreeSet::from([
            "ferrolb-controller".to_string(),
            "ferrolb-speaker".to_string()
        ])
    );
    // The images the chart refers to are these stages.
    let values: Value = serde_yaml::from_str(&read("deploy/helm/ferrolb/values.yaml")).unwrap();
    assert_eq!(
        values["controller"]["image"]["repository"],
        "ferrolb/controller"
    );
    assert_eq!(values["speaker"]["image"]["repository"], "ferrolb/speaker");
}

#[test]
fn helm_lint_passes_with_every_values_file() {
    let Some(helm) = helm() else { return };
    let mut runs: Vec<Vec<String>> = vec![vec![]];
    runs.extend(
        values_files()
            .into_iter()
            .map(|v| vec!["-f".to_string(), v]),
    );
    for extra in runs {
        let mut args = vec![
            "lint".to_string(),
            "--strict".into(),
            "deploy/helm/ferrolb".into(),
        ];
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&helm, &args);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "helm lint {extra:?}: {out}"
        );
    }
}

/// metrics.tls: both pods get the flags, mount the Secret at the path the flags name, and
/// probe over HTTPS; without it, none of that.
#[test]
fn metrics_tls_is_wired_when_enabled() {
    let Some(helm) = helm() else { return };
    let with = render_with(&helm, "deploy/helm/ferrolb/ci/all-features-values.yaml");
    let without = manifest();
    let pods = |o: &Objects| -> Vec<k8s_openapi::api::core::v1::PodSpec> {
        (o.deployments
            .iter()
            .map(|d| d.spec.template.spec.clone().unwrap()))
        .chain(
            o.daemonsets
                .iter()
                .map(|d| d.spec.template.spec.clone().unwrap()),
        )
        .collect()
    };
    let tls_pods = pods(&with);
    assert_eq!(tls_pods.len(), 2);
    for pod in &tls_pods {
        let c = &pod.containers[0];
        let a = args(c);
        assert!(
            a.contains(&"--metrics-tls-cert=/etc/ferrolb/metrics-tls/tls.crt".to_string()),
            "{a:?}"
        );
        assert!(
            a.contains(&"--metrics-tls-key=/etc/ferrolb/metrics-tls/tls.key".to_string()),
            "{a:?}"
        );
        let mount = (c.volume_mounts.iter().flatten())
            .find(|m| m.mount_path == "/etc/ferrolb/metrics-tls")
            .expect("the TLS Secret mounted");
        assert_eq!(
            secret_volume(pod, &mount.name).as_deref(),
            Some("ferrolb-metrics-tls")
        );
        for probe in [&c.liveness_probe, &c.readiness_probe] {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
        }
    }
    for pod in pods(&without) {
        let c = &pod.containers[0];
        assert!(!args(c).iter().any(|a| a.starts_with("--metrics-tls")));
        let get = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(get.scheme, None);
    }
    // Enabled without a Secret name is refused: chart_renders_with_every_values_file.
}

/// The chart with every optional part on (rules and dashboard included).
const ALL_FEATURES: &str = "deploy/helm/ferrolb/ci/all-features-values.yaml";

/// The chart's alerts, evaluated by Prometheus's own rule engine (`promtool test rules`, built
/// from the Go module proxy by scripts/build-tools.sh): on series that fire each alert after its
/// `for`, and on series that must not fire it (the other node's session, a roomy pool, a pool
/// with no address of a family, the time before `for` has passed).
#[test]
fn alerts_fire_in_prometheus_rule_tests() {
    let Some(helm) = helm() else { return };
    let promtool = ferrolb_tests::cluster::tools().unwrap().promtool.clone();
    let o = render_with(&helm, ALL_FEATURES);
    assert_eq!(o.rules.len(), 1, "one PrometheusRule");
    let dir = tempfile::tempdir().unwrap();
    let rules = serde_json::json!({"groups": o.rules[0]["spec"]["groups"]});
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&rules).unwrap(),
    )
    .unwrap();
    let check = Command::new(&promtool)
        .args(["check", "rules", "rules.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let ns = "ferrolb-system";
    let tests = format!(
        r#"rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ferrolb_speaker_bgp_session_up{{instance="node0",peer="router"}}'
        values: '1 1 0 0 0 0 0'
      - series: 'ferrolb_speaker_bgp_session_up{{instance="node1",peer="router"}}'
        values: '1x6'
      - series: 'ferrolb_controller_pool_addresses{{instance="c0",pool="lan",family="ipv4"}}'
        values: '16x14'
      - series: 'ferrolb_controller_pool_addresses_in_use{{instance="c0",pool="lan",family="ipv4"}}'
        values: '10 10 15 15 15 15 15 15 16 16 16 16 16 16 16'
      - series: 'ferrolb_controller_pool_addresses{{instance="c0",pool="lan",family="ipv6"}}'
        values: '0x14'
      - series: 'ferrolb_controller_pool_addresses_in_use{{instance="c0",pool="lan",family="ipv6"}}'
        values: '0x14'
      - series: 'ferrolb_controller_pool_addresses{{instance="c0",pool="big",family="ipv4"}}'
        values: '1000x14'
      - series: 'ferrolb_controller_pool_addresses_in_use{{instance="c0",pool="big",family="ipv4"}}'
        values: '10x14'
      - series: 'ferrolb_controller_config_objects_refused{{instance="c0"}}'
        values: '0 0 2 2 2 2 2 2 2'
      - series: 'ferrolb_speaker_services_not_announced{{instance="node0"}}'
        values: '0 0 1 1 1 1'
      - series: 'ferrolb_speaker_services_not_announced{{instance="node1"}}'
        values: '0x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: FerrolbBGPSessionDown
        exp_alerts: []
      - eval_time: 5m
        alertname: FerrolbBGPSessionDown
        exp_alerts:
          - exp_labels: {{severity: warning, instance: node0, peer: router}}
            exp_annotations:
              summary: "BGP session of node0 with peer router is down"
              description: "The node advertises nothing to this router; `kubectl get bgpsessionstates -n {ns}` shows the session's state and last error."
      - eval_time: 6m
        alertname: FerrolbAddressPoolNearlyExhausted
        exp_alerts: []
      - eval_time: 7m
        alertname: FerrolbAddressPoolNearlyExhausted
        exp_alerts:
          - exp_labels: {{severity: warning, pool: lan, family: ipv4}}
            exp_annotations:
              summary: "Pool lan is 93.75% used (ipv4)"
      - eval_time: 12m
        alertname: FerrolbAddressPoolExhausted
        exp_alerts: []
      - eval_time: 13m
        alertname: FerrolbAddressPoolExhausted
        exp_alerts:
          - exp_labels: {{severity: critical, pool: lan, family: ipv4}}
            exp_annotations:
              summary: "Pool lan has no free ipv4 address"
              description: "New LoadBalancer Services of this family that this pool would serve stay pending."
      - eval_time: 6m
        alertname: FerrolbConfigInvalid
        exp_alerts: []
      - eval_time: 7m
        alertname: FerrolbConfigInvalid
        exp_alerts:
          - exp_labels: {{severity: warning}}
            exp_annotations:
              summary: "2 ferrolb configuration object(s) refused"
              description: "Each refused object keeps its last accepted version, if any; its Valid condition says why (`kubectl get ipaddresspools,l2advertisements,bgpadvertisements,bgppeers -n {ns}`)."
      - eval_time: 3m
        alertname: FerrolbAddressNotAnnounced
        exp_alerts: []
      - eval_time: 4m
        alertname: FerrolbAddressNotAnnounced
        exp_alerts:
          - exp_labels: {{severity: warning}}
            exp_annotations:
              summary: "1 LoadBalancer Service(s) have an address no node announces"
              description: "Their ferrolb.io/Announced condition says why; `kubectl ferrolb explain SERVICE` shows pools, nodes and sessions."
"#
    );
    std::fs::write(dir.path().join("tests.yaml"), tests).unwrap();
    let run = Command::new(&promtool)
        .args(["test", "rules", "tests.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Every series the shipped alerts and the Grafana dashboard query is one ferrolb exports (the
/// speaker's and the controller's metrics, with every family populated), so a renamed metric
/// cannot leave a silent alert or an empty panel behind.
#[test]
fn alerts_and_dashboard_query_exported_series() {
    let Some(helm) = helm() else { return };
    let o = render_with(&helm, ALL_FEATURES);
    let mut queries: Vec<String> = Vec::new();
    for group in o.rules[0]["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            queries.push(rule["expr"].as_str().unwrap().to_string());
        }
    }
    let dashboard = (o.config_maps.iter())
        .find_map(|c| c.data.as_ref()?.get("ferrolb.json").cloned())
        .expect("the dashboard ConfigMap");
    let dashboard: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(queries.len() >= 15, "{queries:?}");
    let exported = exported_series();
    let mut missing = Vec::new();
    for q in &queries {
        for name in q
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|w| w.starts_with("ferrolb_") || w.starts_with("metallb_"))
        {
            if !exported.contains(name) {
                missing.push(format!("{name} (in {q})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:#?}\nexported: {exported:#?}"
    );
}

/// The names of every series the speaker and the controller export, every family populated.
fn exported_series() -> BTreeSet<String> {
    use ferrolb_kubernetes::serve::Exporter;
    let speaker = ferrolb_speaker::metrics::SpeakerMetrics::default();
    let mut status = ferrolb_announce::l2::agent::AgentStatus::default();
    status
        .responder
        .interfaces
        .insert("eth0".into(), Default::default());
    status
        .responder
        .addresses
        .insert("10.0.0.1".parse().unwrap(), Default::default());
    speaker.record_l2(&status);
    let session = ferrolb_announce::bgp::SessionStatus {
        state: ferrolb_announce::bgp::State::Established,
        established_at: None,
        prefixes_sent: 1,
        updates_sent: 1,
        flaps: 0,
        last_error: Some("x".into()),
        failures: 0,
        updates_received: 0,
        updates_treated_as_withdraw: 0,
        last_notification: None,
    };
    speaker.record(
        &BTreeMap::from([("tor".to_string(), session)]),
        &BTreeMap::from([("tor".to_string(), "10.0.0.254".to_string())]),
    );
    speaker.record_refused(1);
    speaker.record_announced(&ferrolb_speaker::metrics::Announcing {
        node: "n".into(),
        layer2: ["10.0.0.1".parse().unwrap()].into(),
        services: [("10.0.0.1".parse().unwrap(), ["a/b".to_string()].into())].into(),
        ..Default::default()
    });
    speaker.record_not_announced(0);
    speaker.record_config(0);
    let controller = ferrolb_controller::metrics::Metrics::new();
    controller.set_pool("p", &Default::default());
    controller.set_config(0);
    controller.allocations.inc();
    controller.api_error("x");
    controller
        .allocation_failures
        .get_or_create(&ferrolb_controller::metrics::ReasonLabels { reason: "x".into() })
        .inc();
    controller.reconcile_seconds.observe(0.1);
    let mut names = BTreeSet::new();
    for text in [Exporter::encode(&speaker), controller.encode()] {
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            names.insert(name.to_string());
        }
    }
    names
}
