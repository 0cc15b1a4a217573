//! What several test files share: the reference input (made by the shared
//! generator) and a Kafka topic holding it.

#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const WEIR: &str = env!("CARGO_BIN_EXE_weir");

pub fn shared() -> PathBuf {
    if let Some(d) = std::env::var_os("WEIR_SHARED") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared"))
        .find(|d| d.join("nexmark").is_dir())
        .expect("the shared/ folder (set WEIR_SHARED)")
}

pub fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nexmark")
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The output of `child` once it ends, or a panic with its stderr if it
/// has not ended within `secs` (so that a hang fails the test instead of
/// CI). `WEIR_DEBUG_HANG=1` writes its threads' stacks to /tmp/hang-bt.txt.
pub fn finish(mut child: Child, secs: u64) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            if std::env::var_os("WEIR_DEBUG_HANG").is_some() {
                let _ = Command::new("gdb")
                    .args(["-batch", "-ex", "thread apply all bt", "-p", &child.id().to_string()])
                    .stdout(std::fs::File::create("/tmp/hang-bt.txt").unwrap())
                    .status();
            }
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!("weir did not end within {secs} s; its stderr: {}", String::from_utf8_lossy(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A Python that can import numpy.
pub fn python() -> &'static Path {
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
pub fn input(events: u64) -> (PathBuf, PathBuf) {
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

/// A 4-partition topic on the test broker (tansu, started on first use)
/// holding the first `events` events of the reference input, line i in
/// partition i % 4; loaded once per test process. Its address,
/// `kafka://HOST:PORT/TOPIC`.
pub fn kafka_topic(events: u64) -> String {
    static LOADED: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
    let (file, _) = input(events);
    let url = format!("kafka://{}/e{events}", weir_kafka::testing::broker());
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if !loaded.contains(&events) {
        // One record per batch: the test broker counts batches, not
        // records, when asked where a partition ends.
        run(Command::new(WEIR)
            .args(["kafka-load", "--partitions", "4", "--one-record-per-batch"])
            .arg(&file)
            .arg(&url));
        loaded.push(events);
    }
    url
}
