//! The bookkeeping of a warm pool: started-ahead workers waiting for a run,
//! per task, each for one run only (a container that served a run is never
//! handed another, so no run sees what an earlier one left behind).
//!
//! The pool holds items of any type (the Docker executor's are attached,
//! started containers); it knows nothing of Docker, so its rules are tested
//! here without one:
//!
//! - [`WarmPool::take`] hands out the oldest ready item of a task, and only
//!   one made from the task's current image (`version`): items of an
//!   older binary are returned to the caller to discard.
//! - [`WarmPool::reserve`] says how many items to start so that ready and
//!   starting ones reach the target, and counts them as starting, so two
//!   runs finishing at once do not both fill the same gap.
//! - [`WarmPool::reap`] returns the items idle longer than a limit.
//!
//! ```
//! # extern crate taskflow_core as taskflow;
//! # use std::time::{Duration, Instant};
//! # use taskflow::executor::WarmPool;
//! let mut pool = WarmPool::new();
//! assert_eq!(pool.reserve("resize", "v1", 2), 2, "two to start");
//! pool.put("resize", "v1", "container-a", Instant::now());
//! pool.put("resize", "v1", "container-b", Instant::now());
//! assert_eq!(pool.take("resize", "v1").0, Some("container-a"));
//! assert_eq!(pool.reserve("resize", "v1", 2), 1, "one to replace the one taken");
//! ```

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Ready and starting workers, per task.
#[derive(Debug)]
pub struct WarmPool<T> {
    tasks: HashMap<String, Slot<T>>,
}

#[derive(Debug)]
struct Slot<T> {
    /// The image (binary) version the ready items were made from.
    version: String,
    /// Ready items, oldest first, with the time each became ready.
    ready: VecDeque<(T, Instant)>,
    /// Items reserved by [`WarmPool::reserve`] and not yet put or given up.
    starting: usize,
}

impl<T> Default for WarmPool<T> {
    fn default() -> Self {
        WarmPool { tasks: HashMap::new() }
    }
}

impl<T> WarmPool<T> {
    /// An empty pool.
    pub fn new() -> WarmPool<T> {
        WarmPool::default()
    }

    /// The slot of `task` for `version`; a slot of another version gives
    /// up its ready items into `stale`.
    fn slot(&mut self, task: &str, version: &str, stale: &mut Vec<T>) -> &mut Slot<T> {
        let slot = self.tasks.entry(task.to_owned()).or_insert_with(|| Slot {
            version: version.to_owned(),
            ready: VecDeque::new(),
            starting: 0,
        });
        if slot.version != version {
            slot.version = version.to_owned();
            stale.extend(slot.ready.drain(..).map(|(item, _)| item));
            // Items still starting for the old version are refused by `put`.
            slot.starting = 0;
        }
        slot
    }

    /// The oldest ready item of `task` made from `version`, if any, and the
    /// items of other versions, to discard.
    pub fn take(&mut self, task: &str, version: &str) -> (Option<T>, Vec<T>) {
        let mut stale = Vec::new();
        let item = self.slot(task, version, &mut stale).ready.pop_front().map(|(item, _)| item);
        (item, stale)
    }

    /// How many items of `task` to start now so that ready plus starting
    /// ones reach `target`; they count as starting until [`put`] or
    /// [`give_up`].
    ///
    /// [`put`]: WarmPool::put
    /// [`give_up`]: WarmPool::give_up
    pub fn reserve(&mut self, task: &str, version: &str, target: usize) -> usize {
        // Items of an older version are dropped here (dropping one removes it).
        let mut stale = Vec::new();
        let slot = self.slot(task, version, &mut stale);
        let missing = target.saturating_sub(slot.ready.len() + slot.starting);
        slot.starting += missing;
        missing
    }

    /// A reserved item of `task` is ready. An item of a version the pool no
    /// longer wants is handed back, to discard.
    pub fn put(&mut self, task: &str, version: &str, item: T, now: Instant) -> Option<T> {
        match self.tasks.get_mut(task) {
            Some(slot) if slot.version == version => {
                slot.starting = slot.starting.saturating_sub(1);
                slot.ready.push_back((item, now));
                None
            }
            _ => Some(item),
        }
    }

    /// A reserved item of `task` could not be started.
    pub fn give_up(&mut self, task: &str, version: &str) {
        if let Some(slot) = self.tasks.get_mut(task).filter(|slot| slot.version == version) {
            slot.starting = slot.starting.saturating_sub(1);
        }
    }

    /// How many items of `task` are ready.
    pub fn ready(&self, task: &str) -> usize {
        self.tasks.get(task).map_or(0, |slot| slot.ready.len())
    }

    /// Removes and returns the items that have been ready for longer than
    /// `idle` at `now`.
    pub fn reap(&mut self, idle: Duration, now: Instant) -> Vec<T> {
        let mut reaped = Vec::new();
        for slot in self.tasks.values_mut() {
            while slot.ready.front().is_some_and(|(_, since)| now.saturating_duration_since(*since) > idle) {
                reaped.extend(slot.ready.pop_front().map(|(item, _)| item));
            }
        }
        reaped
    }

    /// Removes and returns every ready item (the executor is stopping).
    pub fn drain(&mut self) -> Vec<T> {
        self.tasks.values_mut().flat_map(|slot| slot.ready.drain(..).map(|(item, _)| item)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_hands_out_the_oldest_ready_item_of_the_task() {
        let mut pool = WarmPool::new();
        let now = Instant::now();
        assert_eq!(pool.reserve("a", "v1", 2), 2);
        assert_eq!(pool.put("a", "v1", 1, now), None);
        assert_eq!(pool.put("a", "v1", 2, now), None);
        assert_eq!(pool.take("b", "v1"), (None, vec![]), "another task has none");
        assert_eq!(pool.take("a", "v1"), (Some(1), vec![]));
        assert_eq!(pool.ready("a"), 1);
    }

    #[test]
    fn reserve_counts_the_ones_starting() {
        let mut pool: WarmPool<u32> = WarmPool::new();
        assert_eq!(pool.reserve("a", "v1", 2), 2);
        assert_eq!(pool.reserve("a", "v1", 2), 0, "two are starting already");
        pool.give_up("a", "v1");
        assert_eq!(pool.reserve("a", "v1", 2), 1, "the one given up is started again");
        assert_eq!(pool.reserve("a", "v1", 0), 0);
    }

    #[test]
    fn a_new_version_discards_the_old_items() {
        let mut pool = WarmPool::new();
        let now = Instant::now();
        pool.reserve("a", "v1", 2);
        pool.put("a", "v1", 1, now);
        assert_eq!(pool.take("a", "v2"), (None, vec![1]), "the v1 item is handed back to discard");
        assert_eq!(pool.put("a", "v1", 2, now), Some(2), "a late v1 item is refused");
        assert_eq!(pool.reserve("a", "v2", 1), 1);
    }

    #[test]
    fn reap_returns_only_items_idle_past_the_limit() {
        let mut pool = WarmPool::new();
        let start = Instant::now();
        pool.reserve("a", "v1", 2);
        pool.put("a", "v1", 1, start);
        pool.put("a", "v1", 2, start + Duration::from_secs(5));
        let idle = Duration::from_secs(10);
        assert_eq!(pool.reap(idle, start + Duration::from_secs(10)), Vec::<u32>::new(), "exactly at the limit stays");
        assert_eq!(pool.reap(idle, start + Duration::from_secs(11)), vec![1]);
        assert_eq!(pool.drain(), vec![2]);
        assert_eq!(pool.ready("a"), 0);
    }
}
