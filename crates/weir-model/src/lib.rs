//! # weir-model
//!
//! The pure semantic core of Weir: the Beam / Dataflow model's answers to
//! *where* (windows), *when* (watermarks and triggers) and *how* (accumulation
//! modes) for one grouping operation. It performs no I/O, starts no threads
//! and reads no clock: watermarks and processing time are passed in. Runners
//! (reference, embedded, distributed) drive it; it is normative against
//! `shared/beam-model/SEMANTICS.md` and Beam's trigger transcripts.
//!
//! The main pieces:
//! - [`Timestamp`], [`Duration`]: time in milliseconds with clamping arithmetic;
//! - [`Window`], [`WindowFn`] and the built-in window functions;
//! - [`Trigger`] and its compiled state machine [`TriggerProgram`];
//! - [`WindowingStrategy`]: window fn, trigger, accumulation mode, lateness,
//!   timestamp combiner, closing and on-time behaviour;
//! - [`GroupAlsoByWindow`]: the per-key grouping state machine (Beam's
//!   `ReduceFnRunner`), emitting panes with [`PaneInfo`];
//! - [`expr`]: the transcript expression parser.

#![warn(missing_docs)]

pub mod aggregate;
pub mod error;
pub mod expr;
pub mod grouping;
pub mod pane;
pub mod strategy;
pub mod time;
pub mod timers;
pub mod trigger;
pub mod window;

pub use aggregate::{Aggregator, Buffer};
pub use error::ModelError;
pub use grouping::{
    DropReason, DroppedElement, GroupAlsoByWindow, GroupCounters, GroupOutput, KeyState, KeyStore, MemoryKeys,
    PaneOutput, WindowStatus,
};
pub use pane::{PaneInfo, Timing};
pub use strategy::{AccumulationMode, ClosingBehavior, OnTimeBehavior, TimestampCombiner, WindowingStrategy};
pub use time::{Duration, Timestamp};
pub use trigger::{NodeState, TimeTransform, Trigger, TriggerContext, TriggerProgram, TriggerState};
pub use window::{
    merge_overlapping_intervals, AnyWindowFn, FixedWindows, GlobalWindows, IntervalWindow, MergeGroup, Sessions,
    SlidingWindows, Window, WindowFn,
};
