//! The container and its wire format: every timely edge carries Weir's
//! type-erased [`Batch`]es. A batch crosses threads as a typed value and
//! processes as its bincode encoding (`Batch::write_encoded`), padded to 8
//! bytes as timely's zero-copy allocator wants. A partitioned edge splits
//! each batch with the consumer's [`Partitioner`] (the key groups of its
//! keys).

use std::sync::Arc;

use timely::communication::{Pull, Push};
use timely::dataflow::channels::pushers::exchange::Distributor;
use timely::dataflow::channels::{ContainerBytes, Message};
use timely::progress::Stamp;
use timely::Accountable;
use weir_runtime::{Batch, KeyGroups, Partitioner, PipelineError};

use crate::flow::InFlight;
use crate::time::Time;

/// A Weir batch as a timely container; `error` when the bytes that
/// arrived do not decode (reported by the consumer, never a panic).
#[derive(Clone, Default)]
pub(crate) struct TBatch {
    pub batch: Batch,
    pub error: Option<PipelineError>,
}

impl TBatch {
    pub fn new(batch: Batch) -> Self {
        TBatch { batch, error: None }
    }
}

impl Accountable for TBatch {
    fn record_count(&self) -> i64 {
        self.batch.len() as i64
    }
}

impl ContainerBytes for TBatch {
    fn from_bytes(bytes: timely::bytes::arc::Bytes) -> Self {
        match Batch::from_encoded(&bytes[..]) {
            Ok(batch) => TBatch::new(batch),
            Err(e) => TBatch { batch: Batch::default(), error: Some(e) },
        }
    }
    fn length_in_bytes(&self) -> usize {
        (self.batch.encoded_len() + 7) & !7
    }
    fn into_bytes<W: std::io::Write>(&self, writer: &mut W) {
        let len = self.batch.encoded_len();
        self.batch.write_encoded(writer);
        let pad = ((len + 7) & !7) - len;
        writer.write_all(&[0u8; 8][..pad]).expect("writing padding");
    }
}

/// Splits each batch with the consumer's partitioner.
pub(crate) struct WeirDistributor {
    pub partition: Partitioner,
    pub groups: KeyGroups,
    /// This worker's process and the workers per process, to tell which
    /// parts leave the process.
    pub process: usize,
    pub threads: usize,
    pub in_flight: Arc<InFlight>,
}

impl Distributor<TBatch> for WeirDistributor {
    fn partition<T: Clone, P: Push<Message<T, TBatch>>>(
        &mut self,
        container: &mut TBatch,
        stamp: &Stamp<T>,
        pushers: &mut [P],
    ) {
        let batch = std::mem::take(&mut container.batch);
        debug_assert_eq!(pushers.len(), self.groups.workers());
        match (self.partition)(batch, &self.groups) {
            Ok(parts) => {
                for (i, part) in parts.into_iter().enumerate() {
                    if !part.is_empty() {
                        if i / self.threads != self.process {
                            self.in_flight.sub(part.len() as i64);
                        }
                        Message::push_at(&mut TBatch::new(part), stamp.clone(), &mut pushers[i]);
                    }
                }
            }
            // A batch that cannot be partitioned (it does not decode): the
            // consumer on this worker reports it.
            Err(e) => {
                let me = self.process * self.threads;
                Message::push_at(
                    &mut TBatch { batch: Batch::default(), error: Some(e) },
                    stamp.clone(),
                    &mut pushers[me],
                );
            }
        }
    }
    fn flush<T: Clone, P: Push<Message<T, TBatch>>>(&mut self, _stamp: &Stamp<T>, _pushers: &mut [P]) {}
}

/// One input port of an operator, whatever its pact.
pub(crate) trait InputPort {
    /// Every queued message: its time (epoch, and the watermark it was sent at) and
    /// batch, or the error of a message that did not decode.
    fn drain(&mut self, f: &mut dyn FnMut(Time, Result<Batch, PipelineError>));
}

impl<P: Pull<Message<Time, TBatch>>> InputPort
    for timely::dataflow::operators::generic::InputHandleCore<Time, TBatch, P>
{
    fn drain(&mut self, f: &mut dyn FnMut(Time, Result<Batch, PipelineError>)) {
        self.for_each(|cap, data| {
            // A message is sent under one capability: its stamp has one time.
            let time = cap.stamp().elements().first().copied().unwrap_or_default();
            match data.error.take() {
                Some(e) => f(time, Err(e)),
                None => f(time, Ok(std::mem::take(&mut data.batch))),
            }
        })
    }
}
