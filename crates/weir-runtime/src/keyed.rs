//! Keyed snapshots: the snapshot format of an operator whose state is a
//! map from keys to states, which lets a checkpoint store only what
//! changed since the previous one (incremental checkpoints).
//!
//! An operator that supports it takes its whole snapshot as a
//! [`KeyedSnapshot`] with every key ([`Operator::snapshot`](crate::Operator::snapshot)
//! returns its [`encode`](KeyedSnapshot::encode)d bytes), and between two
//! checkpoints returns only the keys it changed or removed
//! ([`Operator::snapshot_changes`](crate::Operator::snapshot_changes), encoded).
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

    /// Check an encoded change set as [`KeyedReader`] will read it: its
    /// marker, format and entries, in strictly increasing key order.
    ///
    /// ```
    /// use weir_runtime::KeyedSnapshot;
    /// let ok = KeyedSnapshot { meta: vec![], keys: vec![(vec![1], None), (vec![2], Some(vec![0]))] };
    /// assert!(KeyedSnapshot::check_change_set(&ok.encode()).is_ok());
    /// let unordered = KeyedSnapshot { meta: vec![], keys: vec![(vec![2], None), (vec![1], None)] };
    /// assert!(KeyedSnapshot::check_change_set(&unordered.encode()).is_err());
    /// assert!(KeyedSnapshot::check_change_set(b"WKS1").is_err());
    /// ```
    pub fn check_change_set(bytes: &[u8]) -> Result<(), PipelineError> {
        let view = View::read(bytes)?;
        let mut set = SetCursor { rest: view.keys, remaining: view.count, head: None };
        set.advance()?;
        while set.head.is_some() {
            set.advance()?;
        }
        if !set.rest.is_empty() {
            return Err(PipelineError::Checkpoint("a change set has bytes after its last key".into()));
        }
        Ok(())
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

/// The start of an encoded [`KeyedSnapshot`] with `count` keys, written to
/// `out` (the streamed form of [`KeyedWriter`], for a snapshot too big to
/// hold in memory: its entries follow with [`write_entry`]); the bytes
/// written.
///
/// ```
/// use weir_runtime::keyed::{write_entry, write_header, KeyedWriter};
/// let mut streamed = Vec::new();
/// write_header(&mut streamed, b"meta", 1).unwrap();
/// write_entry(&mut streamed, b"k", b"v").unwrap();
/// let mut w = KeyedWriter::new(b"meta");
/// w.push(b"k", Some(b"v"));
/// assert_eq!(streamed, w.finish());
/// ```
pub fn write_header(out: &mut dyn std::io::Write, meta: &[u8], count: u64) -> std::io::Result<u64> {
    out.write_all(MAGIC)?;
    out.write_all(&KEYED_FORMAT.to_le_bytes())?;
    out.write_all(&(meta.len() as u64).to_le_bytes())?;
    out.write_all(meta)?;
    out.write_all(&count.to_le_bytes())?;
    Ok(header_len(meta.len()))
}

/// The bytes [`write_header`] writes for a meta of `meta` bytes.
pub const fn header_len(meta: usize) -> u64 {
    (MAGIC.len() + 4 + 8 + meta + 8) as u64
}

/// One key and its state of a streamed snapshot (see [`write_header`]);
/// the bytes written ([`KeyedWriter::entry_len`]).
pub fn write_entry(out: &mut dyn std::io::Write, key: &[u8], state: &[u8]) -> std::io::Result<u64> {
    out.write_all(&(key.len() as u64).to_le_bytes())?;
    out.write_all(key)?;
    out.write_all(&[1])?;
    out.write_all(&(state.len() as u64).to_le_bytes())?;
    out.write_all(state)?;
    Ok(KeyedWriter::entry_len(key.len(), state.len()) as u64)
}

/// A whole [`KeyedSnapshot`] read entry by entry from `whole` (its
/// encoded bytes, e.g. a file), with change sets (encoded, oldest first,
/// in memory) folded in as it goes: a state larger than memory is
/// restored without being held whole. Entries come in the order of
/// `whole`; with changes, that must be key order (an LSM store's whole
/// snapshots are), else reading fails.
///
/// ```
/// use weir_runtime::keyed::KeyedReader;
/// use weir_runtime::KeyedSnapshot;
/// let whole = KeyedSnapshot { meta: b"w".to_vec(), keys: vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), Some(b"2".to_vec()))] };
/// let changes = KeyedSnapshot { meta: b"c".to_vec(), keys: vec![(b"a".to_vec(), None), (b"c".to_vec(), Some(b"3".to_vec()))] };
/// let (whole, changes) = (whole.encode(), vec![changes.encode()]);
/// let mut r = KeyedReader::new(Box::new(&whole[..]), &changes).unwrap();
/// assert_eq!(r.meta(), b"c");
/// let mut all = Vec::new();
/// while let Some((k, v)) = r.next_entry().unwrap() {
///     all.push((k.to_vec(), v.to_vec()));
/// }
/// assert_eq!(all, vec![(b"b".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"3".to_vec())]);
/// ```
pub struct KeyedReader<'a> {
    input: Box<dyn std::io::Read + 'a>,
    meta: Vec<u8>,
    /// Entries of `whole` not read yet.
    remaining: u64,
    changes: ChainMerge<'a>,
    /// Whether `key`/`value` hold an entry of `whole` not handed out yet.
    head: bool,
    key: Vec<u8>,
    value: Vec<u8>,
    /// Whether `whole` must be in key order (changes are folded in).
    check_order: bool,
    /// The previous key of `whole`, when checked.
    previous: Option<Vec<u8>>,
    /// Reading failed because `whole` is not in key order.
    out_of_order: bool,
}

impl<'a> KeyedReader<'a> {
    /// Read the snapshot `whole` with the change sets `chain` folded in.
    pub fn new(mut whole: Box<dyn std::io::Read + 'a>, chain: &'a [Vec<u8>]) -> Result<Self, PipelineError> {
        let mut head = [0u8; 8];
        read_exact(&mut whole, &mut head)?;
        if &head[..4] != MAGIC {
            return Err(PipelineError::Checkpoint("a keyed snapshot does not start with its marker".into()));
        }
        let format = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        if format != KEYED_FORMAT {
            return Err(PipelineError::Checkpoint(format!(
                "a keyed snapshot of format {format}; this Weir reads format {KEYED_FORMAT}"
            )));
        }
        let mut meta = Vec::new();
        read_bytes(&mut whole, &mut meta)?;
        let remaining = read_u64(&mut whole)?;
        let changes = ChainMerge::new(chain)?;
        if let Some(last) = chain.last() {
            meta = View::read(last)?.meta.to_vec();
        }
        Ok(KeyedReader {
            input: whole,
            meta,
            remaining,
            changes,
            head: false,
            key: Vec::new(),
            value: Vec::new(),
            check_order: !chain.is_empty(),
            previous: None,
            out_of_order: false,
        })
    }

    /// The state that belongs to no key (the newest change set's).
    pub fn meta(&self) -> &[u8] {
        &self.meta
    }

    /// The next key and its state, `None` after the last.
    pub fn next_entry(&mut self) -> Result<Option<KeyAndState<'_>>, PipelineError> {
        loop {
            if !self.head && self.remaining > 0 {
                self.read_head()?;
            }
            let change = self.changes.peek_key();
            let take_change = match (self.head, change) {
                (false, None) => return Ok(None),
                (true, None) => false,
                (false, Some(_)) => true,
                (true, Some(k)) => match self.key.as_slice().cmp(k) {
                    std::cmp::Ordering::Less => false,
                    std::cmp::Ordering::Equal => {
                        // The change replaces (or removes) the entry.
                        self.head = false;
                        true
                    }
                    std::cmp::Ordering::Greater => true,
                },
            };
            if take_change {
                let (k, v) = self.changes.next()?.expect("peeked");
                match v {
                    Some(v) => return Ok(Some((k, v))),
                    None => continue,
                }
            }
            self.head = false;
            return Ok(Some((&self.key, &self.value)));
        }
    }

    /// Whether reading failed because the whole snapshot is not in key
    /// order (so changes cannot be folded in as it is read; folding them
    /// in memory, [`KeyedSnapshot::merge_encoded`], still can).
    pub fn out_of_order(&self) -> bool {
        self.out_of_order
    }

    fn read_head(&mut self) -> Result<(), PipelineError> {
        read_bytes(&mut self.input, &mut self.key)?;
        let mut tag = [0u8];
        read_exact(&mut self.input, &mut tag)?;
        if tag[0] != 1 {
            return Err(PipelineError::Checkpoint(format!("a whole keyed snapshot has an entry of tag {}", tag[0])));
        }
        read_bytes(&mut self.input, &mut self.value)?;
        if self.check_order {
            match &mut self.previous {
                Some(p) if self.key <= *p => {
                    self.out_of_order = true;
                    return Err(PipelineError::Checkpoint(
                        "a whole keyed snapshot to fold changes into is not in key order".into(),
                    ));
                }
                Some(p) => p.clone_from(&self.key),
                None => self.previous = Some(self.key.clone()),
            }
        }
        self.remaining -= 1;
        self.head = true;
        Ok(())
    }
}

/// Change sets (each in key order, as they are written) merged in key
/// order without copying them: for each key, the newest set's entry.
struct ChainMerge<'a> {
    /// Oldest first.
    sets: Vec<SetCursor<'a>>,
}

/// Where one change set is read.
struct SetCursor<'a> {
    rest: &'a [u8],
    remaining: u64,
    head: Option<Entry<'a>>,
}

impl<'a> SetCursor<'a> {
    fn advance(&mut self) -> Result<(), PipelineError> {
        if self.remaining == 0 {
            self.head = None;
            return Ok(());
        }
        let k = take_bytes(&mut self.rest)?;
        let v = match cut(&mut self.rest, 1)?[0] {
            0 => None,
            1 => Some(take_bytes(&mut self.rest)?),
            t => return Err(PipelineError::Checkpoint(format!("a keyed snapshot has option tag {t}"))),
        };
        if self.head.is_some_and(|(previous, _)| k <= previous) {
            return Err(PipelineError::Checkpoint("a change set is not in key order".into()));
        }
        self.head = Some((k, v));
        self.remaining -= 1;
        Ok(())
    }
}

impl<'a> ChainMerge<'a> {
    fn new(chain: &'a [Vec<u8>]) -> Result<Self, PipelineError> {
        let mut sets = Vec::with_capacity(chain.len());
        for changes in chain {
            let view = View::read(changes)?;
            let mut set = SetCursor { rest: view.keys, remaining: view.count, head: None };
            set.advance()?;
            sets.push(set);
        }
        Ok(ChainMerge { sets })
    }

    fn peek_key(&self) -> Option<&'a [u8]> {
        self.sets.iter().filter_map(|s| s.head.map(|(k, _)| k)).min()
    }

    /// The smallest key left and its newest entry.
    fn next(&mut self) -> Result<Option<Entry<'a>>, PipelineError> {
        let Some(key) = self.peek_key() else { return Ok(None) };
        let mut newest = None;
        for set in &mut self.sets {
            if let Some(entry) = set.head.filter(|(k, _)| *k == key) {
                newest = Some(entry);
                set.advance()?;
            }
        }
        Ok(newest)
    }
}

fn read_exact(input: &mut dyn std::io::Read, buf: &mut [u8]) -> Result<(), PipelineError> {
    input.read_exact(buf).map_err(|e| PipelineError::Checkpoint(format!("reading a keyed snapshot: {e}")))
}

fn read_u64(input: &mut dyn std::io::Read) -> Result<u64, PipelineError> {
    let mut b = [0u8; 8];
    read_exact(input, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A byte vector (bincode: its length, the bytes) into `out`, which grows
/// only as bytes arrive (a corrupt length cannot allocate much).
fn read_bytes(input: &mut dyn std::io::Read, out: &mut Vec<u8>) -> Result<(), PipelineError> {
    use std::io::Read;
    let n = read_u64(input)?;
    out.clear();
    let got = input
        .take(n)
        .read_to_end(out)
        .map_err(|e| PipelineError::Checkpoint(format!("reading a keyed snapshot: {e}")))?;
    if got as u64 != n {
        return Err(PipelineError::Checkpoint("a keyed snapshot is cut short".into()));
    }
    Ok(())
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

/// A key and its state, both encoded, as [`KeyedReader::next_entry`] gives them.
pub type KeyAndState<'a> = (&'a [u8], &'a [u8]);

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
            prop_assert_eq!(&merged.meta, &meta);
            let want: Vec<(Vec<u8>, Option<Vec<u8>>)> = expected.into_iter().map(|(k, v)| (k, Some(v))).collect();
            prop_assert_eq!(&merged.keys, &want);
            // Read as it goes (from a reader that gives a few bytes at a
            // time), the same.
            let bytes = whole.encode();
            let mut r = KeyedReader::new(Box::new(Dribble(&bytes)), &encoded).unwrap();
            prop_assert_eq!(r.meta(), meta.as_slice());
            let mut read = Vec::new();
            while let Some((k, v)) = r.next_entry().unwrap() {
                read.push((k.to_vec(), Some(v.to_vec())));
            }
            prop_assert_eq!(read, want);
        }
    }

    /// A reader that gives at most 3 bytes per read.
    struct Dribble<'a>(&'a [u8]);

    impl std::io::Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_reader_refuses_an_unordered_whole_to_fold_into_and_a_cut_one() {
        let whole =
            KeyedSnapshot { meta: vec![], keys: vec![(vec![2], Some(vec![1])), (vec![1], Some(vec![1]))] }.encode();
        let changes = vec![KeyedSnapshot { meta: vec![], keys: vec![(vec![3], None)] }.encode()];
        let mut r = KeyedReader::new(Box::new(&whole[..]), &changes).unwrap();
        assert!(r.next_entry().unwrap().is_some());
        let e = r.next_entry().unwrap_err().to_string();
        assert!(e.contains("not in key order"), "{e}");
        assert!(r.out_of_order());
        let unordered = vec![KeyedSnapshot { meta: vec![], keys: vec![(vec![3], None), (vec![1], None)] }.encode()];
        let sorted = KeyedSnapshot { meta: vec![], keys: vec![(vec![1], Some(vec![1]))] }.encode();
        let e = KeyedReader::new(Box::new(&sorted[..]), &unordered).and_then(|mut r| {
            while r.next_entry()?.is_some() {}
            Ok(())
        });
        assert!(e.unwrap_err().to_string().contains("not in key order"));
        // Without changes, any order is read as it is.
        let mut r = KeyedReader::new(Box::new(&whole[..]), &[]).unwrap();
        assert_eq!(r.next_entry().unwrap().unwrap().0, [2]);
        assert_eq!(r.next_entry().unwrap().unwrap().0, [1]);
        assert!(r.next_entry().unwrap().is_none());
        for cut in 0..whole.len() {
            let read = KeyedReader::new(Box::new(&whole[..cut]), &[]).and_then(|mut r| {
                while r.next_entry()?.is_some() {}
                Ok(())
            });
            assert!(read.is_err(), "cut at {cut}");
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
