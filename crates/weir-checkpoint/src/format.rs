//! The on-disk envelope of every checkpoint file: a magic number, the
//! format version, the kind of file, the payload's length, the payload
//! (bincode), and an XXH3-64 checksum of everything before it.
//!
//! ```text
//! b"WEIRCKPT" | version: u32 LE | kind: u8 | len: u64 LE | payload | xxh3-64: u64 LE
//! ```
//!
//! A later Weir that changes a payload bumps [`FORMAT_VERSION`]; a file of
//! another version is refused with [`CheckpointError::Version`], never
//! misread.

use std::io::Write;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{CheckpointError, Result};

/// The magic number that starts every checkpoint file.
pub const MAGIC: &[u8; 8] = b"WEIRCKPT";
/// The format version this build writes and reads.
/// 2: manifests say which split plan and key groups the run had (rescaling).
pub const FORMAT_VERSION: u32 = 3;
/// Bytes before the payload.
pub(crate) const HEADER: usize = 8 + 4 + 1 + 8;

/// What a checkpoint file holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// One worker's state for one epoch.
    WorkerState = 1,
    /// A checkpoint's manifest (written last: it commits the checkpoint).
    Manifest = 2,
    /// The marker of a run that completed.
    Completed = 3,
    /// The job a location belongs to.
    Job = 4,
}

/// Encode `payload` as a file of `kind`.
///
/// ```
/// use weir_checkpoint::format::{decode, encode, Kind};
/// let bytes = encode(Kind::Manifest, &(7u64, "x".to_string()));
/// let back: (u64, String) = decode("m", Kind::Manifest, &bytes).unwrap();
/// assert_eq!(back, (7, "x".to_string()));
/// let mut flipped = bytes.clone();
/// flipped[30] ^= 1;
/// assert!(decode::<(u64, String)>("m", Kind::Manifest, &flipped).is_err());
/// assert!(decode::<(u64, String)>("m", Kind::Manifest, &bytes[..bytes.len() - 1]).is_err());
/// ```
pub fn encode<T: Serialize>(kind: Kind, payload: &T) -> Vec<u8> {
    let len = bincode::serialized_size(payload).expect("checkpoint payloads are plain data");
    let mut out = Vec::with_capacity(HEADER + len as usize + 8);
    encode_into(kind, payload, &mut out).expect("writing into memory");
    out
}

/// Encode `payload` as a file of `kind` into `out` as it goes (the payload
/// is never copied whole), the same bytes as [`encode`]; the number of
/// bytes written.
///
/// ```
/// use weir_checkpoint::format::{encode, encode_into, Kind};
/// let mut out = Vec::new();
/// let n = encode_into(Kind::WorkerState, &vec![1u8; 1000], &mut out).unwrap();
/// assert_eq!(out, encode(Kind::WorkerState, &vec![1u8; 1000]));
/// assert_eq!(n, out.len() as u64);
/// ```
pub fn encode_into<T: Serialize>(kind: Kind, payload: &T, out: &mut dyn Write) -> std::io::Result<u64> {
    let len = bincode::serialized_size(payload).map_err(std::io::Error::other)?;
    encode_with(kind, len, out, &mut |w| bincode::serialize_into(w, payload).map_err(std::io::Error::other))
}

/// Encode a file of `kind` whose payload, of exactly `len` bytes, is
/// written by `payload` as it goes; the number of bytes written. A
/// payload of another length is an error (the file would be refused).
///
/// ```
/// use weir_checkpoint::format::{encode, encode_with, Kind};
/// let mut out = Vec::new();
/// let payload = bincode::serialize(&vec![7u8; 10]).unwrap();
/// encode_with(Kind::WorkerState, payload.len() as u64, &mut out, &mut |w| w.write_all(&payload)).unwrap();
/// assert_eq!(out, encode(Kind::WorkerState, &vec![7u8; 10]));
/// assert!(encode_with(Kind::WorkerState, 3, &mut Vec::new(), &mut |w| w.write_all(b"four")).is_err());
/// ```
pub fn encode_with(
    kind: Kind,
    len: u64,
    out: &mut dyn Write,
    payload: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut hashed = Hashed { out, sum: xxhash_rust::xxh3::Xxh3::new(), written: 0 };
    hashed.write_all(MAGIC)?;
    hashed.write_all(&FORMAT_VERSION.to_le_bytes())?;
    hashed.write_all(&[kind as u8])?;
    hashed.write_all(&len.to_le_bytes())?;
    payload(&mut hashed)?;
    if hashed.written != HEADER as u64 + len {
        return Err(std::io::Error::other(format!(
            "a checkpoint payload of {} bytes, announced as {len}",
            hashed.written - HEADER as u64
        )));
    }
    let sum = hashed.sum.digest();
    hashed.out.write_all(&sum.to_le_bytes())?;
    Ok(HEADER as u64 + len + 8)
}

/// A writer that checksums and counts what goes through it.
struct Hashed<'a> {
    out: &'a mut dyn Write,
    sum: xxhash_rust::xxh3::Xxh3,
    written: u64,
}

impl Write for Hashed<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.sum.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Decode a file of `kind` named `file` (for messages), checking its
/// magic number, version, kind, length and checksum.
pub fn decode<T: DeserializeOwned>(file: &str, kind: Kind, bytes: &[u8]) -> Result<T> {
    let corrupt = |reason: String| CheckpointError::Corrupt { file: file.to_string(), reason };
    if bytes.len() < HEADER + 8 {
        return Err(corrupt(format!("not a Weir checkpoint file ({} bytes)", bytes.len())));
    }
    let (content, sum) = bytes.split_at(bytes.len() - 8);
    let stored = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
    check_header(file, kind, &bytes[..HEADER], bytes.len() as u64, xxhash_rust::xxh3::xxh3_64(content), stored)?;
    bincode::deserialize(&content[HEADER..]).map_err(|e| corrupt(format!("undecodable payload: {e}")))
}

/// Check a file of `kind` named `file` from its `header` (the first
/// [`HEADER`] bytes), its length, the checksum of all but its last 8
/// bytes and the checksum stored in them; the payload's length.
pub(crate) fn check_header(file: &str, kind: Kind, header: &[u8], len: u64, sum: u64, stored: u64) -> Result<u64> {
    let corrupt = |reason: String| CheckpointError::Corrupt { file: file.to_string(), reason };
    if len < (HEADER + 8) as u64 || &header[..8] != MAGIC {
        return Err(corrupt(format!("not a Weir checkpoint file ({len} bytes)")));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let payload = u64::from_le_bytes(header[13..21].try_into().expect("8 bytes"));
    if len - (HEADER + 8) as u64 != payload {
        return Err(corrupt(format!(
            "truncated or padded: {} payload bytes, the header says {payload}",
            len - (HEADER + 8) as u64
        )));
    }
    if sum != stored {
        return Err(corrupt("checksum mismatch".into()));
    }
    if version != FORMAT_VERSION {
        return Err(CheckpointError::Version { file: file.to_string(), found: version, supported: FORMAT_VERSION });
    }
    if header[12] != kind as u8 {
        return Err(corrupt(format!("a file of kind {}, expected {:?}", header[12], kind)));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = encode(Kind::WorkerState, &vec![1u8, 2, 3, 4, 5]);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode::<Vec<u8>>("f", Kind::WorkerState, &b).is_err(), "byte {i} bit {bit}");
            }
        }
        assert_eq!(decode::<Vec<u8>>("f", Kind::WorkerState, &bytes).unwrap(), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn another_version_or_kind_is_refused_clearly() {
        let mut bytes = encode(Kind::Manifest, &1u64);
        bytes[8] = 9;
        let n = bytes.len();
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..n - 8]);
        bytes[n - 8..].copy_from_slice(&sum.to_le_bytes());
        let e = decode::<u64>("MANIFEST", Kind::Manifest, &bytes).unwrap_err();
        assert!(e.to_string().contains("format version 9"), "{e}");
        let e = decode::<u64>("MANIFEST", Kind::WorkerState, &encode(Kind::Manifest, &1u64)).unwrap_err();
        assert!(e.to_string().contains("expected WorkerState"), "{e}");
    }
}
