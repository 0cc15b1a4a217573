//! Where checkpoints go: a flat namespace of named files (names may hold
//! `/`), with an atomic create-if-absent for manifests. [`LocalDir`] is the
//! default; object storage implements the same trait in its own crate.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{CheckpointError, Result};

/// A checkpoint store. Implementations must make [`put`](Self::put)
/// atomic (a reader sees the whole file or none) and
/// [`put_new`](Self::put_new) an atomic conditional create.
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    /// Where the store is (a path or URL, for messages).
    fn location(&self) -> String;
    /// Write (or replace) `name`.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<()>;
    /// Write (or replace) `name` with what `write` writes, atomically as
    /// [`put`](Self::put). By default the bytes are gathered in memory and
    /// then put; a store that can (a local directory) streams them, so a
    /// big file is never held whole in memory.
    fn put_streamed(&self, name: &str, write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
        let mut bytes = Vec::new();
        write(&mut bytes).map_err(|e| CheckpointError::Storage {
            location: self.location(),
            message: format!("encoding {name}: {e}"),
        })?;
        self.put(name, &bytes)
    }
    /// Create `name` only if it does not exist; `Ok(false)` if it did.
    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<bool>;
    /// Read `name`, `None` if it does not exist.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Every file whose name starts with `prefix`, with its size.
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>>;
    /// Remove `name` (no error if it does not exist).
    fn delete(&self, name: &str) -> Result<()>;
    /// `name` opened for reading where it lies, if the store is on the
    /// local file system (`None` otherwise, or if it does not exist): a
    /// big state file is then read in place instead of into memory.
    fn open_local(&self, name: &str) -> Result<Option<fs::File>> {
        let _ = name;
        Ok(None)
    }
}

/// Checkpoints in a local directory (created when first written). Files
/// are written to a temporary name, synced and renamed; manifests are
/// created with a hard link, which fails if the name exists.
///
/// ```
/// use weir_checkpoint::{CheckpointStore, LocalDir};
/// let dir = tempfile::tempdir().unwrap();
/// let store = LocalDir::new(dir.path());
/// store.put("chk-1/worker-0", b"state").unwrap();
/// assert!(store.put_new("chk-1/MANIFEST", b"m").unwrap());
/// assert!(!store.put_new("chk-1/MANIFEST", b"other").unwrap());
/// assert_eq!(store.get("chk-1/MANIFEST").unwrap().unwrap(), b"m");
/// assert_eq!(store.list("chk-").unwrap().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// A store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDir { root: root.into() }
    }

    fn err(&self, what: &str, path: &Path, e: std::io::Error) -> CheckpointError {
        CheckpointError::Storage { location: self.location(), message: format!("{what} {}: {e}", path.display()) }
    }

    /// Write `bytes` to a fresh temporary file next to `path`, synced.
    fn write_temp(&self, path: &Path, bytes: &[u8]) -> Result<PathBuf> {
        self.write_temp_with(path, &mut |f| f.write_all(bytes))
    }

    /// Write what `write` writes to a fresh temporary file next to
    /// `path` (buffered), synced.
    fn write_temp_with(
        &self,
        path: &Path,
        write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<PathBuf> {
        let parent = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(|e| self.err("creating", parent, e))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
        let f = fs::File::create(&tmp).map_err(|e| self.err("creating", &tmp, e))?;
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, f);
        let written = write(&mut buffered)
            .and_then(|_| buffered.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.err("writing", &tmp, e));
        }
        Ok(tmp)
    }

    fn sync_dir(&self, path: &Path) {
        // Make the rename durable; a failure here is not an error of the write.
        if let Some(parent) = path.parent() {
            if let Ok(d) = fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
    }
}

impl CheckpointStore for LocalDir {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.root.join(name);
        let tmp = self.write_temp(&path, bytes)?;
        fs::rename(&tmp, &path).map_err(|e| self.err("renaming", &tmp, e))?;
        self.sync_dir(&path);
        Ok(())
    }

    fn put_streamed(&self, name: &str, write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
        let path = self.root.join(name);
        let tmp = self.write_temp_with(&path, write)?;
        fs::rename(&tmp, &path).map_err(|e| self.err("renaming", &tmp, e))?;
        self.sync_dir(&path);
        Ok(())
    }

    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.root.join(name);
        let tmp = self.write_temp(&path, bytes)?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                self.sync_dir(&path);
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.err("creating", &path, e)),
        }
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.root.join(name);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("reading", &path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err("listing", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.err("listing", &dir, e))?;
                let path = entry.path();
                let meta = entry.metadata().map_err(|e| self.err("reading", &path, e))?;
                let rel = path.strip_prefix(&self.root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                if meta.is_dir() {
                    if prefix.starts_with(&rel) || rel.starts_with(prefix) || prefix.is_empty() {
                        dirs.push(path);
                    }
                } else if rel.starts_with(prefix) && !entry.file_name().to_string_lossy().starts_with('.') {
                    out.push((rel, meta.len()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.root.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.err("removing", &path, e)),
        }
        // Remove the folder once it is empty (ignore a folder still in use).
        if let Some(parent) = path.parent().filter(|p| *p != self.root) {
            let _ = fs::remove_dir(parent);
        }
        Ok(())
    }

    fn open_local(&self, name: &str) -> Result<Option<fs::File>> {
        let path = self.root.join(name);
        match fs::File::open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("opening", &path, e)),
        }
    }
}
