//! Building pipelines: [`Pipeline`], [`PCollection`], and the frozen
//! [`Graph`] runners execute.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use weir_model::WindowingStrategy;

use crate::batch::Batch;
use crate::data::{Data, Key, WindowedValue};
use crate::error::PipelineError;
use crate::operator::{CounterSnapshot, NodeCounters, Operator, Source, SplitState, WorkerInfo};
use weir_model::Timestamp;

/// Makes an operator instance for a worker.
pub type OperatorFactory = Arc<dyn Fn(&WorkerInfo) -> Box<dyn Operator> + Send + Sync>;
/// Makes a source instance for a worker.
pub type SourceFactory = Arc<dyn Fn(&WorkerInfo) -> Box<dyn Source> + Send + Sync>;
/// Splits a batch into one batch per worker.
pub type Partitioner = Arc<dyn Fn(Batch, usize) -> Vec<Batch> + Send + Sync>;

/// How a batch travels to a consumer on another worker.
#[derive(Clone)]
pub enum Routing {
    /// Stay on the producing worker.
    Forward,
    /// Partition by a function of the value (e.g. the key's hash).
    Partitioned(Partitioner),
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Routing::Forward => f.write_str("Forward"),
            Routing::Partitioned(_) => f.write_str("Partitioned"),
        }
    }
}

/// Hash used to route keys to workers: stable across processes.
pub fn route_hash<K: Hash>(k: &K) -> u64 {
    let mut h = DefaultHasher::new();
    k.hash(&mut h);
    h.finish()
}

/// A partitioner routing each value by `hash(route(&value))`.
pub fn partition_by<T: Data, R: Hash>(route: impl Fn(&T) -> R + Send + Sync + 'static) -> Routing {
    Routing::Partitioned(Arc::new(move |batch: Batch, peers: usize| {
        let mut parts: Vec<Vec<WindowedValue<T>>> = (0..peers).map(|_| Vec::new()).collect();
        for v in batch.into_vec::<T>() {
            let i = (route_hash(&route(&v.value)) % peers as u64) as usize;
            parts[i].push(v);
        }
        parts.into_iter().map(Batch::new).collect()
    }))
}

/// A routing that sends all values of a key to the worker that owns the key.
pub fn partition_by_key<K: Key, V: Data>() -> Routing {
    partition_by::<(K, V), K>(|kv| kv.0.clone())
}

/// One input of a node.
#[derive(Clone, Debug)]
pub struct NodeInput {
    /// The producing node.
    pub node: usize,
    /// The producer's output port.
    pub port: usize,
    /// How batches get to this node's workers.
    pub routing: Routing,
}

/// What a node runs.
#[derive(Clone)]
pub enum NodeKind {
    /// A source.
    Source(SourceFactory),
    /// An operator.
    Operator(OperatorFactory),
}

/// A transform in the frozen graph.
#[derive(Clone)]
pub struct Node {
    /// Unique name.
    pub name: String,
    /// Inputs, in port order.
    pub inputs: Vec<NodeInput>,
    /// Number of output ports.
    pub outputs: usize,
    /// What runs.
    pub kind: NodeKind,
    /// Shared live counters.
    pub counters: Arc<NodeCounters>,
    /// A scripted source that moves processing time (a TestStream with
    /// processing-time steps): runners must simulate processing time.
    pub simulated_time: bool,
    /// A scripted source (a TestStream): runners play it one step at a time,
    /// each step processed by every operator before the next, so that every
    /// runner sees the same sequence of bundles, watermarks and processing
    /// times.
    pub scripted: bool,
}

/// The pipeline as runners see it: nodes in topological order (every input
/// refers to an earlier node).
#[derive(Clone)]
pub struct Graph {
    /// The nodes.
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Counters of every transform, by name.
    pub fn metrics(&self) -> Metrics {
        Metrics { nodes: self.nodes.iter().map(|n| (n.name.clone(), n.counters.clone())).collect() }
    }
}

/// Live access to the counters of a pipeline's transforms; clone it into
/// another thread to watch a running pipeline.
#[derive(Clone, Debug)]
pub struct Metrics {
    nodes: Vec<(String, Arc<NodeCounters>)>,
}

impl Metrics {
    /// The counters of the transform named `name`.
    pub fn get(&self, name: &str) -> Option<CounterSnapshot> {
        self.nodes.iter().find(|(n, _)| n == name).map(|(_, c)| c.snapshot())
    }
    /// Every transform's counters, in graph order.
    pub fn all(&self) -> Vec<(String, CounterSnapshot)> {
        self.nodes.iter().map(|(n, c)| (n.clone(), c.snapshot())).collect()
    }

    /// Every transform's watermarks per worker, in graph order.
    pub fn watermarks(&self) -> Vec<WatermarkSnapshot> {
        let mut out = Vec::new();
        for (name, c) in &self.nodes {
            for (&worker, &(input, output)) in c.watermarks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                out.push(WatermarkSnapshot { transform: name.clone(), worker, input, output });
            }
        }
        out
    }

    /// Every split of every source, with its watermark and idleness.
    pub fn splits(&self) -> Vec<(String, String, SplitState)> {
        let mut out = Vec::new();
        for (name, c) in &self.nodes {
            for (split, state) in c.splits.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                out.push((name.clone(), split.clone(), *state));
            }
        }
        out
    }

    /// What holds the pipeline's watermark back right now: the non-idle,
    /// unfinished split with the lowest watermark, or else the transform
    /// instance whose output watermark is furthest behind its input
    /// watermark; with how far it is behind the most advanced split or the
    /// instance's own input. `None` when nothing is behind.
    pub fn holding_back(&self) -> Option<HoldBack> {
        let splits = self.splits();
        let active: Vec<&(String, String, SplitState)> = splits.iter().filter(|s| !s.2.idle && !s.2.done).collect();
        if active.len() > 1 {
            let min = active.iter().min_by_key(|s| s.2.watermark).expect("non-empty");
            let max = active.iter().map(|s| s.2.watermark).max().expect("non-empty");
            if min.2.watermark < max {
                return Some(HoldBack {
                    what: format!("split {} of {}", min.1, min.0),
                    watermark: min.2.watermark,
                    behind_by: max.since(min.2.watermark),
                });
            }
        }
        self.watermarks().into_iter().filter(|w| w.output < w.input).max_by_key(|w| w.input.since(w.output)).map(|w| {
            HoldBack {
                what: format!("{} on worker {}", w.transform, w.worker),
                watermark: w.output,
                behind_by: w.input.since(w.output),
            }
        })
    }
}

/// The watermarks of one transform instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatermarkSnapshot {
    /// The transform.
    pub transform: String,
    /// The worker.
    pub worker: usize,
    /// Its input watermark.
    pub input: Timestamp,
    /// Its output watermark.
    pub output: Timestamp,
}

/// What holds a watermark back, and by how much.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldBack {
    /// A split or a transform instance.
    pub what: String,
    /// Its watermark.
    pub watermark: Timestamp,
    /// How far it is behind.
    pub behind_by: weir_model::Duration,
}

/// Executes pipelines.
pub trait Runner {
    /// Run the graph to completion (bounded input) and report.
    fn run(&self, graph: Arc<Graph>) -> Result<RunResult, PipelineError>;
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The counters of every transform.
    pub metrics: Metrics,
    /// The most records this process held at once between operators (in
    /// flight, or parked waiting for progress), for runners that bound it
    /// (Timely).
    pub peak_in_flight: Option<u64>,
    /// On a cluster: the id every process of this run shares (process 0's,
    /// agreed when the processes connected), to tie what each process
    /// leaves behind to this run.
    pub run_id: Option<u64>,
}

impl RunResult {
    /// The counters of one transform.
    pub fn counters(&self, name: &str) -> Option<CounterSnapshot> {
        self.metrics.get(name)
    }
}

#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    errors: Vec<PipelineError>,
}

/// A pipeline under construction.
///
/// ```
/// use weir_pipeline::prelude::*;
/// let p = Pipeline::new();
/// let words = p.create(["a", "b", "a"].map(String::from)).map(|w| (w, 1u64));
/// let counts = words.combine_per_key(Sum::new()).collect();
/// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
/// let mut got: Vec<_> = counts.values();
/// got.sort();
/// assert_eq!(got, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
/// ```
#[derive(Clone, Default)]
pub struct Pipeline {
    inner: Rc<RefCell<Builder>>,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Pipeline::default()
    }

    fn unique_name(b: &Builder, base: &str) -> String {
        if !b.nodes.iter().any(|n| n.name == base) {
            return base.to_string();
        }
        (2..).map(|i| format!("{base}#{i}")).find(|n| !b.nodes.iter().any(|x| &x.name == n)).expect("a free name")
    }

    /// Add a node; returns its index. For transform authors.
    pub fn add_node(&self, name: &str, inputs: Vec<NodeInput>, outputs: usize, kind: NodeKind) -> usize {
        let mut b = self.inner.borrow_mut();
        let name = Self::unique_name(&b, name);
        b.nodes.push(Node {
            name,
            inputs,
            outputs,
            kind,
            counters: Arc::new(NodeCounters::default()),
            simulated_time: false,
            scripted: false,
        });
        b.nodes.len() - 1
    }

    /// Set the factory of node `i` (after its name is known). For transform authors.
    pub fn set_factory(&self, i: usize, kind: NodeKind) {
        self.inner.borrow_mut().nodes[i].kind = kind;
    }

    /// Rename node `i` (names stay unique).
    pub fn rename_node(&self, i: usize, name: &str) {
        let mut b = self.inner.borrow_mut();
        if b.nodes[i].name == name {
            return;
        }
        let unique = Self::unique_name(&b, name);
        b.nodes[i].name = unique;
    }

    /// Mark node `i` as a source that moves processing time.
    pub fn mark_simulated_time(&self, i: usize) {
        self.inner.borrow_mut().nodes[i].simulated_time = true;
    }

    /// Mark node `i` as a scripted source, played one step at a time (see
    /// [`Node::scripted`]).
    pub fn mark_scripted(&self, i: usize) {
        self.inner.borrow_mut().nodes[i].scripted = true;
    }

    /// Number of nodes added so far.
    pub fn node_count(&self) -> usize {
        self.inner.borrow().nodes.len()
    }

    /// The name given to node `i`.
    pub fn node_name(&self, i: usize) -> String {
        self.inner.borrow().nodes[i].name.clone()
    }

    /// Record a construction error (reported by [`build`](Self::build)).
    pub fn record_error(&self, transform: &str, message: impl Into<String>) {
        self.inner
            .borrow_mut()
            .errors
            .push(PipelineError::Construction { transform: transform.to_string(), message: message.into() });
    }

    /// A new collection produced by `node`'s output `port`.
    pub fn collection<T: Data>(&self, node: usize, port: usize, strategy: Arc<WindowingStrategy>) -> PCollection<T> {
        PCollection { pipeline: self.clone(), node, port, strategy, _t: PhantomData }
    }

    /// Freeze the pipeline, or report the first construction error.
    pub fn build(&self) -> Result<Arc<Graph>, PipelineError> {
        let b = self.inner.borrow();
        if let Some(e) = b.errors.first() {
            return Err(e.clone());
        }
        Ok(Arc::new(Graph { nodes: b.nodes.clone() }))
    }

    /// Live counters of the transforms added so far.
    pub fn metrics(&self) -> Metrics {
        Metrics { nodes: self.inner.borrow().nodes.iter().map(|n| (n.name.clone(), n.counters.clone())).collect() }
    }

    /// Build and run with `runner`.
    pub fn run_with(&self, runner: &dyn Runner) -> Result<RunResult, PipelineError> {
        runner.run(self.build()?)
    }
}

/// A distributed collection of `T`, each element with a timestamp, a window
/// and a pane, and the windowing strategy that groupings of it use.
pub struct PCollection<T> {
    pub(crate) pipeline: Pipeline,
    pub(crate) node: usize,
    pub(crate) port: usize,
    pub(crate) strategy: Arc<WindowingStrategy>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for PCollection<T> {
    fn clone(&self) -> Self {
        PCollection {
            pipeline: self.pipeline.clone(),
            node: self.node,
            port: self.port,
            strategy: self.strategy.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for PCollection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PCollection<{}>({} output {})",
            std::any::type_name::<T>(),
            self.pipeline.node_name(self.node),
            self.port
        )
    }
}

impl<T: Data> PCollection<T> {
    /// The pipeline this collection belongs to.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
    /// The windowing strategy of this collection.
    pub fn windowing(&self) -> &Arc<WindowingStrategy> {
        &self.strategy
    }
    /// This collection as the input of a new node.
    pub fn as_input(&self, routing: Routing) -> NodeInput {
        NodeInput { node: self.node, port: self.port, routing }
    }
    /// Name the transform that produced this collection (its counters are
    /// reported under that name).
    pub fn named(self, name: &str) -> Self {
        self.pipeline.rename_node(self.node, name);
        self
    }
    /// The name of the transform that produced this collection.
    pub fn producer_name(&self) -> String {
        self.pipeline.node_name(self.node)
    }
}

/// Values collected by [`collect`](crate::transforms::CollectExt::collect),
/// readable once the pipeline has run (in-process runners).
#[derive(Debug)]
pub struct Collected<T> {
    pub(crate) inner: Arc<Mutex<Vec<WindowedValue<T>>>>,
}

impl<T> Clone for Collected<T> {
    fn clone(&self) -> Self {
        Collected { inner: self.inner.clone() }
    }
}

impl<T> Default for Collected<T> {
    fn default() -> Self {
        Collected { inner: Arc::new(Mutex::new(Vec::new())) }
    }
}

impl<T: Clone> Collected<T> {
    /// Every collected element with its timestamp, window and pane.
    pub fn windowed(&self) -> Vec<WindowedValue<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Just the values.
    pub fn values(&self) -> Vec<T> {
        self.windowed().into_iter().map(|v| v.value).collect()
    }
}
