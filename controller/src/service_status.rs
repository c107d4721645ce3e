//! What a Service's status, pool annotation and condition should say, and the smallest patches
//! that get it there. Pure: the reconciler decides, this module words it.

use std::net::IpAddr;

use ferrolb_kubernetes::condition;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use ferrolb_config::annotations::IP_ALLOCATED_FROM_POOL;

/// The condition ferrolb keeps on every LoadBalancer Service it handles.
pub const CONDITION_TYPE: &str = "ferrolb.io/IPAllocated";

/// What the allocator decided for a Service, in the words the user will read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The Service holds these addresses from this pool.
    Assigned {
        /// Its addresses, preferred family first.
        ips: Vec<IpAddr>,
        /// The pool they came from.
        pool: String,
        /// `Allocated`, or `IPStale` when config no longer covers an address that is kept.
        reason: String,
        /// A sentence for `kubectl describe`.
        message: String,
    },
    /// The Service gets no address, for this reason.
    Refused {
        /// A CamelCase reason (`PoolExhausted`, `SharingKeyMismatch`, ...).
        reason: String,
        /// A sentence naming the cause.
        message: String,
    },
    /// Not ferrolb's Service (not a LoadBalancer, or another class): remove what ferrolb wrote.
    NotOurs,
}

/// The state ferrolb wants on a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// `status.loadBalancer.ingress[].ip`.
    pub ingress: Vec<String>,
    /// `ferrolb.io/ip-allocated-from-pool`.
    pub pool: Option<String>,
    /// Our condition: (status, reason, message); `None` removes it.
    pub condition: Option<(bool, String, String)>,
}

impl Desired {
    /// The desired state for an outcome. A Service that is not ours keeps ingress written by others.
    pub fn from_outcome(outcome: &Outcome, service: &Service) -> Self {
        match outcome {
            Outcome::Assigned {
                ips,
                pool,
                reason,
                message,
            } => Self {
                ingress: ips.iter().map(|ip| ip.to_string()).collect(),
                pool: Some(pool.clone()),
                condition: Some((true, reason.clone(), message.clone())),
            },
            Outcome::Refused { reason, message } => Self {
                ingress: Vec::new(),
                pool: None,
                condition: Some((false, reason.clone(), message.clone())),
            },
            Outcome::NotOurs => {
                let current = Observed::of(service);
                let ours = current.pool.is_some() || current.condition.is_some();
                Self {
                    ingress: if ours { Vec::new() } else { current.ingress },
                    pool: None,
                    condition: None,
                }
            }
        }
    }
}

/// The parts of a Service that ferrolb writes, as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Ingress IPs.
    pub ingress: Vec<String>,
    /// The pool annotation.
    pub pool: Option<String>,
    /// Our condition.
    pub condition: Option<Condition>,
}

impl Observed {
    /// Reads them off a Service.
    pub fn of(service: &Service) -> Self {
        let status = service.status.as_ref();
        Self {
            ingress: status
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .map(|ingress| ingress.iter().filter_map(|i| i.ip.clone()).collect())
                .unwrap_or_default(),
            pool: service
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(IP_ALLOCATED_FROM_POOL))
                .cloned(),
            condition: status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == CONDITION_TYPE))
                .cloned(),
        }
    }
}

fn condition_matches(
    observed: Option<&Condition>,
    want: Option<&(bool, String, String)>,
    generation: Option<i64>,
) -> bool {
    match (observed, want) {
        (None, None) => true,
        (Some(c), Some((status, reason, message))) => {
            c.status == if *status { "True" } else { "False" }
                && &c.reason == reason
                && &c.message == message
                && c.observed_generation == generation
        }
        _ => false,
    }
}

/// The merge patch for the status subresource, or `None` when the status already says it all.
/// It carries the observed resourceVersion, so a concurrent change makes it a conflict rather
/// than a lost update (the conditions list is replaced whole).
pub fn status_patch(service: &Service, desired: &Desired, now: Timestamp) -> Option<Value> {
    let observed = Observed::of(service);
    let generation = service.metadata.generation;
    if observed.ingress == desired.ingress
        && condition_matches(
            observed.condition.as_ref(),
            desired.condition.as_ref(),
            generation,
        )
    {
        return None;
    }
    let mut conditions: Vec<Condition> = service
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    match &desired.condition {
        Some((status, reason, message)) => {
            let wanted = condition::Wanted {
                type_: CONDITION_TYPE,
                status: *status,
                reason,
                message,
                observed_generation: generation,
            };
            condition::set(&mut conditions, &wanted, now);
        }
        None => {
            condition::remove(&mut conditions, CONDITION_TYPE);
        }
    }
    let ingress: Vec<Value> = desired.ingress.iter().map(|ip| json!({"ip": ip})).collect();
    let load_balancer = if ingress.is_empty() {
        json!({"ingress": null})
    } else {
        json!({"ingress": ingress})
    };
    let conditions = if conditions.is_empty() {
        Value::Null
    } else {
        json!(conditions)
    };
    Some(json!({
        "metadata": {"resourceVersion": service.metadata.resource_version},
        "status": {"loadBalancer": load_balancer, "conditions": conditions},
    }))
}

/// The merge patch that sets or removes the pool annotation, or `None` when it is right already.
pub fn annotation_patch(service: &Service, desired: &Desired) -> Option<Value> {
    let observed = Observed::of(service);
    (observed.pool != desired.pool)
        .then(|| json!({"metadata": {"annotations": {IP_ALLOCATED_FROM_POOL: desired.pool}}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: Value, annotations: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7", "generation": 2, "annotations": annotations},
            "spec": {"type": "LoadBalancer"},
            "status": status,
        }))
        .unwrap()
    }

    fn assigned(ip: &str) -> Outcome {
        Outcome::Assigned {
            ips: vec![ip.parse().unwrap()],
            pool: "default".into(),
            reason: "Allocated".into(),
            message: format!("assigned {ip} from pool default"),
        }
    }

    #[test]
    fn first_assignment_writes_ingress_condition_and_annotation() {
        let svc = service(json!({}), json!({}));
        let desired = Desired::from_outcome(&assigned("10.0.0.1"), &svc);
        let patch = status_patch(&svc, &desired, Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], json!("7"));
        assert_eq!(
            patch["status"]["loadBalancer"]["ingress"],
            json!([{"ip": "10.0.0.1"}])
        );
        assert_eq!(
            patch["status"]["conditions"][0]["type"],
            json!(CONDITION_TYPE)
        );
        assert_eq!(patch["status"]["conditions"][0]["status"], json!("True"));
        assert_eq!(
            patch["status"]["conditions"][0]["observedGeneration"],
            json!(2)
        );
        assert_eq!(
            annotation_patch(&svc, &desired),
            Some(json!({"metadata": {"annotations": {IP_ALLOCATED_FROM_POOL: "default"}}}))
        );
    }

    #[test]
    fn nothing_is_written_when_nothing_changed() {
        let svc = service(json!({}), json!({}));
        let desired = Desired::from_outcome(&assigned("10.0.0.1"), &svc);
        let patch = status_patch(&svc, &desired, Timestamp::UNIX_EPOCH).unwrap();
        let mut updated: Value = serde_json::to_value(&svc).unwrap();
        updated["status"] = patch["status"].clone();
        updated["metadata"]["annotations"] = json!({IP_ALLOCATED_FROM_POOL: "default"});
        let updated: Service = serde_json::from_value(updated).unwrap();
        assert_eq!(status_patch(&updated, &desired, Timestamp::now()), None);
        assert_eq!(annotation_patch(&updated, &desired), None);
    }

    #[test]
    fn other_conditions_are_kept_and_transition_time_only_moves_on_status_change() {
        let svc = service(
            json!({"conditions": [
                {"type": "Other", "status": "True", "reason": "X", "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z"},
                {"type": CONDITION_TYPE, "status": "False", "reason": "PoolExhausted", "message": "old", "lastTransitionTime": "2021-01-01T00:00:00Z"}
            ]}),
            json!({}),
        );
        let refused = Outcome::Refused {
            reason: "PoolExhausted".into(),
            message: "new".into(),
        };
        let patch = status_patch(
            &svc,
            &Desired::from_outcome(&refused, &svc),
            Timestamp::now(),
        )
        .unwrap();
        let conditions = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0]["type"], json!("Other"));
        assert_eq!(
            conditions[1]["lastTransitionTime"],
            json!("2021-01-01T00:00:00Z")
        );
        assert_eq!(patch["status"]["loadBalancer"]["ingress"], Value::Null);
    }

    #[test]
    fn leaving_ferrolb_clears_only_what_ferrolb_wrote() {
        let ours = service(
            json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}, "conditions": [{"type": CONDITION_TYPE, "status": "True", "reason": "Allocated", "message": "m", "lastTransitionTime": "2021-01-01T00:00:00Z"}]}),
            json!({IP_ALLOCATED_FROM_POOL: "default"}),
        );
        let desired = Desired::from_outcome(&Outcome::NotOurs, &ours);
        let patch = status_patch(&ours, &desired, Timestamp::now()).unwrap();
        assert_eq!(patch["status"]["loadBalancer"]["ingress"], Value::Null);
        assert_eq!(patch["status"]["conditions"], Value::Null);
        assert_eq!(
            annotation_patch(&ours, &desired),
            Some(json!({"metadata": {"annotations": {IP_ALLOCATED_FROM_POOL: null}}}))
        );
        let theirs = service(
            json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}),
            json!({}),
        );
        let desired = Desired::from_outcome(&Outcome::NotOurs, &theirs);
        assert_eq!(status_patch(&theirs, &desired, Timestamp::now()), None);
        assert_eq!(annotation_patch(&theirs, &desired), None);
    }
}
