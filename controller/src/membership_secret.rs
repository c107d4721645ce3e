//! The speakers' membership key, created once by the controller when it does not exist yet.
//!
//! The plain manifest is a public file and cannot carry a per-cluster secret; Helm's `lookup`
//! is not available to `kubectl apply`. So the controller creates the Secret the speakers mount,
//! with a random key, and never changes an existing one: a user's or Helm's key wins, and every
//! controller replica may try at start (the API server's AlreadyExists decides the race).

use ferrolb_kubernetes::client::{self, CallError};
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// The key inside the Secret; the speaker DaemonSet mounts it as a file of this name.
pub const SECRET_KEY: &str = "secretkey";
/// Length of a generated key, in alphanumeric characters (about 380 bits).
pub const KEY_LENGTH: usize = 64;

/// What [`ensure`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This call created the Secret with a new random key.
    Created,
    /// A Secret of that name already existed; it was left as it is.
    AlreadyExists,
}

/// Why the Secret could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No randomness from the operating system: refusing to create a guessable key.
    #[error("cannot get random bytes for the membership key from the operating system: {0}")]
    Random(String),
    /// The API server refused or failed the create.
    #[error("cannot create the membership Secret {namespace}/{name}: {source}")]
    Create {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// The API error.
        #[source]
        source: CallError,
    },
}

/// A random key of [`KEY_LENGTH`] characters from `[A-Za-z0-9]`, from the operating system's
/// random source (getrandom).
pub fn random_key() -> Result<String, Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Bytes at or above the largest multiple of 62 are dropped, so every character is equally
    // likely; 4 rounds of 128 bytes leave a chance of running short below 10^-100.
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut key = String::with_capacity(KEY_LENGTH);
    for _ in 0..4 {
        let mut buf = [0u8; 128];
        getrandom::fill(&mut buf).map_err(|e| Error::Random(e.to_string()))?;
        for b in buf.into_iter().filter(|b| *b < limit) {
            key.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            if key.len() == KEY_LENGTH {
                return Ok(key);
            }
        }
    }
    Err(Error::Random("too few usable random bytes".into()))
}

/// The Secret object created when none exists.
pub fn secret(namespace: &str, name: &str, key: String) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_owned(), "ferrolb".to_owned()),
                (
                    "app.kubernetes.io/component".to_owned(),
                    "speaker".to_owned(),
                ),
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "ferrolb-controller".to_owned(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([(SECRET_KEY.to_owned(), key)])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// Creates the Secret `namespace/name` with a random key unless it exists. One API call.
pub async fn ensure(client: kube::Client, namespace: &str, name: &str) -> Result<Outcome, Error> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let obj = secret(namespace, name, random_key()?);
    match client::call(api.create(&PostParams::default(), &obj)).await {
        Ok(_) => Ok(Outcome::Created),
        Err(e) if e.is_conflict() => Ok(Outcome::AlreadyExists),
        Err(source) => Err(Error::Create {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        }),
    }
}

/// [`ensure`], retried with backoff (1 s doubling to 60 s) until it succeeds or shutdown.
/// Logs the outcome; speakers wait (their pods stay ContainerCreating) until the Secret exists.
pub async fn run(
    client: kube::Client,
    namespace: String,
    name: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_secs(1);
    loop {
        match ensure(client.clone(), &namespace, &name).await {
            Ok(Outcome::Created) => {
                tracing::info!(%namespace, %name, "created the speakers' membership Secret with a random key");
                return;
            }
            Ok(Outcome::AlreadyExists) => {
                tracing::debug!(%namespace, %name, "the speakers' membership Secret exists; left unchanged");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot ensure the speakers' membership Secret");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_are_alphanumeric_of_the_full_length_and_differ() {
        let a = random_key().unwrap();
        let b = random_key().unwrap();
        assert_eq!(a.len(), KEY_LENGTH);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_secret_carries_the_key_under_the_name_the_speaker_mounts() {
        let s = secret("ns", "ferrolb-memberlist", "k".into());
        assert_eq!(s.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(s.metadata.name.as_deref(), Some("ferrolb-memberlist"));
        assert_eq!(
            s.string_data.unwrap().get(SECRET_KEY).map(String::as_str),
            Some("k")
        );
    }
}
