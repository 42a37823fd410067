//! Pacing of bulk work. An object that needs more writes than one
//! reconcile should make (thousands of pods) is *paced*: it gets at most one
//! batch per interval, however often its watch events bring it back, and
//! all paced objects together draw their batches from one shared budget of
//! writes per second. Objects with ordinary needs are never paced, so
//! however many huge objects there are, the rest of the client's rate limit
//! stays theirs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Namespace and name.
type Key = (String, String);

#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    /// Writes per second shared by every paced object.
    rate: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last_batch: HashMap<Key, Instant>,
    /// Writes paced objects may still make; refilled at `rate`, at most one
    /// second's worth, and overdrawn when concurrent batches race.
    tokens: f64,
    refilled: Instant,
}

impl Pacer {
    pub fn new(interval: Duration, rate: f64) -> Self {
        Self {
            interval,
            rate,
            state: Mutex::new(State {
                last_batch: HashMap::new(),
                tokens: rate,
                refilled: Instant::now(),
            }),
        }
    }

    /// How many writes `key` may make now, at most `full`: all of them when
    /// it is not being paced, else none until its interval is over, then
    /// what the shared budget holds.
    pub fn budget(&self, key: &Key, now: Instant, full: usize) -> usize {
        let mut s = self.state.lock().unwrap();
        let Some(last) = s.last_batch.get(key).copied() else {
            return full;
        };
        if now < last + self.interval {
            return 0;
        }
        let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
        s.tokens = (s.tokens + elapsed * self.rate).min(self.rate);
        s.refilled = now;
        (s.tokens.max(0.0).floor() as usize).min(full)
    }

    /// `key` made `writes` and has more to do: it is paced from now on.
    pub fn batch_made(&self, key: &Key, now: Instant, writes: usize) {
        let mut s = self.state.lock().unwrap();
        if s.last_batch.insert(key.clone(), now).is_some() {
            s.tokens -= writes as f64;
        }
    }

    /// How long `key` waits before its next batch may start.
    pub fn wait(&self, key: &Key, now: Instant) -> Duration {
        let s = self.state.lock().unwrap();
        s.last_batch.get(key).map_or(Duration::ZERO, |last| {
            (*last + self.interval).saturating_duration_since(now)
        })
    }

    /// `key` has nothing more to pace (done, or deleted).
    pub fn done(&self, key: &Key) {
        self.state.lock().unwrap().last_batch.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> Key {
        ("ns".into(), n.into())
    }

    #[test]
    fn a_paced_object_waits_out_its_interval_and_others_never_wait() {
        let p = Pacer::new(Duration::from_secs(1), 32.0);
        let t0 = Instant::now();
        assert_eq!(p.budget(&key("a"), t0, 32), 32);
        p.batch_made(&key("a"), t0, 32);
        assert_eq!(p.budget(&key("a"), t0 + Duration::from_millis(400), 32), 0);
        assert_eq!(
            p.wait(&key("a"), t0 + Duration::from_millis(400)),
            Duration::from_millis(600)
        );
        assert_eq!(p.budget(&key("a"), t0 + Duration::from_secs(2), 32), 32);
        assert_eq!(p.budget(&key("b"), t0, 32), 32, "an object never paced");
        p.done(&key("a"));
        assert_eq!(p.budget(&key("a"), t0, 32), 32);
    }

    #[test]
    fn paced_objects_share_one_budget() {
        let p = Pacer::new(Duration::from_secs(1), 32.0);
        let t0 = Instant::now();
        for n in ["a", "b", "c"] {
            // First batches are free: nobody knew they were big yet.
            assert_eq!(p.budget(&key(n), t0, 32), 32);
            p.batch_made(&key(n), t0, 32);
        }
        let t1 = t0 + Duration::from_secs(1);
        let a = p.budget(&key("a"), t1, 32);
        p.batch_made(&key("a"), t1, a);
        let b = p.budget(&key("b"), t1, 32);
        p.batch_made(&key("b"), t1, b);
        let c = p.budget(&key("c"), t1, 32);
        assert!(a + b + c <= 32, "{a} + {b} + {c} in one second");
    }
}
