//! The operator driver: one operator instance on one worker. It takes
//! messages from its input ports in watermark order (through a stash per
//! port), calls the operator's hooks, sends what it emitted, and moves its
//! capabilities to its output watermark `min(input watermarks, hold)`.
//!
//! The instances of one transform on one process share their holds
//! ([`StageShare`]): operators that read the stage's output watermark
//! (groupings) see the same one, whichever instance is scheduled first.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use timely::dataflow::channels::pushers::Output;
use timely::dataflow::operators::Capability;
use timely::scheduling::Activator;
use weir_model::Timestamp;
use weir_runtime::{Batch, Emitter, NodeCounters, OpContext, Operator, PipelineError};

use weir_checkpoint::NodeState;

use crate::board::WatermarkBoard;

/// The longest an operator works through its waiting messages in one
/// activation before it lets the worker step the rest of the dataflow.
const SLICE: StdDuration = StdDuration::from_millis(50);
use crate::checkpoint::SharedWorkerCheckpoint;
use crate::clock::Clock;
use crate::flow::Flow;
use crate::stash::Stash;
use crate::time::{at, dec, frontier_epoch, frontier_watermark, Time};
use crate::wire::{InputPort, TBatch};

/// What the instances of one transform on one process share.
pub(crate) struct StageShare {
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
    pub fn new(threads: usize, scripted: bool) -> Self {
        let slots = || (0..threads).map(|_| AtomicI64::new(i64::MIN)).collect();
        StageShare {
            holds: slots(),
            seen: slots(),
            settled: scripted.then(slots),
            activators: Mutex::new((0..threads).map(|_| None).collect()),
        }
    }

    /// The previous step has settled everywhere: record every hold.
    pub fn settle(&self) {
        if let Some(settled) = &self.settled {
            for (s, h) in settled.iter().zip(&self.holds) {
                s.store(h.load(Ordering::Acquire), Ordering::Release);
            }
        }
    }

    /// Local instance `local` is woken by this activator.
    pub fn register(&self, local: usize, activator: timely::scheduling::SyncActivator) {
        self.activators.lock().unwrap_or_else(|p| p.into_inner())[local] = Some(activator);
    }
}

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
            key_groups: $d.groups,
        }
    };
}

/// One operator on one worker, with its output capabilities.
pub(crate) struct OpDriver {
    pub op: Box<dyn Operator>,
    pub node: usize,
    pub name: String,
    pub counters: Arc<NodeCounters>,
    pub emitter: Emitter,
    /// Each input port's watermark as the operator last saw it.
    pub seen: Vec<Timestamp>,
    pub finished: bool,
    pub outputs: Vec<Output<Time, TBatch>>,
    pub caps: Vec<Capability<Time>>,
    /// The holds and input watermarks of this transform's instances on this
    /// process's workers.
    pub stage: Arc<StageShare>,
    /// This worker's slot in `stage.holds`.
    pub local: usize,
    /// This worker's index.
    pub worker: usize,
    pub flow: Flow,
    pub board: Arc<WatermarkBoard>,
    pub clock: Arc<Clock>,
    /// The simulated processing time last applied.
    pub applied: Timestamp,
    pub stage_wm: Timestamp,
    /// The output watermark last published (the capabilities' time).
    pub out_wm: Timestamp,
    pub stashes: Vec<Stash>,
    pub groups: weir_runtime::KeyGroups,
    /// The open epoch: input of later epochs waits in the stashes.
    pub epoch: u64,
    /// This worker's checkpoint, when the run is checkpointed.
    pub ckpt: Option<SharedWorkerCheckpoint>,
    /// The operator's chain of incremental snapshots.
    pub chain: Chain,
}

/// An operator instance's chain of incremental snapshots: it snapshots
/// only its changes while the previous snapshot was of the previous epoch,
/// the chain is shorter than [`MAX_CHAIN`](weir_checkpoint::MAX_CHAIN),
/// the changes since the last whole snapshot are smaller than it, and no
/// state file of this worker failed to be written since. So a snapshot's
/// cost follows the state changed, amortized: a whole snapshot comes only
/// after changes at least as big as it (or a long chain), and recovery
/// reads at most twice the whole state.
#[derive(Default)]
pub(crate) struct Chain {
    /// The epoch of the previous snapshot, if any in this run.
    last: Option<u64>,
    /// Change sets since the last whole snapshot.
    links: u64,
    /// Bytes of those change sets.
    changed: u64,
    /// Bytes of the last whole snapshot (a streamed one's: about, until
    /// `whole_exact` says).
    whole: u64,
    /// A streamed whole snapshot's exact length, once written (0 before).
    whole_exact: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The worker's state-file failures when the last whole one was taken.
    failures: u64,
}

impl Chain {
    fn may_grow(&self, epoch: u64, failures: u64) -> bool {
        self.last.is_some_and(|l| l + 1 == epoch)
            && self.links + 1 < weir_checkpoint::MAX_CHAIN
            && self.changed < self.whole()
            && failures == self.failures
    }
    fn grew(&mut self, epoch: u64, bytes: usize) {
        self.last = Some(epoch);
        self.links += 1;
        self.changed += bytes as u64;
    }
    fn restart(&mut self, epoch: u64, bytes: usize, failures: u64) {
        *self = Chain { last: Some(epoch), links: 0, changed: 0, whole: bytes as u64, whole_exact: None, failures };
    }
    fn restart_streamed(&mut self, epoch: u64, stream: &weir_checkpoint::Streamed, failures: u64) {
        self.restart(epoch, stream.size_hint() as usize, failures);
        self.whole_exact = Some(stream.exact_len_cell());
    }
    fn whole(&self) -> u64 {
        match self.whole_exact.as_ref().map(|l| l.load(Ordering::Acquire)) {
            Some(exact) if exact > 0 => exact,
            _ => self.whole,
        }
    }
}

impl OpDriver {
    /// A failed job: drop what arrives (and stop counting it in flight).
    pub fn discard(&mut self, inputs: &mut [Box<dyn InputPort>]) {
        for input in inputs.iter_mut() {
            input.drain(&mut |_, batch| {
                if let Ok(batch) = batch {
                    if !batch.is_encoded() {
                        self.flow.in_flight.sub(batch.len() as i64);
                    }
                }
            });
        }
    }

    /// One activation: process what may be processed, complete epochs,
    /// react to moved watermarks and due wakeups, settle the capabilities.
    pub fn schedule(
        &mut self,
        inputs: &mut [Box<dyn InputPort>],
        frontiers: &[timely::progress::frontier::MutableAntichain<Time>],
        activator: &Activator,
    ) -> Result<(), PipelineError> {
        let now = self.clock.now();
        let wms: Vec<Timestamp> = frontiers.iter().map(|f| frontier_watermark(f.frontier().iter())).collect();
        let epochs: Vec<u64> = frontiers.iter().map(|f| frontier_epoch(f.frontier().iter())).collect();
        for (port, input) in inputs.iter_mut().enumerate() {
            let mut corrupt = None;
            let stash = &mut self.stashes[port];
            input.drain(&mut |time, batch| match batch {
                Ok(batch) => {
                    // A local batch counts as in flight until processed or parked.
                    let counted = if batch.is_encoded() { 0 } else { batch.len() as i64 };
                    stash.push(time, batch, counted);
                }
                Err(e) => corrupt = Some(e),
            });
            if let Some(e) = corrupt {
                return Err(e);
            }
        }
        // A bounded slice of work per activation: a backlog (an epoch's
        // messages released at once after a checkpoint, say) is worked off
        // over several steps, so the worker keeps stepping its other
        // operators and the cluster's heartbeats.
        let deadline = std::time::Instant::now() + SLICE;
        let mut yielded = false;
        while !yielded {
            for port in 0..self.stashes.len() {
                yielded |= self.process_ready(port, wms[port], epochs[port], now, deadline)?;
            }
            if yielded || !self.complete_epoch(&epochs)? {
                break;
            }
        }
        if yielded {
            // Ready messages left for the next activation stay in flight
            // (not parked), so that flow control keeps holding the sources.
            activator.activate();
        }
        for port in 0..self.stashes.len() {
            if !yielded && !self.stashes[port].is_empty() {
                // Parked until progress: not in flight any more (the stash is
                // bounded by STASH_LIMIT), so paused sources can move the frontier.
                let n = self.stashes[port].park_all();
                self.flow.in_flight.park(n);
                activator.activate();
            }
        }
        let wakeup_due = self.op.next_wakeup().is_some_and(|t| t < now) || self.op.has_pending_work();
        // A port's watermark never passes a message still waiting in its stash.
        let reachable: Vec<Timestamp> =
            wms.iter().zip(&self.stashes).map(|(f, st)| st.min_watermark().map_or(*f, |t| (*f).min(dec(t)))).collect();
        let moved = reachable.iter().zip(&self.seen).any(|(f, s)| f > s);
        if moved || wakeup_due {
            for (s, f) in self.seen.iter_mut().zip(&reachable) {
                *s = (*s).max(*f);
            }
            self.advance(now)?;
        } else {
            self.settle(now)?;
        }
        if self.clock.simulated && self.applied != now {
            self.applied = now;
            self.clock.applied(self.node, self.local, now);
        }
        if self.op.has_pending_work() && !self.caps.is_empty() {
            activator.activate();
        }
        // A simulated clock only moves in steps, which wake every operator;
        // a wall clock needs a wakeup at the next timer.
        if let Some(next) = self.op.next_wakeup().filter(|_| !self.clock.simulated) {
            if !self.caps.is_empty() {
                let wait = (next.millis() - now.millis() + 1).clamp(0, 60_000) as u64;
                activator.activate_after(StdDuration::from_millis(wait));
            }
        }
        Ok(())
    }

    /// Process the stashed messages of `port` that may be processed now:
    /// of the open epoch, in time order, once the port's watermark
    /// (`frontier`) has reached them. Once the port can deliver nothing
    /// more of the open epoch (its frontier's oldest epoch `port_epoch` is
    /// later), the epoch's messages are all processed, so that the epoch
    /// can complete: each still at a watermark no higher than the port's.
    /// Stops once `deadline` has passed (after one message at least) and
    /// returns whether it did so with ready messages left.
    fn process_ready(
        &mut self,
        port: usize,
        frontier: Timestamp,
        port_epoch: u64,
        now: Timestamp,
        deadline: std::time::Instant,
    ) -> Result<bool, PipelineError> {
        let epoch_done = self.ckpt.is_some() && port_epoch > self.epoch;
        // In time order: once drained, a message no longer holds the
        // frontier back, so the port's watermark must never pass a
        // message still in the stash (senders on other processes are
        // not kept in step, and their messages interleave).
        // Nor may it pass a message of a later epoch waiting here: it was
        // sent at its watermark, and is processed after this epoch.
        let later = self.stashes[port].min_watermark_after(self.epoch).map_or(Timestamp::MAX, dec);
        let limit = frontier.min(later);
        while let Some(t) = self.stashes[port].min_time() {
            if t.outer > self.epoch {
                break;
            }
            let t = dec(t.inner);
            let within_limit = !self.stashes[port].over_limit();
            if !epoch_done && within_limit && (t > limit || !self.peers_reached(t.min(limit))) {
                break;
            }
            let s = self.stashes[port].pop().expect("a message exists");
            let target = t.min(limit);
            if target > self.seen[port] {
                self.seen[port] = target;
                self.advance(now)?;
            }
            self.process(port, s.batch, now)?;
            self.flow.in_flight.sub(s.counted);
            self.flow.in_flight.unpark(s.parked);
            let more = self.stashes[port].min_time().is_some_and(|t| t.outer <= self.epoch);
            if more && std::time::Instant::now() >= deadline {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// If the open epoch is complete here (every port's frontier is past
    /// it and nothing of it waits), snapshot it and open the next one.
    /// Returns whether an epoch completed.
    fn complete_epoch(&mut self, epochs: &[u64]) -> Result<bool, PipelineError> {
        let Some(ckpt) = self.ckpt.clone() else { return Ok(false) };
        let input_epoch = epochs.iter().copied().min().unwrap_or(u64::MAX);
        if self.finished || input_epoch <= self.epoch {
            return Ok(false);
        }
        if self.stashes.iter().any(|s| s.min_time().is_some_and(|t| t.outer <= self.epoch)) {
            return Ok(false);
        }
        // An empty frontier: the input is done. Epochs still complete one
        // by one while later ones wait in the stash; then the operator
        // finishes (recorded then; a finished one takes no more snapshots).
        if input_epoch == u64::MAX && self.stashes.iter().all(Stash::is_empty) {
            return Ok(false);
        }
        // Output emitted so far belongs to the open epoch: send it first.
        self.flow.send(&mut self.outputs, &self.caps, &mut self.emitter)?;
        let incremental = ckpt.borrow().checkpointer().incremental;
        let state = self.epoch_state(incremental.then(|| ckpt.borrow().failures()))?;
        ckpt.borrow_mut().record(self.node, self.epoch, state, false);
        self.epoch += 1;
        self.rebase();
        Ok(true)
    }

    /// The operator's state for the open epoch: the changes since its
    /// previous snapshot when it can tell them and the chain may grow
    /// (see [`Chain`]), else its whole state.
    /// `failures`: the worker's state-file failures so far, `None` if
    /// checkpoints are all whole.
    fn epoch_state(&mut self, failures: Option<u64>) -> Result<NodeState, PipelineError> {
        let epoch = self.epoch;
        if self.op.stateless() {
            return Ok(NodeState::Operator(Vec::new()));
        }
        let failures = failures.unwrap_or(u64::MAX);
        if failures != u64::MAX && self.chain.may_grow(epoch, failures) {
            if let Some(changes) = self.op.snapshot_changes(epoch)? {
                self.chain.grew(epoch, changes.len());
                return Ok(NodeState::Changes { since: epoch - 1, changes });
            }
        }
        if let Some(stream) = self.op.snapshot_epoch_streamed(epoch)? {
            let stream = weir_checkpoint::Streamed::new(stream);
            self.chain.restart_streamed(epoch, &stream, failures);
            return Ok(NodeState::Streamed(stream));
        }
        let whole = self.op.snapshot_epoch(epoch)?;
        self.chain.restart(epoch, whole.len(), failures);
        Ok(NodeState::Operator(whole))
    }

    /// Move the capabilities to (open epoch, output watermark).
    fn rebase(&mut self) {
        let t = at(self.epoch, self.out_wm);
        for cap in self.caps.iter_mut() {
            if *cap.time() != t {
                cap.downgrade(&t);
            }
        }
    }

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
    fn advance(&mut self, now: Timestamp) -> Result<(), PipelineError> {
        let stage = self.stage_output_watermark();
        let mut cx = driver_cx!(self, now, stage);
        self.op.advance(&mut cx)?;
        self.settle(now)
    }

    /// Process one batch and send its output at the current capabilities.
    fn process(&mut self, port: usize, batch: Batch, now: Timestamp) -> Result<(), PipelineError> {
        let stage = self.stage_output_watermark();
        let mut cx = driver_cx!(self, now, stage);
        self.op.process(port, batch, &mut cx)?;
        self.publish_hold();
        self.flow.send(&mut self.outputs, &self.caps, &mut self.emitter)
    }

    /// Send pending output, then move the capabilities to the output
    /// watermark `min(input watermarks, hold)`; at +inf, finish and release.
    fn settle(&mut self, now: Timestamp) -> Result<(), PipelineError> {
        self.publish_hold();
        self.flow.send(&mut self.outputs, &self.caps, &mut self.emitter)?;
        let input_wm = self.seen.iter().copied().min().unwrap_or(Timestamp::MAX);
        // Never decreasing: a hold placed behind the output watermark (which
        // the model allows, as the stage's output watermark can be lower
        // than this instance's) does not pull it back.
        // The capabilities follow the stage's output watermark over this
        // process's instances, so that what one instance sends is stamped
        // as the stage's output, as on a runner with one instance.
        let out_wm = input_wm.min(self.op.hold()).min(self.stage_hold()).max(self.out_wm);
        self.out_wm = out_wm;
        self.board.publish(self.node, self.worker, input_wm, out_wm);
        self.counters.publish_watermarks(self.worker, input_wm, out_wm);
        if out_wm == Timestamp::MAX {
            if !self.finished {
                self.finished = true;
                let stage = self.stage_output_watermark();
                let mut cx = driver_cx!(self, now, stage);
                self.op.finish(&mut cx)?;
                self.flow.send(&mut self.outputs, &self.caps, &mut self.emitter)?;
                if let Some(ckpt) = &self.ckpt {
                    let state = if self.op.stateless() { Vec::new() } else { self.op.snapshot_epoch(self.epoch)? };
                    ckpt.borrow_mut().record(self.node, self.epoch, NodeState::Operator(state), true);
                }
            }
            self.caps.clear();
        } else {
            self.rebase();
        }
        Ok(())
    }
}
