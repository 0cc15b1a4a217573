//! Where a grouping keeps the state of its keys.
//!
//! [`GroupAlsoByWindow`](super::GroupAlsoByWindow) reaches a key's state
//! only through [`KeyStore`], one key at a time. [`MemoryKeys`] (a hash
//! map) is the default; a state backend may keep only some keys in memory
//! and the rest elsewhere, loading a key when it is asked for (`weir-state`).
//! Timers and watermark holds of every key stay in the grouping's own
//! indices, so the core stays free of I/O: whatever a store does, it does
//! behind these calls.

use foldhash::HashMap;
use std::hash::Hash;

use super::core::WinState;
#[cfg(feature = "serde")]
use super::WindowSnapshot;

/// Every window of one key: what a [`KeyStore`] keeps per key. Opaque;
/// with the `serde` feature it serializes (as its windows' snapshots), so a
/// store can move it out of memory.
pub struct KeyState<Acc, Out>(pub(super) Vec<WinState<Acc, Out>>);

impl<Acc, Out> Default for KeyState<Acc, Out> {
    fn default() -> Self {
        KeyState(Vec::new())
    }
}

impl<Acc, Out> KeyState<Acc, Out> {
    /// Number of windows (closed ones included).
    pub fn windows(&self) -> usize {
        self.0.len()
    }
}

#[cfg(feature = "serde")]
impl<Acc: Clone, Out: Clone> KeyState<Acc, Out> {
    /// The windows' snapshots, without the key.
    pub(super) fn to_snapshots(&self) -> Vec<WindowSnapshot<(), Acc, Out>> {
        self.0.iter().map(|w| w.snapshot(())).collect()
    }
}

#[cfg(feature = "serde")]
impl<Acc: Clone + serde::Serialize, Out: Clone + serde::Serialize> serde::Serialize for KeyState<Acc, Out> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_snapshots().serialize(s)
    }
}

#[cfg(feature = "serde")]
impl<'de, Acc: serde::Deserialize<'de>, Out: serde::Deserialize<'de>> serde::Deserialize<'de> for KeyState<Acc, Out> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let windows: Vec<WindowSnapshot<(), Acc, Out>> = serde::Deserialize::deserialize(d)?;
        Ok(KeyState(windows.into_iter().map(WinState::from_snapshot).collect()))
    }
}

/// Where a grouping keeps each key's [`KeyState`].
///
/// The grouping holds at most one key's state at a time (the borrow of
/// `get_mut` or `get_or_default` ends before the next call), so a store may
/// move other keys out of memory on any call. A store whose medium fails
/// answers as if the key had no state and keeps the error for its owner,
/// which must check it after every call into the grouping and fail the job
/// before using anything the call emitted.
///
/// ```
/// use weir_model::*;
/// let strategy = WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap());
/// let mut g = GroupAlsoByWindow::with_store(strategy, Buffer, MemoryKeys::default()).unwrap();
/// let mut out = Vec::new();
/// g.process_bundle(&"k", [(1, Timestamp::from_millis(1))], &mut out);
/// assert_eq!(g.store().len(), 1, "one key with state");
/// g.advance_input_watermark(Timestamp::MAX, &mut out);
/// assert!(g.store().is_empty(), "its window fired and was collected");
/// ```
pub trait KeyStore<K, V> {
    /// The state of `key`, if it has any.
    fn get_mut(&mut self, key: &K) -> Option<&mut V>;
    /// The state of `key`, created empty if it has none.
    fn get_or_default(&mut self, key: &K) -> &mut V
    where
        V: Default;
    /// Forget `key`'s state.
    fn remove(&mut self, key: &K);
    /// Number of keys with state.
    fn len(&self) -> usize;
    /// Whether no key has state.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Call `f` with every key's state, in no particular order.
    fn for_each(&self, f: &mut dyn FnMut(&K, &V));
}

/// Every key's state in a hash map: the default store.
pub struct MemoryKeys<K, V>(HashMap<K, V>);

impl<K, V> Default for MemoryKeys<K, V> {
    fn default() -> Self {
        MemoryKeys(HashMap::default())
    }
}

impl<K: Hash + Eq + Clone, V> KeyStore<K, V> for MemoryKeys<K, V> {
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.0.get_mut(key)
    }
    fn get_or_default(&mut self, key: &K) -> &mut V
    where
        V: Default,
    {
        if !self.0.contains_key(key) {
            self.0.insert(key.clone(), V::default());
        }
        self.0.get_mut(key).expect("just ensured")
    }
    fn remove(&mut self, key: &K) {
        self.0.remove(key);
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn for_each(&self, f: &mut dyn FnMut(&K, &V)) {
        for (k, v) in &self.0 {
            f(k, v)
        }
    }
}
