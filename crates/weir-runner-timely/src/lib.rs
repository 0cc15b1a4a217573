//! # weir-runner-timely
//!
//! Runs Weir pipelines on Timely Dataflow: embedded in the program on N
//! worker threads (the default runner), or across several processes over TCP.
//! Timely is pinned to an exact version and nothing of it is visible outside
//! this crate.
//!
//! The modules, one concern each:
//!
//! - `config`: the runner's options, deployment and cluster handshake input;
//! - `cluster`, `control`: connecting processes, watching them, failing
//!   together;
//! - `wire`: the container (Weir's batches) and partitioned edges;
//! - `time`: the timely timestamp (the watermark, encoded);
//! - `flow`: in-flight accounting (backpressure) and watermark alignment;
//! - `board`: the private watermark board the runner decides from;
//! - `clock`: processing time, simulated step by step for TestStreams;
//! - `stash`: messages waiting for their port's frontier;
//! - `source`, `operator`: the drivers of source and operator instances;
//! - `dataflow`: one worker's dataflow from the graph.
//!
//! Every operator holds one capability per output at its output watermark
//! `min(input frontier, operator hold)`, so watermarks propagate through
//! timely's own progress tracking, and an empty frontier is the watermark
//! +infinity. Keys are routed to the worker owning their key group.

#![warn(missing_docs)]

use std::sync::{Arc, Mutex};

use timely::WorkerConfig;
use weir_runtime::{Graph, PipelineError, RecoveryReport, RunResult, Runner};

mod board;
mod checkpoint;
mod clock;
mod cluster;
mod config;
mod control;
mod dataflow;
mod flow;
mod operator;
mod source;
mod stash;
mod time;
mod wire;

pub use checkpoint::CheckpointConfig;
pub(crate) use config::fnv1a;
pub use config::{Deployment, TimelyRunner, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_PEER_TIMEOUT};
pub(crate) use dataflow::SharedError;

/// Records a source emits per poll.
const POLL_BATCH: usize = 8192;

impl Runner for TimelyRunner {
    fn run(&self, graph: Arc<Graph>) -> Result<RunResult, PipelineError> {
        let (threads, processes) = match &self.deployment {
            Deployment::Threads(n) => (*n, 1),
            Deployment::Cluster { threads, addresses, .. } => (*threads, addresses.len()),
        };
        // Every worker must own at least one key group.
        let groups = graph.key_groups(threads * processes)?;
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
        let workers = threads * processes;
        let process_index = match &self.deployment {
            Deployment::Threads(_) => 0,
            Deployment::Cluster { process, .. } => *process,
        };
        // Recovery, before any worker starts.
        let mut report = None;
        let checkpointer = match &self.checkpoints {
            None => {
                if process_index == 0 {
                    for c in graph.nodes.iter().filter_map(|n| n.commit.as_ref()) {
                        c.recover(None)?;
                    }
                }
                None
            }
            Some(cfg) => {
                if simulated {
                    return Err(PipelineError::Checkpoint(
                        "a pipeline with a TestStream cannot be checkpointed on the Timely runner (its simulated \
                         clock is not part of a checkpoint); ReferenceRunner::recovering checks its recovery"
                            .into(),
                    ));
                }
                // Not the number of workers or processes: a checkpoint may be
                // restored on another (rescaling).
                let description = self.job_description(&graph);
                let job = weir_checkpoint::JobId { fingerprint: fnv1a(description.bytes()), description };
                let resume = match checkpoint::recover(cfg, &job, &graph, workers, groups.max(), process_index == 0)? {
                    checkpoint::Start::Completed => {
                        eprintln!(
                            "weir: this job already completed in {}: nothing to run, its output is left as it is",
                            cfg.store.location()
                        );
                        return Ok(RunResult {
                            metrics: graph.metrics(),
                            peak_in_flight: None,
                            run_id: None,
                            recovery: Some(RecoveryReport { already_completed: true, ..RecoveryReport::default() }),
                        });
                    }
                    checkpoint::Start::Fresh => None,
                    checkpoint::Start::Resume(r) => Some(r),
                };
                report = Some(RecoveryReport {
                    resumed_from: resume.as_ref().map(|r| r.epoch),
                    ..RecoveryReport::default()
                });
                let shape =
                    checkpoint::Shape { threads, process: process_index, workers, processes, key_groups: groups.max() };
                Some(checkpoint::Checkpointer::start(cfg, job, graph.clone(), shape, resume))
            }
        };
        // Whatever way the run ends, its writes and commits are done
        // before `run` returns: a next run on the same location must not
        // race with them.
        let _writer = checkpointer.clone().map(checkpoint::FlushOnDrop);
        let error: SharedError = Arc::new(Mutex::new(None));
        let in_flight = Arc::new(flow::InFlight::new(self.max_in_flight, self.max_watermark_drift));
        let process = Arc::new(dataflow::Process {
            graph: graph.clone(),
            groups,
            error: error.clone(),
            stages: Arc::new(
                graph.nodes.iter().map(|_| Arc::new(operator::StageShare::new(threads, scripted))).collect(),
            ),
            threads,
            in_flight: in_flight.clone(),
            clock: Arc::new(clock::Clock::new(simulated, graph.nodes.len(), threads)),
            board: Arc::new(board::WatermarkBoard::new(graph.nodes.len())),
            checkpointer: checkpointer.clone(),
            state: self.state_backend.clone().or_else(|| graph.state_backend.clone()).unwrap_or_default(),
        });
        let restoring = report.as_ref().and_then(|r| r.resumed_from);
        let (builders, others, monitor) = self.allocators(&graph, threads, restoring)?;
        let worker_loop = Arc::new(control::WorkerLoop {
            error: error.clone(),
            cluster: monitor.clone().map(|m| (m, self.peer_timeout)),
            control: graph.control.clone(),
        });
        let guards = timely::execute::execute_from(builders, others, WorkerConfig::default(), move |worker| {
            let main = worker.next_dataflow_index();
            match dataflow::build_dataflow(worker, &process) {
                Ok(checkpointed) => worker_loop.run(worker, main, checkpointed),
                Err(e) => dataflow::record(&process.error, e),
            }
        })
        .map_err(PipelineError::Runner);
        // Joining the workers, then (when the guards drop) timely's
        // communication threads; either may panic after a peer was lost.
        let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || guards.map(|g| g.join())));
        // After a lost peer, timely's communication threads may still be
        // unwinding (a thread blocked on a frozen peer gives up later):
        // their panics stay quiet for the rest of the process.
        if !monitor.as_ref().is_some_and(|m| m.failures_expected()) {
            cluster::restore_panics();
        }
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
        // The run completed: every sink's remaining output is committed
        // (after marking the location completed, so that a crash in
        // between still ends committed).
        if process_index == 0 {
            match &checkpointer {
                Some(ck) => {
                    ck.flush();
                    ck.complete(&graph)?;
                }
                None => {
                    for c in graph.nodes.iter().filter_map(|n| n.commit.as_ref()) {
                        c.commit(u64::MAX)?;
                    }
                }
            }
        } else if let Some(ck) = &checkpointer {
            ck.flush();
        }
        if let (Some(r), Some(ck)) = (report.as_mut(), &checkpointer) {
            r.committed = ck.committed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        }
        Ok(RunResult {
            metrics: graph.metrics(),
            peak_in_flight: Some(in_flight.peak()),
            run_id: monitor.map(|m| m.run_id()),
            recovery: report,
        })
    }
}
