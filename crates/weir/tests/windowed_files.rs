//! The windowed text sink on every runner: one set of files per window and
//! pane holding exactly that pane's lines (early, on-time and late panes),
//! and files visible while an unbounded job still runs. Exactly-once output
//! across crashes is in `recovery.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use weir::io::windowed::{WindowedDir, WindowedTextSinkExt};
use weir::pipeline::{QueueSource, WatermarkPolicy};
use weir::prelude::*;
use weir::testing::runners;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// The lines of the windowed text files in `dir`, each after its file's
/// window and pane; no file may be left pending or temporary.
fn files(dir: &Path) -> Vec<String> {
    let (lines, hidden) = WindowedDir::new(dir, "sums").read_lines().unwrap();
    assert_eq!(hidden, 0, "pending or temporary files are left");
    lines.into_iter().map(|(pane, line)| format!("{pane} {line}")).collect()
}

fn timing(p: &PaneInfo) -> &'static str {
    match p.timing {
        Timing::Early => "early",
        Timing::OnTime => "ontime",
        Timing::Late => "late",
        Timing::Unknown => "unknown",
    }
}

#[test]
fn every_pane_is_in_its_own_files() {
    let e = |k: &str, v: i64| ((k.to_string(), v), ts(v));
    let stream = || {
        TestStream::new()
            .add_elements([e("a", 1), e("b", 2), e("a", 3)])
            .add_elements([e("a", 5), e("b", 11)])
            .advance_watermark_to(ts(10))
            .add_elements([e("a", 7)]) // late for [0, 10)
            .advance_watermark_to(ts(30))
    };
    for (name, runner) in runners() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pipeline::new();
        let sums = p
            .test_stream(stream())
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
            .combine_per_key(Sum::new());
        sums.write_windowed_text(dir.path(), "sums", |(k, s): &(String, i64)| format!("{k}={s}"));
        let collected = sums.collect();
        p.run_with(&*runner()).unwrap_or_else(|e| panic!("{name}: {e}"));
        // What the files hold is exactly what was collected, pane by pane.
        let mut want: Vec<String> = collected
            .windowed()
            .iter()
            .map(|v| {
                let w = match v.window {
                    Window::Global => "global".to_string(),
                    Window::Interval(w) => format!("{}_{}", w.start.millis(), w.end.millis()),
                };
                format!("sums-{w}-pane-{}-{} {}={}", v.pane.index, timing(&v.pane), v.value.0, v.value.1)
            })
            .collect();
        want.sort();
        assert_eq!(files(dir.path()), want, "{name}");
        // Early, on-time and late panes were all written.
        for t in ["-early ", "-ontime ", "-late "] {
            assert!(want.iter().any(|l| l.contains(t)), "{name}: no {t} pane");
        }
    }
}

#[test]
fn a_windows_file_appears_while_the_job_runs() {
    for (name, runner) in runners().into_iter().filter(|(n, _)| !n.contains("recovering")) {
        let dir = tempfile::tempdir().unwrap();
        let p = Pipeline::new();
        let queue = QueueSource::new(&["live"]);
        for t in [1i64, 4, 8, 25] {
            queue.push(0, ("k".to_string(), t), ts(t));
        }
        p.read_unbounded(queue, WatermarkPolicy::bounded_out_of_orderness(Duration::ZERO))
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap()))
            .combine_per_key(Sum::new())
            .write_windowed_text(dir.path(), "sums", |(k, s): &(String, i64)| format!("{k}={s}"));
        // The queue is never closed: the job runs until drained. The
        // watermark (25) passed [0, 10): its file must appear before that.
        let control = p.control();
        let seen = Arc::new(AtomicBool::new(false));
        let (s, watched) = (seen.clone(), dir.path().to_path_buf());
        let watcher = std::thread::spawn(move || {
            let deadline = Instant::now() + StdDuration::from_secs(60);
            while Instant::now() < deadline {
                let names = std::fs::read_dir(&watched).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>());
                if names.unwrap_or_default().iter().any(|n| n.to_string_lossy().starts_with("sums-0_10-pane-0-ontime-"))
                {
                    s.store(true, Ordering::SeqCst);
                    break;
                }
                std::thread::sleep(StdDuration::from_millis(2));
            }
            control.drain();
        });
        p.run_with(&*runner()).unwrap_or_else(|e| panic!("{name}: {e}"));
        watcher.join().unwrap();
        assert!(seen.load(Ordering::SeqCst), "{name}: the file of [0, 10) did not appear while the job ran");
        assert_eq!(files(dir.path()), ["sums-0_10-pane-0-ontime k=13", "sums-20_30-pane-0-ontime k=25"], "{name}");
    }
}
