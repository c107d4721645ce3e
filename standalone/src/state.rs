//! The state file: which addresses each Service holds, so a restart moves none of them.
//!
//! Written atomically: the new content goes to a temporary file that is synced and renamed over
//! the old one, after the old one was kept as `<file>.prev`. A crash leaves either the old or the
//! new file, never a mix. A state file that cannot be read or parsed is reported by name; the
//! previous good one (`.prev`) is used instead and the bad file is left untouched for inspection
//! until the next successful save replaces it.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format version written; a file of another version is refused, not guessed at.
pub const VERSION: u32 = 1;

/// The addresses of one Service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The pool they came from.
    pub pool: String,
    /// The addresses, preferred family first.
    pub ips: Vec<IpAddr>,
}

/// Every Service's addresses, by `namespace/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Assignments by `namespace/name`.
    pub services: BTreeMap<String, Held>,
    /// The spec of every config object in force, by `Kind/name`: a file edited into something
    /// refused while the host was down keeps its last accepted version after a restart (files
    /// have no status to keep it in).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accepted: BTreeMap<String, serde_json::Value>,
}

/// Why the state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The content is not a state file of this version.
    #[error("state file {file} is corrupt: {detail}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// What loading found.
#[derive(Debug)]
pub struct Loaded {
    /// The state to start from.
    pub state: State,
    /// Problems met on the way (the main file was bad and `.prev` was used, ...).
    pub warnings: Vec<StateError>,
}

fn prev_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".prev");
    PathBuf::from(name)
}

fn read(file: &Path) -> Result<Option<State>, StateError> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                file: file.to_path_buf(),
                source,
            });
        }
    };
    parse(&text)
        .map(Some)
        .map_err(|detail| StateError::Corrupt {
            file: file.to_path_buf(),
            detail,
        })
}

/// A state file's text as a [`State`] of this version, or why not.
pub fn parse(text: &str) -> Result<State, String> {
    let state: State = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if state.version != VERSION {
        return Err(format!(
            "version {} (this ferrolb writes {VERSION})",
            state.version
        ));
    }
    Ok(state)
}

/// Loads `file`, falling back to `<file>.prev` when `file` is unreadable or corrupt, and to an
/// empty state when neither exists.
pub fn load(file: &Path) -> Loaded {
    let mut warnings = Vec::new();
    match read(file) {
        Ok(Some(state)) => return Loaded { state, warnings },
        Ok(None) => {}
        Err(e) => warnings.push(e),
    }
    let prev = prev_path(file);
    match read(&prev) {
        Ok(Some(state)) => Loaded { state, warnings },
        Ok(None) => Loaded {
            state: State {
                version: VERSION,
                ..State::default()
            },
            warnings,
        },
        Err(e) => {
            warnings.push(e);
            Loaded {
                state: State {
                    version: VERSION,
                    ..State::default()
                },
                warnings,
            }
        }
    }
}

/// Saves `state` to `file` atomically, keeping the current good file as `<file>.prev`.
pub fn save(file: &Path, state: &State) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        file: file.to_path_buf(),
        source,
    };
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let text = serde_json::to_vec_pretty(state).map_err(|e| StateError::Corrupt {
        file: file.to_path_buf(),
        detail: e.to_string(),
    })?;
    let mut tmp_name = file.as_os_str().to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.write_all(b"\n").map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    // Keep the last good state: only a file that parses is worth keeping as `.prev`, and it is
    // put in place by a rename too, so `.prev` is never half written either.
    if let Ok(Some(_)) = read(file) {
        let mut prev_tmp = prev_path(file).into_os_string();
        prev_tmp.push(format!(".tmp.{}", std::process::id()));
        let prev_tmp = PathBuf::from(prev_tmp);
        std::fs::copy(file, &prev_tmp).map_err(io)?;
        std::fs::File::open(&prev_tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&prev_tmp, prev_path(file)).map_err(io)?;
    }
    std::fs::rename(&tmp, file).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}
