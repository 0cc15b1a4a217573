//! NEXMark events from a Kafka topic (`--input kafka://HOST:PORT/TOPIC`),
//! and `weir kafka-load`, which loads a JSON-lines file into a topic.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use weir::pipeline::{PCollection, Pipeline};
use weir_kafka::{read_kafka, KafkaSource};
use weir_nexmark::{Event, OUT_OF_ORDERNESS, SOURCE_NAME};

/// A `kafka://HOST:PORT[,HOST:PORT]/TOPIC` address: (brokers, topic).
/// `None` if `s` is not a Kafka address; an error if it is a bad one.
pub fn parse_url(s: &str) -> Result<Option<(String, String)>> {
    let Some(rest) = s.strip_prefix("kafka://") else { return Ok(None) };
    match rest.split_once('/') {
        Some((brokers, topic)) if !brokers.is_empty() && !topic.is_empty() && !topic.contains('/') => {
            Ok(Some((brokers.to_string(), topic.to_string())))
        }
        _ => bail!("{s}: a Kafka address is kafka://HOST:PORT/TOPIC (several brokers: kafka://H1:P1,H2:P2/TOPIC)"),
    }
}

/// The events of `topic`, read up to its end as of now: one split per
/// partition, each partition's watermark its latest event time minus the
/// reference runs' out-of-orderness (as for files), and the records that
/// are not events as dead letters.
pub fn read_events(
    p: &Pipeline,
    brokers: &str,
    topic: &str,
) -> Result<(PCollection<Event>, PCollection<weir::io::DeadLetter>)> {
    let source = event_source(brokers, topic).out_of_orderness(OUT_OF_ORDERNESS).bounded();
    Ok(read_kafka(p, source)?)
}

/// NEXMark events (JSON values) from `topic`, timed by their `dateTime`.
pub fn event_source(brokers: &str, topic: &str) -> KafkaSource<Event> {
    KafkaSource::new(brokers, topic, |r| {
        let value = r.payload.ok_or_else(|| "a record without a value".to_string())?;
        Event::from_json(value).map_err(|e| e.to_string())
    })
    .event_time(Event::date_time)
    .named(SOURCE_NAME)
}

/// Arguments of `weir kafka-load`.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// A JSON-lines file (one record per non-empty line).
    pub file: PathBuf,
    /// Where to: kafka://HOST:PORT/TOPIC (the topic is created if it does not exist).
    pub to: String,
    /// Partitions of a topic created here; line i goes to partition i % N.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// One record per producer batch: for brokers that count batches, not
    /// records, when asked where a partition ends (tansu 0.6.0), so that a
    /// bounded read sees every record. Slower.
    #[arg(long)]
    pub one_record_per_batch: bool,
}

/// `weir kafka-load`.
pub fn load(a: LoadArgs) -> Result<()> {
    let Some((brokers, topic)) = parse_url(&a.to)? else {
        bail!("{}: say where to load with kafka://HOST:PORT/TOPIC", a.to);
    };
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).collect();
    let created = weir_kafka::admin::create_topic(&brokers, &topic, a.partitions)?;
    if !created {
        let n = weir_kafka::admin::partition_count(&brokers, &topic)?;
        if n != a.partitions as usize {
            bail!(
                "topic '{topic}' exists with {n} partitions, not {}: give --partitions {n}, or load a new topic",
                a.partitions
            );
        }
    }
    let options = if a.one_record_per_batch { weir_kafka::admin::ONE_RECORD_PER_BATCH } else { &[] };
    let started = Instant::now();
    let sent = weir_kafka::admin::load_with(&brokers, &topic, a.partitions, &lines, options)?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "weir: loaded {sent} records from {} into {}topic '{topic}' on {brokers} in {seconds:.1} s ({:.0} records/s)",
        a.file.display(),
        if created { format!("new {}-partition ", a.partitions) } else { "existing ".into() },
        sent as f64 / seconds.max(1e-9)
    );
    Ok(())
}
