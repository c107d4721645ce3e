//! What the reconciler reports on the config objects: each one's `Valid` condition and the
//! pools' counters (debounced, written only when they differ), objects outside the config
//! namespace (`WrongNamespace`), and Warning events on the objects at fault.

use super::*;

impl Reconciler {
    pub(super) fn schedule_flush(&mut self) {
        if self.flush_scheduled || !self.statuses_dirty {
            return;
        }
        self.flush_scheduled = true;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx.send(Input::FlushStatuses);
        });
    }

    /// Pool counters and config object conditions, written only when they differ.
    pub(super) fn flush_statuses(&mut self) {
        if !self.statuses_dirty || !self.leader || !self.config_synced {
            return;
        }
        self.statuses_dirty = false;
        let raw = self.stores.snapshot();
        let built = self.built.clone();
        let valid = |object: &ObjectRef| -> (bool, String) {
            match &built {
                Some(built) => built.verdict(object),
                None => (true, "accepted".into()),
            }
        };
        for pool in &raw.pools {
            let object = object_ref(Kind::IPAddressPool, pool);
            let (ok, message) = valid(&object);
            let mut status = pool.status.clone().unwrap_or_default();
            if let Some(counters) = self
                .allocator
                .as_ref()
                .map(|a| a.pool_counters(&object.name))
            {
                status.assigned_ipv4 = counters.assigned_v4;
                status.assigned_ipv6 = counters.assigned_v6;
                status.available_ipv4 = counters.available_v4;
                status.available_ipv6 = counters.available_v6;
                self.metrics.set_pool(&object.name, &counters);
            }
            set_valid(
                &mut status.conditions,
                ok,
                &message,
                pool.metadata.generation,
            );
            let before = pool.status.as_ref().and_then(|s| s.accepted_spec.clone());
            if ok {
                status.accepted_spec = serde_json::to_value(&pool.spec).ok();
            }
            if Some(&status) != pool.status.as_ref() {
                let mut patch = json!({"status": status});
                replace_accepted(&mut patch, before.as_ref(), status.accepted_spec.as_ref());
                self.patch_config_status::<api::IPAddressPool>(&object, patch);
            }
        }
        self.flush_config_conditions(&raw.l2_advertisements, Kind::L2Advertisement, &valid);
        self.flush_config_conditions(&raw.bgp_advertisements, Kind::BGPAdvertisement, &valid);
        self.flush_config_conditions(&raw.peers, Kind::BGPPeer, &valid);
        self.flush_config_conditions(&raw.bfd_profiles, Kind::BFDProfile, &valid);
        self.flush_config_conditions(&raw.communities, Kind::Community, &valid);
        self.flush_foreign();
    }

    /// Config objects in other namespaces: not read, and told so (Valid=False, reason
    /// `WrongNamespace`, and a Warning event when that is first said).
    pub(super) fn flush_foreign(&self) {
        let message = format!(
            "ignored: ferrolb reads its configuration only from namespace {}",
            self.settings.namespace
        );
        for f in self.stores.foreign() {
            let mut conditions = f.conditions.clone();
            set_valid_with(
                &mut conditions,
                false,
                "WrongNamespace",
                &message,
                f.generation,
            );
            if conditions == f.conditions {
                continue;
            }
            let patch = json!({"status": {"conditions": conditions}});
            match f.object.kind {
                Kind::IPAddressPool => {
                    self.patch_config_status::<api::IPAddressPool>(&f.object, patch)
                }
                Kind::L2Advertisement => {
                    self.patch_config_status::<api::L2Advertisement>(&f.object, patch)
                }
                Kind::BGPAdvertisement => {
                    self.patch_config_status::<api::BGPAdvertisement>(&f.object, patch)
                }
                Kind::BGPPeer => self.patch_config_status::<api::BGPPeer>(&f.object, patch),
                Kind::BFDProfile => self.patch_config_status::<api::BFDProfile>(&f.object, patch),
                Kind::Community => self.patch_config_status::<api::Community>(&f.object, patch),
                Kind::Secret => continue,
            }
            tracing::warn!(object = %f.object, "{message}");
            let event = Event {
                type_: EventType::Warning,
                reason: "WrongNamespace".into(),
                note: message.clone(),
                action: "ValidateConfig".into(),
            };
            let recorder = self.recorder.clone();
            let metrics = self.metrics.clone();
            let reference = f.reference.clone();
            let term = self.settings.term.clone();
            tokio::spawn(async move {
                if let Some(Err(_)) = term.write(recorder.publish(&event, &reference)).await {
                    metrics.api_error("publish_event");
                }
            });
        }
    }

    pub(super) fn flush_config_conditions<K>(
        &self,
        objects: &[K],
        kind: Kind,
        valid: &dyn Fn(&ObjectRef) -> (bool, String),
    ) where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + HasConfigStatus
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        for obj in objects {
            let object = object_ref(kind, obj);
            let (ok, message) = valid(&object);
            let current = obj.config_status().cloned().unwrap_or_default();
            let mut status = current.clone();
            set_valid(&mut status.conditions, ok, &message, obj.meta().generation);
            if ok {
                status.accepted_spec =
                    (serde_json::to_value(obj).ok()).and_then(|v| v.get("spec").cloned());
            }
            if status != current {
                let mut patch = json!({"status": status});
                let (before, now) = (
                    current.accepted_spec.as_ref(),
                    status.accepted_spec.as_ref(),
                );
                replace_accepted(&mut patch, before, now);
                self.patch_config_status::<K>(&object, patch);
            }
        }
    }

    /// Patches the status of config object `object` (of kind `K`) in its namespace.
    pub(super) fn patch_config_status<K>(&self, object: &ObjectRef, patch: Value)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        let namespace = (object.namespace.as_deref()).unwrap_or(&self.settings.namespace);
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let params = PatchParams::apply(&self.settings.manager);
        let params = PatchParams {
            field_manager: params.field_manager,
            ..Default::default()
        };
        let metrics = self.metrics.clone();
        let name = object.name.clone();
        let term = self.settings.term.clone();
        tokio::spawn(async move {
            let patch = Patch::Merge(&patch);
            let written = term.write(client::call(api.patch_status(&name, &params, &patch)));
            if let Some(Err(e)) = written.await {
                metrics.api_error("patch_config_status");
                tracing::warn!(error = %e, object = %name, "could not write config object status");
            }
        });
    }

    /// A Warning event on each config object newly refused, or refused for new reasons (only
    /// the leader reports).
    pub(super) fn report_config_events(
        &self,
        raw: &config::RawConfig,
        previous: Option<&config::Built>,
        built: &config::Built,
    ) {
        if !self.leader {
            return;
        }
        for object in built.refused() {
            let said_before = previous.map(|p| p.verdict(object));
            let (_, message) = built.verdict(object);
            if said_before.as_ref().is_some_and(|(_, m)| *m == message) {
                continue;
            }
            let Some(reference) = object_reference(raw, object) else {
                continue;
            };
            let event = Event {
                type_: EventType::Warning,
                reason: "InvalidConfiguration".into(),
                note: truncate(&message, 1000),
                action: "ValidateConfig".into(),
            };
            let recorder = self.recorder.clone();
            let metrics = self.metrics.clone();
            let term = self.settings.term.clone();
            tokio::spawn(async move {
                if let Some(Err(_)) = term.write(recorder.publish(&event, &reference)).await {
                    metrics.api_error("publish_event");
                }
            });
        }
    }
}

/// A merge patch only adds and replaces keys: to make `status.acceptedSpec` exactly `now`,
/// every key of `before` that `now` lacks is set to null.
fn replace_accepted(patch: &mut Value, before: Option<&Value>, now: Option<&Value>) {
    if let (Some(before), Some(now)) = (before, now) {
        patch["status"]["acceptedSpec"] = merge_patch(before, now);
    }
}

/// The JSON merge patch (RFC 7386) that turns `before` into `now`.
fn merge_patch(before: &Value, now: &Value) -> Value {
    match (before, now) {
        (Value::Object(b), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in n {
                let patched = match b.get(k) {
                    Some(old) => merge_patch(old, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), patched);
            }
            for k in b.keys().filter(|k| !n.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        _ => now.clone(),
    }
}

pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub(super) fn object_ref<K: Resource>(kind: Kind, obj: &K) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: obj.meta().namespace.clone(),
        name: obj.meta().name.clone().unwrap_or_default(),
    }
}

pub(super) fn object_reference(
    raw: &config::RawConfig,
    object: &ObjectRef,
) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
    pub(super) fn find<K: Resource<DynamicType = ()>>(
        objects: &[K],
        name: &str,
    ) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
        objects
            .iter()
            .find(|o| o.meta().name.as_deref() == Some(name))
            .map(|o| o.object_ref(&()))
    }
    match object.kind {
        Kind::IPAddressPool => find(&raw.pools, &object.name),
        Kind::L2Advertisement => find(&raw.l2_advertisements, &object.name),
        Kind::BGPAdvertisement => find(&raw.bgp_advertisements, &object.name),
        Kind::BGPPeer => find(&raw.peers, &object.name),
        Kind::BFDProfile => find(&raw.bfd_profiles, &object.name),
        Kind::Community => find(&raw.communities, &object.name),
        Kind::Secret => None,
    }
}

/// Sets the `Valid` condition (reason `Accepted` or `Invalid`), keeping its transition time when
/// the status did not change.
pub(super) fn set_valid(
    conditions: &mut Vec<Condition>,
    ok: bool,
    message: &str,
    generation: Option<i64>,
) {
    let reason = if ok { "Accepted" } else { "Invalid" };
    set_valid_with(conditions, ok, reason, message, generation);
}

/// [`set_valid`] with a reason of the caller's.
fn set_valid_with(
    conditions: &mut Vec<Condition>,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let wanted = condition::Wanted {
        type_: CONDITION_VALID,
        status: ok,
        reason,
        message,
        observed_generation: generation,
    };
    condition::set(conditions, &wanted, Timestamp::now());
}

/// Config kinds whose status is a [`api::ConfigStatus`].
pub trait HasConfigStatus {
    /// The status, if any.
    fn config_status(&self) -> Option<&api::ConfigStatus>;
}

macro_rules! has_config_status {
    ($($kind:ty),*) => {
        $(impl HasConfigStatus for $kind {
            fn config_status(&self) -> Option<&api::ConfigStatus> {
                self.status.as_ref()
            }
        })*
    };
}

has_config_status!(
    api::L2Advertisement,
    api::BGPAdvertisement,
    api::BGPPeer,
    api::BFDProfile,
    api::Community
);
