//! [`ObjectDir`]: a blocking handle on a prefix of an object store, for
//! Weir's synchronous workers (checkpoints, the transactional file sink,
//! file sources). Each call runs on the handle's own I/O runtime.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::ObjectStoreError;

/// A prefix of an object store, named by a URL (see [`ObjectDir::parse`]).
pub struct ObjectDir {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ObjectDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectDir({})", self.url)
    }
}

fn storage(url: &str, e: impl std::fmt::Display) -> ObjectStoreError {
    ObjectStoreError::Storage { location: url.to_string(), message: e.to_string() }
}

/// Whether `path` names an object-store location (`scheme://...`) rather
/// than a local path.
///
/// ```
/// assert!(weir_object_store::is_url("s3://bucket/trips/"));
/// assert!(!weir_object_store::is_url("data/trips/"));
/// ```
pub fn is_url(path: &str) -> bool {
    path.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
    })
}

impl ObjectDir {
    /// The location a URL names: `s3://bucket/prefix` (credentials, region
    /// and endpoint from the usual `AWS_*` environment variables, e.g.
    /// `AWS_ENDPOINT=http://127.0.0.1:5000` and `AWS_ALLOW_HTTP=true` for a
    /// local S3 server), `file:///folder` (a folder, created if missing),
    /// or `memory://` (for tests).
    ///
    /// ```
    /// use weir_object_store::ObjectDir;
    /// let dir = ObjectDir::parse("memory://out").unwrap();
    /// dir.put("a.txt", b"hello").unwrap();
    /// assert_eq!(dir.get_range("a.txt", 1..3).unwrap().as_ref(), b"el");
    /// assert_eq!(dir.list("").unwrap(), vec![("a.txt".to_string(), 5)]);
    /// assert!(ObjectDir::parse("ftp://host/x").unwrap_err().to_string().contains("unknown scheme"));
    /// ```
    pub fn parse(url: &str) -> Result<Self, ObjectStoreError> {
        let parsed = url::Url::parse(url).map_err(|e| storage(url, format!("not a URL: {e}")))?;
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = match parsed.scheme() {
            "s3" => {
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| storage(url, e))?;
                let prefix = Path::from_url_path(parsed.path()).map_err(|e| storage(url, e))?;
                (Arc::new(s3), prefix)
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
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path, url: &str) -> Result<Self, ObjectStoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| storage(url, format!("starting the I/O runtime: {e}")))?;
        Ok(ObjectDir { store, prefix, url: url.to_string(), runtime })
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object `name` under the prefix: `name` as a listing gives it
    /// (raw), percent-encoded only where the store's paths cannot hold it.
    fn path(&self, name: &str) -> Path {
        let name = name.trim_matches('/');
        let full = match (self.prefix.as_ref(), name) {
            (p, "") => p.to_string(),
            ("", n) => n.to_string(),
            (p, n) => format!("{p}/{n}"),
        };
        Path::parse(&full).unwrap_or_else(|_| Path::from(full.as_str()))
    }

    fn err(&self, what: &str, name: &str, e: object_store::Error) -> ObjectStoreError {
        match name {
            "" => storage(&self.url, format!("{what}: {e}")),
            _ => storage(&self.url, format!("{what} {name}: {e}")),
        }
    }

    /// Write object `name` whole (one PUT: a reader sees all or none of it).
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<(), ObjectStoreError> {
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime
            .block_on(self.store.put(&self.path(name), payload))
            .map(|_| ())
            .map_err(|e| self.err("writing", name, e))
    }

    /// Create object `name` only if it does not exist (`If-None-Match: *`
    /// on S3): whether it was created.
    pub fn put_new(&self, name: &str, bytes: &[u8]) -> Result<bool, ObjectStoreError> {
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let payload = PutPayload::from(bytes.to_vec());
        match self.runtime.block_on(self.store.put_opts(&self.path(name), payload, opts)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.err("creating", name, e)),
        }
    }

    /// The contents of object `name` (`None`: there is none).
    pub fn get(&self, name: &str) -> Result<Option<Bytes>, ObjectStoreError> {
        let got = self.runtime.block_on(async {
            let r = self.store.get(&self.path(name)).await?;
            r.bytes().await
        });
        match got {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("reading", name, e)),
        }
    }

    /// Bytes `range` of object `name`.
    pub fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, ObjectStoreError> {
        self.runtime
            .block_on(self.store.get_range(&self.path(name), range.clone()))
            .map_err(|e| self.err(&format!("reading bytes {range:?} of"), name, e))
    }

    /// The size of object `name` (`None`: there is none).
    pub fn size(&self, name: &str) -> Result<Option<u64>, ObjectStoreError> {
        match self.runtime.block_on(self.store.head(&self.path(name))) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("looking up", name, e)),
        }
    }

    /// Every object whose name (relative to the prefix) starts with
    /// `prefix`, with its size, sorted by name.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, ObjectStoreError> {
        // Listing is by folder; filter by the name's prefix.
        let objects: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&self.prefix)).try_collect())
            .map_err(|e| self.err("listing", prefix, e))?;
        let mut out: Vec<(String, u64)> =
            objects.into_iter().filter_map(|m| self.relative(m)).filter(|(n, _)| n.starts_with(prefix)).collect();
        out.sort();
        Ok(out)
    }

    /// The objects whose names (relative to the prefix) sort after `from`,
    /// with their sizes, sorted: listed from that point (S3's `StartAfter`).
    pub fn list_after(&self, from: &str) -> Result<Vec<(String, u64)>, ObjectStoreError> {
        let objects: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list_with_offset(Some(&self.prefix), &self.path(from)).try_collect())
            .map_err(|e| self.err("listing after", from, e))?;
        let mut out: Vec<(String, u64)> =
            objects.into_iter().filter_map(|m| self.relative(m)).filter(|(n, _)| n.as_str() > from).collect();
        out.sort();
        Ok(out)
    }

    /// A listed object's name relative to the prefix, and its size.
    fn relative(&self, m: object_store::ObjectMeta) -> Option<(String, u64)> {
        let full = m.location.to_string();
        let rel = match self.prefix.as_ref() {
            "" => full,
            p => full.strip_prefix(p)?.strip_prefix('/')?.to_string(),
        };
        Some((rel, m.size))
    }

    /// Rename object `from` to `to`, replacing `to` (on S3 a copy, then a
    /// delete: a crash between them leaves both, each whole).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), ObjectStoreError> {
        self.runtime
            .block_on(self.store.rename(&self.path(from), &self.path(to)))
            .map_err(|e| self.err("renaming", &format!("{from} to {to}"), e))
    }

    /// Remove object `name` (nothing if there is none).
    pub fn delete(&self, name: &str) -> Result<(), ObjectStoreError> {
        match self.runtime.block_on(self.store.delete(&self.path(name))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("removing", name, e)),
        }
    }
}

/// The transactional file sink's folder on an object store: the files of
/// `weir_io::epochs::EpochDir` as objects directly under the prefix.
///
/// ```
/// use std::sync::Arc;
/// use weir_io::epochs::EpochDir;
/// use weir_object_store::ObjectDir;
/// use weir_runtime::EpochCommit;
/// let out = EpochDir::in_folder(Arc::new(ObjectDir::parse("memory://out").unwrap()), "csv");
/// out.write_pending(0, 0, 0, b"a\n").unwrap();
/// out.write_pending(1, 0, 0, b"b\n").unwrap();
/// out.commit(0).unwrap();
/// out.recover(Some(0)).unwrap();
/// assert_eq!(out.read_committed().unwrap().concat(), b"a\n");
/// ```
impl weir_io::epochs::Folder for ObjectDir {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn names(&self) -> Result<Vec<String>, weir_io::IoError> {
        Ok(self.list("").map_err(io)?.into_iter().map(|(n, _)| n).filter(|n| !n.contains('/')).collect())
    }

    fn names_after(&self, from: &str) -> Result<Vec<String>, weir_io::IoError> {
        Ok(self.list_after(from).map_err(io)?.into_iter().map(|(n, _)| n).filter(|n| !n.contains('/')).collect())
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), weir_io::IoError> {
        self.put(name, bytes).map_err(io)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), weir_io::IoError> {
        ObjectDir::rename(self, from, to).map_err(io)
    }

    fn remove(&self, name: &str) -> Result<(), weir_io::IoError> {
        self.delete(name).map_err(io)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, weir_io::IoError> {
        match self.get(name).map_err(io)? {
            Some(b) => Ok(b.to_vec()),
            None => Err(weir_io::IoError::Storage { location: self.url.clone(), message: format!("no object {name}") }),
        }
    }
}

fn io(e: ObjectStoreError) -> weir_io::IoError {
    let ObjectStoreError::Storage { location, message } = e;
    weir_io::IoError::Storage { location, message }
}
