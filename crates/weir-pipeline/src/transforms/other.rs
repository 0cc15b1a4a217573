//! Sources and structural transforms: `create`, `flatten`, `partition`,
//! `reshuffle`, `collect`, and [`TestStream`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use weir_model::{Duration, PaneInfo, Timestamp, Window, WindowingStrategy};

use crate::graph::{Collected, PCollection, Pipeline};
use weir_runtime::batch::Batch;
use weir_runtime::data::{Data, Key, WindowedValue};
use weir_runtime::split::{ReadResult, Split, SplitOutput, SplitReader, SplitSource, WatermarkPolicy};
use weir_runtime::{KeyGroups, NodeKind, PipelineError, Routing};
use weir_runtime::{NodeCounters, OpContext, OpResult, Operator, Rescale, Source, SourceStatus, WorkerInfo};

/// Share `index` of `shares` of a `create`'s items: items `index`,
/// `index + shares`, …; the splits of a [`Create`](Pipeline::create).
struct CreateShare<T> {
    items: Arc<Vec<(T, Timestamp)>>,
    index: usize,
    next: usize,
    step: usize,
}

impl<T: Data> Split for CreateShare<T> {
    type Item = T;
    fn id(&self) -> String {
        format!("create-{}", self.index)
    }
    fn read(&mut self, max: usize, out: &mut SplitOutput<'_, T>) -> Result<ReadResult, PipelineError> {
        while self.next < self.items.len() && out.len() < max {
            let (v, ts) = &self.items[self.next];
            out.push(v.clone(), *ts);
            self.next += self.step;
        }
        Ok(if self.next >= self.items.len() { ReadResult::Done } else { ReadResult::Data })
    }
    /// The index of the next item this share emits.
    fn position(&self) -> Option<Vec<u8>> {
        Some((self.next as u64).to_le_bytes().to_vec())
    }
    fn seek(&mut self, position: &[u8]) -> OpResult {
        let next = position.try_into().map(u64::from_le_bytes).map_err(|_| {
            PipelineError::Checkpoint(format!("{}: a position is 8 bytes, not {}", self.id(), position.len()))
        })?;
        self.next = next as usize;
        Ok(())
    }
}

/// A `create`'s items, one share per planned worker.
struct CreateShares<T>(Arc<Vec<(T, Timestamp)>>);

impl<T: Data> SplitSource for CreateShares<T> {
    type Split = CreateShare<T>;
    fn splits(&self, workers: usize) -> Result<Vec<CreateShare<T>>, PipelineError> {
        let step = workers.max(1);
        Ok((0..step).map(|index| CreateShare { items: self.0.clone(), index, next: index, step }).collect())
    }
}

impl Pipeline {
    /// A bounded collection of `items`, timestamped at `Timestamp::MIN`, in
    /// the global window. Items are spread over the workers.
    pub fn create<T: Data>(&self, items: impl IntoIterator<Item = T>) -> PCollection<T> {
        self.create_timestamped(items.into_iter().map(|v| (v, Timestamp::MIN)))
    }

    /// A bounded collection of timestamped `items` in the global window.
    pub fn create_timestamped<T: Data>(&self, items: impl IntoIterator<Item = (T, Timestamp)>) -> PCollection<T> {
        let items: Arc<Vec<(T, Timestamp)>> = Arc::new(items.into_iter().collect());
        let idx = self.add_node(
            "Create",
            vec![],
            1,
            NodeKind::Source(Arc::new(move |w: &WorkerInfo| {
                let shares = CreateShares(items.clone());
                // A bounded input: the watermark stays at its start until every item was read.
                let reader = SplitReader::for_worker(&shares, w, WatermarkPolicy::batch(), false);
                Box::new(reader.expect("planning shares cannot fail")) as Box<dyn Source>
            })),
        );
        self.collection(idx, 0, Arc::new(WindowingStrategy::default()))
    }

    /// Play a scripted [`TestStream`].
    pub fn test_stream<T: Data>(&self, stream: TestStream<T>) -> PCollection<T> {
        let simulated = stream.uses_processing_time();
        let events = Arc::new(stream.events);
        let idx = self.add_node(
            "TestStream",
            vec![],
            1,
            NodeKind::Source(Arc::new(move |w: &WorkerInfo| {
                Box::new(TestStreamSource {
                    events: events.clone(),
                    next: 0,
                    worker: w.index,
                    wm: Timestamp::MIN,
                    now: Timestamp::from_millis(0),
                }) as Box<dyn Source>
            })),
        );
        self.mark_scripted(idx);
        if simulated {
            self.mark_simulated_time(idx);
        }
        self.collection(idx, 0, Arc::new(WindowingStrategy::default()))
    }
}

/// One step of a [`TestStream`].
#[derive(Clone, Debug)]
pub enum TestEvent<T> {
    /// Elements with their timestamps.
    Elements(Vec<(T, Timestamp)>),
    /// The watermark moves to this time.
    Watermark(Timestamp),
    /// Processing time moves forward by this much.
    ProcessingTime(Duration),
    /// Processing time moves to this time (never backwards: an earlier
    /// time leaves it where it is).
    ProcessingTimeTo(Timestamp),
}

/// A scripted, deterministic stream for tests (Beam's `TestStream`):
/// elements, watermark advances and processing-time advances, in order. The
/// stream ends with the watermark at +infinity. Processing time starts at 0.
///
/// ```
/// use weir_pipeline::TestStream;
/// use weir_model::{Duration, Timestamp};
/// let s = TestStream::new()
///     .add_elements([("a".to_string(), Timestamp::from_millis(1))])
///     .advance_watermark_to(Timestamp::from_millis(10))
///     .advance_processing_time(Duration::from_secs(5));
/// assert_eq!(s.events().len(), 3);
/// ```
#[derive(Clone, Debug)]
pub struct TestStream<T> {
    events: Vec<TestEvent<T>>,
}

impl<T: Data> Default for TestStream<T> {
    fn default() -> Self {
        TestStream { events: Vec::new() }
    }
}

impl<T: Data> TestStream<T> {
    /// An empty script.
    pub fn new() -> Self {
        TestStream::default()
    }
    /// Add elements (one bundle).
    pub fn add_elements(mut self, items: impl IntoIterator<Item = (T, Timestamp)>) -> Self {
        self.events.push(TestEvent::Elements(items.into_iter().collect()));
        self
    }
    /// Move the watermark.
    pub fn advance_watermark_to(mut self, t: Timestamp) -> Self {
        self.events.push(TestEvent::Watermark(t));
        self
    }
    /// Move processing time forward.
    pub fn advance_processing_time(mut self, d: Duration) -> Self {
        self.events.push(TestEvent::ProcessingTime(d));
        self
    }
    /// Move processing time to `t` (absolute; processing time starts at 0).
    /// A time before the current one leaves processing time unchanged, as
    /// processing time never goes back.
    ///
    /// ```
    /// use weir_pipeline::TestStream;
    /// use weir_model::Timestamp;
    /// let s = TestStream::<u32>::new().advance_processing_time_to(Timestamp::from_millis(43_200_000));
    /// assert!(s.uses_processing_time());
    /// ```
    pub fn advance_processing_time_to(mut self, t: Timestamp) -> Self {
        self.events.push(TestEvent::ProcessingTimeTo(t));
        self
    }
    /// The script.
    pub fn events(&self) -> &[TestEvent<T>] {
        &self.events
    }
    /// Whether the script moves processing time.
    pub fn uses_processing_time(&self) -> bool {
        self.events.iter().any(|e| matches!(e, TestEvent::ProcessingTime(_) | TestEvent::ProcessingTimeTo(_)))
    }
}

struct TestStreamSource<T> {
    events: Arc<Vec<TestEvent<T>>>,
    next: usize,
    worker: usize,
    wm: Timestamp,
    now: Timestamp,
}

impl<T: Data> Source for TestStreamSource<T> {
    fn poll(&mut self, _max_records: usize, cx: &mut OpContext<'_>) -> Result<SourceStatus, PipelineError> {
        // The script plays on worker 0; the others hold nothing back.
        let mut status = SourceStatus { watermark: Timestamp::MAX, idle: false, processing_time: None };
        if self.worker != 0 {
            return Ok(status);
        }
        match self.events.get(self.next) {
            None => return Ok(status),
            Some(TestEvent::Elements(items)) => {
                let out: Vec<WindowedValue<T>> =
                    items.iter().map(|(v, ts)| WindowedValue::in_global(v.clone(), *ts)).collect();
                NodeCounters::add(&cx.counters.elements_out, out.len() as u64);
                cx.out.emit(0, out);
            }
            Some(TestEvent::Watermark(t)) => self.wm = self.wm.max(*t),
            Some(TestEvent::ProcessingTime(d)) => {
                self.now = self.now + *d;
                status.processing_time = Some(self.now);
            }
            Some(TestEvent::ProcessingTimeTo(t)) => {
                self.now = self.now.max(*t);
                status.processing_time = Some(self.now);
            }
        }
        self.next += 1;
        // The stream ends (watermark +inf) one poll after its last step, so
        // a final processing-time step happens before the end of input.
        status.watermark = self.wm;
        Ok(status)
    }

    /// The next step of the script, the watermark and processing time.
    fn position(&self) -> Option<weir_runtime::SourcePosition> {
        let bytes = [self.next as u64, self.wm.millis() as u64, self.now.millis() as u64];
        Some(vec![("test-stream".to_string(), bytes.iter().flat_map(|b| b.to_le_bytes()).collect())])
    }

    fn seek(&mut self, position: &weir_runtime::SourcePosition) -> OpResult {
        match position.as_slice() {
            [(id, bytes)] if id == "test-stream" && bytes.len() == 24 => {
                let at = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
                self.next = at(0) as usize;
                self.wm = Timestamp::from_millis(at(1) as i64);
                self.now = Timestamp::from_millis(at(2) as i64);
                Ok(())
            }
            _ => Err(PipelineError::Checkpoint(format!("not a position of a TestStream: {position:?}"))),
        }
    }
}

struct ForwardOp;

impl Operator for ForwardOp {
    /// Forwards each batch as it comes.
    fn stateless(&self) -> bool {
        true
    }

    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let n = batch.len() as u64;
        NodeCounters::add(&cx.counters.elements_in, n);
        NodeCounters::add(&cx.counters.elements_out, n);
        cx.out.emit_batch(0, batch);
        Ok(())
    }
}

/// `flatten`: merge collections of the same type.
pub trait FlattenExt<T: Data> {
    /// The union of this collection and `others` (this one's windowing).
    fn flatten_with(&self, others: &[PCollection<T>]) -> PCollection<T>;
}

impl<T: Data> FlattenExt<T> for PCollection<T> {
    fn flatten_with(&self, others: &[PCollection<T>]) -> PCollection<T> {
        let p = self.pipeline().clone();
        let mut inputs = vec![self.as_input(Routing::Forward)];
        inputs.extend(others.iter().map(|o| o.as_input(Routing::Forward)));
        let idx = p.add_node(
            "Flatten",
            inputs,
            1,
            NodeKind::Operator(Arc::new(|_: &WorkerInfo| Box::new(ForwardOp) as Box<dyn Operator>)),
        );
        p.collection(idx, 0, self.windowing().clone())
    }
}

struct PartitionOp<T, F> {
    n: usize,
    f: F,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Data, F: Fn(&T, usize) -> usize + Send> Operator for PartitionOp<T, F> {
    /// Element-wise: nothing is kept between elements.
    fn stateless(&self) -> bool {
        true
    }

    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let input = batch.into_vec::<T>()?;
        NodeCounters::add(&cx.counters.elements_in, input.len() as u64);
        NodeCounters::add(&cx.counters.elements_out, input.len() as u64);
        let mut parts: Vec<Vec<WindowedValue<T>>> = (0..self.n).map(|_| Vec::new()).collect();
        for v in input {
            let i = (self.f)(&v.value, self.n);
            match parts.get_mut(i) {
                Some(part) => part.push(v),
                None => {
                    return Err(cx.error(format!("partition function returned {i} for {} partitions", self.n)));
                }
            }
        }
        for (i, part) in parts.into_iter().enumerate() {
            cx.out.emit(i, part);
        }
        Ok(())
    }
}

/// `partition` and `reshuffle`.
pub trait PartitionExt<T: Data> {
    /// Split into `n` collections by `f(element, n)` (which must be `< n`).
    fn partition(
        &self,
        n: usize,
        f: impl Fn(&T, usize) -> usize + Clone + Send + Sync + 'static,
    ) -> Vec<PCollection<T>>;
    /// Redistribute elements evenly over the workers (round robin),
    /// keeping timestamps, windows and panes.
    fn reshuffle(&self) -> PCollection<T>;
}

impl<T: Data> PartitionExt<T> for PCollection<T> {
    fn partition(
        &self,
        n: usize,
        f: impl Fn(&T, usize) -> usize + Clone + Send + Sync + 'static,
    ) -> Vec<PCollection<T>> {
        let p = self.pipeline().clone();
        let idx = p.add_node(
            "Partition",
            vec![self.as_input(Routing::Forward)],
            n,
            NodeKind::Operator(Arc::new(move |_: &WorkerInfo| {
                Box::new(PartitionOp { n, f: f.clone(), _t: std::marker::PhantomData }) as Box<dyn Operator>
            })),
        );
        if n == 0 {
            p.record_error(&p.node_name(idx), "a partition needs at least one output");
        }
        (0..n).map(|i| p.collection(idx, i, self.windowing().clone())).collect()
    }

    fn reshuffle(&self) -> PCollection<T> {
        let p = self.pipeline().clone();
        let next = Arc::new(AtomicUsize::new(0));
        let routing = Routing::Partitioned(Arc::new(move |batch: Batch, groups: &KeyGroups| {
            let peers = groups.workers();
            let mut parts: Vec<Vec<WindowedValue<T>>> = (0..peers).map(|_| Vec::new()).collect();
            let start = next.fetch_add(1, Ordering::Relaxed);
            for (i, v) in batch.into_vec::<T>()?.into_iter().enumerate() {
                parts[(start + i) % peers].push(v);
            }
            Ok(parts.into_iter().map(Batch::new).collect())
        }));
        let idx = p.add_node(
            "Reshuffle",
            vec![self.as_input(routing)],
            1,
            NodeKind::Operator(Arc::new(|_: &WorkerInfo| Box::new(ForwardOp) as Box<dyn Operator>)),
        );
        p.collection(idx, 0, self.windowing().clone())
    }
}

/// `reshuffle_per_key`: send each key to the worker that owns it.
pub trait ReshuffleKeyExt<K: Key, V: Data> {
    /// Redistribute by key.
    fn reshuffle_per_key(&self) -> PCollection<(K, V)>;
}

impl<K: Key, V: Data> ReshuffleKeyExt<K, V> for PCollection<(K, V)> {
    fn reshuffle_per_key(&self) -> PCollection<(K, V)> {
        let p = self.pipeline().clone();
        let idx = p.add_node(
            "ReshufflePerKey",
            vec![self.as_input(Routing::by_key::<K, V>())],
            1,
            NodeKind::Operator(Arc::new(|_: &WorkerInfo| Box::new(ForwardOp) as Box<dyn Operator>)),
        );
        p.collection(idx, 0, self.windowing().clone())
    }
}

/// Keeps what this instance collected and hands a copy over when its
/// input is done. What it collected stays in its snapshots until the job
/// completes, so that a recovered run hands over every element exactly
/// once: at its own end, or, for an instance restored as finished (its
/// `finish` is not called again), when it is restored.
struct CollectOp<T> {
    into: Arc<Mutex<Vec<WindowedValue<T>>>>,
    mine: Vec<WindowedValue<T>>,
    /// `finish` was called: its copy was handed over.
    done: bool,
}

/// The format of a collect's snapshot.
const COLLECT_FORMAT: u32 = 1;

/// A collect's snapshot: format, whether it had finished, its elements.
type CollectSnapshot<T> = (u32, bool, Vec<WindowedValue<T>>);

impl<T: Data> CollectOp<T> {
    fn hand_over(&self) {
        self.into.lock().unwrap_or_else(|p| p.into_inner()).extend(self.mine.iter().cloned());
    }

    fn decode(bytes: &[u8]) -> Result<(bool, Vec<WindowedValue<T>>), PipelineError> {
        let (format, done, mine): CollectSnapshot<T> = bincode::deserialize(bytes)
            .map_err(|e| PipelineError::Checkpoint(format!("collect cannot restore this snapshot: {e}")))?;
        if format != COLLECT_FORMAT {
            return Err(PipelineError::Checkpoint(format!("a collect snapshot of format {format}")));
        }
        Ok((done, mine))
    }
}

impl<T: Data> Operator for CollectOp<T> {
    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let v = batch.into_vec::<T>()?;
        NodeCounters::add(&cx.counters.elements_in, v.len() as u64);
        self.mine.extend(v);
        Ok(())
    }

    fn finish(&mut self, _cx: &mut OpContext<'_>) -> OpResult {
        if !self.done {
            self.done = true;
            self.hand_over();
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>, PipelineError> {
        bincode::serialize(&(COLLECT_FORMAT, self.done, &self.mine))
            .map_err(|e| PipelineError::Internal(format!("serializing collected values: {e}")))
    }

    /// A finished instance is restored finished (the runner does not call
    /// `finish` again): hand its elements over now.
    fn restore(&mut self, bytes: &[u8]) -> OpResult {
        let (done, mine) = Self::decode(bytes)?;
        self.mine = mine;
        self.done = done;
        if done {
            self.hand_over();
        }
        Ok(())
    }

    /// The elements of the old instances this one owns. The runner restores
    /// it finished only if every old instance had finished; then it hands
    /// them over now, else at its own `finish`.
    fn restore_rescaled(&mut self, from: &Rescale<'_>) -> OpResult {
        let mut all_done = true;
        self.mine.clear();
        for (j, bytes) in from.snapshots.iter().enumerate() {
            let (done, mut mine) = Self::decode(bytes)?;
            all_done &= done;
            if from.owned.contains(&j) {
                self.mine.append(&mut mine);
            }
        }
        self.done = all_done;
        if all_done {
            self.hand_over();
        }
        Ok(())
    }
}

/// `collect`: gather a collection in memory (tests, small results).
pub trait CollectExt<T: Data> {
    /// Collect every element (with timestamp, window and pane); read it
    /// after the run. Every element goes to worker 0, so on a cluster the
    /// whole result is on process 0, and the other processes' `Collected`
    /// is empty.
    fn collect(&self) -> Collected<T>;
}

impl<T: Data> CollectExt<T> for PCollection<T> {
    fn collect(&self) -> Collected<T> {
        let c = Collected::default();
        let into = c.inner.clone();
        self.pipeline().add_node(
            "Collect",
            // Key hash 0 is in key group 0, which worker 0 owns.
            vec![self.as_input(Routing::by_hash::<T>(|_| 0))],
            0,
            NodeKind::Operator(Arc::new(move |_: &WorkerInfo| {
                Box::new(CollectOp { into: into.clone(), mine: Vec::new(), done: false }) as Box<dyn Operator>
            })),
        );
        c
    }
}

impl<T: Clone> Collected<T> {
    /// Every element in `window`, in arrival order.
    pub fn in_window(&self, window: Window) -> Vec<WindowedValue<T>> {
        self.windowed().into_iter().filter(|v| v.window == window).collect()
    }
    /// The value of the on-time pane of `window`, if there was one.
    pub fn on_time_pane(&self, window: Window) -> Option<T> {
        self.in_window(window).into_iter().find(|v| v.pane.timing == weir_model::Timing::OnTime).map(|v| v.value)
    }
    /// The value of the final pane (`is_last`) of `window`, if any.
    pub fn final_pane(&self, window: Window) -> Option<T> {
        self.in_window(window).into_iter().find(|v| v.pane.is_last).map(|v| v.value)
    }
    /// The values of the early panes of `window`, in pane order.
    pub fn early_panes(&self, window: Window) -> Vec<T> {
        self.panes_with(window, weir_model::Timing::Early)
    }
    /// The values of the late panes of `window`, in pane order.
    pub fn late_panes(&self, window: Window) -> Vec<T> {
        self.panes_with(window, weir_model::Timing::Late)
    }
    fn panes_with(&self, window: Window, timing: weir_model::Timing) -> Vec<T> {
        let mut v: Vec<(PaneInfo, T)> =
            self.in_window(window).into_iter().filter(|v| v.pane.timing == timing).map(|v| (v.pane, v.value)).collect();
        v.sort_by_key(|(p, _)| p.index);
        v.into_iter().map(|(_, t)| t).collect()
    }
}

/// A composite transform: a named piece of pipeline that expands into other
/// transforms, like Beam's `PTransform`. Apply it with
/// [`ApplyExt::apply`]; the transforms it adds are named `Name/…`.
///
/// ```
/// use weir_pipeline::prelude::*;
/// /// Counts the words of lines.
/// struct CountWords;
/// impl PTransform<String, (String, u64)> for CountWords {
///     fn name(&self) -> &str { "CountWords" }
///     fn expand(&self, lines: &PCollection<String>) -> PCollection<(String, u64)> {
///         lines
///             .flat_map(|l: String| l.split_whitespace().map(String::from).collect::<Vec<_>>())
///             .map(|w| (w, ()))
///             .count_per_key()
///     }
/// }
/// let p = Pipeline::new();
/// let counts = p.create(vec!["a b a".to_string()]).apply(CountWords).collect();
/// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
/// let mut got = counts.values();
/// got.sort();
/// assert_eq!(got, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
/// assert!(p.metrics().get("CountWords/CountPerKey").is_some());
/// ```
pub trait PTransform<I: Data, O: Data> {
    /// The name its transforms are grouped under.
    fn name(&self) -> &str;
    /// Build the transform's part of the pipeline.
    fn expand(&self, input: &PCollection<I>) -> PCollection<O>;
}

/// `apply`: use a composite transform.
pub trait ApplyExt<I: Data> {
    /// Expand `t` on this collection, naming its transforms `name/…`.
    fn apply<O: Data>(&self, t: impl PTransform<I, O>) -> PCollection<O>;
}

impl<I: Data> ApplyExt<I> for PCollection<I> {
    fn apply<O: Data>(&self, t: impl PTransform<I, O>) -> PCollection<O> {
        let p = self.pipeline().clone();
        let before = p.node_count();
        let out = t.expand(self);
        for i in before..p.node_count() {
            let name = p.node_name(i);
            p.rename_node(i, &format!("{}/{}", t.name(), name));
        }
        out
    }
}
