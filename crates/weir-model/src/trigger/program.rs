//! The compiled trigger: Java's `ExecutableTriggerStateMachine` tree and
//! its `TriggerStateMachine`s, flattened into an array of nodes in
//! pre-order (root first), driven over one small [`TriggerState`] per
//! window.
//!
//! Every operation follows the Java runner core (`SEMANTICS.md` §5): which
//! children of a composite see an element, fire or merge, whether a finished
//! node is skipped, and which finished bits a firing or a merge changes are
//! exactly Java's, including where they are surprising (an `AfterAll` fires
//! finished children, the implicit repeat of early and late firings un-finishes
//! only the sub-trigger's own node, a merge starts from the result window's own
//! stored bits and sees the merging windows' bits read-only). Triggers ask for
//! timers through a list of [`TriggerTimer`]s; they never read a clock.

use smallvec::SmallVec;

use super::{TimeTransform, Trigger};
use crate::time::Timestamp;
use crate::window::Window;

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
    /// The node has finished (for the root: the window is closed). Kept
    /// until the window is garbage collected.
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
    /// Whether the root trigger has finished (the window is closed).
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
    /// Whether the window function merges windows (a property of the window
    /// function, true even when no merge happens).
    pub merging: bool,
}

impl TriggerContext {
    /// Java's `endOfWindowReached`: the input watermark is past the window's
    /// max timestamp.
    pub fn end_of_window_reached(&self) -> bool {
        self.input_watermark > self.window.max_timestamp()
    }
}

/// Which clock a timer follows.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerDomain {
    /// The input watermark.
    EventTime,
    /// Processing time.
    ProcessingTime,
}

/// A timer a trigger asks for, in the window it runs for. A timer is
/// identified by (window, domain, timestamp), as in Java: asking twice is
/// one timer, and a timer is never replaced by one at another time.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TriggerTimer {
    /// Its clock.
    pub domain: TimerDomain,
    /// When it fires (strictly after this time).
    pub at: Timestamp,
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

/// The merge of one node: the result window's state (starting from the
/// result window's own stored state) and the states of the ACTIVE merging
/// windows, read-only.
struct Merge<'a> {
    sources: &'a [&'a [NodeState]],
    /// Whether the result window is one of the sources (its own state is
    /// then counted once).
    result_is_source: bool,
}

impl Merge<'_> {
    fn finished_in_any(&self, n: usize) -> bool {
        self.sources.iter().any(|s| s[n].finished)
    }
    /// True when no window is merging (Java: a vacuous "all").
    fn finished_in_all(&self, n: usize) -> bool {
        self.sources.iter().all(|s| s[n].finished)
    }
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
                // Java: `withLateFirings` alone runs `Never` as the early trigger.
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
            // Rejected by validation before any grouping compiles it.
            Trigger::Never | Trigger::Misused { .. } => Node::Never,
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

    /// True for the default trigger, which keeps no state, never finishes
    /// and fires exactly when the end of the window is reached.
    pub fn is_default(&self) -> bool {
        self.is_default
    }

    /// A fresh state for a new window.
    pub fn new_state(&self) -> TriggerState {
        TriggerState(smallvec::smallvec![NodeState::default(); self.nodes.len()])
    }

    /// An element was added to the window (Java `invokeOnElement` on the
    /// root, which does not check the root's finished bit). Timers the
    /// trigger wants are appended to `timers`.
    pub fn on_element(&self, st: &mut TriggerState, cx: &TriggerContext, timers: &mut Vec<TriggerTimer>) {
        if self.is_default {
            end_of_window_timer(cx, timers);
            return;
        }
        self.element(0, &mut st.0, cx, timers)
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

    /// Clear the pane-tracking state of the whole tree (counts, targets),
    /// keeping every finished bit: what a window that closes keeps until
    /// it is garbage collected (Java `TriggerStateMachineRunner.clearState`).
    pub fn clear_state(&self, st: &mut TriggerState) {
        if !self.is_default {
            self.clear(0, &mut st.0);
        }
    }

    /// Merge trigger states (Java `TriggerStateMachineRunner.onMerge`).
    /// `result` is the result window's own stored state: a fresh state for
    /// a new window, the window's state if it is one of the merging windows
    /// (then `result_is_source`), or the finished bits a closed window kept.
    /// `sources` are the states of the merging windows that are ACTIVE
    /// (have state); windows new in this bundle have none. Each node decides
    /// its finished bit from the sources' bits, as Java's triggers do.
    pub fn on_merge(
        &self,
        result: &TriggerState,
        sources: &[&TriggerState],
        result_is_source: bool,
        cx: &TriggerContext,
        timers: &mut Vec<TriggerTimer>,
    ) -> TriggerState {
        let mut res = result.clone();
        if res.0.len() != self.nodes.len() {
            res = self.new_state();
        }
        if self.is_default {
            end_of_window_timer(cx, timers);
            return res;
        }
        let srcs: SmallVec<[&[NodeState]; 4]> = sources.iter().map(|s| &s.0[..]).collect();
        let m = Merge { sources: &srcs, result_is_source };
        self.merge(0, &m, &mut res.0, cx, timers);
        res
    }

    fn first_unfinished(cs: &[usize], st: &[NodeState]) -> Option<usize> {
        cs.iter().copied().find(|&c| !st[c].finished)
    }

    fn element(&self, n: usize, st: &mut [NodeState], cx: &TriggerContext, timers: &mut Vec<TriggerTimer>) {
        match &self.nodes[n] {
            Node::Default | Node::EndOfWindow => end_of_window_timer(cx, timers),
            Node::Never => {}
            Node::EarlyLate { early, late } => {
                end_of_window_timer(cx, timers);
                if !cx.merging {
                    // Only the running phase: early until its bit is set, then late.
                    if !st[*early].finished {
                        self.element(*early, st, cx, timers);
                    } else if let Some(l) = late {
                        self.element(*l, st, cx, timers);
                    }
                } else {
                    // A merge may re-activate either phase: both keep state.
                    self.element(*early, st, cx, timers);
                    if let Some(l) = late {
                        self.element(*l, st, cx, timers);
                    }
                }
            }
            Node::Count(_) => st[n].count += 1,
            Node::ProcessingTime(steps) => {
                if st[n].target.is_none() {
                    let target = steps.iter().fold(cx.processing_time, |t, s| s.apply(t));
                    st[n].target = Some(target);
                    timers.push(TriggerTimer { domain: TimerDomain::ProcessingTime, at: target });
                }
            }
            Node::Repeatedly(c) => self.element(*c, st, cx, timers),
            Node::AfterAny(cs) => {
                for &c in cs {
                    self.element(c, st, cx, timers);
                }
            }
            Node::AfterAll(cs) => {
                for &c in cs {
                    if !st[c].finished {
                        self.element(c, st, cx, timers);
                    }
                }
            }
            Node::AfterEach(cs) => {
                if !cx.merging {
                    if let Some(c) = Self::first_unfinished(cs, st) {
                        self.element(c, st, cx, timers);
                    }
                } else {
                    for &c in cs {
                        self.element(c, st, cx, timers);
                    }
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
            Node::AfterEach(cs) => Self::first_unfinished(cs, st).is_some_and(|c| self.ready(c, st, cx)),
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
                        // An early firing, implicitly repeated: Java un-finishes
                        // the early trigger's own node only (not its subtree).
                        self.fire(early, st, cx);
                        self.clear(early, st);
                        st[early].finished = false;
                    } else {
                        // The on-time firing: the early trigger fires only if it
                        // is ready itself, then retires; the late one starts afresh.
                        if self.ready(early, st, cx) {
                            self.fire(early, st, cx);
                        }
                        st[early].finished = true;
                        self.clear(early, st);
                        match late {
                            None => st[n].finished = true,
                            Some(l) => self.clear(*l, st),
                        }
                    }
                } else if let Some(l) = late {
                    // A late firing, implicitly repeated (own node only).
                    self.fire(*l, st, cx);
                    self.clear(*l, st);
                    st[*l].finished = false;
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
                    self.reset_tree(*c, st);
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
                // Every child fires, finished or not (Java `AfterAll.onFire`).
                for &c in cs {
                    self.fire(c, st, cx);
                }
                st[n].finished = true;
            }
            Node::AfterEach(cs) => {
                if let Some(c) = Self::first_unfinished(cs, st) {
                    self.fire(c, st, cx);
                }
                if cx.merging {
                    // Children run in parallel for each pending pane.
                    for &c in cs {
                        self.clear(c, st);
                    }
                }
                st[n].finished = Self::first_unfinished(cs, st).is_none();
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

    /// Java `resetTree`: a subtree's state and finished bits.
    fn reset_tree(&self, n: usize, st: &mut [NodeState]) {
        for s in &mut st[n..self.subtree_end[n]] {
            *s = NodeState::default();
        }
    }

    fn merge(
        &self,
        n: usize,
        m: &Merge<'_>,
        res: &mut [NodeState],
        cx: &TriggerContext,
        timers: &mut Vec<TriggerTimer>,
    ) {
        match &self.nodes[n] {
            Node::Default => end_of_window_timer(cx, timers),
            Node::Never => {}
            Node::EndOfWindow => {
                // No timer: the next element of the merged window sets it.
                res[n].finished = m.finished_in_all(n) && cx.end_of_window_reached();
            }
            Node::EarlyLate { early, late } => {
                let early = *early;
                if !m.finished_in_all(early) || !cx.end_of_window_reached() {
                    // Still (or again) early: the late trigger's state is dropped.
                    self.merge(early, m, res, cx, timers);
                    res[early].finished = false;
                    if let Some(l) = late {
                        res[*l].finished = false;
                        self.clear(*l, res);
                    }
                } else {
                    res[early].finished = true;
                    if let Some(l) = late {
                        self.merge(*l, m, res, cx, timers);
                    }
                }
            }
            Node::Count(_) => {
                let own = if m.result_is_source { 0 } else { res[n].count };
                if m.finished_in_any(n) {
                    res[n].finished = true;
                    res[n].count = own;
                } else {
                    res[n].count = own + m.sources.iter().map(|s| s[n].count).sum::<u64>();
                }
            }
            Node::ProcessingTime(_) => {
                let own = if m.result_is_source { None } else { res[n].target };
                if res[n].finished {
                    // Java checks the result window's own bit here.
                    res[n].target = own;
                } else {
                    let merged = m.sources.iter().filter_map(|s| s[n].target).chain(own).min();
                    res[n].target = merged;
                    if let Some(t) = merged {
                        timers.push(TriggerTimer { domain: TimerDomain::ProcessingTime, at: t });
                    }
                }
            }
            Node::Repeatedly(c) => self.merge(*c, m, res, cx, timers),
            Node::AfterAny(cs) => {
                for &c in cs {
                    self.merge(c, m, res, cx, timers);
                }
                res[n].finished = cs.iter().any(|&c| res[c].finished);
            }
            Node::AfterAll(cs) => {
                for &c in cs {
                    self.merge(c, m, res, cx, timers);
                }
                res[n].finished = cs.iter().all(|&c| res[c].finished);
            }
            Node::AfterEach(cs) => {
                // Children up to the first unfinished one merge; the rest only clear.
                let mut prior_finished = true;
                for &c in cs {
                    if prior_finished {
                        self.merge(c, m, res, cx, timers);
                        prior_finished &= res[c].finished;
                    } else {
                        self.clear(c, res);
                    }
                }
                res[n].finished = Self::first_unfinished(cs, res).is_none();
            }
            Node::OrFinally(a, b) => {
                self.merge(*a, m, res, cx, timers);
                self.merge(*b, m, res, cx, timers);
                res[n].finished = res[*a].finished || res[*b].finished;
            }
        }
    }
}

/// Default and AfterWatermark: a timer at the end of the window, unless it
/// has been reached already (then the trigger is ready without one).
fn end_of_window_timer(cx: &TriggerContext, timers: &mut Vec<TriggerTimer>) {
    if !cx.end_of_window_reached() {
        timers.push(TriggerTimer { domain: TimerDomain::EventTime, at: cx.window.max_timestamp() });
    }
}
