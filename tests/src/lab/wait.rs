//! Bounded polling.

use std::fmt::Display;
use std::thread;
use std::time::{Duration, Instant};

use super::error::LabError;

/// How often the wait helpers poll.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls `probe` until it returns `Ok(Some(value))`, at most for `timeout`.
///
/// `Ok(None)` and `Err(_)` both mean "not yet" (a daemon's socket may not exist yet); the last
/// error is reported in the [`LabError::Timeout`] if the wait gives up.
pub fn wait_for<T, E: Display>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>, E>,
) -> Result<T, LabError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing yet");
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: what.to_string(),
                timeout,
                last,
            });
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Polls `cond` until it is true, at most for `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), LabError> {
    wait_for(what, timeout, || Ok::<_, LabError>(cond().then_some(())))
}
