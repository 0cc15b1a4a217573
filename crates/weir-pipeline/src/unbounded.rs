//! Unbounded sources defined by users: an [`UnboundedSource`] names its
//! splits (partitions) and reads them; the runtime's split reader
//! (`weir_runtime::split`) reads them in turn with a watermark estimator per
//! split, the source's watermark as the minimum over its splits, and
//! idleness: a split with no data for a configured processing time stops
//! holding the watermark back until data arrives again.

use std::sync::{Arc, Mutex};

use weir_model::{Timestamp, WindowingStrategy};
use weir_runtime::split::{DeadLetter, ReadResult, Split, SplitOutput, SplitReader, SplitSource, WatermarkPolicy};

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
    /// Read up to about `max` records of `split` into `out`, each with its
    /// event timestamp ([`SourceOutput::push`]); a record that cannot be
    /// decoded goes to the dead letters ([`SourceOutput::dead_letter`]).
    fn read(&self, split: &mut Self::Split, max: usize, out: &mut SourceOutput<'_, '_, Self::Item>) -> ReadResult;
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

/// Where an [`UnboundedSource`] puts what it read: records with their
/// event timestamps, and dead letters (records it cannot decode, counted
/// and sent to the dead-letter output of
/// [`read_unbounded_with_dead_letters`](Pipeline::read_unbounded_with_dead_letters)).
pub struct SourceOutput<'a, 'b, T> {
    out: &'a mut SplitOutput<'b, T>,
    split: &'a str,
    error: Option<PipelineError>,
}

impl<T> SourceOutput<'_, '_, T> {
    /// A record with its event timestamp. A timestamp outside the valid
    /// range fails the job, naming the split.
    pub fn push(&mut self, value: T, timestamp: Timestamp) {
        match Timestamp::element(timestamp.millis()) {
            Ok(t) => self.out.push(value, t),
            Err(e) => {
                let message = format!("split {}: {e}", self.split);
                self.error.get_or_insert_with(|| self.out.error(message));
            }
        }
    }
    /// A record that cannot be decoded: `record` (as text) and why.
    pub fn dead_letter(&mut self, record: impl Into<String>, reason: impl Into<String>) {
        self.out.dead_letter(DeadLetter { file: self.split.to_string(), line: record.into(), reason: reason.into() });
    }
    /// Records pushed so far in this read.
    pub fn len(&self) -> usize {
        self.out.len()
    }
    /// Whether nothing was pushed yet in this read.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }
}

/// One split of an [`UnboundedSource`], as the runtime reads it.
struct UnboundedSplit<U: UnboundedSource> {
    source: Arc<U>,
    name: String,
    split: U::Split,
}

impl<U: UnboundedSource> Split for UnboundedSplit<U> {
    type Item = U::Item;
    fn id(&self) -> String {
        self.name.clone()
    }
    fn read(&mut self, max: usize, out: &mut SplitOutput<'_, U::Item>) -> Result<ReadResult, PipelineError> {
        let mut out = SourceOutput { out, split: &self.name, error: None };
        let result = self.source.read(&mut self.split, max, &mut out);
        match out.error {
            Some(e) => Err(e),
            None => Ok(result),
        }
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
            .map(|(name, split)| UnboundedSplit { source: source.clone(), name, split })
            .collect())
    }
}

impl Pipeline {
    /// Read an [`UnboundedSource`] with a watermark policy. Records with
    /// timestamps outside the valid range fail the pipeline with the split's
    /// name. Dead letters are counted (the transform's `dead_letters`
    /// counter) and dropped: to keep them, use
    /// [`read_unbounded_with_dead_letters`](Pipeline::read_unbounded_with_dead_letters).
    pub fn read_unbounded<U: UnboundedSource>(&self, source: U, policy: WatermarkPolicy) -> PCollection<U::Item> {
        self.read_unbounded_with_dead_letters(source, policy).0
    }

    /// [`read_unbounded`](Pipeline::read_unbounded), and the records the
    /// source could not decode ([`SourceOutput::dead_letter`]).
    pub fn read_unbounded_with_dead_letters<U: UnboundedSource>(
        &self,
        source: U,
        policy: WatermarkPolicy,
    ) -> (PCollection<U::Item>, PCollection<DeadLetter>) {
        let splits = Arc::new(Splits(Arc::new(source)));
        let idx = self.add_node(
            "ReadUnbounded",
            vec![],
            2,
            NodeKind::Source(Arc::new(move |w: &WorkerInfo| {
                // Planning cannot fail for an unbounded source: its splits are given.
                let reader = SplitReader::for_worker(&*splits, w, policy.clone(), true).expect("given splits");
                Box::new(reader) as Box<dyn Source>
            })),
        );
        let strategy = Arc::new(WindowingStrategy::default());
        (self.collection(idx, 0, strategy.clone()), self.collection(idx, 1, strategy))
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
    fn read(&self, split: &mut usize, max: usize, out: &mut SourceOutput<'_, '_, T>) -> ReadResult {
        let mut q = self.queues[*split].1.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.items.len().min(max);
        for (v, t) in q.items.drain(..n) {
            out.push(v, t);
        }
        if n > 0 {
            ReadResult::Data
        } else if q.closed {
            ReadResult::Done
        } else {
            ReadResult::Idle
        }
    }
}
