//! Parquet files in an object store: the footer is fetched when the
//! pipeline is built (one or two ranged GETs per file), and a row group's
//! bytes in one ranged GET when its split is opened.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::errors::ParquetError as Format;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};
use weir_object_store::ObjectDir;

use crate::{group_range, Group, ParquetError, Place};

/// The tail fetched first: most footers fit in it.
const TAIL: u64 = 64 * 1024;

/// One Parquet object.
pub(crate) struct ObjectFile {
    pub dir: Arc<ObjectDir>,
    /// The name under the directory's prefix ("" when the URL names the object).
    pub name: String,
    pub size: u64,
    /// The metadata and the 8 bytes after it, the file's last bytes.
    footer: Bytes,
}

impl ObjectFile {
    /// The object's footer and its metadata.
    pub fn open(dir: Arc<ObjectDir>, name: String, size: u64) -> Result<(ObjectFile, ParquetMetaData), String> {
        if size < 12 {
            return Err(format!("{size} bytes: too small for a Parquet file"));
        }
        let tail_len = size.min(TAIL);
        let tail = dir.get_range(&name, size - tail_len..size).map_err(|e| e.to_string())?;
        let last = &tail[tail.len() - 8..];
        if &last[4..] != b"PAR1" {
            return Err("no Parquet footer (the file does not end in PAR1)".into());
        }
        let meta_len = u32::from_le_bytes(last[..4].try_into().expect("4 bytes")) as u64;
        let need = meta_len + 8;
        if need + 4 > size {
            return Err(format!("a footer of {need} bytes in a file of {size}"));
        }
        let footer = if need <= tail_len {
            tail.slice((tail_len - need) as usize..)
        } else {
            dir.get_range(&name, size - need..size).map_err(|e| e.to_string())?
        };
        let meta = ParquetMetaDataReader::decode_metadata(&footer[..meta_len as usize]).map_err(|e| e.to_string())?;
        Ok((ObjectFile { dir, name, size, footer }, meta))
    }

    /// The bytes of one row group (`range`, from the metadata) and the
    /// footer: all a reader of that group asks for.
    pub fn fetch(self: &Arc<Self>, range: (u64, u64)) -> Result<Ranges, String> {
        let group = self.dir.get_range(&self.name, range.0..range.1).map_err(|e| e.to_string())?;
        let footer_at = self.size - self.footer.len() as u64;
        Ok(Ranges { file: self.clone(), parts: vec![(range.0, group), (footer_at, self.footer.clone())] })
    }
}

/// Parts of an object fetched before reading; anything else a reader asks
/// for is fetched then (a ranged GET).
pub(crate) struct Ranges {
    file: Arc<ObjectFile>,
    parts: Vec<(u64, Bytes)>,
}

impl Ranges {
    fn fetched(&self, start: u64, len: u64) -> Option<Bytes> {
        self.parts.iter().find_map(|(at, b)| {
            (start >= *at && start + len <= at + b.len() as u64).then(|| b.slice((start - at) as usize..))
        })
    }

    fn fetch(&self, start: u64, end: u64) -> parquet::errors::Result<Bytes> {
        self.file.dir.get_range(&self.file.name, start..end).map_err(|e| Format::External(Box::new(e)))
    }
}

impl Length for Ranges {
    fn len(&self) -> u64 {
        self.file.size
    }
}

impl ChunkReader for Ranges {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        match self.fetched(start, 0) {
            Some(b) => Ok(b.reader()),
            None => Ok(self.fetch(start, self.file.size)?.reader()),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self.fetched(start, length as u64) {
            Some(b) => Ok(b.slice(..length)),
            None => self.fetch(start, start + length as u64),
        }
    }
}

/// The row groups of the Parquet objects `url` names: one object, or the
/// `.parquet` objects directly under a prefix.
pub(crate) fn plan(url: &str) -> Result<Vec<Group>, ParquetError> {
    let mut groups = Vec::new();
    let io =
        |e: weir_object_store::ObjectStoreError| ParquetError::Io { path: url.to_string(), message: e.to_string() };
    let dir = Arc::new(ObjectDir::parse(url).map_err(io)?);
    // The URL names an object, or a prefix whose `.parquet` objects are read.
    // (Looking up a bucket's root fails on some stores: then it is a prefix.)
    let names: Vec<(String, u64)> = match dir.size("") {
        Ok(Some(size)) if !url.ends_with('/') => vec![(String::new(), size)],
        _ => dir
            .list("")
            .map_err(io)?
            .into_iter()
            .filter(|(name, _)| !name.contains('/') && name.ends_with(".parquet"))
            .collect(),
    };
    if names.is_empty() {
        return Err(ParquetError::Empty(url.to_string()));
    }
    for (name, size) in names {
        let shown = if name.is_empty() { url.to_string() } else { format!("{}/{name}", url.trim_end_matches('/')) };
        let (file, meta) = ObjectFile::open(dir.clone(), name, size)
            .map_err(|message| ParquetError::Format { path: shown.clone(), message })?;
        let place = Arc::new(Place::Object(Arc::new(file)));
        for (i, g) in meta.row_groups().iter().enumerate() {
            groups.push((place.clone(), shown.clone(), i, g.num_rows(), group_range(&meta, i)));
        }
    }
    Ok(groups)
}
