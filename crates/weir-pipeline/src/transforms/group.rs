//! Where, when and how: `window_into`, `group_by_key`, `combine_per_key`,
//! `combine_globally`, `count_per_key` and `co_group_by_key`, all running the
//! model's grouping state machine (`weir_model::GroupAlsoByWindow`).

use foldhash::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_model::{
    AccumulationMode, Aggregator, Buffer, DropReason, GroupAlsoByWindow, GroupOutput, PaneInfo, Timestamp,
    TimestampCombiner, Trigger, Window, WindowFn, WindowingStrategy,
};

use crate::graph::PCollection;
use crate::transforms::combine::{CombineAggregator, CombineFn, Count, Partial, PartialAggregator};
use crate::transforms::elementwise::{apply_fn, DoFn, ElementwiseExt, KvElementwiseExt, ProcessContext};
use crate::transforms::other::FlattenExt;
use crate::transforms::side::{SideInput, SideInputExt, SideParDoExt};
use weir_model::grouping::{GroupSnapshot, KeyStateOf};
use weir_runtime::batch::Batch;
use weir_runtime::data::{Data, Key, WindowedValue};
use weir_runtime::{
    key_hash, keyed::KeyedWriter, FailedOperator, KeyedSnapshot, NodeCounters, OpContext, OpResult, Operator,
    PipelineError, Rescale, StateBackend, WorkerInfo,
};
use weir_runtime::{NodeKind, Routing};
use weir_state::BackendKeys;

/// `window_into`: assign windows and set the windowing strategy.
pub trait WindowExt<T: Data> {
    /// Assign every element to its windows with the strategy's window
    /// function (one output element per window) and use the strategy for
    /// later groupings. An invalid strategy (for example a trigger that may
    /// drop data without `allow_data_loss`) is reported when the pipeline
    /// is built, naming this transform.
    fn window_into(&self, strategy: WindowingStrategy) -> PCollection<T>;
}

impl<T: Data> WindowExt<T> for PCollection<T> {
    fn window_into(&self, strategy: WindowingStrategy) -> PCollection<T> {
        let wfn = strategy.window_fn.clone();
        let out = apply_fn(
            self,
            "WindowInto",
            Routing::Forward,
            move |v: WindowedValue<T>, out: &mut Vec<WindowedValue<T>>| {
                let mut windows = Vec::with_capacity(1);
                wfn.assign_windows(v.timestamp, &mut windows);
                if let Some((&last, rest)) = windows.split_last() {
                    for &w in rest {
                        out.push(WindowedValue::new(v.value.clone(), v.timestamp, w, PaneInfo::NO_FIRING));
                    }
                    out.push(WindowedValue::new(v.value, v.timestamp, last, PaneInfo::NO_FIRING));
                }
                Ok(())
            },
        );
        if let Err(e) = strategy.validate() {
            out.pipeline().record_error(&out.producer_name(), e.to_string());
        }
        out.pipeline().collection(out.node, out.port, Arc::new(strategy))
    }
}

/// A pane's contents in accumulating-and-retracting mode: a new value, or the
/// retraction of a value emitted earlier (same key, window, timestamp, pane).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Retractable<T> {
    /// A new pane.
    Add(T),
    /// Withdraws an earlier pane.
    Retract(T),
}

/// A grouping whose keys' states are kept by the run's state backend.
type BackendGrouping<K, V, A> = GroupAlsoByWindow<K, V, A, BackendKeys<K, KeyStateOf<V, A>>>;

struct GroupOp<K, V, A: Aggregator<V>, O> {
    gbw: BackendGrouping<K, V, A>,
    /// Where the keys' states are kept.
    backend: StateBackend,
    /// What the grouping was made from (to restore a snapshot).
    strategy: WindowingStrategy,
    agg: A,
    by_key: HashMap<K, Vec<(V, Timestamp, Window)>>,
    scratch: Vec<GroupOutput<K, V, A::Out>>,
    wrap: fn(A::Out, bool) -> O,
    /// For inputs that stand for several elements (partial accumulators):
    /// how many each is, so drops are counted in elements. The grouping
    /// then reports drops as outputs, which are counted, not emitted.
    weigh: Option<fn(&V) -> u64>,
}

impl<K: Key, V: Data, A: Aggregator<V> + Clone + Send, O: Data> GroupOp<K, V, A, O>
where
    A::Acc: Data,
    A::Out: Data,
{
    fn flush(&mut self, cx: &mut OpContext<'_>) {
        if self.scratch.is_empty() {
            return;
        }
        let mut panes = Vec::new();
        let mut dropped = Vec::new();
        for o in self.scratch.drain(..) {
            match o {
                GroupOutput::Pane(p) => panes.push(WindowedValue::new(
                    (p.key, (self.wrap)(p.value, p.retraction)),
                    p.timestamp,
                    p.window,
                    p.pane,
                )),
                GroupOutput::Dropped(d) => match self.weigh {
                    Some(weigh) => {
                        let counter = match d.reason {
                            DropReason::ExpiredWindow => &cx.counters.dropped_expired,
                            DropReason::ClosedWindow => &cx.counters.dropped_closed,
                        };
                        NodeCounters::add(counter, weigh(&d.value));
                    }
                    None => {
                        dropped.push(WindowedValue::new((d.key, d.value), d.timestamp, d.window, PaneInfo::NO_FIRING))
                    }
                },
            }
        }
        NodeCounters::add(&cx.counters.elements_out, panes.len() as u64);
        cx.out.emit(0, panes);
        cx.out.emit(1, dropped);
    }

    /// A failure of the state backend ends the job before anything the
    /// last call emitted leaves the operator.
    fn check_store(&mut self) -> OpResult {
        match self.gbw.store_mut().take_error() {
            Some(e) => Err(PipelineError::Runner(e)),
            None => Ok(()),
        }
    }

    fn sync_counters(&mut self, cx: &OpContext<'_>, before: weir_model::GroupCounters) {
        if self.weigh.is_some() {
            return; // counted by weight in `flush`
        }
        let after = self.gbw.counters();
        NodeCounters::add(&cx.counters.dropped_expired, after.dropped_expired - before.dropped_expired);
        NodeCounters::add(&cx.counters.dropped_closed, after.dropped_closed - before.dropped_closed);
    }
}

/// Windows a grouping fires per call to `advance` (see `GroupOp::advance`).
const FIRE_AT_ONCE: usize = 8192;

/// The keys' store of `backend`.
fn open_store<K, S>(backend: &StateBackend) -> Result<BackendKeys<K, S>, PipelineError> {
    BackendKeys::open(backend).map_err(|e| PipelineError::Runner(e.to_string()))
}

/// The format of a grouping's snapshot (bump on any change of
/// `GroupSnapshot` or of this envelope). Format 2: a [`KeyedSnapshot`]
/// whose meta is the grouping's `GroupSnapshot` without windows and whose
/// keys are each key's [`KeyState`](weir_model::KeyState), both bincode.
const GROUP_SNAPSHOT_FORMAT: u32 = 2;

type Meta<K, A, V> = GroupSnapshot<K, <A as Aggregator<V>>::Acc, <A as Aggregator<V>>::Out>;

fn snapshot_error(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Runner(format!("a grouping cannot restore this snapshot: {e}"))
}

/// A grouping's snapshot decoded: its meta, and each key with its
/// encoded state.
type DecodedGroup<K, Acc, Out> = (GroupSnapshot<K, Acc, Out>, Vec<(K, Vec<u8>)>);

/// A grouping snapshot's meta (what belongs to no key), checked for its format.
fn decode_meta<K: Key, Acc: Data, Out: Data>(meta: &[u8]) -> Result<GroupSnapshot<K, Acc, Out>, PipelineError> {
    let (format, meta): (u32, GroupSnapshot<K, Acc, Out>) = bincode::deserialize(meta).map_err(snapshot_error)?;
    if format != GROUP_SNAPSHOT_FORMAT {
        return Err(PipelineError::Runner(format!(
            "a grouping snapshot of format {format}; this Weir reads format {GROUP_SNAPSHOT_FORMAT}"
        )));
    }
    Ok(meta)
}

fn decode_group_snapshot<K: Key, Acc: Data, Out: Data>(
    bytes: &[u8],
) -> Result<DecodedGroup<K, Acc, Out>, PipelineError> {
    let keyed = KeyedSnapshot::decode(bytes)?;
    let meta = decode_meta(&keyed.meta)?;
    let mut keys = Vec::with_capacity(keyed.keys.len());
    for (k, v) in keyed.keys {
        let v = v.ok_or_else(|| snapshot_error("a whole snapshot with a removed key"))?;
        keys.push((bincode::deserialize(&k).map_err(snapshot_error)?, v));
    }
    Ok((meta, keys))
}

impl<K: Key, V: Data, A: Aggregator<V> + Clone + Send, O: Data> GroupOp<K, V, A, O>
where
    A::Acc: Data,
    A::Out: Data,
{
    fn encode_meta(&self) -> Result<Vec<u8>, PipelineError> {
        bincode::serialize(&(GROUP_SNAPSHOT_FORMAT, self.gbw.meta_snapshot()))
            .map_err(|e| PipelineError::Internal(format!("serializing a grouping's snapshot: {e}")))
    }

    fn store_error(&self) -> OpResult {
        match self.gbw.store().peek_error() {
            Some(e) => Err(PipelineError::Runner(e)),
            None => Ok(()),
        }
    }

    /// Restore from a meta and keys (states encoded as the store encodes them).
    fn restore_keys(&mut self, meta: Meta<K, A, V>, keys: Vec<(K, Vec<u8>)>) -> OpResult {
        let store = open_store(&self.backend)?;
        self.gbw = GroupAlsoByWindow::restore_with(self.strategy.clone(), self.agg.clone(), store, meta)
            .map_err(|e| PipelineError::Runner(format!("restoring a grouping: {e}")))?;
        for (k, v) in keys {
            let state: KeyStateOf<V, A> = bincode::deserialize(&v).map_err(snapshot_error)?;
            self.gbw.restore_key(&k, state).map_err(|e| PipelineError::Runner(format!("restoring a grouping: {e}")))?;
        }
        self.check_store()
    }
}

impl<K: Key, V: Data, A: Aggregator<V> + Clone + Send, O: Data> Operator for GroupOp<K, V, A, O>
where
    A::Acc: Data,
    A::Out: Data,
{
    /// Every key (a [`KeyedSnapshot`], written key by key into a buffer
    /// of its exact size, the LSM's bytes as they are on disk: a whole
    /// snapshot is held once, as bytes).
    fn snapshot(&self) -> Result<Vec<u8>, PipelineError> {
        let store = self.gbw.store();
        let mut out = KeyedWriter::with_capacity(&self.encode_meta()?, store.encoded_size());
        store.for_each_encoded(&mut |k, state| out.push(k, Some(state)));
        self.store_error()?;
        Ok(out.finish())
    }

    /// A whole snapshot; the keys touched from now on are tracked for the
    /// next [`snapshot_changes`](Operator::snapshot_changes).
    fn snapshot_epoch(&mut self, _epoch: u64) -> Result<Vec<u8>, PipelineError> {
        self.gbw.store_mut().take_changed();
        self.snapshot()
    }

    /// With an LSM store, the whole snapshot is streamed from a consistent
    /// view of the store by the checkpoint writer: it is never held in
    /// memory (state larger than memory).
    fn snapshot_epoch_streamed(
        &mut self,
        _epoch: u64,
    ) -> Result<Option<Box<dyn weir_runtime::SnapshotStream>>, PipelineError> {
        if !self.gbw.store().spills() {
            return Ok(None);
        }
        self.gbw.store_mut().take_changed();
        let stream = self.gbw.store().snapshot_stream(self.encode_meta()?);
        self.store_error()?;
        Ok(stream)
    }

    /// The keys touched since the previous snapshot, with their states
    /// now (`None`: no state any more).
    fn snapshot_changes(&mut self, _epoch: u64) -> Result<Option<Vec<u8>>, PipelineError> {
        let meta = self.encode_meta()?;
        let changes = self.gbw.store_mut().encoded_changes(&meta);
        self.store_error()?;
        Ok(Some(changes))
    }

    fn restore(&mut self, bytes: &[u8]) -> OpResult {
        let (meta, keys) = decode_group_snapshot::<K, A::Acc, A::Out>(bytes)?;
        self.restore_keys(meta, keys)
    }

    /// Key by key as the snapshot is read: a state larger than memory goes
    /// back into the LSM store without being held whole.
    fn restore_keyed(&mut self, snapshot: &mut weir_runtime::keyed::KeyedReader<'_>) -> Result<bool, PipelineError> {
        let meta = decode_meta::<K, A::Acc, A::Out>(snapshot.meta())?;
        let restoring = |e: weir_model::ModelError| PipelineError::Runner(format!("restoring a grouping: {e}"));
        let store = open_store(&self.backend)?;
        self.gbw =
            GroupAlsoByWindow::restore_with(self.strategy.clone(), self.agg.clone(), store, meta).map_err(restoring)?;
        while let Some((k, v)) = snapshot.next_entry()? {
            let key: K = bincode::deserialize(k).map_err(snapshot_error)?;
            let state: KeyStateOf<V, A> = bincode::deserialize(v).map_err(snapshot_error)?;
            self.gbw.restore_key(&key, state).map_err(restoring)?;
            self.check_store()?;
        }
        self.check_store()?;
        Ok(true)
    }

    /// The (key, window) states of the key groups this worker owns, from
    /// every old instance; the earliest watermarks and processing time of
    /// any (each instance's are the stage's at the cut, or behind it); the
    /// counters of the old instances it owns.
    fn restore_rescaled(&mut self, from: &Rescale<'_>) -> OpResult {
        let mut merged: Option<Meta<K, A, V>> = None;
        let mut all_keys = Vec::new();
        for (j, bytes) in from.snapshots.iter().enumerate() {
            let (mut snap, mut keys) = decode_group_snapshot::<K, A::Acc, A::Out>(bytes)?;
            keys.retain(|(k, _)| from.owns(key_hash(k)));
            all_keys.append(&mut keys);
            if !from.owned.contains(&j) {
                snap.counters = Default::default();
            }
            merged = Some(match merged {
                None => snap,
                Some(mut m) => {
                    m.input_watermark = m.input_watermark.min(snap.input_watermark);
                    m.output_watermark = m.output_watermark.min(snap.output_watermark);
                    m.stage_output_watermark = m.stage_output_watermark.min(snap.stage_output_watermark);
                    m.processing_time = m.processing_time.min(snap.processing_time);
                    let (c, d) = (&mut m.counters, snap.counters);
                    c.elements_in += d.elements_in;
                    c.dropped_expired += d.dropped_expired;
                    c.dropped_closed += d.dropped_closed;
                    c.panes_out += d.panes_out;
                    c.retractions_out += d.retractions_out;
                    m
                }
            });
        }
        let Some(meta) = merged else { return Ok(()) };
        all_keys.sort_by(|a, b| a.0.cmp(&b.0));
        self.restore_keys(meta, all_keys)
    }

    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let before = self.gbw.counters();
        self.gbw.set_stage_output_watermark(cx.stage_output_watermark);
        // An earlier watermark's firing not yet done finishes first, as if
        // it had been one call.
        if self.gbw.has_due_timers() {
            self.gbw.advance_input_watermark_partly(self.gbw.input_watermark(), usize::MAX, &mut self.scratch);
        }
        // Elements are processed at the current processing time: timers due
        // before it fire first, and triggers see it (pastFirstElementInPane).
        self.gbw.advance_processing_time(cx.processing_time, &mut self.scratch);
        let input = batch.into_vec::<(K, V)>()?;
        // A lifted combine counts the elements its partials stand for, as
        // the unlifted one would.
        let elements = match self.weigh {
            Some(weigh) => input.iter().map(|v| weigh(&v.value.1)).sum(),
            None => input.len() as u64,
        };
        NodeCounters::add(&cx.counters.elements_in, elements);
        // One bundle per key per batch (Beam's keyed bundles).
        for v in input {
            self.by_key.entry(v.value.0).or_default().push((v.value.1, v.timestamp, v.window));
        }
        let mut by_key = std::mem::take(&mut self.by_key);
        for (k, items) in by_key.drain() {
            self.gbw.process_windowed_bundle(&k, items, &mut self.scratch);
        }
        self.by_key = by_key;
        self.check_store()?;
        self.sync_counters(cx, before);
        self.flush(cx);
        Ok(())
    }

    /// Fires at most [`FIRE_AT_ONCE`] windows per call, so that the panes
    /// of a huge activation (every key of a global window at the end of
    /// the input) flow out in parts instead of piling up in one batch; an
    /// earlier watermark's firing finishes before processing time or the
    /// watermark move again, so the panes are those of one call.
    fn advance(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        let before = self.gbw.counters();
        self.gbw.set_stage_output_watermark(cx.stage_output_watermark);
        let done = !self.gbw.has_due_timers()
            || self.gbw.advance_input_watermark_partly(self.gbw.input_watermark(), FIRE_AT_ONCE, &mut self.scratch);
        if done {
            self.gbw.advance_processing_time(cx.processing_time, &mut self.scratch);
            self.gbw.advance_input_watermark_partly(cx.input_watermark(), FIRE_AT_ONCE, &mut self.scratch);
        }
        self.check_store()?;
        self.sync_counters(cx, before);
        self.flush(cx);
        Ok(())
    }

    fn hold(&self) -> Timestamp {
        self.gbw.min_hold()
    }

    fn has_pending_work(&self) -> bool {
        self.gbw.has_due_timers()
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        self.gbw.next_processing_timer()
    }

    fn uses_stage_watermark(&self) -> bool {
        true
    }
}

fn group_node<K, V, A, O>(
    input: &PCollection<(K, V)>,
    name: &str,
    agg: A,
    wrap: fn(A::Out, bool) -> O,
    weigh: Option<fn(&V) -> u64>,
) -> (PCollection<(K, O)>, Keyed<K, V>)
where
    K: Key,
    V: Data,
    O: Data,
    A: Aggregator<V> + Clone + Send + Sync + 'static,
    A::Acc: Data,
    A::Out: Data,
{
    let p = input.pipeline().clone();
    let strategy = input.windowing().clone();
    let s2 = strategy.clone();
    let idx = p.add_node(
        name,
        vec![input.as_input(Routing::by_key::<K, V>())],
        2,
        NodeKind::Operator(Arc::new(move |w: &WorkerInfo| {
            let mut s = (*s2).clone();
            if weigh.is_some() {
                s.late_data_output = true;
            }
            let store: BackendKeys<K, _> = match open_store(&w.state) {
                Ok(store) => store,
                Err(e) => return Box::new(FailedOperator(e)) as Box<dyn Operator>,
            };
            let gbw =
                GroupAlsoByWindow::with_store(s.clone(), agg.clone(), store).expect("strategy validated when built");
            let op = GroupOp {
                gbw,
                backend: w.state.clone(),
                strategy: s,
                agg: agg.clone(),
                by_key: HashMap::default(),
                scratch: Vec::new(),
                wrap,
                weigh,
            };
            Box::new(op) as Box<dyn Operator>
        })),
    );
    if let Err(e) = strategy.validate() {
        p.record_error(&p.node_name(idx), e.to_string());
    }
    let out_strategy = Arc::new(strategy.continuation());
    (p.collection(idx, 0, out_strategy), p.collection(idx, 1, strategy))
}

/// Whether a keyed combine may fold inputs into partial accumulators
/// before the shuffle without changing any pane: windows must not merge
/// (partials are per window), no trigger may count elements (a partial
/// arrives as one), and the pane timestamp must not be the latest input's
/// (a partial carries its earliest input's timestamp). Inputs are folded
/// only within one batch, which the grouping would take as one bundle, so
/// lateness and holds are unchanged.
fn liftable(s: &WindowingStrategy) -> bool {
    fn counts_elements(t: &Trigger) -> bool {
        match t {
            Trigger::AfterCount(_) => true,
            Trigger::AfterWatermark { early, late } => {
                early.as_deref().is_some_and(counts_elements) || late.as_deref().is_some_and(counts_elements)
            }
            Trigger::Repeatedly(t) => counts_elements(t),
            Trigger::AfterAny(ts) | Trigger::AfterAll(ts) | Trigger::AfterEach(ts) => ts.iter().any(counts_elements),
            Trigger::OrFinally(a, b) => counts_elements(a) || counts_elements(b),
            _ => false,
        }
    }
    !s.window_fn.is_merging()
        && !counts_elements(&s.trigger)
        && matches!(s.timestamp_combiner, TimestampCombiner::EndOfWindow | TimestampCombiner::Earliest)
}

/// Per (key, window): the partial accumulator and its earliest input's timestamp.
type Partials<K, A> = HashMap<(K, Window), (Partial<A>, Timestamp)>;

/// Folds each batch into one partial accumulator per (key, window),
/// stamped with its earliest input's timestamp.
struct PartialCombineOp<K, V, C: CombineFn<V>> {
    c: C,
    partials: Partials<K, C::Acc>,
    _v: std::marker::PhantomData<fn(V)>,
}

impl<K: Key, V: Data, C: CombineFn<V>> Operator for PartialCombineOp<K, V, C> {
    /// Each batch is folded and emitted whole: nothing is kept between calls.
    fn stateless(&self) -> bool {
        true
    }

    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let input = batch.into_vec::<(K, V)>()?;
        NodeCounters::add(&cx.counters.elements_in, input.len() as u64);
        for v in input {
            let (k, value) = v.value;
            let (partial, ts) = self
                .partials
                .entry((k, v.window))
                .or_insert_with(|| (Partial { acc: self.c.create_accumulator(), inputs: 0 }, v.timestamp));
            self.c.add_input(&mut partial.acc, value);
            partial.inputs += 1;
            *ts = (*ts).min(v.timestamp);
        }
        let out: Vec<WindowedValue<(K, Partial<C::Acc>)>> = self
            .partials
            .drain()
            .map(|((k, w), (partial, ts))| WindowedValue::new((k, partial), ts, w, PaneInfo::NO_FIRING))
            .collect();
        NodeCounters::add(&cx.counters.elements_out, out.len() as u64);
        cx.out.emit(0, out);
        Ok(())
    }
}

fn no_retractions<T: Data>(name: &str, input: &PCollection<T>, f: impl FnOnce() -> String) {
    if input.windowing().mode == AccumulationMode::AccumulatingAndRetracting {
        input.pipeline().record_error(
            name,
            format!("the windowing strategy accumulates and retracts; use {} to receive retractions", f()),
        );
    }
}

/// A keyed collection.
pub type Keyed<K, V> = PCollection<(K, V)>;
/// The output of `group_by_key`: each key with the values of one pane.
pub type Grouped<K, V> = PCollection<(K, Vec<V>)>;
/// The output of `co_group_by_key`: each key with both sides' values.
pub type CoGrouped<K, V, W> = PCollection<(K, (Vec<V>, Vec<W>))>;

/// Groupings of key-value collections.
pub trait GroupExt<K: Key, V: Data> {
    /// Group the values of each key and window into panes as the
    /// collection's windowing strategy says.
    fn group_by_key(&self) -> PCollection<(K, Vec<V>)>;
    /// As `group_by_key`, plus a second collection with the elements the
    /// grouping dropped as late (needs `late_data_output(true)` on the
    /// strategy; otherwise it stays empty and they are only counted).
    fn group_by_key_with_late(&self) -> (Grouped<K, V>, Keyed<K, V>);
    /// `group_by_key` for the accumulating-and-retracting mode: every pane
    /// after a window's first is preceded by a `Retract` of the previous one.
    fn group_by_key_retracting(&self) -> PCollection<(K, Retractable<Vec<V>>)>;
    /// Combine the values of each key and window with `c`.
    fn combine_per_key<C: CombineFn<V>>(&self, c: C) -> PCollection<(K, C::Out)>;
    /// `combine_per_key` in accumulating-and-retracting mode.
    fn combine_per_key_retracting<C: CombineFn<V>>(&self, c: C) -> PCollection<(K, Retractable<C::Out>)>;
    /// Count the values of each key and window.
    fn count_per_key(&self) -> PCollection<(K, u64)>;
    /// Join with another keyed collection: per key and window, the values
    /// of both sides.
    fn co_group_by_key<W: Data>(&self, other: &Keyed<K, W>) -> CoGrouped<K, V, W>;
}

fn plain<T>(v: T, retraction: bool) -> T {
    debug_assert!(!retraction, "retractions only in retracting mode");
    v
}

fn signed<T>(v: T, retraction: bool) -> Retractable<T> {
    if retraction {
        Retractable::Retract(v)
    } else {
        Retractable::Add(v)
    }
}

/// What the key-value transforms (`group_by_key`, `combine_per_key`,
/// `par_do_stateful`, …) need: a collection of `(key, value)` pairs. On
/// any other collection they are missing, and the compiler says that this
/// bound is not met: make pairs first, e.g. `.map(|x| (key_of(&x), x))`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a (key, value) pair: key-value transforms need a `PCollection<(K, V)>`",
    label = "not a (key, value) pair",
    note = "make pairs first, e.g. `.map(|x| (key_of(&x), x))`"
)]
pub trait KeyValue: Data + sealed::Pair {
    /// The key.
    type Key: Key;
    /// The value.
    type Value: Data;
}

impl<K: Key, V: Data> KeyValue for (K, V) {
    type Key = K;
    type Value = V;
}

mod sealed {
    /// Only pairs are key-value pairs.
    pub trait Pair {}
    impl<K, V> Pair for (K, V) {}
}

/// The same collection, typed as the pairs it holds.
pub(crate) fn as_pairs<T: KeyValue>(c: &PCollection<T>) -> PCollection<(T::Key, T::Value)> {
    c.pipeline().collection(c.node, c.port, c.windowing().clone())
}

impl<T: KeyValue> GroupExt<T::Key, T::Value> for PCollection<T> {
    fn group_by_key(&self) -> Grouped<T::Key, T::Value> {
        as_pairs(self).group_by_key_()
    }
    fn group_by_key_with_late(&self) -> (Grouped<T::Key, T::Value>, Keyed<T::Key, T::Value>) {
        as_pairs(self).group_by_key_with_late_()
    }
    fn group_by_key_retracting(&self) -> PCollection<(T::Key, Retractable<Vec<T::Value>>)> {
        as_pairs(self).group_by_key_retracting_()
    }
    fn combine_per_key<C: CombineFn<T::Value>>(&self, c: C) -> PCollection<(T::Key, C::Out)> {
        as_pairs(self).combine_per_key_(c)
    }
    fn combine_per_key_retracting<C: CombineFn<T::Value>>(&self, c: C) -> PCollection<(T::Key, Retractable<C::Out>)> {
        as_pairs(self).combine_per_key_retracting_(c)
    }
    fn count_per_key(&self) -> PCollection<(T::Key, u64)> {
        as_pairs(self).count_per_key_()
    }
    fn co_group_by_key<W: Data>(&self, other: &Keyed<T::Key, W>) -> CoGrouped<T::Key, T::Value, W> {
        as_pairs(self).co_group_by_key_(other)
    }
}

/// The groupings on a collection typed as pairs.
trait PairGroups<K: Key, V: Data> {
    fn group_by_key_(&self) -> PCollection<(K, Vec<V>)>;
    fn group_by_key_with_late_(&self) -> (Grouped<K, V>, Keyed<K, V>);
    fn group_by_key_retracting_(&self) -> PCollection<(K, Retractable<Vec<V>>)>;
    fn combine_per_key_<C: CombineFn<V>>(&self, c: C) -> PCollection<(K, C::Out)>;
    fn combine_per_key_retracting_<C: CombineFn<V>>(&self, c: C) -> PCollection<(K, Retractable<C::Out>)>;
    fn count_per_key_(&self) -> PCollection<(K, u64)>;
    fn co_group_by_key_<W: Data>(&self, other: &Keyed<K, W>) -> CoGrouped<K, V, W>;
}

impl<K: Key, V: Data> PairGroups<K, V> for PCollection<(K, V)> {
    fn group_by_key_(&self) -> PCollection<(K, Vec<V>)> {
        no_retractions("GroupByKey", self, || "group_by_key_retracting".into());
        group_node(self, "GroupByKey", Buffer, plain::<Vec<V>>, None).0
    }

    fn group_by_key_with_late_(&self) -> (Grouped<K, V>, Keyed<K, V>) {
        no_retractions("GroupByKey", self, || "group_by_key_retracting".into());
        group_node(self, "GroupByKey", Buffer, plain::<Vec<V>>, None)
    }

    fn group_by_key_retracting_(&self) -> PCollection<(K, Retractable<Vec<V>>)> {
        group_node(self, "GroupByKey", Buffer, signed::<Vec<V>>, None).0
    }

    fn combine_per_key_<C: CombineFn<V>>(&self, c: C) -> PCollection<(K, C::Out)> {
        no_retractions("CombinePerKey", self, || "combine_per_key_retracting".into());
        if !liftable(self.windowing()) {
            return group_node(self, "CombinePerKey", CombineAggregator::new(c), plain::<C::Out>, None).0;
        }
        // Combiner lifting: fold each batch into one partial per (key,
        // window) on the producing worker, then merge partials per key.
        let p = self.pipeline().clone();
        let c2 = c.clone();
        let idx = p.add_node(
            "CombinePerKey/Partial",
            vec![self.as_input(Routing::Forward)],
            1,
            NodeKind::Operator(Arc::new(move |_w: &WorkerInfo| {
                Box::new(PartialCombineOp::<K, V, C> {
                    c: c2.clone(),
                    partials: HashMap::default(),
                    _v: std::marker::PhantomData,
                }) as Box<dyn Operator>
            })),
        );
        let partials: PCollection<(K, Partial<C::Acc>)> = p.collection(idx, 0, self.windowing().clone());
        let weigh: fn(&Partial<C::Acc>) -> u64 = |p| p.inputs;
        group_node(&partials, "CombinePerKey", PartialAggregator::new(c), plain::<C::Out>, Some(weigh)).0
    }

    fn combine_per_key_retracting_<C: CombineFn<V>>(&self, c: C) -> PCollection<(K, Retractable<C::Out>)> {
        group_node(self, "CombinePerKey", CombineAggregator::new(c), signed::<C::Out>, None).0
    }

    fn count_per_key_(&self) -> PCollection<(K, u64)> {
        self.combine_per_key_(Count).named("CountPerKey")
    }

    fn co_group_by_key_<W: Data>(&self, other: &Keyed<K, W>) -> CoGrouped<K, V, W> {
        let left = self.map(|(k, v)| (k, Union2::A(v))).named("CoGroupByKey/TagLeft");
        let right = other.map(|(k, w)| (k, Union2::B(w))).named("CoGroupByKey/TagRight");
        left.flatten_with(&[right])
            .group_by_key()
            .named("CoGroupByKey")
            .map(|(k, vs): (K, Vec<Union2<V, W>>)| {
                let mut a = Vec::new();
                let mut b = Vec::new();
                for v in vs {
                    match v {
                        Union2::A(x) => a.push(x),
                        Union2::B(y) => b.push(y),
                    }
                }
                (k, (a, b))
            })
            .named("CoGroupByKey/Split")
    }
}

/// A value from one of two joined collections.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Union2<A, B> {
    /// From the first.
    A(A),
    /// From the second.
    B(B),
}

/// `combine_globally`.
pub trait CombineGloballyExt<T: Data> {
    /// Combine all elements of each window with `c` (Beam's
    /// `Combine.globally`). In the global window an empty input gives the
    /// combiner's default, `c.extract_output(&c.create_accumulator())` (0
    /// for `Count`), timestamped at `Timestamp::MIN`. As in Beam, a default
    /// is only defined for the global window: on other windows use
    /// [`combine_globally_without_defaults`](Self::combine_globally_without_defaults)
    /// (building the pipeline otherwise reports an error).
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let n = p.create(Vec::<u32>::new()).combine_globally(Count).collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(n.values(), vec![0]);
    /// ```
    fn combine_globally<C: CombineFn<T>>(&self, c: C) -> PCollection<C::Out>;
    /// Combine all elements of each window with `c`; an empty window (or
    /// input) gives nothing (Beam's `Combine.globally().withoutDefaults()`).
    fn combine_globally_without_defaults<C: CombineFn<T>>(&self, c: C) -> PCollection<C::Out>;
}

impl<T: Data> CombineGloballyExt<T> for PCollection<T> {
    fn combine_globally<C: CombineFn<T>>(&self, c: C) -> PCollection<C::Out> {
        let global = matches!(self.windowing().window_fn, weir_model::AnyWindowFn::Global(_));
        let combined = self.combine_globally_without_defaults(c.clone());
        if !global {
            combined.pipeline().record_error(
                "CombineGlobally",
                "a default for empty input is only defined in the global window; \
                 use combine_globally_without_defaults on other windows",
            );
            return combined;
        }
        // Beam's InsertDefaultValueIfEmpty: one element reads the combined
        // output, complete, as a side input and emits the default if it is empty.
        let view = combined.as_side_input();
        let default = self
            .pipeline()
            .create([()])
            .named("CombineGlobally/Default")
            .par_do_with_side_inputs(InsertDefault { view: view.clone(), c }, &[view.erased()], &[])
            .main
            .named("CombineGlobally/InsertDefault");
        combined.flatten_with(&[default]).named("CombineGlobally/WithDefault")
    }

    fn combine_globally_without_defaults<C: CombineFn<T>>(&self, c: C) -> PCollection<C::Out> {
        self.map(|v| ((), v)).named("CombineGlobally/Key").combine_per_key(c).named("CombineGlobally").values()
    }
}

/// Emits the combiner's default if the combined output is empty.
struct InsertDefault<C: CombineFn<T>, T> {
    view: SideInput<C::Out>,
    c: C,
}

impl<C: CombineFn<T>, T> Clone for InsertDefault<C, T> {
    fn clone(&self) -> Self {
        InsertDefault { view: self.view.clone(), c: self.c.clone() }
    }
}

impl<C: CombineFn<T>, T: Data> DoFn for InsertDefault<C, T> {
    type In = ();
    type Out = C::Out;
    fn process(&mut self, cx: &mut ProcessContext<'_, (), C::Out>) {
        if cx.side_iterable(&self.view).is_empty() {
            let default = self.c.extract_output(&self.c.create_accumulator());
            cx.output(default);
        }
    }
}

/// Why an element was dropped (re-exported for late-data outputs).
pub type LateReason = DropReason;
