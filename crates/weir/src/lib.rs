//! # Weir
//!
//! Stream processing in Rust with the exact semantics of the Beam / Dataflow
//! model: *what* is computed, *where* in event time (windows), *when* in
//! processing time (watermarks and triggers) and *how* refinements relate
//! (discarding, accumulating, and accumulating-and-retracting panes).
//!
//! A pipeline is written once and runs unchanged on the embedded Timely
//! runner (the default: all cores of this machine), on Timely across
//! processes, or on the single-threaded reference runner.
//!
//! ```
//! use weir::prelude::*;
//!
//! let p = Pipeline::new();
//! let scores = p
//!     .create_timestamped([
//!         (("blue".to_string(), 5), Timestamp::from_millis(26_000)),
//!         (("blue".to_string(), 7), Timestamp::from_millis(146_000)),
//!         (("red".to_string(), 3), Timestamp::from_millis(40_000)),
//!     ])
//!     .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_mins(2)).unwrap()))
//!     .combine_per_key(Sum::new())
//!     .collect();
//! p.run().unwrap();
//! let mut got = scores.values();
//! got.sort();
//! assert_eq!(got, vec![("blue".to_string(), 5), ("blue".to_string(), 7), ("red".to_string(), 3)]);
//! ```

pub mod testing;

pub use weir_checkpoint as checkpoint;
pub use weir_io as io;
pub use weir_model as model;
pub use weir_pipeline as pipeline;
pub use weir_runner_reference::{ProcessingTime, ReferenceRunner};
pub use weir_runner_timely::{CheckpointConfig, Deployment, TimelyRunner};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Running a pipeline on the default runner.
pub trait RunExt {
    /// Run on the embedded Timely runner with one worker per core.
    fn run(&self) -> Result<weir_pipeline::RunResult, weir_pipeline::PipelineError>;
}

impl RunExt for weir_pipeline::Pipeline {
    fn run(&self) -> Result<weir_pipeline::RunResult, weir_pipeline::PipelineError> {
        self.run_with(&TimelyRunner::default())
    }
}

/// Everything needed to write and run pipelines.
pub mod prelude {
    pub use crate::{CheckpointConfig, ReferenceRunner, RunExt, TimelyRunner};
    pub use weir_io::{read_json_lines, read_text, DeadLetter, JsonLines, StdoutExt, TextSinkExt};
    pub use weir_model::{
        AccumulationMode, Aggregator, AnyWindowFn, Buffer, ClosingBehavior, DropReason, Duration, FixedWindows,
        GlobalWindows, GroupAlsoByWindow, GroupOutput, ModelError, OnTimeBehavior, PaneInfo, PaneOutput, Sessions,
        SlidingWindows, Timestamp, TimestampCombiner, Timing, Trigger, Window, WindowFn, WindowingStrategy,
    };
    pub use weir_pipeline::transforms::*;
    pub use weir_pipeline::{
        Collected, Data, Key, PCollection, Pipeline, PipelineError, RunResult, StateBackend, WindowedValue,
    };
    pub use weir_pipeline::{JobControl, QueueSource, ReadResult, SourceOutput, UnboundedSource, WatermarkPolicy};
}
