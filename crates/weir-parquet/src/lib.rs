//! # weir-parquet
//!
//! Parquet files as a Weir source, in a crate of its own (the `parquet`
//! crate stays out of the core and out of pipelines that do not use it):
//! [`read_parquet`] reads a file or every `.parquet` file of a folder (a
//! local path, or a URL of an object store: `s3://bucket/trips/`), one
//! split per row group, so the row groups of one big file are read by all
//! workers. Each row becomes a `T` through its JSON form (column names as
//! field names) or a function of yours; a row that does not convert goes
//! to the dead letters. A split's position is the number of rows it read,
//! so a checkpointed run resumes inside a row group. Event time comes from
//! the value ([`ParquetSource::event_time`]); files are bounded input, read
//! as a batch unless a watermark policy says otherwise.
//!
//! [`ParquetSinkExt::write_parquet`] writes rows as Parquet files through
//! the transactional file sink: a file per worker and epoch, visible once
//! the checkpoint covering the epoch is committed (exactly once), in a
//! local folder or under an object-store URL.
//!
//! Object stores (`weir-object-store`): `s3://bucket/prefix`, with the
//! credentials, region and endpoint from the usual `AWS_*` environment
//! variables (`AWS_ENDPOINT=http://127.0.0.1:5000` and
//! `AWS_ALLOW_HTTP=true` for a local S3 server), or `file:///path`. A
//! file's footer is fetched when the pipeline is built, a row group in one
//! ranged GET when its split is read. Object stores need the
//! `object-store` feature (on by default; without it a URL is an error).
//!
//! Codecs: Snappy, LZ4 and gzip (pure Rust); not zstd or brotli yet.
//!
//! ```no_run
//! use weir_parquet::{read_parquet, ParquetSource};
//! use weir_pipeline::prelude::*;
//! #[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
//! struct Trip { vendor: String, fare: f64, pickup_ms: i64 }
//! let p = Pipeline::new();
//! let source = ParquetSource::<Trip>::json("data/trips/").event_time(|t| t.pickup_ms);
//! let (trips, dead_letters) = read_parquet(&p, source).unwrap();
//! ```

#![warn(missing_docs)]

#[cfg_attr(not(feature = "object-store"), path = "no_objects.rs")]
mod objects;
mod sink;
pub use sink::ParquetSinkExt;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::serialized_reader::ReadOptionsBuilder;
use parquet::record::reader::RowIter;
use parquet::record::Row;

use serde::de::DeserializeOwned;
use weir_model::{Timestamp, WindowingStrategy};
use weir_pipeline::{PCollection, Pipeline};
use weir_runtime::split::{DeadLetter, ReadResult, Split, SplitOutput, SplitReader, SplitSource, WatermarkPolicy};
use weir_runtime::{Data, NodeKind, PipelineError, Source, SourceFactory, WorkerInfo};

/// What can go wrong when a Parquet source is set up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ParquetError {
    /// The path cannot be read.
    #[error("parquet: cannot read {path}: {message}")]
    Io {
        /// The file or folder.
        path: String,
        /// Why.
        message: String,
    },
    /// A file is not a Parquet file the reader understands.
    #[error("parquet: {path} is not a readable Parquet file: {message}")]
    Format {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The path holds no Parquet file.
    #[error("parquet: {0} holds no .parquet file")]
    Empty(String),
    /// A sink's schema is not one it can write.
    #[error("parquet: a schema the sink cannot write: {0}")]
    Schema(String),
}

type Decode<T> = Arc<dyn Fn(&Row) -> Result<T, String> + Send + Sync>;
type EventTime<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;

/// How to read Parquet files (see [`read_parquet`]).
pub struct ParquetSource<T> {
    path: PathBuf,
    decode: Decode<T>,
    time: Option<EventTime<T>>,
    policy: Option<WatermarkPolicy>,
    name: String,
}

impl<T: DeserializeOwned + Data> ParquetSource<T> {
    /// Rows converted to `T` through their JSON form: a column is a field
    /// of the same name (nested groups are objects, lists are arrays).
    pub fn json(path: impl Into<PathBuf>) -> Self {
        ParquetSource::new(path, |row: &Row| serde_json::from_value(row.to_json_value()).map_err(|e| e.to_string()))
    }
}

impl<T: Data> ParquetSource<T> {
    /// Rows converted by `decode` (an `Err` goes to the dead letters).
    pub fn new(path: impl Into<PathBuf>, decode: impl Fn(&Row) -> Result<T, String> + Send + Sync + 'static) -> Self {
        let path = path.into();
        ParquetSource {
            name: format!("ReadParquet({})", path.display()),
            path,
            decode: Arc::new(decode),
            time: None,
            policy: None,
        }
    }

    /// Event time from the value (milliseconds since the Unix epoch); by
    /// default every row is at the start of time.
    pub fn event_time(mut self, f: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        self.time = Some(Arc::new(move |v: &T| Timestamp::from_millis(f(v))));
        self
    }

    /// The watermark policy (default: a batch, the watermark stays at the
    /// start until every split is read, so no row is late); e.g.
    /// `WatermarkPolicy::bounded_out_of_orderness(d)` to replay the files
    /// as a stream.
    pub fn watermark(mut self, policy: WatermarkPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The transform's name (default `ReadParquet(<path>)`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// The `.parquet` files of local `path` (a file, or a folder's files sorted by name).
fn local_files(path: &Path) -> Result<Vec<PathBuf>, ParquetError> {
    let io = |e: std::io::Error| ParquetError::Io { path: path.display().to_string(), message: e.to_string() };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let p = entry.map_err(io)?.path();
        if p.is_file() && p.extension().is_some_and(|e| e == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(ParquetError::Empty(path.display().to_string()));
    }
    Ok(out)
}

/// `path` as an object-store URL (`scheme://...`), if it is one.
fn url_of(path: &Path) -> Option<&str> {
    path.to_str().filter(|p| {
        p.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
        })
    })
}

/// Where a file's bytes are.
enum Place {
    Local(PathBuf),
    #[cfg(feature = "object-store")]
    Object(Arc<objects::ObjectFile>),
}

/// The byte range of row group `group` of `meta`: from its first column
/// chunk's first page to its last one's end.
fn group_range(meta: &parquet::file::metadata::ParquetMetaData, group: usize) -> (u64, u64) {
    let (mut start, mut end) = (u64::MAX, 0);
    for c in meta.row_group(group).columns() {
        let (s, len) = c.byte_range();
        start = start.min(s);
        end = end.max(s + len);
    }
    (start.min(end), end)
}

/// A row group to read: its file, number, rows, and byte range.
type Group = (Arc<Place>, String, usize, i64, (u64, u64));

/// The row groups of the files `path` names, read from their footers.
fn plan(path: &Path) -> Result<Vec<Group>, ParquetError> {
    let mut groups = Vec::new();
    let Some(url) = url_of(path) else {
        for file in local_files(path)? {
            let shown = file.display().to_string();
            let f = File::open(&file).map_err(|e| ParquetError::Io { path: shown.clone(), message: e.to_string() })?;
            let reader = SerializedFileReader::new(f)
                .map_err(|e| ParquetError::Format { path: shown.clone(), message: e.to_string() })?;
            let place = Arc::new(Place::Local(file));
            for (i, g) in reader.metadata().row_groups().iter().enumerate() {
                groups.push((place.clone(), shown.clone(), i, g.num_rows(), group_range(reader.metadata(), i)));
            }
        }
        return Ok(groups);
    };
    objects::plan(url)
}

/// The splits: each row group of each file, planned when the pipeline is built.
struct RowGroups<T> {
    groups: Vec<Group>,
    decode: Decode<T>,
    time: Option<EventTime<T>>,
}

impl<T: Data> SplitSource for RowGroups<T> {
    type Split = RowGroupSplit<T>;
    fn splits(&self, _workers: usize) -> Result<Vec<RowGroupSplit<T>>, PipelineError> {
        Ok(self
            .groups
            .iter()
            .map(|(place, shown, group, rows, range)| RowGroupSplit {
                id: format!("{shown}#{group}"),
                place: place.clone(),
                group: *group,
                range: *range,
                rows: *rows as u64,
                read: 0,
                rows_iter: None,
                decode: self.decode.clone(),
                time: self.time.clone(),
            })
            .collect())
    }
}

/// One row group of one file.
struct RowGroupSplit<T> {
    id: String,
    place: Arc<Place>,
    group: usize,
    /// The group's bytes in the file (fetched whole from an object store).
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    range: (u64, u64),
    /// Rows in the group.
    rows: u64,
    /// Rows read so far (the position).
    read: u64,
    rows_iter: Option<RowIter<'static>>,
    decode: Decode<T>,
    time: Option<EventTime<T>>,
}

impl<T> RowGroupSplit<T> {
    fn fail(&self, e: impl std::fmt::Display) -> PipelineError {
        PipelineError::Runner(format!("parquet: {}: {e}", self.id))
    }

    /// The rows of this group, from row `read` on.
    fn open(&self) -> Result<RowIter<'static>, PipelineError> {
        let group = self.group;
        let options = || ReadOptionsBuilder::new().with_predicate(Box::new(move |_, i| i == group)).build();
        let reader: Box<dyn FileReader> = match &*self.place {
            Place::Local(path) => {
                let file = File::open(path).map_err(|e| self.fail(e))?;
                Box::new(SerializedFileReader::new_with_options(file, options()).map_err(|e| self.fail(e))?)
            }
            #[cfg(feature = "object-store")]
            Place::Object(object) => {
                let bytes = object.fetch(self.range).map_err(|e| self.fail(e))?;
                Box::new(SerializedFileReader::new_with_options(bytes, options()).map_err(|e| self.fail(e))?)
            }
        };
        let mut rows = RowIter::from_file_into(reader);
        for _ in 0..self.read {
            match rows.next() {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(self.fail(e)),
                None => return Err(self.fail(format!("holds fewer rows than the {} read before", self.read))),
            }
        }
        Ok(rows)
    }
}

impl<T: Data> Split for RowGroupSplit<T> {
    type Item = T;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn read(&mut self, max: usize, out: &mut SplitOutput<'_, T>) -> Result<ReadResult, PipelineError> {
        if self.read >= self.rows {
            self.rows_iter = None;
            return Ok(ReadResult::Done);
        }
        if self.rows_iter.is_none() {
            self.rows_iter = Some(self.open()?);
        }
        for _ in 0..max {
            let rows = self.rows_iter.as_mut().expect("opened above");
            let row = match rows.next() {
                Some(Ok(row)) => row,
                Some(Err(e)) => return Err(self.fail(e)),
                None => break,
            };
            match (self.decode)(&row) {
                Ok(v) => {
                    let at = self.time.as_ref().map_or(Timestamp::MIN, |f| f(&v));
                    out.push(v, at);
                }
                Err(reason) => out.dead_letter(DeadLetter {
                    file: self.id.clone(),
                    line: row.to_json_value().to_string(),
                    reason: format!("row {}: {reason}", self.read),
                }),
            }
            self.read += 1;
        }
        if self.read >= self.rows {
            self.rows_iter = None;
            return Ok(ReadResult::Done);
        }
        Ok(ReadResult::Data)
    }

    /// The rows read.
    fn position(&self) -> Option<Vec<u8>> {
        Some(self.read.to_le_bytes().to_vec())
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), PipelineError> {
        let read: [u8; 8] = position
            .try_into()
            .map_err(|_| self.fail(format!("a Parquet position is 8 bytes, not {}", position.len())))?;
        self.read = u64::from_le_bytes(read);
        if self.read > self.rows {
            return Err(self.fail(format!("a position of {} rows in a group of {}", self.read, self.rows)));
        }
        self.rows_iter = None;
        Ok(())
    }
}

/// Read Parquet files: their rows, and those that could not be converted
/// (as dead letters, counted in the transform's metrics). The files are
/// opened and their row groups planned here, so a missing or unreadable
/// file is an error before the pipeline runs.
pub fn read_parquet<T: Data>(
    p: &Pipeline,
    source: ParquetSource<T>,
) -> Result<(PCollection<T>, PCollection<DeadLetter>), ParquetError> {
    let groups = plan(&source.path)?;
    let policy = source.policy.unwrap_or_else(WatermarkPolicy::batch);
    let splits = Arc::new(RowGroups { groups, decode: source.decode, time: source.time });
    let factory: SourceFactory = Arc::new(move |w: &WorkerInfo| {
        let reader = SplitReader::for_worker(&*splits, w, policy.clone(), true)
            .expect("Parquet row groups are planned when the pipeline is built");
        Box::new(reader) as Box<dyn Source>
    });
    let idx = p.add_node(&source.name, vec![], 2, NodeKind::Source(factory));
    let s = Arc::new(WindowingStrategy::default());
    Ok((p.collection(idx, 0, s.clone()), p.collection(idx, 1, s)))
}
