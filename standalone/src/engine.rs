//! One pure step of standalone mode: from the directory's objects and the held assignments to
//! the new assignments, refusals and state. Every host that reads the same objects and the same
//! held assignments computes the same answer: the allocator is deterministic (key order, lowest
//! free address, fixed pool order).

use std::collections::{BTreeMap, BTreeSet};

use ferrolb_allocator::from_service;
use ferrolb_allocator::{Allocator, Assignment, Refusal, ServiceKey, ServiceRequest, StalePolicy};
use ferrolb_config::selector::Labels;
use ferrolb_config::{self as config, Config, ConfigErrors};

use crate::config_dir::Objects;
use crate::state::{Held, State, VERSION};

/// What one step decided.
#[derive(Debug, Default)]
pub struct Step {
    /// The config errors, when the objects are invalid (the last good config was used).
    pub config_errors: Option<ConfigErrors>,
    /// Whether no valid config has been seen yet (every Service then waits).
    pub no_config: bool,
    /// Services with addresses.
    pub assigned: BTreeMap<ServiceKey, Assignment>,
    /// Services without, and why.
    pub refused: BTreeMap<ServiceKey, Refusal>,
    /// The state to persist.
    pub state: State,
}

/// Remembers the last good config, and each Service's last request, between steps.
#[derive(Debug, Default)]
pub struct Engine {
    last_good: Option<Config>,
    policy: StalePolicy,
    /// What each Service asked for at the last step (without what it held), to tell edited
    /// Services from untouched ones.
    last_requests: BTreeMap<ServiceKey, ServiceRequest>,
}

impl Engine {
    /// An engine with the given stale policy.
    pub fn new(policy: StalePolicy) -> Self {
        Self {
            last_good: None,
            policy,
            last_requests: BTreeMap::new(),
        }
    }

    /// The last good config, if any.
    pub fn config(&self) -> Option<&Config> {
        self.last_good.as_ref()
    }

    /// Decides every Service of `objects`, starting from the addresses `held` records.
    pub fn step(&mut self, objects: &Objects, held: &State) -> Step {
        let mut step = Step::default();
        match config::build(&objects.config) {
            Ok(config) => self.last_good = Some(config),
            Err(errors) => step.config_errors = Some(errors),
        }
        let Some(config) = self.last_good.clone() else {
            step.no_config = true;
            step.state = State {
                version: VERSION,
                services: held.services.clone(),
            };
            return step;
        };
        let mut requests = Vec::new();
        for service in &objects.services {
            let mut service = service.clone();
            if service.metadata.namespace.is_none() {
                service.metadata.namespace = Some("default".into());
            }
            if !from_service::is_ours(&service, None) {
                continue;
            }
            match from_service::request(&service, &Labels::new()) {
                Ok(mut request) => {
                    if let Some(h) = held.services.get(&request.key.to_string()) {
                        request.held_ips = h.ips.clone();
                        request.held_pool = Some(h.pool.clone());
                    }
                    requests.push(request);
                }
                Err(refusal) => {
                    step.refused.insert(from_service::key(&service), refusal);
                }
            }
        }
        // Services whose request changed since the last step re-claim last: an edit never takes
        // an address from a Service nobody touched (issue 13). After a restart nothing is known
        // to be edited, and key order decides, as before.
        let asked = |r: &ServiceRequest| ServiceRequest {
            held_ips: Vec::new(),
            held_pool: None,
            ..r.clone()
        };
        let now: BTreeMap<ServiceKey, ServiceRequest> =
            requests.iter().map(|r| (r.key.clone(), asked(r))).collect();
        let edited: BTreeSet<ServiceKey> = now
            .iter()
            .filter(|(key, req)| {
                self.last_requests
                    .get(*key)
                    .is_some_and(|last| last != *req)
            })
            .map(|(key, _)| key.clone())
            .collect();
        self.last_requests = now;
        let mut allocator = Allocator::new(config, self.policy);
        let report = allocator.restore_keeping(&requests, &edited);
        for (key, outcome) in report.outcomes {
            match outcome {
                Ok(assignment) => {
                    step.assigned.insert(key, assignment);
                }
                Err(refusal) => {
                    step.refused.insert(key, refusal);
                }
            }
        }
        step.state = State {
            version: VERSION,
            services: step
                .assigned
                .iter()
                .map(|(k, a)| {
                    (
                        k.to_string(),
                        Held {
                            pool: a.pool.clone(),
                            ips: a.ips.clone(),
                        },
                    )
                })
                .collect(),
        };
        step
    }
}
