//! Recovery of an embedded `run()`: a pipeline checkpointed into a folder
//! crashes (a source panics) at random points, is run again with the same
//! folder, crashes again, … and finally completes. Its output must equal
//! an uninterrupted run's: every element exactly once, state, timers and
//! holds restored, sources rewound to their positions, on the same or on
//! another number of workers.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use proptest::prelude::*;
use weir::io::windowed::{WindowedDir, WindowedTextSinkExt};
use weir::pipeline::{ReadResult, UnboundedSource, WatermarkPolicy};
use weir::prelude::*;
use weir::CheckpointConfig;

/// Items read split by split (split `i` holds items `i, i + splits, …`,
/// in time order); the read panics once `crash_after` records were read in
/// this run.
struct Flaky {
    items: Arc<Vec<(u8, i64)>>,
    splits: usize,
    crash_after: Option<u64>,
    read: Arc<AtomicU64>,
}

impl UnboundedSource for Flaky {
    type Item = (u8, i64);
    type Split = usize;
    fn splits(&self) -> Vec<(String, usize)> {
        (0..self.splits).map(|i| (format!("split-{i}"), i)).collect()
    }
    fn read(&self, next: &mut usize, max: usize, out: &mut SourceOutput<'_, '_, (u8, i64)>) -> ReadResult {
        std::thread::sleep(StdDuration::from_micros(300));
        for _ in 0..max.min(7) {
            let Some(&(k, t)) = self.items.get(*next) else { return ReadResult::Done };
            if let Some(limit) = self.crash_after {
                if self.read.fetch_add(1, Ordering::SeqCst) >= limit {
                    panic!("crash after {limit} records");
                }
            }
            out.push((k, t), Timestamp::from_millis(t));
            *next += self.splits;
        }
        ReadResult::Data
    }
    fn position(&self, next: &usize) -> Option<Vec<u8>> {
        Some((*next as u64).to_le_bytes().to_vec())
    }
    fn seek(&self, next: &mut usize, position: &[u8]) -> Result<(), PipelineError> {
        *next = u64::from_le_bytes(position.try_into().map_err(|_| PipelineError::Checkpoint("bad position".into()))?)
            as usize;
        Ok(())
    }
}

type Out = Vec<WindowedValue<(u8, i64)>>;

/// Per key, sums of 100 ms buckets kept in map state, each emitted by an
/// event-time timer tagged with its bucket: state, timers and holds of a
/// stateful DoFn.
#[derive(Clone)]
struct Buckets;

const SUMS: MapState<i64, i64> = MapState::new("sums");
const CLOSE: TimerSpec = TimerSpec::event_time("close");

impl StatefulDoFn for Buckets {
    type Key = u8;
    type Value = i64;
    type Out = (u8, i64);
    fn process(&mut self, cx: &mut StateContext<'_, u8, (u8, i64)>, t: i64) {
        let bucket = t / 100;
        let sum = SUMS.get(cx, &bucket).unwrap_or(0);
        SUMS.put(cx, bucket, sum + t);
        CLOSE.set_tagged(cx, &bucket.to_string(), Timestamp::from_millis(bucket * 100 + 99));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, u8, (u8, i64)>, timer: &TimerFiring) {
        let bucket: i64 = timer.tag.parse().expect("a bucket number");
        let sum = SUMS.remove(cx, &bucket).expect("a bucket's timer fires once");
        let key = *cx.key();
        cx.output((key, bucket * 1_000_000 + sum));
    }
}

/// `n` cases, or more with `WEIR_PROPTEST_CASES` for a deeper search.
fn cases(n: u32) -> u32 {
    std::env::var("WEIR_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(n).max(n)
}

/// What one output has that the other has not (at most a few of each).
fn diff(got: &Out, want: &Out) -> String {
    let extra: Vec<_> = got.iter().filter(|v| !want.contains(v)).take(4).collect();
    let missing: Vec<_> = want.iter().filter(|v| !got.contains(v)).take(4).collect();
    format!("{} elements, expected {}; extra {extra:?}; missing {missing:?}", got.len(), want.len())
}

/// Per key and 50 ms window: the sum of the timestamps (a grouping with
/// state per window); a count per key in the global window; and per key
/// and 100 ms bucket the sum of the timestamps ([`Buckets`]).
/// The sums are also written as windowed text files into `files`.
fn run(
    items: &Arc<Vec<(u8, i64)>>,
    runner: &TimelyRunner,
    crash_after: Option<u64>,
    files: &Path,
) -> Result<(Out, Out), PipelineError> {
    let p = Pipeline::new();
    let source = Flaky { items: items.clone(), splits: 3, crash_after, read: Arc::default() };
    let input = p.read_unbounded(source, WatermarkPolicy::bounded_out_of_orderness(Duration::from_millis(0)));
    let sums = input
        .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(50)).unwrap()))
        .combine_per_key(Sum::new());
    sums.write_windowed_text(files, "sums", |(k, s): &(u8, i64)| format!("{k},{s}"));
    let sums = sums.collect();
    let counts = input.map(|(k, _)| (k, 1i64)).combine_per_key(Sum::new());
    let buckets = input.par_do_stateful(Buckets);
    let counts = counts.flatten_with(&[buckets]).collect();
    let r = p.run_with(runner)?;
    // No element may be dropped as late: the watermark never passes data.
    let dropped: u64 = r.metrics.all().iter().map(|(_, c)| c.dropped_expired + c.dropped_closed).sum();
    assert_eq!(dropped, 0, "elements dropped as late");
    let (mut a, mut b) = (sums.windowed(), counts.windowed());
    a.sort();
    b.sort();
    Ok((a, b))
}

/// The lines of the windowed text files in `dir`, each after its file's
/// window and pane; no file may be left pending or temporary.
fn windowed_lines(dir: &Path) -> Vec<String> {
    let (lines, hidden) = WindowedDir::new(dir, "sums").read_lines().unwrap();
    assert_eq!(hidden, 0, "pending or temporary files are left");
    lines.into_iter().map(|(pane, line)| format!("{pane} {line}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(12), ..ProptestConfig::default() })]

    #[test]
    fn crashed_and_resumed_runs_end_with_the_uninterrupted_output(
        mut items in prop::collection::vec((0u8..6, 0i64..2000), 50..600),
        crashes in prop::collection::vec(1u64..400, 1..5),
        workers in prop::collection::vec(1usize..5, 5),
        lsm in any::<bool>(),
        rescale in any::<bool>(),
    ) {
        // Each split reads in time order: no element is late.
        items.sort_by_key(|&(_, t)| t);
        let items = Arc::new(items);
        let (uninterrupted, files) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let expected = run(&items, &TimelyRunner::threads(workers[0]), None, uninterrupted.path()).unwrap();
        let expected_lines = windowed_lines(uninterrupted.path());
        prop_assert_eq!(expected_lines.len(), expected.0.len());
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        // With `rescale`, each run has its own number of workers: a run
        // restores what the one before checkpointed on 1 to 4 workers. With
        // `lsm`, keyed state is on the LSM with 2 keys in memory, whole
        // snapshots are streamed into the state files, and every snapshot
        // is restored as it is read from its file (state larger than memory).
        let runner = |i: usize| {
            let config = CheckpointConfig::local(dir.path(), StdDuration::from_millis(5));
            let r = TimelyRunner::threads(if rescale { workers[i] } else { workers[0] });
            match lsm {
                false => r.with_checkpoints(config),
                true => r
                    .with_state_backend(StateBackend::Lsm { dir: state.path().into(), resident_keys: 2 })
                    .with_checkpoints(config.read_in_place_above(0)),
            }
        };
        for (i, crash) in crashes.iter().enumerate() {
            match run(&items, &runner(i), Some(*crash), files.path()) {
                Err(e) => prop_assert!(e.to_string().contains("crash after"), "{e}"),
                // Fewer records than the crash point were left to read.
                Ok(got) => {
                    prop_assert!(got == expected, "{} / {}", diff(&got.0, &expected.0), diff(&got.1, &expected.1));
                    prop_assert_eq!(windowed_lines(files.path()), expected_lines);
                    return Ok(());
                }
            }
        }
        let got = run(&items, &runner(crashes.len()), None, files.path()).unwrap();
        // Every windowed line exactly once, in its window's and pane's files.
        prop_assert_eq!(windowed_lines(files.path()), expected_lines);
        prop_assert!(got.0 == expected.0, "windowed sums: {}", diff(&got.0, &expected.0));
        prop_assert!(got.1 == expected.1, "global counts and buckets: {}", diff(&got.1, &expected.1));
    }
}

/// A location of another pipeline is refused; a corrupt one too, unless
/// starting over is allowed.
#[test]
fn a_location_belongs_to_one_job() {
    let items = Arc::new((0..300).map(|i| ((i % 5) as u8, i as i64)).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let runner =
        TimelyRunner::threads(2).with_checkpoints(CheckpointConfig::local(dir.path(), StdDuration::from_millis(5)));
    let files = tempfile::tempdir().unwrap();
    assert!(run(&items, &runner, Some(200), files.path()).is_err());
    let p = Pipeline::new();
    p.create(vec![1u64]).map(|x| x + 1).collect();
    let e = p.run_with(&runner).unwrap_err().to_string();
    assert!(e.contains("belongs to another job"), "{e}");
}
