//! Where controllers that act at a time of day (RayCronJob) read the time:
//! the system clock in production, a clock a test sets in tests, so no test
//! waits for the next minute.

use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use jiff::{SignedDuration, Timestamp};

/// How long ago `since` was at `now`; zero when there is no such time (a
/// missing timestamp ages nothing).
pub fn age(
    since: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    now: Timestamp,
) -> Duration {
    since
        .map(|t| now.duration_since(t.0).unsigned_abs())
        .unwrap_or_default()
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;

    /// Yields each time the clock jumps (only a test clock does), so that a
    /// controller waiting for a time re-checks at once.
    fn jumps(&self) -> BoxStream<'static, ()>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn jumps(&self) -> BoxStream<'static, ()> {
        futures::stream::pending().boxed()
    }
}

/// A clock that stands still until it is set or advanced.
pub struct TestClock {
    now: Mutex<Timestamp>,
    jumped: tokio::sync::broadcast::Sender<()>,
}

impl TestClock {
    pub fn new(at: Timestamp) -> Self {
        Self {
            now: Mutex::new(at),
            jumped: tokio::sync::broadcast::channel(16).0,
        }
    }

    pub fn set(&self, at: Timestamp) {
        *self.now.lock().unwrap() = at;
        let _ = self.jumped.send(());
    }

    pub fn advance(&self, by: SignedDuration) {
        let at = *self.now.lock().unwrap() + by;
        self.set(at);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap()
    }

    fn jumps(&self) -> BoxStream<'static, ()> {
        let rx = self.jumped.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            // A lagging receiver missed jumps, which still means "re-check".
            match rx.recv().await {
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
                _ => Some(((), rx)),
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_test_clock_moves_only_when_told_and_says_so() {
        let start: Timestamp = "2026-03-08T06:59:30Z".parse().unwrap();
        let clock = TestClock::new(start);
        let mut jumps = clock.jumps();
        assert_eq!(clock.now(), start);
        clock.advance(SignedDuration::from_secs(60));
        assert_eq!(clock.now(), start + SignedDuration::from_secs(60));
        assert_eq!(jumps.next().await, Some(()));
    }
}
