//! # Weir
//!
//! Stream processing in Rust with the exact semantics of the Beam / Dataflow
//! model: *what* is computed, *where* in event time (windows), *when* in
//! processing time (watermarks and triggers) and *how* refinements relate
//! (discarding, accumulating, accumulating-and-retracting panes).
//!
//! This crate is the facade users depend on. Today it re-exports the semantic
//! core ([`weir_model`]); the pipeline API and runners build on it.
//!
//! ```
//! use weir::prelude::*;
//!
//! let strategy = WindowingStrategy::new(FixedWindows::of(Duration::from_mins(2)).unwrap())
//!     .trigger(Trigger::after_watermark().with_late_firings(Trigger::after_count(1)))
//!     .allowed_lateness(Duration::from_mins(10));
//! let mut scores = GroupAlsoByWindow::new(strategy, Buffer).unwrap();
//! let mut out = Vec::new();
//! scores.process_bundle(&"team-a", [(5, Timestamp::from_millis(12_000))], &mut out);
//! scores.advance_input_watermark(Timestamp::from_millis(120_000), &mut out);
//! assert_eq!(out.len(), 1); // the on-time pane of [0:00, 2:00)
//! ```

pub use weir_model as model;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Everything needed to write a windowed computation.
pub mod prelude {
    pub use weir_model::{
        AccumulationMode, Aggregator, AnyWindowFn, Buffer, ClosingBehavior, DropReason, Duration, FixedWindows,
        GlobalWindows, GroupAlsoByWindow, GroupOutput, ModelError, OnTimeBehavior, PaneInfo, PaneOutput, Sessions,
        SlidingWindows, Timestamp, TimestampCombiner, Timing, Trigger, Window, WindowFn, WindowingStrategy,
    };
}
