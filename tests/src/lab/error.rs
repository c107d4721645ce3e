//! The lab's error type: every variant says which command or step failed and why.

use std::time::Duration;

/// Everything that can go wrong while building a lab, driving a daemon or probing.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command could not be started at all (missing binary, bad path...).
    #[error("could not start `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// A command ran and exited unsuccessfully.
    #[error("`{cmd}` failed ({status}): {stderr}{}", if stdout.is_empty() { String::new() } else { format!(" [stdout: {stdout}]") })]
    Command {
        cmd: String,
        status: String,
        stdout: String,
        stderr: String,
    },
    /// A command did not finish in time (it was killed).
    #[error("`{cmd}` did not finish within {timeout:?} (killed)")]
    CommandTimeout { cmd: String, timeout: Duration },
    /// A bounded wait gave up.
    #[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
    Timeout {
        what: String,
        timeout: Duration,
        last: String,
    },
    /// A command's output did not look as expected.
    #[error("could not parse the output of `{cmd}`: {reason}")]
    Parse { cmd: String, reason: String },
    /// A file-system or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A daemon failed to start or died; `log` is the tail of its log.
    #[error("{daemon}: {reason}\n--- log tail ---\n{log}")]
    Daemon {
        daemon: String,
        reason: String,
        log: String,
    },
    /// The requested topology or configuration is invalid.
    #[error("invalid lab request: {0}")]
    Invalid(String),
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn parse(cmd: impl Into<String>, reason: impl Into<String>) -> Self {
        LabError::Parse {
            cmd: cmd.into(),
            reason: reason.into(),
        }
    }
}
