//! Table-driven tests of the config model: every validation rule has a valid and an invalid case,
//! written as the YAML a user would apply.

use std::collections::BTreeSet;

use ferrolb_config::{Built, Config, Kind, LastGood, ObjectRef, Reason, build, parse_documents};

fn pool(name: &str, addresses: &[&str]) -> String {
    let list: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "---\napiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: ferrolb-system}}\nspec:\n  addresses: [{}]\n",
        list.join(", ")
    )
}

fn doc(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: ferrolb.io/v1beta1\nkind: {kind}\nmetadata: {{name: {name}, namespace: ferrolb-system}}\nspec: {spec}\n"
    )
}

fn peer(name: &str, extra: &str) -> String {
    doc(
        "BGPPeer",
        name,
        &format!("{{myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.1{extra}}}"),
    )
}

fn secret(name: &str, type_: &str, data: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: ferrolb-system}}\ntype: {type_}\n{data}\n"
    )
}

fn run(yaml: &str) -> Result<Config, Vec<(String, String, Reason)>> {
    let docs =
        parse_documents(yaml).unwrap_or_else(|e| panic!("test YAML does not parse: {e}\n{yaml}"));
    build(&docs.config).map_err(|errs| {
        errs.0
            .into_iter()
            .map(|e| {
                (
                    format!("{} {}", e.object.kind, e.object.name),
                    e.field,
                    e.reason,
                )
            })
            .collect()
    })
}

struct Case {
    rule: &'static str,
    valid: String,
    invalid: String,
    /// `Kind name` of the object the error must name.
    object: &'static str,
    field: &'static str,
    reason: fn(&Reason) -> bool,
}

fn cases() -> Vec<Case> {
    let base = pool("base", &["10.0.0.0/24"]);
    vec![
        Case {
            rule: "addresses overlap across pools",
            valid: pool("a", &["10.1.0.0/24"]) + &pool("b", &["10.1.1.0/24"]),
            invalid: pool("a", &["10.1.0.0/24"]) + &pool("b", &["10.1.0.128/25"]),
            object: "IPAddressPool b",
            field: "spec.addresses[0]",
            reason: |r| matches!(r, Reason::AddressOverlap { other, .. } if other.name == "a"),
        },
        Case {
            rule: "a range overlaps a CIDR of another pool",
            valid: pool("a", &["10.1.0.0/24"]) + &pool("b", &["10.1.1.0-10.1.1.9"]),
            invalid: pool("a", &["10.1.0.0/24"]) + &pool("b", &["10.1.0.250-10.1.1.9"]),
            object: "IPAddressPool b",
            field: "spec.addresses[0]",
            reason: |r| matches!(r, Reason::AddressOverlap { .. }),
        },
        Case {
            rule: "addresses overlap inside one pool",
            valid: pool("a", &["10.1.0.0/25", "10.1.0.128/25"]),
            invalid: pool("a", &["10.1.0.0/24", "10.1.0.128/25"]),
            object: "IPAddressPool a",
            field: "spec.addresses[1]",
            reason: |r| matches!(r, Reason::AddressOverlap { other, .. } if other.name == "a"),
        },
        Case {
            rule: "IPv6 overlap",
            valid: pool("a", &["fd00:1::/64"]) + &pool("b", &["fd00:2::/64"]),
            invalid: pool("a", &["fd00:1::/64"]) + &pool("b", &["fd00:1::10-fd00:1::20"]),
            object: "IPAddressPool b",
            field: "spec.addresses[0]",
            reason: |r| matches!(r, Reason::AddressOverlap { .. }),
        },
        Case {
            rule: "range start after end",
            valid: pool("a", &["10.1.0.1-10.1.0.9"]),
            invalid: pool("a", &["10.1.0.9-10.1.0.1"]),
            object: "IPAddressPool a",
            field: "spec.addresses[0]",
            reason: |r| matches!(r, Reason::RangeStartAfterEnd { .. }),
        },
        Case {
            rule: "range mixes families",
            valid: pool("a", &["fd00::1-fd00::9"]),
            invalid: pool("a", &["10.1.0.1-fd00::9"]),
            object: "IPAddressPool a",
            field: "spec.addresses[0]",
            reason: |r| matches!(r, Reason::RangeMixedFamilies { .. }),
        },
        Case {
            rule: "unparsable address",
            valid: pool("a", &["10.1.0.0/16"]),
            invalid: pool("a", &["10.1.0.0/40"]),
            object: "IPAddressPool a",
            field: "spec.addresses[0]",
            reason: |r| matches!(r, Reason::InvalidAddress { .. }),
        },
        Case {
            rule: "empty pool",
            valid: pool("a", &["10.1.0.1/32"]),
            invalid: pool("a", &[]),
            object: "IPAddressPool a",
            field: "spec.addresses",
            reason: |r| matches!(r, Reason::EmptyPool),
        },
        Case {
            rule: "duplicate address entry",
            valid: pool("a", &["10.1.0.0/24", "10.2.0.0/24"]),
            invalid: pool("a", &["10.1.0.0/24", "10.1.0.0/24"]),
            object: "IPAddressPool a",
            field: "spec.addresses[1]",
            reason: |r| matches!(r, Reason::Duplicate { .. }),
        },
        Case {
            rule: "duplicate pool name",
            valid: pool("a", &["10.1.0.0/24"]) + &pool("b", &["10.2.0.0/24"]),
            invalid: pool("a", &["10.1.0.0/24"]) + &pool("a", &["10.2.0.0/24"]),
            object: "IPAddressPool a",
            field: "metadata.name",
            reason: |r| matches!(r, Reason::DuplicateName { kind: Kind::IPAddressPool }),
        },
        Case {
            rule: "duplicate namespace in serviceAllocation",
            valid: doc("IPAddressPool", "a", "{addresses: [10.1.0.0/24], serviceAllocation: {namespaces: [x, y]}}"),
            invalid: doc("IPAddressPool", "a", "{addresses: [10.1.0.0/24], serviceAllocation: {namespaces: [x, x]}}"),
            object: "IPAddressPool a",
            field: "spec.serviceAllocation.namespaces[1]",
            reason: |r| matches!(r, Reason::Duplicate { .. }),
        },
        Case {
            rule: "negative priority",
            valid: doc("IPAddressPool", "a", "{addresses: [10.1.0.0/24], serviceAllocation: {priority: 0}}"),
            invalid: doc("IPAddressPool", "a", "{addresses: [10.1.0.0/24], serviceAllocation: {priority: -1}}"),
            object: "IPAddressPool a",
            field: "spec.serviceAllocation.priority",
            reason: |r| matches!(r, Reason::OutOfRange { value: -1, .. }),
        },
        Case {
            rule: "bad selector operator",
            valid: doc(
                "IPAddressPool",
                "a",
                "{addresses: [10.1.0.0/24], serviceAllocation: {serviceSelectors: [{matchExpressions: [{key: app, operator: In, values: [web]}]}]}}",
            ),
            invalid: doc(
                "IPAddressPool",
                "a",
                "{addresses: [10.1.0.0/24], serviceAllocation: {serviceSelectors: [{matchExpressions: [{key: app, operator: Equals, values: [web]}]}]}}",
            ),
            object: "IPAddressPool a",
            field: "spec.serviceAllocation.serviceSelectors[0]",
            reason: |r| matches!(r, Reason::InvalidSelector(_)),
        },
        Case {
            rule: "L2Advertisement lists a pool twice",
            valid: base.clone() + &doc("L2Advertisement", "l2", "{ipAddressPools: [base]}"),
            invalid: base.clone() + &doc("L2Advertisement", "l2", "{ipAddressPools: [base, base]}"),
            object: "L2Advertisement l2",
            field: "spec.ipAddressPools[1]",
            reason: |r| matches!(r, Reason::Duplicate { .. }),
        },
        Case {
            rule: "L2Advertisement interface name",
            valid: base.clone() + &doc("L2Advertisement", "l2", "{interfaces: [eth0, bond0.100]}"),
            invalid: base.clone() + &doc("L2Advertisement", "l2", "{interfaces: [a-very-long-interface-name]}"),
            object: "L2Advertisement l2",
            field: "spec.interfaces[0]",
            reason: |r| matches!(r, Reason::InvalidInterface { .. }),
        },
        Case {
            rule: "L2Advertisement lists an interface twice",
            valid: base.clone() + &doc("L2Advertisement", "l2", "{interfaces: [eth0, eth1]}"),
            invalid: base.clone() + &doc("L2Advertisement", "l2", "{interfaces: [eth0, eth0]}"),
            object: "L2Advertisement l2",
            field: "spec.interfaces[1]",
            reason: |r| matches!(r, Reason::Duplicate { .. }),
        },
        // MetalLB drop-in (issue 13, class 5): checks MetalLB makes.
        Case {
            rule: "ebgpMultiHop only on eBGP",
            valid: peer("p", ", ebgpMultiHop: true"),
            invalid: doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64512, peerAddress: 10.0.0.1, ebgpMultiHop: true}"),
            object: "BGPPeer p",
            field: "spec.ebgpMultiHop",
            reason: |r| matches!(r, Reason::EbgpMultiHopOnIbgp { asn: 64512 }),
        },
        // Issue 14: no field accepted and then ignored.
        Case {
            rule: "BFD echo mode is not supported",
            valid: doc("BFDProfile", "b", "{echoMode: false}"),
            invalid: doc("BFDProfile", "b", "{echoMode: true}"),
            object: "BFDProfile b",
            field: "spec.echoMode",
            reason: |r| matches!(r, Reason::NotSupported { .. }),
        },
        Case {
            rule: "BFD echo interval is not supported",
            valid: doc("BFDProfile", "b", "{receiveInterval: 100}"),
            invalid: doc("BFDProfile", "b", "{echoInterval: 50}"),
            object: "BFDProfile b",
            field: "spec.echoInterval",
            reason: |r| matches!(r, Reason::NotSupported { .. }),
        },
        Case {
            rule: "BFD in a VRF is not supported",
            valid: doc("BFDProfile", "b", "{}")
                + &doc("BGPPeer", "p", "{myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, bfdProfile: b}"),
            invalid: doc("BFDProfile", "b", "{}")
                + &doc("BGPPeer", "p", "{myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, bfdProfile: b, vrf: red}"),
            object: "BGPPeer p",
            field: "spec.bfdProfile",
            reason: |r| matches!(r, Reason::NotSupported { .. }),
        },
        Case {
            rule: "BFD over an unnumbered session is not supported",
            valid: doc("BFDProfile", "b", "{}")
                + &doc("BGPPeer", "p", "{myASN: 1, peerASN: 2, interface: eth1}"),
            invalid: doc("BFDProfile", "b", "{}")
                + &doc("BGPPeer", "p", "{myASN: 1, peerASN: 2, interface: eth1, bfdProfile: b}"),
            object: "BGPPeer p",
            field: "spec.bfdProfile",
            reason: |r| matches!(r, Reason::NotWithInterface { .. }),
        },
        Case {
            rule: "serviceSelectors without aggregation",
            valid: base.clone()
                + &doc("BGPAdvertisement", "adv", "{serviceSelectors: [{matchLabels: {app: web}}]}"),
            invalid: base.clone()
                + &doc("BGPAdvertisement", "adv", "{serviceSelectors: [{matchLabels: {app: web}}], aggregationLength: 24}"),
            object: "BGPAdvertisement adv",
            field: "spec.aggregationLength",
            reason: |r| matches!(r, Reason::ServiceSelectorsWithAggregation { length: 24 }),
        },
        Case {
            rule: "a selector listed twice",
            valid: base.clone()
                + &doc("L2Advertisement", "l2", "{nodeSelectors: [{matchLabels: {a: b}}, {matchLabels: {a: c}}]}"),
            invalid: base.clone()
                + &doc("L2Advertisement", "l2", "{nodeSelectors: [{matchLabels: {a: b}}, {matchLabels: {a: b}}]}"),
            object: "L2Advertisement l2",
            field: "spec.nodeSelectors[1]",
            reason: |r| matches!(r, Reason::Duplicate { .. }),
        },
        Case {
            rule: "a selector value listed twice",
            valid: base.clone()
                + &doc("L2Advertisement", "l2", "{nodeSelectors: [{matchExpressions: [{key: a, operator: In, values: [x, y]}]}]}"),
            invalid: base.clone()
                + &doc("L2Advertisement", "l2", "{nodeSelectors: [{matchExpressions: [{key: a, operator: In, values: [x, x]}]}]}"),
            object: "L2Advertisement l2",
            field: "spec.nodeSelectors[0].matchExpressions[0].values",
            reason: |r| matches!(r, Reason::Duplicate { .. }),
        },
        Case {
            rule: "BGPPeer has both peerASN and dynamicASN",
            valid: base.clone()
                + &doc("BGPPeer", "p", "{myASN: 64512, dynamicASN: external, peerAddress: 10.0.0.1}"),
            invalid: base.clone()
                + &doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64513, dynamicASN: external, peerAddress: 10.0.0.1}"),
            object: "BGPPeer p",
            field: "spec.peerASN",
            reason: |r| matches!(r, Reason::PeerAsnChoice { both: true }),
        },
        Case {
            rule: "BGPPeer has neither peerASN nor dynamicASN",
            valid: base.clone()
                + &doc("BGPPeer", "p", "{myASN: 64512, dynamicASN: internal, peerAddress: 10.0.0.1}"),
            invalid: base.clone()
                + &doc("BGPPeer", "p", "{myASN: 64512, peerAddress: 10.0.0.1}"),
            object: "BGPPeer p",
            field: "spec.peerASN",
            reason: |r| matches!(r, Reason::PeerAsnChoice { both: false }),
        },
        Case {
            rule: "ebgpMultiHop on a dynamicASN internal (iBGP) peer",
            valid: base.clone()
                + &doc("BGPPeer", "p", "{myASN: 64512, dynamicASN: external, ebgpMultiHop: true, peerAddress: 10.0.0.1}"),
            invalid: base.clone()
                + &doc("BGPPeer", "p", "{myASN: 64512, dynamicASN: internal, ebgpMultiHop: true, peerAddress: 10.0.0.1}"),
            object: "BGPPeer p",
            field: "spec.ebgpMultiHop",
            reason: |r| matches!(r, Reason::EbgpMultiHopOnIbgp { .. }),
        },
        Case {
            rule: "BGPPeer vrf is not a device name",
            valid: base.clone() + &peer("p", ", vrf: red"),
            invalid: base.clone() + &peer("p", ", vrf: 'red/blue'"),
            object: "BGPPeer p",
            field: "spec.vrf",
            reason: |r| matches!(r, Reason::InvalidInterface { .. }),
        },
        Case {
            rule: "Two BGPPeers to one address in one VRF (in two VRFs they are two routers)",
            valid: base.clone() + &peer("p", ", vrf: red") + &peer("q", ", vrf: blue"),
            invalid: base.clone() + &peer("p", ", vrf: red") + &peer("q", ", vrf: red"),
            object: "BGPPeer q",
            field: "spec.peerAddress",
            reason: |r| matches!(r, Reason::DuplicatePeer { .. }),
        },
        Case {
            rule: "BGPPeer has both peerAddress and interface",
            valid: base.clone() + &doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64513, interface: eth1}"),
            invalid: base.clone() + &doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64513, interface: eth1, peerAddress: 10.0.0.1}"),
            object: "BGPPeer p",
            field: "spec.peerAddress",
            reason: |r| matches!(r, Reason::PeerAddressChoice { both: true }),
        },
        Case {
            rule: "BGPPeer has neither peerAddress nor interface",
            valid: base.clone() + &doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.1}"),
            invalid: base.clone() + &doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64513}"),
            object: "BGPPeer p",
            field: "spec.peerAddress",
            reason: |r| matches!(r, Reason::PeerAddressChoice { both: false }),
        },
        Case {
            rule: "BGPPeer interface is not a device name",
            valid: base.clone() + &doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64513, interface: eth1}"),
            invalid: base.clone() + &doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64513, interface: 'eth/1'}"),
            object: "BGPPeer p",
            field: "spec.interface",
            reason: |r| matches!(r, Reason::InvalidInterface { .. }),
        },
        Case {
            rule: "An unnumbered BGPPeer with a password (not supported yet: refused, never ignored)",
            valid: base.clone() + &doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64513, interface: eth1}"),
            invalid: base.clone() + &doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64513, interface: eth1, password: x}"),
            object: "BGPPeer p",
            field: "spec.password",
            reason: |r| matches!(r, Reason::NotWithInterface { .. }),
        },
        Case {
            rule: "An unnumbered BGPPeer with ebgpMultiHop",
            valid: base.clone() + &doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64513, interface: eth1}"),
            invalid: base.clone() + &doc("BGPPeer", "p", "{myASN: 64512, peerASN: 64513, interface: eth1, ebgpMultiHop: true}"),
            object: "BGPPeer p",
            field: "spec.ebgpMultiHop",
            reason: |r| matches!(r, Reason::NotWithInterface { .. }),
        },
        Case {
            rule: "BGPAdvertisement names an unknown community alias",
            valid: base.clone()
                + &doc("Community", "c", "{communities: [{name: edge, value: '65000:1'}]}")
                + &doc("BGPAdvertisement", "adv", "{communities: [edge]}"),
            invalid: base.clone()
                + &doc("Community", "c", "{communities: [{name: edge, value: '65000:1'}]}")
                + &doc("BGPAdvertisement", "adv", "{communities: [core]}"),
            object: "BGPAdvertisement adv",
            field: "spec.communities[0]",
            reason: |r| matches!(r, Reason::UnknownReference { kind: Kind::Community, .. }),
        },
        Case {
            rule: "bad standard community",
            valid: base.clone() + &doc("BGPAdvertisement", "adv", "{communities: ['65535:65535']}"),
            invalid: base.clone() + &doc("BGPAdvertisement", "adv", "{communities: ['65536:1']}"),
            object: "BGPAdvertisement adv",
            field: "spec.communities[0]",
            reason: |r| matches!(r, Reason::InvalidCommunity { .. }),
        },
        Case {
            rule: "bad large community",
            valid: base.clone() + &doc("BGPAdvertisement", "adv", "{communities: ['large:4294967295:1:2']}"),
            invalid: base.clone() + &doc("BGPAdvertisement", "adv", "{communities: ['large:1:2']}"),
            object: "BGPAdvertisement adv",
            field: "spec.communities[0]",
            reason: |r| matches!(r, Reason::InvalidCommunity { .. }),
        },
        Case {
            rule: "bad community alias value",
            valid: doc("Community", "c", "{communities: [{name: edge, value: 'large:1:2:3'}]}"),
            invalid: doc("Community", "c", "{communities: [{name: edge, value: '1:2:3'}]}"),
            object: "Community c",
            field: "spec.communities[0].value",
            reason: |r| matches!(r, Reason::InvalidCommunity { .. }),
        },
        Case {
            rule: "duplicate community alias across objects",
            valid: doc("Community", "c", "{communities: [{name: edge, value: '1:2'}]}")
                + &doc("Community", "d", "{communities: [{name: core, value: '1:3'}]}"),
            invalid: doc("Community", "c", "{communities: [{name: edge, value: '1:2'}]}")
                + &doc("Community", "d", "{communities: [{name: edge, value: '1:3'}]}"),
            object: "Community d",
            field: "spec.communities[0].name",
            reason: |r| matches!(r, Reason::Duplicate { .. }),
        },
        Case {
            rule: "the same community twice (alias and literal)",
            valid: base.clone()
                + &doc("Community", "c", "{communities: [{name: edge, value: '1:2'}]}")
                + &doc("BGPAdvertisement", "adv", "{communities: [edge, '1:3']}"),
            invalid: base.clone()
                + &doc("Community", "c", "{communities: [{name: edge, value: '1:2'}]}")
                + &doc("BGPAdvertisement", "adv", "{communities: [edge, '1:2']}"),
            object: "BGPAdvertisement adv",
            field: "spec.communities[1]",
            reason: |r| matches!(r, Reason::Duplicate { .. }),
        },
        Case {
            rule: "aggregation length shorter than the pool's prefix",
            valid: base.clone() + &doc("BGPAdvertisement", "adv", "{aggregationLength: 24}"),
            invalid: base.clone() + &doc("BGPAdvertisement", "adv", "{aggregationLength: 23}"),
            object: "BGPAdvertisement adv",
            field: "spec.aggregationLength",
            reason: |r| matches!(r, Reason::AggregationTooShort { length: 23, pool, prefix } if pool == "base" && prefix == "10.0.0.0/24"),
        },
        Case {
            rule: "aggregation length against a range's most specific prefix",
            valid: pool("r", &["10.3.0.1-10.3.0.2"]) + &doc("BGPAdvertisement", "adv", "{aggregationLength: 32}"),
            invalid: pool("r", &["10.3.0.1-10.3.0.2"]) + &doc("BGPAdvertisement", "adv", "{aggregationLength: 31}"),
            object: "BGPAdvertisement adv",
            field: "spec.aggregationLength",
            reason: |r| matches!(r, Reason::AggregationTooShort { prefix, .. } if prefix == "10.3.0.1/32"),
        },
        Case {
            rule: "IPv6 aggregation length shorter than the pool's prefix",
            valid: pool("v6", &["fd00:9::/120"]) + &doc("BGPAdvertisement", "adv", "{aggregationLengthV6: 120}"),
            invalid: pool("v6", &["fd00:9::/120"]) + &doc("BGPAdvertisement", "adv", "{aggregationLengthV6: 64}"),
            object: "BGPAdvertisement adv",
            field: "spec.aggregationLengthV6",
            reason: |r| matches!(r, Reason::AggregationTooShort { .. }),
        },
        Case {
            rule: "aggregation length out of range",
            valid: base.clone() + &doc("BGPAdvertisement", "adv", "{aggregationLength: 32}"),
            invalid: base.clone() + &doc("BGPAdvertisement", "adv", "{aggregationLength: 33}"),
            object: "BGPAdvertisement adv",
            field: "spec.aggregationLength",
            reason: |r| matches!(r, Reason::OutOfRange { value: 33, min: 1, max: 32 }),
        },
        Case {
            rule: "IPv6 aggregation length out of range",
            valid: base.clone() + &doc("BGPAdvertisement", "adv", "{aggregationLengthV6: 128}"),
            invalid: base.clone() + &doc("BGPAdvertisement", "adv", "{aggregationLengthV6: 0}"),
            object: "BGPAdvertisement adv",
            field: "spec.aggregationLengthV6",
            reason: |r| matches!(r, Reason::OutOfRange { value: 0, .. }),
        },
        Case {
            rule: "conflicting LOCAL_PREF for one pool",
            valid: base.clone()
                + &doc("BGPAdvertisement", "a1", "{localPref: 100}")
                + &doc("BGPAdvertisement", "a2", "{localPref: 100, communities: ['1:1']}"),
            invalid: base.clone()
                + &doc("BGPAdvertisement", "a1", "{localPref: 100}")
                + &doc("BGPAdvertisement", "a2", "{localPref: 200}"),
            object: "BGPAdvertisement a2",
            field: "spec.localPref",
            reason: |r| matches!(r, Reason::ConflictingLocalPref { .. }),
        },
        Case {
            rule: "hold time between 0 and 3s",
            valid: peer("p", ", holdTime: 3s"),
            invalid: peer("p", ", holdTime: 2s"),
            object: "BGPPeer p",
            field: "spec.holdTime",
            reason: |r| matches!(r, Reason::HoldTimeTooShort { .. }),
        },
        Case {
            rule: "hold time 0 is allowed (no keepalives)",
            valid: peer("p", ", holdTime: 0s"),
            invalid: peer("p", ", holdTime: 0s, keepaliveTime: 1s"),
            object: "BGPPeer p",
            field: "spec.keepaliveTime",
            reason: |r| matches!(r, Reason::KeepaliveExceedsHold { .. }),
        },
        Case {
            rule: "keepalive longer than hold",
            valid: peer("p", ", holdTime: 9s, keepaliveTime: 3s"),
            invalid: peer("p", ", holdTime: 9s, keepaliveTime: 10s"),
            object: "BGPPeer p",
            field: "spec.keepaliveTime",
            reason: |r| matches!(r, Reason::KeepaliveExceedsHold { .. }),
        },
        Case {
            rule: "timers are whole seconds",
            valid: peer("p", ", holdTime: 1m30s"),
            invalid: peer("p", ", holdTime: 3500ms"),
            object: "BGPPeer p",
            field: "spec.holdTime",
            reason: |r| matches!(r, Reason::TimerNotWholeSeconds { .. }),
        },
        Case {
            rule: "durations parse",
            valid: peer("p", ", connectTime: 10s"),
            invalid: peer("p", ", connectTime: '10'"),
            object: "BGPPeer p",
            field: "spec.connectTime",
            reason: |r| matches!(r, Reason::InvalidDuration { .. }),
        },
        Case {
            rule: "connect time at least 1s",
            valid: peer("p", ", connectTime: 1s"),
            invalid: peer("p", ", connectTime: 0s"),
            object: "BGPPeer p",
            field: "spec.connectTime",
            reason: |r| matches!(r, Reason::TimerNotWholeSeconds { .. }),
        },
        Case {
            rule: "ASN 0",
            valid: doc("BGPPeer", "p", "{myASN: 1, peerASN: 4294967294, peerAddress: 10.0.0.1}"),
            invalid: doc("BGPPeer", "p", "{myASN: 0, peerASN: 64513, peerAddress: 10.0.0.1}"),
            object: "BGPPeer p",
            field: "spec.myASN",
            reason: |r| matches!(r, Reason::ReservedAsn { asn: 0 }),
        },
        Case {
            rule: "ASN 4294967295 (RFC 7300)",
            valid: doc("BGPPeer", "p", "{myASN: 1, peerASN: 4294967294, peerAddress: 10.0.0.1}"),
            invalid: doc("BGPPeer", "p", "{myASN: 1, peerASN: 4294967295, peerAddress: 10.0.0.1}"),
            object: "BGPPeer p",
            field: "spec.peerASN",
            reason: |r| matches!(r, Reason::ReservedAsn { asn: 4294967295 }),
        },
        Case {
            rule: "peer address is an IP",
            valid: doc("BGPPeer", "p", "{myASN: 1, peerASN: 2, peerAddress: 'fd00::1'}"),
            invalid: doc("BGPPeer", "p", "{myASN: 1, peerASN: 2, peerAddress: router.example}"),
            object: "BGPPeer p",
            field: "spec.peerAddress",
            reason: |r| matches!(r, Reason::InvalidIp { .. }),
        },
        Case {
            rule: "source address of the peer's family",
            valid: peer("p", ", sourceAddress: 10.0.0.2"),
            invalid: peer("p", ", sourceAddress: 'fd00::2'"),
            object: "BGPPeer p",
            field: "spec.sourceAddress",
            reason: |r| matches!(r, Reason::SourceFamilyMismatch { .. }),
        },
        Case {
            rule: "router ID is IPv4",
            valid: peer("p", ", routerID: 10.0.0.2"),
            invalid: peer("p", ", routerID: 'fd00::2'"),
            object: "BGPPeer p",
            field: "spec.routerID",
            reason: |r| matches!(r, Reason::InvalidIp { expected: "an IPv4 address", .. }),
        },
        Case {
            rule: "peer port range",
            valid: peer("p", ", peerPort: 1790"),
            invalid: peer("p", ", peerPort: 70000"),
            object: "BGPPeer p",
            field: "spec.peerPort",
            reason: |r| matches!(r, Reason::OutOfRange { .. }),
        },
        Case {
            rule: "unknown BFD profile",
            valid: doc("BFDProfile", "fast", "{}") + &peer("p", ", bfdProfile: fast"),
            invalid: doc("BFDProfile", "fast", "{}") + &peer("p", ", bfdProfile: slow"),
            object: "BGPPeer p",
            field: "spec.bfdProfile",
            reason: |r| matches!(r, Reason::UnknownReference { kind: Kind::BFDProfile, .. }),
        },
        Case {
            rule: "password and passwordSecret together",
            valid: peer("p", ", password: s3cret"),
            invalid: peer("p", ", password: s3cret, passwordSecret: {name: bgp}"),
            object: "BGPPeer p",
            field: "spec.passwordSecret",
            reason: |r| matches!(r, Reason::PasswordConflict),
        },
        Case {
            rule: "passwordSecret must exist",
            valid: secret("bgp", "kubernetes.io/basic-auth", "stringData: {password: s3cret}")
                + &peer("p", ", passwordSecret: {name: bgp}"),
            invalid: peer("p", ", passwordSecret: {name: bgp}"),
            object: "BGPPeer p",
            field: "spec.passwordSecret",
            reason: |r| matches!(r, Reason::BadSecret { problem, .. } if problem == "not found"),
        },
        Case {
            rule: "passwordSecret must be basic-auth",
            valid: secret("bgp", "kubernetes.io/basic-auth", "data: {password: czNjcmV0}")
                + &peer("p", ", passwordSecret: {name: bgp}"),
            invalid: secret("bgp", "Opaque", "data: {password: czNjcmV0}") + &peer("p", ", passwordSecret: {name: bgp}"),
            object: "BGPPeer p",
            field: "spec.passwordSecret",
            reason: |r| matches!(r, Reason::BadSecret { problem, .. } if problem.contains("Opaque")),
        },
        Case {
            rule: "passwordSecret must hold a password key",
            valid: secret("bgp", "kubernetes.io/basic-auth", "data: {password: czNjcmV0}")
                + &peer("p", ", passwordSecret: {name: bgp}"),
            invalid: secret("bgp", "kubernetes.io/basic-auth", "data: {username: czNjcmV0}")
                + &peer("p", ", passwordSecret: {name: bgp}"),
            object: "BGPPeer p",
            field: "spec.passwordSecret",
            reason: |r| matches!(r, Reason::BadSecret { problem, .. } if problem.contains("password")),
        },
        Case {
            rule: "password length fits TCP MD5",
            valid: peer("p", &format!(", password: {}", "x".repeat(80))),
            invalid: peer("p", &format!(", password: {}", "x".repeat(81))),
            object: "BGPPeer p",
            field: "spec.password",
            reason: |r| matches!(r, Reason::PasswordLength { len: 81 }),
        },
        Case {
            rule: "duplicate peer for the same nodes",
            valid: peer("p", "") + &doc("BGPPeer", "q", "{myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.1, peerPort: 1790}"),
            invalid: peer("p", "") + &peer("q", ""),
            object: "BGPPeer q",
            field: "spec.peerAddress",
            reason: |r| matches!(r, Reason::DuplicatePeer { other, .. } if other == "p"),
        },
        Case {
            rule: "BFD intervals in range",
            valid: doc("BFDProfile", "b", "{receiveInterval: 10, transmitInterval: 60000}"),
            invalid: doc("BFDProfile", "b", "{receiveInterval: 9}"),
            object: "BFDProfile b",
            field: "spec.receiveInterval",
            reason: |r| matches!(r, Reason::OutOfRange { value: 9, min: 10, max: 60000 }),
        },
        Case {
            rule: "BFD detect multiplier in range",
            valid: doc("BFDProfile", "b", "{detectMultiplier: 255}"),
            invalid: doc("BFDProfile", "b", "{detectMultiplier: 1}"),
            object: "BFDProfile b",
            field: "spec.detectMultiplier",
            reason: |r| matches!(r, Reason::OutOfRange { .. }),
        },
        Case {
            rule: "BFD minimum TTL in range",
            valid: doc("BFDProfile", "b", "{minimumTtl: 254}"),
            invalid: doc("BFDProfile", "b", "{minimumTtl: 255}"),
            object: "BFDProfile b",
            field: "spec.minimumTtl",
            reason: |r| matches!(r, Reason::OutOfRange { .. }),
        },
        Case {
            rule: "objects need a name",
            valid: doc("BFDProfile", "b", "{}"),
            invalid: "---\napiVersion: ferrolb.io/v1beta1\nkind: BFDProfile\nmetadata: {namespace: x}\nspec: {}\n".into(),
            object: "BFDProfile ",
            field: "metadata.name",
            reason: |r| matches!(r, Reason::MissingName),
        },
    ]
}

#[test]
fn every_rule_accepts_its_valid_case_and_names_the_fault_in_its_invalid_case() {
    let mut failures = Vec::new();
    for case in cases() {
        if let Err(errs) = run(&case.valid) {
            failures.push(format!("{}: valid case refused: {errs:?}", case.rule));
        }
        match run(&case.invalid) {
            Ok(_) => failures.push(format!("{}: invalid case accepted", case.rule)),
            Err(errs) => {
                let hit = errs.iter().any(|(object, field, reason)| {
                    object == case.object && field == case.field && (case.reason)(reason)
                });
                if !hit {
                    failures.push(format!(
                        "{}: want an error on {} {}, got {errs:?}",
                        case.rule, case.object, case.field
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} rule(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let yaml = pool("a", &["10.1.0.9-10.1.0.1", "nonsense"])
        + &peer("p", ", holdTime: 1s")
        + &doc("BGPAdvertisement", "adv", "{communities: [zz]}");
    let errs = run(&yaml).unwrap_err();
    assert!(errs.len() >= 4, "{errs:?}");
}

#[test]
fn names_longer_than_kubernetes_allows_are_refused() {
    let ok = "a".repeat(253);
    assert!(run(&pool(&ok, &["10.0.0.0/30"])).is_ok());
    let long = "a".repeat(254);
    let errs = run(&pool(&long, &["10.0.0.0/30"])).unwrap_err();
    assert!(
        errs.iter()
            .any(|(_, f, r)| f == "metadata.name" && *r == Reason::NameTooLong { len: 254 }),
        "{errs:?}"
    );
}

#[test]
fn an_error_quotes_at_most_about_a_hundred_characters_of_a_value() {
    // A 10 MB scalar in a pool's addresses: the message stays short and says how long it was.
    let huge = "x".repeat(10 << 20);
    let yaml = pool("p", &[huge.as_str()]);
    let errs =
        ferrolb_config::build(&ferrolb_config::parse_documents(&yaml).unwrap().config).unwrap_err();
    let text = errs.to_string();
    assert!(
        text.len() < 600,
        "{} bytes: {}",
        text.len(),
        &text[..600.min(text.len())]
    );
    assert!(text.contains("(10485760 bytes)"), "{text}");
}

#[test]
fn messages_name_object_field_and_cause() {
    let yaml = pool("a", &["10.1.0.0/24"]) + &pool("b", &["10.1.0.7-10.1.0.9"]);
    let docs = parse_documents(&yaml).unwrap();
    let errs = build(&docs.config).unwrap_err();
    let text = errs.to_string();
    assert!(
        text.contains("IPAddressPool ferrolb-system/b: spec.addresses[0]: 10.1.0.7-10.1.0.9 overlaps 10.1.0.0/24 of IPAddressPool ferrolb-system/a"),
        "{text}"
    );
}

/// MetalLB drop-in (issue 13, class 4): priority 0 means "not set", as in MetalLB: a pool with
/// any priority is tried before it, the same as before a pool without one.
#[test]
fn priority_zero_is_not_set() {
    let yaml = doc(
        "IPAddressPool",
        "zero",
        "{addresses: [10.1.0.0/24], serviceAllocation: {priority: 0, namespaces: [shop]}}",
    ) + &doc(
        "IPAddressPool",
        "five",
        "{addresses: [10.2.0.0/24], serviceAllocation: {priority: 5, namespaces: [shop]}}",
    );
    let cfg = run(&yaml).unwrap();
    let priority = |p: &str| cfg.pools[p].allocation.as_ref().unwrap().priority;
    assert_eq!(priority("zero"), None);
    assert_eq!(priority("five"), Some(5));
}

#[test]
fn defaults_and_resolution() {
    let yaml = pool("a", &["10.1.0.0/24", "10.1.1.0-10.1.1.255", "fd00::/126"])
        + &doc(
            "IPAddressPool",
            "manual",
            "{addresses: [10.2.0.0/24], autoAssign: false, avoidBuggyIPs: true}",
        )
        + &doc(
            "Community",
            "c",
            "{communities: [{name: edge, value: 'large:1:2:3'}]}",
        )
        + &doc(
            "BGPAdvertisement",
            "adv",
            "{ipAddressPools: [a], communities: [edge, '65000:7']}",
        )
        + &doc("L2Advertisement", "l2", "{}")
        + &peer("p", ", keepaliveTime: 10s")
        + &peer("q", ", peerPort: 1790, holdTime: 30s")
        + &doc("BFDProfile", "b", "{}");
    let config = run(&yaml).expect("valid");
    let a = &config.pools["a"];
    assert!(a.auto_assign && !a.avoid_buggy_ips);
    assert_eq!(
        a.ranges.len(),
        2,
        "the /24 and the adjacent range merge: {:?}",
        a.ranges
    );
    assert_eq!(a.ranges[0].size(), 512);
    let manual = &config.pools["manual"];
    assert!(!manual.auto_assign && manual.avoid_buggy_ips);
    let adv = &config.bgp_advertisements[0];
    assert_eq!(
        (adv.aggregation_length, adv.aggregation_length_v6),
        (32, 128)
    );
    assert_eq!(adv.pools.iter().collect::<Vec<_>>(), ["a"]);
    let communities: Vec<String> = adv.communities.iter().map(|c| c.to_string()).collect();
    assert_eq!(communities, ["65000:7", "large:1:2:3"]);
    assert_eq!(
        config.l2_advertisements[0].pools.len(),
        2,
        "no pools named means every pool"
    );
    let p = &config.peers["p"];
    assert_eq!(
        (p.hold_time.as_secs(), p.keepalive_time.as_secs(), p.port),
        (30, 10, 179)
    );
    let q = &config.peers["q"];
    assert_eq!(
        (q.hold_time.as_secs(), q.keepalive_time.as_secs(), q.port),
        (30, 10, 1790)
    );
    assert_eq!(config.bfd_profiles["b"].detect_multiplier, 3);
    assert_eq!(config.bfd_profiles["b"].receive_interval_ms, 300);
}

#[test]
fn pool_selectors_pick_pools_by_label() {
    let yaml = "---\napiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lab, labels: {zone: a}}\nspec: {addresses: [10.5.0.0/24]}\n".to_string()
        + &pool("other", &["10.6.0.0/24"])
        + &doc("L2Advertisement", "l2", "{ipAddressPoolSelectors: [{matchLabels: {zone: a}}]}");
    let config = run(&yaml).expect("valid");
    assert_eq!(
        config.l2_advertisements[0].pools.iter().collect::<Vec<_>>(),
        ["lab"]
    );
}

/// MetalLB drop-in (issue 13, class 6): a field the kind does not have is refused, named by its
/// path with the nearest known field, instead of being read and ignored.
#[test]
fn unknown_fields_are_refused_with_the_nearest_known_one() {
    let err = |yaml: &str| match parse_documents(yaml) {
        Ok(_) => panic!("accepted: {yaml}"),
        Err(e) => e.to_string(),
    };
    let e = err(&doc(
        "IPAddressPool",
        "p",
        "{addresses: [10.0.0.0/24], autoAsign: false}",
    ));
    assert!(
        e.contains("unknown field spec.autoAsign (did you mean spec.autoAssign?)"),
        "{e}"
    );
    let e = err(&doc(
        "BGPAdvertisement",
        "a",
        "{ipAddressPools: [p], aggregationLenght: 24}",
    ));
    assert!(
        e.contains("unknown field spec.aggregationLenght (did you mean spec.aggregationLength?)"),
        "{e}"
    );
    // Inside a list item, and with nothing near: the known fields are listed.
    let e = err(&doc(
        "Community",
        "c",
        "{communities: [{name: edge, value: '65000:1', colour: red}]}",
    ));
    assert!(
        e.contains("unknown field spec.communities.0.colour (known here: name, value)"),
        "{e}"
    );
    let e = err(&peer("p", ", holdtime: 9s"));
    assert!(e.contains("did you mean spec.holdTime?"), "{e}");
    // The documented fields still parse.
    assert!(
        run(&doc(
            "IPAddressPool",
            "p",
            "{addresses: [10.0.0.0/24], autoAssign: false}"
        ))
        .is_ok()
    );
}

/// MetalLB drop-in (issue 13, class 3): MetalLB's documented minimal L2Advertisement, with no
/// spec, announces every pool.
#[test]
fn an_l2_advertisement_without_spec_announces_every_pool() {
    let yaml = pool("lan", &["10.0.0.0/24"])
        + "---\napiVersion: ferrolb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: example, namespace: ferrolb-system}\n";
    let cfg = run(&yaml).unwrap();
    let ad = &cfg.l2_advertisements[0];
    assert_eq!(ad.name, "example");
    assert_eq!(ad.pools, ["lan".to_string()].into());
}

/// MetalLB's deployment_bgp.yaml sample: a BGPAdvertisement with no spec, every pool to every
/// peer from every node, host routes.
#[test]
fn a_bgp_advertisement_without_spec_announces_every_pool() {
    let yaml = pool("lan", &["10.0.0.0/24"])
        + "---\napiVersion: ferrolb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: empty, namespace: ferrolb-system}\n";
    let cfg = run(&yaml).unwrap();
    let ad = &cfg.bgp_advertisements[0];
    assert_eq!(ad.name, "empty");
    assert_eq!(ad.pools, ["lan".to_string()].into());
    assert!(ad.peers.is_empty() && ad.node_selectors.is_empty());
    assert_eq!((ad.aggregation_length, ad.aggregation_length_v6), (32, 128));
}

#[test]
fn malformed_yaml_names_the_document() {
    let yaml = pool("a", &["10.1.0.0/24"])
        + "---\napiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b}\nspec: {addresses: 7}\n";
    let err = parse_documents(&yaml).unwrap_err().to_string();
    assert!(err.starts_with("document 1:"), "{err}");
    let err = parse_documents("kind: [unclosed").unwrap_err().to_string();
    assert!(err.starts_with("document 0:"), "{err}");
}

/// The model over time, as the controller, the speaker and standalone run it.
fn model_build(model: &mut LastGood, yaml: &str) -> Built {
    let docs =
        parse_documents(yaml).unwrap_or_else(|e| panic!("test YAML does not parse: {e}\n{yaml}"));
    model.build(&docs.config)
}

fn object(kind: Kind, name: &str) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: Some("ferrolb-system".into()),
        name: name.into(),
    }
}

/// MetalLB drop-in (issue 13, class 2): an advertisement naming a pool or a peer that does not
/// exist yet is accepted and matches nothing (a list of only such peers sends to nobody, never
/// to everyone); its Valid condition says so. When the pool comes, it matches.
#[test]
fn dangling_references_match_nothing_and_are_told() {
    let mut model = LastGood::default();
    let yaml = pool("base", &["10.1.0.0/24"])
        + &peer("p", "")
        + &doc("L2Advertisement", "l2", "{ipAddressPools: [later]}")
        + &doc(
            "BGPAdvertisement",
            "adv",
            "{ipAddressPools: [base], peers: [q]}",
        );
    let built = model_build(&mut model, &yaml);
    assert!(built.errors.0.is_empty(), "{}", built.errors);
    let l2 = &built.config.l2_advertisements[0];
    assert!(l2.pools.is_empty(), "{l2:?}");
    let adv = &built.config.bgp_advertisements[0];
    assert_eq!(adv.peers, ["q".to_string()].into(), "{adv:?}");
    let (ok, message) = built.verdict(&object(Kind::L2Advertisement, "l2"));
    assert!(ok);
    assert_eq!(
        message,
        "accepted; spec.ipAddressPools[0]: no IPAddressPool named \"later\" yet: it matches nothing until one is accepted"
    );
    let (ok, message) = built.verdict(&object(Kind::BGPAdvertisement, "adv"));
    assert!(
        ok && message.contains("spec.peers[0]: no BGPPeer named \"q\""),
        "{message}"
    );
    assert_eq!(
        built.verdict(&object(Kind::IPAddressPool, "base")),
        (true, "accepted".to_string())
    );

    // The pool arrives: the advertisement now selects it, and the note is gone.
    let built = model_build(&mut model, &(yaml + &pool("later", &["10.2.0.0/24"])));
    assert!(built.errors.0.is_empty(), "{built:?}");
    assert_eq!(
        built.notes.len(),
        1,
        "only the peer q note is left: {built:?}"
    );
    assert_eq!(built.notes[0].object, object(Kind::BGPAdvertisement, "adv"));
    assert_eq!(
        built.config.l2_advertisements[0].pools,
        ["later".to_string()].into()
    );
}

/// Issue 13, class 2: an invalid object is refused on its own; every unrelated valid change
/// takes effect; an edit that breaks an object keeps its last accepted version in force.
#[test]
fn an_invalid_object_is_refused_alone() {
    let mut model = LastGood::default();
    let good = pool("a", &["10.1.0.0/24"]) + &pool("b", &["10.2.0.0/24"]) + &peer("p", "");
    let built = model_build(&mut model, &good);
    assert!(built.errors.0.is_empty());

    // Pool a is edited into nonsense and a new pool c arrives in the same snapshot.
    let edited = pool("a", &["nonsense"])
        + &pool("b", &["10.2.0.0/24"])
        + &pool("c", &["10.3.0.0/24"])
        + &peer("p", ", holdTime: 1s");
    let built = model_build(&mut model, &edited);
    let blamed: BTreeSet<String> = built
        .errors
        .0
        .iter()
        .map(|e| e.object.name.clone())
        .collect();
    assert_eq!(
        blamed,
        ["a".to_string(), "p".to_string()].into(),
        "{}",
        built.errors
    );
    // a's last accepted addresses stay in force, c takes effect, p keeps its last version.
    let a = &built.config.pools["a"];
    assert_eq!(a.ranges.len(), 1);
    assert_eq!(a.ranges[0].first().to_string(), "10.1.0.0");
    assert!(built.config.pools.contains_key("c"));
    assert_eq!(
        built.config.peers["p"].hold_time,
        ferrolb_config::DEFAULT_HOLD_TIME
    );
    let (ok, message) = built.verdict(&object(Kind::IPAddressPool, "a"));
    assert!(!ok);
    assert!(
        message.starts_with("spec.addresses[0]: \"nonsense\" is not a CIDR")
            && message.ends_with("; its last accepted version stays in force"),
        "{message}"
    );

    // A new object that is invalid from the start is not in force at all.
    let built = model_build(&mut model, &(edited + &pool("d", &[])));
    let (ok, message) = built.verdict(&object(Kind::IPAddressPool, "d"));
    assert!(
        !ok && message.ends_with("; it is not in force"),
        "{message}"
    );
    assert!(!built.config.pools.contains_key("d"));
    assert!(built.config.pools.contains_key("a") && built.config.pools.contains_key("c"));
}

/// Issue 13, class 2: with overlapping pools the older pool keeps working and the newer one
/// is refused, whichever sorts first by name, and whichever comes first in the snapshot.
#[test]
fn of_two_overlapping_pools_the_newer_is_refused() {
    let dated = |name: &str, addresses: &str, created: &str| {
        format!(
            "---\napiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: ferrolb-system, creationTimestamp: '{created}'}}\nspec: {{addresses: [{addresses}]}}\n"
        )
    };
    let old = dated("z-old", "10.1.0.0/24", "2026-01-01T00:00:00Z");
    let new = dated("a-new", "10.1.0.128/25", "2026-06-01T00:00:00Z");
    for yaml in [old.clone() + &new, new.clone() + &old] {
        // The strict build and a fresh model alike blame the newer pool.
        let errs = run(&yaml).unwrap_err();
        assert!(
            errs.iter().all(|(o, _, _)| o == "IPAddressPool a-new"),
            "{errs:?}"
        );
        let built = LastGood::default().build(&parse_documents(&yaml).unwrap().config);
        assert!(built.config.pools.contains_key("z-old"));
        assert!(!built.config.pools.contains_key("a-new"));
    }

    // Without creation times (standalone files), the pool accepted first keeps working: a
    // pool added later that overlaps it is refused, though its name sorts first.
    let mut model = LastGood::default();
    let built = model_build(&mut model, &pool("z", &["10.1.0.0/24"]));
    assert!(built.errors.0.is_empty());
    let built = model_build(
        &mut model,
        &(pool("a", &["10.1.0.0/25"]) + &pool("z", &["10.1.0.0/24"])),
    );
    assert!(built.config.pools.contains_key("z"));
    assert!(!built.config.pools.contains_key("a"));
    assert!(
        built.errors.0.iter().all(|e| e.object.name == "a"),
        "{}",
        built.errors
    );

    // And an edit of an accepted pool that makes it overlap another is refused, not the other.
    let yaml = pool("a", &["10.2.0.0/24"]) + &pool("z", &["10.1.0.0/24"]);
    let mut model = LastGood::default();
    assert!(model_build(&mut model, &yaml).errors.0.is_empty());
    let edit = pool("a", &["10.2.0.0/24"]) + &pool("z", &["10.2.0.128/25"]);
    let built = model_build(&mut model, &edit);
    assert!(
        built.errors.0.iter().all(|e| e.object.name == "z"),
        "{}",
        built.errors
    );
    assert!(built.kept.contains(&object(Kind::IPAddressPool, "z")));
    assert_eq!(
        built.config.pools["z"].ranges[0].first().to_string(),
        "10.1.0.0"
    );
}

/// A peer naming a BFD profile that is itself refused says so, instead of "no such profile".
#[test]
fn a_reference_to_a_refused_object_says_it_is_refused() {
    let yaml = pool("a", &["10.1.0.0/24"])
        + &doc("BFDProfile", "fast", "{detectMultiplier: 0}")
        + &peer("p", ", bfdProfile: fast");
    let built = LastGood::default().build(&parse_documents(&yaml).unwrap().config);
    let (ok, message) = built.verdict(&object(Kind::BGPPeer, "p"));
    assert!(!ok);
    assert_eq!(
        message,
        "spec.bfdProfile: BFDProfile \"fast\" is refused (its status says why); it is not in force"
    );
}

/// MetalLB's samples write BGPPeer as `metallb.io/v1beta2`; with the group renamed, ferrolb
/// reads it (its CRD serves v1beta2 too, with the same schema).
#[test]
fn a_bgppeer_written_as_v1beta2_is_read() {
    let yaml = pool("a", &["10.1.0.0/24"])
        + "---\napiVersion: ferrolb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: peer, namespace: ferrolb-system}\nspec: {myASN: 64512, peerASN: 64512, peerAddress: 172.30.0.3}\n";
    let cfg = run(&yaml).unwrap();
    assert_eq!(cfg.peers["peer"].address.to_string(), "172.30.0.3");
    // Other kinds have no v1beta2.
    let yaml = "---\napiVersion: ferrolb.io/v1beta2\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [10.0.0.0/24]}\n";
    let err = parse_documents(yaml).unwrap_err().to_string();
    assert!(
        err.contains("ferrolb.io/v1beta2 IPAddressPool: ferrolb serves ferrolb.io/v1beta1"),
        "{err}"
    );
}

/// An edit that would make another object, in force and unchanged, invalid is refused itself
/// (with the other's error as the reason); the untouched object stays in force.
#[test]
fn an_edit_that_breaks_an_untouched_object_is_the_one_refused() {
    let mut model = LastGood::default();
    let ad = doc(
        "BGPAdvertisement",
        "agg",
        "{ipAddressPools: [a], aggregationLength: 24}",
    );
    let comm = doc(
        "Community",
        "c",
        "{communities: [{name: edge, value: '65000:1'}]}",
    );
    let uses_alias = doc(
        "BGPAdvertisement",
        "tagged",
        "{ipAddressPools: [a], communities: [edge]}",
    );
    let good = pool("a", &["10.1.0.0/24"]) + &ad + &comm + &uses_alias;
    assert!(model_build(&mut model, &good).errors.0.is_empty());

    // The pool shrinks below the advertisement's /24 aggregation (whose aggregate would then
    // cover addresses it does not hold): the advertisement did not change, the pool did, so
    // the pool's edit is refused.
    let edited = pool("a", &["10.1.0.0/25"]) + &ad + &comm + &uses_alias;
    let built = model_build(&mut model, &edited);
    let blamed: BTreeSet<String> = built
        .errors
        .0
        .iter()
        .map(|e| e.object.to_string())
        .collect();
    assert_eq!(
        blamed,
        ["IPAddressPool ferrolb-system/a".to_string()].into(),
        "{}",
        built.errors
    );
    assert!(
        matches!(&built.errors.0[0].reason, Reason::BreaksOther { other, .. } if other.name == "agg"),
        "{}",
        built.errors
    );
    assert!(
        built
            .config
            .bgp_advertisements
            .iter()
            .any(|a| a.name == "agg")
    );
    assert_eq!(
        built.config.pools["a"].ranges[0].last().to_string(),
        "10.1.0.255"
    );
    let (ok, message) = built.verdict(&object(Kind::IPAddressPool, "a"));
    assert!(
        !ok && message.contains("would make BGPAdvertisement ferrolb-system/agg invalid"),
        "{message}"
    );

    // A broken edit of the Community: refused, its old alias stays, the advertisement using it
    // stays in force.
    let broken_comm = doc(
        "Community",
        "c",
        "{communities: [{name: edge, value: 'nonsense'}]}",
    );
    let built = model_build(
        &mut model,
        &(pool("a", &["10.1.0.0/24"]) + &ad + &broken_comm + &uses_alias),
    );
    let blamed: BTreeSet<String> = built
        .errors
        .0
        .iter()
        .map(|e| e.object.to_string())
        .collect();
    assert_eq!(
        blamed,
        ["Community ferrolb-system/c".to_string()].into(),
        "{}",
        built.errors
    );
    assert!(
        built
            .config
            .bgp_advertisements
            .iter()
            .any(|a| a.name == "tagged")
    );
}

/// A process with no memory (a restarted controller, a speaker started later) reads the last
/// accepted spec from the object's status (`acceptedSpec`, written by the controller): a broken
/// edit keeps that version in force there too, and counts as the change in a conflict, so
/// every process decides alike.
#[test]
fn the_accepted_spec_in_status_is_the_last_version_after_a_restart() {
    let with_status = |name: &str, addresses: &str, accepted: &str, created: &str| {
        format!(
            "---\napiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: ferrolb-system, creationTimestamp: '{created}'}}\nspec: {{addresses: [{addresses}]}}\nstatus: {{acceptedSpec: {{addresses: [{accepted}]}}}}\n"
        )
    };
    // Pool a was edited into nonsense while the controller was down.
    let yaml = with_status("a", "nonsense", "10.1.0.0/24", "2026-01-01T00:00:00Z");
    let built = LastGood::default().build(&parse_documents(&yaml).unwrap().config);
    assert!(
        built.kept.contains(&object(Kind::IPAddressPool, "a")),
        "{built:?}"
    );
    assert_eq!(
        built.config.pools["a"].ranges[0].first().to_string(),
        "10.1.0.0"
    );

    // Pool a (the older) was edited to overlap pool z (unchanged): a fresh process refuses
    // a's edit, as the running one did, and keeps a's accepted addresses.
    let yaml = with_status("a", "10.2.0.0/25", "10.1.0.0/24", "2026-01-01T00:00:00Z")
        + &with_status("z", "10.2.0.0/24", "10.2.0.0/24", "2026-06-01T00:00:00Z");
    let built = LastGood::default().build(&parse_documents(&yaml).unwrap().config);
    let blamed: BTreeSet<String> = built
        .errors
        .0
        .iter()
        .map(|e| e.object.name.clone())
        .collect();
    assert_eq!(blamed, ["a".to_string()].into(), "{}", built.errors);
    assert_eq!(
        built.config.pools["a"].ranges[0].first().to_string(),
        "10.1.0.0"
    );
    assert!(built.config.pools.contains_key("z"));
}
