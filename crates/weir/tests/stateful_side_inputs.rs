//! Side inputs in a stateful DoFn, on every runner: an element waits for
//! its side-input window (Beam's push-back, as in `par_do_with_side_inputs`)
//! and holds back the event-time timers of the DoFn meanwhile, so that a
//! timer at the window's end sees every element of the window. Reading a
//! side input in a timer ends the job with a message (Beam reads side
//! inputs in `@ProcessElement` only).

use weir::prelude::*;
use weir::testing::{on_every_runner, runners};

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// Per card and window: each payment with the window's largest payment
/// over all cards (a side input computed from the same stream, so ready
/// only after the window closes), and at the window's end the card's count.
#[derive(Clone)]
struct AgainstLargest(SideInput<Option<u32>>);
const COUNT: ValueState<u32> = ValueState::new("count");
const END: TimerSpec = TimerSpec::event_time("end");

impl StatefulDoFn for AgainstLargest {
    type Key = String;
    type Value = u32;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, amount: u32) {
        let largest = match cx.side_singleton(&self.0) {
            Ok(Some(m)) => *m,
            Ok(None) => return cx.fail("an empty window has no largest payment"),
            Err(e) => return cx.fail(e),
        };
        let n = COUNT.read(cx).unwrap_or(0) + 1;
        COUNT.write(cx, n);
        let end = cx.window().max_timestamp();
        END.set(cx, end);
        let line = format!("{} paid {amount} of at most {largest}", cx.key());
        cx.output(line);
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, String>, _t: &TimerFiring) {
        let n = COUNT.read(cx).unwrap_or(0);
        let line = format!("{} made {n} payments", cx.key());
        cx.output(line);
    }
}

#[test]
fn elements_wait_for_their_side_window_and_hold_the_timers_back() {
    let out = on_every_runner(|p| {
        let payments = p
            .create_timestamped([
                (("c1".to_string(), 30u32), ts(1)),
                (("c2".into(), 70), ts(2)),
                (("c1".into(), 10), ts(8)),
                (("c1".into(), 5), ts(12)),
                (("c2".into(), 6), ts(15)),
                (("c2".into(), 1), ts(19)),
            ])
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap()));
        let largest = payments
            .map(|(_, amount): (String, u32)| amount)
            .combine_globally_without_defaults(Max::new())
            .as_side_input();
        payments.par_do_stateful_with_side_inputs(AgainstLargest(largest.clone()), &largest, ()).main.collect()
    });
    let got = |w: Window| {
        let mut lines: Vec<String> = out.iter().filter(|v| v.window == w).map(|v| v.value.clone()).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        got(Window::interval(0, 10)),
        [
            "c1 made 2 payments",
            "c1 paid 10 of at most 70",
            "c1 paid 30 of at most 70",
            "c2 made 1 payments",
            "c2 paid 70 of at most 70"
        ]
    );
    assert_eq!(
        got(Window::interval(10, 20)),
        [
            "c1 made 1 payments",
            "c1 paid 5 of at most 6",
            "c2 made 2 payments",
            "c2 paid 1 of at most 6",
            "c2 paid 6 of at most 6"
        ]
    );
    assert_eq!(out.len(), 10);
}

/// Reads its side input in a timer, which Beam does not allow.
#[derive(Clone)]
struct ReadsInTimer(SideInput<u32>);
const LATER: TimerSpec = TimerSpec::event_time("later");

impl StatefulDoFn for ReadsInTimer {
    type Key = u8;
    type Value = u32;
    type Out = u32;
    fn process(&mut self, cx: &mut StateContext<'_, u8, u32>, v: u32) {
        let t = cx.timestamp();
        LATER.set(cx, t);
        cx.output(v);
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, u8, u32>, _t: &TimerFiring) {
        let n = cx.side_list(&self.0).len() as u32;
        cx.output(n);
    }
}

#[test]
fn a_side_input_read_in_a_timer_ends_the_job_with_a_message() {
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let side = p.create([1u32, 2]).as_side_input();
        p.create([(1u8, 5u32)]).par_do_stateful_with_side_inputs(ReadsInTimer(side.clone()), &side, ()).main.collect();
        let err = p.run_with(&*runner()).unwrap_err().to_string();
        assert!(err.contains("is read in on_timer") && err.contains("process only"), "{name}: {err}");
    }
}
