//! Reading a Kubernetes Service into the allocator's [`ServiceRequest`]: which Services are
//! ferrolb's, their families, ports, policies, annotations (MetalLB aliases included) and the
//! addresses they already hold.

use std::net::IpAddr;

use ferrolb_config::Family;
use ferrolb_config::selector::Labels;
use k8s_openapi::api::core::v1::Service;

use crate::{
    FamilyPolicy, Protocol, Refusal, ServiceKey, ServiceRequest, TrafficPolicy, parse_requested_ips,
};
use ferrolb_config::annotations::{self, lookup};

/// The key of a Service object.
pub fn key(service: &Service) -> ServiceKey {
    ServiceKey::new(
        service.metadata.namespace.clone().unwrap_or_default(),
        service.metadata.name.clone().unwrap_or_default(),
    )
}

pub use ferrolb_config::service::is_ours;

fn family(name: &str) -> Result<Family, Refusal> {
    match name {
        "IPv4" => Ok(Family::V4),
        "IPv6" => Ok(Family::V6),
        other => Err(Refusal::InvalidRequest {
            detail: format!("unknown IP family {other:?}"),
        }),
    }
}

/// Builds the allocator's view of a Service. A malformed Service (bad requested IP, unknown
/// family) gives the refusal to report on it.
pub fn request(service: &Service, namespace_labels: &Labels) -> Result<ServiceRequest, Refusal> {
    let key = key(service);
    let mut req = ServiceRequest::new(key.namespace(), key.name());
    let spec = service.spec.clone().unwrap_or_default();
    let no_annotations = Default::default();
    let ann = service
        .metadata
        .annotations
        .as_ref()
        .unwrap_or(&no_annotations);

    req.labels = service.metadata.labels.clone().unwrap_or_default();
    req.namespace_labels = namespace_labels.clone();
    req.family_policy = match spec.ip_family_policy.as_deref() {
        None | Some("SingleStack") => FamilyPolicy::SingleStack,
        Some("PreferDualStack") => FamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => FamilyPolicy::RequireDualStack,
        Some(other) => {
            return Err(Refusal::InvalidRequest {
                detail: format!("unknown ipFamilyPolicy {other:?}"),
            });
        }
    };
    let families: Vec<&String> = spec.ip_families.iter().flatten().collect();
    req.families = if families.is_empty() {
        // Older API servers leave ipFamilies empty: the ClusterIP tells the family.
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        vec![cluster_ip.map(Family::of).unwrap_or(Family::V4)]
    } else {
        families
            .into_iter()
            .map(|f| family(f))
            .collect::<Result<_, _>>()?
    };
    req.ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let protocol = match p.protocol.as_deref() {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                Some(other) => {
                    return Err(Refusal::InvalidRequest {
                        detail: format!("unknown protocol {other:?}"),
                    });
                }
            };
            let port = u16::try_from(p.port).map_err(|_| Refusal::InvalidRequest {
                detail: format!("port {} is out of range", p.port),
            })?;
            Ok((protocol, port))
        })
        .collect::<Result<_, _>>()?;
    req.traffic_policy = match spec.external_traffic_policy.as_deref() {
        Some("Local") => TrafficPolicy::Local,
        _ => TrafficPolicy::Cluster,
    };
    req.selector = spec.selector.clone().unwrap_or_default();
    req.requested_ips = parse_requested_ips(
        spec.load_balancer_ip.as_deref(),
        lookup(ann, annotations::LOAD_BALANCER_IPS).map(|f| f.value),
    )?;
    req.requested_pool = lookup(ann, annotations::ADDRESS_POOL).map(|f| f.value.to_string());
    req.sharing_key = lookup(ann, annotations::ALLOW_SHARED_IP).map(|f| f.value.to_string());
    req.held_ips = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| {
            ingress
                .iter()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    req.held_pool = lookup(ann, "ip-allocated-from-pool").map(|f| f.value.to_string());
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn class_filter() {
        let plain = svc(
            json!({"metadata": {"name": "a", "namespace": "n"}, "spec": {"type": "LoadBalancer"}}),
        );
        let classy = svc(
            json!({"metadata": {"name": "a", "namespace": "n"}, "spec": {"type": "LoadBalancer", "loadBalancerClass": "ferrolb"}}),
        );
        let cluster_ip = svc(
            json!({"metadata": {"name": "a", "namespace": "n"}, "spec": {"type": "ClusterIP"}}),
        );
        assert!(is_ours(&plain, None) && !is_ours(&classy, None));
        assert!(!is_ours(&plain, Some("ferrolb")) && is_ours(&classy, Some("ferrolb")));
        assert!(!is_ours(&cluster_ip, None));
    }

    #[test]
    fn reads_every_field_and_metallb_aliases() {
        let s = svc(json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}, "annotations": {
                "metallb.universe.tf/address-pool": "old",
                "metallb.io/address-pool": "prod",
                "metallb.io/allow-shared-ip": "k",
                "metallb.io/loadBalancerIPs": "10.0.0.5,fd00::5",
                "metallb.io/ip-allocated-from-pool": "prod"
            }},
            "spec": {"type": "LoadBalancer", "ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"],
                     "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}], "externalTrafficPolicy": "Local",
                     "selector": {"app": "web"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}, {"hostname": "x.example"}]}}
        }));
        let r = request(&s, &Labels::new()).unwrap();
        assert_eq!(r.key, ServiceKey::new("shop", "web"));
        assert_eq!(r.family_policy, FamilyPolicy::PreferDualStack);
        assert_eq!(r.families, vec![Family::V6, Family::V4]);
        assert_eq!(r.ports, vec![(Protocol::Tcp, 80), (Protocol::Udp, 53)]);
        assert_eq!(r.traffic_policy, TrafficPolicy::Local);
        assert_eq!(r.requested_pool.as_deref(), Some("prod"));
        assert_eq!(r.sharing_key.as_deref(), Some("k"));
        assert_eq!(r.requested_ips.len(), 2);
        assert_eq!(r.held_ips, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.held_pool.as_deref(), Some("prod"));
        assert_eq!(r.labels.get("app").map(String::as_str), Some("web"));
    }

    #[test]
    fn own_annotation_wins_and_bad_requests_are_refused() {
        let s = svc(json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": {
                "ferrolb.io/address-pool": "ours", "metallb.io/address-pool": "theirs"}},
            "spec": {"type": "LoadBalancer", "clusterIP": "fd00::1"}
        }));
        let r = request(&s, &Labels::new()).unwrap();
        assert_eq!(r.requested_pool.as_deref(), Some("ours"));
        assert_eq!(r.families, vec![Family::V6], "family from the ClusterIP");
        let bad = svc(json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": {"ferrolb.io/loadBalancerIPs": "banana"}},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": ""}
        }));
        assert!(matches!(
            request(&bad, &Labels::new()),
            Err(Refusal::InvalidRequest { .. })
        ));
    }
}
