//! The CRDs on a real kube-apiserver: each one installs (the server estimates every CEL rule's
//! cost and refuses a CRD over budget; only the real server does), and every CEL rule in them
//! refuses a violating object with the rule's own message, as do the schema's list semantics
//! (no repeated names) and bounds.

use std::collections::BTreeSet;

use ferrolb_config::api;
use ferrolb_tests::cluster::{self, Cluster};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// Every `x-kubernetes-validations` message in a schema, with its path.
fn rule_messages(schema: &JSONSchemaProps, path: &str, out: &mut BTreeSet<(String, String)>) {
    for rule in schema.x_kubernetes_validations.iter().flatten() {
        out.insert((
            path.to_string(),
            rule.message.clone().unwrap_or_else(|| rule.rule.clone()),
        ));
    }
    for (name, p) in schema.properties.iter().flatten() {
        rule_messages(p, &format!("{path}.{name}"), out);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(s)) = &schema.items {
        rule_messages(s, &format!("{path}[]"), out);
    }
}

fn api_for(c: &Cluster, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(api::GROUP, api::VERSION, kind);
    let plural = api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .map(|c| c.spec.names.plural)
        .unwrap_or_default();
    let ar = ApiResource::from_gvk_with_plural(&gvk, &plural);
    Api::namespaced_with(c.client(), "ferrolb-system", &ar)
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("{}/{}", api::GROUP, api::VERSION), "kind": kind,
        "metadata": {"name": name, "namespace": "ferrolb-system"}, "spec": spec
    }))
    .expect("a valid object literal")
}

/// Creates the object; `Ok(())` or the server's refusal message.
fn create(c: &Cluster, kind: &str, name: &str, spec: Value) -> Result<(), String> {
    c.block_on(api_for(c, kind).create(&PostParams::default(), &object(kind, name, spec)))
        .map(drop)
        .map_err(|e| match e {
            kube::Error::Api(s) => s.message,
            other => panic!("{kind}/{name}: not an API refusal: {other}"),
        })
}

fn peer(extra: Value) -> Value {
    let mut spec = json!({"myASN": 64512, "peerASN": 64513, "peerAddress": "10.0.0.1"});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    spec
}

#[test]
fn every_crd_installs_and_every_rule_refuses_with_its_message() {
    if !cluster::require_cluster() {
        return;
    }
    let c = Cluster::start().unwrap();
    let crd_dir = cluster::workspace_root().join("deploy/crds");
    c.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        &crd_dir.display().to_string(),
    ])
    .unwrap_or_else(|e| panic!("the CRDs install on a real API server: {e}"));
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "--all",
    ])
    .unwrap();
    let installed: Api<CustomResourceDefinition> = Api::all(c.client());
    let names: BTreeSet<String> = c
        .block_on(installed.list(&Default::default()))
        .unwrap()
        .items
        .into_iter()
        .filter_map(|crd| crd.metadata.name)
        .collect();
    let expected: BTreeSet<String> = api::crds()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(names, expected, "every CRD is served");
    c.create_namespace("ferrolb-system", &[]).unwrap();

    // Every rule in the CRDs, found by walking their schemas: each must have a case below.
    let mut rules = BTreeSet::new();
    for crd in api::crds() {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .unwrap();
        rule_messages(schema, &crd.spec.names.kind, &mut rules);
    }

    // (kind, a valid spec, a spec violating the rule, the rule's message)
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "IPAddressPool",
            json!({"addresses": ["10.0.0.0/24", "10.0.1.1-10.0.1.9", "10.0.2.1 - 10.0.2.9", "fd00::/64", "fd00:1::1-fd00:1::9"]}),
            json!({"addresses": ["10.0.0.0/24", "not-an-address"]}),
            "each address must be a CIDR or a 'start-end' range of two addresses of one family",
        ),
        (
            "IPAddressPool",
            json!({"addresses": ["10.0.3.1-10.0.3.9"]}),
            json!({"addresses": ["10.0.3.1-fd00::9"]}),
            "each address must be a CIDR or a 'start-end' range of two addresses of one family",
        ),
        (
            "BGPPeer",
            peer(json!({"password": "x"})),
            peer(json!({"password": "x", "passwordSecret": {"name": "s"}})),
            "password and passwordSecret are mutually exclusive",
        ),
        (
            "BGPPeer",
            peer(json!({"peerAddress": "fd00::1"})),
            peer(json!({"peerAddress": "router.local"})),
            "peerAddress must be an IP address",
        ),
        (
            "BGPPeer",
            peer(json!({"routerID": "10.9.9.9"})),
            peer(json!({"routerID": "fd00::9"})),
            "routerID must be an IPv4 address",
        ),
        (
            "BGPPeer",
            peer(json!({"sourceAddress": "10.0.0.2"})),
            peer(json!({"sourceAddress": "node-a"})),
            "sourceAddress must be an IP address",
        ),
        (
            "BGPPeer",
            json!({"myASN": 64512, "dynamicASN": "external", "peerAddress": "10.0.0.1"}),
            peer(json!({"dynamicASN": "external"})),
            "exactly one of peerASN and dynamicASN must be set",
        ),
        (
            "BGPPeer",
            json!({"myASN": 64512, "dynamicASN": "internal", "peerAddress": "10.0.0.1"}),
            json!({"myASN": 64512, "peerAddress": "10.0.0.1"}),
            "exactly one of peerASN and dynamicASN must be set",
        ),
        (
            "BGPPeer",
            json!({"myASN": 64512, "peerASN": 64513, "interface": "eth1"}),
            peer(json!({"interface": "eth1"})),
            "exactly one of peerAddress and interface must be set",
        ),
    ];
    let mut covered: BTreeSet<String> = cases.iter().map(|c| c.3.to_string()).collect();
    for (n, (kind, valid, invalid, message)) in cases.into_iter().enumerate() {
        create(&c, kind, &format!("valid-{n}"), valid.clone())
            .unwrap_or_else(|e| panic!("{kind} {valid} is accepted: {e}"));
        let refused = create(&c, kind, &format!("invalid-{n}"), invalid.clone());
        match refused {
            Err(m) => assert!(
                m.contains(message),
                "{kind} {invalid}: refused with {m:?}, not {message:?}"
            ),
            Ok(()) => {
                panic!("{kind} {invalid} was accepted; the rule {message:?} should refuse it")
            }
        }
    }

    // The transition rule: enableGracefulRestart is fixed at creation.
    let api = api_for(&c, "BGPPeer");
    create(
        &c,
        "BGPPeer",
        "gr",
        peer(json!({"enableGracefulRestart": true})),
    )
    .unwrap();
    let mut obj = c.block_on(api.get("gr")).unwrap();
    obj.data["spec"]["enableGracefulRestart"] = json!(false);
    let refused = c.block_on(api.replace("gr", &PostParams::default(), &obj));
    match refused {
        Err(kube::Error::Api(s)) => assert!(
            s.message
                .contains("enableGracefulRestart cannot be changed"),
            "{}",
            s.message
        ),
        other => panic!("changing enableGracefulRestart: {other:?}"),
    }
    covered.insert("enableGracefulRestart cannot be changed".into());

    let uncovered: Vec<_> = rules.iter().filter(|(_, m)| !covered.contains(m)).collect();
    assert!(
        uncovered.is_empty(),
        "CEL rules without a refusal case here: {uncovered:?}"
    );

    // Lists of names are sets and alias lists are maps keyed by name: repeats are refused.
    for (kind, spec, field) in [
        (
            "L2Advertisement",
            json!({"ipAddressPools": ["a", "a"]}),
            "spec.ipAddressPools[1]",
        ),
        (
            "L2Advertisement",
            json!({"interfaces": ["eth0", "eth0"]}),
            "spec.interfaces[1]",
        ),
        (
            "BGPAdvertisement",
            json!({"peers": ["r1", "r1"]}),
            "spec.peers[1]",
        ),
        (
            "BGPAdvertisement",
            json!({"communities": ["65000:1", "65000:1"]}),
            "spec.communities[1]",
        ),
        (
            "BGPAdvertisement",
            json!({"ipAddressPools": ["a", "a"]}),
            "spec.ipAddressPools[1]",
        ),
        (
            "IPAddressPool",
            json!({"addresses": ["10.0.9.0/24"], "serviceAllocation": {"namespaces": ["a", "a"]}}),
            "spec.serviceAllocation.namespaces[1]",
        ),
        (
            "Community",
            json!({"communities": [{"name": "a", "value": "1:1"}, {"name": "a", "value": "1:2"}]}),
            "spec.communities[1]",
        ),
    ] {
        let m = create(&c, kind, "repeats", spec.clone())
            .expect_err(&format!("{kind} {spec}: repeats are refused"));
        assert!(
            m.contains(field) && m.contains("Duplicate value"),
            "{kind} {spec}: {m}"
        );
    }
    // Schema bounds and patterns, checked by the server without CEL.
    for (kind, spec, text) in [
        (
            "L2Advertisement",
            json!({"interfaces": ["this-name-is-too-long"]}),
            "spec.interfaces[0]",
        ),
        (
            "L2Advertisement",
            json!({"interfaces": ["eth/0"]}),
            "spec.interfaces[0]",
        ),
        (
            "BGPAdvertisement",
            json!({"communities": ["65000:1:7:8:9"]}),
            "spec.communities[0]",
        ),
        (
            "BGPAdvertisement",
            json!({"aggregationLength": 33}),
            "spec.aggregationLength",
        ),
        (
            "BFDProfile",
            json!({"detectMultiplier": 1}),
            "spec.detectMultiplier",
        ),
        ("IPAddressPool", json!({"addresses": []}), "spec.addresses"),
    ] {
        let m = create(&c, kind, "bounds", spec.clone())
            .expect_err(&format!("{kind} {spec} is refused"));
        assert!(m.contains(text), "{kind} {spec}: {m}");
    }

    // MetalLB's documented minimal L2Advertisement has no spec at all (issue 13, class 3): the
    // server accepts it and defaults spec to {}, which the typed client reads (every pool).
    let bare: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{}/{}", api::GROUP, api::VERSION), "kind": "L2Advertisement",
        "metadata": {"name": "bare", "namespace": "ferrolb-system"}
    }))
    .unwrap();
    c.block_on(api_for(&c, "L2Advertisement").create(&PostParams::default(), &bare))
        .expect("an L2Advertisement without spec is accepted");
    let typed: Api<api::L2Advertisement> = Api::namespaced(c.client(), "ferrolb-system");
    let got = c
        .block_on(typed.get("bare"))
        .expect("read back as the typed kind");
    assert_eq!(got.spec, api::L2AdvertisementSpec::default());

    // And MetalLB's deployment_bgp.yaml sample: a BGPAdvertisement with no spec.
    let bare: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{}/{}", api::GROUP, api::VERSION), "kind": "BGPAdvertisement",
        "metadata": {"name": "empty", "namespace": "ferrolb-system"}
    }))
    .unwrap();
    c.block_on(api_for(&c, "BGPAdvertisement").create(&PostParams::default(), &bare))
        .expect("a BGPAdvertisement without spec is accepted");
    let typed: Api<api::BGPAdvertisement> = Api::namespaced(c.client(), "ferrolb-system");
    let got = c
        .block_on(typed.get("empty"))
        .expect("read back as the typed kind");
    assert_eq!(got.spec, api::BGPAdvertisementSpec::default());

    // A BGPPeer written as MetalLB writes it (v1beta2) is stored and read as v1beta1.
    c.kubectl_with_stdin(
        &["apply", "--server-side", "-f", "-"],
        Some(
            "apiVersion: ferrolb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: v1beta2-peer, namespace: ferrolb-system}\nspec: {myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.9, holdTime: 9s}\n",
        ),
    )
    .expect("a v1beta2 BGPPeer is accepted");
    let typed: Api<api::BGPPeer> = Api::namespaced(c.client(), "ferrolb-system");
    let got = c
        .block_on(typed.get("v1beta2-peer"))
        .expect("read as v1beta1");
    assert_eq!(got.spec.peer_address.as_deref(), Some("10.0.0.9"));
    assert_eq!(got.spec.hold_time.as_deref(), Some("9s"));
}
