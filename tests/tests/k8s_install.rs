//! Installing ferrolb as a user does, on a real kube-apiserver: `helm install` of the chart and
//! `kubectl apply --server-side` of the plain manifest. The controller then runs from the
//! installed Deployment's pod template with its ServiceAccount's token, so the server enforces
//! the chart's RBAC on every call it makes.

use std::time::Duration;

use ferrolb_tests::cluster::ferrolb::{CONTROLLER, NAMESPACE, RELEASE, SPEAKER};
use ferrolb_tests::cluster::{self, Cluster};
use ferrolb_tests::lab;
use serde_json::json;

const POOL: &str = r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: ferrolb-system}
spec: {addresses: ["10.0.0.200-10.0.0.209", "fd00::200-fd00::209"]}
"#;

/// The speakers' membership key as stored (base64).
fn membership_key(c: &Cluster) -> String {
    c.kubectl(&[
        "get",
        "secret",
        "ferrolb-memberlist",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.data.secretkey}",
    ])
    .unwrap()
}

/// What a ServiceAccount may do, asked of the server (`kubectl auth can-i --as`).
fn can(c: &Cluster, account: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let who = format!("--as=system:serviceaccount:{NAMESPACE}:{account}");
    let (resource, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(format!("--subresource={s}"))),
        None => (resource, None),
    };
    let mut args = vec!["auth", "can-i", verb, resource, who.as_str()];
    args.extend(sub.as_deref());
    match namespace {
        Some(ns) => args.extend_from_slice(&["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    // can-i exits 1 for "no".
    c.kubectl(&args).is_ok_and(|out| out.trim() == "yes")
}

/// The controller (from the Deployment, with its own token) assigns an address, explains a
/// refusal and reports an invalid config object on the object itself.
fn controller_serves(c: &Cluster) {
    let mut controller = c.start_controller("ferrolb-controller-test-0").unwrap();
    c.apply_yaml(POOL).unwrap();
    c.apply_service("default", "web", json!({}), json!({}))
        .unwrap();
    let ips = c
        .wait_ingress("default", "web", Duration::from_secs(30))
        .unwrap_or_else(|e| {
            panic!(
                "{e}\ncontroller log:\n{}",
                lab::tail(&controller.process.log(), 40)
            )
        });
    assert_eq!(ips.len(), 1);
    assert!(ips[0].to_string().starts_with("10.0.0.20"), "{ips:?}");
    let (status, reason, _) = c
        .service_condition("default", "web", "ferrolb.io/IPAllocated")
        .expect("the IPAllocated condition");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Allocated"));

    // An address outside every pool: pending, with the reason on the Service.
    c.apply_service(
        "default",
        "odd",
        json!({}),
        json!({"ferrolb.io/loadBalancerIPs": "10.9.9.9"}),
    )
    .unwrap();
    lab::wait_until(
        "the refusal on Service odd",
        Duration::from_secs(30),
        || {
            c.service_condition("default", "odd", "ferrolb.io/IPAllocated")
                .is_some_and(|(s, _, m)| s == "False" && m.contains("10.9.9.9"))
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}",
            c.service_condition("default", "odd", "ferrolb.io/IPAllocated")
        )
    });

    // An L2Advertisement naming a pool that does not exist (a typo): accepted, matching
    // nothing, and told on its Valid condition (issue 13, class 2), written with the
    // controller's own rights.
    c.apply_yaml(
        "apiVersion: ferrolb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: typo, namespace: ferrolb-system}\nspec: {ipAddressPools: [lann]}\n",
    )
    .unwrap();
    let valid = || {
        c.kubectl(&[
            "get",
            "l2advertisement",
            "typo",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Valid\")].status} {.status.conditions[?(@.type==\"Valid\")].message}",
        ])
        .unwrap_or_default()
    };
    lab::wait_until(
        "the note on the L2Advertisement",
        Duration::from_secs(30),
        || valid().contains("no IPAddressPool named \"lann\" yet"),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {}\ncontroller log:\n{}",
            valid(),
            lab::tail(&controller.process.log(), 40)
        )
    });
    assert!(valid().starts_with("True accepted; "), "{}", valid());
    // A refused one: an invalid address range the schema admits; Valid=False on it alone.
    c.apply_yaml(
        "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: backwards, namespace: ferrolb-system}\nspec: {addresses: [10.9.8.7-10.9.8.1]}\n",
    )
    .unwrap();
    lab::wait_until(
        "Valid=False on the backwards pool",
        Duration::from_secs(30),
        || {
            c.kubectl(&[
                "get",
                "ipaddresspool",
                "backwards",
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Valid\")].status}",
            ])
            .is_ok_and(|s| s.trim() == "False")
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\ncontroller log:\n{}",
            lab::tail(&controller.process.log(), 40)
        )
    });
    c.kubectl(&["delete", "ipaddresspool", "backwards", "-n", NAMESPACE])
        .unwrap();
    c.kubectl(&["delete", "l2advertisement", "typo", "-n", NAMESPACE])
        .unwrap();

    // A pool created in another namespace is not read, and says so on itself.
    c.create_namespace("team-a", &[]).unwrap();
    c.apply_yaml(
        "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: mine, namespace: team-a}\nspec: {addresses: [10.0.1.0/24]}\n",
    )
    .unwrap();
    lab::wait_until(
        "WrongNamespace on the pool in team-a",
        Duration::from_secs(30),
        || {
            c.kubectl(&[
                "get",
                "ipaddresspool",
                "mine",
                "-n",
                "team-a",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Valid\")].reason}",
            ])
            .is_ok_and(|s| s.trim() == "WrongNamespace")
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\ncontroller log:\n{}",
            lab::tail(&controller.process.log(), 40)
        )
    });
    let events = c.events_about("team-a", "mine");
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "WrongNamespace" && note.contains(NAMESPACE)),
        "a Warning event tells where the config belongs: {events:?}"
    );
    let (grace, clean) = controller.terminate();
    assert!(
        clean,
        "the controller exits on SIGTERM within its grace period (took {grace:?})"
    );
    // Leave the cluster as found, for what runs next.
    c.kubectl(&["delete", "service", "web", "odd", "-n", "default"])
        .unwrap();
    c.kubectl(&["delete", "ipaddresspool", "lan", "-n", NAMESPACE])
        .unwrap();
    c.kubectl(&["delete", "namespace", "team-a", "--wait=false"])
        .unwrap();
}

/// Every example in deploy/examples applies on the real server, each of its ferrolb.io objects
/// is accepted by the controller (Valid=True) and each of its Services gets an address; then it
/// is deleted before the next (their pools overlap on purpose: they are alternatives).
fn examples_apply_and_are_valid(c: &Cluster) {
    let mut controller = c.start_controller("ferrolb-controller-examples").unwrap();
    let dir = cluster::workspace_root().join("deploy/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let path = file.display().to_string();
        let applied = c
            .kubectl(&["apply", "--server-side", "-f", &path])
            .unwrap_or_else(|e| panic!("{path} applies on a real API server: {e}"));
        let objects: Vec<(String, String, String)> = applied
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|o| o.split_once('/'))
            .map(|(kind, name)| {
                let ns = if kind == "service" || kind == "namespace" {
                    "default"
                } else {
                    NAMESPACE
                };
                (kind.to_string(), name.to_string(), ns.to_string())
            })
            .collect();
        for (kind, name, ns) in &objects {
            if kind.ends_with(".ferrolb.io") {
                lab::wait_until(
                    &format!("{path}: {kind}/{name} Valid"),
                    Duration::from_secs(30),
                    || {
                        c.kubectl(&[
                            "get",
                            kind,
                            name,
                            "-n",
                            ns,
                            "-o",
                            "jsonpath={.status.conditions[?(@.type==\"Valid\")].status}",
                        ])
                        .is_ok_and(|s| s.trim() == "True")
                    },
                )
                .unwrap_or_else(|e| {
                    let status =
                        c.kubectl(&["get", kind, name, "-n", ns, "-o", "jsonpath={.status}"]);
                    panic!(
                        "{e}: {status:?}\n{}",
                        lab::tail(&controller.process.log(), 20)
                    )
                });
            }
        }
        for (kind, name, _) in objects.iter().filter(|(k, _, _)| k == "service") {
            let ns = c
                .kubectl(&[
                    "get",
                    "services",
                    "-A",
                    "--field-selector",
                    &format!("metadata.name={name}"),
                    "-o",
                    "jsonpath={.items[0].metadata.namespace}",
                ])
                .unwrap();
            c.wait_ingress(ns.trim(), name, Duration::from_secs(30))
                .unwrap_or_else(|e| {
                    let why = c.service_condition(ns.trim(), name, "ferrolb.io/IPAllocated");
                    panic!(
                        "{path}: {kind}/{name}: {e}: {why:?}\n{}",
                        lab::tail(&controller.process.log(), 20)
                    )
                });
        }
        c.kubectl(&["delete", "-f", &path, "--wait=true"]).unwrap();
    }
    controller.terminate();
}

#[test]
fn helm_install_on_a_real_apiserver() {
    if !cluster::require_cluster() {
        return;
    }
    let c = Cluster::start().unwrap();
    let out = c
        .helm_install(RELEASE, NAMESPACE, &[])
        .unwrap_or_else(|e| panic!("helm install of deploy/helm/ferrolb: {e}"));
    assert!(out.contains("STATUS: deployed"), "{out}");
    let status = c
        .helm(&["status", RELEASE, "-n", NAMESPACE, "-o", "json"])
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["info"]["status"], "deployed");
    for crd in [
        "ipaddresspools",
        "l2advertisements",
        "bgpadvertisements",
        "bgppeers",
        "bfdprofiles",
        "communities",
    ] {
        c.kubectl(&["get", "crd", &format!("{crd}.ferrolb.io")])
            .unwrap_or_else(|e| panic!("helm installed CRD {crd}: {e}"));
    }
    // Helm generated the speakers' membership key.
    let key = membership_key(&c);
    assert!(!key.trim().is_empty(), "the membership Secret has a key");

    // The server enforces the chart's RBAC: what each account may and may not do.
    assert!(can(&c, CONTROLLER, "patch", "services/status", None));
    assert!(can(
        &c,
        CONTROLLER,
        "patch",
        "l2advertisements.ferrolb.io/status",
        Some(NAMESPACE)
    ));
    assert!(!can(&c, CONTROLLER, "delete", "services", None));
    assert!(!can(&c, CONTROLLER, "get", "secrets", Some("default")));
    assert!(
        !can(&c, CONTROLLER, "create", "secrets", Some(NAMESPACE)),
        "Helm makes the key; the controller needs not"
    );
    assert!(can(
        &c,
        SPEAKER,
        "list",
        "endpointslices.discovery.k8s.io",
        None
    ));
    assert!(!can(&c, SPEAKER, "patch", "services", None));
    assert!(!can(&c, SPEAKER, "list", "secrets", Some("default")));

    controller_serves(&c);
    examples_apply_and_are_valid(&c);

    // A second revision with changed values upgrades in place and keeps the key.
    c.helm(&[
        "upgrade",
        RELEASE,
        &cluster::install::chart_dir().display().to_string(),
        "-n",
        NAMESPACE,
        "--set",
        "logging.level=debug",
    ])
    .unwrap();
    let kept = membership_key(&c);
    assert_eq!(kept, key, "helm upgrade keeps the membership key");
}

#[test]
fn plain_manifest_installs_with_server_side_apply() {
    if !cluster::require_cluster() {
        return;
    }
    let c = Cluster::start().unwrap();
    c.apply_manifest().unwrap_or_else(|e| {
        panic!("kubectl apply --server-side -f deploy/manifests/ferrolb.yaml: {e}")
    });
    // Applying it again changes nothing and conflicts with nothing.
    c.apply_manifest().unwrap();
    assert!(
        can(&c, CONTROLLER, "create", "secrets", Some(NAMESPACE)),
        "the manifest's controller makes the key"
    );
    controller_serves(&c);
    // The controller made the speakers' key at its first start.
    let key = membership_key(&c);
    assert!(
        !key.trim().is_empty(),
        "the controller created the membership Secret"
    );
}
