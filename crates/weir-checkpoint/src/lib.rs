//! # weir-checkpoint
//!
//! Checkpoint storage for Weir's fault-tolerant local state.
//!
//! A checkpoint of epoch `e` is a folder `chk-<e>/` holding one state file
//! per worker (every operator's state and every source's positions on that
//! worker, taken when epoch `e` completed there) and, written last, a
//! `MANIFEST` created with an atomic conditional create: a checkpoint
//! without a manifest is partial and never restored. Every file carries a
//! format version and a checksum ([`format`]). A run that completed leaves
//! a `COMPLETED` marker.
//!
//! [`Checkpoints`] writes, commits, selects for recovery (skipping partial
//! or corrupt checkpoints, refusing another job's location), lists and
//! retains checkpoints over any [`CheckpointStore`].

#![warn(missing_docs)]

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_runtime::SnapshotStream;

pub mod error;
pub mod format;
mod inplace;
mod store;

pub use error::{CheckpointError, Result};
use format::Kind;
pub use inplace::Blob;
pub use store::{CheckpointStore, LocalDir};

/// The state of one transform instance in a worker's state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// An operator's snapshot.
    Operator(#[serde(with = "as_bytes")] Vec<u8>),
    /// A source's position: one encoded position per split id.
    Source(Vec<(String, Vec<u8>)>),
    /// An operator's changes since its entry of epoch `since` in the
    /// same worker's state file (an incremental checkpoint); recovery
    /// folds the chain back to a whole [`Operator`](NodeState::Operator)
    /// snapshot ([`Checkpoints::load_all`]).
    Changes {
        /// The epoch of the entry these changes apply to.
        since: u64,
        /// The changes, in the operator's encoding.
        #[serde(with = "as_bytes")]
        changes: Vec<u8>,
    },
    /// A whole operator snapshot streamed from the operator's store into
    /// the state file as it is written (state larger than memory): on
    /// disk exactly an [`Operator`](NodeState::Operator) entry, and read
    /// back as one. Written only by [`Checkpoints::write_state`]. (Last,
    /// so that the other variants keep their tags.)
    #[serde(skip)]
    Streamed(Streamed),
    /// A big operator snapshot left where it lies in a local state file
    /// (read when restored, so that a state larger than memory is never
    /// held whole), with the change sets to fold into it, oldest first:
    /// what recovery gives for an [`Operator`](NodeState::Operator) entry
    /// or a chain that ends in one. Never written.
    #[serde(skip)]
    Stored {
        /// The whole snapshot (an encoded keyed snapshot for an
        /// incremental operator).
        whole: Blob,
        /// The changes since, oldest first.
        changes: Vec<Vec<u8>>,
    },
}

/// A [`SnapshotStream`] shared between the worker that took it and the
/// checkpoint writer (which may write it more than once: retries).
#[derive(Clone)]
pub struct Streamed {
    stream: Arc<std::sync::Mutex<Box<dyn SnapshotStream>>>,
    /// Its exact length once the writer counted it (0 before).
    len: Arc<std::sync::atomic::AtomicU64>,
}

impl Streamed {
    /// Share `stream`.
    pub fn new(stream: Box<dyn SnapshotStream>) -> Self {
        Streamed { stream: Arc::new(std::sync::Mutex::new(stream)), len: Default::default() }
    }
    /// About how many bytes it holds.
    pub fn size_hint(&self) -> u64 {
        self.lock().size_hint()
    }
    /// Where its exact length goes once written (0 before); holding it
    /// does not keep the stream.
    pub fn exact_len_cell(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.len.clone()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn SnapshotStream>> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn exact_len(&self) -> std::io::Result<u64> {
        let len = self.lock().exact_len()?;
        self.len.store(len, std::sync::atomic::Ordering::Release);
        Ok(len)
    }
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Streamed(about {} bytes)", self.size_hint())
    }
}

impl PartialEq for Streamed {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.stream, &other.stream)
    }
}

impl Eq for Streamed {}

/// Byte vectors (de)serialized as bytes, not as sequences of `u8`: the
/// same encoding in bincode, but read with one copy instead of growing a
/// vector byte by byte (which, for snapshots of hundreds of megabytes,
/// costs seconds of page faults).
mod as_bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

/// Encode `state` as a state file into `out`: bincode's encoding of the
/// [`WorkerState`], with each [`Streamed`] snapshot written from its
/// stream as the [`Operator`](NodeState::Operator) entry it stands for.
fn encode_state(state: &WorkerState, out: &mut dyn std::io::Write) -> std::io::Result<u64> {
    if !state.nodes.iter().any(|n| matches!(n.state, NodeState::Streamed(_))) {
        return format::encode_into(Kind::WorkerState, state, out);
    }
    let size = |v: &dyn erased::Sized| v.size().map_err(std::io::Error::other);
    // epoch, worker, the number of nodes
    let mut len = 8 + 4 + 8;
    for n in &state.nodes {
        len += match &n.state {
            NodeState::Streamed(s) => size(&(n.node, &n.name, n.finished))? + 4 + 8 + s.exact_len()?,
            _ => size(n)?,
        };
    }
    format::encode_with(Kind::WorkerState, len, out, &mut |w| {
        let put = |w: &mut dyn std::io::Write, v: &dyn erased::Sized| v.put(w).map_err(std::io::Error::other);
        put(w, &(state.epoch, state.worker, state.nodes.len() as u64))?;
        for n in &state.nodes {
            match &n.state {
                NodeState::Streamed(s) => {
                    let mut s = s.lock();
                    // The tag of NodeState::Operator, then its bytes' length.
                    put(w, &(n.node, &n.name, n.finished, 0u32, s.exact_len()?))?;
                    s.write_to(w)?;
                }
                _ => put(w, n)?,
            }
        }
        Ok(())
    })
}

/// Bincode through a trait object (the parts of a state file differ in type).
mod erased {
    pub trait Sized {
        fn size(&self) -> bincode::Result<u64>;
        fn put(&self, w: &mut dyn std::io::Write) -> bincode::Result<()>;
    }
    impl<T: serde::Serialize> Sized for T {
        fn size(&self) -> bincode::Result<u64> {
            bincode::serialized_size(self)
        }
        fn put(&self, w: &mut dyn std::io::Write) -> bincode::Result<()> {
            bincode::serialize_into(w, self)
        }
    }
}

/// The longest chain of incremental entries: an operator instance takes
/// a whole snapshot at least every `MAX_CHAIN` checkpoints, so a
/// checkpoint of epoch `e` needs no state file older than epoch
/// `e - MAX_CHAIN` (retention keeps those).
pub const MAX_CHAIN: u64 = 16;

/// How recovery folds an operator's chain of changes (oldest first) into
/// its whole snapshot.
pub type MergeChanges<'a> = &'a (dyn Fn(Vec<u8>, &[Vec<u8>]) -> std::result::Result<Vec<u8>, String> + Sync);

/// One transform instance's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// The node's index in the pipeline graph.
    pub node: u32,
    /// The transform's name (checked on restore).
    pub name: String,
    /// The instance had finished (its input was done) when snapshotted.
    pub finished: bool,
    /// Its state.
    pub state: NodeState,
}

/// One worker's state for one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerState {
    /// The epoch.
    pub epoch: u64,
    /// The worker's index.
    pub worker: u32,
    /// Every transform instance of the worker, by node index.
    pub nodes: Vec<NodeEntry>,
}

/// A file of a checkpoint, as its manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The name in the store.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The job a checkpoint location belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobId {
    /// A description of the pipeline (its transforms and shape).
    pub description: String,
    /// A hash of the description.
    pub fingerprint: u64,
}

/// What commits a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The checkpoint's epoch.
    pub epoch: u64,
    /// The job that took it.
    pub job: JobId,
    /// Workers of the run that took it (over all processes).
    pub workers: u32,
    /// Processes of the run that took it.
    pub processes: u32,
    /// The number of workers its sources' splits were planned for (the
    /// workers of the run that started the job): a run restored from it
    /// on another number of workers keeps that plan.
    pub splits_for: u32,
    /// The key groups of the pipeline: a run restored from it must have
    /// the same.
    pub key_groups: u32,
    /// When it was committed (milliseconds since the Unix epoch).
    pub created_unix_ms: u64,
    /// A savepoint: kept outside retention.
    pub savepoint: bool,
    /// The state files, one per worker.
    pub files: Vec<FileEntry>,
}

/// The shape of the run that takes a checkpoint (recorded in its manifest).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RunShape {
    /// Workers over all processes.
    pub workers: u32,
    /// Processes.
    pub processes: u32,
    /// The number of workers its sources plan splits for.
    pub splits_for: u32,
    /// The pipeline's key groups.
    pub key_groups: u32,
}

/// The marker of a completed run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    /// The job.
    pub job: JobId,
    /// The last epoch of the run.
    pub epoch: u64,
    /// When it completed (milliseconds since the Unix epoch).
    pub completed_unix_ms: u64,
}

/// What a run starts from.
#[derive(Debug)]
pub enum Recovery {
    /// No checkpoint: from the beginning.
    Fresh,
    /// The job already completed here.
    Completed(Completed),
    /// Resume from this checkpoint; every worker's state, verified.
    Resume {
        /// The checkpoint restored.
        manifest: Manifest,
        /// Every worker's state, by worker index.
        states: Vec<WorkerState>,
        /// Newer checkpoints that were skipped, and why (log them).
        skipped: Vec<String>,
    },
}

/// One checkpoint as [`Checkpoints::scan`] finds it.
#[derive(Clone, Debug)]
pub struct CheckpointInfo {
    /// The epoch.
    pub epoch: u64,
    /// Its manifest, if it is complete.
    pub manifest: Option<Manifest>,
    /// Why it is not usable (no manifest, or a bad one).
    pub problem: Option<String>,
    /// Retired by retention: no longer a checkpoint, but its state files
    /// are kept for newer incremental checkpoints that build on them.
    pub retired: bool,
    /// Every file in its folder, with its size.
    pub files: Vec<(String, u64)>,
}

const COMPLETED: &str = "COMPLETED";
/// The marker of a folder retired by retention whose state files stay.
const RETIRED: &str = "/RETIRED";
const RETIRED_WHY: &str = "retired: its state files stay for newer incremental checkpoints";
/// The job a location belongs to, claimed by its first run.
const JOB: &str = "JOB";
/// Asks the running job to make its next checkpoint a savepoint.
const SAVEPOINT_REQUEST: &str = "SAVEPOINT-REQUEST";

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Checkpoints in one store.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    store: Arc<dyn CheckpointStore>,
    /// Operator snapshots of at least this many bytes in a local store's
    /// state files are read in place ([`NodeState::Stored`]).
    in_place_above: u64,
}

/// Operator snapshots of at least this many bytes are read in place by default.
pub const IN_PLACE_ABOVE: u64 = 16 << 20;

impl Checkpoints {
    /// Checkpoints kept in `store`.
    pub fn new(store: Arc<dyn CheckpointStore>) -> Self {
        Checkpoints { store, in_place_above: IN_PLACE_ABOVE }
    }

    /// Read operator snapshots of at least `bytes` bytes in place when the
    /// store is local (default [`IN_PLACE_ABOVE`]; `u64::MAX`: never).
    pub fn read_in_place_above(mut self, bytes: u64) -> Self {
        self.in_place_above = bytes;
        self
    }

    /// The store's location (for messages).
    pub fn location(&self) -> String {
        self.store.location()
    }

    fn folder(epoch: u64) -> String {
        format!("chk-{epoch:020}/")
    }

    /// The name of worker `worker`'s state file of `epoch`.
    pub fn state_name(epoch: u64, worker: u32) -> String {
        format!("{}worker-{worker:05}.state", Self::folder(epoch))
    }

    fn manifest_name(epoch: u64) -> String {
        format!("{}MANIFEST", Self::folder(epoch))
    }

    /// Write one worker's state for its epoch (atomically; retried by the caller).
    /// The file is streamed into the store (never copied whole in memory
    /// where the store can take a stream).
    /// A [`Streamed`] snapshot is written straight from its stream.
    pub fn write_state(&self, state: &WorkerState) -> Result<u64> {
        let mut written = 0;
        self.store.put_streamed(&Self::state_name(state.epoch, state.worker), &mut |out| {
            written = encode_state(state, out)?;
            Ok(())
        })?;
        Ok(written)
    }

    /// Commit checkpoint `epoch`: check that every worker's state file is
    /// there, then create its manifest. `Ok(None)` if a state file is
    /// missing (the checkpoint failed and stays partial).
    pub fn commit(&self, epoch: u64, job: &JobId, shape: RunShape, savepoint: bool) -> Result<Option<Manifest>> {
        let RunShape { workers, processes, splits_for, key_groups } = shape;
        let listed = self.store.list(&Self::folder(epoch))?;
        let mut files = Vec::with_capacity(workers as usize);
        for w in 0..workers {
            let name = Self::state_name(epoch, w);
            match listed.iter().find(|(n, _)| *n == name) {
                Some((_, size)) => files.push(FileEntry { name, size: *size }),
                None => return Ok(None),
            }
        }
        let manifest = Manifest {
            epoch,
            job: job.clone(),
            workers,
            processes,
            splits_for,
            key_groups,
            created_unix_ms: now_ms(),
            savepoint,
            files,
        };
        if !self.store.put_new(&Self::manifest_name(epoch), &format::encode(Kind::Manifest, &manifest))? {
            return Err(CheckpointError::Storage {
                location: self.location(),
                message: format!(
                    "the manifest of checkpoint {epoch} exists already: is another run using this location?"
                ),
            });
        }
        Ok(Some(manifest))
    }

    /// Every checkpoint folder, oldest first, with its manifest if it has
    /// a valid one.
    pub fn scan(&self) -> Result<Vec<CheckpointInfo>> {
        let mut by_epoch: std::collections::BTreeMap<u64, Vec<(String, u64)>> = Default::default();
        for (name, size) in self.store.list("chk-")? {
            let epoch = name.strip_prefix("chk-").and_then(|r| r.split('/').next()).and_then(|e| e.parse::<u64>().ok());
            if let Some(e) = epoch {
                by_epoch.entry(e).or_default().push((name, size));
            }
        }
        let mut out = Vec::new();
        for (epoch, files) in by_epoch {
            let retired = files.iter().any(|(n, _)| n.ends_with(RETIRED));
            let (manifest, problem) = match files.iter().find(|(n, _)| n.ends_with("/MANIFEST")) {
                None if retired => (None, Some(RETIRED_WHY.to_string())),
                None => (None, Some("no manifest: partial".to_string())),
                Some((name, _)) => match self.store.get(name)? {
                    None => (None, Some("no manifest: partial".to_string())),
                    Some(bytes) => match format::decode::<Manifest>(name, Kind::Manifest, &bytes) {
                        Ok(m) => (Some(m), None),
                        Err(e) => (None, Some(e.to_string())),
                    },
                },
            };
            out.push(CheckpointInfo { epoch, manifest, problem, retired, files });
        }
        Ok(out)
    }

    /// Ask the job running on this location (in any process) to make its
    /// next committed checkpoint a savepoint: kept outside retention until
    /// removed by hand.
    pub fn request_savepoint(&self) -> Result<()> {
        self.store.put(SAVEPOINT_REQUEST, b"savepoint\n")
    }

    /// Whether a savepoint was asked for.
    pub fn savepoint_requested(&self) -> Result<bool> {
        Ok(self.store.get(SAVEPOINT_REQUEST)?.is_some())
    }

    /// The savepoint asked for was taken.
    pub fn savepoint_taken(&self) -> Result<()> {
        self.store.delete(SAVEPOINT_REQUEST)
    }

    /// The job the location belongs to, if a run claimed it.
    pub fn job(&self) -> Result<Option<JobId>> {
        self.store.get(JOB)?.map(|b| format::decode(JOB, Kind::Job, &b)).transpose()
    }

    /// The completion marker, if the job completed.
    pub fn completed(&self) -> Result<Option<Completed>> {
        self.store.get(COMPLETED)?.map(|b| format::decode(COMPLETED, Kind::Completed, &b)).transpose()
    }

    /// Whether the location holds anything of Weir's.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.store.list("chk-")?.is_empty() && self.store.get(COMPLETED)?.is_none())
    }

    /// Choose what a run of `job` starts from: the newest complete and
    /// intact checkpoint (every state file read and checked). Newer
    /// partial or corrupt ones are skipped (their reasons returned). If a
    /// committed checkpoint exists and none is usable, refuse, unless
    /// `allow_start_over`; only partial ones (none ever committed) start
    /// from the beginning. Another job's location is refused.
    pub fn recover(&self, job: &JobId, allow_start_over: bool, merge: MergeChanges<'_>) -> Result<Recovery> {
        let other = |found: &JobId| CheckpointError::OtherJob {
            location: self.location(),
            found: found.description.clone(),
            expected: job.description.clone(),
        };
        // The first run claims the location for its job.
        match self.store.get(JOB)? {
            Some(bytes) => {
                let owner: JobId = format::decode(JOB, Kind::Job, &bytes)?;
                if owner.fingerprint != job.fingerprint {
                    return Err(other(&owner));
                }
            }
            None => {
                if !self.store.put_new(JOB, &format::encode(Kind::Job, job))? {
                    return self.recover(job, allow_start_over, merge);
                }
            }
        }
        if self.is_empty()? {
            return Ok(Recovery::Fresh);
        }
        if let Some(bytes) = self.store.get(COMPLETED)? {
            let c: Completed = format::decode(COMPLETED, Kind::Completed, &bytes)?;
            if c.job.fingerprint != job.fingerprint {
                return Err(other(&c.job));
            }
            return Ok(Recovery::Completed(c));
        }
        let mut skipped = Vec::new();
        let mut had_manifest = false;
        for info in self.scan()?.into_iter().rev() {
            had_manifest |= info.files.iter().any(|(n, _)| n.ends_with("/MANIFEST"));
            let Some(manifest) = info.manifest else {
                skipped.push(format!("checkpoint {}: {}", info.epoch, info.problem.unwrap_or_default()));
                continue;
            };
            if manifest.job.fingerprint != job.fingerprint {
                return Err(other(&manifest.job));
            }
            match self.load_all(&manifest, merge) {
                Ok(states) => return Ok(Recovery::Resume { manifest, states, skipped }),
                Err(e) => skipped.push(format!("checkpoint {}: {e}", info.epoch)),
            }
        }
        // Only partial checkpoints (the run died before committing its
        // first one): nothing was ever committed, so nothing was restored
        // or made visible from them, and the beginning is the right start.
        if allow_start_over || !had_manifest {
            return Ok(Recovery::Fresh);
        }
        Err(CheckpointError::NoneUsable { location: self.location(), reasons: skipped.join("; ") })
    }

    /// Read and check every state file of `manifest`, and fold every
    /// incremental entry's chain (read from the same worker's earlier
    /// state files) into a whole snapshot with `merge`.
    pub fn load_all(&self, manifest: &Manifest, merge: MergeChanges<'_>) -> Result<Vec<WorkerState>> {
        let mut states = self.read_states(manifest)?;
        // The workers' chains in parallel (two at a time).
        let fold = |state: &mut WorkerState| -> Result<()> {
            for entry in &mut state.nodes {
                if let NodeState::Changes { .. } = entry.state {
                    entry.state = self.fold_chain(entry, manifest.epoch, state.worker, merge)?;
                }
            }
            Ok(())
        };
        for pair in states.chunks_mut(2) {
            std::thread::scope(|scope| {
                let (first, rest) = pair.split_first_mut().expect("a chunk is not empty");
                let other = rest.first_mut().map(|s| scope.spawn(|| fold(s)));
                let mine = fold(first);
                let other = other.map_or(Ok(()), |h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
                mine.and(other)
            })?;
        }
        Ok(states)
    }

    /// Read and check every state file of `manifest`, as stored
    /// (incremental entries left as they are).
    pub fn read_states(&self, manifest: &Manifest) -> Result<Vec<WorkerState>> {
        let files = manifest.files.iter().enumerate();
        files.map(|(w, f)| self.read_state(&f.name, Some(f.size), manifest.epoch, w as u32)).collect()
    }

    /// Read and check one state file (of `size` bytes, if known).
    fn read_state(&self, name: &str, size: Option<u64>, epoch: u64, worker: u32) -> Result<WorkerState> {
        let corrupt = |reason: String| CheckpointError::Corrupt { file: name.to_string(), reason };
        let local = self.store.open_local(name)?;
        let len = match &local {
            Some(f) => Some(f.metadata().map_err(|e| corrupt(format!("reading its size: {e}")))?.len()),
            None => None,
        };
        let state: WorkerState = match (local, len) {
            (Some(f), Some(len)) if len > self.in_place_above => {
                if let Some(size) = size.filter(|s| *s != len) {
                    return Err(corrupt(format!("{len} bytes, the manifest says {size}")));
                }
                inplace::read_state(name, f, len, self.in_place_above)?
            }
            _ => {
                let bytes = self.store.get(name)?.ok_or_else(|| corrupt("missing".into()))?;
                if let Some(size) = size.filter(|s| *s != bytes.len() as u64) {
                    return Err(corrupt(format!("{} bytes, the manifest says {size}", bytes.len())));
                }
                format::decode(name, Kind::WorkerState, &bytes)?
            }
        };
        if state.epoch != epoch || state.worker != worker {
            return Err(corrupt(format!("holds worker {} of epoch {}", state.worker, state.epoch)));
        }
        Ok(state)
    }

    /// The whole snapshot of `entry` (of `epoch`, worker `worker`): its
    /// chain of changes back to a whole snapshot, folded oldest first.
    /// A chain that ends in a snapshot read in place is left to fold as
    /// it is read ([`NodeState::Stored`]).
    fn fold_chain(&self, entry: &NodeEntry, epoch: u64, worker: u32, merge: MergeChanges<'_>) -> Result<NodeState> {
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let (mut state, mut at) = (entry.state.clone(), epoch);
        let whole = loop {
            match state {
                NodeState::Operator(bytes) => break bytes,
                NodeState::Stored { whole, .. } => {
                    // Folded only when restored: checked now, so that a bad
                    // one makes recovery choose an older checkpoint.
                    pending.reverse();
                    for changes in &pending {
                        weir_runtime::KeyedSnapshot::check_change_set(changes).map_err(|e| {
                            CheckpointError::Corrupt { file: Self::state_name(epoch, worker), reason: e.to_string() }
                        })?;
                    }
                    return Ok(NodeState::Stored { whole, changes: pending });
                }
                NodeState::Source(_) | NodeState::Streamed(_) => {
                    return Err(CheckpointError::Corrupt {
                        file: Self::state_name(at, worker),
                        reason: format!("node {} ('{}') is a source in its chain", entry.node, entry.name),
                    })
                }
                NodeState::Changes { since, changes } => {
                    let name = Self::state_name(since, worker);
                    if since >= at || pending.len() as u64 >= MAX_CHAIN {
                        return Err(CheckpointError::Corrupt {
                            file: name,
                            reason: format!("the chain of '{}' is longer than {MAX_CHAIN} or loops", entry.name),
                        });
                    }
                    pending.push(changes);
                    let older = self.read_state(&name, None, since, worker)?;
                    let e = older.nodes.into_iter().find(|e| e.node == entry.node && e.name == entry.name);
                    let e = e.ok_or_else(|| CheckpointError::Corrupt {
                        file: name.clone(),
                        reason: format!("holds no entry for '{}', which a later checkpoint builds on", entry.name),
                    })?;
                    (state, at) = (e.state, since);
                }
            }
        };
        pending.reverse();
        merge(whole, &pending)
            .map(NodeState::Operator)
            .map_err(|reason| CheckpointError::Corrupt { file: Self::state_name(epoch, worker), reason })
    }

    /// Remove every checkpoint folder newer than `epoch` (left by a run
    /// that crashed before committing them).
    pub fn discard_after(&self, epoch: Option<u64>) -> Result<()> {
        for info in self.scan()? {
            if epoch.is_none_or(|e| info.epoch > e) {
                for (name, _) in &info.files {
                    self.store.delete(name)?;
                }
            }
        }
        Ok(())
    }

    /// Keep the newest `keep` complete checkpoints (at least 1), every
    /// savepoint, and anything newer than the newest complete one (being
    /// written); remove the rest. The state files of the [`MAX_CHAIN`]
    /// epochs before a kept checkpoint stay (its incremental entries may
    /// build on them), without their manifests. Returns the epochs whose
    /// checkpoints were removed.
    pub fn retain(&self, keep: usize) -> Result<Vec<u64>> {
        let infos = self.scan()?;
        let complete: Vec<u64> =
            infos.iter().filter(|i| i.manifest.as_ref().is_some_and(|m| !m.savepoint)).map(|i| i.epoch).collect();
        let keep = keep.max(1);
        let Some(&oldest_kept) = complete.get(complete.len().saturating_sub(keep)) else { return Ok(Vec::new()) };
        let savepoints: Vec<u64> =
            infos.iter().filter(|i| i.manifest.as_ref().is_some_and(|m| m.savepoint)).map(|i| i.epoch).collect();
        let chained = |e: u64| e + MAX_CHAIN >= oldest_kept || savepoints.iter().any(|s| e < *s && e + MAX_CHAIN >= *s);
        let mut removed = Vec::new();
        for info in infos {
            let savepoint = info.manifest.as_ref().is_some_and(|m| m.savepoint);
            if info.epoch >= oldest_kept || savepoint {
                continue;
            }
            // The manifest goes first: a folder being removed is partial.
            let mut files = info.files.clone();
            files.sort_by_key(|(n, _)| !n.ends_with("/MANIFEST"));
            let keep_states = chained(info.epoch);
            for (name, _) in &files {
                if !keep_states || name.ends_with("/MANIFEST") {
                    self.store.delete(name)?;
                }
            }
            if keep_states && !info.retired {
                self.store.put(&format!("chk-{:020}{RETIRED}", info.epoch), RETIRED_WHY.as_bytes())?;
            }
            if info.manifest.is_some() || !keep_states {
                removed.push(info.epoch);
            }
        }
        Ok(removed)
    }

    /// Mark the job completed at `epoch`.
    pub fn mark_completed(&self, job: &JobId, epoch: u64) -> Result<()> {
        let c = Completed { job: job.clone(), epoch, completed_unix_ms: now_ms() };
        self.store.put(COMPLETED, &format::encode(Kind::Completed, &c))
    }
}

#[cfg(test)]
mod tests;
