//! What the allocator needs to know about a Service: [`ServiceRequest`], keyed by [`ServiceKey`].
//!
//! The reconciler fills a request from the Service object (and its Namespace's labels); the
//! allocator never sees Kubernetes types. Helpers here parse the annotations whose syntax is the
//! allocator's business ([`parse_requested_ips`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_config::Family;
use ferrolb_config::selector::Labels;

use super::reason::Refusal;

/// Annotation naming the pool to allocate from.
pub const ANNOTATION_ADDRESS_POOL: &str = "ferrolb.io/address-pool";
/// Annotation requesting exact addresses (comma-separated, at most one per family).
pub const ANNOTATION_LOAD_BALANCER_IPS: &str = "ferrolb.io/loadBalancerIPs";
/// Annotation carrying the IP sharing key.
pub const ANNOTATION_ALLOW_SHARED_IP: &str = "ferrolb.io/allow-shared-ip";
/// Annotation the controller writes: the pool the addresses came from.
pub const ANNOTATION_ALLOCATED_FROM_POOL: &str = "ferrolb.io/ip-allocated-from-pool";

/// A Service's identity: namespace and name.
///
/// Cheap to clone (one shared allocation holding `namespace/name`), because the allocator refers
/// to a service from several indexes (by service, by address, by waiting reason) and must keep
/// memory per allocation small. Ordered by namespace, then name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServiceKey(Arc<KeyInner>);

#[derive(PartialEq, Eq, Hash)]
struct KeyInner {
    /// `namespace` followed by `name`.
    text: Box<str>,
    /// Where the name starts.
    split: usize,
}

impl ServiceKey {
    /// The key of Service `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        let mut text = namespace.into();
        let split = text.len();
        text.push_str(&name.into());
        Self(Arc::new(KeyInner {
            text: text.into_boxed_str(),
            split,
        }))
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        self.0.text.get(..self.0.split).unwrap_or_default()
    }

    /// The name.
    pub fn name(&self) -> &str {
        self.0.text.get(self.0.split..).unwrap_or_default()
    }
}

impl Ord for ServiceKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.namespace(), self.name()).cmp(&(other.namespace(), other.name()))
    }
}

impl PartialOrd for ServiceKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace(), self.name())
    }
}

impl fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceKey({self})")
    }
}

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FamilyPolicy {
    /// One address, of `ipFamilies[0]`.
    #[default]
    SingleStack,
    /// Both families when one pool can give both; otherwise one, completed later when possible.
    PreferDualStack,
    /// Both families from one pool, or nothing.
    RequireDualStack,
}

/// A port's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// `spec.externalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrafficPolicy {
    /// Any node forwards.
    #[default]
    Cluster,
    /// Only nodes with local endpoints.
    Local,
}

impl fmt::Display for TrafficPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        })
    }
}

/// Everything the allocator needs to know about one `type: LoadBalancer` Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRequest {
    /// Namespace and name.
    pub key: ServiceKey,
    /// The Service's labels (for pools' `serviceSelectors`).
    pub labels: Labels,
    /// The Namespace's labels (for pools' `namespaceSelectors`).
    pub namespace_labels: Labels,
    /// `spec.ipFamilyPolicy`.
    pub family_policy: FamilyPolicy,
    /// `spec.ipFamilies`, in order: the first is preferred.
    pub families: Vec<Family>,
    /// `spec.ports` as (protocol, port).
    pub ports: Vec<(Protocol, u16)>,
    /// `spec.externalTrafficPolicy`.
    pub traffic_policy: TrafficPolicy,
    /// `spec.selector` (two `Local` services share an IP only with identical selectors).
    pub selector: BTreeMap<String, String>,
    /// Exact addresses asked for (`spec.loadBalancerIP` or `ferrolb.io/loadBalancerIPs`); empty: any.
    pub requested_ips: Vec<IpAddr>,
    /// `ferrolb.io/address-pool`.
    pub requested_pool: Option<String>,
    /// `ferrolb.io/allow-shared-ip`.
    pub sharing_key: Option<String>,
    /// Addresses the Service holds now (its `status.loadBalancer.ingress`); used on restart and
    /// when the allocator has no record of the service.
    pub held_ips: Vec<IpAddr>,
    /// The pool those came from (`ferrolb.io/ip-allocated-from-pool`), if recorded.
    pub held_pool: Option<String>,
}

impl ServiceRequest {
    /// A single-stack IPv4, `Cluster`, unshared request with no ports or labels.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            key: ServiceKey::new(namespace, name),
            labels: Labels::new(),
            namespace_labels: Labels::new(),
            family_policy: FamilyPolicy::SingleStack,
            families: vec![Family::V4],
            ports: Vec::new(),
            traffic_policy: TrafficPolicy::Cluster,
            selector: BTreeMap::new(),
            requested_ips: Vec::new(),
            requested_pool: None,
            sharing_key: None,
            held_ips: Vec::new(),
            held_pool: None,
        }
    }

    /// The sharing key, with an empty annotation meaning "no key".
    pub fn sharing_key(&self) -> Option<&str> {
        self.sharing_key.as_deref().filter(|k| !k.is_empty())
    }

    /// The families the allocator should assign, in preference order, after checking the policy:
    /// one for SingleStack, both for RequireDualStack, one or two for PreferDualStack.
    pub fn wanted_families(&self) -> Result<Vec<Family>, Refusal> {
        let mut families: Vec<Family> = Vec::new();
        for f in &self.families {
            if families.contains(f) {
                return Err(Refusal::InvalidRequest {
                    detail: format!("ipFamilies lists {f} twice"),
                });
            }
            families.push(*f);
        }
        let Some(first) = families.first().copied() else {
            return Err(Refusal::InvalidRequest {
                detail: "ipFamilies is empty".into(),
            });
        };
        match self.family_policy {
            FamilyPolicy::SingleStack => Ok(vec![first]),
            FamilyPolicy::PreferDualStack => Ok(families),
            FamilyPolicy::RequireDualStack if families.len() == 2 => Ok(families),
            FamilyPolicy::RequireDualStack => Err(Refusal::InvalidRequest {
                detail: "RequireDualStack needs both IPv4 and IPv6 in ipFamilies".into(),
            }),
        }
    }
}

/// Parses the requested addresses from `spec.loadBalancerIP` and the `ferrolb.io/loadBalancerIPs`
/// annotation (comma-separated). Setting both, an unparsable address, or two addresses of one
/// family is refused with the reason.
pub fn parse_requested_ips(
    spec_load_balancer_ip: Option<&str>,
    annotation: Option<&str>,
) -> Result<Vec<IpAddr>, Refusal> {
    let spec = spec_load_balancer_ip
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let ann = annotation.map(str::trim).filter(|s| !s.is_empty());
    let text = match (spec, ann) {
        (Some(_), Some(_)) => {
            return Err(Refusal::InvalidRequest {
                detail: format!(
                    "spec.loadBalancerIP and annotation {ANNOTATION_LOAD_BALANCER_IPS} are both set"
                ),
            });
        }
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => return Ok(Vec::new()),
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let ip: IpAddr = part.parse().map_err(|_| Refusal::InvalidRequest {
            detail: format!("requested IP {part:?} is not an IP address"),
        })?;
        if ips.iter().any(|x| Family::of(*x) == Family::of(ip)) {
            return Err(Refusal::InvalidRequest {
                detail: format!("more than one {} address requested", Family::of(ip)),
            });
        }
        ips.push(ip);
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_by_namespace_then_name() {
        let a = ServiceKey::new("a", "z");
        let b = ServiceKey::new("a-b", "a");
        assert!(a < b, "namespace compares first, as a tuple");
        assert_eq!(a.to_string(), "a/z");
        assert_eq!(ServiceKey::new("a", "z"), a);
        assert_ne!(ServiceKey::new("a/b", "c"), ServiceKey::new("a", "b/c"));
        assert_ne!(ServiceKey::new("ab", "c"), ServiceKey::new("a", "bc"));
        let k = ServiceKey::new("ns", "name");
        assert_eq!((k.namespace(), k.name()), ("ns", "name"));
        assert!(ServiceKey::new("ab", "c") > ServiceKey::new("a", "bc"));
    }

    #[test]
    fn requested_ips_parse_or_refuse_with_the_reason() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Result<Vec<IpAddr>, &'a str>,
        );
        let cases: &[Case] = &[
            (None, None, Ok(vec![])),
            (Some("10.0.0.1"), None, Ok(vec![v4])),
            (None, Some("10.0.0.1, fd00::1"), Ok(vec![v4, v6])),
            (Some(""), Some(" "), Ok(vec![])),
            (Some("10.0.0.1"), Some("fd00::1"), Err("both set")),
            (None, Some("10.0.0.1,10.0.0.2"), Err("more than one IPv4")),
            (
                None,
                Some("10.0.0.1,banana"),
                Err("\"banana\" is not an IP"),
            ),
        ];
        for (spec, ann, want) in cases {
            let got = parse_requested_ips(*spec, *ann);
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(&g, w),
                (Err(w), Err(e)) => assert!(e.to_string().contains(w), "{e} should contain {w}"),
                (w, g) => panic!("{spec:?} {ann:?}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn family_policy_decides_the_wanted_families() {
        let mut r = ServiceRequest::new("ns", "s");
        r.families = vec![Family::V6, Family::V4];
        assert_eq!(r.wanted_families().unwrap(), vec![Family::V6]);
        r.family_policy = FamilyPolicy::PreferDualStack;
        assert_eq!(r.wanted_families().unwrap(), vec![Family::V6, Family::V4]);
        r.family_policy = FamilyPolicy::RequireDualStack;
        assert_eq!(r.wanted_families().unwrap(), vec![Family::V6, Family::V4]);
        r.families = vec![Family::V4];
        assert!(r.wanted_families().is_err());
        r.families = vec![];
        assert!(r.wanted_families().is_err());
        r.families = vec![Family::V4, Family::V4];
        assert!(r.wanted_families().is_err());
    }
}
