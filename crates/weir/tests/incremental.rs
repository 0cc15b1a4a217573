//! Incremental checkpoints: once a grouping holds many keys, a checkpoint
//! stores only the keys changed since the previous one, on the memory and
//! on the LSM backend; a run resumed from a chain of them ends with the
//! uninterrupted output.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use weir::checkpoint::{Checkpoints, LocalDir, NodeState};
use weir::pipeline::{ReadResult, UnboundedSource, WatermarkPolicy};
use weir::prelude::*;
use weir::CheckpointConfig;

/// Keys created at the start of the input (each seen once).
const MANY: u32 = 20_000;
/// Then this many elements on only [`FEW`] keys, read slowly, so that
/// many checkpoints are taken while they arrive.
const SLOW: u32 = 400;
const FEW: u32 = 4;

/// One split: `MANY` distinct keys fast, then `SLOW` elements on `FEW`
/// keys, 2 ms apart; panics once `crash_at` elements were read in this run.
struct Input {
    crash_at: Option<u64>,
    read: Arc<AtomicU64>,
}

fn item(i: u32) -> u32 {
    if i < MANY {
        i
    } else {
        i % FEW
    }
}

impl UnboundedSource for Input {
    type Item = u32;
    type Split = u32;
    fn splits(&self) -> Vec<(String, u32)> {
        vec![("all".to_string(), 0)]
    }
    fn read(&self, next: &mut u32, max: usize, out: &mut SourceOutput<'_, '_, u32>) -> ReadResult {
        if *next >= MANY + SLOW {
            return ReadResult::Done;
        }
        let n = if *next < MANY { max.min((MANY - *next) as usize) } else { 1 };
        if *next >= MANY {
            std::thread::sleep(StdDuration::from_millis(2));
        }
        for _ in 0..n {
            if self.crash_at.is_some_and(|c| self.read.fetch_add(1, Ordering::SeqCst) >= c) {
                panic!("crash at {}", *next);
            }
            out.push(item(*next), Timestamp::from_millis(*next as i64));
            *next += 1;
        }
        ReadResult::Data
    }
    fn position(&self, next: &u32) -> Option<Vec<u8>> {
        Some(next.to_le_bytes().to_vec())
    }
    fn seek(&self, next: &mut u32, position: &[u8]) -> Result<(), PipelineError> {
        *next = u32::from_le_bytes(position.try_into().map_err(|_| PipelineError::Checkpoint("bad position".into()))?);
        Ok(())
    }
}

/// A count per key over the whole input (global window: every key's
/// state is kept to the end).
fn run(runner: &TimelyRunner, crash_at: Option<u64>) -> Result<Vec<(u32, u64)>, PipelineError> {
    let p = Pipeline::new();
    let input = p.read_unbounded(
        Input { crash_at, read: Arc::default() },
        WatermarkPolicy::bounded_out_of_orderness(Duration::from_millis(0)),
    );
    let counts = input.map(|k| (k, ())).count_per_key().collect();
    p.run_with(runner)?;
    let mut got = counts.values();
    got.sort();
    Ok(got)
}

/// The grouping's entry in worker 0's state file of every complete
/// checkpoint, oldest first: (epoch, whole bytes or changed bytes).
fn grouping_entries(dir: &std::path::Path) -> Vec<(u64, Result<usize, usize>)> {
    let c = Checkpoints::new(Arc::new(LocalDir::new(dir)));
    let mut out = Vec::new();
    for info in c.scan().unwrap() {
        let Some(m) = info.manifest else { continue };
        let states = c.read_states(&m).unwrap();
        let entry = states[0].nodes.iter().find(|n| n.name == "CountPerKey").expect("the grouping's entry");
        out.push((
            m.epoch,
            match &entry.state {
                NodeState::Operator(b) => Ok(b.len()),
                NodeState::Changes { changes, .. } => Err(changes.len()),
                NodeState::Source(_) => panic!("a source entry for the grouping"),
                NodeState::Streamed(_) => panic!("a streamed entry is read back as a whole one"),
                NodeState::Stored { whole, .. } => Ok(whole.len() as usize),
            },
        ));
    }
    out
}

fn incremental_on(backend: Option<StateBackend>) {
    let mut expected: Vec<(u32, u64)> = (0..MANY).map(|k| (k, 1)).collect();
    for k in 0..FEW {
        expected[k as usize].1 += (SLOW / FEW) as u64;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let runner = || {
        let r = TimelyRunner::threads(1)
            .with_checkpoints(CheckpointConfig::local(dir.path(), StdDuration::from_millis(10)).retain(1000));
        match &backend {
            Some(StateBackend::Lsm { resident_keys, .. }) => {
                r.with_state_backend(StateBackend::Lsm { dir: state.path().into(), resident_keys: *resident_keys })
            }
            _ => r,
        }
    };
    // Crash three quarters into the slow part, after many checkpoints.
    let e = run(&runner(), Some((MANY + SLOW * 3 / 4) as u64)).unwrap_err();
    assert!(e.to_string().contains("crash at"), "{e}");
    let entries = grouping_entries(dir.path());
    eprintln!("checkpoints (epoch, Ok(whole bytes) or Err(changed bytes)): {entries:?}");
    let whole = entries.iter().filter_map(|(_, e)| e.ok()).max().expect("a whole snapshot");
    let changes: Vec<usize> = entries.iter().filter_map(|(_, e)| e.err()).collect();
    assert!(changes.len() >= 5, "few incremental checkpoints: {entries:?}");
    // While only FEW keys change, a checkpoint stores only them.
    let smallest = changes.iter().copied().min().unwrap();
    assert!(smallest * 100 < whole, "changes of {smallest} bytes against a whole state of {whole}: {entries:?}");
    // Resume from a chain of changes: checkpoints after the newest one
    // whose grouping entry is changes lose their manifests (partial).
    let chained = entries.iter().rev().find(|(_, e)| e.is_err()).unwrap().0;
    for (epoch, _) in entries.iter().filter(|(e, _)| *e > chained) {
        std::fs::remove_file(dir.path().join(format!("chk-{epoch:020}/MANIFEST"))).unwrap();
    }
    assert_eq!(run(&runner(), None).unwrap(), expected);
}

#[test]
fn checkpoints_in_memory_store_only_the_changed_keys() {
    incremental_on(None);
}

#[test]
fn checkpoints_on_the_lsm_store_only_the_changed_keys() {
    incremental_on(Some(StateBackend::Lsm { dir: Default::default(), resident_keys: 500 }));
}
