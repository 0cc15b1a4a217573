//! The Parquet source over files written with the `parquet` crate's own
//! writer: every runner, row groups as splits, dead letters, errors, and a
//! checkpointed run that fails part way and resumes.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde::{Deserialize, Serialize};
use weir_parquet::ParquetSinkExt;
use weir_parquet::{read_parquet, ParquetError, ParquetSource};
use weir_pipeline::prelude::*;
use weir_pipeline::Runner;
use weir_runner_reference::ReferenceRunner;
use weir_runner_timely::{CheckpointConfig, TimelyRunner};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct E {
    /// Unsigned: a row with a negative `n` does not convert.
    n: u32,
    t: i64,
    name: String,
}

/// A Parquet file at `path` with one row group per element of `groups`,
/// each the rows `n` of that range (`t = 10 n`, `name = "e<n>"`), with
/// `n = -1` for the rows in `bad`.
fn write_file(path: &Path, groups: &[std::ops::Range<i64>], bad: &[i64]) {
    let schema =
        parse_message_type("message e { required int64 n; required int64 t; required binary name (UTF8); }").unwrap();
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = SerializedFileWriter::new(File::create(path).unwrap(), Arc::new(schema), Arc::new(props)).unwrap();
    for g in groups {
        let n: Vec<i64> = g.clone().map(|i| if bad.contains(&i) { -1 } else { i }).collect();
        let t: Vec<i64> = g.clone().map(|i| i * 10).collect();
        let name: Vec<ByteArray> = g.clone().map(|i| ByteArray::from(format!("e{i}").as_str())).collect();
        let mut rg = writer.next_row_group().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>().write_batch(&n, None, None).unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>().write_batch(&t, None, None).unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>().write_batch(&name, None, None).unwrap();
        col.close().unwrap();
        rg.close().unwrap();
    }
    writer.close().unwrap();
}

/// A folder of two files of three row groups each: rows 0..rows.
fn folder(rows: i64, bad: &[i64]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let third = rows / 6;
    let groups = |from: i64| [from..from + third, from + third..from + 2 * third, from + 2 * third..from + 3 * third];
    write_file(&dir.path().join("a.parquet"), &groups(0), bad);
    write_file(&dir.path().join("b.parquet"), &groups(3 * third), bad);
    std::fs::write(dir.path().join("README.txt"), "not a parquet file, and not read").unwrap();
    dir
}

#[test]
fn a_folder_is_read_whole_with_its_dead_letters_on_every_runner() {
    let bad = [7, 3_001, 5_999];
    let dir = folder(6_000, &bad);
    let runners: Vec<(&str, Box<dyn Runner>)> = vec![
        ("reference", Box::new(ReferenceRunner::default())),
        ("timely x1", Box::new(TimelyRunner::threads(1))),
        ("timely x3", Box::new(TimelyRunner::threads(3))),
    ];
    for (name, runner) in runners {
        let p = Pipeline::new();
        let source = ParquetSource::<E>::json(dir.path()).event_time(|e| e.t);
        let (events, dead) = read_parquet(&p, source).unwrap();
        let checked = events.map(|e: E| {
            assert_eq!((e.t, e.name.as_str()), (e.n as i64 * 10, format!("e{}", e.n).as_str()));
            ((), e.n as u64)
        });
        let sum = checked.combine_per_key(Sum::new()).collect();
        let dead = dead.collect();
        p.run_with(&*runner).unwrap();
        let expected: u64 = (0..6_000u64).filter(|n| !bad.contains(&(*n as i64))).sum();
        assert_eq!(sum.values(), vec![((), expected)], "{name}");
        let mut letters: Vec<String> = dead.values().iter().map(|d| format!("{} {}", d.file, d.reason)).collect();
        letters.sort();
        assert_eq!(letters.len(), 3, "{name}: {letters:?}");
        // Row 7 of a.parquet's first group; 3,001 is row 1 of b.parquet's first.
        assert!(letters[0].contains("a.parquet#0 row 7: "), "{name}: {letters:?}");
        assert!(letters[1].contains("b.parquet#0 row 1: "), "{name}: {letters:?}");
        assert!(letters[2].contains("b.parquet#2 row 999: "), "{name}: {letters:?}");
    }
}

#[test]
fn missing_empty_and_broken_inputs_are_clear_errors_before_the_run() {
    let p = Pipeline::new();
    let e = read_parquet(&p, ParquetSource::<E>::json("/no/such/folder")).err().unwrap();
    assert!(matches!(e, ParquetError::Io { .. }) && e.to_string().contains("/no/such/folder"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = read_parquet(&p, ParquetSource::<E>::json(empty.path())).err().unwrap();
    assert!(matches!(e, ParquetError::Empty(_)), "{e}");
    std::fs::write(empty.path().join("x.parquet"), "PAR1 not really").unwrap();
    let e = read_parquet(&p, ParquetSource::<E>::json(empty.path())).err().unwrap();
    assert!(matches!(e, ParquetError::Format { .. }) && e.to_string().contains("x.parquet"), "{e}");
}

/// Whether a checkpoint in `dir` is committed (its manifest is there).
/// The first holds the rows of the sources' first reads (a source ends
/// its first epoch after reading).
fn committed(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| e.path().join("MANIFEST").exists())
}

/// A checkpointed run that fails part way resumes from its checkpoint:
/// each row counted once, and not every row read again.
#[test]
fn a_failed_run_resumes_from_its_checkpoint_inside_the_row_groups() {
    let dir = folder(120_000, &[]);
    let ck = tempfile::tempdir().unwrap();
    let ck_path = ck.path().to_path_buf();
    let run = |read: Arc<AtomicU64>, crash: bool| {
        let ck_path = ck_path.clone();
        let p = Pipeline::new();
        let (events, _) = read_parquet(&p, ParquetSource::<E>::json(dir.path()).event_time(|e| e.t)).unwrap();
        let counts = events
            .map(move |e: E| {
                let seen = read.fetch_add(1, Ordering::SeqCst);
                // The failing run goes slowly until checkpoints are
                // committed, then fails (part way through the rows).
                if crash && seen.is_multiple_of(500) && !committed(&ck_path) {
                    std::thread::sleep(StdDuration::from_millis(20));
                } else if crash && seen.is_multiple_of(500) {
                    panic!("crash at row {}", e.n);
                }
                (e.n % 10, 1u64)
            })
            .combine_per_key(Sum::new())
            .collect();
        // Few rows in flight: the sources pause, so that epochs (and the
        // checkpoints of their positions) end while rows are still read.
        let runner = TimelyRunner::threads(2)
            .with_max_in_flight(2_000)
            .with_checkpoints(CheckpointConfig::local(ck.path(), StdDuration::from_millis(5)));
        p.run_with(&runner).map(|_| {
            let mut c = counts.values();
            c.sort_unstable();
            c
        })
    };
    let first = Arc::new(AtomicU64::new(0));
    let e = run(first.clone(), true).unwrap_err();
    assert!(e.to_string().contains("crash at row"), "{e}");
    assert!(first.load(Ordering::SeqCst) < 120_000, "the first run read every row before it failed");
    let read = Arc::new(AtomicU64::new(0));
    let counts = run(read.clone(), false).unwrap();
    let expected: Vec<(u32, u64)> = (0..10).map(|k| (k, 12_000)).collect();
    assert_eq!(counts, expected);
    let again = read.load(Ordering::SeqCst);
    assert!(again < 120_000, "the resumed run read {again} rows: it did not resume from a checkpoint");
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Out {
    n: i64,
    name: String,
    half: Option<f64>,
}

const OUT_SCHEMA: &str = "message out { required int64 n; required binary name (UTF8); optional double half; }";

fn read_back(dir: &Path) -> Vec<Out> {
    let p = Pipeline::new();
    let (rows, dead) = read_parquet(&p, ParquetSource::<Out>::json(dir)).unwrap();
    let (rows, dead) = (rows.collect(), dead.collect());
    p.run_with(&ReferenceRunner::default()).unwrap();
    assert!(dead.values().is_empty(), "{:?}", dead.values());
    let mut rows = rows.values();
    rows.sort_by_key(|r| r.n);
    rows
}

fn out_of(e: E) -> Out {
    Out { n: e.n as i64, half: (!e.n.is_multiple_of(3)).then_some(e.n as f64 / 2.0), name: e.name }
}

/// Rows written by the sink read back equal, with their nulls, on every runner.
#[test]
fn the_sink_writes_rows_that_read_back_equal() {
    let input = folder(6_000, &[]);
    let runners: Vec<(&str, Box<dyn Runner>)> =
        vec![("reference", Box::new(ReferenceRunner::default())), ("timely x3", Box::new(TimelyRunner::threads(3)))];
    for (name, runner) in runners {
        let out = tempfile::tempdir().unwrap();
        let p = Pipeline::new();
        let (events, _) = read_parquet(&p, ParquetSource::<E>::json(input.path())).unwrap();
        events.map(out_of).write_parquet(out.path(), OUT_SCHEMA).unwrap();
        p.run_with(&*runner).unwrap();
        let expected: Vec<Out> = (0..6_000u32).map(|n| out_of(E { n, t: 0, name: format!("e{n}") })).collect();
        assert_eq!(read_back(out.path()), expected, "{name}");
        let names: Vec<String> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n.ends_with(".parquet")), "{name}: {names:?}");
    }
}

#[test]
fn a_schema_the_sink_cannot_write_and_a_row_that_does_not_fit_are_clear_errors() {
    let p = Pipeline::new();
    let rows = p.create(vec![Out { n: 1, name: "a".into(), half: None }]);
    let e = rows.write_parquet("/tmp/unused", "message m { required group g { required int64 x; } }").unwrap_err();
    assert!(matches!(e, ParquetError::Schema(_)) && e.to_string().contains("'g'"), "{e}");
    let e = rows.write_parquet("/tmp/unused", "not a schema").unwrap_err();
    assert!(matches!(e, ParquetError::Schema(_)), "{e}");
    let out = tempfile::tempdir().unwrap();
    let p = Pipeline::new();
    p.create(vec![Out { n: 1, name: "a".into(), half: None }])
        .write_parquet(out.path(), "message m { required int64 n; required double half; }")
        .unwrap();
    let e = p.run_with(&TimelyRunner::threads(1)).unwrap_err().to_string();
    assert!(e.contains("required column 'half'"), "{e}");
}

/// A checkpointed job writing Parquet, killed part way (a failure once a
/// checkpoint is committed) and run again, leaves every row exactly once.
#[test]
fn a_failed_job_writing_parquet_resumes_and_leaves_every_row_once() {
    // Big enough that the first checkpoint (whose epoch holds what the
    // sources read at once) is committed well before the end.
    let input = folder(120_000, &[]);
    let out = tempfile::tempdir().unwrap();
    let ck = tempfile::tempdir().unwrap();
    let ck_path = ck.path().to_path_buf();
    let run = |crash: bool| {
        let ck_watch = ck_path.clone();
        let p = Pipeline::new();
        let (events, _) = read_parquet(&p, ParquetSource::<E>::json(input.path())).unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        events
            .map(move |e: E| {
                let s = seen.fetch_add(1, Ordering::SeqCst);
                if crash && s.is_multiple_of(500) && !committed(&ck_watch) {
                    std::thread::sleep(StdDuration::from_millis(20));
                } else if crash && s.is_multiple_of(500) {
                    panic!("crash at row {}", e.n);
                }
                out_of(e)
            })
            .write_parquet(out.path(), OUT_SCHEMA)
            .unwrap();
        let runner = TimelyRunner::threads(2)
            .with_max_in_flight(2_000)
            .with_checkpoints(CheckpointConfig::local(&ck_path, StdDuration::from_millis(5)));
        p.run_with(&runner)
    };
    let e = run(true).unwrap_err();
    assert!(e.to_string().contains("crash at row"), "{e}");
    run(false).unwrap();
    let expected: Vec<Out> = (0..120_000u32).map(|n| out_of(E { n, t: 0, name: format!("e{n}") })).collect();
    assert_eq!(read_back(out.path()), expected);
}

/// The reference runner that snapshots (as an epoch's end, always epoch 0)
/// and restores every operator after every step: each step's rows go to a
/// new file of the epoch, numbered after those it already has, so no file
/// is replaced and every row reads back once (before, each step's file
/// replaced the last: 1,760 of 140,000 rows were left).
#[test]
fn a_sink_snapshotted_at_every_step_replaces_no_file() {
    let out = tempfile::tempdir().unwrap();
    let p = Pipeline::new();
    let n = 140_000u32;
    p.create((0..n).map(|n| out_of(E { n, t: 0, name: format!("e{n}") })).collect::<Vec<_>>())
        .write_parquet(out.path(), OUT_SCHEMA)
        .unwrap();
    p.run_with(&ReferenceRunner::recovering()).unwrap();
    let rows = read_back(out.path());
    assert_eq!(rows.len(), n as usize);
    assert!(rows.iter().enumerate().all(|(i, r)| r.n == i as i64));
    let files = std::fs::read_dir(out.path()).unwrap().count();
    assert!(files > 1, "a file per step: {files}");
}
