//! The timer-and-hold service every keyed operator uses: timer queues of
//! both time domains, ordered by firing time, and the multiset of
//! watermark holds. The grouping (`grouping/`) and stateful DoFns
//! (`weir-pipeline`'s `stateful` operator) keep their timers and holds here,
//! so both follow one set of rules:
//!
//! - a timer is identified by its owner's id and its time within a domain;
//!   the queues are an index kept by an owner that knows which of its
//!   timers are set (a window's list, a stateful DoFn's map): setting a
//!   timer that is set, or deleting one that is not, is a broken invariant
//!   inside Weir. The queues check it where that is cheap (a time's timers
//!   are checked when they are sorted; a deletion at a time with no
//!   unsorted timers at once) and panic; a deletion that empties a time's
//!   count is not checked against the ids it held;
//! - due timers come out in (time, id) order, strictly before the given
//!   time (the watermark or processing time has *passed* them);
//! - a hold is counted: placing the same timestamp twice needs two
//!   releases; releasing a hold that was never placed is a broken
//!   invariant inside Weir and panics with the timestamp (the runner ends
//!   the job with that message).
//!
//! ```
//! use weir_model::timers::{Holds, TimerQueues};
//! use weir_model::trigger::TimerDomain;
//! use weir_model::Timestamp;
//! let t = Timestamp::from_millis;
//! let mut timers = TimerQueues::new();
//! timers.insert(TimerDomain::EventTime, t(20), "b");
//! timers.insert(TimerDomain::EventTime, t(10), "a");
//! timers.insert(TimerDomain::EventTime, t(10), "c");
//! timers.remove(TimerDomain::EventTime, t(10), "c");
//! assert_eq!(timers.len(), 2);
//! assert_eq!(timers.pop_due(TimerDomain::EventTime, t(20)), Some((t(10), "a")));
//! assert_eq!(timers.pop_due(TimerDomain::EventTime, t(20)), None, "20 is not passed yet");
//!
//! let mut holds = Holds::default();
//! holds.add(t(5));
//! holds.add(t(5));
//! holds.remove(t(5));
//! assert_eq!(holds.min(), Some(t(5)));
//! holds.remove(t(5));
//! assert_eq!(holds.min(), None);
//! ```

use std::collections::BTreeMap;
use std::hash::Hash;

use foldhash::HashMap;

use crate::time::Timestamp;
use crate::trigger::TimerDomain;

/// The timers of one domain at one time.
///
/// Timers are appended as they are set, and sorted by id only when their
/// time is the earliest and one is taken. Many keys often share one time
/// (every key's end of the global window, or of a fixed window): a B-tree
/// of (time, id) compared every insertion down to the keys (`memcmp` and
/// B-tree search were 17 % of a grouping's time with 425,000 string keys),
/// and a hash set instead cost q18 (2.9 M keys) 14 % in cache misses. A
/// sort is sequential, and fast on keys that came in order. A timer set at
/// the time being drained is merged in by sorting again (the sort sees
/// two sorted runs).
#[derive(Clone, Debug)]
struct Bucket<I> {
    /// Set since the last sort, in the order they were set.
    pending: Vec<I>,
    /// Deleted while pending: how many of each to drop at the next sort.
    removed: HashMap<I, u32>,
    /// Sorted, largest first: the next to fire is last.
    ready: Vec<I>,
    /// Timers set: pending and ready, less removed.
    live: usize,
}

impl<I> Default for Bucket<I> {
    fn default() -> Self {
        Bucket { pending: Vec::new(), removed: HashMap::default(), ready: Vec::new(), live: 0 }
    }
}

impl<I: Ord + Hash> Bucket<I> {
    fn insert(&mut self, id: I) {
        self.pending.push(id);
        self.live += 1;
    }

    fn remove(&mut self, id: I, at: Timestamp) {
        match self.ready.binary_search_by(|x| id.cmp(x)) {
            Ok(i) => {
                self.ready.remove(i);
            }
            Err(_) if self.pending.is_empty() => unreachable!("deleted a timer at {at} that was never set"),
            Err(_) => *self.removed.entry(id).or_insert(0) += 1,
        }
        self.live =
            self.live.checked_sub(1).unwrap_or_else(|| unreachable!("deleted a timer at {at} that was never set"));
    }

    /// Sort what was set since the last call into `ready`, less what was
    /// deleted.
    fn sort(&mut self, at: Timestamp) {
        if self.pending.is_empty() {
            return;
        }
        if !self.removed.is_empty() {
            let removed = &mut self.removed;
            self.pending.retain(|id| match removed.get_mut(id) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            });
            let unmatched = removed.values().any(|n| *n > 0);
            assert!(!unmatched, "deleted a timer at {at} that was never set");
            removed.clear();
        }
        self.ready.append(&mut self.pending);
        self.ready.sort_unstable_by(|a, b| b.cmp(a));
        let twice = self.ready.windows(2).any(|w| w[0] == w[1]);
        assert!(!twice, "set a timer at {at} that was already set");
        debug_assert_eq!(self.ready.len(), self.live);
    }
}

/// One domain's timers, by time.
#[derive(Clone, Debug)]
struct Queue<I> {
    by_time: BTreeMap<Timestamp, Bucket<I>>,
    len: usize,
}

impl<I> Default for Queue<I> {
    fn default() -> Self {
        Queue { by_time: BTreeMap::new(), len: 0 }
    }
}

impl<I: Ord + Hash> Queue<I> {
    fn insert(&mut self, at: Timestamp, id: I) {
        self.by_time.entry(at).or_default().insert(id);
        self.len += 1;
    }

    fn remove(&mut self, at: Timestamp, id: I) {
        let Some(bucket) = self.by_time.get_mut(&at) else {
            unreachable!("deleted a timer at {at} that was never set")
        };
        bucket.remove(id, at);
        if bucket.live == 0 {
            self.by_time.remove(&at);
        }
        self.len -= 1;
    }

    fn next_time(&self) -> Option<Timestamp> {
        self.by_time.first_key_value().map(|(t, _)| *t)
    }

    fn first(&mut self) -> Option<(Timestamp, &I)> {
        let (t, bucket) = self.by_time.iter_mut().next()?;
        bucket.sort(*t);
        bucket.ready.last().map(|id| (*t, id))
    }

    fn pop_first(&mut self) -> Option<(Timestamp, I)> {
        let mut entry = self.by_time.first_entry()?;
        let at = *entry.key();
        let bucket = entry.get_mut();
        bucket.sort(at);
        let id = bucket.ready.pop().expect("a time's bucket is never empty");
        bucket.live -= 1;
        if bucket.live == 0 {
            entry.remove();
        }
        self.len -= 1;
        Some((at, id))
    }
}

/// Timers of both domains, each a set of (firing time, owner id).
#[derive(Clone, Debug)]
pub struct TimerQueues<I> {
    event: Queue<I>,
    processing: Queue<I>,
}

impl<I> Default for TimerQueues<I> {
    fn default() -> Self {
        TimerQueues { event: Queue::default(), processing: Queue::default() }
    }
}

impl<I: Ord + Hash> TimerQueues<I> {
    /// No timers.
    pub fn new() -> Self {
        TimerQueues::default()
    }

    fn queue(&mut self, domain: TimerDomain) -> &mut Queue<I> {
        match domain {
            TimerDomain::EventTime => &mut self.event,
            TimerDomain::ProcessingTime => &mut self.processing,
        }
    }

    fn queue_ref(&self, domain: TimerDomain) -> &Queue<I> {
        match domain {
            TimerDomain::EventTime => &self.event,
            TimerDomain::ProcessingTime => &self.processing,
        }
    }

    /// Set a timer that is not set.
    pub fn insert(&mut self, domain: TimerDomain, at: Timestamp, id: I) {
        self.queue(domain).insert(at, id)
    }

    /// Delete a timer that is set.
    pub fn remove(&mut self, domain: TimerDomain, at: Timestamp, id: I) {
        self.queue(domain).remove(at, id)
    }

    /// The earliest timer of a domain (the smallest id of the earliest
    /// time).
    pub fn first(&mut self, domain: TimerDomain) -> Option<(Timestamp, &I)> {
        self.queue(domain).first()
    }

    /// The earliest time of a domain's timers.
    pub fn next_time(&self, domain: TimerDomain) -> Option<Timestamp> {
        self.queue_ref(domain).next_time()
    }

    /// Whether a timer of `domain` is due: strictly before `time`.
    pub fn is_due(&self, domain: TimerDomain, time: Timestamp) -> bool {
        self.next_time(domain).is_some_and(|t| t < time)
    }

    /// Remove and return the earliest timer of `domain` strictly before
    /// `time`.
    pub fn pop_due(&mut self, domain: TimerDomain, time: Timestamp) -> Option<(Timestamp, I)> {
        if !self.is_due(domain, time) {
            return None;
        }
        self.queue(domain).pop_first()
    }

    /// Timers set, over both domains.
    pub fn len(&self) -> usize {
        self.event.len + self.processing.len
    }

    /// Whether no timer is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A multiset of watermark holds: the output watermark may not pass the
/// smallest.
#[derive(Clone, Debug, Default)]
pub struct Holds {
    counts: BTreeMap<Timestamp, u32>,
}

impl Holds {
    /// Place a hold at `t`.
    pub fn add(&mut self, t: Timestamp) {
        *self.counts.entry(t).or_insert(0) += 1;
    }

    /// Release one hold at `t`. Panics if none was placed: every release
    /// follows its placement inside Weir, so that is a bug, never the
    /// user's input.
    pub fn remove(&mut self, t: Timestamp) {
        match self.counts.get_mut(&t) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.counts.remove(&t);
            }
            None => unreachable!("released a watermark hold at {t} that was never placed"),
        }
    }

    /// The smallest hold.
    pub fn min(&self) -> Option<Timestamp> {
        self.counts.first_key_value().map(|(t, _)| *t)
    }

    /// Holds placed and not released.
    pub fn len(&self) -> usize {
        self.counts.values().map(|&n| n as usize).sum()
    }

    /// Whether no hold is placed.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "never placed")]
    fn releasing_a_hold_never_placed_is_a_broken_invariant() {
        Holds::default().remove(Timestamp::from_millis(1));
    }

    #[test]
    fn domains_are_separate_queues() {
        let t = Timestamp::from_millis;
        let mut q = TimerQueues::new();
        q.insert(TimerDomain::ProcessingTime, t(1), 1);
        assert_eq!(q.pop_due(TimerDomain::EventTime, t(5)), None);
        assert_eq!(q.len(), 1);
        q.remove(TimerDomain::ProcessingTime, t(1), 1);
        assert!(q.is_empty());
    }

    #[test]
    #[should_panic(expected = "already set")]
    fn setting_a_set_timer_is_a_broken_invariant() {
        let mut q = TimerQueues::new();
        q.insert(TimerDomain::EventTime, Timestamp::from_millis(1), 1);
        q.insert(TimerDomain::EventTime, Timestamp::from_millis(1), 1);
        q.pop_due(TimerDomain::EventTime, Timestamp::MAX);
    }

    #[test]
    #[should_panic(expected = "never set")]
    fn deleting_a_timer_never_set_from_a_sorted_time_panics_at_once() {
        let mut q = TimerQueues::new();
        q.insert(TimerDomain::EventTime, Timestamp::from_millis(1), 1);
        q.insert(TimerDomain::EventTime, Timestamp::from_millis(1), 2);
        assert_eq!(q.first(TimerDomain::EventTime), Some((Timestamp::from_millis(1), &1)));
        q.remove(TimerDomain::EventTime, Timestamp::from_millis(1), 3);
    }

    #[test]
    #[should_panic(expected = "never set")]
    fn deleting_a_timer_never_set_is_a_broken_invariant() {
        let mut q = TimerQueues::new();
        q.insert(TimerDomain::EventTime, Timestamp::from_millis(1), 1);
        q.insert(TimerDomain::EventTime, Timestamp::from_millis(1), 2);
        q.remove(TimerDomain::EventTime, Timestamp::from_millis(1), 3);
        q.pop_due(TimerDomain::EventTime, Timestamp::MAX);
    }

    /// The queues against a B-tree of (time, id), the order they promise,
    /// under random inserts, removals and pops that interleave as their
    /// owners do them (only unset timers are set, only set ones deleted): a
    /// timer set at the time being drained, one deleted from a sorted
    /// bucket, one deleted and set again before its bucket is sorted.
    #[test]
    fn same_order_as_a_btree_of_time_and_id() {
        use std::collections::BTreeSet;
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let d = TimerDomain::EventTime;
        let mut q = TimerQueues::new();
        let mut model = BTreeSet::new();
        for _ in 0..20_000 {
            let at = Timestamp::from_millis(next(8) as i64);
            let id = format!("k{}", next(50));
            match next(4) {
                0 | 1 => {
                    if model.insert((at, id.clone())) {
                        q.insert(d, at, id);
                    }
                }
                2 => {
                    if model.remove(&(at, id.clone())) {
                        q.remove(d, at, id);
                    }
                }
                _ => {
                    let before = Timestamp::from_millis(next(9) as i64);
                    let expected = model.first().filter(|(t, _)| *t < before).cloned();
                    if let Some(e) = &expected {
                        model.remove(e);
                    }
                    assert_eq!(q.pop_due(d, before), expected);
                }
            }
            assert_eq!(q.len(), model.len());
            // Looking sorts the earliest time: only sometimes, so that pops
            // also meet times not yet sorted.
            if next(5) == 0 {
                assert_eq!(q.first(d).map(|(t, id)| (t, id.clone())), model.first().cloned());
            }
        }
    }
}
