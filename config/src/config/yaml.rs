//! Reading config objects from YAML documents (`---`-separated), as `kubectl apply -f` files
//! hold them: for standalone mode and for tests. Objects of other kinds are handed back, so a
//! caller can pick out what it knows (Services in standalone mode).

use serde::Deserialize;

use super::build::RawConfig;
use super::error::clip;
use crate::api::{GROUP, VERSION};

/// Why a YAML document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// Not YAML, or not an object of the kind it claims.
    #[error("document {index}: {detail}")]
    Malformed {
        /// Position of the document in the stream, from 0.
        index: usize,
        /// What the parser said.
        detail: String,
    },
}

#[derive(Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// The config objects of a YAML stream, plus the documents of kinds the config does not use.
#[derive(Debug, Default)]
pub struct Documents {
    /// The ferrolb kinds and Secrets.
    pub config: RawConfig,
    /// Every other document, as JSON, with its position.
    pub others: Vec<(usize, serde_json::Value)>,
}

/// Splits `text` into documents and sorts the config objects into a [`RawConfig`].
/// Empty documents are skipped; any malformed document is an error naming its position.
pub fn parse_documents(text: &str) -> Result<Documents, YamlError> {
    let mut docs = Documents::default();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let malformed = |e: &dyn std::fmt::Display| YamlError::Malformed {
            index,
            detail: e.to_string(),
        };
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| malformed(&e))?;
        if value.is_null() {
            continue;
        }
        let meta: TypeMeta = serde_yaml::from_value(value.clone()).map_err(|e| malformed(&e))?;
        // BGPPeer is also served as MetalLB's v1beta2 (the same schema).
        let ours = meta.api_version == format!("{GROUP}/{VERSION}")
            || (meta.kind == "BGPPeer"
                && meta.api_version == format!("{GROUP}/{}", crate::api::BGPPEER_METALLB_VERSION));
        if !ours && meta.api_version.starts_with(&format!("{GROUP}/")) {
            return Err(malformed(&format!(
                "{} {}: ferrolb serves {GROUP}/{VERSION} (and BGPPeer also as {GROUP}/{})",
                meta.api_version,
                meta.kind,
                crate::api::BGPPEER_METALLB_VERSION
            )));
        }
        let c = &mut docs.config;
        let kind = meta.kind.as_str();
        let result = match (ours, kind) {
            (true, "IPAddressPool") => strict(value, kind).map(|o| c.pools.push(o)),
            (true, "L2Advertisement") => {
                strict(with_spec(value), kind).map(|o| c.l2_advertisements.push(o))
            }
            (true, "BGPAdvertisement") => {
                strict(with_spec(value), kind).map(|o| c.bgp_advertisements.push(o))
            }
            (true, "BGPPeer") => strict(value, kind).map(|o| c.peers.push(o)),
            (true, "BFDProfile") => strict(value, kind).map(|o| c.bfd_profiles.push(o)),
            (true, "Community") => strict(value, kind).map(|o| c.communities.push(o)),
            (true, other) => {
                return Err(malformed(&format!(
                    "unknown kind {other:?} in {GROUP}/{VERSION}"
                )));
            }
            (false, "Secret") if meta.api_version == "v1" => serde_yaml::from_value(value)
                .map(|o| c.secrets.push(o))
                .map_err(|e| e.to_string()),
            _ => {
                let json = serde_json::to_value(&value).map_err(|e| malformed(&e))?;
                docs.others.push((index, json));
                Ok(())
            }
        };
        result.map_err(|e| malformed(&format!("{} {}: {e}", meta.api_version, meta.kind)))?;
    }
    Ok(docs)
}

/// As the API server does for the advertisements (see `api::crds`): no spec is an empty one.
fn with_spec(mut value: serde_yaml::Value) -> serde_yaml::Value {
    if let Some(m) = value.as_mapping_mut()
        && !m.contains_key("spec")
    {
        m.insert("spec".into(), serde_yaml::Mapping::new().into());
    }
    value
}

/// One of our kinds from YAML, refusing every field the type does not have: no API server
/// pruned these files, and a field accepted and then ignored (`autoAsign: false`) is a
/// setting the user believes in. Each is named by its path, with the nearest known field.
fn strict<T: serde::de::DeserializeOwned>(
    value: serde_yaml::Value,
    kind: &str,
) -> Result<T, String> {
    let mut unknown = Vec::new();
    let obj: T = serde_ignored::deserialize(value, |path| {
        let path = path.to_string();
        // The type reads these two itself (and they were checked to pick it).
        if path != "apiVersion" && path != "kind" {
            unknown.push(path);
        }
    })
    .map_err(|e| e.to_string())?;
    if unknown.is_empty() {
        return Ok(obj);
    }
    Err(unknown
        .iter()
        .map(|path| unknown_field(kind, path))
        .collect::<Vec<_>>()
        .join("; "))
}

/// "unknown field PATH", with the known field nearest to it (from the kind's CRD schema) when
/// one is close enough to be a typo, or the known fields there.
fn unknown_field(kind: &str, path: &str) -> String {
    let shown = clip(path);
    let segments: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = segments.split_last() else {
        return format!("unknown field {shown}");
    };
    let known = known_fields(kind, parents);
    if known.is_empty() {
        return format!("unknown field {shown}");
    }
    let nearest = known
        .iter()
        .map(|k| (edit_distance(&last.to_lowercase(), &k.to_lowercase()), k))
        .min();
    match nearest {
        Some((d, k)) if d <= 2.max(last.len() / 3) => {
            let mut fix = parents.to_vec();
            fix.push(k);
            format!("unknown field {shown} (did you mean {}?)", fix.join("."))
        }
        _ => format!("unknown field {shown} (known here: {})", known.join(", ")),
    }
}

/// The property names the kind's CRD schema allows under `parents` (sequence indices step
/// into the items); empty where the schema does not say (metadata).
pub(crate) fn known_fields(kind: &str, parents: &[&str]) -> Vec<String> {
    let crds = crate::api::crds();
    let Some(mut schema) = crds
        .iter()
        .find(|c| c.spec.names.kind == kind)
        .and_then(|c| c.spec.versions.first())
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.clone())
    else {
        return Vec::new();
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray;
    for seg in parents {
        let next = if seg.parse::<usize>().is_ok() {
            match schema.items {
                Some(JSONSchemaPropsOrArray::Schema(s)) => Some(*s),
                _ => None,
            }
        } else {
            schema.properties.and_then(|mut p| p.remove(*seg))
        };
        match next {
            Some(s) => schema = s,
            None => return Vec::new(),
        }
    }
    schema
        .properties
        .map(|p| p.into_keys().collect())
        .unwrap_or_default()
}

/// Levenshtein distance (edits to turn `a` into `b`), for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
