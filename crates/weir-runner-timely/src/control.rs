//! Each worker's loop: run the pipeline's dataflow until it completes or
//! the job fails, and on a cluster keep the processes in touch through a
//! small control dataflow of timely's own (no networking of Weir's):
//!
//! - heartbeats, so that a frozen peer is noticed (the connection monitor
//!   also counts the pipeline's own traffic);
//! - an abort, sent by the first worker that fails, so that every process
//!   stops at once with the origin's error instead of waiting or, worse,
//!   finishing with part of the input;
//! - a leaving barrier, so that no process closes its connections while
//!   another still sends (which would make timely's threads panic).
//!
//! A failed job never releases the pipeline's capabilities (operators
//! downstream would take that for the end of the input and emit final
//! results): every worker drops the dataflow instead.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Exchange, Input, Inspect};
use timely::dataflow::InputHandle;
use weir_runtime::PipelineError;

use crate::cluster::Monitor;
use crate::SharedError;

const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long workers wait for each other before leaving a failed run.
const LEAVE_GRACE: Duration = Duration::from_secs(3);

/// Message kinds: (kind, origin worker, text).
const BEAT: u8 = 0;
const ABORT: u8 = 1;
const LEAVING: u8 = 2;
/// Worker 0 committed the checkpoint of the epoch in the text.
const COMMITTED: u8 = 3;
/// The job is drained (asked on the origin's process).
const DRAIN: u8 = 4;

type Msg = (u8, u64, String);

#[derive(Default)]
struct Received {
    abort: Option<(u64, String)>,
    leaving: std::collections::BTreeSet<u64>,
    committed: Option<u64>,
    drain: bool,
}

/// The control dataflow of one worker.
struct Control {
    input: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Msg>>>,
    received: Rc<RefCell<Received>>,
    dataflow: usize,
    me: u64,
    last_beat: Instant,
}

impl Control {
    fn build(worker: &mut timely::worker::Worker) -> Control {
        let mut input = InputHandle::new();
        let received: Rc<RefCell<Received>> = Rc::default();
        let r = received.clone();
        let dataflow = worker.next_dataflow_index();
        let peers = worker.peers() as u64;
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .flat_map(move |m: Msg| (0..peers).map(move |i| (i, m.clone())))
                .exchange(|(i, _)| *i)
                .inspect(move |(_, (kind, origin, text)): &(u64, Msg)| {
                    let mut r = r.borrow_mut();
                    match *kind {
                        ABORT if r.abort.is_none() => r.abort = Some((*origin, text.clone())),
                        LEAVING => {
                            r.leaving.insert(*origin);
                        }
                        DRAIN => r.drain = true,
                        COMMITTED => {
                            if let Ok(e) = text.parse::<u64>() {
                                r.committed = r.committed.max(Some(e));
                            }
                        }
                        _ => {}
                    }
                });
        });
        Control { input, received, dataflow, me: worker.index() as u64, last_beat: Instant::now() }
    }

    fn send(&mut self, kind: u8, text: String) {
        self.input.send((kind, self.me, text));
        // Data moves on without the time advancing: nothing waits for it.
        self.input.flush();
    }

    fn beat(&mut self) {
        if self.last_beat.elapsed() >= HEARTBEAT {
            self.last_beat = Instant::now();
            self.send(BEAT, String::new());
        }
    }
}

/// How one worker runs the pipeline's dataflow `main`.
pub(crate) struct WorkerLoop {
    pub error: SharedError,
    /// On a cluster: the connection monitor, and how long a peer may stay
    /// silent.
    pub cluster: Option<(Arc<Monitor>, Duration)>,
    /// Cancel and drain, from outside.
    pub control: weir_runtime::JobControl,
}

fn is_set(error: &SharedError) -> bool {
    error.lock().map(|e| e.is_some()).unwrap_or(true)
}

fn set(error: &SharedError, e: PipelineError) {
    let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(e);
    }
}

impl WorkerLoop {
    /// Run until the dataflow `main` completes or the job fails.
    pub fn run(
        &self,
        worker: &mut timely::worker::Worker,
        main: usize,
        checkpointed: Option<crate::dataflow::Checkpointed>,
    ) {
        let mut control = self.cluster.as_ref().map(|_| Control::build(worker));
        // Sources learn which checkpoints are committed: from this
        // process's writer, or on a cluster from worker 0's broadcast.
        let checkpointer = checkpointed.as_ref().map(|c| c.worker.borrow().checkpointer().clone());
        let mut told = None;
        // Worker 0 of the cluster commits each checkpoint once it is
        // durable on every worker (the probe of the acks passed it).
        let committer = checkpointed.filter(|_| worker.index() == 0);
        let mut next_commit = committer.as_ref().map_or(0, |c| c.worker.borrow().checkpointer().base);
        let mut told_drain = false;
        loop {
            if self.control.is_cancelled() {
                set(&self.error, PipelineError::Cancelled);
            }
            // A drain asked on one process drains every process.
            if let Some(c) = &mut control {
                if self.control.is_draining() && !told_drain {
                    told_drain = true;
                    c.send(DRAIN, String::new());
                }
                if c.received.borrow().drain {
                    self.control.drain();
                }
            }
            if let Some(c) = &committer {
                let durable = c.probe.with_frontier(|f| f.iter().map(|t| t.outer).min().unwrap_or(u64::MAX));
                if durable != u64::MAX && durable > next_commit {
                    c.worker.borrow().checkpointer().request_commit(durable - 1);
                    next_commit = durable;
                }
            }
            if let (Some(c), Some(ck)) = (&mut control, &checkpointer) {
                if worker.index() == 0 && ck.committed_epoch() > told {
                    told = ck.committed_epoch();
                    c.send(COMMITTED, told.map(|e| e.to_string()).unwrap_or_default());
                }
                if let Some(e) = c.received.borrow().committed {
                    ck.learn_committed(e);
                }
            }
            if let (Some(c), Some((monitor, silence))) = (&control, &self.cluster) {
                if let Some((origin, text)) = c.received.borrow().abort.clone() {
                    set(&self.error, PipelineError::Cluster(format!("worker {origin} failed: {text}")));
                }
                if let Some(f) = monitor.first_loss().or_else(|| monitor.silent_peer(*silence)) {
                    monitor.expect_failures();
                    set(&self.error, PipelineError::Cluster(f.to_string()));
                }
            }
            if is_set(&self.error) || !worker.installed_dataflows().contains(&main) {
                break;
            }
            if let Some(c) = &mut control {
                c.beat();
            }
            let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                worker.step_or_park(Some(Duration::from_millis(5)));
            }));
            if stepped.is_err() {
                // Timely itself failed (its connection to a peer broke): the
                // monitor says which peer, on the next round.
                match &self.cluster {
                    Some((monitor, _)) => {
                        monitor.expect_failures();
                        if monitor.first_loss().is_none() {
                            set(&self.error, PipelineError::Cluster("the cluster's communication failed".into()));
                        }
                    }
                    None => set(&self.error, PipelineError::Runner("timely failed while running".into())),
                }
            }
        }
        // A transform that failed because timely's connection to a lost peer
        // broke under it: the lost peer is the error.
        if let Some((monitor, _)) = &self.cluster {
            if let Some(loss) = monitor.first_loss() {
                let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
                let broken = slot.as_ref().is_none_or(|e| {
                    let text = e.to_string();
                    text.contains("MergeQueue") || text.contains("timely communication")
                });
                if broken {
                    *slot = Some(PipelineError::Cluster(loss.to_string()));
                }
            }
        }
        let failed = is_set(&self.error);
        if failed {
            if let Some(c) = &mut control {
                // Tell every process, unless this failure came from one of them.
                let local =
                    self.error.lock().ok().and_then(|e| e.clone()).filter(|e| !matches!(e, PipelineError::Cluster(_)));
                if let Some(e) = local {
                    c.send(ABORT, e.to_string());
                }
            }
            if worker.installed_dataflows().contains(&main) {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.drop_dataflow(main)));
            }
        }
        if let (Some(mut c), Some((monitor, silence))) = (control, &self.cluster) {
            c.send(LEAVING, String::new());
            let peers = worker.peers();
            let deadline = Instant::now() + LEAVE_GRACE;
            loop {
                // Every peer has left, or a peer is gone. Once this worker's
                // dataflow completed, its results are complete whatever
                // happens to a peer now (the peer's own failure is its own
                // error): a peer that closes or goes quiet here only ends the
                // wait.
                let everyone = c.received.borrow().leaving.len() >= peers;
                let gone = monitor.first_loss().or_else(|| monitor.silent_peer(*silence)).is_some();
                if everyone || gone || (failed && Instant::now() > deadline) {
                    break;
                }
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker.step_or_park(Some(Duration::from_millis(5)));
                }))
                .is_err()
                {
                    break;
                }
            }
            let dataflow = c.dataflow;
            drop(c);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.drop_dataflow(dataflow)));
            // Only the peers' goodbyes are left to receive: a connection
            // that stays blocked beyond this is given up.
            let failed = is_set(&self.error);
            if failed {
                monitor.expect_failures();
            }
            monitor.give_up_after(if failed { Duration::from_secs(1) } else { Duration::from_secs(10) });
        }
    }
}
