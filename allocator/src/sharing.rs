//! The IP sharing rule (`ferrolb.io/allow-shared-ip`), as in MetalLB.
//!
//! Two services may hold the same address only when **all** of these hold:
//! 1. both carry a non-empty sharing key, and the keys are equal;
//! 2. their externalTrafficPolicy is compatible: `Cluster` with `Cluster`, or `Local` with `Local`
//!    and the identical pod selector (both are then announced from the same nodes);
//! 3. no (protocol, port) pair is used by both.
//!
//! There is no namespace restriction. A service that is the only holder of an address may change
//! its key freely. The first rule that fails is reported, naming the other service.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::reason::Refusal;
use super::service::{Protocol, ServiceKey, ServiceRequest, TrafficPolicy};

/// What the rule needs to know about a service that has a sharing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sharing {
    /// The (non-empty) sharing key.
    pub key: String,
    /// Ports, sorted and without repeats.
    pub ports: Vec<(Protocol, u16)>,
    /// externalTrafficPolicy.
    pub policy: TrafficPolicy,
    /// Pod selector, compared only for `Local`.
    pub selector: BTreeMap<String, String>,
}

impl Sharing {
    /// The sharing facts of a request; `None` without a (non-empty) key.
    pub fn of(req: &ServiceRequest) -> Option<Self> {
        let key = req.sharing_key()?.to_string();
        let mut ports = req.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        Some(Self {
            key,
            ports,
            policy: req.traffic_policy,
            selector: if req.traffic_policy == TrafficPolicy::Local {
                req.selector.clone()
            } else {
                BTreeMap::new()
            },
        })
    }
}

/// Whether a service with sharing facts `ours` may use `ip`, which `holder` (with `theirs`) holds.
pub fn check(
    ip: IpAddr,
    ours: Option<&Sharing>,
    holder: &ServiceKey,
    theirs: Option<&Sharing>,
) -> Result<(), Refusal> {
    let Some(ours) = ours else {
        return Err(Refusal::IpInUse {
            ip,
            holder: holder.clone(),
            shareable: theirs.is_some(),
        });
    };
    let theirs = match theirs {
        Some(t) if t.key == ours.key => t,
        other => {
            return Err(Refusal::SharingKeyMismatch {
                ip,
                holder: holder.clone(),
                ours: ours.key.clone(),
                theirs: other.map(|t| t.key.clone()),
            });
        }
    };
    let selectors_differ = ours.policy == TrafficPolicy::Local
        && theirs.policy == TrafficPolicy::Local
        && ours.selector != theirs.selector;
    if ours.policy != theirs.policy || selectors_differ {
        return Err(Refusal::TrafficPolicyMismatch {
            ip,
            holder: holder.clone(),
            ours: ours.policy,
            theirs: theirs.policy,
            selectors_differ,
        });
    }
    // Both port lists are sorted: walk them together.
    let (mut i, mut j) = (0, 0);
    while i < ours.ports.len() && j < theirs.ports.len() {
        match ours.ports[i].cmp(&theirs.ports[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                let (protocol, port) = ours.ports[i];
                return Err(Refusal::PortConflict {
                    ip,
                    protocol,
                    port,
                    holder: holder.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(
        key: Option<&str>,
        ports: &[(Protocol, u16)],
        policy: TrafficPolicy,
        app: &str,
    ) -> ServiceRequest {
        let mut r = ServiceRequest::new("ns", "s");
        r.sharing_key = key.map(String::from);
        r.ports = ports.to_vec();
        r.traffic_policy = policy;
        r.selector = BTreeMap::from([("app".to_string(), app.to_string())]);
        r
    }

    #[test]
    fn the_sharing_rule_table() {
        use Protocol::*;
        use TrafficPolicy::*;
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let holder = ServiceKey::new("other", "h");
        // (ours, theirs, expected: None = ok, Some(substring of the message))
        let cases: Vec<(ServiceRequest, ServiceRequest, Option<&str>)> = vec![
            (
                svc(Some("k"), &[(Tcp, 80)], Cluster, "a"),
                svc(Some("k"), &[(Tcp, 443)], Cluster, "b"),
                None,
            ),
            (
                svc(Some("k"), &[(Tcp, 53)], Cluster, "a"),
                svc(Some("k"), &[(Udp, 53)], Cluster, "a"),
                None,
            ),
            (
                svc(Some("k"), &[(Tcp, 80)], Local, "a"),
                svc(Some("k"), &[(Tcp, 443)], Local, "a"),
                None,
            ),
            (
                svc(None, &[(Tcp, 80)], Cluster, "a"),
                svc(Some("k"), &[(Tcp, 443)], Cluster, "a"),
                Some("held by service other/h (set the same"),
            ),
            (
                svc(None, &[(Tcp, 80)], Cluster, "a"),
                svc(None, &[(Tcp, 443)], Cluster, "a"),
                Some("held by service other/h"),
            ),
            (
                svc(Some(""), &[(Tcp, 80)], Cluster, "a"),
                svc(Some(""), &[(Tcp, 443)], Cluster, "a"),
                Some("held by service other/h"),
            ),
            (
                svc(Some("k"), &[(Tcp, 80)], Cluster, "a"),
                svc(None, &[(Tcp, 443)], Cluster, "a"),
                Some("without a sharing key, not \"k\""),
            ),
            (
                svc(Some("k"), &[(Tcp, 80)], Cluster, "a"),
                svc(Some("j"), &[(Tcp, 443)], Cluster, "a"),
                Some("sharing key \"j\", not \"k\""),
            ),
            (
                svc(Some("k"), &[(Tcp, 80), (Udp, 9)], Cluster, "a"),
                svc(Some("k"), &[(Udp, 9)], Cluster, "a"),
                Some("port UDP/9 on IP 10.0.0.1 is already used by service other/h"),
            ),
            (
                svc(Some("k"), &[(Tcp, 80)], Local, "a"),
                svc(Some("k"), &[(Tcp, 443)], Cluster, "a"),
                Some("externalTrafficPolicy Cluster, incompatible with Local"),
            ),
            (
                svc(Some("k"), &[(Tcp, 80)], Cluster, "a"),
                svc(Some("k"), &[(Tcp, 443)], Local, "a"),
                Some("externalTrafficPolicy Local, incompatible with Cluster"),
            ),
            (
                svc(Some("k"), &[(Tcp, 80)], Local, "a"),
                svc(Some("k"), &[(Tcp, 443)], Local, "b"),
                Some("identical pod selector"),
            ),
            // Cluster services' selectors do not matter.
            (
                svc(Some("k"), &[(Tcp, 80)], Cluster, "a"),
                svc(Some("k"), &[(Tcp, 443)], Cluster, "b"),
                None,
            ),
        ];
        for (i, (ours, theirs, want)) in cases.iter().enumerate() {
            let got = check(
                ip,
                Sharing::of(ours).as_ref(),
                &holder,
                Sharing::of(theirs).as_ref(),
            );
            match (want, got) {
                (None, Ok(())) => {}
                (Some(w), Err(e)) => assert!(
                    e.to_string().contains(w),
                    "case {i}: {e} should contain {w}"
                ),
                (w, g) => panic!("case {i}: want {w:?}, got {g:?}"),
            }
        }
    }
}
