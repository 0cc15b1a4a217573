//! Checkpoints and the transactional file sink on S3-compatible storage,
//! against a real local S3 server (`weir_object_store::testing`: moto's,
//! started on 127.0.0.1 by this test, stopped at its end).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use weir_checkpoint::{CheckpointStore, Checkpoints, JobId, NodeEntry, NodeState, Recovery, WorkerState};
use weir_object_store::ObjectStoreLocation;
use weir_pipeline::prelude::*;
use weir_pipeline::{PipelineError, ReadResult, UnboundedSource, WatermarkPolicy};
type StdDuration = std::time::Duration;
use weir_runner_timely::{CheckpointConfig, TimelyRunner};

/// A fresh bucket on the moto server, with a prefix for checkpoints.
fn bucket(name: &str) -> String {
    format!("{}/checkpoints/job-1", weir_object_store::testing::bucket(name))
}

#[test]
fn the_transactional_file_sink_commits_and_recovers_on_s3() {
    use weir_io::epochs::EpochDir;
    use weir_object_store::ObjectDir;
    use weir_runtime::EpochCommit;
    let url = format!("{}/out", weir_object_store::testing::bucket("epochs"));
    let dir = Arc::new(ObjectDir::parse(&url).unwrap());
    let out = EpochDir::in_folder(dir.clone(), "csv");
    out.write_pending(0, 0, 0, b"a\n").unwrap();
    out.write_pending(0, 1, 0, b"b\n").unwrap();
    out.write_pending(1, 0, 0, b"c\n").unwrap();
    assert_eq!(out.next_seq(0, 0).unwrap(), 1);
    // Nothing is visible before its checkpoint commits.
    assert!(out.read_committed().unwrap().is_empty());
    out.commit(0).unwrap();
    assert_eq!(out.read_committed().unwrap().concat(), b"a\nb\n");
    // A crash, then recovery from checkpoint 0: epoch 1's pending file is
    // discarded, and the replayed epoch 1 is written again.
    out.recover(Some(0)).unwrap();
    let names: Vec<String> = dir.list("").unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["00000000000000000000-00000-000000.csv", "00000000000000000000-00001-000000.csv"]);
    let after: Vec<String> =
        dir.list_after("00000000000000000000-00000-000000.csv").unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(after, vec!["00000000000000000000-00001-000000.csv"]);
    out.write_pending(1, 0, 0, b"d\n").unwrap();
    out.commit(1).unwrap();
    assert_eq!(out.read_committed().unwrap().concat(), b"a\nb\nd\n");
    // A run from the beginning leaves nothing of an earlier one.
    out.recover(None).unwrap();
    assert!(dir.list("").unwrap().is_empty());
}

#[test]
fn the_store_contract_holds_on_s3() {
    let s = ObjectStoreLocation::parse(&bucket("contract")).unwrap();
    assert_eq!(s.get("chk-1/MANIFEST").unwrap(), None);
    s.put("chk-1/worker-00000.state", b"state").unwrap();
    // The conditional create: a second manifest of the same checkpoint is refused.
    assert!(s.put_new("chk-1/MANIFEST", b"m").unwrap());
    assert!(!s.put_new("chk-1/MANIFEST", b"other").unwrap());
    assert_eq!(s.get("chk-1/MANIFEST").unwrap().unwrap(), b"m");
    let listed = s.list("chk-").unwrap();
    assert_eq!(listed, vec![("chk-1/MANIFEST".to_string(), 1), ("chk-1/worker-00000.state".to_string(), 5)]);
    assert!(s.list("chk-2").unwrap().is_empty());
    s.delete("chk-1/MANIFEST").unwrap();
    s.delete("chk-1/MANIFEST").unwrap();
    assert_eq!(s.list("").unwrap().len(), 1);
}

#[test]
fn recovery_on_s3_skips_a_corrupt_checkpoint() {
    let store: Arc<dyn CheckpointStore> = Arc::new(ObjectStoreLocation::parse(&bucket("recovery")).unwrap());
    let c = Checkpoints::new(store.clone());
    let job = JobId { description: "q5".into(), fingerprint: 5 };
    assert!(matches!(
        c.recover(&job, false, &|_, _| Err("no incremental entries".to_string())).unwrap(),
        Recovery::Fresh
    ));
    for epoch in 1..=2 {
        let state = WorkerState {
            epoch,
            worker: 0,
            nodes: vec![NodeEntry { node: 0, name: "n".into(), finished: false, state: NodeState::Operator(vec![7]) }],
        };
        c.write_state(&state).unwrap();
        c.commit(
            epoch,
            &job,
            weir_checkpoint::RunShape { workers: 1, processes: 1, splits_for: 1, key_groups: 128 },
            false,
        )
        .unwrap()
        .unwrap();
    }
    // A flipped bit in checkpoint 2's manifest.
    let name = format!("chk-{:020}/MANIFEST", 2);
    let mut m = store.get(&name).unwrap().unwrap();
    m[25] ^= 1;
    store.put(&name, &m).unwrap();
    match c.recover(&job, false, &|_, _| Err("no incremental entries".to_string())).unwrap() {
        Recovery::Resume { manifest, skipped, .. } => {
            assert_eq!(manifest.epoch, 1);
            assert!(skipped[0].contains("checksum mismatch"), "{skipped:?}");
        }
        other => panic!("{other:?}"),
    }
}

static CRASH: AtomicBool = AtomicBool::new(true);

/// Numbers `0..3000` over two splits, a few per read (so that epochs end
/// while it reads). While `CRASH` is set, the even split waits at 2000
/// until a checkpoint is committed in `.0` (the job's checkpoint folder),
/// then panics: the run after it has a checkpoint to resume from however
/// slow the machine is.
struct Numbers(Arc<ObjectStoreLocation>);

impl Numbers {
    /// Whether a checkpoint's manifest is in the store (looked at every
    /// 10 ms at most; a minute without one fails the test).
    fn committed(&self) -> bool {
        static SINCE: OnceLock<Instant> = OnceLock::new();
        let since = *SINCE.get_or_init(Instant::now);
        assert!(since.elapsed() < StdDuration::from_secs(60), "no checkpoint committed in a minute");
        std::thread::sleep(StdDuration::from_millis(10));
        self.0.list("chk-").unwrap().iter().any(|(name, _)| name.ends_with("/MANIFEST"))
    }
}

impl UnboundedSource for Numbers {
    type Item = u64;
    type Split = u64;
    fn splits(&self) -> Vec<(String, u64)> {
        vec![("even".into(), 0), ("odd".into(), 1)]
    }
    fn read(&self, next: &mut u64, _max: usize, out: &mut SourceOutput<'_, '_, u64>) -> ReadResult {
        std::thread::sleep(StdDuration::from_micros(500));
        if *next == 2000 && CRASH.load(Ordering::SeqCst) {
            if self.committed() {
                panic!("crash");
            }
            return ReadResult::Idle;
        }
        for _ in 0..5 {
            if *next >= 3000 {
                return ReadResult::Done;
            }
            if *next == 2000 && CRASH.load(Ordering::SeqCst) {
                break;
            }
            out.push(*next, Timestamp::from_millis(*next as i64));
            *next += 2;
        }
        ReadResult::Data
    }
    fn position(&self, next: &u64) -> Option<Vec<u8>> {
        Some(next.to_le_bytes().to_vec())
    }
    fn seek(&self, next: &mut u64, at: &[u8]) -> Result<(), PipelineError> {
        *next = u64::from_le_bytes(at.try_into().map_err(|_| PipelineError::Checkpoint("bad position".into()))?);
        Ok(())
    }
}

/// An embedded pipeline checkpointed to S3 crashes, resumes from S3 and
/// ends with the uninterrupted result; run again, it has completed.
#[test]
fn a_pipeline_checkpointed_to_s3_resumes_after_a_crash() {
    let url = bucket("pipeline");
    let build = |p: &Pipeline| {
        let store = Arc::new(ObjectStoreLocation::parse(&url).unwrap());
        p.read_unbounded(Numbers(store), WatermarkPolicy::bounded_out_of_orderness(Duration::from_millis(0)))
            .map(|i| (i % 7, 1u64))
            .combine_per_key(Sum::new())
            .collect()
    };
    let runner = || {
        let store = Arc::new(ObjectStoreLocation::parse(&url).unwrap());
        TimelyRunner::threads(2).with_checkpoints(CheckpointConfig::new(store, std::time::Duration::from_millis(20)))
    };
    let p = Pipeline::new();
    let _ = build(&p);
    let e = p.run_with(&runner()).unwrap_err().to_string();
    assert!(e.contains("crash"), "{e}");
    CRASH.store(false, Ordering::SeqCst);
    let p = Pipeline::new();
    let out = build(&p);
    let r = p.run_with(&runner()).unwrap();
    assert!(r.recovery.as_ref().unwrap().resumed_from.is_some(), "{:?}", r.recovery);
    let mut got = out.values();
    got.sort();
    let expected: Vec<(u64, u64)> = (0..7).map(|k| (k, (0..3000).filter(|i| i % 7 == k).count() as u64)).collect();
    assert_eq!(got, expected);
    let p = Pipeline::new();
    let _ = build(&p);
    assert!(p.run_with(&runner()).unwrap().recovery.unwrap().already_completed);
}
