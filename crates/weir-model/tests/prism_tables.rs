//! The table-driven trigger expectations of Beam's Prism runner
//! (`sdks/go/pkg/beam/runners/prism/internal/engine/strategy_test.go`,
//! `TestTriggers_isReady` and `TestEarliestCompletion`), ported to Weir's
//! trigger state machine.
//!
//! Each step adds `n` elements, optionally with the end of the window
//! reached, and asks whether the trigger fires (firing it if so), exactly as
//! Prism's `isReady`. Where Prism and Java (normative) differ, the test uses
//! Java's spelling of the same behaviour and says so.

use weir_model::{Duration, IntervalWindow, Timestamp, Trigger, TriggerContext, TriggerProgram, Window};

const WINDOW: Window = Window::interval(0, 100);

/// (new elements, end of window reached, should fire)
type Step = (u64, bool, bool);

fn run_table(name: &str, trigger: Trigger, steps: &[Step]) {
    let program = TriggerProgram::compile(&trigger);
    let mut state = program.new_state();
    let mut timers = Vec::new();
    for (i, &(n, eow, want)) in steps.iter().enumerate() {
        let cx = TriggerContext {
            window: WINDOW,
            input_watermark: if eow { Timestamp::from_millis(100) } else { Timestamp::MIN },
            processing_time: Timestamp::MIN,
            merging: false,
        };
        for _ in 0..n {
            program.on_element(&mut state, &cx, &mut timers);
        }
        // A runner never asks a closed window's trigger (the window is dropped).
        let fired = !state.is_finished() && program.should_fire(&state, &cx);
        if fired {
            program.on_fire(&mut state, &cx);
        }
        assert_eq!(fired, want, "{name}: step {i} ({n} new elements, end of window {eow})");
    }
}

fn ones(fires: &[bool]) -> Vec<Step> {
    fires.iter().map(|&f| (1, false, f)).collect()
}

const F: bool = false;
const T: bool = true;

#[test]
fn never() {
    run_table("never", Trigger::Never, &[(1, F, F), (2, F, F), (4, F, F)]);
}

#[test]
fn count_1() {
    run_table("count[1]", Trigger::after_count(1), &ones(&[T, F, F]));
}

#[test]
fn count_2() {
    run_table("count[2]", Trigger::after_count(2), &ones(&[F, T, F, F]));
}

#[test]
fn count_2_jumpover() {
    run_table("count[2]_jumpover", Trigger::after_count(2), &[(1, F, F), (2, F, T), (1, F, F), (1, F, F)]);
}

#[test]
fn count_2_repeated() {
    run_table(
        "count[2]_repeated",
        Trigger::repeatedly(Trigger::after_count(2)),
        &[(1, F, F), (2, F, T), (1, F, F), (1, F, T), (2, F, T)],
    );
}

#[test]
fn always() {
    run_table("always", Trigger::Always, &[(1, F, T), (2, F, T), (4, F, T)]);
}

fn counts(ns: &[u64]) -> Vec<Trigger> {
    ns.iter().map(|&n| Trigger::after_count(n)).collect()
}

#[test]
fn after_each_2_1_3() {
    run_table("afterEach_2_1_3", Trigger::after_each(counts(&[2, 1, 3])), &ones(&[F, T, T, F, F, T, F, F, F, F]));
}

#[test]
fn after_any_2_3_4() {
    run_table("afterAny_2_3_4", Trigger::after_any(counts(&[2, 3, 4])), &ones(&[F, T, F, F, F, F, F, F, F, F]));
}

#[test]
fn after_all_2_3_4() {
    run_table("afterAll_2_3_4", Trigger::after_all(counts(&[2, 3, 4])), &ones(&[F, F, F, T, F, F, F, F, F, F]));
}

/// Prism's `OrFinally{Main: Count(2), Finally: Count(7)}` keeps firing its
/// main trigger; in Java `t.orFinally(u)` finishes as soon as `t` finishes,
/// so the same behaviour is spelled `Repeatedly(AfterCount(2)).orFinally(AfterCount(7))`.
#[test]
fn or_finally_2_7() {
    run_table(
        "orFinally_2_7",
        Trigger::repeatedly(Trigger::after_count(2)).or_finally(Trigger::after_count(7)),
        &ones(&[F, T, F, T, F, T, T, F, F, F, F]),
    );
}

/// Java semantics of the literal Prism spelling: the once-trigger main
/// finishes the `OrFinally` at its first firing.
#[test]
fn or_finally_with_a_once_trigger_finishes_with_it() {
    run_table(
        "orFinally_once",
        Trigger::after_count(2).or_finally(Trigger::after_count(7)),
        &ones(&[F, T, F, F, F, F, F, F]),
    );
}

#[test]
fn repeated_after_each_2_1_3() {
    run_table(
        "repeated_afterEach_2_1_3",
        Trigger::repeatedly(Trigger::after_each(counts(&[2, 1, 3]))),
        &ones(&[F, T, T, F, F, T, F, T, T, F, F, T, F]),
    );
}

#[test]
fn repeated_after_any_2_3_4() {
    run_table(
        "repeated_afterAny_2_3_4",
        Trigger::repeatedly(Trigger::after_any(counts(&[2, 3, 4]))),
        &ones(&[F, T, F, T, F, T, F, T, F, T]),
    );
}

#[test]
fn repeated_after_all_2_3_4() {
    run_table(
        "repeated_afterAll_2_3_4",
        Trigger::repeatedly(Trigger::after_all(counts(&[2, 3, 4]))),
        &ones(&[F, F, F, T, F, F, F, T, F, F]),
    );
}

#[test]
fn repeated_or_finally_2_7() {
    run_table(
        "repeated_orFinally_2_7",
        Trigger::repeatedly(Trigger::repeatedly(Trigger::after_count(2)).or_finally(Trigger::after_count(7))),
        &ones(&[F, T, F, T, F, T, T, F, T, F, T]),
    );
}

#[test]
fn after_end_of_window_early_2() {
    run_table(
        "afterEndOfWindow_Early2",
        Trigger::after_watermark().with_early_firings(Trigger::after_count(2)),
        &[(1, F, F), (1, F, T), (1, F, F), (1, F, T), (1, T, T), (1, T, F), (1, T, F), (1, T, F)],
    );
}

#[test]
fn after_end_of_window_early_never_late_2() {
    run_table(
        "afterEndOfWindow_EarlyNever_Late2",
        Trigger::after_watermark().with_early_firings(Trigger::Never).with_late_firings(Trigger::after_count(2)),
        &[
            (1, F, F),
            (1, F, F),
            (1, F, F),
            (1, F, F),
            (1, T, T),
            (1, T, F),
            (1, T, T),
            (1, T, F),
            (1, T, T),
            (1, T, F),
            (1, T, T),
        ],
    );
}

/// `TestEarliestCompletion`: the garbage-collection time of a window.
#[test]
fn earliest_completion() {
    let ms = Duration::from_millis;
    assert_eq!(Window::Global.gc_time(Duration::ZERO), Timestamp::END_OF_GLOBAL_WINDOW);
    assert_eq!(Window::interval(0, 4).gc_time(Duration::ZERO), Timestamp::from_millis(3));
    assert_eq!(Window::interval(0, 4).gc_time(ms(5)), Timestamp::from_millis(8));
    // Prism adds the lateness past the end of the global window (EOGW + 5 s,
    // and MAX − 1 or MAX + 5 s for the window [MIN, MAX)); Java's
    // LateDataUtils clamps every GC time to the end of the global window,
    // which keeps timers representable. Java is normative here.
    assert_eq!(Window::Global.gc_time(Duration::from_secs(5)), Timestamp::END_OF_GLOBAL_WINDOW);
    let everything = Window::Interval(IntervalWindow::new(Timestamp::MIN, Timestamp::MAX));
    assert_eq!(everything.gc_time(Duration::ZERO), Timestamp::END_OF_GLOBAL_WINDOW);
    assert_eq!(everything.gc_time(Duration::from_secs(5)), Timestamp::END_OF_GLOBAL_WINDOW);
}
