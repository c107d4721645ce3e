//! One way to keep a `metav1.Condition` in an object's status, used for every condition ferrolb
//! writes (`ferrolb.io/IPAllocated` and `ferrolb.io/Announced` on Services, `Valid` on config
//! objects): the other conditions are kept, and `lastTransitionTime` moves only when the status
//! does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// What a condition should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// The condition type.
    pub type_: &'a str,
    /// True or False.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'a str,
    /// Human-readable message.
    pub message: &'a str,
    /// The object's `metadata.generation` this was decided from.
    pub observed_generation: Option<i64>,
}

fn status_text(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// Whether `conditions` already say what `wanted` says.
pub fn says(conditions: &[Condition], wanted: &Wanted<'_>) -> bool {
    conditions.iter().any(|c| {
        c.type_ == wanted.type_
            && c.status == status_text(wanted.status)
            && c.reason == wanted.reason
            && c.message == wanted.message
            && c.observed_generation == wanted.observed_generation
    })
}

/// Sets `wanted` in `conditions`, keeping the other types; `lastTransitionTime` is kept while the
/// status stays and is `now` when it changes. Returns whether anything changed.
pub fn set(conditions: &mut Vec<Condition>, wanted: &Wanted<'_>, now: Timestamp) -> bool {
    if says(conditions, wanted) {
        return false;
    }
    let status = status_text(wanted.status);
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == wanted.type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    conditions.retain(|c| c.type_ != wanted.type_);
    conditions.push(Condition {
        type_: wanted.type_.into(),
        status: status.into(),
        reason: wanted.reason.into(),
        message: wanted.message.into(),
        observed_generation: wanted.observed_generation,
        last_transition_time,
    });
    true
}

/// Removes the condition of type `type_`. Returns whether there was one.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(status: bool, message: &str) -> Wanted<'_> {
        Wanted {
            type_: "Valid",
            status,
            reason: "Checked",
            message,
            observed_generation: Some(2),
        }
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let t2: Timestamp = "2026-01-01T00:02:00Z".parse().unwrap();
        let mut c = vec![Condition {
            type_: "Other".into(),
            status: "True".into(),
            reason: "R".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(t0),
        }];
        assert!(set(&mut c, &wanted(true, "a"), t0));
        assert!(!set(&mut c, &wanted(true, "a"), t1), "already says so");
        assert!(set(&mut c, &wanted(true, "b"), t1), "new message");
        let valid = |c: &[Condition]| c.iter().find(|c| c.type_ == "Valid").cloned().unwrap();
        assert_eq!(valid(&c).last_transition_time, Time(t0), "same status");
        assert!(set(&mut c, &wanted(false, "b"), t2));
        assert_eq!(valid(&c).last_transition_time, Time(t2));
        assert_eq!(c.len(), 2, "the other condition is kept");
        assert!(remove(&mut c, "Valid") && !remove(&mut c, "Valid"));
        assert_eq!(c.len(), 1);
    }
}
