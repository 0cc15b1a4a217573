//! `sample_*`, `TopBy`, `regex_*`, `deduplicate*` and `group_into_batches`
//! on every runner, ported from Beam's Java tests:
//! - `SampleTest`: testSampleAny, testSampleAnyZero,
//!   testSampleAnyInsufficientElements, testSampleAnyEmpty, testSample,
//!   testSampleEmpty, testSampleZero, testSampleInsufficientElements,
//!   testSampleMultiplicity, testSamplePerKey;
//! - `TopTest`: testTop (`Top.of(n, comparator)`), testTopEmpty;
//! - `RegexTest`: testMatches, testMatchesGroup, testFind, testFindGroup,
//!   testFindKV, testFindAll, testReplaceAll, testReplaceAllMixed,
//!   testReplaceFirst, testSplits, testSplitsWithEmpty;
//! - `DeduplicateTest`: testInDifferentWindows, testEventTime,
//!   testProcessingTime, testKeyedValues;
//! - `GroupIntoBatchesTest`: testInGlobalWindowBatchSizeCount,
//!   testWithUnevenBatches, testInStreamingMode (fixed windows),
//!   testBufferingTimerInGlobalWindow.
//!
//! Where Beam allows a choice (which elements a sample holds, how a
//! key's values fall into batches), every runner must still agree when
//! the model leaves it no choice: samples are chosen by hash, so they are
//! compared exactly; batches depend on arrival order, which differs
//! between runners with several workers, so only their sizes and contents
//! are checked, as Beam's tests do.

use std::cmp::Ordering;

use weir::pipeline::transforms::batching::{Batching, Dedup};
use weir::pipeline::transforms::regex::Pattern;
use weir::prelude::*;
use weir::testing::{assert_that, on_every_runner, runners};

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn secs(s: i64) -> Duration {
    Duration::from_millis(s * 1000)
}

const DATA: [u32; 10] = [1, 2, 3, 4, 4, 5, 6, 6, 6, 100];

#[test]
fn sample_any_keeps_at_most_n_of_the_input() {
    for (n, expected) in [(5usize, 5usize), (0, 0), (20, DATA.len())] {
        let out = on_every_runner(|p| p.create(DATA).sample_any(n).collect());
        assert_eq!(out.len(), expected, "sample_any({n})");
        let mut left = DATA.to_vec();
        for v in &out {
            let i = left.iter().position(|d| *d == v.value).expect("every sampled element is an input");
            left.swap_remove(i);
        }
    }
    let empty = on_every_runner(|p| p.create(Vec::<u32>::new()).sample_any(3).collect());
    assert!(empty.is_empty());
}

#[test]
fn a_fixed_size_sample_is_one_list_per_window() {
    let out = on_every_runner(|p| p.create(DATA).sample_fixed_size_globally(3).collect());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].value.len(), 3);
    assert!(out[0].value.iter().all(|v| DATA.contains(v)));
    // Empty input, n = 0: one empty list (the global window's default).
    let empty = on_every_runner(|p| p.create(Vec::<u32>::new()).sample_fixed_size_globally(3).collect());
    assert_eq!(empty.iter().map(|v| v.value.clone()).collect::<Vec<_>>(), vec![Vec::<u32>::new()]);
    let zero = on_every_runner(|p| p.create(DATA).sample_fixed_size_globally(0).collect());
    assert_eq!(zero.iter().map(|v| v.value.clone()).collect::<Vec<_>>(), vec![Vec::<u32>::new()]);
    // More asked than there are: all of them, repeats included
    // (testSampleInsufficientElements, testSampleMultiplicity).
    let all = on_every_runner(|p| p.create(DATA).sample_fixed_size_globally(20).collect());
    let mut got = all[0].value.clone();
    got.sort();
    assert_eq!(got, DATA.to_vec());
}

#[test]
fn a_per_key_sample_has_at_most_n_values_of_each_key() {
    let pairs: Vec<(String, u32)> =
        DATA.iter().map(|v| (if v % 2 == 0 { "even" } else { "odd" }.to_string(), *v)).collect();
    let out = on_every_runner(|p| p.create(pairs.clone()).sample_fixed_size_per_key(3).collect());
    assert_eq!(out.len(), 2);
    for v in &out {
        let (key, sample) = &v.value;
        let of_key: Vec<u32> = pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| *v).collect();
        assert_eq!(sample.len(), 3.min(of_key.len()), "{key}");
        assert!(sample.iter().all(|s| of_key.contains(s)), "{key}: {sample:?}");
    }
}

#[test]
fn top_by_a_comparator() {
    let words = ["a", "bb", "c", "a", "a", "dddd", "dddd", "ccc"].map(String::from);
    let by_length = |a: &String, b: &String| a.len().cmp(&b.len());
    let out = on_every_runner(|p| p.create(words.clone()).combine_globally(TopBy::new(4, by_length)).collect());
    // Among the equal "a"/"c" the greater encoding wins: "c".
    assert_that(&out).contains_in_any_order([["dddd", "dddd", "ccc", "bb"].map(String::from).to_vec()]);
    let smallest = |a: &String, b: &String| b.len().cmp(&a.len()).then_with(|| b.cmp(a));
    let out = on_every_runner(|p| p.create(words.clone()).combine_globally(TopBy::new(2, smallest)).collect());
    assert_that(&out).contains_in_any_order([["a", "a"].map(String::from).to_vec()]);
    let empty = on_every_runner(|p| {
        p.create(Vec::<String>::new()).combine_globally(TopBy::new(3, |a: &String, b: &String| a.cmp(b))).collect()
    });
    assert_that(&empty).contains_in_any_order([Vec::<String>::new()]);
    assert_eq!(by_length(&"x".into(), &"yy".into()), Ordering::Less);
}

fn strings<const N: usize>(s: [&str; N]) -> Vec<String> {
    s.map(String::from).to_vec()
}

#[test]
fn regex_matches_and_finds() {
    let re = |s: &str| Pattern::new(s).unwrap();
    let out = on_every_runner(|p| p.create(strings(["a", "x", "y", "z"])).regex_matches(&re("[xyz]")).collect());
    assert_that(&out).contains_in_any_order(strings(["x", "y", "z"]));
    let out = on_every_runner(|p| {
        p.create(strings(["a", "x xxx", "x yyy", "x zzz"])).regex_matches_group(&re("x ([xyz]*)"), 1).collect()
    });
    assert_that(&out).contains_in_any_order(strings(["xxx", "yyy", "zzz"]));
    let out = on_every_runner(|p| p.create(strings(["aj", "xj", "yj", "zj"])).regex_find(&re("[xyz]")).collect());
    assert_that(&out).contains_in_any_order(strings(["x", "y", "z"]));
    let out = on_every_runner(|p| {
        p.create(strings(["aj", "xstef", "yfoo", "zbar"])).regex_find_group(&re("([xyz])(.*)"), 2).collect()
    });
    assert_that(&out).contains_in_any_order(strings(["stef", "foo", "bar"]));
    let out =
        on_every_runner(|p| p.create(strings(["a b c", "x y z"])).regex_find_kv(&re(r"a (b) (c)"), 1, 2).collect());
    assert_that(&out).contains_in_any_order([("b".to_string(), "c".to_string())]);
    let out = on_every_runner(|p| {
        p.create(strings(["aj", "xjx", "yjy", "zjz"])).regex_find_all(&re("([xyz])j([xyz])")).collect()
    });
    assert_that(&out).contains_in_any_order([
        strings(["xjx", "x", "x"]),
        strings(["yjy", "y", "y"]),
        strings(["zjz", "z", "z"]),
    ]);
}

#[test]
fn regex_replaces_and_splits() {
    let re = |s: &str| Pattern::new(s).unwrap();
    let out =
        on_every_runner(|p| p.create(strings(["xj", "yj", "zj"])).regex_replace_all(&re("[xyz]"), "new").collect());
    assert_that(&out).contains_in_any_order(strings(["newj", "newj", "newj"]));
    let out = on_every_runner(|p| {
        p.create(strings(["abc", "xj", "yj", "zj", "def"])).regex_replace_all(&re("[xyz]"), "new").collect()
    });
    assert_that(&out).contains_in_any_order(strings(["abc", "newj", "newj", "newj", "def"]));
    let out = on_every_runner(|p| {
        p.create(strings(["xjx", "yjy", "zjz"])).regex_replace_first(&re("[xyz]"), "new").collect()
    });
    assert_that(&out).contains_in_any_order(strings(["newjx", "newjy", "newjz"]));
    let out = on_every_runner(|p| {
        p.create(strings(["The  quick   brown fox jumps over    the lazy dog"]))
            .regex_split(&re(r"\s"), false)
            .collect()
    });
    assert_that(&out)
        .contains_in_any_order(strings(["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]));
    let out = on_every_runner(|p| p.create(strings(["a  b"])).regex_split(&re(r"\s"), true).collect());
    assert_that(&out).contains_in_any_order(strings(["a", "", "b"]));
    // A bad pattern is an error where the pipeline is built.
    let unclosed = String::from("(") + "unclosed";
    assert!(Pattern::new(&unclosed).is_err());
}

/// testInDifferentWindows: the same element in two windows is kept in each.
#[test]
fn deduplicate_is_per_window() {
    let events = [("k1", 0i64), ("k2", 10_000), ("k3", 20_000), ("maybedup", 59_000), ("k1", 60_000), ("k2", 70_000)];
    let out = on_every_runner(|p| {
        p.create(events.map(|(s, t)| (s.to_string(), t)))
            .with_timestamps(|(_, t)| at(*t))
            .map(|(s, _)| s)
            .window_into(WindowingStrategy::new(FixedWindows::of(secs(60)).unwrap()))
            .deduplicate(Dedup::default())
            .collect()
    });
    assert_that(&out)
        .in_window(Window::interval(0, 60_000))
        .contains_in_any_order(strings(["k1", "k2", "k3", "maybedup"]));
    assert_that(&out).in_window(Window::interval(60_000, 120_000)).contains_in_any_order(strings(["k1", "k2"]));
}

fn dedup_stream(
    between: impl Fn(TestStream<String>) -> TestStream<String>,
    after: impl Fn(TestStream<String>) -> TestStream<String>,
) -> TestStream<String> {
    let e = |s: &str, t: i64| (s.to_string(), at(t));
    let s = TestStream::new().advance_watermark_to(at(0)).add_elements([
        e("k1", 0),
        e("k2", 10_000),
        e("k3", 20_000),
        e("maybedup", 59_000),
    ]);
    let s = between(s).add_elements([e("k1", 30_000), e("k2", 40_000), e("k3", 50_000)]);
    after(s).add_elements([e("maybedup", 59_000)]).advance_watermark_to(Timestamp::MAX)
}

/// testEventTime: remembered for a minute of event time. The repeats of
/// k1–k3 come while the watermark is at 1 min (their first occurrences'
/// expiry timers at 1:00–1:20 have not fired: a timer fires once the
/// watermark is past it); the second `maybedup` comes after its expiry
/// fired, and is output again. Beam's test allows it once or twice (a
/// runner may process the element before the timer); every Weir runner
/// fires timers a watermark step releases before the next elements, so
/// twice.
#[test]
fn deduplicate_in_event_time_forgets_after_the_ttl() {
    let out = on_every_runner(|p| {
        p.test_stream(dedup_stream(
            |s| s.advance_watermark_to(at(60_000)),
            |s| s.advance_watermark_to(at(10 * 60_000 + 1_000)),
        ))
        .deduplicate(Dedup::event_time(secs(60)))
        .collect()
    });
    let mut got: Vec<String> = out.iter().map(|v| v.value.clone()).collect();
    got.sort();
    assert_eq!(got, strings(["k1", "k2", "k3", "maybedup", "maybedup"]));
    let repeats = out.iter().filter(|v| v.value == "maybedup").map(|v| v.timestamp).collect::<Vec<_>>();
    assert_eq!(repeats, vec![at(59_000), at(59_000)]);
}

/// testProcessingTime: remembered for 10 minutes of processing time
/// (Beam's default); the same reasoning as above gives `maybedup` twice.
#[test]
fn deduplicate_in_processing_time_forgets_after_the_ttl() {
    let out = on_every_runner(|p| {
        p.test_stream(dedup_stream(
            |s| s.advance_processing_time(secs(60)),
            |s| s.advance_processing_time(secs(10 * 60)),
        ))
        .deduplicate(Dedup::default())
        .collect()
    });
    let mut got: Vec<String> = out.iter().map(|v| v.value.clone()).collect();
    got.sort();
    assert_eq!(got, strings(["k1", "k2", "k3", "maybedup", "maybedup"]));
}

/// testKeyedValues: the first value of each key.
#[test]
fn deduplicate_keys_keeps_the_first_value_of_each_key() {
    let e = |k: &str, v: u32, t: i64| ((k.to_string(), v), at(t));
    let out = on_every_runner(|p| {
        p.test_stream(
            TestStream::new()
                .add_elements([e("k1", 3, 0), e("k2", 4, 10)])
                .add_elements([e("k1", 5, 20), e("k2", 6, 30), e("k3", 7, 40)])
                .advance_watermark_to(Timestamp::MAX),
        )
        .deduplicate_keys(Dedup::event_time(secs(60)))
        .collect()
    });
    assert_that(&out).contains_in_any_order([("k1".to_string(), 3), ("k2".into(), 4), ("k3".into(), 7)]);
}

/// Every runner: each key's values in batches of the given sizes, every
/// value in exactly one batch.
fn check_batches(
    build: impl Fn(&Pipeline) -> Collected<(String, Vec<u32>)>,
    mut expected_sizes: Vec<(Window, usize)>,
    values: &[(String, u32)],
) {
    expected_sizes.sort();
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let out = build(&p);
        p.run_with(&*runner()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = out.windowed();
        let mut sizes: Vec<(Window, usize)> = out.iter().map(|v| (v.window, v.value.1.len())).collect();
        sizes.sort();
        assert_eq!(sizes, expected_sizes, "{name}: batch sizes");
        let mut all: Vec<(String, u32)> =
            out.iter().flat_map(|v| v.value.1.iter().map(|x| (v.value.0.clone(), *x)).collect::<Vec<_>>()).collect();
        all.sort();
        let mut want = values.to_vec();
        want.sort();
        assert_eq!(all, want, "{name}: every value in exactly one batch");
    }
}

#[test]
fn batches_of_a_fixed_size_in_the_global_window() {
    let values: Vec<(String, u32)> = (0..10).map(|i| ("key".to_string(), i)).collect();
    let v = values.clone();
    check_batches(
        move |p| p.create(v.clone()).group_into_batches(Batching::of_size(5)).collect(),
        vec![(Window::Global, 5); 2],
        &values,
    );
    // Uneven: 12 values of one key and 3 of another, in batches of 5.
    let mut values: Vec<(String, u32)> = (0..12).map(|i| ("a".to_string(), i)).collect();
    values.extend((0..3).map(|i| ("b".to_string(), i)));
    let v = values.clone();
    check_batches(
        move |p| p.create(v.clone()).group_into_batches(Batching::of_size(5)).collect(),
        vec![(Window::Global, 5), (Window::Global, 5), (Window::Global, 2), (Window::Global, 3)],
        &values,
    );
}

/// testInStreamingMode: in fixed windows, a window's remainder is emitted
/// when its end passes, never mixed with another window's values.
#[test]
fn batches_never_span_windows() {
    let values: Vec<(String, u32)> = (0..7).map(|i| ("k".to_string(), i)).collect();
    let v = values.clone();
    check_batches(
        move |p| {
            p.create(v.clone())
                .with_timestamps(|(_, i)| at(if *i < 4 { 1_000 } else { 11_000 }))
                .window_into(WindowingStrategy::new(FixedWindows::of(secs(10)).unwrap()))
                .group_into_batches(Batching::of_size(3))
                .collect()
        },
        vec![(Window::interval(0, 10_000), 3), (Window::interval(0, 10_000), 1), (Window::interval(10_000, 20_000), 3)],
        &values,
    );
}

/// testBufferingTimerInGlobalWindow: a batch that waited longer than the
/// buffering limit (processing time) is emitted before it is full.
#[test]
fn a_batch_is_emitted_once_it_waited_the_buffering_limit() {
    let e = |v: u32| (("k".to_string(), v), at(v as i64));
    let stream = || {
        TestStream::new()
            .add_elements([e(0), e(1), e(2)])
            .advance_processing_time(secs(20))
            .add_elements([e(3), e(4)])
            .advance_watermark_to(Timestamp::MAX)
    };
    let values: Vec<(String, u32)> = (0..5).map(|i| ("k".to_string(), i)).collect();
    check_batches(
        move |p| p.test_stream(stream()).group_into_batches(Batching::of_size(5).max_buffering(secs(10))).collect(),
        vec![(Window::Global, 3), (Window::Global, 2)],
        &values,
    );
    // Without the limit: one batch of 5.
    check_batches(
        move |p| p.test_stream(stream()).group_into_batches(Batching::of_size(5)).collect(),
        vec![(Window::Global, 5)],
        &values,
    );
}

/// Deduplicate's processing-time expiry holds no watermark back: a window
/// downstream fires when the watermark passes it, not a TTL later. Here an
/// element for [0, 10) that arrives after the watermark passed 10 is late
/// (dropped, allowed lateness 0); were the watermark held at the first
/// element's time until its TTL (10 min of processing time), it would be
/// counted on time.
#[test]
fn deduplicate_holds_no_watermark_back() {
    let e = |s: &str, t: i64| (s.to_string(), at(t));
    let out = on_every_runner(|p| {
        p.test_stream(
            TestStream::new()
                .add_elements([e("a", 1), e("b", 2)])
                .advance_watermark_to(at(20))
                .add_elements([e("c", 5)])
                .advance_watermark_to(Timestamp::MAX),
        )
        .deduplicate(Dedup::default())
        .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap()))
        .combine_globally_without_defaults(Count)
        .collect()
    });
    assert_that(&out).in_window(Window::interval(0, 10)).contains_in_any_order([2]);
}
