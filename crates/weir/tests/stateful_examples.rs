//! The stateful examples (`dedup`, `conversion_attribution`,
//! `batched_requests`) on every runner: exact output, and no state or timer
//! left at the end.

use weir::prelude::*;

mod common;
use common::runners;

#[path = "../examples/batched_requests.rs"]
mod batched_requests;
#[path = "../examples/conversion_attribution.rs"]
mod conversion_attribution;
#[path = "../examples/dedup.rs"]
mod dedup;

fn check(build: fn(&Pipeline) -> PCollection<String>, expected: &[&str]) {
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let out = build(&p).collect();
        let result = p.run_with(&*runner()).unwrap();
        let mut got = out.values();
        got.sort();
        assert_eq!(got, expected, "{name}");
        let c = result.counters("StatefulParDo").unwrap();
        assert_eq!((c.state_cells, c.pending_timers), (0, 0), "{name}: state or timers left");
    }
}

#[test]
fn dedup_example_on_every_runner() {
    check(
        dedup::build,
        &[
            "12:00:00 a1 ana clicks buy",
            "12:01:00 b1 bo opens app",
            "12:02:00 c1 cy searches",
            "12:21:00 a1 ana clicks buy",
        ],
    );
}

#[test]
fn conversion_attribution_example_on_every_runner() {
    check(
        conversion_attribution::build,
        &[
            "12:04:00 bo signup: no impression before it",
            "12:06:00 ana purchase: ad socks-video (shown 12:03:00), 2 visits on the way",
            "12:09:00 bo purchase: ad gloves-banner (shown 12:07:00), 1 visit on the way",
        ],
    );
}

#[test]
fn batched_requests_example_on_every_runner() {
    check(
        batched_requests::build,
        &[
            r#"shard 0 call 1 (full): ["q1", "q2", "q3"] -> ["Q1", "Q2", "Q3"]"#,
            r#"shard 0 call 2 (timer): ["q4"] -> ["Q4"]"#,
            r#"shard 1 call 1 (timer): ["q5", "q6"] -> ["Q5", "Q6"]"#,
            r#"shard 1 call 2 (full): ["q7", "q8", "q9"] -> ["Q7", "Q8", "Q9"]"#,
        ],
    );
}
