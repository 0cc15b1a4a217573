//! File sources and sinks on the reference runner and the Timely runner,
//! including bad input: malformed lines, timestamps outside the valid range
//! and missing files give dead letters or clear errors, never panics.

use std::fs;

use weir_io::{read_json_lines, read_text, JsonLines, TextSinkExt};
use weir_pipeline::prelude::*;
use weir_pipeline::Runner;
use weir_runner_reference::ReferenceRunner;
use weir_runner_timely::TimelyRunner;

fn runners() -> Vec<Box<dyn Runner>> {
    vec![Box::new(ReferenceRunner::default()), Box::new(TimelyRunner::threads(1)), Box::new(TimelyRunner::threads(4))]
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Bid {
    auction: u64,
    price: u64,
    ts: i64,
}

#[test]
fn json_lines_with_dead_letters_on_every_runner() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("part-0.jsonl"),
        "{\"auction\":1,\"price\":10,\"ts\":1000}\n\
         {\"auction\":1,\"price\":\"ten\",\"ts\":1001}\n\
         {\"auction\":2,\"price\":30,\"ts\":2000}\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("part-1.jsonl"),
        "{\"auction\":2,\"price\":5,\"ts\":1500}\n\
         not json at all\n\
         {\"auction\":3,\"price\":7,\"ts\":9223372036854775000}\n\
         \n\
         {\"auction\":1,\"price\":1,\"ts\":1200}\n",
    )
    .unwrap();
    for runner in runners() {
        let p = Pipeline::new();
        let (bids, dead) = read_json_lines(
            &p,
            dir.path().to_str().unwrap(),
            JsonLines::new(|b: &Bid| b.ts).with_event_time_watermark(Duration::from_secs(1)),
        )
        .unwrap();
        let sums = bids
            .map(|b| (b.auction, b.price))
            .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_secs(1)).unwrap()))
            .combine_per_key(Sum::new())
            .collect();
        let dead = dead.collect();
        let result = p.run_with(&*runner).unwrap();
        let mut got: Vec<(Window, (u64, u64))> = sums.windowed().into_iter().map(|v| (v.window, v.value)).collect();
        got.sort();
        let w = |s: i64| Window::interval(s, s + 1000);
        assert_eq!(got, vec![(w(1000), (1, 11)), (w(1000), (2, 5)), (w(2000), (2, 30))]);
        let mut reasons: Vec<String> = dead.values().into_iter().map(|d| format!("{}: {}", d.line, d.reason)).collect();
        reasons.sort();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons.iter().any(|r| r.starts_with("not json") && r.contains("expected")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("\"ten\"") && r.contains("invalid type")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("outside the valid range")), "{reasons:?}");
        assert_eq!(result.counters("ReadJsonLines").unwrap().dead_letters, 3);
    }
}

#[test]
fn missing_inputs_are_clear_errors() {
    let p = Pipeline::new();
    let err = read_text(&p, "/definitely/not/here.txt").unwrap_err();
    assert_eq!(err.to_string(), "no input files match '/definitely/not/here.txt'");
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/*.csv", dir.path().display());
    assert!(read_text(&p, &pattern).unwrap_err().to_string().contains("no input files match"));
    let err = read_text(&p, &format!("{}/[", dir.path().display())).unwrap_err().to_string();
    assert!(err.contains("no input files match") || err.contains("invalid file pattern"), "{err}");
}

/// A folder's sub-folders, FIFOs and dangling links are not skipped
/// without a word: each is named in the error.
#[test]
fn input_folders_with_entries_that_are_not_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.txt"), "x\n").unwrap();
    fs::write(dir.path().join(".hidden"), "ignored\n").unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("sub/b.txt"), "y\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("dangling")).unwrap();
    let status = std::process::Command::new("mkfifo").arg(dir.path().join("fifo")).status().unwrap();
    assert!(status.success());
    let p = Pipeline::new();
    let err = read_text(&p, dir.path().to_str().unwrap()).unwrap_err().to_string();
    for what in ["sub (a folder)", "fifo (a FIFO, socket or device)", "dangling (a link to nothing)"] {
        assert!(err.contains(what), "{what}: {err}");
    }
    assert!(!err.contains("a.txt") && !err.contains(".hidden"), "{err}");
}

#[test]
fn sharded_output_is_complete_and_atomic() {
    let input = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let lines: String = (0..100).map(|j| format!("w{} w{}\n", (i * 100 + j) % 7, j % 3)).collect();
        fs::write(input.path().join(format!("in-{i}.txt")), lines).unwrap();
    }
    let pattern = format!("{}/in-*.txt", input.path().display());
    let mut outputs = Vec::new();
    for runner in runners() {
        let out = tempfile::tempdir().unwrap();
        let p = Pipeline::new();
        read_text(&p, &pattern)
            .unwrap()
            .flat_map(|l: String| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .map(|w| (w, ()))
            .count_per_key()
            .write_text(out.path(), "counts", |(w, n): &(String, u64)| format!("{w}\t{n}"));
        p.run_with(&*runner).unwrap();
        let mut names: Vec<String> =
            fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert!(
            names.iter().all(|n| n.starts_with("counts-") && n.ends_with(".txt")),
            "leftover temporary files: {names:?}"
        );
        let mut lines: Vec<String> = names
            .iter()
            .flat_map(|n| fs::read_to_string(out.path().join(n)).unwrap().lines().map(String::from).collect::<Vec<_>>())
            .collect();
        lines.sort();
        outputs.push((names.len(), lines));
    }
    assert_eq!(outputs[0].0, 1, "one shard per worker");
    assert_eq!(outputs[2].0, 4);
    assert_eq!(outputs[0].1.len(), 7); // w0..w6 (the second column, w0..w2, is a subset)
    let total: u64 = outputs[0].1.iter().map(|l| l.split('\t').nth(1).unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(total, 600);
    assert!(outputs.iter().all(|o| o.1 == outputs[0].1));
}

/// Bounded input is a batch by default: a file whose lines are far out of
/// order loses nothing (Beam's batch semantics), while replaying it as a
/// stream with a small out-of-orderness bound drops the late lines.
#[test]
fn bounded_json_lines_have_no_late_data_unless_replayed_as_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    // 20,000 events of one key, one per second, each run of 100 written in
    // reverse: up to 99 s out of order (more lines than a source reads at
    // once, so a streaming watermark moves while the file is read).
    let mut text = String::new();
    for block in 0..200i64 {
        for i in (0..100i64).rev() {
            let t = (block * 100 + i) * 1000;
            text.push_str(&format!("{{\"auction\":1,\"price\":1,\"ts\":{t}}}\n"));
        }
    }
    std::fs::write(dir.path().join("bids.jsonl"), text).unwrap();
    for (streaming, name) in [(false, "batch"), (true, "stream")] {
        for runner in runners() {
            let p = Pipeline::new();
            let mut how = JsonLines::new(|b: &Bid| b.ts);
            if streaming {
                how = how.with_event_time_watermark(Duration::from_secs(5));
            }
            let (bids, _) = read_json_lines(&p, dir.path().to_str().unwrap(), how).unwrap();
            let counts = bids
                .map(|b| (b.auction, ()))
                .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_secs(60)).unwrap()))
                .count_per_key()
                .named("Count")
                .collect();
            let result = p.run_with(&*runner).unwrap();
            let total: u64 = counts.values().iter().map(|(_, n)| n).sum();
            let dropped = result.counters("Count").unwrap().dropped_expired;
            assert_eq!(total + dropped, 20_000, "{name}: every event counted or dropped");
            if streaming {
                assert!(dropped > 0, "{name}: a 5 s bound drops lines up to 99 s late");
            } else {
                assert_eq!((total, dropped), (20_000, 0), "{name}: nothing is late in a batch");
            }
        }
    }
}
