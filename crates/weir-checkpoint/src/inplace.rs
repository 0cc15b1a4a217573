//! State files read where they lie: a big state file of a local store is
//! checked (checksum, header) by streaming it once, and its big operator
//! snapshots are left in the file as [`Blob`]s, read when the operator is
//! restored. Recovery of a state larger than memory then never holds it
//! whole.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::error::{CheckpointError, Result};
use crate::format::{self, Kind};
use crate::{NodeEntry, NodeState, WorkerState};

/// Bytes read at a time.
const CHUNK: usize = 1 << 20;

/// An operator snapshot left in its state file (opened once: a file
/// removed meanwhile is still read whole).
#[derive(Clone)]
pub struct Blob {
    file: Arc<File>,
    /// The state file's name (for messages).
    name: String,
    offset: u64,
    len: u64,
}

impl Blob {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Its bytes, read as they are needed.
    pub fn reader(&self) -> impl Read + '_ {
        BufReader::with_capacity(CHUNK, At { file: &self.file, pos: self.offset, end: self.offset + self.len })
    }
    /// All its bytes in memory.
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len as usize);
        self.reader().read_to_end(&mut out).map_err(|e| CheckpointError::Corrupt {
            file: self.name.clone(),
            reason: format!("reading a snapshot back: {e}"),
        })?;
        Ok(out)
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes at {} of {})", self.len, self.offset, self.name)
    }
}

impl PartialEq for Blob {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.offset, self.len) == (&other.name, other.offset, other.len)
    }
}

impl Eq for Blob {}

/// A range of a file, read with positioned reads.
struct At<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.end.saturating_sub(self.pos) as usize);
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for At<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.end.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::other("a seek before the start of a file"))?;
        Ok(self.pos)
    }
}

/// Read state file `name` (`file`, of `len` bytes) in place: check it
/// whole as [`format::decode`] does, then decode it with every operator
/// snapshot of at least `blob_above` bytes left in the file.
pub(crate) fn read_state(name: &str, file: File, len: u64, blob_above: u64) -> Result<WorkerState> {
    let corrupt = |reason: String| CheckpointError::Corrupt { file: name.to_string(), reason };
    let io = |e: std::io::Error| corrupt(format!("reading it: {e}"));
    let file = Arc::new(file);
    // The header and the checksum of everything before the last 8 bytes.
    let mut head = [0u8; format::HEADER];
    if len < (format::HEADER + 8) as u64 {
        return Err(corrupt(format!("not a Weir checkpoint file ({len} bytes)")));
    }
    file.read_exact_at(&mut head, 0).map_err(io)?;
    let mut sum = xxhash_rust::xxh3::Xxh3::new();
    let mut whole = At { file: &file, pos: 0, end: len - 8 };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = whole.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        sum.update(&buf[..n]);
    }
    let mut stored = [0u8; 8];
    file.read_exact_at(&mut stored, len - 8).map_err(io)?;
    let payload = format::check_header(name, Kind::WorkerState, &head, len, sum.digest(), u64::from_le_bytes(stored))?;

    let mut r = Parser {
        input: BufReader::with_capacity(CHUNK, At { file: &file, pos: format::HEADER as u64, end: len - 8 }),
        pos: format::HEADER as u64,
    };
    let bad = |e: std::io::Error| corrupt(format!("undecodable payload: {e}"));
    let epoch = r.u64().map_err(bad)?;
    let worker = r.u32().map_err(bad)?;
    let count = r.u64().map_err(bad)?;
    let mut nodes = Vec::new();
    for _ in 0..count {
        let node = r.u32().map_err(bad)?;
        let entry_name =
            String::from_utf8(r.byte_vec().map_err(bad)?).map_err(|e| corrupt(format!("a node name: {e}")))?;
        let finished = match r.u8().map_err(bad)? {
            0 => false,
            1 => true,
            b => return Err(corrupt(format!("a flag of value {b}"))),
        };
        // NodeState's variants in declaration order (bincode's tags).
        let state = match r.u32().map_err(bad)? {
            0 => {
                let n = r.u64().map_err(bad)?;
                if n >= blob_above {
                    let blob = Blob { file: file.clone(), name: name.to_string(), offset: r.pos, len: n };
                    r.skip(n).map_err(bad)?;
                    NodeState::Stored { whole: blob, changes: Vec::new() }
                } else {
                    NodeState::Operator(r.exactly(n).map_err(bad)?)
                }
            }
            1 => {
                // Bounded by what is left of the payload: a corrupt length
                // is an error, not an allocation.
                use bincode::Options;
                let left = format::HEADER as u64 + payload - r.pos;
                let options = bincode::DefaultOptions::new().with_fixint_encoding().allow_trailing_bytes();
                let position = options.with_limit(left).deserialize_from(&mut r);
                NodeState::Source(position.map_err(|e| corrupt(format!("a position: {e}")))?)
            }
            2 => {
                let since = r.u64().map_err(bad)?;
                NodeState::Changes { since, changes: r.byte_vec().map_err(bad)? }
            }
            t => return Err(corrupt(format!("a node state of tag {t}"))),
        };
        nodes.push(NodeEntry { node, name: entry_name, finished, state });
    }
    if r.pos != format::HEADER as u64 + payload {
        return Err(corrupt("bytes left after the last node".into()));
    }
    Ok(WorkerState { epoch, worker, nodes })
}

/// Bincode's fixed-width encoding, read from a buffered range of a file,
/// counting where it is.
struct Parser<'a> {
    input: BufReader<At<'a>>,
    pos: u64,
}

impl Read for Parser<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Parser<'_> {
    fn array<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.read_exact(&mut b)?;
        Ok(b)
    }
    fn u8(&mut self) -> std::io::Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> std::io::Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// `n` bytes (the vector grows only as they arrive).
    fn exactly(&mut self, n: u64) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        if Read::take(&mut *self, n).read_to_end(&mut out)? as u64 != n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(out)
    }
    /// A byte vector: its length, its bytes.
    fn byte_vec(&mut self) -> std::io::Result<Vec<u8>> {
        let n = self.u64()?;
        self.exactly(n)
    }
    /// Pass over `n` bytes without reading them.
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let n = i64::try_from(n).map_err(std::io::Error::other)?;
        self.input.seek_relative(n)?;
        self.pos += n as u64;
        if self.input.get_ref().pos > self.input.get_ref().end {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}
