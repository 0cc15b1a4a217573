//! Property tests of the invariants of `SEMANTICS.md` §13, over random
//! strategies (window functions, trigger trees, modes, lateness, combiners,
//! behaviours), random inputs for several keys, random watermark and
//! processing-time schedules, and random bundlings.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use weir_model::*;

/// At least 256 cases per property; `WEIR_PROPTEST_CASES` raises it for a deeper search.
fn cases() -> u32 {
    std::env::var("WEIR_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256).max(256)
}

// ------------------------------------------------------------------ inputs

#[derive(Clone, Debug)]
enum Step {
    /// A bundle for a key: timestamps (also the values).
    Input(u8, Vec<i64>),
    /// Advance the watermark by this much.
    Watermark(i64),
    /// Advance processing time by this much.
    Clock(i64),
}

fn window_fn() -> impl Strategy<Value = AnyWindowFn> {
    let ms = Duration::from_millis;
    prop_oneof![
        Just(AnyWindowFn::Global(GlobalWindows)),
        (1i64..30).prop_flat_map(|size| (Just(size), 0..size)).prop_map(move |(size, off)| FixedWindows::new(
            ms(size),
            ms(off)
        )
        .unwrap()
        .into()),
        (1i64..8, 1i64..30)
            .prop_flat_map(|(period, size)| (Just(period), Just(size), 0..period))
            .prop_map(move |(p, s, o)| SlidingWindows::new(ms(s), ms(p), ms(o)).unwrap().into()),
        (1i64..20).prop_map(move |gap| Sessions::with_gap(ms(gap)).unwrap().into()),
    ]
}

fn trigger() -> impl Strategy<Value = Trigger> {
    let leaf = prop_oneof![
        Just(Trigger::Default),
        Just(Trigger::after_watermark()),
        (1u64..4).prop_map(Trigger::after_count),
        (0i64..20).prop_map(|d| Trigger::after_processing_time().plus_delay(Duration::from_millis(d))),
        (1i64..10, 0i64..10)
            .prop_map(|(a, o)| Trigger::after_processing_time()
                .aligned_to(Duration::from_millis(a), Timestamp::from_millis(o))),
        Just(Trigger::Never),
        Just(Trigger::Always),
        Just(Trigger::AfterSynchronizedProcessingTime),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(Trigger::repeatedly),
            prop::collection::vec(inner.clone(), 1..3).prop_map(Trigger::AfterAny),
            prop::collection::vec(inner.clone(), 1..3).prop_map(Trigger::AfterAll),
            prop::collection::vec(inner.clone(), 1..3).prop_map(Trigger::AfterEach),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a.or_finally(b)),
            (prop::option::of(inner.clone()), prop::option::of(inner))
                .prop_map(|(e, l)| Trigger::AfterWatermark { early: e.map(Box::new), late: l.map(Box::new) }),
        ]
    })
}

fn strategy() -> impl Strategy<Value = WindowingStrategy> {
    (
        window_fn(),
        trigger(),
        prop_oneof![
            Just(AccumulationMode::Discarding),
            Just(AccumulationMode::Accumulating),
            Just(AccumulationMode::AccumulatingAndRetracting)
        ],
        prop_oneof![Just(0i64), 1i64..10, Just(1000)],
        prop_oneof![
            Just(TimestampCombiner::EndOfWindow),
            Just(TimestampCombiner::Earliest),
            Just(TimestampCombiner::Latest)
        ],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(wfn, t, mode, lateness, combiner, closing_always, on_time_always)| {
            WindowingStrategy::new(wfn)
                .trigger(t)
                .accumulation(mode)
                .allowed_lateness(Duration::from_millis(lateness))
                .timestamp_combiner(combiner)
                .closing(if closing_always { ClosingBehavior::FireAlways } else { ClosingBehavior::FireIfNonEmpty })
                .on_time(if on_time_always { OnTimeBehavior::FireAlways } else { OnTimeBehavior::FireIfNonEmpty })
                .late_data_output(true)
                .allow_data_loss(true)
        })
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0u8..3, prop::collection::vec(-20i64..120, 1..5)).prop_map(|(k, v)| Step::Input(k, v)),
            2 => (0i64..25).prop_map(Step::Watermark),
            1 => (0i64..15).prop_map(Step::Clock),
        ],
        0..25,
    )
}

// ----------------------------------------------------------------- running

type Gbw = GroupAlsoByWindow<u8, i64, Buffer>;
type Out = GroupOutput<u8, i64, Vec<i64>>;
type Pane<'a> = &'a PaneOutput<u8, Vec<i64>>;

struct Emitted {
    out: Out,
    /// Output watermark just before the step that emitted it.
    output_wm_before: Timestamp,
}

/// Watermark and processing time of a script so far.
struct Clocks {
    wm: i64,
    now: i64,
}

impl Default for Clocks {
    fn default() -> Self {
        Clocks { wm: -30, now: 0 }
    }
}

/// Play one step of a script on a grouping.
fn apply_step<A: Aggregator<i64>>(
    g: &mut GroupAlsoByWindow<u8, i64, A>,
    step: &Step,
    bundle: usize,
    clocks: &mut Clocks,
    out: &mut Vec<GroupOutput<u8, i64, A::Out>>,
) {
    match step {
        Step::Input(k, vs) => {
            for chunk in vs.chunks(bundle.max(1)) {
                g.process_bundle(k, chunk.iter().map(|&v| (v, Timestamp::from_millis(v))), out);
            }
        }
        Step::Watermark(d) => {
            clocks.wm += d;
            g.advance_input_watermark(Timestamp::from_millis(clocks.wm), out);
        }
        Step::Clock(d) => {
            clocks.now += d;
            g.advance_processing_time(Timestamp::from_millis(clocks.now), out);
        }
    }
}

fn run(strategy: &WindowingStrategy, steps: &[Step], bundle_size: usize) -> (Vec<Emitted>, Gbw) {
    let mut gbw = Gbw::new(strategy.clone(), Buffer).unwrap();
    let mut emitted = Vec::new();
    let mut clocks = Clocks::default();
    let mut out = Vec::new();
    let mut last_out_wm = gbw.output_watermark();
    let record = |gbw: &Gbw, out: &mut Vec<Out>, before: Timestamp, emitted: &mut Vec<Emitted>| {
        assert!(gbw.output_watermark() >= before, "output watermark went back");
        assert!(gbw.output_watermark() <= gbw.input_watermark(), "output watermark ahead of input");
        emitted.extend(out.drain(..).map(|o| Emitted { out: o, output_wm_before: before }));
    };
    for step in steps {
        let before = gbw.output_watermark();
        assert!(before >= last_out_wm);
        apply_step(&mut gbw, step, bundle_size, &mut clocks, &mut out);
        record(&gbw, &mut out, before, &mut emitted);
        last_out_wm = gbw.output_watermark();
    }
    let before = gbw.output_watermark();
    gbw.advance_input_watermark(Timestamp::MAX, &mut out);
    record(&gbw, &mut out, before, &mut emitted);
    (emitted, gbw)
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort();
    v
}

fn is_sub_multiset(small: &[i64], big: &[i64]) -> bool {
    let mut counts: HashMap<i64, i64> = HashMap::new();
    for v in big {
        *counts.entry(*v).or_default() += 1;
    }
    small.iter().all(|v| {
        let c = counts.entry(*v).or_default();
        *c -= 1;
        *c >= 0
    })
}

/// Invariants 1, 2, 4 and 6 of §13 for one run.
fn check_invariants(strategy: &WindowingStrategy, steps: &[Step], emitted: &[Emitted], gbw: &Gbw) {
    let merging = strategy.is_merging();
    // (key, window) -> panes in emission order (non-retractions)
    let mut panes: BTreeMap<(u8, Window), Vec<Pane>> = BTreeMap::new();
    let mut last: HashMap<(u8, Window), &PaneOutput<u8, Vec<i64>>> = HashMap::new();
    let mut dropped: BTreeMap<(u8, Window), Vec<i64>> = BTreeMap::new();
    for e in emitted {
        match &e.out {
            GroupOutput::Pane(p) if p.retraction => {
                assert_eq!(strategy.mode, AccumulationMode::AccumulatingAndRetracting, "retraction in another mode");
                // A retraction repeats exactly the last pane of its window, once.
                let prev = last.remove(&(p.key, p.window)).expect("retraction of a pane never emitted");
                assert_eq!((prev.value.clone(), prev.timestamp, prev.pane), (p.value.clone(), p.timestamp, p.pane));
            }
            GroupOutput::Pane(p) => {
                // §13.4: a pane that is not LATE is not behind the output watermark.
                if p.pane.timing != Timing::Late {
                    assert!(
                        p.timestamp >= e.output_wm_before,
                        "{:?} pane at {} behind output watermark {}",
                        p.pane.timing,
                        p.timestamp,
                        e.output_wm_before
                    );
                }
                assert!(p.timestamp <= p.window.max_timestamp(), "pane stamped after its window");
                if strategy.mode == AccumulationMode::AccumulatingAndRetracting {
                    if let Some(prev) = last.get(&(p.key, p.window)) {
                        assert!(p.pane.index == 0, "pane {:?} after {:?} without retraction", p.pane, prev.pane);
                    }
                    last.insert((p.key, p.window), p);
                }
                panes.entry((p.key, p.window)).or_default().push(p);
            }
            GroupOutput::Dropped(d) => dropped.entry((d.key, d.window)).or_default().push(d.value),
        }
    }

    // §13.1: per window (split into incarnations at index 0 for merging fns).
    for ((_, w), ps) in &panes {
        let mut seqs: Vec<Vec<Pane>> = Vec::new();
        for p in ps {
            if p.pane.index == 0 || seqs.is_empty() {
                assert!(merging || seqs.is_empty(), "window {w:?} restarted its panes");
                seqs.push(Vec::new());
            }
            seqs.last_mut().unwrap().push(p);
        }
        for seq in seqs {
            let mut phase = 0; // 0 early, 1 on time seen, 2 late
            let mut non_early = 0;
            for (i, p) in seq.iter().enumerate() {
                let pi = p.pane;
                assert_eq!(pi.index, i as i64, "gapless indices in {w:?}");
                assert_eq!(pi.is_first, i == 0);
                assert!(i == 0 || !seq[i - 1].pane.is_last, "pane after the last pane in {w:?}");
                match pi.timing {
                    Timing::Early => {
                        assert_eq!(phase, 0, "EARLY after a non-early pane in {w:?}");
                        assert_eq!(pi.nonspeculative_index, -1);
                    }
                    Timing::OnTime => {
                        assert_eq!(phase, 0, "second ON_TIME or ON_TIME after LATE in {w:?}");
                        phase = 1;
                        assert_eq!(pi.nonspeculative_index, non_early);
                        non_early += 1;
                    }
                    Timing::Late => {
                        phase = 2;
                        assert_eq!(pi.nonspeculative_index, non_early);
                        non_early += 1;
                    }
                    Timing::Unknown => panic!("UNKNOWN timing after a grouping"),
                }
            }
        }
    }

    // §13.2 for non-merging windows: every element assigned to a window is in
    // its panes (discarding: exactly once overall; accumulating: in the last
    // pane, each pane containing the previous one) or dropped.
    if !merging {
        let mut assigned: BTreeMap<(u8, Window), Vec<i64>> = BTreeMap::new();
        let mut ws = Vec::new();
        for s in steps {
            if let Step::Input(k, vs) = s {
                for &v in vs {
                    ws.clear();
                    strategy.window_fn.assign_windows(Timestamp::from_millis(v), &mut ws);
                    for w in &ws {
                        assigned.entry((*k, *w)).or_default().push(v);
                    }
                }
            }
        }
        for (kw, all) in &assigned {
            let ps = panes.get(kw).map(Vec::as_slice).unwrap_or(&[]);
            let drops = dropped.get(kw).cloned().unwrap_or_default();
            let seen: Vec<i64> = match strategy.mode {
                AccumulationMode::Discarding => ps.iter().flat_map(|p| p.value.iter().copied()).collect(),
                _ => {
                    for pair in ps.windows(2) {
                        assert!(is_sub_multiset(&pair[0].value, &pair[1].value), "accumulating panes shrank in {kw:?}");
                    }
                    ps.last().map(|p| p.value.clone()).unwrap_or_default()
                }
            };
            let mut got = seen;
            got.extend(drops);
            assert_eq!(sorted(got), sorted(all.clone()), "elements of {kw:?} lost or duplicated");
        }
    }

    // §13.6: after the watermark reached +inf nothing remains.
    assert_eq!(gbw.live_windows(), 0, "windows left after end of input");
    assert_eq!(gbw.live_keys(), 0);
    assert_eq!(gbw.pending_timers(), 0, "timers left after end of input");
    assert_eq!(gbw.holds(), 0, "holds left after end of input");
    assert_eq!(gbw.output_watermark(), Timestamp::MAX);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// §13.1, 13.2, 13.4, 13.6 over every kind of strategy.
    #[test]
    fn invariants_hold(strategy in strategy(), steps in steps(), bundle in 1usize..4) {
        let (emitted, gbw) = run(&strategy, &steps, bundle);
        check_invariants(&strategy, &steps, &emitted, &gbw);
    }

    /// §13.3: with the default trigger in accumulating mode the panes do not
    /// depend on arrival order or bundling. Without late data every pane
    /// (contents, timestamp, pane info) is identical. With late data (and
    /// non-merging windows) only the final contents of every window are: which
    /// pane is ON_TIME, and whether a late element can still hold the output
    /// watermark, legitimately depend on the output watermark at its arrival.
    #[test]
    fn default_accumulating_is_order_independent(
        wfn in window_fn(),
        lateness in prop_oneof![Just(0i64), 1i64..30],
        combiner in prop_oneof![Just(TimestampCombiner::EndOfWindow), Just(TimestampCombiner::Earliest), Just(TimestampCombiner::Latest)],
        steps in steps(),
        seed in any::<u64>(),
        bundle in 1usize..4,
        allow_late in any::<bool>(),
    ) {
        let strategy = WindowingStrategy::new(wfn)
            .accumulation(AccumulationMode::Accumulating)
            .allowed_lateness(Duration::from_millis(lateness))
            .timestamp_combiner(combiner);
        // Late data only with non-merging windows (see above).
        let allow_late = allow_late && !strategy.is_merging();
        // Without late data: drop elements behind the watermark at their step.
        let mut wm = -30i64;
        let mut original = Vec::new();
        for s in &steps {
            match s {
                Step::Watermark(d) => { wm += d; original.push(s.clone()); }
                Step::Input(k, vs) if !allow_late => {
                    let vs: Vec<i64> = vs.iter().copied().filter(|&v| v >= wm).collect();
                    if !vs.is_empty() { original.push(Step::Input(*k, vs)); }
                }
                _ => original.push(s.clone()),
            }
        }
        // The same elements per step, shuffled.
        let mut rng = seed;
        let shuffled: Vec<Step> = original.iter().map(|s| match s {
            Step::Input(k, vs) => {
                let mut vs = vs.clone();
                for i in (1..vs.len()).rev() {
                    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                    vs.swap(i, (rng % (i as u64 + 1)) as usize);
                }
                Step::Input(*k, vs)
            }
            other => other.clone(),
        }).collect();
        let (a, _) = run(&strategy, &original, 100);
        let (b, _) = run(&strategy, &shuffled, bundle);
        let summarize = |es: &[Emitted], exact: bool| {
            let mut all = Vec::new();
            let mut last: BTreeMap<(u8, Window), Vec<i64>> = BTreeMap::new();
            for e in es {
                if let GroupOutput::Pane(p) = &e.out {
                    let v = sorted(p.value.clone());
                    if exact {
                        all.push((p.key, p.window, v.clone(), p.timestamp, p.pane));
                    }
                    last.insert((p.key, p.window), v);
                }
            }
            all.sort();
            (all, last)
        };
        prop_assert_eq!(summarize(&a, !allow_late), summarize(&b, !allow_late));
    }

    /// §13.5: GroupByKey (buffering) and Combine with a list-building
    /// combiner (here a multiset of counts, merged differently) give the
    /// same panes.
    #[test]
    fn group_by_key_equals_combine(strategy in strategy(), steps in steps(), bundle in 1usize..4) {
        struct Counts;
        impl Aggregator<i64> for Counts {
            type Acc = BTreeMap<i64, usize>;
            type Out = Vec<i64>;
            fn create(&self) -> Self::Acc { BTreeMap::new() }
            fn add(&self, acc: &mut Self::Acc, v: i64) { *acc.entry(v).or_default() += 1; }
            fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
                for (v, n) in other { *acc.entry(v).or_default() += n; }
            }
            fn extract(&self, acc: &Self::Acc) -> Vec<i64> {
                acc.iter().flat_map(|(v, n)| std::iter::repeat_n(*v, *n)).collect()
            }
        }
        let (gbk, _) = run(&strategy, &steps, bundle);
        let mut combine = GroupAlsoByWindow::new(strategy.clone(), Counts).unwrap();
        let mut out = Vec::new();
        let mut clocks = Clocks::default();
        for step in &steps {
            apply_step(&mut combine, step, bundle, &mut clocks, &mut out);
        }
        combine.advance_input_watermark(Timestamp::MAX, &mut out);
        let norm = |o: &GroupOutput<u8, i64, Vec<i64>>| match o {
            GroupOutput::Pane(p) => format!("{} {:?} {} {:?} {} {:?}", p.key, p.window, p.timestamp, p.pane, p.retraction, sorted(p.value.clone())),
            GroupOutput::Dropped(d) => format!("{d:?}"),
        };
        let a: Vec<String> = gbk.iter().map(|e| norm(&e.out)).collect();
        let b: Vec<String> = out.iter().map(norm).collect();
        prop_assert_eq!(a, b);
    }
}

/// Every output, in order, then the end state: what two runs must share.
fn described(gbw: &Gbw, out: &[Out]) -> Vec<String> {
    let mut lines: Vec<String> = out.iter().map(|o| format!("{o:?}")).collect();
    lines.push(format!(
        "{:?} windows={} timers={} holds={}",
        gbw.counters(),
        gbw.live_windows(),
        gbw.pending_timers(),
        gbw.holds()
    ));
    lines
}

fn run_with_restore(strategy: &WindowingStrategy, steps: &[Step], bundle: usize, cut: Option<usize>) -> Vec<String> {
    let mut gbw = Gbw::new(strategy.clone(), Buffer).unwrap();
    let mut out = Vec::new();
    let mut clocks = Clocks::default();
    for (i, step) in steps.iter().enumerate() {
        if cut == Some(i) {
            let snap = gbw.snapshot();
            gbw = Gbw::restore(strategy.clone(), Buffer, snap).unwrap();
        }
        apply_step(&mut gbw, step, bundle, &mut clocks, &mut out);
    }
    gbw.advance_input_watermark(Timestamp::MAX, &mut out);
    described(&gbw, &out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// The grouping's state is keyed by (key, window) and can be snapshotted
    /// between calls: restoring a snapshot and continuing gives exactly the
    /// output (in order) and end state of an uninterrupted run.
    #[test]
    fn snapshot_and_restore_continue_exactly(strategy in strategy(), steps in steps(), bundle in 1usize..4, cut in 0usize..25) {
        let whole = run_with_restore(&strategy, &steps, bundle, None);
        let restored = run_with_restore(&strategy, &steps, bundle, Some(cut));
        prop_assert_eq!(whole, restored);
    }
}

/// As `run_with_restore` without a cut, but every watermark advance fires
/// at most `chunk` windows per call (`advance_input_watermark_partly`),
/// called again until done, with a snapshot and restore between the
/// calls when `restore` is set.
fn run_chunked(
    strategy: &WindowingStrategy,
    steps: &[Step],
    bundle: usize,
    chunk: usize,
    restore: bool,
) -> Vec<String> {
    let mut gbw = Gbw::new(strategy.clone(), Buffer).unwrap();
    let mut out = Vec::new();
    let mut clocks = Clocks::default();
    let advance = |gbw: &mut Gbw, wm: Timestamp, out: &mut Vec<Out>| {
        while !gbw.advance_input_watermark_partly(wm, chunk, out) {
            assert!(gbw.has_due_timers());
            if restore {
                let snap = gbw.snapshot();
                *gbw = Gbw::restore(strategy.clone(), Buffer, snap).unwrap();
            }
        }
        assert!(!gbw.has_due_timers());
    };
    for step in steps {
        match step {
            Step::Watermark(d) => {
                clocks.wm += d;
                advance(&mut gbw, Timestamp::from_millis(clocks.wm), &mut out);
            }
            _ => apply_step(&mut gbw, step, bundle, &mut clocks, &mut out),
        }
    }
    advance(&mut gbw, Timestamp::MAX, &mut out);
    described(&gbw, &out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Firing a watermark's due windows a few at a time, over several
    /// calls (with a snapshot and restore between them or not), gives
    /// exactly the panes, in order, and the end state of one call.
    #[test]
    fn firing_in_parts_equals_firing_at_once(
        strategy in strategy(), steps in steps(), bundle in 1usize..4, chunk in 1usize..4, restore: bool,
    ) {
        let whole = run_with_restore(&strategy, &steps, bundle, None);
        prop_assert_eq!(whole, run_chunked(&strategy, &steps, bundle, chunk, restore));
    }
}
