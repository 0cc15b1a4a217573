//! Stateful processing (`SEMANTICS.md` §11–12): a [`StatefulDoFn`] reads and
//! writes typed state cells and sets timers, all scoped to the (key, window)
//! of the element or timer being processed.
//!
//! State is declared as constants of typed handles ([`ValueState`],
//! [`BagState`], [`SetState`], [`MapState`], [`OrderedListState`],
//! [`CombiningState`]) and timers as [`TimerSpec`]s. The state of a window
//! is cleared once the input watermark passes its garbage-collection time
//! plus 1 ms, after `on_window_expiration`; elements for expired windows are
//! dropped and counted; a processing-time timer of an expired window is
//! ignored. Pending timers hold the output watermark at their output
//! timestamps.
//!
//! A DoFn that [requires time-sorted input](StatefulDoFn::requires_time_sorted_input)
//! sees its elements in timestamp order: they are buffered until the input
//! watermark passes `timestamp + allowed_lateness`, and hold the output
//! watermark meanwhile.
//!
//! The modules: `handles` (state handles and timer rules, what users
//! write), `context` (what a DoFn sees during a call), `cells` (the cell
//! store), `operator` (the runtime operator: timers, holds, expiry,
//! snapshots).
//!
//! The operator's whole state (cells, timers, holds, the expiry index, the
//! time-sorted buffer and the watermarks) can be snapshotted and restored
//! through [`Operator::snapshot`] / [`Operator::restore`]. A cell is kept
//! typed in memory; a restored cell stays encoded (bincode) until the DoFn
//! first reads it with its declared type, so no type registry is needed.

mod cells;
mod context;
mod handles;
mod operator;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_model::timers::{Holds, TimerQueues};
use weir_model::trigger::TimerDomain;
use weir_model::{Duration, Timestamp, Window, WindowFn, WindowingStrategy};

use crate::graph::PCollection;
use crate::transforms::combine::CombineFn;
use crate::transforms::elementwise::{ErasedTag, OutputTag, OutputTags, ParDoOutputs, TaggedBuffer};
use crate::transforms::group::KeyValue;
use crate::transforms::side::{decode_sides, encode_sides, sides_ready, take_ready, SideEntry};
use crate::transforms::side::{ErasedSide, SideInput, SideInputList, SideInputs};
use weir_runtime::batch::Batch;
use weir_runtime::data::{Data, Key, WindowedValue};
use weir_runtime::error::PipelineError;
use weir_runtime::keys::key_hash;
use weir_runtime::{KeyedSnapshot, NodeCounters, OpContext, OpResult, Operator, Rescale, StateBackend, WorkerInfo};
use weir_runtime::{NodeKind, Routing};

use cells::{Address, Cell, CellStore, Cells, Name, StoredCells};
pub use context::StateContext;
use context::TimerRequest;
pub use handles::*;
use operator::StatefulOp;

/// Which clock a timer follows.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TimeDomain {
    /// The input watermark.
    EventTime,
    /// Processing time.
    ProcessingTime,
}

impl TimeDomain {
    /// The model's name for this domain.
    fn model(self) -> TimerDomain {
        match self {
            TimeDomain::EventTime => TimerDomain::EventTime,
            TimeDomain::ProcessingTime => TimerDomain::ProcessingTime,
        }
    }
}

/// A timer that fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerFiring<'a> {
    /// The timer's family (its declared name).
    pub family: &'a str,
    /// The dynamic tag within the family ("" for plain timers).
    pub tag: String,
    /// Its domain.
    pub domain: TimeDomain,
    /// When it was set to fire.
    pub firing_timestamp: Timestamp,
    /// The timestamp outputs get by default; it held the output watermark.
    pub output_timestamp: Timestamp,
}

/// A user function with per-(key, window) state and timers.
///
/// ```
/// use weir_pipeline::prelude::*;
/// use weir_pipeline::transforms::stateful::*;
///
/// /// Emits each key's first value only.
/// #[derive(Clone)]
/// struct FirstOnly;
/// const SEEN: ValueState<bool> = ValueState::new("seen");
/// impl StatefulDoFn for FirstOnly {
///     type Key = String;
///     type Value = u32;
///     type Out = (String, u32);
///     fn process(&mut self, cx: &mut StateContext<'_, String, (String, u32)>, v: u32) {
///         if SEEN.read(cx).is_none() {
///             SEEN.write(cx, true);
///             let k = cx.key().clone();
///             cx.output((k, v));
///         }
///     }
/// }
/// let p = Pipeline::new();
/// let firsts = p.create([("a".to_string(), 1), ("a".to_string(), 2)]).par_do_stateful(FirstOnly).collect();
/// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
/// assert_eq!(firsts.values(), vec![("a".to_string(), 1)]);
/// ```
pub trait StatefulDoFn: Clone + Send + Sync + 'static {
    /// The key.
    type Key: Key;
    /// The value of each keyed element.
    type Value: Data;
    /// The output.
    type Out: Data;
    /// For each element.
    fn process(&mut self, cx: &mut StateContext<'_, Self::Key, Self::Out>, value: Self::Value);
    /// For each timer that fires.
    fn on_timer(&mut self, cx: &mut StateContext<'_, Self::Key, Self::Out>, timer: &TimerFiring<'_>) {
        let _ = (cx, timer);
    }
    /// Once per (key, window) that has state or timers, when the window
    /// expires, before its state is cleared.
    fn on_window_expiration(&mut self, cx: &mut StateContext<'_, Self::Key, Self::Out>) {
        let _ = cx;
    }
    /// Java's `@RequiresTimeSortedInput`: when true, elements reach
    /// [`process`](StatefulDoFn::process) in timestamp order (ties in arrival
    /// order). Each element is buffered until the input watermark passes its
    /// timestamp plus the allowed lateness, and holds the output watermark
    /// meanwhile so that its outputs are not late downstream; an element that
    /// arrives after that point is dropped and counted (`dropped_expired`).
    fn requires_time_sorted_input(&self) -> bool {
        false
    }
}

/// `par_do_stateful`.
pub trait StatefulExt<K: Key, V: Data> {
    /// Apply a [`StatefulDoFn`]: the input is partitioned by key, and state
    /// and timers are scoped to (key, window). Merging window functions are
    /// rejected when the pipeline is built.
    fn par_do_stateful<D: StatefulDoFn<Key = K, Value = V>>(&self, dofn: D) -> PCollection<D::Out>;
    /// `par_do_stateful` with additional outputs, written with
    /// [`StateContext::output_to`].
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// use weir_pipeline::transforms::stateful::*;
    ///
    /// /// Sums each card's spending; an alert once it passes 100.
    /// #[derive(Clone)]
    /// struct Spending;
    /// const TOTAL: ValueState<u32> = ValueState::new("total");
    /// const ALERTS: OutputTag<String> = OutputTag::new("alerts");
    /// impl StatefulDoFn for Spending {
    ///     type Key = String;
    ///     type Value = u32;
    ///     type Out = (String, u32);
    ///     fn process(&mut self, cx: &mut StateContext<'_, String, (String, u32)>, amount: u32) {
    ///         let before = TOTAL.read(cx).unwrap_or(0);
    ///         TOTAL.write(cx, before + amount);
    ///         if before <= 100 && before + amount > 100 {
    ///             let alert = format!("card {} spent over 100", cx.key());
    ///             cx.output_to(&ALERTS, alert);
    ///         }
    ///         let card = cx.key().clone();
    ///         cx.output((card, before + amount));
    ///     }
    /// }
    /// let p = Pipeline::new();
    /// let payments = p.create([("c1".to_string(), 60), ("c1".to_string(), 50), ("c2".to_string(), 5)]);
    /// let out = payments.par_do_stateful_with_outputs(Spending, &[ALERTS.erased()]);
    /// let alerts = out.get(&ALERTS).unwrap().collect();
    /// let totals = out.main.collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(alerts.values(), vec!["card c1 spent over 100".to_string()]);
    /// assert_eq!(totals.values().len(), 3);
    /// ```
    fn par_do_stateful_with_outputs<D: StatefulDoFn<Key = K, Value = V>>(
        &self,
        dofn: D,
        tags: impl OutputTags,
    ) -> ParDoOutputs<D::Out>;
    /// `par_do_stateful` that reads side inputs in
    /// [`process`](StatefulDoFn::process) (through
    /// [`StateContext::side_map`] and the like), with optional tagged
    /// outputs (`()` for none). An element waits until its side-input
    /// windows are ready, as in `par_do_with_side_inputs`; meanwhile it
    /// holds back the event-time timers and the output watermark at its
    /// timestamp, so it is processed as if it had arrived when they became
    /// ready.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// use weir_pipeline::transforms::stateful::*;
    ///
    /// /// Sums each card's spending; an alert once it passes the card's limit.
    /// #[derive(Clone)]
    /// struct OverLimit(SideInput<(String, u32)>);
    /// const TOTAL: ValueState<u32> = ValueState::new("total");
    /// impl StatefulDoFn for OverLimit {
    ///     type Key = String;
    ///     type Value = u32;
    ///     type Out = String;
    ///     fn process(&mut self, cx: &mut StateContext<'_, String, String>, amount: u32) {
    ///         let limit = match cx.side_map(&self.0) {
    ///             Ok(limits) => limits.get(cx.key()).copied().unwrap_or(100),
    ///             Err(e) => return cx.fail(e),
    ///         };
    ///         let before = TOTAL.read(cx).unwrap_or(0);
    ///         TOTAL.write(cx, before + amount);
    ///         if before <= limit && before + amount > limit {
    ///             let alert = format!("card {} is over its limit of {limit}", cx.key());
    ///             cx.output(alert);
    ///         }
    ///     }
    /// }
    /// let p = Pipeline::new();
    /// let limits = p.create([("c1".to_string(), 50u32)]).as_side_input();
    /// let payments = p.create([("c1".to_string(), 30), ("c1".to_string(), 30), ("c2".to_string(), 60)]);
    /// let alerts = payments.par_do_stateful_with_side_inputs(OverLimit(limits.clone()), &limits, ()).main.collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(alerts.values(), vec!["card c1 is over its limit of 50".to_string()]);
    /// ```
    fn par_do_stateful_with_side_inputs<D: StatefulDoFn<Key = K, Value = V>>(
        &self,
        dofn: D,
        sides: impl SideInputList,
        tags: impl OutputTags,
    ) -> ParDoOutputs<D::Out>;
}

impl<T: KeyValue> StatefulExt<T::Key, T::Value> for PCollection<T> {
    fn par_do_stateful<D: StatefulDoFn<Key = T::Key, Value = T::Value>>(&self, dofn: D) -> PCollection<D::Out> {
        self.par_do_stateful_with_outputs(dofn, ()).main
    }

    fn par_do_stateful_with_outputs<D: StatefulDoFn<Key = T::Key, Value = T::Value>>(
        &self,
        dofn: D,
        tags: impl OutputTags,
    ) -> ParDoOutputs<D::Out> {
        self.par_do_stateful_with_side_inputs(dofn, &[], tags)
    }

    fn par_do_stateful_with_side_inputs<D: StatefulDoFn<Key = T::Key, Value = T::Value>>(
        &self,
        dofn: D,
        sides: impl SideInputList,
        tags: impl OutputTags,
    ) -> ParDoOutputs<D::Out> {
        let sides: Vec<ErasedSide> = sides.erased_sides();
        let mut inputs = vec![self.as_input(Routing::by_key::<T::Key, T::Value>())];
        inputs.extend(sides.iter().map(ErasedSide::input));
        let tags: Vec<ErasedTag> = tags.erased_tags();
        let t2 = tags.clone();
        let p = self.pipeline().clone();
        let strategy = self.windowing().clone();
        let s2 = strategy.clone();
        let idx = p.add_node(
            "StatefulParDo",
            inputs,
            1 + tags.len(),
            NodeKind::Operator(Arc::new(move |w: &WorkerInfo| {
                match StatefulOp::with_backend(dofn.clone(), s2.clone(), w.index, &w.state, &t2, &sides) {
                    Ok(op) => Box::new(op) as Box<dyn Operator>,
                    Err(e) => Box::new(weir_runtime::FailedOperator(e)) as Box<dyn Operator>,
                }
            })),
        );
        if strategy.window_fn.is_merging() {
            p.record_error(
                &p.node_name(idx),
                "stateful processing needs a non-merging window function (state is per window)",
            );
        }
        ParDoOutputs::new(p.collection(idx, 0, strategy), &tags)
    }
}
