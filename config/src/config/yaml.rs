//! Reading config objects from YAML documents (`---`-separated), as `kubectl apply -f` files
//! hold them: for standalone mode and for tests. Objects of other kinds are handed back, so a
//! caller can pick out what it knows (Services in standalone mode).

use serde::Deserialize;

use super::build::RawConfig;
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
        let ours = meta.api_version == format!("{GROUP}/{VERSION}");
        let c = &mut docs.config;
        let result = match (ours, meta.kind.as_str()) {
            (true, "IPAddressPool") => serde_yaml::from_value(value).map(|o| c.pools.push(o)),
            (true, "L2Advertisement") => {
                serde_yaml::from_value(value).map(|o| c.l2_advertisements.push(o))
            }
            (true, "BGPAdvertisement") => {
                serde_yaml::from_value(value).map(|o| c.bgp_advertisements.push(o))
            }
            (true, "BGPPeer") => serde_yaml::from_value(value).map(|o| c.peers.push(o)),
            (true, "BFDProfile") => serde_yaml::from_value(value).map(|o| c.bfd_profiles.push(o)),
            (true, "Community") => serde_yaml::from_value(value).map(|o| c.communities.push(o)),
            (true, other) => {
                return Err(malformed(&format!(
                    "unknown kind {other:?} in {GROUP}/{VERSION}"
                )));
            }
            (false, "Secret") if meta.api_version == "v1" => {
                serde_yaml::from_value(value).map(|o| c.secrets.push(o))
            }
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
