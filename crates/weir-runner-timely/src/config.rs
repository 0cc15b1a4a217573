//! The runner's configuration: how it is deployed (threads, or processes
//! of a cluster), its limits, and how the processes of a cluster connect
//! and agree on the job.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use timely::CommunicationConfig;
use weir_runtime::{Graph, NodeKind, PipelineError};

use crate::cluster;

/// How the runner is deployed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deployment {
    /// One process, this many worker threads.
    Threads(usize),
    /// Several processes over TCP.
    Cluster {
        /// Worker threads per process.
        threads: usize,
        /// This process's index into `addresses`.
        process: usize,
        /// `host:port` of every process, in process order.
        addresses: Vec<String>,
    },
}

/// The Timely Dataflow runner.
///
/// ```
/// use weir_pipeline::prelude::*;
/// use weir_runner_timely::TimelyRunner;
/// let p = Pipeline::new();
/// let out = p.create(0..100u64).map(|x| (x % 3, x)).combine_per_key(Sum::new()).collect();
/// p.run_with(&TimelyRunner::threads(2)).unwrap();
/// let mut v = out.values();
/// v.sort();
/// assert_eq!(v, vec![(0, 1683), (1, 1617), (2, 1650)]);
/// ```
#[derive(Clone, Debug)]
pub struct TimelyRunner {
    /// Threads or processes.
    pub deployment: Deployment,
    /// Records in flight between operators, per process, above which sources
    /// pause (bounded memory: timely has no flow control of its own).
    pub max_in_flight: u64,
    /// Watermark alignment: an instance of a source pauses while its
    /// watermark is more than this ahead of the slowest instance of the
    /// same source on this process, so one fast split cannot fill the
    /// windows of every operator downstream (`None`: no alignment).
    pub max_watermark_drift: Option<weir_model::Duration>,
    /// On a cluster: how long a process waits for the others to start and
    /// connect before giving up with an error naming the missing ones.
    pub connect_timeout: StdDuration,
    /// On a cluster: how long a peer may send nothing (no data, no
    /// heartbeat) before it is taken for lost and the job fails.
    pub peer_timeout: StdDuration,
    /// On a cluster: what the processes must agree on besides the
    /// pipeline's shape (the application's configuration: input, options).
    pub job_description: Option<String>,
    /// Checkpointing (none by default).
    pub checkpoints: Option<crate::CheckpointConfig>,
    /// Where keyed operators keep their state, whatever the pipeline asks
    /// (`None`: as the pipeline asks, by default in memory).
    pub state_backend: Option<weir_runtime::StateBackend>,
}

/// Default for [`TimelyRunner::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 1 << 20;
/// Default for [`TimelyRunner::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: StdDuration = StdDuration::from_secs(60);
/// Default for [`TimelyRunner::peer_timeout`].
pub const DEFAULT_PEER_TIMEOUT: StdDuration = StdDuration::from_secs(30);

impl Default for TimelyRunner {
    /// All cores of this machine.
    fn default() -> Self {
        TimelyRunner::threads(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }
}

impl TimelyRunner {
    /// Embedded, `n` worker threads.
    pub fn threads(n: usize) -> Self {
        TimelyRunner {
            deployment: Deployment::Threads(n.max(1)),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_watermark_drift: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            peer_timeout: DEFAULT_PEER_TIMEOUT,
            job_description: None,
            checkpoints: None,
            state_backend: None,
        }
    }

    /// One process of a cluster.
    pub fn cluster(threads: usize, process: usize, addresses: Vec<String>) -> Self {
        TimelyRunner {
            deployment: Deployment::Cluster { threads: threads.max(1), process, addresses },
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_watermark_drift: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            peer_timeout: DEFAULT_PEER_TIMEOUT,
            job_description: None,
            checkpoints: None,
            state_backend: None,
        }
    }

    /// One process of a cluster whose addresses are listed in `hostfile`,
    /// one `host:port` per line in process order (blank lines and `#`
    /// comments ignored).
    pub fn cluster_from_hostfile(
        threads: usize,
        process: usize,
        hostfile: &std::path::Path,
    ) -> Result<Self, PipelineError> {
        let text = std::fs::read_to_string(hostfile)
            .map_err(|e| PipelineError::Runner(format!("cannot read host file {}: {e}", hostfile.display())))?;
        let addresses: Vec<String> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if addresses.is_empty() {
            return Err(PipelineError::Runner(format!("host file {} lists no addresses", hostfile.display())));
        }
        Ok(TimelyRunner::cluster(threads, process, addresses))
    }

    /// On a cluster: wait at most this long for every process to start.
    pub fn with_connect_timeout(mut self, t: StdDuration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// On a cluster: a peer silent for this long is taken for lost.
    pub fn with_peer_timeout(mut self, t: StdDuration) -> Self {
        self.peer_timeout = t;
        self
    }

    /// On a cluster: what else the processes must agree on (the
    /// application's configuration); processes that disagree refuse to run
    /// together, naming what differs.
    pub fn with_job_description(mut self, job: impl Into<String>) -> Self {
        self.job_description = Some(job.into());
        self
    }

    /// Pause sources while more than `n` records are in flight in a process.
    pub fn with_max_in_flight(mut self, n: u64) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Align the instances of each source on a process: one pauses while
    /// its watermark is more than `drift` ahead of the slowest unfinished
    /// instance (Flink's watermark alignment). Bounds the state of windowed
    /// operators when splits are read at different speeds. An instance whose
    /// splits are all idle still counts with its last watermark, so keep
    /// alignment off for sources that may go idle for long.
    pub fn with_max_watermark_drift(mut self, drift: weir_model::Duration) -> Self {
        self.max_watermark_drift = Some(drift);
        self
    }

    /// Keep keyed operators' state in `backend`, whatever the pipeline
    /// asks (`Pipeline::with_state_backend`).
    pub fn with_state_backend(mut self, backend: weir_runtime::StateBackend) -> Self {
        self.state_backend = Some(backend);
        self
    }

    /// Timely's allocators for this deployment. On a cluster, Weir opens
    /// the connections itself (time limits, the job handshake, watched
    /// connections: `cluster`), then hands them to timely.
    /// Checkpoint the run as `config` says, and resume from the last
    /// complete checkpoint of its location if there is one: sources rewind
    /// to their positions and every operator's state, timers and holds are
    /// restored. The location belongs to one job (pipeline and
    /// configuration): another is refused. A run that completed marks the
    /// location: running it again does nothing and leaves its output.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_pipeline::prelude::*;
    /// use weir_runner_timely::{CheckpointConfig, TimelyRunner};
    /// let dir = tempfile::tempdir().unwrap();
    /// let runner = TimelyRunner::threads(2)
    ///     .with_checkpoints(CheckpointConfig::local(dir.path(), Duration::from_millis(100)));
    /// let p = Pipeline::new();
    /// let out = p.create(vec![1u64, 2, 3]).map(|x| x * 10).collect();
    /// let first = p.run_with(&runner).unwrap();
    /// assert_eq!(first.recovery.unwrap().resumed_from, None);
    /// let mut v = out.values();
    /// v.sort();
    /// assert_eq!(v, vec![10, 20, 30]);
    /// // The same job again: it completed, so nothing runs.
    /// let p = Pipeline::new();
    /// let again = p.create(vec![1u64, 2, 3]).map(|x| x * 10).collect();
    /// assert!(p.run_with(&runner).unwrap().recovery.unwrap().already_completed);
    /// assert!(again.values().is_empty());
    /// ```
    pub fn with_checkpoints(mut self, config: crate::CheckpointConfig) -> Self {
        self.checkpoints = Some(config);
        self
    }

    pub(crate) fn allocators(
        &self,
        graph: &Graph,
        threads: usize,
        restoring: Option<u64>,
    ) -> Result<Allocators, PipelineError> {
        use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
        use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
        match &self.deployment {
            Deployment::Threads(n) => {
                let config = if *n == 1 { CommunicationConfig::Thread } else { CommunicationConfig::Process(*n) };
                let (builders, others) = config.try_build().map_err(PipelineError::Runner)?;
                Ok((builders, others, None))
            }
            Deployment::Cluster { threads: _, process, addresses } => {
                if *process >= addresses.len() {
                    return Err(PipelineError::Cluster(format!(
                        "process index {process} is out of range for {} addresses",
                        addresses.len()
                    )));
                }
                let mut job = format!("{} processes; {}", addresses.len(), self.job_description(graph));
                if let Some(e) = restoring {
                    job.push_str(&format!("; restoring checkpoint {e}"));
                }
                let spec = cluster::ClusterSpec {
                    threads,
                    process: *process,
                    addresses,
                    connect_timeout: self.connect_timeout,
                    fingerprint: fnv1a(job.bytes()),
                    job: &job,
                };
                let (sockets, monitor) = cluster::connect(&spec).map_err(PipelineError::Cluster)?;
                let hooks = timely::communication::Hooks::default();
                let local = ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone());
                let (builders, guard) = initialize_networking_from_sockets(local, sockets, *process, threads, hooks)
                    .map_err(|e| PipelineError::Cluster(format!("starting the connections: {e}")))?;
                let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
                Ok((builders, Box::new(guard), Some(monitor)))
            }
        }
    }

    /// What the processes of a cluster must agree on: the pipeline's
    /// shape (every transform, its inputs and routing, outputs) and the
    /// description the application gave (`with_job_description`).
    pub(crate) fn job_description(&self, graph: &Graph) -> String {
        let mut d = String::new();
        if let Some(job) = &self.job_description {
            d.push_str(job);
            d.push_str("; ");
        }
        let mut shape = String::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            let kind = match n.kind {
                NodeKind::Source(_) => "source",
                NodeKind::Operator(_) => "operator",
            };
            shape.push_str(&format!("{i}:{}:{kind}:{}", n.name, n.outputs));
            for input in &n.inputs {
                shape.push_str(&format!(":{}.{}.{:?}", input.node, input.port, input.routing));
            }
            shape.push(';');
        }
        let names: Vec<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
        d.push_str(&format!(
            "pipeline of {} transforms ({}) over {} key groups, shape {:016x}",
            names.len(),
            names.join(", "),
            graph.max_key_groups.map_or("the default number of".to_string(), |n| n.to_string()),
            fnv1a(shape.bytes())
        ));
        d
    }
}

pub(crate) type Allocators = (
    Vec<timely::communication::allocator::AllocatorBuilder>,
    Box<dyn std::any::Any + Send>,
    Option<Arc<cluster::Monitor>>,
);

/// FNV-1a, 64 bits: a small stable hash (for fingerprints, not for keys).
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}
