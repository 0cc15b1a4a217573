//! Windowed text output (Beam's windowed `FileIO.write`): a set of files
//! per window and pane, each visible as soon as it is complete, so that a
//! streaming job's results can be read while it runs.
//!
//! A file is named
//! `<prefix>-<window>-pane-<index>-<timing>-e<epoch>-w<worker>-<n>.txt`:
//! `<window>` is `global` or `<start>_<end>` (milliseconds since the Unix
//! epoch), `<index>` and `<timing>` (`early`, `ontime`, `late`, `unknown`)
//! are the pane's, `<epoch>` the checkpoint epoch that wrote it (`0`
//! without checkpoints), `<worker>` and `<n>` (the sink instance's id and
//! a count) make it unique. A pane's
//! lines may be spread over several files (one per worker that held some
//! of its keys, and one per watermark step); a file holds one pane of one
//! window.
//!
//! When a file appears:
//! - without checkpoints: when the sink's input watermark next moves after
//!   its lines arrived (right after the pane fired, in practice), written
//!   under a temporary name and renamed, so a name means a complete file;
//! - with checkpoints: when the checkpoint covering its epoch is committed
//!   (Flink's file sink does the same), so that a job killed any number of
//!   times ends with every line written exactly once.
//!
//! A run that starts from the beginning removes the files of this prefix
//! that an earlier run left in the folder (on the Timely runner, which
//! recovers sinks); one that resumes from a checkpoint keeps what that
//! checkpoint committed.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_model::{PaneInfo, Timing, Window};
use weir_pipeline::PCollection;
use weir_runtime::{
    Batch, Data, EpochCommit, NodeCounters, NodeKind, OpContext, OpResult, Operator, PipelineError, Rescale, Routing,
    WorkerInfo,
};

use crate::epochs::{decode_open_epoch, encode_open_epoch, rescaled_open_epoch};
use crate::IoError;

/// The mark of a file written in a checkpointed epoch, before its commit.
const PENDING: &str = ".pending-";

fn io(path: &Path, source: std::io::Error) -> IoError {
    IoError::Io { path: path.display().to_string(), source }
}

fn pe(e: IoError) -> PipelineError {
    PipelineError::Checkpoint(format!("windowed output: {e}"))
}

/// The folder of a windowed text sink, and its commits.
#[derive(Clone, Debug)]
pub struct WindowedDir {
    dir: PathBuf,
    prefix: String,
}

impl WindowedDir {
    /// Files `<prefix>-…` in `dir`.
    pub fn new(dir: impl Into<PathBuf>, prefix: &str) -> Self {
        WindowedDir { dir: dir.into(), prefix: prefix.to_string() }
    }

    /// The name of a file of `window` and `pane`, written by `worker` in
    /// `epoch`, its `n`th.
    pub fn file_name(&self, window: &Window, pane: &PaneInfo, epoch: u64, worker: usize, n: &str) -> String {
        let window = match window {
            Window::Global => "global".to_string(),
            Window::Interval(w) => format!("{}_{}", w.start.millis(), w.end.millis()),
        };
        let timing = match pane.timing {
            Timing::Early => "early",
            Timing::OnTime => "ontime",
            Timing::Late => "late",
            Timing::Unknown => "unknown",
        };
        format!("{}-{window}-pane-{}-{timing}-e{epoch}-w{worker}-{n}.txt", self.prefix, pane.index)
    }

    /// Write `bytes` as file `name`: visible at once (`pending: None`), or
    /// pending until the checkpoint of `epoch` commits.
    fn write(&self, name: &str, pending: Option<u64>, bytes: &[u8]) -> Result<(), IoError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let target = match pending {
            None => self.dir.join(name),
            Some(epoch) => self.dir.join(format!("{PENDING}{epoch:020}-{name}")),
        };
        crate::epochs::write_atomically(&tmp, &target, bytes)
    }

    /// Whether `name` is a final name of this sink (`<prefix>-<window>-pane-…txt`).
    fn is_mine(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(self.prefix.as_str()).and_then(|r| r.strip_prefix('-')) else {
            return false;
        };
        let Some((window, _)) = rest.split_once("-pane-") else { return false };
        let numbers =
            |w: &str| w.split_once('_').is_some_and(|(a, b)| a.parse::<i64>().is_ok() && b.parse::<i64>().is_ok());
        name.ends_with(".txt") && (window == "global" || numbers(window))
    }

    /// This sink's entries of the folder: its files, pending files and
    /// temporary files.
    fn entries(&self) -> Result<Vec<String>, IoError> {
        let mut out = Vec::new();
        for name in crate::epochs::names_in(&self.dir)? {
            let temporary = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp"));
            if self.is_mine(&name)
                || pending(&name).is_some_and(|(_, n)| self.is_mine(n))
                || temporary.is_some_and(|n| self.is_mine(n))
            {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every line of the visible files, each with the window and pane of
    /// its file (`<prefix>-<window>-pane-<index>-<timing>`), sorted; and
    /// how many of this sink's files are still pending or temporary.
    pub fn read_lines(&self) -> Result<(Vec<(String, String)>, usize), IoError> {
        let mut lines = Vec::new();
        let mut hidden = 0;
        for name in self.entries()? {
            if name.starts_with('.') {
                hidden += 1;
                continue;
            }
            let pane = name.rfind("-w").and_then(|w| name[..w].rfind("-e")).map_or(name.as_str(), |e| &name[..e]);
            let path = self.dir.join(&name);
            for line in std::fs::read_to_string(&path).map_err(|e| io(&path, e))?.lines() {
                lines.push((pane.to_string(), line.to_string()));
            }
        }
        lines.sort();
        Ok((lines, hidden))
    }

    fn sync(&self) {
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
    }
}

/// The epoch in a final name (`…-e<epoch>-w<worker>-…`).
fn file_epoch(name: &str) -> Option<u64> {
    let before_worker = &name[..name.rfind("-w")?];
    before_worker[before_worker.rfind("-e")? + 2..].parse().ok()
}

/// A pending file's epoch and final name.
fn pending(name: &str) -> Option<(u64, &str)> {
    let rest = name.strip_prefix(PENDING)?;
    Some((rest.get(..20)?.parse().ok()?, rest.get(21..)?))
}

impl EpochCommit for WindowedDir {
    fn commit(&self, epoch: u64) -> Result<(), PipelineError> {
        for name in self.entries().map_err(pe)? {
            if let Some((_, target)) = pending(&name).filter(|(e, _)| *e <= epoch) {
                let from = self.dir.join(&name);
                std::fs::rename(&from, self.dir.join(target)).map_err(|e| pe(io(&from, e)))?;
            }
        }
        self.sync();
        Ok(())
    }

    fn recover(&self, epoch: Option<u64>) -> Result<(), PipelineError> {
        if let Some(e) = epoch {
            self.commit(e)?;
        }
        for name in self.entries().map_err(pe)? {
            // From the beginning: nothing of an earlier run stays. From
            // checkpoint `epoch`: what came after it is written again.
            let stale = match pending(&name) {
                Some((e, _)) => epoch.is_none_or(|c| e > c),
                // A file committed by a newer checkpoint than the one
                // resumed from (a newer one was unusable): written again.
                None => name.starts_with('.') || epoch.is_none_or(|c| file_epoch(&name).is_some_and(|e| e > c)),
            };
            if stale {
                let path = self.dir.join(&name);
                std::fs::remove_file(&path).map_err(|err| pe(io(&path, err)))?;
            }
        }
        self.sync();
        Ok(())
    }
}

struct WindowedTextOp<T, F> {
    dir: WindowedDir,
    format: F,
    /// Lines waiting, by window and pane.
    waiting: BTreeMap<(Window, i64, u8), (PaneInfo, String)>,
    worker: usize,
    checkpointed: bool,
    /// The open epoch, and the next file's number.
    open: u64,
    n: u64,
    /// This instance's id: a restored instance (or a rerun) never reuses a
    /// name of an earlier one.
    instance: u64,
    _t: PhantomData<fn(T)>,
}

fn timing_order(t: Timing) -> u8 {
    match t {
        Timing::Early => 0,
        Timing::OnTime => 1,
        Timing::Late => 2,
        Timing::Unknown => 3,
    }
}

/// An id for a sink instance, unique enough: the process, the time and a
/// count.
fn instance_id() -> u64 {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    weir_runtime::key_hash(&(std::process::id(), nanos, count)) >> 16
}

impl<T, F> WindowedTextOp<T, F> {
    /// The next file's `<n>`: this instance's id and its count.
    fn file_number(&self) -> String {
        format!("{:x}-{}", self.instance, self.n)
    }

    /// Every waiting pane to its file.
    fn write(&mut self, cx: &OpContext<'_>) -> OpResult {
        for ((window, _, _), (pane, text)) in std::mem::take(&mut self.waiting) {
            let name = self.dir.file_name(&window, &pane, self.open, self.worker, &self.file_number());
            self.n += 1;
            let pending = self.checkpointed.then_some(self.open);
            self.dir.write(&name, pending, text.as_bytes()).map_err(|e| cx.error(e.to_string()))?;
        }
        Ok(())
    }
}

impl<T: Data, F: Fn(&T) -> String + Send> Operator for WindowedTextOp<T, F> {
    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let values = batch.into_vec::<T>()?;
        NodeCounters::add(&cx.counters.elements_in, values.len() as u64);
        for v in &values {
            let key = (v.window, v.pane.index, timing_order(v.pane.timing));
            let (_, text) = self.waiting.entry(key).or_insert_with(|| (v.pane, String::new()));
            text.push_str(&(self.format)(&v.value));
            text.push('\n');
        }
        Ok(())
    }

    /// The watermark moved, or lines are waiting: the panes that fired are
    /// written.
    fn advance(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        self.write(cx)
    }

    /// Lines arrived: they are written at the end of this activation, even
    /// if the watermark does not move (an early pane while the input idles).
    fn has_pending_work(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn finish(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        self.write(cx)
    }

    /// The epoch's panes become pending files; the next epoch opens.
    fn snapshot_epoch(&mut self, epoch: u64) -> Result<Vec<u8>, PipelineError> {
        self.open = epoch;
        for ((window, _, _), (pane, text)) in std::mem::take(&mut self.waiting) {
            let name = self.dir.file_name(&window, &pane, epoch, self.worker, &self.file_number());
            self.n += 1;
            self.dir.write(&name, Some(epoch), text.as_bytes()).map_err(pe)?;
        }
        self.open = epoch + 1;
        self.n = 0;
        self.snapshot()
    }

    fn snapshot(&self) -> Result<Vec<u8>, PipelineError> {
        Ok(encode_open_epoch(self.open))
    }

    fn restore(&mut self, bytes: &[u8]) -> OpResult {
        self.open = decode_open_epoch("a windowed text sink", bytes)?;
        self.n = 0;
        Ok(())
    }

    fn restore_rescaled(&mut self, from: &Rescale<'_>) -> OpResult {
        if let Some(open) = rescaled_open_epoch("a windowed text sink", from)? {
            (self.open, self.n) = (open, 0);
        }
        Ok(())
    }
}

/// `write_windowed_text`: a set of text files per window and pane.
pub trait WindowedTextSinkExt<T: Data> {
    /// Write one line per element, formatted by `format`, into files of
    /// `dir` per window and pane, each visible as soon as it is complete
    /// (see the [module](self) for names and when files appear).
    ///
    /// ```
    /// use weir_io::windowed::WindowedTextSinkExt;
    /// use weir_pipeline::prelude::*;
    /// let dir = tempfile::tempdir().unwrap();
    /// let p = Pipeline::new();
    /// p.create_timestamped([(("a".to_string(), 1u64), Timestamp::from_millis(5)), (("a".into(), 2), Timestamp::from_millis(15))])
    ///     .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap()))
    ///     .combine_per_key(Sum::new())
    ///     .write_windowed_text(dir.path(), "sums", |(k, n): &(String, u64)| format!("{k},{n}"));
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// let mut names: Vec<String> =
    ///     std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    /// names.sort();
    /// assert_eq!(names.len(), 2);
    /// assert!(names[0].starts_with("sums-0_10-pane-0-ontime-e0-w0-"), "{names:?}");
    /// assert!(names[1].starts_with("sums-10_20-pane-0-ontime-e0-w0-"), "{names:?}");
    /// assert_eq!(std::fs::read_to_string(dir.path().join(&names[1])).unwrap(), "a,2\n");
    /// ```
    fn write_windowed_text(
        &self,
        dir: impl AsRef<Path>,
        prefix: &str,
        format: impl Fn(&T) -> String + Clone + Send + Sync + 'static,
    );
}

impl<T: Data> WindowedTextSinkExt<T> for PCollection<T> {
    fn write_windowed_text(
        &self,
        dir: impl AsRef<Path>,
        prefix: &str,
        format: impl Fn(&T) -> String + Clone + Send + Sync + 'static,
    ) {
        let out = WindowedDir::new(dir.as_ref(), prefix);
        let op_dir = out.clone();
        let idx = self.pipeline().add_node(
            "WriteWindowedText",
            vec![self.as_input(Routing::Forward)],
            0,
            NodeKind::Operator(Arc::new(move |w: &WorkerInfo| {
                Box::new(WindowedTextOp {
                    dir: op_dir.clone(),
                    format: format.clone(),
                    waiting: BTreeMap::new(),
                    worker: w.index,
                    checkpointed: w.checkpointed,
                    open: 0,
                    n: 0,
                    instance: instance_id(),
                    _t: PhantomData,
                }) as Box<dyn Operator>
            })),
        );
        self.pipeline().set_commit(idx, Arc::new(out));
    }
}
