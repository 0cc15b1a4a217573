//! User sessions: clicks per user grouped into sessions that close after 5
//! minutes of inactivity, with a late click that bridges two sessions into
//! one (the merged session's first pane is LATE), on the default runner.
//!
//! Run: `cargo run --release -p weir --example user_sessions`

use weir::prelude::*;

fn t(m: i64, s: i64) -> Timestamp {
    Timestamp::from_millis((m * 60 + s) * 1000)
}

fn main() -> Result<(), PipelineError> {
    let click = |user: &str, page: &str, m: i64, s: i64| ((user.to_string(), page.to_string()), t(m, s));
    let clicks = TestStream::new()
        .add_elements([click("ana", "home", 0, 10), click("ana", "search", 1, 0), click("bo", "home", 0, 30)])
        .add_elements([click("ana", "cart", 10, 0), click("bo", "help", 3, 0)])
        .advance_watermark_to(t(20, 0))
        // A late click at 12:05:30 bridges ana's sessions [12:00:10, 12:06:00) and [12:10, 12:15).
        .add_elements([click("ana", "item", 5, 30)])
        .advance_watermark_to(t(40, 0));

    let p = Pipeline::new();
    let sessions = p
        .test_stream(clicks)
        .window_into(
            WindowingStrategy::new(Sessions::with_gap(Duration::from_mins(5)).expect("valid gap"))
                .trigger(Trigger::after_watermark().with_late_firings(Trigger::after_count(1)))
                .accumulation(AccumulationMode::Accumulating)
                .allowed_lateness(Duration::from_mins(30)),
        )
        .group_by_key()
        .map(|(user, mut pages): (String, Vec<String>)| {
            pages.sort();
            (user, pages.len(), pages.join(","))
        })
        .collect();
    p.run()?;

    let mut rows = sessions.windowed();
    rows.sort_by_key(|v| (v.value.0.clone(), v.window, v.pane.index));
    println!("{:<5} {:<24} {:<14} {:>6}  pages", "user", "session", "pane", "clicks");
    for v in rows {
        let w = v.window.as_interval().expect("session windows");
        let span = |ts: Timestamp| {
            let s = ts.millis() / 1000;
            format!("12:{:02}:{:02}", s / 60, s % 60)
        };
        println!(
            "{:<5} [{}, {})  {:<14} {:>6}  {}",
            v.value.0,
            span(w.start),
            span(w.end),
            format!("{:?} #{}", v.pane.timing, v.pane.index),
            v.value.1,
            v.value.2
        );
    }
    Ok(())
}
