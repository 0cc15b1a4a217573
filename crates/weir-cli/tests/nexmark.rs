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

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use weir_nexmark::Query;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

fn shared() -> PathBuf {
    if let Some(d) = std::env::var_os("WEIR_SHARED") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared"))
        .find(|d| d.join("nexmark").is_dir())
        .expect("the shared/ folder (set WEIR_SHARED)")
}

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nexmark")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A Python that can import numpy.
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let has_numpy = |py: &Path| {
            Command::new(py).args(["-c", "import numpy"]).output().map(|o| o.status.success()).unwrap_or(false)
        };
        if let Some(p) = std::env::var_os("WEIR_NEXMARK_PYTHON") {
            let p = PathBuf::from(p);
            assert!(has_numpy(&p), "WEIR_NEXMARK_PYTHON={} cannot import numpy", p.display());
            return p;
        }
        let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nexmark-venv");
        let py = venv.join("bin/python");
        if !has_numpy(&py) {
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
            run(Command::new(&py).args(["-m", "pip", "install", "--quiet", "numpy"]));
        }
        py
    })
}

/// Generate `events` events of the reference input (a prefix of
/// `e1m.jsonl`) as one file, and as a folder of 2 shards; cached.
fn input(events: u64) -> (PathBuf, PathBuf) {
    let file = tmp().join(format!("e{events}.jsonl"));
    let shards = tmp().join(format!("e{events}-2shards"));
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let gen = shared().join("nexmark/nexmark_gen.py");
    let n = events.to_string();
    let base = ["--events", n.as_str(), "--rate", "10000", "--seed", "1"];
    if !file.exists() {
        std::fs::create_dir_all(tmp()).unwrap();
        let part = file.with_extension("inprogress");
        run(Command::new(python()).arg(&gen).args(base).arg("--out").arg(&part));
        std::fs::rename(&part, &file).unwrap();
    }
    if !shards.join("part-1.jsonl").exists() {
        run(Command::new(python()).arg(&gen).args(base).args(["--shards", "2", "--out"]).arg(&shards));
    }
    (file, shards)
}

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

#[test]
fn every_runner_equals_the_reference_runner_on_every_query() {
    let (file, shards) = input(60_000);
    let out = tmp().join("equivalence");
    let hosts = out.join("hosts.txt");
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
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<std::net::TcpListener> =
            (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let addrs: Vec<String> = ports.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
        drop(ports);
        std::fs::write(&hosts, addrs.join("\n")).unwrap();
        let children: Vec<_> = (0..2)
            .map(|i| {
                Command::new(WEIR)
                    .args(["nexmark", "--quiet", "--query", q.name(), "--workers", "1", "--processes", "2"])
                    .arg("--process-index")
                    .arg(i.to_string())
                    .arg("--hosts")
                    .arg(&hosts)
                    .arg("--input")
                    .arg(&file)
                    .arg("--out")
                    .arg(&dir)
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "{q}: a cluster process failed");
        }
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
