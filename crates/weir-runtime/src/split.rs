//! Split sources: a source made of *splits* (a file, a stripe of blocks of a
//! file, a generator's share of the events, a partition of a topic), each
//! read in order, each with a serializable [position](Split::position) and
//! its own watermark.
//!
//! A [`SplitSource`] plans every split of a run; split `i` is read by
//! worker `i % workers` ([`assigned`]). A split is a value independent of
//! the worker reading it, so it can be handed to another worker (at a
//! restart with another worker count, or by a future rebalancer) together
//! with its position. [`SplitReader`] is the one [`Source`] that drives
//! splits: it reads them in turn, tracks each one's watermark under a
//! [`WatermarkPolicy`] (batch, bounded out-of-orderness, idleness, or the
//! split's own lower bound), publishes their state for observers, and
//! reports the source's position for checkpoints.
//!
//! ```
//! use weir_model::Timestamp;
//! use weir_runtime::split::{ReadResult, Split, SplitOutput};
//! use weir_runtime::PipelineError;
//! /// Counts from `next` to `end`, one event per millisecond.
//! struct Count { next: u64, end: u64 }
//! impl Split for Count {
//!     type Item = u64;
//!     fn id(&self) -> String { "count".into() }
//!     fn read(&mut self, max: usize, out: &mut SplitOutput<'_, u64>) -> Result<ReadResult, PipelineError> {
//!         while self.next < self.end && out.len() < max {
//!             out.push(self.next, Timestamp::from_millis(self.next as i64));
//!             self.next += 1;
//!         }
//!         Ok(if self.next == self.end { ReadResult::Done } else { ReadResult::Data })
//!     }
//!     fn position(&self) -> Option<Vec<u8>> { Some(self.next.to_le_bytes().to_vec()) }
//!     fn seek(&mut self, at: &[u8]) -> Result<(), PipelineError> {
//!         self.next = u64::from_le_bytes(at.try_into().map_err(|_| PipelineError::Runner("bad position".into()))?);
//!         Ok(())
//!     }
//! }
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_model::{Duration, Timestamp};

use crate::data::{Data, WindowedValue};
use crate::error::PipelineError;
use crate::metrics::{NodeCounters, SplitState};
use crate::operator::{OpContext, OpResult, Source, SourcePosition, SourceStatus, WorkerInfo};

/// What one read of a split returned.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// Some records were read (possibly none for now).
    Data,
    /// The split has nothing to read right now.
    Idle,
    /// The split has no more data, ever.
    Done,
}

/// A record that could not be read as data, with the reason: what a
/// source's dead-letter output (port 1) carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Where it came from (the file, or the split).
    pub file: String,
    /// The record, as text.
    pub line: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Where a split's read puts records and dead letters.
pub struct SplitOutput<'a, T> {
    records: &'a mut Vec<WindowedValue<T>>,
    dead: &'a mut Vec<WindowedValue<DeadLetter>>,
    transform: &'a str,
}

impl<T> SplitOutput<'_, T> {
    /// A record with its event time.
    pub fn push(&mut self, value: T, timestamp: Timestamp) {
        self.records.push(WindowedValue::in_global(value, timestamp));
    }
    /// A record that cannot be read (counted, sent to the dead letters).
    pub fn dead_letter(&mut self, dead: DeadLetter) {
        self.dead.push(WindowedValue::in_global(dead, Timestamp::MIN));
    }
    /// Records pushed so far in this read.
    pub fn len(&self) -> usize {
        self.records.len()
    }
    /// Whether nothing was pushed yet in this read.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    /// The error that ends the job, for a split that cannot go on.
    pub fn error(&self, message: impl Into<String>) -> PipelineError {
        PipelineError::Execution { transform: self.transform.to_string(), message: message.into() }
    }
}

/// One split: a part of a source's input, read in order.
pub trait Split: Send + 'static {
    /// The records.
    type Item: Data;
    /// A stable name, unique within the source (a file and its stripe, a
    /// partition): positions are stored under it.
    fn id(&self) -> String;
    /// Read up to about `max` records.
    fn read(&mut self, max: usize, out: &mut SplitOutput<'_, Self::Item>) -> Result<ReadResult, PipelineError>;
    /// A lower bound of every timestamp the split will still read, when the
    /// split knows one (a generator producing events in time order). Used
    /// by [`WatermarkPolicy::from_splits`].
    fn known_watermark(&self) -> Option<Timestamp> {
        None
    }
    /// Where the split is: reading resumes here after a [`seek`](Split::seek).
    /// `None` if the split cannot say.
    fn position(&self) -> Option<Vec<u8>> {
        None
    }
    /// Go to a [`position`](Split::position) of the same split.
    fn seek(&mut self, position: &[u8]) -> OpResult {
        let _ = position;
        Err(PipelineError::Runner(format!("split {} cannot seek", self.id())))
    }
    /// Go to the split's first record. A reader that discovers splits
    /// ([`SplitReader::for_worker_discovering`]) starts this way a split
    /// that has no position in the checkpoint it is restored from: the split
    /// appeared after that checkpoint (a partition added to a topic). The
    /// default cannot.
    fn seek_to_beginning(&mut self) -> OpResult {
        Err(PipelineError::Runner(format!("split {} cannot go back to its beginning", self.id())))
    }
    /// A checkpoint holding this split's `position` completed (see
    /// [`Source::checkpoint_committed`]): acknowledge upstream what the
    /// split read before it. The default does nothing.
    fn committed(&mut self, position: &[u8]) -> OpResult {
        let _ = position;
        Ok(())
    }
}

/// Plans the splits of a source.
pub trait SplitSource: Send + Sync + 'static {
    /// The splits.
    type Split: Split;
    /// Every split of a run with `workers` workers, in a fixed order (see
    /// [`WorkerInfo::splits_for`]).
    fn splits(&self, workers: usize) -> Result<Vec<Self::Split>, PipelineError>;
    /// The splits that appeared after the first `known` (a partition added
    /// to a topic), in the same fixed order on every worker (see
    /// [`SplitReader::for_worker_discovering`] for who reads them). Called
    /// again and again by readers that discover splits. The default: none
    /// ever appear.
    fn discover(&self, known: usize) -> Result<Vec<Self::Split>, PipelineError> {
        let _ = known;
        Ok(Vec::new())
    }
}

/// Whether split `i` is read by `worker`: splits are dealt round robin.
pub fn assigned(i: usize, worker: &WorkerInfo) -> bool {
    i % worker.peers.max(1) == worker.index
}

/// Estimates a split's watermark from the timestamps it has read.
pub trait WatermarkEstimator: Send + 'static {
    /// A record with this timestamp was read.
    fn observe(&mut self, t: Timestamp);
    /// The split's watermark now.
    fn watermark(&self) -> Timestamp;
    /// Whether observing only the largest timestamp of a read gives the
    /// same watermark as observing each one (true for estimators built on
    /// the maximum): the reader then makes one call per read, not one per
    /// record.
    fn max_is_enough(&self) -> bool {
        false
    }
    /// The estimator's state, for a checkpoint (with the split's position).
    fn save(&self) -> Vec<u8> {
        Vec::new()
    }
    /// Restore a [`save`](WatermarkEstimator::save)d state.
    fn load(&mut self, state: &[u8]) {
        let _ = state;
    }
}

/// Watermark = the largest timestamp seen minus a fixed bound (`-inf`
/// before the first record).
#[derive(Copy, Clone, Debug)]
pub struct BoundedOutOfOrderness {
    bound: Duration,
    max_seen: Timestamp,
}

impl BoundedOutOfOrderness {
    /// Records may arrive up to `bound` behind the latest one.
    pub fn new(bound: Duration) -> Self {
        BoundedOutOfOrderness { bound, max_seen: Timestamp::MIN }
    }
}

impl WatermarkEstimator for BoundedOutOfOrderness {
    fn observe(&mut self, t: Timestamp) {
        self.max_seen = self.max_seen.max(t);
    }
    fn max_is_enough(&self) -> bool {
        true
    }
    fn watermark(&self) -> Timestamp {
        if self.max_seen == Timestamp::MIN {
            Timestamp::MIN
        } else {
            self.max_seen - self.bound
        }
    }
    fn save(&self) -> Vec<u8> {
        self.max_seen.millis().to_le_bytes().to_vec()
    }
    fn load(&mut self, state: &[u8]) {
        if let Ok(b) = state.try_into() {
            self.max_seen = Timestamp::from_millis(i64::from_le_bytes(b));
        }
    }
}

/// A split's watermark is `-inf` until it is done: bounded input as a batch.
struct NoWatermark;

impl WatermarkEstimator for NoWatermark {
    fn observe(&mut self, _: Timestamp) {}
    fn max_is_enough(&self) -> bool {
        true
    }
    fn watermark(&self) -> Timestamp {
        Timestamp::MIN
    }
}

/// How a source's watermark is made from its splits' watermarks.
///
/// The source's watermark is `+inf` once every split is done; else the
/// minimum over the splits that are neither done nor idle; if every
/// unfinished split is idle, the largest of their watermarks (so that idle
/// splits do not stall windows). It never goes back.
#[derive(Clone)]
pub struct WatermarkPolicy {
    estimator: Arc<dyn Fn() -> Box<dyn WatermarkEstimator> + Send + Sync>,
    idle_after: Option<Duration>,
    from_splits: bool,
}

impl WatermarkPolicy {
    /// Bounded input processed as a batch: `-inf` until every split is
    /// done, then `+inf`; no element is late whatever the order.
    pub fn batch() -> Self {
        WatermarkPolicy::with_estimator(|| Box::new(NoWatermark))
    }
    /// Bounded out-of-orderness per split, no idleness.
    pub fn bounded_out_of_orderness(bound: Duration) -> Self {
        WatermarkPolicy::with_estimator(move || Box::new(BoundedOutOfOrderness::new(bound)))
    }
    /// Each split's own lower bound ([`Split::known_watermark`]).
    pub fn from_splits() -> Self {
        WatermarkPolicy { from_splits: true, ..WatermarkPolicy::batch() }
    }
    /// Any estimator per split.
    pub fn with_estimator(make: impl Fn() -> Box<dyn WatermarkEstimator> + Send + Sync + 'static) -> Self {
        WatermarkPolicy { estimator: Arc::new(make), idle_after: None, from_splits: false }
    }
    /// A split with no data for `d` of processing time stops holding the
    /// watermark back; it holds it again when data arrives.
    pub fn idle_after(mut self, d: Duration) -> Self {
        self.idle_after = Some(d);
        self
    }
}

struct Reading<S> {
    split: S,
    id: String,
    estimator: Box<dyn WatermarkEstimator>,
    last_data: Option<Timestamp>,
    idle: bool,
    done: bool,
    /// The state last published for observers (published again only when
    /// it changes: a lock per changed split, not per split per poll).
    published: Option<SplitState>,
}

impl<S: Split> Reading<S> {
    fn new(split: S, policy: &WatermarkPolicy) -> Self {
        Reading {
            id: split.id(),
            split,
            estimator: (policy.estimator)(),
            last_data: None,
            idle: false,
            done: false,
            published: None,
        }
    }

    fn watermark(&self, from_splits: bool) -> Timestamp {
        if self.done {
            return Timestamp::MAX;
        }
        let estimated = self.estimator.watermark();
        match from_splits.then(|| self.split.known_watermark()).flatten() {
            Some(known) => known.max(estimated),
            None => estimated,
        }
    }
}

/// How a split's position is stored in a [`SourcePosition`].
#[derive(Serialize, Deserialize)]
struct StoredPosition {
    done: bool,
    split: Vec<u8>,
    estimator: Vec<u8>,
}

/// A split on its way from one reader to another, with where its watermark
/// estimate stood.
pub struct HandedOver<S> {
    split: S,
    estimator: Vec<u8>,
    done: bool,
}

type FindFn<S> = dyn Fn(usize) -> Result<Vec<S>, PipelineError> + Send;

/// How a reader looks for splits that appeared while it runs.
struct Discovery<S> {
    find: Box<FindFn<S>>,
    every: Duration,
    last: Option<Timestamp>,
    /// Splits known: planned and discovered so far.
    known: usize,
    /// New splits are dealt over workers `0..workers`: those that had a
    /// split at the start.
    workers: usize,
    /// This worker.
    index: usize,
    /// The last attempt failed (said once per run of failures).
    failing: bool,
}

/// The [`Source`] that reads one worker's splits, a chunk from each in turn.
pub struct SplitReader<S: Split> {
    splits: Vec<Reading<S>>,
    /// Splits in the plan this reader's share was taken from.
    planned: usize,
    discovery: Option<Discovery<S>>,
    policy: WatermarkPolicy,
    next: usize,
    watermark: Timestamp,
    dead_letters: bool,
    records: Vec<WindowedValue<S::Item>>,
    dead: Vec<WindowedValue<DeadLetter>>,
}

impl<S: Split> SplitReader<S> {
    /// Read `splits` under `policy`; with `dead_letters`, records that
    /// cannot be read go to output port 1 (else the source has one port and
    /// a split must not produce any).
    pub fn new(splits: Vec<S>, policy: WatermarkPolicy, dead_letters: bool) -> Self {
        let planned = splits.len();
        let splits = splits.into_iter().map(|split| Reading::new(split, &policy)).collect();
        SplitReader {
            splits,
            planned,
            discovery: None,
            policy,
            next: 0,
            watermark: Timestamp::MIN,
            dead_letters,
            records: Vec::new(),
            dead: Vec::new(),
        }
    }

    /// The reader of `worker`'s share of `source`'s splits.
    pub fn for_worker<P: SplitSource<Split = S>>(
        source: &P,
        worker: &WorkerInfo,
        policy: WatermarkPolicy,
        dead_letters: bool,
    ) -> Result<Self, PipelineError> {
        let plan = source.splits(worker.splits_for)?;
        let planned = plan.len();
        let splits = plan.into_iter().enumerate().filter(|(i, _)| assigned(*i, worker)).map(|s| s.1);
        let mut reader = SplitReader::new(splits.collect(), policy, dead_letters);
        reader.planned = planned;
        Ok(reader)
    }

    /// The reader of `worker`'s share of `source`'s splits, which also asks
    /// `source` for new splits ([`SplitSource::discover`]) every `every` of
    /// processing time and reads its share of them: a topic's partitions
    /// added while the job runs.
    ///
    /// - New split `i` goes to worker `i % min(planned, peers)`, where
    ///   `planned` is the number of splits at the start: a worker that had
    ///   none has finished by then. A worker whose splits have all finished
    ///   has finished too, and a split dealt to it later is not read, so
    ///   discovery is for sources whose splits never finish (an unbounded
    ///   topic).
    /// - A new split holds the source's watermark where it is (it never
    ///   goes back) until its own watermark passes it, so its records older
    ///   than the watermark are late; a new split with no records holds it
    ///   until it gets some, or until it counts as idle
    ///   ([`WatermarkPolicy::idle_after`]).
    /// - A failed attempt is reported on stderr and tried again later.
    /// - Restored from a checkpoint, a split that the checkpoint has no
    ///   position of appeared after it, and starts from its beginning
    ///   ([`Split::seek_to_beginning`]).
    pub fn for_worker_discovering<P: SplitSource<Split = S>>(
        source: Arc<P>,
        worker: &WorkerInfo,
        policy: WatermarkPolicy,
        dead_letters: bool,
        every: Duration,
    ) -> Result<Self, PipelineError> {
        let mut reader = SplitReader::for_worker(&*source, worker, policy, dead_letters)?;
        let planned = reader.planned;
        reader.discovery = Some(Discovery {
            find: Box::new(move |known| source.discover(known)),
            every,
            last: None,
            known: planned,
            workers: planned.min(worker.peers).max(1),
            index: worker.index,
            failing: false,
        });
        Ok(reader)
    }

    /// Look for new splits if it is time to.
    fn discover(&mut self, now: Timestamp, name: &str) {
        let Some(d) = &mut self.discovery else { return };
        match d.last {
            Some(last) if now.since(last) < d.every => return,
            None => {
                // The plan is fresh when the reader starts.
                d.last = Some(now);
                return;
            }
            Some(_) => d.last = Some(now),
        }
        match (d.find)(d.known) {
            Ok(found) => {
                d.failing = false;
                let n = found.len();
                for (j, split) in found.into_iter().enumerate() {
                    if (d.known + j) % d.workers == d.index {
                        self.splits.push(Reading::new(split, &self.policy));
                    }
                }
                d.known += n;
            }
            Err(e) => {
                if !d.failing {
                    eprintln!("weir: {name}: looking for new splits failed (trying again every {}): {e}", d.every);
                }
                d.failing = true;
            }
        }
    }

    /// The ids of the splits this reader holds, finished ones included.
    pub fn split_ids(&self) -> Vec<String> {
        self.splits.iter().map(|s| s.id.clone()).collect()
    }

    /// Hand split `id` over: it leaves this reader (which no longer waits
    /// for it) together with its watermark estimator's state, to be
    /// [`add`](Self::add)ed to another worker's reader, which reads on from
    /// where this one stopped.
    pub fn remove(&mut self, id: &str) -> Option<HandedOver<S>> {
        let i = self.splits.iter().position(|s| s.id == id)?;
        let r = self.splits.remove(i);
        Some(HandedOver { split: r.split, estimator: r.estimator.save(), done: r.done })
    }

    /// Take over a split another reader [`remove`](Self::remove)d.
    pub fn add(&mut self, handed: HandedOver<S>) {
        let mut estimator = (self.policy.estimator)();
        estimator.load(&handed.estimator);
        let id = handed.split.id();
        self.splits.push(Reading {
            split: handed.split,
            id,
            estimator,
            last_data: None,
            idle: false,
            done: handed.done,
            published: None,
        });
    }

    fn read_one(&mut self, max_records: usize, cx: &mut OpContext<'_>) -> Result<bool, PipelineError> {
        let now = cx.processing_time;
        let live = self.splits.iter().filter(|s| !s.done).count();
        if live == 0 {
            return Ok(false);
        }
        let k = self.next % live;
        self.next = self.next.wrapping_add(1);
        let s = self.splits.iter_mut().filter(|s| !s.done).nth(k).expect("k < live");
        // Allocated here rather than right after the previous batch left:
        // by now the consumer has usually freed that batch, and the
        // allocator hands its (warm) memory back.
        self.records.clear();
        self.records.reserve(max_records.min(1 << 16));
        let mut out = SplitOutput { records: &mut self.records, dead: &mut self.dead, transform: cx.name };
        if s.split.read(max_records, &mut out)? == ReadResult::Done {
            s.done = true;
        }
        if s.estimator.max_is_enough() {
            if let Some(max) = self.records.iter().map(|v| v.timestamp).max() {
                s.estimator.observe(max);
            }
        } else {
            for v in &self.records {
                s.estimator.observe(v.timestamp);
            }
        }
        let any = !self.records.is_empty();
        if any {
            s.last_data = Some(now);
            s.idle = false;
        } else if s.last_data.is_none() {
            s.last_data = Some(now);
        }
        Ok(any)
    }
}

impl<S: Split> Source for SplitReader<S> {
    fn poll(&mut self, max_records: usize, cx: &mut OpContext<'_>) -> Result<SourceStatus, PipelineError> {
        let now = cx.processing_time;
        self.discover(now, cx.name);
        let any_data = self.read_one(max_records, cx)?;
        if let Some(after) = self.policy.idle_after {
            for s in &mut self.splits {
                if !s.done && s.last_data.is_some_and(|t| now.since(t) >= after) {
                    s.idle = true;
                }
            }
        }
        NodeCounters::add(&cx.counters.elements_out, self.records.len() as u64);
        cx.out.emit(0, std::mem::take(&mut self.records));
        if !self.dead.is_empty() {
            if !self.dead_letters {
                return Err(PipelineError::Internal(format!(
                    "{}: a split of a source without dead letters made one",
                    cx.name
                )));
            }
            NodeCounters::add(&cx.counters.dead_letters, self.dead.len() as u64);
            cx.out.emit(1, std::mem::take(&mut self.dead));
        }
        let from_splits = self.policy.from_splits;
        for s in &mut self.splits {
            let state = SplitState { watermark: s.watermark(from_splits), idle: s.idle, done: s.done };
            if s.published != Some(state) {
                cx.counters.publish_split(&s.id, state);
                s.published = Some(state);
            }
        }
        let mut active = self.splits.iter().filter(|s| !s.done && !s.idle).map(|s| s.watermark(from_splits)).peekable();
        let wm = if active.peek().is_some() {
            active.min().expect("non-empty")
        } else {
            // Every unfinished split is idle (or none is left): none holds the
            // watermark back.
            let idle = self.splits.iter().filter(|s| !s.done).map(|s| s.watermark(from_splits)).max();
            idle.unwrap_or(Timestamp::MAX)
        };
        self.watermark = self.watermark.max(wm);
        Ok(SourceStatus { watermark: self.watermark, idle: !any_data, processing_time: None })
    }

    fn position(&self) -> Option<SourcePosition> {
        let mut out = Vec::with_capacity(self.splits.len());
        for s in &self.splits {
            let stored = StoredPosition { done: s.done, split: s.split.position()?, estimator: s.estimator.save() };
            out.push((s.id.clone(), bincode::serialize(&stored).expect("encoding into memory")));
        }
        Some(out)
    }

    /// `position` may hold other readers' splits too (a run restored on
    /// another number of workers gives every reader every position); each
    /// of this reader's splits must be in it.
    fn seek(&mut self, position: &SourcePosition) -> OpResult {
        for s in self.splits.iter_mut().filter(|s| !position.iter().any(|(id, _)| *id == s.id)) {
            if self.discovery.is_none() {
                return Err(PipelineError::Checkpoint(format!(
                    "split {} has no position in the checkpoint: it was not planned by the run that took it",
                    s.id
                )));
            }
            // It appeared after the checkpoint.
            s.split.seek_to_beginning()?;
        }
        for (id, bytes) in position {
            let Some(s) = self.splits.iter_mut().find(|s| &s.id == id) else {
                continue; // another worker's split
            };
            let stored: StoredPosition = bincode::deserialize(bytes)
                .map_err(|e| PipelineError::Runner(format!("split {id}: unreadable position: {e}")))?;
            s.split.seek(&stored.split)?;
            s.estimator.load(&stored.estimator);
            s.done = stored.done;
        }
        Ok(())
    }

    /// Each of this reader's splits in `position` is told its position.
    fn checkpoint_committed(&mut self, position: &SourcePosition) -> OpResult {
        for (id, bytes) in position {
            let Some(s) = self.splits.iter_mut().find(|s| &s.id == id) else { continue };
            let stored: StoredPosition = bincode::deserialize(bytes)
                .map_err(|e| PipelineError::Runner(format!("split {id}: unreadable position: {e}")))?;
            s.split.committed(&stored.split)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyGroups;
    use crate::metrics::NodeCounters;
    use crate::operator::Emitter;

    /// Counts from `next` to `end`, one event per millisecond.
    struct Count {
        id: &'static str,
        start: u64,
        next: u64,
        end: u64,
    }

    impl Split for Count {
        type Item = u64;
        fn id(&self) -> String {
            self.id.into()
        }
        fn read(&mut self, max: usize, out: &mut SplitOutput<'_, u64>) -> Result<ReadResult, PipelineError> {
            while self.next < self.end && out.len() < max {
                out.push(self.next, Timestamp::from_millis(self.next as i64));
                self.next += 1;
            }
            Ok(if self.next == self.end { ReadResult::Done } else { ReadResult::Data })
        }
        fn position(&self) -> Option<Vec<u8>> {
            Some(self.next.to_le_bytes().to_vec())
        }
        fn seek(&mut self, at: &[u8]) -> OpResult {
            self.next = u64::from_le_bytes(at.try_into().map_err(|_| PipelineError::Runner("bad".into()))?);
            Ok(())
        }
        fn seek_to_beginning(&mut self) -> OpResult {
            self.next = self.start;
            Ok(())
        }
    }

    /// Poll `reader` once; the values read and the watermark.
    fn poll(reader: &mut SplitReader<Count>, max: usize) -> (Vec<u64>, Timestamp) {
        poll_at(reader, max, Timestamp::from_millis(0))
    }

    /// Poll `reader` once at processing time `now`.
    fn poll_at(reader: &mut SplitReader<Count>, max: usize, now: Timestamp) -> (Vec<u64>, Timestamp) {
        let counters = NodeCounters::default();
        let mut out = Emitter::new(1);
        let mut cx = OpContext {
            name: "Read",
            out: &mut out,
            input_watermarks: &[],
            processing_time: now,
            stage_output_watermark: Timestamp::MAX,
            counters: &counters,
            key_groups: KeyGroups::new(1, 1).unwrap(),
        };
        let status = reader.poll(max, &mut cx).unwrap();
        let values = out.drain(0).flat_map(|b| b.into_vec::<u64>().unwrap()).map(|v| v.value).collect();
        (values, status.watermark)
    }

    /// A topic whose partitions grow: partition `i` holds `100 * i` to
    /// `100 * i + 10`. Planned partitions are read from their middle (as
    /// from the latest offset), discovered ones from their beginning.
    struct Growing(std::sync::Mutex<usize>);

    const IDS: [&str; 4] = ["p0", "p1", "p2", "p3"];

    fn partition(i: usize, skip: u64) -> Count {
        let start = 100 * i as u64;
        Count { id: IDS[i], start, next: start + skip, end: start + 10 }
    }

    impl SplitSource for Growing {
        type Split = Count;
        fn splits(&self, _workers: usize) -> Result<Vec<Count>, PipelineError> {
            Ok((0..*self.0.lock().unwrap()).map(|i| partition(i, 5)).collect())
        }
        fn discover(&self, known: usize) -> Result<Vec<Count>, PipelineError> {
            Ok((known..*self.0.lock().unwrap()).map(|i| partition(i, 0)).collect())
        }
    }

    /// Splits that appear while readers run are found at the next look
    /// (not before) and dealt over the workers that had a split at the
    /// start (worker 2 of 3 had none and finished at once); a restored
    /// reader starts a split the checkpoint does not know from its
    /// beginning, not from where a planned split would start.
    #[test]
    fn a_discovering_reader_reads_its_share_of_new_splits() {
        let t = Timestamp::from_millis;
        let topic = Arc::new(Growing(std::sync::Mutex::new(2)));
        let every = Duration::from_millis(100);
        let reader = |i: usize, peers: usize| {
            let w = WorkerInfo::new(i, peers);
            SplitReader::for_worker_discovering(topic.clone(), &w, bounded(), false, every).unwrap()
        };
        let mut readers: Vec<SplitReader<Count>> = (0..3).map(|i| reader(i, 3)).collect();
        let mut read = vec![Vec::new(), Vec::new()];
        for (r, got) in readers.iter_mut().zip(&mut read) {
            got.extend(poll_at(r, 100, t(0)).0);
        }
        assert_eq!(read, vec![(5..10).collect::<Vec<_>>(), (105..110).collect()]);
        let (none, wm) = poll_at(&mut readers[2], 100, t(0));
        assert!(none.is_empty() && wm == Timestamp::MAX, "worker 2 has no split: it is done");
        *topic.0.lock().unwrap() = 4;
        let (none, _) = poll_at(&mut readers[0], 100, t(50));
        assert!(none.is_empty(), "not looked for before the interval: {none:?}");
        let at = readers[1].position().unwrap();
        for (r, got) in readers.iter_mut().zip(&mut read) {
            got.extend(poll_at(r, 100, t(100)).0);
        }
        assert_eq!(readers[0].split_ids(), vec!["p0", "p2"]);
        assert_eq!(readers[1].split_ids(), vec!["p1", "p3"]);
        let mut all: Vec<u64> = read.concat();
        all.sort_unstable();
        let expected: Vec<u64> = (5..10).chain(105..110).chain(200..210).chain(300..310).collect();
        assert_eq!(all, expected);
        // Worker 1 of 2, restored from a position taken before p3 appeared:
        // p3 (planned now, from 305) starts from its beginning; without
        // discovery that checkpoint is refused.
        let w = WorkerInfo::new(1, 2);
        let mut plain = SplitReader::for_worker(&*topic, &w, bounded(), false).unwrap();
        assert!(plain.seek(&at).is_err(), "a split the checkpoint does not know, and no discovery");
        let mut fresh = reader(1, 2);
        fresh.seek(&at).unwrap();
        let mut again = Vec::new();
        for _ in 0..4 {
            again.extend(poll_at(&mut fresh, 100, t(0)).0);
        }
        assert_eq!(again, (300..310).collect::<Vec<_>>(), "p1 was done at the checkpoint");
    }

    fn bounded() -> WatermarkPolicy {
        WatermarkPolicy::bounded_out_of_orderness(Duration::from_millis(2))
    }

    #[test]
    fn a_split_handed_to_another_reader_continues_exactly_where_it_stopped() {
        let mut a = SplitReader::new(vec![Count { id: "c", start: 0, next: 0, end: 10 }], bounded(), false);
        let mut b = SplitReader::new(Vec::new(), bounded(), false);
        let (first, wm) = poll(&mut a, 4);
        assert_eq!((first, wm), (vec![0, 1, 2, 3], Timestamp::from_millis(1)));
        let handed = a.remove("c").expect("a holds split c");
        assert!(a.split_ids().is_empty());
        b.add(handed);
        assert_eq!(b.split_ids(), vec!["c".to_string()]);
        let (rest, wm) = poll(&mut b, 100);
        assert_eq!(rest, (4..10).collect::<Vec<_>>());
        assert_eq!(wm, Timestamp::MAX, "the split is done");
    }

    #[test]
    fn positions_rewind_a_reader_and_the_watermark_follows() {
        let mut a = SplitReader::new(vec![Count { id: "c", start: 0, next: 0, end: 10 }], bounded(), false);
        poll(&mut a, 5);
        let at = a.position().expect("counts can say where they are");
        poll(&mut a, 3);
        let mut fresh = SplitReader::new(vec![Count { id: "c", start: 0, next: 0, end: 10 }], bounded(), false);
        fresh.seek(&at).unwrap();
        let (values, wm) = poll(&mut fresh, 3);
        assert_eq!((values, wm), (vec![5, 6, 7], Timestamp::from_millis(5)));
        assert!(fresh.seek(&vec![("c".to_string(), vec![1, 2])]).is_err(), "an unreadable position is an error");
    }

    #[test]
    fn the_watermark_is_the_minimum_over_active_splits_and_batch_waits_for_the_end() {
        let splits =
            || vec![Count { id: "a", start: 0, next: 0, end: 100 }, Count { id: "b", start: 50, next: 50, end: 100 }];
        let mut r = SplitReader::new(splits(), bounded(), false);
        poll(&mut r, 10); // a: 0..10
        poll(&mut r, 10); // b: 50..60
        let (_, wm) = poll(&mut r, 1); // a: 10
        assert_eq!(wm, Timestamp::from_millis(8), "a holds it back: 10 - 2");
        let mut batch = SplitReader::new(splits(), WatermarkPolicy::batch(), false);
        let mut wm = Timestamp::MIN;
        for _ in 0..3 {
            wm = poll(&mut batch, 30).1;
            assert_eq!(wm, Timestamp::MIN);
        }
        while wm < Timestamp::MAX {
            wm = poll(&mut batch, 1000).1;
        }
    }
}
