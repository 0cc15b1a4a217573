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

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::Arc;

use weir_model::{Duration, Timestamp, Window, WindowFn, WindowingStrategy};

use crate::batch::Batch;
use crate::data::{Data, Key, WindowedValue};
use crate::graph::{partition_by_key, NodeKind, PCollection};
use crate::operator::{NodeCounters, OpContext, Operator, WorkerInfo};
use crate::transforms::combine::CombineFn;

/// Which clock a timer follows.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
}

type Cells = HashMap<&'static str, Box<dyn Any + Send>>;

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

    fn cell<T: Send + 'static>(&mut self, name: &'static str) -> Option<&mut T> {
        let slot = self.cells.get_mut(name)?;
        match slot.downcast_mut::<T>() {
            Some(v) => Some(v),
            None => {
                self.error.get_or_insert(format!("state '{name}' is declared with two different types"));
                None
            }
        }
    }

    fn cell_or_default<T: Default + Send + 'static>(&mut self, name: &'static str) -> Option<&mut T> {
        if !self.cells.contains_key(name) {
            self.cells.insert(name, Box::new(T::default()));
        }
        self.cell::<T>(name)
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
        cx.cells.insert(self.name, Box::new(v));
    }
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.cells.remove(self.name);
    }
}

impl<T: Data> BagState<T> {
    /// Add a value.
    pub fn add<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, v: T) {
        if let Some(bag) = cx.cell_or_default::<Vec<T>>(self.name) {
            bag.push(v);
        }
    }
    /// Every value added since the last clear.
    pub fn read<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> Vec<T> {
        cx.cell::<Vec<T>>(self.name).cloned().unwrap_or_default()
    }
    /// Whether it is empty.
    pub fn is_empty<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> bool {
        cx.cell::<Vec<T>>(self.name).is_none_or(|b| b.is_empty())
    }
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.cells.remove(self.name);
    }
}

impl<T: Key> SetState<T> {
    /// Add a value; true if it was not there.
    pub fn add<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, v: T) -> bool {
        cx.cell_or_default::<BTreeSet<T>>(self.name).is_some_and(|s| s.insert(v))
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
            cx.cells.remove(self.name);
        }
    }
    /// Every value, in order.
    pub fn read<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> Vec<T> {
        cx.cell::<BTreeSet<T>>(self.name).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.cells.remove(self.name);
    }
}

impl<MK: Key, V: Data> MapState<MK, V> {
    /// Put `k → v`; returns the previous value.
    pub fn put<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, k: MK, v: V) -> Option<V> {
        cx.cell_or_default::<BTreeMap<MK, V>>(self.name).and_then(|m| m.insert(k, v))
    }
    /// The value of `k`.
    pub fn get<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, k: &MK) -> Option<V> {
        cx.cell::<BTreeMap<MK, V>>(self.name).and_then(|m| m.get(k).cloned())
    }
    /// Remove `k`.
    pub fn remove<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, k: &MK) -> Option<V> {
        cx.cell::<BTreeMap<MK, V>>(self.name).and_then(|m| m.remove(k))
    }
    /// Every entry, in key order.
    pub fn entries<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> Vec<(MK, V)> {
        cx.cell::<BTreeMap<MK, V>>(self.name)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.cells.remove(self.name);
    }
}

impl<T: Data> OrderedListState<T> {
    /// Add a value at a timestamp.
    pub fn add<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, v: T, t: Timestamp) {
        if let Some(l) = cx.cell_or_default::<BTreeMap<Timestamp, Vec<T>>>(self.name) {
            l.entry(t).or_default().push(v);
        }
    }
    /// Entries with `min ≤ t < limit`, in timestamp order.
    pub fn read_range<K, O: Data>(
        &self,
        cx: &mut StateContext<'_, K, O>,
        min: Timestamp,
        limit: Timestamp,
    ) -> Vec<(T, Timestamp)> {
        cx.cell::<BTreeMap<Timestamp, Vec<T>>>(self.name)
            .map(|l| l.range(min..limit).flat_map(|(t, vs)| vs.iter().map(move |v| (v.clone(), *t))).collect())
            .unwrap_or_default()
    }
    /// Every entry, in timestamp order.
    pub fn read<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) -> Vec<(T, Timestamp)> {
        self.read_range(cx, Timestamp::MIN, Timestamp::MAX)
    }
    /// Remove entries with `min ≤ t < limit`.
    pub fn clear_range<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, min: Timestamp, limit: Timestamp) {
        let empty = cx.cell::<BTreeMap<Timestamp, Vec<T>>>(self.name).map(|l| {
            let keep = l.split_off(&limit);
            l.retain(|t, _| *t < min);
            l.extend(keep);
            l.is_empty()
        });
        if empty == Some(true) {
            cx.cells.remove(self.name);
        }
    }
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.cells.remove(self.name);
    }
}

/// A value folded with a [`CombineFn`].
pub struct CombiningState<I, C> {
    name: &'static str,
    combine: C,
    _i: PhantomData<fn(I)>,
}

impl<I, C: CombineFn<I>> CombiningState<I, C> {
    /// A handle to the combining cell `name`, folding with `combine`.
    pub const fn new(name: &'static str, combine: C) -> Self {
        CombiningState { name, combine, _i: PhantomData }
    }
    /// Add an input.
    pub fn add<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, v: I) {
        if !cx.cells.contains_key(self.name) {
            cx.cells.insert(self.name, Box::new(self.combine.create_accumulator()));
        }
        if let Some(acc) = cx.cell::<C::Acc>(self.name) {
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
    /// Clear it.
    pub fn clear<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>) {
        cx.cells.remove(self.name);
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
    fn request<K, O: Data>(
        &self,
        cx: &mut StateContext<'_, K, O>,
        tag: &str,
        target: Timestamp,
        output: Option<Timestamp>,
    ) {
        let default_output = match self.domain {
            TimeDomain::EventTime => target,
            TimeDomain::ProcessingTime => cx.hold,
        };
        let output = output.unwrap_or(default_output);
        if self.domain == TimeDomain::EventTime && target > cx.gc {
            return cx.fail(format!(
                "timer '{}' set to {target}, after the window's garbage-collection time {}",
                self.family, cx.gc
            ));
        }
        if output < cx.hold || output > cx.gc || (self.domain == TimeDomain::EventTime && output > target) {
            return cx.fail(format!(
                "timer '{}': output timestamp {output} must be between {} and the {} {}",
                self.family,
                cx.hold,
                if self.domain == TimeDomain::EventTime { "firing time" } else { "garbage-collection time" },
                if self.domain == TimeDomain::EventTime { target } else { cx.gc }
            ));
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
            return cx.fail(format!("processing-time timer '{}' can only be set relative to now", self.family));
        }
        self.request(cx, tag, target, None)
    }
    /// Fire `offset` after the element's timestamp (event time, clamped to
    /// the window's GC time) or after now (processing time), rounded up to a
    /// multiple of `align` if given.
    pub fn set_relative<K, O: Data>(&self, cx: &mut StateContext<'_, K, O>, offset: Duration, align: Option<Duration>) {
        let base = match self.domain {
            TimeDomain::EventTime => cx.timestamp,
            TimeDomain::ProcessingTime => cx.processing_time,
        };
        let mut target = base + offset;
        if let Some(a) = align.filter(|a| a.millis() > 0) {
            let r = target.millis().rem_euclid(a.millis());
            if r != 0 {
                target = target + Duration::from_millis(a.millis() - r);
            }
        }
        if self.domain == TimeDomain::EventTime {
            target = target.min(cx.gc);
        }
        self.request(cx, "", target, None)
    }
    /// `set` with an explicit output timestamp (checked against the model's rules).
    pub fn set_with_output_timestamp<K, O: Data>(
        &self,
        cx: &mut StateContext<'_, K, O>,
        target: Timestamp,
        output: Timestamp,
    ) {
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

type TimerKey<K> = (K, Window, &'static str, String);

struct StatefulOp<D: StatefulDoFn> {
    dofn: D,
    strategy: Arc<WindowingStrategy>,
    cells: HashMap<(D::Key, Window), Cells>,
    /// (key, window, family, tag) → (domain, target, output)
    timers: HashMap<TimerKey<D::Key>, (TimeDomain, Timestamp, Timestamp)>,
    event_queue: BTreeSet<(Timestamp, TimerKey<D::Key>)>,
    pt_queue: BTreeSet<(Timestamp, TimerKey<D::Key>)>,
    holds: BTreeMap<Timestamp, usize>,
    /// Windows with state or timers, by expiration time (GC + 1 ms).
    windows: BTreeSet<(Timestamp, D::Key, Window)>,
    input_wm: Timestamp,
    processing_time: Timestamp,
    worker: usize,
}

enum Call<'a, V> {
    Element(V),
    Timer(&'a TimerFiring),
    Expire,
}

impl<D: StatefulDoFn> StatefulOp<D> {
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
    ) {
        let gc = self.gc(&window);
        self.windows.insert((gc.next(), key.clone(), window));
        let mut requests = Vec::new();
        let mut out = Vec::new();
        let mut error = None;
        {
            let cells = self.cells.entry((key.clone(), window)).or_default();
            let mut scx = StateContext {
                key,
                window,
                timestamp: ts,
                hold,
                processing_time: self.processing_time,
                gc,
                cells,
                timers: &mut requests,
                out: &mut out,
                error: &mut error,
            };
            match what {
                Call::Element(v) => self.dofn.process(&mut scx, v),
                Call::Timer(t) => self.dofn.on_timer(&mut scx, t),
                Call::Expire => self.dofn.on_window_expiration(&mut scx),
            }
        }
        if self.cells.get(&(key.clone(), window)).is_some_and(|c| c.is_empty()) {
            self.cells.remove(&(key.clone(), window));
        }
        if let Some(e) = error {
            cx.fail_with(e);
        }
        for r in requests {
            self.apply(key, window, r);
        }
        NodeCounters::add(&cx.counters.elements_out, out.len() as u64);
        cx.out.emit(0, out);
    }

    fn remove_timer(&mut self, k: &TimerKey<D::Key>) {
        if let Some((domain, target, output)) = self.timers.remove(k) {
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
    }

    fn apply(&mut self, key: &D::Key, window: Window, r: TimerRequest) {
        let k: TimerKey<D::Key> = (key.clone(), window, r.family, r.tag);
        self.remove_timer(&k);
        if let Some((target, output)) = r.set {
            self.timers.insert(k.clone(), (r.domain, target, output));
            match r.domain {
                TimeDomain::EventTime => self.event_queue.insert((target, k)),
                TimeDomain::ProcessingTime => self.pt_queue.insert((target, k)),
            };
            *self.holds.entry(output).or_insert(0) += 1;
        }
    }

    fn fire(&mut self, domain: TimeDomain, cx: &mut OpContext<'_>) {
        loop {
            let (queue, now) = match domain {
                TimeDomain::EventTime => (&self.event_queue, self.input_wm),
                TimeDomain::ProcessingTime => (&self.pt_queue, self.processing_time),
            };
            let Some((target, k)) = queue.first().cloned() else { break };
            if target >= now {
                break;
            }
            let (_, _, output) = self.timers[&k];
            self.remove_timer(&k);
            let (key, window, family, tag) = k;
            if domain == TimeDomain::ProcessingTime && self.gc(&window) < self.input_wm {
                continue; // a processing-time timer of an expired window is ignored
            }
            let firing = TimerFiring { family, tag, domain, firing_timestamp: target, output_timestamp: output };
            self.call(&key, window, output, output, Call::Timer(&firing), cx);
        }
    }

    fn expire(&mut self, cx: &mut OpContext<'_>) {
        while let Some((at, key, window)) = self.windows.first().cloned() {
            if at >= self.input_wm {
                break;
            }
            self.windows.pop_first();
            self.call(&key, window, window.max_timestamp(), window.max_timestamp(), Call::Expire, cx);
            self.windows.remove(&(at, key.clone(), window));
            self.cells.remove(&(key.clone(), window));
            let stale: Vec<TimerKey<D::Key>> =
                self.timers.keys().filter(|k| k.0 == key && k.1 == window).cloned().collect();
            for k in stale {
                self.remove_timer(&k);
            }
        }
        self.publish(cx);
    }

    fn publish(&self, cx: &OpContext<'_>) {
        let cells = self.cells.values().map(|c| c.len() as u64).sum();
        cx.counters.publish_state(self.worker, cells, self.timers.len() as u64);
    }
}

impl<D: StatefulDoFn> Operator for StatefulOp<D> {
    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) {
        let input = batch.into_vec::<(D::Key, D::Value)>();
        NodeCounters::add(&cx.counters.elements_in, input.len() as u64);
        // Processing time is an input of every call; relative timers use it.
        self.processing_time = self.processing_time.max(cx.processing_time);
        for v in input {
            if self.gc(&v.window) < self.input_wm {
                NodeCounters::add(&cx.counters.dropped_expired, 1);
                continue;
            }
            let (k, value) = v.value;
            self.call(&k, v.window, v.timestamp, v.timestamp, Call::Element(value), cx);
        }
        self.publish(cx);
    }

    fn advance(&mut self, cx: &mut OpContext<'_>) {
        self.processing_time = self.processing_time.max(cx.processing_time);
        self.fire(TimeDomain::ProcessingTime, cx);
        let wm = cx.input_watermark();
        if wm > self.input_wm {
            self.input_wm = wm;
            self.fire(TimeDomain::EventTime, cx);
            self.expire(cx);
        }
        self.publish(cx);
    }

    fn hold(&self) -> Timestamp {
        self.holds.first_key_value().map_or(Timestamp::MAX, |(t, _)| *t)
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        self.pt_queue.first().map(|(t, _)| *t)
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
            vec![self.as_input(partition_by_key::<K, V>())],
            1,
            NodeKind::Operator(Arc::new(move |w: &WorkerInfo| {
                Box::new(StatefulOp {
                    dofn: dofn.clone(),
                    strategy: s2.clone(),
                    cells: HashMap::new(),
                    timers: HashMap::new(),
                    event_queue: BTreeSet::new(),
                    pt_queue: BTreeSet::new(),
                    holds: BTreeMap::new(),
                    windows: BTreeSet::new(),
                    input_wm: Timestamp::MIN,
                    processing_time: Timestamp::MIN,
                    worker: w.index,
                }) as Box<dyn Operator>
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
