//! Randomized runner equivalence: random elements, timestamps, arrival
//! orders, watermark schedules and processing-time schedules (scripted as a
//! TestStream) through the reference runner and the Timely runner with 1
//! and 4 threads.
//!
//! A TestStream plays on one worker, one step at a time: every runner
//! processes each step (a bundle, a watermark advance or a processing-time
//! advance) completely before the next, and each scripted bundle stays one
//! batch, split by key without reordering. So per-key bundling, arrival
//! order, the watermarks and the processing time every element and timer
//! sees are the same on every runner, and every pane must be identical in
//! every field — for every trigger, processing-time triggers included, and
//! every accumulation mode. No difference is allowed.

use proptest::prelude::*;
use weir::prelude::*;

/// `n` cases, or more with `WEIR_PROPTEST_CASES` for a deeper search.
fn cases(n: u32) -> u32 {
    std::env::var("WEIR_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(n).max(n)
}

#[derive(Clone, Debug)]
enum Step {
    Elements(Vec<(u8, i64)>),
    Watermark(i64),
    ProcessingTime(i64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::collection::vec((0u8..4, -10i64..200), 1..6).prop_map(Step::Elements),
            1 => (0i64..40).prop_map(Step::Watermark),
            1 => (1i64..30).prop_map(Step::ProcessingTime),
        ],
        1..15,
    )
}

fn window_fn() -> impl Strategy<Value = AnyWindowFn> {
    let ms = Duration::from_millis;
    prop_oneof![
        (5i64..50).prop_map(move |s| FixedWindows::of(ms(s)).unwrap().into()),
        (1i64..10, 10i64..40).prop_map(move |(p, s)| SlidingWindows::new(ms(s), ms(p), Duration::ZERO).unwrap().into()),
        (3i64..20).prop_map(move |g| Sessions::with_gap(ms(g)).unwrap().into()),
        Just(AnyWindowFn::Global(GlobalWindows)),
    ]
}

fn processing_time() -> impl Strategy<Value = Trigger> {
    let ms = Duration::from_millis;
    prop_oneof![
        (0i64..20).prop_map(move |d| Trigger::after_processing_time().plus_delay(ms(d))),
        (1i64..20, 0i64..10)
            .prop_map(move |(p, o)| Trigger::after_processing_time().aligned_to(ms(p), Timestamp::from_millis(o))),
        (0i64..10, 2i64..20).prop_map(move |(d, p)| Trigger::after_processing_time()
            .plus_delay(ms(d))
            .aligned_to(ms(p), Timestamp::from_millis(0))),
    ]
}

fn trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        Just(Trigger::Default),
        processing_time(),
        processing_time().prop_map(Trigger::repeatedly),
        processing_time().prop_map(|t| Trigger::after_watermark().with_early_firings(t)),
        (processing_time(), 1u64..3).prop_map(|(t, l)| Trigger::after_watermark()
            .with_early_firings(t)
            .with_late_firings(Trigger::after_count(l))),
        (processing_time(), 1u64..4)
            .prop_map(|(t, n)| Trigger::repeatedly(Trigger::after_any([Trigger::after_count(n), t]))),
        (processing_time(), 1u64..4)
            .prop_map(|(t, n)| Trigger::after_watermark()
                .with_early_firings(Trigger::after_all([Trigger::after_count(n), t]))),
        (processing_time(), 1u64..4).prop_map(|(t, n)| Trigger::repeatedly(t).or_finally(Trigger::after_count(n))),
        (1u64..4).prop_map(|n| Trigger::after_watermark().with_early_firings(Trigger::after_count(n))),
        (1u64..3, 1u64..3).prop_map(|(e, l)| Trigger::after_watermark()
            .with_early_firings(Trigger::after_count(e))
            .with_late_firings(Trigger::after_count(l))),
        (1u64..4).prop_map(|n| Trigger::repeatedly(Trigger::after_count(n))),
        (1u64..4).prop_map(Trigger::after_count),
        Just(Trigger::after_each([Trigger::after_count(2), Trigger::after_watermark()])),
    ]
}

fn script(steps: &[Step]) -> TestStream<(u8, i64)> {
    let mut s = TestStream::new();
    let mut wm = -20;
    for step in steps {
        s = match step {
            Step::Elements(es) => s.add_elements(es.iter().map(|&(k, t)| ((k, t), Timestamp::from_millis(t)))),
            Step::Watermark(d) => {
                wm += d;
                s.advance_watermark_to(Timestamp::from_millis(wm))
            }
            Step::ProcessingTime(d) => s.advance_processing_time(Duration::from_millis(*d)),
        };
    }
    s
}

/// Every pane, in every field, as a sorted list.
fn summarize(panes: &[WindowedValue<(u8, Vec<i64>)>]) -> Vec<String> {
    let mut v: Vec<String> = panes.iter().map(|p| format!("{p:?}")).collect();
    v.sort();
    v
}

fn run_everywhere(strategy: &WindowingStrategy, steps: &[Step]) -> Result<(), TestCaseError> {
    let runners: Vec<(&str, Box<dyn weir::pipeline::Runner>)> = vec![
        ("reference", Box::new(ReferenceRunner::default())),
        ("reference, recovering every step", Box::new(ReferenceRunner::recovering())),
        ("timely x1", Box::new(TimelyRunner::threads(1))),
        ("timely x4", Box::new(TimelyRunner::threads(4))),
    ];
    let mut first: Option<Vec<String>> = None;
    for (name, runner) in runners {
        let p = Pipeline::new();
        let out = p
            .test_stream(script(steps))
            .window_into(strategy.clone())
            .group_by_key()
            .map(|(k, mut v): (u8, Vec<i64>)| {
                v.sort();
                (k, v)
            })
            .collect();
        p.run_with(&*runner).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
        let got = summarize(&out.windowed());
        match &first {
            None => first = Some(got),
            Some(f) => prop_assert_eq!(&got, f, "{} differs from the reference runner", name),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn default_trigger_accumulating(wfn in window_fn(), lateness in prop_oneof![Just(0i64), 1i64..50], steps in steps()) {
        let strategy = WindowingStrategy::new(wfn)
            .accumulation(AccumulationMode::Accumulating)
            .allowed_lateness(Duration::from_millis(lateness));
        run_everywhere(&strategy, &steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    #[test]
    fn any_trigger_and_mode(
        wfn in window_fn(),
        trig in trigger(),
        discarding in any::<bool>(),
        lateness in prop_oneof![Just(0i64), 1i64..50],
        steps in steps(),
    ) {
        let strategy = WindowingStrategy::new(wfn)
            .trigger(trig)
            .accumulation(if discarding { AccumulationMode::Discarding } else { AccumulationMode::Accumulating })
            .allowed_lateness(Duration::from_millis(lateness))
            .allow_data_loss(true);
        run_everywhere(&strategy, &steps)?;
    }

    /// Input created on every worker (arrival order differs between runs):
    /// the default trigger without late data does not depend on it.
    #[test]
    fn multi_producer_default_trigger(wfn in window_fn(), items in prop::collection::vec((0u8..5, 0i64..500), 0..200)) {
        // Timely with checkpoints every millisecond: epochs cut the input
        // at arbitrary points, and the panes must not change.
        let dir = tempfile::tempdir().unwrap();
        let checkpointed = TimelyRunner::threads(4)
            .with_checkpoints(weir::CheckpointConfig::local(dir.path(), std::time::Duration::from_millis(1)));
        let runners: Vec<Box<dyn weir::pipeline::Runner>> = vec![
            Box::new(ReferenceRunner::default()),
            Box::new(TimelyRunner::threads(4)),
            Box::new(ReferenceRunner::recovering()),
            Box::new(checkpointed),
        ];
        let mut results = Vec::new();
        for runner in runners {
            let p = Pipeline::new();
            let out = p
                .create_timestamped(items.iter().map(|&(k, t)| ((k, t), Timestamp::from_millis(t))))
                .window_into(WindowingStrategy::new(wfn.clone()))
                .combine_per_key(Sum::new())
                .collect();
            p.run_with(&*runner).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut got = out.windowed();
            got.sort();
            results.push(got);
        }
        prop_assert_eq!(&results[0], &results[1]);
        prop_assert_eq!(&results[0], &results[2]);
        prop_assert_eq!(&results[0], &results[3]);
    }
}
