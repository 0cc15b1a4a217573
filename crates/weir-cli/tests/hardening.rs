//! `weir nexmark` as a hostile user runs it: processes that disagree,
//! peers that never start, die or freeze, absurd arguments, input that is
//! not what it claims. Each run is bounded in time; cluster failures end
//! with exit status 3 and one `weir: error:` line naming the peer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn hosts(dir: &Path) -> PathBuf {
    let path = dir.join("hosts");
    std::fs::write(&path, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
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
fn wait(mut child: Child, secs: u64) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir did not end within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

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
    for o in [wait(a, 60), wait(b, 60)] {
        assert_cluster_error(&o, "runs a different job");
    }
    let a = process(0, &h, dir.path(), &["--query", "q0", "--events", "1000", "--workers", "1"]).spawn().unwrap();
    let b = process(1, &h, dir.path(), &["--query", "q0", "--events", "1000", "--workers", "2"]).spawn().unwrap();
    for o in [wait(a, 60), wait(b, 60)] {
        assert_cluster_error(&o, "workers per process");
    }
}

#[test]
fn a_peer_that_never_starts_or_cannot_be_resolved_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = hosts(dir.path());
    let started = Instant::now();
    let o = wait(
        process(1, &h, dir.path(), &["--query", "q0", "--events", "1000", "--connect-timeout-s", "2"]).spawn().unwrap(),
        30,
    );
    assert_cluster_error(&o, "process 0 (127.0.0.1:");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(o.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&o.stdout));
    let bad = dir.path().join("bad-hosts");
    std::fs::write(&bad, "no.such.host.invalid:1\n127.0.0.1:1\n").unwrap();
    let o = wait(process(1, &bad, dir.path(), &["--query", "q0", "--events", "1000"]).spawn().unwrap(), 30);
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
    let o = wait(survivor, 60);
    assert_cluster_error(&o, "lost process 1");
    assert!(killed.elapsed() < Duration::from_secs(10), "ended {:?} after the kill", killed.elapsed());
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
    let o = wait(survivor, 60);
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
