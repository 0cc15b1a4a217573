//! Helpers shared by the cross-runner tests.

#![allow(dead_code, unused_imports)] // each test file uses part of this module

use weir::prelude::*;

/// Makes a fresh runner.
pub type Run = weir::testing::RunnerFactory;

/// The runners every pipeline test runs on: reference, Timely x1, Timely x4.
pub use weir::testing::runners;

/// A timestamp in milliseconds.
pub fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

const CLUSTER_CHILD: &str = "WEIR_TEST_CLUSTER_CHILD";
const CLUSTER_CALL: &str = "WEIR_TEST_CLUSTER_CALL";
const CLUSTER_HOSTS: &str = "WEIR_TEST_CLUSTER_HOSTS";
const CLUSTER_OUT: &str = "WEIR_TEST_CLUSTER_OUT";

thread_local! {
    /// Calls of `on_two_processes` so far in this test (one test per thread).
    static CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs the pipeline `build` makes on a two-process Timely cluster (one
/// worker each, on 127.0.0.1) and returns what both processes collected;
/// `None` if the pipeline cannot run on a cluster (a TestStream that moves
/// processing time needs a single process).
///
/// The processes are this test binary, re-run for the current test only:
/// in them, the test's earlier calls run on the reference runner and this
/// call runs on the cluster, writes what it collected, and ends the process.
pub fn on_two_processes<T: Data>(build: &dyn Fn(&Pipeline) -> PCollection<T>) -> Option<Vec<WindowedValue<T>>> {
    let call = CALLS.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    if let Ok(index) = std::env::var(CLUSTER_CHILD) {
        let target: usize = std::env::var(CLUSTER_CALL).unwrap().parse().unwrap();
        let p = Pipeline::new();
        let out = build(&p).collect();
        if call < target {
            p.run_with(&ReferenceRunner::default()).unwrap();
            return Some(out.windowed());
        }
        let index: usize = index.parse().unwrap();
        let hosts: Vec<String> = std::env::var(CLUSTER_HOSTS).unwrap().split(',').map(String::from).collect();
        let path = std::path::PathBuf::from(std::env::var(CLUSTER_OUT).unwrap()).join(format!("out-{index}"));
        let bytes = match p.run_with(&TimelyRunner::cluster(1, index, hosts)) {
            Ok(_) => bincode::serialize(&Some(out.windowed())).unwrap(),
            Err(e) if e.to_string().contains("needs a single process") => {
                bincode::serialize(&None::<Vec<WindowedValue<T>>>).unwrap()
            }
            Err(e) => panic!("cluster process {index}: {e}"),
        };
        std::fs::write(&path, bytes).unwrap();
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    run_children(2, 120, call, dir.path(), &[]);
    let mut all = Vec::new();
    for i in 0..2 {
        let bytes = std::fs::read(dir.path().join(format!("out-{i}"))).unwrap();
        match bincode::deserialize::<Option<Vec<WindowedValue<T>>>>(&bytes).unwrap() {
            Some(v) => all.extend(v),
            None => return None,
        }
    }
    Some(all)
}

/// Start `n` processes of this test binary, re-run for the current test
/// as cluster processes (with `CLUSTER_CHILD`, `CLUSTER_CALL`,
/// `CLUSTER_HOSTS` and `CLUSTER_OUT` set), and wait for all to end within
/// `secs`. Returns their exit statuses.
fn run_children(
    n: usize,
    secs: u64,
    call: usize,
    out: &std::path::Path,
    env: &[(&str, String)],
) -> Vec<std::process::ExitStatus> {
    let test = std::thread::current().name().expect("a test thread is named after its test").to_string();
    let hosts: Vec<String> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut children: Vec<std::process::Child> = (0..n)
        .map(|i| {
            let mut c = std::process::Command::new(std::env::current_exe().unwrap());
            c.args(["--exact", &test, "--test-threads", "1", "--nocapture"])
                .env(CLUSTER_CHILD, i.to_string())
                .env(CLUSTER_CALL, call.to_string())
                .env(CLUSTER_HOSTS, hosts.join(","))
                .env(CLUSTER_OUT, out)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            for (k, v) in env {
                c.env(k, v);
            }
            c.spawn().unwrap()
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut statuses = Vec::new();
    for (i, child) in children.iter_mut().enumerate() {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                statuses.push(status);
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{test}: cluster process {i} did not finish within {secs} s");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    statuses
}

/// What one process of a cluster run ended with.
pub type Outcome<T> = Result<Vec<WindowedValue<T>>, String>;

/// Run the pipeline `build` makes on a two-process Timely cluster on
/// 127.0.0.1 (`runner` makes each process's runner from its index and the
/// host list) and return each process's outcome: what it collected, or the
/// error its run returned. Every process must end within `secs`.
pub fn two_process_outcomes<T: Data>(
    secs: u64,
    runner: &dyn Fn(usize, Vec<String>) -> TimelyRunner,
    build: &dyn Fn(&Pipeline, usize) -> PCollection<T>,
) -> Vec<Outcome<T>> {
    if let Ok(index) = std::env::var(CLUSTER_CHILD) {
        let index: usize = index.parse().unwrap();
        let hosts: Vec<String> = std::env::var(CLUSTER_HOSTS).unwrap().split(',').map(String::from).collect();
        let p = Pipeline::new();
        let out = build(&p, index).collect();
        let outcome: Outcome<T> = p.run_with(&runner(index, hosts)).map(|_| out.windowed()).map_err(|e| e.to_string());
        let path = std::path::PathBuf::from(std::env::var(CLUSTER_OUT).unwrap()).join(format!("out-{index}"));
        std::fs::write(&path, bincode::serialize(&outcome).unwrap()).unwrap();
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    run_children(2, secs, 0, dir.path(), &[]);
    (0..2)
        .map(|i| {
            let bytes =
                std::fs::read(dir.path().join(format!("out-{i}"))).unwrap_or_else(|e| panic!("process {i}: {e}"));
            bincode::deserialize::<Outcome<T>>(&bytes).unwrap()
        })
        .collect()
}
