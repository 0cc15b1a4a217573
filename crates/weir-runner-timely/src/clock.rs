//! Processing time for one process: the wall clock, or, for a pipeline with
//! a TestStream, a simulated clock that only the script moves, each step
//! once the dataflow is quiescent (as on the reference runner).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use weir_model::Timestamp;
use weir_runtime::{Graph, NodeKind};

use crate::board::WatermarkBoard;
use crate::flow::InFlight;
use crate::time::wall_clock;

/// The processing-time clock of a process.
pub(crate) struct Clock {
    pub simulated: bool,
    now: AtomicI64,
    /// Per node, per local worker: the simulated time the operator applied.
    applied: Vec<Vec<AtomicI64>>,
    /// Every operator of every local worker, to wake them on a clock step.
    activators: Mutex<Vec<timely::scheduling::SyncActivator>>,
}

impl Clock {
    pub fn new(simulated: bool, nodes: usize, threads: usize) -> Self {
        Clock {
            simulated,
            now: AtomicI64::new(0),
            applied: (0..nodes).map(|_| (0..threads).map(|_| AtomicI64::new(i64::MIN)).collect()).collect(),
            activators: Mutex::new(Vec::new()),
        }
    }

    pub fn now(&self) -> Timestamp {
        if self.simulated {
            Timestamp::from_millis(self.now.load(Ordering::Acquire))
        } else {
            wall_clock()
        }
    }

    /// Wake this operator on every clock step.
    pub fn register(&self, activator: timely::scheduling::SyncActivator) {
        self.activators.lock().unwrap_or_else(|p| p.into_inner()).push(activator);
    }

    /// Move the simulated clock and wake every operator.
    fn step_to(&self, t: i64) {
        self.now.store(t, Ordering::Release);
        for a in self.activators.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = a.activate();
        }
    }

    /// Operator `node` on local worker `local` applied time `now`.
    pub fn applied(&self, node: usize, local: usize, now: Timestamp) {
        self.applied[node][local].store(now.millis(), Ordering::Release);
    }
}

/// Where a scripted source (a TestStream) stands between two steps: each
/// step is processed by every operator of the process before the next one
/// is played, as on the reference runner.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClockStep {
    /// Ready to play the next step.
    Play,
    /// Waiting for quiescence; then, for a processing-time step, moving the
    /// clock to this time.
    Quiesce(Option<i64>),
    /// Clock moved; waiting for every operator to apply it and settle.
    Apply(i64),
}

/// What a scripted source needs to wait for quiescence.
pub(crate) struct Quiescence<'a> {
    pub graph: &'a Graph,
    pub board: &'a WatermarkBoard,
    pub in_flight: &'a InFlight,
    pub clock: &'a Clock,
    pub threads: usize,
    pub process: usize,
}

impl Quiescence<'_> {
    /// Move a scripted source's step on: `Some(next)` once the dataflow is
    /// quiescent (and, for a processing-time step, the clock has moved or
    /// every operator has applied it), `None` while it must wait.
    pub fn advance(&self, step: ClockStep) -> Option<ClockStep> {
        match step {
            ClockStep::Play => Some(ClockStep::Play),
            ClockStep::Quiesce(t) => self.quiescent(None).then(|| match t {
                None => ClockStep::Play,
                Some(t) => {
                    self.clock.step_to(t);
                    ClockStep::Apply(t)
                }
            }),
            ClockStep::Apply(t) => self.quiescent(Some(t)).then_some(ClockStep::Play),
        }
    }

    /// Whether every operator of this process has processed everything sent
    /// to it and seen the watermarks its upstream operators published; with
    /// `at`, also applied that simulated time.
    fn quiescent(&self, at: Option<i64>) -> bool {
        if !self.in_flight.drained() {
            return false;
        }
        let threads = self.threads;
        let workers: Vec<usize> = (self.process * threads..(self.process + 1) * threads).collect();
        let published = self.board.snapshot();
        for (i, node) in self.graph.nodes.iter().enumerate() {
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
                    if self.clock.applied[i][local].load(Ordering::Acquire) != t {
                        return false;
                    }
                }
            }
        }
        true
    }
}
