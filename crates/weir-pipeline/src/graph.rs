//! Building pipelines: [`Pipeline`] and [`PCollection`]; [`Pipeline::build`]
//! freezes them into the runtime's [`Graph`].

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use weir_model::WindowingStrategy;
use weir_runtime::keys::{KeyGroups, MAX_KEY_GROUPS_LIMIT};
use weir_runtime::{
    Data, Graph, Metrics, Node, NodeCounters, NodeInput, NodeKind, PipelineError, Routing, RunResult, Runner,
    WindowedValue,
};

#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    errors: Vec<PipelineError>,
    max_key_groups: Option<u32>,
    state_backend: Option<weir_runtime::StateBackend>,
    control: weir_runtime::JobControl,
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
            commit: None,
        });
        b.nodes.len() - 1
    }

    /// Make node `i` a transactional sink committed by `commit` when each
    /// checkpoint completes. For transform authors.
    pub fn set_commit(&self, i: usize, commit: Arc<dyn weir_runtime::EpochCommit>) {
        self.inner.borrow_mut().nodes[i].commit = Some(commit);
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
        if let Some(n) = b.max_key_groups {
            KeyGroups::new(n, 1)?;
        }
        if let Some(weir_runtime::StateBackend::Lsm { resident_keys: 0, .. }) = b.state_backend {
            return Err(PipelineError::Runner("an LSM state backend needs at least 1 resident key".into()));
        }
        Ok(Arc::new(Graph {
            nodes: b.nodes.clone(),
            max_key_groups: b.max_key_groups,
            state_backend: b.state_backend.clone(),
            control: b.control.clone(),
        }))
    }

    /// The handle that stops this pipeline's runs from outside: drain
    /// (sources stop, every window fires, the run ends normally) or cancel
    /// (the run stops now with `PipelineError::Cancelled`). See
    /// [`JobControl`](weir_runtime::JobControl).
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// use weir_pipeline::{QueueSource, WatermarkPolicy};
    /// let p = Pipeline::new();
    /// let queue = QueueSource::<u32>::new(&["live"]); // never closed: unbounded
    /// let input = p.read_unbounded(queue.clone(), WatermarkPolicy::bounded_out_of_orderness(Duration::ZERO));
    /// let sums = input.combine_globally(Sum::new()).collect();
    /// let control = p.control();
    /// queue.push(0, 7, Timestamp::from_millis(1));
    /// std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_millis(50));
    ///     control.drain();
    /// });
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(sums.values(), vec![7]);
    /// ```
    pub fn control(&self) -> weir_runtime::JobControl {
        self.inner.borrow().control.clone()
    }

    /// Set the number of key groups (default: 128, or more for a first run
    /// on more than 85 workers; `weir_runtime::keys::default_key_groups`):
    /// the most workers that can
    /// share this pipeline's keyed state, as Flink's maximum parallelism.
    /// Keys are spread over key groups by a stable hash, and each worker owns
    /// a contiguous range of them, so a checkpoint restores with any worker
    /// count up to this number. Between 1 and 32768.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new().with_max_key_groups(4096);
    /// assert_eq!(p.build().unwrap().max_key_groups, Some(4096));
    /// assert!(Pipeline::new().with_max_key_groups(0).build().is_err());
    /// ```
    pub fn with_max_key_groups(self, n: u32) -> Self {
        if n == 0 || n > MAX_KEY_GROUPS_LIMIT {
            self.record_error(
                "Pipeline",
                format!("max key groups must be between 1 and {MAX_KEY_GROUPS_LIMIT}, not {n}"),
            );
        }
        self.inner.borrow_mut().max_key_groups = Some(n);
        self
    }

    /// Where keyed transforms (groupings, combines) keep their state
    /// while running: in memory (the default) or in an on-disk LSM tree
    /// for state larger than memory. A runner's own choice
    /// (`TimelyRunner::with_state_backend`) takes precedence.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let dir = tempfile::tempdir().unwrap();
    /// let p = Pipeline::new()
    ///     .with_state_backend(StateBackend::Lsm { dir: dir.path().into(), resident_keys: 2 });
    /// let sums = p.create((0..100u64).map(|i| (i % 10, i))).combine_per_key(Sum::new()).collect();
    /// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// assert_eq!(sums.values().len(), 10);
    /// ```
    pub fn with_state_backend(self, backend: weir_runtime::StateBackend) -> Self {
        self.inner.borrow_mut().state_backend = Some(backend);
        self
    }

    /// Live counters of the transforms added so far.
    pub fn metrics(&self) -> Metrics {
        Metrics::of(self.inner.borrow().nodes.iter().map(|n| (n.name.clone(), n.counters.clone())))
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
    /// reported under that name, and checkpoints check it). Names are
    /// unique within a pipeline: a name already taken gets `#2`, `#3`, ...
    /// appended (`Parse`, `Parse#2`), in the order the transforms are
    /// added, so a pipeline built the same way always gets the same names.
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let a = p.create(vec![1u32]).map(|n| n + 1).named("Step");
    /// let _b = a.map(|n| n * 2).named("Step");
    /// let r = p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
    /// let names: Vec<String> = r.metrics.all().into_iter().map(|(name, _)| name).collect();
    /// assert!(names.contains(&"Step".to_string()) && names.contains(&"Step#2".to_string()), "{names:?}");
    /// ```
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
