//! Lease-based leader election, so two controller replicas can run and only one writes.
//!
//! The decision ([`decide`]) is pure; [`run`] is the thin loop around the Lease API. Updates use
//! the Lease's resourceVersion, so two candidates can never both win a round: the API server
//! refuses the second write with a conflict.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// How the election is run.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Lease object name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This candidate's identity (the pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews and the others retry.
    pub retry_period: Duration,
}

/// What a candidate should do with the Lease it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create one naming us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// It is free or expired: take it over.
    TakeOver,
    /// Someone else holds a live lease.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// Decides what to do, given the Lease (if any), our identity and the time.
pub fn decide(
    lease: Option<&Lease>,
    identity: &str,
    now: Timestamp,
    default_duration: Duration,
) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = spec
        .and_then(|s| s.lease_duration_seconds)
        .map(|s| SignedDuration::from_secs(s.into()))
        .unwrap_or_else(|| {
            SignedDuration::try_from(default_duration).unwrap_or(SignedDuration::from_secs(15))
        });
    let renewed = spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0);
    match renewed {
        Some(t) if t.checked_add(duration).is_ok_and(|expiry| expiry > now) => {
            Decision::Follow { holder }
        }
        _ => Decision::TakeOver,
    }
}

fn lease_spec(
    settings: &LeaseSettings,
    previous: Option<&LeaseSpec>,
    now: Timestamp,
    taking_over: bool,
) -> LeaseSpec {
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(settings.lease_duration.as_secs()).unwrap_or(15),
        ),
        acquire_time: if taking_over || previous.is_none() {
            Some(MicroTime(now))
        } else {
            previous.and_then(|p| p.acquire_time.clone())
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if taking_over {
            transitions + 1
        } else {
            transitions
        }),
        ..Default::default()
    }
}

/// One round: read the Lease, act on it, and return whether we hold it afterwards.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    settings: &LeaseSettings,
) -> Result<bool, kube::Error> {
    let current = api.get_opt(&settings.name).await?;
    let now = Timestamp::now();
    match decide(
        current.as_ref(),
        &settings.identity,
        now,
        settings.lease_duration,
    ) {
        Decision::Follow { .. } => Ok(false),
        Decision::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    namespace: Some(settings.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(lease_spec(settings, None, now, false)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        decision @ (Decision::Renew | Decision::TakeOver) => {
            let Some(mut lease) = current else {
                return Ok(false);
            };
            lease.spec = Some(lease_spec(
                settings,
                lease.spec.as_ref(),
                now,
                decision == Decision::TakeOver,
            ));
            // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
            match api
                .replace(&settings.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Gives the lease up (on shutdown), so another replica takes over at once instead of waiting for expiry.
pub async fn release(api: &Api<Lease>, settings: &LeaseSettings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        return Ok(());
    };
    let holds = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        == Some(settings.identity.as_str());
    if !holds {
        return Ok(());
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = None;
    }
    api.replace(&settings.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

/// Runs the election until `shutdown` fires, publishing leadership on `leader`. A leader that
/// cannot renew for a whole lease duration steps down. On shutdown a leader releases the lease.
pub async fn run(
    api: Api<Lease>,
    settings: LeaseSettings,
    leader: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_renewal: Option<tokio::time::Instant> = None;
    loop {
        match try_acquire_or_renew(&api, &settings).await {
            Ok(true) => {
                last_renewal = Some(tokio::time::Instant::now());
                if !*leader.borrow() {
                    tracing::info!(identity = %settings.identity, lease = %settings.name, "became leader");
                }
                leader.send_replace(true);
            }
            Ok(false) => {
                if *leader.borrow() {
                    tracing::warn!(identity = %settings.identity, "lost the lease to another replica");
                }
                last_renewal = None;
                leader.send_replace(false);
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease round failed");
                if last_renewal.is_some_and(|t| t.elapsed() >= settings.lease_duration) {
                    tracing::warn!("could not renew the lease in time: stepping down");
                    last_renewal = None;
                    leader.send_replace(false);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.retry_period) => {}
            _ = shutdown.changed() => break,
        }
    }
    if *leader.borrow() {
        leader.send_replace(false);
        if let Err(e) = release(&api, &settings).await {
            tracing::warn!(error = %e, "could not release the lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, duration: i32) -> Lease {
        Lease {
            metadata: Default::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(
                    Timestamp::now() - SignedDuration::from_secs(renewed_secs_ago),
                )),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::now();
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", now, d), Decision::Create);
        assert_eq!(
            decide(Some(&lease(Some("a"), 1, 15)), "a", now, d),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), 1, 15)), "a", now, d),
            Decision::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&lease(Some("b"), 16, 15)), "a", now, d),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease(None, 1, 15)), "a", now, d),
            Decision::TakeOver
        );
    }
}
