//! The windowing strategy: every answer to where, when and how, in one value.

use std::fmt;

use crate::error::ModelError;
use crate::time::{Duration, Timestamp};
use crate::trigger::Trigger;
use crate::window::{AnyWindowFn, Window, WindowFn};

/// How successive panes of a window relate.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum AccumulationMode {
    /// Each pane holds only what arrived since the previous pane (Beam's default).
    #[default]
    Discarding,
    /// Each pane holds everything seen so far for the window.
    Accumulating,
    /// Like accumulating, and every pane after the first is preceded by a
    /// retraction of the previous pane of its window; when windows merge, the
    /// last panes of the windows merged away are retracted. See
    /// [`PaneOutput::retraction`](crate::PaneOutput::retraction).
    AccumulatingAndRetracting,
}

/// Which timestamp a pane gets (and where the window holds the watermark).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum TimestampCombiner {
    /// The window's max timestamp (Beam's default).
    #[default]
    EndOfWindow,
    /// The earliest (non-late) element timestamp.
    Earliest,
    /// The latest (non-late) element timestamp.
    Latest,
    /// The earliest element timestamp after the window function's
    /// [`transformed_output_time`](crate::WindowFn::transformed_output_time).
    EarliestTransformed,
}

impl TimestampCombiner {
    pub(crate) fn assign(self, wfn: &AnyWindowFn, window: &Window, t: Timestamp) -> Timestamp {
        match self {
            TimestampCombiner::EndOfWindow => window.max_timestamp(),
            TimestampCombiner::Earliest | TimestampCombiner::Latest => t,
            TimestampCombiner::EarliestTransformed => wfn.transformed_output_time(window, t),
        }
    }
    pub(crate) fn combine(self, a: Timestamp, b: Timestamp) -> Timestamp {
        match self {
            TimestampCombiner::Latest => a.max(b),
            _ => a.min(b),
        }
    }
}

/// Whether the pane produced when a window expires is emitted when empty.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum ClosingBehavior {
    /// Emit the final pane only if it has elements (default).
    #[default]
    FireIfNonEmpty,
    /// Always emit a final pane.
    FireAlways,
}

/// Whether the on-time pane is emitted when empty.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum OnTimeBehavior {
    /// Always emit the on-time pane (default).
    #[default]
    FireAlways,
    /// Emit the on-time pane only if it has elements.
    FireIfNonEmpty,
}

/// Everything a grouping needs to know about windows and triggers.
///
/// Defaults are Beam's (`WindowingStrategy.of`): global windows, the default
/// trigger, discarding mode, zero allowed lateness, end-of-window timestamps,
/// `FireIfNonEmpty` closing and `FireAlways` on-time behaviour.
///
/// ```
/// use weir_model::*;
/// let s = WindowingStrategy::new(FixedWindows::of(Duration::from_mins(2)).unwrap())
///     .trigger(Trigger::after_watermark().with_early_firings(Trigger::after_count(1)))
///     .accumulation(AccumulationMode::Accumulating)
///     .allowed_lateness(Duration::from_mins(5));
/// // An AfterWatermark without late firings and with lateness may drop data: opt in or fail.
/// assert!(matches!(s.validate(), Err(ModelError::UnsafeTrigger { .. })));
/// assert!(s.allow_data_loss(true).validate().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct WindowingStrategy {
    /// Where: the window function.
    pub window_fn: AnyWindowFn,
    /// When: the trigger.
    pub trigger: Trigger,
    /// How: the accumulation mode.
    pub mode: AccumulationMode,
    /// How long after the end of a window late data is still accepted.
    pub allowed_lateness: Duration,
    /// The timestamp of each pane.
    pub timestamp_combiner: TimestampCombiner,
    /// Empty final panes.
    pub closing: ClosingBehavior,
    /// Empty on-time panes.
    pub on_time: OnTimeBehavior,
    /// Send dropped elements (expired or closed window) to the output as
    /// [`GroupOutput::Dropped`](crate::GroupOutput::Dropped) instead of only counting them.
    pub late_data_output: bool,
    /// Accept a trigger that may finish early and drop data (`SEMANTICS.md` §5.3).
    pub allow_data_loss: bool,
}

impl Default for WindowingStrategy {
    fn default() -> Self {
        WindowingStrategy::new(AnyWindowFn::default())
    }
}

impl WindowingStrategy {
    /// A strategy over `window_fn` with Beam's defaults for everything else.
    pub fn new(window_fn: impl Into<AnyWindowFn>) -> Self {
        WindowingStrategy {
            window_fn: window_fn.into(),
            trigger: Trigger::Default,
            mode: AccumulationMode::Discarding,
            allowed_lateness: Duration::ZERO,
            timestamp_combiner: TimestampCombiner::EndOfWindow,
            closing: ClosingBehavior::FireIfNonEmpty,
            on_time: OnTimeBehavior::FireAlways,
            late_data_output: false,
            allow_data_loss: false,
        }
    }
    /// Set the trigger.
    pub fn trigger(mut self, t: Trigger) -> Self {
        self.trigger = t;
        self
    }
    /// Set the accumulation mode.
    pub fn accumulation(mut self, m: AccumulationMode) -> Self {
        self.mode = m;
        self
    }
    /// Set the allowed lateness.
    pub fn allowed_lateness(mut self, d: Duration) -> Self {
        self.allowed_lateness = d;
        self
    }
    /// Set the timestamp combiner.
    pub fn timestamp_combiner(mut self, c: TimestampCombiner) -> Self {
        self.timestamp_combiner = c;
        self
    }
    /// Set the closing behaviour.
    pub fn closing(mut self, c: ClosingBehavior) -> Self {
        self.closing = c;
        self
    }
    /// Set the on-time behaviour.
    pub fn on_time(mut self, b: OnTimeBehavior) -> Self {
        self.on_time = b;
        self
    }
    /// Route dropped elements to the output.
    pub fn late_data_output(mut self, on: bool) -> Self {
        self.late_data_output = on;
        self
    }
    /// Accept triggers that may drop data.
    pub fn allow_data_loss(mut self, on: bool) -> Self {
        self.allow_data_loss = on;
        self
    }

    /// Check the strategy: trigger parameters, non-negative lateness, and the
    /// explicit opt-in for triggers that may lose data.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.trigger.validate()?;
        if self.allowed_lateness < Duration::ZERO {
            return Err(ModelError::NegativeLateness(self.allowed_lateness));
        }
        if !self.allow_data_loss && self.trigger.may_lose_data(self.allowed_lateness) {
            return Err(ModelError::UnsafeTrigger {
                trigger: self.trigger.to_string(),
                allowed_lateness: self.allowed_lateness,
            });
        }
        Ok(())
    }

    /// Whether the window function merges windows.
    pub fn is_merging(&self) -> bool {
        self.window_fn.is_merging()
    }

    /// The strategy of a grouping's output: same windows, the continuation
    /// trigger (`SEMANTICS.md` §5.4).
    pub fn continuation(&self) -> WindowingStrategy {
        WindowingStrategy { trigger: self.trigger.continuation(), ..self.clone() }
    }
}

impl fmt::Display for AccumulationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccumulationMode::Discarding => "discarding",
            AccumulationMode::Accumulating => "accumulating",
            AccumulationMode::AccumulatingAndRetracting => "accumulating_and_retracting",
        })
    }
}
