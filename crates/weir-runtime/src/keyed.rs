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
/// let merged = KeyedSnapshot::merge_encoded(whole.encode(), &changes.encode()).unwrap();
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
        let bad = |why: String| PipelineError::Checkpoint(format!("a keyed snapshot {why}"));
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(bad("does not start with its marker".into()));
        }
        let format = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if format != KEYED_FORMAT {
            return Err(bad(format!("of format {format}; this Weir reads format {KEYED_FORMAT}")));
        }
        bincode::deserialize(&bytes[8..]).map_err(|e| bad(format!("cannot be read: {e}")))
    }

    /// Apply a change set taken after this snapshot: its meta replaces
    /// this one's, its keys replace or remove these.
    pub fn apply(&mut self, changes: KeyedSnapshot) {
        self.meta = changes.meta;
        let mut keys: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            std::mem::take(&mut self.keys).into_iter().collect();
        for (k, v) in changes.keys {
            match v {
                Some(v) => keys.insert(k, Some(v)),
                None => keys.remove(&k),
            };
        }
        self.keys = keys.into_iter().filter(|(_, v)| v.is_some()).collect();
    }

    /// Fold encoded change set `changes` into encoded snapshot `whole`.
    pub fn merge_encoded(whole: Vec<u8>, changes: &[u8]) -> Result<Vec<u8>, PipelineError> {
        let mut s = KeyedSnapshot::decode(&whole)?;
        s.apply(KeyedSnapshot::decode(changes)?);
        Ok(s.encode())
    }
}
