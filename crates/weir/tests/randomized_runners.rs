//! Randomized runner equivalence: random elements, timestamps, arrival
//! orders and watermark schedules (scripted as a TestStream) through the
//! reference runner and the Timely runner with 1 and 4 threads.
//!
//! - Default trigger, accumulating: identical panes, every field.
//! - Random triggers and modes: a TestStream plays on one worker and each
//!   scripted bundle stays one batch, so per-key arrival order and bundling
//!   are the same on every runner, and an element is processed at the input
//!   watermark it was sent at. What must then agree: every EARLY pane
//!   (value, timestamp, window, index), and the final contents of every key
//!   and window (the union of its panes in discarding mode, its last pane in
//!   accumulating mode). What may differ, as the model allows: panes after
//!   the end of the window whose existence or timing depends on how the
//!   stage's output watermark stepped between the end-of-window and the
//!   garbage-collection timers (one step per source poll on the reference
//!   runner; steps merged or split by progress tracking on Timely): whether
//!   a closing pane is ON_TIME or LATE, and whether a closing pane with no
//!   new elements is emitted at all (FIRE_ALWAYS on-time behaviour).

use proptest::prelude::*;
use weir::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Elements(Vec<(u8, i64)>),
    Watermark(i64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::collection::vec((0u8..4, -10i64..200), 1..6).prop_map(Step::Elements),
            1 => (0i64..40).prop_map(Step::Watermark),
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

fn trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        Just(Trigger::Default),
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
        };
    }
    s
}

/// The output as compared: every pane when `exact`, else the EARLY panes and
/// the final contents of every key and window.
fn summarize(panes: &[WindowedValue<(u8, Vec<i64>)>], exact: bool, discarding: bool) -> Vec<String> {
    if exact {
        let mut v: Vec<String> = panes.iter().map(|p| format!("{p:?}")).collect();
        v.sort();
        return v;
    }
    let mut early: Vec<String> =
        panes.iter().filter(|p| p.pane.timing == Timing::Early).map(|p| format!("early {p:?}")).collect();
    let mut finals: std::collections::BTreeMap<(u8, Window), (i64, Vec<i64>)> = Default::default();
    for p in panes {
        let e = finals.entry((p.value.0, p.window)).or_insert((-1, Vec::new()));
        if discarding {
            e.1.extend(p.value.1.iter().copied());
        } else if p.pane.index > e.0 {
            *e = (p.pane.index, p.value.1.clone());
        }
    }
    early.sort();
    early.extend(finals.into_iter().map(|((k, w), (_, mut vs))| {
        vs.sort();
        format!("final {k} {w:?} {vs:?}")
    }));
    early
}

fn run_everywhere(strategy: &WindowingStrategy, steps: &[Step], exact: bool) -> Result<(), TestCaseError> {
    let discarding = strategy.mode == AccumulationMode::Discarding;
    let runners: Vec<(&str, Box<dyn weir::pipeline::Runner>)> = vec![
        ("reference", Box::new(ReferenceRunner::default())),
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
        let got = summarize(&out.windowed(), exact, discarding);
        match &first {
            None => first = Some(got),
            Some(f) => prop_assert_eq!(&got, f, "{} differs from the reference runner", name),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn default_trigger_accumulating(wfn in window_fn(), lateness in prop_oneof![Just(0i64), 1i64..50], steps in steps()) {
        let strategy = WindowingStrategy::new(wfn)
            .accumulation(AccumulationMode::Accumulating)
            .allowed_lateness(Duration::from_millis(lateness));
        run_everywhere(&strategy, &steps, true)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

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
        run_everywhere(&strategy, &steps, false)?;
    }

    /// Input created on every worker (arrival order differs between runs):
    /// the default trigger without late data does not depend on it.
    #[test]
    fn multi_producer_default_trigger(wfn in window_fn(), items in prop::collection::vec((0u8..5, 0i64..500), 0..200)) {
        let runners: Vec<Box<dyn weir::pipeline::Runner>> =
            vec![Box::new(ReferenceRunner::default()), Box::new(TimelyRunner::threads(4))];
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
    }
}
