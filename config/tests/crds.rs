//! The generated CRDs: committed YAML is current, and the in-object validation (CEL rules)
//! refuses malformed objects the way the API server would, evaluated here with kube's CEL engine.

use ferrolb_config::{api, crdgen};
use kube::core::cel::{ErrorKind, Validator};
use serde_json::{Value, json};

#[test]
fn committed_crd_yaml_matches_the_types() {
    let dir = crdgen::default_dir();
    let rendered = crdgen::render_all().expect("CRDs render");
    let mut stale = Vec::new();
    for (file, yaml) in &rendered {
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if &committed != yaml {
            stale.push(file.clone());
        }
    }
    let expected: std::collections::BTreeSet<String> =
        rendered.iter().map(|(f, _)| f.clone()).collect();
    let present: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("deploy/crds exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    let extra: Vec<_> = present.difference(&expected).collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "deploy/crds is stale (changed: {stale:?}, not generated: {extra:?}); run `cargo run -p ferrolb-config --bin crdgen`"
    );
}

#[test]
fn one_crd_per_kind_in_the_ferrolb_group() {
    let kinds: Vec<String> = api::crds()
        .iter()
        .map(|c| c.spec.names.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "IPAddressPool",
            "L2Advertisement",
            "BGPAdvertisement",
            "BGPPeer",
            "BFDProfile",
            "Community",
            "BGPSessionState"
        ]
    );
    for crd in api::crds() {
        assert_eq!(crd.spec.group, "ferrolb.io");
        assert_eq!(crd.spec.versions[0].name, "v1beta1");
        assert!(crd.spec.versions[0].storage && crd.spec.versions[0].served);
        // BGPPeer is also served as v1beta2, as MetalLB serves it: the same schema, not
        // stored, so no conversion is needed.
        if crd.spec.names.kind == "BGPPeer" {
            assert_eq!(crd.spec.versions.len(), 2);
            let alias = &crd.spec.versions[1];
            assert_eq!(alias.name, "v1beta2");
            assert!(alias.served && !alias.storage);
            assert_eq!(alias.schema, crd.spec.versions[0].schema);
            assert!(crd.spec.conversion.is_none());
        } else {
            assert_eq!(crd.spec.versions.len(), 1);
        }
    }
}

#[test]
fn ipaddresspool_printer_columns_show_addresses_auto_assign_and_counters() {
    let crd = api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "IPAddressPool")
        .unwrap();
    let columns: Vec<String> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.json_path.clone())
        .collect();
    for path in [
        ".spec.addresses",
        ".spec.autoAssign",
        ".status.assignedIPv4",
        ".status.availableIPv4",
        ".status.assignedIPv6",
        ".status.availableIPv6",
    ] {
        assert!(
            columns.iter().any(|c| c == path),
            "missing column {path} in {columns:?}"
        );
    }
    assert!(
        crd.spec.versions[0]
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "status subresource"
    );
}

fn schema(kind: &str) -> Value {
    let crd = api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("kind exists");
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema");
    serde_json::to_value(schema).expect("schema serializes")
}

fn object(kind: &str, spec: Value) -> Value {
    json!({"apiVersion": "ferrolb.io/v1beta1", "kind": kind, "metadata": {"name": "x", "namespace": "ferrolb-system"}, "spec": spec})
}

/// The messages of the CEL rules that refuse `spec`; panics if a rule does not compile or evaluate,
/// since the API server would refuse such a CRD or object outright.
fn refusals(kind: &str, spec: Value, old_spec: Option<Value>) -> Vec<String> {
    let old = old_spec.map(|s| object(kind, s));
    match Validator::new().validate(&schema(kind), &object(kind, spec), old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .as_slice()
            .iter()
            .map(|e| {
                assert_eq!(
                    e.kind,
                    ErrorKind::ValidationFailure,
                    "rule {:?} did not evaluate: {}",
                    e.rule,
                    e.message
                );
                e.message.clone()
            })
            .collect(),
    }
}

#[test]
fn cel_rules_refuse_malformed_objects() {
    struct Case {
        kind: &'static str,
        valid: Value,
        invalid: Value,
        message: &'static str,
    }
    let peer = |extra: Value| {
        let mut spec = json!({"myASN": 64512, "peerASN": 64513, "peerAddress": "10.0.0.1"});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        spec
    };
    let cases = [
        Case {
            kind: "IPAddressPool",
            valid: json!({"addresses": ["10.0.0.0/24", "10.0.1.1-10.0.1.9", "10.0.2.1 - 10.0.2.9", "fd00::/64", "fd00:1::1-fd00:1::9"]}),
            invalid: json!({"addresses": ["10.0.0.0/24", "not-an-address"]}),
            message: "each address must be a CIDR or a 'start-end' range of two addresses of one family",
        },
        Case {
            kind: "IPAddressPool",
            valid: json!({"addresses": ["10.0.0.1-10.0.0.9"]}),
            invalid: json!({"addresses": ["10.0.0.1-fd00::9"]}),
            message: "each address must be a CIDR or a 'start-end' range of two addresses of one family",
        },
        Case {
            kind: "BGPPeer",
            valid: peer(json!({"password": "x"})),
            invalid: peer(json!({"password": "x", "passwordSecret": {"name": "s"}})),
            message: "password and passwordSecret are mutually exclusive",
        },
        Case {
            kind: "BGPPeer",
            valid: peer(json!({"peerAddress": "fd00::1"})),
            invalid: peer(json!({"peerAddress": "router.local"})),
            message: "peerAddress must be an IP address",
        },
        Case {
            kind: "BGPPeer",
            valid: peer(json!({"routerID": "10.9.9.9"})),
            invalid: peer(json!({"routerID": "fd00::9"})),
            message: "routerID must be an IPv4 address",
        },
        Case {
            kind: "BGPPeer",
            valid: peer(json!({"sourceAddress": "10.0.0.2"})),
            invalid: peer(json!({"sourceAddress": "node-a"})),
            message: "sourceAddress must be an IP address",
        },
    ];
    for case in cases {
        assert_eq!(
            refusals(case.kind, case.valid.clone(), None),
            Vec::<String>::new(),
            "{} valid {}",
            case.kind,
            case.valid
        );
        let got = refusals(case.kind, case.invalid.clone(), None);
        assert!(
            got.iter().any(|m| m == case.message),
            "{} invalid {}: got {got:?}",
            case.kind,
            case.invalid
        );
    }
}

/// Repeats are refused by the API server's list semantics (no CEL: a rule comparing every pair
/// of items costs too much for the server's budget); tests/tests/k8s_crds.rs sees it refuse.
#[test]
fn name_lists_are_sets_and_alias_lists_are_maps() {
    let spec = |kind: &str| schema(kind)["properties"]["spec"]["properties"].clone();
    for (kind, field) in [
        ("L2Advertisement", "ipAddressPools"),
        ("L2Advertisement", "interfaces"),
        ("BGPAdvertisement", "ipAddressPools"),
        ("BGPAdvertisement", "peers"),
        ("BGPAdvertisement", "communities"),
    ] {
        assert_eq!(
            spec(kind)[field]["x-kubernetes-list-type"],
            json!("set"),
            "{kind}.{field}"
        );
    }
    assert_eq!(
        spec("IPAddressPool")["serviceAllocation"]["properties"]["namespaces"]["x-kubernetes-list-type"],
        json!("set")
    );
    let aliases = &spec("Community")["communities"];
    assert_eq!(aliases["x-kubernetes-list-type"], json!("map"));
    assert_eq!(aliases["x-kubernetes-list-map-keys"], json!(["name"]));
    let l2 = spec("L2Advertisement");
    assert_eq!(l2["interfaces"]["items"]["maxLength"], json!(15));
}

/// Every string a CEL rule reads has a length bound and every list one iterates a maxItems, so
/// the API server's cost estimate stays inside its budget; no `format` the server does not know.
#[test]
fn cel_inputs_are_bounded_and_formats_are_known() {
    fn walk(v: &Value, path: &str, problems: &mut Vec<String>) {
        if let Some(f) = v.get("format").and_then(Value::as_str)
            && !["int32", "int64", "date-time", "double", "float", "byte"].contains(&f)
        {
            problems.push(format!("{path}: format {f}"));
        }
        if v.get("x-kubernetes-validations").is_some() {
            let bounded = match v.get("type").and_then(Value::as_str) {
                Some("string") => v.get("maxLength").is_some(),
                Some("array") => {
                    v.get("maxItems").is_some() && v["items"].get("maxLength").is_some()
                }
                _ => true,
            };
            if !bounded {
                problems.push(format!("{path}: a CEL rule over an unbounded value"));
            }
        }
        if let Some(props) = v.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                walk(p, &format!("{path}.{k}"), problems);
            }
        }
        if let Some(items) = v.get("items") {
            walk(items, &format!("{path}[]"), problems);
        }
    }
    let mut problems = Vec::new();
    for crd in api::crds() {
        let kind = crd.spec.names.kind.clone();
        walk(&schema(&kind), &kind, &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn graceful_restart_cannot_change_after_creation() {
    let spec = |gr: bool| json!({"myASN": 1, "peerASN": 2, "peerAddress": "10.0.0.1", "enableGracefulRestart": gr});
    assert!(refusals("BGPPeer", spec(true), Some(spec(true))).is_empty());
    assert_eq!(
        refusals("BGPPeer", spec(false), Some(spec(true))),
        ["enableGracefulRestart cannot be changed"]
    );
}

#[test]
fn openapi_constraints_are_declared() {
    let peer = schema("BGPPeer");
    let spec = &peer["properties"]["spec"]["properties"];
    assert_eq!(spec["myASN"]["minimum"], json!(1.0));
    assert_eq!(spec["peerPort"]["maximum"], json!(65535.0));
    assert!(spec["holdTime"]["pattern"].is_string());
    let bfd = schema("BFDProfile");
    let bfd = &bfd["properties"]["spec"]["properties"];
    assert_eq!(
        (
            bfd["detectMultiplier"]["minimum"].clone(),
            bfd["detectMultiplier"]["maximum"].clone()
        ),
        (json!(2.0), json!(255.0))
    );
    assert_eq!(bfd["minimumTtl"]["maximum"], json!(254.0));
    let adv = schema("BGPAdvertisement");
    assert_eq!(
        adv["properties"]["spec"]["properties"]["aggregationLength"]["maximum"],
        json!(32.0)
    );
    let pool = schema("IPAddressPool");
    assert_eq!(
        pool["properties"]["spec"]["properties"]["addresses"]["minItems"],
        json!(1)
    );
    assert_eq!(pool["properties"]["spec"]["required"], json!(["addresses"]));
}
