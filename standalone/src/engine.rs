//! One pure step of standalone mode: from the directory's objects and the held assignments to
//! the new assignments, refusals and state. Every host that reads the same objects and the same
//! held assignments computes the same answer: the allocator is deterministic (key order, lowest
//! free address, fixed pool order).

use std::collections::{BTreeMap, BTreeSet};

use ferrolb_allocator::from_service;
use ferrolb_allocator::{Allocator, Assignment, Refusal, ServiceKey, ServiceRequest, StalePolicy};
use ferrolb_config::selector::Labels;
use ferrolb_config::{self as config, Config};

use crate::config_dir::Objects;
use crate::state::{Held, State, VERSION};

/// What one step decided.
#[derive(Debug, Default)]
pub struct Step {
    /// The verdict on each config object: the refused ones (each on its own; its last
    /// accepted version stays in force, if it had one) and notes on accepted ones.
    pub verdicts: config::Built,
    /// Services with addresses.
    pub assigned: BTreeMap<ServiceKey, Assignment>,
    /// Services without, and why.
    pub refused: BTreeMap<ServiceKey, Refusal>,
    /// What each Service asked the allocator for (with what it held), for `explain`.
    pub requests: BTreeMap<ServiceKey, ServiceRequest>,
    /// The state to persist.
    pub state: State,
}

/// Remembers the last good config, and each Service's last request, between steps.
#[derive(Debug, Default)]
pub struct Engine {
    /// Each config object accepted or refused on its own (issue 13, class 2).
    config_model: config::LastGood,
    /// The config in force after the last step.
    config: Option<Config>,
    policy: StalePolicy,
    /// What each Service asked for at the last step (without what it held), to tell edited
    /// Services from untouched ones.
    last_requests: BTreeMap<ServiceKey, ServiceRequest>,
}

impl Engine {
    /// An engine with the given stale policy.
    pub fn new(policy: StalePolicy) -> Self {
        Self {
            config_model: config::LastGood::default(),
            config: None,
            policy,
            last_requests: BTreeMap::new(),
        }
    }

    /// The config in force, once a step has run.
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }

    /// Decides every Service of `objects`, starting from the addresses `held` records.
    pub fn step(&mut self, objects: &Objects, held: &State) -> Step {
        let mut step = Step::default();
        // What was accepted before a restart stays the last version of each object.
        let accepted = (held.accepted.iter())
            .filter_map(|(key, spec)| {
                let (kind, name) = key.split_once('/')?;
                Some((
                    (config::Kind::from_name(kind)?, name.to_string()),
                    spec.clone(),
                ))
            })
            .collect();
        let built = self
            .config_model
            .build(&objects.config.with_accepted(&accepted));
        let config = built.config.clone();
        self.config = Some(config.clone());
        step.verdicts = built;
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
        step.requests = requests.into_iter().map(|r| (r.key.clone(), r)).collect();
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
            accepted: (self.config_model.accepted_specs().into_iter())
                .map(|((kind, name), spec)| (format!("{kind}/{name}"), spec))
                .collect(),
        };
        step
    }
}
