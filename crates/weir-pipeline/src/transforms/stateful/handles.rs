//! State handles (declared as constants: [`ValueState`], [`BagState`],
//! [`SetState`], [`MapState`], [`OrderedListState`], [`CombiningState`])
//! and timers ([`TimerSpec`]) with Java's `SimpleDoFnRunner` timer rules.

use super::*;

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
            family: Cow::Borrowed(self.family),
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
        cx.timers.push(TimerRequest {
            family: Cow::Borrowed(self.family),
            tag: tag.to_string(),
            domain: self.domain,
            set: None,
        });
    }
}
