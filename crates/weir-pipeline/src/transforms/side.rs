//! Side inputs: a collection read, whole, by every element of a `ParDo`.
//!
//! A side input is broadcast to every worker. Each main-input element reads
//! the side input's window that contains the end of its own window (Beam's
//! default window mapping: the global window for a globally windowed side
//! input). The element waits — holding the output watermark at its timestamp
//! — until that side window is ready: the side input's watermark has passed
//! the window's end, or the side input is complete.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use weir_model::{Timestamp, Window, WindowFn, WindowingStrategy};

use crate::graph::PCollection;
use crate::transforms::elementwise::{DoFn, DoFnRunner, ErasedTag, OutputTags, ParDoOutputs, ProcessContext};
use weir_runtime::batch::Batch;
use weir_runtime::data::{Data, Key, WindowedValue};
use weir_runtime::{NodeCounters, OpContext, OpResult, Operator, PipelineError, Rescale, WorkerInfo};
use weir_runtime::{NodeKind, Routing};

/// A handle to a collection used as a side input.
pub struct SideInput<T> {
    id: usize,
    source: (usize, usize),
    strategy: Arc<WindowingStrategy>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for SideInput<T> {
    fn clone(&self) -> Self {
        SideInput { id: self.id, source: self.source, strategy: self.strategy.clone(), _t: PhantomData }
    }
}

impl<T> std::fmt::Debug for SideInput<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SideInput#{}", self.id)
    }
}

/// `as_side_input`: use a collection as a side input.
pub trait SideInputExt<T: Data> {
    /// A view of this collection for `par_do_with_side_inputs`.
    fn as_side_input(&self) -> SideInput<T>;
}

impl<T: Data> SideInputExt<T> for PCollection<T> {
    fn as_side_input(&self) -> SideInput<T> {
        SideInput {
            id: self.node * 1024 + self.port,
            source: (self.node, self.port),
            strategy: self.windowing().clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Data> SideInput<T> {
    /// The view without its type, to declare it on a `ParDo`.
    pub fn erased(&self) -> ErasedSide {
        ErasedSide {
            id: self.id,
            source: self.source,
            make: Arc::new(|| Box::new(SideValues::<T>::default())),
            strategy: self.strategy.clone(),
        }
    }
}

impl ErasedSide {
    /// An empty store for this view's values.
    pub(crate) fn entry(&self) -> SideEntry {
        SideEntry { id: self.id, strategy: self.strategy.clone(), store: (self.make)() }
    }
    /// The operator input that broadcasts the view's values to every worker.
    pub(crate) fn input(&self) -> weir_runtime::NodeInput {
        weir_runtime::NodeInput { node: self.source.0, port: self.source.1, routing: broadcast() }
    }
}

/// A side input view without its type.
#[derive(Clone)]
pub struct ErasedSide {
    id: usize,
    source: (usize, usize),
    make: Arc<dyn Fn() -> Box<dyn SideStore> + Send + Sync>,
    strategy: Arc<WindowingStrategy>,
}

#[doc(hidden)]
pub trait SideStore: Send {
    fn add(&mut self, batch: Batch) -> OpResult;
    fn as_any(&self) -> &dyn std::any::Any;
    /// Every window's values (for a checkpoint).
    fn encode(&self) -> Result<Vec<u8>, PipelineError>;
    /// Replace the values with those of `encode`.
    fn decode(&mut self, bytes: &[u8]) -> OpResult;
}

struct SideValues<T> {
    by_window: BTreeMap<Window, WindowValues<T>>,
    /// What a window without values reads.
    empty: WindowValues<T>,
}

/// The values of one side-input window, and the views built from them
/// once (a multimap, a map), dropped when more values arrive.
struct WindowValues<T> {
    values: Vec<T>,
    view: OnceLock<Box<dyn std::any::Any + Send + Sync>>,
    map: OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

impl<T> Default for WindowValues<T> {
    fn default() -> Self {
        WindowValues::new(Vec::new())
    }
}

impl<T> WindowValues<T> {
    fn new(values: Vec<T>) -> Self {
        WindowValues { values, view: OnceLock::new(), map: OnceLock::new() }
    }
}

impl<T> Default for SideValues<T> {
    fn default() -> Self {
        SideValues { by_window: BTreeMap::new(), empty: WindowValues::default() }
    }
}

impl<T: Data> SideStore for SideValues<T> {
    fn add(&mut self, batch: Batch) -> OpResult {
        for v in batch.into_vec::<T>()? {
            let w = self.by_window.entry(v.window).or_default();
            w.values.push(v.value);
            w.view.take();
            w.map.take();
        }
        Ok(())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn encode(&self) -> Result<Vec<u8>, PipelineError> {
        let windows: Vec<(&Window, &Vec<T>)> = self.by_window.iter().map(|(w, v)| (w, &v.values)).collect();
        bincode::serialize(&windows).map_err(|e| PipelineError::Internal(format!("serializing a side input: {e}")))
    }
    fn decode(&mut self, bytes: &[u8]) -> OpResult {
        let windows: Vec<(Window, Vec<T>)> = bincode::deserialize(bytes)
            .map_err(|e| PipelineError::Checkpoint(format!("a side input cannot restore this snapshot: {e}")))?;
        self.by_window = windows.into_iter().map(|(w, values)| (w, WindowValues::new(values))).collect();
        Ok(())
    }
}

/// The side inputs a `ParDo` element can read.
pub struct SideInputs<'a> {
    pub(crate) entries: &'a [SideEntry],
    pub(crate) window: Window,
    /// Where a read happens, when side inputs cannot be read there (a
    /// stateful DoFn's timers: Beam reads side inputs in `process` only).
    pub(crate) unreadable_in: Option<&'static str>,
}

/// One side input's values in an operator.
pub(crate) struct SideEntry {
    id: usize,
    strategy: Arc<WindowingStrategy>,
    store: Box<dyn SideStore>,
}

impl SideEntry {
    /// Values of the view arrived (on the operator's input port `1 + i`).
    pub(crate) fn add(&mut self, batch: Batch) -> OpResult {
        self.store.add(batch)
    }
}

/// Whether every side input is ready for a main-input element of window
/// `w`: its watermark (`watermarks[1 + i]`; port 0 is the main input) has
/// passed the end of the side window `w` maps to, or it is complete.
pub(crate) fn sides_ready(entries: &[SideEntry], w: &Window, watermarks: &[Timestamp]) -> bool {
    entries.iter().enumerate().all(|(i, e)| {
        let side_wm = watermarks.get(i + 1).copied().unwrap_or(Timestamp::MAX);
        side_wm == Timestamp::MAX || side_window(&e.strategy, w).is_some_and(|sw| side_wm > sw.max_timestamp())
    })
}

/// Take the elements of `waiting` whose side inputs are ready
/// ([`sides_ready`]) out of it, in arrival order.
pub(crate) fn take_ready<T>(
    waiting: &mut Vec<WindowedValue<T>>,
    entries: &[SideEntry],
    watermarks: &[Timestamp],
) -> Vec<WindowedValue<T>> {
    let (ready, wait) = std::mem::take(waiting).into_iter().partition(|v| sides_ready(entries, &v.window, watermarks));
    *waiting = wait;
    ready
}

/// Every side input's values, encoded (for a snapshot).
pub(crate) fn encode_sides(entries: &[SideEntry]) -> Result<Vec<Vec<u8>>, PipelineError> {
    entries.iter().map(|e| e.store.encode()).collect()
}

/// Replace every side input's values with those of [`encode_sides`].
pub(crate) fn decode_sides(entries: &mut [SideEntry], encoded: &[Vec<u8>]) -> OpResult {
    if encoded.len() != entries.len() {
        return Err(PipelineError::Checkpoint(format!(
            "a snapshot of {} side inputs, this ParDo has {}",
            encoded.len(),
            entries.len()
        )));
    }
    for (e, bytes) in entries.iter_mut().zip(encoded) {
        e.store.decode(bytes)?;
    }
    Ok(())
}

fn side_window(strategy: &WindowingStrategy, main: &Window) -> Option<Window> {
    let mut ws = Vec::with_capacity(1);
    strategy.window_fn.assign_windows(main.max_timestamp(), &mut ws);
    ws.first().copied()
}

impl SideInputs<'_> {
    /// The values of the side window this element maps to.
    ///
    /// # Panics
    /// If the view was not declared on this ParDo: reading it would
    /// otherwise silently see no values.
    fn window_values<T: Data>(&self, view: &SideInput<T>) -> &WindowValues<T> {
        if let Some(place) = self.unreadable_in {
            panic!("side input {view:?} is read in {place}: side inputs can be read in process only (as in Beam)")
        }
        let Some(e) = self.entries.iter().find(|e| e.id == view.id) else {
            panic!("side input {view:?} is read but was not passed to par_do_with_side_inputs")
        };
        let store = e.store.as_any().downcast_ref::<SideValues<T>>().expect("side input type");
        side_window(&e.strategy, &self.window).and_then(|w| store.by_window.get(&w)).unwrap_or(&store.empty)
    }
    pub(crate) fn values<T: Data>(&self, view: &SideInput<T>) -> &[T] {
        &self.window_values(view).values
    }
}

impl SideInputs<'_> {
    pub(crate) fn singleton<T: Data>(&self, view: &SideInput<T>) -> Result<&T, String> {
        match self.values(view) {
            [one] => Ok(one),
            vs => Err(format!("singleton side input {view:?} has {} values in window {}", vs.len(), self.window)),
        }
    }

    pub(crate) fn map<K: Key, V: Data>(&self, view: &SideInput<(K, V)>) -> Result<&HashMap<K, V>, String> {
        let w = self.window_values(view);
        let built = w.map.get_or_init(|| {
            let mut m: HashMap<K, V> = HashMap::with_capacity(w.values.len());
            let mut duplicate = None;
            for (k, v) in &w.values {
                if m.insert(k.clone(), v.clone()).is_some() && duplicate.is_none() {
                    duplicate = Some(k.clone());
                }
            }
            let built: Result<HashMap<K, V>, String> = match duplicate {
                None => Ok(m),
                Some(k) => Err(format!(
                    "map side input {view:?} has several values for key {k:?} in window {} \
                     (use side_multimap for several values per key)",
                    self.window
                )),
            };
            Box::new(built)
        });
        let built = built.downcast_ref::<Result<HashMap<K, V>, String>>().expect("a view is built with its types");
        built.as_ref().map_err(Clone::clone)
    }

    pub(crate) fn multimap<K: Key, V: Data>(&self, view: &SideInput<(K, V)>) -> &HashMap<K, Vec<V>> {
        let w = self.window_values(view);
        let built = w.view.get_or_init(|| {
            let mut m: HashMap<K, Vec<V>> = HashMap::new();
            for (k, v) in &w.values {
                m.entry(k.clone()).or_default().push(v.clone());
            }
            Box::new(m)
        });
        built.downcast_ref::<HashMap<K, Vec<V>>>().expect("a view is built with its side input's types")
    }
}

impl<'a, I, O: Data> ProcessContext<'a, I, O> {
    /// Every value of the side input in the window this element maps to.
    pub fn side_iterable<T: Data>(&self, view: &SideInput<T>) -> &[T] {
        self.sides.values(view)
    }

    /// The single value of the side input in the window this element maps
    /// to: `Err` (a message naming the view) if it has none or several.
    pub fn side_singleton<T: Data>(&self, view: &SideInput<T>) -> Result<&T, String> {
        self.sides.singleton(view)
    }

    /// Every value of the side input in the window this element maps to,
    /// as a list (Beam's `View.asList`; the same as
    /// [`side_iterable`](Self::side_iterable)).
    pub fn side_list<T: Data>(&self, view: &SideInput<T>) -> &[T] {
        self.sides.values(view)
    }

    /// The side input as a map from keys to their single values, in the
    /// window this element maps to (Beam's `View.asMap`): `Err` (a message
    /// naming the view and the key) if a key has several values. Built once
    /// per side-input window, like [`side_multimap`](Self::side_multimap).
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// #[derive(Clone)]
    /// struct Price(SideInput<(String, u32)>);
    /// impl DoFn for Price {
    ///     type In = String;
    ///     type Out = (String, u32);
    ///     fn process(&mut self, cx: &mut ProcessContext<'_, String, (String, u32)>) {
    ///         let price = match cx.side_map(&self.0) {
    ///             Ok(prices) => prices.get(cx.element()).copied().unwrap_or(0),
    ///             Err(e) => return cx.fail(e),
    ///         };
    ///         let item = cx.element().clone();
    ///         cx.output((item, price));
    ///     }
    /// }
    /// let p = Pipeline::new();
    /// let prices = p.create([("tea".to_string(), 3u32), ("cake".into(), 5)]).as_side_input();
    /// let priced = p
    ///     .create(["cake".to_string()])
    ///     .par_do_with_side_inputs(Price(prices.clone()), &prices, ())
    ///     .main
    ///     .collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(priced.values(), vec![("cake".to_string(), 5)]);
    /// ```
    pub fn side_map<K: Key, V: Data>(&self, view: &SideInput<(K, V)>) -> Result<&HashMap<K, V>, String> {
        self.sides.map(view)
    }

    /// The side input as a multimap from keys to their values, in the
    /// window this element maps to. Built once per side-input window (and
    /// again only if more of its values arrive), not per element.
    pub fn side_multimap<K: Key, V: Data>(&self, view: &SideInput<(K, V)>) -> &HashMap<K, Vec<V>> {
        self.sides.multimap(view)
    }
}

struct SideParDoOp<D: DoFn> {
    runner: DoFnRunner<D>,
    sides: Vec<SideEntry>,
    pending: Vec<WindowedValue<D::In>>,
}

impl<D: DoFn> SideParDoOp<D> {
    fn release_ready(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        if self.pending.is_empty() {
            return Ok(());
        }
        let ready = take_ready(&mut self.pending, &self.sides, cx.input_watermarks);
        if !ready.is_empty() {
            self.runner.run_bundle(&ready, &self.sides, cx)?;
        }
        Ok(())
    }
}

impl<D: DoFn> Operator for SideParDoOp<D> {
    fn process(&mut self, port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        if port == 0 {
            let input = batch.into_vec::<D::In>()?;
            NodeCounters::add(&cx.counters.elements_in, input.len() as u64);
            self.pending.extend(input);
        } else {
            self.sides[port - 1].add(batch)?;
        }
        self.release_ready(cx)?;
        Ok(())
    }

    fn advance(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        self.release_ready(cx)?;
        Ok(())
    }

    fn hold(&self) -> Timestamp {
        self.pending.iter().map(|v| v.timestamp).min().unwrap_or(Timestamp::MAX)
    }

    fn finish(&mut self, cx: &mut OpContext<'_>) -> OpResult {
        self.release_ready(cx)?;
        self.runner.teardown();
        Ok(())
    }

    /// The side inputs' values and the main input waiting for them.
    fn snapshot(&self) -> Result<Vec<u8>, PipelineError> {
        bincode::serialize(&(encode_sides(&self.sides)?, &self.pending))
            .map_err(|e| PipelineError::Internal(format!("serializing a ParDo with side inputs: {e}")))
    }

    fn restore(&mut self, bytes: &[u8]) -> OpResult {
        let (sides, pending) = self.decode_snapshot(bytes)?;
        decode_sides(&mut self.sides, &sides)?;
        self.pending = pending;
        Ok(())
    }

    /// Every instance received every side input value (broadcast), so the
    /// first old instance's are everyone's; the main input waiting for them
    /// comes from the old instances this one owns.
    fn restore_rescaled(&mut self, from: &Rescale<'_>) -> OpResult {
        let Some(first) = from.snapshots.first() else { return Ok(()) };
        let (sides, _) = self.decode_snapshot(first)?;
        decode_sides(&mut self.sides, &sides)?;
        self.pending.clear();
        for bytes in from.owned_snapshots() {
            let (_, mut pending) = self.decode_snapshot(bytes)?;
            self.pending.append(&mut pending);
        }
        Ok(())
    }
}

type SideSnapshot<T> = (Vec<Vec<u8>>, Vec<WindowedValue<T>>);

impl<D: DoFn> SideParDoOp<D> {
    fn decode_snapshot(&self, bytes: &[u8]) -> Result<SideSnapshot<D::In>, PipelineError> {
        bincode::deserialize(bytes)
            .map_err(|e| PipelineError::Checkpoint(format!("a ParDo with side inputs cannot restore this: {e}")))
    }
}

/// Sends every batch to every worker.
fn broadcast() -> Routing {
    Routing::broadcast()
}

/// The side inputs a `ParDo` reads, typed: one `&side`, a tuple of up to
/// four `(&a, &b, …)`, or erased `&[side.erased()]`.
pub trait SideInputList {
    /// The views without their types.
    fn erased_sides(self) -> Vec<ErasedSide>;
}

impl SideInputList for &[ErasedSide] {
    fn erased_sides(self) -> Vec<ErasedSide> {
        self.to_vec()
    }
}

impl<const N: usize> SideInputList for &[ErasedSide; N] {
    fn erased_sides(self) -> Vec<ErasedSide> {
        self.to_vec()
    }
}

impl<A: Data> SideInputList for &SideInput<A> {
    fn erased_sides(self) -> Vec<ErasedSide> {
        vec![self.erased()]
    }
}

macro_rules! side_tuples {
    ($(($($t:ident $v:ident),+)),+) => {$(
        impl<$($t: Data),+> SideInputList for ($(&SideInput<$t>,)+) {
            fn erased_sides(self) -> Vec<ErasedSide> {
                let ($($v,)+) = self;
                vec![$($v.erased()),+]
            }
        }
    )+};
}
side_tuples!((A a), (A a, B b), (A a, B b, C c), (A a, B b, C c, D d));

/// `par_do_with_side_inputs`.
pub trait SideParDoExt<T: Data> {
    /// Apply a [`DoFn`] that reads side inputs (through
    /// `ProcessContext::side_iterable`, `side_singleton`, `side_multimap`),
    /// with optional tagged outputs ([`OutputTags`]: `()` for none).
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// #[derive(Clone)]
    /// struct AddTotal(SideInput<i32>);
    /// impl DoFn for AddTotal {
    ///     type In = i32;
    ///     type Out = i32;
    ///     fn process(&mut self, cx: &mut ProcessContext<'_, i32, i32>) {
    ///         let total: i32 = cx.side_iterable(&self.0).iter().sum();
    ///         let v = *cx.element() + total;
    ///         cx.output(v);
    ///     }
    /// }
    /// let p = Pipeline::new();
    /// let side = p.create([10, 20]).as_side_input();
    /// let out = p.create([1, 2]).par_do_with_side_inputs(AddTotal(side.clone()), &side, ()).main.collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(out.values(), vec![31, 32]);
    /// ```
    fn par_do_with_side_inputs<D: DoFn<In = T>>(
        &self,
        dofn: D,
        sides: impl SideInputList,
        tags: impl OutputTags,
    ) -> ParDoOutputs<D::Out>;
}

impl<T: Data> SideParDoExt<T> for PCollection<T> {
    fn par_do_with_side_inputs<D: DoFn<In = T>>(
        &self,
        dofn: D,
        sides: impl SideInputList,
        tags: impl OutputTags,
    ) -> ParDoOutputs<D::Out> {
        let p = self.pipeline().clone();
        let sides: Vec<ErasedSide> = sides.erased_sides();
        let tags: Vec<ErasedTag> = tags.erased_tags();
        let mut inputs = vec![self.as_input(Routing::Forward)];
        inputs.extend(sides.iter().map(ErasedSide::input));
        let t2 = tags.clone();
        let idx = p.add_node(
            "ParDo",
            inputs,
            1 + tags.len(),
            NodeKind::Operator(Arc::new(move |_w: &WorkerInfo| {
                Box::new(SideParDoOp {
                    runner: DoFnRunner::new(dofn.clone(), &t2),
                    sides: sides.iter().map(ErasedSide::entry).collect(),
                    pending: Vec::new(),
                }) as Box<dyn Operator>
            })),
        );
        ParDoOutputs::new(p.collection(idx, 0, self.windowing().clone()), &tags)
    }
}
