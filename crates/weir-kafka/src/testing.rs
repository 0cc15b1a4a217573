//! A real Kafka-protocol broker for tests (feature `testing`): the
//! prebuilt tansu broker of `shared/bin`, unpacked under `target/` and
//! started once per test process on a free port of 127.0.0.1, in memory;
//! it stops when the test process ends.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The `shared` folder beside the repository or above it (or `WEIR_SHARED`).
fn shared() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_SHARED") {
        return PathBuf::from(dir);
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared"))
        .find(|d| d.join("bin").is_dir())
        .expect("the shared/ folder with bin/ (set WEIR_SHARED)")
}

/// The broker binary, unpacked once (by one thread: tests start brokers
/// from several).
fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(unpack).clone()
}

fn unpack() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tansu-0.6.0");
    if !target.exists() {
        let packed = shared().join("bin/tansu-0.6.0-x86_64-linux.xz");
        assert!(packed.exists(), "the test broker is {} (set WEIR_SHARED to the shared folder)", packed.display());
        let tmp = target.with_extension(format!("tmp{}", std::process::id()));
        let script = format!("xz -dc '{}' > '{}' && chmod +x '{}'", packed.display(), tmp.display(), tmp.display());
        let ok = Command::new("sh").args(["-c", &script]).status().expect("sh and xz are needed");
        assert!(ok.success(), "unpacking {}", packed.display());
        std::fs::rename(&tmp, &target).expect("moving the unpacked broker into place");
    }
    target
}

/// The address (`127.0.0.1:PORT`) of the test broker, started on first use.
pub fn broker() -> &'static str {
    /// The address, and the watcher process (kept, never waited for).
    static BROKER: OnceLock<(String, Mutex<Child>)> = OnceLock::new();
    &BROKER
        .get_or_init(|| {
            let bin = binary();
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let url = format!("tcp://127.0.0.1:{port}");
            // A static is never dropped: a watcher stops the broker when this
            // test process ends.
            let watch = format!(
                "'{}' broker --listener-url {url} --advertised-listener-url {url} --storage-engine memory://tansu/ \
             --silent & b=$!; while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill $b",
                bin.display(),
                std::process::id()
            );
            let watcher = Command::new("sh")
                .args(["-c", &watch])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting the test broker");
            let deadline = Instant::now() + Duration::from_secs(30);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "the test broker did not listen within 30 s");
                std::thread::sleep(Duration::from_millis(50));
            }
            (format!("127.0.0.1:{port}"), Mutex::new(watcher))
        })
        .0
}

/// The (key, value) of the first `n` records of every partition of
/// `topic` taken together (waiting up to `timeout` for them), read by a
/// plain consumer: what a downstream service would see.
pub fn read_records(brokers: &str, topic: &str, n: usize, timeout: Duration) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "weir-testing-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[topic]).expect("subscribing");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push((m.key().map(<[u8]>::to_vec), m.payload().unwrap_or_default().to_vec()));
        }
    }
    out
}

/// A broker of a test's own on a free port of 127.0.0.1, keeping its
/// records in an SQLite file, that the test can stop (a kill) and start
/// again with what it held; stopped when dropped.
pub struct OwnBroker {
    port: u16,
    db: PathBuf,
    child: Option<Child>,
}

impl OwnBroker {
    /// A broker keeping its records in `db` (a file it creates).
    pub fn start(db: &std::path::Path) -> OwnBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut b = OwnBroker { port, db: db.to_path_buf(), child: None };
        b.restart();
        b
    }

    /// Its address, `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kill it (no goodbye to its clients).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port, with the records it held.
    pub fn restart(&mut self) {
        self.stop();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // tansu reads an SQLite URL's path relative to its folder.
        let (folder, file) = (self.db.parent().expect("a folder"), self.db.file_name().expect("a file name"));
        let storage = format!("sqlite://{}", file.to_string_lossy());
        let child = Command::new(binary())
            .current_dir(folder)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", &storage])
            .arg("--silent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting a broker");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the broker did not listen within 30 s");
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("the broker on port {} ended at its start: {status}", self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
