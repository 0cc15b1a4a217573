//! The runner interface: what every runner executes. Each transform of a
//! pipeline becomes, on each worker, one [`Operator`] (or [`Source`]) that
//! consumes [`Batch`]es on its input ports, emits batches on its output
//! ports, and says how far it holds back the output watermark. Runners own
//! scheduling, routing between workers, watermarks and processing time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use weir_model::Timestamp;

use crate::batch::Batch;
use crate::data::{Data, WindowedValue};
use crate::error::PipelineError;

/// Which worker an operator instance runs on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    /// This worker's index, `0..peers`.
    pub index: usize,
    /// Number of workers in the whole run (all processes).
    pub peers: usize,
}

/// Live counters of one transform, shared by all its workers.
#[derive(Debug, Default)]
pub struct NodeCounters {
    /// Elements received.
    pub elements_in: AtomicU64,
    /// Elements emitted.
    pub elements_out: AtomicU64,
    /// Elements dropped because their window had expired.
    pub dropped_expired: AtomicU64,
    /// Elements dropped because their window's trigger had finished.
    pub dropped_closed: AtomicU64,
    /// Elements that could not be processed and went to a dead-letter output.
    pub dead_letters: AtomicU64,
    /// Per worker: live state cells and pending timers (stateful transforms).
    pub state: Mutex<BTreeMap<usize, (u64, u64)>>,
    /// Per worker: (input watermark, output watermark), as last published.
    pub watermarks: Mutex<BTreeMap<usize, (Timestamp, Timestamp)>>,
    /// Per split of a source: its watermark and whether it is idle.
    pub splits: Mutex<BTreeMap<String, SplitState>>,
}

/// The state of one split of a source, for introspection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SplitState {
    /// The split's watermark.
    pub watermark: Timestamp,
    /// Idle splits do not hold the source's watermark back.
    pub idle: bool,
    /// The split has no more data.
    pub done: bool,
}

/// A snapshot of [`NodeCounters`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Elements received.
    pub elements_in: u64,
    /// Elements emitted.
    pub elements_out: u64,
    /// Dropped: expired window.
    pub dropped_expired: u64,
    /// Dropped: closed window.
    pub dropped_closed: u64,
    /// Sent to a dead-letter output.
    pub dead_letters: u64,
    /// Live state cells, over all workers of this process.
    pub state_cells: u64,
    /// Pending timers, over all workers of this process.
    pub pending_timers: u64,
}

impl NodeCounters {
    /// Read every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (state_cells, pending_timers) = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.values().fold((0, 0), |(c, t), s| (c + s.0, t + s.1))
        };
        CounterSnapshot {
            elements_in: r(&self.elements_in),
            elements_out: r(&self.elements_out),
            dropped_expired: r(&self.dropped_expired),
            dropped_closed: r(&self.dropped_closed),
            dead_letters: r(&self.dead_letters),
            state_cells,
            pending_timers,
        }
    }
    /// Publish a worker's input and output watermark.
    pub fn publish_watermarks(&self, worker: usize, input: Timestamp, output: Timestamp) {
        self.watermarks.lock().unwrap_or_else(|p| p.into_inner()).insert(worker, (input, output));
    }
    /// Publish the state of a source's split.
    pub fn publish_split(&self, split: &str, state: SplitState) {
        let mut splits = self.splits.lock().unwrap_or_else(|p| p.into_inner());
        match splits.get_mut(split) {
            Some(s) => *s = state,
            None => {
                splits.insert(split.to_string(), state);
            }
        }
    }
    /// Publish a worker's live state cells and pending timers.
    pub fn publish_state(&self, worker: usize, cells: u64, timers: u64) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).insert(worker, (cells, timers));
    }
    /// Add to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Where an operator's output goes during one call: one list of batches per
/// output port, drained by the runner afterwards.
#[derive(Debug, Default)]
pub struct Emitter {
    ports: Vec<Vec<Batch>>,
}

impl Emitter {
    /// An emitter with `ports` output ports.
    pub fn new(ports: usize) -> Self {
        Emitter { ports: (0..ports).map(|_| Vec::new()).collect() }
    }
    /// Emit values on `port`.
    pub fn emit<T: Data>(&mut self, port: usize, values: Vec<WindowedValue<T>>) {
        if !values.is_empty() {
            self.ports[port].push(Batch::new(values));
        }
    }
    /// Emit a batch on `port`.
    pub fn emit_batch(&mut self, port: usize, batch: Batch) {
        if !batch.is_empty() {
            self.ports[port].push(batch);
        }
    }
    /// Take everything emitted on `port`.
    pub fn drain(&mut self, port: usize) -> std::vec::Drain<'_, Batch> {
        self.ports[port].drain(..)
    }
    /// Number of output ports.
    pub fn ports(&self) -> usize {
        self.ports.len()
    }
    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.ports.iter().all(Vec::is_empty)
    }
}

/// What an operator sees and uses during one call.
pub struct OpContext<'a> {
    /// The transform's name (for messages).
    pub name: &'a str,
    /// Output batches.
    pub out: &'a mut Emitter,
    /// The input watermark of every input port.
    pub input_watermarks: &'a [Timestamp],
    /// The current processing time.
    pub processing_time: Timestamp,
    /// The output watermark of this transform over all its instances:
    /// `min(input watermark, every instance's hold)`, as far as the runner
    /// knows it (the Timely runner shares holds between the workers of a
    /// process); `Timestamp::MAX` when this instance is the only one.
    pub stage_output_watermark: Timestamp,
    /// This transform's counters.
    pub counters: &'a NodeCounters,
    /// The first fatal error reported (the runner stops the pipeline).
    pub error: &'a Mutex<Option<PipelineError>>,
}

impl OpContext<'_> {
    /// The input watermark: the minimum over all input ports.
    pub fn input_watermark(&self) -> Timestamp {
        self.input_watermarks.iter().copied().min().unwrap_or(Timestamp::MAX)
    }
    /// Report a fatal execution error of this transform.
    pub fn fail_with(&self, message: impl Into<String>) {
        self.fail(PipelineError::Execution { transform: self.name.to_string(), message: message.into() })
    }
    /// Report a fatal error; the runner stops the pipeline and returns it.
    pub fn fail(&self, e: PipelineError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }
}

/// One instance of a transform on one worker.
pub trait Operator: Send {
    /// A batch arrived on input `port`.
    fn process(&mut self, port: usize, batch: Batch, cx: &mut OpContext<'_>);
    /// Input watermarks or processing time moved (see `cx`).
    fn advance(&mut self, cx: &mut OpContext<'_>) {
        let _ = cx;
    }
    /// The operator will emit nothing non-late before this time: the output
    /// watermark is `min(input watermark, hold())`.
    fn hold(&self) -> Timestamp {
        Timestamp::MAX
    }
    /// Whether the operator reads [`OpContext::stage_output_watermark`]
    /// (groupings do: it decides pane timing). A runner with several
    /// instances per stage then keeps them in step: no instance processes
    /// input sent at a watermark that another instance has not reached yet.
    fn uses_stage_watermark(&self) -> bool {
        false
    }
    /// The next processing time at which the operator wants `advance` called.
    fn next_wakeup(&self) -> Option<Timestamp> {
        None
    }
    /// Every input is done (watermark +inf) and everything was processed.
    fn finish(&mut self, cx: &mut OpContext<'_>) {
        let _ = cx;
    }
    /// The operator's whole state as bytes, for a checkpoint; `None` if it
    /// cannot be snapshotted. Taken between calls, never during one.
    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }
    /// Replace the operator's state with a [`snapshot`](Operator::snapshot)
    /// taken from an instance of the same transform.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), PipelineError> {
        let _ = bytes;
        Err(PipelineError::Runner("this operator is not snapshottable".to_string()))
    }
}

/// What a source reports after a poll.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SourceStatus {
    /// The source's watermark (`Timestamp::MAX` when it is done).
    pub watermark: Timestamp,
    /// Nothing to read right now (the runner may wait before polling again).
    pub idle: bool,
    /// A scripted source (TestStream) asks to move processing time.
    pub processing_time: Option<Timestamp>,
}

/// One instance of a source on one worker.
pub trait Source: Send {
    /// Emit up to about `max_records` on output 0 and report the watermark.
    fn poll(&mut self, max_records: usize, cx: &mut OpContext<'_>) -> SourceStatus;
}
