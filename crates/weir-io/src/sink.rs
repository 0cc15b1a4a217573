//! The one way Weir writes a file that readers must see whole: a
//! [`ShardFile`] is written under a temporary name and renamed to its final
//! name when complete (after a flush and an fsync), so a final name always
//! means a complete file. A shard dropped before it was committed (its job
//! failed) removes its temporary file: nothing half-written is left behind.
//! Every file sink (text shards, NEXMark's CSV parts, the CLI's result
//! files) writes through it; the transactional sink of the checkpoint work
//! commits these renames when a checkpoint completes.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use weir_io::sink::ShardFile;
//! let target = dir.path().join("out").join("part-0.txt");
//! let mut shard = ShardFile::new(&target, dir.path().join("out").join(".part-0.inprogress"));
//! shard.write_all(b"hello\n").unwrap();
//! assert!(!target.exists(), "not visible before the commit");
//! shard.commit().unwrap();
//! assert_eq!(std::fs::read(&target).unwrap(), b"hello\n");
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::IoError;

/// A file written under a temporary name, renamed when committed.
#[derive(Debug)]
pub struct ShardFile {
    target: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
    sync: bool,
}

fn io_error(path: &Path, source: std::io::Error) -> IoError {
    IoError::Io { path: path.display().to_string(), source }
}

impl ShardFile {
    /// A shard that will be `target`, written as `tmp` until committed
    /// (both in the same folder, so that the rename is atomic). Nothing is
    /// created before the first write.
    pub fn new(target: impl AsRef<Path>, tmp: impl AsRef<Path>) -> Self {
        ShardFile { target: target.as_ref().to_path_buf(), tmp: tmp.as_ref().to_path_buf(), writer: None, sync: true }
    }

    /// Do not fsync before the rename: for scratch files read back by the
    /// same process (a crash loses them anyway), where a sync only costs
    /// time. The rename still makes them appear whole.
    pub fn without_sync(mut self) -> Self {
        self.sync = false;
        self
    }

    /// The shard's final name.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The writer of the temporary file, created (with its folder) on first use.
    pub fn writer(&mut self) -> Result<&mut BufWriter<File>, IoError> {
        if self.writer.is_none() {
            if let Some(dir) = self.tmp.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
            }
            let f = File::create(&self.tmp).map_err(|e| io_error(&self.tmp, e))?;
            self.writer = Some(BufWriter::with_capacity(1 << 20, f));
        }
        Ok(self.writer.as_mut().expect("opened above"))
    }

    /// Append bytes.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        if self.writer.is_none() {
            self.writer()?;
        }
        let w = self.writer.as_mut().expect("opened above");
        w.write_all(bytes).map_err(|e| io_error(&self.tmp, e))
    }

    /// Flush, sync (unless [`without_sync`](Self::without_sync)) and rename
    /// to the final name. A shard nothing was
    /// written to becomes an empty file, so that a reader sees every shard.
    pub fn commit(mut self) -> Result<PathBuf, IoError> {
        self.writer()?;
        let mut w = self.writer.take().expect("opened above");
        w.flush().map_err(|e| io_error(&self.tmp, e))?;
        if self.sync {
            w.get_ref().sync_all().map_err(|e| io_error(&self.tmp, e))?;
        }
        drop(w);
        std::fs::rename(&self.tmp, &self.target).map_err(|e| io_error(&self.target, e))?;
        Ok(std::mem::take(&mut self.target))
    }
}

impl Drop for ShardFile {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            drop(w);
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_shard_leaves_nothing_and_an_empty_one_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (target, tmp) = (dir.path().join("a"), dir.path().join(".a.tmp"));
        let mut s = ShardFile::new(&target, &tmp);
        s.write_all(b"x").unwrap();
        assert!(tmp.exists());
        drop(s);
        assert!(!tmp.exists() && !target.exists());
        ShardFile::new(&target, &tmp).commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"");
    }

    #[test]
    fn an_unwritable_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let mut s = ShardFile::new(dir.path().join("file/x"), dir.path().join("file/.x"));
        let e = s.write_all(b"x").unwrap_err().to_string();
        assert!(e.contains("file"), "{e}");
    }
}
