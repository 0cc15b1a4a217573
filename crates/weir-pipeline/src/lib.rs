//! # weir-pipeline
//!
//! Weir's typed pipeline API, in Beam's vocabulary: a [`Pipeline`] of
//! [`PCollection`]s transformed by extension traits (`map`, `par_do`,
//! `window_into`, `group_by_key`, `combine_per_key`, …), and the
//! runner-agnostic [`Operator`] interface the runners execute. The windowing
//! semantics come from `weir-model`, never re-implemented here.

#![warn(missing_docs)]

pub mod batch;
pub mod data;
pub mod error;
pub mod graph;
pub mod operator;
pub mod transforms;

pub use batch::Batch;
pub use data::{Data, Key, WindowedValue};
pub use error::PipelineError;
pub use graph::{
    partition_by, partition_by_key, route_hash, Collected, Graph, HoldBack, Metrics, Node, NodeInput, NodeKind,
    PCollection, Partitioner, Pipeline, Routing, RunResult, Runner, WatermarkSnapshot,
};
pub use operator::{
    CounterSnapshot, Emitter, NodeCounters, OpContext, Operator, Source, SourceStatus, SplitState, WorkerInfo,
};
pub mod unbounded;
pub use transforms::*;
pub use unbounded::{
    BoundedOutOfOrderness, QueueSource, ReadResult, UnboundedSource, WatermarkEstimator, WatermarkPolicy,
};

/// Everything needed to write pipelines.
pub mod prelude {
    pub use crate::transforms::*;
    pub use crate::{Collected, Data, Key, PCollection, Pipeline, PipelineError, WindowedValue};
    pub use weir_model::{
        AccumulationMode, ClosingBehavior, Duration, FixedWindows, GlobalWindows, OnTimeBehavior, PaneInfo, Sessions,
        SlidingWindows, Timestamp, TimestampCombiner, Timing, Trigger, Window, WindowFn, WindowingStrategy,
    };
}
