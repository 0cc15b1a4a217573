//! # weir-object-store
//!
//! Object storage for Weir: any `object_store` backend (S3 and the rest),
//! in a crate of its own so that the HTTP and TLS stack stays out of
//! pipelines that only use local files.
//!
//! - [`ObjectStoreLocation`]: checkpoints in an object store, behind
//!   Weir's [`CheckpointStore`]. A manifest is committed with a
//!   conditional create (`PutMode::Create`, `If-None-Match: *` on S3);
//!   files are written whole by single PUTs, so a reader sees all of one
//!   or none.
//! - [`ObjectDir`]: a blocking handle on a prefix, for the transactional
//!   file sink (it is a `weir_io::epochs::Folder`) and for file sources
//!   that read ranges of objects (`weir-parquet`).
//!
//! Locations are URLs ([`ObjectDir::parse`]): `s3://bucket/prefix` (the
//! credentials, region and endpoint from the usual `AWS_*` environment
//! variables, e.g. `AWS_ENDPOINT=http://127.0.0.1:5000` and
//! `AWS_ALLOW_HTTP=true` for a local S3 server), `file:///path`, or
//! `memory://` (for tests).
//!
//! ```
//! use weir_checkpoint::CheckpointStore;
//! use weir_object_store::ObjectStoreLocation;
//! let store = ObjectStoreLocation::parse("memory://").unwrap();
//! assert!(store.put_new("chk-1/MANIFEST", b"m").unwrap());
//! assert!(!store.put_new("chk-1/MANIFEST", b"other").unwrap());
//! assert_eq!(store.get("chk-1/MANIFEST").unwrap().unwrap(), b"m");
//! ```

#![warn(missing_docs)]

mod objects;
#[cfg(feature = "moto")]
pub mod testing;

pub use objects::{is_url, ObjectDir};

use std::sync::Arc;

use object_store::path::Path;
use object_store::ObjectStore;
use weir_checkpoint::{CheckpointError, CheckpointStore, Result};

/// What can go wrong on object storage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ObjectStoreError {
    /// The store refused or failed a request, or the URL is not one.
    #[error("{location}: {message}")]
    Storage {
        /// The URL.
        location: String,
        /// What went wrong, naming the object.
        message: String,
    },
}

impl From<ObjectStoreError> for CheckpointError {
    fn from(e: ObjectStoreError) -> Self {
        let ObjectStoreError::Storage { location, message } = e;
        CheckpointError::Storage { location, message }
    }
}

/// A checkpoint location in an object store, under a prefix.
#[derive(Debug)]
pub struct ObjectStoreLocation(ObjectDir);

impl ObjectStoreLocation {
    /// The location a URL names (see the crate docs).
    pub fn parse(url: &str) -> Result<Self> {
        Ok(ObjectStoreLocation(ObjectDir::parse(url)?))
    }

    /// A location in `store` under `prefix`; `url` names it in messages.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path, url: &str) -> Result<Self> {
        Ok(ObjectStoreLocation(ObjectDir::new(store, prefix, url)?))
    }
}

impl CheckpointStore for ObjectStoreLocation {
    fn location(&self) -> String {
        self.0.url().to_string()
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        Ok(self.0.put(name, bytes)?)
    }

    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<bool> {
        Ok(self.0.put_new(name, bytes)?)
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(name)?.map(|b| b.to_vec()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        Ok(self.0.list(prefix)?)
    }

    fn delete(&self, name: &str) -> Result<()> {
        Ok(self.0.delete(name)?)
    }
}
