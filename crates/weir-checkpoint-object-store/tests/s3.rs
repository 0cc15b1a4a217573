//! Checkpoints on S3-compatible storage, against a real local S3 server
//! (moto's, from PyPI, installed into a virtual environment under
//! `target/` and started on 127.0.0.1 by this test, stopped at its end).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use weir_checkpoint::{CheckpointStore, Checkpoints, JobId, NodeEntry, NodeState, Recovery, WorkerState};
use weir_checkpoint_object_store::ObjectStoreLocation;
use weir_pipeline::prelude::*;
use weir_pipeline::{PipelineError, ReadResult, UnboundedSource, WatermarkPolicy};
type StdDuration = std::time::Duration;
use weir_runner_timely::{CheckpointConfig, TimelyRunner};

/// The moto server, started once for this test binary.
struct Moto {
    _watcher: Child,
    port: u16,
}

fn venv() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/moto-venv");
    if !target.join("bin/moto_server").exists() {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&target).status().expect("python3 is needed");
        assert!(ok.success(), "creating a virtual environment for moto");
        let ok = Command::new(target.join("bin/pip"))
            .args(["install", "--quiet", "moto[server]==5.1.*"])
            .status()
            .expect("pip is needed");
        assert!(ok.success(), "installing moto[server] from PyPI");
    }
    target
}

fn moto() -> &'static std::sync::Mutex<Moto> {
    static MOTO: OnceLock<std::sync::Mutex<Moto>> = OnceLock::new();
    MOTO.get_or_init(|| {
        let venv = venv();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // A static is never dropped: a watcher stops the server when this
        // test process ends.
        let watch = format!(
            "{} -H 127.0.0.1 -p {port} & m=$!; while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill $m",
            venv.join("bin/moto_server").display(),
            std::process::id()
        );
        let child = Command::new("sh")
            .args(["-c", &watch])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let deadline = Instant::now() + StdDuration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen within 60 s");
            std::thread::sleep(StdDuration::from_millis(50));
        }
        // SAFETY: set once, before any store reads the environment.
        unsafe {
            std::env::set_var("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"));
            std::env::set_var("AWS_ALLOW_HTTP", "true");
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
            std::env::set_var("AWS_REGION", "us-east-1");
        }
        std::sync::Mutex::new(Moto { _watcher: child, port })
    })
}

/// A fresh bucket on the server.
fn bucket(name: &str) -> String {
    let port = moto().lock().unwrap().port;
    let script = format!(
        "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', region_name='us-east-1', \
         aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='{name}')"
    );
    let ok = Command::new(venv().join("bin/python")).args(["-c", &script]).status().unwrap();
    assert!(ok.success(), "creating bucket {name}");
    format!("s3://{name}/checkpoints/job-1")
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
/// while it reads); panics at 2000 while `CRASH` is set.
struct Numbers;

impl UnboundedSource for Numbers {
    type Item = u64;
    type Split = u64;
    fn splits(&self) -> Vec<(String, u64)> {
        vec![("even".into(), 0), ("odd".into(), 1)]
    }
    fn read(&self, next: &mut u64, _max: usize, out: &mut SourceOutput<'_, '_, u64>) -> ReadResult {
        std::thread::sleep(StdDuration::from_micros(500));
        for _ in 0..5 {
            if *next >= 3000 {
                return ReadResult::Done;
            }
            if *next == 2000 && CRASH.load(Ordering::SeqCst) {
                panic!("crash");
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
        p.read_unbounded(Numbers, WatermarkPolicy::bounded_out_of_orderness(Duration::from_millis(0)))
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
