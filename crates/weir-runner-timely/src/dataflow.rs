//! Building one worker's dataflow: a timely operator per node of the graph,
//! wired by the nodes' routing, each driven by a [`SourceDriver`] or an
//! [`OpDriver`]. A hook's error or panic is recorded as the job's error
//! (the first one wins) and the failed operator keeps its capabilities:
//! the worker loop drops the dataflow, so that nothing downstream takes the
//! failure for the end of the input.

use std::sync::{Arc, Mutex};

use timely::dataflow::channels::pact::{DistributorPact, Pipeline as PipelinePact};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;
use timely::dataflow::Stream;
use weir_checkpoint::{Blob, NodeState};
use weir_model::Timestamp;
use weir_runtime::keyed::KeyedReader;
use weir_runtime::{Emitter, Graph, KeyGroups, NodeKind, PipelineError, Rescale, Routing, WorkerInfo};

use crate::board::WatermarkBoard;
use crate::checkpoint::{Checkpointer, SharedWorkerCheckpoint, WorkerCheckpoint, WorkerRestore};
use crate::clock::{Clock, ClockStep};
use crate::flow::{Flow, InFlight};
use crate::operator::{OpDriver, StageShare};
use crate::source::{Next, Shared, SourceDriver, PAUSE};
use crate::stash::Stash;
use crate::time::{at, Time};
use crate::wire::{InputPort, TBatch, WeirDistributor};
use weir_checkpoint::NodeEntry;

/// The job's first error, shared by every worker of the process.
pub(crate) type SharedError = Arc<Mutex<Option<PipelineError>>>;

pub(crate) fn failed(error: &SharedError) -> bool {
    error.lock().map(|e| e.is_some()).unwrap_or(true)
}

/// Record the job's error (the first one wins).
pub(crate) fn record(error: &SharedError, e: PipelineError) {
    let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(e);
    }
}

/// Run a hook of transform `name`; its error or panic becomes the job's.
fn guarded<R>(name: &str, error: &SharedError, f: impl FnOnce() -> Result<R, PipelineError>) -> Option<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(r)) => Some(r),
        Ok(Err(e)) => {
            record(error, e);
            None
        }
        Err(panic) => {
            record(error, PipelineError::from_panic(name, panic));
            None
        }
    }
}

/// What every worker of a process builds its dataflow from.
pub(crate) struct Process {
    pub graph: Arc<Graph>,
    pub groups: KeyGroups,
    pub error: SharedError,
    pub stages: Arc<Vec<Arc<StageShare>>>,
    pub threads: usize,
    pub in_flight: Arc<InFlight>,
    pub clock: Arc<Clock>,
    pub board: Arc<WatermarkBoard>,
    pub checkpointer: Option<Arc<Checkpointer>>,
    /// Where keyed operators keep their state.
    pub state: weir_runtime::StateBackend,
}

/// What the worker loop watches of a checkpointed dataflow.
pub(crate) struct Checkpointed {
    /// The acks of every worker: epochs before its frontier are durable.
    pub probe: ProbeHandle<Time>,
    pub worker: SharedWorkerCheckpoint,
}

/// Node `node_index`'s entry in one worker's restored state.
fn entry_of<'a>(
    state: &'a weir_checkpoint::WorkerState,
    node_index: usize,
    name: &str,
) -> Result<&'a NodeEntry, PipelineError> {
    let entry = state.nodes.iter().find(|e| e.node as usize == node_index).ok_or_else(|| {
        PipelineError::Checkpoint(format!("the checkpoint holds no state for transform '{name}' (node {node_index})"))
    })?;
    if entry.name != name {
        return Err(PipelineError::Checkpoint(format!(
            "node {node_index} of the checkpoint is '{}', of this pipeline '{name}': not the same pipeline",
            entry.name
        )));
    }
    Ok(entry)
}

/// What one instance is restored from.
enum NodeRestore<'a> {
    /// Nothing: the run starts from the beginning.
    Fresh,
    /// Its own entry (as many workers as the checkpoint).
    Same(&'a NodeEntry),
    /// Every old instance's entry, by old worker index (rescaling).
    Rescaled(Vec<&'a NodeEntry>),
}

impl NodeRestore<'_> {
    /// Whether the restored instance had finished: for rescaling, only if
    /// every old instance had (a stage whose input was not done everywhere
    /// may still get input).
    fn finished(&self) -> bool {
        match self {
            NodeRestore::Fresh => false,
            NodeRestore::Same(e) => e.finished,
            NodeRestore::Rescaled(es) => es.iter().all(|e| e.finished),
        }
    }
}

fn node_restore<'a>(
    restored: &'a Option<WorkerRestore>,
    node_index: usize,
    name: &str,
) -> Result<NodeRestore<'a>, PipelineError> {
    Ok(match restored {
        None => NodeRestore::Fresh,
        Some(WorkerRestore::Same(state)) => NodeRestore::Same(entry_of(state, node_index, name)?),
        Some(WorkerRestore::Rescaled(all)) => {
            NodeRestore::Rescaled(all.iter().map(|s| entry_of(s, node_index, name)).collect::<Result<_, _>>()?)
        }
    })
}

/// Restore a source instance: seek to its position, or on rescaling to the
/// positions of every old instance (each reader takes its own splits').
fn restore_source(source: &mut dyn weir_runtime::Source, from: &NodeRestore<'_>, name: &str) -> OpResultOf<()> {
    let not_source = || PipelineError::Checkpoint(format!("the checkpoint holds an operator for source '{name}'"));
    match from {
        NodeRestore::Fresh => {}
        NodeRestore::Same(e) => match &e.state {
            NodeState::Source(position) => source.seek(position)?,
            NodeState::Operator(_) | NodeState::Changes { .. } | NodeState::Streamed(_) | NodeState::Stored { .. } => {
                return Err(not_source())
            }
        },
        NodeRestore::Rescaled(es) => {
            let mut all = Vec::new();
            for e in es {
                match &e.state {
                    NodeState::Source(position) => all.extend(position.iter().cloned()),
                    _ => return Err(not_source()),
                }
            }
            source.seek(&all)?;
        }
    }
    Ok(())
}

type OpResultOf<T> = Result<T, PipelineError>;

/// Restore an operator from a snapshot left in its state file: read as it
/// goes if the operator can ([`Operator::restore_keyed`](weir_runtime::Operator::restore_keyed)),
/// else read into memory with its changes folded in.
fn restore_stored(op: &mut dyn weir_runtime::Operator, whole: &Blob, changes: &[Vec<u8>]) -> OpResultOf<()> {
    if let Ok(mut reader) = KeyedReader::new(Box::new(whole.reader()), changes) {
        match op.restore_keyed(&mut reader) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            // A whole snapshot of an older Weir, not in key order: folded in memory.
            Err(_) if reader.out_of_order() => {}
            Err(e) => return Err(e),
        }
    }
    op.restore(&read_stored(whole, changes)?)
}

/// A snapshot left in its state file, read into memory with its changes folded in.
pub(crate) fn read_stored(whole: &Blob, changes: &[Vec<u8>]) -> OpResultOf<Vec<u8>> {
    let bytes = whole.read_all().map_err(|e| PipelineError::Checkpoint(e.to_string()))?;
    if changes.is_empty() {
        return Ok(bytes);
    }
    weir_runtime::KeyedSnapshot::merge_encoded(bytes, changes)
}

/// Restore an operator instance from its snapshot, or on rescaling from
/// every old instance's.
fn restore_operator(
    op: &mut dyn weir_runtime::Operator,
    from: &NodeRestore<'_>,
    name: &str,
    info: &WorkerInfo,
    groups: KeyGroups,
) -> OpResultOf<()> {
    let not_operator = || PipelineError::Checkpoint(format!("the checkpoint holds a source for '{name}'"));
    match from {
        NodeRestore::Fresh => {}
        NodeRestore::Same(e) => match &e.state {
            NodeState::Source(_) | NodeState::Changes { .. } | NodeState::Streamed(_) => return Err(not_operator()),
            _ if op.stateless() => {}
            NodeState::Operator(bytes) => op.restore(bytes)?,
            NodeState::Stored { whole, changes } => restore_stored(op, whole, changes)?,
        },
        NodeRestore::Rescaled(es) => {
            // (A rescaled run's snapshots were read into memory once, by `recover`.)
            let mut snapshots = Vec::with_capacity(es.len());
            for e in es {
                let NodeState::Operator(bytes) = &e.state else { return Err(not_operator()) };
                snapshots.push(bytes.as_slice());
            }
            if !op.stateless() {
                let owned = (0..snapshots.len()).filter(|j| j % info.peers == info.index).collect();
                let rescale = Rescale { snapshots: &snapshots, owned, worker: info.clone(), key_groups: groups };
                op.restore_rescaled(&rescale).map_err(|e| {
                    PipelineError::Checkpoint(format!(
                        "transform '{name}' cannot be restored from {} workers on {}: {e}",
                        snapshots.len(),
                        info.peers
                    ))
                })?;
            }
        }
    }
    Ok(())
}

pub(crate) fn build_dataflow(
    worker: &mut timely::worker::Worker,
    p: &Process,
) -> Result<Option<Checkpointed>, PipelineError> {
    let graph = &p.graph;
    let threads = p.threads;
    let mut consumers: Vec<Vec<usize>> = graph.nodes.iter().map(|n| vec![0; n.outputs]).collect();
    for node in &graph.nodes {
        for input in &node.inputs {
            consumers[input.node][input.port] += 1;
        }
    }
    let splits_for = p.checkpointer.as_ref().map_or(worker.peers(), |c| c.splits_for);
    let info = WorkerInfo {
        index: worker.index(),
        peers: worker.peers(),
        splits_for,
        state: p.state.clone(),
        checkpointed: p.checkpointer.is_some(),
    };
    let process = info.index / threads;
    let local = info.index % threads;
    let ckpt = p.checkpointer.as_ref().map(|c| WorkerCheckpoint::new(c.clone(), info.index, local, graph));
    let restored = p.checkpointer.as_ref().and_then(|c| c.take_restored(info.index));
    let base = p.checkpointer.as_ref().map_or(0, |c| c.base);
    let start = at(base, Timestamp::MIN);
    // The instances, made and restored before the dataflow is built, so
    // that a checkpoint that does not fit is an error of the run.
    enum Made {
        Source(Box<dyn weir_runtime::Source>),
        Operator(Box<dyn weir_runtime::Operator>, bool),
    }
    let restoring = std::time::Instant::now();
    let mut made = Vec::with_capacity(graph.nodes.len());
    for (node_index, node) in graph.nodes.iter().enumerate() {
        let from = node_restore(&restored, node_index, &node.name)?;
        let cannot =
            |why: &str| PipelineError::Checkpoint(format!("transform '{}' cannot be checkpointed: {why}", node.name));
        let finished = from.finished();
        match &node.kind {
            NodeKind::Source(factory) => {
                let mut source = factory(&info);
                restore_source(&mut *source, &from, &node.name)?;
                if ckpt.is_some() && source.position().is_none() {
                    return Err(cannot("its source cannot report positions to rewind to"));
                }
                // A restored finished source records its entry below.
                if let (Some(c), true) = (&ckpt, finished) {
                    let position = source.position().ok_or_else(|| cannot("no position"))?;
                    c.borrow_mut().record(node_index, base, NodeState::Source(position), true);
                }
                made.push(Made::Source(source));
            }
            NodeKind::Operator(factory) => {
                let mut op = factory(&info);
                restore_operator(&mut *op, &from, &node.name, &info, p.groups)?;
                if matches!(from, NodeRestore::Fresh) && ckpt.is_some() && !op.stateless() {
                    op.snapshot().map_err(|e| cannot(&e.to_string()))?;
                }
                // A restored instance that had finished stays finished.
                if let (Some(c), true) = (&ckpt, finished) {
                    let state = if op.stateless() { Vec::new() } else { op.snapshot()? };
                    c.borrow_mut().record(node_index, base, NodeState::Operator(state), true);
                }
                made.push(Made::Operator(op, finished));
            }
        }
    }
    if restored.is_some() && local == 0 {
        eprintln!(
            "weir: worker {} restored its operators' state in {} ms",
            info.index,
            restoring.elapsed().as_millis()
        );
    }
    let mut made = made.into_iter();
    let probe = worker.dataflow::<u64, _, _>(|outer| {
        outer.iterative::<u64, _, _>(|scope| {
            let mut streams: Vec<Vec<Stream<'_, Time, TBatch>>> = Vec::with_capacity(graph.nodes.len());
            for (node_index, node) in graph.nodes.iter().enumerate() {
                let mut builder = OperatorBuilder::new(node.name.clone(), scope);
                let mut inputs: Vec<Box<dyn InputPort>> = Vec::new();
                for input in &node.inputs {
                    let stream = streams[input.node][input.port].clone();
                    match &input.routing {
                        Routing::Forward => inputs.push(Box::new(builder.new_input(stream, PipelinePact))),
                        Routing::Partitioned(partition) => {
                            let (partition, groups, in_flight) = (partition.clone(), p.groups, p.in_flight.clone());
                            let pact = DistributorPact(move |_peers: usize| WeirDistributor {
                                partition,
                                groups,
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
                if p.clock.simulated {
                    p.clock.register(scope.worker().sync_activator_for(address.to_vec()));
                }
                let name = node.name.clone();
                let hook_name = node.name.clone();
                let error = p.error.clone();
                let flow = Flow { in_flight: p.in_flight.clone(), consumers: consumers[node_index].clone() };
                match made.next().expect("one instance per node") {
                    Made::Source(source) => {
                        let mut driver = SourceDriver {
                            source,
                            node: node_index,
                            name,
                            counters: node.counters.clone(),
                            emitter: Emitter::new(node.outputs),
                            outputs,
                            flow,
                            shared: Shared {
                                graph: graph.clone(),
                                board: p.board.clone(),
                                clock: p.clock.clone(),
                                stages: p.stages.clone(),
                                threads,
                                groups: p.groups,
                            },
                            worker: info.index,
                            scripted: node.scripted,
                            step: ClockStep::Play,
                            last_wm: Timestamp::MIN,
                            epoch: base,
                            ckpt: ckpt.clone(),
                            entered: std::time::Instant::now(),
                            uncommitted: Default::default(),
                        };
                        builder.build_reschedule(move |mut caps| {
                            for cap in caps.iter_mut() {
                                cap.downgrade(&start);
                            }
                            move |_frontiers| {
                                if failed(&error) {
                                    return false;
                                }
                                match guarded(&hook_name, &error, || driver.step(&mut caps)) {
                                    Some(Next::Now) => activator.activate(),
                                    Some(Next::Soon) => activator.activate_after(PAUSE),
                                    Some(Next::Done) | None => return false,
                                }
                                true
                            }
                        });
                    }
                    Made::Operator(op, finished) => {
                        p.stages[node_index].register(local, scope.worker().sync_activator_for(address.to_vec()));
                        let mut driver = OpDriver {
                            op,
                            node: node_index,
                            name,
                            counters: node.counters.clone(),
                            emitter: Emitter::new(node.outputs),
                            seen: vec![Timestamp::MIN; node.inputs.len()],
                            finished,
                            outputs,
                            caps: Vec::new(),
                            stage: p.stages[node_index].clone(),
                            local,
                            worker: info.index,
                            flow,
                            board: p.board.clone(),
                            clock: p.clock.clone(),
                            applied: Timestamp::MIN,
                            stage_wm: Timestamp::MIN,
                            out_wm: Timestamp::MIN,
                            stashes: (0..node.inputs.len()).map(|_| Stash::default()).collect(),
                            groups: p.groups,
                            epoch: base,
                            ckpt: ckpt.clone(),
                            chain: Default::default(),
                        };
                        builder.build(move |caps| {
                            driver.caps = caps;
                            for cap in driver.caps.iter_mut() {
                                cap.downgrade(&start);
                            }
                            move |frontiers| {
                                if failed(&error) {
                                    driver.discard(&mut inputs);
                                    return;
                                }
                                guarded(&hook_name, &error, || driver.schedule(&mut inputs, frontiers, &activator));
                            }
                        });
                    }
                }
            }
            ckpt.as_ref().map(|c| ack_operator(scope, c.clone(), local, base))
        })
    });
    Ok(probe.zip(ckpt).map(|(probe, worker)| Checkpointed { probe, worker }))
}

/// The worker's ack: a capability at the oldest epoch whose state file
/// is not yet durable, released once every instance finished. A probe on
/// the acks of every worker tells when a checkpoint is durable everywhere.
fn ack_operator(
    scope: timely::dataflow::Scope<'_, Time>,
    ckpt: SharedWorkerCheckpoint,
    local: usize,
    base: u64,
) -> ProbeHandle<Time> {
    let mut builder = OperatorBuilder::new("CheckpointAck".to_string(), scope);
    let (_output, stream) = builder.new_output::<TBatch>();
    let address = builder.operator_info().address;
    ckpt.borrow().checkpointer().register_ack(local, scope.worker().sync_activator_for(address.to_vec()));
    let activator = scope.activator_for(address);
    builder.build_reschedule(move |mut caps| {
        for cap in caps.iter_mut() {
            cap.downgrade(&at(base, Timestamp::MIN));
        }
        move |_frontiers| {
            let c = ckpt.borrow();
            if c.done() {
                caps.clear();
                return false;
            }
            let t = at(c.durable(), Timestamp::MIN);
            for cap in caps.iter_mut() {
                if *cap.time() != t {
                    cap.downgrade(&t);
                }
            }
            // Woken by the writer; a slow poll as well, in case a wakeup
            // raced with the last check.
            activator.activate_after(std::time::Duration::from_millis(50));
            true
        }
    });
    stream.probe().0
}
