//! The frozen graph runners execute: [`Node`]s in topological order, each
//! with its inputs and how batches are routed to its workers.

use std::sync::Arc;

use serde::Serialize;

use crate::batch::Batch;
use crate::data::{Data, WindowedValue};
use crate::error::PipelineError;
use crate::keys::{default_key_groups, key_hash, KeyGroups};
use crate::metrics::{CounterSnapshot, Metrics, NodeCounters};
use crate::operator::{EpochCommit, Operator, Source, WorkerInfo};

/// Makes an operator instance for a worker.
pub type OperatorFactory = Arc<dyn Fn(&WorkerInfo) -> Box<dyn Operator> + Send + Sync>;
/// Makes a source instance for a worker.
pub type SourceFactory = Arc<dyn Fn(&WorkerInfo) -> Box<dyn Source> + Send + Sync>;
/// Splits a batch into one batch per worker (`groups.workers()` of them).
pub type Partitioner = Arc<dyn Fn(Batch, &KeyGroups) -> Result<Vec<Batch>, PipelineError> + Send + Sync>;

/// How a batch travels to a consumer on another worker.
#[derive(Clone)]
pub enum Routing {
    /// Stay on the producing worker.
    Forward,
    /// Partition by a function of the value (e.g. the key group of its key).
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

impl Routing {
    /// Each value to the worker that owns the key group of
    /// `hash(&value)` (a [`key_hash`]).
    pub fn by_hash<T: Data>(hash: impl Fn(&T) -> u64 + Send + Sync + 'static) -> Routing {
        Routing::Partitioned(Arc::new(move |batch: Batch, groups: &KeyGroups| {
            let mut parts: Vec<Vec<WindowedValue<T>>> = (0..groups.workers()).map(|_| Vec::new()).collect();
            for v in batch.into_vec::<T>()? {
                parts[groups.worker_of(hash(&v.value))].push(v);
            }
            Ok(parts.into_iter().map(Batch::new).collect())
        }))
    }
    /// Each `(key, value)` to the worker that owns its key.
    pub fn by_key<K: Data + Serialize, V: Data>() -> Routing {
        Routing::by_hash::<(K, V)>(|kv| key_hash(&kv.0))
    }
    /// Every batch to every worker.
    pub fn broadcast() -> Routing {
        Routing::Partitioned(Arc::new(|batch: Batch, groups: &KeyGroups| {
            Ok((0..groups.workers()).map(|_| batch.clone()).collect())
        }))
    }
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
    /// A transactional sink's commit (see [`EpochCommit`]).
    pub commit: Option<Arc<dyn EpochCommit>>,
}

/// The pipeline as runners see it: nodes in topological order (every input
/// refers to an earlier node).
#[derive(Clone)]
pub struct Graph {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The number of key groups: the most workers that can share keyed
    /// state, fixed for the life of the pipeline's checkpoints. `None`:
    /// chosen from the first run's worker count by
    /// [`default_key_groups`].
    pub max_key_groups: Option<u32>,
    /// Where keyed operators keep their state, as the pipeline asks
    /// (`None`: as the runner says, by default in memory).
    pub state_backend: Option<crate::operator::StateBackend>,
    /// How the job is stopped from outside (cancel, drain).
    pub control: crate::JobControl,
}

impl Graph {
    /// A graph of `nodes` with the default number of key groups.
    pub fn new(nodes: Vec<Node>) -> Graph {
        Graph { nodes, max_key_groups: None, state_backend: None, control: Default::default() }
    }
    /// Counters of every transform, by name.
    pub fn metrics(&self) -> Metrics {
        Metrics::of(self.nodes.iter().map(|n| (n.name.clone(), n.counters.clone())))
    }
    /// How this graph's key groups spread over `workers` workers, or why
    /// they cannot.
    pub fn key_groups(&self, workers: usize) -> Result<KeyGroups, PipelineError> {
        KeyGroups::new(self.max_key_groups.unwrap_or_else(|| default_key_groups(workers)), workers)
    }
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
    /// With checkpoints: what this run started from and did.
    pub recovery: Option<RecoveryReport>,
}

/// What a checkpointed run started from and committed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The checkpoint epoch it resumed from (`None`: from the beginning).
    pub resumed_from: Option<u64>,
    /// The job had completed before in this checkpoint location: nothing
    /// ran, and its committed output is left as it was.
    pub already_completed: bool,
    /// Every checkpoint this run committed: (epoch, milliseconds from the
    /// end of the epoch at the sources to its manifest, bytes of state).
    pub committed: Vec<(u64, u64, u64)>,
}

impl RunResult {
    /// The counters of one transform.
    pub fn counters(&self, name: &str) -> Option<CounterSnapshot> {
        self.metrics.get(name)
    }
}
