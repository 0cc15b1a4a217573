//! Merging windows (sessions): Java `ReduceFnRunner.mergeWindows` with its
//! `OnMergeCallback`, `MergingActiveWindowSet`, `WatermarkHold.onMerge` and
//! `TriggerStateMachineRunner.onMerge`.
//!
//! The window function sees every ACTIVE window of the key (open, with
//! state) and every NEW window of the bundle: a proto-window that is not
//! active, including one equal to a window that closed earlier. Every group
//! it merges is merged, even when an active window only swallows new
//! proto-windows. Only active members carry state. The result window's
//! trigger state starts from its own stored state: its own if it is one of
//! the active members, the finished bits it kept if it is a closed window
//! (so it stays closed), a fresh state otherwise; each trigger node then
//! decides from the members' states, as Java's triggers do.
//!
//! Deliberate deviation (`SEMANTICS.md` §15): when no active window takes
//! part (new, late proto-windows merging only among themselves), Java still
//! runs the trigger merge over zero windows, which can close the session and
//! leak a hold; Weir gives the merged window a fresh trigger state, so it
//! fires as a single late element would. And a merge whose result stays
//! closed drops what the members held (Java keeps their contents and holds
//! on a window that can never fire).

use std::hash::Hash;

use smallvec::SmallVec;

use super::core::{Config, Core, WinState};
use super::{GroupOutput, KeyWindows, Out, PaneOutput};
use crate::aggregate::Aggregator;
use crate::strategy::TimestampCombiner;
use crate::time::Timestamp;
use crate::trigger::TriggerState;
use crate::window::{MergeGroup, Window, WindowFn};

/// Merge the key's active windows with the new windows of a bundle;
/// returns the mapping from each merged window to its result.
pub(super) fn merge_windows<K, V, A>(
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
    let is_active = |ks: &KeyWindows<V, A>, w: &Window| ks.iter().any(|ws| ws.window == *w && !ws.closed);
    let mut candidates: Vec<Window> = ks.iter().filter(|ws| !ws.closed).map(|ws| ws.window).collect();
    for (_, _, w) in pending {
        if !is_active(ks, w) {
            candidates.push(*w);
        }
    }
    candidates.sort();
    candidates.dedup();
    let mut groups: Vec<MergeGroup> = Vec::new();
    cfg.strategy.window_fn.merge_windows(&candidates, &mut groups);
    let mut mapping = Vec::new();
    for g in groups {
        let active: SmallVec<[Window; 4]> = g.sources.iter().copied().filter(|w| is_active(ks, w)).collect();
        merge_group(core, cfg, key, ks, &active, g.result, out);
        for s in g.sources {
            if s != g.result {
                mapping.push((s, g.result));
            }
        }
    }
    mapping
}

/// Merge one group into `result`; `active` are the group's active members.
fn merge_group<K, V, A>(
    core: &mut Core<K>,
    cfg: &Config<A>,
    key: &K,
    ks: &mut KeyWindows<V, A>,
    active: &[Window],
    result: Window,
    out: &mut Vec<Out<K, V, A>>,
) where
    K: Clone + Ord + Hash,
    V: Clone,
    A: Aggregator<V>,
{
    let result_is_source = active.contains(&result);
    let mut members: SmallVec<[WinState<A::Acc, A::Out>; 4]> = SmallVec::new();
    for w in active.iter().filter(|w| **w != result) {
        let i = ks.iter().position(|ws| ws.window == *w && !ws.closed).expect("an active member has state");
        members.push(ks.swap_remove(i));
    }
    // The result's own stored state: an active member, a closed window's
    // finished bits, or nothing yet.
    let mut merged = match ks.iter().position(|ws| ws.window == result) {
        Some(i) => ks.swap_remove(i),
        None => WinState::new(result, cfg.program.new_state()),
    };
    let cx = core.trigger_cx(cfg, result);
    let mut timers = std::mem::take(&mut core.scratch_timers);
    if active.is_empty() && !merged.closed {
        // SEMANTICS §15: no active window takes part; a fresh trigger state.
        merged.trig = cfg.program.new_state();
    } else {
        let mut sources: SmallVec<[&TriggerState; 4]> = SmallVec::new();
        if result_is_source {
            sources.push(&merged.trig);
        }
        sources.extend(members.iter().map(|m| &m.trig));
        let trig = cfg.program.on_merge(&merged.trig, &sources, result_is_source, &cx, &mut timers);
        drop(sources);
        merged.trig = trig;
    }

    // Holds (Java `WatermarkHold.onMerge`), over the active members.
    let combiner = cfg.strategy.timestamp_combiner;
    let mut holds: SmallVec<[Option<Timestamp>; 4]> = SmallVec::new();
    if result_is_source {
        holds.push(merged.element_hold);
    }
    holds.extend(members.iter().map(|m| m.element_hold));
    let element_hold = if holds.is_empty() {
        merged.element_hold
    } else if holds.len() == 1
        && matches!(combiner, TimestampCombiner::Earliest | TimestampCombiner::EarliestTransformed)
    {
        // The one source is the result's own cell: nothing to merge.
        holds[0]
    } else if combiner == TimestampCombiner::EndOfWindow {
        let h = result.max_timestamp();
        (!core.hold_too_late(result, h)).then_some(h)
    } else {
        holds.iter().flatten().copied().reduce(|a, b| combiner.combine(a, b))
    };

    // Contents, emptiness and retractions of the windows merged away.
    for mut m in members {
        if let Some(last) = m.last.take() {
            core.counters.retractions_out += 1;
            out.push(GroupOutput::Pane(PaneOutput {
                key: key.clone(),
                window: m.window,
                timestamp: last.1,
                pane: last.2,
                value: last.0,
                retraction: true,
            }));
        }
        merged.non_empty |= m.non_empty;
        if let Some(acc) = m.acc.take() {
            match &mut merged.acc {
                Some(a) => cfg.agg.merge(a, acc),
                None => merged.acc = Some(acc),
            }
        }
        core.forget_window(key, m);
    }

    if !cfg.program.is_default() && merged.trig.is_finished() {
        // The result stays (or became) closed: nothing it holds can fire.
        core.close(cfg, key, &mut merged);
        timers.clear();
    } else {
        merged.closed = false;
        core.set_element_hold(&mut merged, element_hold);
        core.set_extra_hold(&mut merged, None);
        core.add_gc_hold(cfg, &mut merged);
        core.set_trigger_timers(key, &mut merged, &mut timers);
    }
    core.scratch_timers = timers;
    ks.push(merged);
}
