//! `ferrolb migrate` (issue 13): MetalLB objects in, ferrolb.io objects and a report out.

use ferrolb_config::migrate::{Outcome, migrate};
use ferrolb_config::{LastGood, parse_documents};

const METALLB: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: lan
  namespace: metallb-system
  labels: {zone: a}
  uid: 0b6e3f5c-0000-0000-0000-000000000000
  resourceVersion: "12345"
  generation: 3
  creationTimestamp: "2026-01-01T00:00:00Z"
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: "{}"
    team: netops
spec:
  addresses: [10.20.0.0/24, "fd00:20::/120"]
  serviceAllocation: {priority: 10, namespaces: [web]}
status: {assignedIPv4: 3}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: metallb-system}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: bgp, namespace: metallb-system}
spec: {ipAddressPoolSelectors: [{matchLabels: {zone: a}}], communities: [edge], localPref: 50}
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: communities, namespace: metallb-system}
spec: {communities: [{name: edge, value: "65000:1"}]}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
spec:
  myASN: 64512
  dynamicASN: external
  peerAddress: 10.20.1.1
  localASN: 65001
  disableMP: true
  holdTime: 9m0s
  passwordSecret: {name: tor-auth, namespace: metallb-system}
  bfdProfile: fast
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: fast, namespace: metallb-system}
spec: {receiveInterval: 300, transmitInterval: 300, echoMode: false}
---
apiVersion: v1
kind: Secret
metadata: {name: tor-auth, namespace: metallb-system}
type: kubernetes.io/basic-auth
stringData: {password: s3cret}
---
apiVersion: v1
kind: Secret
metadata: {name: unrelated, namespace: metallb-system}
stringData: {x: y}
---
apiVersion: metallb.io/v1beta1
kind: ServiceL2Status
metadata: {name: l2-web, namespace: metallb-system}
---
apiVersion: v1
kind: Service
metadata: {name: web, annotations: {metallb.io/address-pool: lan}}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: config, namespace: metallb-system}
data: {config: "address-pools: []"}
"#;

#[test]
fn a_metallb_config_comes_over_with_a_line_for_everything_left_behind() {
    let m = migrate(METALLB, "ferrolb-system").unwrap();
    let report: Vec<String> = m.report.iter().map(|l| l.to_string()).collect();
    let expected = [
        "IPAddressPool lan: carried over",
        "L2Advertisement l2: carried over",
        "BGPAdvertisement bgp: carried over",
        "Community communities: carried over",
        "BGPPeer tor: spec.disableMP not carried over: ferrolb keeps each address family on its own session, which is what disableMP: true asked for (deprecated in MetalLB)",
        "BGPPeer tor: spec.localASN not carried over: ferrolb has no local-as override (MetalLB's native BGP mode has none either)",
        "BFDProfile fast: carried over",
        "ServiceL2Status l2-web: left out: a status object MetalLB writes, not configuration (ferrolb reports on its own objects and the Services)",
        "Service web: left out: a Service needs no change: ferrolb reads its metallb.io/ and metallb.universe.tf/ annotations as aliases",
        "ConfigMap config: left out: MetalLB's ConfigMap format (before v0.13) is not read: convert it to MetalLB's CRDs first (MetalLB's configmaptocrs), then migrate those",
        "Secret metallb-system/tor-auth: carried over",
        "Secret metallb-system/unrelated: left out: no BGPPeer refers to it",
    ];
    assert_eq!(report, expected, "{report:#?}");

    // What comes out is what ferrolb reads, and the model accepts all of it.
    let docs = parse_documents(&m.yaml).unwrap_or_else(|e| panic!("{e}\n{}", m.yaml));
    let built = LastGood::default().build(&docs.config);
    assert!(built.errors.0.is_empty(), "{}", built.errors);
    let c = &built.config;
    assert_eq!(
        c.pools["lan"].allocation.as_ref().unwrap().priority,
        Some(10)
    );
    assert!(c.pools["lan"].labels.contains_key("zone"));
    assert_eq!(c.bgp_advertisements[0].pools, ["lan".to_string()].into());
    let tor = &c.peers["tor"];
    assert_eq!(tor.peer_asn, ferrolb_config::PeerAsn::External);
    assert_eq!(tor.password.as_deref(), Some("s3cret"));
    assert_eq!(tor.hold_time.as_secs(), 540);
    assert_eq!(tor.bfd_profile.as_deref(), Some("fast"));
    // Server-written metadata and status are gone; the user's annotation stays.
    let pool = &docs.config.pools[0];
    assert_eq!(pool.metadata.namespace.as_deref(), Some("ferrolb-system"));
    assert!(pool.metadata.uid.is_none() && pool.metadata.resource_version.is_none());
    assert!(pool.metadata.creation_timestamp.is_none() && pool.status.is_none());
    let annotations = pool.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);
    assert_eq!(
        docs.config.secrets[0].metadata.namespace.as_deref(),
        Some("ferrolb-system")
    );
}

#[test]
fn a_secret_not_in_the_input_is_a_to_do_and_kubectl_lists_are_opened() {
    let list = r#"
apiVersion: v1
kind: List
items:
- apiVersion: metallb.io/v1beta2
  kind: BGPPeer
  metadata: {name: tor, namespace: metallb-system}
  spec: {myASN: 64512, peerASN: 64513, peerAddress: 10.20.1.1, passwordSecret: {name: tor-auth}, vrf: red}
- apiVersion: metallb.io/v1beta1
  kind: IPAddressPool
  metadata: {name: lan, namespace: metallb-system}
  spec: {addresses: [10.20.0.0/24]}
"#;
    let m = migrate(list, "lb").unwrap();
    assert_eq!(m.objects.len(), 2);
    let todo: Vec<_> = (m.report.iter())
        .filter(|l| matches!(l.what, Outcome::ToDo(_)))
        .map(|l| l.to_string())
        .collect();
    assert_eq!(
        todo,
        [
            "Secret metallb-system/tor-auth: to do: copy Secret metallb-system/tor-auth into namespace lb (ferrolb reads Secrets in its own namespace)"
        ]
    );
    // The model says what is missing, on the object.
    assert!(
        (m.report.iter()).any(
            |l| matches!(&l.what, Outcome::Refused(why) if why.contains("Secret lb/tor-auth"))
        ),
        "{:#?}",
        m.report
    );
    let docs = parse_documents(&m.yaml).unwrap();
    assert_eq!(
        docs.config.peers[0].metadata.namespace.as_deref(),
        Some("lb")
    );
}

#[test]
fn a_field_ferrolb_lacks_is_reported_never_dropped_in_silence() {
    let yaml = r#"
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64513, peerAddress: 10.20.1.1, someFutureField: 1}
"#;
    let m = migrate(yaml, "ferrolb-system").unwrap();
    let lines: Vec<String> = m.report.iter().map(|l| l.to_string()).collect();
    assert_eq!(
        lines,
        ["BGPPeer tor: spec.someFutureField not carried over: ferrolb has no such field"]
    );
    assert!(!m.yaml.contains("someFutureField"));
    // Unreadable input is an error naming the document.
    let err = migrate("a: [", "x").unwrap_err().to_string();
    assert!(err.starts_with("document 0:"), "{err}");
}

/// A Secret already in ferrolb's namespace that a peer refers to comes along and is no to-do;
/// ownerReferences and finalizers do not follow objects into the new namespace.
#[test]
fn secrets_in_the_target_namespace_and_owner_references() {
    let yaml = r#"
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata:
  name: tor
  namespace: metallb-system
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner, uid: 0b6e3f5c-0000-0000-0000-000000000001}]
  finalizers: [example.com/keep]
spec: {myASN: 64512, peerASN: 64513, peerAddress: 10.20.1.1, passwordSecret: {name: auth, namespace: ferrolb-system}}
---
apiVersion: v1
kind: Secret
metadata: {name: auth, namespace: ferrolb-system}
type: kubernetes.io/basic-auth
stringData: {password: s3cret}
"#;
    let m = migrate(yaml, "ferrolb-system").unwrap();
    let lines: Vec<String> = m.report.iter().map(|l| l.to_string()).collect();
    assert_eq!(
        lines,
        [
            "BGPPeer tor: carried over",
            "Secret ferrolb-system/auth: carried over"
        ],
        "{lines:#?}"
    );
    let docs = parse_documents(&m.yaml).unwrap();
    let peer = &docs.config.peers[0];
    assert!(peer.metadata.owner_references.is_none() && peer.metadata.finalizers.is_none());
    let built = LastGood::default().build(&docs.config);
    assert!(built.errors.0.is_empty(), "{}", built.errors);
}
