//! Combiner lifting: `combine_per_key` folds each worker's inputs into
//! partial accumulators per (key, window) before the shuffle, when that
//! cannot change a pane. Its panes must equal those of a `group_by_key`
//! followed by the same fold (which is never lifted), on every runner, and
//! elements it drops as late are counted as elements, not as partials.

use weir::prelude::*;

mod common;
use common::{runners, ts};

type Pane = (String, i64, i64, Window, PaneInfo);

fn panes<V: std::fmt::Debug + Clone>(c: &Collected<(String, V)>, f: impl Fn(&V) -> i64) -> Vec<Pane> {
    let mut v: Vec<Pane> = c
        .windowed()
        .into_iter()
        .map(|w| (w.value.0.clone(), f(&w.value.1), w.timestamp.millis(), w.window, w.pane))
        .collect();
    v.sort_by_key(|p| format!("{p:?}"));
    v
}

fn stream() -> TestStream<(String, i64)> {
    let e = |k: &str, v: i64, t: i64| ((k.to_string(), v), ts(t));
    TestStream::new()
        .add_elements([e("a", 1, 1), e("a", 2, 2), e("b", 3, 3), e("a", 4, 12), e("a", 5, 13)])
        .advance_watermark_to(ts(10))
        // Late for [0, 10) (lateness 0): three dropped elements of key a, in
        // one batch with on-time ones.
        .add_elements([e("a", 6, 4), e("a", 7, 5), e("a", 8, 6), e("a", 9, 14), e("b", 10, 15)])
        .advance_watermark_to(ts(30))
}

/// `windowed`: the elements after window assignment (sliding windows copy them).
fn check(strategy: WindowingStrategy, lifted: bool, windowed: u64, dropped: u64) {
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let input = p.test_stream(stream()).window_into(strategy.clone());
        let combined = input.combine_per_key(Sum::new()).collect();
        let grouped = input.group_by_key().map(|(k, vs): (String, Vec<i64>)| (k, vs.iter().sum::<i64>())).collect();
        let result = p.run_with(&*runner()).unwrap();
        assert_eq!(panes(&combined, |v| *v), panes(&grouped, |v| *v), "{name}: lifted panes differ");
        assert!(!panes(&combined, |v| *v).is_empty(), "{name}: no panes");
        let c = result.counters("CombinePerKey").unwrap();
        let g = result.counters("GroupByKey").unwrap();
        assert_eq!((c.dropped_expired, g.dropped_expired), (dropped, dropped), "{name}: drops counted in elements");
        assert_eq!((c.elements_in, g.elements_in), (windowed, windowed), "{name}: inputs counted in elements");
        let partial = result.counters("CombinePerKey/Partial");
        assert_eq!(partial.is_some(), lifted, "{name}: lifting");
        if let Some(partial) = partial {
            assert_eq!(partial.elements_in, windowed, "{name}");
            assert!(partial.elements_out < partial.elements_in, "{name}: nothing was folded");
        }
    }
}

#[test]
fn lifted_combine_equals_group_then_fold() {
    let fixed = || FixedWindows::of(Duration::from_millis(10)).unwrap();
    check(WindowingStrategy::new(fixed()), true, 10, 3);
    check(WindowingStrategy::new(fixed()).timestamp_combiner(TimestampCombiner::Earliest), true, 10, 3);
    let sliding =
        SlidingWindows::new(Duration::from_millis(10), Duration::from_millis(5), Duration::from_millis(0)).unwrap();
    // Windows [0,10) and [-5,5) expire at watermark 10: the late elements at
    // 4 fall in both, 5 and 6 in [0,10) and [5,15) (the latter on time).
    check(WindowingStrategy::new(sliding), true, 20, 4);
}

#[test]
fn not_lifted_where_it_would_change_panes() {
    let fixed = || FixedWindows::of(Duration::from_millis(10)).unwrap();
    // A count trigger sees a partial as one element.
    let counting = WindowingStrategy::new(fixed())
        .trigger(Trigger::after_watermark().with_early_firings(Trigger::after_count(2)))
        .accumulation(AccumulationMode::Accumulating);
    check(counting, false, 10, 3);
    // The latest timestamp of a partial is not known from its earliest.
    check(WindowingStrategy::new(fixed()).timestamp_combiner(TimestampCombiner::Latest), false, 10, 3);
}
