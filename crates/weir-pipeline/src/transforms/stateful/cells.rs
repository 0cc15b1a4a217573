//! The cell store: every state cell of a stateful operator, addressed by
//! (key group, key, window, cell name), typed in memory or encoded until
//! first read. The key group (`weir_runtime::keys`) is part of the address
//! so that a state backend can store, snapshot and hand over cells by
//! key-group range (rescaling); today the cells live in a hash map.

use super::*;

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

/// The cells of one (key, window), by name.
pub(super) type Cells = HashMap<Name, Cell>;

/// A (key, window)'s place in the store: its key group first.
pub(super) type Address<K> = (u32, K, Window);

/// The cells of every (key group, key, window).
pub(super) struct CellStore<K> {
    map: foldhash::HashMap<Address<K>, Cells>,
}

impl<K> Default for CellStore<K> {
    fn default() -> Self {
        CellStore { map: foldhash::HashMap::default() }
    }
}

impl<K: Key> CellStore<K> {
    /// Whether the (key, window) has any cell.
    pub(super) fn contains(&self, at: &Address<K>) -> bool {
        self.map.contains_key(at)
    }
    /// The cells of a (key, window), created empty if it has none.
    pub(super) fn cells(&mut self, at: Address<K>) -> &mut Cells {
        self.map.entry(at).or_default()
    }
    /// Put the cells of a (key, window) (restoring a snapshot).
    pub(super) fn insert(&mut self, at: Address<K>, cells: Cells) {
        self.map.insert(at, cells);
    }
    /// Drop every cell of a (key, window); returns how many there were.
    pub(super) fn remove(&mut self, at: &Address<K>) -> usize {
        self.map.remove(at).map_or(0, |c| c.len())
    }
    /// Every (key, window) with cells, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Address<K>, &Cells)> {
        self.map.iter()
    }
}
