//! The write pipeline: an outcome becomes at most one status patch, one annotation patch and
//! its events, sent on a task of its own (a bounded number at once) under the leader's term,
//! and retried with backoff from the newest object when it fails.

use super::*;

impl Reconciler {
    pub(super) fn write_outcome(&mut self, key: &ServiceKey, service: &Service, outcome: Outcome) {
        let desired = Desired::from_outcome(&outcome, service);
        let status = service_status::status_patch(service, &desired, Timestamp::now());
        let annotations = service_status::annotation_patch(service, &desired);
        if status.is_none() && annotations.is_none() {
            self.attempts.remove(key);
            self.echo.remove(key);
            return;
        }
        // Our own write of exactly this has not come back through the watch yet: nothing to do.
        if self.echo.get(key).is_some_and(|(_, sent)| sent == &desired) {
            return;
        }
        if self.in_flight.contains_key(key) || self.waiting.contains(key) {
            self.again.insert(key.clone());
            return;
        }
        if self.in_flight.len() >= self.settings.max_concurrent_writes.max(1) {
            if !self.again.contains(key) {
                self.again.insert(key.clone());
                self.backlog.push_back(key.clone());
            }
            return;
        }
        if matches!(outcome, Outcome::Assigned { .. })
            && service_status::Observed::of(service).ingress != desired.ingress
        {
            self.metrics.allocations.inc();
        }
        let write = Write {
            service: service.clone(),
            events: events_for(service, &outcome),
            status,
            annotations,
        };
        self.in_flight.insert(key.clone(), desired);
        let client = self.client.clone();
        let recorder = self.recorder.clone();
        let metrics = self.metrics.clone();
        let manager = self.settings.manager.clone();
        let term = self.settings.term.clone();
        let tx = self.tx.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let written = send(&term, client, recorder, &metrics, &manager, write).await;
            let _ = tx.send(Input::Written { key, written });
        });
    }

    pub(super) fn on_written(&mut self, key: ServiceKey, written: Option<String>) {
        let sent = self.in_flight.remove(&key);
        // A freed slot goes to the oldest Service waiting for one.
        while let Some(next) = self.backlog.pop_front() {
            if self.again.remove(&next) {
                self.reconcile(&next);
                break;
            }
        }
        if let (Some(rv), Some(sent)) = (written, sent) {
            self.attempts.remove(&key);
            let seen = self
                .services
                .get(&key)
                .and_then(|s| s.metadata.resource_version.clone());
            if !caught_up(seen.as_deref(), &rv) {
                self.echo.insert(key.clone(), (rv, sent));
            }
            if self.again.remove(&key) {
                self.reconcile(&key);
            }
            return;
        }
        // Back off, then decide again from the newest object we have seen.
        self.again.remove(&key);
        let attempt = self.attempts.entry(key.clone()).or_insert(0);
        *attempt += 1;
        let delay = Duration::from_millis(100u64.saturating_mul(1 << (*attempt).min(8)))
            .min(Duration::from_secs(30));
        self.waiting.insert(key.clone());
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Input::Retry(key));
        });
    }
}

/// Sends one Service's patches and events under the leader's term; returns the resourceVersion
/// the patches produced, or `None` when one failed or the term ended.
pub(super) async fn send(
    term: &Term,
    client: Client,
    recorder: Arc<Publisher>,
    metrics: &Metrics,
    manager: &str,
    write: Write,
) -> Option<String> {
    let namespace = write.service.metadata.namespace.clone().unwrap_or_default();
    let name = write.service.metadata.name.clone().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(client, &namespace);
    let params = PatchParams {
        field_manager: Some(manager.to_string()),
        ..Default::default()
    };
    let mut rv = None;
    if let Some(patch) = &write.status {
        let patch = Patch::Merge(patch);
        match term
            .write(client::call(api.patch_status(&name, &params, &patch)))
            .await
        {
            None => return None,
            Some(Ok(s)) => rv = s.metadata.resource_version,
            Some(Err(e)) => {
                metrics.api_error("patch_service_status");
                tracing::warn!(error = %e, service = %format!("{namespace}/{name}"), "status write failed; will retry");
                return None;
            }
        }
    }
    if let Some(patch) = &write.annotations {
        let patch = Patch::Merge(patch);
        match term
            .write(client::call(api.patch(&name, &params, &patch)))
            .await
        {
            None => return None,
            Some(Ok(s)) => rv = s.metadata.resource_version,
            Some(Err(e)) => {
                metrics.api_error("patch_service_annotations");
                tracing::warn!(error = %e, service = %format!("{namespace}/{name}"), "annotation write failed; will retry");
                return None;
            }
        }
    }
    let reference = write.service.object_ref(&());
    for event in &write.events {
        if let Some(Err(e)) = term.write(recorder.publish(event, &reference)).await {
            metrics.api_error("publish_event");
            tracing::debug!(error = %e, "could not publish event");
        }
    }
    Some(rv.unwrap_or_default())
}

/// The events a change of outcome deserves (none when the outcome did not change).
pub(super) fn events_for(service: &Service, outcome: &Outcome) -> Vec<Event> {
    let observed = service_status::Observed::of(service);
    let before = observed
        .condition
        .as_ref()
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()));
    let event = |type_, reason: &str, note: String| Event {
        type_,
        reason: reason.into(),
        note: truncate(&note, 1000),
        action: "AllocateIP".into(),
    };
    match outcome {
        Outcome::Assigned {
            ips,
            reason,
            message,
            ..
        } => {
            let ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
            let mut events = Vec::new();
            if observed.ingress != ips {
                events.push(event(EventType::Normal, "IPAllocated", message.clone()));
            }
            if reason == "IPStale" && before.map(|b| b.1) != Some("IPStale") {
                events.push(event(EventType::Warning, "IPStale", message.clone()));
            }
            events
        }
        Outcome::Refused { reason, message } => {
            if before == Some(("False", reason.as_str(), message.as_str())) {
                Vec::new()
            } else {
                vec![event(
                    EventType::Warning,
                    "AllocationFailed",
                    message.clone(),
                )]
            }
        }
        Outcome::NotOurs if observed.pool.is_some() || observed.condition.is_some() => {
            vec![event(
                EventType::Normal,
                "IPReleased",
                "no longer a ferrolb LoadBalancer Service; addresses released".into(),
            )]
        }
        Outcome::NotOurs => Vec::new(),
    }
}

/// Whether an object seen at `seen` already includes the write that produced `written`.
/// resourceVersions are opaque to clients, but every API server numbers them in order (etcd
/// revisions); when they do not parse as numbers, only equality counts.
pub(super) fn caught_up(seen: Option<&str>, written: &str) -> bool {
    match (seen.map(str::parse::<u64>), written.parse::<u64>()) {
        (Some(Ok(seen)), Ok(written)) => seen >= written,
        _ => seen == Some(written),
    }
}
