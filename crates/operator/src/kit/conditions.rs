//! Status conditions with `meta.SetStatusCondition` semantics: the
//! transition time moves only when the status flips, so rewriting the same
//! condition is a no-op and produces no status write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets (or adds) the condition of type `type_`.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.status = status.into();
                c.last_transition_time = now.clone();
            }
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

pub fn is_true(conditions: Option<&Vec<Condition>>, type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

pub fn find<'a>(conditions: Option<&'a Vec<Condition>>, type_: &str) -> Option<&'a Condition> {
    conditions?.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut cs = Vec::new();
        set(
            &mut cs,
            "Ready",
            false,
            "Starting",
            "",
            Some(1),
            &t("2026-01-01T00:00:00Z"),
        );
        set(
            &mut cs,
            "Ready",
            false,
            "StillStarting",
            "m",
            Some(1),
            &t("2026-01-01T00:01:00Z"),
        );
        assert_eq!(cs[0].last_transition_time, t("2026-01-01T00:00:00Z"));
        assert_eq!(cs[0].reason, "StillStarting");
        set(
            &mut cs,
            "Ready",
            true,
            "Up",
            "",
            Some(1),
            &t("2026-01-01T00:02:00Z"),
        );
        assert_eq!(cs[0].last_transition_time, t("2026-01-01T00:02:00Z"));
        assert!(is_true(Some(&cs), "Ready"));
        remove(&mut cs, "Ready");
        assert!(cs.is_empty());
    }
}
