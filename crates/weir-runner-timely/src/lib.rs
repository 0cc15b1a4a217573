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
}

impl Default for TimelyRunner {
    /// All cores of this machine.
    fn default() -> Self {
        TimelyRunner::threads(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }
}

impl TimelyRunner {
    /// Embedded, `n` worker threads.
    pub fn threads(n: usize) -> Self {
        TimelyRunner { deployment: Deployment::Threads(n.max(1)) }
    }

    /// One process of a cluster.
    pub fn cluster(threads: usize, process: usize, addresses: Vec<String>) -> Self {
        TimelyRunner { deployment: Deployment::Cluster { threads: threads.max(1), process, addresses } }
    }

    fn config(&self) -> Result<timely::Config, PipelineError> {
        let communication = match &self.deployment {
            Deployment::Threads(1) => CommunicationConfig::Thread,
            Deployment::Threads(n) => CommunicationConfig::Process(*n),
            Deployment::Cluster { threads, process, addresses } => {
                if *process >= addresses.len() {
                    return Err(PipelineError::Runner(format!(
                        "process index {process} is out of range for {} addresses",
                        addresses.len()
                    )));
                }
                CommunicationConfig::Cluster {
                    threads: *threads,
                    process: *process,
                    addresses: addresses.clone(),
                    report: false,
                    zerocopy: false,
                }
            }
        };
        Ok(timely::Config { communication, worker: WorkerConfig::default() })
    }
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

type SharedError = Arc<Mutex<Option<PipelineError>>>;

const POLL_BATCH: usize = 8192;

fn send(outputs: &mut [Output<u64, TBatch>], caps: &[Capability<u64>], emitter: &mut Emitter) {
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
            session.give(&caps[port], &mut TBatch(b));
        }
    }
}

fn failed(error: &SharedError) -> bool {
    error.lock().map(|e| e.is_some()).unwrap_or(true)
}

fn build_dataflow(
    worker: &mut timely::worker::Worker,
    graph: &Arc<Graph>,
    error: &SharedError,
    stage_shares: &[Arc<StageShare>],
    threads: usize,
) {
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
                        let pact = DistributorPact(move |_peers: usize| WeirDistributor { partition });
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
            let activator = scope.activator_for(builder.operator_info().address);
            let name = node.name.clone();
            let counters = node.counters.clone();
            let error = error.clone();
            let mut emitter = Emitter::new(node.outputs);
            match &node.kind {
                NodeKind::Source(factory) => {
                    let mut source = factory(&info);
                    builder.build_reschedule(move |caps| {
                        let mut caps = caps;
                        move |_frontiers| {
                            if caps.is_empty() {
                                return false;
                            }
                            if failed(&error) {
                                caps.clear();
                                return false;
                            }
                            let local_error = Mutex::new(None);
                            let mut cx = OpContext {
                                name: &name,
                                out: &mut emitter,
                                input_watermarks: &[],
                                processing_time: wall_clock(),
                                stage_output_watermark: Timestamp::MAX,
                                counters: &counters,
                                error: &local_error,
                            };
                            let status = source.poll(POLL_BATCH, &mut cx);
                            if status.processing_time.is_some() {
                                cx.fail_with(
                                    "this source moves processing time (a TestStream with processing-time advances), \
                                     which only the reference runner simulates for now",
                                );
                            }
                            if let Some(e) = local_error.into_inner().unwrap_or(None) {
                                *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                caps.clear();
                                return false;
                            }
                            send(&mut outputs, &caps, &mut emitter);
                            counters.publish_watermarks(info.index, status.watermark, status.watermark);
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
                        }
                    });
                }
                NodeKind::Operator(factory) => {
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
                        stage_wm: Timestamp::MIN,
                    };
                    let mut stashes: Vec<Stash> = (0..node.inputs.len()).map(|_| Stash::default()).collect();
                    builder.build(move |caps| {
                        driver.caps = caps;
                        move |frontiers| {
                            if failed(&error) {
                                for input in inputs.iter_mut() {
                                    input.drain(&mut |_, _| {});
                                }
                                driver.caps.clear();
                                return;
                            }
                            let now = wall_clock();
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
                                    stash.records += batch.len();
                                    stash.queue.push_back((time, batch));
                                });
                                let frontier = wms[port];
                                while let Some((time, _)) = stash.queue.front() {
                                    let t = dec(*time);
                                    let within_limit = stash.records <= STASH_LIMIT;
                                    if within_limit && (t > frontier || !driver.peers_reached(t.min(frontier))) {
                                        break;
                                    }
                                    let (_, batch) = stash.queue.pop_front().expect("front exists");
                                    stash.records -= batch.len();
                                    let target = t.min(frontier);
                                    if target > driver.seen[port] {
                                        driver.seen[port] = target;
                                        driver.advance(now);
                                    }
                                    driver.process(port, batch, now);
                                }
                                if !stash.queue.is_empty() {
                                    activator.activate();
                                }
                            }
                            let wakeup_due = driver.op.next_wakeup().is_some_and(|t| t < now);
                            // A port's watermark never passes a message still waiting in its stash.
                            let reachable: Vec<Timestamp> = wms
                                .iter()
                                .zip(&stashes)
                                .map(|(f, st)| st.queue.front().map_or(*f, |(t, _)| (*f).min(dec(*t))))
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
                            if let Some(e) = driver.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
                                *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                driver.caps.clear();
                                return;
                            }
                            if let Some(next) = driver.op.next_wakeup() {
                                if !driver.caps.is_empty() {
                                    let wait = (next.millis() - now.millis() + 1).clamp(0, 60_000) as u64;
                                    activator.activate_after(StdDuration::from_millis(wait));
                                }
                            }
                        }
                    });
                }
            }
        }
    });
}

/// Messages of one input port that arrived ahead of its frontier.
#[derive(Default)]
struct Stash {
    queue: std::collections::VecDeque<(u64, Batch)>,
    records: usize,
}

/// Records a port may hold back waiting for its frontier.
const STASH_LIMIT: usize = 1 << 20;

/// What the instances of one transform on one process share.
struct StageShare {
    holds: Vec<AtomicI64>,
    seen: Vec<AtomicI64>,
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
    stage_wm: Timestamp,
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
        let holds = self.stage.holds.iter().map(|h| h.load(Ordering::Acquire)).min().unwrap_or(i64::MAX);
        let stage = input.min(Timestamp::from_millis(holds));
        self.stage_wm = self.stage_wm.max(stage);
        self.stage_wm
    }

    fn publish_hold(&self) {
        if self.stage.holds.len() > 1 {
            let input = self.seen.iter().copied().min().unwrap_or(Timestamp::MAX);
            self.stage.seen[self.local].store(input.millis(), Ordering::Release);
            self.stage.holds[self.local].store(self.op.hold().millis(), Ordering::Release);
        }
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
        let mut cx = OpContext {
            name: &self.name,
            out: &mut self.emitter,
            input_watermarks: &self.seen,
            processing_time: now,
            stage_output_watermark: stage,
            counters: &self.counters,
            error: &self.error,
        };
        self.op.advance(&mut cx);
        self.settle(now);
    }

    /// Process one batch and send its output at the current capabilities.
    fn process(&mut self, port: usize, batch: Batch, now: Timestamp) {
        let stage = self.stage_output_watermark();
        let mut cx = OpContext {
            name: &self.name,
            out: &mut self.emitter,
            input_watermarks: &self.seen,
            processing_time: now,
            stage_output_watermark: stage,
            counters: &self.counters,
            error: &self.error,
        };
        self.op.process(port, batch, &mut cx);
        self.publish_hold();
        send(&mut self.outputs, &self.caps, &mut self.emitter);
    }

    /// Send pending output, then move the capabilities to the output
    /// watermark `min(input watermarks, hold)`; at +inf, finish and release.
    fn settle(&mut self, now: Timestamp) {
        self.publish_hold();
        send(&mut self.outputs, &self.caps, &mut self.emitter);
        let input_wm = self.seen.iter().copied().min().unwrap_or(Timestamp::MAX);
        let out_wm = input_wm.min(self.op.hold());
        self.counters.publish_watermarks(self.worker, input_wm, out_wm);
        if out_wm == Timestamp::MAX {
            if !self.finished {
                self.finished = true;
                let stage = self.stage_output_watermark();
                let mut cx = OpContext {
                    name: &self.name,
                    out: &mut self.emitter,
                    input_watermarks: &self.seen,
                    processing_time: now,
                    stage_output_watermark: stage,
                    counters: &self.counters,
                    error: &self.error,
                };
                self.op.finish(&mut cx);
                send(&mut self.outputs, &self.caps, &mut self.emitter);
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
        let config = self.config()?;
        let threads = match &self.deployment {
            Deployment::Threads(n) => *n,
            Deployment::Cluster { threads, .. } => *threads,
        };
        let error: SharedError = Arc::new(Mutex::new(None));
        let stage_shares: Arc<Vec<Arc<StageShare>>> = Arc::new(
            graph
                .nodes
                .iter()
                .map(|_| {
                    Arc::new(StageShare {
                        holds: (0..threads).map(|_| AtomicI64::new(i64::MIN)).collect(),
                        seen: (0..threads).map(|_| AtomicI64::new(i64::MIN)).collect(),
                    })
                })
                .collect(),
        );
        let g = graph.clone();
        let e = error.clone();
        let guards = timely::execute(config, move |worker| {
            build_dataflow(worker, &g, &e, &stage_shares, threads);
            while worker.step_or_park(Some(StdDuration::from_millis(5))) {}
        })
        .map_err(PipelineError::Runner)?;
        let results = guards.join();
        if let Some(e) = error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        for r in results {
            r.map_err(|e| PipelineError::Runner(format!("a worker failed: {e}")))?;
        }
        Ok(RunResult { metrics: graph.metrics() })
    }
}
