//! Keyed snapshots: the snapshot format of an operator whose state is a
//! map from keys to states, which lets a checkpoint store only what
//! changed since the previous one (incremental checkpoints).
//!
//! An operator that supports it takes its whole snapshot as a
//! [`KeyedSnapshot`] with every key ([`Operator::snapshot`](crate::Operator::snapshot)
//! returns its [`encode`](KeyedSnapshot::encode)d bytes), and between two
//! checkpoints returns only the keys it changed or removed
//! ([`Operator::snapshot_changes`](crate::Operator::snapshot_changes)).
//! Recovery folds the chain of changes into the whole snapshot before
//! the operator sees it ([`KeyedSnapshot::merge_encoded`]), so restoring
//! only ever reads whole snapshots.

use serde::{Deserialize, Serialize};

use crate::PipelineError;

/// A keyed operator's state: what belongs to no key (`meta`, the
/// operator's own encoding), and each key's state (both encoded by the
/// operator). In a change set, a key whose state is `None` was removed.
///
/// ```
/// use weir_runtime::KeyedSnapshot;
/// let whole = KeyedSnapshot { meta: b"wm 10".to_vec(), keys: vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), Some(b"2".to_vec()))] };
/// let changes = KeyedSnapshot { meta: b"wm 20".to_vec(), keys: vec![(b"a".to_vec(), None), (b"c".to_vec(), Some(b"3".to_vec()))] };
/// let merged = KeyedSnapshot::merge_encoded(whole.encode(), &[changes.encode()]).unwrap();
/// let merged = KeyedSnapshot::decode(&merged).unwrap();
/// assert_eq!(merged.meta, b"wm 20");
/// assert_eq!(merged.keys, vec![(b"b".to_vec(), Some(b"2".to_vec())), (b"c".to_vec(), Some(b"3".to_vec()))]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedSnapshot {
    /// The state that belongs to no key (watermarks, counters, ...).
    pub meta: Vec<u8>,
    /// Each key's state, ordered by key bytes; `None`: removed (only in
    /// a change set).
    pub keys: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// The envelope's format (bump on any change of [`KeyedSnapshot`]).
const KEYED_FORMAT: u32 = 1;
/// The first bytes of an encoded keyed snapshot.
const MAGIC: &[u8; 4] = b"WKS1";

impl KeyedSnapshot {
    /// The bytes of this snapshot (versioned).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&KEYED_FORMAT.to_le_bytes());
        bincode::serialize_into(&mut out, self).expect("encoding a keyed snapshot into memory");
        out
    }

    /// A snapshot from its [`encode`](Self::encode)d bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, PipelineError> {
        let view = View::read(bytes)?;
        let mut keys = Vec::with_capacity(view.count.min(1 << 20) as usize);
        for e in view.entries() {
            let (k, v) = e?;
            keys.push((k.to_vec(), v.map(<[u8]>::to_vec)));
        }
        Ok(KeyedSnapshot { meta: view.meta.to_vec(), keys })
    }

    /// Fold encoded change sets `chain` (oldest first) into encoded
    /// snapshot `whole`, in one pass over its bytes (read in place, not
    /// decoded key by key): the cost of a chain is about that of copying
    /// the whole state once, whatever its length.
    pub fn merge_encoded(whole: Vec<u8>, chain: &[Vec<u8>]) -> Result<Vec<u8>, PipelineError> {
        let Some(last) = chain.last() else { return Ok(whole) };
        let mut changed: std::collections::BTreeMap<&[u8], Option<&[u8]>> = Default::default();
        for changes in chain {
            for e in View::read(changes)?.entries() {
                let (k, v) = e?;
                changed.insert(k, v);
            }
        }
        let meta = View::read(last)?.meta;
        let view = View::read(&whole)?;
        let mut all = view.entries().collect::<Result<Vec<_>, _>>()?;
        if !all.is_sorted_by(|a, b| a.0 < b.0) {
            all.sort_by(|a, b| a.0.cmp(b.0));
        }
        let mut entries: Vec<Entry<'_>> = Vec::with_capacity(all.len() + changed.len());
        merge_sorted(all, changed, &mut entries);
        let mut out = KeyedWriter::new(meta);
        out.out.reserve(whole.len() + chain.iter().map(Vec::len).sum::<usize>());
        for (k, v) in entries {
            out.push(k, v);
        }
        Ok(out.finish())
    }
}

/// Writes an encoded [`KeyedSnapshot`] key by key, so that a whole
/// snapshot is never held twice (as entries, then as bytes).
///
/// ```
/// use weir_runtime::keyed::KeyedWriter;
/// use weir_runtime::KeyedSnapshot;
/// let mut w = KeyedWriter::new(b"meta");
/// w.push(b"k", Some(b"v"));
/// let s = KeyedSnapshot { meta: b"meta".to_vec(), keys: vec![(b"k".to_vec(), Some(b"v".to_vec()))] };
/// assert_eq!(w.finish(), s.encode());
/// ```
pub struct KeyedWriter {
    out: Vec<u8>,
    /// Where the number of keys goes.
    count_at: usize,
    count: u64,
}

impl KeyedWriter {
    /// A snapshot with this meta and no key yet.
    pub fn new(meta: &[u8]) -> Self {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&KEYED_FORMAT.to_le_bytes());
        put_bytes(&mut out, meta);
        let count_at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        KeyedWriter { out, count_at, count: 0 }
    }
    /// A snapshot with this meta, with room for `entries` bytes of keys
    /// (see [`entry_len`](Self::entry_len)) allocated at once: a whole
    /// snapshot of known size is never copied to grow.
    pub fn with_capacity(meta: &[u8], entries: usize) -> Self {
        let mut w = KeyedWriter::new(meta);
        w.out.reserve_exact(entries);
        w
    }
    /// The bytes one entry with a state takes: a key of `key` bytes and a
    /// state of `state` bytes.
    pub const fn entry_len(key: usize, state: usize) -> usize {
        8 + key + 1 + 8 + state
    }
    /// Add a key and its state (`None`: removed, in a change set).
    pub fn push(&mut self, key: &[u8], state: Option<&[u8]>) {
        put_bytes(&mut self.out, key);
        match state {
            Some(v) => {
                self.out.push(1);
                put_bytes(&mut self.out, v);
            }
            None => self.out.push(0),
        }
        self.count += 1;
    }
    /// The encoded snapshot.
    pub fn finish(mut self) -> Vec<u8> {
        self.out[self.count_at..self.count_at + 8].copy_from_slice(&self.count.to_le_bytes());
        self.out
    }
}

/// Merge sorted `whole` entries with sorted `changes` (a change wins; a
/// removed key is left out) into `out`.
fn merge_sorted<'a>(
    whole: Vec<Entry<'a>>,
    changes: std::collections::BTreeMap<&'a [u8], Option<&'a [u8]>>,
    out: &mut Vec<Entry<'a>>,
) {
    let mut changes = changes.into_iter().peekable();
    for (k, v) in whole {
        while let Some(c) = changes.next_if(|c| c.0 < k) {
            out.push(c);
        }
        out.push(changes.next_if(|c| c.0 == k).unwrap_or((k, v)));
    }
    out.extend(changes);
    out.retain(|(_, v)| v.is_some());
}

/// A key and its state (`None`: removed), borrowed from encoded bytes.
type Entry<'a> = (&'a [u8], Option<&'a [u8]>);

/// Bincode's encoding of a byte vector: its length (u64 LE), the bytes.
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

/// An encoded [`KeyedSnapshot`] read in place (bincode 1's layout: `meta`
/// as a byte vector, then the number of keys and each key as a byte
/// vector followed by an option tag and, if `Some`, a byte vector).
struct View<'a> {
    meta: &'a [u8],
    count: u64,
    keys: &'a [u8],
}

fn cut<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], PipelineError> {
    if bytes.len() < n {
        return Err(PipelineError::Checkpoint("a keyed snapshot is cut short".into()));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

fn take_u64(bytes: &mut &[u8]) -> Result<u64, PipelineError> {
    Ok(u64::from_le_bytes(cut(bytes, 8)?.try_into().expect("8 bytes")))
}

fn take_bytes<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], PipelineError> {
    let n = take_u64(bytes)?;
    let n = usize::try_from(n).map_err(|_| PipelineError::Checkpoint("a keyed snapshot is corrupt".into()))?;
    cut(bytes, n)
}

impl<'a> View<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, PipelineError> {
        let bad = |why: String| PipelineError::Checkpoint(format!("a keyed snapshot {why}"));
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(bad("does not start with its marker".into()));
        }
        let format = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if format != KEYED_FORMAT {
            return Err(bad(format!("of format {format}; this Weir reads format {KEYED_FORMAT}")));
        }
        let mut rest = &bytes[8..];
        let meta = take_bytes(&mut rest)?;
        let count = take_u64(&mut rest)?;
        Ok(View { meta, count, keys: rest })
    }

    fn entries(&self) -> impl Iterator<Item = Result<Entry<'a>, PipelineError>> + 'a {
        let mut rest = self.keys;
        (0..self.count).map(move |_| {
            let k = take_bytes(&mut rest)?;
            let v = match cut(&mut rest, 1)?[0] {
                0 => None,
                1 => Some(take_bytes(&mut rest)?),
                t => return Err(PipelineError::Checkpoint(format!("a keyed snapshot has option tag {t}"))),
            };
            Ok((k, v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(0u8..4, 0..3)
    }

    proptest! {
        /// Folding a chain in one pass equals applying its change sets one
        /// by one to a map.
        #[test]
        fn a_chain_folds_as_its_changes_applied_in_turn(
            whole in prop::collection::btree_map(key(), prop::collection::vec(any::<u8>(), 0..3), 0..12),
            chain in prop::collection::vec(
                prop::collection::btree_map(key(), prop::option::of(prop::collection::vec(any::<u8>(), 0..3)), 0..6),
                0..5,
            ),
        ) {
            let mut expected: BTreeMap<Vec<u8>, Vec<u8>> = whole.clone();
            let mut meta = b"whole".to_vec();
            let mut encoded = Vec::new();
            for (i, changes) in chain.iter().enumerate() {
                for (k, v) in changes {
                    match v {
                        Some(v) => expected.insert(k.clone(), v.clone()),
                        None => expected.remove(k),
                    };
                }
                meta = format!("changes {i}").into_bytes();
                let keys = changes.clone().into_iter().collect();
                encoded.push(KeyedSnapshot { meta: meta.clone(), keys }.encode());
            }
            let whole = KeyedSnapshot { meta: b"whole".to_vec(), keys: whole.into_iter().map(|(k, v)| (k, Some(v))).collect() };
            let mut w = KeyedWriter::new(&whole.meta);
            for (k, v) in &whole.keys {
                w.push(k, v.as_deref());
            }
            prop_assert_eq!(w.finish(), whole.encode());
            let merged = KeyedSnapshot::decode(&KeyedSnapshot::merge_encoded(whole.encode(), &encoded).unwrap()).unwrap();
            prop_assert_eq!(merged.meta, meta);
            let want: Vec<(Vec<u8>, Option<Vec<u8>>)> = expected.into_iter().map(|(k, v)| (k, Some(v))).collect();
            prop_assert_eq!(merged.keys, want);
        }
    }

    #[test]
    fn a_snapshot_of_another_format_is_refused() {
        let mut bytes = KeyedSnapshot::default().encode();
        bytes[4] = 9;
        let e = KeyedSnapshot::decode(&bytes).unwrap_err().to_string();
        assert!(e.contains("format 9"), "{e}");
        assert!(KeyedSnapshot::decode(b"garbage").is_err());
        let whole = KeyedSnapshot { meta: vec![1], keys: vec![(vec![2], Some(vec![3, 4]))] }.encode();
        for cut in 0..whole.len() {
            assert!(KeyedSnapshot::decode(&whole[..cut]).is_err(), "cut at {cut}");
        }
    }
}
