//! The Kafka source and sink against a real Kafka-protocol broker (tansu,
//! started by this test binary on 127.0.0.1; see `src/testing.rs`).

#[path = "../src/testing.rs"]
#[allow(dead_code)] // read_records is for the weir-cli tests
mod testing;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use serde::{Deserialize, Serialize};
use weir_kafka::admin::{create_topic, load_with, ONE_RECORD_PER_BATCH};
use weir_kafka::{read_kafka, KafkaError, KafkaSinkExt, KafkaSource};
use weir_pipeline::prelude::*;
use weir_pipeline::Runner;
use weir_runner_reference::ReferenceRunner;
use weir_runner_timely::{CheckpointConfig, TimelyRunner};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct E {
    n: u64,
    t: i64,
}

fn json(e: &E) -> Vec<u8> {
    serde_json::to_vec(e).unwrap()
}

/// A fresh topic (names are unique per test) loaded with `values`, one
/// record per batch (the test broker counts batches where it should count
/// records when asked where a partition ends).
fn topic(name: &str, partitions: i32, values: &[Vec<u8>]) -> String {
    let b = testing::broker();
    assert!(create_topic(b, name, partitions).unwrap(), "topic {name} existed already");
    assert_eq!(load_with(b, name, partitions, values, ONE_RECORD_PER_BATCH).unwrap(), values.len() as u64);
    name.to_string()
}

/// `n` events, `bad` of them replaced by lines that are not events.
fn events(n: u64, bad: &[u64]) -> Vec<Vec<u8>> {
    (0..n).map(|i| if bad.contains(&i) { b"not json".to_vec() } else { json(&E { n: i, t: i as i64 * 10 }) }).collect()
}

fn source(topic: &str) -> KafkaSource<E> {
    KafkaSource::<E>::json(testing::broker(), topic).event_time(|e| e.t).bounded()
}

#[test]
fn a_bounded_topic_is_read_whole_with_its_dead_letters_on_every_runner() {
    let t = topic("bounded", 4, &events(2_000, &[500, 1001, 1502]));
    let runners: Vec<(&str, Box<dyn Runner>)> = vec![
        ("reference", Box::new(ReferenceRunner::default())),
        ("timely x1", Box::new(TimelyRunner::threads(1))),
        ("timely x2", Box::new(TimelyRunner::threads(2))),
        ("timely x3", Box::new(TimelyRunner::threads(3))),
    ];
    for (name, runner) in runners {
        let p = Pipeline::new();
        let (events, dead) = read_kafka(&p, source(&t)).unwrap();
        let (events, dead) = (events.collect(), dead.collect());
        let result = p.run_with(&*runner).unwrap();
        let mut got: Vec<u64> = events.values().iter().map(|e| e.n).collect();
        got.sort_unstable();
        let expected: Vec<u64> = (0..2_000).filter(|i| ![500, 1001, 1502].contains(i)).collect();
        assert_eq!(got, expected, "{name}: every record once");
        // Event time is the event's own.
        assert!(events.windowed().iter().all(|v| v.timestamp.millis() == v.value.t), "{name}");
        let mut dead = dead.values();
        dead.sort_by(|a, b| a.file.cmp(&b.file));
        assert_eq!(dead.len(), 3, "{name}: {dead:?}");
        // Record i went to partition i % 4, at offset i / 4.
        assert_eq!(dead[0].file, "bounded[0]", "{name}");
        assert!(dead[0].reason.starts_with("offset 125: not a JSON document"), "{name}: {}", dead[0].reason);
        assert_eq!(dead[0].line, "not json");
        assert_eq!(result.counters("ReadKafka(bounded)").unwrap().dead_letters, 3, "{name}");
    }
}

#[test]
fn a_missing_topic_and_an_unreachable_broker_are_clear_errors_before_the_run() {
    let p = Pipeline::new();
    let Err(e) = read_kafka(&p, source("no-such-topic")) else { panic!("a missing topic is not an error") };
    assert!(matches!(e, KafkaError::NoTopic { .. }), "{e}");
    assert!(e.to_string().contains("topic 'no-such-topic' does not exist"), "{e}");
    let started = Instant::now();
    let unreachable = KafkaSource::<E>::json("127.0.0.1:1", "t").timeout(StdDuration::from_secs(2));
    let Err(e) = read_kafka(&p, unreachable) else { panic!("no broker is not an error") };
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    assert!(started.elapsed() < StdDuration::from_secs(30), "gave up after {:?}", started.elapsed());
}

/// The sink writes to a broker of its own on SQLite: tansu 0.6.0's memory
/// engine (the shared test broker's) loses a record now and then when two
/// idempotent producers write one partition at once. Measured on this
/// test: 2 of 26 runs lost a record there (the partition's first offset
/// was gone, its low watermark 1) and 0 of 120 with idempotence off; on
/// SQLite 0 of 130 with idempotence on. A Kafka broker does not do that.
#[test]
fn the_sink_delivers_every_record_with_its_key() {
    let t = topic("to-copy", 2, &events(1_000, &[]));
    let db = tempfile::tempdir().unwrap();
    let own = testing::OwnBroker::start(&db.path().join("kafka.db"));
    let out = own.address();
    create_topic(&out, "copied", 3).unwrap();
    let p = Pipeline::new();
    let (events, _) = read_kafka(&p, source(&t)).unwrap();
    events.write_kafka_with(&out, "copied", ONE_RECORD_PER_BATCH, |e: &E| {
        (Some(format!("k{}", e.n % 7).into_bytes()), json(e))
    });
    p.run_with(&TimelyRunner::threads(2)).unwrap();

    let p = Pipeline::new();
    let keyed = KafkaSource::new(out.clone(), "copied", |r| {
        let e: E = serde_json::from_slice(r.payload.unwrap()).map_err(|e| e.to_string())?;
        Ok((String::from_utf8(r.key.unwrap().to_vec()).unwrap(), r.partition, e))
    })
    .event_time(|(_, _, e)| e.t)
    .bounded();
    let (copied, _) = read_kafka(&p, keyed).unwrap();
    let copied = copied.collect();
    p.run_with(&TimelyRunner::threads(1)).unwrap();
    let copied = copied.values();
    let mut ns: Vec<u64> = copied.iter().map(|(_, _, e)| e.n).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..1_000).collect::<Vec<_>>());
    for (key, _, e) in &copied {
        assert_eq!(key, &format!("k{}", e.n % 7));
    }
    // Records of one key share a partition.
    for k in 0..7 {
        let parts: std::collections::BTreeSet<i32> =
            copied.iter().filter(|(key, ..)| key == &format!("k{k}")).map(|(_, p, _)| *p).collect();
        assert_eq!(parts.len(), 1, "key k{k} in partitions {parts:?}");
    }
    // Each record names its result (window, pane, key and value): what a
    // consumer deduplicates on after a recovery sent it again.
    let ids = result_ids(&out, "copied", 1_000);
    let expected: std::collections::BTreeSet<String> = (0..1_000)
        .map(|n| {
            let e = E { n, t: n as i64 * 10 };
            let key = format!("k{}", n % 7).into_bytes();
            weir_kafka::result_id(&Window::Global, &PaneInfo::NO_FIRING, Some(&key), &json(&e))
        })
        .collect();
    assert_eq!(expected.len(), 1_000);
    assert_eq!(ids, expected);
}

/// The result-id headers of the first `n` records of `topic`.
fn result_ids(brokers: &str, topic: &str, n: usize) -> std::collections::BTreeSet<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "weir-result-ids")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(30);
    let mut ids = std::collections::BTreeSet::new();
    let mut seen = 0;
    while seen < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(StdDuration::from_millis(100)) {
            seen += 1;
            let headers = m.headers().expect("the sink sets headers");
            let id = headers.iter().find(|h| h.key == weir_kafka::RESULT_ID).and_then(|h| h.value).expect("an id");
            ids.insert(String::from_utf8(id.to_vec()).unwrap());
        }
    }
    assert_eq!(seen, n, "records read");
    ids
}

/// Counts per 1-second window of a 2-partition topic whose partition 1
/// stays quiet: with idleness its silence does not hold the windows of
/// partition 0 back; a record that then comes to partition 1 is counted.
#[test]
fn a_quiet_partition_does_not_hold_windows_back_and_counts_again_when_it_resumes() {
    let b = testing::broker();
    create_topic(b, "quiet", 2).unwrap();
    // Partition 0: events at 0, 100, ..., 4900 ms. Partition 1: nothing.
    let p0: Vec<Vec<u8>> = (0..50).map(|i| json(&E { n: i, t: i as i64 * 100 })).collect();
    load_into(b, "quiet", 0, &p0);
    let seen: Arc<Mutex<Vec<(i64, u64)>>> = Arc::default();
    let sink = seen.clone();
    // A pipeline is built on the thread that runs it.
    let run = std::thread::spawn(move || {
        let p = Pipeline::new();
        // Looking for new partitions all along (the broker has none to
        // add: tansu 0.6.0 cannot grow a topic) must not read a partition
        // twice.
        let quiet = KafkaSource::<E>::json(b, "quiet")
            .event_time(|e| e.t)
            .discover_partitions_every(StdDuration::from_millis(100))
            .idle_after(Duration::from_millis(300))
            .stop_at_event_time(1_000_000);
        let (events, _) = read_kafka(&p, quiet).unwrap();
        let counts = events
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(1_000)).unwrap()))
            // Keyed by the window's end, so the counts say which window fired.
            .map(|e: E| ((e.t / 1_000 + 1) * 1_000, 1u64))
            .combine_per_key(Sum::new())
            .map(move |(end, n): (i64, u64)| {
                sink.lock().unwrap().push((end, n));
                (end, n)
            })
            .collect();
        p.run_with(&TimelyRunner::threads(1)).map(|_| counts.values())
    });
    // Windows ending at 1..4 s fire while partition 1 has never had a record.
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while seen.lock().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "windows held back by the quiet partition: {:?}", seen.lock().unwrap());
        std::thread::sleep(StdDuration::from_millis(50));
    }
    let mut early = seen.lock().unwrap().clone();
    early.sort_unstable();
    assert_eq!(early, vec![(1_000, 10), (2_000, 10), (3_000, 10), (4_000, 10)]);
    // Partition 1 resumes inside the open window [4 s, 5 s): counted.
    load_into(b, "quiet", 1, &[json(&E { n: 99, t: 4_500 })]);
    std::thread::sleep(StdDuration::from_millis(500));
    // Both partitions end (a record past the stop time each).
    let end = json(&E { n: 0, t: 2_000_000 });
    load_into(b, "quiet", 0, std::slice::from_ref(&end));
    load_into(b, "quiet", 1, &[end]);
    let mut all = run.join().unwrap().unwrap();
    all.sort_unstable();
    assert_eq!(all, vec![(1_000, 10), (2_000, 10), (3_000, 10), (4_000, 10), (5_000, 11)]);
}

/// Send `values` to one partition of `topic`.
fn load_into(brokers: &str, topic: &str, partition: i32, values: &[Vec<u8>]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().expect("a producer");
    for v in values {
        producer.send(BaseRecord::<(), _>::to(topic).partition(partition).payload(v)).expect("queued");
    }
    producer.flush(StdDuration::from_secs(30)).expect("delivered");
}

/// The newest committed checkpoint in `dir` (its epoch + 1; 0: none).
fn commits(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| {
            let path = e.unwrap().path();
            let epoch = path.file_name()?.to_str()?.strip_prefix("chk-")?.parse::<u64>().ok()?;
            path.join("MANIFEST").exists().then_some(epoch + 1)
        })
        .max()
        .unwrap_or(0)
}

/// The offsets consumer group `group` committed for partitions
/// `0..partitions` of `topic` (-1: none).
fn group_offsets(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", testing::broker())
        .set("group.id", group)
        .create()
        .expect("a consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, StdDuration::from_secs(10)).expect("the group's offsets");
    (0..partitions)
        .map(|p| match committed.find_partition(topic, p).expect("asked for").offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

/// A run that fails part way resumes, with the same checkpoint location,
/// from the offsets of its last checkpoint: each record is counted once,
/// and what the checkpoint covers is not read again. While it runs, the
/// consumer group's offsets follow the committed checkpoints (for lag
/// tools).
#[test]
fn a_failed_run_resumes_at_the_offsets_of_its_last_checkpoint() {
    let b = testing::broker();
    create_topic(b, "resumed", 4).unwrap();
    let batch =
        |from: u64| -> Vec<Vec<u8>> { (from..from + 10_000).map(|i| json(&E { n: i, t: i as i64 * 10 })).collect() };
    load_with(b, "resumed", 4, batch(0), ONE_RECORD_PER_BATCH).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    // Counts per n % 10 and how many records the run read; a run given
    // `crash` fails at the first record of the second batch.
    let run = move |read: Arc<AtomicU64>, crash: bool| {
        let p = Pipeline::new();
        let source =
            KafkaSource::<E>::json(testing::broker(), "resumed").event_time(|e| e.t).stop_at_event_time(1 << 40);
        let (events, _) = read_kafka(&p, source).unwrap();
        let counts = events
            .map(move |e: E| {
                read.fetch_add(1, Ordering::SeqCst);
                if crash && e.n >= 10_000 {
                    panic!("crash at record {}", e.n);
                }
                (e.n % 10, 1u64)
            })
            .combine_per_key(Sum::new())
            .collect();
        let runner =
            TimelyRunner::threads(2).with_checkpoints(CheckpointConfig::local(&path, StdDuration::from_millis(20)));
        p.run_with(&runner).map(|_| {
            let mut c = counts.values();
            c.sort_unstable();
            c
        })
    };
    let read = Arc::new(AtomicU64::new(0));
    let first = {
        let (run, read) = (run.clone(), read.clone());
        std::thread::spawn(move || run(read, true))
    };
    // The first batch is read; then a few checkpoints commit.
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while read.load(Ordering::SeqCst) < 10_000 {
        assert!(Instant::now() < deadline, "the first batch was not read");
        std::thread::sleep(StdDuration::from_millis(10));
    }
    let seen = commits(dir.path());
    while commits(dir.path()) < seen + 3 {
        assert!(Instant::now() < deadline, "no checkpoint after the first batch");
        std::thread::sleep(StdDuration::from_millis(10));
    }
    // The group's offsets reach the end of the first batch (2,500 records
    // a partition) once checkpoints after it are committed.
    loop {
        let offsets = group_offsets("weir-resumed", "resumed", 4);
        if offsets == vec![2_500; 4] {
            break;
        }
        assert!(Instant::now() < deadline, "the group's offsets stayed at {offsets:?}");
        std::thread::sleep(StdDuration::from_millis(50));
    }
    // The second batch, then one record past the stop time per partition.
    load_with(b, "resumed", 4, batch(10_000), ONE_RECORD_PER_BATCH).unwrap();
    let end = json(&E { n: 0, t: 1 << 41 });
    load_with(b, "resumed", 4, vec![end; 4], ONE_RECORD_PER_BATCH).unwrap();
    let e = first.join().unwrap().unwrap_err();
    assert!(e.to_string().contains("crash at record"), "{e}");
    let read = Arc::new(AtomicU64::new(0));
    let counts = run(read.clone(), false).unwrap();
    let expected: Vec<(u64, u64)> = (0..10).map(|k| (k, 2_000)).collect();
    assert_eq!(counts, expected);
    // The second run resumed after the first batch: it read the second.
    assert_eq!(read.load(Ordering::SeqCst), 10_000, "the resumed run read the wrong records");
}

/// A bounded read stores where it stops with its position: resumed after
/// the topic grew, it still stops where the first run would have.
#[test]
fn a_bounded_run_resumed_after_the_topic_grew_stops_where_it_would_have() {
    let t = topic("grows", 2, &events(4_000, &[]));
    let dir = tempfile::tempdir().unwrap();
    let run = |crash: bool| {
        let p = Pipeline::new();
        let (events, _) = read_kafka(&p, source(&t)).unwrap();
        let count = events
            .map(move |e: E| {
                if crash && e.n == 3_999 {
                    panic!("crash at the last record");
                }
                ((), 1u64)
            })
            .combine_per_key(Sum::new())
            .collect();
        let runner = TimelyRunner::threads(2)
            .with_checkpoints(CheckpointConfig::local(dir.path(), StdDuration::from_millis(20)));
        p.run_with(&runner).map(|_| count.values())
    };
    let e = run(true).unwrap_err();
    assert!(e.to_string().contains("crash at the last record"), "{e}");
    // Checkpoints were committed before the first records came (the
    // consumers take longer to connect than an epoch lasts).
    assert!(commits(dir.path()) > 0, "no checkpoint to resume from");
    load_with(testing::broker(), "grows", 2, events(1_000, &[]), ONE_RECORD_PER_BATCH).unwrap();
    assert_eq!(run(false).unwrap(), vec![((), 4_000)]);
}

/// The broker goes away in the middle of a run (killed) and comes back
/// with its records: the source reports it and retries (librdkafka's
/// reconnect backoff; the message is checked by hand, it goes to stderr)
/// rather than failing or hanging silently, and once the broker is back
/// every record is read exactly once.
#[test]
fn a_broker_that_goes_away_and_comes_back_loses_and_duplicates_nothing() {
    let db = tempfile::tempdir().unwrap();
    let mut broker = testing::OwnBroker::start(&db.path().join("kafka.db"));
    let b = broker.address();
    create_topic(&b, "back", 2).unwrap();
    let values = events(4_000, &[]);
    load_with(&b, "back", 2, &values[..2_000], &[]).unwrap();
    let read = Arc::new(AtomicU64::new(0));
    let (seen, brokers) = (read.clone(), b.clone());
    let run = std::thread::spawn(move || {
        let p = Pipeline::new();
        let source = KafkaSource::<E>::json(brokers, "back").event_time(|e| e.t).stop_at_event_time(40_000);
        let (events, _) = read_kafka(&p, source).unwrap();
        let got = events
            .map(move |e: E| {
                seen.fetch_add(1, Ordering::SeqCst);
                e.n
            })
            .collect();
        p.run_with(&TimelyRunner::threads(2)).map(|_| got.values())
    });
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while read.load(Ordering::SeqCst) < 2_000 {
        assert!(Instant::now() < deadline, "read {} of the first 2,000 records", read.load(Ordering::SeqCst));
        std::thread::sleep(StdDuration::from_millis(20));
    }
    broker.stop();
    std::thread::sleep(StdDuration::from_secs(3));
    assert!(!run.is_finished(), "the run ended while the broker was away");
    broker.restart();
    // The rest, then a record past the stop time on each partition.
    let end = json(&E { n: u64::MAX, t: 1_000_000 });
    let rest: Vec<Vec<u8>> = values[2_000..].iter().cloned().chain([end.clone(), end]).collect();
    load_with(&b, "back", 2, &rest, &[]).unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while !run.is_finished() {
        assert!(Instant::now() < deadline, "the run did not end after the broker came back");
        std::thread::sleep(StdDuration::from_millis(50));
    }
    let mut got = run.join().unwrap().unwrap();
    got.sort_unstable();
    assert_eq!(got, (0..4_000).collect::<Vec<u64>>(), "every record once");
}
