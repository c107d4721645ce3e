//! Kubernetes objects as the announcer's inputs: Nodes and Services with their EndpointSlices
//! turned into the election's view (k8s-openapi types only, no client). Pure. The speaker feeds
//! the driver with these; `ferrolb explain` reads the same objects through kubectl.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::election::{self, TrafficPolicy};
use ferrolb_config::annotations;
use ferrolb_config::service::{SERVICE_NAME_LABEL, is_ours};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

fn namespace_of(svc: &Service) -> &str {
    svc.metadata.namespace.as_deref().unwrap_or_default()
}

fn name_of(svc: &Service) -> &str {
    svc.metadata.name.as_deref().unwrap_or_default()
}

/// The election's view of a Node.
pub fn node(n: &Node) -> election::Node {
    election::Node::from_object(n)
}

/// A Node's InternalIP (the address speakers reach each other at, with hostNetwork).
pub fn internal_ip(n: &Node) -> Option<IpAddr> {
    internal_ips(n).next()
}

/// Every InternalIP of the Node, in its order.
pub fn internal_ips(n: &Node) -> impl Iterator<Item = IpAddr> + '_ {
    n.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
}

/// The BGP identifier for peers without a `routerID`: the Node's first IPv4 InternalIP, even
/// when an IPv6 one comes first (dual-stack Nodes list either family first).
pub fn router_id(n: &Node) -> Option<std::net::Ipv4Addr> {
    internal_ips(n).find_map(|ip| match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    })
}

/// The election's view of a LoadBalancer Service that has addresses, with its endpoints.
/// `None` for Services that are not ferrolb's (not LoadBalancer, other class) or have no address.
pub fn service(
    svc: &Service,
    slices: &[&EndpointSlice],
    lb_class: Option<&str>,
) -> Option<election::Service> {
    if !is_ours(svc, lb_class) {
        return None;
    }
    let ips: Vec<IpAddr> = svc
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    if ips.is_empty() {
        return None;
    }
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    let pool = annotations::lookup(&annotations, "ip-allocated-from-pool")
        .map(|f| f.value.to_string())
        .unwrap_or_default();
    let mut local_endpoint_nodes = BTreeSet::new();
    let mut has_serving_endpoint = false;
    for slice in slices {
        for ep in slice.endpoints.iter().flatten() {
            let c = ep.conditions.as_ref();
            // As in Kubernetes: unset "ready" counts as ready; terminating-but-serving still serves.
            let serving = c.is_none_or(|c| c.ready.unwrap_or(true) || c.serving == Some(true));
            if serving {
                has_serving_endpoint = true;
                if let Some(n) = &ep.node_name {
                    local_endpoint_nodes.insert(n.clone());
                }
            }
        }
    }
    Some(election::Service {
        name: format!("{}/{}", namespace_of(svc), name_of(svc)),
        ips,
        pool,
        labels: svc.metadata.labels.clone().unwrap_or_default(),
        traffic_policy: TrafficPolicy::of(svc),
        local_endpoint_nodes,
        has_serving_endpoint,
    })
}

/// Every ferrolb Service with its EndpointSlices (matched by the service-name label and namespace).
pub fn services(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    lb_class: Option<&str>,
) -> Vec<election::Service> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        if let Some(name) = (s.metadata.labels.as_ref()).and_then(|l| l.get(SERVICE_NAME_LABEL)) {
            by_service
                .entry((
                    s.metadata.namespace.clone().unwrap_or_default(),
                    name.clone(),
                ))
                .or_default()
                .push(s);
        }
    }
    let none = Vec::new();
    let mut out: Vec<election::Service> = services
        .iter()
        .filter_map(|svc| {
            let key = (namespace_of(svc).to_string(), name_of(svc).to_string());
            service(svc, by_service.get(&key).unwrap_or(&none), lb_class)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: serde_json::Value, ingress: &[&str]) -> Service {
        let ingress: Vec<_> = ingress.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                         "annotations": {"metallb.io/ip-allocated-from-pool": "lan"}},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": ingress}}
        }))
        .unwrap()
    }

    fn slice(endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4", "endpoints": endpoints
        }))
        .unwrap()
    }

    /// MetalLB drop-in (issue 13, class 8): a dual-stack Node listing its IPv6 InternalIP first
    /// still has a BGP identifier (its IPv4 one); an IPv6-only Node has none.
    #[test]
    fn router_id_is_the_first_ipv4_internal_ip() {
        let node = |addrs: &[(&str, &str)]| -> Node {
            let addresses: Vec<_> = addrs
                .iter()
                .map(|(t, a)| json!({"type": t, "address": a}))
                .collect();
            serde_json::from_value(json!({
                "metadata": {"name": "n1"},
                "status": {"addresses": addresses}
            }))
            .unwrap()
        };
        let n = node(&[
            ("Hostname", "n1"),
            ("InternalIP", "fd00::11"),
            ("ExternalIP", "10.9.9.9"),
            ("InternalIP", "10.0.0.11"),
        ]);
        assert_eq!(internal_ip(&n), Some("fd00::11".parse().unwrap()));
        assert_eq!(router_id(&n), Some("10.0.0.11".parse().unwrap()));
        assert_eq!(router_id(&node(&[("InternalIP", "fd00::11")])), None);
    }

    #[test]
    fn services_carry_ips_pool_policy_and_serving_endpoints() {
        let s = svc(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}),
            &["10.0.0.200"],
        );
        let sl = slice(json!([
            {"addresses": ["10.244.0.1"], "nodeName": "a", "conditions": {"ready": true}},
            {"addresses": ["10.244.0.2"], "nodeName": "b", "conditions": {"ready": false, "serving": true}},
            {"addresses": ["10.244.0.3"], "nodeName": "c", "conditions": {"ready": false, "serving": false}},
            {"addresses": ["10.244.0.4"], "nodeName": "d"}
        ]));
        let e = service(&s, &[&sl], None).unwrap();
        assert_eq!(e.name, "shop/web");
        assert_eq!(e.ips, vec!["10.0.0.200".parse::<IpAddr>().unwrap()]);
        assert_eq!(e.pool, "lan", "MetalLB's annotation is read too");
        assert_eq!(e.traffic_policy, TrafficPolicy::Local);
        assert!(e.has_serving_endpoint);
        assert_eq!(
            e.local_endpoint_nodes,
            BTreeSet::from(["a".into(), "b".into(), "d".into()])
        );
    }

    #[test]
    fn not_ours_or_unassigned_services_are_skipped() {
        let lb = json!({"type": "LoadBalancer"});
        assert!(
            service(&svc(lb.clone(), &[]), &[], None).is_none(),
            "no address yet"
        );
        assert!(service(&svc(json!({"type": "ClusterIP"}), &["10.0.0.1"]), &[], None).is_none());
        assert!(
            service(&svc(lb.clone(), &["10.0.0.1"]), &[], Some("other")).is_none(),
            "another class"
        );
        let e = service(&svc(lb, &["10.0.0.1"]), &[], None).unwrap();
        assert!(!e.has_serving_endpoint, "no EndpointSlice: nothing serves");
    }

    #[test]
    fn slices_are_matched_to_their_service_by_label_and_namespace() {
        let s = Arc::new(svc(json!({"type": "LoadBalancer"}), &["10.0.0.1"]));
        let mine = Arc::new(slice(
            json!([{"addresses": ["10.244.0.1"], "nodeName": "a"}]),
        ));
        let mut elsewhere = slice(json!([{"addresses": ["10.244.0.9"], "nodeName": "z"}]));
        elsewhere.metadata.namespace = Some("other".into());
        let out = services(&[s], &[mine, Arc::new(elsewhere)], None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].local_endpoint_nodes, BTreeSet::from(["a".into()]));
    }

    #[test]
    fn nodes() {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"zone": "a"}},
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": "True"}],
                       "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.11"}]}
        }))
        .unwrap();
        let e = node(&n);
        assert!(e.network_unavailable && e.labels["zone"] == "a");
        assert_eq!(internal_ip(&n), Some("10.0.0.11".parse().unwrap()));
    }
}
