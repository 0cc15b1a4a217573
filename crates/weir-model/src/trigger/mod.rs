//! When in processing time results appear: triggers.
//!
//! [`Trigger`] is the user-facing description (a tree, printable in the
//! transcript expression syntax). [`TriggerProgram`] is its compiled form: the
//! tree flattened into nodes, driven over a small per-window
//! [`TriggerState`] exactly as Beam's Java `TriggerStateMachine`s are (see
//! `SEMANTICS.md` §5). Triggers never read a clock: the current watermark and
//! processing time arrive in a [`TriggerContext`].

use std::fmt;

use crate::error::ModelError;
use crate::time::{Duration, Timestamp};

/// A step applied to the arrival time of the first element of a pane to get
/// an [`AfterProcessingTime`](Trigger::AfterProcessingTime) target.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TimeTransform {
    /// Add a delay.
    Delay(Duration),
    /// Align to the period `size` with phase `offset`, as Java's
    /// `AlignFn`: `t` unchanged if `(t - offset) % size == 0`, else
    /// `t + size - (t - offset) % size` with Java's truncated remainder. For
    /// `t >= offset` that is the next `offset + k·size`; before the offset it
    /// lies one period further (Java's arithmetic, kept as normative).
    AlignTo {
        /// Alignment period (> 0).
        size: Duration,
        /// Phase of the alignment.
        offset: Timestamp,
    },
}

impl TimeTransform {
    fn apply(self, t: Timestamp) -> Timestamp {
        match self {
            TimeTransform::Delay(d) => t + d,
            TimeTransform::AlignTo { size, offset } => {
                let since = t.since(offset).millis() % size.millis();
                if since == 0 {
                    t
                } else {
                    t + Duration::from_millis(size.millis() - since)
                }
            }
        }
    }
}

/// A trigger: when a window's pane is emitted.
///
/// Build one with the constructor functions and print it in the transcript
/// expression syntax, which [`crate::expr::parse_trigger`] reads back.
///
/// ```
/// use weir_model::Trigger;
/// let t = Trigger::after_watermark()
///     .with_early_firings(Trigger::after_count(2))
///     .with_late_firings(Trigger::after_count(3));
/// assert_eq!(t.to_string(), "AfterWatermark(early=AfterCount(2), late=AfterCount(3))");
/// assert_eq!(weir_model::expr::parse_trigger(&t.to_string()).unwrap(), t);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// Fire when the watermark passes the end of the window, then once per
    /// bundle of late data; never finish.
    Default,
    /// Fire when the watermark passes the end of the window, with optional
    /// early and late firings (each implicitly repeated).
    AfterWatermark {
        /// Speculative firings before the end of the window.
        early: Option<Box<Trigger>>,
        /// Firings for late data after the end of the window.
        late: Option<Box<Trigger>>,
    },
    /// Fire once the pane holds at least `n` elements, then finish.
    AfterCount(u64),
    /// Fire once processing time passes the arrival time of the pane's first
    /// element transformed by the steps (delays, alignments), then finish.
    AfterProcessingTime(Vec<TimeTransform>),
    /// The continuation of processing-time triggers after a grouping: fire
    /// once the (synchronized) processing time passes the first element's.
    AfterSynchronizedProcessingTime,
    /// Re-arm the inner trigger after every firing; never finish.
    Repeatedly(Box<Trigger>),
    /// Fire when any child fires; finish then (Java `AfterFirst`).
    AfterAny(Vec<Trigger>),
    /// Fire when every child has fired or is ready; finish then.
    AfterAll(Vec<Trigger>),
    /// Run children one after the other.
    AfterEach(Vec<Trigger>),
    /// Run `main` until `until` fires, then finish (`main.orFinally(until)`).
    OrFinally(Box<Trigger>, Box<Trigger>),
    /// Never fire (the window is still emitted when it expires).
    Never,
    /// Fire for every bundle of elements (`Repeatedly(AfterCount(1))`).
    Always,
    /// What a builder method returns when it was applied to a trigger it
    /// does not belong to (`with_early_firings` on anything but
    /// `AfterWatermark`, `plus_delay` on anything but `AfterProcessingTime`):
    /// no trigger. [`validate`](Trigger::validate) rejects it, so a pipeline
    /// using it fails to build, naming the builder and the trigger.
    Misused {
        /// The builder method.
        builder: &'static str,
        /// The trigger it was applied to.
        on: Box<Trigger>,
    },
}

impl Trigger {
    /// The default trigger.
    pub fn default_trigger() -> Trigger {
        Trigger::Default
    }
    /// `AfterWatermark.pastEndOfWindow()`.
    pub fn after_watermark() -> Trigger {
        Trigger::AfterWatermark { early: None, late: None }
    }
    /// Add early firings to an `AfterWatermark` trigger. On any other
    /// trigger it is a mistake, and the result fails validation:
    ///
    /// ```
    /// use weir_model::Trigger;
    /// let t = Trigger::after_watermark().with_early_firings(Trigger::after_count(1));
    /// assert!(t.validate().is_ok());
    /// let e = Trigger::after_count(2).with_early_firings(Trigger::after_count(1)).validate().unwrap_err();
    /// assert!(e.to_string().contains("with_early_firings applies to AfterWatermark only"), "{e}");
    /// ```
    pub fn with_early_firings(self, early: Trigger) -> Trigger {
        match self {
            Trigger::AfterWatermark { late, .. } => Trigger::AfterWatermark { early: Some(Box::new(early)), late },
            other => Trigger::Misused { builder: "with_early_firings", on: Box::new(other) },
        }
    }
    /// Add late firings to an `AfterWatermark` trigger (on any other trigger
    /// the result fails validation).
    pub fn with_late_firings(self, late: Trigger) -> Trigger {
        match self {
            Trigger::AfterWatermark { early, .. } => Trigger::AfterWatermark { early, late: Some(Box::new(late)) },
            other => Trigger::Misused { builder: "with_late_firings", on: Box::new(other) },
        }
    }
    /// `AfterPane.elementCountAtLeast(n)`.
    pub fn after_count(n: u64) -> Trigger {
        Trigger::AfterCount(n)
    }
    /// `AfterProcessingTime.pastFirstElementInPane()`; add steps with
    /// [`plus_delay`](Self::plus_delay) and [`aligned_to`](Self::aligned_to).
    pub fn after_processing_time() -> Trigger {
        Trigger::AfterProcessingTime(Vec::new())
    }
    /// Add a delay step to an `AfterProcessingTime` trigger (on any other
    /// trigger the result fails validation).
    pub fn plus_delay(self, d: Duration) -> Trigger {
        self.push_transform("plus_delay", TimeTransform::Delay(d))
    }
    /// Add an alignment step to an `AfterProcessingTime` trigger (on any
    /// other trigger the result fails validation).
    pub fn aligned_to(self, size: Duration, offset: Timestamp) -> Trigger {
        self.push_transform("aligned_to", TimeTransform::AlignTo { size, offset })
    }
    fn push_transform(self, builder: &'static str, t: TimeTransform) -> Trigger {
        match self {
            Trigger::AfterProcessingTime(mut ts) => {
                ts.push(t);
                Trigger::AfterProcessingTime(ts)
            }
            other => Trigger::Misused { builder, on: Box::new(other) },
        }
    }
    /// `Repeatedly.forever(t)`.
    pub fn repeatedly(t: Trigger) -> Trigger {
        Trigger::Repeatedly(Box::new(t))
    }
    /// `AfterFirst.of(...)`.
    pub fn after_any(ts: impl IntoIterator<Item = Trigger>) -> Trigger {
        Trigger::AfterAny(ts.into_iter().collect())
    }
    /// `AfterAll.of(...)`.
    pub fn after_all(ts: impl IntoIterator<Item = Trigger>) -> Trigger {
        Trigger::AfterAll(ts.into_iter().collect())
    }
    /// `AfterEach.inOrder(...)`.
    pub fn after_each(ts: impl IntoIterator<Item = Trigger>) -> Trigger {
        Trigger::AfterEach(ts.into_iter().collect())
    }
    /// `self.orFinally(until)`.
    pub fn or_finally(self, until: Trigger) -> Trigger {
        Trigger::OrFinally(Box::new(self), Box::new(until))
    }
    /// `Never.ever()`.
    pub fn never() -> Trigger {
        Trigger::Never
    }
    /// Fire on every bundle.
    pub fn always() -> Trigger {
        Trigger::Always
    }

    /// Whether this trigger can finish (close its window) at all.
    pub fn can_finish(&self) -> bool {
        match self {
            Trigger::Default | Trigger::Never | Trigger::Always | Trigger::Repeatedly(_) => false,
            Trigger::Misused { .. } => false,
            Trigger::AfterWatermark { late, .. } => late.is_none(),
            Trigger::AfterCount(_) | Trigger::AfterProcessingTime(_) | Trigger::AfterSynchronizedProcessingTime => true,
            Trigger::AfterAny(cs) => cs.iter().any(Trigger::can_finish),
            Trigger::AfterAll(cs) | Trigger::AfterEach(cs) => cs.iter().all(Trigger::can_finish),
            Trigger::OrFinally(a, b) => a.can_finish() || b.can_finish(),
        }
    }

    /// The "may lose data" classification (`SEMANTICS.md` §5.3): a trigger
    /// that may finish before the window is garbage collected makes the
    /// window drop every later element. The only finishing trigger that
    /// cannot lose data is a plain `AfterWatermark()` with zero allowed
    /// lateness, which finishes exactly when the window expires.
    pub fn may_lose_data(&self, allowed_lateness: Duration) -> bool {
        match self {
            Trigger::AfterWatermark { early: _, late: None } => allowed_lateness > Duration::ZERO,
            t => t.can_finish(),
        }
    }

    /// The trigger for the output of a grouping that used this one
    /// (`SEMANTICS.md` §5.4).
    ///
    /// ```
    /// use weir_model::Trigger;
    /// let t = Trigger::after_each([Trigger::after_count(5), Trigger::after_processing_time()]);
    /// assert_eq!(t.continuation().to_string(), "Repeatedly(AfterAny(AfterCount(1), AfterSynchronizedProcessingTime))");
    /// ```
    pub fn continuation(&self) -> Trigger {
        match self {
            Trigger::Default => Trigger::Default,
            Trigger::AfterWatermark { early, late } => Trigger::AfterWatermark {
                early: early.as_ref().map(|t| Box::new(t.continuation())),
                late: late.as_ref().map(|t| Box::new(t.continuation())),
            },
            Trigger::AfterCount(_) => Trigger::AfterCount(1),
            Trigger::AfterProcessingTime(_) | Trigger::AfterSynchronizedProcessingTime => {
                Trigger::AfterSynchronizedProcessingTime
            }
            Trigger::Repeatedly(t) => Trigger::Repeatedly(Box::new(t.continuation())),
            Trigger::AfterAny(cs) => Trigger::AfterAny(cs.iter().map(Trigger::continuation).collect()),
            Trigger::AfterAll(cs) => Trigger::AfterAll(cs.iter().map(Trigger::continuation).collect()),
            Trigger::AfterEach(cs) => {
                Trigger::Repeatedly(Box::new(Trigger::AfterAny(cs.iter().map(Trigger::continuation).collect())))
            }
            Trigger::OrFinally(a, b) => Trigger::OrFinally(Box::new(a.continuation()), Box::new(b.continuation())),
            Trigger::Never => Trigger::Never,
            Trigger::Always => Trigger::Always,
            Trigger::Misused { .. } => self.clone(),
        }
    }

    /// Check parameters (`AfterCount(0)` and empty composites are rejected,
    /// as are non-positive alignment periods).
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |reason: &str| Err(ModelError::InvalidTrigger { trigger: self.to_string(), reason: reason.into() });
        match self {
            Trigger::AfterCount(0) => bad("the element count must be at least 1"),
            Trigger::Misused { builder, on } => {
                let applies = match *builder {
                    "with_early_firings" | "with_late_firings" => "AfterWatermark",
                    _ => "AfterProcessingTime",
                };
                Err(ModelError::InvalidTrigger {
                    trigger: on.to_string(),
                    reason: format!("{builder} applies to {applies} only"),
                })
            }
            Trigger::AfterProcessingTime(ts) => {
                for t in ts {
                    match t {
                        TimeTransform::AlignTo { size, .. } if size.millis() <= 0 => {
                            return bad("the alignment period must be positive")
                        }
                        TimeTransform::Delay(d) if d.millis() < 0 => return bad("the delay must not be negative"),
                        _ => {}
                    }
                }
                Ok(())
            }
            Trigger::AfterAny(cs) | Trigger::AfterAll(cs) | Trigger::AfterEach(cs) => {
                if cs.is_empty() {
                    return bad("a composite trigger needs at least one child");
                }
                cs.iter().try_for_each(Trigger::validate)
            }
            Trigger::Repeatedly(t) => t.validate(),
            Trigger::OrFinally(a, b) => {
                a.validate()?;
                b.validate()
            }
            Trigger::AfterWatermark { early, late } => {
                if let Some(e) = early {
                    e.validate()?;
                }
                if let Some(l) = late {
                    l.validate()?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, name: &str, cs: &[Trigger]) -> fmt::Result {
    write!(f, "{name}(")?;
    for (i, c) in cs.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str(")")
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Default => f.write_str("Default"),
            Trigger::AfterWatermark { early, late } => {
                f.write_str("AfterWatermark(")?;
                if let Some(e) = early {
                    write!(f, "early={e}")?;
                }
                if let Some(l) = late {
                    if early.is_some() {
                        f.write_str(", ")?;
                    }
                    write!(f, "late={l}")?;
                }
                f.write_str(")")
            }
            Trigger::AfterCount(n) => write!(f, "AfterCount({n})"),
            Trigger::AfterProcessingTime(ts) => {
                f.write_str("AfterProcessingTime(")?;
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match t {
                        TimeTransform::Delay(d) => write!(f, "delay={}", d.millis())?,
                        TimeTransform::AlignTo { size, offset } if offset.millis() == 0 => {
                            write!(f, "align={}", size.millis())?
                        }
                        TimeTransform::AlignTo { size, offset } => {
                            write!(f, "align={}, offset={}", size.millis(), offset.millis())?
                        }
                    }
                }
                f.write_str(")")
            }
            Trigger::AfterSynchronizedProcessingTime => f.write_str("AfterSynchronizedProcessingTime"),
            Trigger::Repeatedly(t) => write!(f, "Repeatedly({t})"),
            Trigger::AfterAny(cs) => write_list(f, "AfterAny", cs),
            Trigger::AfterAll(cs) => write_list(f, "AfterAll", cs),
            Trigger::AfterEach(cs) => write_list(f, "AfterEach", cs),
            Trigger::OrFinally(a, b) => write!(f, "OrFinally({a}, {b})"),
            Trigger::Never => f.write_str("Never"),
            Trigger::Misused { builder, on } => write!(f, "{on}.{builder}(…)"),
            Trigger::Always => f.write_str("Always"),
        }
    }
}

mod program;
pub use program::{NodeState, TimerDomain, TriggerContext, TriggerProgram, TriggerState, TriggerTimer};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rounds_up() {
        let a = TimeTransform::AlignTo { size: Duration::from_millis(10), offset: Timestamp::from_millis(3) };
        assert_eq!(a.apply(Timestamp::from_millis(3)), Timestamp::from_millis(3));
        assert_eq!(a.apply(Timestamp::from_millis(4)), Timestamp::from_millis(13));
        // Before the offset Java's truncated remainder lands one period on:
        // (-8 - 3) % 10 = -1, so -8 + 10 + 1.
        assert_eq!(a.apply(Timestamp::from_millis(-8)), Timestamp::from_millis(3));
    }

    #[test]
    fn may_lose_data_classification() {
        let lateness = Duration::from_millis(10);
        assert!(!Trigger::Default.may_lose_data(lateness));
        assert!(!Trigger::after_watermark().may_lose_data(Duration::ZERO));
        assert!(Trigger::after_watermark().may_lose_data(lateness));
        assert!(!Trigger::after_watermark().with_late_firings(Trigger::after_count(1)).may_lose_data(lateness));
        assert!(Trigger::after_count(2).may_lose_data(Duration::ZERO));
        assert!(!Trigger::repeatedly(Trigger::after_count(2)).may_lose_data(lateness));
        assert!(Trigger::after_any([Trigger::repeatedly(Trigger::after_count(1)), Trigger::after_count(3)])
            .may_lose_data(lateness));
        assert!(!Trigger::after_all([Trigger::repeatedly(Trigger::after_count(1)), Trigger::after_count(3)])
            .may_lose_data(lateness));
        assert!(!Trigger::Never.may_lose_data(lateness));
        assert!(!Trigger::Always.may_lose_data(lateness));
        assert!(Trigger::repeatedly(Trigger::after_count(1))
            .or_finally(Trigger::after_count(5))
            .may_lose_data(lateness));
    }

    #[test]
    fn continuations() {
        let t = Trigger::after_watermark()
            .with_early_firings(Trigger::after_processing_time().plus_delay(Duration::from_secs(5)))
            .with_late_firings(Trigger::after_count(7));
        assert_eq!(
            t.continuation(),
            Trigger::after_watermark()
                .with_early_firings(Trigger::AfterSynchronizedProcessingTime)
                .with_late_firings(Trigger::after_count(1))
        );
        assert_eq!(Trigger::Default.continuation(), Trigger::Default);
        assert_eq!(Trigger::Never.continuation(), Trigger::Never);
        assert_eq!(Trigger::Always.continuation(), Trigger::Always);
        assert_eq!(
            Trigger::repeatedly(Trigger::after_count(9)).continuation(),
            Trigger::repeatedly(Trigger::after_count(1))
        );
    }

    #[test]
    fn validation() {
        assert!(Trigger::after_count(0).validate().is_err());
        assert!(Trigger::after_any([]).validate().is_err());
        assert!(Trigger::repeatedly(Trigger::after_count(0)).validate().is_err());
        assert!(Trigger::after_processing_time()
            .aligned_to(Duration::ZERO, Timestamp::from_millis(0))
            .validate()
            .is_err());
        assert!(Trigger::after_watermark().with_early_firings(Trigger::after_count(1)).validate().is_ok());
    }
}
