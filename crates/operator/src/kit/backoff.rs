//! Per-object exponential backoff after failed reconciles, shared by every
//! controller: one object failing again and again waits longer each time,
//! without slowing the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// An object's (namespace, name).
pub type Key = (String, String);

/// Consecutive failures per object.
#[derive(Debug, Default)]
pub struct Failures(Mutex<HashMap<Key, u32>>);

impl Failures {
    /// Counts one more failure of `key` and says how long to wait before
    /// the retry: 1s, 2s, 4s, ... up to 5 minutes.
    pub fn next_delay(&self, key: &Key) -> Duration {
        let mut failures = self.0.lock().unwrap();
        let n = failures.entry(key.clone()).or_insert(0);
        *n = (*n + 1).min(16);
        Duration::from_secs(1u64 << (*n - 1).min(9)).min(Duration::from_secs(300))
    }

    /// `key` reconciled: its next failure starts again from 1s.
    pub fn reset(&self, key: &Key) {
        self.0.lock().unwrap().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_five_minutes_and_reset() {
        let f = Failures::default();
        let k = ("ns".to_string(), "a".to_string());
        let delays: Vec<u64> = (0..12).map(|_| f.next_delay(&k).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        let other = ("ns".to_string(), "b".to_string());
        assert_eq!(f.next_delay(&other).as_secs(), 1, "per object");
        f.reset(&k);
        assert_eq!(f.next_delay(&k).as_secs(), 1);
    }
}
