//! The grouping state machine: Beam's `ReduceFnRunner` for every key of one
//! grouping operation (`SEMANTICS.md` §4, §6–8).
//!
//! [`GroupAlsoByWindow`] receives bundles of `(value, timestamp)` for a key,
//! watermark advances and processing-time advances — all passed in, never
//! read from a clock — and emits panes ([`GroupOutput::Pane`]) and, when the
//! strategy asks for it, dropped elements ([`GroupOutput::Dropped`]).

use std::hash::Hash;

use smallvec::SmallVec;

use crate::aggregate::Aggregator;
use crate::error::ModelError;
use crate::pane::PaneInfo;
use crate::strategy::WindowingStrategy;
use crate::time::Timestamp;
use crate::timers::TimerQueues;
use crate::trigger::{TimerDomain, TriggerProgram};
use crate::window::{Window, WindowFn};

mod core;
mod merge;
mod store;

use self::core::{Config, Core, WinState};
pub use self::store::{KeyState, KeyStore, MemoryKeys};

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
    /// The trigger finished: only its finished bits remain.
    pub closed: bool,
    /// The trigger's per-node state (for a closed window: its finished bits).
    pub trigger: Vec<crate::trigger::NodeState>,
    /// Element watermark hold.
    pub element_hold: Option<Timestamp>,
    /// Garbage-collection hold.
    pub extra_hold: Option<Timestamp>,
    /// The previous pane.
    pub prev_pane: Option<PaneInfo>,
    /// The last pane emitted (retracting mode).
    pub last: Option<(Out, Timestamp, PaneInfo)>,
    /// Pending event-time timers (the GC timer and the trigger's).
    pub event_timers: Vec<Timestamp>,
    /// Pending processing-time timers.
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
pub struct GroupAlsoByWindow<K, V, A: Aggregator<V>, S = MemoryKeys<K, KeyStateOf<V, A>>> {
    cfg: Config<A>,
    core: Core<K>,
    keys: S,
    scratch_windows: Vec<Window>,
    scratch_elements: Vec<(V, Timestamp, Window)>,
}

type Out<K, V, A> = GroupOutput<K, V, <A as Aggregator<V>>::Out>;
/// The windows of one key, as a grouping with aggregator `A` keeps them.
pub type KeyStateOf<V, A> = KeyState<<A as Aggregator<V>>::Acc, <A as Aggregator<V>>::Out>;
/// The windows of one key.
type KeyWindows<V, A> = Vec<WinState<<A as Aggregator<V>>::Acc, <A as Aggregator<V>>::Out>>;

impl<K, V, A> GroupAlsoByWindow<K, V, A>
where
    K: Clone + Ord + Hash,
    V: Clone,
    A: Aggregator<V>,
{
    /// A grouping over `strategy`, validated first, keeping its keys in memory.
    pub fn new(strategy: WindowingStrategy, agg: A) -> Result<Self, ModelError> {
        Self::with_store(strategy, agg, MemoryKeys::default())
    }

    /// A grouping restored from a snapshot taken with the same strategy,
    /// keeping its keys in memory.
    pub fn restore(
        strategy: WindowingStrategy,
        agg: A,
        snapshot: GroupSnapshot<K, A::Acc, A::Out>,
    ) -> Result<Self, ModelError> {
        Self::restore_with(strategy, agg, MemoryKeys::default(), snapshot)
    }
}

impl<K, V, A, S> GroupAlsoByWindow<K, V, A, S>
where
    K: Clone + Ord + Hash,
    V: Clone,
    A: Aggregator<V>,
    S: KeyStore<K, KeyStateOf<V, A>>,
{
    /// A grouping over `strategy`, validated first, keeping each key's
    /// state in `store` (empty).
    pub fn with_store(strategy: WindowingStrategy, agg: A, store: S) -> Result<Self, ModelError> {
        strategy.validate()?;
        Ok(GroupAlsoByWindow {
            cfg: Config {
                program: TriggerProgram::compile(&strategy.trigger),
                merging: strategy.window_fn.is_merging(),
                strategy,
                agg,
            },
            core: Core::new(),
            keys: store,
            scratch_windows: Vec::new(),
            scratch_elements: Vec::new(),
        })
    }

    /// The store of the keys' states.
    pub fn store(&self) -> &S {
        &self.keys
    }

    /// The store of the keys' states (for its owner's housekeeping: the
    /// grouping holds no key's state between calls).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.keys
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
    /// touched that was open (at most one pane per window per bundle).
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

    /// Java `ReduceFnRunner.processElements`.
    fn process_windows(
        &mut self,
        key: &K,
        elements: impl Iterator<Item = (V, Timestamp, Window)>,
        out: &mut Vec<Out<K, V, A>>,
    ) {
        let lateness = self.cfg.strategy.allowed_lateness;
        let input_wm = self.core.input_wm;
        let mut touched: SmallVec<[Window; 4]> = SmallVec::new();
        let ks = &mut self.keys.get_or_default(key).0;

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
            let mapping = merge::merge_windows(&mut self.core, &self.cfg, key, ks, &pending, out);
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
    /// back: an earlier value is ignored) and fire every event-time timer
    /// now behind it. The output watermark is brought up to date first, with
    /// the due timers still holding it; then each window with due timers is
    /// activated once (Java `ReduceFnRunner.onTimers`), whatever timers it
    /// had: what happens follows from the window's state and the watermarks.
    pub fn advance_input_watermark(&mut self, watermark: Timestamp, out: &mut Vec<Out<K, V, A>>) {
        if watermark <= self.core.input_wm {
            return;
        }
        self.core.input_wm = watermark;
        self.core.update_output_watermark();
        // Activating a window changes nothing another activation of the
        // batch sees (the output watermark moves only after the batch), so
        // each window is activated as its first due timer comes up, and its
        // other due timers go with it.
        while let Some((key, w)) = self.take_due(TimerDomain::EventTime, watermark) {
            self.activate(key, w, out);
        }
        self.core.update_output_watermark();
    }

    /// As [`advance_input_watermark`](Self::advance_input_watermark), but
    /// activating at most `max_windows` windows; returns whether every due
    /// timer has fired. Call it again (with the same or a later watermark,
    /// and nothing else in between) until it does: the output watermark
    /// moves only then, so the panes are exactly those of one call. A
    /// runner uses it to let the panes of a huge activation (the end of a
    /// global window with millions of keys) flow out in parts.
    pub fn advance_input_watermark_partly(
        &mut self,
        watermark: Timestamp,
        max_windows: usize,
        out: &mut Vec<Out<K, V, A>>,
    ) -> bool {
        if watermark > self.core.input_wm {
            self.core.input_wm = watermark;
            self.core.update_output_watermark();
        }
        let due = self.core.input_wm;
        for _ in 0..max_windows {
            match self.take_due(TimerDomain::EventTime, due) {
                Some((key, w)) => self.activate(key, w, out),
                None => break,
            }
        }
        if self.core.timers.next_time(TimerDomain::EventTime).is_some_and(|t| t < due) {
            return false;
        }
        self.core.update_output_watermark();
        true
    }

    /// Whether event-time timers behind the input watermark wait to fire
    /// (an [`advance_input_watermark_partly`](Self::advance_input_watermark_partly)
    /// that has not finished).
    pub fn has_due_timers(&self) -> bool {
        self.core.timers.next_time(TimerDomain::EventTime).is_some_and(|t| t < self.core.input_wm)
    }

    /// Advance processing time to `now` and fire processing-time timers whose
    /// target is strictly before it (timers of expired windows are ignored).
    /// Each window with due timers is activated once.
    pub fn advance_processing_time(&mut self, now: Timestamp, out: &mut Vec<Out<K, V, A>>) {
        if now <= self.core.processing_time {
            return;
        }
        self.core.processing_time = now;
        let lateness = self.cfg.strategy.allowed_lateness;
        while let Some((key, w)) = self.take_due(TimerDomain::ProcessingTime, now) {
            // Java `windowIsExpired`: max timestamp + allowed lateness, unclamped.
            let expired = self.core.input_wm > w.max_timestamp() + lateness;
            if !expired {
                self.activate(key, w, out);
            }
        }
        self.core.update_output_watermark();
    }

    /// The window of the next timer of `domain` due before `time`, with
    /// every due timer of that window and domain removed (a window is
    /// activated once, however many of its timers are due).
    fn take_due(&mut self, domain: TimerDomain, time: Timestamp) -> Option<(K, Window)> {
        let (fired, (key, w)) = self.core.timers.pop_due(domain, time)?;
        /// Delete the window's other due timers (`fired` is out already).
        #[allow(clippy::too_many_arguments)]
        fn drain<K: Ord + Hash + Clone, const N: usize>(
            mine: &mut SmallVec<[Timestamp; N]>,
            timers: &mut TimerQueues<(K, Window)>,
            domain: TimerDomain,
            key: &K,
            w: Window,
            time: Timestamp,
            fired: Timestamp,
        ) {
            for t in mine.iter().filter(|t| **t < time && **t != fired) {
                timers.remove(domain, *t, (key.clone(), w));
            }
            mine.retain(|t| *t >= time);
        }
        if let Some(ws) = self.keys.get_mut(&key).and_then(|ks| ks.0.iter_mut().find(|ws| ws.window == w)) {
            let timers = &mut self.core.timers;
            match domain {
                TimerDomain::EventTime => drain(&mut ws.event_timers, timers, domain, &key, w, time, fired),
                TimerDomain::ProcessingTime => drain(&mut ws.pt_timers, timers, domain, &key, w, time, fired),
            }
        }
        Some((key, w))
    }

    /// Java `ReduceFnRunner.onTimers` for one window (its `WindowActivation`).
    fn activate(&mut self, key: K, w: Window, out: &mut Vec<Out<K, V, A>>) {
        let Some(KeyState(ks)) = self.keys.get_mut(&key) else { return };
        let Some(i) = ks.iter().position(|ws| ws.window == w) else { return };
        let max = w.max_timestamp();
        let gc = w.gc_time(self.cfg.strategy.allowed_lateness);
        let input_wm = self.core.input_wm;
        let is_end_of_window = input_wm > max && self.core.effective_output_wm() <= max;
        let is_gc = input_wm > gc;
        let ws = &mut ks[i];
        if is_gc {
            if !ws.closed {
                // The closing pane, whether or not the trigger is ready.
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
            if is_end_of_window {
                // Allowed lateness is > 0 here (else end of window = GC).
                self.core.set_timer(&key, ws, TimerDomain::EventTime, gc);
            }
        }
    }

    /// The earliest watermark hold or pending event-time timer of this
    /// instance (`Timestamp::MAX` if none): what it holds the output
    /// watermark at, before the input watermark is taken into account.
    pub fn min_hold(&self) -> Timestamp {
        let hold = self.core.holds.min().unwrap_or(Timestamp::MAX);
        let timer = self.core.timers.next_time(TimerDomain::EventTime).unwrap_or(Timestamp::MAX);
        hold.min(timer)
    }
    /// The earliest pending processing-time timer.
    pub fn next_processing_timer(&self) -> Option<Timestamp> {
        self.core.timers.next_time(TimerDomain::ProcessingTime)
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
    pub fn window_status(&mut self, key: &K, window: &Window) -> WindowStatus {
        match self.keys.get_mut(key).and_then(|ks| ks.0.iter().find(|ws| ws.window == *window)) {
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
        let mut windows: Vec<WindowSnapshot<K, A::Acc, A::Out>> = Vec::new();
        self.keys.for_each(&mut |k, ws| windows.extend(ws.0.iter().map(|w| w.snapshot(k.clone()))));
        windows.sort_by(|a, b| (&a.key, a.window).cmp(&(&b.key, b.window)));
        let mut snap = self.meta_snapshot();
        snap.windows = windows;
        snap
    }

    /// The snapshot of everything but the keys' states (`windows` empty):
    /// watermarks, processing time and counters. With
    /// [`restore_key`](Self::restore_key) for every key it gives a
    /// restored grouping.
    pub fn meta_snapshot(&self) -> GroupSnapshot<K, A::Acc, A::Out> {
        GroupSnapshot {
            windows: Vec::new(),
            input_watermark: self.core.input_wm,
            output_watermark: self.core.output_wm,
            stage_output_watermark: self.core.stage_output_wm,
            processing_time: self.core.processing_time,
            counters: self.core.counters,
        }
    }

    /// A grouping restored from a snapshot taken with the same strategy,
    /// keeping its keys in `store` (empty). Timers and holds are rebuilt
    /// from the window states.
    pub fn restore_with(
        strategy: WindowingStrategy,
        agg: A,
        store: S,
        snapshot: GroupSnapshot<K, A::Acc, A::Out>,
    ) -> Result<Self, ModelError> {
        let mut g = GroupAlsoByWindow::with_store(strategy, agg, store)?;
        g.core.input_wm = snapshot.input_watermark;
        g.core.output_wm = snapshot.output_watermark;
        g.core.stage_output_wm = snapshot.stage_output_watermark;
        g.core.processing_time = snapshot.processing_time;
        g.core.counters = snapshot.counters;
        let mut windows = snapshot.windows.into_iter().peekable();
        while let Some(first) = windows.next() {
            let key = first.key.clone();
            let mut state = KeyState(vec![g.window_of(first)?]);
            while let Some(w) = windows.next_if(|w| w.key == key) {
                state.0.push(g.window_of(w)?);
            }
            g.index_key(&key, &state);
            *g.keys.get_or_default(&key) = state;
        }
        Ok(g)
    }

    /// Add the state of `key` (not yet held), as a checkpoint stored it:
    /// its timers and holds are indexed again.
    pub fn restore_key(&mut self, key: &K, state: KeyStateOf<V, A>) -> Result<(), ModelError> {
        for w in &state.0 {
            self.check_trigger_nodes(w.trig.nodes().len())?;
        }
        self.index_key(key, &state);
        *self.keys.get_or_default(key) = state;
        Ok(())
    }

    fn check_trigger_nodes(&self, n: usize) -> Result<(), ModelError> {
        let nodes = self.cfg.program.len();
        if n != nodes {
            return Err(ModelError::InvalidTrigger {
                trigger: self.cfg.strategy.trigger.to_string(),
                reason: format!(
                    "the snapshot's trigger state has {n} nodes, this trigger {nodes}: not the strategy it was taken with"
                ),
            });
        }
        Ok(())
    }

    fn window_of<Key>(&self, w: WindowSnapshot<Key, A::Acc, A::Out>) -> Result<WinState<A::Acc, A::Out>, ModelError> {
        self.check_trigger_nodes(w.trigger.len())?;
        Ok(WinState::from_snapshot(w))
    }

    /// Index the timers and holds of a key's windows.
    fn index_key(&mut self, key: &K, state: &KeyStateOf<V, A>) {
        let core = &mut self.core;
        for w in &state.0 {
            for h in [w.element_hold, w.extra_hold].into_iter().flatten() {
                core.hold_add(h);
            }
            for &t in &w.event_timers {
                core.timers.insert(TimerDomain::EventTime, t, (key.clone(), w.window));
            }
            for &t in &w.pt_timers {
                core.timers.insert(TimerDomain::ProcessingTime, t, (key.clone(), w.window));
            }
        }
    }

    /// Number of (key, window) states held, closed windows included.
    pub fn live_windows(&self) -> usize {
        let mut n = 0;
        self.keys.for_each(&mut |_, ws| n += ws.0.len());
        n
    }
    /// Number of keys with state.
    pub fn live_keys(&self) -> usize {
        self.keys.len()
    }
    /// Number of pending event-time and processing-time timers.
    pub fn pending_timers(&self) -> usize {
        self.core.timers.len()
    }
    /// Number of watermark holds held.
    pub fn holds(&self) -> usize {
        self.core.holds.len()
    }
}

/// Java `ReduceFnRunner.processElement` for one (element, window): dropped
/// if the window is closed; otherwise the window's GC timer, holds, contents
/// and trigger see it. Returns whether the element was added.
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
            // Most keys have one window: a first push would reserve four.
            ks.reserve_exact(1);
            ks.push(WinState::new(w, cfg.program.new_state()));
            ks.len() - 1
        }
    };
    let ws = &mut ks[i];
    ws.non_empty = true;
    core.set_timer(key, ws, TimerDomain::EventTime, w.gc_time(cfg.strategy.allowed_lateness));
    core.add_holds(cfg, ws, ts);
    match &mut ws.acc {
        Some(acc) => cfg.agg.add(acc, value),
        None => {
            let mut acc = cfg.agg.create();
            cfg.agg.add(&mut acc, value);
            ws.acc = Some(acc);
        }
    }
    let cx = core.trigger_cx(cfg, w);
    let mut timers = std::mem::take(&mut core.scratch_timers);
    cfg.program.on_element(&mut ws.trig, &cx, &mut timers);
    core.set_trigger_timers(key, ws, &mut timers);
    core.scratch_timers = timers;
    true
}
