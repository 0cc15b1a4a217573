//! The Kafka sink: the idempotent producer, flushed at every checkpoint;
//! each record carries a deterministic result id (header [`RESULT_ID`]).

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use weir_pipeline::PCollection;
use weir_runtime::{
    Batch, Data, FailedOperator, NodeCounters, NodeKind, OpContext, OpResult, Operator, PipelineError, Rescale,
    Routing, WorkerInfo,
};

/// How long a flush may take before the job fails: longer than
/// librdkafka's own delivery timeout (`message.timeout.ms`, 300 s), so a
/// record it still retries is not given up on first.
const FLUSH_TIMEOUT: StdDuration = StdDuration::from_secs(330);

/// The header that names a record's result: `<window>/<pane>/<digest>`,
/// the window (`global`, or `start..end` in epoch milliseconds), the
/// pane's index in it, and an FNV-1a digest (16 hex digits) of the
/// record's key and value. The same result sent again after a recovery has
/// the same id, so a consumer can drop what it has seen; two results of
/// one key, window and pane (a pane of an accumulating trigger recomputed
/// differently, e.g. a processing-time trigger that fired at another
/// moment) have different ids. Two equal records (key and value) of one
/// window and pane share an id: a consumer that drops duplicates keeps one
/// of them, so put what tells them apart in the key or value.
///
/// ```
/// use weir_kafka::result_id;
/// use weir_model::{IntervalWindow, PaneInfo, Timestamp, Window};
/// let w = Window::Interval(IntervalWindow::new(Timestamp::from_millis(0), Timestamp::from_millis(10_000)));
/// let id = result_id(&w, &PaneInfo::NO_FIRING, Some(b"user-7"), b"{\"n\":3}");
/// assert!(id.starts_with("0..10000/0/"), "{id}");
/// assert_eq!(id, result_id(&w, &PaneInfo::NO_FIRING, Some(b"user-7"), b"{\"n\":3}"));
/// assert_ne!(id, result_id(&w, &PaneInfo::NO_FIRING, Some(b"user-8"), b"{\"n\":3}"));
/// assert_ne!(id, result_id(&w, &PaneInfo::NO_FIRING, Some(b"user-7"), b"{\"n\":4}"));
/// // Key and value do not run into each other.
/// assert_ne!(result_id(&w, &PaneInfo::NO_FIRING, Some(b"ab"), b"c"), result_id(&w, &PaneInfo::NO_FIRING, Some(b"a"), b"bc"));
/// ```
pub const RESULT_ID: &str = "weir-result-id";

/// A record's [`RESULT_ID`].
pub fn result_id(window: &weir_model::Window, pane: &weir_model::PaneInfo, key: Option<&[u8]>, value: &[u8]) -> String {
    // FNV-1a over the key's length (u64::MAX: none), the key and the value.
    let len = key.map_or(u64::MAX, |k| k.len() as u64).to_le_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in len.iter().chain(key.unwrap_or_default()).chain(value) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let window = match window.as_interval() {
        Some(w) => format!("{}..{}", w.start.millis(), w.end.millis()),
        None => "global".to_string(),
    };
    format!("{window}/{}/{h:016x}", pane.index.max(0))
}

/// Records a worker's producer failed to deliver.
#[derive(Default)]
pub(crate) struct Deliveries {
    pub(crate) first_error: Mutex<Option<String>>,
}

/// The producer's context: it keeps the first delivery failure.
pub(crate) struct Context(pub(crate) Arc<Deliveries>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut slot = self.0.first_error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }
    }
}

type RecordFn<T> = dyn Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync;

struct KafkaSinkOp<T> {
    topic: String,
    producer: ThreadedProducer<Context>,
    deliveries: Arc<Deliveries>,
    record: Arc<RecordFn<T>>,
    _t: PhantomData<fn(T)>,
}

impl<T> KafkaSinkOp<T> {
    fn failed(&self, message: String) -> PipelineError {
        PipelineError::Runner(format!("kafka: producing to '{}': {message}", self.topic))
    }

    /// Fail if a record could not be delivered.
    fn check(&self) -> OpResult {
        match self.deliveries.first_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(self.failed(format!("a record was not delivered: {e}"))),
            None => Ok(()),
        }
    }

    /// Wait until everything sent is acknowledged (or failed).
    fn flush(&self) -> OpResult {
        self.producer.flush(FLUSH_TIMEOUT).map_err(|e| self.failed(format!("flushing: {e}")))?;
        self.check()
    }
}

impl<T: Data> Operator for KafkaSinkOp<T> {
    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let values = batch.into_vec::<T>()?;
        NodeCounters::add(&cx.counters.elements_in, values.len() as u64);
        for v in &values {
            let (key, payload) = (self.record)(&v.value);
            let id = result_id(&v.window, &v.pane, key.as_deref(), &payload);
            let headers = OwnedHeaders::new().insert(Header { key: RESULT_ID, value: Some(&id) });
            let mut record = BaseRecord::to(&self.topic).payload(&payload).headers(headers);
            if let Some(k) = &key {
                record = record.key(k);
            }
            let mut record = record;
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The producer's queue is full: wait for deliveries.
                        record = back;
                        std::thread::sleep(StdDuration::from_millis(5));
                    }
                    Err((e, _)) => return Err(self.failed(e.to_string())),
                }
            }
        }
        self.check()
    }

    fn finish(&mut self, _cx: &mut OpContext<'_>) -> OpResult {
        self.flush()
    }

    /// Everything sent before the checkpoint's barrier is acknowledged
    /// before the checkpoint is taken (at least once).
    fn snapshot_epoch(&mut self, _epoch: u64) -> Result<Vec<u8>, PipelineError> {
        self.flush()?;
        Ok(Vec::new())
    }

    fn snapshot(&self) -> Result<Vec<u8>, PipelineError> {
        Ok(Vec::new())
    }

    fn restore(&mut self, _bytes: &[u8]) -> OpResult {
        Ok(())
    }

    fn restore_rescaled(&mut self, _from: &Rescale<'_>) -> OpResult {
        Ok(())
    }
}

/// `write_kafka`: records to a Kafka topic.
pub trait KafkaSinkExt<T: Data> {
    /// Send one record per element, its key and value made by `record`,
    /// to `topic` at `brokers` (`host:port[,host:port]`), with the
    /// idempotent producer. Records with a key go to the partition of
    /// their key. Everything sent is flushed at each checkpoint and at
    /// the end; a record that cannot be delivered fails the job.
    ///
    /// At least once: a recovery sends again what was sent after the
    /// checkpoint it restores. Every record carries a deterministic id
    /// (header [`RESULT_ID`]: its window, pane, key and value) so that consumers
    /// can drop duplicates. (Kafka
    /// transactions would make it exactly once; the test broker has none,
    /// so Weir does not ship an untested transactional mode.)
    fn write_kafka(
        &self,
        brokers: &str,
        topic: &str,
        record: impl Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync + 'static,
    );

    /// [`write_kafka`](Self::write_kafka) with librdkafka producer options
    /// (`security.protocol`, `linger.ms`, ...).
    fn write_kafka_with(
        &self,
        brokers: &str,
        topic: &str,
        options: &[(&str, &str)],
        record: impl Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync + 'static,
    );
}

impl<T: Data> KafkaSinkExt<T> for PCollection<T> {
    fn write_kafka(
        &self,
        brokers: &str,
        topic: &str,
        record: impl Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync + 'static,
    ) {
        self.write_kafka_with(brokers, topic, &[], record)
    }

    fn write_kafka_with(
        &self,
        brokers: &str,
        topic: &str,
        options: &[(&str, &str)],
        record: impl Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync + 'static,
    ) {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers).set("enable.idempotence", "true").set("acks", "all");
        for (k, v) in options {
            config.set(*k, *v);
        }
        let topic = topic.to_string();
        let record: Arc<RecordFn<T>> = Arc::new(record);
        self.pipeline().add_node(
            &format!("WriteKafka({topic})"),
            vec![self.as_input(Routing::Forward)],
            0,
            NodeKind::Operator(Arc::new(move |_: &WorkerInfo| {
                let deliveries = Arc::new(Deliveries::default());
                match config.create_with_context::<_, ThreadedProducer<_>>(Context(deliveries.clone())) {
                    Ok(producer) => Box::new(KafkaSinkOp {
                        topic: topic.clone(),
                        producer,
                        deliveries,
                        record: record.clone(),
                        _t: PhantomData,
                    }) as Box<dyn Operator>,
                    Err(e) => Box::new(FailedOperator(PipelineError::Runner(format!(
                        "kafka: cannot create a producer for '{topic}': {e}"
                    )))),
                }
            })),
        );
    }
}
