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
//! The operator's whole state (cells, timers, holds, the expiry index, the
//! time-sorted buffer and the watermarks) can be snapshotted and restored
//! through [`Operator::snapshot`] / [`Operator::restore`]. A cell is kept
//! typed in memory; a restored cell stays encoded (bincode) until the DoFn
//! first reads it with its declared type, so no type registry is needed.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_model::{Duration, Timestamp, Window, WindowFn, WindowingStrategy};

use crate::graph::PCollection;
use crate::transforms::combine::CombineFn;
use weir_runtime::batch::Batch;
use weir_runtime::data::{Data, Key, WindowedValue};
use weir_runtime::error::PipelineError;
use weir_runtime::{NodeCounters, OpContext, OpResult, Operator, WorkerInfo};
use weir_runtime::{NodeKind, Routing};

/// Which clock a timer follows.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TimeDomain {
    /// The input watermark.
    EventTime,
    /// Processing time.
    ProcessingTime,
}

/// A timer that fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerFiring {
    /// The timer's family (its declared name).
    pub family: &'static str,
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
    fn on_timer(&mut self, cx: &mut StateContext<'_, Self::Key, Self::Out>, timer: &TimerFiring) {
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

/// A state cell: typed in memory, or bincode bytes (restored from a snapshot)
/// until the DoFn first reads it with its declared type.
enum Cell {
    Typed(Box<dyn TypedCell>),
    Encoded(Vec<u8>),
}

trait TypedCell: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn encode(&self) -> Vec<u8>;
}

impl<T: Serialize + Send + 'static> TypedCell for T {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("serializing a state cell into memory cannot fail")
    }
}

impl Cell {
    fn typed<T: Serialize + Send + 'static>(v: T) -> Cell {
        Cell::Typed(Box::new(v))
    }
    fn encode(&self) -> Vec<u8> {
        match self {
            Cell::Typed(c) => c.encode(),
            Cell::Encoded(bytes) => bytes.clone(),
        }
    }
}

type Cells = HashMap<&'static str, Cell>;

/// Cell and timer names are `&'static str` (declared constants); a restored
/// snapshot carries them as strings. Each distinct name is leaked once.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(n) = names.get(name) {
        return n;
    }
    let n: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(n);
    n
}

struct TimerRequest {
    family: &'static str,
    tag: String,
    domain: TimeDomain,
    /// None: clear.
    set: Option<(Timestamp, Timestamp)>,
}

/// What a [`StatefulDoFn`] sees: its key, window and time, its state, its
/// timers and its output.
pub struct StateContext<'a, K, O> {
    key: &'a K,
    window: Window,
    timestamp: Timestamp,
    /// The output watermark hold of the firing timer (for relative
    /// processing-time timers and output checks).
    hold: Timestamp,
    processing_time: Timestamp,
    gc: Timestamp,
    cells: &'a mut Cells,
    timers: &'a mut Vec<TimerRequest>,
    out: &'a mut Vec<WindowedValue<O>>,
    error: &'a mut Option<String>,
}

impl<K, O: Data> StateContext<'_, K, O> {
    /// The key.
    pub fn key(&self) -> &K {
        self.key
    }
    /// The window.
    pub fn window(&self) -> Window {
        self.window
    }
    /// The element's timestamp, or the firing timer's output timestamp.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }
    /// Current processing time.
    pub fn processing_time(&self) -> Timestamp {
        self.processing_time
    }
    /// Emit with the current timestamp and window.
    pub fn output(&mut self, value: O) {
        self.out.push(WindowedValue::new(value, self.timestamp, self.window, weir_model::PaneInfo::NO_FIRING));
    }
    /// Emit with another timestamp: it must be valid and not before the
    /// current element's (or timer's) timestamp.
    pub fn output_with_timestamp(&mut self, value: O, t: Timestamp) {
        if t < self.timestamp || Timestamp::element(t.millis()).is_err() {
            self.fail(format!("cannot output with timestamp {t}: it must be valid and not before {}", self.timestamp));
            return;
        }
        self.out.push(WindowedValue::new(value, t, self.window, weir_model::PaneInfo::NO_FIRING));
    }
    /// Stop the pipeline with an error naming this transform.
    pub fn fail(&mut self, message: impl Into<String>) {
        self.error.get_or_insert(message.into());
    }

    fn cell<T: Serialize + DeserializeOwned + Send + 'static>(&mut self, name: &'static str) -> Option<&mut T> {
        let slot = self.cells.get_mut(name)?;
        if let Cell::Encoded(bytes) = slot {
            match bincode::deserialize::<T>(bytes) {
                Ok(v) => *slot = Cell::typed(v),
                Err(e) => {
                    self.error.get_or_insert(format!(
                        "state '{name}' cannot be restored as {}: {e}",
                        std::any::type_name::<T>()
                    ));
                    return None;
                }
            }
        }
        let Cell::Typed(typed) = slot else { return None };
        match typed.as_any_mut().downcast_mut::<T>() {
            Some(v) => Some(v),
            None => {
                self.error.get_or_insert(format!("state '{name}' is declared with two different types"));
                None
            }
        }
    }

    fn cell_or_insert<T: Serialize + DeserializeOwned + Send + 'static>(
        &mut self,
        name: &'static str,
        init: impl FnOnce() -> T,
    ) -> Option<&mut T> {
        if !self.cells.contains_key(name) {
            self.cells.insert(name, Cell::typed(init()));
        }
        self.cell::<T>(name)
    }

    fn set_cell<T: Serialize + Send + 'static>(&mut self, name: &'static str, v: T) {
        self.cells.insert(name, Cell::typed(v));
    }

    fn clear_cell(&mut self, name: &'static str) {
        self.cells.remove(name);
    }
}

macro_rules! handle {
    ($(#[$m:meta])* $name:ident < $($t:ident),* >) => {
        $(#[$m])*
        pub struct $name<$($t),*> {
            name: &'static str,
            _t: PhantomData<fn() -> ($($t,)*)>,
        }
        impl<$($t),*> $name<$($t),*> {
            /// A handle to the state cell `name` (unique within the DoFn).
            pub const fn new(name: &'static str) -> Self {
                $name { name, _t: PhantomData }
            }
        }
    };
}

handle!(
    /// A single value.
    ValueState<T>
);
handle!(
    /// An unordered collection of values.
    BagState<T>
);
handle!(
    /// A set of values.
    SetState<T>
);
handle!(
    /// A map from keys to values.
    MapState<K, V>
);
handle!(
    /// Values with timestamps, read in timestamp order and by range.
    OrderedListState<T>
);

impl<T: Data> ValueState<T> {
    /// The value, if written.
    pub fn read<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> Option<T> {
        cx.cell::<T>(self.name).cloned()
    }
    /// Write the value.
    pub fn write<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, v: T) {
        cx.set_cell(self.name, v);
    }
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.clear_cell(self.name);
    }
}

impl<T: Data> BagState<T> {
    /// Add a value.
    pub fn add<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, v: T) {
        if let Some(bag) = cx.cell_or_insert::<Vec<T>>(self.name, Vec::new) {
            bag.push(v);
        }
    }
    /// Every value added since the last clear (a snapshot: later writes do
    /// not change it).
    pub fn read<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> Vec<T> {
        cx.cell::<Vec<T>>(self.name).cloned().unwrap_or_default()
    }
    /// Whether it is empty.
    pub fn is_empty<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> bool {
        cx.cell::<Vec<T>>(self.name).is_none_or(|b| b.is_empty())
    }
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.clear_cell(self.name);
    }
}

impl<T: Key> SetState<T> {
    /// Add a value; true if it was not there (Java's `addIfAbsent`).
    pub fn add<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, v: T) -> bool {
        cx.cell_or_insert::<BTreeSet<T>>(self.name, BTreeSet::new).is_some_and(|s| s.insert(v))
    }
    /// Whether it holds `v`.
    pub fn contains<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, v: &T) -> bool {
        cx.cell::<BTreeSet<T>>(self.name).is_some_and(|s| s.contains(v))
    }
    /// Remove `v`.
    pub fn remove<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, v: &T) {
        let empty = cx.cell::<BTreeSet<T>>(self.name).map(|s| {
            s.remove(v);
            s.is_empty()
        });
        if empty == Some(true) {
            cx.clear_cell(self.name);
        }
    }
    /// Every value, in order (a snapshot).
    pub fn read<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> Vec<T> {
        cx.cell::<BTreeSet<T>>(self.name).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
    /// Whether it is empty.
    pub fn is_empty<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> bool {
        cx.cell::<BTreeSet<T>>(self.name).is_none_or(|s| s.is_empty())
    }
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.clear_cell(self.name);
    }
}

impl<MK: Key, V: Data> MapState<MK, V> {
    /// Put `k → v`; returns the previous value.
    pub fn put<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, k: MK, v: V) -> Option<V> {
        cx.cell_or_insert::<BTreeMap<MK, V>>(self.name, BTreeMap::new).and_then(|m| m.insert(k, v))
    }
    /// Put `k → v` unless `k` is present; returns the value that was
    /// present (and then leaves it), or `None` if `v` was put.
    pub fn put_if_absent<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, k: MK, v: V) -> Option<V> {
        let m = cx.cell_or_insert::<BTreeMap<MK, V>>(self.name, BTreeMap::new)?;
        match m.get(&k) {
            Some(old) => Some(old.clone()),
            None => {
                m.insert(k, v);
                None
            }
        }
    }
    /// The value of `k`.
    pub fn get<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, k: &MK) -> Option<V> {
        cx.cell::<BTreeMap<MK, V>>(self.name).and_then(|m| m.get(k).cloned())
    }
    /// Whether `k` has a value.
    pub fn contains_key<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, k: &MK) -> bool {
        cx.cell::<BTreeMap<MK, V>>(self.name).is_some_and(|m| m.contains_key(k))
    }
    /// Remove `k`.
    pub fn remove<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, k: &MK) -> Option<V> {
        let (old, empty) = {
            let m = cx.cell::<BTreeMap<MK, V>>(self.name)?;
            let old = m.remove(k);
            (old, m.is_empty())
        };
        if empty {
            cx.clear_cell(self.name);
        }
        old
    }
    /// Every key, in order (a snapshot).
    pub fn keys<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> Vec<MK> {
        cx.cell::<BTreeMap<MK, V>>(self.name).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }
    /// Every value, in key order (a snapshot).
    pub fn values<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> Vec<V> {
        cx.cell::<BTreeMap<MK, V>>(self.name).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
    /// Every entry, in key order (a snapshot).
    pub fn entries<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> Vec<(MK, V)> {
        cx.cell::<BTreeMap<MK, V>>(self.name)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
    /// Whether it is empty.
    pub fn is_empty<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> bool {
        cx.cell::<BTreeMap<MK, V>>(self.name).is_none_or(|m| m.is_empty())
    }
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.clear_cell(self.name);
    }
}

impl<T: Data> OrderedListState<T> {
    /// Add a value at a timestamp.
    pub fn add<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, v: T, t: Timestamp) {
        if let Some(l) = cx.cell_or_insert::<BTreeMap<Timestamp, Vec<T>>>(self.name, BTreeMap::new) {
            l.entry(t).or_default().push(v);
        }
    }
    /// Entries with `min ≤ t < limit`, in timestamp order (ties in insertion order).
    pub fn read_range<K, O: Data>(
        &self,
        cx: &mut StateContext<'_, K, O>,
        min: Timestamp,
        limit: Timestamp,
    ) -> Vec<(T, Timestamp)> {
        if min >= limit {
            return Vec::new();
        }
        cx.cell::<BTreeMap<Timestamp, Vec<T>>>(self.name)
            .map(|l| l.range(min..limit).flat_map(|(t, vs)| vs.iter().map(move |v| (v.clone(), *t))).collect())
            .unwrap_or_default()
    }
    /// Every entry, in timestamp order.
    pub fn read<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> Vec<(T, Timestamp)> {
        cx.cell::<BTreeMap<Timestamp, Vec<T>>>(self.name)
            .map(|l| l.iter().flat_map(|(t, vs)| vs.iter().map(move |v| (v.clone(), *t))).collect())
            .unwrap_or_default()
    }
    /// Remove entries with `min ≤ t < limit`.
    pub fn clear_range<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, min: Timestamp, limit: Timestamp) {
        if min >= limit {
            return;
        }
        let empty = cx.cell::<BTreeMap<Timestamp, Vec<T>>>(self.name).map(|l| {
            let keep = l.split_off(&limit);
            l.retain(|t, _| *t < min);
            l.extend(keep);
            l.is_empty()
        });
        if empty == Some(true) {
            cx.clear_cell(self.name);
        }
    }
    /// Whether it is empty.
    pub fn is_empty<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> bool {
        cx.cell::<BTreeMap<Timestamp, Vec<T>>>(self.name).is_none_or(|l| l.is_empty())
    }
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.clear_cell(self.name);
    }
}

/// A value folded with a [`CombineFn`]. Its accumulator must be
/// serializable, so that the state can be snapshotted.
pub struct CombiningState<I, C> {
    name: &'static str,
    combine: C,
    _i: PhantomData<fn(I)>,
}

impl<I, C: CombineFn<I>> CombiningState<I, C>
where
    C::Acc: Serialize + DeserializeOwned,
{
    /// A handle to the combining cell `name`, folding with `combine`.
    pub const fn new(name: &'static str, combine: C) -> Self {
        CombiningState { name, combine, _i: PhantomData }
    }
    /// Add an input.
    pub fn add<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, v: I) {
        if let Some(acc) = cx.cell_or_insert::<C::Acc>(self.name, || self.combine.create_accumulator()) {
            self.combine.add_input(acc, v);
        }
    }
    /// The combined result (of no inputs if empty).
    pub fn read<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> C::Out {
        match cx.cell::<C::Acc>(self.name) {
            Some(acc) => self.combine.extract_output(acc),
            None => self.combine.extract_output(&self.combine.create_accumulator()),
        }
    }
    /// Whether nothing was added since the last clear.
    pub fn is_empty<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> bool {
        cx.cell::<C::Acc>(self.name).is_none()
    }
    /// A copy of the accumulator (Java's `getAccum`; an empty accumulator if
    /// nothing was added).
    pub fn accumulator<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> C::Acc
    where
        C::Acc: Clone,
    {
        cx.cell::<C::Acc>(self.name).cloned().unwrap_or_else(|| self.combine.create_accumulator())
    }
    /// Merge an accumulator into this one (Java's `addAccum`).
    pub fn add_accumulator<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, other: C::Acc) {
        if let Some(acc) = cx.cell_or_insert::<C::Acc>(self.name, || self.combine.create_accumulator()) {
            self.combine.merge_accumulators(acc, other);
        }
    }
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.clear_cell(self.name);
    }
}

/// A timer declaration: a family name and a time domain.
#[derive(Copy, Clone, Debug)]
pub struct TimerSpec {
    family: &'static str,
    domain: TimeDomain,
}

impl TimerSpec {
    /// An event-time timer.
    pub const fn event_time(family: &'static str) -> Self {
        TimerSpec { family, domain: TimeDomain::EventTime }
    }
    /// A processing-time timer.
    pub const fn processing_time(family: &'static str) -> Self {
        TimerSpec { family, domain: TimeDomain::ProcessingTime }
    }
    /// Check and record a request. An explicit output timestamp must not be
    /// before the element's timestamp (or the firing timer's); every output
    /// timestamp must be at most the firing time (event time) or the
    /// window's garbage-collection time (processing time) — Java's
    /// `SimpleDoFnRunner`.
    fn request<K, O: Data>(
        &self,
        cx: &mut StateContext<'_, K, O>,
        tag: &str,
        target: Timestamp,
        output: Option<Timestamp>,
    ) {
        if let Some(output) = output {
            if output < cx.hold || Timestamp::element(output.millis()).is_err() {
                return cx.fail(format!(
                    "timer '{}': output timestamp {output} must not be before the input timestamp {}",
                    self.family, cx.hold
                ));
            }
        }
        let output = output.unwrap_or(match self.domain {
            TimeDomain::EventTime => target,
            TimeDomain::ProcessingTime => cx.hold,
        });
        match self.domain {
            TimeDomain::EventTime => {
                if output > target {
                    return cx.fail(format!(
                        "timer '{}': output timestamp {output} is after the timer firing timestamp {target}",
                        self.family
                    ));
                }
                if target > cx.gc {
                    return cx.fail(format!(
                        "timer '{}' set to {target}, after the expiration of its window (garbage-collection time {})",
                        self.family, cx.gc
                    ));
                }
            }
            TimeDomain::ProcessingTime => {
                if output > cx.gc {
                    return cx.fail(format!(
                        "timer '{}': output timestamp {output} is after the expiration of its window \
                         (garbage-collection time {})",
                        self.family, cx.gc
                    ));
                }
            }
        }
        cx.timers.push(TimerRequest {
            family: self.family,
            tag: tag.to_string(),
            domain: self.domain,
            set: Some((target, output)),
        });
    }
    /// Fire at `target` (event time only; at most the window's GC time).
    pub fn set<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, target: Timestamp) {
        self.set_tagged(cx, "", target)
    }
    /// `set` for the timer `tag` of this family.
    pub fn set_tagged<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, tag: &str, target: Timestamp) {
        if self.domain == TimeDomain::ProcessingTime {
            return cx.fail(format!(
                "timer '{}': in processing time only relative timers can be set (set_relative)",
                self.family
            ));
        }
        self.request(cx, tag, target, None)
    }
    /// The target of a relative timer: the base is the element's (or firing
    /// timer's) timestamp in event time and now in processing time. Without
    /// alignment it is `base + offset`; with a period it is the first time
    /// `t ≥ base` with `t + offset` a multiple of the period (Java's
    /// `Timer.align(period).offset(offset).setRelative()`, whose remainder is
    /// truncated: before the epoch it lands one period further). Event-time
    /// targets are clamped to the window's GC time.
    fn relative_target<K, O: Data>(
        &self,
        cx: &StateContext<'_, K, O>,
        offset: Duration,
        align: Option<Duration>,
    ) -> Timestamp {
        let base = match self.domain {
            TimeDomain::EventTime => cx.timestamp,
            TimeDomain::ProcessingTime => cx.processing_time,
        };
        let target = match align.filter(|a| a.millis() > 0) {
            None => base + offset,
            Some(period) => {
                let since_start = (base + offset).millis() % period.millis();
                if since_start == 0 {
                    base
                } else {
                    base + period - Duration::from_millis(since_start)
                }
            }
        };
        match self.domain {
            TimeDomain::EventTime => target.min(cx.gc),
            TimeDomain::ProcessingTime => target,
        }
    }
    /// Fire `offset` after the element's timestamp (event time, clamped to
    /// the window's GC time) or after now (processing time), aligned to
    /// `align` if given (see Java's `Timer.align`).
    pub fn set_relative<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, offset: Duration, align: Option<Duration>) {
        let target = self.relative_target(cx, offset, align);
        self.request(cx, "", target, None)
    }
    /// `set_relative` for the timer `tag` of this family.
    pub fn set_relative_tagged<K, O: Data>(
        &self,
        cx: &mut StateContext<'_, K, O>,
        tag: &str,
        offset: Duration,
        align: Option<Duration>,
    ) {
        let target = self.relative_target(cx, offset, align);
        self.request(cx, tag, target, None)
    }
    /// `set` with an explicit output timestamp (checked against the model's rules).
    pub fn set_with_output_timestamp<K, O: Data>(
        &self,
        cx: &mut StateContext<'_, K, O>,
        target: Timestamp,
        output: Timestamp,
    ) {
        if self.domain == TimeDomain::ProcessingTime {
            return self.set_tagged(cx, "", target);
        }
        self.request(cx, "", target, Some(output))
    }
    /// `set_relative` with an explicit output timestamp (checked against the
    /// model's rules).
    pub fn set_relative_with_output_timestamp<K, O: Data>(
        &self,
        cx: &mut StateContext<'_, K, O>,
        offset: Duration,
        align: Option<Duration>,
        output: Timestamp,
    ) {
        let target = self.relative_target(cx, offset, align);
        self.request(cx, "", target, Some(output))
    }
    /// Cancel the pending firing.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        self.clear_tagged(cx, "")
    }
    /// Cancel the pending firing of `tag`.
    pub fn clear_tagged<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, tag: &str) {
        cx.timers.push(TimerRequest { family: self.family, tag: tag.to_string(), domain: self.domain, set: None });
    }
}

/// (key, window, family, tag): a timer's identity.
type TimerKey<K> = (K, Window, &'static str, String);

/// A pending timer: (domain, firing time, output timestamp).
type TimerState = (TimeDomain, Timestamp, Timestamp);

/// An element waiting for the watermark (time-sorted input).
type Buffered<K, V> = (K, Window, V);

struct StatefulOp<D: StatefulDoFn> {
    dofn: D,
    strategy: Arc<WindowingStrategy>,
    sorted_input: bool,
    cells: foldhash::HashMap<(D::Key, Window), Cells>,
    /// Cells over all (key, window)s, for the live counters.
    live_cells: u64,
    /// Pending timers, ordered by identity so a window's timers are a range.
    timers: BTreeMap<TimerKey<D::Key>, TimerState>,
    event_queue: BTreeSet<(Timestamp, TimerKey<D::Key>)>,
    pt_queue: BTreeSet<(Timestamp, TimerKey<D::Key>)>,
    /// Output timestamps of pending timers (with multiplicity).
    holds: BTreeMap<Timestamp, usize>,
    /// Windows with state or timers, by expiration time (GC + 1 ms).
    windows: BTreeSet<(Timestamp, D::Key, Window)>,
    /// Time-sorted input: elements by (timestamp, arrival sequence).
    buffer: BTreeMap<(Timestamp, u64), Buffered<D::Key, D::Value>>,
    next_seq: u64,
    input_wm: Timestamp,
    processing_time: Timestamp,
    /// Outputs of the current call to the operator, emitted as one batch.
    out: Vec<WindowedValue<D::Out>>,
    worker: usize,
}

/// A (key, window)'s cells as (name, bincode bytes).
type EncodedCells = Vec<(String, Vec<u8>)>;

/// A pending timer: key, window, family, tag, domain, firing time, output timestamp.
type EncodedTimer<K> = (K, Window, String, String, TimeDomain, Timestamp, Timestamp);

/// The serialized form of a [`StatefulOp`]'s state.
#[derive(Serialize, Deserialize)]
struct OpSnapshot<K, V> {
    cells: Vec<(K, Window, EncodedCells)>,
    timers: Vec<EncodedTimer<K>>,
    windows: Vec<(Timestamp, K, Window)>,
    buffer: Vec<(Timestamp, u64, K, Window, V)>,
    next_seq: u64,
    input_wm: Timestamp,
    processing_time: Timestamp,
}

enum Call<'a, V> {
    Element(V),
    Timer(&'a TimerFiring),
    Expire,
}

impl<D: StatefulDoFn> StatefulOp<D> {
    fn new(dofn: D, strategy: Arc<WindowingStrategy>, worker: usize) -> Self {
        StatefulOp {
            sorted_input: dofn.requires_time_sorted_input(),
            dofn,
            strategy,
            cells: foldhash::HashMap::default(),
            live_cells: 0,
            timers: BTreeMap::new(),
            event_queue: BTreeSet::new(),
            pt_queue: BTreeSet::new(),
            holds: BTreeMap::new(),
            windows: BTreeSet::new(),
            buffer: BTreeMap::new(),
            next_seq: 0,
            input_wm: Timestamp::MIN,
            processing_time: Timestamp::MIN,
            out: Vec::new(),
            worker,
        }
    }

    fn gc(&self, w: &Window) -> Timestamp {
        w.gc_time(self.strategy.allowed_lateness)
    }

    fn call(
        &mut self,
        key: &D::Key,
        window: Window,
        ts: Timestamp,
        hold: Timestamp,
        what: Call<'_, D::Value>,
        cx: &mut OpContext<'_>,
    ) -> OpResult {
        let gc = self.gc(&window);
        let ck = (key.clone(), window);
        if !self.cells.contains_key(&ck) {
            // A window with state is always in `windows`; one without may
            // not be yet.
            self.windows.insert((gc.next(), key.clone(), window));
        }
        let mut requests = Vec::new();
        let mut error = None;
        let cells = self.cells.entry(ck).or_default();
        let before = cells.len() as u64;
        {
            let mut scx = StateContext {
                key,
                window,
                timestamp: ts,
                hold,
                processing_time: self.processing_time,
                gc,
                cells,
                timers: &mut requests,
                out: &mut self.out,
                error: &mut error,
            };
            match what {
                Call::Element(v) => self.dofn.process(&mut scx, v),
                Call::Timer(t) => self.dofn.on_timer(&mut scx, t),
                Call::Expire => self.dofn.on_window_expiration(&mut scx),
            }
        }
        let after = cells.len() as u64;
        self.live_cells = self.live_cells + after - before;
        if after == 0 {
            self.cells.remove(&(key.clone(), window));
        }
        if let Some(e) = error {
            return Err(cx.error(e));
        }
        for r in requests {
            self.apply(key, window, r);
        }
        Ok(())
    }

    fn remove_timer(&mut self, k: &TimerKey<D::Key>) {
        if let Some((domain, target, output)) = self.timers.remove(k) {
            self.unindex_timer(k, domain, target, output);
        }
    }

    fn unindex_timer(&mut self, k: &TimerKey<D::Key>, domain: TimeDomain, target: Timestamp, output: Timestamp) {
        match domain {
            TimeDomain::EventTime => self.event_queue.remove(&(target, k.clone())),
            TimeDomain::ProcessingTime => self.pt_queue.remove(&(target, k.clone())),
        };
        match self.holds.get_mut(&output) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                self.holds.remove(&output);
            }
        }
    }

    fn insert_timer(&mut self, k: TimerKey<D::Key>, (domain, target, output): TimerState) {
        match domain {
            TimeDomain::EventTime => self.event_queue.insert((target, k.clone())),
            TimeDomain::ProcessingTime => self.pt_queue.insert((target, k.clone())),
        };
        *self.holds.entry(output).or_insert(0) += 1;
        self.timers.insert(k, (domain, target, output));
    }

    fn apply(&mut self, key: &D::Key, window: Window, r: TimerRequest) {
        let k: TimerKey<D::Key> = (key.clone(), window, r.family, r.tag);
        self.remove_timer(&k);
        if let Some((target, output)) = r.set {
            self.windows.insert((self.gc(&window).next(), key.clone(), window));
            self.insert_timer(k, (r.domain, target, output));
        }
    }

    /// The next buffered element that the watermark has released.
    fn next_released(&self) -> Option<Timestamp> {
        let (&(t, _), _) = self.buffer.first_key_value()?;
        (t + self.strategy.allowed_lateness < self.input_wm).then_some(t)
    }

    /// Release buffered elements and fire event-time timers before the input
    /// watermark, in timestamp order (an element before a timer at the same
    /// time).
    fn fire_event_time(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        loop {
            let element = self.next_released();
            let timer = self.event_queue.first().map(|(t, _)| *t).filter(|t| *t < self.input_wm);
            match (element, timer) {
                (Some(e), t) if t.is_none_or(|t| e <= t) => {
                    let ((ts, _), (key, window, value)) = self.buffer.pop_first().expect("a released element");
                    self.call(&key, window, ts, ts, Call::Element(value), cx)?;
                }
                (_, Some(_)) => self.fire_first(TimeDomain::EventTime, cx)?,
                _ => return Ok(()),
            }
        }
    }

    fn fire_processing_time(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        while self.pt_queue.first().is_some_and(|(t, _)| *t < self.processing_time) {
            self.fire_first(TimeDomain::ProcessingTime, cx)?;
        }
        Ok(())
    }

    fn fire_first(&mut self, domain: TimeDomain, cx: &mut OpContext<'_>) -> OpResult {
        let queue = match domain {
            TimeDomain::EventTime => &self.event_queue,
            TimeDomain::ProcessingTime => &self.pt_queue,
        };
        let Some((target, k)) = queue.first().cloned() else { return Ok(()) };
        let (_, _, output) = self.timers[&k];
        self.remove_timer(&k);
        let (key, window, family, tag) = k;
        if domain == TimeDomain::ProcessingTime && self.gc(&window) < self.input_wm {
            return Ok(()); // a processing-time timer of an expired window is ignored
        }
        let firing = TimerFiring { family, tag, domain, firing_timestamp: target, output_timestamp: output };
        self.call(&key, window, output, output, Call::Timer(&firing), cx)
    }

    fn expire(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        while let Some((at, key, window)) = self.windows.first().cloned() {
            if at >= self.input_wm {
                break;
            }
            self.call(&key, window, window.max_timestamp(), window.max_timestamp(), Call::Expire, cx)?;
            self.windows.remove(&(at, key.clone(), window));
            if let Some(cells) = self.cells.remove(&(key.clone(), window)) {
                self.live_cells -= cells.len() as u64;
            }
            let lower = (key.clone(), window, "", String::new());
            let stale: Vec<TimerKey<D::Key>> = self
                .timers
                .range((Bound::Included(lower), Bound::Unbounded))
                .map(|(k, _)| k)
                .take_while(|k| k.0 == key && k.1 == window)
                .cloned()
                .collect();
            for k in stale {
                self.remove_timer(&k);
            }
        }
        Ok(())
    }

    fn flush(&mut self, cx: &mut OpContext<'_>) {
        NodeCounters::add(&cx.counters.elements_out, self.out.len() as u64);
        if !self.out.is_empty() {
            cx.out.emit(0, std::mem::take(&mut self.out));
        }
        cx.counters.publish_state(self.worker, self.live_cells, self.timers.len() as u64);
    }
}

impl<D: StatefulDoFn> Operator for StatefulOp<D> {
    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let input = batch.into_vec::<(D::Key, D::Value)>()?;
        NodeCounters::add(&cx.counters.elements_in, input.len() as u64);
        // Elements are processed at the current processing time: timers due
        // before it fire first; relative timers use it.
        self.processing_time = self.processing_time.max(cx.processing_time);
        self.fire_processing_time(cx)?;
        let lateness = self.strategy.allowed_lateness;
        for v in input {
            if self.gc(&v.window) < self.input_wm {
                NodeCounters::add(&cx.counters.dropped_expired, 1);
                continue;
            }
            let (k, value) = v.value;
            if self.sorted_input {
                if v.timestamp + lateness < self.input_wm {
                    // Its place in the sorted order has already passed.
                    NodeCounters::add(&cx.counters.dropped_expired, 1);
                    continue;
                }
                self.buffer.insert((v.timestamp, self.next_seq), (k, v.window, value));
                self.next_seq += 1;
            } else {
                self.call(&k, v.window, v.timestamp, v.timestamp, Call::Element(value), cx)?;
            }
        }
        self.flush(cx);
        Ok(())
    }

    fn advance(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        self.processing_time = self.processing_time.max(cx.processing_time);
        self.fire_processing_time(cx)?;
        let wm = cx.input_watermark();
        if wm > self.input_wm {
            self.input_wm = wm;
            self.fire_event_time(cx)?;
            self.expire(cx)?;
        }
        self.flush(cx);
        Ok(())
    }

    fn hold(&self) -> Timestamp {
        let timers = self.holds.first_key_value().map_or(Timestamp::MAX, |(t, _)| *t);
        let buffered = self.buffer.first_key_value().map_or(Timestamp::MAX, |((t, _), _)| *t);
        timers.min(buffered)
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        self.pt_queue.first().map(|(t, _)| *t)
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        let snap = OpSnapshot::<D::Key, D::Value> {
            cells: self
                .cells
                .iter()
                .map(|((k, w), cells)| {
                    let mut named: Vec<(String, Vec<u8>)> =
                        cells.iter().map(|(n, c)| (n.to_string(), c.encode())).collect();
                    named.sort_by(|a, b| a.0.cmp(&b.0));
                    (k.clone(), *w, named)
                })
                .collect(),
            timers: self
                .timers
                .iter()
                .map(|((k, w, f, tag), (d, t, o))| (k.clone(), *w, f.to_string(), tag.clone(), *d, *t, *o))
                .collect(),
            windows: self.windows.iter().cloned().collect(),
            buffer: self.buffer.iter().map(|((t, s), (k, w, v))| (*t, *s, k.clone(), *w, v.clone())).collect(),
            next_seq: self.next_seq,
            input_wm: self.input_wm,
            processing_time: self.processing_time,
        };
        Some(bincode::serialize(&snap).expect("serializing a snapshot into memory cannot fail"))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), PipelineError> {
        let snap: OpSnapshot<D::Key, D::Value> = bincode::deserialize(bytes)
            .map_err(|e| PipelineError::Runner(format!("stateful operator: cannot restore a snapshot: {e}")))?;
        let mut op = StatefulOp::new(self.dofn.clone(), self.strategy.clone(), self.worker);
        for (k, w, named) in snap.cells {
            op.live_cells += named.len() as u64;
            let cells = named.into_iter().map(|(n, bytes)| (intern(&n), Cell::Encoded(bytes))).collect();
            op.cells.insert((k, w), cells);
        }
        for (k, w, f, tag, d, t, o) in snap.timers {
            op.insert_timer((k, w, intern(&f), tag), (d, t, o));
        }
        op.windows = snap.windows.into_iter().collect();
        op.buffer = snap.buffer.into_iter().map(|(t, s, k, w, v)| ((t, s), (k, w, v))).collect();
        op.next_seq = snap.next_seq;
        op.input_wm = snap.input_wm;
        op.processing_time = snap.processing_time;
        *self = op;
        Ok(())
    }
}

/// `par_do_stateful`.
pub trait StatefulExt<K: Key, V: Data> {
    /// Apply a [`StatefulDoFn`]: the input is partitioned by key, and state
    /// and timers are scoped to (key, window). Merging window functions are
    /// rejected when the pipeline is built.
    fn par_do_stateful<D: StatefulDoFn<Key = K, Value = V>>(&self, dofn: D) -> PCollection<D::Out>;
}

impl<K: Key, V: Data> StatefulExt<K, V> for PCollection<(K, V)> {
    fn par_do_stateful<D: StatefulDoFn<Key = K, Value = V>>(&self, dofn: D) -> PCollection<D::Out> {
        let p = self.pipeline().clone();
        let strategy = self.windowing().clone();
        let s2 = strategy.clone();
        let idx = p.add_node(
            "StatefulParDo",
            vec![self.as_input(Routing::by_key::<K, V>())],
            1,
            NodeKind::Operator(Arc::new(move |w: &WorkerInfo| {
                Box::new(StatefulOp::new(dofn.clone(), s2.clone(), w.index)) as Box<dyn Operator>
            })),
        );
        if strategy.window_fn.is_merging() {
            p.record_error(
                &p.node_name(idx),
                "stateful processing needs a non-merging window function (state is per window)",
            );
        }
        p.collection(idx, 0, strategy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::combine::Sum;
    use weir_model::FixedWindows;
    use weir_runtime::Emitter;

    const V: ValueState<u32> = ValueState::new("v");
    const B: BagState<u32> = BagState::new("b");
    const S: SetState<u32> = SetState::new("s");
    const M: MapState<u32, u32> = MapState::new("m");
    const L: OrderedListState<u32> = OrderedListState::new("l");
    const C: CombiningState<u32, Sum<u32>> = CombiningState::new("c", Sum::new_const());
    const FLUSH: TimerSpec = TimerSpec::event_time("flush");
    const TICK: TimerSpec = TimerSpec::processing_time("tick");

    /// Every state kind, event- and processing-time timers (one family
    /// with tags), window expiration, and optionally time-sorted input.
    #[derive(Clone)]
    struct Everything {
        sorted: bool,
    }

    fn summary(cx: &mut StateContext<'_, u32, String>, what: &str) -> String {
        let (k, w) = (*cx.key(), cx.window());
        let (v, b, s, m, l, c) = (V.read(cx), B.read(cx), S.read(cx), M.entries(cx), L.read(cx), C.read(cx));
        format!("{what} k={k} {w:?} v={v:?} b={b:?} s={s:?} m={m:?} l={l:?} c={c}")
    }

    impl StatefulDoFn for Everything {
        type Key = u32;
        type Value = u32;
        type Out = String;
        fn process(&mut self, cx: &mut StateContext<'_, u32, String>, x: u32) {
            let n = V.read(cx).unwrap_or(0);
            V.write(cx, n + 1);
            B.add(cx, x);
            S.add(cx, x % 3);
            M.put(cx, x % 2, x);
            let t = cx.timestamp();
            L.add(cx, x, t);
            C.add(cx, x);
            FLUSH.set_relative(cx, Duration::from_millis(3), None);
            if x % 4 == 0 {
                TICK.set_relative_tagged(cx, &format!("t{x}"), Duration::from_millis(5), None);
            }
            let line = format!("process {x}: n={n}");
            cx.output(line);
        }
        fn on_timer(&mut self, cx: &mut StateContext<'_, u32, String>, t: &TimerFiring) {
            let line = summary(cx, &format!("timer {} {}", t.family, t.tag));
            cx.output(line);
            if t.family == "flush" {
                B.clear(cx);
                let until = cx.timestamp();
                L.clear_range(cx, Timestamp::MIN, until);
            }
        }
        fn on_window_expiration(&mut self, cx: &mut StateContext<'_, u32, String>) {
            let line = summary(cx, "expire");
            cx.output(line);
        }
        fn requires_time_sorted_input(&self) -> bool {
            self.sorted
        }
    }

    enum Step {
        Data(Vec<(u32, u32, i64)>),
        Watermark(i64),
        ProcessingTime(i64),
    }

    fn script() -> Vec<Step> {
        use Step::*;
        let mut steps = vec![ProcessingTime(0)];
        for round in 0..6i64 {
            let base = round * 7;
            steps.push(Data(vec![
                (1, (base + 4) as u32, base + 4),
                (2, (base + 1) as u32, base + 1),
                (1, (base + 8) as u32, base + 2), // out of order
                (3, (base + 12) as u32, base + 6),
            ]));
            steps.push(ProcessingTime(round * 4 + 3));
            steps.push(Watermark(base + 3));
            steps.push(Data(vec![(2, 100 + round as u32, base - 20), (3, 200 + round as u32, base + 2)]));
            // expired; late
        }
        steps.push(ProcessingTime(1_000));
        steps.push(Watermark(Timestamp::MAX.millis()));
        steps
    }

    /// Runs the script through one operator instance, or through a fresh
    /// instance restored from a snapshot after every step. Returns the
    /// outputs (with timestamps and windows), the hold after every step and
    /// the dropped count.
    fn run(dofn: Everything, restart_every_step: bool) -> (Vec<String>, Vec<Timestamp>, u64) {
        let strategy = Arc::new(
            WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap())
                .allowed_lateness(Duration::from_millis(5)),
        );
        let windows = FixedWindows::of(Duration::from_millis(10)).unwrap();
        let mut op = StatefulOp::new(dofn.clone(), strategy.clone(), 0);
        let counters = NodeCounters::default();
        let error = Mutex::new(None);
        let (mut wm, mut pt) = (Timestamp::MIN, Timestamp::MIN);
        let (mut outputs, mut holds) = (Vec::new(), Vec::new());
        for step in script() {
            let mut emitter = Emitter::new(1);
            match &step {
                Step::Watermark(t) => wm = Timestamp::from_millis(*t),
                Step::ProcessingTime(t) => pt = Timestamp::from_millis(*t),
                Step::Data(_) => {}
            }
            let wms = [wm];
            let mut cx = OpContext {
                name: "StatefulParDo",
                out: &mut emitter,
                input_watermarks: &wms,
                processing_time: pt,
                stage_output_watermark: Timestamp::MAX,
                counters: &counters,
            };
            let result = match step {
                Step::Data(xs) => {
                    let batch = xs
                        .into_iter()
                        .map(|(k, x, t)| {
                            let t = Timestamp::from_millis(t);
                            let mut ws = Vec::new();
                            windows.assign_windows(t, &mut ws);
                            let w = ws[0];
                            WindowedValue::new((k, x), t, w, weir_model::PaneInfo::NO_FIRING)
                        })
                        .collect();
                    op.process(0, Batch::new(batch), &mut cx)
                }
                _ => op.advance(&mut cx),
            };
            if let Err(e) = result {
                error.lock().unwrap().get_or_insert(e);
            }
            for b in emitter.drain(0) {
                outputs.extend(
                    b.into_vec::<String>()
                        .unwrap()
                        .into_iter()
                        .map(|v| format!("{} @{} {:?}", v.value, v.timestamp, v.window)),
                );
            }
            holds.push(op.hold());
            if restart_every_step {
                let bytes = op.snapshot().expect("stateful operators are snapshottable");
                let mut fresh = StatefulOp::new(dofn.clone(), strategy.clone(), 0);
                fresh.restore(&bytes).unwrap();
                op = fresh;
            }
        }
        assert!(error.lock().unwrap().is_none(), "{:?}", error.lock().unwrap());
        assert_eq!((op.live_cells, op.timers.len(), op.buffer.len()), (0, 0, 0), "state left at the end");
        (outputs, holds, counters.snapshot().dropped_expired)
    }

    #[test]
    fn restored_snapshots_continue_exactly_like_an_uninterrupted_run() {
        for sorted in [false, true] {
            let (plain, plain_holds, plain_dropped) = run(Everything { sorted }, false);
            // The script exercises what a snapshot must carry.
            for what in ["process", "timer flush", "timer tick t", "expire"] {
                assert!(plain.iter().any(|l| l.starts_with(what)), "sorted={sorted}: no '{what}' in {plain:#?}");
            }
            assert!(plain_dropped > 0, "sorted={sorted}: nothing was late");
            if sorted {
                assert!(plain_holds.iter().any(|h| *h < Timestamp::MAX), "the sorted buffer never held");
            }
            let (restored, restored_holds, restored_dropped) = run(Everything { sorted }, true);
            assert_eq!(restored, plain, "sorted={sorted}");
            assert_eq!(restored_holds, plain_holds, "sorted={sorted}");
            assert_eq!(restored_dropped, plain_dropped, "sorted={sorted}");
        }
    }

    #[test]
    fn restore_rejects_garbage_and_plain_operators_are_not_snapshottable() {
        let strategy = Arc::new(WindowingStrategy::new(weir_model::GlobalWindows));
        let mut op = StatefulOp::new(Everything { sorted: false }, strategy, 0);
        assert!(op.restore(&[1, 2, 3]).is_err());
        struct Plain;
        impl Operator for Plain {
            fn process(&mut self, _port: usize, _batch: Batch, _cx: &mut OpContext<'_>) -> OpResult {
                Ok(())
            }
        }
        assert!(Plain.snapshot().is_none());
        assert!(Plain.restore(&[]).unwrap_err().to_string().contains("not snapshottable"));
    }
}
