//! The Streaming 102 / Streaming Systems running example as a Weir pipeline
//! on the default runner (embedded Timely, all cores): team scores summed in
//! 2-minute event-time windows, with early panes every minute of processing
//! time, an on-time pane when the watermark passes the window, and a late
//! pane for every late score (allowed lateness 10 min), in the three
//! accumulation modes. The input is a scripted stream (`TestStream`): scores
//! arriving at given processing times and a heuristic watermark. Processing
//! time is simulated, so every run gives the same panes without sleeping.
//!
//! Run: `cargo run --release -p weir --example team_scores`

use weir::prelude::*;

const fn at(m: i64, s: i64) -> Timestamp {
    Timestamp::from_millis((m * 60 + s) * 1000)
}

fn clock(t: Timestamp) -> String {
    let s = t.millis().div_euclid(1000);
    let ms = t.millis().rem_euclid(1000);
    if ms == 0 {
        format!("12:{:02}:{:02}", s / 60, s % 60)
    } else {
        format!("12:{:02}:{:02}.{ms:03}", s / 60, s % 60)
    }
}

/// Minutes and seconds after 12:00.
type Clock = (i64, i64);

/// (team, score, event time, arrival time).
const SCORES: &[(&str, i64, Clock, Clock)] = &[
    ("blue", 5, (0, 26), (5, 19)),
    ("red", 6, (0, 40), (5, 30)),
    ("blue", 7, (2, 26), (5, 39)),
    ("blue", 3, (3, 39), (6, 13)),
    ("red", 2, (3, 5), (6, 25)),
    ("blue", 4, (4, 19), (6, 39)),
    ("blue", 3, (6, 39), (7, 6)),
    ("blue", 8, (3, 6), (7, 19)),
    ("red", 1, (7, 10), (7, 40)),
    ("blue", 3, (7, 49), (7, 52)),
    ("blue", 9, (1, 25), (9, 2)), // the late 9: its window's on-time pane is long gone
];

/// (arrival time, watermark): a heuristic watermark.
const WATERMARK: &[(Clock, Clock)] =
    &[((5, 45), (2, 0)), ((6, 30), (3, 0)), ((7, 0), (4, 0)), ((7, 30), (6, 0)), ((8, 10), (8, 0))];

/// The script: each score and watermark step at its processing time.
fn stream() -> TestStream<(String, i64)> {
    let secs = |(m, s): Clock| m * 60 + s;
    // (arrival, a score, a watermark step)
    type Event = (i64, Option<(String, i64, Timestamp)>, Option<Timestamp>);
    let mut events: Vec<Event> = Vec::new();
    for &(team, score, event, arrival) in SCORES {
        events.push((secs(arrival), Some((team.to_string(), score, at(event.0, event.1))), None));
    }
    for &(arrival, wm) in WATERMARK {
        events.push((secs(arrival), None, Some(at(wm.0, wm.1))));
    }
    events.sort_by_key(|e| e.0);
    let mut s = TestStream::new();
    let mut clock = 0;
    for (arrival, score, wm) in events {
        if arrival > clock {
            s = s.advance_processing_time(Duration::from_secs(arrival - clock));
            clock = arrival;
        }
        if let Some((team, points, t)) = score {
            s = s.add_elements([((team, points), t)]);
        }
        if let Some(w) = wm {
            s = s.advance_watermark_to(w);
        }
    }
    // A last minute of processing time, so pending early firings can happen.
    s.advance_processing_time(Duration::from_secs(60))
}

fn strategy(mode: AccumulationMode) -> WindowingStrategy {
    WindowingStrategy::new(FixedWindows::of(Duration::from_mins(2)).expect("valid window size"))
        .trigger(
            Trigger::after_watermark()
                .with_early_firings(
                    Trigger::after_processing_time().aligned_to(Duration::from_mins(1), Timestamp::from_millis(0)),
                )
                .with_late_firings(Trigger::after_count(1)),
        )
        .accumulation(mode)
        .allowed_lateness(Duration::from_mins(10))
}

fn print_panes(mode: AccumulationMode, mut panes: Vec<WindowedValue<(String, String)>>) {
    // A retraction repeats the pane it withdraws: show it after that pane, before the next.
    panes.sort_by_key(|v| (v.window, v.value.0.clone(), v.pane.index, v.value.1.starts_with('-')));
    println!("\n== {mode} ==");
    println!("{:<5} {:<16} {:<18} {:>7}  timestamp", "team", "window", "pane", "sum");
    for v in panes {
        let w = v.window.as_interval().expect("fixed windows");
        let pane = format!("{:?} #{}{}", v.pane.timing, v.pane.index, if v.pane.is_last { " last" } else { "" });
        println!(
            "{:<5} [{}, {})   {:<18} {:>7}  {}",
            v.value.0,
            &clock(w.start)[..5],
            &clock(w.end)[..5],
            pane,
            v.value.1,
            clock(v.timestamp)
        );
    }
}

fn main() -> Result<(), PipelineError> {
    println!("Team scores, 2-minute windows: early panes each minute of processing time, an on-time pane,");
    println!("a late pane per late score.");
    for mode in [AccumulationMode::Discarding, AccumulationMode::Accumulating] {
        let p = Pipeline::new();
        let panes = p
            .test_stream(stream())
            .window_into(strategy(mode))
            .combine_per_key(Sum::new())
            .map(|(team, sum): (String, i64)| (team, sum.to_string()))
            .collect();
        p.run()?;
        print_panes(mode, panes.windowed());
    }
    let mode = AccumulationMode::AccumulatingAndRetracting;
    let p = Pipeline::new();
    let panes = p
        .test_stream(stream())
        .window_into(strategy(mode))
        .combine_per_key_retracting(Sum::new())
        .map(|(team, change): (String, Retractable<i64>)| match change {
            Retractable::Add(s) => (team, s.to_string()),
            Retractable::Retract(s) => (team, format!("-{s}")),
        })
        .collect();
    p.run()?;
    print_panes(mode, panes.windowed());
    Ok(())
}
