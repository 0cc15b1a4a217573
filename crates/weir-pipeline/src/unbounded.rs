//! Unbounded sources: splits (partitions) read in turn, a watermark
//! estimator per split, the source's watermark as the minimum over its
//! splits, and idleness: a split with no data for a configured processing
//! time stops holding the watermark back until data arrives again.

use std::sync::{Arc, Mutex};

use weir_model::{Duration, Timestamp, WindowingStrategy};

use crate::data::{Data, WindowedValue};
use crate::graph::{NodeKind, PCollection, Pipeline};
use crate::operator::{NodeCounters, OpContext, Source, SourceStatus, SplitState, WorkerInfo};

/// What a read of one split returned.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// Some records were appended (possibly none for now).
    Data,
    /// The split has nothing to read right now.
    Idle,
    /// The split has no more data, ever.
    Done,
}

/// A source of unbounded (or bounded) data divided into splits, e.g. the
/// partitions of a topic. Splits are spread over the workers.
pub trait UnboundedSource: Send + Sync + 'static {
    /// The records.
    type Item: Data;
    /// One split's reading position.
    type Split: Send + 'static;
    /// The splits (called once per worker; worker `i` keeps splits
    /// `i, i + peers, …`). Each split has a stable name.
    fn splits(&self) -> Vec<(String, Self::Split)>;
    /// Append up to `max` records (with event timestamps) of `split` to `out`.
    fn read(&self, split: &mut Self::Split, max: usize, out: &mut Vec<(Self::Item, Timestamp)>) -> ReadResult;
}

/// Estimates a split's watermark from the timestamps it has read.
pub trait WatermarkEstimator: Send + 'static {
    /// A record with this timestamp was read.
    fn observe(&mut self, t: Timestamp);
    /// The split's watermark now.
    fn watermark(&self) -> Timestamp;
}

/// Watermark = the largest timestamp seen minus a fixed bound.
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
    fn watermark(&self) -> Timestamp {
        if self.max_seen == Timestamp::MIN {
            Timestamp::MIN
        } else {
            self.max_seen - self.bound
        }
    }
}

/// How a source's watermark is made.
#[derive(Clone)]
pub struct WatermarkPolicy {
    estimator: Arc<dyn Fn() -> Box<dyn WatermarkEstimator> + Send + Sync>,
    idle_after: Option<Duration>,
}

impl WatermarkPolicy {
    /// Bounded out-of-orderness per split, no idleness.
    pub fn bounded_out_of_orderness(bound: Duration) -> Self {
        WatermarkPolicy { estimator: Arc::new(move || Box::new(BoundedOutOfOrderness::new(bound))), idle_after: None }
    }
    /// Any estimator per split.
    pub fn with_estimator(make: impl Fn() -> Box<dyn WatermarkEstimator> + Send + Sync + 'static) -> Self {
        WatermarkPolicy { estimator: Arc::new(make), idle_after: None }
    }
    /// A split with no data for `d` of processing time stops holding the
    /// watermark back; it holds it again when data arrives.
    pub fn idle_after(mut self, d: Duration) -> Self {
        self.idle_after = Some(d);
        self
    }
}

struct SplitReader<S> {
    name: String,
    split: S,
    estimator: Box<dyn WatermarkEstimator>,
    last_data: Option<Timestamp>,
    idle: bool,
    done: bool,
}

struct UnboundedSourceOp<U: UnboundedSource> {
    source: Arc<U>,
    policy: WatermarkPolicy,
    splits: Vec<SplitReader<U::Split>>,
    next: usize,
    watermark: Timestamp,
    buf: Vec<(U::Item, Timestamp)>,
}

impl<U: UnboundedSource> Source for UnboundedSourceOp<U> {
    fn poll(&mut self, max_records: usize, cx: &mut OpContext<'_>) -> SourceStatus {
        let now = cx.processing_time;
        let live: Vec<usize> = (0..self.splits.len()).filter(|&i| !self.splits[i].done).collect();
        let mut out = Vec::new();
        let mut any_data = false;
        if !live.is_empty() {
            let i = live[self.next % live.len()];
            self.next = self.next.wrapping_add(1);
            let s = &mut self.splits[i];
            self.buf.clear();
            match self.source.read(&mut s.split, max_records, &mut self.buf) {
                ReadResult::Done => s.done = true,
                ReadResult::Idle | ReadResult::Data => {}
            }
            for (v, ts) in self.buf.drain(..) {
                match Timestamp::element(ts.millis()) {
                    Ok(ts) => {
                        s.estimator.observe(ts);
                        out.push(WindowedValue::in_global(v, ts));
                    }
                    Err(e) => cx.fail_with(format!("split {}: {e}", s.name)),
                }
            }
            if !out.is_empty() {
                any_data = true;
                s.last_data = Some(now);
                s.idle = false;
            } else if s.last_data.is_none() {
                s.last_data = Some(now);
            }
        }
        if let Some(after) = self.policy.idle_after {
            for s in &mut self.splits {
                if !s.done && s.last_data.is_some_and(|t| now.since(t) >= after) {
                    s.idle = true;
                }
            }
        }
        NodeCounters::add(&cx.counters.elements_out, out.len() as u64);
        cx.out.emit(0, out);
        for s in &self.splits {
            cx.counters.publish_split(
                &s.name,
                SplitState {
                    watermark: if s.done { Timestamp::MAX } else { s.estimator.watermark() },
                    idle: s.idle,
                    done: s.done,
                },
            );
        }
        let active: Vec<Timestamp> =
            self.splits.iter().filter(|s| !s.done && !s.idle).map(|s| s.estimator.watermark()).collect();
        let wm = if self.splits.iter().all(|s| s.done) {
            Timestamp::MAX
        } else if active.is_empty() {
            // Every split is idle: none holds the watermark back.
            self.splits.iter().filter(|s| !s.done).map(|s| s.estimator.watermark()).max().unwrap_or(Timestamp::MAX)
        } else {
            active.into_iter().min().expect("non-empty")
        };
        self.watermark = self.watermark.max(wm);
        SourceStatus { watermark: self.watermark, idle: !any_data, processing_time: None }
    }
}

impl Pipeline {
    /// Read an [`UnboundedSource`] with a watermark policy. Records with
    /// timestamps outside the valid range fail the pipeline with the split's
    /// name.
    pub fn read_unbounded<U: UnboundedSource>(&self, source: U, policy: WatermarkPolicy) -> PCollection<U::Item> {
        let source = Arc::new(source);
        let idx = self.add_node(
            "ReadUnbounded",
            vec![],
            1,
            NodeKind::Source(Arc::new(move |w: &WorkerInfo| {
                let splits = source
                    .splits()
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| i % w.peers == w.index)
                    .map(|(_, (name, split))| SplitReader {
                        name,
                        split,
                        estimator: (policy.estimator)(),
                        last_data: None,
                        idle: false,
                        done: false,
                    })
                    .collect();
                Box::new(UnboundedSourceOp {
                    source: source.clone(),
                    policy: policy.clone(),
                    splits,
                    next: 0,
                    watermark: Timestamp::MIN,
                    buf: Vec::new(),
                }) as Box<dyn Source>
            })),
        );
        self.collection(idx, 0, Arc::new(WindowingStrategy::default()))
    }
}

/// An in-memory unbounded source for tests and examples: each split is a
/// queue that producers can push to while the pipeline runs, and close.
#[derive(Clone, Default)]
pub struct QueueSource<T> {
    queues: Arc<Vec<(String, Mutex<QueueState<T>>)>>,
}

struct QueueState<T> {
    items: std::collections::VecDeque<(T, Timestamp)>,
    closed: bool,
}

impl<T: Data> QueueSource<T> {
    /// A source with the named splits.
    pub fn new(names: &[&str]) -> Self {
        QueueSource {
            queues: Arc::new(
                names
                    .iter()
                    .map(|n| (n.to_string(), Mutex::new(QueueState { items: Default::default(), closed: false })))
                    .collect(),
            ),
        }
    }
    /// Append a record to split `i`.
    pub fn push(&self, i: usize, value: T, ts: Timestamp) {
        self.queues[i].1.lock().unwrap_or_else(|p| p.into_inner()).items.push_back((value, ts));
    }
    /// No more data for split `i`.
    pub fn close(&self, i: usize) {
        self.queues[i].1.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
    }
}

impl<T: Data> UnboundedSource for QueueSource<T> {
    type Item = T;
    type Split = usize;
    fn splits(&self) -> Vec<(String, usize)> {
        self.queues.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect()
    }
    fn read(&self, split: &mut usize, max: usize, out: &mut Vec<(T, Timestamp)>) -> ReadResult {
        let mut q = self.queues[*split].1.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.items.len().min(max);
        out.extend(q.items.drain(..n));
        if n > 0 {
            ReadResult::Data
        } else if q.closed {
            ReadResult::Done
        } else {
            ReadResult::Idle
        }
    }
}
