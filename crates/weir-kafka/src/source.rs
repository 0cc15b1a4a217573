//! The Kafka source: one split per partition, its position the next offset.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration as StdDuration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use weir_model::{Duration, Timestamp, WindowingStrategy};
use weir_pipeline::{PCollection, Pipeline};
use weir_runtime::split::{DeadLetter, ReadResult, Split, SplitOutput, SplitReader, SplitSource, WatermarkPolicy};
use weir_runtime::{Data, NodeKind, PipelineError, Source, SourceFactory, WorkerInfo};

use crate::KafkaError;

/// Where a partition is read from when no checkpoint says where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest record the partition still holds.
    Earliest,
    /// The partition's end when the pipeline is built: only newer records.
    Latest,
    /// The first record whose timestamp is at or after this time
    /// (milliseconds since the Unix epoch); the end if there is none.
    Timestamp(i64),
    /// The offsets the consumer group ([`KafkaSource::group_id`]) last
    /// committed; the oldest record where it has none.
    GroupOffsets,
}

/// A record as read from a partition, handed to the decoding function.
#[derive(Clone, Copy, Debug)]
pub struct KafkaRecord<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
    /// The record's key, if it has one.
    pub key: Option<&'a [u8]>,
    /// The record's value, if it has one.
    pub payload: Option<&'a [u8]>,
    /// The record's timestamp (milliseconds since the Unix epoch).
    pub timestamp: Option<i64>,
}

type DecodeFn<T> = dyn Fn(&KafkaRecord<'_>) -> Result<T, String> + Send + Sync;
type TimeFn<T> = dyn Fn(&T, &KafkaRecord<'_>) -> Result<Timestamp, String> + Send + Sync;

/// What a Kafka source reads and how: built with [`KafkaSource::new`] or
/// [`KafkaSource::json`], then read with [`read_kafka`].
pub struct KafkaSource<T> {
    brokers: String,
    topic: String,
    decode: Arc<DecodeFn<T>>,
    time: Arc<TimeFn<T>>,
    start: StartFrom,
    bounded: bool,
    stop_at: Option<Timestamp>,
    group: Option<String>,
    out_of_orderness: Duration,
    idle_after: Option<Duration>,
    options: Vec<(String, String)>,
    timeout: StdDuration,
    discover_every: Option<StdDuration>,
    name: String,
}

fn record_time(r: &KafkaRecord<'_>) -> Result<Timestamp, String> {
    r.timestamp
        .map(Timestamp::from_millis)
        .ok_or_else(|| "the record has no timestamp: give the source an event_time function".to_string())
}

impl<T: Data> KafkaSource<T> {
    /// Read `topic` from the cluster at `brokers` (`host:port[,host:port]`),
    /// each record decoded by `decode` (an `Err` sends the record to the
    /// dead letters with its reason). Event time is the record's
    /// timestamp unless [`event_time`](Self::event_time) says otherwise.
    /// By default: from the earliest offsets, unbounded, no
    /// out-of-orderness allowed, no idleness.
    pub fn new(
        brokers: impl Into<String>,
        topic: impl Into<String>,
        decode: impl Fn(&KafkaRecord<'_>) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        let topic = topic.into();
        KafkaSource {
            brokers: brokers.into(),
            name: format!("ReadKafka({topic})"),
            topic,
            decode: Arc::new(decode),
            time: Arc::new(|_, r| record_time(r)),
            start: StartFrom::Earliest,
            bounded: false,
            stop_at: None,
            group: None,
            out_of_orderness: Duration::ZERO,
            idle_after: None,
            options: Vec::new(),
            timeout: StdDuration::from_secs(10),
            discover_every: Some(StdDuration::from_secs(30)),
        }
    }

    /// Records whose values are JSON documents of `T` (serde).
    pub fn json(brokers: impl Into<String>, topic: impl Into<String>) -> Self
    where
        T: DeserializeOwned,
    {
        KafkaSource::new(brokers, topic, |r| {
            let value = r.payload.ok_or_else(|| "a record without a value".to_string())?;
            serde_json::from_slice(value).map_err(|e| format!("not a JSON document of the expected shape: {e}"))
        })
    }

    /// Event time from the decoded value (milliseconds since the epoch).
    pub fn event_time(mut self, time: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        self.time = Arc::new(move |v, _| Ok(Timestamp::from_millis(time(v))));
        self
    }

    /// How far behind the latest event time of its partition a record may
    /// be and still be on time: each partition's watermark is its largest
    /// event time read so far minus `bound`.
    pub fn out_of_orderness(mut self, bound: Duration) -> Self {
        self.out_of_orderness = bound;
        self
    }

    /// A partition with no record for `quiet` (processing time) stops
    /// holding the watermark back; it holds it again when records come.
    pub fn idle_after(mut self, quiet: Duration) -> Self {
        self.idle_after = Some(quiet);
        self
    }

    /// Where partitions are read from when no checkpoint says where.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Read each partition up to its end as of when the pipeline is built,
    /// then finish (a batch over a topic).
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// Finish each partition at its first record at or after event time
    /// `at` (milliseconds; that record is not read): replay up to a point
    /// in time. A partition that never gets such a record keeps the run
    /// going; add [`bounded`](Self::bounded) to also stop at the ends of
    /// the partitions as of the start.
    pub fn stop_at_event_time(mut self, at: i64) -> Self {
        self.stop_at = Some(Timestamp::from_millis(at));
        self
    }

    /// The consumer group (default `weir-<topic>`): where
    /// [`StartFrom::GroupOffsets`] starts, and whose offsets follow the
    /// job's committed checkpoints (for lag tools). Weir never joins the
    /// group: partitions are dealt to workers by Weir, and positions live
    /// in Weir's checkpoints.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// How often an unbounded source looks for partitions added to the
    /// topic while the job runs (default every 30 s). A new partition is
    /// read from its earliest record, by worker `partition % n`, where `n`
    /// is the smaller of the workers and the partitions at the start. It
    /// holds the watermark where it is until its own watermark passes it,
    /// so its records older than the watermark are late, and while it has
    /// no records it holds the watermark until it counts as idle (set
    /// [`idle_after`](Self::idle_after)). A source that is
    /// [`bounded`](Self::bounded) or [stops](Self::stop_at_event_time) reads
    /// the partitions as of its start only. Each look asks the brokers for
    /// the topic's metadata from every worker's thread (a new partition's
    /// first offset too), waiting up to the [`timeout`](Self::timeout).
    pub fn discover_partitions_every(mut self, every: StdDuration) -> Self {
        self.discover_every = Some(every);
        self
    }

    /// Read only the partitions the topic has when the pipeline is built.
    pub fn no_partition_discovery(mut self) -> Self {
        self.discover_every = None;
        self
    }

    /// Any librdkafka consumer option (`security.protocol`, `sasl.*`, ...).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.push((key.into(), value.into()));
        self
    }

    /// How long to wait for the brokers when the pipeline is built
    /// (default 10 s).
    pub fn timeout(mut self, timeout: StdDuration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The source transform's name (default `ReadKafka(TOPIC)`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    fn client_config(&self, eof: bool) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", self.group.clone().unwrap_or_else(|| format!("weir-{}", self.topic)))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", if eof { "true" } else { "false" })
            // An offset the partition no longer holds (retention removed
            // it) is an error, not a silent jump.
            .set("auto.offset.reset", "error");
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }

    /// Every partition with where to start (and, bounded, where to stop).
    fn plan(&self) -> Result<Vec<PartitionPlan>, KafkaError> {
        if self.start == StartFrom::GroupOffsets && self.group.is_none() {
            return Err(KafkaError::Config("StartFrom::GroupOffsets needs a group_id".into()));
        }
        let client = |e: RdError| KafkaError::Client { brokers: self.brokers.clone(), message: e.to_string() };
        let consumer: BaseConsumer = self.client_config(false).create().map_err(client)?;
        let metadata = |message: String| KafkaError::Metadata {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            message,
        };
        let no_topic = || KafkaError::NoTopic {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            hint: " (create it first; `weir kafka-load FILE kafka://HOST:PORT/TOPIC` creates and fills one)".into(),
        };
        let md = consumer.fetch_metadata(Some(&self.topic), self.timeout).map_err(|e| metadata(e.to_string()))?;
        let topic = md.topics().iter().find(|t| t.name() == self.topic).ok_or_else(no_topic)?;
        match topic.error() {
            None => {}
            Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => return Err(no_topic()),
            Some(e) => return Err(metadata(RDKafkaErrorCode::from(e).to_string())),
        }
        let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        if ids.is_empty() {
            return Err(no_topic());
        }
        ids.sort_unstable();
        let offsets =
            |partition: i32, message: String| KafkaError::Offsets { topic: self.topic.clone(), partition, message };
        let mut plans = Vec::with_capacity(ids.len());
        for &partition in &ids {
            let (low, high) = consumer
                .fetch_watermarks(&self.topic, partition, self.timeout)
                .map_err(|e| offsets(partition, e.to_string()))?;
            let start = match &self.start {
                StartFrom::Earliest => low,
                StartFrom::Latest => high,
                StartFrom::Timestamp(t) => {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(&self.topic, partition, Offset::Offset(*t))
                        .map_err(|e| offsets(partition, e.to_string()))?;
                    let found =
                        consumer.offsets_for_times(tpl, self.timeout).map_err(|e| offsets(partition, e.to_string()))?;
                    match found.find_partition(&self.topic, partition).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => high,
                    }
                }
                StartFrom::GroupOffsets => {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&self.topic, partition);
                    let found =
                        consumer.committed_offsets(tpl, self.timeout).map_err(|e| offsets(partition, e.to_string()))?;
                    match found.find_partition(&self.topic, partition).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => low,
                    }
                }
            };
            plans.push(PartitionPlan { partition, start, end: self.bounded.then_some(high) });
        }
        Ok(plans)
    }
}

/// Where one partition is read from (and, bounded, up to).
#[derive(Clone, Copy, Debug)]
struct PartitionPlan {
    partition: i32,
    start: i64,
    end: Option<i64>,
}

/// What every split of a source shares.
struct Shared<T> {
    /// Tells this source's consumers apart from other sources'.
    id: u64,
    topic: String,
    config: ClientConfig,
    decode: Arc<DecodeFn<T>>,
    time: Arc<TimeFn<T>>,
    stop_at: Option<Timestamp>,
    /// How long to wait for the brokers' metadata.
    timeout: StdDuration,
}

/// The source's splits: one per partition, planned when the pipeline was
/// built, and those discovered later.
struct KafkaSplits<T> {
    shared: Arc<Shared<T>>,
    plans: Vec<PartitionPlan>,
    /// Asks the brokers for the topic's partitions (made on first use).
    metadata: Mutex<Option<BaseConsumer>>,
}

impl<T: Data> KafkaSplits<T> {
    fn split(&self, p: &PartitionPlan) -> PartitionSplit<T> {
        PartitionSplit {
            shared: self.shared.clone(),
            id: format!("{}[{}]", self.shared.topic, p.partition),
            partition: p.partition,
            next: p.start,
            end: p.end,
            reader: None,
            warned: None,
        }
    }
}

impl<T: Data> SplitSource for KafkaSplits<T> {
    type Split = PartitionSplit<T>;
    fn splits(&self, _workers: usize) -> Result<Vec<PartitionSplit<T>>, PipelineError> {
        Ok(self.plans.iter().map(|p| self.split(p)).collect())
    }

    /// The partitions after the first `known` (by id), each from its
    /// earliest record.
    fn discover(&self, known: usize) -> Result<Vec<PartitionSplit<T>>, PipelineError> {
        let topic = &self.shared.topic;
        let fail = |what: &str, e: String| PipelineError::Runner(format!("kafka: {topic}: {what}: {e}"));
        let mut guard = self.metadata.lock().map_err(|_| fail("the metadata client", "poisoned".into()))?;
        let consumer = match &mut *guard {
            Some(c) => c,
            empty => empty
                .insert(self.shared.config.create().map_err(|e: RdError| fail("creating a client", e.to_string()))?),
        };
        let md = consumer
            .fetch_metadata(Some(topic), self.shared.timeout)
            .map_err(|e| fail("reading the topic's metadata", e.to_string()))?;
        let Some(t) = md.topics().iter().find(|t| t.name() == topic.as_str()) else { return Ok(Vec::new()) };
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        let mut found = Vec::new();
        for &partition in ids.get(known..).unwrap_or_default() {
            let (low, _) = consumer
                .fetch_watermarks(topic, partition, self.shared.timeout)
                .map_err(|e| fail(&format!("the offsets of new partition {partition}"), e.to_string()))?;
            found.push(self.split(&PartitionPlan { partition, start: low, end: None }));
        }
        Ok(found)
    }
}

thread_local! {
    /// The consumer of each source on this thread, by source id: the
    /// partitions read on one worker share one librdkafka client (its
    /// threads and broker connections), as a Kafka consumer does.
    static CONSUMERS: RefCell<HashMap<u64, Weak<BaseConsumer>>> = RefCell::new(HashMap::new());
}

/// This thread's consumer of the source `shared` (made on first use; it
/// goes with the last split that uses it).
fn worker_consumer<T>(shared: &Shared<T>) -> Result<Arc<BaseConsumer>, RdError> {
    CONSUMERS.with(|all| {
        let mut all = all.borrow_mut();
        all.retain(|_, c| c.strong_count() > 0);
        if let Some(c) = all.get(&shared.id).and_then(Weak::upgrade) {
            return Ok(c);
        }
        let c = Arc::new(shared.config.create::<BaseConsumer>()?);
        all.insert(shared.id, Arc::downgrade(&c));
        Ok(c)
    })
}

/// A partition being read: the partition's own queue, and the worker's
/// consumer, assigned the partition (it never joins a consumer group).
struct Reader {
    /// Dropped first (fields drop in order): a consumer destroyed while one
    /// of its partition queues is alive hangs in `rd_kafka_destroy`, and a
    /// `PartitionQueue` drops its own handle on the consumer before the
    /// queue.
    queue: PartitionQueue<DefaultConsumerContext>,
    consumer: Arc<BaseConsumer>,
}

/// One partition, read in offset order.
struct PartitionSplit<T> {
    shared: Arc<Shared<T>>,
    id: String,
    partition: i32,
    /// The offset of the next record to read.
    next: i64,
    /// Bounded: the offset to stop at.
    end: Option<i64>,
    reader: Option<Reader>,
    /// When a transient error was last reported.
    warned: Option<Instant>,
}

impl<T: Data> PartitionSplit<T> {
    /// Assign the partition, at the next offset, to the worker's consumer,
    /// its records going to a queue of their own.
    fn open(&self) -> Result<Reader, PipelineError> {
        let fail = |what: &str, e: RdError| PipelineError::Runner(format!("kafka: {}: {what}: {e}", self.id));
        let consumer = worker_consumer(&self.shared).map_err(|e| fail("creating a consumer", e))?;
        // The queue first, so that no record of the partition goes to the
        // consumer's main queue.
        let queue = consumer.split_partition_queue(&self.shared.topic, self.partition).ok_or_else(|| {
            PipelineError::Runner(format!("kafka: {}: the consumer has no queue for the partition", self.id))
        })?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.shared.topic, self.partition, Offset::Offset(self.next))
            .map_err(|e| fail("assigning the partition", e))?;
        consumer.incremental_assign(&tpl).map_err(|e| fail("assigning the partition", e))?;
        Ok(Reader { queue, consumer })
    }

    fn at_end(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end)
    }

    /// An error from the consumer: the end of a bounded partition, a
    /// transient problem (reported, retried by librdkafka), or the end of
    /// the job.
    fn on_error(&mut self, e: RdError) -> Result<ReadResult, PipelineError> {
        let code = match &e {
            // Bounded reads stop at their planned end; an end of partition
            // only ends this split if it is this partition's.
            RdError::PartitionEOF(p) if *p == self.partition && self.end.is_some() => return self.done(),
            RdError::PartitionEOF(_) => return Ok(ReadResult::Idle),
            RdError::MessageConsumption(code) | RdError::MessageConsumptionFatal(code) => Some(*code),
            _ => None,
        };
        let fatal = matches!(e, RdError::MessageConsumptionFatal(_))
            || matches!(
                code,
                Some(
                    RDKafkaErrorCode::OffsetOutOfRange
                        | RDKafkaErrorCode::AutoOffsetReset
                        | RDKafkaErrorCode::UnknownTopicOrPartition
                        | RDKafkaErrorCode::UnknownTopic
                        | RDKafkaErrorCode::UnknownPartition
                        | RDKafkaErrorCode::TopicAuthorizationFailed
                )
            );
        if fatal {
            let hint = match code {
                Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset) => {
                    " (the partition no longer holds that offset: retention removed it)"
                }
                _ => "",
            };
            return Err(PipelineError::Runner(format!(
                "kafka: {}: cannot read from offset {}: {e}{hint}",
                self.id, self.next
            )));
        }
        if self.warned.is_none_or(|t| t.elapsed() >= StdDuration::from_secs(30)) {
            eprintln!("weir: kafka: {}: {e} (retrying)", self.id);
            self.warned = Some(Instant::now());
        }
        Ok(ReadResult::Idle)
    }
}

impl<T: Data> Split for PartitionSplit<T> {
    type Item = T;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn read(&mut self, max: usize, out: &mut SplitOutput<'_, T>) -> Result<ReadResult, PipelineError> {
        if self.at_end() {
            return self.done();
        }
        if self.reader.is_none() {
            self.reader = Some(self.open()?);
        }
        // Serve the shared consumer's own events (errors); records never
        // come there, each partition has its queue.
        let reader = self.reader.as_ref().expect("opened above");
        match reader.consumer.poll(StdDuration::ZERO) {
            None => {}
            Some(Err(e)) => return self.on_error(e),
            Some(Ok(m)) => {
                return Err(PipelineError::Internal(format!(
                    "kafka: {}: a record of partition {} came on the consumer's main queue",
                    self.id,
                    m.partition()
                )))
            }
        }
        let mut read = 0;
        while read < max {
            let reader = self.reader.as_ref().expect("opened above");
            let message = match reader.queue.poll(StdDuration::ZERO) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => return self.on_error(e),
            };
            let offset = message.offset();
            if offset < self.next {
                continue;
            }
            // A bounded read never passes its end (the offsets just before
            // it may hold no record: transaction markers).
            if let Some(end) = self.end.filter(|end| offset >= *end) {
                self.next = end;
                return self.done();
            }
            let record = KafkaRecord {
                topic: &self.shared.topic,
                partition: self.partition,
                offset,
                key: message.key(),
                payload: message.payload(),
                timestamp: message.timestamp().to_millis(),
            };
            let decoded = (self.shared.decode)(&record).and_then(|v| (self.shared.time)(&v, &record).map(|t| (v, t)));
            match decoded {
                Ok((_, at)) if self.shared.stop_at.is_some_and(|stop| at >= stop) => {
                    self.end = Some(offset);
                    return self.done();
                }
                Ok((value, at)) => out.push(value, at),
                Err(reason) => out.dead_letter(DeadLetter {
                    file: self.id.clone(),
                    line: String::from_utf8_lossy(record.payload.unwrap_or_default()).into_owned(),
                    reason: format!("offset {offset}: {reason}"),
                }),
            }
            self.next = offset + 1;
            read += 1;
            if self.at_end() {
                return self.done();
            }
        }
        Ok(if read == 0 { ReadResult::Idle } else { ReadResult::Data })
    }

    /// The offset of the next record to read, and (bounded) the offset to
    /// stop at, so that a resumed run stops where the first one would have,
    /// however much was written to the topic since.
    fn position(&self) -> Option<Vec<u8>> {
        let mut at = self.next.to_le_bytes().to_vec();
        at.extend_from_slice(&self.end.unwrap_or(-1).to_le_bytes());
        Some(at)
    }

    /// The consumer group's offset of the partition moves to the next
    /// record after the checkpoint, for lag tools only (Weir resumes from
    /// its checkpoints, never from the group's offsets). A failed commit is
    /// reported and the job goes on.
    fn committed(&mut self, position: &[u8]) -> Result<(), PipelineError> {
        let Some(reader) = &self.reader else { return Ok(()) };
        let next = decode_position(&self.id, position)?.0;
        let mut tpl = TopicPartitionList::new();
        let committed = tpl
            .add_partition_offset(&self.shared.topic, self.partition, Offset::Offset(next))
            .and_then(|()| reader.consumer.commit(&tpl, CommitMode::Async));
        if let Err(e) = committed {
            if self.warned.is_none_or(|t| t.elapsed() >= StdDuration::from_secs(30)) {
                eprintln!(
                    "weir: kafka: {}: committing the group's offset {next} failed (the job goes on): {e}",
                    self.id
                );
                self.warned = Some(Instant::now());
            }
        }
        Ok(())
    }

    /// A partition added after the checkpoint the run is restored from:
    /// from its earliest record, as when discovered.
    fn seek_to_beginning(&mut self) -> Result<(), PipelineError> {
        let fail = |what: &str, e: RdError| PipelineError::Runner(format!("kafka: {}: {what}: {e}", self.id));
        let consumer = worker_consumer(&self.shared).map_err(|e| fail("creating a consumer", e))?;
        let (low, _) = consumer
            .fetch_watermarks(&self.shared.topic, self.partition, self.shared.timeout)
            .map_err(|e| fail("reading where the partition begins", e))?;
        self.next = low;
        self.end = None;
        self.close();
        Ok(())
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), PipelineError> {
        let (next, end) = decode_position(&self.id, position)?;
        self.next = next;
        self.end = end;
        // The partition is assigned again at the new offset.
        self.close();
        Ok(())
    }
}

/// A split's position: the next offset, and the offset to stop at (bounded).
fn decode_position(id: &str, position: &[u8]) -> Result<(i64, Option<i64>), PipelineError> {
    let bad = || PipelineError::Runner(format!("{id}: a Kafka position is 16 bytes, not {}", position.len()));
    if position.len() != 16 {
        return Err(bad());
    }
    let (next, end) = position.split_at(8);
    let next = i64::from_le_bytes(next.try_into().map_err(|_| bad())?);
    if next < 0 {
        return Err(PipelineError::Runner(format!("{id}: a stored offset of {next}")));
    }
    let end = i64::from_le_bytes(end.try_into().map_err(|_| bad())?);
    Ok((next, (end >= 0).then_some(end)))
}

impl<T> PartitionSplit<T> {
    /// Take the partition back from the worker's consumer (it stops
    /// fetching it).
    fn close(&mut self) {
        if let Some(reader) = self.reader.take() {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.shared.topic, self.partition);
            if let Err(e) = reader.consumer.incremental_unassign(&tpl) {
                eprintln!("weir: kafka: {}: cannot take the partition back from its consumer: {e}", self.id);
            }
        }
    }

    /// The partition is read to its end. (Its consumer keeps it assigned
    /// until the split goes: destroying a consumer on the worker right
    /// after taking a partition back from it can hang in librdkafka.)
    fn done(&mut self) -> Result<ReadResult, PipelineError> {
        Ok(ReadResult::Done)
    }
}

impl<T> Drop for PartitionSplit<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Read a Kafka topic: its records, and those that could not be decoded
/// (as dead letters, counted in the transform's metrics). The topic's
/// partitions and where to start are resolved here, so a wrong address or
/// topic is an error before the pipeline runs.
pub fn read_kafka<T: Data>(
    p: &Pipeline,
    source: KafkaSource<T>,
) -> Result<(PCollection<T>, PCollection<DeadLetter>), KafkaError> {
    let plans = source.plan()?;
    let mut policy = WatermarkPolicy::bounded_out_of_orderness(source.out_of_orderness);
    if let Some(quiet) = source.idle_after {
        policy = policy.idle_after(quiet);
    }
    static SOURCES: AtomicU64 = AtomicU64::new(0);
    let shared = Arc::new(Shared {
        id: SOURCES.fetch_add(1, Ordering::Relaxed),
        config: source.client_config(source.bounded),
        topic: source.topic.clone(),
        decode: source.decode.clone(),
        time: source.time.clone(),
        stop_at: source.stop_at,
        timeout: source.timeout,
    });
    let splits = Arc::new(KafkaSplits { shared, plans, metadata: Mutex::new(None) });
    // Only where partitions never finish: a worker whose partitions all
    // finished would not read one found later.
    let discover = source.discover_every.filter(|_| !source.bounded && source.stop_at.is_none());
    let factory: SourceFactory = Arc::new(move |w: &WorkerInfo| {
        let reader = match discover {
            Some(every) => {
                let every = Duration::from_millis(every.as_millis().try_into().unwrap_or(i64::MAX));
                SplitReader::for_worker_discovering(splits.clone(), w, policy.clone(), true, every)
            }
            None => SplitReader::for_worker(&*splits, w, policy.clone(), true),
        };
        Box::new(reader.expect("Kafka splits are planned when the pipeline is built")) as Box<dyn Source>
    });
    let idx = p.add_node(&source.name, vec![], 2, NodeKind::Source(factory));
    let s = Arc::new(WindowingStrategy::default());
    Ok((p.collection(idx, 0, s.clone()), p.collection(idx, 1, s)))
}
