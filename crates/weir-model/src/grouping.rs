//! The grouping state machine: Beam's `ReduceFnRunner` for every key of one
//! grouping operation (`SEMANTICS.md` §4, §6–8).
//!
//! [`GroupAlsoByWindow`] receives bundles of `(value, timestamp)` for a key,
//! watermark advances and processing-time advances — all passed in, never
//! read from a clock — and emits panes ([`GroupOutput::Pane`]) and, when the
//! strategy asks for it, dropped elements ([`GroupOutput::Dropped`]).

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;
use std::hash::Hash;

use smallvec::SmallVec;

use crate::aggregate::Aggregator;
use crate::error::ModelError;
use crate::pane::{PaneInfo, Timing};
use crate::strategy::{AccumulationMode, ClosingBehavior, OnTimeBehavior, TimestampCombiner, WindowingStrategy};
use crate::time::Timestamp;
use crate::trigger::{TriggerContext, TriggerProgram, TriggerState};
use crate::window::{MergeGroup, Window, WindowFn};

/// One pane (or one retraction of an earlier pane) of a key and window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaneOutput<K, O> {
    /// The grouping key.
    pub key: K,
    /// The window.
    pub window: Window,
    /// The pane's event timestamp (chosen by the timestamp combiner).
    pub timestamp: Timestamp,
    /// Position and timing of the pane.
    pub pane: PaneInfo,
    /// The pane contents (buffered values or the combined result).
    pub value: O,
    /// In [`AccumulationMode::AccumulatingAndRetracting`] a record with
    /// `retraction == true` withdraws an earlier pane: it repeats that pane's
    /// window, timestamp, pane info and value exactly, so a consumer can
    /// subtract it. A retraction of a window's previous pane is emitted
    /// immediately before the window's next pane; when windows merge, the
    /// last pane of every window merged away is retracted. In the other
    /// modes this is always `false`.
    pub retraction: bool,
}

/// Why an element was dropped.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The window's garbage-collection time is behind the input watermark.
    ExpiredWindow,
    /// The window's trigger has finished.
    ClosedWindow,
}

/// An element the grouping did not accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedElement<K, V> {
    /// Its key.
    pub key: K,
    /// Its value.
    pub value: V,
    /// Its timestamp.
    pub timestamp: Timestamp,
    /// The window it was assigned to.
    pub window: Window,
    /// Why it was dropped.
    pub reason: DropReason,
}

/// What a grouping emits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupOutput<K, V, O> {
    /// A pane or a retraction.
    Pane(PaneOutput<K, O>),
    /// A dropped element (only with [`WindowingStrategy::late_data_output`]).
    Dropped(DroppedElement<K, V>),
}

/// Counters of one grouping operation.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GroupCounters {
    /// Elements received: one per element given to `process_bundle`, one per
    /// (element, window) given to `process_windowed_bundle`.
    pub elements_in: u64,
    /// (element, window) pairs dropped because the window had expired.
    pub dropped_expired: u64,
    /// (element, window) pairs dropped because the window's trigger had finished.
    pub dropped_closed: u64,
    /// Panes emitted (not counting retractions).
    pub panes_out: u64,
    /// Retractions emitted.
    pub retractions_out: u64,
}

/// The complete state of one (key, window) of a grouping, as a snapshot
/// holds it.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WindowSnapshot<K, Acc, Out> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: Window,
    /// Buffered values or combiner accumulator.
    pub acc: Option<Acc>,
    /// Elements arrived since the last pane.
    pub non_empty: bool,
    /// The trigger finished: only a marker remains.
    pub closed: bool,
    /// The trigger's per-node state.
    pub trigger: Vec<crate::trigger::NodeState>,
    /// Element watermark hold.
    pub element_hold: Option<Timestamp>,
    /// Garbage-collection hold.
    pub extra_hold: Option<Timestamp>,
    /// The previous pane.
    pub prev_pane: Option<PaneInfo>,
    /// The last pane emitted (retracting mode).
    pub last: Option<(Out, Timestamp, PaneInfo)>,
    /// The end-of-window or GC timer set.
    pub timer: Option<Timestamp>,
    /// Processing-time timers set.
    pub pt_timers: Vec<Timestamp>,
}

/// A consistent snapshot of a grouping: the state of every (key, window),
/// its timers and holds, watermarks, processing time and counters. Taken
/// between calls; restoring it gives an instance that continues exactly as
/// the original would.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GroupSnapshot<K, Acc, Out> {
    /// Every (key, window) state, ordered by key then window.
    pub windows: Vec<WindowSnapshot<K, Acc, Out>>,
    /// The input watermark.
    pub input_watermark: Timestamp,
    /// The output watermark.
    pub output_watermark: Timestamp,
    /// The stage's output watermark as last told.
    pub stage_output_watermark: Timestamp,
    /// Processing time.
    pub processing_time: Timestamp,
    /// Counters.
    pub counters: GroupCounters,
}

/// What the grouping holds for one window, for introspection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WindowStatus {
    /// Nothing is stored.
    Absent,
    /// The window is open and holds state.
    Present,
    /// Only a "trigger finished" marker remains, so late elements are dropped
    /// until the window is garbage collected.
    Tombstone,
}

struct WinState<Acc, Out> {
    window: Window,
    acc: Option<Acc>,
    non_empty: bool,
    closed: bool,
    trig: TriggerState,
    element_hold: Option<Timestamp>,
    extra_hold: Option<Timestamp>,
    prev_pane: Option<PaneInfo>,
    last: Option<(Out, Timestamp, PaneInfo)>,
    /// The end-of-window or GC event timer currently set.
    timer: Option<Timestamp>,
    pt_timers: SmallVec<[Timestamp; 1]>,
}

impl<Acc, Out> WinState<Acc, Out> {
    fn new(window: Window, trig: TriggerState) -> Self {
        WinState {
            window,
            acc: None,
            non_empty: false,
            closed: false,
            trig,
            element_hold: None,
            extra_hold: None,
            prev_pane: None,
            last: None,
            timer: None,
            pt_timers: SmallVec::new(),
        }
    }
}

struct Config<A> {
    strategy: WindowingStrategy,
    program: TriggerProgram,
    merging: bool,
    agg: A,
}

struct Core<K> {
    event_timers: BTreeSet<(Timestamp, K, Window)>,
    pt_timers: BTreeSet<(Timestamp, K, Window)>,
    holds: BTreeMap<Timestamp, u32>,
    input_wm: Timestamp,
    output_wm: Timestamp,
    /// The output watermark of the whole stage when this instance is one of
    /// several (MAX when it is the only one).
    stage_output_wm: Timestamp,
    processing_time: Timestamp,
    counters: GroupCounters,
    scratch_pt: Vec<Timestamp>,
}

/// The grouping operation for all keys of one stage: windows, triggers,
/// accumulation, lateness, holds and panes.
///
/// ```
/// use weir_model::*;
/// let strategy = WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap());
/// let mut gbw = GroupAlsoByWindow::new(strategy, Buffer).unwrap();
/// let mut out = Vec::new();
/// let ts = Timestamp::from_millis;
/// gbw.process_bundle(&"k", [(1, ts(1)), (2, ts(2)), (12, ts(12))], &mut out);
/// assert!(out.is_empty()); // the default trigger waits for the watermark
/// gbw.advance_input_watermark(ts(10), &mut out);
/// let GroupOutput::Pane(p) = &out[0] else { panic!() };
/// assert_eq!((p.window, &p.value, p.pane.timing), (Window::interval(0, 10), &vec![1, 2], Timing::OnTime));
/// assert!(p.pane.is_last); // allowed lateness 0: the on-time pane is also the last
/// ```
pub struct GroupAlsoByWindow<K, V, A: Aggregator<V>> {
    cfg: Config<A>,
    core: Core<K>,
    keys: HashMap<K, KeyWindows<V, A>>,
    scratch_windows: Vec<Window>,
    scratch_elements: Vec<(V, Timestamp, Window)>,
}

type Out<K, V, A> = GroupOutput<K, V, <A as Aggregator<V>>::Out>;
/// The windows of one key.
type KeyWindows<V, A> = Vec<WinState<<A as Aggregator<V>>::Acc, <A as Aggregator<V>>::Out>>;

impl<K, V, A> GroupAlsoByWindow<K, V, A>
where
    K: Clone + Ord + Hash,
    V: Clone,
    A: Aggregator<V>,
{
    /// A grouping over `strategy`, validated first.
    pub fn new(strategy: WindowingStrategy, agg: A) -> Result<Self, ModelError> {
        strategy.validate()?;
        Ok(GroupAlsoByWindow {
            cfg: Config {
                program: TriggerProgram::compile(&strategy.trigger),
                merging: strategy.window_fn.is_merging(),
                strategy,
                agg,
            },
            core: Core {
                event_timers: BTreeSet::new(),
                pt_timers: BTreeSet::new(),
                holds: BTreeMap::new(),
                input_wm: Timestamp::MIN,
                output_wm: Timestamp::MIN,
                stage_output_wm: Timestamp::MAX,
                processing_time: Timestamp::MIN,
                counters: GroupCounters::default(),
                scratch_pt: Vec::new(),
            },
            keys: HashMap::default(),
            scratch_windows: Vec::new(),
            scratch_elements: Vec::new(),
        })
    }

    /// The strategy this grouping runs.
    pub fn strategy(&self) -> &WindowingStrategy {
        &self.cfg.strategy
    }

    /// Process one bundle of elements of `key`: assign windows with the
    /// strategy's window function, then as [`process_windowed_bundle`](Self::process_windowed_bundle).
    pub fn process_bundle<I>(&mut self, key: &K, elements: I, out: &mut Vec<Out<K, V, A>>)
    where
        I: IntoIterator<Item = (V, Timestamp)>,
    {
        let mut windowed = std::mem::take(&mut self.scratch_elements);
        for (value, ts) in elements {
            self.core.counters.elements_in += 1;
            self.scratch_windows.clear();
            self.cfg.strategy.window_fn.assign_windows(ts, &mut self.scratch_windows);
            if let Some((&last, rest)) = self.scratch_windows.split_last() {
                windowed.extend(rest.iter().map(|&w| (value.clone(), ts, w)));
                windowed.push((value, ts, last));
            }
        }
        self.process_windows(key, windowed.drain(..), out);
        self.scratch_elements = windowed;
    }

    /// Process one bundle of elements of `key` whose windows are already
    /// assigned (one window per element, as after `WindowInto` or an upstream
    /// grouping): drop expired ones, merge windows (merging window functions),
    /// add to state, then evaluate the trigger of every window the bundle
    /// touched (at most one pane per window per bundle).
    pub fn process_windowed_bundle<I>(&mut self, key: &K, elements: I, out: &mut Vec<Out<K, V, A>>)
    where
        I: IntoIterator<Item = (V, Timestamp, Window)>,
    {
        let mut n = 0u64;
        let mut items = std::mem::take(&mut self.scratch_elements);
        items.extend(elements.into_iter().inspect(|_| n += 1));
        self.core.counters.elements_in += n;
        self.process_windows(key, items.drain(..), out);
        self.scratch_elements = items;
    }

    fn process_windows(
        &mut self,
        key: &K,
        elements: impl Iterator<Item = (V, Timestamp, Window)>,
        out: &mut Vec<Out<K, V, A>>,
    ) {
        let lateness = self.cfg.strategy.allowed_lateness;
        let input_wm = self.core.input_wm;
        let mut touched: SmallVec<[Window; 4]> = SmallVec::new();
        if !self.keys.contains_key(key) {
            self.keys.insert(key.clone(), Vec::new());
        }
        let ks = self.keys.get_mut(key).expect("just ensured");

        if !self.cfg.merging {
            for (v, ts, w) in elements {
                if w.gc_time(lateness) < input_wm {
                    self.core.drop_element(&self.cfg, key, v, ts, w, DropReason::ExpiredWindow, out);
                    continue;
                }
                if add_element(&mut self.core, &self.cfg, key, ks, v, ts, w, out) && !touched.contains(&w) {
                    touched.push(w);
                }
            }
        } else {
            // Merging window functions: take the whole bundle, merge once, then add.
            let mut pending: Vec<(V, Timestamp, Window)> = Vec::new();
            for (v, ts, w) in elements {
                if w.gc_time(lateness) < input_wm {
                    self.core.drop_element(&self.cfg, key, v, ts, w, DropReason::ExpiredWindow, out);
                } else {
                    pending.push((v, ts, w));
                }
            }
            let mapping = merge_windows(&mut self.core, &self.cfg, key, ks, &pending, out);
            for (v, ts, w) in pending {
                let w = mapping.iter().find(|(from, _)| *from == w).map_or(w, |(_, to)| *to);
                if add_element(&mut self.core, &self.cfg, key, ks, v, ts, w, out) && !touched.contains(&w) {
                    touched.push(w);
                }
            }
        }

        for w in touched {
            if let Some(ws) = ks.iter_mut().find(|ws| ws.window == w) {
                if !ws.closed && self.cfg.program.should_fire(&ws.trig, &self.core.trigger_cx(&self.cfg, w)) {
                    self.core.emit(&self.cfg, key, ws, out);
                }
            }
        }
        if ks.is_empty() {
            self.keys.remove(key);
        }
        self.core.update_output_watermark();
    }

    /// Advance the input watermark to `watermark` (a watermark never goes
    /// back: an earlier value is ignored) and fire every event-time timer that
    /// is now behind it, in timestamp order: end-of-window firings,
    /// then garbage collection of expired windows.
    pub fn advance_input_watermark(&mut self, watermark: Timestamp, out: &mut Vec<Out<K, V, A>>) {
        if watermark <= self.core.input_wm {
            return;
        }
        self.core.input_wm = watermark;
        while let Some(first) = self.core.event_timers.first() {
            if first.0 >= watermark {
                break;
            }
            let (t, key, w) = self.core.event_timers.pop_first().expect("non-empty");
            self.fire_event_timer(t, key, w, out);
        }
        self.core.update_output_watermark();
    }

    fn fire_event_timer(&mut self, t: Timestamp, key: K, w: Window, out: &mut Vec<Out<K, V, A>>) {
        let Some(ks) = self.keys.get_mut(&key) else { return };
        let Some(i) = ks.iter().position(|ws| ws.window == w) else { return };
        let ws = &mut ks[i];
        if ws.timer == Some(t) {
            ws.timer = None;
        }
        let gc = w.gc_time(self.cfg.strategy.allowed_lateness);
        if t >= gc {
            if !ws.closed {
                self.core.on_trigger(&self.cfg, &key, ws, true, true, out);
            }
            let ws = ks.swap_remove(i);
            self.core.forget_window(&key, ws);
            if ks.is_empty() {
                self.keys.remove(&key);
            }
        } else {
            if !ws.closed && self.cfg.program.should_fire(&ws.trig, &self.core.trigger_cx(&self.cfg, w)) {
                self.core.emit(&self.cfg, &key, ws, out);
            }
            if t == w.max_timestamp() {
                self.core.set_window_timer(&key, ws, gc);
            }
        }
    }

    /// Advance processing time to `now` and fire processing-time timers whose
    /// target is strictly before it.
    pub fn advance_processing_time(&mut self, now: Timestamp, out: &mut Vec<Out<K, V, A>>) {
        if now <= self.core.processing_time {
            return;
        }
        self.core.processing_time = now;
        while let Some(first) = self.core.pt_timers.first() {
            if first.0 >= now {
                break;
            }
            let (t, key, w) = self.core.pt_timers.pop_first().expect("non-empty");
            let Some(ks) = self.keys.get_mut(&key) else { continue };
            let Some(ws) = ks.iter_mut().find(|ws| ws.window == w) else { continue };
            ws.pt_timers.retain(|x| *x != t);
            let expired = w.gc_time(self.cfg.strategy.allowed_lateness) < self.core.input_wm;
            if !ws.closed && !expired && self.cfg.program.should_fire(&ws.trig, &self.core.trigger_cx(&self.cfg, w)) {
                self.core.emit(&self.cfg, &key, ws, out);
            }
        }
        self.core.update_output_watermark();
    }

    /// The earliest watermark hold or pending event-time timer of this
    /// instance (`Timestamp::MAX` if none): what it holds the output
    /// watermark at, before the input watermark is taken into account.
    pub fn min_hold(&self) -> Timestamp {
        let hold = self.core.holds.first_key_value().map_or(Timestamp::MAX, |(t, _)| *t);
        let timer = self.core.event_timers.first().map_or(Timestamp::MAX, |(t, _, _)| *t);
        hold.min(timer)
    }
    /// The earliest pending processing-time timer.
    pub fn next_processing_timer(&self) -> Option<Timestamp> {
        self.core.pt_timers.first().map(|t| t.0)
    }
    /// When this grouping is one of several instances of a stage (one per
    /// worker), tell it the stage's output watermark: the minimum over all
    /// instances. Holds and pane timing (`SEMANTICS.md` §4.1, §8) use the
    /// stage's output watermark, which is never above this instance's own.
    pub fn set_stage_output_watermark(&mut self, t: Timestamp) {
        self.core.stage_output_wm = t;
    }
    /// The input watermark.
    pub fn input_watermark(&self) -> Timestamp {
        self.core.input_wm
    }
    /// The output watermark: min of the input watermark, every watermark hold
    /// and every pending event-time timer; never decreasing.
    pub fn output_watermark(&self) -> Timestamp {
        self.core.output_wm
    }
    /// The current processing time.
    pub fn processing_time(&self) -> Timestamp {
        self.core.processing_time
    }
    /// The counters.
    pub fn counters(&self) -> GroupCounters {
        self.core.counters
    }
    /// What is stored for `window` of `key`.
    pub fn window_status(&self, key: &K, window: &Window) -> WindowStatus {
        match self.keys.get(key).and_then(|ks| ks.iter().find(|ws| ws.window == *window)) {
            None => WindowStatus::Absent,
            Some(ws) if ws.closed => WindowStatus::Tombstone,
            Some(_) => WindowStatus::Present,
        }
    }
    /// A consistent snapshot of all state (see [`GroupSnapshot`]).
    pub fn snapshot(&self) -> GroupSnapshot<K, A::Acc, A::Out>
    where
        A::Acc: Clone,
    {
        let mut windows: Vec<WindowSnapshot<K, A::Acc, A::Out>> = self
            .keys
            .iter()
            .flat_map(|(k, ws)| {
                ws.iter().map(move |w| WindowSnapshot {
                    key: k.clone(),
                    window: w.window,
                    acc: w.acc.clone(),
                    non_empty: w.non_empty,
                    closed: w.closed,
                    trigger: w.trig.nodes().to_vec(),
                    element_hold: w.element_hold,
                    extra_hold: w.extra_hold,
                    prev_pane: w.prev_pane,
                    last: w.last.clone(),
                    timer: w.timer,
                    pt_timers: w.pt_timers.to_vec(),
                })
            })
            .collect();
        windows.sort_by(|a, b| (&a.key, a.window).cmp(&(&b.key, b.window)));
        GroupSnapshot {
            windows,
            input_watermark: self.core.input_wm,
            output_watermark: self.core.output_wm,
            stage_output_watermark: self.core.stage_output_wm,
            processing_time: self.core.processing_time,
            counters: self.core.counters,
        }
    }

    /// A grouping restored from a snapshot taken with the same strategy.
    /// Timers and holds are rebuilt from the window states.
    pub fn restore(
        strategy: WindowingStrategy,
        agg: A,
        snapshot: GroupSnapshot<K, A::Acc, A::Out>,
    ) -> Result<Self, ModelError> {
        let mut g = GroupAlsoByWindow::new(strategy, agg)?;
        let nodes = g.cfg.program.len();
        for w in snapshot.windows {
            if !w.closed && w.trigger.len() != nodes {
                return Err(ModelError::InvalidTrigger {
                    trigger: g.cfg.strategy.trigger.to_string(),
                    reason: format!(
                        "the snapshot's trigger state has {} nodes, this trigger {}: not the strategy it was taken with",
                        w.trigger.len(),
                        nodes
                    ),
                });
            }
            let core = &mut g.core;
            for h in [w.element_hold, w.extra_hold].into_iter().flatten() {
                core.hold_add(h);
            }
            if let Some(t) = w.timer {
                core.event_timers.insert((t, w.key.clone(), w.window));
            }
            for &t in &w.pt_timers {
                core.pt_timers.insert((t, w.key.clone(), w.window));
            }
            let state = WinState {
                window: w.window,
                acc: w.acc,
                non_empty: w.non_empty,
                closed: w.closed,
                trig: TriggerState::from_nodes(&w.trigger),
                element_hold: w.element_hold,
                extra_hold: w.extra_hold,
                prev_pane: w.prev_pane,
                last: w.last,
                timer: w.timer,
                pt_timers: w.pt_timers.into_iter().collect(),
            };
            g.keys.entry(w.key).or_default().push(state);
        }
        g.core.input_wm = snapshot.input_watermark;
        g.core.output_wm = snapshot.output_watermark;
        g.core.stage_output_wm = snapshot.stage_output_watermark;
        g.core.processing_time = snapshot.processing_time;
        g.core.counters = snapshot.counters;
        Ok(g)
    }

    /// Number of (key, window) states held, tombstones included.
    pub fn live_windows(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }
    /// Number of keys with state.
    pub fn live_keys(&self) -> usize {
        self.keys.len()
    }
    /// Number of pending event-time and processing-time timers.
    pub fn pending_timers(&self) -> usize {
        self.core.event_timers.len() + self.core.pt_timers.len()
    }
    /// Number of watermark holds held.
    pub fn holds(&self) -> usize {
        self.core.holds.values().map(|&n| n as usize).sum()
    }
}

/// Merge the key's active windows with the new windows of a bundle;
/// returns the mapping from each merged window to its result.
fn merge_windows<K, V, A>(
    core: &mut Core<K>,
    cfg: &Config<A>,
    key: &K,
    ks: &mut KeyWindows<V, A>,
    pending: &[(V, Timestamp, Window)],
    out: &mut Vec<Out<K, V, A>>,
) -> Vec<(Window, Window)>
where
    K: Clone + Ord + Hash,
    V: Clone,
    A: Aggregator<V>,
{
    let mut candidates: Vec<Window> = ks.iter().filter(|ws| !ws.closed).map(|ws| ws.window).collect();
    for (_, _, w) in pending {
        if !ks.iter().any(|ws| ws.window == *w) {
            candidates.push(*w);
        }
    }
    candidates.sort();
    candidates.dedup();
    let mut groups: Vec<MergeGroup> = Vec::new();
    cfg.strategy.window_fn.merge_windows(&candidates, &mut groups);
    let mut mapping = Vec::new();
    for g in groups {
        let existing: SmallVec<[Window; 4]> =
            g.sources.iter().copied().filter(|w| ks.iter().any(|ws| ws.window == *w && !ws.closed)).collect();
        // A new proto-window swallowed by an existing window, or new
        // windows merging only among themselves, carry no state: no merge.
        let real_merge = !(existing.is_empty() || (existing.len() == 1 && existing[0] == g.result));
        if real_merge {
            core.merge_states(cfg, key, ks, &existing, g.result, out);
        }
        for s in g.sources {
            if s != g.result {
                mapping.push((s, g.result));
            }
        }
    }
    mapping
}

#[allow(clippy::too_many_arguments)]
fn add_element<K, V, A>(
    core: &mut Core<K>,
    cfg: &Config<A>,
    key: &K,
    ks: &mut KeyWindows<V, A>,
    value: V,
    ts: Timestamp,
    w: Window,
    out: &mut Vec<Out<K, V, A>>,
) -> bool
where
    K: Clone + Ord + Hash,
    V: Clone,
    A: Aggregator<V>,
{
    let i = match ks.iter().position(|ws| ws.window == w) {
        Some(i) if ks[i].closed => {
            core.drop_element(cfg, key, value, ts, w, DropReason::ClosedWindow, out);
            return false;
        }
        Some(i) => i,
        None => {
            ks.push(WinState::new(w, cfg.program.new_state()));
            ks.len() - 1
        }
    };
    let ws = &mut ks[i];
    ws.non_empty = true;
    let max = w.max_timestamp();
    let timer = if max < core.input_wm { w.gc_time(cfg.strategy.allowed_lateness) } else { max };
    core.set_window_timer(key, ws, timer);
    core.add_holds(cfg, ws, ts);
    match &mut ws.acc {
        Some(acc) => cfg.agg.add(acc, value),
        None => {
            let mut acc = cfg.agg.create();
            cfg.agg.add(&mut acc, value);
            ws.acc = Some(acc);
        }
    }
    if !cfg.program.is_default() {
        let cx = core.trigger_cx(cfg, w);
        let mut pt = std::mem::take(&mut core.scratch_pt);
        cfg.program.on_element(&mut ws.trig, &cx, &mut pt);
        core.register_pt_timers(key, ws, &mut pt);
        core.scratch_pt = pt;
    }
    true
}

impl<K: Clone + Ord + Hash> Core<K> {
    fn trigger_cx<A>(&self, cfg: &Config<A>, window: Window) -> TriggerContext {
        TriggerContext {
            window,
            input_watermark: self.input_wm,
            processing_time: self.processing_time,
            merging: cfg.merging,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn drop_element<V, A: Aggregator<V>>(
        &mut self,
        cfg: &Config<A>,
        key: &K,
        value: V,
        timestamp: Timestamp,
        window: Window,
        reason: DropReason,
        out: &mut Vec<Out<K, V, A>>,
    ) {
        match reason {
            DropReason::ExpiredWindow => self.counters.dropped_expired += 1,
            DropReason::ClosedWindow => self.counters.dropped_closed += 1,
        }
        if cfg.strategy.late_data_output {
            out.push(GroupOutput::Dropped(DroppedElement { key: key.clone(), value, timestamp, window, reason }));
        }
    }

    fn set_window_timer<Acc, O>(&mut self, key: &K, ws: &mut WinState<Acc, O>, t: Timestamp) {
        if ws.timer == Some(t) {
            return;
        }
        if let Some(old) = ws.timer.take() {
            self.event_timers.remove(&(old, key.clone(), ws.window));
        }
        self.event_timers.insert((t, key.clone(), ws.window));
        ws.timer = Some(t);
    }

    fn register_pt_timers<Acc, O>(&mut self, key: &K, ws: &mut WinState<Acc, O>, pt: &mut Vec<Timestamp>) {
        for t in pt.drain(..) {
            if !ws.pt_timers.contains(&t) {
                ws.pt_timers.push(t);
                self.pt_timers.insert((t, key.clone(), ws.window));
            }
        }
    }

    fn hold_add(&mut self, t: Timestamp) {
        *self.holds.entry(t).or_insert(0) += 1;
    }

    fn hold_remove(&mut self, t: Timestamp) {
        match self.holds.get_mut(&t) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.holds.remove(&t);
            }
            None => unreachable!("released a watermark hold at {t} that was never placed"),
        }
    }

    /// Replace a hold cell's value, keeping the hold index in step.
    fn replace_hold(&mut self, cell: &mut Option<Timestamp>, h: Option<Timestamp>) {
        if *cell == h {
            return;
        }
        if let Some(old) = cell.take() {
            self.hold_remove(old);
        }
        if let Some(new) = h {
            self.hold_add(new);
        }
        *cell = h;
    }

    fn set_element_hold<Acc, O>(&mut self, ws: &mut WinState<Acc, O>, h: Option<Timestamp>) {
        self.replace_hold(&mut ws.element_hold, h)
    }

    fn set_extra_hold<Acc, O>(&mut self, ws: &mut WinState<Acc, O>, h: Option<Timestamp>) {
        self.replace_hold(&mut ws.extra_hold, h)
    }

    /// Java `WatermarkHold.addHolds`: an element hold if the element is on
    /// time, else a garbage-collection hold if the window is not expired.
    fn add_holds<V, A: Aggregator<V>>(&mut self, cfg: &Config<A>, ws: &mut WinState<A::Acc, A::Out>, ts: Timestamp) {
        let w = ws.window;
        let combiner = cfg.strategy.timestamp_combiner;
        let h = combiner.assign(&cfg.strategy.window_fn, &w, ts);
        let too_late = h < self.effective_output_wm() || w.max_timestamp() < self.input_wm;
        if !too_late {
            let new = ws.element_hold.map_or(h, |old| combiner.combine(old, h));
            self.set_element_hold(ws, Some(new));
        } else {
            let gc = w.gc_time(cfg.strategy.allowed_lateness);
            if gc >= self.input_wm {
                let new = ws.extra_hold.map_or(gc, |old| old.min(gc));
                self.set_extra_hold(ws, Some(new));
            }
        }
    }

    /// The output watermark that holds and pane timing see.
    fn effective_output_wm(&self) -> Timestamp {
        self.output_wm.min(self.stage_output_wm)
    }

    fn update_output_watermark(&mut self) {
        let mut candidate = self.input_wm;
        if let Some((&h, _)) = self.holds.first_key_value() {
            candidate = candidate.min(h);
        }
        if let Some((t, _, _)) = self.event_timers.first() {
            candidate = candidate.min(*t);
        }
        self.output_wm = self.output_wm.max(candidate);
    }

    /// Java `ReduceFnRunner.emit`.
    fn emit<V, A: Aggregator<V>>(
        &mut self,
        cfg: &Config<A>,
        key: &K,
        ws: &mut WinState<A::Acc, A::Out>,
        out: &mut Vec<Out<K, V, A>>,
    ) {
        cfg.program.on_fire(&mut ws.trig, &self.trigger_cx(cfg, ws.window));
        let finished = ws.trig.is_finished();
        let discard = finished || cfg.strategy.mode == AccumulationMode::Discarding;
        self.on_trigger(cfg, key, ws, finished, discard, out);
        ws.non_empty = false;
        if discard {
            ws.acc = None;
        }
        if finished {
            // The window is closed until garbage collection: keep only the marker.
            ws.closed = true;
            ws.trig = TriggerState::default();
            ws.prev_pane = None;
            ws.last = None;
            self.set_element_hold(ws, None);
            self.set_extra_hold(ws, None);
            for t in ws.pt_timers.drain(..) {
                self.pt_timers.remove(&(t, key.clone(), ws.window));
            }
        }
    }

    /// Java `ReduceFnRunner.onTrigger`: release holds, describe and emit the
    /// pane if it must be emitted.
    fn on_trigger<V, A: Aggregator<V>>(
        &mut self,
        cfg: &Config<A>,
        key: &K,
        ws: &mut WinState<A::Acc, A::Out>,
        finished: bool,
        take_contents: bool,
        out: &mut Vec<Out<K, V, A>>,
    ) {
        let s = &cfg.strategy;
        let w = ws.window;
        let max = w.max_timestamp();
        // Holds beyond the window (GC holds) are clipped to its max timestamp.
        // The one exception is an EARLIEST_TRANSFORMED element hold: only
        // Python implements that combiner, and it stamps the transformed time
        // even past the window (transcript `..._custom_timestamping_earliest`,
        // 2nd document: 101 for window [0, 9]).
        let element = match s.timestamp_combiner {
            TimestampCombiner::EarliestTransformed => ws.element_hold,
            _ => ws.element_hold.map(|h| h.min(max)),
        };
        let extra = ws.extra_hold.map(|h| h.min(max));
        let timestamp = match (element, extra) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(max),
        };
        self.set_element_hold(ws, None);
        self.set_extra_hold(ws, None);
        let gc = w.gc_time(s.allowed_lateness);
        if !finished && s.closing == ClosingBehavior::FireAlways && gc >= self.input_wm {
            self.set_extra_hold(ws, Some(gc));
        }
        let is_empty = !ws.non_empty;
        if is_empty && s.closing == ClosingBehavior::FireIfNonEmpty && s.on_time == OnTimeBehavior::FireIfNonEmpty {
            return;
        }
        let pane = self.describe_pane(ws.prev_pane, max, finished);
        let need = !is_empty
            || (pane.timing == Timing::OnTime && s.on_time == OnTimeBehavior::FireAlways)
            || (finished && s.closing == ClosingBehavior::FireAlways);
        if !need {
            return;
        }
        let value = if take_contents {
            cfg.agg.extract_owned(ws.acc.take().unwrap_or_else(|| cfg.agg.create()))
        } else {
            match &ws.acc {
                Some(acc) => cfg.agg.extract(acc),
                None => cfg.agg.extract_owned(cfg.agg.create()),
            }
        };
        if s.mode == AccumulationMode::AccumulatingAndRetracting {
            if let Some((old, old_ts, old_pane)) = ws.last.take() {
                self.counters.retractions_out += 1;
                out.push(GroupOutput::Pane(PaneOutput {
                    key: key.clone(),
                    window: w,
                    timestamp: old_ts,
                    pane: old_pane,
                    value: old,
                    retraction: true,
                }));
            }
            if !finished {
                ws.last = Some((value.clone(), timestamp, pane));
            }
        }
        if !finished {
            ws.prev_pane = Some(pane);
        }
        self.counters.panes_out += 1;
        out.push(GroupOutput::Pane(PaneOutput {
            key: key.clone(),
            window: w,
            timestamp,
            pane,
            value,
            retraction: false,
        }));
    }

    /// Java `PaneInfoTracker.describePane`.
    fn describe_pane(&self, prev: Option<PaneInfo>, max: Timestamp, is_last: bool) -> PaneInfo {
        let is_first = prev.is_none();
        let index = prev.map_or(0, |p| p.index + 1);
        let mut nsi = prev.map_or(0, |p| p.nonspeculative_index + 1);
        let late_for_output = max < self.effective_output_wm();
        let only_early_so_far = prev.is_none_or(|p| p.timing == Timing::Early);
        let early_for_input = self.input_wm <= max;
        let timing = if late_for_output || !only_early_so_far {
            Timing::Late
        } else if early_for_input {
            nsi = -1;
            Timing::Early
        } else {
            Timing::OnTime
        };
        PaneInfo { is_first, is_last, timing, index, nonspeculative_index: nsi }
    }

    /// Merge the states of the `sources` windows of a key into `result`
    /// (Java `ReduceFnRunner.OnMergeCallback.onMerge`).
    fn merge_states<V, A: Aggregator<V>>(
        &mut self,
        cfg: &Config<A>,
        key: &K,
        ks: &mut KeyWindows<V, A>,
        sources: &[Window],
        result: Window,
        out: &mut Vec<Out<K, V, A>>,
    ) {
        // A tombstone that happens to equal the result is superseded.
        if let Some(i) = ks.iter().position(|ws| ws.window == result && ws.closed) {
            let ws = ks.swap_remove(i);
            self.forget_window(key, ws);
        }
        let mut srcs: SmallVec<[WinState<A::Acc, A::Out>; 4]> = SmallVec::new();
        for w in sources {
            let i = ks.iter().position(|ws| ws.window == *w).expect("merge source is active");
            srcs.push(ks.swap_remove(i));
        }
        let cx = self.trigger_cx(cfg, result);
        let mut pt = std::mem::take(&mut self.scratch_pt);
        let trig = cfg.program.on_merge(&srcs.iter().map(|s| &s.trig).collect::<SmallVec<[_; 4]>>(), &cx, &mut pt);
        let mut merged = WinState::new(result, trig);
        self.register_pt_timers(key, &mut merged, &mut pt);
        self.scratch_pt = pt;

        let combiner = cfg.strategy.timestamp_combiner;
        let mut element_hold: Option<Timestamp> = None;
        for mut src in srcs {
            if let Some(last) = src.last.take() {
                self.counters.retractions_out += 1;
                out.push(GroupOutput::Pane(PaneOutput {
                    key: key.clone(),
                    window: src.window,
                    timestamp: last.1,
                    pane: last.2,
                    value: last.0,
                    retraction: true,
                }));
            }
            if let Some(h) = src.element_hold {
                element_hold = Some(match (combiner, element_hold) {
                    (TimestampCombiner::EndOfWindow, _) => result.max_timestamp(),
                    (_, None) => h,
                    (c, Some(prev)) => c.combine(prev, h),
                });
            }
            merged.non_empty |= src.non_empty;
            if let Some(acc) = src.acc.take() {
                match &mut merged.acc {
                    Some(m) => cfg.agg.merge(m, acc),
                    None => merged.acc = Some(acc),
                }
            }
            self.forget_window(key, src);
        }
        self.set_element_hold(&mut merged, element_hold);
        let gc = result.gc_time(cfg.strategy.allowed_lateness);
        if gc >= self.input_wm {
            self.set_extra_hold(&mut merged, Some(gc));
        }
        let max = result.max_timestamp();
        let timer = if max < self.input_wm { gc } else { max };
        self.set_window_timer(key, &mut merged, timer);
        ks.push(merged);
    }

    /// Drop every trace of a window: holds and timers.
    fn forget_window<Acc, O>(&mut self, key: &K, mut ws: WinState<Acc, O>) {
        self.set_element_hold(&mut ws, None);
        self.set_extra_hold(&mut ws, None);
        if let Some(t) = ws.timer.take() {
            self.event_timers.remove(&(t, key.clone(), ws.window));
        }
        for t in ws.pt_timers.drain(..) {
            self.pt_timers.remove(&(t, key.clone(), ws.window));
        }
    }
}
