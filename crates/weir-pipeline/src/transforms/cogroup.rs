//! `CoGroupByKey` over any number of keyed collections with values of any
//! types (Beam's `KeyedPCollectionTuple` + `CoGroupByKey`): each input is
//! added to a [`CoGroup`], which hands back a typed tag; the result holds,
//! per key and window, every input's values, read with those tags.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::transforms::elementwise::ElementwiseExt;
use crate::transforms::group::{GroupExt, Keyed};
use crate::transforms::other::FlattenExt;
use crate::{Data, Key, PCollection};

/// The tag of one input of a [`CoGroup`]: reads that input's values from
/// a [`CoGbkResult`].
pub struct CoGroupTag<V> {
    index: usize,
    _v: PhantomData<fn() -> V>,
}

impl<V> Clone for CoGroupTag<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for CoGroupTag<V> {}

impl<V> std::fmt::Debug for CoGroupTag<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CoGroupTag({})", self.index)
    }
}

/// The values of one key and window from every input of a [`CoGroup`]
/// (each value encoded, decoded when read with its input's tag).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CoGbkResult {
    /// Per input, its values' encodings, in arrival order.
    values: Vec<Vec<Vec<u8>>>,
}

impl CoGbkResult {
    /// The values of the input of `tag` (empty if it had none for this key
    /// and window).
    ///
    /// # Panics
    /// If a value does not decode as `V`: a tag of another `CoGroup`.
    pub fn get<V: Data>(&self, tag: &CoGroupTag<V>) -> Vec<V> {
        self.values.get(tag.index).map_or_else(Vec::new, |vs| {
            vs.iter()
                .map(|b| bincode::deserialize(b).expect("a CoGroupTag reads the values of its own CoGroup"))
                .collect()
        })
    }
    /// Whether the input of `tag` has no value for this key and window.
    pub fn is_empty_for<V: Data>(&self, tag: &CoGroupTag<V>) -> bool {
        self.values.get(tag.index).is_none_or(Vec::is_empty)
    }
}

/// Keyed collections to group together by key (any number, values of any
/// types).
///
/// ```
/// use weir_pipeline::prelude::*;
/// let p = Pipeline::new();
/// let emails = p.create([("amy".to_string(), "amy@example.com".to_string())]);
/// let phones = p.create([("amy".to_string(), 111u32), ("carl".into(), 222)]);
/// let visits = p.create([("carl".to_string(), 3i64)]);
/// let mut cg = CoGroup::new();
/// let (e, ph, v) = (cg.add(&emails), cg.add(&phones), cg.add(&visits));
/// let joined = cg
///     .co_group_by_key()
///     .map(move |(name, r): (String, CoGbkResult)| (name, r.get(&e).len(), r.get(&ph), r.get(&v)))
///     .collect();
/// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
/// let mut got = joined.values();
/// got.sort();
/// assert_eq!(got, vec![("amy".to_string(), 1, vec![111], vec![]), ("carl".to_string(), 0, vec![222], vec![3])]);
/// ```
pub struct CoGroup<K: Key> {
    tagged: Vec<Tagged<K>>,
}

/// An input's values, each with its input's index and encoded.
type Tagged<K> = PCollection<(K, (usize, Vec<u8>))>;

impl<K: Key> Default for CoGroup<K> {
    fn default() -> Self {
        CoGroup { tagged: Vec::new() }
    }
}

impl<K: Key> CoGroup<K> {
    /// No inputs yet.
    pub fn new() -> Self {
        CoGroup::default()
    }
    /// Add an input; its tag reads its values from the result. Every input
    /// must have the same windowing (as Beam requires).
    pub fn add<V: Data>(&mut self, input: &Keyed<K, V>) -> CoGroupTag<V> {
        let index = self.tagged.len();
        let tagged = input
            .map(move |(k, v): (K, V)| (k, (index, bincode::serialize(&v).expect("a value encodes"))))
            .named(&format!("CoGroupByKey/Tag{index}"));
        self.tagged.push(tagged);
        CoGroupTag { index, _v: PhantomData }
    }
    /// Group every input by key: per key and window, every input's values.
    ///
    /// # Panics
    /// Without inputs.
    pub fn co_group_by_key(self) -> PCollection<(K, CoGbkResult)> {
        let inputs = self.tagged.len();
        let (first, rest) = self.tagged.split_first().expect("a CoGroup needs at least one input");
        first
            .flatten_with(rest)
            .group_by_key()
            .named("CoGroupByKey")
            .map(move |(k, tagged): (K, Vec<(usize, Vec<u8>)>)| {
                let mut values = vec![Vec::new(); inputs];
                for (i, bytes) in tagged {
                    values[i].push(bytes);
                }
                (k, CoGbkResult { values })
            })
            .named("CoGroupByKey/Split")
    }
}
