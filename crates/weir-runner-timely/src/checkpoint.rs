//! Checkpoints on the Timely runner.
//!
//! Epochs travel in the timestamp (`time`): every source instance moves
//! its capabilities from epoch `e` to `e + 1` when the process's ticker
//! says so, recording its split positions for `e`. An operator instance
//! processes its input epoch by epoch (later epochs wait in its stash);
//! once its input frontier has passed `e` it snapshots its state for `e`
//! and rebases its capabilities to `e + 1`. So every instance's entry for
//! `e` reflects exactly the input the sources emitted in epochs up to `e`:
//! a consistent cut, taken without stopping the dataflow or aligning
//! barriers by hand (timely's progress tracking does the alignment).
//!
//! Each worker gathers its instances' entries ([`WorkerCheckpoint`]) and,
//! once all are in for an epoch, hands the worker's state file to the
//! process's writer thread ([`Writer`]), which stores it with retries.
//! A per-worker ack operator holds a capability at the oldest epoch not yet
//! durable; a probe on the acks tells worker 0 of process 0 when an epoch
//! is durable everywhere, and the writer commits the checkpoint: manifest
//! (conditional create), then the transactional sinks, then retention.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use weir_checkpoint::{CheckpointStore, Checkpoints, JobId, NodeEntry, NodeState, Recovery, WorkerState};
use weir_runtime::{EpochCommit, Graph, PipelineError};

/// How a pipeline is checkpointed (see `TimelyRunner::with_checkpoints`).
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// Where checkpoints go.
    pub store: Arc<dyn CheckpointStore>,
    /// Time between checkpoints.
    pub interval: StdDuration,
    /// Complete checkpoints kept (at least 1; default 3).
    pub retain: usize,
    /// If checkpoints exist but none is usable: start from the beginning
    /// instead of refusing to run.
    pub start_over: bool,
    /// Keyed operators store only their changes since their previous
    /// snapshot (default), or every checkpoint is whole.
    pub incremental: bool,
    /// Operator snapshots of at least this many bytes in a local
    /// location are restored as they are read from their state file, not
    /// read into memory first (default `weir_checkpoint::IN_PLACE_ABOVE`).
    pub read_in_place_above: u64,
}

impl CheckpointConfig {
    /// Checkpoints every `interval` into `store`, keeping the last 3.
    pub fn new(store: Arc<dyn CheckpointStore>, interval: StdDuration) -> Self {
        CheckpointConfig {
            store,
            interval: interval.max(StdDuration::from_millis(1)),
            retain: 3,
            start_over: false,
            incremental: true,
            read_in_place_above: weir_checkpoint::IN_PLACE_ABOVE,
        }
    }
    /// Checkpoints every `interval` into the local directory `dir`.
    pub fn local(dir: impl Into<std::path::PathBuf>, interval: StdDuration) -> Self {
        CheckpointConfig::new(Arc::new(weir_checkpoint::LocalDir::new(dir)), interval)
    }
    /// Keep the last `n` complete checkpoints.
    pub fn retain(mut self, n: usize) -> Self {
        self.retain = n.max(1);
        self
    }
    /// Start from the beginning if no checkpoint is usable.
    pub fn start_over_if_unusable(mut self, yes: bool) -> Self {
        self.start_over = yes;
        self
    }
    /// Incremental checkpoints (the default): an operator that can tell
    /// which keys it changed stores only those between whole snapshots
    /// (see `weir_checkpoint::MAX_CHAIN`). `false`: every checkpoint whole.
    pub fn incremental(mut self, yes: bool) -> Self {
        self.incremental = yes;
        self
    }
    /// Restore operator snapshots of at least `bytes` bytes of a local
    /// location as they are read from their state files (state larger
    /// than memory); smaller ones are read into memory first.
    pub fn read_in_place_above(mut self, bytes: u64) -> Self {
        self.read_in_place_above = bytes;
        self
    }
}

/// `WEIR_DEBUG_CKPT` set: every entry recorded and checkpoint committed
/// is printed to stderr (for debugging the protocol).
fn debug() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WEIR_DEBUG_CKPT").is_some())
}

fn ck_err(e: weir_checkpoint::CheckpointError) -> PipelineError {
    PipelineError::Checkpoint(e.to_string())
}

/// What the run starts from, decided before any worker starts.
pub(crate) enum Start {
    Fresh,
    /// The job completed before: nothing to run.
    Completed,
    Resume(Resumed),
}

/// The checkpoint a run resumes from.
pub(crate) struct Resumed {
    pub epoch: u64,
    /// Workers of the run that took it.
    pub workers: usize,
    /// The number of workers its sources planned splits for.
    pub splits_for: usize,
    /// Every worker's state, by old worker index.
    pub states: Vec<WorkerState>,
}

/// Choose the start, log skipped checkpoints, bring the transactional
/// sinks in line with it, and remove what the crashed run left unfinished.
pub(crate) fn recover(
    cfg: &CheckpointConfig,
    job: &JobId,
    graph: &Graph,
    workers: usize,
    key_groups: u32,
    first_process: bool,
) -> Result<Start, PipelineError> {
    let checkpoints = Checkpoints::new(cfg.store.clone()).read_in_place_above(cfg.read_in_place_above);
    let commits: Vec<&Arc<dyn EpochCommit>> = graph.nodes.iter().filter_map(|n| n.commit.as_ref()).collect();
    let merge = |whole: Vec<u8>, changes: &[Vec<u8>]| {
        weir_runtime::KeyedSnapshot::merge_encoded(whole, changes).map_err(|e| e.to_string())
    };
    let started = Instant::now();
    match checkpoints.recover(job, cfg.start_over, &merge).map_err(ck_err)? {
        Recovery::Fresh => {
            if first_process {
                checkpoints.discard_after(None).map_err(ck_err)?;
                for c in commits {
                    c.recover(None)?;
                }
            }
            Ok(Start::Fresh)
        }
        Recovery::Completed(_) => {
            // The marker is written before the final commit: finish it.
            if first_process {
                for c in commits {
                    c.commit(u64::MAX)?;
                }
            }
            Ok(Start::Completed)
        }
        Recovery::Resume { manifest, mut states, skipped } => {
            if manifest.workers as usize != workers {
                // Every worker of a rescaled run reads every old snapshot:
                // those left in their files are read once, here.
                for state in &mut states {
                    for entry in &mut state.nodes {
                        if let NodeState::Stored { whole, changes } = &entry.state {
                            entry.state = NodeState::Operator(crate::dataflow::read_stored(whole, changes)?);
                        }
                    }
                }
            }
            for s in &skipped {
                eprintln!("weir: skipping checkpoint: {s}");
            }
            if manifest.key_groups != key_groups {
                return Err(PipelineError::Checkpoint(format!(
                    "checkpoint {} in {} was taken with {} key groups; this run has {key_groups}: keyed state \
                     cannot be mapped (set the pipeline's key groups to {} with Pipeline::with_max_key_groups or \
                     --max-key-groups)",
                    manifest.epoch,
                    checkpoints.location(),
                    manifest.key_groups,
                    manifest.key_groups
                )));
            }
            let rescaled = if manifest.workers as usize != workers {
                format!(", rescaled to {workers} workers")
            } else {
                String::new()
            };
            let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
            eprintln!(
                "weir: resuming from checkpoint {} in {} ({} workers{rescaled}); its {:.1} MB of state files \
                 (and the changes they build on) read and verified in {} ms",
                manifest.epoch,
                checkpoints.location(),
                manifest.workers,
                bytes as f64 / 1e6,
                started.elapsed().as_millis()
            );
            if first_process {
                checkpoints.discard_after(Some(manifest.epoch)).map_err(ck_err)?;
                for c in commits {
                    c.recover(Some(manifest.epoch))?;
                }
            }
            Ok(Start::Resume(Resumed {
                epoch: manifest.epoch,
                workers: manifest.workers as usize,
                splits_for: manifest.splits_for as usize,
                states,
            }))
        }
    }
}

/// What the writer thread does.
enum Job {
    /// Store a worker's state file, then mark it durable.
    State { local: usize, state: WorkerState },
    /// Every worker's state file of this epoch is durable: commit it.
    Commit(u64),
}

/// Where this process stands in the run.
pub(crate) struct Shape {
    /// Workers of this process.
    pub threads: usize,
    /// This process's index.
    pub process: usize,
    /// Workers of the run.
    pub workers: usize,
    /// Processes of the run.
    pub processes: usize,
    /// The pipeline's key groups.
    pub key_groups: u32,
}

/// What a worker restores its instances from.
pub(crate) enum WorkerRestore {
    /// Its own state: the checkpoint was taken with as many workers.
    Same(WorkerState),
    /// Every old worker's state: the checkpoint was taken with another
    /// number of workers (rescaling).
    Rescaled(Arc<Vec<WorkerState>>),
}

/// The process's checkpointing: epoch pacing, restored states, writer.
pub(crate) struct Checkpointer {
    pub interval: StdDuration,
    /// Whether operators may store only their changes.
    pub incremental: bool,
    /// The first epoch of this run.
    pub base: u64,
    /// Restored state by worker index (this process's workers), when the
    /// checkpoint had as many workers.
    restored: Mutex<BTreeMap<usize, WorkerState>>,
    /// Every old worker's state, when it had another number (rescaling).
    rescaled: Option<Arc<Vec<WorkerState>>>,
    /// The number of workers the sources plan splits for: the run's, or
    /// that of the checkpoint restored (see `WorkerInfo::splits_for`).
    pub splits_for: usize,
    /// Recorded in every manifest.
    shape: weir_checkpoint::RunShape,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Per local worker: epochs below this are durable (or failed).
    pub durable: Vec<AtomicU64>,
    /// Per local worker: how many of its state files could not be
    /// written; an operator that sees it move takes a whole snapshot next.
    pub failures: Vec<AtomicU64>,
    /// Per local worker: its ack operator, woken when `durable` moves.
    acks: Mutex<Vec<Option<timely::scheduling::SyncActivator>>>,
    checkpoints: Checkpoints,
    job: JobId,
    /// (epoch, milliseconds from the epoch's end to its commit, bytes).
    pub committed: Mutex<Vec<(u64, u64, u64)>>,
    /// When each epoch ended at this process's first source to leave it.
    ended: Mutex<BTreeMap<u64, Instant>>,
    /// The latest epoch a source of this process is in.
    latest: AtomicU64,
    /// One more than the newest epoch whose checkpoint is known to be
    /// committed (0: none): by this process's writer, or told by worker 0
    /// of the cluster.
    committed_upto: AtomicU64,
}

/// Attempts of a storage operation before a checkpoint is given up.
const ATTEMPTS: u32 = 4;

fn with_retries<T>(what: &str, mut f: impl FnMut() -> weir_checkpoint::Result<T>) -> weir_checkpoint::Result<T> {
    let mut wait = StdDuration::from_millis(50);
    let mut attempt = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS => {
                eprintln!("weir: {what} failed (attempt {attempt} of {ATTEMPTS}, retrying in {wait:?}): {e}");
                std::thread::sleep(wait);
                wait *= 4;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Checkpointer {
    pub fn start(
        cfg: &CheckpointConfig,
        job: JobId,
        graph: Arc<Graph>,
        shape: Shape,
        resume: Option<Resumed>,
    ) -> Arc<Checkpointer> {
        let Shape { threads, process, workers, processes, key_groups } = shape;
        let (mut base, mut restored, mut rescaled, mut splits_for) = (0, BTreeMap::new(), None, workers);
        if let Some(r) = resume {
            base = r.epoch + 1;
            splits_for = r.splits_for;
            if r.workers == workers {
                let local = process * threads..(process + 1) * threads;
                let mine = r.states.into_iter().filter(|s| local.contains(&(s.worker as usize)));
                restored = mine.map(|s| (s.worker as usize, s)).collect();
            } else {
                rescaled = Some(Arc::new(r.states));
            }
        }
        let run_shape = weir_checkpoint::RunShape {
            workers: workers as u32,
            processes: processes as u32,
            splits_for: splits_for as u32,
            key_groups,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let ck = Arc::new(Checkpointer {
            interval: cfg.interval,
            incremental: cfg.incremental,
            base,
            restored: Mutex::new(restored),
            rescaled,
            splits_for,
            shape: run_shape,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(None),
            durable: (0..threads).map(|_| AtomicU64::new(base)).collect(),
            failures: (0..threads).map(|_| AtomicU64::new(0)).collect(),
            acks: Mutex::new((0..threads).map(|_| None).collect()),
            checkpoints: Checkpoints::new(cfg.store.clone()),
            job,
            committed: Mutex::new(Vec::new()),
            ended: Mutex::new(BTreeMap::new()),
            latest: AtomicU64::new(base),
            committed_upto: AtomicU64::new(0),
        });
        let me = ck.clone();
        let retain = cfg.retain;
        let handle = std::thread::Builder::new()
            .name("weir-checkpoint-writer".into())
            .spawn(move || me.write_loop(rx, graph, retain))
            .expect("spawning the checkpoint writer");
        *ck.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        ck
    }

    fn write_loop(&self, rx: mpsc::Receiver<Job>, graph: Arc<Graph>, retain: usize) {
        // Per local worker: the epochs whose state file could not be written.
        let mut lost: Vec<std::collections::BTreeSet<u64>> =
            (0..self.durable.len()).map(|_| Default::default()).collect();
        for job in rx {
            match job {
                Job::State { local, state } => {
                    let epoch = state.epoch;
                    // Changes build on this worker's previous state file:
                    // if that one is not there, neither is this one usable.
                    let builds_on_lost = state
                        .nodes
                        .iter()
                        .any(|n| matches!(n.state, NodeState::Changes { since, .. } if lost[local].contains(&since)));
                    let written = if builds_on_lost {
                        Err(format!("it builds on checkpoint {}, which failed", epoch.saturating_sub(1)))
                    } else {
                        with_retries("writing a checkpoint", || self.checkpoints.write_state(&state))
                            .map_err(|e| e.to_string())
                    };
                    if let Err(e) = written {
                        eprintln!("weir: checkpoint {epoch} failed (the job goes on): {e}");
                        lost[local].insert(epoch);
                        // The next snapshots of this worker's operators are whole.
                        self.failures[local].fetch_add(1, Ordering::AcqRel);
                    }
                    self.durable[local].fetch_max(epoch + 1, Ordering::AcqRel);
                    if let Some(a) = &self.acks.lock().unwrap_or_else(|p| p.into_inner())[local] {
                        let _ = a.activate();
                    }
                }
                Job::Commit(epoch) => self.commit(epoch, &graph, retain),
            }
        }
    }

    fn commit(&self, epoch: u64, graph: &Graph, retain: usize) {
        let savepoint = self.checkpoints.savepoint_requested().unwrap_or(false);
        let committed = with_retries("committing a checkpoint", || {
            self.checkpoints.commit(epoch, &self.job, self.shape, savepoint)
        });
        match committed {
            Ok(Some(m)) => {
                self.learn_committed(epoch);
                if savepoint {
                    eprintln!("weir: checkpoint {epoch} is a savepoint, as asked: kept until removed by hand");
                    if let Err(e) = self.checkpoints.savepoint_taken() {
                        eprintln!("weir: removing the savepoint request failed: {e}");
                    }
                }
                let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner()).remove(&epoch);
                let ms = ended.map_or(0, |t| t.elapsed().as_millis() as u64);
                let bytes = m.files.iter().map(|f| f.size).sum();
                self.committed.lock().unwrap_or_else(|p| p.into_inner()).push((epoch, ms, bytes));
                if debug() {
                    eprintln!("ckpt committed {epoch} after {ms} ms, {bytes} bytes");
                }
            }
            Ok(None) => {
                eprintln!("weir: checkpoint {epoch} is incomplete (a state file could not be written): skipped");
                return;
            }
            Err(e) => {
                eprintln!("weir: checkpoint {epoch} could not be committed (the job goes on): {e}");
                return;
            }
        }
        for c in graph.nodes.iter().filter_map(|n| n.commit.as_ref()) {
            if let Err(e) = c.commit(epoch) {
                eprintln!("weir: committing the output of checkpoint {epoch} failed (retried at the next one): {e}");
            }
        }
        if let Err(e) = self.checkpoints.retain(retain) {
            eprintln!("weir: removing old checkpoints failed: {e}");
        }
    }

    /// Whether a source in epoch `epoch` may move to the next one: its
    /// interval has passed since it entered `epoch` (`entered`), and the
    /// previous epoch is durable on every worker of this process, so that
    /// at most one checkpoint per process is being written at a time (a
    /// checkpoint that takes longer than the interval stretches the next
    /// epoch rather than piling up).
    pub fn may_advance(&self, epoch: u64, entered: Instant) -> bool {
        entered.elapsed() >= self.interval && self.durable.iter().all(|d| d.load(Ordering::Acquire) >= epoch)
    }

    /// A source of this process left `epoch`.
    pub fn epoch_ended(&self, epoch: u64) {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).entry(epoch).or_insert_with(Instant::now);
        self.latest.fetch_max(epoch + 1, Ordering::AcqRel);
    }

    /// What worker `index` restores from, taken once.
    pub fn take_restored(&self, index: usize) -> Option<WorkerRestore> {
        if let Some(all) = &self.rescaled {
            return Some(WorkerRestore::Rescaled(all.clone()));
        }
        self.restored.lock().unwrap_or_else(|p| p.into_inner()).remove(&index).map(WorkerRestore::Same)
    }

    pub fn register_ack(&self, local: usize, a: timely::scheduling::SyncActivator) {
        self.acks.lock().unwrap_or_else(|p| p.into_inner())[local] = Some(a);
    }

    fn send(&self, job: Job) {
        if let Some(tx) = &*self.jobs.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = tx.send(job);
        }
    }

    /// The newest epoch whose checkpoint is known to be committed.
    pub fn committed_epoch(&self) -> Option<u64> {
        self.committed_upto.load(Ordering::Acquire).checked_sub(1)
    }

    /// Checkpoint `epoch` is committed (learnt from the cluster's committer).
    pub fn learn_committed(&self, epoch: u64) {
        self.committed_upto.fetch_max(epoch + 1, Ordering::AcqRel);
    }

    /// Every worker's state of `epoch` is durable: commit it (process 0).
    pub fn request_commit(&self, epoch: u64) {
        self.send(Job::Commit(epoch));
    }

    /// Wait for every write and commit asked so far.
    pub fn flush(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }

    /// The run completed: mark it, then commit every sink's remaining output.
    pub fn complete(&self, graph: &Graph) -> Result<(), PipelineError> {
        let last_epoch = self.latest.load(Ordering::Acquire);
        with_retries("marking the run completed", || self.checkpoints.mark_completed(&self.job, last_epoch))
            .map_err(ck_err)?;
        // State files of epochs after the last commit are of no use now.
        let last = self.committed.lock().unwrap_or_else(|p| p.into_inner()).last().map(|c| c.0);
        if let Some(last) = last {
            if let Err(e) = self.checkpoints.discard_after(Some(last)) {
                eprintln!("weir: removing partial checkpoints failed: {e}");
            }
        }
        for c in graph.nodes.iter().filter_map(|n| n.commit.as_ref()) {
            c.commit(u64::MAX)?;
        }
        Ok(())
    }
}

/// Waits for the writer when dropped.
pub(crate) struct FlushOnDrop(pub Arc<Checkpointer>);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// One worker's entries, gathered epoch by epoch.
pub(crate) struct WorkerCheckpoint {
    ck: Arc<Checkpointer>,
    worker: usize,
    local: usize,
    names: Vec<String>,
    /// Per node: its entries by epoch, and the epochs it has completed
    /// (entries for every epoch below `through`).
    entries: Vec<BTreeMap<u64, NodeEntry>>,
    /// Per node: the entry of a finished instance, valid from its epoch on.
    finished: Vec<Option<(u64, NodeEntry)>>,
    /// The next epoch to write.
    next: u64,
    /// The last epoch any node reached (for the completion marker).
    pub last_epoch: u64,
}

pub(crate) type SharedWorkerCheckpoint = Rc<RefCell<WorkerCheckpoint>>;

impl WorkerCheckpoint {
    pub fn new(ck: Arc<Checkpointer>, worker: usize, local: usize, graph: &Graph) -> SharedWorkerCheckpoint {
        let n = graph.nodes.len();
        Rc::new(RefCell::new(WorkerCheckpoint {
            next: ck.base,
            last_epoch: ck.base,
            ck,
            worker,
            local,
            names: graph.nodes.iter().map(|n| n.name.clone()).collect(),
            entries: (0..n).map(|_| BTreeMap::new()).collect(),
            finished: (0..n).map(|_| None).collect(),
        }))
    }

    pub fn checkpointer(&self) -> &Arc<Checkpointer> {
        &self.ck
    }

    /// Node `node`'s state after epoch `epoch` (or, `finished`, its final
    /// state, valid for every epoch from `epoch` on).
    pub fn record(&mut self, node: usize, epoch: u64, state: NodeState, finished: bool) {
        if debug() {
            let what = match &state {
                NodeState::Operator(b) => format!("{} bytes", b.len()),
                NodeState::Source(p) => format!("{p:?}"),
                NodeState::Changes { since, changes } => format!("{} bytes of changes since {since}", changes.len()),
                NodeState::Streamed(s) => format!("about {} bytes, streamed", s.size_hint()),
                NodeState::Stored { whole, .. } => format!("{} bytes in place", whole.len()),
            };
            eprintln!(
                "ckpt w{} node {node} ({}) epoch {epoch} finished {finished}: {what}",
                self.worker, self.names[node]
            );
        }
        let entry = NodeEntry { node: node as u32, name: self.names[node].clone(), finished, state };
        self.last_epoch = self.last_epoch.max(epoch);
        if finished {
            self.finished[node] = Some((epoch, entry));
        } else {
            self.entries[node].insert(epoch, entry);
        }
        self.write_ready();
    }

    /// The entry of finished `node` that stands for `epoch`, if it finished by then.
    fn finished_at(&self, node: usize, epoch: u64) -> Option<&NodeEntry> {
        self.finished[node].as_ref().filter(|(from, _)| *from <= epoch).map(|(_, e)| e)
    }

    /// Take `node`'s entry for `epoch` (a snapshot is moved, not copied).
    fn take_entry(&mut self, node: usize, epoch: u64) -> Option<NodeEntry> {
        let recorded = self.entries[node].remove(&epoch);
        match self.finished_at(node, epoch) {
            Some(e) => Some(e.clone()),
            None => recorded,
        }
    }

    /// Hand every epoch that all nodes have recorded to the writer.
    fn write_ready(&mut self) {
        loop {
            let epoch = self.next;
            // Once every node finished, no epoch after the last one is needed.
            if self.all_finished() && self.finished.iter().flatten().all(|(from, _)| *from <= epoch) {
                return;
            }
            let nodes = self.names.len();
            if !(0..nodes).all(|n| self.finished_at(n, epoch).is_some() || self.entries[n].contains_key(&epoch)) {
                return;
            }
            let nodes = (0..nodes).map(|n| self.take_entry(n, epoch).expect("checked just above")).collect();
            let state = WorkerState { epoch, worker: self.worker as u32, nodes };
            self.ck.send(Job::State { local: self.local, state });
            self.next += 1;
        }
    }

    /// Whether every node finished.
    pub fn all_finished(&self) -> bool {
        self.finished.iter().all(Option::is_some)
    }

    /// Every node finished and every state file handed over is durable:
    /// the ack operator may release its capability.
    pub fn done(&self) -> bool {
        self.all_finished() && self.ck.durable[self.local].load(Ordering::Acquire) >= self.next
    }

    /// How many of this worker's state files could not be written so far.
    pub fn failures(&self) -> u64 {
        self.ck.failures[self.local].load(Ordering::Acquire)
    }

    /// Epochs below this are durable on this worker.
    pub fn durable(&self) -> u64 {
        self.ck.durable[self.local].load(Ordering::Acquire)
    }
}
