//! A real local S3 server for tests (feature `moto`): moto's, from PyPI,
//! installed into a virtual environment under `target/moto-venv` the first
//! time, started once per test process on a free port of 127.0.0.1, and
//! stopped when that process ends. No mocks: the tests talk S3 over HTTP.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Moto {
    _watcher: Child,
    port: u16,
}

fn venv() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/moto-venv");
    if !target.join("bin/moto_server").exists() {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&target).status().expect("python3 is needed");
        assert!(ok.success(), "creating a virtual environment for moto");
        let ok = Command::new(target.join("bin/pip"))
            .args(["install", "--quiet", "moto[server]==5.1.*"])
            .status()
            .expect("pip is needed");
        assert!(ok.success(), "installing moto[server] from PyPI");
    }
    target
}

fn moto() -> &'static Mutex<Moto> {
    static MOTO: OnceLock<Mutex<Moto>> = OnceLock::new();
    MOTO.get_or_init(|| {
        let venv = venv();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // A static is never dropped: a watcher stops the server when this
        // test process ends.
        let watch = format!(
            "{} -H 127.0.0.1 -p {port} & m=$!; while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill $m",
            venv.join("bin/moto_server").display(),
            std::process::id()
        );
        let child = Command::new("sh")
            .args(["-c", &watch])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: set once, before any store of this process reads the
        // environment (every S3 location in a test comes from `bucket`).
        unsafe {
            std::env::set_var("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"));
            std::env::set_var("AWS_ALLOW_HTTP", "true");
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
            std::env::set_var("AWS_REGION", "us-east-1");
        }
        Mutex::new(Moto { _watcher: child, port })
    })
}

/// A fresh bucket `name` on the test server (started if need be), as
/// `s3://name`; the `AWS_*` variables point S3 locations at the server.
pub fn bucket(name: &str) -> String {
    let port = moto().lock().unwrap().port;
    let script = format!(
        "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', region_name='us-east-1', \
         aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='{name}')"
    );
    let ok = Command::new(venv().join("bin/python")).args(["-c", &script]).status().unwrap();
    assert!(ok.success(), "creating bucket {name}");
    format!("s3://{name}")
}
