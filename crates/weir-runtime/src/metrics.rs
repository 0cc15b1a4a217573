//! Read-only metrics: live counters of every transform, for observers
//! (the CLI's progress line, tests, a future web UI). Nothing in a runner
//! reads them to make a decision: runners keep their own state for that.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weir_model::Timestamp;

/// Live counters of one transform, shared by all its workers.
#[derive(Debug, Default)]
pub struct NodeCounters {
    /// Elements received.
    pub elements_in: AtomicU64,
    /// Elements emitted.
    pub elements_out: AtomicU64,
    /// Elements dropped because their window had expired.
    pub dropped_expired: AtomicU64,
    /// Elements dropped because their window's trigger had finished.
    pub dropped_closed: AtomicU64,
    /// Elements that could not be processed and went to a dead-letter output.
    pub dead_letters: AtomicU64,
    /// Per worker: live state cells and pending timers (stateful transforms).
    pub state: Mutex<BTreeMap<usize, (u64, u64)>>,
    /// Per worker: (input watermark, output watermark), as last published.
    pub watermarks: Mutex<BTreeMap<usize, (Timestamp, Timestamp)>>,
    /// Per split of a source: its watermark and whether it is idle.
    pub splits: Mutex<BTreeMap<String, SplitState>>,
}

/// The state of one split of a source, for introspection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SplitState {
    /// The split's watermark.
    pub watermark: Timestamp,
    /// Idle splits do not hold the source's watermark back.
    pub idle: bool,
    /// The split has no more data.
    pub done: bool,
}

/// A snapshot of [`NodeCounters`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Elements received.
    pub elements_in: u64,
    /// Elements emitted.
    pub elements_out: u64,
    /// Dropped: expired window.
    pub dropped_expired: u64,
    /// Dropped: closed window.
    pub dropped_closed: u64,
    /// Sent to a dead-letter output.
    pub dead_letters: u64,
    /// Live state cells, over all workers of this process.
    pub state_cells: u64,
    /// Pending timers, over all workers of this process.
    pub pending_timers: u64,
}

impl NodeCounters {
    /// Read every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (state_cells, pending_timers) = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.values().fold((0, 0), |(c, t), s| (c + s.0, t + s.1))
        };
        CounterSnapshot {
            elements_in: r(&self.elements_in),
            elements_out: r(&self.elements_out),
            dropped_expired: r(&self.dropped_expired),
            dropped_closed: r(&self.dropped_closed),
            dead_letters: r(&self.dead_letters),
            state_cells,
            pending_timers,
        }
    }
    /// Publish a worker's input and output watermark.
    pub fn publish_watermarks(&self, worker: usize, input: Timestamp, output: Timestamp) {
        self.watermarks.lock().unwrap_or_else(|p| p.into_inner()).insert(worker, (input, output));
    }
    /// Publish the state of a source's split.
    pub fn publish_split(&self, split: &str, state: SplitState) {
        let mut splits = self.splits.lock().unwrap_or_else(|p| p.into_inner());
        match splits.get_mut(split) {
            Some(s) => *s = state,
            None => {
                splits.insert(split.to_string(), state);
            }
        }
    }
    /// Publish a worker's live state cells and pending timers.
    pub fn publish_state(&self, worker: usize, cells: u64, timers: u64) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).insert(worker, (cells, timers));
    }
    /// Add to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Live access to the counters of a pipeline's transforms; clone it into
/// another thread to watch a running pipeline.
#[derive(Clone, Debug)]
pub struct Metrics {
    nodes: Vec<(String, Arc<NodeCounters>)>,
}

impl Metrics {
    /// Metrics over these transforms' counters.
    pub fn of(nodes: impl IntoIterator<Item = (String, Arc<NodeCounters>)>) -> Metrics {
        Metrics { nodes: nodes.into_iter().collect() }
    }
    /// The counters of the transform named `name`.
    pub fn get(&self, name: &str) -> Option<CounterSnapshot> {
        self.nodes.iter().find(|(n, _)| n == name).map(|(_, c)| c.snapshot())
    }
    /// Every transform's counters, in graph order.
    pub fn all(&self) -> Vec<(String, CounterSnapshot)> {
        self.nodes.iter().map(|(n, c)| (n.clone(), c.snapshot())).collect()
    }

    /// Every transform's watermarks per worker, in graph order.
    pub fn watermarks(&self) -> Vec<WatermarkSnapshot> {
        let mut out = Vec::new();
        for (name, c) in &self.nodes {
            for (&worker, &(input, output)) in c.watermarks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                out.push(WatermarkSnapshot { transform: name.clone(), worker, input, output });
            }
        }
        out
    }

    /// Every split of every source, with its watermark and idleness.
    pub fn splits(&self) -> Vec<(String, String, SplitState)> {
        let mut out = Vec::new();
        for (name, c) in &self.nodes {
            for (split, state) in c.splits.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                out.push((name.clone(), split.clone(), *state));
            }
        }
        out
    }

    /// What holds the pipeline's watermark back right now: the non-idle,
    /// unfinished split with the lowest watermark, or else the transform
    /// instance whose output watermark is furthest behind its input
    /// watermark; with how far it is behind the most advanced split or the
    /// instance's own input. `None` when nothing is behind.
    pub fn holding_back(&self) -> Option<HoldBack> {
        let splits = self.splits();
        let active: Vec<&(String, String, SplitState)> = splits.iter().filter(|s| !s.2.idle && !s.2.done).collect();
        if active.len() > 1 {
            let min = active.iter().min_by_key(|s| s.2.watermark).expect("non-empty");
            let max = active.iter().map(|s| s.2.watermark).max().expect("non-empty");
            if min.2.watermark < max {
                return Some(HoldBack {
                    what: format!("split {} of {}", min.1, min.0),
                    watermark: min.2.watermark,
                    behind_by: max.since(min.2.watermark),
                });
            }
        }
        self.watermarks().into_iter().filter(|w| w.output < w.input).max_by_key(|w| w.input.since(w.output)).map(|w| {
            HoldBack {
                what: format!("{} on worker {}", w.transform, w.worker),
                watermark: w.output,
                behind_by: w.input.since(w.output),
            }
        })
    }
}

/// The watermarks of one transform instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatermarkSnapshot {
    /// The transform.
    pub transform: String,
    /// The worker.
    pub worker: usize,
    /// Its input watermark.
    pub input: Timestamp,
    /// Its output watermark.
    pub output: Timestamp,
}

/// What holds a watermark back, and by how much.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldBack {
    /// A split or a transform instance.
    pub what: String,
    /// Its watermark.
    pub watermark: Timestamp,
    /// How far it is behind.
    pub behind_by: weir_model::Duration,
}
