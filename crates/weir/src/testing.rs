//! Testing pipelines: run one pipeline on every runner, and assert what
//! each window's panes hold, in the spirit of Beam's `PAssert`
//! (`inWindow(...).containsInAnyOrder`, `inOnTimePane`, `inFinalPane`) plus
//! the full [`PaneInfo`] of every pane.
//!
//! ```
//! use weir::prelude::*;
//! use weir::testing::{assert_that, on_every_runner};
//!
//! let out = on_every_runner(|p| {
//!     p.test_stream(
//!         TestStream::new()
//!             .add_elements([(("k".to_string(), 1), Timestamp::from_millis(1))])
//!             .advance_watermark_to(Timestamp::from_millis(20)),
//!     )
//!     .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap()))
//!     .combine_per_key(Sum::new())
//!     .collect()
//! });
//! let w = Window::interval(0, 10);
//! assert_that(&out).in_window(w).contains_in_any_order([("k".to_string(), 1)]);
//! assert_that(&out).in_window(w).in_on_time_pane().contains_in_any_order([("k".to_string(), 1)]);
//! assert_that(&out).in_window(w).has_panes(&[PaneInfo::on_time(0, 0, true)]);
//! ```

use std::fmt::Debug;

use weir_model::{PaneInfo, Timing, Window};
use weir_pipeline::{Collected, Data, Pipeline, Runner, StateBackend, WindowedValue};

use crate::{ReferenceRunner, TimelyRunner};

/// Makes a fresh runner.
pub type RunnerFactory = Box<dyn Fn() -> Box<dyn Runner>>;

/// The runners every pipeline should agree on: the reference runner (the
/// executable specification), the reference runner recovering from a
/// checkpoint after every step (the specification of recovery), Timely
/// with one thread, with four, and with two keeping keyed state in the
/// on-disk LSM backend with two keys in memory ([`lsm_for_tests`]).
pub fn runners() -> Vec<(&'static str, RunnerFactory)> {
    vec![
        ("reference", Box::new(|| Box::new(ReferenceRunner::default()))),
        ("reference, recovering every step", Box::new(|| Box::new(ReferenceRunner::recovering()))),
        ("timely x1", Box::new(|| Box::new(TimelyRunner::threads(1)))),
        ("timely x4", Box::new(|| Box::new(TimelyRunner::threads(4)))),
        (
            "timely x2, LSM state (2 keys in memory)",
            Box::new(|| Box::new(TimelyRunner::threads(2).with_state_backend(lsm_for_tests()))),
        ),
    ]
}

/// The LSM state backend the tests run on: two keys per operator instance
/// in memory, so that nearly every key's state goes to disk and back.
pub fn lsm_for_tests() -> StateBackend {
    StateBackend::Lsm { dir: std::env::temp_dir().join("weir-test-state"), resident_keys: 2 }
}

/// Build the pipeline once per runner of [`runners`], run it, and check that
/// every runner produced the same multiset of elements (value, timestamp,
/// window, pane). Returns that output, sorted.
///
/// # Panics
/// If a run fails or a runner's output differs from the reference runner's
/// (the message names the runner).
#[track_caller]
pub fn on_every_runner<T: Data + Ord>(mut build: impl FnMut(&Pipeline) -> Collected<T>) -> Vec<WindowedValue<T>> {
    let mut reference: Option<Vec<WindowedValue<T>>> = None;
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let out = build(&p);
        if let Err(e) = p.run_with(&*runner()) {
            panic!("{name}: {e}");
        }
        let mut got = out.windowed();
        got.sort();
        match &reference {
            None => reference = Some(got),
            Some(r) => assert_eq!(&got, r, "{name} differs from the reference runner"),
        }
    }
    reference.expect("at least one runner")
}

/// Assertions over a pipeline's output.
pub fn assert_that<T: Clone>(output: &[WindowedValue<T>]) -> OutputAssert<T> {
    OutputAssert { output: output.to_vec() }
}

/// The output of a pipeline, under assertion.
#[derive(Clone, Debug)]
pub struct OutputAssert<T> {
    output: Vec<WindowedValue<T>>,
}

impl<T: Clone + Debug + Ord> OutputAssert<T> {
    /// Every element, whatever its window and pane, is one of `expected`
    /// and vice versa (as multisets).
    #[track_caller]
    pub fn contains_in_any_order(&self, expected: impl IntoIterator<Item = T>) {
        same_multiset(self.output.iter().map(|v| v.value.clone()).collect(), expected, "the output");
    }
    /// The elements of `window`, over all its panes (`PAssert.inWindow`).
    pub fn in_window(&self, window: Window) -> WindowAssert<T> {
        let mut panes: Vec<WindowedValue<T>> = self.output.iter().filter(|v| v.window == window).cloned().collect();
        panes.sort_by_key(|v| v.pane.index);
        WindowAssert { window, elements: panes }
    }
    /// The windows that have output, sorted.
    pub fn windows(&self) -> Vec<Window> {
        let mut ws: Vec<Window> = self.output.iter().map(|v| v.window).collect();
        ws.sort();
        ws.dedup();
        ws
    }
}

/// The elements of one window, under assertion.
#[derive(Clone, Debug)]
pub struct WindowAssert<T> {
    window: Window,
    elements: Vec<WindowedValue<T>>,
}

impl<T: Clone + Debug + Ord> WindowAssert<T> {
    /// The window's elements, over all panes, are `expected` (as multisets).
    #[track_caller]
    pub fn contains_in_any_order(&self, expected: impl IntoIterator<Item = T>) {
        let what = format!("window {:?}", self.window);
        same_multiset(self.elements.iter().map(|v| v.value.clone()).collect(), expected, &what);
    }
    /// The window's panes, in index order, have exactly these descriptions
    /// (timing, index, non-speculative index, first, last). A pane holding
    /// several elements (a `ParDo` after the grouping) counts once.
    #[track_caller]
    pub fn has_panes(&self, expected: &[PaneInfo]) {
        let mut got: Vec<PaneInfo> = self.elements.iter().map(|v| v.pane).collect();
        got.dedup();
        assert_eq!(got, expected, "the panes of window {:?}", self.window);
    }
    /// The elements of the window's ON_TIME pane (`PAssert.inOnTimePane`).
    pub fn in_on_time_pane(&self) -> PanesAssert<T> {
        self.select("its on-time pane", |p| p.timing == Timing::OnTime)
    }
    /// The elements of the window's final pane (`PAssert.inFinalPane`).
    pub fn in_final_pane(&self) -> PanesAssert<T> {
        self.select("its final pane", |p| p.is_last)
    }
    /// The elements of the window's EARLY panes.
    pub fn in_early_panes(&self) -> PanesAssert<T> {
        self.select("its early panes", |p| p.timing == Timing::Early)
    }
    /// The elements of the window's LATE panes.
    pub fn in_late_panes(&self) -> PanesAssert<T> {
        self.select("its late panes", |p| p.timing == Timing::Late)
    }
    /// The elements of the window's pane with this index.
    pub fn in_pane(&self, index: i64) -> PanesAssert<T> {
        self.select(&format!("its pane {index}"), |p| p.index == index)
    }
    fn select(&self, what: &str, keep: impl Fn(&PaneInfo) -> bool) -> PanesAssert<T> {
        PanesAssert {
            what: format!("window {:?}, {what}", self.window),
            values: self.elements.iter().filter(|v| keep(&v.pane)).map(|v| v.value.clone()).collect(),
        }
    }
}

/// The elements of some panes of one window, under assertion.
#[derive(Clone, Debug)]
pub struct PanesAssert<T> {
    what: String,
    values: Vec<T>,
}

impl<T: Clone + Debug + Ord> PanesAssert<T> {
    /// These panes hold exactly `expected` (as multisets).
    #[track_caller]
    pub fn contains_in_any_order(&self, expected: impl IntoIterator<Item = T>) {
        same_multiset(self.values.clone(), expected, &self.what);
    }
    /// These panes hold nothing (or do not exist).
    #[track_caller]
    pub fn is_empty(&self) {
        assert!(self.values.is_empty(), "{} is not empty: {:?}", self.what, self.values);
    }
}

#[track_caller]
fn same_multiset<T: Debug + Ord>(mut got: Vec<T>, expected: impl IntoIterator<Item = T>, what: &str) {
    let mut want: Vec<T> = expected.into_iter().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{what}");
}
