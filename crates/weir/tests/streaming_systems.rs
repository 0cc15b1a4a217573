//! The running example of *Streaming Systems* (Akidau, Chernyak, Lax),
//! chapters 2 and 4, on every runner, with the expected panes of the
//! book's own Beam tests (github.com/takidau/streamingbook,
//! `BeamModel.java` and `BeamModelTest.java`, Beam 2.5.0): nine scores of
//! one team, replayed by a TestStream with a perfect, a heuristic or no
//! watermark and processing-time steps between the elements.
//!
//! Ported: examples 2-1, 2-2 (batch), 2-3 (per-record), 2-5 (unaligned
//! delay), 2-6 (perfect and heuristic watermark), 2-7 (early, on-time and
//! late firings, both watermarks), 2-8 (allowed lateness), 2-9 (discarding)
//! and 4-3 (sessions). Not ported: 2-4 (delays aligned to 12:05 in
//! processing time), whose expected panes the book's own comment calls
//! "kind of funky": they depend on when Beam's direct runner delivers a
//! processing-time timer relative to the next element, not on the model;
//! and the `ValidityWindows` test, a custom window function outside the book.

use weir::prelude::*;

mod common;
use common::runners;

/// `HH:MM:SS` on 1970-01-01 (the book's `Instant.parse("T" + time + "Z")`).
fn t(hms: &str) -> Timestamp {
    let p: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    Timestamp::from_millis(((p[0] * 60 + p[1]) * 60 + p[2]) * 1000)
}

fn fmt_time(ts: Timestamp) -> String {
    if ts == Timestamp::END_OF_GLOBAL_WINDOW {
        return "END_OF_GLOBAL_WINDOW".into();
    }
    let s = ts.millis() / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

/// The book's `FormatAsStrings`.
fn format(v: &WindowedValue<(String, i32)>) -> String {
    let window = match v.window {
        Window::Global => "[global window]".to_string(),
        w => {
            let w = w.as_interval().unwrap();
            format!("[{}, {})", fmt_time(w.start), fmt_time(w.end))
        }
    };
    let timing = match v.pane.timing {
        Timing::Early => "EARLY",
        Timing::OnTime => "ON_TIME",
        Timing::Late => "LATE",
        Timing::Unknown => "UNKNOWN",
    };
    let mut s = format!(
        "{window}: {}:{:<2} {} {:<7} index={}",
        v.value.0,
        v.value.1,
        fmt_time(v.timestamp),
        timing,
        v.pane.index
    );
    if v.pane.nonspeculative_index > -1 {
        s += &format!(" onTimeIndex={}", v.pane.nonspeculative_index);
    }
    if v.pane.is_first {
        s += " isFirst";
    }
    if v.pane.is_last {
        s += " isLast";
    }
    s
}

fn score(points: i32, at: &str) -> ((String, i32), Timestamp) {
    (("TeamX".to_string(), points), t(at))
}

fn batch_input() -> Vec<((String, i32), Timestamp)> {
    [
        (5, "12:00:26"),
        (7, "12:02:26"),
        (3, "12:03:39"),
        (4, "12:04:19"),
        (8, "12:03:06"),
        (3, "12:06:39"),
        (9, "12:01:26"),
        (8, "12:07:26"),
        (1, "12:07:46"),
    ]
    .iter()
    .map(|&(p, at)| score(p, at))
    .collect()
}

#[derive(Copy, Clone, PartialEq)]
enum Watermark {
    /// The watermark stays at 12:00 until the end of input.
    None,
    Perfect,
    Heuristic,
}

/// The book's `createStream`: processing time starts at 12:00:00 with the
/// watermark, then every step is at the processing time the book gives.
fn stream(wm: Watermark, extra_six: bool) -> TestStream<(String, i32)> {
    let mut s = TestStream::new().advance_watermark_to(t("12:00:00")).advance_processing_time_to(t("12:00:00"));
    let pt = |s: TestStream<(String, i32)>, at: &str| s.advance_processing_time_to(t(at));
    let add = |s: TestStream<(String, i32)>, p: i32, at: &str| s.add_elements([score(p, at)]);
    s = pt(s, "12:04:59");
    s = add(s, 5, "12:00:26");
    s = pt(s, "12:05:39");
    s = add(s, 7, "12:02:24");
    s = pt(s, "12:06:00");
    if wm == Watermark::Heuristic {
        s = s.advance_watermark_to(t("12:02:00"));
    }
    s = pt(s, "12:06:13");
    s = add(s, 3, "12:03:39");
    s = pt(s, "12:06:39");
    s = add(s, 4, "12:04:19");
    if extra_six {
        s = add(s, 6, "12:00:53");
    }
    s = pt(s, "12:07:06");
    s = add(s, 8, "12:03:06");
    s = pt(s, "12:07:19");
    s = add(s, 3, "12:06:39");
    s = pt(s, "12:07:30");
    if wm == Watermark::Heuristic {
        s = s.advance_watermark_to(t("12:04:00"));
        s = pt(s, "12:07:40");
        s = s.advance_watermark_to(t("12:06:00"));
    }
    s = pt(s, "12:08:19");
    s = add(s, 9, "12:01:25");
    s = pt(s, "12:08:39");
    if wm == Watermark::Perfect {
        s = s.advance_watermark_to(t("12:02:00"));
    }
    s = add(s, 8, "12:07:26");
    s = pt(s, "12:09:00");
    s = add(s, 1, "12:07:46");
    if wm == Watermark::Perfect {
        s = s.advance_watermark_to(t("12:04:00"));
        s = pt(s, "12:09:10");
        s = s.advance_watermark_to(t("12:06:00"));
        s = pt(s, "12:09:20");
        s = s.advance_watermark_to(t("12:08:00"));
    }
    s = pt(s, "12:09:30");
    if wm == Watermark::Heuristic {
        s = s.advance_watermark_to(t("12:08:30"));
    }
    pt(s, "12:10:00")
}

enum Input {
    Batch,
    Stream(Watermark, bool),
}

fn check(input: Input, strategy: Option<WindowingStrategy>, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let scores = match &input {
            Input::Batch => p.create_timestamped(batch_input()),
            Input::Stream(wm, six) => p.test_stream(stream(*wm, *six)),
        };
        let scores = match &strategy {
            Some(s) => scores.window_into(s.clone()),
            None => scores,
        };
        let out = scores.combine_per_key(Sum::<i32>::new()).collect();
        p.run_with(&*runner()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut got: Vec<String> = out.windowed().iter().map(format).collect();
        got.sort();
        assert_eq!(got, expected, "{name}");
    }
}

fn two_minutes() -> FixedWindows {
    FixedWindows::of(Duration::from_mins(2)).unwrap()
}

fn early_on_time_late() -> Trigger {
    Trigger::after_watermark()
        .with_early_firings(Trigger::after_processing_time().plus_delay(Duration::from_mins(1)))
        .with_late_firings(Trigger::after_count(1))
}

fn a_thousand_days() -> Duration {
    Duration::from_hours(24 * 1000)
}

#[test]
fn example2_1_figure2_3_unwindowed_batch() {
    check(
        Input::Batch,
        None,
        &["[global window]: TeamX:48 END_OF_GLOBAL_WINDOW ON_TIME index=0 onTimeIndex=0 isFirst isLast"],
    );
}

#[test]
fn example2_2_figure2_5_windowed_batch() {
    check(
        Input::Batch,
        Some(WindowingStrategy::new(two_minutes())),
        &[
            "[12:00:00, 12:02:00): TeamX:14 12:01:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
            "[12:02:00, 12:04:00): TeamX:18 12:03:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
            "[12:06:00, 12:08:00): TeamX:12 12:07:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
        ],
    );
}

#[test]
fn example2_3_figure2_6_per_record_streaming() {
    check(
        Input::Stream(Watermark::None, false),
        Some(
            WindowingStrategy::new(two_minutes())
                .trigger(Trigger::repeatedly(Trigger::after_count(1)))
                .allowed_lateness(a_thousand_days())
                .accumulation(AccumulationMode::Accumulating),
        ),
        &[
            "[12:00:00, 12:02:00): TeamX:5  12:01:59 EARLY   index=0 isFirst",
            "[12:00:00, 12:02:00): TeamX:14 12:01:59 EARLY   index=1",
            "[12:02:00, 12:04:00): TeamX:7  12:03:59 EARLY   index=0 isFirst",
            "[12:02:00, 12:04:00): TeamX:10 12:03:59 EARLY   index=1",
            "[12:02:00, 12:04:00): TeamX:18 12:03:59 EARLY   index=2",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 EARLY   index=0 isFirst",
            "[12:06:00, 12:08:00): TeamX:3  12:07:59 EARLY   index=0 isFirst",
            "[12:06:00, 12:08:00): TeamX:11 12:07:59 EARLY   index=1",
            "[12:06:00, 12:08:00): TeamX:12 12:07:59 EARLY   index=2",
        ],
    );
}

#[test]
fn example2_5_figure2_8_unaligned_delay() {
    check(
        Input::Stream(Watermark::None, false),
        Some(
            WindowingStrategy::new(two_minutes())
                .trigger(Trigger::repeatedly(Trigger::after_processing_time().plus_delay(Duration::from_mins(2))))
                .allowed_lateness(a_thousand_days())
                .accumulation(AccumulationMode::Accumulating),
        ),
        &[
            "[12:00:00, 12:02:00): TeamX:5  12:01:59 EARLY   index=0 isFirst",
            "[12:00:00, 12:02:00): TeamX:14 12:01:59 ON_TIME index=1 onTimeIndex=0 isLast",
            "[12:02:00, 12:04:00): TeamX:18 12:03:59 EARLY   index=0 isFirst",
            "[12:02:00, 12:04:00): TeamX:18 12:03:59 ON_TIME index=1 onTimeIndex=0 isLast",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 EARLY   index=0 isFirst",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 ON_TIME index=1 onTimeIndex=0 isLast",
            "[12:06:00, 12:08:00): TeamX:12 12:07:59 EARLY   index=0 isFirst",
            "[12:06:00, 12:08:00): TeamX:12 12:07:59 ON_TIME index=1 onTimeIndex=0 isLast",
        ],
    );
}

#[test]
fn example2_6_figure2_10_left_perfect_watermark() {
    check(
        Input::Stream(Watermark::Perfect, false),
        Some(WindowingStrategy::new(two_minutes())),
        &[
            "[12:00:00, 12:02:00): TeamX:14 12:01:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
            "[12:02:00, 12:04:00): TeamX:18 12:03:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
            "[12:06:00, 12:08:00): TeamX:12 12:07:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
        ],
    );
}

#[test]
fn example2_6_figure2_10_right_heuristic_watermark() {
    check(
        Input::Stream(Watermark::Heuristic, false),
        Some(WindowingStrategy::new(two_minutes())),
        &[
            "[12:00:00, 12:02:00): TeamX:5  12:01:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
            "[12:02:00, 12:04:00): TeamX:18 12:03:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
            "[12:06:00, 12:08:00): TeamX:12 12:07:59 ON_TIME index=0 onTimeIndex=0 isFirst isLast",
        ],
    );
}

fn figure2_11() -> WindowingStrategy {
    WindowingStrategy::new(two_minutes())
        .trigger(early_on_time_late())
        .allowed_lateness(a_thousand_days())
        .accumulation(AccumulationMode::Accumulating)
}

#[test]
fn example2_7_figure2_11_left_early_on_time_late_perfect_watermark() {
    // No isLast: the perfect watermark fires the on-time panes, not the end of input.
    check(
        Input::Stream(Watermark::Perfect, false),
        Some(figure2_11()),
        &[
            "[12:00:00, 12:02:00): TeamX:5  12:01:59 EARLY   index=0 isFirst",
            "[12:00:00, 12:02:00): TeamX:14 12:01:59 ON_TIME index=1 onTimeIndex=0",
            "[12:02:00, 12:04:00): TeamX:10 12:03:59 EARLY   index=0 isFirst",
            "[12:02:00, 12:04:00): TeamX:18 12:03:59 EARLY   index=1",
            "[12:02:00, 12:04:00): TeamX:18 12:03:59 ON_TIME index=2 onTimeIndex=0",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 EARLY   index=0 isFirst",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 ON_TIME index=1 onTimeIndex=0",
            "[12:06:00, 12:08:00): TeamX:3  12:07:59 EARLY   index=0 isFirst",
            "[12:06:00, 12:08:00): TeamX:12 12:07:59 ON_TIME index=1 onTimeIndex=0",
        ],
    );
}

#[test]
fn example2_7_figure2_11_right_early_on_time_late_heuristic_watermark() {
    check(
        Input::Stream(Watermark::Heuristic, false),
        Some(figure2_11()),
        &[
            "[12:00:00, 12:02:00): TeamX:5  12:01:59 EARLY   index=0 isFirst",
            "[12:00:00, 12:02:00): TeamX:5  12:01:59 ON_TIME index=1 onTimeIndex=0",
            "[12:00:00, 12:02:00): TeamX:14 12:01:59 LATE    index=2 onTimeIndex=1",
            "[12:02:00, 12:04:00): TeamX:10 12:03:59 EARLY   index=0 isFirst",
            "[12:02:00, 12:04:00): TeamX:18 12:03:59 ON_TIME index=1 onTimeIndex=0",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 EARLY   index=0 isFirst",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 ON_TIME index=1 onTimeIndex=0",
            "[12:06:00, 12:08:00): TeamX:3  12:07:59 EARLY   index=0 isFirst",
            "[12:06:00, 12:08:00): TeamX:12 12:07:59 ON_TIME index=1 onTimeIndex=0",
        ],
    );
}

#[test]
fn example2_8_figure2_12_allowed_lateness() {
    check(
        Input::Stream(Watermark::Heuristic, true),
        Some(
            WindowingStrategy::new(two_minutes())
                .trigger(early_on_time_late())
                .allowed_lateness(Duration::from_mins(2))
                .accumulation(AccumulationMode::Accumulating),
        ),
        &[
            "[12:00:00, 12:02:00): TeamX:5  12:01:59 EARLY   index=0 isFirst",
            "[12:00:00, 12:02:00): TeamX:5  12:01:59 ON_TIME index=1 onTimeIndex=0",
            "[12:00:00, 12:02:00): TeamX:11 12:01:59 LATE    index=2 onTimeIndex=1",
            "[12:02:00, 12:04:00): TeamX:10 12:03:59 EARLY   index=0 isFirst",
            "[12:02:00, 12:04:00): TeamX:18 12:03:59 ON_TIME index=1 onTimeIndex=0",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 EARLY   index=0 isFirst",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 ON_TIME index=1 onTimeIndex=0",
            "[12:06:00, 12:08:00): TeamX:3  12:07:59 EARLY   index=0 isFirst",
            "[12:06:00, 12:08:00): TeamX:12 12:07:59 ON_TIME index=1 onTimeIndex=0",
        ],
    );
}

#[test]
fn example2_9_figure2_13_discarding() {
    check(
        Input::Stream(Watermark::Heuristic, false),
        Some(
            WindowingStrategy::new(two_minutes())
                .trigger(early_on_time_late())
                .allowed_lateness(a_thousand_days())
                .accumulation(AccumulationMode::Discarding),
        ),
        &[
            "[12:00:00, 12:02:00): TeamX:5  12:01:59 EARLY   index=0 isFirst",
            "[12:00:00, 12:02:00): TeamX:0  12:01:59 ON_TIME index=1 onTimeIndex=0",
            "[12:00:00, 12:02:00): TeamX:9  12:01:59 LATE    index=2 onTimeIndex=1",
            "[12:02:00, 12:04:00): TeamX:10 12:03:59 EARLY   index=0 isFirst",
            "[12:02:00, 12:04:00): TeamX:8  12:03:59 ON_TIME index=1 onTimeIndex=0",
            "[12:04:00, 12:06:00): TeamX:4  12:05:59 EARLY   index=0 isFirst",
            "[12:04:00, 12:06:00): TeamX:0  12:05:59 ON_TIME index=1 onTimeIndex=0",
            "[12:06:00, 12:08:00): TeamX:3  12:07:59 EARLY   index=0 isFirst",
            "[12:06:00, 12:08:00): TeamX:9  12:07:59 ON_TIME index=1 onTimeIndex=0",
        ],
    );
}

#[test]
fn example4_3_figure4_7_sessions() {
    // The last session's on-time pane comes with the watermark's jump to the
    // end of input, past its end of window and its GC time at once: one
    // pane, on time and last (SEMANTICS §6.2).
    check(
        Input::Stream(Watermark::Heuristic, false),
        Some(
            WindowingStrategy::new(Sessions::with_gap(Duration::from_mins(1)).unwrap())
                .trigger(early_on_time_late())
                .allowed_lateness(a_thousand_days())
                .accumulation(AccumulationMode::Accumulating),
        ),
        &[
            "[12:00:26, 12:01:26): TeamX:5  12:01:25 EARLY   index=0 isFirst",
            "[12:00:26, 12:01:26): TeamX:5  12:01:25 ON_TIME index=1 onTimeIndex=0",
            "[12:02:24, 12:03:24): TeamX:7  12:03:23 EARLY   index=0 isFirst",
            "[12:02:24, 12:05:19): TeamX:22 12:05:18 EARLY   index=0 isFirst",
            "[12:02:24, 12:05:19): TeamX:22 12:05:18 ON_TIME index=1 onTimeIndex=0",
            "[12:00:26, 12:05:19): TeamX:36 12:05:18 LATE    index=0 onTimeIndex=0 isFirst",
            "[12:06:39, 12:07:39): TeamX:3  12:07:38 EARLY   index=0 isFirst",
            "[12:06:39, 12:08:46): TeamX:12 12:08:45 EARLY   index=0 isFirst",
            "[12:06:39, 12:08:46): TeamX:12 12:08:45 ON_TIME index=1 onTimeIndex=0 isLast",
        ],
    );
}
