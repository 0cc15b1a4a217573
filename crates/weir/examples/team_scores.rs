//! The Streaming 102 / Streaming Systems running example as a Weir pipeline
//! on the default runner (embedded Timely, all cores): team scores summed in
//! 2-minute event-time windows, with an early pane for every score that
//! arrives before the watermark passes the window, an on-time pane when it
//! does, and a late pane for every late score (allowed lateness 10 min), in
//! the three accumulation modes. The input is a scripted stream
//! (`TestStream`) with a heuristic watermark, so every run gives the same
//! panes.
//!
//! Run: `cargo run --release -p weir --example team_scores`
//! (`streaming_102` shows the same story with processing-time early firings
//! on the model core alone.)

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

fn stream() -> TestStream<(String, i64)> {
    let score = |team: &str, points: i64, m: i64, s: i64| ((team.to_string(), points), at(m, s));
    TestStream::new()
        .add_elements([score("blue", 5, 0, 26), score("red", 6, 0, 40)])
        .add_elements([score("blue", 7, 2, 26)])
        .advance_watermark_to(at(2, 0))
        .add_elements([score("blue", 3, 3, 39), score("red", 2, 3, 5)])
        .add_elements([score("blue", 4, 4, 19)])
        .advance_watermark_to(at(4, 0))
        .add_elements([score("blue", 3, 6, 39), score("blue", 8, 3, 6)]) // the 8 is late for [12:02, 12:04)
        .advance_watermark_to(at(6, 0))
        .add_elements([score("blue", 9, 1, 25)]) // very late, still within the allowed lateness
        .advance_watermark_to(at(8, 0))
}

fn strategy(mode: AccumulationMode) -> WindowingStrategy {
    WindowingStrategy::new(FixedWindows::of(Duration::from_mins(2)).expect("valid window size"))
        .trigger(
            Trigger::after_watermark()
                .with_early_firings(Trigger::after_count(1))
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
    println!("Team scores, 2-minute windows: early pane per score, on-time pane, late pane per late score.");
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
