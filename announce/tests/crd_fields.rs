//! No field accepted and then ignored (issue 14): every field of every config CRD, found by
//! walking the generated schemas, is either used or refused.
//!
//! - Used: setting it (or changing it) changes what runs. For BGPPeer and BFDProfile that is
//!   each peer's session settings and BFD settings as the speaker starts them
//!   (`bgp::speaker::peer_config`, `bgp::speaker::bfd_settings`, computed for a node); for the
//!   other kinds, the validated `Config` the allocator and the announcers run on.
//! - Refused: the config model refuses it with a reason that names the field and says it is
//!   not supported.
//!
//! A field added to a CRD without a line here fails the test, so each new field is a decision.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ferrolb_announce::bgp::speaker::{bfd_settings, peer_config};
use ferrolb_config::{self as config, Reason, api};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray,
};

/// How a field is honoured: the spec without it (or with another value) and with it.
enum Use {
    /// The effect differs between `base` and `with`.
    Used {
        base: &'static str,
        with: &'static str,
    },
    /// `with` is refused on the field as not supported.
    Refused { with: &'static str },
}

use Use::{Refused, Used};

const PEER: &str = "myASN: 64512, peerASN: 64500, peerAddress: 10.0.0.1";

/// Every leaf field of a spec, as `kind spec.a.b` (a label selector counts as one field).
fn fields(kind: &str, s: &JSONSchemaProps, path: &str, out: &mut BTreeSet<String>) {
    if let Some(props) = &s.properties {
        let is_selector =
            props.contains_key("matchLabels") && props.contains_key("matchExpressions");
        if !is_selector && !props.is_empty() {
            for (k, v) in props {
                fields(kind, v, &format!("{path}.{k}"), out);
            }
            return;
        }
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &s.items
        && items
            .properties
            .as_ref()
            .is_some_and(|p| !(p.contains_key("matchLabels") && p.contains_key("matchExpressions")))
    {
        fields(kind, items, &format!("{path}[]"), out);
        return;
    }
    out.insert(format!("{kind} {path}"));
}

fn table() -> Vec<(&'static str, Use)> {
    vec![
        // IPAddressPool
        (
            "IPAddressPool spec.addresses",
            Used {
                base: "pool: {addresses: [10.0.0.0/30]}",
                with: "pool: {addresses: [10.0.0.0/29]}",
            },
        ),
        (
            "IPAddressPool spec.autoAssign",
            Used {
                base: "pool: {addresses: [10.0.0.0/30]}",
                with: "pool: {addresses: [10.0.0.0/30], autoAssign: false}",
            },
        ),
        (
            "IPAddressPool spec.avoidBuggyIPs",
            Used {
                base: "pool: {addresses: [10.0.0.0/30]}",
                with: "pool: {addresses: [10.0.0.0/30], avoidBuggyIPs: true}",
            },
        ),
        (
            "IPAddressPool spec.serviceAllocation.namespaces",
            Used {
                base: "pool: {addresses: [10.0.0.0/30]}",
                with: "pool: {addresses: [10.0.0.0/30], serviceAllocation: {namespaces: [shop]}}",
            },
        ),
        (
            "IPAddressPool spec.serviceAllocation.namespaceSelectors",
            Used {
                base: "pool: {addresses: [10.0.0.0/30]}",
                with: "pool: {addresses: [10.0.0.0/30], serviceAllocation: {namespaceSelectors: [{matchLabels: {a: b}}]}}",
            },
        ),
        (
            "IPAddressPool spec.serviceAllocation.serviceSelectors",
            Used {
                base: "pool: {addresses: [10.0.0.0/30]}",
                with: "pool: {addresses: [10.0.0.0/30], serviceAllocation: {serviceSelectors: [{matchLabels: {a: b}}]}}",
            },
        ),
        (
            "IPAddressPool spec.serviceAllocation.priority",
            Used {
                base: "pool: {addresses: [10.0.0.0/30], serviceAllocation: {namespaces: [shop]}}",
                with: "pool: {addresses: [10.0.0.0/30], serviceAllocation: {namespaces: [shop], priority: 5}}",
            },
        ),
        // L2Advertisement
        (
            "L2Advertisement spec.ipAddressPools",
            Used {
                base: "l2: {}",
                with: "l2: {ipAddressPools: [lan]}",
            },
        ),
        (
            "L2Advertisement spec.ipAddressPoolSelectors",
            Used {
                base: "l2: {}",
                with: "l2: {ipAddressPoolSelectors: [{matchLabels: {a: b}}]}",
            },
        ),
        (
            "L2Advertisement spec.nodeSelectors",
            Used {
                base: "l2: {}",
                with: "l2: {nodeSelectors: [{matchLabels: {a: b}}]}",
            },
        ),
        (
            "L2Advertisement spec.serviceSelectors",
            Used {
                base: "l2: {}",
                with: "l2: {serviceSelectors: [{matchLabels: {a: b}}]}",
            },
        ),
        (
            "L2Advertisement spec.interfaces",
            Used {
                base: "l2: {}",
                with: "l2: {interfaces: [eth1]}",
            },
        ),
        // BGPAdvertisement
        (
            "BGPAdvertisement spec.ipAddressPools",
            Used {
                base: "bgp: {}",
                with: "bgp: {ipAddressPools: [lan]}",
            },
        ),
        (
            "BGPAdvertisement spec.ipAddressPoolSelectors",
            Used {
                base: "bgp: {}",
                with: "bgp: {ipAddressPoolSelectors: [{matchLabels: {a: b}}]}",
            },
        ),
        (
            "BGPAdvertisement spec.nodeSelectors",
            Used {
                base: "bgp: {}",
                with: "bgp: {nodeSelectors: [{matchLabels: {a: b}}]}",
            },
        ),
        (
            "BGPAdvertisement spec.serviceSelectors",
            Used {
                base: "bgp: {}",
                with: "bgp: {serviceSelectors: [{matchLabels: {a: b}}]}",
            },
        ),
        (
            "BGPAdvertisement spec.aggregationLength",
            Used {
                base: "bgp: {}",
                with: "bgp: {aggregationLength: 30}",
            },
        ),
        (
            "BGPAdvertisement spec.aggregationLengthV6",
            Used {
                base: "bgp: {}",
                with: "bgp: {aggregationLengthV6: 120}",
            },
        ),
        (
            "BGPAdvertisement spec.communities",
            Used {
                base: "bgp: {}",
                with: "bgp: {communities: ['65000:1']}",
            },
        ),
        (
            "BGPAdvertisement spec.localPref",
            Used {
                base: "bgp: {}",
                with: "bgp: {localPref: 200}",
            },
        ),
        (
            "BGPAdvertisement spec.peers",
            Used {
                base: "bgp: {}",
                with: "bgp: {peers: [tor]}",
            },
        ),
        // Community
        // The advertisement uses alias `a`: swapping the names changes the value it gets.
        (
            "Community spec.communities[].name",
            Used {
                base: "community: {communities: [{name: a, value: '1:1'}, {name: b, value: '2:2'}]}",
                with: "community: {communities: [{name: b, value: '1:1'}, {name: a, value: '2:2'}]}",
            },
        ),
        (
            "Community spec.communities[].value",
            Used {
                base: "community: {communities: [{name: a, value: '1:1'}]}",
                with: "community: {communities: [{name: a, value: '1:2'}]}",
            },
        ),
        // BGPPeer: what the speaker starts for a node.
        (
            "BGPPeer spec.myASN",
            Used {
                base: "peer: {}",
                with: "peer: {myASN: 64513}",
            },
        ),
        (
            "BGPPeer spec.peerASN",
            Used {
                base: "peer: {}",
                with: "peer: {peerASN: 64501}",
            },
        ),
        (
            "BGPPeer spec.dynamicASN",
            Used {
                base: "peer: {}",
                with: "peer: {peerASN: null, dynamicASN: external}",
            },
        ),
        (
            "BGPPeer spec.peerAddress",
            Used {
                base: "peer: {}",
                with: "peer: {peerAddress: 10.0.0.2}",
            },
        ),
        (
            "BGPPeer spec.interface",
            Used {
                base: "peer: {}",
                with: "peer: {peerAddress: null, interface: eth1}",
            },
        ),
        (
            "BGPPeer spec.peerPort",
            Used {
                base: "peer: {}",
                with: "peer: {peerPort: 1179}",
            },
        ),
        (
            "BGPPeer spec.sourceAddress",
            Used {
                base: "peer: {}",
                with: "peer: {sourceAddress: 10.0.0.9}",
            },
        ),
        (
            "BGPPeer spec.holdTime",
            Used {
                base: "peer: {}",
                with: "peer: {holdTime: 9s}",
            },
        ),
        (
            "BGPPeer spec.keepaliveTime",
            Used {
                base: "peer: {}",
                with: "peer: {keepaliveTime: 10s}",
            },
        ),
        (
            "BGPPeer spec.connectTime",
            Used {
                base: "peer: {}",
                with: "peer: {connectTime: 2s}",
            },
        ),
        (
            "BGPPeer spec.routerID",
            Used {
                base: "peer: {}",
                with: "peer: {routerID: 10.9.9.9}",
            },
        ),
        (
            "BGPPeer spec.nodeSelectors",
            Used {
                base: "peer: {}",
                with: "peer: {nodeSelectors: [{matchLabels: {rack: b}}]}",
            },
        ),
        (
            "BGPPeer spec.password",
            Used {
                base: "peer: {}",
                with: "peer: {password: s3cret}",
            },
        ),
        (
            "BGPPeer spec.passwordSecret.name",
            Used {
                base: "peer: {}",
                with: "peer: {passwordSecret: {name: pw}}",
            },
        ),
        (
            "BGPPeer spec.passwordSecret.namespace",
            Used {
                base: "peer: {passwordSecret: {name: pw}}",
                with: "peer: {passwordSecret: {name: pw, namespace: other}}",
            },
        ),
        (
            "BGPPeer spec.bfdProfile",
            Used {
                base: "peer: {}",
                with: "peer: {bfdProfile: fast}",
            },
        ),
        (
            "BGPPeer spec.enableGracefulRestart",
            Used {
                base: "peer: {}",
                with: "peer: {enableGracefulRestart: true}",
            },
        ),
        (
            "BGPPeer spec.ebgpMultiHop",
            Used {
                base: "peer: {}",
                with: "peer: {ebgpMultiHop: true}",
            },
        ),
        (
            "BGPPeer spec.dualStackAddressFamily",
            Used {
                base: "peer: {}",
                with: "peer: {dualStackAddressFamily: true}",
            },
        ),
        (
            "BGPPeer spec.vrf",
            Used {
                base: "peer: {}",
                with: "peer: {vrf: red}",
            },
        ),
        // BFDProfile: the BFD session a peer with the profile runs.
        (
            "BFDProfile spec.receiveInterval",
            Used {
                base: "bfd: {}",
                with: "bfd: {receiveInterval: 100}",
            },
        ),
        (
            "BFDProfile spec.transmitInterval",
            Used {
                base: "bfd: {}",
                with: "bfd: {transmitInterval: 100}",
            },
        ),
        (
            "BFDProfile spec.detectMultiplier",
            Used {
                base: "bfd: {}",
                with: "bfd: {detectMultiplier: 5}",
            },
        ),
        (
            "BFDProfile spec.passiveMode",
            Used {
                base: "bfd: {}",
                with: "bfd: {passiveMode: true}",
            },
        ),
        (
            "BFDProfile spec.minimumTtl",
            Used {
                base: "bfd: {}",
                with: "bfd: {minimumTtl: 250}",
            },
        ),
        (
            "BFDProfile spec.echoMode",
            Refused {
                with: "bfd: {echoMode: true}",
            },
        ),
        (
            "BFDProfile spec.echoInterval",
            Refused {
                with: "bfd: {echoInterval: 50}",
            },
        ),
    ]
}

/// A spec: `base` with the fields of `extra` set (a `null` removes one).
fn spec(base: &str, extra: &str) -> serde_json::Value {
    let mut b: serde_json::Value = serde_yaml::from_str(base).unwrap();
    let e: serde_json::Value =
        serde_yaml::from_str(extra).unwrap_or_else(|e| panic!("{extra}: {e}"));
    if let (Some(b), Some(e)) = (b.as_object_mut(), e.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    b
}

/// The objects for one case, `what: {fields}`: the minimal valid set, with the fields set on
/// the object `what` names.
fn objects(case: &str) -> String {
    let (what, extra) = case.split_once(": ").unwrap();
    let of = |name: &str, base: &str| {
        if what == name {
            spec(base, extra)
        } else {
            spec(base, "{}")
        }
    };
    let peer_base = format!("{{{PEER}}}");
    let mut peer = of("peer", &peer_base);
    if what == "bfd" {
        // The profile is used by a (multihop) peer, so its settings reach a BFD session.
        peer = spec(&peer_base, "{bfdProfile: fast, ebgpMultiHop: true}");
    }
    let docs = [
        (
            "IPAddressPool",
            "lan",
            of("pool", "{addresses: [10.0.0.0/30]}"),
        ),
        ("L2Advertisement", "l2", of("l2", "{}")),
        (
            "BGPAdvertisement",
            "bgp",
            if what == "community" {
                spec("{communities: [a]}", "{}")
            } else {
                of("bgp", "{}")
            },
        ),
        (
            "Community",
            "c",
            of("community", "{communities: [{name: a, value: '1:1'}]}"),
        ),
        ("BFDProfile", "fast", of("bfd", "{}")),
        ("BGPPeer", "tor", peer),
    ];
    let mut out = String::new();
    for (kind, name, spec) in docs {
        out += &format!(
            "---\napiVersion: ferrolb.io/v1beta1\nkind: {kind}\nmetadata: {{name: {name}, namespace: ferrolb-system, labels: {{a: b}}}}\nspec: {spec}\n"
        );
    }
    // A second pool, labelled otherwise, so that picking pools picks something.
    out += "---\napiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: other, namespace: ferrolb-system, labels: {c: d}}\nspec: {addresses: [10.0.1.0/30]}\n";
    for ns in ["ferrolb-system", "other"] {
        out += &format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: pw, namespace: {ns}}}\ntype: kubernetes.io/basic-auth\nstringData: {{password: from-{ns}}}\n"
        );
    }
    out
}

fn build(case: &str) -> Result<config::Config, config::ConfigErrors> {
    let yaml = objects(case);
    let docs = config::parse_documents(&yaml).unwrap_or_else(|e| panic!("{case}: {e}\n{yaml}"));
    config::build(&docs.config)
}

/// What runs: the config, and what a node starts from it ([`runtime`]).
fn effect(c: &config::Config) -> String {
    format!("{c:?}\n{}", runtime(c))
}

/// The runtime part only (BGPPeer and BFDProfile fields must reach it): which peers a node
/// labelled `rack: a` opens sessions to, and each session's and BFD session's settings.
fn runtime(c: &config::Config) -> String {
    let node = ferrolb_announce::election::Node {
        name: "n".into(),
        labels: [("rack".to_string(), "a".to_string())].into(),
        network_unavailable: false,
    };
    let selected: Vec<&String> = ferrolb_announce::bgp::announce::selected_peers(c, &node)
        .into_iter()
        .map(|p| &p.name)
        .collect();
    let mut out = format!("{selected:?}");
    for p in c.peers.values() {
        out += &format!(
            "\n{:?}\n{:?}",
            peer_config(p, Some(Ipv4Addr::new(10, 0, 0, 5))),
            bfd_settings(p, c)
        );
    }
    out
}

#[test]
fn every_crd_field_is_used_or_refused() {
    let mut schema = BTreeSet::new();
    for crd in api::crds() {
        let kind = crd.spec.names.kind.clone();
        if kind == "BGPSessionState" {
            continue; // written by the speaker, not configuration
        }
        let s = crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap();
        if let Some(spec) = s.properties.as_ref().and_then(|p| p.get("spec")) {
            fields(&kind, spec, "spec", &mut schema);
        }
    }
    let table = table();
    let listed: BTreeSet<String> = table.iter().map(|(f, _)| f.to_string()).collect();
    let missing: Vec<_> = schema.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&schema).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "fields without a decision: {missing:#?}\nlisted but not in the CRDs: {unknown:#?}"
    );
    let mut failures = Vec::new();
    for (field, how) in &table {
        let (kind, path) = field.split_once(' ').unwrap();
        match how {
            Used { base, with } => {
                let (a, b) = match (build(base), build(with)) {
                    (Ok(a), Ok(b)) => (a, b),
                    (a, b) => {
                        failures.push(format!(
                            "{field}: does not build: {:?} / {:?}",
                            a.err(),
                            b.err()
                        ));
                        continue;
                    }
                };
                let differs = if matches!(kind, "BGPPeer" | "BFDProfile") {
                    runtime(&a) != runtime(&b)
                } else {
                    effect(&a) != effect(&b)
                };
                if !differs {
                    failures.push(format!("{field}: accepted but changes nothing that runs"));
                }
            }
            Refused { with } => match build(with) {
                Ok(_) => failures.push(format!("{field}: accepted, though not honoured")),
                Err(e) => {
                    let named = e.0.iter().any(|e| {
                        e.field == *path
                            && matches!(
                                e.reason,
                                Reason::NotSupported { .. } | Reason::NotWithInterface { .. }
                            )
                    });
                    if !named {
                        failures.push(format!("{field}: refused, but not as not supported: {e}"));
                    }
                }
            },
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
