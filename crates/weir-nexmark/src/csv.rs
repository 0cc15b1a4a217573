//! The canonical output format (`../shared/nexmark/README.md`): one row per
//! line, fields joined by `,`, integers in decimal, timestamps as epoch
//! milliseconds; and a sink that gathers a query's rows. A text field that
//! holds a comma, a quote or a line break is quoted as RFC 4180 says (by
//! the `csv-core` writer of the `csv` crate), so it stays one field of one
//! row; ordinary rows are unchanged.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use weir_io::epochs::EpochDir;
use weir_io::sink::ShardFile;
use weir_pipeline::PCollection;
use weir_runtime::{
    Batch, Data, NodeCounters, NodeKind, OpContext, OpResult, Operator, PipelineError, Rescale, Routing, WorkerInfo,
};

use crate::model::Str;

/// A field of an output row.
pub trait CsvField {
    /// Append the field's text.
    fn write_field(&self, out: &mut Vec<u8>);
}

macro_rules! display_field {
    ($($t:ty),*) => {$(
        impl CsvField for $t {
            fn write_field(&self, out: &mut Vec<u8>) {
                write!(out, "{self}").expect("writing to memory");
            }
        }
    )*};
}
display_field!(u64, i64, u32, usize);

/// A text field, quoted as RFC 4180 requires (only when it must be).
fn write_text(field: &[u8], out: &mut Vec<u8>) {
    if !field.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.extend_from_slice(field);
        return;
    }
    let mut writer = csv_core::Writer::new();
    let mut buf = vec![0u8; field.len() * 2 + 2];
    let (result, read, written) = writer.field(field, &mut buf);
    debug_assert!(matches!(result, csv_core::WriteResult::InputEmpty) && read == field.len());
    out.extend_from_slice(&buf[..written]);
    let (_, written) = writer.finish(&mut buf);
    out.extend_from_slice(&buf[..written]);
}

impl CsvField for Str {
    fn write_field(&self, out: &mut Vec<u8>) {
        write_text(self.as_bytes(), out);
    }
}

impl CsvField for String {
    fn write_field(&self, out: &mut Vec<u8>) {
        write_text(self.as_bytes(), out);
    }
}

/// Text written as it is, not as a CSV field (for listings such as dead
/// letters, whose lines hold no line break).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Raw(pub String);

impl CsvField for Raw {
    fn write_field(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
    }
}

/// A decimal with three digits after the point, held as thousandths
/// (`Milli(908_000)` is `908.000`): prices times 0.908, computed in integers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Milli(pub u64);

impl CsvField for Milli {
    fn write_field(&self, out: &mut Vec<u8>) {
        write!(out, "{}.{:03}", self.0 / 1000, self.0 % 1000).expect("writing to memory");
    }
}

/// A row of a query's output: any field (tuples of fields are fields, so
/// rows nest: `((a, b), c)` is the row `a,b,c`).
///
/// ```
/// use weir_nexmark::CsvRow;
/// let mut out = Vec::new();
/// ((1000u64, weir_nexmark::Milli(908_000)), "x".to_string(), [1u64, 2]).write_row(&mut out);
/// assert_eq!(out, b"1000,908.000,x,1,2\n");
/// let mut out = Vec::new();
/// (7u64, "a\nb,\"c\"".to_string()).write_row(&mut out);
/// assert_eq!(out, b"7,\"a\nb,\"\"c\"\"\"\n");
/// assert_eq!(weir_nexmark::sorted_lines(&[out]).len(), 1);
/// ```
pub trait CsvRow {
    /// Append the row and its newline.
    fn write_row(&self, out: &mut Vec<u8>);
}

impl<T: CsvField> CsvRow for T {
    fn write_row(&self, out: &mut Vec<u8>) {
        self.write_field(out);
        out.push(b'\n');
    }
}

impl<const N: usize> CsvField for [u64; N] {
    fn write_field(&self, out: &mut Vec<u8>) {
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            v.write_field(out);
        }
    }
}

macro_rules! tuple_field {
    ($first:ident $(, $rest:ident)*) => {
        impl<$first: CsvField $(, $rest: CsvField)*> CsvField for ($first, $($rest,)*) {
            #[allow(non_snake_case)]
            fn write_field(&self, out: &mut Vec<u8>) {
                let ($first, $($rest,)*) = self;
                $first.write_field(out);
                $(out.push(b','); $rest.write_field(out);)*
            }
        }
    };
}
tuple_field!(A, B);
tuple_field!(A, B, C);
tuple_field!(A, B, C, D);
tuple_field!(A, B, C, D, E);
tuple_field!(A, B, C, D, E, F);
tuple_field!(A, B, C, D, E, F, G);
tuple_field!(A, B, C, D, E, F, G, H);
tuple_field!(A, B, C, D, E, F, G, H, I);
tuple_field!(A, B, C, D, E, F, G, H, I, J);
tuple_field!(A, B, C, D, E, F, G, H, I, J, K);
tuple_field!(A, B, C, D, E, F, G, H, I, J, K, L);

/// The rows a query produced on this process: CSV lines gathered per
/// worker while the pipeline runs, in memory or (to keep a long run's
/// memory independent of its output) spilled to one file per worker.
#[derive(Clone, Debug, Default)]
pub struct CsvOutput {
    buffers: Arc<Mutex<Vec<Vec<u8>>>>,
    spill: Option<PathBuf>,
    epochs: Option<EpochDir>,
}

impl CsvOutput {
    /// Rows kept in memory.
    pub fn in_memory() -> Self {
        CsvOutput::default()
    }

    /// Rows written to `dir/part-<worker>.csv` as they come (the folder is
    /// created; `take_buffers` reads the files back and removes them).
    pub fn spilling_to(dir: impl Into<PathBuf>) -> Self {
        CsvOutput { buffers: Arc::default(), spill: Some(dir.into()), epochs: None }
    }

    /// Rows written exactly once into `dir` through the transactional file
    /// sink ([`EpochDir`]): each epoch's rows stay pending until the
    /// checkpoint covering it is committed (or the run completes), and a
    /// recovery discards what its checkpoint does not cover.
    /// `take_buffers` reads the committed files and leaves them in place.
    pub fn transactional(dir: impl Into<PathBuf>) -> Self {
        CsvOutput { buffers: Arc::default(), spill: None, epochs: Some(EpochDir::new(dir, "csv")) }
    }

    /// Every row of this process, as CSV lines (unsorted); of a
    /// transactional output, every committed row of every process.
    pub fn take_buffers(&self) -> std::io::Result<Vec<Vec<u8>>> {
        if let Some(epochs) = &self.epochs {
            return epochs.read_committed().map_err(std::io::Error::other);
        }
        let mut out = std::mem::take(&mut *self.buffers.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(dir) = &self.spill {
            if dir.exists() {
                for entry in std::fs::read_dir(dir)? {
                    let path = entry?.path();
                    out.push(std::fs::read(&path)?);
                    std::fs::remove_file(&path)?;
                }
                std::fs::remove_dir(dir)?;
            }
        }
        Ok(out)
    }
}

struct CsvSinkOp<R> {
    buf: Vec<u8>,
    into: Arc<Mutex<Vec<Vec<u8>>>>,
    /// The worker's spill file, committed when its input is done.
    spill: Option<ShardFile>,
    /// Transactional: the folder, the open epoch and its next chunk.
    epochs: Option<(EpochDir, u64, u64)>,
    worker: usize,
    _r: std::marker::PhantomData<fn(R)>,
}

/// The format of a transactional CSV sink's snapshot (its open epoch).
const CSV_SINK_FORMAT: u32 = 1;

/// Rows a worker keeps before handing them over (to memory or its file).
const HAND_OVER: usize = 1 << 20;

impl<R> CsvSinkOp<R> {
    fn hand_over(&mut self, cx: &OpContext<'_>) -> OpResult {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Some((dir, epoch, seq)) = &mut self.epochs {
            dir.write_pending(*epoch, self.worker, *seq, &self.buf).map_err(|e| cx.error(e.to_string()))?;
            *seq += 1;
            self.buf.clear();
            return Ok(());
        }
        match &mut self.spill {
            None => {
                let buf = std::mem::take(&mut self.buf);
                self.into.lock().unwrap_or_else(|p| p.into_inner()).push(buf);
            }
            Some(shard) => {
                shard.write_all(&self.buf).map_err(|e| cx.error(e.to_string()))?;
                self.buf.clear();
            }
        }
        Ok(())
    }
}

impl<R: Data + CsvRow> Operator for CsvSinkOp<R> {
    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let rows = batch.into_vec::<R>()?;
        NodeCounters::add(&cx.counters.elements_in, rows.len() as u64);
        for r in &rows {
            r.value.write_row(&mut self.buf);
        }
        if self.buf.len() >= HAND_OVER {
            self.hand_over(cx)?;
        }
        Ok(())
    }

    fn finish(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        self.hand_over(cx)?;
        if let Some(shard) = self.spill.take() {
            shard.commit().map_err(|e| cx.error(e.to_string()))?;
        }
        Ok(())
    }

    fn snapshot_epoch(&mut self, epoch: u64) -> Result<Vec<u8>, PipelineError> {
        if let Some((dir, open, seq)) = &mut self.epochs {
            if !self.buf.is_empty() {
                dir.write_pending(epoch, self.worker, *seq, &self.buf)
                    .map_err(|e| PipelineError::Execution { transform: "WriteCsv".into(), message: e.to_string() })?;
                self.buf.clear();
            }
            *open = epoch + 1;
            *seq = 0;
        }
        self.snapshot()
    }

    fn snapshot(&self) -> Result<Vec<u8>, PipelineError> {
        match &self.epochs {
            Some((_, open, _)) => Ok([CSV_SINK_FORMAT.to_le_bytes().as_slice(), &open.to_le_bytes()].concat()),
            None => Err(PipelineError::Checkpoint(
                "a CSV output in memory or spilled is not transactional: use CsvOutput::transactional".into(),
            )),
        }
    }

    /// Every old instance's snapshot holds the same open epoch.
    fn restore_rescaled(&mut self, from: &Rescale<'_>) -> OpResult {
        let open = |b: &[u8]| b.get(4..12).map(|e| u64::from_le_bytes(e.try_into().expect("8 bytes")));
        match from.snapshots.iter().max_by_key(|b| open(b)) {
            Some(bytes) => self.restore(bytes),
            None => Ok(()),
        }
    }

    fn restore(&mut self, bytes: &[u8]) -> OpResult {
        if bytes.len() != 12 {
            return Err(PipelineError::Checkpoint(format!("WriteCsv: a snapshot of {} bytes, not 12", bytes.len())));
        }
        let format = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let open = u64::from_le_bytes(bytes[4..].try_into().expect("8 bytes"));
        if format != CSV_SINK_FORMAT {
            return Err(PipelineError::Checkpoint(format!("WriteCsv: a snapshot of format {format}")));
        }
        match &mut self.epochs {
            Some((_, o, seq)) => {
                *o = open;
                *seq = 0;
                Ok(())
            }
            None => Err(PipelineError::Checkpoint("WriteCsv: restoring a sink that is not transactional".into())),
        }
    }
}

/// `write_csv`: gather a collection's rows as canonical CSV lines.
pub trait CsvSinkExt<R: Data + CsvRow> {
    /// Append every element's row to a new in-memory output (read it after the run).
    fn write_csv(&self) -> CsvOutput {
        let out = CsvOutput::in_memory();
        self.write_csv_into(&out);
        out
    }
    /// Append every element's row to `out`.
    fn write_csv_into(&self, out: &CsvOutput);
}

impl<R: Data + CsvRow> CsvSinkExt<R> for PCollection<R> {
    fn write_csv_into(&self, out: &CsvOutput) {
        let into = out.buffers.clone();
        let dir = out.spill.clone();
        let epochs = out.epochs.clone();
        let commit = out.epochs.clone();
        let idx = self.pipeline().add_node(
            "WriteCsv",
            vec![self.as_input(Routing::Forward)],
            0,
            NodeKind::Operator(Arc::new(move |w: &WorkerInfo| {
                let spill = dir.as_ref().map(|d| {
                    ShardFile::new(
                        d.join(format!("part-{:05}.csv", w.index)),
                        d.join(format!(".part-{:05}.csv.tmp", w.index)),
                    )
                });
                Box::new(CsvSinkOp::<R> {
                    buf: Vec::new(),
                    into: into.clone(),
                    spill,
                    epochs: epochs.clone().map(|d| (d, 0, 0)),
                    worker: w.index,
                    _r: std::marker::PhantomData,
                }) as Box<dyn Operator>
            })),
        );
        if let Some(c) = commit {
            self.pipeline().set_commit(idx, Arc::new(c));
        }
    }
}

/// The lines of every buffer, sorted in byte order: the canonical file,
/// line by line (write them in this order; their count is the row count).
///
/// ```
/// let buffers = vec![b"b,2\na,1\n".to_vec(), b"c,3\n".to_vec()];
/// let lines = weir_nexmark::sorted_lines(&buffers);
/// assert_eq!(lines.concat(), b"a,1\nb,2\nc,3\n");
/// ```
pub fn sorted_lines(buffers: &[Vec<u8>]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = Vec::with_capacity(buffers.iter().map(|b| b.len() / 32).sum());
    for b in buffers {
        if memchr::memchr(b'"', b).is_none() {
            lines.extend(b.split_inclusive(|&c| c == b'\n'));
            continue;
        }
        // A row with a quoted field may hold line breaks: a row ends at a
        // line break outside quotes (quotes inside a quoted field are doubled,
        // so each quote toggles).
        let (mut start, mut quoted) = (0, false);
        for (i, &c) in b.iter().enumerate() {
            match c {
                b'"' => quoted = !quoted,
                b'\n' if !quoted => {
                    lines.push(&b[start..=i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if start < b.len() {
            lines.push(&b[start..]);
        }
    }
    lines.sort_unstable();
    lines
}
