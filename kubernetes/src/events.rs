//! Publishing `events.k8s.io/v1` Events with a small, bounded memory of recent ones.
//!
//! kube-runtime's `Recorder` keeps every event it published for six minutes to fold repeats into
//! series; with ten thousand Services that cache alone is tens of MiB. Here the memory is a fixed
//! number of recent events: a repeat of one of them becomes a series update, anything older is
//! published afresh, which `kubectl describe` shows just as well. A repeat whose Event the API
//! server has already expired is published afresh too.

use crate::client::{self, CallError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as KubeEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

pub use kube::runtime::events::EventType;

/// One event to publish about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason (`IPAllocated`).
    pub reason: String,
    /// The sentence shown by `kubectl describe`.
    pub note: String,
    /// What the controller was doing (`AllocateIP`).
    pub action: String,
}

type Key = (String, String, String, String);

/// Recent events, oldest first, and per event the name of its Event object and its count.
type Recent = (VecDeque<Key>, BTreeMap<Key, (String, i32)>);

/// Publishes events, folding a repeat of a recent one into its series.
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    capacity: usize,
    recent: Mutex<Recent>,
}

impl Publisher {
    /// A publisher that remembers up to `capacity` recent events.
    pub fn new(client: Client, controller: &str, instance: &str, capacity: usize) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            capacity: capacity.max(1),
            recent: Mutex::new((VecDeque::new(), BTreeMap::new())),
        }
    }

    /// Publishes `event` about `regarding` (in its namespace).
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), CallError> {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let object = regarding.uid.clone().unwrap_or_else(|| {
            format!("{namespace}/{}", regarding.name.clone().unwrap_or_default())
        });
        let key: Key = (
            object,
            event.reason.clone(),
            event.note.clone(),
            event.action.clone(),
        );
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), &namespace);
        let now = MicroTime(Timestamp::now());
        let repeat = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.1.get_mut(&key).map(|(name, count)| {
                *count += 1;
                (name.clone(), *count)
            })
        };
        if let Some((name, count)) = repeat {
            let series = EventSeries {
                count,
                last_observed_time: now.clone(),
            };
            let patch = serde_json::json!({ "series": series });
            let patched =
                client::call(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)))
                    .await;
            match patched {
                Ok(_) => return Ok(()),
                // The API server has expired the Event (its --event-ttl, an hour by default):
                // forget it and publish the repeat as a new one, rather than lose it.
                Err(e) if e.status() == Some(404) => self.forget(&key),
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.clone().unwrap_or_else(|| "object".into()),
            Timestamp::now().as_nanosecond()
        );
        let kube_event = KubeEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            event_time: Some(now),
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: Some(event.note.clone()),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        client::call(api.create(&PostParams::default(), &kube_event)).await?;
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let (order, map) = &mut *recent;
        if map.insert(key.clone(), (name, 1)).is_none() {
            order.push_back(key);
        }
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
        Ok(())
    }

    fn forget(&self, key: &Key) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let (order, map) = &mut *recent;
        map.remove(key);
        order.retain(|k| k != key);
    }
}
