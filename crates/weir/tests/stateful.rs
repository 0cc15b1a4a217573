//! Stateful processing on every runner (reference, Timely x1, Timely x4):
//! state kinds, event- and processing-time timers, expiration and garbage
//! collection.

use weir::prelude::*;

mod common;
use common::{runners, ts};

/// Emits a key's value unless the same value was seen for the key within
/// the last 10 ms of event time (a TTL timer forgets it).
#[derive(Clone)]
struct Dedup;
const SEEN: SetState<u32> = SetState::new("seen");
const FORGET: TimerSpec = TimerSpec::event_time("forget");

impl StatefulDoFn for Dedup {
    type Key = String;
    type Value = u32;
    type Out = (String, u32);
    fn process(&mut self, cx: &mut StateContext<'_, String, (String, u32)>, v: u32) {
        if SEEN.add(cx, v) {
            let k = cx.key().clone();
            cx.output((k, v));
            FORGET.set_relative(cx, Duration::from_millis(10), None);
        }
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, (String, u32)>, _t: &TimerFiring) {
        SEEN.clear(cx);
    }
}

#[test]
fn dedup_with_ttl_on_every_runner() {
    let e = |k: &str, v: u32, t: i64| ((k.to_string(), v), ts(t));
    let stream = TestStream::new()
        .add_elements([e("a", 1, 0), e("a", 1, 2), e("b", 1, 3)])
        .advance_watermark_to(ts(5))
        .add_elements([e("a", 1, 6)]) // duplicate within the TTL of the first: dropped
        .advance_watermark_to(ts(20)) // the forget timer (at 10) fires
        .add_elements([e("a", 1, 21), e("b", 2, 22)]);
    let mut first: Option<Vec<String>> = None;
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let out = p.test_stream(stream.clone()).par_do_stateful(Dedup).collect();
        let result = p.run_with(&*runner()).unwrap();
        let mut got: Vec<String> = out.windowed().iter().map(|v| format!("{:?}@{}", v.value, v.timestamp)).collect();
        got.sort();
        assert_eq!(got, vec!["(\"a\", 1)@0", "(\"a\", 1)@21", "(\"b\", 1)@3", "(\"b\", 2)@22"], "{name}");
        let c = result.counters("StatefulParDo").unwrap();
        assert_eq!((c.state_cells, c.pending_timers), (0, 0), "{name}: state or timers left after end of input");
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "{name}"),
        }
    }
}

/// Counts per key and window with every state kind, emitting at window expiration.
#[derive(Clone)]
struct AllKinds;
const COUNT: ValueState<u64> = ValueState::new("count");
const ALL: BagState<i64> = BagState::new("all");
const DISTINCT: SetState<i64> = SetState::new("distinct");
const MAX_BY_PARITY: MapState<bool, i64> = MapState::new("max");
const BY_TIME: OrderedListState<i64> = OrderedListState::new("by_time");
const SUM: CombiningState<i64, Sum<i64>> = CombiningState::new("sum", Sum::new_const());

impl StatefulDoFn for AllKinds {
    type Key = u8;
    type Value = i64;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, u8, String>, v: i64) {
        let n = COUNT.read(cx).unwrap_or(0);
        COUNT.write(cx, n + 1);
        ALL.add(cx, v);
        DISTINCT.add(cx, v);
        if MAX_BY_PARITY.get(cx, &(v % 2 == 0)).is_none_or(|m| v > m) {
            MAX_BY_PARITY.put(cx, v % 2 == 0, v);
        }
        let t = cx.timestamp();
        BY_TIME.add(cx, v, t);
        SUM.add(cx, v);
    }
    fn on_window_expiration(&mut self, cx: &mut StateContext<'_, u8, String>) {
        let mut all = ALL.read(cx);
        all.sort();
        let ordered: Vec<i64> = BY_TIME.read(cx).into_iter().map(|(v, _)| v).collect();
        let early: Vec<i64> = BY_TIME.read_range(cx, Timestamp::MIN, ts(5)).into_iter().map(|(v, _)| v).collect();
        let (count, distinct, last, sum) = (COUNT.read(cx), DISTINCT.read(cx), MAX_BY_PARITY.entries(cx), SUM.read(cx));
        let s = format!(
            "{} {:?} count={count:?} all={all:?} distinct={distinct:?} max={last:?} ordered={ordered:?} early={early:?} sum={sum}",
            cx.key(),
            cx.window(),
        );
        cx.output(s);
    }
}

#[test]
fn every_state_kind_and_state_returns_to_zero() {
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let out = p
            .create_timestamped([(1u8, 7i64), (1, 3), (1, 3), (2, 4), (1, 12)].map(|(k, v)| ((k, v), ts(v))))
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap()))
            .par_do_stateful(AllKinds)
            .collect();
        let result = p.run_with(&*runner()).unwrap();
        let mut got = out.values();
        got.sort();
        assert_eq!(
            got,
            vec![
                "1 [0, 10) count=Some(3) all=[3, 3, 7] distinct=[3, 7] max=[(false, 7)] ordered=[3, 3, 7] early=[3, 3] sum=13",
                "1 [10, 20) count=Some(1) all=[12] distinct=[12] max=[(true, 12)] ordered=[12] early=[] sum=12",
                "2 [0, 10) count=Some(1) all=[4] distinct=[4] max=[(true, 4)] ordered=[4] early=[4] sum=4",
            ],
            "{name}"
        );
        let c = result.counters("StatefulParDo").unwrap();
        assert_eq!((c.state_cells, c.pending_timers), (0, 0), "{name}");
    }
}

/// Buffers requests and flushes them as one batch when a processing-time
/// timer fires (10 s after the first buffered request).
#[derive(Clone)]
struct Batcher;
const BUFFER: BagState<u32> = BagState::new("buffer");
const FLUSH: TimerSpec = TimerSpec::processing_time("flush");

impl StatefulDoFn for Batcher {
    type Key = ();
    type Value = u32;
    type Out = Vec<u32>;
    fn process(&mut self, cx: &mut StateContext<'_, (), Vec<u32>>, v: u32) {
        if BUFFER.is_empty(cx) {
            FLUSH.set_relative(cx, Duration::from_secs(10), None);
        }
        BUFFER.add(cx, v);
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, (), Vec<u32>>, _t: &TimerFiring) {
        let mut batch = BUFFER.read(cx);
        batch.sort();
        BUFFER.clear(cx);
        cx.output(batch);
    }
}

#[test]
fn processing_time_flush_timer_on_every_runner() {
    let e = |v: u32| (((), v), ts(v as i64));
    let stream = TestStream::new()
        .add_elements([e(1), e(2)])
        .advance_processing_time(Duration::from_secs(5))
        .add_elements([e(3)])
        .advance_processing_time(Duration::from_secs(6)) // 11 s: the flush set at 0 s + 10 s fires
        .add_elements([e(4)])
        .advance_processing_time(Duration::from_secs(20));
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let out = p.test_stream(stream.clone()).par_do_stateful(Batcher).collect();
        p.run_with(&*runner()).unwrap();
        let mut got = out.values();
        got.sort();
        assert_eq!(got, vec![vec![1, 2, 3], vec![4]], "{name}");
    }
}

#[test]
fn stateful_processing_rejects_merging_windows() {
    let p = Pipeline::new();
    p.create([((), 1u32)])
        .window_into(WindowingStrategy::new(Sessions::with_gap(Duration::from_millis(5)).unwrap()))
        .par_do_stateful(Batcher)
        .collect();
    let err = p.run_with(&ReferenceRunner::default()).unwrap_err().to_string();
    assert!(err.contains("'StatefulParDo'") && err.contains("non-merging"), "{err}");
}

/// Counts per key and window with a value cell; windows expire as the
/// watermark passes them, so the live state stays bounded during a long
/// stream and returns to zero after each window expires.
#[derive(Clone)]
struct CountPerWindow;
const N: ValueState<u64> = ValueState::new("n");

impl StatefulDoFn for CountPerWindow {
    type Key = u64;
    type Value = ();
    type Out = (u64, u64);
    fn process(&mut self, cx: &mut StateContext<'_, u64, (u64, u64)>, _v: ()) {
        let n = N.read(cx).unwrap_or(0);
        N.write(cx, n + 1);
    }
    fn on_window_expiration(&mut self, cx: &mut StateContext<'_, u64, (u64, u64)>) {
        let k = *cx.key();
        let n = N.read(cx).unwrap_or(0);
        cx.output((k, n));
    }
}

#[test]
fn live_state_returns_to_zero_after_windows_expire() {
    // 100 windows of 10 ms, 20 keys; the watermark passes each window
    // before the next one's data arrives. On the reference runner the
    // counters are read after every step of the stream.
    let mut stream = TestStream::new();
    for w in 0..100i64 {
        stream = stream
            .add_elements((0..200u64).map(|i| ((i % 20, ()), ts(w * 10 + (i % 10) as i64))))
            .advance_watermark_to(ts(w * 10 + 12));
    }
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let out = p
            .test_stream(stream.clone())
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap()))
            .par_do_stateful(CountPerWindow)
            .collect();
        let metrics = p.metrics();
        let graph = p.build().unwrap();
        let watcher = {
            let metrics = metrics.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                for _ in 0..200 {
                    peak = peak.max(metrics.get("StatefulParDo").map_or(0, |c| c.state_cells));
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                peak
            })
        };
        runner().run(graph).unwrap();
        let peak = watcher.join().unwrap();
        let c = metrics.get("StatefulParDo").unwrap();
        assert_eq!((c.state_cells, c.pending_timers), (0, 0), "{name}");
        // The reference runner processes each step completely: at most two
        // windows (40 cells) are ever live. On Timely the watermark reaches
        // other workers a little after the data, so a few more windows can be
        // live at once; still, windows expire during the run, never all 2000
        // cells at once.
        let bound = if name == "reference" { 40 } else { 1999 };
        assert!(peak <= bound, "{name}: {peak} live cells: state of expired windows was kept");
        let got = out.values();
        assert_eq!(got.len(), 100 * 20, "{name}");
        assert!(got.iter().all(|(_, n)| *n == 10), "{name}");
    }
}

/// Tagged outputs of a stateful DoFn, from `process` and from a timer: an
/// alert the moment a card's spending passes 100, and a summary per card
/// when its window ends.
#[derive(Clone)]
struct Spending;
const SPENT: ValueState<u32> = ValueState::new("spent");
const WINDOW_END: TimerSpec = TimerSpec::event_time("window-end");
const ALERTS: OutputTag<String> = OutputTag::new("alerts");
const SUMMARIES: OutputTag<(String, u32)> = OutputTag::new("summaries");

impl StatefulDoFn for Spending {
    type Key = String;
    type Value = u32;
    type Out = (String, u32);
    fn process(&mut self, cx: &mut StateContext<'_, String, (String, u32)>, amount: u32) {
        let before = SPENT.read(cx).unwrap_or(0);
        SPENT.write(cx, before + amount);
        let end = cx.window().max_timestamp();
        WINDOW_END.set(cx, end);
        if before <= 100 && before + amount > 100 {
            let alert = format!("{} passed 100", cx.key());
            cx.output_to(&ALERTS, alert);
        }
        let card = cx.key().clone();
        cx.output((card, amount));
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, (String, u32)>, _t: &TimerFiring) {
        let card = cx.key().clone();
        let spent = SPENT.read(cx).unwrap_or(0);
        cx.output_to(&SUMMARIES, (card, spent));
    }
}

#[test]
fn a_stateful_dofn_writes_tagged_outputs_from_elements_and_timers() {
    let e = |k: &str, v: u32, t: i64| ((k.to_string(), v), ts(t));
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let out = p
            .test_stream(
                TestStream::new()
                    .add_elements([e("c1", 60, 1), e("c2", 5, 2), e("c1", 50, 3)])
                    .advance_watermark_to(ts(5))
                    .add_elements([e("c1", 70, 12), e("c2", 200, 13)])
                    .advance_watermark_to(Timestamp::MAX),
            )
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap()))
            .par_do_stateful_with_outputs(Spending, &[ALERTS.erased(), SUMMARIES.erased()]);
        let alerts = out.get(&ALERTS).unwrap().collect();
        let summaries = out.get(&SUMMARIES).unwrap().collect();
        let main = out.main.collect();
        let result = p.run_with(&*runner()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut got: Vec<(String, Timestamp)> = alerts.windowed().into_iter().map(|v| (v.value, v.timestamp)).collect();
        got.sort();
        // c1 passes 100 at 3 in [0, 10) (not again at 12: a new window, 70);
        // c2 at 13 in [10, 20).
        assert_eq!(got, vec![("c1 passed 100".to_string(), ts(3)), ("c2 passed 100".into(), ts(13))], "{name}");
        let mut got: Vec<((String, u32), Timestamp)> =
            summaries.windowed().into_iter().map(|v| (v.value, v.timestamp)).collect();
        got.sort();
        let mut want = vec![
            (("c1".to_string(), 110), ts(9)),
            (("c1".into(), 70), ts(19)),
            (("c2".into(), 5), ts(9)),
            (("c2".into(), 200), ts(19)),
        ];
        want.sort();
        assert_eq!(got, want, "{name}: a summary per card and window, at the window's end");
        assert_eq!(main.values().len(), 5, "{name}");
        let counters = result.counters("StatefulParDo").unwrap();
        assert_eq!(counters.elements_out, 5 + 2 + 4, "{name}: every output counted");
    }
}
