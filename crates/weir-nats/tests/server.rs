//! The JetStream source and sink against a real `nats-server -js`, started
//! by this test binary on a free port of 127.0.0.1 (installed by `.ci/run`:
//! `apt-get install nats-server`). No mocks.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration as StdDuration, Instant};

use serde::{Deserialize, Serialize};
use weir_nats::{read_jetstream, JetStreamSinkExt, JetStreamSource, NatsError};
use weir_pipeline::prelude::*;
use weir_pipeline::Runner;
use weir_runner_reference::ReferenceRunner;
use weir_runner_timely::{CheckpointConfig, TimelyRunner};

/// The server's address, started on first use; it stops when this test
/// process ends.
fn server() -> &'static str {
    static SERVER: OnceLock<(String, Mutex<Child>)> = OnceLock::new();
    &SERVER
        .get_or_init(|| {
            // Debian installs it in /usr/sbin, which a user's PATH may lack.
            let found = Command::new("sh")
                .args(["-c", "command -v nats-server || command -v /usr/sbin/nats-server"])
                .output()
                .expect("sh");
            assert!(
                found.status.success(),
                "these tests need nats-server (apt-get install nats-server; .ci/run installs it)"
            );
            let bin = String::from_utf8_lossy(&found.stdout).trim().to_string();
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            // A static is never dropped: a watcher stops the server (and
            // removes its store) when this test process ends.
            let watch = format!(
                "d=$(mktemp -d); '{bin}' -js -a 127.0.0.1 -p {port} -sd \"$d\" & s=$!; \
                 while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill $s; wait $s; rm -rf \"$d\"",
                std::process::id()
            );
            let watcher = Command::new("sh")
                .args(["-c", &watch])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting nats-server");
            let deadline = Instant::now() + StdDuration::from_secs(30);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "nats-server did not listen within 30 s");
                std::thread::sleep(StdDuration::from_millis(50));
            }
            (format!("127.0.0.1:{port}"), Mutex::new(watcher))
        })
        .0
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn jetstream() -> (tokio::runtime::Runtime, async_nats::jetstream::Context) {
    let rt = rt();
    let js = rt.block_on(async {
        let client = async_nats::connect(server()).await.expect("connecting to the test server");
        async_nats::jetstream::new(client)
    });
    (rt, js)
}

/// A fresh stream `name` on subjects `name.>`.
fn create_stream(name: &str) {
    let (rt, js) = jetstream();
    let config = async_nats::jetstream::stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    };
    rt.block_on(js.create_stream(config)).expect("creating a stream");
}

/// Publish `values` to subject `name.in`, each acknowledged.
fn publish(name: &str, values: &[Vec<u8>]) {
    let (rt, js) = jetstream();
    rt.block_on(async {
        for v in values {
            js.publish(format!("{name}.in"), v.clone().into()).await.unwrap().await.unwrap();
        }
    });
}

/// (messages in stream `name`, stream sequence acknowledged by its consumer `consumer`).
fn stream_state(name: &str, consumer: &str) -> (u64, u64) {
    let (rt, js) = jetstream();
    rt.block_on(async {
        let mut stream = js.get_stream(name).await.unwrap();
        let messages = stream.info().await.unwrap().state.messages;
        let acked = stream.consumer_info(consumer).await.map(|i| i.ack_floor.stream_sequence).unwrap_or(0);
        (messages, acked)
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct E {
    n: u64,
    t: i64,
}

fn events(from: u64, n: u64, bad: &[u64]) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| {
            if bad.contains(&i) {
                b"not json".to_vec()
            } else {
                serde_json::to_vec(&E { n: i, t: i as i64 * 10 }).unwrap()
            }
        })
        .collect()
}

#[test]
fn a_bounded_stream_is_read_whole_with_its_dead_letters_on_every_runner() {
    create_stream("BOUNDED");
    publish("BOUNDED", &events(0, 2_000, &[5, 999, 1500]));
    let runners: Vec<(&str, Box<dyn Runner>)> = vec![
        ("reference", Box::new(ReferenceRunner::default())),
        ("timely x1", Box::new(TimelyRunner::threads(1))),
        ("timely x3", Box::new(TimelyRunner::threads(3))),
    ];
    for (name, runner) in runners {
        let p = Pipeline::new();
        // A run without checkpoints acknowledges nothing: each run (on the
        // same consumer) reads the whole stream.
        let source = JetStreamSource::<E>::json(server(), "BOUNDED", "weir-bounded").event_time(|e| e.t).bounded();
        let (events, dead) = read_jetstream(&p, source).unwrap();
        let sum = events.map(|e: E| ((), e.n)).combine_per_key(Sum::new()).collect();
        let dead = dead.collect();
        let r = p.run_with(&*runner).unwrap();
        let expected: u64 = (0..2_000u64).filter(|n| ![5, 999, 1500].contains(n)).sum();
        assert_eq!(sum.values(), vec![((), expected)], "{name}");
        let mut reasons: Vec<String> = dead.values().iter().map(|d| d.reason.clone()).collect();
        reasons.sort();
        assert_eq!(reasons.len(), 3, "{name}: {reasons:?}");
        assert!(reasons[0].starts_with("stream sequence 1000: "), "{name}: {reasons:?}");
        let letters: u64 = r.metrics.all().iter().map(|(_, c)| c.dead_letters).sum();
        assert_eq!(letters, 3, "{name}");
        assert_eq!(stream_state("BOUNDED", "weir-bounded").1, 0, "{name}: acknowledged without checkpoints");
    }
}

#[test]
fn a_missing_stream_and_an_unreachable_server_are_clear_errors_before_the_run() {
    let p = Pipeline::new();
    let e = read_jetstream(&p, JetStreamSource::<E>::json(server(), "NO_SUCH_STREAM", "c")).err().unwrap();
    assert!(matches!(e, NatsError::NoStream { .. }), "{e}");
    assert!(e.to_string().contains("NO_SUCH_STREAM"), "{e}");
    let started = Instant::now();
    let e = read_jetstream(&p, JetStreamSource::<E>::json("127.0.0.1:1", "S", "c")).err().unwrap();
    assert!(matches!(e, NatsError::Connect { .. }), "{e}");
    assert!(started.elapsed() < StdDuration::from_secs(15), "{e}");
}

/// Messages are acknowledged once checkpoints covering them are committed;
/// a run that fails part way resumes from its checkpoint, counts each
/// message once and does not read again what the checkpoint covers.
#[test]
fn acknowledgements_follow_checkpoints_and_a_failed_run_resumes_from_its_own() {
    create_stream("RESUMED");
    publish("RESUMED", &events(0, 1_000, &[]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let run = move |read: Arc<AtomicU64>, crash: bool| {
        let p = Pipeline::new();
        let source = JetStreamSource::<E>::json(server(), "RESUMED", "weir-resumed")
            .event_time(|e| e.t)
            .stop_at_event_time(1 << 40);
        let (events, _) = read_jetstream(&p, source).unwrap();
        let counts = events
            .map(move |e: E| {
                read.fetch_add(1, Ordering::SeqCst);
                if crash && e.n >= 1_000 {
                    panic!("crash at message {}", e.n);
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
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while read.load(Ordering::SeqCst) < 1_000 {
        assert!(Instant::now() < deadline, "the first batch was not read");
        std::thread::sleep(StdDuration::from_millis(10));
    }
    // Checkpoints after the first batch commit, and the consumer's
    // acknowledgement floor reaches its last message.
    loop {
        let (_, acked) = stream_state("RESUMED", "weir-resumed");
        if acked == 1_000 {
            break;
        }
        assert!(acked < 1_000, "acknowledged past what was read: {acked}");
        assert!(Instant::now() < deadline, "acknowledged up to {acked} only");
        std::thread::sleep(StdDuration::from_millis(20));
    }
    // The second batch (the first run fails at its first message), then
    // one message past the stop time.
    publish("RESUMED", &events(1_000, 1_000, &[]));
    publish("RESUMED", &[serde_json::to_vec(&E { n: 0, t: 1 << 41 }).unwrap()]);
    let e = first.join().unwrap().unwrap_err();
    assert!(e.to_string().contains("crash at message"), "{e}");
    let read = Arc::new(AtomicU64::new(0));
    let counts = run(read.clone(), false).unwrap();
    let expected: Vec<(u64, u64)> = (0..10).map(|k| (k, 200)).collect();
    assert_eq!(counts, expected);
    // The second run resumed after the first batch, from its checkpoint.
    assert_eq!(read.load(Ordering::SeqCst), 1_000, "the resumed run read the wrong messages");
}

/// What a sink publishes again (a replay after recovery) is dropped by the
/// stream's duplicate window.
#[test]
fn the_sink_publishes_each_result_once_however_often_it_is_sent() {
    create_stream("OUT");
    for _ in 0..2 {
        let p = Pipeline::new();
        let rows = p.create((0..500u64).collect::<Vec<_>>());
        rows.write_jetstream(server(), "OUT.rows", |n: &u64| format!("row {n}").into_bytes());
        p.run_with(&TimelyRunner::threads(2)).unwrap();
    }
    assert_eq!(stream_state("OUT", "none").0, 500);
    // With ids of the user's: two distinct ids, two messages.
    let p = Pipeline::new();
    let rows = p.create(vec![1u64, 2]);
    rows.write_jetstream_with_ids(server(), "OUT.rows", |n: &u64| (format!("id-{n}"), b"same".to_vec()));
    p.run_with(&TimelyRunner::threads(1)).unwrap();
    assert_eq!(stream_state("OUT", "none").0, 502);
    // A subject no stream listens to is an error of the job.
    let p = Pipeline::new();
    p.create(vec![1u64]).write_jetstream(server(), "nowhere", |n: &u64| n.to_le_bytes().to_vec());
    let e = p.run_with(&TimelyRunner::threads(1)).unwrap_err();
    assert!(e.to_string().contains("nowhere"), "{e}");
}
