//! Lease-based leader election, so two controller replicas can run and only one writes, with
//! client-go's semantics:
//!
//! - a candidate judges a Lease held by another by the time **it** last saw the Lease change
//!   (not by the holder's `renewTime` against its own clock), and takes over only after a whole
//!   lease duration without a change;
//! - the leader's term ends when it could not renew within the renew deadline, whether or not its
//!   API calls come back: writers check the [`Term`] before each write and abandon a write still
//!   in flight when it ends;
//! - lease duration > renew deadline > retry period, so the old leader has stopped writing
//!   before a new one can start.
//!
//! The decision ([`decide`]) is pure; [`run`] is the thin loop around the Lease API. Updates use
//! the Lease's resourceVersion, so two candidates can never both win a round: the API server
//! refuses the second write with a conflict.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolb_kubernetes::client::{self, CallError};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// How the election is run.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Lease object name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This candidate's identity (the pod name).
    pub identity: String,
    /// How long others wait, after they last saw the Lease change, before taking it over.
    pub lease_duration: Duration,
    /// How long the leader keeps its term without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the holder renews and the others retry.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Refuses durations that would let two leaders overlap: lease duration > renew deadline >
    /// 1.2 × retry period (client-go's rule).
    pub fn check(&self) -> Result<(), String> {
        if self.lease_duration <= self.renew_deadline {
            return Err(format!(
                "the lease duration ({:?}) must be longer than the renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline <= self.retry_period.mul_f64(1.2) {
            return Err(format!(
                "the renew deadline ({:?}) must be longer than 1.2 × the retry period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }
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

/// The Lease as this candidate last saw it, and when (on its own clock) it last saw it change.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    spec: Option<LeaseSpec>,
    changed_at: Option<Instant>,
}

/// Decides what to do, given the Lease (if any) read at `now`, our identity and what we saw of
/// it before (updated here).
pub fn decide(
    lease: Option<&Lease>,
    identity: &str,
    observed: &mut Observed,
    now: Instant,
    default_duration: Duration,
) -> Decision {
    let Some(lease) = lease else {
        *observed = Observed::default();
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    if observed.spec.as_ref() != Some(&spec) || observed.changed_at.is_none() {
        observed.spec = Some(spec.clone());
        observed.changed_at = Some(now);
    }
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = (spec.lease_duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    let live = (observed.changed_at).is_some_and(|seen| now < seen + duration);
    if live {
        Decision::Follow { holder }
    } else {
        Decision::TakeOver
    }
}

/// Until when this replica may write: the leader's term. Cloned into every writer, which asks
/// it right before each write ([`Term::write`]); it ends on its own when the renew deadline
/// passes, even while the elector's own calls hang.
#[derive(Clone, Debug)]
pub struct Term(Arc<Mutex<Validity>>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Validity {
    /// Not leading.
    Ended,
    /// Leading until then.
    Until(Instant),
    /// No election: always allowed.
    Always,
}

impl Term {
    /// A replica without election: every write is allowed.
    pub fn always() -> Term {
        Term(Arc::new(Mutex::new(Validity::Always)))
    }

    /// A candidate not leading yet.
    pub fn ended() -> Term {
        Term(Arc::new(Mutex::new(Validity::Ended)))
    }

    fn validity(&self) -> Validity {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, v: Validity) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    /// Whether this replica may write now.
    pub fn holds(&self) -> bool {
        match self.validity() {
            Validity::Ended => false,
            Validity::Until(t) => Instant::now() < t,
            Validity::Always => true,
        }
    }

    /// Runs one write while the term lasts: `None` when it has ended, or ended before the write
    /// came back (the write is abandoned then).
    pub async fn write<T>(
        &self,
        write: impl Future<Output = Result<T, CallError>>,
    ) -> Option<Result<T, CallError>> {
        match self.validity() {
            Validity::Ended => None,
            Validity::Always => Some(write.await),
            Validity::Until(t) if Instant::now() < t => {
                tokio::time::timeout_at(t, write).await.ok()
            }
            Validity::Until(_) => None,
        }
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

/// One round: read the Lease, act on it, and return whether we hold it afterwards. Each call
/// is under the request deadline; the caller bounds the whole round.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    observed: &mut Observed,
) -> Result<bool, CallError> {
    let current = client::call(api.get_opt(&settings.name)).await?;
    let decision = decide(
        current.as_ref(),
        &settings.identity,
        observed,
        Instant::now(),
        settings.lease_duration,
    );
    let now = Timestamp::now();
    match decision {
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
            match client::call(api.create(&PostParams::default(), &lease)).await {
                Ok(_) => Ok(true),
                Err(e) if e.is_conflict() => Ok(false),
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
            let params = PostParams::default();
            match client::call(api.replace(&settings.name, &params, &lease)).await {
                Ok(_) => Ok(true),
                Err(e) if e.is_conflict() => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Gives the lease up (on shutdown), so another replica takes over at once instead of waiting for expiry.
pub async fn release(api: &Api<Lease>, settings: &LeaseSettings) -> Result<(), CallError> {
    let Some(mut lease) = client::call(api.get_opt(&settings.name)).await? else {
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
    client::call(api.replace(&settings.name, &PostParams::default(), &lease))
        .await
        .map(|_| ())
}

/// Runs the election until `shutdown` fires, publishing leadership on `leader` and its term on
/// `term`. A round that does not finish within the renew deadline counts as failed; a leader
/// that has not renewed within the renew deadline steps down (its term has already ended for
/// the writers). On shutdown a leader releases the lease.
pub async fn run(
    api: Api<Lease>,
    settings: LeaseSettings,
    leader: watch::Sender<bool>,
    term: Term,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut observed = Observed::default();
    let mut term_ends: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let round = tokio::time::timeout(
            settings.renew_deadline,
            try_acquire_or_renew(&api, &settings, &mut observed),
        );
        let result = match round.await {
            Ok(r) => r,
            Err(_) => Err(CallError::Deadline(settings.renew_deadline)),
        };
        match result {
            Ok(true) => {
                let ends = started + settings.renew_deadline;
                term_ends = Some(ends);
                term.set(Validity::Until(ends));
                if !*leader.borrow() {
                    tracing::info!(identity = %settings.identity, lease = %settings.name, "became leader");
                }
                leader.send_replace(true);
            }
            Ok(false) => {
                if *leader.borrow() {
                    tracing::warn!(identity = %settings.identity, "lost the lease to another replica");
                }
                term_ends = None;
                term.set(Validity::Ended);
                leader.send_replace(false);
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease round failed");
                if term_ends.is_some_and(|t| Instant::now() >= t) {
                    tracing::warn!(
                        "could not renew the lease within the renew deadline: stepping down"
                    );
                    term_ends = None;
                    term.set(Validity::Ended);
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
        term.set(Validity::Ended);
        leader.send_replace(false);
        if let Err(e) = release(&api, &settings).await {
            tracing::warn!(error = %e, "could not release the lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: &str, duration: i32) -> Lease {
        Lease {
            metadata: Default::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                ..Default::default()
            }),
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn decisions() {
        let now = Instant::now();
        let mut o = Observed::default();
        assert_eq!(decide(None, "a", &mut o, now, D), Decision::Create);
        let mine = lease(Some("a"), "2026-01-01T00:00:00Z", 15);
        assert_eq!(decide(Some(&mine), "a", &mut o, now, D), Decision::Renew);
        let free = lease(None, "2026-01-01T00:00:00Z", 15);
        assert_eq!(decide(Some(&free), "a", &mut o, now, D), Decision::TakeOver);
    }

    #[test]
    fn expiry_is_judged_by_when_we_saw_the_lease_change_not_by_its_renew_time() {
        let t0 = Instant::now();
        let mut o = Observed::default();
        // A renewTime far in the past (the holder's clock is behind ours, or we just started):
        // still a whole lease duration from our first sight of it.
        let b1 = lease(Some("b"), "2000-01-01T00:00:00Z", 15);
        let follow = Decision::Follow { holder: "b".into() };
        assert_eq!(decide(Some(&b1), "a", &mut o, t0, D), follow);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(decide(Some(&b1), "a", &mut o, at(14), D), follow);
        // b renews: the clock starts again from when we see the change.
        let b2 = lease(Some("b"), "2000-01-01T00:00:10Z", 15);
        assert_eq!(decide(Some(&b2), "a", &mut o, at(14), D), follow);
        assert_eq!(decide(Some(&b2), "a", &mut o, at(28), D), follow);
        assert_eq!(
            decide(Some(&b2), "a", &mut o, at(29), D),
            Decision::TakeOver,
            "15 s without a change"
        );
        // A renewTime in the future (holder's clock ahead) does not extend it either.
        let mut o = Observed::default();
        let ahead = lease(Some("b"), "2100-01-01T00:00:00Z", 15);
        assert_eq!(decide(Some(&ahead), "a", &mut o, t0, D), follow);
        assert_eq!(
            decide(Some(&ahead), "a", &mut o, at(15), D),
            Decision::TakeOver
        );
        // The Lease's own duration counts.
        let mut o = Observed::default();
        let short = lease(Some("b"), "2026-01-01T00:00:00Z", 3);
        assert_eq!(decide(Some(&short), "a", &mut o, t0, D), follow);
        assert_eq!(
            decide(Some(&short), "a", &mut o, at(3), D),
            Decision::TakeOver
        );
    }

    #[test]
    fn durations_that_could_overlap_two_leaders_are_refused() {
        let s = |lease: u64, renew: u64, retry: u64| LeaseSettings {
            name: "l".into(),
            namespace: "n".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(retry),
        };
        assert!(s(15, 10, 2).check().is_ok());
        assert!(s(10, 10, 2).check().unwrap_err().contains("renew deadline"));
        assert!(s(15, 10, 9).check().unwrap_err().contains("retry period"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_term_ends_on_its_own_and_cuts_a_write_in_flight() {
        let term = Term::ended();
        assert!(!term.holds());
        assert!(term.write(async { Ok(()) }).await.is_none(), "not leading");
        term.set(Validity::Until(Instant::now() + Duration::from_secs(10)));
        assert!(term.holds());
        assert!(matches!(term.write(async { Ok(1) }).await, Some(Ok(1))));
        // A write that hangs is abandoned when the term ends, not when it comes back.
        let started = Instant::now();
        let hung = term.write(std::future::pending::<Result<(), CallError>>());
        assert!(hung.await.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(!term.holds(), "ended by the clock alone");
        assert!(Term::always().holds());
    }
}
