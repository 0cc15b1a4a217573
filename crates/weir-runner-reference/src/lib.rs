//! # weir-runner-reference
//!
//! The reference runner: single-threaded, deterministic and as simple as it
//! can be. It is the executable specification the other runners are tested
//! against.
//!
//! Execution: poll every unfinished source once; then visit the nodes in
//! topological order, each processing everything queued for it, then seeing
//! its new input watermarks and processing time (`advance`), then
//! publishing its output watermark `min(input watermarks, hold)`. Repeat
//! until every watermark is +infinity. Processing time is simulated: it
//! starts at 0 and only a `TestStream` (`weir_pipeline`) moves it,
//! unless [`ProcessingTime::Wall`] is chosen.

#![warn(missing_docs)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use weir_model::Timestamp;
use weir_runtime::{
    Batch, Emitter, Graph, NodeKind, OpContext, Operator, PipelineError, RunResult, Runner, Source, WorkerInfo,
};

/// Where processing time comes from.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum ProcessingTime {
    /// Starts at 0; only test streams move it. Fully deterministic.
    #[default]
    Simulated,
    /// The system clock.
    Wall,
}

/// The single-threaded reference runner.
///
/// ```
/// use weir_pipeline::prelude::*;
/// use weir_runner_reference::ReferenceRunner;
/// let p = Pipeline::new();
/// let doubled = p.create(vec![1, 2, 3]).map(|x| x * 2).collect();
/// p.run_with(&ReferenceRunner::default()).unwrap();
/// assert_eq!(doubled.values(), vec![2, 4, 6]);
/// ```
#[derive(Copy, Clone, Debug, Default)]
pub struct ReferenceRunner {
    /// Where processing time comes from.
    pub processing_time: ProcessingTime,
    /// Recovery as a specification: after every step, snapshot every
    /// source's position and every operator's state, throw the instances
    /// away, make new ones and restore them, then go on. A pipeline must
    /// give the same output with and without it.
    pub recover_every_step: bool,
}

impl ReferenceRunner {
    /// The reference runner in recovery mode ([`recover_every_step`](Self::recover_every_step)).
    ///
    /// ```
    /// use weir_pipeline::prelude::*;
    /// use weir_runner_reference::ReferenceRunner;
    /// let p = Pipeline::new();
    /// let counts = p.create((0..100u64).map(|i| (i % 3, i))).count_per_key().collect();
    /// p.run_with(&ReferenceRunner::recovering()).unwrap();
    /// let mut v = counts.values();
    /// v.sort();
    /// assert_eq!(v, vec![(0, 34), (1, 33), (2, 33)]);
    /// ```
    pub fn recovering() -> Self {
        ReferenceRunner { recover_every_step: true, ..ReferenceRunner::default() }
    }
}

/// Snapshot every instance and replace it with a new one restored from
/// the snapshot (the reference runner's recovery mode).
fn recover(graph: &Graph, instances: &mut [Instance], worker: &WorkerInfo) -> Result<(), PipelineError> {
    for (i, node) in graph.nodes.iter().enumerate() {
        match (&mut instances[i], &node.kind) {
            (Instance::Source(src), NodeKind::Source(f)) => {
                let position = src.position().ok_or_else(|| {
                    PipelineError::Checkpoint(format!("source '{}' cannot report its position", node.name))
                })?;
                let mut fresh = f(worker);
                guard(&node.name, || fresh.seek(&position))?;
                *src = fresh;
            }
            (Instance::Operator(op), NodeKind::Operator(f)) => {
                if op.stateless() {
                    *op = f(worker);
                    continue;
                }
                let bytes = guard(&node.name, || op.snapshot_epoch(0))?;
                let mut fresh = f(worker);
                guard(&node.name, || fresh.restore(&bytes))?;
                *op = fresh;
            }
            _ => return Err(PipelineError::Internal("an instance of another kind than its node".into())),
        }
    }
    Ok(())
}

enum Instance {
    Source(Box<dyn Source>),
    Operator(Box<dyn Operator>),
}

const POLL_BATCH: usize = 1024;

/// The context of node `$i` with input watermarks `$wms`.
macro_rules! node_cx {
    ($graph:expr, $emitters:expr, $i:expr, $wms:expr, $clock:expr, $groups:expr) => {
        OpContext {
            name: &$graph.nodes[$i].name,
            out: &mut $emitters[$i],
            input_watermarks: $wms,
            processing_time: $clock,
            stage_output_watermark: Timestamp::MAX,
            counters: &$graph.nodes[$i].counters,
            key_groups: $groups,
        }
    };
}

/// Run a transform's code; an error it returns, or a panic in it, ends the
/// run (a panic with an error naming the transform and the panic's message).
fn guard<R>(transform: &str, f: impl FnOnce() -> Result<R, PipelineError>) -> Result<R, PipelineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|panic| PipelineError::from_panic(transform, panic))?
}

fn wall_clock() -> Timestamp {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Timestamp::from_millis(ms)
}

impl Runner for ReferenceRunner {
    fn run(&self, graph: Arc<Graph>) -> Result<RunResult, PipelineError> {
        let n = graph.nodes.len();
        let worker = WorkerInfo { state: graph.state_backend.clone().unwrap_or_default(), ..WorkerInfo::new(0, 1) };
        let groups = graph.key_groups(1)?;
        let mut instances: Vec<Instance> = graph
            .nodes
            .iter()
            .map(|node| match &node.kind {
                NodeKind::Source(f) => Instance::Source(f(&worker)),
                NodeKind::Operator(f) => Instance::Operator(f(&worker)),
            })
            .collect();
        // consumers[node][port] = [(consumer, input port)]
        let mut consumers: Vec<Vec<Vec<(usize, usize)>>> =
            graph.nodes.iter().map(|node| vec![Vec::new(); node.outputs]).collect();
        for (c, node) in graph.nodes.iter().enumerate() {
            for (port, input) in node.inputs.iter().enumerate() {
                consumers[input.node][input.port].push((c, port));
            }
        }
        let mut queues: Vec<VecDeque<(usize, Batch)>> = (0..n).map(|_| VecDeque::new()).collect();
        let mut emitters: Vec<Emitter> = graph.nodes.iter().map(|node| Emitter::new(node.outputs)).collect();
        let mut out_wm = vec![Timestamp::MIN; n];
        let mut seen_wms: Vec<Vec<Timestamp>> =
            graph.nodes.iter().map(|node| vec![Timestamp::MIN; node.inputs.len()]).collect();
        let mut seen_clock = vec![Timestamp::MIN; n];
        let mut finished = vec![false; n];
        let mut clock = match self.processing_time {
            ProcessingTime::Simulated => Timestamp::from_millis(0),
            ProcessingTime::Wall => wall_clock(),
        };

        let route =
            |emitter: &mut Emitter, queues: &mut Vec<VecDeque<(usize, Batch)>>, targets: &Vec<Vec<(usize, usize)>>| {
                for (port, targets) in targets.iter().enumerate() {
                    let batches: Vec<Batch> = emitter.drain(port).collect();
                    if targets.is_empty() {
                        continue;
                    }
                    for batch in batches {
                        let copies = targets.len();
                        if copies == 1 {
                            queues[targets[0].0].push_back((targets[0].1, batch));
                        } else {
                            // Several consumers: each gets its own copy.
                            for &(c, p) in targets {
                                queues[c].push_back((p, batch.clone()));
                            }
                        }
                    }
                }
            };

        loop {
            if graph.control.is_cancelled() {
                return Err(PipelineError::Cancelled);
            }
            let draining = graph.control.is_draining();
            let mut progressed = false;
            let mut all_idle = true;
            for i in 0..n {
                if let Instance::Source(src) = &mut instances[i] {
                    if out_wm[i] == Timestamp::MAX {
                        continue;
                    }
                    if draining {
                        // Drained: the source reads no more, as if its input ended.
                        out_wm[i] = Timestamp::MAX;
                        graph.nodes[i].counters.publish_watermarks(0, out_wm[i], out_wm[i]);
                        progressed = true;
                        continue;
                    }
                    let node = &graph.nodes[i];
                    let mut cx = node_cx!(graph, emitters, i, &[], clock, groups);
                    let status = guard(&node.name, || src.poll(POLL_BATCH, &mut cx))?;
                    all_idle &= status.idle;
                    if let Some(t) = status.processing_time {
                        clock = clock.max(t);
                    }
                    if status.watermark > out_wm[i] {
                        out_wm[i] = status.watermark;
                    }
                    node.counters.publish_watermarks(0, out_wm[i], out_wm[i]);
                    progressed = true;
                    route(&mut emitters[i], &mut queues, &consumers[i]);
                }
            }
            if self.processing_time == ProcessingTime::Wall {
                clock = clock.max(wall_clock());
            }
            for i in 0..n {
                let Instance::Operator(op) = &mut instances[i] else { continue };
                let node = &graph.nodes[i];
                let in_wms: Vec<Timestamp> = node.inputs.iter().map(|inp| out_wm[inp.node]).collect();
                let mut cx = node_cx!(graph, emitters, i, &seen_wms[i], clock, groups);
                while let Some((port, batch)) = queues[i].pop_front() {
                    guard(&node.name, || op.process(port, batch, &mut cx))?;
                    progressed = true;
                }
                let wakeup_due = op.next_wakeup().is_some_and(|t| t < clock) || op.has_pending_work();
                if in_wms != seen_wms[i] || clock != seen_clock[i] || wakeup_due {
                    seen_wms[i] = in_wms.clone();
                    seen_clock[i] = clock;
                    let mut cx = node_cx!(graph, emitters, i, &seen_wms[i], clock, groups);
                    guard(&node.name, || op.advance(&mut cx))?;
                    progressed = true;
                }
                let input_wm = in_wms.iter().copied().min().unwrap_or(Timestamp::MAX);
                let new_wm = input_wm.min(op.hold());
                if new_wm > out_wm[i] {
                    out_wm[i] = new_wm;
                }
                node.counters.publish_watermarks(0, input_wm, out_wm[i]);
                if out_wm[i] == Timestamp::MAX && !finished[i] {
                    finished[i] = true;
                    let mut cx = node_cx!(graph, emitters, i, &seen_wms[i], clock, groups);
                    guard(&node.name, || op.finish(&mut cx))?;
                }
                route(&mut emitters[i], &mut queues, &consumers[i]);
            }
            let done = out_wm.iter().all(|w| *w == Timestamp::MAX) && queues.iter().all(VecDeque::is_empty);
            if done {
                break;
            }
            // Every queue is empty after a step (consumers come after
            // their producers): a consistent cut.
            if self.recover_every_step {
                recover(&graph, &mut instances, &worker)?;
            }
            if !progressed || all_idle {
                match self.processing_time {
                    ProcessingTime::Wall => std::thread::sleep(std::time::Duration::from_millis(1)),
                    ProcessingTime::Simulated if !progressed => {
                        return Err(PipelineError::Runner(
                            "no progress: a source is idle but processing time is simulated".into(),
                        ))
                    }
                    ProcessingTime::Simulated => {}
                }
            }
        }
        // The run completed: transactional sinks make their output visible.
        for c in graph.nodes.iter().filter_map(|n| n.commit.as_ref()) {
            c.commit(u64::MAX)?;
        }
        Ok(RunResult { metrics: graph.metrics(), peak_in_flight: None, run_id: None, recovery: None })
    }
}
