//! The Streaming 102 / Streaming Systems running example, on Weir's model
//! core: team scores summed in 2-minute fixed event-time windows, with early
//! firings every minute of processing time, an on-time firing when the
//! watermark passes the end of the window, and a late firing for every late
//! score (allowed lateness 10 minutes), in all three accumulation modes.
//!
//! The stream is scripted (event time, arrival time, a heuristic watermark)
//! and replayed second by second of processing time, so the run is
//! deterministic: no clock is read anywhere.
//!
//! Run: `cargo run --release -p weir --example streaming_102`

use weir::prelude::*;

/// Milliseconds since 12:00:00 for `m` minutes and `s` seconds past noon.
const fn at(m: i64, s: i64) -> i64 {
    (m * 60 + s) * 1000
}

/// (team, score, event time, arrival time)
const SCORES: &[(&str, i64, i64, i64)] = &[
    ("blue", 5, at(0, 26), at(5, 19)),
    ("red", 6, at(0, 40), at(5, 30)),
    ("blue", 7, at(2, 26), at(5, 39)),
    ("blue", 3, at(3, 39), at(6, 13)),
    ("red", 2, at(3, 5), at(6, 25)),
    ("blue", 4, at(4, 19), at(6, 39)),
    ("blue", 3, at(6, 39), at(7, 6)),
    ("blue", 8, at(3, 6), at(7, 19)),
    ("red", 1, at(7, 10), at(7, 40)),
    ("blue", 3, at(7, 49), at(7, 52)),
    ("blue", 9, at(1, 25), at(9, 2)), // the late 9: its window's on-time pane is long gone
];

/// (processing time, watermark): a heuristic watermark, then end of input.
const WATERMARK: &[(i64, i64)] =
    &[(at(5, 45), at(2, 0)), (at(6, 30), at(3, 0)), (at(7, 0), at(4, 0)), (at(7, 30), at(6, 0)), (at(8, 10), at(8, 0))];

fn clock(ms: i64) -> String {
    if ms >= Timestamp::END_OF_GLOBAL_WINDOW.millis() {
        return "+inf".into();
    }
    let s = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    if frac == 0 {
        format!("12:{:02}:{:02}", s / 60, s % 60)
    } else {
        format!("12:{:02}:{:02}.{frac:03}", s / 60, s % 60)
    }
}

fn window(w: &Window) -> String {
    match w.as_interval() {
        Some(iv) => format!("[{}, {})", &clock(iv.start.millis())[..5], &clock(iv.end.millis())[..5]),
        None => "global".into(),
    }
}

fn run(mode: AccumulationMode) -> Result<(), ModelError> {
    let strategy = WindowingStrategy::new(FixedWindows::of(Duration::from_mins(2))?)
        .trigger(
            Trigger::after_watermark()
                .with_early_firings(
                    Trigger::after_processing_time().aligned_to(Duration::from_mins(1), Timestamp::from_millis(0)),
                )
                .with_late_firings(Trigger::after_count(1)),
        )
        .accumulation(mode)
        .allowed_lateness(Duration::from_mins(10));
    let mut sums = GroupAlsoByWindow::new(strategy, CombineAggregator::new(Sum::<i64>::new()))?;

    println!("\n== {mode} ==");
    println!("{:<9} {:<5} {:<16} {:<22} {:>5}  {:<12}", "proc time", "team", "window", "pane", "sum", "timestamp");
    let mut out = Vec::new();
    let print = |now: &str, out: &mut Vec<GroupOutput<&str, i64, i64>>| {
        for o in out.drain(..) {
            if let GroupOutput::Pane(p) = o {
                let pane = format!(
                    "{:?} #{}{}{}",
                    p.pane.timing,
                    p.pane.index,
                    if p.pane.is_last { " last" } else { "" },
                    if p.retraction { " retract" } else { "" }
                );
                let value = if p.retraction { -p.value } else { p.value };
                println!(
                    "{now:<9} {:<5} {:<16} {:<22} {value:>5}  {}",
                    p.key,
                    window(&p.window),
                    pane,
                    clock(p.timestamp.millis())
                );
            }
        }
    };
    // Replay second by second of processing time from 12:05:00 to 12:10:00.
    for second in (5 * 60)..=(10 * 60) {
        let now = second * 1000;
        sums.advance_processing_time(Timestamp::from_millis(now), &mut out);
        for &(team, score, event, _) in SCORES.iter().filter(|s| s.3 == now) {
            sums.process_bundle(&team, [(score, Timestamp::from_millis(event))], &mut out);
        }
        if let Some(&(_, wm)) = WATERMARK.iter().find(|w| w.0 == now) {
            sums.advance_input_watermark(Timestamp::from_millis(wm), &mut out);
        }
        print(&clock(now), &mut out);
    }
    sums.advance_input_watermark(Timestamp::MAX, &mut out);
    print("end", &mut out);
    let c = sums.counters();
    println!(
        "elements {}, panes {}, retractions {}, dropped (expired {}, closed {})",
        c.elements_in, c.panes_out, c.retractions_out, c.dropped_expired, c.dropped_closed
    );
    Ok(())
}

fn main() -> Result<(), ModelError> {
    println!("Team scores per 2-minute window: early firings each minute of processing time,");
    println!("on-time when the watermark passes the window, late firing per late score.");
    println!("Scripted input (team, score, event time, arrival):");
    for (team, score, event, arrival) in SCORES {
        println!("  {team:<5} {score:>2}  event {}  arrives {}", clock(*event), clock(*arrival));
    }
    for mode in
        [AccumulationMode::Discarding, AccumulationMode::Accumulating, AccumulationMode::AccumulatingAndRetracting]
    {
        run(mode)?;
    }
    Ok(())
}
