//! The cell store: every state cell of a stateful operator, addressed by
//! (key group, key, window, cell name), typed in memory or encoded until
//! first read, kept by the run's state backend (`weir-state`): in memory,
//! or in an LSM with a bounded number of (key, window)s in memory. The key
//! group (`weir_runtime::keys`) is part of the address, so that a
//! rescaled run takes the cells of the key groups it owns.

use super::*;
use weir_model::KeyStore;
use weir_runtime::StateBackend;
use weir_state::BackendKeys;

/// A state cell: typed in memory, or bincode bytes (restored from a snapshot)
/// until the DoFn first reads it with its declared type.
pub(super) enum Cell {
    Typed(Box<dyn TypedCell>),
    Encoded(Vec<u8>),
}

pub(super) trait TypedCell: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn encode(&self) -> Vec<u8>;
}

impl<T: Serialize + Send + 'static> TypedCell for T {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("serializing a state cell into memory cannot fail")
    }
}

impl Cell {
    pub(super) fn typed<T: Serialize + Send + 'static>(v: T) -> Cell {
        Cell::Typed(Box::new(v))
    }
    pub(super) fn encode(&self) -> Vec<u8> {
        match self {
            Cell::Typed(c) => c.encode(),
            Cell::Encoded(bytes) => bytes.clone(),
        }
    }
}

/// A cell's or timer family's name: borrowed from the declared constant
/// handle, or owned when it was restored from a snapshot (nothing leaks).
pub(super) type Name = Cow<'static, str>;

/// The cells of one (key, window), by name (foldhash: a few names per
/// map, looked up on every state access; SipHash was 2.5 % of q4).
pub(super) type Cells = foldhash::HashMap<Name, Cell>;

/// A (key, window)'s place in the store: its key group first.
pub(super) type Address<K> = (u32, K, Window);

/// The cells of one (key, window) as the state backend stores them: each
/// cell as its name and bincode bytes, decoded again when the DoFn first
/// reads it.
#[derive(Default)]
pub(super) struct StoredCells(pub(super) Cells);

impl Serialize for StoredCells {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let named: Vec<(&str, Vec<u8>)> = self.0.iter().map(|(n, c)| (n.as_ref(), c.encode())).collect();
        named.serialize(s)
    }
}

impl<'de> Deserialize<'de> for StoredCells {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let named: Vec<(String, Vec<u8>)> = Deserialize::deserialize(d)?;
        Ok(StoredCells(named.into_iter().map(|(n, bytes)| (Cow::Owned(n), Cell::Encoded(bytes))).collect()))
    }
}

/// The cells of every (key group, key, window), kept by the run's state
/// backend (in memory, or an LSM with a bounded number in memory).
pub(super) struct CellStore<K> {
    map: BackendKeys<Address<K>, StoredCells>,
}

impl<K: Key> CellStore<K> {
    /// An empty store of `backend`.
    pub(super) fn open(backend: &StateBackend) -> Result<Self, PipelineError> {
        let map = BackendKeys::open(backend).map_err(|e| PipelineError::Runner(e.to_string()))?;
        Ok(CellStore { map })
    }
    /// Whether the (key, window) has any cell.
    pub(super) fn contains(&mut self, at: &Address<K>) -> bool {
        self.map.get_mut(at).is_some()
    }
    /// The cells of a (key, window), created empty if it has none.
    pub(super) fn cells(&mut self, at: Address<K>) -> &mut Cells {
        &mut self.map.get_or_default(&at).0
    }
    /// Drop every cell of a (key, window); returns how many there were.
    pub(super) fn remove(&mut self, at: &Address<K>) -> usize {
        let n = self.map.get_mut(at).map_or(0, |c| c.0.len());
        self.map.remove(at);
        n
    }
    /// Put the stored cells of a (key, window) (restoring a snapshot);
    /// returns how many there are.
    pub(super) fn insert_stored(&mut self, at: Address<K>, cells: StoredCells) -> usize {
        let n = cells.0.len();
        *self.map.get_or_default(&at) = cells;
        n
    }
    /// The (key, window)s touched since the previous call (tracked from
    /// the first call on).
    pub(super) fn take_changed(&mut self) -> Vec<Address<K>> {
        self.map.take_changed()
    }
    /// The (key, window)s touched since the previous call with their
    /// cells now, as an encoded change set with `meta` (see
    /// [`BackendKeys::encoded_changes`]).
    pub(super) fn encoded_changes(&mut self, meta: &[u8]) -> Vec<u8> {
        self.map.encoded_changes(meta)
    }
    /// Whether cells may be on disk (an LSM store).
    pub(super) fn spills(&self) -> bool {
        self.map.spills()
    }
    /// A whole snapshot of an LSM store as a stream, `None` in memory
    /// (see [`BackendKeys::snapshot_stream`]): each (key, window)'s cells
    /// encoded as [`StoredCells`], the same bytes as a whole snapshot.
    pub(super) fn snapshot_stream(&self, meta: Vec<u8>) -> Option<Box<dyn weir_runtime::SnapshotStream>> {
        self.map.snapshot_stream(meta)
    }
    /// Call `f` with every (key, window) with cells, in no particular order.
    pub(super) fn for_each(&self, f: &mut dyn FnMut(&Address<K>, &Cells)) {
        self.map.for_each(&mut |at, cells| f(at, &cells.0));
    }
    /// The first failure of the state backend since the last call.
    pub(super) fn take_error(&mut self) -> Option<PipelineError> {
        self.map.take_error().map(PipelineError::Runner)
    }
    /// The first failure of the state backend, left in place.
    pub(super) fn peek_error(&self) -> Option<PipelineError> {
        self.map.peek_error().map(PipelineError::Runner)
    }
}
