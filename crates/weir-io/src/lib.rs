//! # weir-io
//!
//! File and console connectors for Weir pipelines.
//!
//! - [`read_text`]: lines of one file, every file of a folder, or every file
//!   matching a glob; each file is a split, splits are spread over workers.
//! - [`read_json_lines`]: the same, each line parsed into a typed value with
//!   its event timestamp taken from the value. Bounded input is processed as
//!   a batch by default (no element is late); a file can be replayed as a
//!   stream with an event-time watermark ([`JsonLines::with_event_time_watermark`]).
//!   Lines that cannot be parsed, or carry an invalid timestamp, go to a
//!   dead-letter output and are counted, and never stop the job.
//! - [`TextSinkExt::write_text`]: sharded output files, one per worker,
//!   written under a temporary name and renamed when complete.
//! - [`windowed::WindowedTextSinkExt::write_windowed_text`]: a set of files
//!   per window and pane, each visible as soon as it is complete (with
//!   checkpoints: when its checkpoint commits, exactly once).
//! - [`StdoutExt::print`]: one line per element on standard output.

#![warn(missing_docs)]

use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

pub mod epochs;
pub mod sink;
pub mod stripes;
pub mod windowed;
use sink::ShardFile;
use stripes::{LinePosition, LineSplit};
use weir_model::{Duration, Timestamp, WindowingStrategy};
use weir_pipeline::{PCollection, Pipeline};
use weir_runtime::split::{ReadResult, Split, SplitOutput, SplitReader, SplitSource, WatermarkPolicy};
use weir_runtime::{
    Batch, Data, NodeCounters, NodeKind, OpContext, OpResult, Operator, PipelineError, Routing, Source, WindowedValue,
    WorkerInfo,
};

/// The error type of the IO crate.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// No file matches the given path or pattern.
    #[error("no input files match '{0}'")]
    NoInput(String),
    /// A glob pattern is malformed.
    #[error("invalid file pattern '{pattern}': {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        message: String,
    },
    /// A folder given as input holds entries that are not regular files,
    /// which Weir would otherwise skip without a word.
    #[error(
        "the input folder {folder} holds entries that are not regular files: {entries}; Weir reads the regular \
         files of a folder (hidden ones excepted): move the others out, or name the files with a glob"
    )]
    NotFiles {
        /// The folder.
        folder: String,
        /// Each entry and what it is.
        entries: String,
    },
    /// A stored split position that cannot be used.
    #[error("split {split}: cannot resume from the stored position: {message}")]
    Position {
        /// The split.
        split: String,
        /// What is wrong.
        message: String,
    },
    /// An operating-system error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// An error of a storage service (an object store) on a name.
    #[error("{location}: {message}")]
    Storage {
        /// The location (a URL) and name.
        location: String,
        /// What went wrong.
        message: String,
    },
}

/// The files a path names: the file itself, every regular file of a folder
/// (sorted, hidden files skipped; anything else in the folder — a
/// sub-folder, a FIFO, a dangling link — is an error rather than silently
/// skipped), or every file matching a glob pattern.
pub fn resolve_inputs(path: &str) -> Result<Vec<PathBuf>, IoError> {
    let p = Path::new(path);
    let mut files: Vec<PathBuf> = if p.is_file() {
        vec![p.to_path_buf()]
    } else if p.is_dir() {
        let mut files = Vec::new();
        let mut others = Vec::new();
        for entry in std::fs::read_dir(p).map_err(|source| IoError::Io { path: path.to_string(), source })? {
            let entry = entry.map_err(|source| IoError::Io { path: path.to_string(), source })?;
            let f = entry.path();
            if f.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            match std::fs::metadata(&f) {
                Ok(m) if m.is_file() => files.push(f),
                Ok(m) if m.is_dir() => others.push(format!("{} (a folder)", f.display())),
                Ok(_) => others.push(format!("{} (a FIFO, socket or device)", f.display())),
                Err(_) => others.push(format!("{} (a link to nothing)", f.display())),
            }
        }
        if !others.is_empty() {
            others.sort();
            return Err(IoError::NotFiles { folder: path.to_string(), entries: others.join(", ") });
        }
        files
    } else if path.contains(['*', '?', '[']) {
        glob::glob(path)
            .map_err(|e| IoError::Pattern { pattern: path.to_string(), message: e.to_string() })?
            .filter_map(Result::ok)
            .filter(|f| f.is_file())
            .collect()
    } else {
        Vec::new()
    };
    files.sort();
    if files.is_empty() {
        return Err(IoError::NoInput(path.to_string()));
    }
    Ok(files)
}

/// The files of a file source, cut into line splits (`stripes`).
struct FileSplits<D> {
    files: Arc<Vec<PathBuf>>,
    decoder: D,
}

impl<D: LineDecoder> SplitSource for FileSplits<D> {
    type Split = LinesOf<D>;
    fn splits(&self, workers: usize) -> Result<Vec<LinesOf<D>>, PipelineError> {
        let splits = stripes::plan_all(&self.files, workers).into_iter();
        Ok(splits
            .map(|lines| LinesOf { file: lines.path().display().to_string(), lines, decoder: self.decoder.clone() })
            .collect())
    }
}

/// Turns the lines of a file into records: what a line-oriented file
/// source (text, JSON lines, NEXMark's JSON events) is made of.
pub trait LineDecoder: Clone + Send + Sync + 'static {
    /// The records.
    type Item: weir_runtime::Data;
    /// Decode one line (without its line ending) found at `at` in `file`:
    /// push records or dead letters to `out`; an error ends the job.
    fn decode(
        &mut self,
        line: &[u8],
        at: LinePosition,
        file: &str,
        out: &mut SplitOutput<'_, Self::Item>,
    ) -> Result<(), PipelineError>;
}

/// A line split of a file, decoded: one split of a file source.
pub struct LinesOf<D> {
    lines: LineSplit,
    file: String,
    decoder: D,
}

impl<D: LineDecoder> Split for LinesOf<D> {
    type Item = D::Item;
    fn id(&self) -> String {
        self.lines.name()
    }
    fn read(&mut self, max: usize, out: &mut SplitOutput<'_, D::Item>) -> Result<ReadResult, PipelineError> {
        let mut failed = None;
        let (decoder, file) = (&mut self.decoder, &self.file);
        let more = self.lines.read_lines(max, |line, at| {
            if failed.is_none() {
                failed = decoder.decode(line, at, file, out).err();
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        match more {
            Ok(true) => Ok(ReadResult::Data),
            Ok(false) => Ok(ReadResult::Done),
            Err(e) => Err(out.error(e.to_string())),
        }
    }
    fn position(&self) -> Option<Vec<u8>> {
        Some(self.lines.position())
    }
    fn seek(&mut self, position: &[u8]) -> Result<(), PipelineError> {
        self.lines.seek(position).map_err(|e| PipelineError::Runner(e.to_string()))
    }
}

/// A source reading the line splits of `files` with `decoder` under
/// `policy`, with a dead-letter output (port 1) when `dead_letters`.
pub fn line_source<D: LineDecoder>(
    p: &Pipeline,
    name: &str,
    files: Vec<PathBuf>,
    decoder: D,
    policy: WatermarkPolicy,
    dead_letters: bool,
) -> usize {
    let splits = Arc::new(FileSplits { files: Arc::new(files), decoder });
    p.add_node(
        name,
        vec![],
        1 + dead_letters as usize,
        NodeKind::Source(Arc::new(move |w: &WorkerInfo| {
            let reader = SplitReader::for_worker(&*splits, w, policy.clone(), dead_letters).expect("file splits plan");
            Box::new(reader) as Box<dyn Source>
        })),
    )
}

/// Lines as UTF-8 text.
#[derive(Clone)]
struct TextLines;

impl LineDecoder for TextLines {
    type Item = String;
    fn decode(
        &mut self,
        line: &[u8],
        at: LinePosition,
        file: &str,
        out: &mut SplitOutput<'_, String>,
    ) -> Result<(), PipelineError> {
        match std::str::from_utf8(line) {
            Ok(text) => {
                out.push(text.to_string(), Timestamp::MIN);
                Ok(())
            }
            Err(e) => Err(out.error(format!("{file}: {at}: not UTF-8 text: {e}"))),
        }
    }
}

/// The lines of the files `path` names (a file, a folder or a glob), as a
/// bounded collection timestamped at `Timestamp::MIN`. A path matching no
/// file is an error here, before the pipeline runs.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # std::fs::write(dir.path().join("a.txt"), "x\ny\n").unwrap();
/// use weir_pipeline::prelude::*;
/// let p = Pipeline::new();
/// let lines = weir_io::read_text(&p, dir.path().to_str().unwrap()).unwrap().collect();
/// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
/// assert_eq!(lines.values(), vec!["x".to_string(), "y".to_string()]);
/// assert!(weir_io::read_text(&p, "/no/such/file").is_err());
/// ```
pub fn read_text(p: &Pipeline, path: &str) -> Result<PCollection<String>, IoError> {
    let files = resolve_inputs(path)?;
    let idx = line_source(p, "ReadText", files, TextLines, WatermarkPolicy::batch(), false);
    Ok(p.collection(idx, 0, Arc::new(WindowingStrategy::default())))
}

pub use weir_runtime::split::DeadLetter;

/// How to read JSON lines: where each value's event time comes from, and
/// the source's watermark.
///
/// By default a file is read as bounded input processed as a batch: the
/// watermark stays at `-inf` until every line is read, then jumps to
/// `+inf`, so no element is late, whatever the order of the lines (Beam's
/// batch semantics). To replay a file as a stream instead (windows fire as
/// the file is read, later data can be late), ask for an event-time
/// watermark with [`with_event_time_watermark`](Self::with_event_time_watermark).
pub struct JsonLines<T> {
    timestamp: Arc<dyn Fn(&T) -> i64 + Send + Sync>,
    out_of_orderness: Option<Duration>,
    _t: PhantomData<fn() -> T>,
}

impl<T> JsonLines<T> {
    /// Event time (milliseconds) from each value; batch watermark.
    pub fn new(timestamp: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        JsonLines { timestamp: Arc::new(timestamp), out_of_orderness: None, _t: PhantomData }
    }
    /// Replay as a stream: the watermark of each file is the latest event
    /// time read from it minus `out_of_orderness`, and the source's is the
    /// minimum over its files. Elements later than that are late (and
    /// dropped by groupings without enough allowed lateness).
    pub fn with_event_time_watermark(mut self, out_of_orderness: Duration) -> Self {
        self.out_of_orderness = Some(out_of_orderness);
        self
    }
}

/// JSON lines into typed values with their event time.
struct JsonDecoder<T> {
    timestamp: Arc<dyn Fn(&T) -> i64 + Send + Sync>,
}

impl<T> Clone for JsonDecoder<T> {
    fn clone(&self) -> Self {
        JsonDecoder { timestamp: self.timestamp.clone() }
    }
}

impl<T: Data + DeserializeOwned> LineDecoder for JsonDecoder<T> {
    type Item = T;
    fn decode(
        &mut self,
        line: &[u8],
        _at: LinePosition,
        file: &str,
        out: &mut SplitOutput<'_, T>,
    ) -> Result<(), PipelineError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let timestamp = &self.timestamp;
        let parsed = serde_json::from_slice::<T>(line)
            .map_err(|e| e.to_string())
            .and_then(|v| Timestamp::element(timestamp(&v)).map(|ts| (v, ts)).map_err(|e| e.to_string()));
        match parsed {
            Ok((v, ts)) => out.push(v, ts),
            Err(reason) => out.dead_letter(DeadLetter {
                file: file.to_string(),
                line: String::from_utf8_lossy(line).into_owned(),
                reason,
            }),
        }
        Ok(())
    }
}

/// Typed values from JSON-lines files (a file, a folder or a glob), and the
/// dead letters of lines that could not be read.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # std::fs::write(dir.path().join("e.jsonl"), "{\"t\":5,\"v\":1}\nnot json\n{\"t\":7,\"v\":2}\n").unwrap();
/// use weir_pipeline::prelude::*;
/// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
/// struct E { t: i64, v: u32 }
/// let p = Pipeline::new();
/// let (events, dead) =
///     weir_io::read_json_lines(&p, dir.path().to_str().unwrap(), weir_io::JsonLines::new(|e: &E| e.t)).unwrap();
/// let (events, dead) = (events.collect(), dead.collect());
/// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
/// assert_eq!(events.windowed().iter().map(|e| e.timestamp.millis()).collect::<Vec<_>>(), vec![5, 7]);
/// assert_eq!(dead.values()[0].line, "not json");
/// ```
pub fn read_json_lines<T: Data + DeserializeOwned>(
    p: &Pipeline,
    path: &str,
    how: JsonLines<T>,
) -> Result<(PCollection<T>, PCollection<DeadLetter>), IoError> {
    let files = resolve_inputs(path)?;
    let policy = match how.out_of_orderness {
        None => WatermarkPolicy::batch(),
        Some(bound) => WatermarkPolicy::bounded_out_of_orderness(bound),
    };
    let idx = line_source(p, "ReadJsonLines", files, JsonDecoder { timestamp: how.timestamp }, policy, true);
    let s = Arc::new(WindowingStrategy::default());
    Ok((p.collection(idx, 0, s.clone()), p.collection(idx, 1, s)))
}

struct TextSinkOp<T, F> {
    shard: Option<ShardFile>,
    format: F,
    line: String,
    _t: PhantomData<fn(T)>,
}

impl<T: Data, F: Fn(&T) -> String + Send> Operator for TextSinkOp<T, F> {
    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let values = batch.into_vec::<T>()?;
        NodeCounters::add(&cx.counters.elements_in, values.len() as u64);
        let shard = self.shard.as_mut().ok_or_else(|| cx.error("input after the end"))?;
        for v in &values {
            self.line.clear();
            self.line.push_str(&(self.format)(&v.value));
            self.line.push('\n');
            shard.write_all(self.line.as_bytes()).map_err(|e| cx.error(e.to_string()))?;
        }
        Ok(())
    }

    fn finish(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        // Every worker leaves a shard, possibly empty, so a reader sees them all.
        if let Some(shard) = self.shard.take() {
            shard.commit().map_err(|e| cx.error(e.to_string()))?;
        }
        Ok(())
    }
}

/// `write_text`: sharded text files.
pub trait TextSinkExt<T: Data> {
    /// Write one line per element, formatted by `format`, into
    /// `dir/prefix-WWWWW-of-NNNNN.txt` (one shard per worker). A shard is
    /// written under a temporary name and renamed when the input is done,
    /// so a complete file name means a complete shard.
    fn write_text(
        &self,
        dir: impl AsRef<Path>,
        prefix: &str,
        format: impl Fn(&T) -> String + Clone + Send + Sync + 'static,
    );
}

impl<T: Data> TextSinkExt<T> for PCollection<T> {
    fn write_text(
        &self,
        dir: impl AsRef<Path>,
        prefix: &str,
        format: impl Fn(&T) -> String + Clone + Send + Sync + 'static,
    ) {
        let dir = dir.as_ref().to_path_buf();
        let prefix = prefix.to_string();
        self.pipeline().add_node(
            "WriteText",
            vec![self.as_input(Routing::Forward)],
            0,
            NodeKind::Operator(Arc::new(move |w: &WorkerInfo| {
                let target = dir.join(format!("{prefix}-{:05}-of-{:05}.txt", w.index, w.peers));
                let tmp = dir.join(format!(".{prefix}-{:05}.inprogress", w.index));
                Box::new(TextSinkOp {
                    shard: Some(ShardFile::new(target, tmp)),
                    format: format.clone(),
                    line: String::new(),
                    _t: PhantomData,
                }) as Box<dyn Operator>
            })),
        );
    }
}

struct StdoutOp<T, F> {
    format: F,
    _t: PhantomData<fn(T)>,
}

impl<T: Data, F: Fn(&WindowedValue<T>) -> String + Send> Operator for StdoutOp<T, F> {
    /// Lines are printed as they come: after a recovery, lines of the replayed epochs are printed again (at-least-once).
    fn stateless(&self) -> bool {
        true
    }

    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let values = batch.into_vec::<T>()?;
        NodeCounters::add(&cx.counters.elements_in, values.len() as u64);
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        for v in &values {
            // A closed stdout (e.g. `| head`) ends output, not the job.
            if writeln!(lock, "{}", (self.format)(v)).is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// `print`: write elements to standard output.
pub trait StdoutExt<T: Data> {
    /// One line per element, formatted by `format` (which sees the
    /// timestamp, window and pane too).
    fn print(&self, format: impl Fn(&WindowedValue<T>) -> String + Clone + Send + Sync + 'static);
}

impl<T: Data> StdoutExt<T> for PCollection<T> {
    fn print(&self, format: impl Fn(&WindowedValue<T>) -> String + Clone + Send + Sync + 'static) {
        self.pipeline().add_node(
            "Stdout",
            vec![self.as_input(Routing::Forward)],
            0,
            NodeKind::Operator(Arc::new(move |_: &WorkerInfo| {
                Box::new(StdoutOp { format: format.clone(), _t: PhantomData }) as Box<dyn Operator>
            })),
        );
    }
}
