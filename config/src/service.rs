//! Which Services are ferrolb's, and how their EndpointSlices name them.

use k8s_openapi::api::core::v1::Service;

/// The label EndpointSlices carry to name their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Whether ferrolb handles this Service: `type: LoadBalancer`, and a `loadBalancerClass` equal to
/// `lb_class` (with no `lb_class`, only Services without a class).
pub fn is_ours(service: &Service, lb_class: Option<&str>) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    spec.type_.as_deref() == Some("LoadBalancer") && spec.load_balancer_class.as_deref() == lb_class
}
