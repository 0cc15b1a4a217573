//! Helpers shared by the cross-runner tests.

#![allow(dead_code)] // each test file uses part of this module

use weir::prelude::*;

/// Makes a fresh runner.
pub type Run = Box<dyn Fn() -> Box<dyn weir::pipeline::Runner>>;

/// The runners every pipeline test runs on: reference, Timely x1, Timely x4.
pub fn runners() -> Vec<(&'static str, Run)> {
    vec![
        ("reference", Box::new(|| Box::new(ReferenceRunner::default()))),
        ("timely x1", Box::new(|| Box::new(TimelyRunner::threads(1)))),
        ("timely x4", Box::new(|| Box::new(TimelyRunner::threads(4)))),
    ]
}

/// A timestamp in milliseconds.
pub fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}
