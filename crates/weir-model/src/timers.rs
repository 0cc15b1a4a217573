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

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Timestamp;
use crate::trigger::TimerDomain;

/// Timers of both domains, each a set of (firing time, owner id).
#[derive(Clone, Debug)]
pub struct TimerQueues<I> {
    event: BTreeSet<(Timestamp, I)>,
    processing: BTreeSet<(Timestamp, I)>,
}

impl<I: Ord> Default for TimerQueues<I> {
    fn default() -> Self {
        TimerQueues { event: BTreeSet::new(), processing: BTreeSet::new() }
    }
}

impl<I: Ord> TimerQueues<I> {
    /// No timers.
    pub fn new() -> Self {
        TimerQueues::default()
    }

    fn queue(&mut self, domain: TimerDomain) -> &mut BTreeSet<(Timestamp, I)> {
        match domain {
            TimerDomain::EventTime => &mut self.event,
            TimerDomain::ProcessingTime => &mut self.processing,
        }
    }

    fn queue_ref(&self, domain: TimerDomain) -> &BTreeSet<(Timestamp, I)> {
        match domain {
            TimerDomain::EventTime => &self.event,
            TimerDomain::ProcessingTime => &self.processing,
        }
    }

    /// Set a timer; false if it was already set.
    pub fn insert(&mut self, domain: TimerDomain, at: Timestamp, id: I) -> bool {
        self.queue(domain).insert((at, id))
    }

    /// Delete a timer; false if it was not set.
    pub fn remove(&mut self, domain: TimerDomain, at: Timestamp, id: I) -> bool {
        self.queue(domain).remove(&(at, id))
    }

    /// The earliest timer of a domain.
    pub fn first(&self, domain: TimerDomain) -> Option<&(Timestamp, I)> {
        self.queue_ref(domain).first()
    }

    /// The earliest time of a domain's timers.
    pub fn next_time(&self, domain: TimerDomain) -> Option<Timestamp> {
        self.first(domain).map(|(t, _)| *t)
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
        self.event.len() + self.processing.len()
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
}
