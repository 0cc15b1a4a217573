//! `weir nexmark` as a hostile user runs it: processes that disagree,
//! peers that never start, die or freeze, absurd arguments, input that is
//! not what it claims. Each run is bounded in time; cluster failures end
//! with exit status 3 and one `weir: error:` line naming the peer.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{finish, WEIR};

fn listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

fn hosts(dir: &Path) -> PathBuf {
    let path = dir.join("hosts");
    // Both listeners held until both ports are known: two different ports.
    let (a, b) = (listener(), listener());
    let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
    std::fs::write(&path, format!("127.0.0.1:{}\n127.0.0.1:{}\n", port(&a), port(&b))).unwrap();
    path
}

fn process(index: usize, hosts: &Path, out: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(WEIR);
    c.args(["nexmark", "--quiet", "--processes", "2", "--process-index", &index.to_string(), "--hosts"])
        .arg(hosts)
        .arg("--out")
        .arg(out)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Wait for a child, at most `secs`.
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One clear line, exit status 3, no panic or backtrace.
fn assert_cluster_error(o: &Output, what: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(e.contains("weir: error: cluster:") && e.contains(what), "{what}: {e}");
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
}

#[test]
fn cluster_processes_that_disagree_on_the_job_refuse_to_run_together() {
    let dir = tempfile::tempdir().unwrap();
    let h = hosts(dir.path());
    let a = process(0, &h, dir.path(), &["--query", "q0", "--events", "1000"]).spawn().unwrap();
    let b = process(1, &h, dir.path(), &["--query", "q5", "--events", "1000"]).spawn().unwrap();
    for o in [finish(a, 60), finish(b, 60)] {
        assert_cluster_error(&o, "runs a different job");
    }
    let a = process(0, &h, dir.path(), &["--query", "q0", "--events", "1000", "--workers", "1"]).spawn().unwrap();
    let b = process(1, &h, dir.path(), &["--query", "q0", "--events", "1000", "--workers", "2"]).spawn().unwrap();
    for o in [finish(a, 60), finish(b, 60)] {
        assert_cluster_error(&o, "workers per process");
    }
}

#[test]
fn a_peer_that_never_starts_or_cannot_be_resolved_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = hosts(dir.path());
    let started = Instant::now();
    let o = finish(
        process(1, &h, dir.path(), &["--query", "q0", "--events", "1000", "--connect-timeout-s", "2"]).spawn().unwrap(),
        30,
    );
    assert_cluster_error(&o, "process 0 (127.0.0.1:");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(o.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&o.stdout));
    let bad = dir.path().join("bad-hosts");
    std::fs::write(&bad, "no.such.host.invalid:1\n127.0.0.1:1\n").unwrap();
    let o = finish(process(1, &bad, dir.path(), &["--query", "q0", "--events", "1000"]).spawn().unwrap(), 30);
    assert_cluster_error(&o, "'no.such.host.invalid:1', cannot be resolved");
}

#[test]
fn a_killed_peer_ends_the_survivor_at_once_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = hosts(dir.path());
    let args = ["--query", "q5", "--events", "300000000", "--workers", "1"];
    let survivor = process(0, &h, dir.path(), &args).spawn().unwrap();
    let mut victim = process(1, &h, dir.path(), &args).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    victim.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    let o = finish(survivor, 60);
    assert_cluster_error(&o, "lost process 1");
    // At once: well before the 30 s peer timeout (20 s leaves room for a
    // loaded machine).
    assert!(killed.elapsed() < Duration::from_secs(20), "ended {:?} after the kill", killed.elapsed());
    let _ = victim.wait();
}

#[test]
fn a_frozen_peer_is_taken_for_lost_after_the_peer_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let h = hosts(dir.path());
    let args = ["--query", "q5", "--events", "300000000", "--workers", "1", "--peer-timeout-s", "3"];
    let survivor = process(0, &h, dir.path(), &args).spawn().unwrap();
    let mut frozen = process(1, &h, dir.path(), &args).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(Command::new("kill").args(["-STOP", &frozen.id().to_string()]).status().unwrap().success());
    let o = finish(survivor, 60);
    assert_cluster_error(&o, "lost process 1");
    assert!(stderr(&o).contains("nothing received for"), "{}", stderr(&o));
    frozen.kill().unwrap();
    let _ = frozen.wait();
}

#[test]
fn workers_beyond_the_limit_are_refused_before_anything_runs() {
    let o =
        Command::new(WEIR).args(["nexmark", "--query", "q0", "--events", "10", "--workers", "10000"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--workers 10000 is more than 256"), "{}", stderr(&o));
}

fn bid(auction: u64, price: &str, date_time: &str) -> String {
    format!(
        r#"{{"event_type":2,"person":null,"auction":null,"bid":{{"auction":{auction},"bidder":7,"price":{price},"channel":"c","url":"u","dateTime":{date_time},"extra":"e"}}}}"#
    )
}

/// Values a query cannot compute with are dead letters with a reason and
/// where the line is; the run succeeds with exactly the valid rows.
#[test]
fn unusable_values_are_dead_letters_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bids.jsonl");
    let auction = r#"{"event_type":1,"person":null,"auction":{"id":1,"itemName":"a","description":"d","initialBid":1,"reserve":2,"dateTime":1000,"expires":9223372036854775807,"seller":1,"category":1,"extra":"x"},"bid":null}"#;
    let lines = [
        bid(1, "100", "1000"),
        bid(1, "18446744073709551615", "1001"),
        auction.to_string(),
        bid(99, "5", "9223371950454776"),
        bid(1, "200", "32503680000000"),
        bid(1, "300", "1002"),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out");
    let o = Command::new(WEIR)
        .args(["nexmark", "--quiet", "--query", "q1", "--workers", "1", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = std::fs::read_to_string(out.join("q1.csv")).unwrap();
    assert_eq!(rows.lines().count(), 2, "{rows}");
    let dead = std::fs::read_to_string(out.join("q1.dead-letters.txt")).unwrap();
    for reason in [
        "line 2 (byte",
        "price 18446744073709551615 is larger than the largest price",
        "expires 9223372036854775807 is outside the usable range",
        "dateTime 9223371950454776 is outside the usable range",
        "ahead of the latest event of its split",
    ] {
        assert!(dead.contains(reason), "{reason}: {dead}");
    }
}

#[test]
fn an_input_of_nothing_but_garbage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("garbage.jsonl");
    std::fs::write(&input, "not json\n{\"also\": \"not an event\"}\n").unwrap();
    let o = Command::new(WEIR)
        .args(["nexmark", "--quiet", "--query", "q0", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("none of the 2 lines"), "{}", stderr(&o));
}

fn rows(out: &Path, q: &str) -> (u64, String) {
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{q}.summary.json"))).unwrap()).unwrap();
    assert_eq!(s["complete"], serde_json::json!(true));
    (s["rows"].as_u64().unwrap(), s["sha256"].as_str().unwrap().to_string())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A part left by an earlier cluster run is never merged into this run's
/// result: parts carry the run id the processes agreed on.
#[test]
fn a_part_left_by_an_earlier_cluster_run_is_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let (single, cluster) = (dir.path().join("single"), dir.path().join("cluster"));
    let q = ["--query", "q0", "--events", "20000"];
    let o = Command::new(WEIR).args(["nexmark", "--quiet"]).args(q).arg("--out").arg(&single).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::create_dir_all(&cluster).unwrap();
    std::fs::write(cluster.join("q0.part-1-of-2.csv"), "1,2,3,4,stale\n").unwrap();
    std::fs::write(cluster.join("q0.part-1-of-2.0123456789abcdef.csv"), "1,2,3,4,stale\n").unwrap();
    let h = hosts(dir.path());
    let a = process(0, &h, &cluster, &q).spawn().unwrap();
    let b = process(1, &h, &cluster, &q).spawn().unwrap();
    let (oa, ob) = (finish(a, 120), finish(b, 120));
    assert!(oa.status.success() && ob.status.success(), "{} {}", stderr(&oa), stderr(&ob));
    assert_eq!(rows(&cluster, "q0"), rows(&single, "q0"));
    assert_eq!(names(&cluster), vec!["q0.csv", "q0.summary.json"], "nothing stale or partial is left");
}

/// Every process's dead letters are in the one file, and the count says so.
#[test]
fn dead_letters_of_every_process_are_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("shards");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.jsonl"), format!("{}\nbad a1\nbad a2\nbad a3\n", bid(1, "100", "1000"))).unwrap();
    std::fs::write(input.join("b.jsonl"), format!("bad b1\n{}\nbad b2\n", bid(2, "100", "1000"))).unwrap();
    let out = dir.path().join("out");
    let h = hosts(dir.path());
    let args = ["--query", "q0", "--workers", "1", "--input", input.to_str().unwrap()];
    let a = process(0, &h, &out, &args).spawn().unwrap();
    let b = process(1, &h, &out, &args).spawn().unwrap();
    let (oa, ob) = (finish(a, 120), finish(b, 120));
    assert!(oa.status.success() && ob.status.success(), "{} {}", stderr(&oa), stderr(&ob));
    let dead = std::fs::read_to_string(out.join("q0.dead-letters.txt")).unwrap();
    assert_eq!(dead.lines().count(), 5, "{dead}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("q0.summary.json")).unwrap()).unwrap();
    assert_eq!(s["dead_letters"], serde_json::json!(5));
    assert_eq!(rows(&out, "q0").0, 2);
}

/// What an earlier (killed) run left is removed before a new run; the new
/// summary says the run completed, with its id and times.
#[test]
fn stale_outputs_are_removed_before_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join(".q0.rows-0")).unwrap();
    for stale in ["q0.csv", "q0.summary.json", "q0.dead-letters.txt", "q0.inprogress", "q1.csv"] {
        std::fs::write(out.join(stale), "stale\n").unwrap();
    }
    let o = Command::new(WEIR)
        .args(["nexmark", "--quiet", "--query", "q0", "--events", "5000", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(&out), vec!["q0.csv", "q0.summary.json", "q1.csv"], "another query's output stays");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("q0.summary.json")).unwrap()).unwrap();
    assert!(s["run_id"].is_string() && s["finished_at_unix_ms"].as_u64() >= s["started_at_unix_ms"].as_u64());
}

#[test]
fn an_output_folder_inside_the_input_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jsonl"), bid(1, "1", "1") + "\n").unwrap();
    let o = Command::new(WEIR)
        .args(["nexmark", "--quiet", "--query", "q0", "--input"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("would read its own outputs"), "{}", stderr(&o));
}

/// A text field with a line break, commas and quotes stays one field of
/// one row (RFC 4180 quoting); ordinary rows are unchanged.
#[test]
fn csv_fields_with_line_breaks_and_commas_are_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bids.jsonl");
    let tricky = bid(2, "100", "1000").replace(r#""extra":"e""#, r#""extra":"a\nb,c \"q\"""#);
    std::fs::write(&input, format!("{}\n{tricky}\n", bid(1, "100", "1000"))).unwrap();
    let out = dir.path().join("out");
    let o = Command::new(WEIR)
        .args(["nexmark", "--quiet", "--query", "q0", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rows(&out, "q0").0, 2);
    let csv = std::fs::read_to_string(out.join("q0.csv")).unwrap();
    assert_eq!(csv, "1,7,100,1000,e\n2,7,100,1000,\"a\nb,c \"\"q\"\"\"\n");
}

/// `weir bench --baseline` measures two builds in one sitting and reports
/// both medians and their ratio; a missing baseline is a clear error.
#[test]
fn bench_against_a_baseline_reports_both_columns() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.md");
    let o = Command::new(WEIR)
        .args(["bench", "--events", "20000", "--queries", "q1", "--workers", "1", "--reps", "2", "--baseline", WEIR])
        .arg("--report")
        .arg(&report)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("| this / baseline |"), "{text}");
    let q1 = text.lines().find(|l| l.starts_with("| q1 | 1 |")).expect("a q1 row");
    assert_eq!(q1.split('|').count(), 10, "{q1}");
    let missing =
        Command::new(WEIR).args(["bench", "--events", "1000", "--baseline", "/no/such/weir"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("--baseline /no/such/weir: no such executable"), "{}", stderr(&missing));
}

/// `weir bench-pipeline` runs the users' pipeline and the hand-written
/// loop on a generated log; each Weir run must compute the loop's result
/// (the command fails otherwise), and the report has a row per program.
#[test]
fn bench_pipeline_compares_weir_with_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let (log, report) = (dir.path().join("log.jsonl"), dir.path().join("report.md"));
    let o = Command::new(WEIR)
        .args(["bench-pipeline", "--lines", "5000", "--reps", "1", "--workers", "1,2", "--input"])
        .arg(&log)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 5000);
    let text = std::fs::read_to_string(&report).unwrap();
    for row in ["| hand-written loop (1 thread) |", "| Weir, 1 worker |", "| Weir, 2 workers |"] {
        assert!(text.contains(row), "{row} in {text}");
    }
    // Only a missing log is generated: anything else there is refused.
    let o = Command::new(WEIR).args(["bench-pipeline", "--input"]).arg(dir.path()).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    // An empty log has nothing to measure.
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let o = Command::new(WEIR).args(["bench-pipeline", "--input"]).arg(&empty).output().unwrap();
    assert!(stderr(&o).contains("has no lines"), "{}", stderr(&o));
    // A log line the pipeline cannot read is an error, not a smaller result.
    std::fs::write(&log, "{\"ts\": 1}\n").unwrap();
    let o = Command::new(WEIR).args(["bench-pipeline", "--reps", "1", "--input"]).arg(&log).output().unwrap();
    assert!(!o.status.success());
}

/// `weir latency` runs the generator live: events are read no earlier than
/// their time, so the run lasts as long as its input, and no pane comes
/// out before its window's end (more than one event interval early would
/// mean the watermark ran ahead of the input). A rate the generator cannot
/// keep and a query without windows are refused with a message.
#[test]
fn latency_paces_the_input_and_times_panes_from_their_window_end() {
    let start = Instant::now();
    let o = Command::new(WEIR)
        .args(["latency", "--query", "q5", "--rate", "2000", "--seconds", "5", "--workers", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(start.elapsed() >= Duration::from_millis(4_500), "5 s of live input took {:?}", start.elapsed());
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let figure = |name: &str| -> i64 {
        let rest = &text[text.find(name).unwrap_or_else(|| panic!("{name} in {text}")) + name.len()..];
        rest.split([',', ';', ' ']).next().unwrap().parse().unwrap()
    };
    assert!(text.contains("q5 at 2000 events/s, 2 workers: "), "{text}");
    let panes: i64 = text.split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(panes >= 1, "{text}");
    assert!(figure("min ") >= -1, "a pane came out before its window ended: {text}");
    assert!(figure("p50 ") <= figure("p99 ") && figure("p99 ") <= figure("max "), "{text}");

    let o = Command::new(WEIR).args(["latency", "--query", "q5", "--rate", "1000000000"]).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot be kept"), "{}", stderr(&o));

    let o = Command::new(WEIR).args(["latency", "--query", "q3", "--rate", "1000", "--seconds", "1"]).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("produced no pane of a window"), "{}", stderr(&o));
}

/// `weir bench --flink` needs Flink's runner script and an input file.
#[test]
fn bench_with_flink_needs_its_runner() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.jsonl");
    std::fs::write(&input, "").unwrap();
    let o = Command::new(WEIR)
        .args(["bench", "--flink", "python3", "--flink-runner", "/no/such/run.py", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--flink-runner /no/such/run.py: no such file"), "{}", stderr(&o));
    // Flink reads a file: the generator is no input for it.
    let o = Command::new(WEIR).args(["bench", "--flink", "python3", "--events", "100"]).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--flink needs --input FILE"), "{}", stderr(&o));
}

/// Key groups decide only where a key is processed, never the result; too
/// few for the workers is a clear error before anything runs.
#[test]
fn key_groups_change_where_keys_go_not_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let sha = |groups: Option<&str>, out: &str| {
        let mut c = Command::new(WEIR);
        c.args(["nexmark", "--quiet", "--query", "q5", "--events", "30000", "--workers", "2", "--out"])
            .arg(dir.path().join(out));
        if let Some(g) = groups {
            c.args(["--max-key-groups", g]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let summary = std::fs::read_to_string(dir.path().join(out).join("q5.summary.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
        v["sha256"].as_str().unwrap().to_string()
    };
    let default = sha(None, "default");
    assert_eq!(sha(Some("2"), "two"), default);
    assert_eq!(sha(Some("4099"), "many"), default);
    let o = Command::new(WEIR)
        .args(["nexmark", "--query", "q5", "--events", "100", "--workers", "3", "--max-key-groups", "2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("3 workers but only 2 key groups"), "{}", stderr(&o));
}
