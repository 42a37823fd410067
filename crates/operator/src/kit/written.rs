//! The status a controller last wrote to each object, remembered until the
//! watch shows it: a reconcile that runs on the older cached copy would
//! redo a step (submit twice, name a second cluster), so it waits instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a write is trusted over the cache; a watch that lags longer
/// than this is not waited for.
const WINDOW: Duration = Duration::from_secs(10);

/// (namespace, name) of an object.
type Key = (String, String);

pub struct Written<S> {
    statuses: Mutex<HashMap<Key, (S, Instant)>>,
}

impl<S> Default for Written<S> {
    fn default() -> Self {
        Self {
            statuses: Mutex::default(),
        }
    }
}

impl<S: PartialEq> Written<S> {
    /// Whether `cached` is older than what this operator wrote for `key`.
    pub fn stale(&self, key: &Key, cached: &S) -> bool {
        let mut statuses = self.statuses.lock().unwrap();
        match statuses.get(key) {
            Some((status, at)) if status != cached && at.elapsed() < WINDOW => true,
            Some(_) => {
                statuses.remove(key);
                false
            }
            None => false,
        }
    }

    /// Remembers `status` (as the server stored it) as written for `key`.
    pub fn wrote(&self, key: Key, status: S) {
        self.statuses
            .lock()
            .unwrap()
            .insert(key, (status, Instant::now()));
    }

    pub fn forget(&self, key: &Key) {
        self.statuses.lock().unwrap().remove(key);
    }
}
