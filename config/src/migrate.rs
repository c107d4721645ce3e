//! `ferrolb migrate`: MetalLB's configuration objects (`metallb.io`) as ferrolb.io objects, with
//! a report line for everything that does not carry over and why. Pure: YAML text in, YAML text
//! and the report out. Services need no change: their `metallb.io/` and `metallb.universe.tf/`
//! annotations are read as aliases.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::{GROUP, VERSION};
use crate::config::{LastGood, known_fields, parse_documents};

/// MetalLB's API group.
pub const METALLB_GROUP: &str = "metallb.io";

/// The configuration kinds both projects have, by the same names and fields.
const CONFIG_KINDS: [&str; 6] = [
    "IPAddressPool",
    "L2Advertisement",
    "BGPAdvertisement",
    "BGPPeer",
    "BFDProfile",
    "Community",
];

/// MetalLB's status kinds: written by MetalLB, not configuration.
const STATUS_KINDS: [&str; 4] = [
    "BGPSessionState",
    "ServiceBGPStatus",
    "ServiceL2Status",
    "ConfigurationState",
];

/// Metadata the API server writes, and what ties an object to others in the old namespace: a
/// new object must carry neither.
const SERVER_METADATA: [&str; 9] = [
    "ownerReferences",
    "finalizers",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
];

/// Fields of MetalLB's kinds that ferrolb has no counterpart for, and why they are left out.
fn not_carried(kind: &str, field: &str, value: &Value) -> Option<String> {
    let reason = match (kind, field) {
        ("BGPPeer", "localASN") => {
            "ferrolb has no local-as override (MetalLB's native BGP mode has none either)".into()
        }
        ("BGPPeer", "disableMP") if value != &Value::Bool(false) => {
            "ferrolb keeps each address family on its own session, which is what disableMP: \
             true asked for (deprecated in MetalLB)"
                .into()
        }
        _ => return None,
    };
    Some(reason)
}

/// MetalLB fields whose value is MetalLB's default and ferrolb's only behaviour.
fn means_ferrolb_default(kind: &str, field: &str, value: &Value) -> bool {
    matches!(
        (kind, field, value),
        (
            "BGPPeer",
            "disableMP" | "dualStackAddressFamily",
            Value::Bool(false)
        )
    )
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// `Kind name` of the object (or `document N` when it has none).
    pub object: String,
    /// What happened.
    pub what: Outcome,
}

/// What happened to an object or a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Carried over as it is, group renamed.
    Carried,
    /// A field left out, and why.
    FieldLeftOut {
        /// `spec.x`.
        field: String,
        /// Why.
        reason: String,
    },
    /// Something to do by hand (a Secret to copy).
    ToDo(String),
    /// The object is not carried over, and why.
    LeftOut(String),
    /// Carried over, but ferrolb refuses it as it is: the model's verdict.
    Refused(String),
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            Outcome::Carried => write!(f, "{}: carried over", self.object),
            Outcome::FieldLeftOut { field, reason } => {
                write!(f, "{}: {field} not carried over: {reason}", self.object)
            }
            Outcome::ToDo(what) => write!(f, "{}: to do: {what}", self.object),
            Outcome::LeftOut(why) => write!(f, "{}: left out: {why}", self.object),
            Outcome::Refused(why) => {
                write!(
                    f,
                    "{}: carried over, but ferrolb refuses it: {why}",
                    self.object
                )
            }
        }
    }
}

/// The result of a migration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Migration {
    /// The ferrolb.io objects, as a YAML stream.
    pub yaml: String,
    /// The ferrolb.io objects, as JSON (what `yaml` holds).
    pub objects: Vec<Value>,
    /// One line per object, and one per field not carried over.
    pub report: Vec<Line>,
}

/// Why the input could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("document {index}: {detail}")]
pub struct MigrateError {
    /// Position of the document in the stream, from 0.
    pub index: usize,
    /// What the parser said.
    pub detail: String,
}

/// Converts the MetalLB objects of `text` (a YAML stream; `kind: List` documents, as `kubectl
/// get -o yaml` prints, are opened) into ferrolb.io objects in `namespace`.
pub fn migrate(text: &str, namespace: &str) -> Result<Migration, MigrateError> {
    let mut documents = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| MigrateError {
            index,
            detail: e.to_string(),
        })?;
        match value {
            Value::Null => {}
            Value::Object(ref m) if m.get("kind") == Some(&Value::from("List")) => {
                let items = m.get("items").and_then(Value::as_array).cloned();
                documents.extend(items.unwrap_or_default().into_iter().map(|v| (index, v)));
            }
            other => documents.push((index, other)),
        }
    }
    let mut out = Migration::default();
    // The Secrets the peers refer to, `namespace/name`; those in the input come along.
    let mut secrets = BTreeSet::new();
    let (given, documents): (Vec<_>, Vec<_>) = documents.into_iter().partition(|(_, d)| {
        d.get("apiVersion") == Some(&Value::from("v1"))
            && d.get("kind") == Some(&Value::from("Secret"))
    });
    for (index, doc) in documents {
        convert(doc, index, namespace, &mut out, &mut secrets);
    }
    for (_, secret) in given {
        carry_secret(secret, namespace, &mut out, &mut secrets);
    }
    // Referred to, not in the input, and not already where ferrolb reads it: to copy.
    let elsewhere = |w: &&String| !w.starts_with(&format!("{namespace}/"));
    for wanted in secrets.iter().filter(elsewhere) {
        let what = format!(
            "copy Secret {wanted} into namespace {namespace} (ferrolb reads Secrets in its own \
             namespace)"
        );
        out.report.push(Line {
            object: format!("Secret {wanted}"),
            what: Outcome::ToDo(what),
        });
    }
    // Each object through the config model, as ferrolb would see the set.
    let yaml = to_yaml(&out.objects);
    if let Ok(docs) = parse_documents(&yaml) {
        let built = LastGood::default().build(&docs.config);
        for object in built.refused() {
            let (_, why) = built.verdict(object);
            out.report.push(Line {
                object: format!("{} {}", object.kind, object.name),
                what: Outcome::Refused(why),
            });
        }
    }
    out.yaml = yaml;
    Ok(out)
}

fn convert(
    doc: Value,
    index: usize,
    namespace: &str,
    out: &mut Migration,
    secrets: &mut BTreeSet<String>,
) {
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = (doc.pointer("/metadata/name").and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let object = if name.is_empty() {
        format!("document {index} ({kind})")
    } else {
        format!("{kind} {name}")
    };
    let line = |what| Line {
        object: object.clone(),
        what,
    };
    let group = api_version.split('/').next().unwrap_or("");
    if group != METALLB_GROUP {
        let why = match (api_version, kind.as_str()) {
            ("v1", "Service") => "a Service needs no change: ferrolb reads its metallb.io/ and \
                                  metallb.universe.tf/ annotations as aliases"
                .to_string(),
            ("v1", "ConfigMap") if doc.pointer("/data/config").is_some() => {
                "MetalLB's ConfigMap format (before v0.13) is not read: convert it to MetalLB's \
                 CRDs first (MetalLB's configmaptocrs), then migrate those"
                    .to_string()
            }
            _ => format!("not a MetalLB object ({api_version})"),
        };
        out.report.push(line(Outcome::LeftOut(why)));
        return;
    }
    if STATUS_KINDS.contains(&kind.as_str()) {
        let why = "a status object MetalLB writes, not configuration (ferrolb reports on its own \
                   objects and the Services)";
        out.report.push(line(Outcome::LeftOut(why.into())));
        return;
    }
    if !CONFIG_KINDS.contains(&kind.as_str()) {
        let why = format!("ferrolb has no kind {kind}");
        out.report.push(line(Outcome::LeftOut(why)));
        return;
    }
    let mut result = Map::new();
    result.insert("apiVersion".into(), format!("{GROUP}/{VERSION}").into());
    result.insert("kind".into(), kind.clone().into());
    result.insert("metadata".into(), metadata(&doc, namespace));
    let known = known_fields(&kind, &["spec"]);
    let mut spec = Map::new();
    let mut left_out = Vec::new();
    if let Some(Value::Object(given)) = doc.get("spec") {
        for (field, value) in given {
            if means_ferrolb_default(&kind, field, value) && !known.contains(field) {
                // MetalLB's CRD writes its defaults into every object; these mean what
                // ferrolb does anyway, so there is nothing to carry or to report.
                continue;
            }
            if let Some(reason) = not_carried(&kind, field, value) {
                left_out.push((format!("spec.{field}"), reason));
            } else if known.contains(field) {
                spec.insert(field.clone(), value.clone());
            } else {
                let reason = "ferrolb has no such field".to_string();
                left_out.push((format!("spec.{field}"), reason));
            }
        }
    }
    if kind == "BGPPeer"
        && let Some(secret) = spec.get("passwordSecret")
    {
        let name = secret.get("name").and_then(Value::as_str).unwrap_or("");
        let from = (secret.get("namespace").and_then(Value::as_str))
            .or_else(|| doc.pointer("/metadata/namespace").and_then(Value::as_str))
            .unwrap_or("metallb-system");
        secrets.insert(format!("{from}/{name}"));
        if let Some(Value::Object(s)) = spec.get_mut("passwordSecret") {
            s.remove("namespace");
        }
    }
    // MetalLB's advertisements may have no spec at all; the others always have one.
    if doc.get("spec").is_some() || !spec.is_empty() {
        result.insert("spec".into(), Value::Object(spec));
    }
    if left_out.is_empty() {
        out.report.push(line(Outcome::Carried));
    }
    for (field, reason) in left_out {
        out.report
            .push(line(Outcome::FieldLeftOut { field, reason }));
    }
    out.objects.push(Value::Object(result));
}

/// A Secret of the input that a peer refers to comes along into `namespace` (and leaves the
/// to-do list); any other is left out.
fn carry_secret(
    secret: Value,
    namespace: &str,
    out: &mut Migration,
    wanted: &mut BTreeSet<String>,
) {
    let name = (secret.pointer("/metadata/name").and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let from = (secret
        .pointer("/metadata/namespace")
        .and_then(Value::as_str))
    .unwrap_or("metallb-system")
    .to_string();
    let object = format!("Secret {from}/{name}");
    if !wanted.remove(&format!("{from}/{name}")) {
        out.report.push(Line {
            object,
            what: Outcome::LeftOut("no BGPPeer refers to it".into()),
        });
        return;
    }
    let mut copy = match secret {
        Value::Object(m) => m,
        _ => return,
    };
    copy.insert(
        "metadata".into(),
        metadata(&Value::Object(copy.clone()), namespace),
    );
    out.objects.push(Value::Object(copy));
    out.report.push(Line {
        object,
        what: Outcome::Carried,
    });
}

/// Name, labels (pool selectors read them) and annotations (without kubectl's record of the
/// last apply), in `namespace`.
fn metadata(doc: &Value, namespace: &str) -> Value {
    let mut meta = match doc.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    for key in SERVER_METADATA {
        meta.remove(key);
    }
    meta.insert("namespace".into(), namespace.into());
    if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        if annotations.is_empty() {
            meta.remove("annotations");
        }
    }
    Value::Object(meta)
}

fn to_yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .filter_map(|o| serde_yaml::to_string(o).ok())
        .map(|y| format!("---\n{y}"))
        .collect()
}
