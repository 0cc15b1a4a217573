//! The one error type of the model crate.

use crate::time::{Duration, Timestamp};

/// Everything that can go wrong when building or driving the model.
///
/// Errors are about *configuration* (invalid window parameters, an unsafe
/// trigger that was not opted into, an unparseable expression) or about *input*
/// (a timestamp outside the valid range). Broken internal invariants panic
/// instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A window function was given parameters the model does not allow.
    #[error("invalid window function {window_fn}: {reason}")]
    InvalidWindowFn {
        /// The window function, e.g. `FixedWindows(size=0ms, offset=0ms)`.
        window_fn: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A trigger was given parameters the model does not allow.
    #[error("invalid trigger {trigger}: {reason}")]
    InvalidTrigger {
        /// The trigger in expression syntax.
        trigger: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The trigger may finish before the window is garbage collected, which
    /// silently drops any later data for that window. Such strategies must be
    /// opted into with [`WindowingStrategy::allow_data_loss`](crate::WindowingStrategy::allow_data_loss).
    #[error(
        "trigger {trigger} may finish before the window expires (allowed lateness {allowed_lateness}) \
         and then drop later data for the window; call allow_data_loss(true) on the windowing strategy \
         to accept this"
    )]
    UnsafeTrigger {
        /// The trigger in expression syntax.
        trigger: String,
        /// The strategy's allowed lateness.
        allowed_lateness: Duration,
    },
    /// The allowed lateness is negative.
    #[error("allowed lateness must not be negative, got {0}")]
    NegativeLateness(Duration),
    /// An element timestamp outside `[MIN_TIMESTAMP, MAX_TIMESTAMP)`.
    #[error("timestamp {millis} ms is outside the valid range [{}, {})", Timestamp::MIN.millis(), Timestamp::MAX.millis())]
    TimestampOutOfRange {
        /// The offending value in milliseconds.
        millis: i64,
    },
    /// A window function or trigger expression could not be parsed.
    #[error("{0}")]
    Parse(#[from] crate::expr::ParseError),
}
