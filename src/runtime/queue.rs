//! The work queue: which Ray objects wait for a step, and why. One step at a time per object; while an object is
//! being stepped, what arrives for it waits and is served once the step is done. Triggers that pile up for an
//! object coalesce into one step (it observes everything anyway), keeping the first for the audit trail — except a
//! command's outcome, which the machine must see, so it always wins. Timers are kept by object and name; a
//! Decision's memory replaces all of an object's timers.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use tokio::time::Instant;

use super::index::Key;
use crate::machine::Trigger;

#[derive(Default)]
pub struct Queue {
    ready: VecDeque<Key>,
    pending: HashMap<Key, Trigger>,
    running: HashSet<Key>,
    timers: BTreeSet<(Instant, Key, String)>,
    timers_of: HashMap<Key, Vec<(Instant, String)>>,
}

impl Queue {
    pub fn push(&mut self, key: Key, trigger: Trigger) {
        match self.pending.get_mut(&key) {
            Some(waiting) => {
                if matches!(trigger, Trigger::Outcome { .. }) {
                    *waiting = trigger;
                }
            }
            None => {
                self.pending.insert(key.clone(), trigger);
                if !self.running.contains(&key) {
                    self.ready.push_back(key);
                }
            }
        }
    }

    /// The next object to step, now marked running.
    pub fn pop(&mut self) -> Option<(Key, Trigger)> {
        let key = self.ready.pop_front()?;
        let trigger = self.pending.remove(&key)?;
        self.running.insert(key.clone());
        Some((key, trigger))
    }

    /// The step of `key` is over: what arrived meanwhile becomes ready.
    pub fn done(&mut self, key: &Key) {
        self.running.remove(key);
        if self.pending.contains_key(key) {
            self.ready.push_back(key.clone());
        }
    }

    /// Objects waiting for a step (running ones excluded).
    pub fn depth(&self) -> usize {
        self.pending.len()
    }

    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.running.is_empty()
    }

    /// Replaces every timer of `key`.
    pub fn set_timers(&mut self, key: &Key, timers: Vec<(Instant, String)>) {
        for (at, name) in self.timers_of.remove(key).unwrap_or_default() {
            self.timers.remove(&(at, key.clone(), name));
        }
        for (at, name) in &timers {
            self.timers.insert((*at, key.clone(), name.clone()));
        }
        if !timers.is_empty() {
            self.timers_of.insert(key.clone(), timers);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _, _)| *at)
    }

    /// Fires the timers due at `now`: each becomes a Timer trigger for its object.
    pub fn fire(&mut self, now: Instant) {
        while let Some((at, key, name)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, key.clone(), name.clone()));
            if let Some(timers) = self.timers_of.get_mut(&key) {
                timers.retain(|(when, timer)| !(*when == at && *timer == name));
                if timers.is_empty() {
                    self.timers_of.remove(&key);
                }
            }
            self.push(key, Trigger::Timer { name });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::machine::{MachineKind, Outcome};

    fn key(name: &str) -> Key {
        Key { kind: MachineKind::RayCluster, namespace: "ns".to_string(), name: name.to_string() }
    }

    fn timer(name: &str) -> Trigger {
        Trigger::Timer { name: name.to_string() }
    }

    #[test]
    fn triggers_for_a_waiting_object_coalesce_keeping_the_first() {
        let mut queue = Queue::default();
        queue.push(key("a"), Trigger::Resync);
        queue.push(key("b"), timer("t"));
        queue.push(key("a"), timer("t"));
        assert_eq!(queue.depth(), 2);
        assert_eq!(queue.pop(), Some((key("a"), Trigger::Resync)));
        assert_eq!(queue.pop(), Some((key("b"), timer("t"))));
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn an_outcome_replaces_what_waits() {
        let mut queue = Queue::default();
        queue.push(key("a"), Trigger::Resync);
        let outcome = Trigger::Outcome { command: "create Pod c-head-".to_string(), outcome: Outcome::Conflict };
        queue.push(key("a"), outcome.clone());
        queue.push(key("a"), Trigger::Resync);
        assert_eq!(queue.pop(), Some((key("a"), outcome)));
    }

    #[test]
    fn one_step_at_a_time_per_object() {
        let mut queue = Queue::default();
        queue.push(key("a"), Trigger::Resync);
        assert!(queue.pop().is_some());
        queue.push(key("a"), timer("t"));
        assert_eq!(queue.pop(), None, "a is still running");
        assert!(!queue.is_idle());
        queue.done(&key("a"));
        assert_eq!(queue.pop(), Some((key("a"), timer("t"))));
        queue.done(&key("a"));
        assert!(queue.is_idle());
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_order_and_are_replaced_per_object() {
        let mut queue = Queue::default();
        let now = Instant::now();
        let later = |seconds| now + Duration::from_secs(seconds);
        queue.set_timers(&key("a"), vec![(later(5), "requeue".to_string()), (later(1), "deadline".to_string())]);
        queue.set_timers(&key("b"), vec![(later(3), "requeue".to_string())]);
        queue.set_timers(&key("b"), vec![(later(9), "requeue".to_string())]);
        assert_eq!(queue.next_deadline(), Some(later(1)));
        queue.fire(later(5));
        assert_eq!(queue.pop(), Some((key("a"), timer("deadline"))));
        assert_eq!(queue.pop(), None, "the requeue coalesced into the waiting step");
        assert_eq!(queue.next_deadline(), Some(later(9)));
        queue.set_timers(&key("b"), Vec::new());
        assert_eq!(queue.next_deadline(), None);
    }
}
