//! Stable keys: which worker owns a key, decided the same way by every
//! build, every process and every worker count, so that state stored under
//! a key can be found again after a restart or a rescale.
//!
//! - A key's **canonical encoding** is its bincode 1 encoding (fixed-width
//!   little-endian integers, `u64` lengths): the same bytes state is stored
//!   under.
//! - Its **key hash** is XXH3-64 with seed 0 of those bytes (the
//!   `xxhash-rust` crate, pinned exactly in the workspace).
//! - Its **key group** is `hash % max_key_groups` (the pipeline's fixed
//!   maximum parallelism, as Flink's; by default [`default_key_groups`],
//!   at least [`DEFAULT_MAX_KEY_GROUPS`]).
//! - Worker `w` of `n` owns the contiguous key groups
//!   `[w * max / n, (w + 1) * max / n)`; key group `g` belongs to worker
//!   `g * n / max` (Flink's `computeOperatorIndexForKeyGroup`).
//!
//! ```
//! use weir_runtime::keys::{key_hash, KeyGroups};
//! // The algorithm is part of Weir's on-disk formats: this never changes.
//! assert_eq!(key_hash(&"abc"), 0x7ef7_c2a8_3cf8_364e);
//! let groups = KeyGroups::new(128, 3).unwrap();
//! let g = groups.key_group(key_hash(&"abc"));
//! assert!(groups.range_of(groups.worker_of_group(g)).contains(&g));
//! ```

use std::cell::RefCell;
use std::ops::Range;

use serde::Serialize;

use crate::error::PipelineError;

/// The fewest key groups a pipeline gets unless it sets its own.
pub const DEFAULT_MAX_KEY_GROUPS: u32 = 128;

/// Key groups for a pipeline that sets none, run on `workers` workers
/// (Flink's default maximum parallelism): `max(128, 1.5 x workers rounded
/// up to a power of two)`, at most [`MAX_KEY_GROUPS_LIMIT`].
///
/// ```
/// use weir_runtime::keys::default_key_groups;
/// assert_eq!(default_key_groups(2), 128);
/// assert_eq!(default_key_groups(100), 256);
/// assert_eq!(default_key_groups(1 << 20), 1 << 15);
/// ```
pub fn default_key_groups(workers: usize) -> u32 {
    let wanted = (workers + workers / 2).next_power_of_two().min(MAX_KEY_GROUPS_LIMIT as usize) as u32;
    wanted.max(DEFAULT_MAX_KEY_GROUPS)
}
/// The most key groups a pipeline may have (as Flink's 2^15).
pub const MAX_KEY_GROUPS_LIMIT: u32 = 1 << 15;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Append `value`'s canonical encoding (bincode 1) to `out`.
pub fn encode_key_into<K: Serialize + ?Sized>(value: &K, out: &mut Vec<u8>) {
    bincode::serialize_into(&mut *out, value).expect("encoding into memory cannot fail");
}

/// XXH3-64 (seed 0) of `bytes`: the hash of an already encoded key.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The stable hash of a key: XXH3-64 of its canonical encoding.
pub fn key_hash<K: Serialize + ?Sized>(value: &K) -> u64 {
    SCRATCH.with(|s| {
        // A re-entrant call (a key whose Serialize hashes another key) gets a
        // fresh buffer instead of a borrow panic.
        let Ok(mut buf) = s.try_borrow_mut() else {
            let mut own = Vec::new();
            encode_key_into(value, &mut own);
            return hash_bytes(&own);
        };
        buf.clear();
        encode_key_into(value, &mut buf);
        hash_bytes(&buf)
    })
}

/// How the key groups of a pipeline are spread over its workers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct KeyGroups {
    max: u32,
    workers: u32,
}

impl KeyGroups {
    /// `max` key groups over `workers` workers; every worker must own at
    /// least one key group.
    pub fn new(max: u32, workers: usize) -> Result<KeyGroups, PipelineError> {
        if max == 0 || max > MAX_KEY_GROUPS_LIMIT {
            return Err(PipelineError::Runner(format!(
                "max key groups must be between 1 and {MAX_KEY_GROUPS_LIMIT}, not {max}"
            )));
        }
        if workers == 0 || workers > max as usize {
            return Err(PipelineError::Runner(format!(
                "{workers} workers but the pipeline has {max} key groups: every worker needs at least one \
                 (raise it with Pipeline::with_max_key_groups)"
            )));
        }
        Ok(KeyGroups { max, workers: workers as u32 })
    }
    /// The number of key groups.
    pub fn max(&self) -> u32 {
        self.max
    }
    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.workers as usize
    }
    /// The key group of a key hash.
    pub fn key_group(&self, hash: u64) -> u32 {
        (hash % self.max as u64) as u32
    }
    /// The worker that owns key group `group`.
    pub fn worker_of_group(&self, group: u32) -> usize {
        (group as u64 * self.workers as u64 / self.max as u64) as usize
    }
    /// The worker that owns a key hash.
    pub fn worker_of(&self, hash: u64) -> usize {
        self.worker_of_group(self.key_group(hash))
    }
    /// The key groups worker `worker` owns.
    pub fn range_of(&self, worker: usize) -> Range<u32> {
        let (w, n, m) = (worker as u64, self.workers as u64, self.max as u64);
        let start = (w * m).div_ceil(n) as u32;
        let end = ((w + 1) * m).div_ceil(n) as u32;
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pinned_hashes() {
        // XXH3-64 test vector, then canonical encodings of typical keys.
        assert_eq!(hash_bytes(b"abc"), 0x78af_5f94_892f_3950);
        assert_eq!(key_hash(&7u64), hash_bytes(&7u64.to_le_bytes()));
        let mut s = 3u64.to_le_bytes().to_vec();
        s.extend_from_slice(b"abc");
        assert_eq!(key_hash(&"abc".to_string()), hash_bytes(&s));
        assert_eq!(key_hash(&"abc"), key_hash(&"abc".to_string()));
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(KeyGroups::new(0, 1).is_err());
        assert!(KeyGroups::new(MAX_KEY_GROUPS_LIMIT + 1, 1).is_err());
        let e = KeyGroups::new(4, 5).unwrap_err().to_string();
        assert!(e.contains("5 workers") && e.contains("4 key groups"), "{e}");
    }

    proptest! {
        #[test]
        fn workers_own_contiguous_ranges_that_cover_every_group(max in 1u32..600, workers in 1usize..70) {
            prop_assume!(workers <= max as usize);
            let kg = KeyGroups::new(max, workers).unwrap();
            let mut next = 0;
            for w in 0..workers {
                let r = kg.range_of(w);
                prop_assert_eq!(r.start, next);
                prop_assert!(!r.is_empty());
                for g in r.clone() {
                    prop_assert_eq!(kg.worker_of_group(g), w);
                }
                next = r.end;
            }
            prop_assert_eq!(next, max);
        }
    }
}
