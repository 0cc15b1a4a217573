//! Kill tests: `weir nexmark --checkpoint-dir` killed with SIGKILL at
//! random moments and started again with the same command, until it
//! completes; the result must be byte for byte the uninterrupted run's
//! (same sha256): nothing lost, nothing duplicated. On a two-process
//! cluster one of the two is killed; the survivor must stop on its own
//! (peer lost), and both are restarted.
//!
//! Each query runs campaigns (a fresh checkpoint folder, killed until it
//! completes) until it has been killed at least `KILLS` times. The seed of
//! the kill moments is printed; `WEIR_KILL_SEED` replays it.

mod common;
use common::finish;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");
const KILLS: usize = 20;

/// One test of this file at a time: each starts several processes, and
/// kill moments mean something only on a machine they do not share.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

/// xorshift64*: the kill moments, reproducible from a seed.
struct Rng(u64);
impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("WEIR_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("kill moments from WEIR_KILL_SEED={seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn sha_of(out: &Path, q: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{q}.summary.json"))).unwrap()).unwrap();
    json["sha256"].as_str().unwrap().to_string()
}

/// Where a run's events come from.
#[derive(Clone, Copy, Debug)]
pub enum Events<'a> {
    /// This many from the built-in generator.
    Generated(u64),
    /// A Kafka topic, `kafka://HOST:PORT/TOPIC`.
    Topic(&'a str),
}

impl From<u64> for Events<'_> {
    fn from(n: u64) -> Self {
        Events::Generated(n)
    }
}

impl Events<'_> {
    fn args(self) -> Vec<String> {
        match self {
            Events::Generated(n) => vec!["--events".into(), n.to_string()],
            Events::Topic(url) => vec!["--input".into(), url.into()],
        }
    }
}

fn nexmark<'a>(q: &str, events: impl Into<Events<'a>>, out: &Path) -> Command {
    nexmark_on(q, events, out, 2)
}

fn nexmark_on<'a>(q: &str, events: impl Into<Events<'a>>, out: &Path, workers: usize) -> Command {
    let mut c = Command::new(WEIR);
    c.args(["nexmark", "--quiet", "--query", q])
        .args(events.into().args())
        .args(["--workers", &workers.to_string(), "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// The sha256 of `q` run once without interruption (under `dir/reference`).
fn uninterrupted_sha<'a>(q: &str, events: impl Into<Events<'a>>, dir: &Path) -> String {
    let reference = dir.join("reference");
    let o = finish(nexmark(q, events, &reference).spawn().unwrap(), 300);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    sha_of(&reference, q)
}

/// Kill `q` over and over until it completes; returns the kills.
fn campaign(q: &str, events: Events<'_>, extra: &[&str], dir: &Path, rng: &mut Rng) -> usize {
    let (out, ck) = (dir.join("out"), dir.join("ck"));
    let mut kills = 0;
    for attempt in 0.. {
        assert!(attempt < 200, "{q} did not complete after {attempt} starts");
        let mut child = nexmark(q, events, &out)
            .args(extra)
            .args(["--checkpoint-interval", "1s", "--checkpoint-dir"])
            .arg(&ck)
            .spawn()
            .unwrap();
        // The window widens with each start, so that a slow machine still
        // gets past its first checkpoint.
        let at = Instant::now() + Duration::from_millis(200 + rng.below(2300 + 300 * attempt));
        while Instant::now() < at && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            continue;
        }
        let o = child.wait_with_output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{q}: {e}");
        assert!(!e.contains("panicked"), "{e}");
        break;
    }
    kills
}

/// `extra`: options of the killed runs (not of the uninterrupted one).
pub fn killed_any_number_of_times_ends_with_the_uninterrupted_output<'a>(
    q: &str,
    events: impl Into<Events<'a>>,
    extra: &[&str],
) {
    let events = events.into();
    let tmp = tempfile::tempdir().unwrap();
    let expected = uninterrupted_sha(q, events, tmp.path());
    let mut rng = Rng::new();
    let (mut kills, mut campaigns) = (0, 0);
    while kills < KILLS {
        let dir = tmp.path().join(format!("campaign-{campaigns}"));
        kills += campaign(q, events, extra, &dir, &mut rng);
        campaigns += 1;
        assert_eq!(sha_of(&dir.join("out"), q), expected, "{q}: campaign {campaigns} after {kills} kills in all");
        // Run again: it completed, so it leaves the same output.
        let o = finish(
            nexmark(q, events, &dir.join("out"))
                .args(extra)
                .arg("--checkpoint-dir")
                .arg(dir.join("ck"))
                .spawn()
                .unwrap(),
            120,
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("already completed"));
        assert_eq!(sha_of(&dir.join("out"), q), expected, "{q}: run again after completing");
    }
    eprintln!("{q}: {kills} kills over {campaigns} campaigns, every one ended with sha256 {expected}");
}

#[test]
fn q5_killed_at_random_moments_loses_and_duplicates_nothing() {
    let _alone = alone();
    killed_any_number_of_times_ends_with_the_uninterrupted_output("q5", 4_000_000, &[]);
}

#[test]
fn q11_killed_at_random_moments_loses_and_duplicates_nothing() {
    let _alone = alone();
    killed_any_number_of_times_ends_with_the_uninterrupted_output("q11", 3_000_000, &[]);
}

/// q4: a stateful ParDo (value and bag state, timers) into a combine.
#[test]
fn q4_killed_at_random_moments_loses_and_duplicates_nothing() {
    let _alone = alone();
    killed_any_number_of_times_ends_with_the_uninterrupted_output("q4", 3_000_000, &[]);
}

/// q18: one global-window grouping that emits everything at the end of
/// the input (killed while it fires, too), its keys in the LSM with few in
/// memory and its checkpoints incremental; compared with an uninterrupted
/// run in memory.
#[test]
fn q18_on_the_lsm_killed_at_random_moments_loses_and_duplicates_nothing() {
    let _alone = alone();
    let state = tempfile::tempdir().unwrap();
    let state = state.path().to_str().unwrap();
    let extra = ["--state-dir", state, "--resident-keys", "2000"];
    killed_any_number_of_times_ends_with_the_uninterrupted_output("q18", 1_000_000, &extra);
}

/// q5 and q7 read from a 4-partition Kafka topic (the test broker): the
/// partitions' offsets are in the checkpoints, so a restarted run reads on
/// from them and ends with the uninterrupted run's rows.
#[test]
fn q5_and_q7_from_kafka_killed_at_random_moments_lose_and_duplicate_nothing() {
    let _one = alone();
    let url = common::kafka_topic(300_000);
    for q in ["q5", "q7"] {
        killed_any_number_of_times_ends_with_the_uninterrupted_output(q, Events::Topic(&url), &[]);
    }
}

/// The committed checkpoints (manifests) in `weir nexmark --checkpoint-dir ck`.
fn manifests(ck: &Path) -> Vec<PathBuf> {
    let Ok(dirs) = std::fs::read_dir(ck.join("checkpoints")) else { return Vec::new() };
    let mut all: Vec<PathBuf> = dirs.flatten().map(|d| d.path().join("MANIFEST")).filter(|m| m.exists()).collect();
    all.sort();
    all
}

/// Whether `weir nexmark --checkpoint-dir ck` committed a checkpoint.
fn committed(ck: &Path) -> bool {
    let Ok(dirs) = std::fs::read_dir(ck.join("checkpoints")) else { return false };
    dirs.flatten().any(|d| d.path().join("MANIFEST").exists())
}

/// Rescaling: every start of a campaign runs on another number of workers
/// (1 → 2 → 4 → 3 → …), every other one with its keyed state in the LSM
/// backend, and resumes from what the one before checkpointed; the end
/// result is the uninterrupted run's.
fn rescaled_at_every_restart_ends_with_the_uninterrupted_output(q: &str, events: u64, min_kills: usize) {
    const WORKERS: [usize; 5] = [1, 2, 4, 3, 2];
    let tmp = tempfile::tempdir().unwrap();
    let expected = uninterrupted_sha(q, events, tmp.path());
    let mut rng = Rng::new();
    let (mut kills, mut rescaled) = (0, 0);
    // How long after its checkpoint a start is killed: at random within
    // this window, 80 % of the longest time a start that was not killed
    // took from its checkpoint to its end (between 200 ms and 1.5 s): on a
    // fast machine a start may end soon after its first checkpoint, and a
    // fixed window would then rarely kill anything.
    let (mut window_ms, mut longest_tail): (u64, u64) = (1500, 0);
    let mut campaigns = 0;
    for campaign in 0.. {
        if kills >= min_kills {
            break;
        }
        campaigns = campaign + 1;
        assert!(campaign < 20, "{q}: only {kills} kills in {campaign} campaigns");
        let dir = tmp.path().join(format!("campaign-{campaign}"));
        let (out, ck) = (dir.join("out"), dir.join("ck"));
        for attempt in 0.. {
            assert!(attempt < 100, "{q} did not complete after {attempt} starts");
            let workers = WORKERS[attempt % WORKERS.len()];
            let mut run = nexmark_on(q, events, &out, workers);
            run.args(["--checkpoint-interval", "1s", "--checkpoint-dir"]).arg(&ck);
            // Every other start keeps keyed state in the LSM backend, with
            // few keys in memory: a checkpoint does not depend on it.
            if attempt % 2 == 1 {
                run.arg("--state-dir").arg(dir.join("state")).args(["--resident-keys", "1000"]);
            }
            // Killed at a random moment after this start committed a
            // checkpoint, so that the next start resumes from it on another
            // number of workers (a slow machine must not turn every start
            // into a fresh one).
            let before = manifests(&ck);
            let mut child = run.spawn().unwrap();
            let started = Instant::now();
            while manifests(&ck) == before && child.try_wait().unwrap().is_none() {
                assert!(started.elapsed() < Duration::from_secs(120), "{q}: no checkpoint in 120 s");
                std::thread::sleep(Duration::from_millis(5));
            }
            let checkpointed = Instant::now();
            let saw_checkpoint = manifests(&ck) != before;
            let at = checkpointed + Duration::from_millis(rng.below(window_ms));
            while Instant::now() < at && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let killed = child.try_wait().unwrap().is_none();
            if killed {
                child.kill().unwrap();
                kills += 1;
            }
            let o = child.wait_with_output().unwrap();
            let e = String::from_utf8_lossy(&o.stderr);
            rescaled += e.matches("rescaled to").count();
            if killed {
                continue;
            }
            if saw_checkpoint {
                longest_tail = longest_tail.max(checkpointed.elapsed().as_millis() as u64);
                window_ms = (longest_tail * 8 / 10).clamp(200, 1500);
            }
            assert!(o.status.success(), "{q} on {workers} workers: {e}");
            assert!(!e.contains("panicked"), "{e}");
            break;
        }
        assert_eq!(sha_of(&out, q), expected, "{q}: campaign {campaign} after {kills} kills in all");
    }
    eprintln!(
        "{q}: {kills} kills on 1 to 4 workers in {campaigns} campaigns (kill window {window_ms} ms), {rescaled} \
         starts resumed on another number of workers, every campaign ended with sha256 {expected}"
    );
    assert!(rescaled > 0, "no start resumed on another number of workers");
}

#[test]
fn q5_rescaled_at_every_restart_loses_and_duplicates_nothing() {
    let _alone = alone();
    rescaled_at_every_restart_ends_with_the_uninterrupted_output("q5", 4_000_000, 6);
}

/// q4: the stateful ParDo's cells, timers and time-sorted input move by key group.
#[test]
fn q4_rescaled_at_every_restart_loses_and_duplicates_nothing() {
    let _alone = alone();
    rescaled_at_every_restart_ends_with_the_uninterrupted_output("q4", 3_000_000, 6);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn process(index: usize, hosts: &Path, out: &Path, ck: &Path, q: &str, events: u64) -> Child {
    Command::new(WEIR)
        .args(["nexmark", "--quiet", "--query", q, "--events", &events.to_string(), "--workers", "1"])
        .args([
            "--processes",
            "2",
            "--process-index",
            &index.to_string(),
            "--peer-timeout-s",
            "5",
            "--connect-timeout-s",
            "10",
            "--hosts",
        ])
        .arg(hosts)
        .arg("--out")
        .arg(out)
        .args(["--checkpoint-interval", "1s", "--checkpoint-dir"])
        .arg(ck)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A two-process cluster, one process killed at random moments: the other
/// stops by itself with an error naming the lost peer; both restarted
/// resume from the last checkpoint; the end result is the uninterrupted
/// single-process run's. Campaigns (fresh folders) go on until 5 kills.
#[test]
fn a_cluster_with_a_process_killed_at_random_moments_ends_with_the_uninterrupted_output() {
    let _alone = alone();
    let (q, events) = ("q5", 4_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let expected = uninterrupted_sha(q, events, tmp.path());
    let mut rng = Rng::new();
    let mut kills = 0;
    for campaign in 0.. {
        if kills >= 5 {
            break;
        }
        assert!(campaign < 20, "only {kills} kills in {campaign} campaigns");
        let dir = tmp.path().join(format!("campaign-{campaign}"));
        let (out, ck): (PathBuf, PathBuf) = (dir.join("out"), dir.join("ck"));
        for attempt in 0.. {
            assert!(attempt < 100, "the cluster did not complete after {attempt} starts");
            let hosts = dir.join("hosts");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
            let mut p = [process(0, &hosts, &out, &ck, q, events), process(1, &hosts, &out, &ck, q, events)];
            let at = Instant::now() + Duration::from_millis(300 + rng.below(1500 + 300 * attempt));
            while Instant::now() < at && p.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let victim = rng.below(2) as usize;
            if p[victim].try_wait().unwrap().is_none() {
                p[victim].kill().unwrap();
                kills += 1;
                let [a, b] = p;
                let mut survivor = if victim == 0 { b } else { a };
                let killed = Instant::now();
                // The survivor stops, naming the peer: within the peer
                // timeout (5 s) once connected, the connect timeout (10 s)
                // before. Or the pipeline had completed everywhere and the
                // survivor, process 0, waits for the victim's part of the
                // result: then the victim is started again, finds the job
                // completed, writes its part, and the campaign is over.
                while survivor.try_wait().unwrap().is_none() && killed.elapsed() < Duration::from_secs(20) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if survivor.try_wait().unwrap().is_none() {
                    let again = process(victim, &hosts, &out, &ck, q, events);
                    for (name, c) in [("survivor", survivor), ("restarted", again)] {
                        let o = finish(c, 120);
                        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
                    }
                    break;
                }
                let o = finish(survivor, 1);
                let e = String::from_utf8_lossy(&o.stderr);
                if !o.status.success() {
                    assert!(e.contains("cluster:"), "{e}");
                    assert!(!e.contains("panicked"), "{e}");
                }
                continue;
            }
            let [a, b] = p;
            for (i, c) in [a, b].into_iter().enumerate() {
                let o = finish(c, 120);
                assert!(o.status.success(), "process {i}: {}", String::from_utf8_lossy(&o.stderr));
            }
            break;
        }
        assert_eq!(sha_of(&out, q), expected, "campaign {campaign}, after {kills} kills in all");
    }
    eprintln!("cluster: {kills} kills, every campaign ended with sha256 {expected}");
}

/// 2 processes → 1: a two-process cluster is killed once it committed a
/// checkpoint, and resumes as one process (on 1 worker: rescaled; on 2:
/// the same workers in one process); the result is the uninterrupted run's.
#[test]
fn a_cluster_checkpoint_resumes_on_one_process() {
    let _alone = alone();
    let (q, events) = ("q5", 6_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let expected = uninterrupted_sha(q, events, tmp.path());
    for workers in [1, 2] {
        let dir = tmp.path().join(format!("on-{workers}"));
        let (out, ck, hosts) = (dir.join("out"), dir.join("ck"), dir.join("hosts"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
        let mut p = [process(0, &hosts, &out, &ck, q, events), process(1, &hosts, &out, &ck, q, events)];
        let started = Instant::now();
        while !committed(&ck) {
            assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint committed in 120 s");
            if p.iter_mut().any(|c| c.try_wait().unwrap().is_some()) {
                // Both processes' ends: the first to stop often only names
                // the other.
                let ends: Vec<String> = p
                    .iter_mut()
                    .enumerate()
                    .map(|(i, c)| {
                        if c.try_wait().unwrap().is_none() {
                            std::thread::sleep(Duration::from_secs(2));
                            let _ = c.kill();
                        }
                        let status = c.wait().unwrap();
                        let mut e = String::new();
                        std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut e).unwrap();
                        format!("process {i} ({status}): {e}")
                    })
                    .collect();
                panic!("the cluster ended before a checkpoint:\n{}", ends.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for c in &mut p {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        let resumed = nexmark_on(q, events, &out, workers)
            .args(["--checkpoint-interval", "1s", "--checkpoint-dir"])
            .arg(&ck)
            .spawn()
            .unwrap();
        let o = finish(resumed, 300);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{e}");
        assert!(e.contains("resuming from checkpoint"), "{e}");
        assert_eq!(e.contains("rescaled to 1 workers"), workers == 1, "{e}");
        assert_eq!(sha_of(&out, q), expected, "resumed on one process with {workers} workers");
    }
}

/// A corrupt newest checkpoint: `weir checkpoints list` says why it is not
/// usable, and the next run says it skips it, resumes from the previous
/// one and still ends with the uninterrupted output.
#[test]
fn a_corrupt_checkpoint_is_listed_skipped_and_the_output_stays_exact() {
    let _alone = alone();
    let (q, events) = ("q5", 4_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let expected = uninterrupted_sha(q, events, tmp.path());
    let (out, ck) = (tmp.path().join("out"), tmp.path().join("ck"));
    // Killed once at least two checkpoints are committed.
    let mut child =
        nexmark(q, events, &out).args(["--checkpoint-interval", "200ms", "--checkpoint-dir"]).arg(&ck).spawn().unwrap();
    let manifests = || {
        let mut m: Vec<PathBuf> = std::fs::read_dir(ck.join("checkpoints"))
            .map(|d| d.map(|e| e.unwrap().path().join("MANIFEST")).filter(|p| p.exists()).collect())
            .unwrap_or_default();
        m.sort();
        m
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while manifests().len() < 2 && child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run ended before two checkpoints: make it longer");
    child.kill().unwrap();
    child.wait().unwrap();
    let newest = manifests().pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes[30] ^= 0x04;
    std::fs::write(&newest, bytes).unwrap();
    let list = Command::new(WEIR).args(["checkpoints", "list"]).arg(&ck).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success() && listed.contains("NOT USABLE") && listed.contains("checksum mismatch"), "{listed}");
    let o = finish(nexmark(q, events, &out).arg("--checkpoint-dir").arg(&ck).spawn().unwrap(), 300);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("skipping checkpoint") && e.contains("checksum mismatch") && e.contains("resuming from"), "{e}");
    assert_eq!(sha_of(&out, q), expected);
    let inspect = Command::new(WEIR).args(["checkpoints", "inspect"]).arg(&ck).output().unwrap();
    let shown = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspect.status.success() && shown.contains("bytes of state") && shown.contains("source, 1 splits"),
        "{shown}"
    );
}

/// The child processes of `pid` (Linux).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// `weir cluster` supervises a two-process cluster: a process killed
/// under it makes it start both again, they resume from the checkpoint,
/// and the result is the uninterrupted run's.
#[test]
fn the_cluster_supervisor_restarts_every_process_after_a_failure() {
    let _alone = alone();
    let (q, events) = ("q5", 4_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let expected = uninterrupted_sha(q, events, tmp.path());
    let (out, ck) = (tmp.path().join("out"), tmp.path().join("ck"));
    let mut sup = Command::new(WEIR)
        .args(["cluster", "-n", "2", "--restarts", "5", "--", "nexmark", "--quiet", "--query", q])
        .args(["--events", &events.to_string(), "--workers", "1", "--peer-timeout-s", "5"])
        .args(["--checkpoint-interval", "300ms", "--checkpoint-dir"])
        .arg(&ck)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill one process once a checkpoint is committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no checkpoint within 60 s");
        let committed = std::fs::read_dir(ck.join("checkpoints"))
            .map(|d| d.filter_map(|e| e.ok()).any(|e| e.path().join("MANIFEST").exists()))
            .unwrap_or(false);
        if committed {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let kids = children_of(sup.id());
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert!(Command::new("kill").args(["-9", &kids[1].to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(300);
    while sup.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the supervised cluster did not complete");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = sup.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("starting all 2 processes again") && e.contains("resuming from checkpoint"), "{e}");
    assert_eq!(sha_of(&out, q), expected);
}

/// A savepoint asked for while a job runs is taken at its next checkpoint
/// and kept outside retention.
#[test]
fn a_savepoint_asked_for_is_kept_outside_retention() {
    let _alone = alone();
    let (q, events) = ("q5", 6_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let (out, ck) = (tmp.path().join("out"), tmp.path().join("ck"));
    let child = nexmark(q, events, &out)
        .args(["--checkpoint-interval", "200ms", "--checkpoint-retain", "1", "--checkpoint-dir"])
        .arg(&ck)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ck.join("checkpoints").join("JOB").exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = Command::new(WEIR).args(["checkpoints", "savepoint"]).arg(&ck).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = finish(child, 300);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && e.contains("is a savepoint, as asked"), "{e}");
    let list = Command::new(WEIR).args(["checkpoints", "list"]).arg(&ck).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    // Retention keeps one complete checkpoint, and the savepoint besides.
    assert_eq!(listed.matches("(savepoint)").count(), 1, "{listed}");
    assert_eq!(listed.matches("  complete").count(), 2, "{listed}");
    assert!(!listed.contains("NOT USABLE"), "a completed run leaves no partial checkpoint: {listed}");
    let o = Command::new(WEIR).args(["checkpoints", "savepoint"]).arg(&ck).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("has completed"));
}
