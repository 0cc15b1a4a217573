//! # weir-pipeline
//!
//! Weir's typed pipeline API, in Beam's vocabulary: a [`Pipeline`] of
//! [`PCollection`]s transformed by extension traits (`map`, `par_do`,
//! `window_into`, `group_by_key`, `combine_per_key`, …). Pipelines are
//! frozen into `weir-runtime`'s graph of operators, which the runners
//! execute; transform authors find the runtime's contracts re-exported
//! here. The windowing semantics come from `weir-model`, never
//! re-implemented here.

#![warn(missing_docs)]

pub mod graph;
pub mod transforms;
pub mod unbounded;

pub use graph::{Collected, PCollection, Pipeline};
pub use transforms::*;
pub use unbounded::{QueueSource, SourceOutput, UnboundedSource};
/// The runtime's contracts, for transform authors and runners.
pub use weir_runtime as runtime;
pub use weir_runtime::split::{BoundedOutOfOrderness, ReadResult, WatermarkEstimator, WatermarkPolicy};
pub use weir_runtime::{
    panic_message, Batch, CounterSnapshot, Data, Emitter, Graph, HoldBack, JobControl, Key, Metrics, Node,
    NodeCounters, NodeInput, NodeKind, OpContext, OpResult, Operator, Partitioner, PipelineError, Routing, RunResult,
    Runner, Source, SourceStatus, SplitState, StateBackend, WatermarkSnapshot, WindowedValue, WorkerInfo,
};

/// Everything needed to write pipelines.
pub mod prelude {
    pub use crate::transforms::*;
    pub use crate::{Collected, Data, Key, PCollection, Pipeline, PipelineError, StateBackend, WindowedValue};
    pub use crate::{QueueSource, ReadResult, SourceOutput, UnboundedSource, WatermarkPolicy};
    pub use weir_model::{
        AccumulationMode, ClosingBehavior, Duration, FixedWindows, GlobalWindows, OnTimeBehavior, PaneInfo, Sessions,
        SlidingWindows, Timestamp, TimestampCombiner, Timing, Trigger, Window, WindowFn, WindowingStrategy,
    };
}
