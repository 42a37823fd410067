//! When a RayCronJob runs: its cron expression read in its time zone (or
//! the operator's), and which tick, if any, is due now. Pure, so time zones
//! and daylight-saving days are unit-tested without a cluster.
//!
//! Unlike KubeRay, missed ticks (an operator outage, a suspension) are not
//! made up one by one: only the latest of them runs, as Kubernetes
//! CronJobs do.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed schedule.
pub struct Schedule {
    cron: croner::Cron,
    zone: TimeZone,
}

/// What a reconcile at `now` should do.
#[derive(Debug, PartialEq, Eq)]
pub struct Due {
    /// The tick to run now: the latest one after the previous run and not
    /// after `now`.
    pub run: Option<Timestamp>,
    /// Earlier ticks since the previous run that are skipped for it, up to
    /// [`MISSED_COUNTED`].
    pub skipped: usize,
    /// The first tick after `now`, when to look again; `None` when the
    /// expression never matches again (such as `0 0 30 2 *`).
    pub next: Option<Timestamp>,
}

/// How many skipped ticks are counted at most (they are only reported).
pub const MISSED_COUNTED: usize = 100;

impl Schedule {
    /// `expression` read in the IANA zone `zone`, or in `local` when unset.
    pub fn new(expression: &str, zone: Option<&str>, local: &TimeZone) -> Result<Self, String> {
        let cron = kuberay_api::validation::parse_schedule(expression)?;
        let zone = match zone {
            Some(name) => TimeZone::get(name).map_err(|e| format!("time zone {name:?}: {e}"))?,
            None => local.clone(),
        };
        Ok(Self { cron, zone })
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&t.to_zoned(self.zone.clone()), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The latest tick at or before `t`.
    fn latest_until(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&t.to_zoned(self.zone.clone()), true)
            .ok()
            .map(|z| z.timestamp())
    }

    /// Which tick is due at `now` when the previous run was for `since`
    /// (or the object was created then).
    pub fn due(&self, since: Timestamp, now: Timestamp) -> Due {
        let run = self.latest_until(now).filter(|t| *t > since);
        let skipped = match run {
            Some(run) => {
                let mut count = 0;
                let mut t = since;
                while count < MISSED_COUNTED {
                    match self.next_after(t) {
                        Some(tick) if tick < run => {
                            count += 1;
                            t = tick;
                        }
                        _ => break,
                    }
                }
                count
            }
            None => 0,
        };
        Due {
            run,
            skipped,
            next: self.next_after(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc(expr: &str) -> Schedule {
        Schedule::new(expr, None, &TimeZone::UTC).unwrap()
    }

    /// Every tick in `(from, to]`.
    fn ticks(s: &Schedule, from: &str, to: &str) -> Vec<String> {
        let (mut t, end) = (ts(from), ts(to));
        let mut out = Vec::new();
        while let Some(next) = s.next_after(t).filter(|n| *n <= end) {
            out.push(next.to_string());
            t = next;
        }
        out
    }

    #[test]
    fn nothing_is_due_before_the_first_tick() {
        let s = utc("*/5 * * * *");
        let due = s.due(ts("2026-05-01T10:01:00Z"), ts("2026-05-01T10:04:59Z"));
        assert_eq!(due.run, None);
        assert_eq!(due.next, Some(ts("2026-05-01T10:05:00Z")));
    }

    #[test]
    fn a_tick_is_due_once_and_then_the_next_is_awaited() {
        let s = utc("*/5 * * * *");
        let due = s.due(ts("2026-05-01T10:01:00Z"), ts("2026-05-01T10:05:00Z"));
        assert_eq!(due.run, Some(ts("2026-05-01T10:05:00Z")));
        assert_eq!(due.skipped, 0);
        assert_eq!(due.next, Some(ts("2026-05-01T10:10:00Z")));
        // Once run, the same tick is not due again.
        let again = s.due(ts("2026-05-01T10:05:00Z"), ts("2026-05-01T10:07:00Z"));
        assert_eq!(again.run, None);
    }

    #[test]
    fn missed_ticks_give_one_run_for_the_latest() {
        let s = utc("* * * * *");
        let due = s.due(ts("2026-05-01T10:00:00Z"), ts("2026-05-01T10:10:30Z"));
        assert_eq!(due.run, Some(ts("2026-05-01T10:10:00Z")));
        assert_eq!(due.skipped, 9);
        assert_eq!(due.next, Some(ts("2026-05-01T10:11:00Z")));
        let long = s.due(ts("2026-05-01T00:00:00Z"), ts("2026-05-02T00:00:00Z"));
        assert_eq!(long.run, Some(ts("2026-05-02T00:00:00Z")));
        assert_eq!(long.skipped, MISSED_COUNTED);
    }

    #[test]
    fn the_time_zone_moves_the_ticks() {
        let tokyo = Schedule::new("0 9 * * *", Some("Asia/Tokyo"), &TimeZone::UTC).unwrap();
        assert_eq!(
            tokyo.next_after(ts("2026-05-01T00:30:00Z")),
            Some(ts("2026-05-02T00:00:00Z"))
        );
        // Without timeZone, the operator's own zone applies.
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let local = Schedule::new("0 9 * * *", None, &paris).unwrap();
        assert_eq!(
            local.next_after(ts("2026-05-01T00:30:00Z")),
            Some(ts("2026-05-01T07:00:00Z"))
        );
        assert!(Schedule::new("0 9 * * *", Some("Mars/Olympus"), &TimeZone::UTC).is_err());
    }

    #[test]
    fn a_daily_run_in_the_spring_forward_gap_runs_once_after_it() {
        // New York skips 02:00-03:00 on 2026-03-08.
        let s = Schedule::new("30 2 * * *", Some("America/New_York"), &TimeZone::UTC).unwrap();
        assert_eq!(
            ticks(&s, "2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z"),
            [
                "2026-03-07T07:30:00Z", // 02:30 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT, the first instant after the gap
                "2026-03-09T06:30:00Z", // 02:30 EDT
            ]
        );
    }

    #[test]
    fn a_daily_run_in_the_fall_back_hour_runs_once() {
        // New York repeats 01:00-02:00 on 2026-11-01; a daily job runs at the
        // first 01:30 only (KubeRay's cron library runs it at both).
        let s = Schedule::new("30 1 * * *", Some("America/New_York"), &TimeZone::UTC).unwrap();
        assert_eq!(
            ticks(&s, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z"),
            [
                "2026-11-01T05:30:00Z", // 01:30 EDT
                "2026-11-02T06:30:00Z", // 01:30 EST
            ]
        );
    }

    #[test]
    fn an_hourly_run_keeps_its_pace_across_both_changes() {
        let s = Schedule::new("0 * * * *", Some("Europe/Berlin"), &TimeZone::UTC).unwrap();
        // Spring forward (2026-03-29, 02:00 CET -> 03:00 CEST): no 02:00,
        // still one run per real hour.
        assert_eq!(
            ticks(&s, "2026-03-28T23:30:00Z", "2026-03-29T02:30:00Z"),
            [
                "2026-03-29T00:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z"
            ]
        );
        // Fall back (2026-10-25, 03:00 CEST -> 02:00 CET): 02:00 happens
        // twice and runs twice, one real hour apart.
        assert_eq!(
            ticks(&s, "2026-10-24T23:30:00Z", "2026-10-25T02:30:00Z"),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T02:00:00Z"
            ]
        );
    }

    #[test]
    fn macros_and_bad_expressions() {
        let s = utc("@hourly");
        assert_eq!(
            s.next_after(ts("2026-05-01T10:00:00Z")),
            Some(ts("2026-05-01T11:00:00Z"))
        );
        assert!(Schedule::new("61 * * * *", None, &TimeZone::UTC).is_err());
        let never = utc("0 0 30 2 *");
        assert_eq!(
            never
                .due(ts("2026-01-01T00:00:00Z"), ts("2026-06-01T00:00:00Z"))
                .run,
            None
        );
    }
}
