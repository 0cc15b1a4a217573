//! The README's "Your program on a cluster" guide, followed step by step
//! on 127.0.0.1: a host file, the same program started once per process
//! with its index (here this test binary re-run as each process, calling
//! the `cluster_word_count` example's code), every process ending when the
//! job is done, process 0 with the whole result and the others with none;
//! then the same with a process started with other settings, which the
//! cluster refuses at start.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::prelude::*;

#[path = "../examples/cluster_word_count.rs"]
mod cluster_word_count;

const INDEX: &str = "WEIR_GUIDE_PROCESS";
const HOSTS: &str = "WEIR_GUIDE_HOSTS";
const OUT: &str = "WEIR_GUIDE_OUT";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Step 2: start the same program once per process, with its index.
fn start(index: usize, hosts: &Path, out: &Path, extra: &[(&str, &str)]) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["the_guide_on_two_processes", "--exact", "--nocapture", "--test-threads=1"])
        .env(INDEX, index.to_string())
        .env(HOSTS, hosts)
        .env(OUT, out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn wait(mut child: std::process::Child, what: &str) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{what} did not end within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn the_guide_on_two_processes() {
    if let Ok(index) = std::env::var(INDEX) {
        // One process of the cluster: the guide's program.
        let hosts = std::path::PathBuf::from(std::env::var(HOSTS).unwrap());
        let index: usize = index.parse().unwrap();
        if std::env::var("WEIR_GUIDE_OTHER_JOB").is_ok() {
            // A process built from another configuration.
            let p = Pipeline::new();
            let _ = cluster_word_count::build(&p);
            let runner = TimelyRunner::cluster_from_hostfile(2, index, &hosts)
                .unwrap()
                .with_job_description("word count v2")
                .with_connect_timeout(Duration::from_secs(20));
            let e = p.run_with(&runner).unwrap_err();
            panic!("refused: {e}");
        }
        let counts = cluster_word_count::run_process(index, &hosts, 2).unwrap();
        let lines: Vec<String> = counts.iter().map(|(w, n)| format!("{w} {n}")).collect();
        std::fs::write(std::env::var(OUT).unwrap(), lines.join("\n")).unwrap();
        return;
    }

    // Step 1: a host file, one `host:port` per process, the same everywhere.
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts.txt");
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let out = |i: usize| dir.path().join(format!("out-{i}.txt"));
    let children: Vec<_> = (0..2).map(|i| start(i, &hosts, &out(i), &[])).collect();
    // Step 3: every process ends when the whole job is done.
    for (i, c) in children.into_iter().enumerate() {
        let (ok, stderr) = wait(c, &format!("process {i}"));
        assert!(ok, "process {i}: {stderr}");
        assert!(stderr.contains(&format!("process {i}: ")) && stderr.contains("words counted here"), "{stderr}");
    }
    // Process 0 holds the whole result, the other none.
    let zero = std::fs::read_to_string(out(0)).unwrap();
    let one = std::fs::read_to_string(out(1)).unwrap();
    assert!(one.is_empty(), "process 1 collected: {one}");
    let p = Pipeline::new();
    let single = cluster_word_count::build(&p);
    p.run_with(&ReferenceRunner::default()).unwrap();
    let mut want: Vec<String> = single.values().iter().map(|(w, n)| format!("{w} {n}")).collect();
    want.sort();
    assert_eq!(zero.lines().collect::<Vec<_>>(), want);
    assert!(zero.contains("the 2000"), "{zero}");

    // Step 4: processes that do not run the same job are refused at start,
    // with an error on each.
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let good = start(0, &hosts, &out(0), &[]);
    let other = start(1, &hosts, &out(1), &[("WEIR_GUIDE_OTHER_JOB", "1")]);
    let (ok0, e0) = wait(good, "process 0");
    let (ok1, e1) = wait(other, "process 1");
    assert!(!ok0 && !ok1, "a mismatched cluster ran: {e0} / {e1}");
    assert!(e0.contains("it runs a different job") && e0.contains("word count v2"), "{e0}");
    assert!(e1.contains("refused"), "{e1}");
}
