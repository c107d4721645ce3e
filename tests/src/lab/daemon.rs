//! What the daemon drivers share: a private directory and a started process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cmd::{Process, tail};
use super::error::LabError;
use super::topology::Host;
use super::wait::wait_for;

/// How long a daemon may take to answer on its control socket after starting.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A daemon's private directory (config, socket, pid file, log) and process.
#[derive(Debug)]
pub(crate) struct DaemonHome {
    pub(crate) dir: PathBuf,
    pub(crate) host: Host,
    pub(crate) kind: &'static str,
}

impl DaemonHome {
    pub(crate) fn new(host: &Host, kind: &'static str) -> Result<Self, LabError> {
        let dir = host.unique_path(kind);
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        Ok(DaemonHome {
            dir,
            host: host.clone(),
            kind,
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> Result<PathBuf, LabError> {
        let p = self.path(name);
        std::fs::write(&p, text)
            .map_err(|e| LabError::io(format!("writing {}", p.display()), e))?;
        Ok(p)
    }

    pub(crate) fn path_str(&self, name: &str) -> Result<String, LabError> {
        path_string(&self.path(name))
    }

    /// Waits until `ready` succeeds, failing early (with the log) if the process exits.
    pub(crate) fn wait_ready(
        &self,
        process: &mut Process,
        log_files: &[PathBuf],
        mut ready: impl FnMut() -> Result<bool, LabError>,
    ) -> Result<(), LabError> {
        let kind = self.kind;
        let mut exited = None;
        let result = wait_for(
            &format!("{kind} in {} to be ready", self.host.netns),
            READY_TIMEOUT,
            || {
                if let Some(status) = process.exited() {
                    exited = Some(status);
                    return Ok(Some(false));
                }
                ready().map(|ok| ok.then_some(true))
            },
        );
        let log = self.log_tail(process, log_files);
        match (result, exited) {
            (Ok(true), _) => Ok(()),
            (Ok(false), Some(status)) | (Err(_), Some(status)) => Err(LabError::Daemon {
                daemon: format!("{kind} ({})", process.command()),
                reason: format!("exited during startup: {status}"),
                log,
            }),
            (Ok(false), None) => Err(LabError::Daemon {
                daemon: kind.into(),
                reason: "not ready".into(),
                log,
            }),
            (Err(e), None) => Err(LabError::Daemon {
                daemon: format!("{kind} ({})", process.command()),
                reason: e.to_string(),
                log,
            }),
        }
    }

    /// Process output plus the daemon's own log files, last 40 lines each.
    pub(crate) fn log_tail(&self, process: &Process, log_files: &[PathBuf]) -> String {
        let mut out = format!(
            "[{}]\n{}",
            process.log_path().display(),
            tail(&process.log(), 40)
        );
        for f in log_files {
            let text = std::fs::read(f)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            out.push_str(&format!("\n[{}]\n{}", f.display(), tail(&text, 40)));
        }
        out
    }
}

pub(crate) fn path_string(p: &Path) -> Result<String, LabError> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| LabError::Invalid(format!("non-UTF-8 path {}", p.display())))
}
