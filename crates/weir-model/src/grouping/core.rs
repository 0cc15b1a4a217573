//! The mechanics of one grouping stage: per-(key, window) state, timers,
//! watermark holds, and producing panes (Java `ReduceFnRunner.emit`,
//! `onTrigger`, `WatermarkHold`, `PaneInfoTracker`).

use std::hash::Hash;

use smallvec::SmallVec;

use super::{DropReason, DroppedElement, GroupCounters, GroupOutput, Out, PaneOutput};
use crate::aggregate::Aggregator;
use crate::pane::{PaneInfo, Timing};
use crate::strategy::{AccumulationMode, ClosingBehavior, OnTimeBehavior, TimestampCombiner, WindowingStrategy};
use crate::time::Timestamp;
use crate::timers::{Holds, TimerQueues};
use crate::trigger::{TimerDomain, TriggerContext, TriggerProgram, TriggerState, TriggerTimer};
use crate::window::Window;

/// The state of one (key, window).
pub(super) struct WinState<Acc, Out> {
    pub(super) window: Window,
    pub(super) acc: Option<Acc>,
    /// An element arrived since the last pane (Java `NonEmptyPanes`).
    pub(super) non_empty: bool,
    /// The trigger finished: the window is closed, and only the trigger's
    /// finished bits (in `trig`) and its timers remain until GC.
    pub(super) closed: bool,
    pub(super) trig: TriggerState,
    pub(super) element_hold: Option<Timestamp>,
    /// Java's "extra" hold, for garbage collection (combined with EARLIEST).
    pub(super) extra_hold: Option<Timestamp>,
    pub(super) prev_pane: Option<PaneInfo>,
    /// The last pane emitted (retracting mode).
    pub(super) last: Option<(Out, Timestamp, PaneInfo)>,
    /// Pending event-time timers: the GC timer and the trigger's own
    /// (identified by timestamp, as in Java).
    pub(super) event_timers: SmallVec<[Timestamp; 2]>,
    /// Pending processing-time timers set by the trigger.
    pub(super) pt_timers: SmallVec<[Timestamp; 1]>,
}

impl<Acc, Out> WinState<Acc, Out> {
    pub(super) fn new(window: Window, trig: TriggerState) -> Self {
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
            event_timers: SmallVec::new(),
            pt_timers: SmallVec::new(),
        }
    }
}

impl<Acc: Clone, Out: Clone> WinState<Acc, Out> {
    /// This window's snapshot, under `key`.
    pub(super) fn snapshot<K>(&self, key: K) -> super::WindowSnapshot<K, Acc, Out> {
        super::WindowSnapshot {
            key,
            window: self.window,
            acc: self.acc.clone(),
            non_empty: self.non_empty,
            closed: self.closed,
            trigger: self.trig.nodes().to_vec(),
            element_hold: self.element_hold,
            extra_hold: self.extra_hold,
            prev_pane: self.prev_pane,
            last: self.last.clone(),
            event_timers: self.event_timers.to_vec(),
            pt_timers: self.pt_timers.to_vec(),
        }
    }
}

impl<Acc, Out> WinState<Acc, Out> {
    /// The window a snapshot describes (its timers and holds are indexed
    /// by the caller).
    pub(super) fn from_snapshot<K>(w: super::WindowSnapshot<K, Acc, Out>) -> Self {
        WinState {
            window: w.window,
            acc: w.acc,
            non_empty: w.non_empty,
            closed: w.closed,
            trig: TriggerState::from_nodes(&w.trigger),
            element_hold: w.element_hold,
            extra_hold: w.extra_hold,
            prev_pane: w.prev_pane,
            last: w.last,
            event_timers: w.event_timers.into_iter().collect(),
            pt_timers: w.pt_timers.into_iter().collect(),
        }
    }
}

pub(super) struct Config<A> {
    pub(super) strategy: WindowingStrategy,
    pub(super) program: TriggerProgram,
    pub(super) merging: bool,
    pub(super) agg: A,
}

pub(super) struct Core<K> {
    /// Every window's timers, by (time, (key, window)).
    pub(super) timers: TimerQueues<(K, Window)>,
    pub(super) holds: Holds,
    pub(super) input_wm: Timestamp,
    pub(super) output_wm: Timestamp,
    /// The output watermark of the whole stage when this instance is one of
    /// several (MAX when it is the only one).
    pub(super) stage_output_wm: Timestamp,
    pub(super) processing_time: Timestamp,
    pub(super) counters: GroupCounters,
    pub(super) scratch_timers: Vec<TriggerTimer>,
}

impl<K: Clone + Ord + Hash> Core<K> {
    pub(super) fn new() -> Self {
        Core {
            timers: TimerQueues::new(),
            holds: Holds::default(),
            input_wm: Timestamp::MIN,
            output_wm: Timestamp::MIN,
            stage_output_wm: Timestamp::MAX,
            processing_time: Timestamp::MIN,
            counters: GroupCounters::default(),
            scratch_timers: Vec::new(),
        }
    }

    pub(super) fn trigger_cx<A>(&self, cfg: &Config<A>, window: Window) -> TriggerContext {
        TriggerContext {
            window,
            input_watermark: self.input_wm,
            processing_time: self.processing_time,
            merging: cfg.merging,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn drop_element<V, A: Aggregator<V>>(
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

    /// Set a timer of a window; a timer is identified by (window, domain,
    /// timestamp), so setting it again changes nothing.
    pub(super) fn set_timer<Acc, O>(&mut self, key: &K, ws: &mut WinState<Acc, O>, domain: TimerDomain, t: Timestamp) {
        match domain {
            TimerDomain::EventTime if !ws.event_timers.contains(&t) => {
                ws.event_timers.push(t);
                self.timers.insert(domain, t, (key.clone(), ws.window));
            }
            TimerDomain::ProcessingTime if !ws.pt_timers.contains(&t) => {
                ws.pt_timers.push(t);
                self.timers.insert(domain, t, (key.clone(), ws.window));
            }
            _ => {}
        }
    }

    /// Register the timers a trigger asked for.
    pub(super) fn set_trigger_timers<Acc, O>(
        &mut self,
        key: &K,
        ws: &mut WinState<Acc, O>,
        timers: &mut Vec<TriggerTimer>,
    ) {
        for t in timers.drain(..) {
            self.set_timer(key, ws, t.domain, t.at);
        }
    }

    /// Drop a window's processing-time timers (it closed or merged away:
    /// they could only fire and be ignored).
    pub(super) fn delete_pt_timers<Acc, O>(&mut self, key: &K, ws: &mut WinState<Acc, O>) {
        for t in ws.pt_timers.drain(..) {
            self.timers.remove(TimerDomain::ProcessingTime, t, (key.clone(), ws.window));
        }
    }

    pub(super) fn hold_add(&mut self, t: Timestamp) {
        self.holds.add(t);
    }

    fn hold_remove(&mut self, t: Timestamp) {
        self.holds.remove(t);
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

    pub(super) fn set_element_hold<Acc, O>(&mut self, ws: &mut WinState<Acc, O>, h: Option<Timestamp>) {
        self.replace_hold(&mut ws.element_hold, h)
    }

    pub(super) fn set_extra_hold<Acc, O>(&mut self, ws: &mut WinState<Acc, O>, h: Option<Timestamp>) {
        self.replace_hold(&mut ws.extra_hold, h)
    }

    /// Whether an element hold at `h` for `w` would be too late (Java
    /// `WatermarkHold.addElementHold`): behind the output watermark, or the
    /// window's end behind the input watermark.
    pub(super) fn hold_too_late(&self, w: Window, h: Timestamp) -> bool {
        h < self.effective_output_wm() || w.max_timestamp() < self.input_wm
    }

    /// Java `WatermarkHold.addGarbageCollectionHold` for a non-empty pane:
    /// a hold at the GC time unless the input watermark is already past it.
    pub(super) fn add_gc_hold<V, A: Aggregator<V>>(&mut self, cfg: &Config<A>, ws: &mut WinState<A::Acc, A::Out>) {
        let gc = ws.window.gc_time(cfg.strategy.allowed_lateness);
        if gc >= self.input_wm {
            let new = ws.extra_hold.map_or(gc, |old| old.min(gc));
            self.set_extra_hold(ws, Some(new));
        }
    }

    /// Java `WatermarkHold.addHolds`: an element hold if the element is on
    /// time, else a garbage-collection hold if the window is not expired.
    pub(super) fn add_holds<V, A: Aggregator<V>>(
        &mut self,
        cfg: &Config<A>,
        ws: &mut WinState<A::Acc, A::Out>,
        ts: Timestamp,
    ) {
        let w = ws.window;
        let combiner = cfg.strategy.timestamp_combiner;
        let h = combiner.assign(&cfg.strategy.window_fn, &w, ts);
        if !self.hold_too_late(w, h) {
            let new = ws.element_hold.map_or(h, |old| combiner.combine(old, h));
            self.set_element_hold(ws, Some(new));
        } else {
            self.add_gc_hold(cfg, ws);
        }
    }

    /// The output watermark that holds and pane timing see.
    pub(super) fn effective_output_wm(&self) -> Timestamp {
        self.output_wm.min(self.stage_output_wm)
    }

    /// `min(input watermark, holds, pending event-time timers)`, never
    /// decreasing. Pending timers hold it, including the ones about to fire
    /// after an input-watermark advance (Java's runners compute the output
    /// watermark before delivering the timers).
    pub(super) fn update_output_watermark(&mut self) {
        let mut candidate = self.input_wm;
        if let Some(h) = self.holds.min() {
            candidate = candidate.min(h);
        }
        if let Some(t) = self.timers.next_time(TimerDomain::EventTime) {
            candidate = candidate.min(t);
        }
        self.output_wm = self.output_wm.max(candidate);
    }

    /// Java `ReduceFnRunner.emit`: the trigger fires, the pane is produced,
    /// and a trigger that finished closes the window (keeping its finished
    /// bits until GC).
    pub(super) fn emit<V, A: Aggregator<V>>(
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
            self.close(cfg, key, ws);
        }
    }

    /// The window's trigger finished: keep only its finished bits and
    /// event-time timers until garbage collection.
    pub(super) fn close<V, A: Aggregator<V>>(&mut self, cfg: &Config<A>, key: &K, ws: &mut WinState<A::Acc, A::Out>) {
        ws.closed = true;
        ws.acc = None;
        ws.non_empty = false;
        cfg.program.clear_state(&mut ws.trig);
        ws.prev_pane = None;
        ws.last = None;
        self.set_element_hold(ws, None);
        self.set_extra_hold(ws, None);
        self.delete_pt_timers(key, ws);
    }

    /// Java `ReduceFnRunner.onTrigger`: release holds, describe and emit the
    /// pane if it must be emitted.
    pub(super) fn on_trigger<V, A: Aggregator<V>>(
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

    /// Drop every trace of a window: holds and timers.
    pub(super) fn forget_window<Acc, O>(&mut self, key: &K, mut ws: WinState<Acc, O>) {
        self.set_element_hold(&mut ws, None);
        self.set_extra_hold(&mut ws, None);
        for t in ws.event_timers.drain(..) {
            self.timers.remove(TimerDomain::EventTime, t, (key.clone(), ws.window));
        }
        self.delete_pt_timers(key, &mut ws);
    }
}
