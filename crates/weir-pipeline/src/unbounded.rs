//! Unbounded sources defined by users: an [`UnboundedSource`] names its
//! splits (partitions) and reads them; the runtime's split reader
//! (`weir_runtime::split`) reads them in turn with a watermark estimator per
//! split, the source's watermark as the minimum over its splits, and
//! idleness: a split with no data for a configured processing time stops
//! holding the watermark back until data arrives again.

use std::sync::{Arc, Mutex};

use weir_model::{Timestamp, WindowingStrategy};
use weir_runtime::split::{ReadResult, Split, SplitOutput, SplitReader, SplitSource, WatermarkPolicy};

use crate::graph::{PCollection, Pipeline};
use weir_runtime::data::Data;
use weir_runtime::NodeKind;
use weir_runtime::{PipelineError, Source, WorkerInfo};

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
    /// The position of `split`, for checkpoints; `None` (the default) if
    /// the source cannot say.
    fn position(&self, split: &Self::Split) -> Option<Vec<u8>> {
        let _ = split;
        None
    }
    /// Move `split` to a [`position`](UnboundedSource::position).
    fn seek(&self, split: &mut Self::Split, position: &[u8]) -> Result<(), PipelineError> {
        let _ = (split, position);
        Err(PipelineError::Runner("this unbounded source cannot seek".to_string()))
    }
}

/// One split of an [`UnboundedSource`], as the runtime reads it.
struct UnboundedSplit<U: UnboundedSource> {
    source: Arc<U>,
    name: String,
    split: U::Split,
    buf: Vec<(U::Item, Timestamp)>,
}

impl<U: UnboundedSource> Split for UnboundedSplit<U> {
    type Item = U::Item;
    fn id(&self) -> String {
        self.name.clone()
    }
    fn read(&mut self, max: usize, out: &mut SplitOutput<'_, U::Item>) -> Result<ReadResult, PipelineError> {
        self.buf.clear();
        let result = self.source.read(&mut self.split, max, &mut self.buf);
        for (v, ts) in self.buf.drain(..) {
            match Timestamp::element(ts.millis()) {
                Ok(ts) => out.push(v, ts),
                Err(e) => return Err(out.error(format!("split {}: {e}", self.name))),
            }
        }
        Ok(result)
    }
    fn position(&self) -> Option<Vec<u8>> {
        self.source.position(&self.split)
    }
    fn seek(&mut self, position: &[u8]) -> Result<(), PipelineError> {
        self.source.seek(&mut self.split, position)
    }
}

struct Splits<U>(Arc<U>);

impl<U: UnboundedSource> SplitSource for Splits<U> {
    type Split = UnboundedSplit<U>;
    fn splits(&self, _workers: usize) -> Result<Vec<UnboundedSplit<U>>, PipelineError> {
        let source = &self.0;
        Ok(source
            .splits()
            .into_iter()
            .map(|(name, split)| UnboundedSplit { source: source.clone(), name, split, buf: Vec::new() })
            .collect())
    }
}

impl Pipeline {
    /// Read an [`UnboundedSource`] with a watermark policy. Records with
    /// timestamps outside the valid range fail the pipeline with the split's
    /// name.
    pub fn read_unbounded<U: UnboundedSource>(&self, source: U, policy: WatermarkPolicy) -> PCollection<U::Item> {
        let splits = Arc::new(Splits(Arc::new(source)));
        let idx = self.add_node(
            "ReadUnbounded",
            vec![],
            1,
            NodeKind::Source(Arc::new(move |w: &WorkerInfo| {
                // Planning cannot fail for an unbounded source: its splits are given.
                let reader = SplitReader::for_worker(&*splits, w, policy.clone(), false).expect("given splits");
                Box::new(reader) as Box<dyn Source>
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
