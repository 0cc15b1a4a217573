//! `kv_swap`, `distinct`, `latest_globally` and `latest_per_key` on every
//! runner, ported from Beam's Java tests: `KvSwapTest` (testKvSwap,
//! testKvSwapEmpty), `DistinctTest` (testDistinct, testDistinctEmpty,
//! testWindowedDistinct) and `LatestTest` (testGloballyEventTiming,
//! testGloballyEmptyCollection — Beam outputs null there, Weir nothing —,
//! testPerKeyEventTimestamp, testPerKeyEmptyCollection) and composed
//! combiners (`CombineFnsTest.testComposedCombine`). Each runs on every
//! runner of `weir::testing::runners()`, which must agree.

use weir::prelude::*;
use weir::testing::{assert_that, on_every_runner};

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

#[test]
fn kv_swap_turns_every_pair_around() {
    let out = on_every_runner(|p| {
        p.create(vec![("k1".to_string(), 1u32), ("k2".into(), 2), ("k3".into(), 3), ("k4".into(), 4), ("k5".into(), 4)])
            .kv_swap()
            .collect()
    });
    assert_that(&out).contains_in_any_order([
        (1, "k1".to_string()),
        (2, "k2".into()),
        (3, "k3".into()),
        (4, "k4".into()),
        (4, "k5".into()),
    ]);
    let empty = on_every_runner(|p| p.create(Vec::<(String, u32)>::new()).kv_swap().collect());
    assert!(empty.is_empty());
}

#[test]
fn distinct_keeps_each_element_once() {
    let words = ["k1", "k5", "k5", "k2", "k1", "k2", "k3"].map(String::from);
    let out = on_every_runner(|p| p.create(words.clone()).distinct().collect());
    assert_that(&out).contains_in_any_order(["k1", "k2", "k3", "k5"].map(String::from));
    let empty = on_every_runner(|p| p.create(Vec::<String>::new()).distinct().collect());
    assert!(empty.is_empty());
}

/// Beam's testWindowedDistinct: in 30-second windows, each element once
/// per window.
#[test]
fn distinct_is_per_window() {
    let events = [("k1", 0i64), ("k2", 1_000), ("k1", 2_000), ("k3", 31_000), ("k1", 32_000), ("k3", 59_000)];
    let out = on_every_runner(|p| {
        p.create(events.map(|(s, t)| (s.to_string(), t)))
            .with_timestamps(|(_, t)| at(*t))
            .map(|(s, _)| s)
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(30_000)).unwrap()))
            .distinct()
            .collect()
    });
    let first = Window::interval(0, 30_000);
    let second = Window::interval(30_000, 60_000);
    assert_that(&out).in_window(first).contains_in_any_order(["k1", "k2"].map(String::from));
    assert_that(&out).in_window(second).contains_in_any_order(["k1", "k3"].map(String::from));
    assert_eq!(out.len(), 4);
}

/// Beam's testGloballyEventTiming: the element with the latest timestamp,
/// whatever the order they come in.
#[test]
fn latest_globally_is_the_element_with_the_latest_timestamp() {
    let events = [("foo", 100i64), ("bar", 300), ("baz", 200)];
    let out = on_every_runner(|p| {
        p.create(events.map(|(s, t)| (s.to_string(), t)))
            .with_timestamps(|(_, t)| at(*t))
            .map(|(s, _)| s)
            .latest_globally()
            .collect()
    });
    assert_that(&out).contains_in_any_order(["bar".to_string()]);
    let empty = on_every_runner(|p| p.create(Vec::<String>::new()).latest_globally().collect());
    assert!(empty.is_empty(), "an empty input has no latest element");
}

/// Beam's testPerKeyEventTimestamp, with a tie broken the same way on
/// every runner, and per window.
#[test]
fn latest_per_key_is_per_key_and_window() {
    let events =
        [("A", "foo", 100i64), ("B", "bar", 200), ("A", "baz", 300), ("B", "qux", 150), ("C", "x", 5), ("C", "y", 5)];
    let out = on_every_runner(|p| {
        p.create(events.map(|(k, v, t)| (k.to_string(), (v.to_string(), t))))
            .with_timestamps(|(_, (_, t))| at(*t))
            .map(|(k, (v, _))| (k, v))
            .latest_per_key()
            .collect()
    });
    let got: Vec<(String, String)> = out.iter().map(|v| v.value.clone()).collect();
    assert_eq!(got.len(), 3);
    assert!(got.contains(&("A".into(), "baz".into())), "{got:?}");
    assert!(got.contains(&("B".into(), "bar".into())), "{got:?}");
    // A tie: the greater encoding ("y") on every runner.
    assert!(got.contains(&("C".into(), "y".into())), "{got:?}");
    let windowed = on_every_runner(|p| {
        p.create(vec![("A".to_string(), 1i64), ("A".into(), 2), ("A".into(), 11)])
            .with_timestamps(|(_, t)| at(*t))
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap()))
            .latest_per_key()
            .collect()
    });
    assert_that(&windowed).in_window(Window::interval(0, 10)).contains_in_any_order([("A".to_string(), 2)]);
    assert_that(&windowed).in_window(Window::interval(10, 20)).contains_in_any_order([("A".to_string(), 11)]);
    let empty = on_every_runner(|p| p.create(Vec::<(String, u32)>::new()).latest_per_key().collect());
    assert!(empty.is_empty());
}

/// A composed combiner (Beam's `CombineFns.compose()`, ported from
/// `CombineFnsTest.testComposedCombine`: per key, two aggregates of parts
/// of one input) gives per key what each of its members gives alone.
#[test]
fn a_composed_combiner_equals_its_members_run_alone() {
    let hits: Vec<(String, (u64, u64))> = (0..300u64).map(|i| (format!("u{}", i % 7), (i % 13, i * 3 % 101))).collect();
    let composed = on_every_runner(|p| {
        p.create(hits.clone())
            .with_timestamps(|(_, (t, _))| at(*t as i64))
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(5)).unwrap()))
            .combine_per_key((Count, on(|h: &(u64, u64)| h.1, Sum::new()), on(|h: &(u64, u64)| h.1, Max::new())))
            .collect()
    });
    let alone = on_every_runner(|p| {
        let keyed = p
            .create(hits.clone())
            .with_timestamps(|(_, (t, _))| at(*t as i64))
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(5)).unwrap()));
        let counts = keyed.combine_per_key(Count).map(|(k, n)| (k, (n, 0u64, None::<u64>)));
        let sums = keyed.map(|(k, h)| (k, h.1)).combine_per_key(Sum::new()).map(|(k, s)| (k, (0, s, None)));
        let maxes = keyed.map(|(k, h)| (k, h.1)).combine_per_key(Max::new()).map(|(k, m)| (k, (0, 0, m)));
        counts.flatten_with(&[sums, maxes]).collect()
    });
    // Put the members' results of each key and window together.
    let mut merged: std::collections::BTreeMap<(String, Window), (u64, u64, Option<u64>)> = Default::default();
    for v in &alone {
        let e = merged.entry((v.value.0.clone(), v.window)).or_default();
        let (n, s, m) = v.value.1;
        *e = (e.0 + n, e.1 + s, e.2.max(m));
    }
    let got: std::collections::BTreeMap<(String, Window), (u64, u64, Option<u64>)> =
        composed.iter().map(|v| ((v.value.0.clone(), v.window), v.value.1)).collect();
    assert_eq!(got.len(), composed.len(), "one result per key and window");
    assert_eq!(got, merged);
    let total: u64 = got.values().map(|v| v.0).sum();
    assert_eq!(total, 300);
}

/// `combine_grouped_values` (Beam's `Combine.groupedValues`) over the
/// panes of `group_by_key` gives what `combine_per_key` gives: per key,
/// window and pane, the same sums with the same timestamps and panes.
#[test]
fn combined_grouped_values_equal_combine_per_key() {
    let events: Vec<((String, u64), Timestamp)> =
        (0..60u64).map(|i| ((format!("k{}", i % 4), i), at((i * 7 % 50) as i64))).collect();
    let strategy = || WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap());
    let grouped = on_every_runner(|p| {
        p.create_timestamped(events.clone())
            .window_into(strategy())
            .group_by_key()
            .combine_grouped_values(Sum::new())
            .collect()
    });
    let combined = on_every_runner(|p| {
        p.create_timestamped(events.clone()).window_into(strategy()).combine_per_key(Sum::new()).collect()
    });
    assert_eq!(grouped.len(), 20, "4 keys in 5 windows");
    assert_eq!(grouped, combined);
}
