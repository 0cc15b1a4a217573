//! Stopping an unbounded job from outside on every runner: a drain ends it
//! normally with every window fired over what was read; a cancel ends it
//! with `PipelineError::Cancelled` and fires nothing more.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use weir::pipeline::runtime::JobControl;
use weir::pipeline::{QueueSource, WatermarkPolicy};
use weir::prelude::*;
use weir::testing::RunnerFactory;

/// Every runner but the reference runner's recovering mode, which needs
/// positions that an in-memory queue cannot give.
fn runners() -> Vec<(&'static str, RunnerFactory)> {
    weir::testing::runners().into_iter().filter(|(name, _)| !name.contains("recovering")).collect()
}

/// An unbounded pipeline over a queue that is never closed: sums per key
/// in 10 ms windows. `read` counts the elements that went through.
fn pipeline(read: Arc<AtomicUsize>) -> (Pipeline, Collected<(String, u64)>) {
    let p = Pipeline::new();
    let queue = QueueSource::new(&["a", "b"]);
    for i in 0..40u64 {
        queue.push((i % 2) as usize, (format!("k{}", i % 3), i), Timestamp::from_millis(i as i64));
    }
    let sums = p
        .read_unbounded(queue, WatermarkPolicy::bounded_out_of_orderness(Duration::ZERO))
        .map(move |kv| {
            read.fetch_add(1, Ordering::SeqCst);
            kv
        })
        .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap()))
        .combine_per_key(Sum::new())
        .collect();
    (p, sums)
}

/// Once all 40 elements went through, `stop` is called; if the run has not
/// ended 30 s later (`done` unset), it is cancelled, so that a drain that
/// does not work fails the test instead of hanging it.
fn stop_once_read(
    read: Arc<AtomicUsize>,
    control: JobControl,
    stop: fn(&JobControl),
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + StdDuration::from_secs(60);
        while read.load(Ordering::SeqCst) < 40 && Instant::now() < deadline {
            std::thread::sleep(StdDuration::from_millis(2));
        }
        // A little later, so that the runner is idle, waiting for input.
        std::thread::sleep(StdDuration::from_millis(20));
        stop(&control);
        let deadline = Instant::now() + StdDuration::from_secs(30);
        while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(StdDuration::from_millis(2));
        }
        control.cancel();
    })
}

#[test]
fn a_drained_job_fires_every_window_and_ends_normally() {
    let mut want: Vec<(Window, String, u64)> = Vec::new();
    for w in 0..4 {
        for k in 0..3 {
            let sum: u64 = (w * 10..w * 10 + 10).filter(|i| i % 3 == k).sum();
            want.push((Window::interval(w as i64 * 10, w as i64 * 10 + 10), format!("k{k}"), sum));
        }
    }
    want.sort();
    for (name, runner) in runners() {
        let read = Arc::new(AtomicUsize::new(0));
        let (p, sums) = pipeline(read.clone());
        let done = Arc::new(AtomicBool::new(false));
        let stopper = stop_once_read(read, p.control(), JobControl::drain, done.clone());
        let run = p.run_with(&*runner());
        done.store(true, Ordering::SeqCst);
        stopper.join().unwrap();
        run.unwrap_or_else(|e| panic!("{name}: {e} (not drained within 30 s, then cancelled?)"));
        let mut got: Vec<(Window, String, u64)> =
            sums.windowed().into_iter().map(|v| (v.window, v.value.0, v.value.1)).collect();
        got.sort();
        // The last window, [30, 40), fires only because the drain moved
        // the watermark to the end of time (its last element is at 39).
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn a_cancelled_job_stops_with_an_error_and_fires_nothing_more() {
    for (name, runner) in runners() {
        let read = Arc::new(AtomicUsize::new(0));
        let (p, sums) = pipeline(read.clone());
        let done = Arc::new(AtomicBool::new(false));
        let stopper = stop_once_read(read, p.control(), JobControl::cancel, done.clone());
        let err = p.run_with(&*runner()).unwrap_err();
        done.store(true, Ordering::SeqCst);
        stopper.join().unwrap();
        assert!(matches!(err, PipelineError::Cancelled), "{name}: {err}");
        // Windows before the watermark (39) may have fired; [30, 40) cannot.
        let fired: Vec<Window> = sums.windowed().iter().map(|v| v.window).collect();
        assert!(!fired.contains(&Window::interval(30, 40)), "{name}: {fired:?}");
    }
}

/// `wait_on` (Beam's `Wait.on`): elements wait for the signal. The signal
/// is an unbounded queue in the global window that never ends by itself,
/// so nothing may pass while the job runs (checked once all three elements
/// reached the wait); the drain ends the signal, and then all three pass.
#[test]
fn wait_on_holds_elements_until_the_signal_is_done() {
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let reached = Arc::new(AtomicUsize::new(0));
        let passed = Arc::new(AtomicUsize::new(0));
        let (r, q) = (reached.clone(), passed.clone());
        let signal = QueueSource::<u8>::new(&["signal"]);
        signal.push(0, 1, Timestamp::from_millis(1));
        let signal = p.read_unbounded(signal, WatermarkPolicy::bounded_out_of_orderness(Duration::ZERO));
        let out = p
            .create([1u32, 2, 3])
            .map(move |x| {
                r.fetch_add(1, Ordering::SeqCst);
                x
            })
            .wait_on(&signal)
            .map(move |x| {
                q.fetch_add(1, Ordering::SeqCst);
                x
            })
            .collect();
        let control = p.control();
        let (reached2, passed2) = (reached.clone(), passed.clone());
        let held = std::thread::spawn(move || {
            let deadline = Instant::now() + StdDuration::from_secs(60);
            while reached2.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
                std::thread::sleep(StdDuration::from_millis(2));
            }
            std::thread::sleep(StdDuration::from_millis(50));
            let early = passed2.load(Ordering::SeqCst);
            control.drain();
            early
        });
        p.run_with(&*runner()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let early = held.join().unwrap();
        assert_eq!(reached.load(Ordering::SeqCst), 3, "{name}");
        assert_eq!(early, 0, "{name}: elements passed before the signal was done");
        let mut got = out.values();
        got.sort();
        assert_eq!(got, vec![1, 2, 3], "{name}");
    }
}
