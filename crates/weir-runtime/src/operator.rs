//! The runner interface: what every runner executes. Each transform of a
//! pipeline becomes, on each worker, one [`Operator`] (or [`Source`]) that
//! consumes [`Batch`]es on its input ports, emits batches on its output
//! ports, and says how far it holds back the output watermark. Runners own
//! scheduling, routing between workers, watermarks and processing time.

use weir_model::Timestamp;

use crate::batch::Batch;
use crate::data::{Data, WindowedValue};
use crate::error::PipelineError;
use crate::keys::KeyGroups;
use crate::metrics::NodeCounters;

/// Where keyed operators keep their state while they run (checkpoints are
/// the same whatever the backend).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StateBackend {
    /// Every key's state in memory (the default).
    #[default]
    Memory,
    /// An on-disk LSM tree (fjall) under `dir`, with at most
    /// `resident_keys` keys per operator instance in memory: for state
    /// larger than memory. Each instance's store is scratch space (a fresh
    /// folder under `dir`, removed when the instance ends); recovery
    /// rebuilds it from the checkpoint.
    Lsm {
        /// Where the stores go.
        dir: std::path::PathBuf,
        /// Keys per operator instance kept in memory (at least 1).
        resident_keys: usize,
    },
}

/// Which worker an operator instance runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    /// This worker's index, `0..peers`.
    pub index: usize,
    /// Number of workers in the whole run (all processes).
    pub peers: usize,
    /// The number of workers sources plan their splits for
    /// ([`SplitSource::splits`](crate::split::SplitSource::splits)): `peers`,
    /// except in a run restored from a checkpoint taken with another number
    /// of workers, which keeps the plan of the run that started the job so
    /// that every split's stored position still applies. Split `i` is read
    /// by worker `i % peers` either way.
    pub splits_for: usize,
    /// Where keyed operators keep their state.
    pub state: StateBackend,
    /// Whether the run takes checkpoints (sinks then make their output
    /// visible when a checkpoint commits, not before).
    pub checkpointed: bool,
}

impl WorkerInfo {
    /// Worker `index` of `peers`, planning splits for `peers` workers,
    /// keeping state in memory.
    pub fn new(index: usize, peers: usize) -> Self {
        WorkerInfo { index, peers, splits_for: peers, state: StateBackend::Memory, checkpointed: false }
    }
}

/// What an operator restored on another number of workers than the run
/// that took the checkpoint (rescaling) is given: the snapshots of every
/// instance of the old run. Key groups are the same in both runs (a
/// checkpoint taken with other key groups is refused), so keyed state goes
/// to the worker that owns its key group now; state that belongs to no key
/// goes from old instance `j` to new worker `j % peers`
/// ([`owned`](Rescale::owned)), so that it is restored exactly once.
pub struct Rescale<'a> {
    /// Every old instance's snapshot, by old worker index.
    pub snapshots: &'a [&'a [u8]],
    /// The old instances whose non-keyed state this instance takes over.
    pub owned: Vec<usize>,
    /// This worker in the new run.
    pub worker: WorkerInfo,
    /// The key groups over the new run's workers.
    pub key_groups: KeyGroups,
}

impl Rescale<'_> {
    /// Whether this worker owns the state of a key with stable hash `hash`
    /// ([`key_hash`](crate::keys::key_hash)).
    pub fn owns(&self, hash: u64) -> bool {
        self.key_groups.worker_of(hash) == self.worker.index
    }
    /// Whether this worker owns key group `group`.
    pub fn owns_group(&self, group: u32) -> bool {
        self.key_groups.worker_of_group(group) == self.worker.index
    }
    /// The snapshots whose non-keyed state this instance takes over.
    pub fn owned_snapshots(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.owned.iter().map(|&j| self.snapshots[j])
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
    /// This transform's counters (written for observers only).
    pub counters: &'a NodeCounters,
    /// The pipeline's key groups over the run's workers: which key group a
    /// key's state belongs to.
    pub key_groups: KeyGroups,
}

impl OpContext<'_> {
    /// The input watermark: the minimum over all input ports.
    pub fn input_watermark(&self) -> Timestamp {
        self.input_watermarks.iter().copied().min().unwrap_or(Timestamp::MAX)
    }
    /// An execution error of this transform, to return from a hook: the
    /// runner stops the pipeline with it.
    pub fn error(&self, message: impl Into<String>) -> PipelineError {
        PipelineError::Execution { transform: self.name.to_string(), message: message.into() }
    }
}

/// What an operator hook returns: an error stops the pipeline.
pub type OpResult = Result<(), PipelineError>;

/// One instance of a transform on one worker.
///
/// The hooks are called one at a time, never concurrently. An error
/// returned from any of them stops the pipeline and is what `run` returns.
pub trait Operator: Send {
    /// A batch arrived on input `port`.
    fn process(&mut self, port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult;
    /// Input watermarks or processing time moved (see `cx`).
    fn advance(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        let _ = cx;
        Ok(())
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
    /// The operator stopped part way through a step too big to take in one
    /// call (firing the timers of millions of keys at the end of a global
    /// window), so that its output can flow downstream meanwhile: the
    /// runner calls [`advance`](Operator::advance) again soon, whether or
    /// not anything moved. Until the step is done the operator's
    /// [`hold`](Operator::hold) keeps the output watermark where it was.
    fn has_pending_work(&self) -> bool {
        false
    }
    /// The next processing time at which the operator wants `advance` called.
    fn next_wakeup(&self) -> Option<Timestamp> {
        None
    }
    /// Every input is done (watermark +inf) and everything was processed.
    fn finish(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        let _ = cx;
        Ok(())
    }
    /// The operator keeps no state between calls: checkpoints store
    /// nothing for it and recovery restores nothing. The default is
    /// `false`: an operator must say it is stateless, or snapshot.
    fn stateless(&self) -> bool {
        false
    }
    /// Checkpoint epoch `epoch` is complete at this operator: every input
    /// of epochs up to `epoch` was processed and nothing of later epochs
    /// yet. Returns the state to store for the epoch. The default
    /// snapshots the whole state with [`snapshot`](Operator::snapshot);
    /// an operator with a state backend that can snapshot incrementally,
    /// or a transactional sink that closes the epoch's pending output,
    /// overrides it.
    fn snapshot_epoch(&mut self, epoch: u64) -> Result<Vec<u8>, PipelineError> {
        let _ = epoch;
        self.snapshot()
    }
    /// A whole snapshot for epoch `epoch` that the checkpoint writer
    /// streams into the state file instead of holding it in memory (state
    /// larger than memory: an LSM store's consistent snapshot), or `None`
    /// to take [`snapshot_epoch`](Operator::snapshot_epoch) instead (the
    /// default). When it returns a stream, it stands for `snapshot_epoch`:
    /// the bytes streamed are those `snapshot_epoch` would have returned.
    fn snapshot_epoch_streamed(&mut self, epoch: u64) -> Result<Option<Box<dyn SnapshotStream>>, PipelineError> {
        let _ = epoch;
        Ok(None)
    }
    /// Incremental checkpoints: only what changed since the previous
    /// [`snapshot_epoch`](Operator::snapshot_epoch) or `snapshot_changes`
    /// call, as an encoded [`KeyedSnapshot`](crate::KeyedSnapshot) change set
    /// (written with [`KeyedWriter`](crate::keyed::KeyedWriter)), or
    /// `None` if the operator cannot tell (the runner then takes a whole
    /// snapshot). An operator that returns changes must take its whole
    /// [`snapshot`](Operator::snapshot) as an encoded `KeyedSnapshot`, so
    /// that recovery can fold the changes into it. The default: `None`.
    fn snapshot_changes(&mut self, epoch: u64) -> Result<Option<Vec<u8>>, PipelineError> {
        let _ = epoch;
        Ok(None)
    }
    /// The operator's whole state as bytes, for a checkpoint. Taken
    /// between calls, never during one. The default refuses: an operator
    /// that keeps state must snapshot it (or be [`stateless`](Operator::stateless)).
    fn snapshot(&self) -> Result<Vec<u8>, PipelineError> {
        Err(PipelineError::Runner(
            "this transform keeps state it cannot snapshot, so the pipeline cannot be checkpointed".to_string(),
        ))
    }
    /// Replace the operator's state with a [`snapshot`](Operator::snapshot)
    /// taken from an instance of the same transform.
    fn restore(&mut self, bytes: &[u8]) -> OpResult {
        let _ = bytes;
        Err(PipelineError::Runner("this operator is not snapshottable".to_string()))
    }
    /// Restore from a whole keyed snapshot read entry by entry (see
    /// [`KeyedReader`](crate::keyed::KeyedReader)) instead of held in
    /// memory: for state larger than memory. `Ok(false)` if the operator
    /// cannot (the default): the runner then reads the snapshot into
    /// memory and calls [`restore`](Operator::restore). An operator that
    /// reads from `snapshot` must restore from it completely.
    fn restore_keyed(&mut self, snapshot: &mut crate::keyed::KeyedReader<'_>) -> Result<bool, PipelineError> {
        let _ = snapshot;
        Ok(false)
    }
    /// Restore this instance from the snapshots of a run with another
    /// number of workers (see [`Rescale`]): keyed state of the key groups
    /// this worker owns, and the non-keyed state of the old instances it
    /// [owns](Rescale::owned). The default refuses.
    fn restore_rescaled(&mut self, from: &Rescale<'_>) -> OpResult {
        let _ = from;
        Err(PipelineError::Checkpoint("this transform cannot be restored on another number of workers".to_string()))
    }
}

/// A whole snapshot written where it is needed rather than held in
/// memory ([`Operator::snapshot_epoch_streamed`]): it reads a consistent
/// view of the operator's state taken when the epoch completed, on the
/// checkpoint writer's thread, as often as the writer retries.
pub trait SnapshotStream: Send {
    /// About how many bytes it holds, known at once (to decide when the
    /// next whole snapshot is due).
    fn size_hint(&self) -> u64;
    /// Exactly how many bytes [`write_to`](SnapshotStream::write_to)
    /// writes (it may read the whole view once to count).
    fn exact_len(&mut self) -> std::io::Result<u64>;
    /// Write the snapshot to `out`: exactly [`exact_len`](SnapshotStream::exact_len)
    /// bytes, the same each time it is called.
    fn write_to(&mut self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
}

/// An operator instance that could not be made (its factory failed: a
/// state store that would not open, a client that could not be created):
/// its first call fails the job with the error.
///
/// ```
/// use weir_runtime::{FailedOperator, Operator, PipelineError};
/// let op = FailedOperator(PipelineError::Runner("cannot open the store".into()));
/// assert!(op.snapshot().unwrap_err().to_string().contains("cannot open the store"));
/// ```
pub struct FailedOperator(pub PipelineError);

impl Operator for FailedOperator {
    fn process(&mut self, _port: usize, _batch: Batch, _cx: &mut OpContext<'_>) -> OpResult {
        Err(self.0.clone())
    }
    fn advance(&mut self, _cx: &mut OpContext<'_>) -> OpResult {
        Err(self.0.clone())
    }
    fn finish(&mut self, _cx: &mut OpContext<'_>) -> OpResult {
        Err(self.0.clone())
    }
    fn snapshot(&self) -> Result<Vec<u8>, PipelineError> {
        Err(self.0.clone())
    }
}

/// The second phase of a transactional output: what a sink wrote for an
/// epoch stays pending until the checkpoint covering that epoch is
/// committed; then the runner commits it. Registered on the sink's node
/// ([`Node::commit`](crate::Node::commit)); called by one process only.
pub trait EpochCommit: Send + Sync {
    /// Make visible everything pending for epochs up to `epoch`
    /// (idempotent: called again after a crash). `u64::MAX` once the
    /// run completed.
    fn commit(&self, epoch: u64) -> Result<(), PipelineError>;
    /// A run restores checkpoint `epoch` (`None`: starts from the
    /// beginning): commit what is pending up to it, discard the rest.
    fn recover(&self, epoch: Option<u64>) -> Result<(), PipelineError>;
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

/// Where a source is in its input: one encoded position per split it
/// reads, by split id. Stored in checkpoints; handed back to
/// [`Source::seek`] on recovery.
pub type SourcePosition = Vec<(String, Vec<u8>)>;

/// One instance of a source on one worker.
pub trait Source: Send {
    /// Emit up to about `max_records` on output 0 and report the watermark.
    fn poll(&mut self, max_records: usize, cx: &mut OpContext<'_>) -> Result<SourceStatus, PipelineError>;
    /// Where the source is: after a checkpoint's barrier, the position to
    /// rewind to on recovery. `None` if it cannot say (then a checkpoint
    /// of the pipeline cannot be taken).
    fn position(&self) -> Option<SourcePosition> {
        None
    }
    /// Rewind or forward to a [`position`](Source::position) taken from
    /// the same source of the same pipeline.
    fn seek(&mut self, position: &SourcePosition) -> OpResult {
        let _ = position;
        Err(PipelineError::Runner("this source cannot seek".to_string()))
    }
    /// A checkpoint holding `position` (a [`position`](Source::position)
    /// this instance gave at the end of an epoch) completed: the job will
    /// never read again what came before it, so the source may acknowledge
    /// it upstream (JetStream acks, Kafka consumer-group offsets for lag
    /// tools). Called on the instance's worker, oldest first, for the
    /// newest completed checkpoint it knows of (some may be skipped); never
    /// before the checkpoint's manifest is committed, and not at all in a
    /// run without checkpoints. The default does nothing.
    fn checkpoint_committed(&mut self, position: &SourcePosition) -> OpResult {
        let _ = position;
        Ok(())
    }
}
