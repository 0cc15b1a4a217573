//! Building one worker's dataflow: a timely operator per node of the graph,
//! wired by the nodes' routing, each driven by a [`SourceDriver`] or an
//! [`OpDriver`]. A hook's error or panic is recorded as the job's error
//! (the first one wins) and the failed operator keeps its capabilities:
//! the worker loop drops the dataflow, so that nothing downstream takes the
//! failure for the end of the input.

use std::sync::{Arc, Mutex};

use timely::dataflow::channels::pact::{DistributorPact, Pipeline as PipelinePact};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::Stream;
use weir_model::Timestamp;
use weir_runtime::{Emitter, Graph, KeyGroups, NodeKind, PipelineError, Routing, WorkerInfo};

use crate::board::WatermarkBoard;
use crate::clock::{Clock, ClockStep};
use crate::flow::{Flow, InFlight};
use crate::operator::{OpDriver, StageShare};
use crate::source::{Next, Shared, SourceDriver, PAUSE};
use crate::stash::Stash;
use crate::wire::{InputPort, TBatch, WeirDistributor};

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
}

pub(crate) fn build_dataflow(worker: &mut timely::worker::Worker, p: &Process) {
    let graph = &p.graph;
    let threads = p.threads;
    let mut consumers: Vec<Vec<usize>> = graph.nodes.iter().map(|n| vec![0; n.outputs]).collect();
    for node in &graph.nodes {
        for input in &node.inputs {
            consumers[input.node][input.port] += 1;
        }
    }
    let info = WorkerInfo { index: worker.index(), peers: worker.peers() };
    let process = info.index / threads;
    worker.dataflow::<u64, _, _>(|scope| {
        let mut streams: Vec<Vec<Stream<'_, u64, TBatch>>> = Vec::with_capacity(graph.nodes.len());
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
            match &node.kind {
                NodeKind::Source(factory) => {
                    let mut driver = SourceDriver {
                        source: factory(&info),
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
                    };
                    builder.build_reschedule(move |mut caps| {
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
                NodeKind::Operator(factory) => {
                    let local = info.index % threads;
                    p.stages[node_index].register(local, scope.worker().sync_activator_for(address.to_vec()));
                    let mut driver = OpDriver {
                        op: factory(&info),
                        node: node_index,
                        name,
                        counters: node.counters.clone(),
                        emitter: Emitter::new(node.outputs),
                        seen: vec![Timestamp::MIN; node.inputs.len()],
                        finished: false,
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
                    };
                    builder.build(move |caps| {
                        driver.caps = caps;
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
    });
}
