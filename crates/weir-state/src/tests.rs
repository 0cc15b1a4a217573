//! The store behaves as a map whatever its backend and budget: random
//! operations on a memory store and on LSM stores with 1 to 8 resident
//! keys, compared with a `BTreeMap`; and the changes it reports, applied
//! to a whole image taken first, give that map too (incremental
//! checkpoints); and whole snapshots streamed from an LSM store later hold
//! the map as it was when they were taken.

use std::collections::BTreeMap;

use proptest::prelude::*;
use weir_model::KeyStore;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Add(u8, u32),
    Remove(u8),
    Get(u8),
    /// Take the changes since the previous checkpoint into the image.
    Checkpoint,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..40, any::<u32>()).prop_map(|(k, v)| Op::Add(k, v)),
        (0u8..40).prop_map(Op::Remove),
        (0u8..40).prop_map(Op::Get),
        Just(Op::Checkpoint),
    ]
}

fn contents(keys: &BackendKeys<u8, Vec<u32>>) -> BTreeMap<u8, Vec<u32>> {
    let mut all = BTreeMap::new();
    keys.for_each(&mut |k, v| assert!(all.insert(*k, v.clone()).is_none(), "key {k} twice"));
    all
}

proptest! {
    #[test]
    fn every_backend_is_a_map(ops in prop::collection::vec(op(), 1..300), resident in 1usize..9) {
        let dir = tempfile::tempdir().unwrap();
        let lsm = StateBackend::Lsm { dir: dir.path().into(), resident_keys: resident };
        for backend in [StateBackend::Memory, lsm] {
            let mut keys: BackendKeys<u8, Vec<u32>> = BackendKeys::open(&backend).unwrap();
            let mut model: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
            // The whole image at the start (empty), then changes only.
            prop_assert!(keys.take_changed().is_empty());
            let mut image: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
            // Whole snapshots streamed later, with the map when they were taken.
            let mut streams = Vec::new();
            for op in &ops {
                match *op {
                    Op::Checkpoint => {
                        if let Some(stream) = keys.snapshot_stream(vec![streams.len() as u8]) {
                            streams.push((stream, model.clone()));
                        }
                        for k in keys.take_changed() {
                            match keys.encoded(&k) {
                                Some(bytes) => image.insert(k, bincode::deserialize(&bytes).unwrap()),
                                None => image.remove(&k),
                            };
                        }
                        prop_assert_eq!(&image, &model);
                    }
                    Op::Add(k, v) => {
                        keys.get_or_default(&k).push(v);
                        model.entry(k).or_default().push(v);
                    }
                    Op::Remove(k) => {
                        keys.remove(&k);
                        model.remove(&k);
                    }
                    Op::Get(k) => prop_assert_eq!(keys.get_mut(&k).cloned(), model.get(&k).cloned()),
                }
                prop_assert_eq!(keys.len(), model.len());
                if let StateBackend::Lsm { .. } = backend {
                    prop_assert!(keys.resident() <= resident);
                }
            }
            prop_assert_eq!(contents(&keys), model.clone());
            // The encoded entries (disk bytes as they are) are the same
            // map, and the size they announce is exact.
            let (mut encoded, mut size) = (BTreeMap::new(), 0);
            keys.for_each_encoded(&mut |k, v| {
                size += weir_runtime::keyed::KeyedWriter::entry_len(k.len(), v.len());
                let key: u8 = bincode::deserialize(k).unwrap();
                assert!(encoded.insert(key, bincode::deserialize::<Vec<u32>>(v).unwrap()).is_none(), "key {key} twice");
            });
            prop_assert_eq!(&encoded, &model);
            prop_assert_eq!(keys.encoded_size(), size);
            prop_assert!(keys.take_error().is_none());
            // Each streamed snapshot holds the map as it was then, in key
            // order, however the store changed since; written twice, the same.
            prop_assert_eq!(streams.is_empty(), matches!(backend, StateBackend::Memory) || !ops.iter().any(|o| matches!(o, Op::Checkpoint)));
            for (i, (mut stream, then)) in streams.into_iter().enumerate() {
                let (mut bytes, mut again) = (Vec::new(), Vec::new());
                stream.write_to(&mut bytes).unwrap();
                stream.write_to(&mut again).unwrap();
                prop_assert_eq!(&bytes, &again);
                prop_assert_eq!(stream.exact_len().unwrap(), bytes.len() as u64);
                let snap = weir_runtime::KeyedSnapshot::decode(&bytes).unwrap();
                prop_assert_eq!(snap.meta, vec![i as u8]);
                let want: Vec<(Vec<u8>, Option<Vec<u8>>)> = then
                    .iter()
                    .map(|(k, v)| (bincode::serialize(k).unwrap(), Some(bincode::serialize(v).unwrap())))
                    .collect();
                prop_assert_eq!(snap.keys, want);
            }
        }
    }
}

#[test]
fn an_unusable_folder_is_a_clear_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let backend = StateBackend::Lsm { dir: file.path().join("under-a-file"), resident_keys: 4 };
    let e = BackendKeys::<u8, u8>::open(&backend).err().expect("a folder under a file cannot be made");
    assert!(e.to_string().contains("under-a-file"), "{e}");
}

#[test]
fn the_scratch_folder_goes_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let backend = StateBackend::Lsm { dir: dir.path().into(), resident_keys: 1 };
    let mut keys: BackendKeys<u64, u64> = BackendKeys::open(&backend).unwrap();
    for k in 0..1000 {
        *keys.get_or_default(&k) += k;
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    drop(keys);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the scratch folder is removed");
}

/// A grouping over the LSM store snapshots exactly what one in memory does.
#[test]
fn a_grouping_snapshots_the_same_state_on_both_backends() {
    use weir_model::{Buffer, GlobalWindows, GroupAlsoByWindow, Timestamp, WindowingStrategy};
    let dir = tempfile::tempdir().unwrap();
    let strategy = WindowingStrategy::new(GlobalWindows);
    let mut mem = GroupAlsoByWindow::new(strategy.clone(), Buffer).unwrap();
    let lsm_keys: BackendKeys<u64, _> =
        BackendKeys::open(&StateBackend::Lsm { dir: dir.path().into(), resident_keys: 3 }).unwrap();
    let mut lsm = GroupAlsoByWindow::with_store(strategy, Buffer, lsm_keys).unwrap();
    let mut out = Vec::new();
    for i in 0..2000u64 {
        let key = (i * 7919) % 301;
        mem.process_bundle(&key, [(i, Timestamp::from_millis(i as i64))], &mut out);
        lsm.process_bundle(&key, [(i, Timestamp::from_millis(i as i64))], &mut out);
    }
    assert!(lsm.store_mut().take_error().is_none());
    assert_eq!(lsm.store().len(), 301);
    assert_eq!(mem.snapshot(), lsm.snapshot());
}
