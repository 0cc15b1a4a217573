//! Messages of one input port that arrived ahead of its frontier.
//!
//! A message was sent when its producer's output watermark was its time.
//! It is processed once the port's watermark has reached that time (never
//! past the port's frontier), so data sent after a watermark advance is
//! processed after it, as on the reference runner. The frontier can lag
//! the message by a round of progress tracking: such messages wait here,
//! in (time, arrival) order. The stash is bounded: past [`STASH_LIMIT`]
//! records a message is processed with the (lower) frontier, which is still
//! a valid execution of the model.

use std::collections::BTreeMap;

use weir_runtime::Batch;

use crate::time::Time;

/// Records a port may hold back waiting for its frontier.
pub(crate) const STASH_LIMIT: usize = 1 << 14;

/// One stashed message: the batch, the records of it still counted as in
/// flight, and those counted as parked (see `flow::InFlight`).
pub(crate) struct Stashed {
    pub batch: Batch,
    pub counted: i64,
    pub parked: i64,
}

/// The waiting messages of one input port.
#[derive(Default)]
pub(crate) struct Stash {
    /// By (epoch, watermark, arrival): a later epoch waits until this
    /// operator has snapshotted the earlier one.
    queue: BTreeMap<(u64, u64, u64), Stashed>,
    arrivals: u64,
    records: usize,
}

impl Stash {
    pub fn push(&mut self, time: Time, batch: Batch, counted: i64) {
        self.records += batch.len();
        self.arrivals += 1;
        self.queue.insert((time.outer, time.inner, self.arrivals), Stashed { batch, counted, parked: 0 });
    }
    /// The earliest time waiting: of the oldest epoch, the lowest watermark.
    pub fn min_time(&self) -> Option<Time> {
        self.queue.first_key_value().map(|(k, _)| Time::new(k.0, k.1))
    }
    /// The lowest watermark waiting in epochs after `epoch`.
    pub fn min_watermark_after(&self, epoch: u64) -> Option<u64> {
        self.queue.range((epoch + 1, 0, 0)..).map(|(k, _)| k.1).min()
    }
    /// The lowest watermark waiting, over all epochs.
    pub fn min_watermark(&self) -> Option<u64> {
        self.queue.keys().map(|k| k.1).min()
    }
    pub fn pop(&mut self) -> Option<Stashed> {
        let (_, v) = self.queue.pop_first()?;
        self.records -= v.batch.len();
        Some(v)
    }
    /// Whether the stash is over its limit (its earliest message is then
    /// processed whatever the frontier).
    pub fn over_limit(&self) -> bool {
        self.records > STASH_LIMIT
    }
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
    /// Move every record still counted as in flight to parked; returns how
    /// many moved.
    pub fn park_all(&mut self) -> i64 {
        let mut moved = 0;
        for s in self.queue.values_mut() {
            let n = std::mem::take(&mut s.counted);
            s.parked += n;
            moved += n;
        }
        moved
    }
}
