//! Conversion attribution, after Beam's "Timely (and Stateful) Processing
//! with Apache Beam": per user, ad impressions, site visits and goals
//! (purchases, sign-ups) arrive out of order; each goal is attributed to the
//! last impression shown before it, once the watermark says that everything
//! before the goal has arrived. Map, set and value state and an event-time
//! timer, in the global window (whose state is collected at the end of
//! input; a long-running job would also forget impressions older than an
//! attribution horizon).
//!
//! Run: `cargo run --release -p weir --example conversion_attribution`

use serde::{Deserialize, Serialize};
use weir::prelude::*;

/// What a user did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Event {
    /// An ad was shown.
    Impression(String),
    /// A page was visited.
    Visit(String),
    /// A goal was reached.
    Goal(String),
}

/// Attributes each goal to the last impression before it.
#[derive(Clone)]
pub struct Attribute;

const IMPRESSIONS: MapState<Timestamp, String> = MapState::new("impressions");
const VISITS: MapState<Timestamp, String> = MapState::new("visits");
const GOALS: SetState<(Timestamp, String)> = SetState::new("goals");
const NEXT_GOAL: ValueState<Timestamp> = ValueState::new("next_goal");
const ATTRIBUTE: TimerSpec = TimerSpec::event_time("attribute");

/// Wait for the earliest pending goal: the timer fires once the watermark
/// has passed it, when every impression and visit before it has arrived.
fn wait_for(cx: &mut StateContext<'_, String, String>, goal: Timestamp) {
    NEXT_GOAL.write(cx, goal);
    ATTRIBUTE.set(cx, goal);
}

impl StatefulDoFn for Attribute {
    type Key = String;
    type Value = Event;
    type Out = String;
    fn process(&mut self, cx: &mut StateContext<'_, String, String>, event: Event) {
        let t = cx.timestamp();
        match event {
            Event::Impression(ad) => {
                IMPRESSIONS.put(cx, t, ad);
            }
            Event::Visit(page) => {
                VISITS.put(cx, t, page);
            }
            Event::Goal(goal) => {
                GOALS.add(cx, (t, goal));
                if NEXT_GOAL.read(cx).is_none_or(|next| t < next) {
                    wait_for(cx, t);
                }
            }
        }
    }
    fn on_timer(&mut self, cx: &mut StateContext<'_, String, String>, timer: &TimerFiring) {
        let now = timer.firing_timestamp;
        let user = cx.key().clone();
        NEXT_GOAL.clear(cx);
        for (t, goal) in GOALS.read(cx) {
            if t > now {
                wait_for(cx, t); // the earliest goal still pending (the set is ordered)
                break;
            }
            GOALS.remove(cx, &(t, goal.clone()));
            let impression = IMPRESSIONS.entries(cx).into_iter().rev().find(|(shown, _)| *shown <= t);
            let line = match impression {
                None => format!("{} {user} {goal}: no impression before it", clock(t)),
                Some((shown, ad)) => {
                    let visits = VISITS.keys(cx).into_iter().filter(|v| *v > shown && *v <= t).count();
                    let s = if visits == 1 { "" } else { "s" };
                    format!(
                        "{} {user} {goal}: ad {ad} (shown {}), {visits} visit{s} on the way",
                        clock(t),
                        clock(shown)
                    )
                }
            };
            cx.output(line);
        }
    }
}

/// `hh:mm:ss` of a timestamp (milliseconds since midnight).
pub fn clock(t: Timestamp) -> String {
    let s = t.millis() / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn at(m: i64) -> Timestamp {
    Timestamp::from_millis((12 * 60 + m) * 60_000)
}

/// The events, out of order; the watermark never passes an event that has
/// not arrived.
pub fn events() -> TestStream<(String, Event)> {
    let e = |user: &str, ev: Event, m: i64| ((user.to_string(), ev), at(m));
    let (imp, visit, goal) =
        (|s: &str| Event::Impression(s.into()), |s: &str| Event::Visit(s.into()), |s: &str| Event::Goal(s.into()));
    TestStream::new()
        .add_elements([e("ana", goal("purchase"), 6), e("ana", visit("/cart"), 5), e("bo", visit("/home"), 2)])
        .add_elements([e("ana", imp("socks-video"), 3), e("ana", visit("/socks"), 4), e("bo", goal("signup"), 4)])
        .add_elements([e("ana", imp("shoes-banner"), 0), e("ana", visit("/shoes"), 1)])
        .advance_watermark_to(at(5)) // bo's sign-up (12:04) is attributed now
        .add_elements([e("bo", goal("purchase"), 9), e("bo", visit("/gloves"), 8), e("bo", imp("gloves-banner"), 7)])
        .advance_watermark_to(at(10))
}

/// The pipeline: one line per attributed goal.
pub fn build(p: &Pipeline) -> PCollection<String> {
    p.test_stream(events()).par_do_stateful(Attribute)
}

#[allow(dead_code)] // the tests include this file for `build`
fn main() -> Result<(), PipelineError> {
    let p = Pipeline::new();
    let attributed = build(&p).collect();
    p.run()?;
    let mut lines = attributed.values();
    lines.sort();
    println!("goals, attributed to the last impression before them:");
    for l in lines {
        println!("  {l}");
    }
    Ok(())
}
