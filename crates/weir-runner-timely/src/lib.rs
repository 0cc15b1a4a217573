//! # weir-runner-timely
//!
//! Runs Weir pipelines on Timely Dataflow: embedded in the program on N
//! worker threads (the default runner), or across several processes over TCP.
//! Timely is pinned to an exact version and nothing of it is visible outside
//! this crate.
//!
//! Every edge carries Weir's type-erased [`Batch`]es as the timely
//! container; a partitioned edge uses a [`Distributor`] that splits each batch
//! by the consumer's routing function (the key's hash), so batches cross
//! threads as typed values and processes as bincode. The timely timestamp is
//! the watermark (an encoded `Timestamp`): every operator holds one
//! capability per output at its output watermark `min(input frontier,
//! operator hold)`, so watermarks propagate through timely's own progress
//! tracking, and an empty frontier is the watermark +infinity.

#![warn(missing_docs)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use timely::communication::{Pull, Push};
use timely::dataflow::channels::pact::{DistributorPact, Pipeline as PipelinePact};
use timely::dataflow::channels::pushers::exchange::Distributor;
use timely::dataflow::channels::pushers::Output;
use timely::dataflow::channels::{ContainerBytes, Message};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::progress::Stamp;
use timely::{Accountable, CommunicationConfig, WorkerConfig};

mod cluster;
mod control;
use weir_model::time::MIN_TIMESTAMP_MILLIS;
use weir_model::Timestamp;
use weir_pipeline::{
    Batch, Emitter, Graph, NodeKind, OpContext, Partitioner, PipelineError, Routing, RunResult, Runner, WorkerInfo,
};

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
}

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

    /// Timely's allocators for this deployment. On a cluster, Weir opens
    /// the connections itself (time limits, the job handshake, watched
    /// connections: `cluster`), then hands them to timely.
    fn allocators(&self, graph: &Graph, threads: usize) -> Result<Allocators, PipelineError> {
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
                let job = self.job_description(graph, addresses.len());
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
    fn job_description(&self, graph: &Graph, processes: usize) -> String {
        let mut d = format!("{processes} processes; ");
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
            "pipeline of {} transforms ({}), shape {:016x}",
            names.len(),
            names.join(", "),
            fnv1a(shape.bytes())
        ));
        d
    }
}

type Allocators = (
    Vec<timely::communication::allocator::AllocatorBuilder>,
    Box<dyn std::any::Any + Send>,
    Option<Arc<cluster::Monitor>>,
);

/// FNV-1a, 64 bits: a small stable hash (for fingerprints, not for keys).
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

// ---------------------------------------------------------------------------
// The container: Weir batches.

/// A Weir batch as a timely container.
#[derive(Clone, Default)]
struct TBatch(Batch);

impl Accountable for TBatch {
    fn record_count(&self) -> i64 {
        self.0.len() as i64
    }
}

impl ContainerBytes for TBatch {
    fn from_bytes(bytes: timely::bytes::arc::Bytes) -> Self {
        TBatch(Batch::from_encoded(&bytes[..]))
    }
    fn length_in_bytes(&self) -> usize {
        (self.0.encoded_len() + 7) & !7
    }
    fn into_bytes<W: std::io::Write>(&self, writer: &mut W) {
        let len = self.0.encoded_len();
        self.0.write_encoded(writer);
        let pad = ((len + 7) & !7) - len;
        writer.write_all(&[0u8; 8][..pad]).expect("writing padding");
    }
}

/// Splits each batch with the consumer's partitioner.
struct WeirDistributor {
    partition: Partitioner,
    /// This worker's process and the workers per process, to tell which
    /// parts leave the process.
    process: usize,
    threads: usize,
    in_flight: Arc<InFlight>,
}

impl Distributor<TBatch> for WeirDistributor {
    fn partition<T: Clone, P: Push<Message<T, TBatch>>>(
        &mut self,
        container: &mut TBatch,
        stamp: &Stamp<T>,
        pushers: &mut [P],
    ) {
        let batch = std::mem::take(&mut container.0);
        for (i, part) in (self.partition)(batch, pushers.len()).into_iter().enumerate() {
            if !part.is_empty() {
                if i / self.threads != self.process {
                    self.in_flight.sub(part.len() as i64);
                }
                Message::push_at(&mut TBatch(part), stamp.clone(), &mut pushers[i]);
            }
        }
    }
    fn flush<T: Clone, P: Push<Message<T, TBatch>>>(&mut self, _stamp: &Stamp<T>, _pushers: &mut [P]) {}
}

// ---------------------------------------------------------------------------
// Time.

fn enc(t: Timestamp) -> u64 {
    (t.millis() - MIN_TIMESTAMP_MILLIS) as u64
}

fn dec(t: u64) -> Timestamp {
    Timestamp::from_millis((t as i64).saturating_add(MIN_TIMESTAMP_MILLIS))
}

fn wall_clock() -> Timestamp {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Timestamp::from_millis(ms)
}

trait InputPort {
    /// Every queued message: its time (the watermark it was sent at) and batch.
    fn drain(&mut self, f: &mut dyn FnMut(u64, Batch));
}

impl<P: Pull<Message<u64, TBatch>>> InputPort
    for timely::dataflow::operators::generic::InputHandleCore<u64, TBatch, P>
{
    fn drain(&mut self, f: &mut dyn FnMut(u64, Batch)) {
        self.for_each(|cap, data| f(cap.least().copied().unwrap_or(0), std::mem::take(&mut data.0)));
    }
}

pub(crate) type SharedError = Arc<Mutex<Option<PipelineError>>>;

/// Records this process holds in flight between operators: counted once per
/// consumer when sent, uncounted when received (or when a partitioner sends
/// them to another process). Sources pause while it is above
/// the runner's `max_in_flight`: timely has no flow control of its own.
struct InFlight {
    now: AtomicI64,
    /// Records parked in stashes, waiting for progress (bounded by
    /// `STASH_LIMIT` per input port); not in flight, but in memory.
    parked: AtomicI64,
    /// The most records ever in flight plus parked.
    peak: AtomicI64,
    limit: i64,
    /// Watermark alignment of source instances (see `max_watermark_drift`).
    max_drift: Option<weir_model::Duration>,
}

impl InFlight {
    fn add(&self, n: i64) {
        let v = self.now.fetch_add(n, Ordering::AcqRel) + n;
        self.peak.fetch_max(v + self.parked.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    fn sub(&self, n: i64) {
        self.now.fetch_sub(n, Ordering::AcqRel);
    }
    fn park(&self, n: i64) {
        self.now.fetch_sub(n, Ordering::AcqRel);
        self.parked.fetch_add(n, Ordering::AcqRel);
    }
    fn unpark(&self, n: i64) {
        self.parked.fetch_sub(n, Ordering::AcqRel);
    }
    fn over_limit(&self) -> bool {
        self.now.load(Ordering::Acquire) > self.limit
    }
}

/// Processing time for one process: the wall clock, or — for a pipeline
/// with a TestStream that moves processing time — a simulated clock the
/// TestStream moves once the dataflow is quiescent.
struct Clock {
    simulated: bool,
    now: AtomicI64,
    /// Per node, per local worker: the simulated time the operator applied.
    applied: Vec<Vec<AtomicI64>>,
    /// Every operator of every local worker, to wake them on a clock step.
    activators: Mutex<Vec<timely::scheduling::SyncActivator>>,
}

impl Clock {
    fn now(&self) -> Timestamp {
        if self.simulated {
            Timestamp::from_millis(self.now.load(Ordering::Acquire))
        } else {
            wall_clock()
        }
    }
}

/// Whether every operator of this process has processed everything sent to
/// it and seen the watermarks its upstream operators published; with
/// `clock`, also applied that simulated time.
fn quiescent(
    graph: &Graph,
    in_flight: &InFlight,
    clock: &Clock,
    threads: usize,
    process: usize,
    at: Option<i64>,
) -> bool {
    if in_flight.now.load(Ordering::Acquire) != 0 || in_flight.parked.load(Ordering::Acquire) != 0 {
        return false;
    }
    let workers: Vec<usize> = (process * threads..(process + 1) * threads).collect();
    let published: Vec<std::collections::BTreeMap<usize, (Timestamp, Timestamp)>> =
        graph.nodes.iter().map(|n| n.counters.watermarks.lock().unwrap_or_else(|p| p.into_inner()).clone()).collect();
    for (i, node) in graph.nodes.iter().enumerate() {
        if matches!(node.kind, NodeKind::Source(_)) {
            continue;
        }
        for (local, w) in workers.iter().enumerate() {
            let Some(&(input, _)) = published[i].get(w) else { return false };
            // Timely tracks progress per operator across workers: whatever the
            // routing, an input's frontier is the minimum over every instance
            // of the upstream operator.
            let expected = node
                .inputs
                .iter()
                .map(|inp| {
                    workers
                        .iter()
                        .map(|v| published[inp.node].get(v).map_or(Timestamp::MIN, |x| x.1))
                        .min()
                        .unwrap_or(Timestamp::MIN)
                })
                .min()
                .unwrap_or(Timestamp::MAX);
            if input != expected {
                return false;
            }
            if let Some(t) = at {
                if clock.applied[i][local].load(Ordering::Acquire) != t {
                    return false;
                }
            }
        }
    }
    true
}

/// Whether a source instance whose watermark is `mine` should pause: it
/// is more than the allowed drift ahead of the slowest unfinished instance
/// of the same source on this process (`local` workers).
fn too_far_ahead(
    counters: &weir_pipeline::NodeCounters,
    flow: &InFlight,
    mine: Timestamp,
    local: &std::ops::Range<usize>,
) -> bool {
    let Some(drift) = flow.max_drift else { return false };
    if mine == Timestamp::MIN || mine == Timestamp::MAX {
        return false;
    }
    let watermarks = counters.watermarks.lock().unwrap_or_else(|p| p.into_inner());
    // An instance that has not published a watermark yet is at MIN.
    let published = watermarks.range(local.clone()).count();
    let slowest = if published < local.len() {
        Timestamp::MIN
    } else {
        watermarks.range(local.clone()).map(|(_, (wm, _))| *wm).min().unwrap_or(Timestamp::MAX)
    };
    slowest < Timestamp::MAX && mine > slowest + drift
}

/// Where a scripted source (a TestStream) stands between two steps: each
/// step is processed by every operator of the process before the next one
/// is played, as on the reference runner.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum ClockStep {
    /// Ready to play the next step.
    Play,
    /// Waiting for quiescence; then, for a processing-time step, moving the
    /// clock to this time.
    Quiesce(Option<i64>),
    /// Clock moved; waiting for every operator to apply it and settle.
    Apply(i64),
}

/// Default for [`TimelyRunner::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 1 << 20;

const POLL_BATCH: usize = 8192;

fn send(outputs: &mut [Output<u64, TBatch>], caps: &[Capability<u64>], emitter: &mut Emitter, flow: &Flow) {
    if caps.is_empty() {
        assert!(emitter.is_empty(), "an operator emitted data after releasing its capabilities: it would be lost");
        return;
    }
    for (port, output) in outputs.iter_mut().enumerate() {
        let batches: Vec<Batch> = emitter.drain(port).collect();
        if batches.is_empty() {
            continue;
        }
        let mut session = output.activate();
        for b in batches {
            flow.in_flight.add(b.len() as i64 * flow.consumers[port] as i64);
            session.give(&caps[port], &mut TBatch(b));
        }
    }
}

/// What a node needs to account its traffic.
#[derive(Clone)]
struct Flow {
    in_flight: Arc<InFlight>,
    /// Number of consumers of each output port.
    consumers: Vec<usize>,
}

fn failed(error: &SharedError) -> bool {
    error.lock().map(|e| e.is_some()).unwrap_or(true)
}

/// Record the job's error (the first one wins). A failed job keeps its
/// capabilities: the worker loop drops the dataflow, so that nothing
/// downstream takes the failure for the end of the input.
fn record(error: &SharedError, e: PipelineError) {
    let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(e);
    }
}

fn build_dataflow(
    worker: &mut timely::worker::Worker,
    graph: &Arc<Graph>,
    error: &SharedError,
    stage_shares: &[Arc<StageShare>],
    threads: usize,
    in_flight: &Arc<InFlight>,
    clock: &Arc<Clock>,
) {
    let mut consumers: Vec<Vec<usize>> = graph.nodes.iter().map(|n| vec![0; n.outputs]).collect();
    for node in &graph.nodes {
        for input in &node.inputs {
            consumers[input.node][input.port] += 1;
        }
    }
    let info = WorkerInfo { index: worker.index(), peers: worker.peers() };
    worker.dataflow::<u64, _, _>(|scope| {
        let mut streams: Vec<Vec<Stream<'_, u64, TBatch>>> = Vec::with_capacity(graph.nodes.len());
        for (node_index, node) in graph.nodes.iter().enumerate() {
            let mut builder = OperatorBuilder::new(node.name.clone(), scope);
            let mut inputs: Vec<Box<dyn InputPort>> = Vec::new();
            for input in &node.inputs {
                let stream = streams[input.node][input.port].clone();
                match &input.routing {
                    Routing::Forward => inputs.push(Box::new(builder.new_input(stream, PipelinePact))),
                    Routing::Partitioned(p) => {
                        let partition = p.clone();
                        let in_flight = in_flight.clone();
                        let process = info.index / threads;
                        let pact = DistributorPact(move |_peers: usize| WeirDistributor {
                            partition,
                            process,
                            threads,
                            in_flight,
                        });
                        inputs.push(Box::new(builder.new_input(stream, pact)));
                    }
                }
            }
            let mut outputs = Vec::with_capacity(node.outputs);
            let mut out_streams = Vec::with_capacity(node.outputs);
            for _ in 0..node.outputs {
                let (output, stream) = builder.new_output::<TBatch>();
                outputs.push(output);
                out_streams.push(stream);
            }
            streams.push(out_streams);
            let address = builder.operator_info().address;
            let activator = scope.activator_for(address.clone());
            if clock.simulated {
                clock
                    .activators
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(scope.worker().sync_activator_for(address.to_vec()));
            }
            let clock = clock.clone();
            let name = node.name.clone();
            let counters = node.counters.clone();
            let error = error.clone();
            let mut emitter = Emitter::new(node.outputs);
            let flow = Flow { in_flight: in_flight.clone(), consumers: consumers[node_index].clone() };
            match &node.kind {
                NodeKind::Source(factory) => {
                    let mut source = factory(&info);
                    let graph = graph.clone();
                    let process = info.index / threads;
                    let mut step = ClockStep::Play;
                    let scripted = node.scripted;
                    let stages: Vec<Arc<StageShare>> = stage_shares.to_vec();
                    let mut last_wm = Timestamp::MIN;
                    let local = process * threads..(process + 1) * threads;
                    let panic_name = name.clone();
                    let panic_error = error.clone();
                    builder.build_reschedule(move |caps| {
                        let mut caps = caps;
                        move |_frontiers| {
                            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                if caps.is_empty() || failed(&error) {
                                    return false;
                                }
                                // A processing-time step of a TestStream: wait until everything
                                // before it is done, move the clock, wait until every operator
                                // applied it and settled, then play on.
                                match step {
                                    ClockStep::Play => {}
                                    ClockStep::Quiesce(t) => {
                                        if quiescent(&graph, &flow.in_flight, &clock, threads, process, None) {
                                            for share in stages.iter() {
                                                share.settle();
                                            }
                                            step = match t {
                                                None => ClockStep::Play,
                                                Some(t) => {
                                                    clock.now.store(t, Ordering::Release);
                                                    for a in clock
                                                        .activators
                                                        .lock()
                                                        .unwrap_or_else(|p| p.into_inner())
                                                        .iter()
                                                    {
                                                        let _ = a.activate();
                                                    }
                                                    ClockStep::Apply(t)
                                                }
                                            };
                                        }
                                        activator.activate();
                                        return true;
                                    }
                                    ClockStep::Apply(t) => {
                                        if quiescent(&graph, &flow.in_flight, &clock, threads, process, Some(t)) {
                                            for share in stages.iter() {
                                                share.settle();
                                            }
                                            step = ClockStep::Play;
                                        }
                                        activator.activate();
                                        return true;
                                    }
                                }
                                if flow.in_flight.over_limit()
                                    || too_far_ahead(&counters, &flow.in_flight, last_wm, &local)
                                {
                                    activator.activate_after(StdDuration::from_millis(1));
                                    return true;
                                }
                                let local_error = Mutex::new(None);
                                let mut cx = OpContext {
                                    name: &name,
                                    out: &mut emitter,
                                    input_watermarks: &[],
                                    processing_time: clock.now(),
                                    stage_output_watermark: Timestamp::MAX,
                                    counters: &counters,
                                    error: &local_error,
                                };
                                let status = source.poll(POLL_BATCH, &mut cx);
                                if let Some(t) = status.processing_time {
                                    if clock.simulated {
                                        step = ClockStep::Quiesce(Some(t.millis()));
                                    } else {
                                        cx.fail_with(
                                            "a source moved processing time, but the runner is not simulating it",
                                        );
                                    }
                                } else if scripted {
                                    step = ClockStep::Quiesce(None);
                                }
                                if let Some(e) = local_error.into_inner().unwrap_or(None) {
                                    record(&error, e);
                                    return false;
                                }
                                send(&mut outputs, &caps, &mut emitter, &flow);
                                counters.publish_watermarks(info.index, status.watermark, status.watermark);
                                last_wm = status.watermark;
                                if status.watermark == Timestamp::MAX {
                                    caps.clear();
                                    return false;
                                }
                                let t = enc(status.watermark);
                                for cap in caps.iter_mut() {
                                    if *cap.time() < t {
                                        cap.downgrade(&t);
                                    }
                                }
                                if status.idle {
                                    activator.activate_after(StdDuration::from_millis(1));
                                } else {
                                    activator.activate();
                                }
                                true
                            }));
                            run.unwrap_or_else(|panic| {
                                record(&panic_error, PipelineError::from_panic(&panic_name, panic));
                                false
                            })
                        }
                    });
                }
                NodeKind::Operator(factory) => {
                    stage_shares[node_index].activators.lock().unwrap_or_else(|p| p.into_inner())
                        [info.index % threads] = Some(scope.worker().sync_activator_for(address.to_vec()));
                    let mut driver = OpDriver {
                        op: factory(&info),
                        name,
                        counters,
                        emitter,
                        seen: vec![Timestamp::MIN; node.inputs.len()],
                        finished: false,
                        outputs,
                        caps: Vec::new(),
                        error: Mutex::new(None),
                        stage: stage_shares[node_index].clone(),
                        local: info.index % threads,
                        worker: info.index,
                        flow: flow.clone(),
                        applied: Timestamp::MIN,
                        stage_wm: Timestamp::MIN,
                        out_wm: Timestamp::MIN,
                    };
                    let mut stashes: Vec<Stash> = (0..node.inputs.len()).map(|_| Stash::default()).collect();
                    let panic_name = node.name.clone();
                    let panic_error = error.clone();
                    builder.build(move |caps| {
                        driver.caps = caps;
                        move |frontiers| {
                            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                if failed(&error) {
                                    for input in inputs.iter_mut() {
                                        input.drain(&mut |_, batch| {
                                            if !batch.is_encoded() {
                                                driver.flow.in_flight.sub(batch.len() as i64);
                                            }
                                        });
                                    }
                                    return;
                                }
                                let now = clock.now();
                                let wms: Vec<Timestamp> = frontiers
                                    .iter()
                                    .map(|f| f.frontier().iter().min().map_or(Timestamp::MAX, |t| dec(*t)))
                                    .collect();
                                // A message was sent when its producer's output watermark was its
                                // time. It is processed once the port's watermark has reached that
                                // time (never past the port's frontier), so data sent after a
                                // watermark advance is processed after it, as on the reference
                                // runner. The frontier can lag the message by a round of progress
                                // tracking: such messages wait in a stash. The stash is bounded: past
                                // STASH_LIMIT records a message is processed with the (lower)
                                // frontier, which is still a valid execution of the model.
                                for (port, input) in inputs.iter_mut().enumerate() {
                                    let stash = &mut stashes[port];
                                    input.drain(&mut |time, batch| {
                                        // A local batch counts as in flight until processed or parked.
                                        let counted = if batch.is_encoded() { 0 } else { batch.len() as i64 };
                                        stash.push(time, batch, counted);
                                    });
                                    let frontier = wms[port];
                                    // In time order: once drained, a message no longer holds the
                                    // frontier back, so the port's watermark must never pass a
                                    // message still in the stash (senders on other processes are
                                    // not kept in step, and their messages interleave).
                                    while let Some(t) = stash.min_time() {
                                        let t = dec(t);
                                        let within_limit = stash.records <= STASH_LIMIT;
                                        if within_limit && (t > frontier || !driver.peers_reached(t.min(frontier))) {
                                            break;
                                        }
                                        let (batch, counted, parked) = stash.pop().expect("a message exists");
                                        let target = t.min(frontier);
                                        if target > driver.seen[port] {
                                            driver.seen[port] = target;
                                            driver.advance(now);
                                        }
                                        driver.process(port, batch, now);
                                        driver.flow.in_flight.sub(counted);
                                        driver.flow.in_flight.unpark(parked);
                                    }
                                    if !stash.queue.is_empty() {
                                        // Parked until progress: not in flight any more (the stash is
                                        // bounded by STASH_LIMIT), so paused sources can move the frontier.
                                        for (_, counted, parked) in stash.queue.values_mut() {
                                            let n = std::mem::take(counted);
                                            driver.flow.in_flight.park(n);
                                            *parked += n;
                                        }
                                        activator.activate();
                                    }
                                }
                                let wakeup_due = driver.op.next_wakeup().is_some_and(|t| t < now);
                                // A port's watermark never passes a message still waiting in its stash.
                                let reachable: Vec<Timestamp> = wms
                                    .iter()
                                    .zip(&stashes)
                                    .map(|(f, st)| st.min_time().map_or(*f, |t| (*f).min(dec(t))))
                                    .collect();
                                let moved = reachable.iter().zip(&driver.seen).any(|(f, s)| f > s);
                                if moved || wakeup_due {
                                    for (s, f) in driver.seen.iter_mut().zip(&reachable) {
                                        *s = (*s).max(*f);
                                    }
                                    driver.advance(now);
                                } else {
                                    driver.settle(now);
                                }
                                if clock.simulated && driver.applied != now {
                                    driver.applied = now;
                                    clock.applied[node_index][driver.local].store(now.millis(), Ordering::Release);
                                }
                                if let Some(e) = driver.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
                                    record(&error, e);
                                    return;
                                }
                                // A simulated clock only moves in steps, which wake every
                                // operator; a wall clock needs a wakeup at the next timer.
                                if let Some(next) = driver.op.next_wakeup().filter(|_| !clock.simulated) {
                                    if !driver.caps.is_empty() {
                                        let wait = (next.millis() - now.millis() + 1).clamp(0, 60_000) as u64;
                                        activator.activate_after(StdDuration::from_millis(wait));
                                    }
                                }
                            }));
                            if let Err(panic) = run {
                                record(&panic_error, PipelineError::from_panic(&panic_name, panic));
                            }
                        }
                    });
                }
            }
        }
    });
}

/// Messages of one input port that arrived ahead of its frontier, in
/// (time, arrival) order.
#[derive(Default)]
struct Stash {
    /// (time, arrival number) → (batch, records counted as in flight,
    /// records counted as parked)
    queue: std::collections::BTreeMap<(u64, u64), (Batch, i64, i64)>,
    arrivals: u64,
    records: usize,
}

impl Stash {
    fn push(&mut self, time: u64, batch: Batch, counted: i64) {
        self.records += batch.len();
        self.arrivals += 1;
        self.queue.insert((time, self.arrivals), (batch, counted, 0));
    }
    fn min_time(&self) -> Option<u64> {
        self.queue.first_key_value().map(|(k, _)| k.0)
    }
    fn pop(&mut self) -> Option<(Batch, i64, i64)> {
        let (_, v) = self.queue.pop_first()?;
        self.records -= v.0.len();
        Some(v)
    }
}

/// Records a port may hold back waiting for its frontier.
const STASH_LIMIT: usize = 1 << 14;

/// The operator context of a driver, from its fields (a macro so the
/// borrows of `op` and of the context's fields stay disjoint).
macro_rules! driver_cx {
    ($d:expr, $now:expr, $stage:expr) => {
        OpContext {
            name: &$d.name,
            out: &mut $d.emitter,
            input_watermarks: &$d.seen,
            processing_time: $now,
            stage_output_watermark: $stage,
            counters: &$d.counters,
            error: &$d.error,
        }
    };
}

/// What the instances of one transform on one process share.
struct StageShare {
    holds: Vec<AtomicI64>,
    seen: Vec<AtomicI64>,
    /// With a scripted source (played step by step): every instance's hold
    /// as it was when the previous step settled. The stage's output
    /// watermark during a step is computed from these, as the reference
    /// runner's single instance sees its own output watermark from before
    /// the step, whichever instance happens to process the step first.
    settled: Option<Vec<AtomicI64>>,
    /// Each local instance's activator: an instance whose hold held the
    /// stage back wakes the others when it releases it, so that they move
    /// their capabilities to the stage's new output watermark.
    activators: Mutex<Vec<Option<timely::scheduling::SyncActivator>>>,
}

impl StageShare {
    /// The previous step has settled everywhere: record every hold.
    fn settle(&self) {
        if let Some(settled) = &self.settled {
            for (s, h) in settled.iter().zip(&self.holds) {
                s.store(h.load(Ordering::Acquire), Ordering::Release);
            }
        }
    }
}

/// One operator on one worker, with its output capabilities.
struct OpDriver {
    op: Box<dyn weir_pipeline::Operator>,
    name: String,
    counters: Arc<weir_pipeline::NodeCounters>,
    emitter: Emitter,
    seen: Vec<Timestamp>,
    finished: bool,
    outputs: Vec<Output<u64, TBatch>>,
    caps: Vec<Capability<u64>>,
    error: Mutex<Option<PipelineError>>,
    /// The holds and input watermarks of this transform's instances on this
    /// process's workers.
    stage: Arc<StageShare>,
    /// This worker's slot in `stage.holds`.
    local: usize,
    /// This worker's index.
    worker: usize,
    flow: Flow,
    /// The simulated processing time last applied.
    applied: Timestamp,
    stage_wm: Timestamp,
    /// The output watermark last published (the capabilities' time).
    out_wm: Timestamp,
}

impl OpDriver {
    /// The output watermark of the transform over the workers of this
    /// process: min(this worker's input watermark, every worker's hold),
    /// never decreasing.
    fn stage_output_watermark(&mut self) -> Timestamp {
        if self.stage.holds.len() <= 1 {
            return Timestamp::MAX;
        }
        let input = self.seen.iter().copied().min().unwrap_or(Timestamp::MAX);
        let holds = self.stage.settled.as_ref().unwrap_or(&self.stage.holds);
        let holds = holds.iter().map(|h| h.load(Ordering::Acquire)).min().unwrap_or(i64::MAX);
        let stage = input.min(Timestamp::from_millis(holds));
        self.stage_wm = self.stage_wm.max(stage);
        self.stage_wm
    }

    fn publish_hold(&self) {
        if self.stage.holds.len() > 1 {
            let input = self.seen.iter().copied().min().unwrap_or(Timestamp::MAX);
            self.stage.seen[self.local].store(input.millis(), Ordering::Release);
            let hold = self.op.hold().millis();
            let old = self.stage.holds[self.local].swap(hold, Ordering::AcqRel);
            if hold > old && self.op.uses_stage_watermark() {
                let others = self.stage.holds.iter().enumerate().filter(|(j, _)| *j != self.local);
                if others.map(|(_, h)| h.load(Ordering::Acquire)).all(|h| old <= h) {
                    for (j, a) in self.stage.activators.lock().unwrap_or_else(|p| p.into_inner()).iter().enumerate() {
                        if let (true, Some(a)) = (j != self.local, a) {
                            let _ = a.activate();
                        }
                    }
                }
            }
        }
    }

    /// The lowest hold of this stage's instances on this process, now
    /// (`MAX` for a single instance or an operator that does not share
    /// its stage's watermark).
    fn stage_hold(&self) -> Timestamp {
        if self.stage.holds.len() <= 1 || !self.op.uses_stage_watermark() {
            return Timestamp::MAX;
        }
        Timestamp::from_millis(self.stage.holds.iter().map(|h| h.load(Ordering::Acquire)).min().unwrap_or(i64::MAX))
    }

    /// Whether every other instance of this stage on this process has
    /// reached input watermark `t` (always true for operators that do not
    /// read the stage watermark).
    fn peers_reached(&self, t: Timestamp) -> bool {
        !self.op.uses_stage_watermark()
            || self
                .stage
                .seen
                .iter()
                .enumerate()
                .all(|(j, s)| j == self.local || s.load(Ordering::Acquire) >= t.millis())
    }

    /// The input watermarks moved (or a processing-time wakeup is due):
    /// let the operator react, send what it emitted at the current
    /// capabilities, then downgrade them to the new output watermark.
    fn advance(&mut self, now: Timestamp) {
        let stage = self.stage_output_watermark();
        let mut cx = driver_cx!(self, now, stage);
        self.op.advance(&mut cx);
        self.settle(now);
    }

    /// Process one batch and send its output at the current capabilities.
    fn process(&mut self, port: usize, batch: Batch, now: Timestamp) {
        let stage = self.stage_output_watermark();
        let mut cx = driver_cx!(self, now, stage);
        self.op.process(port, batch, &mut cx);
        self.publish_hold();
        send(&mut self.outputs, &self.caps, &mut self.emitter, &self.flow);
    }

    /// Send pending output, then move the capabilities to the output
    /// watermark `min(input watermarks, hold)`; at +inf, finish and release.
    fn settle(&mut self, now: Timestamp) {
        self.publish_hold();
        send(&mut self.outputs, &self.caps, &mut self.emitter, &self.flow);
        let input_wm = self.seen.iter().copied().min().unwrap_or(Timestamp::MAX);
        // Never decreasing: a hold placed behind the output watermark (which
        // the model allows, as the stage's output watermark can be lower
        // than this instance's) does not pull it back.
        // The capabilities follow the stage's output watermark over this
        // process's instances, so that what one instance sends is stamped
        // as the stage's output, as on a runner with one instance.
        let out_wm = input_wm.min(self.op.hold()).min(self.stage_hold()).max(self.out_wm);
        self.out_wm = out_wm;
        self.counters.publish_watermarks(self.worker, input_wm, out_wm);
        if out_wm == Timestamp::MAX {
            if !self.finished {
                self.finished = true;
                let stage = self.stage_output_watermark();
                let mut cx = driver_cx!(self, now, stage);
                self.op.finish(&mut cx);
                send(&mut self.outputs, &self.caps, &mut self.emitter, &self.flow);
            }
            self.caps.clear();
        } else {
            let t = enc(out_wm);
            for cap in self.caps.iter_mut() {
                if *cap.time() < t {
                    cap.downgrade(&t);
                }
            }
        }
    }
}

impl Runner for TimelyRunner {
    fn run(&self, graph: Arc<Graph>) -> Result<RunResult, PipelineError> {
        let threads = match &self.deployment {
            Deployment::Threads(n) => *n,
            Deployment::Cluster { threads, .. } => *threads,
        };
        // A TestStream defines processing time: it starts at 0 and only the
        // script moves it (as on the reference runner), even for a script
        // that never moves it.
        let moves_time = graph.nodes.iter().any(|n| n.simulated_time);
        let scripted = graph.nodes.iter().any(|n| n.scripted);
        let simulated = moves_time || scripted;
        if moves_time && matches!(self.deployment, Deployment::Cluster { .. }) {
            return Err(PipelineError::Runner(
                "a TestStream that moves processing time needs a single process (threads), \
                 not a cluster: the simulated clock is shared in memory"
                    .into(),
            ));
        }
        let clock = Arc::new(Clock {
            simulated,
            now: AtomicI64::new(0),
            applied: graph.nodes.iter().map(|_| (0..threads).map(|_| AtomicI64::new(i64::MIN)).collect()).collect(),
            activators: Mutex::new(Vec::new()),
        });
        let error: SharedError = Arc::new(Mutex::new(None));
        let stage_shares: Arc<Vec<Arc<StageShare>>> = Arc::new(
            graph
                .nodes
                .iter()
                .map(|_| {
                    Arc::new(StageShare {
                        holds: (0..threads).map(|_| AtomicI64::new(i64::MIN)).collect(),
                        seen: (0..threads).map(|_| AtomicI64::new(i64::MIN)).collect(),
                        settled: scripted.then(|| (0..threads).map(|_| AtomicI64::new(i64::MIN)).collect()),
                        activators: Mutex::new((0..threads).map(|_| None).collect()),
                    })
                })
                .collect(),
        );
        let in_flight = Arc::new(InFlight {
            now: AtomicI64::new(0),
            parked: AtomicI64::new(0),
            peak: AtomicI64::new(0),
            limit: self.max_in_flight.min(i64::MAX as u64) as i64,
            max_drift: self.max_watermark_drift,
        });
        let (builders, others, monitor) = self.allocators(&graph, threads)?;
        let worker_loop = Arc::new(control::WorkerLoop {
            error: error.clone(),
            cluster: monitor.clone().map(|m| (m, self.peer_timeout)),
        });
        let g = graph.clone();
        let e = error.clone();
        let f = in_flight.clone();
        let c = clock.clone();
        let guards = timely::execute::execute_from(builders, others, WorkerConfig::default(), move |worker| {
            let main = worker.next_dataflow_index();
            build_dataflow(worker, &g, &e, &stage_shares, threads, &f, &c);
            worker_loop.run(worker, main);
        })
        .map_err(PipelineError::Runner);
        // Joining the workers, then (when the guards drop) timely's
        // communication threads; either may panic after a peer was lost.
        let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || guards.map(|g| g.join())));
        cluster::restore_panics();
        let lost = monitor.as_ref().and_then(|m| m.first_loss());
        if let Some(e) = error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        let results = match joined {
            Ok(results) => results?,
            Err(_) => {
                return Err(match lost {
                    Some(l) => PipelineError::Cluster(l.to_string()),
                    None => PipelineError::Runner("timely's threads failed".into()),
                })
            }
        };
        for r in results {
            r.map_err(|e| PipelineError::Runner(format!("a worker failed: {e}")))?;
        }
        let peak = in_flight.peak.load(Ordering::Relaxed).max(0) as u64;
        Ok(RunResult { metrics: graph.metrics(), peak_in_flight: Some(peak), run_id: monitor.map(|m| m.run_id()) })
    }
}
