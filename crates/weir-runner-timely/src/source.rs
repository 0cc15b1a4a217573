//! The source driver: polls one source instance when flow control lets it,
//! plays a scripted source (a TestStream) one step at a time, and moves
//! the source's capabilities to its watermark.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use timely::dataflow::channels::pushers::Output;
use timely::dataflow::operators::Capability;
use weir_model::Timestamp;
use weir_runtime::{Emitter, NodeCounters, OpContext, PipelineError, Source};

use weir_checkpoint::NodeState;

use crate::board::WatermarkBoard;
use crate::checkpoint::SharedWorkerCheckpoint;
use crate::clock::{Clock, ClockStep, Quiescence};
use crate::flow::Flow;
use crate::operator::StageShare;
use crate::time::{at, Time};
use crate::wire::TBatch;
use crate::POLL_BATCH;

/// What every driver of a process shares.
pub(crate) struct Shared {
    pub graph: Arc<weir_runtime::Graph>,
    pub board: Arc<WatermarkBoard>,
    pub clock: Arc<Clock>,
    pub stages: Arc<Vec<Arc<StageShare>>>,
    pub threads: usize,
    pub groups: weir_runtime::KeyGroups,
}

/// One source instance on one worker.
pub(crate) struct SourceDriver {
    pub source: Box<dyn Source>,
    pub node: usize,
    pub name: String,
    pub counters: Arc<NodeCounters>,
    pub emitter: Emitter,
    pub outputs: Vec<Output<Time, TBatch>>,
    pub flow: Flow,
    pub shared: Shared,
    pub worker: usize,
    pub scripted: bool,
    pub step: ClockStep,
    pub last_wm: Timestamp,
    /// The epoch the source emits in.
    pub epoch: u64,
    /// This worker's checkpoint, when the run is checkpointed.
    pub ckpt: Option<SharedWorkerCheckpoint>,
    /// When the source entered its epoch.
    pub entered: std::time::Instant,
    /// The positions recorded at the end of epochs whose checkpoint is not
    /// known to be committed yet, oldest first.
    pub uncommitted: std::collections::VecDeque<(u64, weir_runtime::SourcePosition)>,
}

/// What the driver asks timely after a step.
pub(crate) enum Next {
    /// Schedule again now.
    Now,
    /// Schedule again in a millisecond (paused or idle).
    Soon,
    /// The source is done (its capabilities are released).
    Done,
}

impl SourceDriver {
    fn process(&self) -> usize {
        self.worker / self.shared.threads
    }

    /// Tell the source the newest of its recorded positions that a
    /// committed checkpoint holds.
    fn acknowledge_committed(&mut self) -> Result<(), PipelineError> {
        let Some(ckpt) = &self.ckpt else { return Ok(()) };
        let Some(committed) = ckpt.borrow().checkpointer().committed_epoch() else { return Ok(()) };
        let mut newest = None;
        while self.uncommitted.front().is_some_and(|(e, _)| *e <= committed) {
            newest = self.uncommitted.pop_front();
        }
        match newest {
            Some((_, position)) => self.source.checkpoint_committed(&position),
            None => Ok(()),
        }
    }

    fn position(&self) -> Result<weir_runtime::SourcePosition, PipelineError> {
        self.source
            .position()
            .ok_or_else(|| PipelineError::Internal(format!("source '{}' stopped reporting its position", self.name)))
    }

    /// One activation.
    /// The input ended (or the job is drained): the last position is the
    /// source's final one, and its capabilities go.
    fn end_of_input(&mut self, caps: &mut Vec<Capability<Time>>) -> Result<Next, PipelineError> {
        if let Some(ckpt) = &self.ckpt {
            let position = self.position()?;
            ckpt.borrow_mut().record(self.node, self.epoch, NodeState::Source(position), true);
        }
        caps.clear();
        Ok(Next::Done)
    }

    pub fn step(&mut self, caps: &mut Vec<Capability<Time>>) -> Result<Next, PipelineError> {
        if caps.is_empty() {
            return Ok(Next::Done);
        }
        let threads = self.shared.threads;
        let process = self.process();
        // A step of a TestStream: wait until everything before it is done,
        // move the clock for a processing-time step, wait until every
        // operator applied it and settled, then play on.
        if self.step != ClockStep::Play {
            let q = Quiescence {
                graph: &self.shared.graph,
                board: &self.shared.board,
                in_flight: &self.flow.in_flight,
                clock: &self.shared.clock,
                threads,
                process,
            };
            if let Some(next) = q.advance(self.step) {
                for share in self.shared.stages.iter() {
                    share.settle();
                }
                self.step = next;
            }
            return Ok(Next::Now);
        }
        self.acknowledge_committed()?;
        // A new epoch starts whatever flow control says, so that a
        // checkpoint completes under backpressure too.
        if let Some(ckpt) = &self.ckpt {
            let may = ckpt.borrow().checkpointer().may_advance(self.epoch, self.entered);
            if may {
                let position = self.position()?;
                ckpt.borrow().checkpointer().epoch_ended(self.epoch);
                self.uncommitted.push_back((self.epoch, position.clone()));
                ckpt.borrow_mut().record(self.node, self.epoch, NodeState::Source(position), false);
                self.epoch += 1;
                self.entered = std::time::Instant::now();
                let t = at(self.epoch, self.last_wm);
                for cap in caps.iter_mut() {
                    cap.downgrade(&t);
                }
            }
        }
        if self.shared.graph.control.is_draining() {
            // Drained: no more reading; the end of the input, as if it ended.
            self.shared.board.publish(self.node, self.worker, Timestamp::MAX, Timestamp::MAX);
            self.counters.publish_watermarks(self.worker, Timestamp::MAX, Timestamp::MAX);
            return self.end_of_input(caps);
        }
        let local = process * threads..(process + 1) * threads;
        if self.flow.in_flight.over_limit()
            || self.flow.in_flight.too_far_ahead(&self.shared.board, self.node, self.last_wm, &local)
        {
            return Ok(Next::Soon);
        }
        let clock = &self.shared.clock;
        let mut cx = OpContext {
            name: &self.name,
            out: &mut self.emitter,
            input_watermarks: &[],
            processing_time: clock.now(),
            stage_output_watermark: Timestamp::MAX,
            counters: &self.counters,
            key_groups: self.shared.groups,
        };
        let status = self.source.poll(POLL_BATCH, &mut cx)?;
        if let Some(t) = status.processing_time {
            if !clock.simulated {
                return Err(cx.error("a source moved processing time, but the runner is not simulating it"));
            }
            self.step = ClockStep::Quiesce(Some(t.millis()));
        } else if self.scripted {
            self.step = ClockStep::Quiesce(None);
        }
        self.flow.send(&mut self.outputs, caps, &mut self.emitter)?;
        self.shared.board.publish(self.node, self.worker, status.watermark, status.watermark);
        self.counters.publish_watermarks(self.worker, status.watermark, status.watermark);
        self.last_wm = status.watermark;
        if status.watermark == Timestamp::MAX {
            return self.end_of_input(caps);
        }
        let t = at(self.epoch, status.watermark);
        for cap in caps.iter_mut() {
            if *cap.time() != t {
                cap.downgrade(&t);
            }
        }
        Ok(if status.idle { Next::Soon } else { Next::Now })
    }
}

/// How long a paused or idle source waits before it is polled again.
pub(crate) const PAUSE: StdDuration = StdDuration::from_millis(1);
