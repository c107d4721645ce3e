//! Which pools a Service may use, and in which order the allocator tries them.
//!
//! Admission ([`admits`]): a pool without `serviceAllocation` admits every Service; otherwise the
//! namespace constraint (listed names or namespace selectors; either suffices; none set means any
//! namespace) and the service selectors (any one must match; none means any) must both hold.
//! This is [`ServiceAllocation::allows`], evaluated in two halves so the refusal can say which half
//! failed. Admission applies however a pool is reached: automatically, by the
//! `ferrolb.io/address-pool` annotation, or by a requested address.
//!
//! Automatic order ([`auto_order`]), fully deterministic (MetalLB picks among equal pools at random):
//! 1. auto-assign pools with a `serviceAllocation` that admits the Service, by priority (lower
//!    first, unset last), then by name;
//! 2. auto-assign pools without `serviceAllocation`, by name.
//!
//! `autoAssign: false` pools are never tried automatically; they serve only Services that name
//! them or request one of their addresses.

use ferrolb_config::selector::{Labels, any_matches};
use ferrolb_config::{Config, Pool, ServiceAllocation};

use super::reason::{PoolAttempt, Refusal};
use super::service::{ServiceKey, ServiceRequest};

/// Whether `pool` admits the Service, or which constraint excludes it.
pub fn admits(
    pool: &Pool,
    key: &ServiceKey,
    namespace_labels: &Labels,
    labels: &Labels,
) -> Result<(), Refusal> {
    let Some(a) = &pool.allocation else {
        return Ok(());
    };
    let (namespace_ok, service_ok) = halves(a, key.namespace(), namespace_labels, labels);
    debug_assert_eq!(
        namespace_ok && service_ok,
        a.allows(key.namespace(), namespace_labels, labels)
    );
    if !namespace_ok {
        return Err(Refusal::NamespaceNotAllowed {
            pool: pool.name.clone(),
            namespace: key.namespace().to_string(),
        });
    }
    if !service_ok {
        return Err(Refusal::ServiceNotSelected {
            pool: pool.name.clone(),
            service: key.clone(),
        });
    }
    Ok(())
}

/// [`admits`] for a request.
pub fn admits_request(pool: &Pool, req: &ServiceRequest) -> Result<(), Refusal> {
    admits(pool, &req.key, &req.namespace_labels, &req.labels)
}

fn halves(
    a: &ServiceAllocation,
    namespace: &str,
    namespace_labels: &Labels,
    labels: &Labels,
) -> (bool, bool) {
    let namespace_ok = (a.namespaces.is_empty() && a.namespace_selectors.is_empty())
        || a.namespaces.contains(namespace)
        || a.namespace_selectors
            .iter()
            .any(|s| s.matches(namespace_labels));
    (namespace_ok, any_matches(&a.service_selectors, labels))
}

/// The pools to try automatically, in order, and the pools left out with the reason (by name).
pub fn auto_order<'a>(
    config: &'a Config,
    req: &ServiceRequest,
) -> (Vec<&'a Pool>, Vec<PoolAttempt>) {
    let mut pinned: Vec<&Pool> = Vec::new();
    let mut open: Vec<&Pool> = Vec::new();
    let mut excluded = Vec::new();
    for pool in config.pools.values() {
        if !pool.auto_assign {
            excluded.push(PoolAttempt {
                pool: pool.name.clone(),
                reason: Refusal::AutoAssignDisabled {
                    pool: pool.name.clone(),
                },
            });
            continue;
        }
        if let Err(reason) = admits_request(pool, req) {
            excluded.push(PoolAttempt {
                pool: pool.name.clone(),
                reason,
            });
            continue;
        }
        if pool.allocation.is_some() {
            pinned.push(pool);
        } else {
            open.push(pool);
        }
    }
    // BTreeMap iteration is by name already; the sort is stable, so equal priorities keep it.
    pinned.sort_by_key(|p| {
        let priority = p.allocation.as_ref().and_then(|a| a.priority);
        (priority.is_none(), priority)
    });
    pinned.extend(open);
    (pinned, excluded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_config::api::LabelSelector;
    use ferrolb_config::selector::Selector;
    use std::collections::{BTreeMap, BTreeSet};

    fn pool(name: &str, auto: bool, allocation: Option<ServiceAllocation>) -> Pool {
        Pool {
            name: name.into(),
            labels: Labels::new(),
            ranges: Vec::new(),
            auto_assign: auto,
            avoid_buggy_ips: false,
            allocation,
        }
    }

    fn sel(k: &str, v: &str) -> Selector {
        Selector::compile(&LabelSelector {
            match_labels: Some(BTreeMap::from([(k.to_string(), v.to_string())])),
            match_expressions: None,
        })
        .unwrap()
    }

    fn alloc(priority: Option<i32>, namespaces: &[&str]) -> ServiceAllocation {
        ServiceAllocation {
            priority,
            namespaces: namespaces
                .iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<_>>(),
            ..Default::default()
        }
    }

    #[test]
    fn pinned_pools_by_priority_then_open_pools_by_name() {
        let mut config = Config::default();
        for p in [
            pool("z-open", true, None),
            pool("a-open", true, None),
            pool("manual", false, None),
            pool("p-unset", true, Some(alloc(None, &["web"]))),
            pool("p5", true, Some(alloc(Some(5), &["web"]))),
            pool("p1-b", true, Some(alloc(Some(1), &[]))),
            pool("p1-a", true, Some(alloc(Some(1), &["web"]))),
            pool("other-ns", true, Some(alloc(Some(0), &["db"]))),
        ] {
            config.pools.insert(p.name.clone(), p);
        }
        let req = ServiceRequest::new("web", "s");
        let (order, excluded) = auto_order(&config, &req);
        let names: Vec<&str> = order.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["p1-a", "p1-b", "p5", "p-unset", "a-open", "z-open"]);
        let excluded: Vec<String> = excluded.iter().map(|a| a.reason.to_string()).collect();
        assert_eq!(
            excluded,
            [
                "pool manual has autoAssign: false (ask for it with ferrolb.io/address-pool)",
                "pool other-ns does not allow namespace web",
            ]
        );
    }

    #[test]
    fn admission_names_the_failing_half_and_agrees_with_allows() {
        let ns_prod = Labels::from([("env".to_string(), "prod".to_string())]);
        let app_web = Labels::from([("app".to_string(), "web".to_string())]);
        let by_ns_selector = ServiceAllocation {
            namespace_selectors: vec![sel("env", "prod")],
            ..Default::default()
        };
        let by_service = ServiceAllocation {
            service_selectors: vec![sel("app", "web")],
            ..Default::default()
        };
        let both = ServiceAllocation {
            namespaces: BTreeSet::from(["web".to_string()]),
            namespace_selectors: vec![sel("env", "prod")],
            service_selectors: vec![sel("app", "web")],
            ..Default::default()
        };
        // (allocation, namespace, namespace labels, service labels, expected)
        type Case<'a> = (
            ServiceAllocation,
            &'a str,
            Labels,
            Labels,
            Result<(), &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                ServiceAllocation::default(),
                "x",
                Labels::new(),
                Labels::new(),
                Ok(()),
            ),
            (
                by_ns_selector.clone(),
                "x",
                ns_prod.clone(),
                Labels::new(),
                Ok(()),
            ),
            (
                by_ns_selector,
                "x",
                Labels::new(),
                Labels::new(),
                Err("does not allow namespace x"),
            ),
            (
                by_service.clone(),
                "x",
                Labels::new(),
                app_web.clone(),
                Ok(()),
            ),
            (
                by_service,
                "x",
                Labels::new(),
                Labels::new(),
                Err("service selectors do not match service x/s"),
            ),
            (both.clone(), "web", Labels::new(), app_web.clone(), Ok(())),
            (
                both.clone(),
                "other",
                ns_prod.clone(),
                app_web.clone(),
                Ok(()),
            ),
            (
                both.clone(),
                "other",
                Labels::new(),
                app_web,
                Err("does not allow namespace other"),
            ),
            (both, "web", ns_prod, Labels::new(), Err("do not match")),
        ];
        for (i, (a, ns, ns_labels, labels, want)) in cases.into_iter().enumerate() {
            let p = pool("p", true, Some(a.clone()));
            let mut req = ServiceRequest::new(ns, "s");
            req.namespace_labels = ns_labels.clone();
            req.labels = labels.clone();
            let got = admits_request(&p, &req);
            assert_eq!(got.is_ok(), a.allows(ns, &ns_labels, &labels), "case {i}");
            match (want, got) {
                (Ok(()), Ok(())) => {}
                (Err(w), Err(e)) => assert!(e.to_string().contains(w), "case {i}: {e}"),
                (w, g) => panic!("case {i}: want {w:?}, got {g:?}"),
            }
        }
    }
}
