//! NEXMark through the `weir` command, as a user runs it.
//!
//! The input is made by the shared generator (`shared/nexmark/nexmark_gen.py`,
//! Python with numpy; the test makes a virtual environment under `target/`
//! and installs numpy there when no Python with numpy is given in
//! `WEIR_NEXMARK_PYTHON`).
//!
//! - On a 60,000-event prefix of the reference input, every deterministic
//!   query gives the same rows (sha256) on the Timely runner with 1 and 2
//!   workers, on a 2-shard copy of the input, and on two processes, as on
//!   the single-threaded reference runner, which computes the expectation.
//! - On the full reference input (`e1m.jsonl`), `weir verify` checks every
//!   query that has a reference result against the rows and sha256 that
//!   Flink, Beam and Bytewax computed (`shared/nexmark/README.md`), with 1
//!   and 2 workers and two processes.
//! - Bad input lines become dead letters with a count; bad arguments are
//!   clear errors.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{finish, input, kafka_topic, run, shared, tmp, WEIR};
use weir_nexmark::Query;

fn summary(out: &Path, q: Query) -> (u64, String) {
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{q}.summary.json"))).unwrap()).unwrap();
    (s["rows"].as_u64().unwrap(), s["sha256"].as_str().unwrap().to_string())
}

fn nexmark(q: Query, input: &Path, out: &Path, extra: &[&str]) -> (u64, String) {
    run(Command::new(WEIR)
        .args(["nexmark", "--quiet", "--query", q.name(), "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra));
    summary(out, q)
}

/// Run `q` on two processes of one worker each on 127.0.0.1, reading
/// `input` (a path or a kafka:// address), into `out`.
fn two_processes(q: Query, input: &std::ffi::OsStr, out: &Path) {
    let ports: Vec<std::net::TcpListener> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<String> = ports.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    drop(ports);
    std::fs::create_dir_all(out).unwrap();
    let hosts = out.with_extension("hosts.txt");
    std::fs::write(&hosts, addrs.join("\n")).unwrap();
    let children: Vec<_> = (0..2)
        .map(|i| {
            Command::new(WEIR)
                .args(["nexmark", "--quiet", "--query", q.name(), "--workers", "1", "--processes", "2"])
                .args(["--process-index", &i.to_string(), "--hosts"])
                .arg(&hosts)
                .arg("--input")
                .arg(input)
                .arg("--out")
                .arg(out)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "{q}: a cluster process failed");
    }
}

#[test]
fn every_runner_equals_the_reference_runner_on_every_query() {
    let (file, shards) = input(60_000);
    let out = tmp().join("equivalence");
    for q in Query::ALL.into_iter().filter(|q| q.is_deterministic()) {
        let expected = nexmark(q, &file, &out.join("reference"), &["--reference-runner"]);
        if q != Query::Parse {
            assert!(expected.0 > 0, "{q} gives no rows on the test input: the comparison would be empty");
        }
        for (name, input, extra) in [
            ("1 worker", &file, vec!["--workers", "1"]),
            ("2 workers", &file, vec!["--workers", "2"]),
            ("2 shards, 2 workers", &shards, vec!["--workers", "2"]),
        ] {
            let got = nexmark(q, input, &out.join(name.replace([' ', ','], "_")), &extra);
            assert_eq!(got, expected, "{q} with {name} differs from the reference runner");
        }
        // Two processes of one worker each, on 127.0.0.1.
        let dir = out.join("2_processes");
        two_processes(q, file.as_os_str(), &dir);
        assert_eq!(summary(&dir, q), expected, "{q} on two processes differs from the reference runner");
    }
}

#[test]
fn reference_input_gives_the_reference_results() {
    let (file, _) = input(1_000_000);
    let out = run(Command::new(WEIR)
        .args(["verify", "--workers", "1,2", "--processes", "2", "--input"])
        .arg(&file)
        .arg("--shared")
        .arg(shared())
        .arg("--out")
        .arg(tmp().join("verify")));
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = Query::REFERENCE.len() * 3;
    assert!(text.contains(&format!("{expected} passed, 0 failed")), "{text}");
}

/// The rows and sha256 that Flink, Beam and Bytewax computed for `q` on
/// the reference input (the table of `shared/nexmark/README.md`).
fn reference(q: Query) -> (u64, String) {
    let readme = std::fs::read_to_string(shared().join("nexmark/README.md")).unwrap();
    let row = format!("| {} |", q.name());
    let line = readme.lines().find(|l| l.starts_with(&row)).expect("the query's reference row");
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    (cells[2].parse().unwrap(), cells[3].to_string())
}

/// `weir nexmark --input kafka://…` on a 4-partition topic loaded with the
/// reference input: the reference results with 1 and 2 workers and on two
/// processes (each reading its own partitions).
#[test]
fn q5_and_q7_from_a_kafka_topic_give_the_reference_results() {
    let url = kafka_topic(1_000_000);
    // Loading into the topic with another partition count is refused.
    let (file, _) = input(60_000);
    let o = Command::new(WEIR).args(["kafka-load", "--partitions", "2"]).arg(&file).arg(&url).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("exists with 4 partitions, not 2"), "{e}");
    for q in [Query::Q5, Query::Q7] {
        let expected = reference(q);
        assert!(expected.0 > 0 && expected.1.len() == 64, "{q}: {expected:?}");
        for workers in ["1", "2"] {
            let out = tmp().join(format!("kafka-{q}-{workers}-workers"));
            run(Command::new(WEIR)
                .args(["nexmark", "--quiet", "--query", q.name(), "--workers", workers, "--input", &url, "--out"])
                .arg(&out));
            assert_eq!(summary(&out, q), expected, "{q} from Kafka with {workers} workers");
        }
        let out = tmp().join(format!("kafka-{q}-2-processes"));
        two_processes(q, url.as_ref(), &out);
        assert_eq!(summary(&out, q), expected, "{q} from Kafka on two processes");
    }
    // q7 from Kafka to Kafka: the rows a consumer reads are the result's.
    // The rows go to a broker of their own on SQLite: the shared test
    // broker's memory engine (tansu 0.6.0) now and then loses a record when
    // two idempotent producers (two workers) write one partition at once.
    let db = tmp().join("q7-rows-broker");
    let _ = std::fs::remove_dir_all(&db);
    std::fs::create_dir_all(&db).unwrap();
    let own = weir_kafka::testing::OwnBroker::start(&db.join("kafka.db"));
    let broker = &own.address();
    weir_kafka::admin::create_topic(broker, "q7-rows", 2).unwrap();
    let out = tmp().join("kafka-q7-to-kafka");
    let to = format!("kafka://{broker}/q7-rows");
    run(Command::new(WEIR)
        .args(["nexmark", "--quiet", "--query", "q7", "--input", &url, "--output", &to, "--out"])
        .arg(&out));
    assert_eq!(summary(&out, Query::Q7), reference(Query::Q7));
    let (rows, _) = reference(Query::Q7);
    let records = weir_kafka::testing::read_records(broker, "q7-rows", rows as usize + 1, Duration::from_secs(20));
    let mut got: Vec<u8> = Vec::new();
    let mut lines: Vec<Vec<u8>> = records.iter().map(|(_, v)| v.clone()).collect();
    lines.sort();
    for l in lines {
        got.extend_from_slice(&l);
        got.push(b'\n');
    }
    assert_eq!(records.len() as u64, rows, "every row once, no more");
    assert!(records.iter().all(|(k, v)| k.as_deref() == Some(v.as_slice())), "keyed by the row");
    assert_eq!(got, std::fs::read(out.join("q7.csv")).unwrap(), "the topic holds the result file's rows");
}

/// `weir latency --via kafka://…`: the generator's events go live through
/// a new topic (each produced when the clock reaches its time, then one
/// record past the end per partition, where the source stops) and no pane
/// comes out before its window's end. A topic that exists is refused.
#[test]
fn latency_through_a_kafka_topic_produces_live_and_times_panes() {
    let broker = weir_kafka::testing::broker();
    let via = format!("kafka://{broker}/latency-live");
    let args = ["latency", "--query", "q5", "--rate", "2000", "--seconds", "8", "--workers", "2", "--via", &via];
    let start = std::time::Instant::now();
    let live = Command::new(WEIR)
        .args(args)
        .args(["--fetch-wait-ms", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // If a record were lost the source would wait for it: fail instead.
    let o = finish(live, 180);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(start.elapsed() >= Duration::from_secs(7), "8 s of live input took {:?}", start.elapsed());
    assert!(err.contains("16004 records produced"), "{err}");
    assert!(out.contains("q5 at 2000 events/s, 2 workers: "), "{out}");
    let panes: u64 = out.split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(panes >= 1, "{out}");
    let min: i64 = out.split("min ").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    assert!(min >= -1, "a pane came out before its window ended: {out}");
    let o = Command::new(WEIR).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("exists"), "{err}");
}

#[test]
fn bad_lines_are_dead_letters_and_the_rest_is_processed() {
    let (file, _) = input(60_000);
    let dir = tmp().join("dead");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<&str> = text.lines().take(5_000).collect();
    let good = lines.len() as u64;
    lines.insert(10, "not json");
    lines.insert(20, r#"{"event_type":2,"person":null,"auction":null,"bid":null}"#);
    lines.insert(30, r#"{"event_type":0,"person":{"id":1},"auction":null,"bid":null}"#);
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let out = dir.join("out");
    let o = run(Command::new(WEIR)
        .args(["nexmark", "--query", "q0", "--workers", "2", "--input"])
        .arg(&bad)
        .arg("--out")
        .arg(&out));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("q0.summary.json")).unwrap()).unwrap();
    assert_eq!(s["dead_letters"].as_u64(), Some(3));
    assert_eq!(s["events"].as_u64(), Some(good));
    let listed = std::fs::read_to_string(out.join("q0.dead-letters.txt")).unwrap();
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains("not json") && listed.contains("event_type 2 with person null, auction null, bid null"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("3 input lines were not NEXMark events"));
}

#[test]
fn bad_arguments_are_clear_errors() {
    let cases: [(&[&str], &str); 5] = [
        (&["nexmark", "--query", "q6", "--events", "10"], "unknown query 'q6'"),
        (&["nexmark", "--query", "q0"], "--input FILE_OR_FOLDER, or --events N"),
        (&["nexmark", "--query", "q0", "--input", "/nonexistent/weir.jsonl"], "no input files match"),
        (&["nexmark", "--query", "q0", "--events", "10", "--processes", "2"], "needs --hosts"),
        (&["nexmark", "--query", "q0", "--events", "10", "--workers", "0"], "--workers must be at least 1"),
    ];
    for (args, message) in cases {
        let o = Command::new(WEIR).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

#[test]
fn generator_runs_and_counts_every_event() {
    let out = tmp().join("generated");
    run(Command::new(WEIR)
        .args(["nexmark", "--query", "q5", "--events", "200000", "--workers", "2", "--out"])
        .arg(&out));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("q5.summary.json")).unwrap()).unwrap();
    assert_eq!(s["events"].as_u64(), Some(200_000));
    assert!(s["rows"].as_u64().unwrap() > 0);
    // The same generated input gives the same result on the reference runner.
    let reference = tmp().join("generated-reference");
    run(Command::new(WEIR)
        .args(["nexmark", "--query", "q5", "--events", "200000", "--reference-runner", "--out"])
        .arg(&reference));
    assert_eq!(summary(&out, Query::Q5), summary(&reference, Query::Q5));
}
