use super::*;
use crate::transforms::combine::Sum;
use std::sync::Mutex;
use weir_model::FixedWindows;
use weir_runtime::Emitter;

const V: ValueState<u32> = ValueState::new("v");
const B: BagState<u32> = BagState::new("b");
const S: SetState<u32> = SetState::new("s");
const M: MapState<u32, u32> = MapState::new("m");
const L: OrderedListState<u32> = OrderedListState::new("l");
const C: CombiningState<u32, Sum<u32>> = CombiningState::new("c", Sum::new_const());
const FLUSH: TimerSpec = TimerSpec::event_time("flush");
const TICK: TimerSpec = TimerSpec::processing_time("tick");

/// Every state kind, event- and processing-time timers (one family
/// with tags), window expiration, and optionally time-sorted input.
#[derive(Clone)]
struct Everything {
    sorted: bool,
}

fn summary(cx: &mut StateContext<'_, u32, String>, what: &str) -> String {
    let (k, w) = (*cx.key(), cx.window());
    let (v, b, s, m, l, c) = (V.read(cx), B.read(cx), S.read(cx), M.entries(cx), L.read(cx), C.read(cx));
    format!("{what} k={k} {w:?} v={v:?} b={b:?} s={s:?} m={m:?} l={l:?} c={c}")
}

impl StatefulDoFn for Everything {
    type Key = u32;
    type Value = u32;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, u32, String>, x: u32) {
        let n = V.read(cx).unwrap_or(0);
        V.write(cx, n + 1);
        B.add(cx, x);
        S.add(cx, x % 3);
        M.put(cx, x % 2, x);
        let t = cx.timestamp();
        L.add(cx, x, t);
        C.add(cx, x);
        FLUSH.set_relative(cx, Duration::from_millis(3), None);
        if x % 4 == 0 {
            TICK.set_relative_tagged(cx, &format!("t{x}"), Duration::from_millis(5), None);
        }
        let line = format!("process {x}: n={n}");
        cx.output(line);
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, u32, String>, t: &TimerFiring) {
        let line = summary(cx, &format!("timer {} {}", t.family, t.tag));
        cx.output(line);
        if t.family == "flush" {
            B.clear(cx);
            let until = cx.timestamp();
            L.clear_range(cx, Timestamp::MIN, until);
        }
    }
    fn on_window_expiration(&mut self, cx: &mut StateContext<'_, u32, String>) {
        let line = summary(cx, "expire");
        cx.output(line);
    }
    fn requires_time_sorted_input(&self) -> bool {
        self.sorted
    }
}

enum Step {
    Data(Vec<(u32, u32, i64)>),
    Watermark(i64),
    ProcessingTime(i64),
}

fn script() -> Vec<Step> {
    use Step::*;
    let mut steps = vec![ProcessingTime(0)];
    for round in 0..6i64 {
        let base = round * 7;
        steps.push(Data(vec![
            (1, (base + 4) as u32, base + 4),
            (2, (base + 1) as u32, base + 1),
            (1, (base + 8) as u32, base + 2), // out of order
            (3, (base + 12) as u32, base + 6),
        ]));
        steps.push(ProcessingTime(round * 4 + 3));
        steps.push(Watermark(base + 3));
        steps.push(Data(vec![(2, 100 + round as u32, base - 20), (3, 200 + round as u32, base + 2)]));
        // expired; late
    }
    steps.push(ProcessingTime(1_000));
    steps.push(Watermark(Timestamp::MAX.millis()));
    steps
}

/// Runs the script through one operator instance, or through a fresh
/// instance restored from a snapshot after every step. Returns the
/// outputs (with timestamps and windows), the hold after every step and
/// the dropped count.
fn run(dofn: Everything, restart_every_step: bool) -> (Vec<String>, Vec<Timestamp>, u64) {
    let strategy = Arc::new(
        WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap())
            .allowed_lateness(Duration::from_millis(5)),
    );
    let windows = FixedWindows::of(Duration::from_millis(10)).unwrap();
    let mut op = StatefulOp::new(dofn.clone(), strategy.clone(), 0);
    let counters = NodeCounters::default();
    let error = Mutex::new(None);
    let (mut wm, mut pt) = (Timestamp::MIN, Timestamp::MIN);
    let (mut outputs, mut holds) = (Vec::new(), Vec::new());
    for step in script() {
        let mut emitter = Emitter::new(1);
        match &step {
            Step::Watermark(t) => wm = Timestamp::from_millis(*t),
            Step::ProcessingTime(t) => pt = Timestamp::from_millis(*t),
            Step::Data(_) => {}
        }
        let wms = [wm];
        let mut cx = OpContext {
            name: "StatefulParDo",
            out: &mut emitter,
            input_watermarks: &wms,
            processing_time: pt,
            stage_output_watermark: Timestamp::MAX,
            counters: &counters,
            key_groups: weir_runtime::KeyGroups::new(weir_runtime::DEFAULT_MAX_KEY_GROUPS, 1).unwrap(),
        };
        let result = match step {
            Step::Data(xs) => {
                let batch = xs
                    .into_iter()
                    .map(|(k, x, t)| {
                        let t = Timestamp::from_millis(t);
                        let mut ws = Vec::new();
                        windows.assign_windows(t, &mut ws);
                        let w = ws[0];
                        WindowedValue::new((k, x), t, w, weir_model::PaneInfo::NO_FIRING)
                    })
                    .collect();
                op.process(0, Batch::new(batch), &mut cx)
            }
            _ => op.advance(&mut cx),
        };
        if let Err(e) = result {
            error.lock().unwrap().get_or_insert(e);
        }
        for b in emitter.drain(0) {
            outputs.extend(
                b.into_vec::<String>()
                    .unwrap()
                    .into_iter()
                    .map(|v| format!("{} @{} {:?}", v.value, v.timestamp, v.window)),
            );
        }
        holds.push(op.hold());
        if restart_every_step {
            let bytes = op.snapshot().expect("stateful operators are snapshottable");
            let mut fresh = StatefulOp::new(dofn.clone(), strategy.clone(), 0);
            fresh.restore(&bytes).unwrap();
            op = fresh;
        }
    }
    assert!(error.lock().unwrap().is_none(), "{:?}", error.lock().unwrap());
    assert_eq!((op.live_cells, op.timers.len(), op.buffer.len()), (0, 0, 0), "state left at the end");
    (outputs, holds, counters.snapshot().dropped_expired)
}

#[test]
fn restored_snapshots_continue_exactly_like_an_uninterrupted_run() {
    for sorted in [false, true] {
        let (plain, plain_holds, plain_dropped) = run(Everything { sorted }, false);
        // The script exercises what a snapshot must carry.
        for what in ["process", "timer flush", "timer tick t", "expire"] {
            assert!(plain.iter().any(|l| l.starts_with(what)), "sorted={sorted}: no '{what}' in {plain:#?}");
        }
        assert!(plain_dropped > 0, "sorted={sorted}: nothing was late");
        if sorted {
            assert!(plain_holds.iter().any(|h| *h < Timestamp::MAX), "the sorted buffer never held");
        }
        let (restored, restored_holds, restored_dropped) = run(Everything { sorted }, true);
        assert_eq!(restored, plain, "sorted={sorted}");
        assert_eq!(restored_holds, plain_holds, "sorted={sorted}");
        assert_eq!(restored_dropped, plain_dropped, "sorted={sorted}");
    }
}

#[test]
fn restore_rejects_garbage_and_plain_operators_are_not_snapshottable() {
    let strategy = Arc::new(WindowingStrategy::new(weir_model::GlobalWindows));
    let mut op = StatefulOp::new(Everything { sorted: false }, strategy, 0);
    assert!(op.restore(&[1, 2, 3]).is_err());
    struct Plain;
    impl Operator for Plain {
        fn process(&mut self, _port: usize, _batch: Batch, _cx: &mut OpContext<'_>) -> OpResult {
            Ok(())
        }
    }
    assert!(Plain.snapshot().unwrap_err().to_string().contains("cannot be checkpointed"));
    assert!(Plain.restore(&[]).unwrap_err().to_string().contains("not snapshottable"));
}
