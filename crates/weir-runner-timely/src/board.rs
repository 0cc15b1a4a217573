//! The watermark board: every operator instance's input and output
//! watermark on this process, as its driver last published them. The
//! runner's own decisions (quiescence of the simulated clock, watermark
//! alignment of sources) read this board, never the public metrics: metrics
//! are written for observers only, and sampling or resetting them cannot
//! change how a pipeline runs.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;

use weir_model::Timestamp;

/// Per node, per worker: (input watermark, output watermark).
pub(crate) struct WatermarkBoard {
    nodes: Vec<Mutex<BTreeMap<usize, (Timestamp, Timestamp)>>>,
}

impl WatermarkBoard {
    pub fn new(nodes: usize) -> Self {
        WatermarkBoard { nodes: (0..nodes).map(|_| Mutex::new(BTreeMap::new())).collect() }
    }

    pub fn publish(&self, node: usize, worker: usize, input: Timestamp, output: Timestamp) {
        self.nodes[node].lock().unwrap_or_else(|p| p.into_inner()).insert(worker, (input, output));
    }

    /// Every node's published watermarks, by worker.
    pub fn snapshot(&self) -> Vec<BTreeMap<usize, (Timestamp, Timestamp)>> {
        self.nodes.iter().map(|n| n.lock().unwrap_or_else(|p| p.into_inner()).clone()).collect()
    }

    /// The lowest input watermark of `node` over the `workers`, `MIN` if
    /// one of them has published none yet.
    pub fn slowest(&self, node: usize, workers: &Range<usize>) -> Timestamp {
        let watermarks = self.nodes[node].lock().unwrap_or_else(|p| p.into_inner());
        if watermarks.range(workers.clone()).count() < workers.len() {
            return Timestamp::MIN;
        }
        watermarks.range(workers.clone()).map(|(_, (wm, _))| *wm).min().unwrap_or(Timestamp::MAX)
    }
}
