//! Unbounded sources: per-split watermarks, idleness, and asking a running
//! pipeline what holds its watermark back, on the reference runner (wall
//! clock) and the Timely runner.

use std::time::{Duration as StdDuration, Instant};

use weir::pipeline::{QueueSource, Runner, WatermarkPolicy};
use weir::prelude::*;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn idle_split_stops_holding_the_watermark(runner: Box<dyn Runner + Send>) {
    let source: QueueSource<(String, u64)> = QueueSource::new(&["a", "b", "c"]);
    for t in (0..100).step_by(10) {
        source.push(0, ("a".into(), 1), ts(t));
        source.push(1, ("b".into(), 1), ts(t));
    }
    source.push(2, ("c".into(), 1), ts(5)); // c then goes quiet

    let p = Pipeline::new();
    let counts = p
        .read_unbounded(
            source.clone(),
            WatermarkPolicy::bounded_out_of_orderness(Duration::ZERO).idle_after(Duration::from_millis(1_000)),
        )
        .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(50)).unwrap()))
        .combine_per_key(Sum::new())
        .collect();
    let metrics = p.metrics();
    let graph = p.build().unwrap();
    let run = std::thread::spawn(move || runner.run(graph).map(|_| ()));

    // While c is quiet but not yet idle (a second: long enough for this
    // thread to look on a loaded machine), it holds the watermark back at 5.
    let deadline = Instant::now() + StdDuration::from_secs(30);
    let mut saw_c = None;
    let mut window_done_while_open = false;
    while Instant::now() < deadline {
        if let Some(h) = metrics.holding_back() {
            if h.what.starts_with("split c") {
                saw_c = Some(h);
            }
        }
        // Once c is idle, [0, 50) completes although c is still open.
        let gbk_out =
            metrics.watermarks().into_iter().filter(|w| w.transform == "CombinePerKey").map(|w| w.output).min();
        if gbk_out.is_some_and(|w| w >= ts(50)) {
            window_done_while_open = true;
            break;
        }
        std::thread::sleep(StdDuration::from_millis(5));
    }
    for i in 0..3 {
        source.close(i);
    }
    run.join().unwrap().unwrap();

    let c = saw_c.expect("split c was reported as holding the watermark back");
    assert_eq!(c.watermark, ts(5));
    assert_eq!(c.behind_by, Duration::from_millis(85));
    assert!(window_done_while_open, "the idle split kept holding the watermark back");
    let mut got: Vec<(Window, (String, u64))> = counts.windowed().into_iter().map(|v| (v.window, v.value)).collect();
    got.sort();
    let w = |s| Window::interval(s, s + 50);
    assert_eq!(
        got,
        vec![
            (w(0), ("a".into(), 5)),
            (w(0), ("b".into(), 5)),
            (w(0), ("c".into(), 1)),
            (w(50), ("a".into(), 5)),
            (w(50), ("b".into(), 5))
        ]
    );
}

#[test]
fn reference_runner_with_wall_clock() {
    idle_split_stops_holding_the_watermark(Box::new(ReferenceRunner {
        processing_time: weir::ProcessingTime::Wall,
        ..Default::default()
    }));
}

#[test]
fn timely_runner() {
    idle_split_stops_holding_the_watermark(Box::new(TimelyRunner::threads(2)));
}
