//! The object store: objects by resource, a history of every change (so watches can resume
//! from any resourceVersion), and the open watches.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::merge::merge;
use crate::path::ResourcePath;
use crate::{ApiError, not_found};

struct Change {
    rv: u64,
    resource: String,
    namespace: String,
    event: &'static str,
    object: Value,
}

struct Watch {
    resource: String,
    namespace: Option<String>,
    bookmarks: bool,
    tx: mpsc::UnboundedSender<Bytes>,
}

/// (apiVersion, kind) of the resources tests use, so empty lists and bookmarks carry types.
fn known_kind(resource: &str) -> Option<(&'static str, &'static str)> {
    Some(match resource {
        "/api/v1/services" => ("v1", "Service"),
        "/api/v1/namespaces" => ("v1", "Namespace"),
        "/api/v1/secrets" => ("v1", "Secret"),
        "/api/v1/nodes" => ("v1", "Node"),
        "/api/v1/events" => ("v1", "Event"),
        "/apis/events.k8s.io/v1/events" => ("events.k8s.io/v1", "Event"),
        "/apis/coordination.k8s.io/v1/leases" => ("coordination.k8s.io/v1", "Lease"),
        "/apis/discovery.k8s.io/v1/endpointslices" => ("discovery.k8s.io/v1", "EndpointSlice"),
        "/apis/ferrolb.io/v1beta1/ipaddresspools" => ("ferrolb.io/v1beta1", "IPAddressPool"),
        "/apis/ferrolb.io/v1beta1/l2advertisements" => ("ferrolb.io/v1beta1", "L2Advertisement"),
        "/apis/ferrolb.io/v1beta1/bgpadvertisements" => ("ferrolb.io/v1beta1", "BGPAdvertisement"),
        "/apis/ferrolb.io/v1beta1/bgppeers" => ("ferrolb.io/v1beta1", "BGPPeer"),
        "/apis/ferrolb.io/v1beta1/bfdprofiles" => ("ferrolb.io/v1beta1", "BFDProfile"),
        "/apis/ferrolb.io/v1beta1/communities" => ("ferrolb.io/v1beta1", "Community"),
        _ => return None,
    })
}

#[derive(Default)]
pub(crate) struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    kinds: BTreeMap<String, (String, String)>,
    history: Vec<Change>,
    watches: Vec<Watch>,
}

fn key(path: &ResourcePath) -> (String, String) {
    (
        path.namespace.clone().unwrap_or_default(),
        path.name.clone().unwrap_or_default(),
    )
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "Conflict", message)
}

impl Store {
    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    pub(crate) fn open_watches(&self) -> usize {
        self.watches.iter().filter(|w| !w.tx.is_closed()).count()
    }

    fn types(&self, resource: &str) -> (String, String) {
        self.kinds
            .get(resource)
            .cloned()
            .or_else(|| known_kind(resource).map(|(a, k)| (a.to_string(), k.to_string())))
            .unwrap_or_else(|| ("v1".into(), "Unknown".into()))
    }

    pub(crate) fn get(&self, path: &ResourcePath) -> Option<Value> {
        self.objects.get(&path.resource())?.get(&key(path)).cloned()
    }

    pub(crate) fn list(&self, path: &ResourcePath) -> Vec<Value> {
        let Some(objects) = self.objects.get(&path.resource()) else {
            return Vec::new();
        };
        objects
            .iter()
            .filter(|((ns, _), _)| path.namespace.as_ref().is_none_or(|want| want == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub(crate) fn list_response(&self, path: &ResourcePath) -> Value {
        let (api_version, kind) = self.types(&path.resource());
        json!({
            "apiVersion": api_version,
            "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": self.list(path),
        })
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Records a change and sends it to the matching watches.
    fn emit(&mut self, path: &ResourcePath, event: &'static str, object: Value) {
        let change = Change {
            rv: self.rv,
            resource: path.resource(),
            namespace: path.namespace.clone().unwrap_or_default(),
            event,
            object,
        };
        let line = event_line(change.event, &change.object);
        self.watches.retain(|w| {
            if w.resource != change.resource
                || w.namespace
                    .as_ref()
                    .is_some_and(|ns| ns != &change.namespace)
            {
                return true;
            }
            w.tx.send(line.clone()).is_ok()
        });
        self.history.push(change);
    }

    fn stamp(&mut self, path: &ResourcePath, obj: &mut Value, fresh: bool) {
        let rv = self.next_rv();
        let (api_version, kind) = self.types(&path.resource());
        if obj.get("apiVersion").is_none() {
            obj["apiVersion"] = json!(api_version);
        }
        if obj.get("kind").is_none() {
            obj["kind"] = json!(kind);
        }
        if let (Some(a), Some(k)) = (obj["apiVersion"].as_str(), obj["kind"].as_str()) {
            self.kinds
                .insert(path.resource(), (a.to_string(), k.to_string()));
        }
        let meta = &mut obj["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        if let Some(ns) = &path.namespace {
            meta["namespace"] = json!(ns);
        }
        if fresh {
            self.uid += 1;
            meta["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", self.uid));
            meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            meta["generation"] = json!(1);
        }
    }

    pub(crate) fn create(
        &mut self,
        path: &ResourcePath,
        mut body: Value,
    ) -> Result<Value, ApiError> {
        let name = match (
            body["metadata"]["name"].as_str(),
            body["metadata"]["generateName"].as_str(),
        ) {
            (Some(n), _) => n.to_string(),
            (None, Some(prefix)) => format!("{prefix}{:05x}", self.uid + 1),
            (None, None) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value".into(),
                ));
            }
        };
        let path = ResourcePath {
            name: Some(name.clone()),
            ..path.clone()
        };
        if self.get(&path).is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} {name:?} already exists", path.plural),
            ));
        }
        body["metadata"]["name"] = json!(name);
        self.stamp(&path, &mut body, true);
        self.objects
            .entry(path.resource())
            .or_default()
            .insert(key(&path), body.clone());
        self.emit(&path, "ADDED", body.clone());
        Ok(body)
    }

    fn store_modified(&mut self, path: &ResourcePath, old: &Value, mut new: Value) -> Value {
        if new == *old {
            return new;
        }
        if new.get("spec") != old.get("spec") {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        self.stamp(path, &mut new, false);
        self.objects
            .entry(path.resource())
            .or_default()
            .insert(key(path), new.clone());
        self.emit(path, "MODIFIED", new.clone());
        new
    }

    fn check_precondition(old: &Value, body: &Value) -> Result<(), ApiError> {
        match body["metadata"]["resourceVersion"].as_str() {
            Some(rv) if Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
                Err(conflict(format!(
                    "the object has been modified; please apply your changes to the latest version and try again (have {}, got {rv})",
                    old["metadata"]["resourceVersion"]
                )))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn replace(&mut self, path: &ResourcePath, body: Value) -> Result<Value, ApiError> {
        let old = self.get(path).ok_or_else(|| not_found(path))?;
        Self::check_precondition(&old, &body)?;
        let mut new = old.clone();
        if path.status {
            new["status"] = body["status"].clone();
        } else {
            new = body;
            // The main resource cannot change the status of a resource that has one.
            if let Some(status) = old.get("status") {
                new["status"] = status.clone();
            }
            for keep in [
                "uid",
                "creationTimestamp",
                "generation",
                "namespace",
                "name",
            ] {
                new["metadata"][keep] = old["metadata"][keep].clone();
            }
        }
        Ok(self.store_modified(path, &old, new))
    }

    pub(crate) fn merge_patch(
        &mut self,
        path: &ResourcePath,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let old = self.get(path).ok_or_else(|| not_found(path))?;
        Self::check_precondition(&old, patch)?;
        let mut new = old.clone();
        let mut patch = patch.clone();
        if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        if path.status {
            merge(&mut new["status"], &patch["status"]);
        } else {
            if let Some(p) = patch.as_object_mut() {
                p.remove("status");
            }
            merge(&mut new, &patch);
        }
        Ok(self.store_modified(path, &old, new))
    }

    pub(crate) fn delete(&mut self, path: &ResourcePath) -> Result<Value, ApiError> {
        let mut old = self
            .objects
            .get_mut(&path.resource())
            .and_then(|m| m.remove(&key(path)))
            .ok_or_else(|| not_found(path))?;
        let rv = self.next_rv();
        old["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(path, "DELETED", old.clone());
        Ok(old)
    }

    /// Creates or replaces everything, status included (for test set-up).
    pub(crate) fn upsert(&mut self, path: &ResourcePath, mut body: Value) -> Value {
        match self.get(path) {
            None => self
                .create(&path.collection_in_namespace(), body)
                .unwrap_or(Value::Null),
            Some(old) => {
                for keep in ["uid", "creationTimestamp", "generation"] {
                    body["metadata"][keep] = old["metadata"][keep].clone();
                }
                self.store_modified(path, &old, body)
            }
        }
    }

    pub(crate) fn watch(
        &mut self,
        path: &ResourcePath,
        since: u64,
        bookmarks: bool,
        tx: mpsc::UnboundedSender<Bytes>,
    ) {
        let resource = path.resource();
        let matches = |resource_: &str, ns: &str| {
            resource_ == resource && path.namespace.as_ref().is_none_or(|want| want == ns)
        };
        if since == 0 {
            for obj in self.list(path) {
                let _ = tx.send(event_line("ADDED", &obj));
            }
        } else {
            for change in self
                .history
                .iter()
                .filter(|c| c.rv > since && matches(&c.resource, &c.namespace))
            {
                let _ = tx.send(event_line(change.event, &change.object));
            }
        }
        let watch = Watch {
            resource,
            namespace: path.namespace.clone(),
            bookmarks,
            tx,
        };
        if bookmarks {
            let _ = watch.tx.send(self.bookmark_line(&watch.resource));
        }
        self.watches.push(watch);
    }

    fn bookmark_line(&self, resource: &str) -> Bytes {
        let (api_version, kind) = self.types(resource);
        let object = json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": self.rv.to_string()}});
        event_line("BOOKMARK", &object)
    }

    pub(crate) fn send_bookmarks(&mut self) {
        let lines: Vec<(usize, Bytes)> = self
            .watches
            .iter()
            .enumerate()
            .filter(|(_, w)| w.bookmarks)
            .map(|(i, w)| (i, self.bookmark_line(&w.resource)))
            .collect();
        for (i, line) in lines {
            let _ = self.watches[i].tx.send(line);
        }
    }
}

fn event_line(event: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

impl ResourcePath {
    /// The collection this object lives in.
    pub(crate) fn collection_in_namespace(&self) -> Self {
        Self {
            name: None,
            status: false,
            ..self.clone()
        }
    }
}
