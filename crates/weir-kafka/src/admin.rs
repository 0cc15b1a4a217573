//! Helpers around a pipeline: create a topic, load records into it.

use std::time::Duration as StdDuration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use std::sync::Arc;

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::sink::{Context, Deliveries};
use crate::KafkaError;

/// Create `topic` with `partitions` partitions (replication factor 1).
/// `Ok(false)` if it already exists.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<bool, KafkaError> {
    if partitions < 1 {
        return Err(KafkaError::Config(format!("a topic needs at least one partition, not {partitions}")));
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e: RdError| KafkaError::Client { brokers: brokers.to_string(), message: e.to_string() })?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(StdDuration::from_secs(30)));
    let results = futures_executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| KafkaError::Admin(format!("creating topic '{topic}' on {brokers}: {e}")))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => Err(KafkaError::Admin(format!("creating topic '{topic}' on {brokers}: {code}"))),
        None => Err(KafkaError::Admin(format!("creating topic '{topic}' on {brokers}: no answer"))),
    }
}

/// How many partitions `topic` has (an error if it does not exist).
pub fn partition_count(brokers: &str, topic: &str) -> Result<usize, KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e: RdError| KafkaError::Client { brokers: brokers.to_string(), message: e.to_string() })?;
    let md = consumer.fetch_metadata(Some(topic), StdDuration::from_secs(10)).map_err(|e| KafkaError::Metadata {
        brokers: brokers.to_string(),
        topic: topic.to_string(),
        message: e.to_string(),
    })?;
    match md.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len()),
        _ => Err(KafkaError::NoTopic { brokers: brokers.to_string(), topic: topic.to_string(), hint: String::new() }),
    }
}

/// Producer options that make every record its own batch. A broker that
/// answers "where does the partition end" with its number of batches
/// rather than records (tansu 0.6.0, the test broker, does) then answers
/// right, so that a [bounded](crate::KafkaSource::bounded) read of what
/// was loaded reads it all. Loading is slower (about 8,000 records/s
/// against tansu here).
pub const ONE_RECORD_PER_BATCH: &[(&str, &str)] = &[("batch.num.messages", "1")];

/// Send `values` to `topic`, value `i` to partition `i % partitions`
/// (record `i`'s partition is known: the order within each partition is
/// the order of `values`), with the idempotent producer; waits until all
/// are acknowledged. Returns how many were sent.
pub fn load<I>(brokers: &str, topic: &str, partitions: i32, values: I) -> Result<u64, KafkaError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    load_with(brokers, topic, partitions, values, &[])
}

/// [`load`] with librdkafka producer options (see [`ONE_RECORD_PER_BATCH`]).
pub fn load_with<I>(
    brokers: &str,
    topic: &str,
    partitions: i32,
    values: I,
    options: &[(&str, &str)],
) -> Result<u64, KafkaError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    if partitions < 1 {
        return Err(KafkaError::Config(format!("a topic needs at least one partition, not {partitions}")));
    }
    let failed = |message: String| KafkaError::Produce { topic: topic.to_string(), message };
    let deliveries = Arc::new(Deliveries::default());
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20");
    for (k, v) in options {
        config.set(*k, *v);
    }
    let producer: ThreadedProducer<Context> = config
        .create_with_context(Context(deliveries.clone()))
        .map_err(|e: RdError| KafkaError::Client { brokers: brokers.to_string(), message: e.to_string() })?;
    let mut sent = 0u64;
    for (i, value) in values.into_iter().enumerate() {
        let partition = (i % partitions as usize) as i32;
        let mut record = BaseRecord::<(), [u8]>::to(topic).partition(partition).payload(value.as_ref());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(StdDuration::from_millis(5));
                }
                Err((e, _)) => return Err(failed(e.to_string())),
            }
        }
        sent += 1;
    }
    producer.flush(StdDuration::from_secs(300)).map_err(|e| failed(format!("flushing: {e}")))?;
    if let Some(e) = deliveries.first_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(failed(format!("a record was not delivered: {e}")));
    }
    Ok(sent)
}
