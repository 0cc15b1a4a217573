//! # weir-runtime
//!
//! What Weir's runners execute, and nothing a pipeline's author needs:
//!
//! - [`graph`]: the frozen [`Graph`] of [`Node`]s, and how batches are
//!   routed between workers ([`Routing`]).
//! - [`operator`]: the [`Operator`] and [`Source`] contracts every runner
//!   drives, with hooks that return `Result` and room for checkpoints
//!   ([`Operator::snapshot_epoch`], [`Source::position`]).
//! - [`split`]: sources made of splits, each with a serializable position
//!   and a watermark policy; files, stripes of a file, the NEXMark generator
//!   and user-defined unbounded sources are all split sources.
//! - [`batch`]: type-erased batches, encoded only to cross a process.
//! - [`keys`]: stable key hashing and key groups (which worker owns a key).
//! - [`metrics`]: read-only counters for observers.
//! - [`error`]: the one error type, [`PipelineError`].
//!
//! The user API (`weir-pipeline`) builds graphs; runners
//! (`weir-runner-reference`, `weir-runner-timely`) execute them and depend
//! on this crate and `weir-model` only.

#![warn(missing_docs)]

pub mod batch;
pub mod control;
pub mod data;
pub mod error;
pub mod graph;
pub mod keyed;
pub mod keys;
pub mod metrics;
pub mod operator;
pub mod split;

pub use batch::Batch;
pub use control::JobControl;
pub use data::{Data, Key, WindowedValue};
pub use error::{panic_message, PipelineError};
pub use graph::{
    Graph, Node, NodeInput, NodeKind, OperatorFactory, Partitioner, RecoveryReport, Routing, RunResult, Runner,
    SourceFactory,
};
pub use keyed::KeyedSnapshot;
pub use keys::{key_hash, KeyGroups, DEFAULT_MAX_KEY_GROUPS};
pub use metrics::{CounterSnapshot, HoldBack, Metrics, NodeCounters, SplitState, WatermarkSnapshot};
pub use operator::{
    Emitter, EpochCommit, FailedOperator, OpContext, OpResult, Operator, Rescale, SnapshotStream, Source,
    SourcePosition, SourceStatus, StateBackend, WorkerInfo,
};
