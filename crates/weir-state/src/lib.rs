//! # weir-state
//!
//! Where keyed operators keep their state while they run, as the pipeline
//! or runner chose it ([`StateBackend`]):
//!
//! - **in memory** (the default): every key's state in a hash map;
//! - **an on-disk LSM tree** ([fjall]): at most `resident_keys` keys per
//!   operator instance in memory, the rest encoded (bincode) in a fjall
//!   keyspace in a scratch folder, for state larger than memory.
//!
//! [`BackendKeys`] is the one store of both: the same code, with or
//! without the disk behind it, so both backends behave the same and one
//! test suite covers them. It implements the model's
//! [`KeyStore`](weir_model::KeyStore), the only way a grouping reaches its
//! keys' states. Timers and watermark holds stay in the grouping's
//! in-memory indices (as Flink's heap timers beside RocksDB state).
//!
//! The disk is scratch space: checkpoints hold the state (taken through
//! [`KeyStore::for_each`](weir_model::KeyStore::for_each)), and recovery
//! rebuilds the store from them.
//!
//! ```
//! use weir_model::KeyStore;
//! use weir_runtime::StateBackend;
//! use weir_state::BackendKeys;
//! let dir = tempfile::tempdir().unwrap();
//! let backend = StateBackend::Lsm { dir: dir.path().into(), resident_keys: 2 };
//! let mut keys: BackendKeys<u32, Vec<u32>> = BackendKeys::open(&backend).unwrap();
//! for k in 0..10 {
//!     keys.get_or_default(&k).push(k * 10);
//! }
//! assert_eq!(keys.len(), 10);
//! assert!(keys.resident() <= 2, "the rest is on disk");
//! assert_eq!(keys.get_mut(&3), Some(&mut vec![30]));
//! keys.remove(&3);
//! assert_eq!(keys.get_mut(&3), None);
//! assert!(keys.take_error().is_none());
//! ```

#![warn(missing_docs)]

use std::hash::Hash;
use std::sync::Mutex;

use foldhash::HashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
pub use weir_runtime::StateBackend;

/// What can go wrong with a state backend.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store's folder or database could not be opened.
    #[error("state backend: cannot open a store under {dir}: {message}")]
    Open {
        /// The backend's folder.
        dir: String,
        /// Why.
        message: String,
    },
}

/// Bytes per operator instance of fjall's block cache.
const CACHE_BYTES: u64 = 8 << 20;

/// The disk behind a store.
struct Disk {
    // Dropped before the folder (fields drop in order).
    keyspace: fjall::Keyspace,
    db: fjall::Database,
    /// Shared with snapshots being written ([`LsmSnapshot`]), so that the
    /// folder outlives them.
    dir: std::sync::Arc<tempfile::TempDir>,
    resident_keys: usize,
}

/// A key's state in memory.
struct Resident<V> {
    value: V,
    /// Differs from what the disk holds (or the disk holds nothing).
    dirty: bool,
    /// The disk may hold a version of it.
    on_disk: bool,
    /// Read or written since the last [`BackendKeys::take_changed`] (only
    /// while changes are tracked): a flag, so that the hot path of a key
    /// access costs no lookup of its own.
    touched: bool,
}

/// Every key's state of one operator instance: in memory, or, with an LSM
/// backend, a bounded number of keys in memory and the rest on disk.
///
/// A read or write of the disk that fails is kept ([`take_error`](Self::take_error))
/// and the key is treated as having no state: the owner must check after
/// every call and fail the job.
pub struct BackendKeys<K, V> {
    resident: HashMap<K, Resident<V>>,
    disk: Option<Disk>,
    /// Keys with state, in memory or on disk.
    len: usize,
    error: Mutex<Option<String>>,
    scratch: Vec<u8>,
    /// Keys touched since [`take_changed`](Self::take_changed) was last
    /// called (tracked from its first call on: incremental checkpoints)
    /// that are no longer resident (removed, or written back to disk); a
    /// resident key carries its own `touched` flag.
    changed: Option<foldhash::HashSet<K>>,
}

impl<K, V> BackendKeys<K, V> {
    /// A store of `backend`, empty.
    pub fn open(backend: &StateBackend) -> Result<Self, StateError> {
        let disk = match backend {
            StateBackend::Memory => None,
            StateBackend::Lsm { dir, resident_keys } => {
                let err = |e: &dyn std::fmt::Display| StateError::Open {
                    dir: dir.display().to_string(),
                    message: e.to_string(),
                };
                std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
                let folder = tempfile::Builder::new().prefix("weir-state-").tempdir_in(dir).map_err(|e| err(&e))?;
                let db = fjall::Database::builder(folder.path())
                    .temporary(true)
                    .manual_journal_persist(true)
                    .cache_size(CACHE_BYTES)
                    .worker_threads(1)
                    .open()
                    .map_err(|e| err(&e))?;
                let keyspace = db.keyspace("keys", fjall::KeyspaceCreateOptions::default).map_err(|e| err(&e))?;
                let dir = std::sync::Arc::new(folder);
                Some(Disk { keyspace, db, dir, resident_keys: (*resident_keys).max(1) })
            }
        };
        Ok(BackendKeys {
            resident: HashMap::default(),
            disk,
            len: 0,
            error: Mutex::new(None),
            scratch: Vec::new(),
            changed: None,
        })
    }

    /// A store of every key in memory.
    pub fn in_memory() -> Self {
        BackendKeys::open(&StateBackend::Memory).expect("a memory store cannot fail to open")
    }

    /// The first error of the disk since the last call, if any.
    pub fn take_error(&mut self) -> Option<String> {
        self.error.get_mut().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The first error of the disk since the last
    /// [`take_error`](Self::take_error), left in place.
    pub fn peek_error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keys held in memory now.
    pub fn resident(&self) -> usize {
        self.resident.len()
    }

    /// Whether keys may be on disk.
    pub fn spills(&self) -> bool {
        self.disk.is_some()
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(format!("state backend: {what}: {e}"));
        }
    }
}

impl<K: Hash + Eq + Clone + Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> BackendKeys<K, V> {
    /// The keys read or written since the previous call (a superset of
    /// those whose state changed), in no particular order; from the first
    /// call on, the store tracks them (before it, it returns nothing).
    pub fn take_changed(&mut self) -> Vec<K> {
        let Some(set) = &mut self.changed else {
            self.changed = Some(foldhash::HashSet::default());
            return Vec::new();
        };
        for (k, r) in &mut self.resident {
            if std::mem::take(&mut r.touched) {
                set.insert(k.clone());
            }
        }
        set.drain().collect()
    }

    /// The keys touched since the previous call (as
    /// [`take_changed`](Self::take_changed)), each with its encoded state
    /// now (none: it has none), both bincode, sorted by key bytes, written
    /// straight into an encoded change set
    /// ([`KeyedSnapshot`](weir_runtime::KeyedSnapshot)) with `meta`: the
    /// changes of an incremental snapshot, held once. A failure to read a
    /// state is reported by [`peek_error`](Self::peek_error).
    ///
    /// ```
    /// use weir_model::KeyStore;
    /// use weir_runtime::KeyedSnapshot;
    /// use weir_state::{BackendKeys, StateBackend};
    /// let mut store: BackendKeys<u32, u64> = BackendKeys::open(&StateBackend::Memory).unwrap();
    /// *store.get_or_default(&1) = 10;
    /// let changes = |s: &mut BackendKeys<u32, u64>| KeyedSnapshot::decode(&s.encoded_changes(b"m")).unwrap().keys;
    /// assert!(changes(&mut store).is_empty(), "tracked from the first call on");
    /// *store.get_or_default(&7) = 70;
    /// store.remove(&1);
    /// let (one, seven) = (vec![1, 0, 0, 0], vec![7, 0, 0, 0]);
    /// assert_eq!(changes(&mut store), vec![(one, None), (seven, Some(70u64.to_le_bytes().to_vec()))]);
    /// assert!(changes(&mut store).is_empty());
    /// ```
    pub fn encoded_changes(&mut self, meta: &[u8]) -> Vec<u8> {
        let changed = self.take_changed();
        let mut keys: Vec<(Vec<u8>, K)> = changed.into_iter().map(|k| (self.key_bytes(&k), k)).collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut out = weir_runtime::keyed::KeyedWriter::new(meta);
        for (bytes, k) in keys {
            let state = self.encoded(&k);
            out.push(&bytes, state.as_deref());
        }
        out.finish()
    }

    /// Whether touched keys are tracked.
    fn tracking(&self) -> bool {
        self.changed.is_some()
    }

    /// Remember that `key`, no longer resident, was touched.
    fn touched_away(&mut self, key: &K) {
        if let Some(set) = &mut self.changed {
            set.insert(key.clone());
        }
    }

    /// Call `f` with every key and its state, both encoded (bincode), in
    /// no particular order: the bytes on disk as they are (not decoded and
    /// encoded again), resident keys encoded. A failure is reported by
    /// [`peek_error`](Self::peek_error).
    pub fn for_each_encoded(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for (k, r) in &self.resident {
            key.clear();
            value.clear();
            bincode::serialize_into(&mut key, k).expect("encoding a key into memory");
            if let Err(e) = bincode::serialize_into(&mut value, &r.value) {
                return self.fail("encoding a key's state", e);
            }
            f(&key, &value);
        }
        self.for_each_on_disk(&mut |k, v| f(k, v));
    }

    /// The bytes [`KeyedWriter`](weir_runtime::keyed::KeyedWriter) needs
    /// for every entry of [`for_each_encoded`](Self::for_each_encoded).
    pub fn encoded_size(&self) -> usize {
        let mut size = 0;
        for (k, r) in &self.resident {
            let key = bincode::serialized_size(k).unwrap_or(0) as usize;
            let value = bincode::serialized_size(&r.value).unwrap_or(0) as usize;
            size += weir_runtime::keyed::KeyedWriter::entry_len(key, value);
        }
        self.for_each_on_disk(&mut |k, v| size += weir_runtime::keyed::KeyedWriter::entry_len(k.len(), v.len()));
        size
    }

    /// A whole snapshot of an LSM store as a stream (`None` for a memory
    /// store): a [`KeyedSnapshot`](weir_runtime::KeyedSnapshot) with
    /// `meta` and every key in the order of their bytes (so that recovery
    /// can fold changes into it as it reads it), the entries of
    /// [`for_each_encoded`](Self::for_each_encoded), read later (on the
    /// checkpoint writer's thread) from a consistent view taken now: the
    /// resident keys encoded now (at most `resident_keys` of them), and
    /// an LSM snapshot of the rest. The store goes on changing meanwhile;
    /// the snapshot does not. A failure to encode is reported by
    /// [`peek_error`](Self::peek_error).
    ///
    /// ```
    /// use weir_model::KeyStore;
    /// use weir_runtime::keyed::KeyedWriter;
    /// use weir_runtime::StateBackend;
    /// use weir_state::BackendKeys;
    /// let dir = tempfile::tempdir().unwrap();
    /// let backend = StateBackend::Lsm { dir: dir.path().into(), resident_keys: 2 };
    /// let mut keys: BackendKeys<u32, u64> = BackendKeys::open(&backend).unwrap();
    /// for k in 0..10 {
    ///     *keys.get_or_default(&k) = u64::from(k);
    /// }
    /// let mut stream = keys.snapshot_stream(b"meta".to_vec()).unwrap();
    /// let mut whole = KeyedWriter::new(b"meta");
    /// keys.for_each_encoded(&mut |k, v| whole.push(k, Some(v)));
    /// let whole = whole.finish();
    /// *keys.get_or_default(&3) = 33; // after the snapshot: not in it
    /// keys.remove(&4);
    /// let mut bytes = Vec::new();
    /// stream.write_to(&mut bytes).unwrap();
    /// assert_eq!(stream.exact_len().unwrap(), bytes.len() as u64);
    /// let streamed = weir_runtime::KeyedSnapshot::decode(&bytes).unwrap();
    /// let mut all = weir_runtime::KeyedSnapshot::decode(&whole).unwrap();
    /// all.keys.sort();
    /// assert_eq!(streamed, all, "every key, in the order of its bytes");
    /// assert!(BackendKeys::<u32, u64>::in_memory().snapshot_stream(vec![]).is_none());
    /// ```
    pub fn snapshot_stream(&self, meta: Vec<u8>) -> Option<Box<dyn weir_runtime::SnapshotStream>> {
        let disk = self.disk.as_ref()?;
        let mut resident = Vec::with_capacity(self.resident.len());
        for (k, r) in &self.resident {
            let key = bincode::serialize(k).expect("encoding a key into memory");
            match bincode::serialize(&r.value) {
                Ok(value) => resident.push((key, value)),
                Err(e) => {
                    self.fail("encoding a key's state", e);
                    return None;
                }
            }
        }
        resident.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let skip = resident.iter().map(|(k, _)| k.clone()).collect();
        Some(Box::new(LsmSnapshot {
            snapshot: disk.db.snapshot(),
            keyspace: disk.keyspace.clone(),
            meta,
            resident,
            skip,
            counted: None,
            _db: disk.db.clone(),
            _dir: disk.dir.clone(),
        }))
    }

    /// The encoded entries on disk of the keys that are not resident.
    fn for_each_on_disk(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        let Some(disk) = &self.disk else { return };
        for kv in disk.keyspace.iter() {
            let (k, v) = match kv.into_inner() {
                Ok(kv) => kv,
                Err(e) => return self.fail("reading keys' states", e),
            };
            if !self.resident.is_empty() {
                match bincode::deserialize::<K>(&k) {
                    // A resident key's memory version is the current one.
                    Ok(key) if self.resident.contains_key(&key) => continue,
                    Ok(_) => {}
                    Err(e) => return self.fail("decoding a key read back from disk", e),
                }
            }
            f(&k, &v);
        }
    }

    /// The encoded (bincode) state of `key`, if it has any, read without
    /// loading it into memory or marking it changed.
    pub fn encoded(&mut self, key: &K) -> Option<Vec<u8>> {
        if let Some(r) = self.resident.get(key) {
            return match bincode::serialize(&r.value) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    self.fail("encoding a key's state", e);
                    None
                }
            };
        }
        let bytes = self.key_bytes(key);
        let disk = self.disk.as_ref()?;
        match disk.keyspace.get(&bytes) {
            Ok(v) => v.map(|v| v.to_vec()),
            Err(e) => {
                self.fail("reading a key's state", e);
                None
            }
        }
    }

    fn key_bytes(&mut self, key: &K) -> Vec<u8> {
        self.scratch.clear();
        bincode::serialize_into(&mut self.scratch, key).expect("encoding a key into memory");
        self.scratch.clone()
    }

    /// Read `key` from disk (not resident).
    fn load(&mut self, key: &K) -> Option<V> {
        let bytes = self.key_bytes(key);
        let disk = self.disk.as_ref()?;
        match disk.keyspace.get(&bytes) {
            Ok(Some(v)) => match bincode::deserialize(&v) {
                Ok(value) => Some(value),
                Err(e) => {
                    self.fail("decoding a key's state read back from disk", e);
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                self.fail("reading a key's state", e);
                None
            }
        }
    }

    /// Make room for one more resident key: write a quarter of the
    /// resident keys back to disk and drop them from memory.
    fn make_room(&mut self) {
        let Some(disk) = &self.disk else { return };
        if self.resident.len() < disk.resident_keys {
            return;
        }
        let n = (disk.resident_keys / 4).max(1);
        let victims: Vec<K> = self.resident.keys().take(n).cloned().collect();
        let mut batch = disk.db.batch();
        let mut key = Vec::new();
        let mut value = Vec::new();
        let mut failed = None;
        for k in victims {
            let r = self.resident.remove(&k).expect("a resident key");
            if r.touched {
                if let Some(set) = &mut self.changed {
                    set.insert(k.clone());
                }
            }
            if r.dirty {
                key.clear();
                value.clear();
                bincode::serialize_into(&mut key, &k).expect("encoding a key into memory");
                if let Err(e) = bincode::serialize_into(&mut value, &r.value) {
                    failed = Some(e.to_string());
                    break;
                }
                batch.insert(&disk.keyspace, key.as_slice(), value.as_slice());
            }
        }
        if let Some(e) = failed {
            self.fail("encoding a key's state", e);
            return;
        }
        if let Err(e) = batch.commit() {
            self.fail("writing keys' states to disk", e);
        }
    }

    fn resident_entry(&mut self, key: &K, value: V, on_disk: bool) -> &mut V {
        self.make_room();
        let r = Resident { value, dirty: true, on_disk, touched: self.tracking() };
        &mut self.resident.entry(key.clone()).insert_entry(r).into_mut().value
    }
}

/// A whole snapshot of an LSM store, read on the checkpoint writer's
/// thread ([`BackendKeys::snapshot_stream`]): the disk's entries (in key
/// order) merged with the resident keys' (sorted), which replace theirs.
struct LsmSnapshot {
    snapshot: fjall::Snapshot,
    keyspace: fjall::Keyspace,
    meta: Vec<u8>,
    /// The resident keys' entries, encoded when the snapshot was taken,
    /// sorted by key.
    resident: Vec<(Vec<u8>, Vec<u8>)>,
    /// The resident keys: their versions on disk, if any, are older.
    skip: foldhash::HashSet<Vec<u8>>,
    /// (keys, bytes) of the disk's entries that are not resident, once counted.
    counted: Option<(u64, u64)>,
    // Kept open (and the folder kept) until the snapshot is written.
    _db: fjall::Database,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> std::io::Result<()>;

impl LsmSnapshot {
    /// Each entry of the snapshot, in key order.
    fn for_each(&self, f: Visit<'_>) -> std::io::Result<()> {
        use fjall::Readable;
        let mut resident = self.resident.iter().peekable();
        for kv in self.snapshot.iter(&self.keyspace) {
            let (k, v) = kv.into_inner().map_err(|e| std::io::Error::other(format!("reading keys' states: {e}")))?;
            while let Some((rk, rv)) = resident.next_if(|(rk, _)| rk.as_slice() < k.as_ref()) {
                f(rk, rv)?;
            }
            if !self.skip.contains(k.as_ref()) {
                f(&k, &v)?;
            }
        }
        resident.try_for_each(|(k, v)| f(k, v))
    }

    /// Each entry on disk at the snapshot that is not resident.
    fn for_each_on_disk(&self, f: Visit<'_>) -> std::io::Result<()> {
        use fjall::Readable;
        for kv in self.snapshot.iter(&self.keyspace) {
            let (k, v) = kv.into_inner().map_err(|e| std::io::Error::other(format!("reading keys' states: {e}")))?;
            if !self.skip.contains(k.as_ref()) {
                f(&k, &v)?;
            }
        }
        Ok(())
    }
}

impl weir_runtime::SnapshotStream for LsmSnapshot {
    fn size_hint(&self) -> u64 {
        let resident: usize = self.resident.iter().map(|(k, v)| k.len() + v.len()).sum();
        resident as u64 + self.keyspace.disk_space()
    }

    fn exact_len(&mut self) -> std::io::Result<u64> {
        let entry_len = weir_runtime::keyed::KeyedWriter::entry_len;
        let (_, bytes) = match self.counted {
            Some(c) => c,
            None => {
                let (mut keys, mut bytes) = (0, 0);
                self.for_each_on_disk(&mut |k, v| {
                    keys += 1;
                    bytes += entry_len(k.len(), v.len()) as u64;
                    Ok(())
                })?;
                *self.counted.insert((keys, bytes))
            }
        };
        let resident: usize = self.resident.iter().map(|(k, v)| entry_len(k.len(), v.len())).sum();
        Ok(weir_runtime::keyed::header_len(self.meta.len()) + resident as u64 + bytes)
    }

    fn write_to(&mut self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.exact_len()?;
        let (keys, _) = self.counted.expect("counted just above");
        weir_runtime::keyed::write_header(out, &self.meta, self.resident.len() as u64 + keys)?;
        self.for_each(&mut |k, v| weir_runtime::keyed::write_entry(out, k, v).map(|_| ()))
    }
}

impl<K, V> weir_model::KeyStore<K, V> for BackendKeys<K, V>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if self.resident.contains_key(key) {
            let tracking = self.tracking();
            let r = self.resident.get_mut(key).expect("just checked");
            r.dirty = true;
            r.touched |= tracking;
            return Some(&mut r.value);
        }
        let value = self.load(key)?;
        Some(self.resident_entry(key, value, true))
    }

    fn get_or_default(&mut self, key: &K) -> &mut V
    where
        V: Default,
    {
        if self.resident.contains_key(key) {
            let tracking = self.tracking();
            let r = self.resident.get_mut(key).expect("just checked");
            r.dirty = true;
            r.touched |= tracking;
            return &mut r.value;
        }
        match self.load(key) {
            Some(value) => self.resident_entry(key, value, true),
            None => {
                self.len += 1;
                self.resident_entry(key, V::default(), false)
            }
        }
    }

    fn remove(&mut self, key: &K) {
        self.touched_away(key);
        let on_disk = match self.resident.remove(key) {
            Some(r) => {
                self.len -= 1;
                r.on_disk
            }
            None => {
                // Not resident: it has state only on disk, if anywhere.
                let bytes = self.key_bytes(key);
                let Some(disk) = &self.disk else { return };
                match disk.keyspace.contains_key(bytes) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => return self.fail("reading a key's state", e),
                }
                self.len -= 1;
                true
            }
        };
        if on_disk {
            let bytes = self.key_bytes(key);
            if let Some(disk) = &self.disk {
                if let Err(e) = disk.keyspace.remove(bytes) {
                    self.fail("removing a key's state", e);
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn for_each(&self, f: &mut dyn FnMut(&K, &V)) {
        for (k, r) in &self.resident {
            f(k, &r.value);
        }
        let Some(disk) = &self.disk else { return };
        for kv in disk.keyspace.iter() {
            let (k, v) = match kv.into_inner() {
                Ok(kv) => kv,
                Err(e) => return self.fail("reading keys' states", e),
            };
            let (k, v): (K, V) = match (bincode::deserialize(&k), bincode::deserialize(&v)) {
                (Ok(k), Ok(v)) => (k, v),
                (Err(e), _) | (_, Err(e)) => return self.fail("decoding a key's state read back from disk", e),
            };
            // A resident key's memory version is the current one.
            if !self.resident.contains_key(&k) {
                f(&k, &v);
            }
        }
    }
}

#[cfg(test)]
mod tests;
