//! The same pipeline on two processes (one worker each, over TCP on
//! 127.0.0.1) gives the same results as on one process. The test re-runs
//! its own binary as the two cluster processes; each writes what it
//! collected, and the parent compares their union with a single-process run.
//! Stateful DoFns are included: their state and timers are partitioned over
//! the processes, and none may be left at the end on either process.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use weir::prelude::*;

const CHILD: &str = "WEIR_TEST_CLUSTER_PROCESS";
const ADDRS: &str = "WEIR_TEST_CLUSTER_ADDRS";
const OUT: &str = "WEIR_TEST_CLUSTER_OUT";

#[path = "../examples/conversion_attribution.rs"]
mod conversion_attribution;
#[path = "../examples/dedup.rs"]
mod dedup;

/// What the pipeline collects.
struct Outputs {
    sums: Collected<(u64, u64)>,
    grouped: Collected<(String, Vec<i64>)>,
    deduped: Collected<String>,
    attributed: Collected<String>,
    counts: Collected<(u64, u64)>,
}

/// Counts per key and window with a value cell, emitted at window expiration.
#[derive(Clone)]
struct CountAtExpiry;
const N: ValueState<u64> = ValueState::new("n");

impl StatefulDoFn for CountAtExpiry {
    type Key = u64;
    type Value = u64;
    type Out = (u64, u64);
    fn process(&mut self, cx: &mut StateContext<'_, u64, (u64, u64)>, _v: u64) {
        let n = N.read(cx).unwrap_or(0);
        N.write(cx, n + 1);
    }
    fn on_window_expiration(&mut self, cx: &mut StateContext<'_, u64, (u64, u64)>) {
        let (k, n) = (*cx.key(), N.read(cx).unwrap_or(0));
        cx.output((k, n));
    }
}

/// The two stateful transforms.
const STATEFUL: [&str; 3] = ["StatefulParDo", "StatefulParDo#2", "StatefulParDo#3"];

/// Exercises cross-process exchange: a keyed combine and a stateful count
/// over data created on both processes, a TestStream (played by process 0)
/// grouped by key with early, on-time and late panes, and the `dedup`
/// (state and an event-time TTL timer) and `conversion_attribution` (map,
/// set and value state, an event-time timer in the global window) examples.
/// (`batched_requests` moves processing time with a TestStream, which needs
/// a single process.)
fn build(p: &Pipeline) -> Outputs {
    let created = p
        .create_timestamped((0..5000u64).map(|i| ((i % 13, i), Timestamp::from_millis(i as i64))))
        .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(1000)).unwrap()));
    let sums = created.combine_per_key(Sum::new()).collect();
    let counts = created.par_do_stateful(CountAtExpiry).collect();
    let deduped = dedup::build(p).collect();
    let attributed = conversion_attribution::build(p).collect();
    let e = |k: &str, v: i64| ((k.to_string(), v), Timestamp::from_millis(v));
    let stream = TestStream::new()
        .add_elements([e("a", 1), e("b", 2), e("c", 3)])
        .add_elements([e("a", 5)])
        .advance_watermark_to(Timestamp::from_millis(10))
        .add_elements([e("a", 7), e("b", 12)])
        .advance_watermark_to(Timestamp::from_millis(30));
    let grouped = p
        .test_stream(stream)
        .window_into(
            WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap())
                .trigger(
                    Trigger::after_watermark()
                        .with_early_firings(Trigger::after_count(2))
                        .with_late_firings(Trigger::after_count(1)),
                )
                .accumulation(AccumulationMode::Accumulating)
                .allowed_lateness(Duration::from_millis(100)),
        )
        .group_by_key()
        .map(|(k, mut v): (String, Vec<i64>)| {
            v.sort();
            (k, v)
        })
        .collect();
    Outputs { sums, grouped, deduped, attributed, counts }
}

fn render(o: &Outputs) -> Vec<String> {
    let mut lines: Vec<String> = o.sums.windowed().iter().map(|v| format!("{v:?}")).collect();
    lines.extend(o.grouped.windowed().iter().map(|v| format!("{v:?}")));
    lines.extend(o.deduped.windowed().iter().map(|v| format!("{v:?}")));
    lines.extend(o.attributed.windowed().iter().map(|v| format!("{v:?}")));
    lines.extend(o.counts.windowed().iter().map(|v| format!("counted {v:?}")));
    lines.sort();
    lines
}

/// No state cell or timer is left on this process at the end.
fn assert_no_state_left(result: &RunResult, process: &str) {
    for name in STATEFUL {
        let c = result.counters(name).unwrap();
        assert_eq!((c.state_cells, c.pending_timers), (0, 0), "{process}: {name} left state or timers");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Run `test` of this binary as the two processes of a cluster (`child`
/// set to each one's index), wait for both to succeed, and return the
/// union of the lines each wrote to its `OUT` file, sorted.
fn run_cluster(test: &str, child: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let addrs = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|i| {
            Command::new(&exe)
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(child, i.to_string())
                .env(ADDRS, &addrs)
                .env(OUT, dir.path().join(format!("out-{i}.txt")))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + StdDuration::from_secs(120);
    for (i, child) in children.iter_mut().enumerate() {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "process {i} failed: {status}");
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("process {i} did not finish within 120 s");
            }
            std::thread::sleep(StdDuration::from_millis(20));
        }
    }
    let mut union: Vec<String> = (0..2)
        .flat_map(|i| {
            let text = std::fs::read_to_string(dir.path().join(format!("out-{i}.txt"))).unwrap();
            text.lines().filter(|l| !l.is_empty()).map(String::from).collect::<Vec<_>>()
        })
        .collect();
    union.sort();
    union
}

#[test]
fn two_processes_equal_one() {
    if let Ok(index) = std::env::var(CHILD) {
        // A cluster process.
        // The addresses come as a host file, one per line.
        let hostfile = std::path::PathBuf::from(format!("{}.hosts", std::env::var(OUT).unwrap()));
        std::fs::write(&hostfile, std::env::var(ADDRS).unwrap().replace(',', "\n# next process\n")).unwrap();
        let p = Pipeline::new();
        let outputs = build(&p);
        let result =
            p.run_with(&TimelyRunner::cluster_from_hostfile(1, index.parse().unwrap(), &hostfile).unwrap()).unwrap();
        assert_no_state_left(&result, &format!("process {index}"));
        std::fs::write(std::env::var(OUT).unwrap(), render(&outputs).join("\n")).unwrap();
        return;
    }

    let union = run_cluster("two_processes_equal_one", CHILD);

    let p = Pipeline::new();
    let outputs = build(&p);
    let result = p.run_with(&ReferenceRunner::default()).unwrap();
    assert_no_state_left(&result, "one process");
    let single = render(&outputs);
    // Sums: 5 windows x 13 keys; grouped: a: early {1,5}, on time, late
    // {1,5,7}; b and c on time in [0,10); b on time in [10,20); dedup keeps
    // 4 of 6 events; 3 goals attributed; counts: 5 windows x 13 keys.
    assert_eq!(single.len(), 65 + 6 + 4 + 3 + 65);
    assert_eq!(union, single);
}

const DRAIN_CHILD: &str = "WEIR_TEST_DRAIN_PROCESS";

/// A drain asked on process 1 only drains the whole cluster: process 0
/// learns it over the control dataflow, its source ends too, every window
/// fires on both processes and both end normally. Each process reads one of
/// the two splits of an in-memory queue that is never closed; process 1
/// drains once both processes read their 20 elements (each leaves a marker
/// file), so that the result is exact.
#[test]
fn a_drain_on_one_process_drains_the_cluster() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use weir::pipeline::{QueueSource, WatermarkPolicy};

    if let Ok(index) = std::env::var(DRAIN_CHILD) {
        let index: usize = index.parse().unwrap();
        let out = std::path::PathBuf::from(std::env::var(OUT).unwrap());
        let hostfile = out.with_extension("hosts");
        std::fs::write(&hostfile, std::env::var(ADDRS).unwrap().replace(',', "\n")).unwrap();
        let p = Pipeline::new();
        let queue = QueueSource::new(&["a", "b"]);
        for i in 0..40u64 {
            queue.push((i % 2) as usize, (i % 3, i), Timestamp::from_millis(i as i64));
        }
        let read = Arc::new(AtomicUsize::new(0));
        let r = read.clone();
        let sums = p
            .read_unbounded(queue, WatermarkPolicy::bounded_out_of_orderness(Duration::ZERO))
            .map(move |kv| {
                r.fetch_add(1, Ordering::SeqCst);
                kv
            })
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap()))
            .combine_per_key(Sum::new())
            .collect();
        let control = p.control();
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let marker = |i: usize| out.with_file_name(format!("read-{i}"));
        let (mine, theirs) = (marker(index), marker(1 - index));
        let watcher = std::thread::spawn(move || {
            let deadline = Instant::now() + StdDuration::from_secs(60);
            while read.load(Ordering::SeqCst) < 20 && Instant::now() < deadline {
                std::thread::sleep(StdDuration::from_millis(2));
            }
            std::fs::write(&mine, "").unwrap();
            if index == 1 {
                while !theirs.exists() && Instant::now() < deadline {
                    std::thread::sleep(StdDuration::from_millis(2));
                }
                control.drain();
            }
            // Not ended within the minute: cancel, so that the test fails
            // instead of hanging.
            while !d.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(StdDuration::from_millis(10));
            }
            control.cancel();
        });
        let runner = TimelyRunner::cluster_from_hostfile(1, index, &hostfile).unwrap();
        let result = p.run_with(&runner);
        done.store(true, Ordering::SeqCst);
        watcher.join().unwrap();
        result.unwrap();
        let lines: Vec<String> = sums.windowed().iter().map(|v| format!("{:?} {:?}", v.window, v.value)).collect();
        std::fs::write(&out, lines.join("\n")).unwrap();
        return;
    }

    let union = run_cluster("a_drain_on_one_process_drains_the_cluster", DRAIN_CHILD);
    let mut want: Vec<String> = Vec::new();
    for w in 0..4i64 {
        for k in 0..3u64 {
            let sum: u64 = (w as u64 * 10..w as u64 * 10 + 10).filter(|i| i % 3 == k).sum();
            want.push(format!("{:?} {:?}", Window::interval(w * 10, w * 10 + 10), (k, sum)));
        }
    }
    want.sort();
    // [30, 40) fires only because the drain reached process 0 as well.
    assert_eq!(union, want);
}
