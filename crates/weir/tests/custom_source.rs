//! The `custom_source` example (a user's `UnboundedSource` with splits,
//! event-time watermarks, positions and dead letters) on every runner,
//! including the reference runner restoring every operator and source
//! from its snapshot at every step.

use weir::prelude::*;
use weir::testing::{on_every_runner, runners};

#[path = "../examples/custom_source.rs"]
mod custom_source;
use custom_source::{build, SensorFeed};

#[test]
fn a_users_source_gives_the_same_result_and_dead_letters_on_every_runner() {
    let hottest = on_every_runner(|p| build(p, SensorFeed { partitions: 3, lines: 400 }).0.collect());
    // 4 sensors over minutes 0 to 4.
    assert_eq!(hottest.len(), 20);
    let dead = on_every_runner(|p| {
        build(p, SensorFeed { partitions: 3, lines: 400 })
            .1
            .map(|d| format!("{} {} ({})", d.file, d.line, d.reason))
            .collect()
    });
    let lines: Vec<String> = dead.iter().map(|d| d.value.clone()).collect();
    assert_eq!(lines.len(), 12, "every 97th line of each partition");
    assert_eq!(lines[0], "partition-0 garbage#0-193 (expected sensor,celsius,millis)");
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let _ = build(&p, SensorFeed { partitions: 3, lines: 400 });
        let r = p.run_with(&*runner()).unwrap();
        let read = r.counters("ReadUnbounded").unwrap();
        assert_eq!((read.elements_out, read.dead_letters), (1188, 12), "{name}");
        // Readings 2 s late are within the bound: none is dropped.
        let dropped: u64 = r.metrics.all().iter().map(|(_, c)| c.dropped_expired + c.dropped_closed).sum();
        assert_eq!(dropped, 0, "{name}");
    }
}
