//! Element-wise transforms: `map`, `flat_map`, `filter`, `with_timestamps`,
//! `with_keys`, `keys`, `values`, and `ParDo` with a [`DoFn`].

use std::marker::PhantomData;
use std::sync::Arc;

use weir_model::{PaneInfo, Timestamp, Window};

use crate::graph::PCollection;
use weir_runtime::batch::Batch;
use weir_runtime::data::{Data, Key, WindowedValue};
use weir_runtime::{NodeCounters, OpContext, OpResult, Operator, WorkerInfo};
use weir_runtime::{NodeKind, Routing};

/// An operator applying a per-element function that appends to an output
/// vector, or fails with a message.
pub(crate) struct FnOp<I, O, F> {
    f: F,
    _p: PhantomData<fn(I) -> O>,
}

impl<I, O, F> Operator for FnOp<I, O, F>
where
    I: Data,
    O: Data,
    F: FnMut(WindowedValue<I>, &mut Vec<WindowedValue<O>>) -> Result<(), String> + Send,
{
    /// Element-wise: nothing is kept between elements.
    fn stateless(&self) -> bool {
        true
    }

    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let input = batch.into_vec::<I>()?;
        NodeCounters::add(&cx.counters.elements_in, input.len() as u64);
        let mut out = Vec::with_capacity(input.len());
        for v in input {
            if let Err(message) = (self.f)(v, &mut out) {
                return Err(cx.error(message));
            }
        }
        NodeCounters::add(&cx.counters.elements_out, out.len() as u64);
        cx.out.emit(0, out);
        Ok(())
    }
}

/// Add an element-wise node. For transform authors.
pub fn apply_fn<I, O, F>(input: &PCollection<I>, name: &str, routing: Routing, f: F) -> PCollection<O>
where
    I: Data,
    O: Data,
    F: FnMut(WindowedValue<I>, &mut Vec<WindowedValue<O>>) -> Result<(), String> + Clone + Send + Sync + 'static,
{
    let p = input.pipeline().clone();
    let idx = p.add_node(
        name,
        vec![input.as_input(routing)],
        1,
        NodeKind::Operator(Arc::new(move |_w: &WorkerInfo| {
            Box::new(FnOp::<I, O, F> { f: f.clone(), _p: PhantomData }) as Box<dyn Operator>
        })),
    );
    p.collection(idx, 0, input.windowing().clone())
}

fn check_output_timestamp(input: Timestamp, output: Timestamp) -> Result<Timestamp, String> {
    let output = Timestamp::element(output.millis()).map_err(|e| e.to_string())?;
    if output < input {
        return Err(format!(
            "cannot output with timestamp {output}: output timestamps must be no earlier than the \
             timestamp of the current input ({input}) minus the allowed skew (0 ms)"
        ));
    }
    Ok(output)
}

/// Element-wise transforms on any collection.
pub trait ElementwiseExt<T: Data> {
    /// Apply `f` to every element.
    fn map<U: Data>(&self, f: impl Fn(T) -> U + Clone + Send + Sync + 'static) -> PCollection<U>;
    /// Apply `f` to every element and flatten the results.
    fn flat_map<U: Data, I: IntoIterator<Item = U>>(
        &self,
        f: impl Fn(T) -> I + Clone + Send + Sync + 'static,
    ) -> PCollection<U>;
    /// Keep the elements for which `f` is true.
    fn filter(&self, f: impl Fn(&T) -> bool + Clone + Send + Sync + 'static) -> PCollection<T>;
    /// Give each element the event timestamp `f` computes. The new timestamp
    /// must be valid and not earlier than the element's current one (Beam's
    /// rule with zero allowed skew); otherwise the pipeline fails with a
    /// message naming the transform.
    fn with_timestamps(&self, f: impl Fn(&T) -> Timestamp + Clone + Send + Sync + 'static) -> PCollection<T>;
    /// Pair every element with the key `f` computes.
    fn with_keys<K: Key>(&self, f: impl Fn(&T) -> K + Clone + Send + Sync + 'static) -> PCollection<(K, T)>;
    /// Apply a [`DoFn`].
    fn par_do<D: DoFn<In = T>>(&self, dofn: D) -> PCollection<D::Out>;
    /// Apply a [`DoFn`] with additional tagged outputs: `&tag`, a tuple of
    /// tags `(&errors, &warnings)`, or erased tags `&[tag.erased()]`.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// #[derive(Clone)]
    /// struct Split(OutputTag<String>);
    /// impl DoFn for Split {
    ///     type In = i32;
    ///     type Out = i32;
    ///     fn process(&mut self, cx: &mut ProcessContext<'_, i32, i32>) {
    ///         let v = *cx.element();
    ///         if v < 0 { cx.output_to(&self.0, format!("negative: {v}")) } else { cx.output(v) }
    ///     }
    /// }
    /// let p = Pipeline::new();
    /// let errors = OutputTag::<String>::new("errors");
    /// let out = p.create([1, -2, 3]).par_do_with_outputs(Split(errors.clone()), &errors);
    /// let (ok, bad) = (out.main.collect(), out.get(&errors).unwrap().collect());
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!((ok.values(), bad.values()), (vec![1, 3], vec!["negative: -2".to_string()]));
    /// ```
    fn par_do_with_outputs<D: DoFn<In = T>>(&self, dofn: D, tags: impl OutputTags) -> ParDoOutputs<D::Out>;
}

/// The tagged outputs a `ParDo` declares, typed: one tag `&tag`, a tuple
/// of up to four `(&a, &b, …)`, `()` for none, or erased `&[tag.erased()]`.
pub trait OutputTags {
    /// The tags without their types.
    fn erased_tags(self) -> Vec<ErasedTag>;
}

impl OutputTags for () {
    fn erased_tags(self) -> Vec<ErasedTag> {
        Vec::new()
    }
}

impl OutputTags for &[ErasedTag] {
    fn erased_tags(self) -> Vec<ErasedTag> {
        self.to_vec()
    }
}

impl<const N: usize> OutputTags for &[ErasedTag; N] {
    fn erased_tags(self) -> Vec<ErasedTag> {
        self.to_vec()
    }
}

impl<A: Data> OutputTags for &OutputTag<A> {
    fn erased_tags(self) -> Vec<ErasedTag> {
        vec![self.erased()]
    }
}

macro_rules! tag_tuples {
    ($(($($t:ident $v:ident),+)),+) => {$(
        impl<$($t: Data),+> OutputTags for ($(&OutputTag<$t>,)+) {
            fn erased_tags(self) -> Vec<ErasedTag> {
                let ($($v,)+) = self;
                vec![$($v.erased()),+]
            }
        }
    )+};
}
tag_tuples!((A a), (A a, B b), (A a, B b, C c), (A a, B b, C c, D d));

impl<T: Data> ElementwiseExt<T> for PCollection<T> {
    fn map<U: Data>(&self, f: impl Fn(T) -> U + Clone + Send + Sync + 'static) -> PCollection<U> {
        apply_fn(self, "Map", Routing::Forward, move |v: WindowedValue<T>, out: &mut Vec<WindowedValue<U>>| {
            out.push(WindowedValue { value: f(v.value), timestamp: v.timestamp, window: v.window, pane: v.pane });
            Ok(())
        })
    }

    fn flat_map<U: Data, I: IntoIterator<Item = U>>(
        &self,
        f: impl Fn(T) -> I + Clone + Send + Sync + 'static,
    ) -> PCollection<U> {
        apply_fn(self, "FlatMap", Routing::Forward, move |v: WindowedValue<T>, out: &mut Vec<WindowedValue<U>>| {
            let (ts, w, p) = (v.timestamp, v.window, v.pane);
            out.extend(f(v.value).into_iter().map(|u| WindowedValue::new(u, ts, w, p)));
            Ok(())
        })
    }

    fn filter(&self, f: impl Fn(&T) -> bool + Clone + Send + Sync + 'static) -> PCollection<T> {
        apply_fn(self, "Filter", Routing::Forward, move |v: WindowedValue<T>, out: &mut Vec<WindowedValue<T>>| {
            if f(&v.value) {
                out.push(v);
            }
            Ok(())
        })
    }

    fn with_timestamps(&self, f: impl Fn(&T) -> Timestamp + Clone + Send + Sync + 'static) -> PCollection<T> {
        apply_fn(
            self,
            "WithTimestamps",
            Routing::Forward,
            move |v: WindowedValue<T>, out: &mut Vec<WindowedValue<T>>| {
                let ts = check_output_timestamp(v.timestamp, f(&v.value))?;
                out.push(WindowedValue { timestamp: ts, ..v });
                Ok(())
            },
        )
    }

    fn with_keys<K: Key>(&self, f: impl Fn(&T) -> K + Clone + Send + Sync + 'static) -> PCollection<(K, T)> {
        apply_fn(
            self,
            "WithKeys",
            Routing::Forward,
            move |v: WindowedValue<T>, out: &mut Vec<WindowedValue<(K, T)>>| {
                let k = f(&v.value);
                out.push(WindowedValue { value: (k, v.value), timestamp: v.timestamp, window: v.window, pane: v.pane });
                Ok(())
            },
        )
    }

    fn par_do<D: DoFn<In = T>>(&self, dofn: D) -> PCollection<D::Out> {
        par_do_impl(self, dofn, &[]).main
    }

    fn par_do_with_outputs<D: DoFn<In = T>>(&self, dofn: D, tags: impl OutputTags) -> ParDoOutputs<D::Out> {
        par_do_impl(self, dofn, &tags.erased_tags())
    }
}

/// `keys()` and `values()` of key-value collections.
pub trait KvElementwiseExt<K: Data, V: Data> {
    /// The keys.
    fn keys(&self) -> PCollection<K>;
    /// The values.
    fn values(&self) -> PCollection<V>;
}

impl<K: Data, V: Data> KvElementwiseExt<K, V> for PCollection<(K, V)> {
    fn keys(&self) -> PCollection<K> {
        apply_fn(self, "Keys", Routing::Forward, |v: WindowedValue<(K, V)>, out: &mut Vec<WindowedValue<K>>| {
            out.push(WindowedValue { value: v.value.0, timestamp: v.timestamp, window: v.window, pane: v.pane });
            Ok(())
        })
    }
    fn values(&self) -> PCollection<V> {
        apply_fn(self, "Values", Routing::Forward, |v: WindowedValue<(K, V)>, out: &mut Vec<WindowedValue<V>>| {
            out.push(WindowedValue { value: v.value.1, timestamp: v.timestamp, window: v.window, pane: v.pane });
            Ok(())
        })
    }
}

// ----------------------------------------------------------------------------
// ParDo

/// A tag for an additional output of a [`DoFn`].
///
/// ```
/// use weir_pipeline::OutputTag;
/// const ERRORS: OutputTag<String> = OutputTag::new("errors");
/// assert_eq!(ERRORS.id(), "errors");
/// ```
#[derive(Debug)]
pub struct OutputTag<T> {
    id: std::borrow::Cow<'static, str>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag { id: self.id.clone(), _t: PhantomData }
    }
}

impl<T: Data> OutputTag<T> {
    /// A tag with a name unique within its `DoFn`; `const`, so that tags
    /// can be declared as constants beside a DoFn's state and timers.
    pub const fn new(id: &'static str) -> Self {
        OutputTag { id: std::borrow::Cow::Borrowed(id), _t: PhantomData }
    }
    /// A tag whose name is made at run time (e.g. one per category).
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let tags: Vec<OutputTag<u32>> = (0..3).map(|i| OutputTag::named(format!("bucket-{i}"))).collect();
    /// assert_eq!(tags[2].id(), "bucket-2");
    /// ```
    pub fn named(id: impl Into<String>) -> Self {
        OutputTag { id: std::borrow::Cow::Owned(id.into()), _t: PhantomData }
    }
    /// The tag's name.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The tag without its type, to declare the output.
    pub fn erased(&self) -> ErasedTag {
        ErasedTag { id: Arc::from(self.id.as_ref()), make: Arc::new(|| Box::new(Vec::<WindowedValue<T>>::new())) }
    }
}

/// An output tag without its type.
#[derive(Clone)]
pub struct ErasedTag {
    id: Arc<str>,
    make: Arc<dyn Fn() -> Box<dyn TaggedBuffer> + Send + Sync>,
}

impl ErasedTag {
    pub(crate) fn instantiate(&self) -> (Arc<str>, Box<dyn TaggedBuffer>) {
        (self.id.clone(), (self.make)())
    }
}

impl std::fmt::Debug for ErasedTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ErasedTag({})", self.id)
    }
}

/// What a [`DoFn`] sees of the element being processed, and where it writes.
pub struct ProcessContext<'a, I, O> {
    element: &'a WindowedValue<I>,
    main: &'a mut Vec<WindowedValue<O>>,
    tagged: &'a mut [(Arc<str>, Box<dyn TaggedBuffer>)],
    error: &'a mut Option<String>,
    pub(crate) sides: crate::transforms::side::SideInputs<'a>,
}

impl<'a, I, O> ProcessContext<'a, I, O> {
    pub(crate) fn new(
        element: &'a WindowedValue<I>,
        main: &'a mut Vec<WindowedValue<O>>,
        tagged: &'a mut [(Arc<str>, Box<dyn TaggedBuffer>)],
        error: &'a mut Option<String>,
        sides: crate::transforms::side::SideInputs<'a>,
    ) -> Self {
        ProcessContext { element, main, tagged, error, sides }
    }
}

#[doc(hidden)]
pub trait TaggedBuffer: Send {
    fn as_any(&mut self) -> &mut dyn std::any::Any;
    fn flush(&mut self, port: usize, cx: &mut OpContext<'_>) -> u64;
}

impl<T: Data> TaggedBuffer for Vec<WindowedValue<T>> {
    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn flush(&mut self, port: usize, cx: &mut OpContext<'_>) -> u64 {
        let n = self.len() as u64;
        cx.out.emit(port, std::mem::take(self));
        n
    }
}

impl<'a, I, O: Data> ProcessContext<'a, I, O> {
    /// The element.
    pub fn element(&self) -> &I {
        &self.element.value
    }
    /// Its timestamp.
    pub fn timestamp(&self) -> Timestamp {
        self.element.timestamp
    }
    /// Its window.
    pub fn window(&self) -> Window {
        self.element.window
    }
    /// Its pane.
    pub fn pane(&self) -> PaneInfo {
        self.element.pane
    }
    /// Stop the pipeline with an error naming this transform (for input a
    /// function cannot handle and that must not be skipped).
    pub fn fail(&mut self, message: impl Into<String>) {
        self.error.get_or_insert(message.into());
    }
    /// Emit to the main output with the element's timestamp, window and pane.
    pub fn output(&mut self, value: O) {
        self.main.push(self.element.with_value(value));
    }
    /// Emit to the main output with another timestamp, which must be valid
    /// and not before the element's (zero allowed skew). A violation fails
    /// the pipeline with a message naming the transform.
    pub fn output_with_timestamp(&mut self, value: O, timestamp: Timestamp) {
        match check_output_timestamp(self.element.timestamp, timestamp) {
            Ok(ts) => self.main.push(WindowedValue { timestamp: ts, ..self.element.with_value(value) }),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }
    /// Emit to an additional output declared with
    /// [`par_do_with_outputs`](ElementwiseExt::par_do_with_outputs).
    pub fn output_to<T: Data>(&mut self, tag: &OutputTag<T>, value: T) {
        let v = self.element.with_value(value);
        match self.tagged.iter_mut().find(|(id, _)| **id == *tag.id) {
            Some((_, buf)) => buf.as_any().downcast_mut::<Vec<WindowedValue<T>>>().expect("tag type").push(v),
            None => {
                self.error.get_or_insert(format!("output tag '{}' was not declared", tag.id));
            }
        }
    }
}

/// A user function applied to every element, with Beam's lifecycle: `setup`
/// once per instance, `start_bundle`/`finish_bundle` around each bundle,
/// `process` per element, `teardown` at the end. Instances are cloned per
/// worker.
///
/// ```
/// use weir_pipeline::{DoFn, ProcessContext};
/// #[derive(Clone)]
/// struct SplitWords;
/// impl DoFn for SplitWords {
///     type In = String;
///     type Out = String;
///     fn process(&mut self, cx: &mut ProcessContext<'_, String, String>) {
///         for w in cx.element().clone().split_whitespace() {
///             cx.output(w.to_string());
///         }
///     }
/// }
/// ```
pub trait DoFn: Clone + Send + Sync + 'static {
    /// Input element type.
    type In: Data;
    /// Main output type.
    type Out: Data;
    /// Once per instance, before anything else.
    fn setup(&mut self) {}
    /// Before each bundle.
    fn start_bundle(&mut self) {}
    /// For each element.
    fn process(&mut self, cx: &mut ProcessContext<'_, Self::In, Self::Out>);
    /// After each bundle.
    fn finish_bundle(&mut self) {}
    /// Once per instance, at the end.
    fn teardown(&mut self) {}
}

/// The outputs of a `ParDo` with tagged outputs.
pub struct ParDoOutputs<O> {
    /// The main output.
    pub main: PCollection<O>,
    tagged: Vec<(Arc<str>, usize)>,
}

impl<O: Data> ParDoOutputs<O> {
    pub(crate) fn new(main: PCollection<O>, tags: &[ErasedTag]) -> Self {
        ParDoOutputs { main, tagged: tags.iter().enumerate().map(|(i, t)| (t.id.clone(), i + 1)).collect() }
    }
    /// The collection of an additional output.
    pub fn get<T: Data>(&self, tag: &OutputTag<T>) -> Option<PCollection<T>> {
        let port = self.tagged.iter().find(|(id, _)| **id == *tag.id)?.1;
        Some(self.main.pipeline().collection(self.main.node, port, self.main.windowing().clone()))
    }
}

/// Runs a `DoFn` over bundles: its lifecycle, its outputs and counters.
/// Shared by `ParDo` with and without side inputs.
pub(crate) struct DoFnRunner<D: DoFn> {
    dofn: D,
    started: bool,
    tagged: Vec<(Arc<str>, Box<dyn TaggedBuffer>)>,
}

impl<D: DoFn> DoFnRunner<D> {
    pub(crate) fn new(dofn: D, tags: &[ErasedTag]) -> Self {
        DoFnRunner { dofn, started: false, tagged: tags.iter().map(ErasedTag::instantiate).collect() }
    }

    /// One bundle: `start_bundle`, `process` per element (reading `sides`),
    /// `finish_bundle`, then emit and count the outputs.
    pub(crate) fn run_bundle(
        &mut self,
        elements: &[WindowedValue<D::In>],
        sides: &[crate::transforms::side::SideEntry],
        cx: &mut OpContext<'_>,
    ) -> OpResult {
        if !self.started {
            self.dofn.setup();
            self.started = true;
        }
        let mut main = Vec::with_capacity(elements.len());
        let mut error = None;
        self.dofn.start_bundle();
        for v in elements {
            let sides = crate::transforms::side::SideInputs { entries: sides, window: v.window, unreadable_in: None };
            let mut pcx = ProcessContext::new(v, &mut main, &mut self.tagged, &mut error, sides);
            self.dofn.process(&mut pcx);
            if let Some(message) = error.take() {
                return Err(cx.error(message));
            }
        }
        self.dofn.finish_bundle();
        let mut n = main.len() as u64;
        cx.out.emit(0, main);
        for (i, (_, buf)) in self.tagged.iter_mut().enumerate() {
            n += buf.flush(i + 1, cx);
        }
        NodeCounters::add(&cx.counters.elements_out, n);
        Ok(())
    }

    pub(crate) fn teardown(&mut self) {
        if self.started {
            self.dofn.teardown();
        }
    }
}

struct ParDoOp<D: DoFn> {
    runner: DoFnRunner<D>,
}

impl<D: DoFn> Operator for ParDoOp<D> {
    /// A DoFn's own fields are not checkpointed (as in Beam): only state cells and timers of a stateful DoFn are.
    fn stateless(&self) -> bool {
        true
    }

    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let input = batch.into_vec::<D::In>()?;
        NodeCounters::add(&cx.counters.elements_in, input.len() as u64);
        self.runner.run_bundle(&input, &[], cx)?;
        Ok(())
    }

    fn finish(&mut self, _cx: &mut OpContext<'_>) -> OpResult {
        self.runner.teardown();
        Ok(())
    }
}

fn par_do_impl<D: DoFn>(input: &PCollection<D::In>, dofn: D, tags: &[ErasedTag]) -> ParDoOutputs<D::Out> {
    let p = input.pipeline().clone();
    let idx = p.add_node("ParDo", vec![input.as_input(Routing::Forward)], 1 + tags.len(), placeholder());
    let name = p.node_name(idx);
    let tag_ids: Vec<Arc<str>> = tags.iter().map(|t| t.id.clone()).collect();
    for (i, a) in tag_ids.iter().enumerate() {
        if tag_ids[..i].contains(a) {
            p.record_error(&name, format!("output tag '{a}' is declared twice"));
        }
    }
    let tags: Vec<ErasedTag> = tags.to_vec();
    p.set_factory(
        idx,
        NodeKind::Operator(Arc::new(move |_w: &WorkerInfo| {
            Box::new(ParDoOp { runner: DoFnRunner::new(dofn.clone(), &tags) }) as Box<dyn Operator>
        })),
    );
    ParDoOutputs {
        main: p.collection(idx, 0, input.windowing().clone()),
        tagged: tag_ids.into_iter().enumerate().map(|(i, id)| (id, i + 1)).collect(),
    }
}

pub(crate) fn placeholder() -> NodeKind {
    NodeKind::Operator(Arc::new(|_: &WorkerInfo| -> Box<dyn Operator> {
        unreachable!("a node's factory is set when the node is added")
    }))
}
