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
//! - [`StdoutExt::print`]: one line per element on standard output.

#![warn(missing_docs)]

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

pub mod stripes;
use weir_model::{Duration, Timestamp, WindowingStrategy};
use weir_pipeline::{
    Batch, Data, NodeCounters, NodeKind, OpContext, Operator, PCollection, Pipeline, Routing, Source, SourceStatus,
    WindowedValue, WorkerInfo,
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
    /// An operating-system error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
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

/// One file of a source: its reader and the largest event time read so far.
struct Split {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    max_seen: Timestamp,
}

/// Reads the splits (files) of one worker, a chunk from each in turn.
struct SplitReader {
    splits: Vec<Split>,
    next: usize,
    line: String,
}

impl SplitReader {
    fn new(files: &[PathBuf], worker: &WorkerInfo) -> Self {
        let splits = files
            .iter()
            .skip(worker.index)
            .step_by(worker.peers)
            .map(|f| Split { path: f.clone(), reader: None, max_seen: Timestamp::MIN })
            .collect();
        SplitReader { splits, next: 0, line: String::new() }
    }

    /// Read up to `max` lines from the next split, calling `f(split, line)`;
    /// a finished split is removed. Returns false once every split is done.
    fn read(&mut self, max: usize, mut f: impl FnMut(&mut Split, &str)) -> Result<bool, String> {
        if self.splits.is_empty() {
            return Ok(false);
        }
        let i = self.next % self.splits.len();
        let split = &mut self.splits[i];
        if split.reader.is_none() {
            let file = File::open(&split.path).map_err(|e| format!("{}: {e}", split.path.display()))?;
            split.reader = Some(BufReader::with_capacity(1 << 16, file));
        }
        let mut n = 0;
        let mut finished = false;
        while n < max {
            self.line.clear();
            let r = split.reader.as_mut().expect("opened above");
            let read = r.read_line(&mut self.line).map_err(|e| format!("{}: {e}", split.path.display()))?;
            if read == 0 {
                finished = true;
                break;
            }
            f(split, self.line.trim_end_matches(['\n', '\r']));
            n += 1;
        }
        if finished {
            self.splits.remove(i);
        }
        self.next = self.next.wrapping_add(1);
        Ok(!self.splits.is_empty())
    }

    /// min over the remaining splits of (max event time seen − bound); a split
    /// not yet read holds it at `MIN`.
    fn watermark(&self, bound: Duration) -> Timestamp {
        match self.splits.iter().map(|s| s.max_seen).min() {
            None => Timestamp::MAX,
            Some(Timestamp::MIN) => Timestamp::MIN,
            Some(t) => t - bound,
        }
    }
}

struct TextSource {
    reader: SplitReader,
}

impl Source for TextSource {
    fn poll(&mut self, max_records: usize, cx: &mut OpContext<'_>) -> SourceStatus {
        let mut out = Vec::with_capacity(max_records.min(8192));
        let more = self.reader.read(max_records, |_, line| {
            out.push(WindowedValue::in_global(line.to_string(), Timestamp::MIN));
        });
        NodeCounters::add(&cx.counters.elements_out, out.len() as u64);
        cx.out.emit(0, out);
        let done = match more {
            Ok(more) => !more,
            Err(e) => {
                cx.fail_with(e);
                true
            }
        };
        SourceStatus {
            watermark: if done { Timestamp::MAX } else { Timestamp::MIN },
            idle: false,
            processing_time: None,
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
    let files = Arc::new(resolve_inputs(path)?);
    let idx = p.add_node(
        "ReadText",
        vec![],
        1,
        NodeKind::Source(Arc::new(move |w: &WorkerInfo| {
            Box::new(TextSource { reader: SplitReader::new(&files, w) }) as Box<dyn Source>
        })),
    );
    Ok(p.collection(idx, 0, Arc::new(WindowingStrategy::default())))
}

/// A line that could not be read as data, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// The file it came from.
    pub file: String,
    /// The line.
    pub line: String,
    /// Why it was rejected.
    pub reason: String,
}

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

struct JsonSource<T> {
    reader: SplitReader,
    timestamp: Arc<dyn Fn(&T) -> i64 + Send + Sync>,
    /// `None`: batch (no watermark until the end).
    bound: Option<Duration>,
    watermark: Timestamp,
}

impl<T: Data + DeserializeOwned> Source for JsonSource<T> {
    fn poll(&mut self, max_records: usize, cx: &mut OpContext<'_>) -> SourceStatus {
        let mut out = Vec::with_capacity(max_records.min(8192));
        let mut dead = Vec::new();
        let timestamp = &self.timestamp;
        let more = self.reader.read(max_records, |split, line| {
            if line.trim().is_empty() {
                return;
            }
            let parsed = serde_json::from_str::<T>(line)
                .map_err(|e| e.to_string())
                .and_then(|v| Timestamp::element(timestamp(&v)).map(|ts| (v, ts)).map_err(|e| e.to_string()));
            match parsed {
                Ok((v, ts)) => {
                    split.max_seen = split.max_seen.max(ts);
                    out.push(WindowedValue::in_global(v, ts));
                }
                Err(reason) => dead.push(WindowedValue::in_global(
                    DeadLetter { file: split.path.display().to_string(), line: line.to_string(), reason },
                    Timestamp::MIN,
                )),
            }
        });
        NodeCounters::add(&cx.counters.elements_out, out.len() as u64);
        NodeCounters::add(&cx.counters.dead_letters, dead.len() as u64);
        cx.out.emit(0, out);
        cx.out.emit(1, dead);
        let watermark = match more {
            Err(e) => {
                cx.fail_with(e);
                Timestamp::MAX
            }
            Ok(false) => Timestamp::MAX,
            Ok(true) => self.bound.map_or(Timestamp::MIN, |b| self.reader.watermark(b)),
        };
        self.watermark = self.watermark.max(watermark);
        SourceStatus { watermark: self.watermark, idle: false, processing_time: None }
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
    let files = Arc::new(resolve_inputs(path)?);
    let (ts, bound) = (how.timestamp, how.out_of_orderness);
    let idx = p.add_node(
        "ReadJsonLines",
        vec![],
        2,
        NodeKind::Source(Arc::new(move |w: &WorkerInfo| {
            Box::new(JsonSource {
                reader: SplitReader::new(&files, w),
                timestamp: ts.clone(),
                bound,
                watermark: Timestamp::MIN,
            }) as Box<dyn Source>
        })),
    );
    let s = Arc::new(WindowingStrategy::default());
    Ok((p.collection(idx, 0, s.clone()), p.collection(idx, 1, s)))
}

struct TextSinkOp<T, F> {
    dir: PathBuf,
    prefix: String,
    worker: WorkerInfo,
    format: F,
    writer: Option<(PathBuf, BufWriter<File>)>,
    _t: PhantomData<fn(T)>,
}

impl<T, F> TextSinkOp<T, F> {
    fn final_path(&self) -> PathBuf {
        self.dir.join(format!("{}-{:05}-of-{:05}.txt", self.prefix, self.worker.index, self.worker.peers))
    }
}

/// A sink dropped before it finished (its job failed) removes its
/// temporary file: nothing half-written is left behind.
impl<T, F> Drop for TextSinkOp<T, F> {
    fn drop(&mut self) {
        if let Some((tmp, w)) = self.writer.take() {
            drop(w);
            let _ = std::fs::remove_file(tmp);
        }
    }
}

impl<T: Data, F: Fn(&T) -> String + Send> Operator for TextSinkOp<T, F> {
    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) {
        let values = batch.into_vec::<T>();
        NodeCounters::add(&cx.counters.elements_in, values.len() as u64);
        if self.writer.is_none() {
            let tmp = self.dir.join(format!(".{}-{:05}.inprogress", self.prefix, self.worker.index));
            match std::fs::create_dir_all(&self.dir).and_then(|_| File::create(&tmp)) {
                Ok(f) => self.writer = Some((tmp, BufWriter::new(f))),
                Err(e) => return cx.fail_with(format!("{}: {e}", tmp.display())),
            }
        }
        let (tmp, w) = self.writer.as_mut().expect("opened above");
        for v in &values {
            if let Err(e) = writeln!(w, "{}", (self.format)(&v.value)) {
                return cx.fail_with(format!("{}: {e}", tmp.display()));
            }
        }
    }

    fn finish(&mut self, cx: &mut OpContext<'_>) {
        // Every worker leaves a shard, possibly empty, so a reader sees them all.
        let target = self.final_path();
        let result = match self.writer.take() {
            Some((tmp, mut w)) => w
                .flush()
                .and_then(|_| w.get_ref().sync_all())
                .and_then(|_| std::fs::rename(&tmp, &target))
                .map_err(|e| format!("{}: {e}", tmp.display())),
            None => std::fs::create_dir_all(&self.dir)
                .and_then(|_| File::create(&target).map(drop))
                .map_err(|e| format!("{}: {e}", target.display())),
        };
        if let Err(e) = result {
            cx.fail_with(e);
        }
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
                Box::new(TextSinkOp {
                    dir: dir.clone(),
                    prefix: prefix.clone(),
                    worker: *w,
                    format: format.clone(),
                    writer: None,
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
    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) {
        let values = batch.into_vec::<T>();
        NodeCounters::add(&cx.counters.elements_in, values.len() as u64);
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        for v in &values {
            // A closed stdout (e.g. `| head`) ends output, not the job.
            if writeln!(lock, "{}", (self.format)(v)).is_err() {
                break;
            }
        }
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
