//! The API client, and the deadline every request (not watch) is made under: a call the API
//! server does not answer in time fails like any other, so no loop waits forever on a half-open
//! connection. Watches are bounded by kube-runtime's idle timeout instead.

use std::future::Future;
use std::time::Duration;

/// How long one API request may take, from sending to the whole answer.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The API server answered with an error, or the connection failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// No answer within the deadline; the request was abandoned.
    #[error("the API server did not answer within {0:?}")]
    Deadline(Duration),
}

impl CallError {
    /// The HTTP status of an error the API server answered with.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Api(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        }
    }

    /// Whether the API server refused the write for a stale resourceVersion.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}

/// Runs one API call under `deadline`.
pub async fn within<T>(
    deadline: Duration,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result.map_err(CallError::Api),
        Err(_) => Err(CallError::Deadline(deadline)),
    }
}

/// Runs one API call under [`REQUEST_DEADLINE`].
pub async fn call<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, CallError> {
    within(REQUEST_DEADLINE, call).await
}

/// A client from the environment (kubeconfig, else the in-cluster configuration), itself found
/// under [`REQUEST_DEADLINE`].
pub async fn connect() -> Result<kube::Client, CallError> {
    call(kube::Client::try_default()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_fails_at_its_deadline() {
        let never = std::future::pending::<Result<(), kube::Error>>();
        let started = tokio::time::Instant::now();
        let e = within(Duration::from_secs(3), never).await.unwrap_err();
        assert!(matches!(e, CallError::Deadline(d) if d == Duration::from_secs(3)));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(!e.is_conflict() && e.status().is_none());
    }
}
