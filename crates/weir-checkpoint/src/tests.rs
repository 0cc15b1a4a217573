use super::*;

/// A merge for tests whose checkpoints hold no incremental entries.
fn no_changes(_: Vec<u8>, _: &[Vec<u8>]) -> std::result::Result<Vec<u8>, String> {
    Err("no incremental entries expected".into())
}

fn job(d: &str) -> JobId {
    JobId { description: d.to_string(), fingerprint: xxhash_rust::xxh3::xxh3_64(d.as_bytes()) }
}

/// The shape of the runs these tests checkpoint: two workers, one process.
const SHAPE: RunShape = RunShape { workers: 2, processes: 1, splits_for: 2, key_groups: 128 };

fn state(epoch: u64, worker: u32) -> WorkerState {
    WorkerState {
        epoch,
        worker,
        nodes: vec![NodeEntry {
            node: 0,
            name: "Count".into(),
            finished: false,
            state: NodeState::Operator(format!("state {epoch} {worker}").into_bytes()),
        }],
    }
}

/// A store with complete checkpoints 1..=n of two workers.
fn with_checkpoints(n: u64) -> (tempfile::TempDir, Checkpoints) {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::new(Arc::new(LocalDir::new(dir.path())));
    // The job's first run claims the location.
    assert!(matches!(c.recover(&job("q5"), false, &no_changes).unwrap(), Recovery::Fresh));
    for e in 1..=n {
        for w in 0..2 {
            c.write_state(&state(e, w)).unwrap();
        }
        c.commit(e, &job("q5"), SHAPE, false).unwrap().unwrap();
    }
    (dir, c)
}

fn resumed_epoch(r: Recovery) -> (u64, Vec<String>) {
    match r {
        Recovery::Resume { manifest, states, skipped } => {
            assert_eq!(states, vec![state(manifest.epoch, 0), state(manifest.epoch, 1)]);
            (manifest.epoch, skipped)
        }
        other => panic!("expected a resume, got {other:?}"),
    }
}

#[test]
fn the_newest_complete_checkpoint_is_restored_and_partial_ones_skipped() {
    let (_d, c) = with_checkpoints(3);
    // Epoch 4 was being written when the run died: one state file, no manifest.
    c.write_state(&state(4, 0)).unwrap();
    let (epoch, skipped) = resumed_epoch(c.recover(&job("q5"), false, &no_changes).unwrap());
    assert_eq!(epoch, 3);
    assert_eq!(skipped, vec!["checkpoint 4: no manifest: partial".to_string()]);
    // A commit with a missing state file does not commit.
    assert!(c.commit(4, &job("q5"), SHAPE, false).unwrap().is_none());
    c.discard_after(Some(3)).unwrap();
    assert!(c.scan().unwrap().iter().all(|i| i.epoch <= 3));
}

#[test]
fn corrupt_checkpoints_fall_back_to_the_previous_one() {
    let (dir, c) = with_checkpoints(4);
    let p = |e: u64, f: &str| dir.path().join(format!("chk-{e:020}/{f}"));
    // 4: a flipped bit in the manifest.
    let mut m = std::fs::read(p(4, "MANIFEST")).unwrap();
    m[25] ^= 0x10;
    std::fs::write(p(4, "MANIFEST"), m).unwrap();
    // 3: a truncated state file.
    let s = std::fs::read(p(3, "worker-00001.state")).unwrap();
    std::fs::write(p(3, "worker-00001.state"), &s[..s.len() - 3]).unwrap();
    // 2: a missing state file.
    std::fs::remove_file(p(2, "worker-00000.state")).unwrap();
    let (epoch, skipped) = resumed_epoch(c.recover(&job("q5"), false, &no_changes).unwrap());
    assert_eq!(epoch, 1);
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(skipped[0].contains("checksum mismatch"), "{skipped:?}");
    assert!(skipped[1].contains("worker-00001.state"), "{skipped:?}");
    assert!(skipped[2].contains("missing"), "{skipped:?}");
}

#[test]
fn no_usable_checkpoint_refuses_to_start_unless_asked() {
    let (dir, c) = with_checkpoints(1);
    // A manifest of a version this build does not read (checksum fixed up).
    let path = dir.path().join(format!("chk-{:020}/MANIFEST", 1));
    let mut m = std::fs::read(&path).unwrap();
    m[8..12].copy_from_slice(&7u32.to_le_bytes());
    let n = m.len();
    let sum = xxhash_rust::xxh3::xxh3_64(&m[..n - 8]);
    m[n - 8..].copy_from_slice(&sum.to_le_bytes());
    std::fs::write(&path, m).unwrap();
    let e = c.recover(&job("q5"), false, &no_changes).unwrap_err().to_string();
    assert!(e.contains("none is usable") && e.contains("format version 7"), "{e}");
    assert!(matches!(c.recover(&job("q5"), true, &no_changes).unwrap(), Recovery::Fresh));
}

#[test]
fn a_run_killed_before_its_first_commit_starts_from_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::new(Arc::new(LocalDir::new(dir.path())));
    c.write_state(&state(0, 0)).unwrap();
    assert!(matches!(c.recover(&job("q5"), false, &no_changes).unwrap(), Recovery::Fresh));
}

#[test]
fn another_jobs_location_is_refused_and_completion_is_remembered() {
    let (_d, c) = with_checkpoints(2);
    let e = c.recover(&job("q11"), true, &no_changes).unwrap_err().to_string();
    assert!(e.contains("belongs to another job") && e.contains("\"q5\""), "{e}");
    c.mark_completed(&job("q5"), 2).unwrap();
    assert!(matches!(
        c.recover(&job("q5"), false, &no_changes).unwrap(),
        Recovery::Completed(Completed { epoch: 2, .. })
    ));
    assert!(c.recover(&job("q11"), false, &no_changes).is_err());
}

#[test]
fn retention_keeps_the_newest_complete_checkpoints_and_savepoints() {
    let (_d, c) = with_checkpoints(2);
    for w in 0..2 {
        c.write_state(&state(3, w)).unwrap();
    }
    c.commit(3, &job("q5"), SHAPE, true).unwrap().unwrap();
    for e in 4..=6 {
        for w in 0..2 {
            c.write_state(&state(e, w)).unwrap();
        }
        c.commit(e, &job("q5"), SHAPE, false).unwrap().unwrap();
    }
    c.write_state(&state(7, 0)).unwrap();
    assert_eq!(c.retain(2).unwrap(), vec![1, 2, 4]);
    let infos = c.scan().unwrap();
    let complete: Vec<u64> = infos.iter().filter(|i| i.manifest.is_some()).map(|i| i.epoch).collect();
    assert_eq!(complete, vec![3, 5, 6]);
    // The state files of the MAX_CHAIN epochs before the oldest kept stay,
    // as later incremental entries may build on them.
    let files = |e: u64| infos.iter().find(|i| i.epoch == e).map_or(0, |i| i.files.len());
    assert_eq!((files(1), files(2), files(4), files(7)), (3, 3, 3, 1), "two states and RETIRED");
    assert!(infos.iter().filter(|i| [1, 2, 4].contains(&i.epoch)).all(|i| i.retired));
    // Never fewer than one complete checkpoint.
    c.retain(0).unwrap();
    assert_eq!(resumed_epoch(c.recover(&job("q5"), false, &no_changes).unwrap()).0, 6);
}

#[test]
fn retention_removes_state_files_no_chain_can_reach() {
    let (_d, c) = with_checkpoints(MAX_CHAIN + 3);
    c.retain(1).unwrap();
    let left: Vec<u64> = c.scan().unwrap().iter().map(|i| i.epoch).collect();
    // Checkpoint MAX_CHAIN + 3 is kept; its chain reaches back to epoch 3.
    assert_eq!(left, (3..=MAX_CHAIN + 3).collect::<Vec<_>>());
}

/// Worker `w`'s entry of epoch `e`: changes `text` since `e - 1`.
fn changes(epoch: u64, worker: u32, text: &str) -> WorkerState {
    let mut s = state(epoch, worker);
    s.nodes[0].state = NodeState::Changes { since: epoch - 1, changes: text.as_bytes().to_vec() };
    s
}

/// Merging by appending: the order of a chain shows in the result.
fn append(whole: Vec<u8>, chain: &[Vec<u8>]) -> std::result::Result<Vec<u8>, String> {
    Ok(chain.iter().fold(whole, |acc, c| [acc.as_slice(), b"+", c].concat()))
}

#[test]
fn recovery_folds_incremental_entries_oldest_first() {
    let (_d, c) = with_checkpoints(1);
    for e in 2..=3 {
        for w in 0..2 {
            c.write_state(&changes(e, w, &format!("c{e}w{w}"))).unwrap();
        }
        c.commit(e, &job("q5"), SHAPE, false).unwrap().unwrap();
    }
    match c.recover(&job("q5"), false, &append).unwrap() {
        Recovery::Resume { manifest, states, .. } => {
            assert_eq!(manifest.epoch, 3);
            let got: Vec<NodeState> = states.into_iter().map(|s| s.nodes[0].state.clone()).collect();
            assert_eq!(
                got,
                vec![
                    NodeState::Operator(b"state 1 0+c2w0+c3w0".to_vec()),
                    NodeState::Operator(b"state 1 1+c2w1+c3w1".to_vec())
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_checkpoint_whose_chain_is_broken_is_skipped() {
    let (_d, c) = with_checkpoints(2);
    for w in 0..2 {
        c.write_state(&changes(3, w, "c3")).unwrap();
    }
    c.commit(3, &job("q5"), SHAPE, false).unwrap().unwrap();
    // Worker 1's state of epoch 2, which checkpoint 3 builds on, is lost.
    let dir = _d.path().join(Checkpoints::state_name(2, 1));
    std::fs::remove_file(dir).unwrap();
    let (epoch, skipped) = resumed_epoch(c.recover(&job("q5"), false, &append).unwrap());
    assert_eq!(epoch, 1);
    assert!(skipped.iter().any(|s| s.starts_with("checkpoint 3") && s.contains("missing")), "{skipped:?}");
    assert!(skipped.iter().any(|s| s.starts_with("checkpoint 2") && s.contains("missing")), "{skipped:?}");
}

/// A stream of fixed bytes that may announce a wrong length, counting how
/// often it was written.
struct Fixed {
    bytes: Vec<u8>,
    announced: u64,
    writes: Arc<std::sync::atomic::AtomicU32>,
}

impl SnapshotStream for Fixed {
    fn size_hint(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn exact_len(&mut self) -> std::io::Result<u64> {
        Ok(self.announced)
    }
    fn write_to(&mut self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        out.write_all(&self.bytes)
    }
}

#[test]
fn a_streamed_snapshot_is_written_as_the_operator_entry_it_stands_for() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::new(Arc::new(LocalDir::new(dir.path())));
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let writes = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let fixed = Fixed { bytes: bytes.clone(), announced: bytes.len() as u64, writes: writes.clone() };
    let source = NodeEntry { node: 0, name: "Read".into(), finished: false, state: NodeState::Source(vec![]) };
    let streamed = NodeEntry {
        node: 1,
        name: "Count".into(),
        finished: false,
        state: NodeState::Streamed(Streamed::new(Box::new(fixed))),
    };
    let state = WorkerState { epoch: 5, worker: 1, nodes: vec![source.clone(), streamed] };
    let n = c.write_state(&state).unwrap();
    let name = Checkpoints::state_name(5, 1);
    let on_disk = std::fs::read(dir.path().join(&name)).unwrap();
    assert_eq!(n, on_disk.len() as u64);
    let mut plain = state.clone();
    plain.nodes[1].state = NodeState::Operator(bytes.clone());
    assert_eq!(on_disk, format::encode(Kind::WorkerState, &plain), "the same bytes as the whole snapshot");
    let back: WorkerState = format::decode(&name, Kind::WorkerState, &on_disk).unwrap();
    assert_eq!(back, plain);
    // A retry writes the stream again, the same bytes.
    assert_eq!(c.write_state(&state).unwrap(), n);
    assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), on_disk);
    assert_eq!(writes.load(std::sync::atomic::Ordering::Relaxed), 2);

    // A stream that writes other than it announced fails the file, and
    // leaves no file behind.
    let liar = Fixed { bytes, announced: 10, writes };
    let state = WorkerState {
        epoch: 6,
        worker: 1,
        nodes: vec![NodeEntry { state: NodeState::Streamed(Streamed::new(Box::new(liar))), ..source }],
    };
    let e = c.write_state(&state).unwrap_err().to_string();
    assert!(e.contains("announced as"), "{e}");
    assert!(!dir.path().join(Checkpoints::state_name(6, 1)).exists());
}

/// Big snapshots of a local store are read in place: the same entries,
/// the whole snapshot left in its file with its chain to fold; a flipped
/// bit anywhere, or a cut, is found before anything is restored.
#[test]
fn big_snapshots_are_read_in_place_with_their_chains() {
    let (d, c) = with_checkpoints(1);
    // A state file whose operator snapshot is big, and one with a source too.
    let big: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    let mut s2 = state(2, 0);
    s2.nodes[0].state = NodeState::Operator(big.clone());
    s2.nodes.push(NodeEntry {
        node: 1,
        name: "Read".into(),
        finished: true,
        state: NodeState::Source(vec![("split-0".into(), vec![1, 2, 3])]),
    });
    c.write_state(&s2).unwrap();
    c.write_state(&state(2, 1)).unwrap();
    c.commit(2, &job("q5"), SHAPE, false).unwrap().unwrap();
    // Change sets as keyed operators write them; the one of epoch 5 is
    // not one (its file is sound, its content is not).
    let set = |e: u64| weir_runtime::KeyedSnapshot { meta: vec![e as u8], keys: vec![(vec![e as u8], None)] }.encode();
    for e in 3..=5 {
        let mut s = state(e, 0);
        let changes = if e == 5 { b"not a change set".to_vec() } else { set(e) };
        s.nodes[0].state = NodeState::Changes { since: e - 1, changes };
        s.nodes.push(s2.nodes[1].clone());
        c.write_state(&s).unwrap();
        c.write_state(&state(e, 1)).unwrap();
        c.commit(e, &job("q5"), SHAPE, false).unwrap().unwrap();
    }
    let in_place = Checkpoints::new(Arc::new(LocalDir::new(d.path()))).read_in_place_above(1000);
    let Recovery::Resume { manifest, states, skipped } = in_place.recover(&job("q5"), false, &append).unwrap() else {
        panic!("a resume")
    };
    // The bad change set is found before anything is restored: checkpoint
    // 5 is skipped for 4.
    assert_eq!(manifest.epoch, 4);
    assert!(skipped.len() == 1 && skipped[0].starts_with("checkpoint 5"), "{skipped:?}");
    let NodeState::Stored { whole, changes } = &states[0].nodes[0].state else {
        panic!("left in place: {:?}", states[0].nodes[0].state)
    };
    assert_eq!(whole.len(), big.len() as u64);
    assert_eq!(whole.read_all().unwrap(), big);
    let mut read = Vec::new();
    std::io::Read::read_to_end(&mut whole.reader(), &mut read).unwrap();
    assert_eq!(read, big);
    assert_eq!(changes, &vec![set(3), set(4)], "oldest first");
    assert_eq!(states[0].nodes[1], s2.nodes[1], "small entries as they were");
    assert_eq!(states[1], state(4, 1));

    // Read in place, a file is checked as strictly as one read whole.
    let name = Checkpoints::state_name(2, 0);
    let path = d.path().join(&name);
    let good = std::fs::read(&path).unwrap();
    for at in [0, 15, 40, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let e = in_place.read_state(&name, None, 2, 0).unwrap_err().to_string();
        assert!(["checksum", "not a Weir", "truncated"].iter().any(|w| e.contains(w)), "byte {at}: {e}");
    }
    std::fs::write(&path, &good[..good.len() - 3]).unwrap();
    assert!(in_place.read_state(&name, None, 2, 0).is_err());
    std::fs::write(&path, &good).unwrap();
    assert!(in_place.read_state(&name, None, 2, 0).is_ok());
}
