//! Running commands with bounded waits, and spawned processes that are stopped on drop.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::error::LabError;
use super::sys;

/// Default bound for one command run by the lab.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Renders an argv for error messages.
pub fn display(argv: &[&str]) -> String {
    argv.join(" ")
}

/// Runs `argv` (stdin closed), capturing stdout and stderr, killing it after `timeout`.
/// A non-zero exit is not an error here: look at `Output::status`.
pub fn run(argv: &[&str], timeout: Duration) -> Result<Output, LabError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(LabError::Invalid("empty command".into()));
    };
    let shown = display(argv);
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| LabError::Spawn {
        cmd: shown.clone(),
        source,
    })?;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::CommandTimeout {
                    cmd: shown,
                    timeout,
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(source) => return Err(LabError::io(format!("waiting for `{shown}`"), source)),
        }
    };
    // A daemonized grandchild could keep a pipe open: do not wait for it forever.
    let grace = Duration::from_secs(2);
    let stdout = stdout.recv_timeout(grace).unwrap_or_default();
    let stderr = stderr.recv_timeout(grace).unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs `argv` and returns its stdout, or a [`LabError::Command`] with its stderr if it failed.
pub fn run_ok(argv: &[&str], timeout: Duration) -> Result<String, LabError> {
    let output = run(argv, timeout)?;
    check(argv, output)
}

/// Turns a finished command's output into its stdout, or an error naming the command.
pub fn check(argv: &[&str], output: Output) -> Result<String, LabError> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(LabError::Command {
            cmd: display(argv),
            status: status_text(output.status),
            stdout: stdout.trim().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

pub(crate) fn status_text(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => format!("{status}"),
    }
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

/// A process spawned by the lab. Stopped (SIGTERM, then SIGKILL) and reaped on drop.
/// Its stdout and stderr go to a log file, see [`Process::log`].
#[derive(Debug)]
pub struct Process {
    child: Child,
    cmd: String,
    log: PathBuf,
    stopped: bool,
}

impl Process {
    /// Spawns `argv` with stdout and stderr appended to `log`.
    pub fn spawn(argv: &[&str], log: &Path) -> Result<Process, LabError> {
        Process::spawn_with_env(argv, &[], log)
    }

    /// [`Process::spawn`] with extra environment variables.
    pub fn spawn_with_env(
        argv: &[&str],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Process, LabError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(LabError::Invalid("empty command".into()));
        };
        let cmd = display(argv);
        let out = File::create(log)
            .map_err(|e| LabError::io(format!("creating log {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io(format!("duplicating log {}", log.display()), e))?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| LabError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        Ok(Process {
            child,
            cmd,
            log: log.to_path_buf(),
            stopped: false,
        })
    }

    /// The process id (with `ip netns exec`, the tool itself: it execs in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line, for messages.
    pub fn command(&self) -> &str {
        &self.cmd
    }

    /// Path of the file receiving stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process's output so far (empty if unreadable).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `Some(status)` once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// True while it runs.
    pub fn is_running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; always reaps. Idempotent.
    pub fn stop_within(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if self.exited().is_some() {
            return;
        }
        sys::signal(self.child.id(), sys::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// [`Process::stop_within`] with a 3 s grace period.
    pub fn stop(&mut self) {
        self.stop_within(Duration::from_secs(3));
    }

    /// Sends `signal` (e.g. [`Signal::Stop`] to freeze it, [`Signal::Continue`] to resume it).
    /// False if the process is gone.
    pub fn signal(&self, signal: Signal) -> bool {
        sys::signal(self.child.id(), signal as i32)
    }

    /// SIGKILL at once (to simulate a crash), and reap.
    pub fn kill(&mut self) {
        self.stopped = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Signals a test sends to its processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Signal {
    /// SIGTERM: ask to stop (what the kubelet sends first).
    Term = 15,
    /// SIGKILL.
    Kill = 9,
    /// SIGSTOP: freeze (a stalled process: it keeps its sockets but does nothing).
    Stop = 19,
    /// SIGCONT: resume a frozen process.
    Continue = 18,
}

/// Last `lines` lines of a text, for error messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}
