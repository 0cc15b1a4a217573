//! Every pipeline here runs on the reference runner and on the Timely
//! runner with 1 and 4 threads; their outputs must be equal as multisets of
//! (value, timestamp, window, pane), and equal to what the test expects.
//!
//! Where the model lets runners differ: count-based triggers and late
//! firings depend on bundling and on arrival order. The pipelines here keep
//! the arrival order per key the same on every runner — a TestStream plays on
//! one worker and each scripted `add_elements` is one batch, which the Timely
//! runner splits by key without reordering — so even those tests compare
//! exactly. Runs whose input comes from several workers (`create`) use the
//! default trigger without late data, which does not depend on order.

use weir::prelude::*;

mod common;
use common::{runners, ts};

/// Build the pipeline once per runner, run it, and check every runner gave
/// the same multiset. Returns the (sorted) output.
fn on_all_runners<T: Data + Ord>(build: impl FnMut(&Pipeline) -> Collected<T>) -> Vec<WindowedValue<T>> {
    weir::testing::on_every_runner(build)
}

fn fixed(ms: i64) -> WindowingStrategy {
    WindowingStrategy::new(FixedWindows::of(Duration::from_millis(ms)).unwrap())
}

fn values<T: Clone>(v: &[WindowedValue<T>]) -> Vec<T> {
    v.iter().map(|x| x.value.clone()).collect()
}

#[test]
fn word_count() {
    let out = on_all_runners(|p| {
        p.create(["the quick fox", "the lazy dog", "the end"].map(String::from))
            .flat_map(|line: String| line.split_whitespace().map(String::from).collect::<Vec<_>>())
            .map(|w| (w, ()))
            .count_per_key()
            .collect()
    });
    let mut got = values(&out);
    got.sort();
    let expect: Vec<(String, u64)> = [("dog", 1), ("end", 1), ("fox", 1), ("lazy", 1), ("quick", 1), ("the", 3)]
        .map(|(w, n)| (w.into(), n))
        .to_vec();
    assert_eq!(got, expect);
    for v in &out {
        assert_eq!((v.window, v.pane.timing, v.pane.is_last), (Window::Global, Timing::OnTime, true));
        assert_eq!(v.timestamp, Timestamp::END_OF_GLOBAL_WINDOW);
    }
}

#[test]
fn fixed_window_sums() {
    let out = on_all_runners(|p| {
        p.create_timestamped((0..1000u64).map(|i| ((i % 7, i), ts(i as i64 * 10))))
            .window_into(fixed(1000))
            .combine_per_key(Sum::new())
            .collect()
    });
    // 10 windows x 7 keys, each sum checked against a direct computation.
    assert_eq!(out.len(), 70);
    for v in &out {
        let w = v.window.as_interval().unwrap();
        let (k, sum) = v.value;
        let expect: u64 = (0..1000u64)
            .filter(|i| i % 7 == k && (i * 10) as i64 >= w.start.millis() && ((i * 10) as i64) < w.end.millis())
            .sum();
        assert_eq!(sum, expect);
        assert_eq!(v.timestamp, v.window.max_timestamp());
        assert_eq!((v.pane.timing, v.pane.is_first, v.pane.is_last), (Timing::OnTime, true, true));
    }
}

#[test]
fn sliding_windows_group_by_key() {
    let out = on_all_runners(|p| {
        p.create_timestamped((0..200i64).map(|i| (("k".to_string(), i), ts(i))))
            .window_into(WindowingStrategy::new(
                SlidingWindows::new(Duration::from_millis(50), Duration::from_millis(20), Duration::ZERO).unwrap(),
            ))
            .group_by_key()
            .map(|(k, mut vs): (String, Vec<i64>)| {
                vs.sort();
                (k, vs)
            })
            .collect()
    });
    // windows start at -40, -20, 0, ..., 180: 12 windows
    assert_eq!(out.len(), 12);
    for v in &out {
        let w = v.window.as_interval().unwrap();
        let expect: Vec<i64> = (w.start.millis().max(0)..w.end.millis().min(200)).collect();
        assert_eq!(v.value.1, expect);
    }
}

#[test]
fn sessions_per_key() {
    let out = on_all_runners(|p| {
        let events = [("a", 1), ("a", 5), ("a", 30), ("b", 2), ("b", 14), ("b", 25), ("a", 12)];
        p.create_timestamped(events.map(|(k, t)| ((k.to_string(), t), ts(t))))
            .window_into(WindowingStrategy::new(Sessions::with_gap(Duration::from_millis(10)).unwrap()))
            .combine_per_key(Count)
            .collect()
    });
    let mut got: Vec<(String, Window, u64)> = out.iter().map(|v| (v.value.0.clone(), v.window, v.value.1)).collect();
    got.sort();
    // a: 1, 5, 12 chain into [1, 22); 30 alone. b: 2, 14, 25 are more than the gap apart.
    assert_eq!(
        got,
        vec![
            ("a".into(), Window::interval(1, 22), 3),
            ("a".into(), Window::interval(30, 40), 1),
            ("b".into(), Window::interval(2, 12), 1),
            ("b".into(), Window::interval(14, 24), 1),
            ("b".into(), Window::interval(25, 35), 1),
        ]
    );
}

fn scores_stream() -> TestStream<(String, i64)> {
    let e = |team: &str, score: i64, t: i64| ((team.to_string(), score), ts(t));
    TestStream::new()
        .add_elements([e("blue", 5, 26), e("red", 6, 40)])
        .add_elements([e("blue", 7, 146)])
        .advance_watermark_to(ts(120))
        .add_elements([e("blue", 3, 219), e("red", 2, 185)])
        .add_elements([e("blue", 9, 85)]) // late for [0,120)
        .advance_watermark_to(ts(240))
        .add_elements([e("blue", 1, 10)]) // late again
        .advance_watermark_to(ts(400)) // past GC of [0,120) with lateness 200
        .add_elements([e("blue", 100, 11)]) // expired: dropped
}

#[test]
fn early_on_time_and_late_panes_in_every_mode() {
    for mode in [AccumulationMode::Discarding, AccumulationMode::Accumulating] {
        let out = on_all_runners(|p| {
            p.test_stream(scores_stream())
                .window_into(
                    fixed(120)
                        .trigger(
                            Trigger::after_watermark()
                                .with_early_firings(Trigger::after_count(1))
                                .with_late_firings(Trigger::after_count(1)),
                        )
                        .accumulation(mode)
                        .allowed_lateness(Duration::from_millis(200)),
                )
                .combine_per_key(Sum::new())
                .collect()
        });
        let mut blue0: Vec<(i64, Timing, i64)> = out
            .iter()
            .filter(|v| v.value.0 == "blue" && v.window == Window::interval(0, 120))
            .map(|v| (v.pane.index, v.pane.timing, v.value.1))
            .collect();
        blue0.sort();
        let expect = match mode {
            AccumulationMode::Discarding => {
                vec![(0, Timing::Early, 5), (1, Timing::OnTime, 0), (2, Timing::Late, 9), (3, Timing::Late, 1)]
            }
            _ => vec![(0, Timing::Early, 5), (1, Timing::OnTime, 5), (2, Timing::Late, 14), (3, Timing::Late, 15)],
        };
        assert_eq!(blue0, expect, "{mode:?}");
    }
}

#[test]
fn late_data_output_and_counters() {
    let mut dropped_counts = Vec::new();
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let (sums, late) = p
            .test_stream(scores_stream())
            .window_into(fixed(120).allowed_lateness(Duration::from_millis(200)).late_data_output(true))
            .group_by_key_with_late();
        let late = late.collect();
        let _ = sums.collect();
        let result = p.run_with(&*runner()).unwrap();
        let late: Vec<(String, i64)> = late.values();
        assert_eq!(late, vec![("blue".to_string(), 100)], "{name}");
        let c = result.counters("GroupByKey").unwrap();
        dropped_counts.push((c.dropped_expired, c.dropped_closed, c.elements_in));
    }
    assert!(dropped_counts.iter().all(|c| *c == (1, 0, 8)), "{dropped_counts:?}");
}

#[test]
fn retracting_mode_emits_retractions() {
    let out = on_all_runners(|p| {
        p.test_stream(scores_stream())
            .window_into(
                fixed(120)
                    .trigger(Trigger::after_watermark().with_late_firings(Trigger::after_count(1)))
                    .accumulation(AccumulationMode::AccumulatingAndRetracting)
                    .allowed_lateness(Duration::from_millis(200)),
            )
            .combine_per_key_retracting(Sum::new())
            .collect()
    });
    let blue0: Vec<Retractable<i64>> = out
        .iter()
        .filter(|v| v.value.0 == "blue" && v.window == Window::interval(0, 120))
        .map(|v| v.value.1.clone())
        .collect();
    // on time 5; late 14 (retract 5); late 15 (retract 14)
    let mut expect = vec![
        Retractable::Add(5),
        Retractable::Retract(5),
        Retractable::Add(14),
        Retractable::Retract(14),
        Retractable::Add(15),
    ];
    expect.sort();
    let mut got = blue0;
    got.sort();
    assert_eq!(got, expect);
}

#[test]
fn two_groupings_in_a_row() {
    // Per-key sums per window, then the total of those sums per window:
    // the second grouping sees the first one's panes and output watermark.
    let out = on_all_runners(|p| {
        p.create_timestamped((0..300u64).map(|i| ((i % 5, i), ts(i as i64))))
            .window_into(fixed(100))
            .combine_per_key(Sum::new())
            .map(|(_, s): (u64, u64)| ((), s))
            .combine_per_key(Sum::new())
            .values()
            .collect()
    });
    let got: Vec<(Window, u64)> = out.iter().map(|v| (v.window, v.value)).collect();
    let w = |s: i64| Window::interval(s, s + 100);
    assert_eq!(got, vec![(w(0), (0..100).sum()), (w(100), (100..200).sum()), (w(200), (200..300).sum())]);
}

#[test]
fn flatten_partition_and_co_group_by_key() {
    let out = on_all_runners(|p| {
        let orders = p.create((0..20u64).map(|i| (i % 4, format!("order{i}"))));
        let parts = orders.partition(2, |(k, _), n| (*k as usize) % n);
        let merged = parts[0].flatten_with(&[parts[1].clone()]);
        let customers = p.create((0..4u64).map(|k| (k, format!("customer{k}"))));
        merged
            .co_group_by_key(&customers)
            .map(|(k, (mut orders, names)): (u64, (Vec<String>, Vec<String>))| {
                orders.sort();
                (k, orders.len(), names)
            })
            .collect()
    });
    let got = values(&out);
    assert_eq!(got.len(), 4);
    for (k, n, names) in got {
        assert_eq!(n, 5);
        assert_eq!(names, vec![format!("customer{k}")]);
    }
}

#[derive(Clone)]
struct ParseNumbers {
    errors: OutputTag<String>,
}

impl DoFn for ParseNumbers {
    type In = String;
    type Out = i64;
    fn process(&mut self, cx: &mut ProcessContext<'_, String, i64>) {
        match cx.element().parse::<i64>() {
            Ok(n) => cx.output(n),
            Err(_) => {
                let bad = cx.element().clone();
                cx.output_to(&self.errors, bad)
            }
        }
    }
}

#[test]
fn par_do_with_tagged_outputs_and_combine_globally() {
    let errors: OutputTag<String> = OutputTag::new("errors");
    let mut bad = None;
    let out = on_all_runners(|p| {
        let lines = p.create(["1", "2", "x", "40", "y"].map(String::from));
        let outs = lines.par_do_with_outputs(ParseNumbers { errors: errors.clone() }, &[errors.erased()]);
        bad = Some(outs.get(&errors).unwrap().collect());
        outs.main.combine_globally(Sum::new()).collect()
    });
    assert_eq!(values(&out), vec![43]);
    let mut b = bad.unwrap().values();
    b.sort();
    assert_eq!(b, vec!["x".to_string(), "y".to_string()]);
}

#[test]
fn bad_output_timestamps_fail_with_the_transform_name() {
    for (name, runner) in runners() {
        let p = Pipeline::new();
        p.create_timestamped([(1u8, ts(100))]).with_timestamps(|_| ts(50)).named("Rewind").collect();
        let err = p.run_with(&*runner()).unwrap_err().to_string();
        assert!(err.contains("'Rewind'") && err.contains("no earlier than"), "{name}: {err}");
        let p = Pipeline::new();
        p.create([1u8]).with_timestamps(|_| Timestamp::MAX).named("TooLate").collect();
        let err = p.run_with(&*runner()).unwrap_err().to_string();
        assert!(err.contains("'TooLate'") && err.contains("outside the valid range"), "{name}: {err}");
    }
}

#[test]
fn construction_errors_name_the_transform() {
    let p = Pipeline::new();
    p.create([(1u8, 2u8)])
        .window_into(fixed(10).trigger(Trigger::after_count(3)).allowed_lateness(Duration::from_millis(5)))
        .group_by_key()
        .collect();
    let err = p.run_with(&ReferenceRunner::default()).unwrap_err().to_string();
    assert!(err.starts_with("transform 'WindowInto'") && err.contains("allow_data_loss"), "{err}");

    let p = Pipeline::new();
    p.create([(1u8, 2u8)])
        .window_into(fixed(10).accumulation(AccumulationMode::AccumulatingAndRetracting))
        .group_by_key()
        .collect();
    let err = p.run_with(&ReferenceRunner::default()).unwrap_err().to_string();
    assert!(err.contains("'GroupByKey'") && err.contains("group_by_key_retracting"), "{err}");
}

#[derive(Clone)]
struct Enrich {
    names: SideInput<(u64, String)>,
    total: SideInput<u64>,
}

impl DoFn for Enrich {
    type In = (u64, u64);
    type Out = (String, u64, u64);
    fn process(&mut self, cx: &mut ProcessContext<'_, (u64, u64), (String, u64, u64)>) {
        let (country, amount) = *cx.element();
        let names = cx.side_multimap(&self.names);
        let name = names.get(&country).and_then(|v| v.first()).cloned().unwrap_or_else(|| "?".into());
        let total = match cx.side_singleton(&self.total) {
            Ok(t) => *t,
            Err(e) => panic!("{e}"),
        };
        cx.output((name, amount, total));
    }
}

#[test]
fn side_inputs_multimap_and_singleton() {
    let out = on_all_runners(|p| {
        let names = p.create([(1u64, "France".to_string()), (2, "Japan".to_string())]).as_side_input();
        let sales = p.create((0..30u64).map(|i| (1 + i % 3, i)));
        let total = sales.map(|(_, a)| a).combine_globally(Sum::new()).as_side_input();
        sales
            .par_do_with_side_inputs(
                Enrich { names: names.clone(), total: total.clone() },
                &[names.erased(), total.erased()],
                &[],
            )
            .main
            .collect()
    });
    assert_eq!(out.len(), 30);
    for v in &out {
        let (name, amount, total) = &v.value;
        assert_eq!(*total, (0..30).sum::<u64>());
        let expect = match 1 + amount % 3 {
            1 => "France",
            2 => "Japan",
            _ => "?",
        };
        assert_eq!(name, expect);
    }
}

#[derive(Clone)]
struct PerWindowShare {
    totals: SideInput<u64>,
}

impl DoFn for PerWindowShare {
    type In = (String, u64);
    type Out = (String, u64, u64);
    fn process(&mut self, cx: &mut ProcessContext<'_, (String, u64), (String, u64, u64)>) {
        let (k, v) = cx.element().clone();
        let total = cx.side_singleton(&self.totals).copied().unwrap_or(0);
        cx.output((k, v, total));
    }
}

#[test]
fn windowed_side_input_waits_for_its_window() {
    let out = on_all_runners(|p| {
        let fixed10 = || WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap());
        let events = p.create_timestamped((0..40u64).map(|i| (("k".to_string(), i), ts(i as i64))));
        let windowed = events.window_into(fixed10());
        let totals = windowed.map(|(_, v)| v).combine_globally_without_defaults(Sum::new()).as_side_input();
        windowed
            .combine_per_key(Count)
            .par_do_with_side_inputs(PerWindowShare { totals: totals.clone() }, &[totals.erased()], &[])
            .main
            .collect()
    });
    let got: Vec<(Window, u64, u64)> = out.iter().map(|v| (v.window, v.value.1, v.value.2)).collect();
    let w = |s: i64| Window::interval(s, s + 10);
    assert_eq!(
        got,
        vec![(w(0), 10, 45), (w(10), 10, 145), (w(20), 10, 245), (w(30), 10, 345)],
        "each window reads the side input's total of the same window"
    );
}

#[test]
fn singleton_side_input_with_several_values_fails_clearly() {
    #[derive(Clone)]
    struct Read(SideInput<u8>);
    impl DoFn for Read {
        type In = u8;
        type Out = u8;
        fn process(&mut self, cx: &mut ProcessContext<'_, u8, u8>) {
            match cx.side_singleton(&self.0) {
                Ok(v) => cx.output(*v),
                Err(e) => cx.fail(e),
            }
        }
    }
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let side = p.create([1u8, 2]).as_side_input();
        p.create([0u8])
            .par_do_with_side_inputs(Read(side.clone()), &[side.erased()], &[])
            .main
            .named("ReadSide")
            .collect();
        let err = p.run_with(&*runner()).unwrap_err().to_string();
        assert!(err.contains("'ReadSide'") && err.contains("has 2 values in window GlobalWindow"), "{name}: {err}");
    }
}

/// Two-minute windows, early panes each minute of processing time, late
/// panes per late element, accumulating, 10 minutes of lateness.
fn streaming_102_strategy() -> WindowingStrategy {
    WindowingStrategy::new(FixedWindows::of(Duration::from_mins(2)).unwrap())
        .trigger(
            Trigger::after_watermark()
                .with_early_firings(
                    Trigger::after_processing_time().aligned_to(Duration::from_mins(1), Timestamp::from_millis(0)),
                )
                .with_late_firings(Trigger::after_count(1)),
        )
        .accumulation(AccumulationMode::Accumulating)
        .allowed_lateness(Duration::from_mins(10))
}

#[test]
fn processing_time_early_firings_on_every_runner() {
    // Streaming 102: early panes every minute of processing time (aligned),
    // on-time panes, late panes per late score.
    let m = |mins: i64, secs: i64| ts((mins * 60 + secs) * 1000);
    let e = |team: &str, score: i64, t: Timestamp| ((team.to_string(), score), t);
    let stream = TestStream::new()
        .advance_processing_time(Duration::from_secs(5 * 60 + 19)) // 12:05:19
        .add_elements([e("blue", 5, m(0, 26))])
        .advance_processing_time(Duration::from_secs(20)) // 12:05:39
        .add_elements([e("blue", 7, m(2, 26))])
        .advance_processing_time(Duration::from_secs(30)) // 12:06:09: first early firing at 12:06
        .add_elements([e("blue", 3, m(3, 39))])
        .advance_watermark_to(m(2, 0))
        .advance_processing_time(Duration::from_secs(60)) // 12:07:09
        .add_elements([e("blue", 9, m(1, 25))]) // late for [12:00, 12:02)
        .advance_watermark_to(m(4, 0));
    let out = on_all_runners(|p| {
        p.test_stream(stream.clone()).window_into(streaming_102_strategy()).combine_per_key(Sum::new()).collect()
    });
    let mut got: Vec<(Window, i64, Timing, i64)> =
        out.iter().map(|v| (v.window, v.pane.index, v.pane.timing, v.value.1)).collect();
    got.sort();
    let w = |s: i64| Window::interval(s * 60_000, (s + 2) * 60_000);
    // Pane-aware assertions (Beam's PAssert) on the last run's output.
    let p = Pipeline::new();
    let sums = p
        .test_stream(stream.clone())
        .window_into(streaming_102_strategy())
        .combine_per_key(Sum::new())
        .values()
        .collect();
    p.run_with(&TimelyRunner::threads(2)).unwrap();
    assert_eq!(sums.early_panes(w(0)), vec![5]);
    assert_eq!(sums.on_time_pane(w(0)), Some(5));
    assert_eq!(sums.late_panes(w(0)), vec![14]);
    assert_eq!(sums.early_panes(w(2)), vec![7, 10]);
    assert_eq!(sums.final_pane(w(2)), None, "with late firings, no pane of a window is final before GC");
    assert_eq!(
        got,
        vec![
            (w(0), 0, Timing::Early, 5),   // processing time passed 12:06
            (w(0), 1, Timing::OnTime, 5),  // watermark passed 12:02
            (w(0), 2, Timing::Late, 14),   // the late 9
            (w(2), 0, Timing::Early, 7),   // the 7 (arrived 12:05:39) when processing time passed 12:06
            (w(2), 1, Timing::Early, 10),  // 7 + 3 (arrived 12:06:09) when it passed 12:07
            (w(2), 2, Timing::OnTime, 10), // watermark passed 12:04
        ]
    );
}

/// Beam's `Combine.globally` in the global window: an empty input gives the
/// combiner's default (`Count` → 0, `Sum` → 0); a non-empty one gives only
/// its result.
#[test]
fn combine_globally_gives_the_default_for_empty_global_input() {
    let out = on_all_runners(|p| p.create(Vec::<u64>::new()).combine_globally(Count).collect());
    assert_eq!(values(&out), vec![0]);
    assert_eq!((out[0].window, out[0].timestamp), (Window::Global, Timestamp::MIN));
    let out = on_all_runners(|p| p.create(Vec::<u64>::new()).combine_globally(Sum::new()).collect());
    assert_eq!(values(&out), vec![0u64]);
    let out = on_all_runners(|p| p.create(vec![3u64, 4]).combine_globally(Sum::new()).collect());
    assert_eq!(values(&out), vec![7u64]);
    assert_eq!(out[0].pane, PaneInfo::on_time(0, 0, true));
}

#[test]
fn combine_globally_without_defaults_gives_nothing_for_empty_input() {
    let out = on_all_runners(|p| p.create(Vec::<u64>::new()).combine_globally_without_defaults(Count).collect());
    assert!(out.is_empty());
}

#[test]
fn combine_globally_with_defaults_on_fixed_windows_is_refused() {
    let p = Pipeline::new();
    p.create_timestamped([(1u64, ts(1))]).window_into(fixed(10)).combine_globally(Count).collect();
    let err = p.run_with(&ReferenceRunner::default()).unwrap_err().to_string();
    assert!(err.contains("combine_globally_without_defaults"), "{err}");
}

/// A multimap side input is built once per side-input window, not per
/// element: every element of a window reads the same map.
#[test]
fn multimap_side_input_is_built_once_per_window() {
    #[derive(Clone)]
    struct MapAddress(SideInput<(u64, u64)>);
    impl DoFn for MapAddress {
        type In = u64;
        type Out = usize;
        fn process(&mut self, cx: &mut ProcessContext<'_, u64, usize>) {
            let m = cx.side_multimap(&self.0);
            assert_eq!(m.get(&1).map(Vec::len), Some(1000));
            let address = m as *const _ as usize;
            cx.output(address);
        }
    }
    let p = Pipeline::new();
    let side = p.create((0..1000u64).map(|i| (1, i))).as_side_input();
    let out =
        p.create(0..100u64).par_do_with_side_inputs(MapAddress(side.clone()), &[side.erased()], &[]).main.collect();
    p.run_with(&ReferenceRunner::default()).unwrap();
    let mut addresses = out.values();
    addresses.dedup();
    assert_eq!(addresses.len(), 1, "one map for 100 elements");
}
