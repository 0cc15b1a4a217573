//! The transactional file sink's folder: what a sink writes in epoch `e`
//! goes to pending files, made visible (renamed) only when the checkpoint
//! covering `e` is committed; a recovery commits what its checkpoint
//! covers and discards the rest. So a job killed any number of times ends
//! with every output written exactly once.
//!
//! Names: `<epoch>-<worker>-<seq>.<ext>` once committed (zero-padded, so
//! they sort by epoch), with `.pending` appended before. A name always
//! means a complete file: a local file is written under a temporary name,
//! synced, and renamed; an object is written by one PUT.
//!
//! The files live in a [`Folder`]: a local one ([`LocalFolder`], what
//! [`EpochDir::new`] takes) or any other storage that implements the trait
//! (`weir-object-store` has one over S3 and every `object_store` backend).
//!
//! ```
//! use weir_io::epochs::EpochDir;
//! use weir_runtime::EpochCommit;
//! let dir = tempfile::tempdir().unwrap();
//! let out = EpochDir::new(dir.path(), "csv");
//! out.write_pending(0, 0, 0, b"a\n").unwrap();
//! out.write_pending(1, 0, 0, b"b\n").unwrap();
//! out.commit(0).unwrap();
//! assert_eq!(out.read_committed().unwrap().concat(), b"a\n");
//! // A crash, then recovery from checkpoint 0: epoch 1's output is discarded.
//! out.recover(Some(0)).unwrap();
//! out.commit(u64::MAX).unwrap();
//! assert_eq!(out.read_committed().unwrap().concat(), b"a\n");
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_runtime::{EpochCommit, PipelineError};

use crate::IoError;

/// The format of a transactional sink's snapshot: the epoch it has open.
const OPEN_EPOCH_FORMAT: u32 = 1;

/// A transactional sink's snapshot: the epoch it has open (what it writes
/// next is pending for that epoch).
///
/// ```
/// use weir_io::epochs::{decode_open_epoch, encode_open_epoch};
/// assert_eq!(decode_open_epoch("sink", &encode_open_epoch(7)).unwrap(), 7);
/// assert!(decode_open_epoch("sink", b"garbage").is_err());
/// ```
pub fn encode_open_epoch(open: u64) -> Vec<u8> {
    [OPEN_EPOCH_FORMAT.to_le_bytes().as_slice(), &open.to_le_bytes()].concat()
}

/// The open epoch of [`encode_open_epoch`]'s bytes; a clear error naming
/// `sink` for bytes this Weir cannot read.
pub fn decode_open_epoch(sink: &str, bytes: &[u8]) -> Result<u64, PipelineError> {
    if bytes.len() != 12 || bytes[..4] != OPEN_EPOCH_FORMAT.to_le_bytes() {
        return Err(PipelineError::Checkpoint(format!("{sink}: a snapshot this Weir cannot read")));
    }
    Ok(u64::from_le_bytes(bytes[4..].try_into().expect("8 bytes")))
}

/// The open epoch after a rescaled restore: every old instance's snapshot
/// holds the same one (`None`: no snapshot).
pub fn rescaled_open_epoch(sink: &str, from: &weir_runtime::Rescale<'_>) -> Result<Option<u64>, PipelineError> {
    let mut open = None;
    for bytes in from.snapshots.iter() {
        open = open.max(Some(decode_open_epoch(sink, bytes)?));
    }
    Ok(open)
}

/// Write `bytes` to `tmp`, sync it and rename it to `target`: a name
/// always means a complete file.
pub fn write_atomically(tmp: &Path, target: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let mut f = std::fs::File::create(tmp).map_err(|e| io(tmp, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| io(tmp, e))?;
    std::fs::rename(tmp, target).map_err(|e| io(tmp, e))
}

/// The names of the entries of `dir`, unsorted (none if it does not exist).
pub(crate) fn names_in(dir: &Path) -> Result<Vec<String>, IoError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir, e)),
    };
    entries.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()).map_err(|e| io(dir, e))).collect()
}

/// Where a transactional sink's files live: a flat set of named files.
pub trait Folder: Send + Sync + std::fmt::Debug {
    /// The folder's name in messages (a path or URL).
    fn location(&self) -> String;
    /// The names of its files, unsorted (none if it does not exist yet).
    fn names(&self) -> Result<Vec<String>, IoError>;
    /// The names that sort after `from` (byte order): a store that can
    /// list from a point (S3 can) saves listing the files before it.
    fn names_after(&self, from: &str) -> Result<Vec<String>, IoError> {
        Ok(self.names()?.into_iter().filter(|n| n.as_str() > from).collect())
    }
    /// Write file `name` whole: a reader sees all of it or none of it.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), IoError>;
    /// Rename `from` to `to`, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> Result<(), IoError>;
    /// Remove file `name` (nothing if it is not there).
    fn remove(&self, name: &str) -> Result<(), IoError>;
    /// The contents of file `name`.
    fn read(&self, name: &str) -> Result<Vec<u8>, IoError>;
    /// Make the renames and removals done so far durable.
    fn sync(&self) {}
}

/// A local folder: files are written under a temporary name (a hidden
/// `.<name>.tmp`), synced and renamed; the folder is synced after renames.
#[derive(Clone, Debug)]
pub struct LocalFolder(pub PathBuf);

impl Folder for LocalFolder {
    fn location(&self) -> String {
        self.0.display().to_string()
    }

    fn names(&self) -> Result<Vec<String>, IoError> {
        names_in(&self.0)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), IoError> {
        std::fs::create_dir_all(&self.0).map_err(|e| io(&self.0, e))?;
        write_atomically(&self.0.join(format!(".{name}.tmp")), &self.0.join(name), bytes)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), IoError> {
        let from = self.0.join(from);
        std::fs::rename(&from, self.0.join(to)).map_err(|e| io(&from, e))
    }

    fn remove(&self, name: &str) -> Result<(), IoError> {
        let path = self.0.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path, e)),
            _ => Ok(()),
        }
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, IoError> {
        let path = self.0.join(name);
        std::fs::read(&path).map_err(|e| io(&path, e))
    }

    fn sync(&self) {
        if let Ok(d) = std::fs::File::open(&self.0) {
            let _ = d.sync_all();
        }
    }
}

/// A folder of per-epoch output files (see the module docs).
#[derive(Clone, Debug)]
pub struct EpochDir {
    folder: Arc<dyn Folder>,
    ext: String,
    /// The epoch last committed: a commit looks at the files from it on
    /// only (the earlier ones are committed), so that its cost does not
    /// grow with all a job has written. Shared by the clones.
    committed: Arc<std::sync::atomic::AtomicU64>,
}

const PENDING: &str = ".pending";

fn io(path: &Path, source: std::io::Error) -> IoError {
    IoError::Io { path: path.display().to_string(), source }
}

fn pe(e: IoError) -> PipelineError {
    PipelineError::Checkpoint(format!("transactional output: {e}"))
}

impl EpochDir {
    /// Output files in local folder `dir` with extension `ext`.
    pub fn new(dir: impl Into<PathBuf>, ext: &str) -> Self {
        EpochDir::in_folder(Arc::new(LocalFolder(dir.into())), ext)
    }

    /// Output files in `folder` with extension `ext`.
    pub fn in_folder(folder: Arc<dyn Folder>, ext: &str) -> Self {
        EpochDir { folder, ext: ext.to_string(), committed: Arc::default() }
    }

    /// The folder's name (a path or URL).
    pub fn location(&self) -> String {
        self.folder.location()
    }

    fn name(&self, epoch: u64, worker: usize, seq: u64) -> String {
        format!("{epoch:020}-{worker:05}-{seq:06}.{}", self.ext)
    }

    /// Write worker `worker`'s chunk `seq` of epoch `epoch` as a pending
    /// file (whole: synced, or one PUT).
    pub fn write_pending(&self, epoch: u64, worker: usize, seq: u64, bytes: &[u8]) -> Result<(), IoError> {
        self.folder.write(&format!("{}{PENDING}", self.name(epoch, worker, seq)), bytes)
    }

    /// The first chunk number that worker `worker` has not written in
    /// epoch `epoch` (pending or committed): where an instance restored in
    /// the middle of an epoch goes on numbering, so that it never replaces
    /// a file the epoch already has.
    ///
    /// ```
    /// use weir_io::epochs::EpochDir;
    /// let dir = tempfile::tempdir().unwrap();
    /// let out = EpochDir::new(dir.path(), "csv");
    /// assert_eq!(out.next_seq(3, 1).unwrap(), 0);
    /// out.write_pending(3, 1, 0, b"a\n").unwrap();
    /// out.write_pending(3, 1, 1, b"b\n").unwrap();
    /// out.write_pending(3, 0, 5, b"c\n").unwrap();
    /// assert_eq!(out.next_seq(3, 1).unwrap(), 2);
    /// assert_eq!(out.next_seq(4, 1).unwrap(), 0);
    /// ```
    pub fn next_seq(&self, epoch: u64, worker: usize) -> Result<u64, IoError> {
        let prefix = format!("{epoch:020}-{worker:05}-");
        let mut next = 0;
        for name in self.folder.names()? {
            // `<seq>.<ext>`, `<seq>.<ext>.pending` (6 digits or more).
            let seq =
                name.strip_prefix(&prefix).and_then(|rest| rest.split('.').next()).and_then(|n| n.parse::<u64>().ok());
            if let Some(seq) = seq {
                next = next.max(seq + 1);
            }
        }
        Ok(next)
    }

    /// Every file of the folder: (name, epoch, committed).
    fn files(&self) -> Result<Vec<(String, u64, bool)>, IoError> {
        self.files_in(self.folder.names()?)
    }

    /// Every file of epoch `from` or later (and no temporary one).
    fn files_from(&self, from: u64) -> Result<Vec<(String, u64, bool)>, IoError> {
        // `<epoch, 20 digits>-...` sorts after the 20 digits alone.
        self.files_in(self.folder.names_after(&format!("{from:020}"))?)
    }

    fn files_in(&self, names: Vec<String>) -> Result<Vec<(String, u64, bool)>, IoError> {
        let mut out = Vec::new();
        for name in names {
            let epoch = name.split('-').next().and_then(|e| e.trim_start_matches('.').parse::<u64>().ok());
            if let Some(epoch) = epoch {
                out.push((name.clone(), epoch, !name.ends_with(PENDING) && !name.starts_with('.')));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The contents of every committed file, in name order (epoch, worker, chunk).
    pub fn read_committed(&self) -> Result<Vec<Vec<u8>>, IoError> {
        let mut out = Vec::new();
        for (name, _, committed) in self.files()? {
            if committed {
                out.push(self.folder.read(&name)?);
            }
        }
        Ok(out)
    }
}

impl EpochCommit for EpochDir {
    fn commit(&self, epoch: u64) -> Result<(), PipelineError> {
        use std::sync::atomic::Ordering;
        // Files of epochs before the last committed one are committed: a
        // pending file is written for an epoch no checkpoint covers yet.
        // The end of a run (`u64::MAX`) looks at everything: a runner that
        // never recovers (the reference runner) may run the same sink again.
        let from = match epoch {
            u64::MAX => 0,
            _ => self.committed.load(Ordering::SeqCst).min(epoch),
        };
        for (name, e, committed) in self.files_from(from).map_err(pe)? {
            if !committed && e <= epoch && name.ends_with(PENDING) {
                self.folder.rename(&name, &name[..name.len() - PENDING.len()]).map_err(pe)?;
            }
        }
        self.folder.sync();
        self.committed.fetch_max(epoch, Ordering::SeqCst);
        Ok(())
    }

    fn recover(&self, epoch: Option<u64>) -> Result<(), PipelineError> {
        if let Some(e) = epoch {
            self.commit(e)?;
        }
        for (name, e, committed) in self.files().map_err(pe)? {
            // From the beginning: nothing of an earlier run stays. From
            // checkpoint `epoch`: what came after it is replayed.
            let stale = epoch.is_none_or(|c| e > c) || name.starts_with('.');
            if stale {
                self.folder.remove(&name).map_err(pe)?;
            } else {
                debug_assert!(committed);
            }
        }
        self.folder.sync();
        // The epochs after the checkpoint are written again from here.
        self.committed.store(epoch.unwrap_or(0), std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit looks only at the epochs from the last committed one on;
    /// a recovery to an earlier checkpoint makes it look from there again.
    #[test]
    fn commits_look_from_the_last_committed_epoch_and_recovery_resets_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = EpochDir::new(dir.path(), "csv");
        out.write_pending(0, 0, 0, b"a\n").unwrap();
        out.commit(0).unwrap();
        out.write_pending(1, 0, 0, b"b\n").unwrap();
        out.write_pending(2, 0, 0, b"c\n").unwrap();
        out.commit(2).unwrap();
        assert_eq!(out.read_committed().unwrap().concat(), b"a\nb\nc\n");
        // The same epoch committed again.
        out.write_pending(2, 0, 1, b"d\n").unwrap();
        out.commit(2).unwrap();
        assert_eq!(out.read_committed().unwrap().concat(), b"a\nb\nc\nd\n");
        // Back to checkpoint 1: epoch 2 is written again and committed.
        out.recover(Some(1)).unwrap();
        assert_eq!(out.read_committed().unwrap().concat(), b"a\nb\n");
        out.write_pending(2, 0, 0, b"e\n").unwrap();
        out.commit(2).unwrap();
        assert_eq!(out.read_committed().unwrap().concat(), b"a\nb\ne\n");
        // From the beginning: nothing stays, and epoch 0 commits again.
        out.recover(None).unwrap();
        out.write_pending(0, 0, 0, b"f\n").unwrap();
        out.commit(0).unwrap();
        assert_eq!(out.read_committed().unwrap().concat(), b"f\n");
        // A run's end commits everything, even after a later epoch's
        // commit and without a recovery in between (the reference runner
        // running the same sink again).
        out.commit(u64::MAX).unwrap();
        out.write_pending(1, 0, 0, b"g\n").unwrap();
        out.commit(u64::MAX).unwrap();
        assert_eq!(out.read_committed().unwrap().concat(), b"f\ng\n");
    }
}
