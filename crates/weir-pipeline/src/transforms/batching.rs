//! `Deduplicate` and `GroupIntoBatches`, built as Beam builds them: on a
//! stateful DoFn with a timer, so that they run on every runner, keep
//! their state in checkpoints and scale with the key.

use std::marker::PhantomData;

use weir_model::Duration;

use crate::transforms::elementwise::{ElementwiseExt, KvElementwiseExt};
use crate::transforms::stateful::{
    BagState, StateContext, StatefulDoFn, StatefulExt, TimeDomain, TimerFiring, TimerSpec, ValueState,
};
use crate::{Data, Key, PCollection};

/// Beam's default time-to-live of `Deduplicate`: 10 minutes.
pub const DEFAULT_DEDUPLICATE_TTL: Duration = Duration::from_millis(10 * 60 * 1000);

/// How long a seen element (or key) is remembered, and on which clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dedup {
    /// Processing time (Beam's default) or event time.
    pub domain: TimeDomain,
    /// How long after the first occurrence a repeat is still dropped.
    pub ttl: Duration,
}

impl Default for Dedup {
    /// Beam's `Deduplicate` default: 10 minutes of processing time.
    fn default() -> Self {
        Dedup { domain: TimeDomain::ProcessingTime, ttl: DEFAULT_DEDUPLICATE_TTL }
    }
}

impl Dedup {
    /// Remember for `ttl` of processing time.
    pub fn processing_time(ttl: Duration) -> Self {
        Dedup { domain: TimeDomain::ProcessingTime, ttl }
    }
    /// Remember for `ttl` of event time after the first occurrence's
    /// timestamp (until the input watermark passes it).
    pub fn event_time(ttl: Duration) -> Self {
        Dedup { domain: TimeDomain::EventTime, ttl }
    }
}

const SEEN: ValueState<bool> = ValueState::new("seen");
const EXPIRY_EVENT: TimerSpec = TimerSpec::event_time("expiry");
const EXPIRY_PROCESSING: TimerSpec = TimerSpec::processing_time("expiry");

/// Keeps the first value of each key and window until the time-to-live
/// has passed.
struct FirstPerKey<K, V> {
    dedup: Dedup,
    _t: PhantomData<fn(K, V)>,
}

impl<K, V> Clone for FirstPerKey<K, V> {
    fn clone(&self) -> Self {
        FirstPerKey { dedup: self.dedup, _t: PhantomData }
    }
}

impl<K: Key, V: Data> StatefulDoFn for FirstPerKey<K, V> {
    type Key = K;
    type Value = V;
    type Out = (K, V);
    fn process(&mut self, cx: &mut StateContext<'_, K, (K, V)>, v: V) {
        if SEEN.read(cx).is_some() {
            return;
        }
        SEEN.write(cx, true);
        match self.dedup.domain {
            // Fires at the element's time + TTL, ahead of the input
            // watermark until then: it holds nothing back.
            TimeDomain::EventTime => EXPIRY_EVENT.set_relative(cx, self.dedup.ttl, None),
            // By default a processing-time timer holds the output watermark
            // at the element's timestamp until it fires, which would delay
            // every window downstream by the TTL. It emits nothing, so its
            // hold goes to the window's end instead (Beam's Deduplicate
            // uses no output timestamp for the same reason).
            TimeDomain::ProcessingTime => {
                let end = cx.window().max_timestamp();
                EXPIRY_PROCESSING.set_relative_with_output_timestamp(cx, self.dedup.ttl, None, end)
            }
        }
        let k = cx.key().clone();
        cx.output((k, v));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, K, (K, V)>, _timer: &TimerFiring<'_>) {
        SEEN.clear(cx);
    }
}

/// `deduplicate`: repeats of an element dropped (Beam's `Deduplicate.values`).
pub trait DeduplicateExt<T: Key> {
    /// Each element the first time it occurs in its window; a repeat is
    /// dropped while the first occurrence is remembered: for
    /// `dedup.ttl` of processing time or event time after it. Unlike
    /// [`distinct`](crate::transforms::DistinctExt::distinct), which waits
    /// for its window's trigger, the first occurrence is output at once,
    /// with its own timestamp.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// use weir_pipeline::transforms::batching::Dedup;
    /// let p = Pipeline::new();
    /// let once = p.create(["a", "b", "a", "a"].map(String::from)).deduplicate(Dedup::default()).collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// let mut got = once.values();
    /// got.sort();
    /// assert_eq!(got, vec!["a".to_string(), "b".to_string()]);
    /// ```
    fn deduplicate(&self, dedup: Dedup) -> PCollection<T>;
}

impl<T: Key> DeduplicateExt<T> for PCollection<T> {
    fn deduplicate(&self, dedup: Dedup) -> PCollection<T> {
        self.map(|v| (v, ()))
            .named("Deduplicate/Key")
            .par_do_stateful(FirstPerKey { dedup, _t: PhantomData })
            .named("Deduplicate")
            .keys()
            .named("Deduplicate/Values")
    }
}

/// `deduplicate_keys`: one value per key (Beam's `Deduplicate.keyedValues`).
pub trait KvDeduplicateExt<K: Key, V: Data> {
    /// The first (key, value) of each key in its window; later values of
    /// the key are dropped while it is remembered (see
    /// [`Dedup`]).
    fn deduplicate_keys(&self, dedup: Dedup) -> PCollection<(K, V)>;
}

impl<K: Key, V: Data> KvDeduplicateExt<K, V> for PCollection<(K, V)> {
    fn deduplicate_keys(&self, dedup: Dedup) -> PCollection<(K, V)> {
        self.par_do_stateful(FirstPerKey { dedup, _t: PhantomData }).named("DeduplicateKeys")
    }
}

/// How [`group_into_batches`](GroupIntoBatchesExt::group_into_batches)
/// cuts batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// A batch is emitted once it has this many values (at least 1).
    pub size: usize,
    /// And at the latest this long (processing time) after its first value
    /// arrived (Beam's `withMaxBufferingDuration`).
    pub max_buffering: Option<Duration>,
}

impl Batching {
    /// Batches of `size` values (the last of a window may be smaller).
    pub fn of_size(size: usize) -> Self {
        Batching { size: size.max(1), max_buffering: None }
    }
    /// Emit a batch at the latest `d` of processing time after its first value.
    pub fn max_buffering(mut self, d: Duration) -> Self {
        self.max_buffering = Some(d);
        self
    }
}

const BUFFER_COUNT: ValueState<usize> = ValueState::new("count");
const END_OF_WINDOW: TimerSpec = TimerSpec::event_time("end-of-window");
const BUFFERING: TimerSpec = TimerSpec::processing_time("buffering");

/// Buffers each key's values and emits them in batches.
struct Batcher<K, V> {
    batching: Batching,
    _t: PhantomData<fn(K, V)>,
}

impl<K, V> Clone for Batcher<K, V> {
    fn clone(&self) -> Self {
        Batcher { batching: self.batching, _t: PhantomData }
    }
}

impl<K: Key, V: Data> Batcher<K, V> {
    const BUFFER: BagState<V> = BagState::new("buffer");

    fn flush(&self, cx: &mut StateContext<'_, K, (K, Vec<V>)>) {
        let batch = Self::BUFFER.read(cx);
        Self::BUFFER.clear(cx);
        BUFFER_COUNT.clear(cx);
        if self.batching.max_buffering.is_some() {
            BUFFERING.clear(cx);
        }
        if !batch.is_empty() {
            let k = cx.key().clone();
            cx.output((k, batch));
        }
    }
}

impl<K: Key, V: Data> StatefulDoFn for Batcher<K, V> {
    type Key = K;
    type Value = V;
    type Out = (K, Vec<V>);
    fn process(&mut self, cx: &mut StateContext<'_, K, (K, Vec<V>)>, v: V) {
        let count = BUFFER_COUNT.read(cx).unwrap_or(0);
        if count == 0 {
            // What is left of the window is emitted when its end passes.
            let end = cx.window().max_timestamp();
            END_OF_WINDOW.set(cx, end);
            if let Some(d) = self.batching.max_buffering {
                BUFFERING.set_relative(cx, d, None);
            }
        }
        Self::BUFFER.add(cx, v);
        BUFFER_COUNT.write(cx, count + 1);
        if count + 1 >= self.batching.size {
            self.flush(cx);
        }
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, K, (K, Vec<V>)>, _timer: &TimerFiring<'_>) {
        self.flush(cx);
    }
    fn on_window_expiration(&mut self, cx: &mut StateContext<'_, K, (K, Vec<V>)>) {
        self.flush(cx);
    }
}

/// `group_into_batches`: each key's values in batches (Beam's `GroupIntoBatches`).
pub trait GroupIntoBatchesExt<K: Key, V: Data> {
    /// Per key and window, the values in batches of `batching.size`, each
    /// emitted as soon as it is full; the rest of a window's values when
    /// the watermark passes the window's end, or, with
    /// [`max_buffering`](Batching::max_buffering), once a batch has waited
    /// that long. Every value is in exactly one batch.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// use weir_pipeline::transforms::batching::Batching;
    /// let p = Pipeline::new();
    /// let pairs = p.create((0u32..5).map(|i| ("k".to_string(), i)).collect::<Vec<_>>());
    /// let batches = pairs.group_into_batches(Batching::of_size(2)).collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// let mut sizes: Vec<usize> = batches.values().iter().map(|(_, b)| b.len()).collect();
    /// sizes.sort();
    /// assert_eq!(sizes, vec![1, 2, 2]);
    /// ```
    fn group_into_batches(&self, batching: Batching) -> PCollection<(K, Vec<V>)>;
}

impl<K: Key, V: Data> GroupIntoBatchesExt<K, V> for PCollection<(K, V)> {
    fn group_into_batches(&self, batching: Batching) -> PCollection<(K, Vec<V>)> {
        let batching = Batching { size: batching.size.max(1), ..batching };
        self.par_do_stateful(Batcher { batching, _t: PhantomData }).named("GroupIntoBatches")
    }
}
