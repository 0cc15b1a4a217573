//! Parquet on S3, against a real local S3 server (moto's, started on
//! 127.0.0.1 by `weir_object_store::testing` and stopped at the end): the
//! source reads objects by ranged GETs, the sink commits through the
//! transactional file sink on the store, a killed job resumes to every row
//! once, and bad objects are clear errors.
#![cfg(feature = "object-store")]

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration as StdDuration;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde::{Deserialize, Serialize};
use weir_object_store::{testing, ObjectDir};
use weir_parquet::{read_parquet, ParquetError, ParquetSinkExt, ParquetSource};
use weir_pipeline::prelude::*;
use weir_pipeline::Runner;
use weir_runner_reference::ReferenceRunner;
use weir_runner_timely::{CheckpointConfig, TimelyRunner};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct E {
    n: i64,
    t: i64,
    name: String,
}

/// A Parquet file of row groups `groups` (rows `n`, `t = 10 n`, `name = e<n>`).
fn parquet_bytes(groups: &[std::ops::Range<i64>]) -> Vec<u8> {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let schema =
        parse_message_type("message e { required int64 n; required int64 t; required binary name (UTF8); }").unwrap();
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer =
        SerializedFileWriter::new(File::create(tmp.path()).unwrap(), Arc::new(schema), Arc::new(props)).unwrap();
    for g in groups {
        let mut rg = writer.next_row_group().unwrap();
        for column in 0..3 {
            let mut col = rg.next_column().unwrap().unwrap();
            match column {
                0 => col.typed::<Int64Type>().write_batch(&g.clone().collect::<Vec<_>>(), None, None).unwrap(),
                1 => col
                    .typed::<Int64Type>()
                    .write_batch(&g.clone().map(|i| i * 10).collect::<Vec<_>>(), None, None)
                    .unwrap(),
                _ => {
                    let names: Vec<ByteArray> = g.clone().map(|i| ByteArray::from(format!("e{i}").as_str())).collect();
                    col.typed::<ByteArrayType>().write_batch(&names, None, None).unwrap()
                }
            };
            col.close().unwrap();
        }
        rg.close().unwrap();
    }
    writer.close().unwrap();
    std::fs::read(tmp.path()).unwrap()
}

/// Objects `<url>/a.parquet` and `<url>/b.parquet` of three row groups
/// each, rows 0..rows, and one object that is not Parquet and not read.
fn upload(url: &str, rows: i64) {
    let dir = ObjectDir::parse(url).unwrap();
    let sixth = rows / 6;
    let groups = |from: i64| [from..from + sixth, from + sixth..from + 2 * sixth, from + 2 * sixth..from + 3 * sixth];
    dir.put("a.parquet", &parquet_bytes(&groups(0))).unwrap();
    dir.put("b.parquet", &parquet_bytes(&groups(3 * sixth))).unwrap();
    dir.put("README.txt", b"not read").unwrap();
}

fn expected(rows: i64) -> Vec<E> {
    (0..rows).map(|n| E { n, t: n * 10, name: format!("e{n}") }).collect()
}

fn read_all(path: &str) -> Vec<E> {
    let p = Pipeline::new();
    let (rows, dead) = read_parquet(&p, ParquetSource::<E>::json(path)).unwrap();
    let (rows, dead) = (rows.collect(), dead.collect());
    p.run_with(&ReferenceRunner::default()).unwrap();
    assert!(dead.values().is_empty(), "{:?}", dead.values());
    let mut rows = rows.values();
    rows.sort_by_key(|r| r.n);
    rows
}

/// Read from S3 and written back to S3 on every runner; what the sink
/// committed reads back equal, and only committed files are there.
#[test]
fn parquet_round_trips_through_s3_on_every_runner() {
    let bucket = testing::bucket("roundtrip");
    let input = format!("{bucket}/in/");
    upload(&input, 6_000);
    // A prefix, and one object named by its URL.
    assert_eq!(read_all(&input), expected(6_000));
    assert_eq!(read_all(&format!("{bucket}/in/a.parquet")), expected(3_000));
    let runners: Vec<(&str, Box<dyn Runner>)> =
        vec![("reference", Box::new(ReferenceRunner::default())), ("timely x2", Box::new(TimelyRunner::threads(2)))];
    for (name, runner) in runners {
        let out = format!("{bucket}/out-{}/", name.replace(' ', ""));
        let p = Pipeline::new();
        let (events, _) = read_parquet(&p, ParquetSource::<E>::json(&input)).unwrap();
        events
            .write_parquet(&out, "message e { required int64 n; required int64 t; required binary name (UTF8); }")
            .unwrap();
        p.run_with(&*runner).unwrap();
        assert_eq!(read_all(&out), expected(6_000), "{name}");
        let names: Vec<String> =
            ObjectDir::parse(&out).unwrap().list("").unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(!names.is_empty() && names.iter().all(|n| n.ends_with(".parquet")), "{name}: {names:?}");
    }
}

/// A checkpointed job reading and writing S3, failed once a checkpoint is
/// committed and run again, leaves every row in the output exactly once.
#[test]
fn a_failed_job_on_s3_resumes_and_leaves_every_row_once() {
    let bucket = testing::bucket("resume");
    let (input, out) = (format!("{bucket}/in/"), format!("{bucket}/out/"));
    upload(&input, 60_000);
    let ck = tempfile::tempdir().unwrap();
    // A checkpoint is committed once its manifest is written.
    let manifests = |dir: &Path| {
        std::fs::read_dir(dir).map_or(0, |d| d.flatten().filter(|e| e.path().join("MANIFEST").exists()).count())
    };
    let crashed = Arc::new(AtomicBool::new(false));
    let run = |crash: bool| {
        let (ck_watch, crashed) = (ck.path().to_path_buf(), crashed.clone());
        let p = Pipeline::new();
        let (events, _) = read_parquet(&p, ParquetSource::<E>::json(&input)).unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let at_20k = Arc::new(OnceLock::new());
        events
            .map(move |e: E| {
                let s = seen.fetch_add(1, Ordering::SeqCst);
                // From row 20,000 on, slowed down (up to 16 s over the
                // rest) until a checkpoint is committed after that row, so
                // that output is pending and committed when it fails.
                if crash && s >= 20_000 && s.is_multiple_of(50) {
                    let n = manifests(&ck_watch);
                    if n > *at_20k.get_or_init(|| n) {
                        crashed.store(true, Ordering::SeqCst);
                        panic!("crash at row {}", e.n);
                    }
                    std::thread::sleep(StdDuration::from_millis(20));
                }
                e
            })
            .write_parquet(&out, "message e { required int64 n; required int64 t; required binary name (UTF8); }")
            .unwrap();
        let runner = TimelyRunner::threads(2)
            .with_max_in_flight(2_000)
            .with_checkpoints(CheckpointConfig::local(ck.path(), StdDuration::from_millis(5)));
        p.run_with(&runner)
    };
    let Err(e) = run(true) else { panic!("the input ended before a checkpoint was committed") };
    assert!(e.to_string().contains("crash at row") && crashed.load(Ordering::SeqCst), "{e}");
    let r = run(false).unwrap();
    assert!(r.recovery.as_ref().unwrap().resumed_from.is_some(), "{:?}", r.recovery);
    assert_eq!(read_all(&out), expected(60_000));
}

#[test]
fn missing_empty_and_broken_objects_are_clear_errors() {
    let bucket = testing::bucket("errors");
    let p = Pipeline::new();
    let dir = ObjectDir::parse(&format!("{bucket}/bad/")).unwrap();
    dir.put("x.parquet", b"PAR1 but no footer").unwrap();
    dir.put("tiny.parquet", b"PAR1").unwrap();
    dir.put("only.txt", b"text").unwrap();
    let read = |url: &str| read_parquet(&p, ParquetSource::<E>::json(url)).map(|_| ()).unwrap_err();
    let e = read(&format!("{bucket}/bad/x.parquet"));
    assert!(matches!(e, ParquetError::Format { .. }) && e.to_string().contains("x.parquet"), "{e}");
    assert!(e.to_string().contains("PAR1"), "{e}");
    let e = read(&format!("{bucket}/bad/tiny.parquet"));
    assert!(e.to_string().contains("too small"), "{e}");
    let e = read(&format!("{bucket}/nothing-here/"));
    assert!(matches!(e, ParquetError::Empty(_)), "{e}");
    let e = read("s3://no-such-bucket-weir/x/");
    assert!(matches!(e, ParquetError::Io { .. }) && e.to_string().contains("no-such-bucket-weir"), "{e}");
}
