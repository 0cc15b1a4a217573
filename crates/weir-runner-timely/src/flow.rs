//! Flow control and watermark alignment: timely has no flow control of its
//! own, so sources pause while too many records are in flight in this
//! process, or while their watermark is too far ahead of the slowest
//! instance of the same source.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use timely::dataflow::channels::pushers::Output;
use timely::dataflow::operators::Capability;
use weir_model::Timestamp;
use weir_runtime::{Batch, Emitter, PipelineError};

use crate::board::WatermarkBoard;
use crate::time::Time;
use crate::wire::TBatch;

/// Records this process holds in flight between operators: counted once per
/// consumer when sent, uncounted when received (or when a partitioner sends
/// them to another process). Sources pause while it is above the runner's
/// `max_in_flight`.
pub(crate) struct InFlight {
    now: AtomicI64,
    /// Records parked in stashes, waiting for progress (bounded by
    /// `STASH_LIMIT` per input port); not in flight, but in memory.
    parked: AtomicI64,
    /// The most records ever in flight plus parked.
    peak: AtomicI64,
    limit: i64,
    /// Watermark alignment of source instances (see `max_watermark_drift`).
    max_drift: Option<weir_model::Duration>,
}

impl InFlight {
    pub fn new(limit: u64, max_drift: Option<weir_model::Duration>) -> Self {
        InFlight {
            now: AtomicI64::new(0),
            parked: AtomicI64::new(0),
            peak: AtomicI64::new(0),
            limit: limit.min(i64::MAX as u64) as i64,
            max_drift,
        }
    }
    pub fn add(&self, n: i64) {
        let v = self.now.fetch_add(n, Ordering::AcqRel) + n;
        self.peak.fetch_max(v + self.parked.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    pub fn sub(&self, n: i64) {
        self.now.fetch_sub(n, Ordering::AcqRel);
    }
    /// `n` records stop being in flight and wait in a stash.
    pub fn park(&self, n: i64) {
        self.now.fetch_sub(n, Ordering::AcqRel);
        self.parked.fetch_add(n, Ordering::AcqRel);
    }
    pub fn unpark(&self, n: i64) {
        self.parked.fetch_sub(n, Ordering::AcqRel);
    }
    pub fn over_limit(&self) -> bool {
        self.now.load(Ordering::Acquire) > self.limit
    }
    /// Nothing in flight and nothing parked.
    pub fn drained(&self) -> bool {
        self.now.load(Ordering::Acquire) == 0 && self.parked.load(Ordering::Acquire) == 0
    }
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed).max(0) as u64
    }

    /// Whether a source instance whose watermark is `mine` should pause: it
    /// is more than the allowed drift ahead of the slowest unfinished
    /// instance of the same source (`node`) on this process (`local`
    /// workers).
    pub fn too_far_ahead(
        &self,
        board: &WatermarkBoard,
        node: usize,
        mine: Timestamp,
        local: &std::ops::Range<usize>,
    ) -> bool {
        let Some(drift) = self.max_drift else { return false };
        if mine == Timestamp::MIN || mine == Timestamp::MAX {
            return false;
        }
        let slowest = board.slowest(node, local);
        slowest < Timestamp::MAX && mine > slowest + drift
    }
}

/// What a node needs to account its traffic.
#[derive(Clone)]
pub(crate) struct Flow {
    pub in_flight: Arc<InFlight>,
    /// Number of consumers of each output port.
    pub consumers: Vec<usize>,
}

impl Flow {
    /// Send what the operator emitted at its capabilities, counting it as
    /// in flight once per consumer.
    pub fn send(
        &self,
        outputs: &mut [Output<Time, TBatch>],
        caps: &[Capability<Time>],
        emitter: &mut Emitter,
    ) -> Result<(), PipelineError> {
        if caps.is_empty() {
            if !emitter.is_empty() {
                return Err(PipelineError::Internal(
                    "an operator emitted data after releasing its capabilities: it would be lost".into(),
                ));
            }
            return Ok(());
        }
        for (port, output) in outputs.iter_mut().enumerate() {
            let batches: Vec<Batch> = emitter.drain(port).collect();
            if batches.is_empty() {
                continue;
            }
            let mut session = output.activate();
            for b in batches {
                self.in_flight.add(b.len() as i64 * self.consumers[port] as i64);
                session.give(&caps[port], &mut TBatch::new(b));
            }
        }
        Ok(())
    }
}
