//! # weir-checkpoint-object-store
//!
//! Checkpoint locations on object storage: any `object_store` backend
//! behind Weir's [`CheckpointStore`], in a crate of its own so that the
//! HTTP and TLS stack stays out of pipelines that checkpoint to a local
//! directory.
//!
//! [`ObjectStoreLocation::parse`] takes a URL: `s3://bucket/prefix` (the
//! credentials, region and endpoint from the usual `AWS_*` environment
//! variables, e.g. `AWS_ENDPOINT=http://127.0.0.1:5000` and
//! `AWS_ALLOW_HTTP=true` for a local S3 server), `file:///path`, or
//! `memory://` (for tests). A manifest is committed with a conditional
//! create (`PutMode::Create`, `If-None-Match: *` on S3); files are written
//! whole by single PUTs, so a reader sees all of one or none.
//!
//! ```
//! use weir_checkpoint::CheckpointStore;
//! use weir_checkpoint_object_store::ObjectStoreLocation;
//! let store = ObjectStoreLocation::parse("memory://").unwrap();
//! assert!(store.put_new("chk-1/MANIFEST", b"m").unwrap());
//! assert!(!store.put_new("chk-1/MANIFEST", b"other").unwrap());
//! assert_eq!(store.get("chk-1/MANIFEST").unwrap().unwrap(), b"m");
//! ```

#![warn(missing_docs)]

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use weir_checkpoint::{CheckpointError, CheckpointStore, Result};

/// A checkpoint location in an object store, under a prefix.
pub struct ObjectStoreLocation {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ObjectStoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectStoreLocation({})", self.url)
    }
}

fn storage(url: &str, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Storage { location: url.to_string(), message: e.to_string() }
}

impl ObjectStoreLocation {
    /// The location a URL names (see the crate docs).
    pub fn parse(url: &str) -> Result<Self> {
        let parsed = url::Url::parse(url).map_err(|e| storage(url, format!("not a URL: {e}")))?;
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = match parsed.scheme() {
            "s3" => {
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| storage(url, e))?;
                (Arc::new(s3), Path::from(parsed.path().trim_start_matches('/')))
            }
            "memory" => (Arc::new(object_store::memory::InMemory::new()), Path::from(parsed.path())),
            "file" => {
                let dir = parsed.to_file_path().map_err(|_| storage(url, "not a local path"))?;
                std::fs::create_dir_all(&dir).map_err(|e| storage(url, e))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| storage(url, e))?;
                (Arc::new(fs), Path::default())
            }
            other => {
                return Err(storage(url, format!("unknown scheme '{other}': use s3://, file:// or memory://")));
            }
        };
        Self::new(store, prefix, url)
    }

    /// A location in `store` under `prefix`; `url` names it in messages.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path, url: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| storage(url, format!("starting the I/O runtime: {e}")))?;
        Ok(ObjectStoreLocation { store, prefix, url: url.to_string(), runtime })
    }

    fn path(&self, name: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in name.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    fn err(&self, what: &str, name: &str, e: object_store::Error) -> CheckpointError {
        storage(&self.url, format!("{what} {name}: {e}"))
    }
}

impl CheckpointStore for ObjectStoreLocation {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime
            .block_on(self.store.put(&self.path(name), payload))
            .map(|_| ())
            .map_err(|e| self.err("writing", name, e))
    }

    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<bool> {
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let payload = PutPayload::from(bytes.to_vec());
        match self.runtime.block_on(self.store.put_opts(&self.path(name), payload, opts)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.err("creating", name, e)),
        }
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let got = self.runtime.block_on(async {
            let r = self.store.get(&self.path(name)).await?;
            r.bytes().await
        });
        match got {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("reading", name, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        // Listing is by folder; filter by the name's prefix.
        let objects: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&self.prefix)).try_collect())
            .map_err(|e| self.err("listing", prefix, e))?;
        let mut out: Vec<(String, u64)> = objects
            .into_iter()
            .filter_map(|m| {
                let full = m.location.to_string();
                let rel = match self.prefix.as_ref() {
                    "" => full,
                    p => full.strip_prefix(p)?.trim_start_matches('/').to_string(),
                };
                rel.starts_with(prefix).then_some((rel, m.size))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        match self.runtime.block_on(self.store.delete(&self.path(name))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("removing", name, e)),
        }
    }
}
