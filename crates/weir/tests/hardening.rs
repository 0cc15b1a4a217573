//! What happens when things go wrong: a failing user function, on every
//! runner and on a cluster; failing elements routed to a failures output.
//! Every run here is bounded in time (a hang fails the test).

use std::sync::mpsc;
use std::time::Duration as StdDuration;

use weir::prelude::*;

mod common;

/// Run `f` on a thread; fail the test if it takes longer than `secs`.
fn within<R: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(StdDuration::from_secs(secs)).unwrap_or_else(|_| panic!("{what} did not end within {secs} s"))
}

fn exploding_pipeline(p: &Pipeline) -> Collected<u64> {
    p.create(0..20_000u64)
        .map(|x| {
            if x == 12_345 {
                panic!("cannot handle element {x}");
            }
            x * 2
        })
        .named("Explode")
        .map(|x| (x % 7, x))
        .combine_per_key(Sum::new())
        .values()
        .collect()
}

#[test]
fn a_panic_in_user_code_ends_the_job_with_the_transform_and_the_message() {
    type MakeRunner = Box<dyn Fn() -> Box<dyn weir::pipeline::Runner> + Send>;
    let runners: Vec<(&str, MakeRunner)> = vec![
        ("reference", Box::new(|| Box::new(ReferenceRunner::default()))),
        ("timely x1", Box::new(|| Box::new(TimelyRunner::threads(1)))),
        ("timely x2", Box::new(|| Box::new(TimelyRunner::threads(2)))),
        ("timely x4", Box::new(|| Box::new(TimelyRunner::threads(4)))),
    ];
    for (name, runner) in runners {
        let err = within(60, name, move || {
            let p = Pipeline::new();
            let out = exploding_pipeline(&p);
            let err = p.run_with(&*runner()).expect_err("the job must fail");
            (err.to_string(), out.values().len())
        });
        assert!(err.0.contains("'Explode'") && err.0.contains("cannot handle element 12345"), "{name}: {}", err.0);
        assert_eq!(err.1, 0, "{name}: a failed job emits no final results");
    }
}

/// A failed job never looks complete downstream: the sink's files are not
/// renamed into place (their temporary files are removed).
#[test]
fn a_failed_job_leaves_no_complete_looking_output() {
    for threads in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_path_buf();
        within(60, "the failing job", move || {
            let p = Pipeline::new();
            p.create(0..20_000u64)
                .map(|x| if x == 19_999 { panic!("the last element fails") } else { x })
                .map(|x| x.to_string())
                .write_text(&out, "part", |s: &String| s.clone());
            assert!(p.run_with(&TimelyRunner::threads(threads)).is_err());
        });
        let left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert!(left.is_empty(), "x{threads}: left behind {left:?}");
    }
}

#[test]
fn try_map_routes_failing_and_panicking_elements_to_failures_on_every_runner() {
    let out = weir::testing::on_every_runner(|p| {
        let parsed = p.create(["1", "x", "3", "boom", "5"].map(String::from)).try_map(|s: String| {
            if s == "boom" {
                panic!("exploded on {s}");
            }
            s.parse::<u32>().map_err(|e| format!("{s}: {e}"))
        });
        let failures = parsed.failures.map(|f: Failure<String>| (f.element, f.error));
        parsed.output.map(|n| (n.to_string(), String::new())).flatten_with(&[failures]).collect()
    });
    let got: Vec<(String, String)> = out.into_iter().map(|v| v.value).collect();
    assert_eq!(
        got,
        vec![
            ("1".into(), String::new()),
            ("3".into(), String::new()),
            ("5".into(), String::new()),
            ("boom".into(), "panicked: exploded on boom".into()),
            ("x".into(), "x: invalid digit found in string".into()),
        ]
    );
}

/// On a cluster, a panic on one process ends every process promptly with
/// the failing transform's name and message: none finishes with part of the
/// input or waits forever.
#[test]
fn a_panic_on_one_process_ends_every_process_with_its_message() {
    let outcomes =
        common::two_process_outcomes(60, &|index, hosts| TimelyRunner::cluster(2, index, hosts), &|p, index| {
            p.create(0..200_000u64)
                .map(move |x| {
                    if index == 1 && x >= 150_000 {
                        panic!("process 1 cannot handle element {}", x / 1000);
                    }
                    x
                })
                .named("Explode")
                .map(|x| (x % 7, x))
                .combine_per_key(Sum::new())
                .values()
        });
    for (i, outcome) in outcomes.iter().enumerate() {
        let err = outcome.as_ref().expect_err("every process fails");
        assert!(err.contains("Explode") && err.contains("cannot handle element 150"), "process {i}: {err}");
    }
}

/// A trigger builder applied to a trigger it does not belong to is a
/// construction error naming the builder, never silently ignored.
#[test]
fn a_misused_trigger_builder_fails_the_pipeline_before_it_runs() {
    let fixed = FixedWindows::of(Duration::from_millis(10)).unwrap();
    let misused = [
        (Trigger::after_count(2).with_early_firings(Trigger::after_count(1)), "with_early_firings"),
        (Trigger::default_trigger().with_late_firings(Trigger::after_count(1)), "with_late_firings"),
        (Trigger::after_count(2).plus_delay(Duration::from_millis(5)), "plus_delay"),
        (
            Trigger::repeatedly(Trigger::never().aligned_to(Duration::from_millis(5), Timestamp::from_millis(0))),
            "aligned_to",
        ),
    ];
    for (trigger, builder) in misused {
        let p = Pipeline::new();
        let strategy = WindowingStrategy::new(fixed).trigger(trigger).allow_data_loss(true);
        p.create([(1u8, 1u64)]).window_into(strategy).group_by_key().collect();
        let e = p.build().err().expect("a misused builder is a construction error").to_string();
        assert!(e.contains(builder) && e.contains("applies to"), "{builder}: {e}");
    }
}
