//! The config directory: every `*.yaml` / `*.yml` file in it (not recursive), in name order, read
//! as `---`-separated Kubernetes objects: the ferrolb.io kinds, Secrets, Services and Nodes.
//!
//! A file that does not parse is reported by name (and document) and its last good content is
//! kept, so one bad edit disturbs nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ferrolb_config::{RawConfig, parse_documents};
use k8s_openapi::api::core::v1::{Node, Service};

/// Why a file was not (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML of known objects.
    #[error("{file}: {detail}")]
    Malformed {
        /// The file.
        file: PathBuf,
        /// What is wrong, with the document number.
        detail: String,
    },
}

/// The objects of one file.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// Config kinds and Secrets.
    pub config: RawConfig,
    /// Services.
    pub services: Vec<Service>,
    /// Nodes (the hosts that may announce).
    pub nodes: Vec<Node>,
}

impl Objects {
    fn extend(&mut self, other: &Objects) {
        let c = &mut self.config;
        let o = &other.config;
        c.pools.extend(o.pools.iter().cloned());
        c.l2_advertisements
            .extend(o.l2_advertisements.iter().cloned());
        c.bgp_advertisements
            .extend(o.bgp_advertisements.iter().cloned());
        c.peers.extend(o.peers.iter().cloned());
        c.bfd_profiles.extend(o.bfd_profiles.iter().cloned());
        c.communities.extend(o.communities.iter().cloned());
        c.secrets.extend(o.secrets.iter().cloned());
        self.services.extend(other.services.iter().cloned());
        self.nodes.extend(other.nodes.iter().cloned());
    }
}

/// Parses one file's text.
pub fn parse_file(file: &Path, text: &str) -> Result<Objects, FileError> {
    let malformed = |detail: String| FileError::Malformed {
        file: file.to_path_buf(),
        detail,
    };
    let docs = parse_documents(text).map_err(|e| malformed(e.to_string()))?;
    let mut objects = Objects {
        config: docs.config,
        ..Default::default()
    };
    for (index, value) in docs.others {
        let kind = (
            value["apiVersion"].as_str().unwrap_or(""),
            value["kind"].as_str().unwrap_or(""),
        );
        match kind {
            ("v1", "Service") => objects.services.push(
                serde_json::from_value(value)
                    .map_err(|e| malformed(format!("document {index}: v1 Service: {e}")))?,
            ),
            ("v1", "Node") => objects.nodes.push(
                serde_json::from_value(value)
                    .map_err(|e| malformed(format!("document {index}: v1 Node: {e}")))?,
            ),
            (api_version, kind) => {
                return Err(malformed(format!(
                    "document {index}: unsupported object {api_version} {kind}"
                )));
            }
        }
    }
    Ok(objects)
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// A directory being watched, with each file's last good objects.
#[derive(Debug)]
pub struct ConfigDir {
    path: PathBuf,
    files: BTreeMap<PathBuf, (Stamp, Option<Objects>)>,
}

/// The result of a scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// Whether anything changed since the previous scan.
    pub changed: bool,
    /// Every file's objects (the last good ones for files that now fail), merged in name order.
    pub objects: Objects,
    /// Files that failed this time.
    pub errors: Vec<FileError>,
}

impl ConfigDir {
    /// Watches `path`; nothing is read until [`ConfigDir::scan`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            files: BTreeMap::new(),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the files that are new or changed (by modification time and size), forgets the
    /// removed ones, and returns everything. An unreadable directory is an error; an unreadable
    /// or malformed file only keeps its last good content.
    pub fn scan(&mut self) -> std::io::Result<Scan> {
        let mut present: Vec<PathBuf> = std::fs::read_dir(&self.path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .filter(|p| p.is_file())
            .collect();
        present.sort();
        let mut scan = Scan::default();
        let before = self.files.len();
        self.files.retain(|p, _| present.contains(p));
        scan.changed |= self.files.len() != before;
        for file in present {
            let stamp = match std::fs::metadata(&file) {
                Ok(m) => Stamp {
                    modified: m.modified().ok(),
                    len: m.len(),
                },
                Err(source) => {
                    scan.errors.push(FileError::Read { file, source });
                    continue;
                }
            };
            if self.files.get(&file).is_some_and(|(s, _)| *s == stamp) {
                continue;
            }
            scan.changed = true;
            let parsed = std::fs::read_to_string(&file)
                .map_err(|source| FileError::Read {
                    file: file.clone(),
                    source,
                })
                .and_then(|text| parse_file(&file, &text));
            let last_good = self.files.remove(&file).and_then(|(_, objects)| objects);
            match parsed {
                Ok(objects) => {
                    self.files.insert(file, (stamp, Some(objects)));
                }
                Err(e) => {
                    scan.errors.push(e);
                    self.files.insert(file, (stamp, last_good));
                }
            }
        }
        for (_, objects) in self.files.values() {
            if let Some(objects) = objects {
                scan.objects.extend(objects);
            }
        }
        Ok(scan)
    }
}
