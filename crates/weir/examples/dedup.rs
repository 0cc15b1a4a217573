//! Per-key deduplication with a TTL: a client retries, so the same event id
//! can arrive several times; the first copy is kept, copies within 10
//! minutes of event time are dropped, and an event-time timer forgets the
//! id after that, so the state stays bounded.
//!
//! Run: `cargo run --release -p weir --example dedup`

use weir::prelude::*;

/// How long an id is remembered (event time).
const TTL: Duration = Duration::from_mins(10);

/// Keeps the first copy of each event id; forgets the id after [`TTL`].
#[derive(Clone)]
pub struct Dedup;

const SEEN: ValueState<bool> = ValueState::new("seen");
const FORGET: TimerSpec = TimerSpec::event_time("forget");

impl StatefulDoFn for Dedup {
    type Key = String;
    type Value = String;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, payload: String) {
        if SEEN.read(cx).is_none() {
            SEEN.write(cx, true);
            FORGET.set_relative(cx, TTL, None);
            let line = format!("{} {} {payload}", clock(cx.timestamp()), cx.key());
            cx.output(line);
        }
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, String>, _timer: &TimerFiring) {
        SEEN.clear(cx);
    }
}

/// `hh:mm:ss` of a timestamp (milliseconds since midnight).
pub fn clock(t: Timestamp) -> String {
    let s = t.millis() / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn at(h: i64, m: i64, s: i64) -> Timestamp {
    Timestamp::from_millis(((h * 60 + m) * 60 + s) * 1000)
}

/// The events: (event id, payload) at event times, with retried copies.
pub fn events() -> TestStream<(String, String)> {
    let e = |id: &str, what: &str, t: Timestamp| ((id.to_string(), what.to_string()), t);
    TestStream::new()
        .add_elements([e("a1", "ana clicks buy", at(12, 0, 0)), e("b1", "bo opens app", at(12, 1, 0))])
        .add_elements([e("a1", "ana clicks buy", at(12, 0, 5)), e("c1", "cy searches", at(12, 2, 0))]) // a retry
        .advance_watermark_to(at(12, 5, 0))
        .add_elements([e("b1", "bo opens app", at(12, 6, 0))]) // a late retry, within the TTL
        .advance_watermark_to(at(12, 20, 0)) // the TTL timers of a1, b1 and c1 fire
        .add_elements([e("a1", "ana clicks buy", at(12, 21, 0))]) // after the TTL: kept again
        .advance_watermark_to(at(12, 40, 0))
}

/// The pipeline: events, deduplicated, as printable lines.
pub fn build(p: &Pipeline) -> PCollection<String> {
    p.test_stream(events()).par_do_stateful(Dedup)
}

#[allow(dead_code)] // the tests include this file for `build`
fn main() -> Result<(), PipelineError> {
    let p = Pipeline::new();
    let kept = build(&p).collect();
    let result = p.run()?;
    let mut lines = kept.values();
    lines.sort();
    println!("kept events (time, id, payload):");
    for l in &lines {
        println!("  {l}");
    }
    let c = result.counters("StatefulParDo").expect("the dedup step ran");
    println!(
        "{} in, {} kept, {} duplicates dropped; state left: {} cells, {} timers",
        c.elements_in,
        c.elements_out,
        c.elements_in - c.elements_out,
        c.state_cells,
        c.pending_timers
    );
    Ok(())
}
