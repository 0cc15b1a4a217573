//! The Parquet sink: each worker's rows of an epoch become a Parquet file
//! of the transactional file sink (`weir_io::epochs::EpochDir`, in a local
//! folder or an object store), visible
//! once the checkpoint covering the epoch is committed (at the end of a
//! run without checkpoints): exactly once, however often the job is killed.

use std::path::PathBuf;
use std::sync::Arc;

use parquet::basic::{Compression, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::Type;
use serde::Serialize;
use serde_json::Value;
use weir_io::epochs::{decode_open_epoch, encode_open_epoch, EpochDir};
use weir_pipeline::PCollection;
use weir_runtime::{
    Batch, Data, NodeCounters, NodeKind, OpContext, OpResult, Operator, PipelineError, Rescale, Routing,
};

use crate::ParquetError;

/// Rows a worker keeps before it writes them as a file of their own.
const ROWS_PER_FILE: usize = 1 << 17;

/// The flat schema's columns: name, physical type, optional.
type Columns = Vec<(String, Physical, bool)>;

/// The columns of `schema` (a Parquet message type), which must be flat:
/// required or optional primitive columns.
fn columns(schema: &Type) -> Result<Columns, ParquetError> {
    let mut out = Vec::new();
    for f in schema.get_fields() {
        let info = f.get_basic_info();
        if !f.is_primitive() || info.repetition() == Repetition::REPEATED {
            return Err(ParquetError::Schema(format!(
                "column '{}' is a group or repeated: the sink writes flat rows",
                info.name()
            )));
        }
        let physical = f.get_physical_type();
        if matches!(physical, Physical::INT96 | Physical::FIXED_LEN_BYTE_ARRAY) {
            return Err(ParquetError::Schema(format!("column '{}': {physical} is not written yet", info.name())));
        }
        out.push((info.name().to_string(), physical, info.repetition() == Repetition::OPTIONAL));
    }
    Ok(out)
}

/// Encode `rows` (JSON objects) as a Parquet file of one row group.
fn encode(schema: &Arc<Type>, columns: &Columns, rows: &[Value]) -> Result<Vec<u8>, String> {
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let mut writer = SerializedFileWriter::new(Vec::new(), schema.clone(), props).map_err(|e| e.to_string())?;
    let mut group = writer.next_row_group().map_err(|e| e.to_string())?;
    for (name, physical, optional) in columns {
        let mut levels = Vec::with_capacity(rows.len());
        let mut present = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            match row.get(name).filter(|v| !v.is_null()) {
                Some(v) => {
                    levels.push(1i16);
                    present.push(v);
                }
                None if *optional => levels.push(0),
                None => return Err(format!("row {i} has no value for required column '{name}': {row}")),
            }
        }
        let levels = optional.then_some(levels.as_slice());
        let bad = |v: &Value| format!("column '{name}' ({physical}) cannot hold {v}");
        let mut col = group.next_column().map_err(|e| e.to_string())?.ok_or("fewer columns than the schema")?;
        let written = match physical {
            Physical::BOOLEAN => {
                let v: Result<Vec<bool>, _> = present.iter().map(|v| v.as_bool().ok_or_else(|| bad(v))).collect();
                col.typed::<BoolType>().write_batch(&v?, levels, None)
            }
            Physical::INT32 => {
                let v: Result<Vec<i32>, _> = present
                    .iter()
                    .map(|v| v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| bad(v)))
                    .collect();
                col.typed::<Int32Type>().write_batch(&v?, levels, None)
            }
            Physical::INT64 => {
                let v: Result<Vec<i64>, _> = present.iter().map(|v| v.as_i64().ok_or_else(|| bad(v))).collect();
                col.typed::<Int64Type>().write_batch(&v?, levels, None)
            }
            Physical::FLOAT => {
                let v: Result<Vec<f32>, _> =
                    present.iter().map(|v| v.as_f64().map(|f| f as f32).ok_or_else(|| bad(v))).collect();
                col.typed::<FloatType>().write_batch(&v?, levels, None)
            }
            Physical::DOUBLE => {
                let v: Result<Vec<f64>, _> = present.iter().map(|v| v.as_f64().ok_or_else(|| bad(v))).collect();
                col.typed::<DoubleType>().write_batch(&v?, levels, None)
            }
            _ => {
                // Strings as they are; any other value as its JSON text.
                let v: Vec<ByteArray> = present
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => ByteArray::from(s.as_str()),
                        other => ByteArray::from(other.to_string().as_str()),
                    })
                    .collect();
                col.typed::<ByteArrayType>().write_batch(&v, levels, None)
            }
        };
        written.map_err(|e| e.to_string())?;
        col.close().map_err(|e| e.to_string())?;
    }
    group.close().map_err(|e| e.to_string())?;
    writer.into_inner().map_err(|e| e.to_string())
}

struct ParquetSinkOp<T> {
    dir: EpochDir,
    schema: Arc<Type>,
    columns: Arc<Columns>,
    rows: Vec<Value>,
    worker: usize,
    /// The open epoch and the next file's number in it.
    open: u64,
    seq: u64,
    name: String,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T> ParquetSinkOp<T> {
    fn fail(&self, message: impl std::fmt::Display) -> PipelineError {
        PipelineError::Execution { transform: self.name.clone(), message: message.to_string() }
    }

    /// Write the rows kept as a pending file of the open epoch.
    fn write(&mut self) -> OpResult {
        if self.rows.is_empty() {
            return Ok(());
        }
        let bytes = encode(&self.schema, &self.columns, &self.rows).map_err(|e| self.fail(e))?;
        self.dir.write_pending(self.open, self.worker, self.seq, &bytes).map_err(|e| self.fail(e))?;
        self.seq += 1;
        self.rows.clear();
        Ok(())
    }
}

impl<T: Data + Serialize> Operator for ParquetSinkOp<T> {
    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let values = batch.into_vec::<T>()?;
        NodeCounters::add(&cx.counters.elements_in, values.len() as u64);
        for v in &values {
            self.rows.push(serde_json::to_value(&v.value).map_err(|e| self.fail(e))?);
        }
        if self.rows.len() >= ROWS_PER_FILE {
            self.write()?;
        }
        Ok(())
    }

    fn finish(&mut self, _cx: &mut OpContext<'_>) -> OpResult {
        self.write()
    }

    /// The epoch's rows become a pending file; the next epoch opens.
    fn snapshot_epoch(&mut self, epoch: u64) -> Result<Vec<u8>, PipelineError> {
        if epoch != self.open {
            // Not the epoch this instance has open (the reference runner
            // asks for epoch 0 at every step): go on after its files.
            self.open = epoch;
            self.seq = self.dir.next_seq(epoch, self.worker).map_err(|e| self.fail(e))?;
        }
        self.write()?;
        self.open = epoch + 1;
        self.seq = 0;
        self.snapshot()
    }

    /// The open epoch, then the rows not yet in a file (JSON): none at an
    /// epoch's end (`snapshot_epoch` writes them first), some when a
    /// runner snapshots within an epoch.
    fn snapshot(&self) -> Result<Vec<u8>, PipelineError> {
        let mut out = encode_open_epoch(self.open);
        serde_json::to_writer(&mut out, &self.rows).map_err(|e| self.fail(e))?;
        Ok(out)
    }

    /// The open epoch and the rows kept; the epoch's files go on from the
    /// next unused number, so a snapshot taken within an epoch never leads
    /// to a file of the epoch replaced.
    fn restore(&mut self, bytes: &[u8]) -> OpResult {
        let (open, rows) = self.decode(bytes)?;
        self.open = open;
        self.rows = rows;
        self.seq = self.dir.next_seq(self.open, self.worker).map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// The rows kept by the old instances this one takes over.
    fn restore_rescaled(&mut self, from: &Rescale<'_>) -> OpResult {
        // Every old instance's snapshot holds the same open epoch.
        let mut open = None;
        for bytes in from.snapshots {
            open = open.max(Some(self.decode(bytes)?.0));
        }
        if let Some(open) = open {
            self.open = open;
            self.rows.clear();
            for bytes in from.owned_snapshots() {
                self.rows.append(&mut self.decode(bytes)?.1);
            }
            self.seq = self.dir.next_seq(self.open, self.worker).map_err(|e| self.fail(e))?;
        }
        Ok(())
    }
}

/// The length of [`encode_open_epoch`]'s bytes, at the head of a snapshot.
const OPEN_EPOCH_LEN: usize = 12;

impl<T> ParquetSinkOp<T> {
    /// A snapshot's open epoch and rows.
    fn decode(&self, bytes: &[u8]) -> Result<(u64, Vec<Value>), PipelineError> {
        let (head, rows) = bytes.split_at(bytes.len().min(OPEN_EPOCH_LEN));
        let open = decode_open_epoch(&self.name, head)?;
        if rows.is_empty() {
            return Ok((open, Vec::new())); // a snapshot of an earlier Weir: no rows kept
        }
        let rows = serde_json::from_slice(rows)
            .map_err(|e| PipelineError::Checkpoint(format!("{}: a snapshot this Weir cannot read: {e}", self.name)))?;
        Ok((open, rows))
    }
}

/// `write_parquet`: rows to Parquet files.
pub trait ParquetSinkExt<T: Data + Serialize> {
    /// Write each element as a row of Parquet files in folder `dir` (a
    /// local path, or an object-store URL such as `s3://bucket/counts/`), with
    /// `schema` (a Parquet message type of flat, required or optional
    /// primitive columns: `message row { required binary user (UTF8);
    /// optional int64 clicks; }`); an element's fields (its serde form)
    /// are the columns of the same names. Each worker writes a file per
    /// epoch (and per 131,072 rows), named `<epoch>-<worker>-<n>.parquet`,
    /// through the transactional file sink: a file appears only when the
    /// checkpoint covering its epoch is committed (without checkpoints,
    /// when the run completes), so a job killed any number of times ends
    /// with every row written once. A row that does not fit the schema
    /// fails the job, naming the column. A bad schema is an error here.
    ///
    /// ```
    /// use weir_parquet::ParquetSinkExt;
    /// use weir_pipeline::prelude::*;
    /// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// struct Count { user: String, clicks: u64 }
    /// let dir = tempfile::tempdir().unwrap();
    /// let p = Pipeline::new();
    /// let counts = p.create(vec![Count { user: "a".into(), clicks: 3 }]);
    /// counts
    ///     .write_parquet(dir.path(), "message c { required binary user (UTF8); required int64 clicks; }")
    ///     .unwrap();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    /// ```
    fn write_parquet(&self, dir: impl Into<PathBuf>, schema: &str) -> Result<(), ParquetError>;
}

impl<T: Data + Serialize> ParquetSinkExt<T> for PCollection<T> {
    fn write_parquet(&self, dir: impl Into<PathBuf>, schema: &str) -> Result<(), ParquetError> {
        let dir = dir.into();
        let schema = Arc::new(parse_message_type(schema).map_err(|e| ParquetError::Schema(e.to_string()))?);
        let columns = Arc::new(columns(&schema)?);
        let epochs = match crate::url_of(&dir) {
            Some(url) => EpochDir::in_folder(object_folder(url)?, "parquet"),
            None => EpochDir::new(&dir, "parquet"),
        };
        let name = format!("WriteParquet({})", dir.display());
        let (op_dir, op_name) = (epochs.clone(), name.clone());
        let idx = self.pipeline().add_node(
            &name,
            vec![self.as_input(Routing::Forward)],
            0,
            NodeKind::Operator(Arc::new(move |w: &weir_runtime::WorkerInfo| {
                Box::new(ParquetSinkOp::<T> {
                    dir: op_dir.clone(),
                    schema: schema.clone(),
                    columns: columns.clone(),
                    rows: Vec::new(),
                    worker: w.index,
                    open: 0,
                    seq: 0,
                    name: op_name.clone(),
                    _t: std::marker::PhantomData,
                }) as Box<dyn Operator>
            })),
        );
        self.pipeline().set_commit(idx, Arc::new(epochs));
        Ok(())
    }
}

/// The transactional sink's folder at an object-store URL.
#[cfg(feature = "object-store")]
fn object_folder(url: &str) -> Result<Arc<dyn weir_io::epochs::Folder>, ParquetError> {
    let folder = weir_object_store::ObjectDir::parse(url)
        .map_err(|e| ParquetError::Io { path: url.to_string(), message: e.to_string() })?;
    Ok(Arc::new(folder))
}

#[cfg(not(feature = "object-store"))]
fn object_folder(url: &str) -> Result<Arc<dyn weir_io::epochs::Folder>, ParquetError> {
    Err(ParquetError::Io {
        path: url.to_string(),
        message: "an object-store URL needs weir-parquet's `object-store` feature (on by default)".into(),
    })
}
