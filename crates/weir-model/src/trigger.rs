//! When in processing time results appear: triggers.
//!
//! [`Trigger`] is the user-facing description (a tree, printable in the
//! transcript expression syntax). [`TriggerProgram`] is its compiled form: the
//! tree flattened into nodes, driven over a small per-window
//! [`TriggerState`] exactly as Beam's Java `TriggerStateMachine`s are (see
//! `SEMANTICS.md` §5). Triggers never read a clock: the current watermark and
//! processing time arrive in a [`TriggerContext`].

use std::fmt;

use smallvec::SmallVec;

use crate::error::ModelError;
use crate::time::{Duration, Timestamp};
use crate::window::Window;

/// A step applied to the arrival time of the first element of a pane to get
/// an [`AfterProcessingTime`](Trigger::AfterProcessingTime) target.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TimeTransform {
    /// Add a delay.
    Delay(Duration),
    /// Round up to the next `offset + k·size` (unchanged if already aligned).
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
                let since = t.since(offset).millis().rem_euclid(size.millis());
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
    /// Add early firings to an `AfterWatermark` trigger (others are returned unchanged).
    pub fn with_early_firings(self, early: Trigger) -> Trigger {
        match self {
            Trigger::AfterWatermark { late, .. } => Trigger::AfterWatermark { early: Some(Box::new(early)), late },
            other => other,
        }
    }
    /// Add late firings to an `AfterWatermark` trigger (others are returned unchanged).
    pub fn with_late_firings(self, late: Trigger) -> Trigger {
        match self {
            Trigger::AfterWatermark { early, .. } => Trigger::AfterWatermark { early, late: Some(Box::new(late)) },
            other => other,
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
    /// Add a delay step to an `AfterProcessingTime` trigger.
    pub fn plus_delay(self, d: Duration) -> Trigger {
        self.push_transform(TimeTransform::Delay(d))
    }
    /// Add an alignment step to an `AfterProcessingTime` trigger.
    pub fn aligned_to(self, size: Duration, offset: Timestamp) -> Trigger {
        self.push_transform(TimeTransform::AlignTo { size, offset })
    }
    fn push_transform(self, t: TimeTransform) -> Trigger {
        match self {
            Trigger::AfterProcessingTime(mut ts) => {
                ts.push(t);
                Trigger::AfterProcessingTime(ts)
            }
            other => other,
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
        }
    }

    /// Check parameters (`AfterCount(0)` and empty composites are rejected,
    /// as are non-positive alignment periods).
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |reason: &str| Err(ModelError::InvalidTrigger { trigger: self.to_string(), reason: reason.into() });
        match self {
            Trigger::AfterCount(0) => bad("the element count must be at least 1"),
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
            Trigger::Always => f.write_str("Always"),
        }
    }
}

// ---------------------------------------------------------------------------
// The compiled state machine.

#[derive(Clone, Debug)]
enum Node {
    Default,
    EndOfWindow,
    EarlyLate { early: usize, late: Option<usize> },
    Count(u64),
    ProcessingTime(Vec<TimeTransform>),
    Repeatedly(usize),
    AfterAny(Vec<usize>),
    AfterAll(Vec<usize>),
    AfterEach(Vec<usize>),
    OrFinally(usize, usize),
    Never,
}

/// The state of one trigger node for one window.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeState {
    /// The node has finished (for the root: the window is closed).
    pub finished: bool,
    /// Elements counted by an `AfterCount` node.
    pub count: u64,
    /// Target of a processing-time node.
    pub target: Option<Timestamp>,
}

/// The trigger state of one (key, window): one [`NodeState`] per node of the
/// program. Stored inline for triggers of up to two nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TriggerState(SmallVec<[NodeState; 2]>);

impl TriggerState {
    /// Whether the root trigger has finished.
    pub fn is_finished(&self) -> bool {
        self.0.first().is_some_and(|n| n.finished)
    }
    /// The per-node states, in pre-order.
    pub fn nodes(&self) -> &[NodeState] {
        &self.0
    }
    /// A state from per-node states (as taken by [`nodes`](Self::nodes)).
    pub fn from_nodes(nodes: &[NodeState]) -> Self {
        TriggerState(nodes.iter().copied().collect())
    }
}

/// What a trigger sees of the world when it is asked something.
#[derive(Copy, Clone, Debug)]
pub struct TriggerContext {
    /// The window the trigger runs for.
    pub window: Window,
    /// The input watermark ("current event time").
    pub input_watermark: Timestamp,
    /// The current processing time.
    pub processing_time: Timestamp,
    /// Whether the window function merges windows.
    pub merging: bool,
}

impl TriggerContext {
    fn end_of_window_reached(&self) -> bool {
        self.input_watermark > self.window.max_timestamp()
    }
}

/// A compiled [`Trigger`]: the tree flattened into nodes in pre-order, root
/// first. Its methods are the trigger state-machine operations of
/// `SEMANTICS.md` §5.1, each over the window's [`TriggerState`].
///
/// ```
/// use weir_model::{Timestamp, Trigger, TriggerContext, TriggerProgram, Window};
/// let p = TriggerProgram::compile(&Trigger::repeatedly(Trigger::after_count(2)));
/// let cx = TriggerContext {
///     window: Window::Global,
///     input_watermark: Timestamp::MIN,
///     processing_time: Timestamp::MIN,
///     merging: false,
/// };
/// let mut st = p.new_state();
/// let mut timers = Vec::new();
/// p.on_element(&mut st, &cx, &mut timers);
/// assert!(!p.should_fire(&st, &cx));
/// p.on_element(&mut st, &cx, &mut timers);
/// assert!(p.should_fire(&st, &cx));
/// p.on_fire(&mut st, &cx);
/// assert!(!p.should_fire(&st, &cx) && !st.is_finished());
/// ```
#[derive(Clone, Debug)]
pub struct TriggerProgram {
    nodes: Vec<Node>,
    /// `subtree_end[n]`: one past the last node of n's subtree.
    subtree_end: Vec<usize>,
    is_default: bool,
}

impl TriggerProgram {
    /// Compile a trigger.
    pub fn compile(t: &Trigger) -> TriggerProgram {
        let mut p = TriggerProgram { nodes: Vec::new(), subtree_end: Vec::new(), is_default: *t == Trigger::Default };
        p.add(t);
        p
    }

    fn add(&mut self, t: &Trigger) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Node::Never);
        self.subtree_end.push(0);
        let node = match t {
            Trigger::Default => Node::Default,
            Trigger::AfterWatermark { early: None, late: None } => Node::EndOfWindow,
            Trigger::AfterWatermark { early, late } => {
                let early = match early {
                    Some(e) => self.add(e),
                    None => self.add(&Trigger::Never),
                };
                let late = late.as_ref().map(|l| self.add(l));
                Node::EarlyLate { early, late }
            }
            Trigger::AfterCount(n) => Node::Count(*n),
            Trigger::AfterProcessingTime(ts) => Node::ProcessingTime(ts.clone()),
            Trigger::AfterSynchronizedProcessingTime => Node::ProcessingTime(Vec::new()),
            Trigger::Repeatedly(c) => Node::Repeatedly(self.add(c)),
            Trigger::AfterAny(cs) => Node::AfterAny(cs.iter().map(|c| self.add(c)).collect()),
            Trigger::AfterAll(cs) => Node::AfterAll(cs.iter().map(|c| self.add(c)).collect()),
            Trigger::AfterEach(cs) => Node::AfterEach(cs.iter().map(|c| self.add(c)).collect()),
            Trigger::OrFinally(a, b) => {
                let a = self.add(a);
                let b = self.add(b);
                Node::OrFinally(a, b)
            }
            Trigger::Never => Node::Never,
            Trigger::Always => {
                let c = self.add(&Trigger::AfterCount(1));
                Node::Repeatedly(c)
            }
        };
        self.nodes[id] = node;
        self.subtree_end[id] = self.nodes.len();
        id
    }

    /// Number of nodes (the length of a window's [`TriggerState`]).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// A program always has a root node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// True for the default trigger, which keeps no state and fires exactly
    /// when the end of the window is reached.
    pub fn is_default(&self) -> bool {
        self.is_default
    }

    /// A fresh state for a new window.
    pub fn new_state(&self) -> TriggerState {
        TriggerState(smallvec::smallvec![NodeState::default(); self.nodes.len()])
    }

    /// An element was added to the window. Processing-time timers the trigger
    /// wants are appended to `pt_timers`.
    pub fn on_element(&self, st: &mut TriggerState, cx: &TriggerContext, pt_timers: &mut Vec<Timestamp>) {
        if self.is_default {
            return;
        }
        self.element(0, &mut st.0, cx, pt_timers)
    }

    /// Whether the trigger is ready to fire.
    pub fn should_fire(&self, st: &TriggerState, cx: &TriggerContext) -> bool {
        if self.is_default {
            return cx.end_of_window_reached();
        }
        self.ready(0, &st.0, cx)
    }

    /// The runner fires: update state; afterwards [`TriggerState::is_finished`]
    /// tells whether the window is now closed.
    pub fn on_fire(&self, st: &mut TriggerState, cx: &TriggerContext) {
        if self.is_default {
            return;
        }
        self.fire(0, &mut st.0, cx)
    }

    /// Merge the trigger states of `sources` into a fresh state for the
    /// result window described by `cx`.
    pub fn on_merge(
        &self,
        sources: &[&TriggerState],
        cx: &TriggerContext,
        pt_timers: &mut Vec<Timestamp>,
    ) -> TriggerState {
        let mut result = self.new_state();
        if !self.is_default {
            let srcs: SmallVec<[&[NodeState]; 4]> = sources.iter().map(|s| &s.0[..]).collect();
            self.merge(0, &srcs, &mut result.0, cx, pt_timers);
        }
        result
    }

    fn element(&self, n: usize, st: &mut [NodeState], cx: &TriggerContext, timers: &mut Vec<Timestamp>) {
        if st[n].finished {
            return;
        }
        match &self.nodes[n] {
            Node::Default | Node::EndOfWindow | Node::Never => {}
            Node::EarlyLate { early, late } => {
                if cx.merging {
                    self.element(*early, st, cx, timers);
                    if let Some(l) = late {
                        self.element(*l, st, cx, timers);
                    }
                } else if !st[*early].finished {
                    self.element(*early, st, cx, timers);
                } else if let Some(l) = late {
                    self.element(*l, st, cx, timers);
                }
            }
            Node::Count(_) => st[n].count += 1,
            Node::ProcessingTime(steps) => {
                if st[n].target.is_none() {
                    let target = steps.iter().fold(cx.processing_time, |t, s| s.apply(t));
                    st[n].target = Some(target);
                    timers.push(target);
                }
            }
            Node::Repeatedly(c) => self.element(*c, st, cx, timers),
            Node::AfterAny(cs) | Node::AfterAll(cs) => {
                for &c in cs {
                    self.element(c, st, cx, timers);
                }
            }
            Node::AfterEach(cs) => {
                if cx.merging {
                    for &c in cs {
                        self.element(c, st, cx, timers);
                    }
                } else if let Some(&c) = cs.iter().find(|&&c| !st[c].finished) {
                    self.element(c, st, cx, timers);
                }
            }
            Node::OrFinally(a, b) => {
                self.element(*a, st, cx, timers);
                self.element(*b, st, cx, timers);
            }
        }
    }

    fn ready(&self, n: usize, st: &[NodeState], cx: &TriggerContext) -> bool {
        match &self.nodes[n] {
            Node::Default | Node::EndOfWindow => cx.end_of_window_reached(),
            Node::EarlyLate { early, late } => {
                if !st[*early].finished {
                    self.ready(*early, st, cx) || cx.end_of_window_reached()
                } else {
                    late.is_some_and(|l| self.ready(l, st, cx))
                }
            }
            Node::Count(k) => st[n].count >= *k,
            Node::ProcessingTime(_) => st[n].target.is_some_and(|t| cx.processing_time > t),
            Node::Repeatedly(c) => self.ready(*c, st, cx),
            Node::AfterAny(cs) => cs.iter().any(|&c| st[c].finished || self.ready(c, st, cx)),
            Node::AfterAll(cs) => cs.iter().all(|&c| st[c].finished || self.ready(c, st, cx)),
            Node::AfterEach(cs) => cs.iter().find(|&&c| !st[c].finished).is_some_and(|&c| self.ready(c, st, cx)),
            Node::OrFinally(a, b) => self.ready(*a, st, cx) || self.ready(*b, st, cx),
            Node::Never => false,
        }
    }

    fn fire(&self, n: usize, st: &mut [NodeState], cx: &TriggerContext) {
        match &self.nodes[n] {
            Node::Default | Node::Never => {}
            Node::EndOfWindow => st[n].finished = true,
            Node::EarlyLate { early, late } => {
                let early = *early;
                if !st[early].finished {
                    if !cx.end_of_window_reached() {
                        // An early firing; the early trigger repeats implicitly.
                        self.fire(early, st, cx);
                        self.reset(early, st);
                    } else {
                        // The on-time firing: retire the early trigger, start the late one afresh.
                        if self.ready(early, st, cx) {
                            self.fire(early, st, cx);
                        }
                        self.clear(early, st);
                        st[early].finished = true;
                        match late {
                            None => st[n].finished = true,
                            Some(l) => self.reset(*l, st),
                        }
                    }
                } else if let Some(l) = late {
                    // A late firing; the late trigger repeats implicitly.
                    self.fire(*l, st, cx);
                    self.reset(*l, st);
                } else {
                    st[n].finished = true;
                }
            }
            Node::Count(_) | Node::ProcessingTime(_) => {
                st[n].count = 0;
                st[n].target = None;
                st[n].finished = true;
            }
            Node::Repeatedly(c) => {
                self.fire(*c, st, cx);
                if st[*c].finished {
                    self.reset(*c, st);
                }
            }
            Node::AfterAny(cs) => {
                for &c in cs {
                    if self.ready(c, st, cx) {
                        self.fire(c, st, cx);
                    } else {
                        self.clear(c, st);
                    }
                }
                st[n].finished = true;
            }
            Node::AfterAll(cs) => {
                for &c in cs {
                    if !st[c].finished {
                        self.fire(c, st, cx);
                    }
                }
                st[n].finished = true;
            }
            Node::AfterEach(cs) => {
                if let Some(&c) = cs.iter().find(|&&c| !st[c].finished) {
                    self.fire(c, st, cx);
                }
                if cx.merging {
                    // Children that ran in parallel start afresh for the next step.
                    for &c in cs {
                        if !st[c].finished {
                            self.clear(c, st);
                        }
                    }
                }
                st[n].finished = cs.iter().all(|&c| st[c].finished);
            }
            Node::OrFinally(a, b) => {
                if self.ready(*b, st, cx) {
                    self.fire(*b, st, cx);
                    self.clear(*a, st);
                } else {
                    self.fire(*a, st, cx);
                }
                st[n].finished = st[*a].finished || st[*b].finished;
            }
        }
    }

    /// Clear the pane-tracking state of a subtree, keeping finished bits.
    fn clear(&self, n: usize, st: &mut [NodeState]) {
        for s in &mut st[n..self.subtree_end[n]] {
            s.count = 0;
            s.target = None;
        }
    }

    /// Reset a subtree completely (state and finished bits).
    fn reset(&self, n: usize, st: &mut [NodeState]) {
        for s in &mut st[n..self.subtree_end[n]] {
            *s = NodeState::default();
        }
    }

    fn merge(
        &self,
        n: usize,
        srcs: &[&[NodeState]],
        res: &mut [NodeState],
        cx: &TriggerContext,
        timers: &mut Vec<Timestamp>,
    ) {
        let all_finished = |i: usize| srcs.iter().all(|s| s[i].finished);
        let any_finished = |i: usize| srcs.iter().any(|s| s[i].finished);
        match &self.nodes[n] {
            Node::Default | Node::Never => {}
            Node::EndOfWindow => res[n].finished = all_finished(n) && cx.end_of_window_reached(),
            Node::EarlyLate { early, late } => {
                let early = *early;
                if !all_finished(early) || !cx.end_of_window_reached() {
                    // Still (or again) in the early phase.
                    self.merge(early, srcs, res, cx, timers);
                    res[early].finished = false;
                    if let Some(l) = late {
                        self.reset(*l, res);
                    }
                } else {
                    res[early].finished = true;
                    if let Some(l) = late {
                        self.merge(*l, srcs, res, cx, timers);
                    }
                }
            }
            Node::Count(_) => {
                if any_finished(n) {
                    res[n].finished = true;
                } else {
                    res[n].count = srcs.iter().map(|s| s[n].count).sum();
                }
            }
            Node::ProcessingTime(_) => {
                if any_finished(n) {
                    res[n].finished = true;
                } else {
                    res[n].target = srcs.iter().filter_map(|s| s[n].target).min();
                    if let Some(t) = res[n].target {
                        timers.push(t);
                    }
                }
            }
            Node::Repeatedly(c) => self.merge(*c, srcs, res, cx, timers),
            Node::AfterAny(cs) => {
                for &c in cs {
                    self.merge(c, srcs, res, cx, timers);
                }
                res[n].finished = cs.iter().any(|&c| res[c].finished);
            }
            Node::AfterAll(cs) | Node::AfterEach(cs) => {
                for &c in cs {
                    self.merge(c, srcs, res, cx, timers);
                }
                res[n].finished = cs.iter().all(|&c| res[c].finished);
            }
            Node::OrFinally(a, b) => {
                self.merge(*a, srcs, res, cx, timers);
                self.merge(*b, srcs, res, cx, timers);
                res[n].finished = res[*a].finished || res[*b].finished;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rounds_up() {
        let a = TimeTransform::AlignTo { size: Duration::from_millis(10), offset: Timestamp::from_millis(3) };
        assert_eq!(a.apply(Timestamp::from_millis(3)), Timestamp::from_millis(3));
        assert_eq!(a.apply(Timestamp::from_millis(4)), Timestamp::from_millis(13));
        assert_eq!(a.apply(Timestamp::from_millis(-8)), Timestamp::from_millis(-7));
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
