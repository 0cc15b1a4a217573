//! The timer-and-hold service every keyed operator uses: timer queues of
//! both time domains, ordered by firing time, and the multiset of
//! watermark holds. The grouping (`grouping/`) and stateful DoFns
//! (`weir-pipeline`'s `stateful` operator) keep their timers and holds here,
//! so both follow one set of rules:
//!
//! - a timer is identified by its owner's id and its time within a domain;
//!   setting it again changes nothing;
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
//! assert!(timers.insert(TimerDomain::EventTime, t(20), "b"));
//! assert!(timers.insert(TimerDomain::EventTime, t(10), "a"));
//! assert!(!timers.insert(TimerDomain::EventTime, t(10), "a"), "already set");
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

use foldhash::HashSet;

use crate::time::Timestamp;
use crate::trigger::TimerDomain;

/// The timers of one domain at one time.
///
/// Timers go into a hash set as they are set, and are sorted by id only
/// when their time is the earliest and one is taken: many keys often share
/// one time (every key's end of the global window, or of a fixed window),
/// and a B-tree of (time, id) compared every insertion down to the keys
/// (`memcmp` and B-tree search were 17 % of a grouping's time with 425,000
/// string keys).
#[derive(Clone, Debug)]
struct Bucket<I> {
    /// Set and not yet sorted.
    pending: HashSet<I>,
    /// Sorted, largest first: the next to fire is last.
    ready: Vec<I>,
}

impl<I> Default for Bucket<I> {
    fn default() -> Self {
        Bucket { pending: HashSet::default(), ready: Vec::new() }
    }
}

impl<I: Ord + Hash> Bucket<I> {
    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.ready.is_empty()
    }

    /// Where `id` is in `ready`.
    fn find_ready(&self, id: &I) -> Result<usize, usize> {
        self.ready.binary_search_by(|x| id.cmp(x))
    }

    fn insert(&mut self, id: I) -> bool {
        if !self.ready.is_empty() && self.find_ready(&id).is_ok() {
            return false;
        }
        self.pending.insert(id)
    }

    fn remove(&mut self, id: &I) -> bool {
        if self.pending.remove(id) {
            return true;
        }
        match self.find_ready(id) {
            Ok(i) => {
                self.ready.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Sort what was set since the last call into `ready`.
    fn sort(&mut self) {
        if !self.pending.is_empty() {
            self.ready.extend(self.pending.drain());
            self.ready.sort_unstable_by(|a, b| b.cmp(a));
        }
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
    fn insert(&mut self, at: Timestamp, id: I) -> bool {
        let added = self.by_time.entry(at).or_default().insert(id);
        self.len += usize::from(added);
        added
    }

    fn remove(&mut self, at: Timestamp, id: &I) -> bool {
        let Some(bucket) = self.by_time.get_mut(&at) else { return false };
        let removed = bucket.remove(id);
        if bucket.is_empty() {
            self.by_time.remove(&at);
        }
        self.len -= usize::from(removed);
        removed
    }

    fn next_time(&self) -> Option<Timestamp> {
        self.by_time.first_key_value().map(|(t, _)| *t)
    }

    fn first(&mut self) -> Option<(Timestamp, &I)> {
        let (t, bucket) = self.by_time.iter_mut().next()?;
        bucket.sort();
        bucket.ready.last().map(|id| (*t, id))
    }

    fn pop_first(&mut self) -> Option<(Timestamp, I)> {
        let mut entry = self.by_time.first_entry()?;
        let bucket = entry.get_mut();
        bucket.sort();
        let id = bucket.ready.pop().expect("a time's bucket is never empty");
        let at = *entry.key();
        if entry.get().is_empty() {
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

    /// Set a timer; false if it was already set.
    pub fn insert(&mut self, domain: TimerDomain, at: Timestamp, id: I) -> bool {
        self.queue(domain).insert(at, id)
    }

    /// Delete a timer; false if it was not set.
    pub fn remove(&mut self, domain: TimerDomain, at: Timestamp, id: I) -> bool {
        self.queue(domain).remove(at, &id)
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
        assert!(q.remove(TimerDomain::ProcessingTime, t(1), 1));
        assert!(q.is_empty());
    }

    /// The queues against a B-tree of (time, id), the order they promise,
    /// under random inserts, removals and pops that interleave (a timer set
    /// at the time being drained, a timer removed from a sorted bucket).
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
                0 | 1 => assert_eq!(q.insert(d, at, id.clone()), model.insert((at, id))),
                2 => assert_eq!(q.remove(d, at, id.clone()), model.remove(&(at, id))),
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
            assert_eq!(q.first(d).map(|(t, id)| (t, id.clone())), model.first().cloned());
        }
    }
}
