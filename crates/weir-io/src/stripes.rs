//! Reading line-oriented files in parallel, each reader in order.
//!
//! A set of files is divided among the workers of a run as *line splits*.
//! With at least as many files as workers, each file is one split and the
//! files are dealt round robin. With fewer files than workers, every file is
//! cut into blocks of [`BLOCK`] bytes and the blocks are dealt round robin:
//! worker `i` of `n` reads blocks `i, i + n, i + 2n, …` of each file. A line
//! belongs to the block its first byte is in, so every line is read exactly
//! once, and each split reads its lines in file order. When the lines of a
//! file are in event-time order, so are the lines of each split, and all the
//! splits of a file advance through it together: the watermark (the minimum
//! over the splits) stays within a few blocks of the data being read.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("lines.txt");
//! let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
//! std::fs::write(&path, &text).unwrap();
//! let mut seen = Vec::new();
//! for index in 0..3 {
//!     let worker = weir_runtime::WorkerInfo::new(index, 3);
//!     for mut split in weir_io::stripes::plan(&[path.clone()], &worker) {
//!         while split.read_lines(1000, |line, _at| seen.push(String::from_utf8(line.to_vec()).unwrap())).unwrap() {}
//!     }
//! }
//! seen.sort_by_key(|l| l[5..].parse::<u32>().unwrap());
//! assert_eq!(seen.len(), 100_000);
//! assert!(seen.iter().enumerate().all(|(i, l)| *l == format!("line {i}")));
//! ```

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use weir_runtime::split::assigned;
use weir_runtime::WorkerInfo;

use crate::IoError;

/// The version of [`LineSplit::position`]'s encoding.
const POSITION_FORMAT: u32 = 1;

/// Size of the blocks a file is cut into when it is read by several workers.
pub const BLOCK: u64 = 1 << 20;

/// One worker's share of one file: every block, or every `stride`-th block
/// starting at `first`.
#[derive(Debug)]
pub struct LineSplit {
    path: PathBuf,
    file: Option<File>,
    len: u64,
    stride: u64,
    /// The next block to load.
    next_block: u64,
    buf: Vec<u8>,
    /// Position of the next line in `buf`.
    pos: usize,
    /// Lines starting at or after this position in `buf` belong to later blocks.
    limit: usize,
    /// The file offset of `buf[0]`.
    buf_start: u64,
    /// For a split that reads a whole file: the number of the next line (1-based).
    line_number: Option<u64>,
    done: bool,
}

/// Where a line is in its file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LinePosition {
    /// The byte offset of the line's first byte.
    pub offset: u64,
    /// The line's number (1-based), when the split reads the whole file
    /// (a split of every `n`-th block cannot know it cheaply).
    pub line: Option<u64>,
}

impl std::fmt::Display for LinePosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line} (byte {})", self.offset),
            None => write!(f, "byte {}", self.offset),
        }
    }
}

/// Every line split of `files` for a run of `workers` workers; split `i`
/// is read by worker `i % workers` (`weir_runtime::split::assigned`).
pub fn plan_all(files: &[PathBuf], workers: usize) -> Vec<LineSplit> {
    let peers = workers.max(1);
    if files.len() >= peers {
        files.iter().map(|f| LineSplit::new(f, 1, 0)).collect()
    } else {
        files.iter().flat_map(|f| (0..peers as u64).map(move |k| LineSplit::new(f, peers as u64, k))).collect()
    }
}

/// The line splits worker `worker` reads of `files`.
pub fn plan(files: &[PathBuf], worker: &WorkerInfo) -> Vec<LineSplit> {
    let all = plan_all(files, worker.splits_for).into_iter().enumerate();
    all.filter(|(i, _)| assigned(*i, worker)).map(|(_, s)| s).collect()
}

/// Where a split is, for a checkpoint (bincode; see [`LineSplit::position`]).
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum StoredPosition {
    /// The next line starts at `offset`, in block `block` of the file.
    Line { block: u64, offset: u64, line: Option<u64> },
    /// The next line is the first of block `block`.
    Block { block: u64, line: Option<u64> },
    /// Every line was read.
    Done,
}

impl LineSplit {
    fn new(path: &Path, stride: u64, first: u64) -> Self {
        LineSplit {
            path: path.to_path_buf(),
            file: None,
            len: 0,
            stride,
            next_block: first,
            buf: Vec::new(),
            pos: 0,
            limit: 0,
            buf_start: 0,
            line_number: (stride == 1).then_some(1),
            done: false,
        }
    }

    /// The file this split reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A name for this split: the file, and the stripe if it has one.
    pub fn name(&self) -> String {
        if self.stride == 1 {
            self.path.display().to_string()
        } else {
            format!("{}[{}/{}]", self.path.display(), self.next_block % self.stride, self.stride)
        }
    }

    fn io_error(&self, e: std::io::Error) -> IoError {
        IoError::Io { path: self.path.display().to_string(), source: e }
    }

    /// Load the next block of this split; false when there is none.
    fn load_block(&mut self) -> Result<bool, IoError> {
        if self.file.is_none() {
            let f = File::open(&self.path).map_err(|e| self.io_error(e))?;
            self.len = f.metadata().map_err(|e| self.io_error(e))?.len();
            self.file = Some(f);
        }
        let start = self.next_block * BLOCK;
        if start >= self.len {
            return Ok(false);
        }
        self.next_block += self.stride;
        let end = (start + BLOCK).min(self.len);
        // Read from the byte before the block: a line starts in the block
        // iff the byte before it is a newline.
        let from = start.saturating_sub(1);
        let mut file = self.file.take().expect("opened above");
        let len = self.len;
        let result = (|| {
            file.seek(SeekFrom::Start(from))?;
            self.buf.clear();
            (&mut file).take(end - from).read_to_end(&mut self.buf)?;
            if self.buf.len() as u64 != end - from {
                return Err(std::io::Error::other(format!(
                    "the file changed while it was read: it was {len} bytes long, now it ends at byte {}",
                    from + self.buf.len() as u64
                )));
            }
            self.buf_start = from;
            self.limit = (end - from) as usize;
            self.pos = if start == 0 {
                // A UTF-8 byte-order mark is not part of the first line.
                if self.buf.starts_with(b"\xEF\xBB\xBF") {
                    3
                } else {
                    0
                }
            } else {
                match memchr::memchr(b'\n', &self.buf[..self.limit]) {
                    Some(i) => i + 1,
                    None => self.limit, // no line starts in this block
                }
            };
            // Complete the block's last line: read on until a newline at or
            // after the block's last byte, or the end of the file.
            let mut scanned = self.limit.saturating_sub(1).max(self.pos);
            while self.pos < self.limit && memchr::memchr(b'\n', &self.buf[scanned..]).is_none() {
                scanned = self.buf.len();
                let n = (&mut file).take(1 << 16).read_to_end(&mut self.buf)?;
                if n == 0 {
                    break;
                }
            }
            Ok::<(), std::io::Error>(())
        })();
        self.file = Some(file);
        result.map_err(|e| self.io_error(e))?;
        Ok(true)
    }

    /// Where the split is: reading resumes at the next unread line after a
    /// [`seek`](Self::seek) to this position (bincode of a versioned enum).
    pub fn position(&self) -> Vec<u8> {
        let stored = if self.done {
            StoredPosition::Done
        } else if self.pos < self.limit {
            let block = self.next_block - self.stride;
            StoredPosition::Line { block, offset: self.buf_start + self.pos as u64, line: self.line_number }
        } else {
            StoredPosition::Block { block: self.next_block, line: self.line_number }
        };
        bincode::serialize(&(POSITION_FORMAT, stored)).expect("encoding into memory")
    }

    /// Go to a [`position`](Self::position) of a split of the same file and
    /// stripe.
    pub fn seek(&mut self, position: &[u8]) -> Result<(), IoError> {
        let name = self.name();
        let bad = |m: String| IoError::Position { split: name.clone(), message: m };
        let (format, stored): (u32, StoredPosition) =
            bincode::deserialize(position).map_err(|e| bad(format!("unreadable: {e}")))?;
        if format != POSITION_FORMAT {
            return Err(bad(format!("format {format}, this Weir reads format {POSITION_FORMAT}")));
        }
        self.buf.clear();
        (self.pos, self.limit, self.buf_start) = (0, 0, 0);
        self.done = false;
        match stored {
            StoredPosition::Done => self.done = true,
            StoredPosition::Block { block, line } => {
                self.next_block = block;
                self.line_number = line;
            }
            StoredPosition::Line { block, offset, line } => {
                if block % self.stride != self.next_block % self.stride {
                    return Err(bad(format!("block {block} is not in this stripe")));
                }
                self.next_block = block;
                if !self.load_block()? || offset < self.buf_start || offset - self.buf_start > self.buf.len() as u64 {
                    return Err(bad(format!("byte {offset} is not in block {block}: the file changed")));
                }
                self.pos = (offset - self.buf_start) as usize;
                self.line_number = line;
            }
        }
        Ok(())
    }

    /// Call `f` with up to `max` lines (without their line ending) and
    /// where each is in the file, in file order. Returns false once the split
    /// has no more lines. A file that shrinks or is replaced while it is read
    /// is an error naming it.
    pub fn read_lines(&mut self, max: usize, mut f: impl FnMut(&[u8], LinePosition)) -> Result<bool, IoError> {
        let mut n = 0;
        while n < max {
            if self.done {
                return Ok(false);
            }
            if self.pos >= self.limit {
                if !self.load_block()? {
                    self.done = true;
                    self.buf = Vec::new();
                    return Ok(false);
                }
                continue;
            }
            let rest = &self.buf[self.pos..];
            let (line, next) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], self.pos + i + 1),
                None => (rest, self.buf.len()),
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let at = LinePosition { offset: self.buf_start + self.pos as u64, line: self.line_number };
            self.pos = next;
            if let Some(l) = &mut self.line_number {
                *l += 1;
            }
            f(line, at);
            n += 1;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(files: &[PathBuf], peers: usize) -> Vec<Vec<String>> {
        (0..peers)
            .map(|index| {
                let mut lines = Vec::new();
                for mut s in plan(files, &WorkerInfo::new(index, peers)) {
                    while s.read_lines(777, |l, _| lines.push(String::from_utf8(l.to_vec()).unwrap())).unwrap() {}
                }
                lines
            })
            .collect()
    }

    #[test]
    fn every_line_once_in_order_per_split() {
        let dir = tempfile::tempdir().unwrap();
        // Lines of varying length, some longer than a block, crossing block boundaries.
        let mut text = String::new();
        let mut expected = Vec::new();
        for i in 0..60_000u64 {
            let pad = if i % 10_007 == 0 { (BLOCK as usize) + 3 } else { (i * 7919 % 97) as usize };
            let line = format!("{i:08}:{}", "x".repeat(pad));
            text.push_str(&line);
            text.push('\n');
            expected.push(line);
        }
        text.push_str("last-without-newline");
        expected.push("last-without-newline".into());
        let path = dir.path().join("a.txt");
        std::fs::write(&path, &text).unwrap();
        for peers in [1, 2, 3, 5] {
            let per_worker = read_all(std::slice::from_ref(&path), peers);
            for lines in &per_worker {
                assert!(lines.windows(2).all(|w| w[0] < w[1]), "a split reads in file order ({peers} workers)");
            }
            let mut all: Vec<String> = per_worker.into_iter().flatten().collect();
            all.sort();
            assert_eq!(all, expected, "{peers} workers");
        }
    }

    #[test]
    fn files_dealt_round_robin_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("{i}.txt"))).collect();
        std::fs::write(&paths[0], "a\nb\r\n").unwrap();
        std::fs::write(&paths[1], "").unwrap();
        std::fs::write(&paths[2], "c").unwrap();
        let got = read_all(&paths, 2);
        assert_eq!(got, vec![vec!["a".to_string(), "b".into(), "c".into()], vec![]]);
        let got = read_all(&paths[..1], 4);
        assert_eq!(got.concat(), vec!["a".to_string(), "b".into()]);
    }

    #[test]
    fn missing_file_is_an_error() {
        let mut s = plan(&[PathBuf::from("/nonexistent/weir/x")], &WorkerInfo::new(0, 1));
        let e = s[0].read_lines(1, |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/weir/x"), "{e}");
    }

    /// Log rotation: a file truncated while it is read is an error naming
    /// the file, not a panic.
    #[test]
    fn a_file_that_shrinks_while_read_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rotated.log");
        let line = "x".repeat(99) + "\n";
        std::fs::write(&path, line.repeat(30_000)).unwrap(); // 3 MB: several blocks
        let mut s = plan(std::slice::from_ref(&path), &WorkerInfo::new(0, 1));
        assert!(s[0].read_lines(10, |_, _| {}).unwrap());
        std::fs::write(&path, line.repeat(100)).unwrap(); // truncated in place
        let mut result = Ok(true);
        while let Ok(true) = result {
            result = s[0].read_lines(1000, |_, _| {});
        }
        let e = result.unwrap_err().to_string();
        assert!(e.contains("rotated.log") && e.contains("changed while it was read"), "{e}");
    }

    /// A split stopped anywhere and sought to its position in a fresh
    /// split reads exactly the remaining lines.
    #[test]
    fn a_position_resumes_exactly_where_the_split_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.txt");
        let text: String = (0..300_000).map(|i| format!("{i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        for peers in [1, 3] {
            for stop in [0usize, 1, 5_000, 99_999, 299_999] {
                let mut before = Vec::new();
                let mut s = plan(std::slice::from_ref(&path), &WorkerInfo::new(1 % peers, peers)).remove(0);
                let mut n = 0;
                while n < stop && s.read_lines(1, |l, _| before.push(l.to_vec())).unwrap() {
                    n += 1;
                }
                let at = s.position();
                let mut rest = Vec::new();
                while s.read_lines(1000, |l, _| rest.push(l.to_vec())).unwrap() {}
                let mut fresh = plan(std::slice::from_ref(&path), &WorkerInfo::new(1 % peers, peers)).remove(0);
                fresh.seek(&at).unwrap();
                let mut again = Vec::new();
                while fresh.read_lines(777, |l, _| again.push(l.to_vec())).unwrap() {}
                assert_eq!(again, rest, "{peers} workers, stopped after {stop} lines");
            }
        }
        let mut s = plan(std::slice::from_ref(&path), &WorkerInfo::new(0, 1)).remove(0);
        assert!(s.seek(b"junk").is_err());
    }

    #[test]
    fn positions_and_a_byte_order_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bom.txt");
        std::fs::write(&path, "\u{feff}first\nsecond\r\nthird").unwrap();
        let mut s = plan(std::slice::from_ref(&path), &WorkerInfo::new(0, 1));
        let mut got = Vec::new();
        while s[0].read_lines(10, |l, at| got.push((String::from_utf8(l.to_vec()).unwrap(), at.to_string()))).unwrap() {
        }
        assert_eq!(
            got,
            vec![
                ("first".to_string(), "line 1 (byte 3)".to_string()),
                ("second".to_string(), "line 2 (byte 9)".to_string()),
                ("third".to_string(), "line 3 (byte 17)".to_string()),
            ]
        );
    }
}
