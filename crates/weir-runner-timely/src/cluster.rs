//! Starting a cluster that fails cleanly.
//!
//! Timely connects the processes of a cluster itself, retrying forever and
//! printing on stdout, and then trusts every connection. Weir opens the
//! sockets instead (timely's protocol then runs over them unchanged):
//!
//! - with a start-up deadline and errors that name the peer (a peer that
//!   never starts, an address that cannot be resolved or listened on);
//! - with a handshake in which every pair of processes checks that they run
//!   the same job (a fingerprint of the pipeline and of its configuration),
//!   the same number of processes and of workers per process, and agree on
//!   a run id (process 0's) that ties everything the run leaves to this run;
//! - with every connection watched: the last time a peer was heard from,
//!   and why a connection was lost, so that a dead or frozen peer becomes
//!   one error naming it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 4] = b"WEIR";
/// Version of the handshake; processes of different versions refuse each other.
const PROTOCOL: u32 = 1;
/// The longest job description a handshake carries.
const MAX_JOB: usize = 64 * 1024;
/// How often a blocked socket call wakes up to check for shutdown.
const POLL: Duration = Duration::from_millis(500);

/// What a process of the cluster is started with.
pub(crate) struct ClusterSpec<'a> {
    pub threads: usize,
    pub process: usize,
    pub addresses: &'a [String],
    pub connect_timeout: Duration,
    /// A readable description of the job (pipeline and configuration).
    pub job: &'a str,
    /// A stable hash of the job.
    pub fingerprint: u64,
}

/// The first message on every connection, in both directions.
#[derive(Debug, PartialEq, Eq)]
struct Hello {
    protocol: u32,
    process: u32,
    processes: u32,
    threads: u32,
    fingerprint: u64,
    run_id: u64,
    job: String,
}

impl Hello {
    fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let mut b = Vec::with_capacity(48 + self.job.len());
        b.extend_from_slice(MAGIC);
        for x in [self.protocol, self.process, self.processes, self.threads] {
            b.extend_from_slice(&x.to_le_bytes());
        }
        b.extend_from_slice(&self.fingerprint.to_le_bytes());
        b.extend_from_slice(&self.run_id.to_le_bytes());
        let job = &self.job.as_bytes()[..self.job.len().min(MAX_JOB)];
        b.extend_from_slice(&(job.len() as u32).to_le_bytes());
        b.extend_from_slice(job);
        w.write_all(&b)?;
        w.flush()
    }

    fn read(r: &mut impl Read) -> Result<Hello, String> {
        let mut head = [0u8; 40];
        r.read_exact(&mut head).map_err(|e| format!("no handshake ({e})"))?;
        if &head[..4] != MAGIC {
            return Err("it is not a Weir process (no handshake)".into());
        }
        let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
        let protocol = u32_at(4);
        if protocol != PROTOCOL {
            return Err(format!(
                "it speaks cluster protocol {protocol}, this process {PROTOCOL}: a different Weir version"
            ));
        }
        let len = u32_at(36) as usize;
        if len > MAX_JOB {
            return Err(format!("its job description is {len} bytes long"));
        }
        let mut job = vec![0u8; len];
        r.read_exact(&mut job).map_err(|e| format!("truncated handshake ({e})"))?;
        Ok(Hello {
            protocol,
            process: u32_at(8),
            processes: u32_at(12),
            threads: u32_at(16),
            fingerprint: u64_at(20),
            run_id: u64_at(28),
            job: String::from_utf8_lossy(&job).into_owned(),
        })
    }

    /// Why `theirs` (from process `peer`) cannot run with `self`.
    fn mismatch(&self, theirs: &Hello, peer: usize) -> Option<String> {
        if theirs.processes != self.processes {
            return Some(format!(
                "it was started for a cluster of {} processes, this process for {}",
                theirs.processes, self.processes
            ));
        }
        if theirs.process as usize != peer {
            return Some(format!(
                "it is process {} of its host list: the processes were given different host lists",
                theirs.process
            ));
        }
        if theirs.threads != self.threads {
            return Some(format!(
                "it runs {} workers per process, this process {}: every process needs the same number",
                theirs.threads, self.threads
            ));
        }
        if theirs.fingerprint != self.fingerprint {
            return Some(format!("it runs a different job: [{}]; this process runs [{}]", theirs.job, self.job));
        }
        None
    }
}

/// One watched connection, as the monitor sees it.
struct Peer {
    address: String,
    /// Milliseconds since the monitor started at which the peer was last
    /// heard from.
    heard: AtomicU64,
    /// Why the connection was lost, first reason only.
    lost: Mutex<Option<String>>,
}

/// What every process knows about its connections.
pub(crate) struct Monitor {
    start: Instant,
    peers: Vec<Peer>,
    this: usize,
    /// After this many milliseconds since start, blocked socket calls give
    /// up (`u64::MAX`: never): set when the run is over.
    give_up_at: AtomicU64,
    /// Timely's own threads are expected to fail now (a peer was lost):
    /// their panic messages are not shown.
    expect_failures: AtomicBool,
    run_id: u64,
}

/// A peer that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeerFailure {
    pub process: usize,
    pub address: String,
    pub reason: String,
}

impl std::fmt::Display for PeerFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lost process {} ({}): {}", self.process, self.address, self.reason)
    }
}

impl Monitor {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    fn heard(&self, peer: usize) {
        self.peers[peer].heard.store(self.now_ms(), Ordering::Relaxed);
    }
    fn lost(&self, peer: usize, reason: String) {
        let mut lost = self.peers[peer].lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() && !self.giving_up() {
            *lost = Some(reason);
            // Timely's threads will panic on this connection now: the error
            // that names the peer says it all.
            self.expect_failures();
        }
    }
    fn giving_up(&self) -> bool {
        self.now_ms() >= self.give_up_at.load(Ordering::Relaxed)
    }
    /// The run id every process of this run shares (process 0's).
    pub fn run_id(&self) -> u64 {
        self.run_id
    }
    /// The first connection that was lost, if any.
    pub fn first_loss(&self) -> Option<PeerFailure> {
        self.peers.iter().enumerate().find_map(|(i, p)| {
            let lost = p.lost.lock().unwrap_or_else(|p| p.into_inner());
            lost.as_ref().map(|reason| PeerFailure { process: i, address: p.address.clone(), reason: reason.clone() })
        })
    }
    /// A peer not heard from for longer than `timeout`.
    pub fn silent_peer(&self, timeout: Duration) -> Option<PeerFailure> {
        let now = self.now_ms();
        self.peers.iter().enumerate().filter(|(i, _)| *i != self.this).find_map(|(i, p)| {
            let quiet = now.saturating_sub(p.heard.load(Ordering::Relaxed));
            (quiet > timeout.as_millis() as u64).then(|| PeerFailure {
                process: i,
                address: p.address.clone(),
                reason: format!(
                    "nothing received for {:.0} s: the process is stopped, frozen or cut off",
                    quiet as f64 / 1000.0
                ),
            })
        })
    }
    /// The run is over (or failed): blocked socket calls give up after `grace`.
    pub fn give_up_after(&self, grace: Duration) {
        let at = self.now_ms() + grace.as_millis() as u64;
        self.give_up_at.fetch_min(at, Ordering::Relaxed);
    }
    /// Whether a peer was lost (timely's threads are expected to fail).
    pub fn failures_expected(&self) -> bool {
        self.expect_failures.load(Ordering::Relaxed)
    }
    /// Timely's communication threads are expected to fail from now on.
    pub fn expect_failures(&self) {
        self.expect_failures.store(true, Ordering::Relaxed);
        set_quiet_panics(true);
    }
}

static QUIET_TIMELY_PANICS: AtomicBool = AtomicBool::new(false);

fn set_quiet_panics(on: bool) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let timely_thread = std::thread::current().name().is_some_and(|n| n.starts_with("timely:"));
            let in_timely = info.location().is_some_and(|l| l.file().contains("timely"));
            if (timely_thread || in_timely) && QUIET_TIMELY_PANICS.load(Ordering::Relaxed) {
                return; // a peer was lost: the error names it; timely's threads unwinding are noise
            }
            previous(info)
        }));
    });
    QUIET_TIMELY_PANICS.store(on, Ordering::Relaxed);
}

/// After a run: show timely's panics again.
pub(crate) fn restore_panics() {
    if QUIET_TIMELY_PANICS.load(Ordering::Relaxed) {
        set_quiet_panics(false);
    }
}

/// A connection to one peer, watched by the monitor. Blocking calls wake
/// up regularly, so that a connection to a frozen peer can be given up.
pub(crate) struct Watched {
    stream: TcpStream,
    peer: usize,
    monitor: Arc<Monitor>,
}

impl Watched {
    /// Run a socket call, waking up to give the connection up once the run
    /// is over, and recording why it was lost.
    fn call<T>(&mut self, mut op: impl FnMut(&mut TcpStream) -> io::Result<T>) -> io::Result<T> {
        loop {
            match op(&mut self.stream) {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if self.monitor.giving_up() {
                        return Err(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.monitor.lost(self.peer, format!("connection error: {e}"));
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.call(|s| s.read(buf))?;
        if n == 0 && !buf.is_empty() {
            self.monitor.lost(self.peer, "it closed the connection".into());
        } else {
            self.monitor.heard(self.peer);
        }
        Ok(n)
    }
}

impl Write for Watched {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.call(|s| s.write(buf))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl timely::communication::allocator::zero_copy::stream::Stream for Watched {
    fn try_clone(&self) -> io::Result<Self> {
        Ok(Watched { stream: self.stream.try_clone()?, peer: self.peer, monitor: self.monitor.clone() })
    }
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.stream.set_nonblocking(nonblocking)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.stream.shutdown(how)
    }
}

fn resolve(process: usize, address: &str) -> Result<SocketAddr, String> {
    address
        .to_socket_addrs()
        .map_err(|e| format!("the address of process {process}, '{address}', cannot be resolved: {e}"))?
        .next()
        .ok_or_else(|| format!("the address of process {process}, '{address}', resolves to nothing"))
}

fn new_run_id(spec: &ClusterSpec<'_>) -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut h = crate::fnv1a(nanos.to_le_bytes().iter().copied());
    h ^= crate::fnv1a(std::process::id().to_le_bytes().iter().copied());
    h ^ spec.fingerprint.rotate_left(17)
}

/// Connect to every peer, check that all run the same job, agree on the run
/// id; then every connection is watched.
pub(crate) fn connect(spec: &ClusterSpec<'_>) -> Result<(Vec<Option<Watched>>, Arc<Monitor>), String> {
    let n = spec.addresses.len();
    let me = spec.process;
    let addrs: Vec<SocketAddr> =
        spec.addresses.iter().enumerate().map(|(i, a)| resolve(i, a)).collect::<Result<_, _>>()?;
    let deadline = Instant::now() + spec.connect_timeout;
    let mut hello = Hello {
        protocol: PROTOCOL,
        process: me as u32,
        processes: n as u32,
        threads: spec.threads as u32,
        fingerprint: spec.fingerprint,
        run_id: if me == 0 { new_run_id(spec) } else { 0 },
        job: spec.job.to_string(),
    };
    let listener = if me + 1 < n {
        let l = TcpListener::bind(addrs[me])
            .map_err(|e| format!("process {me} cannot listen on {} ({}): {e}", spec.addresses[me], addrs[me]))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        Some(l)
    } else {
        None
    };
    let timeout_msg = |what: String| {
        format!("{what} within {} s (start every process with the same host list)", spec.connect_timeout.as_secs())
    };
    let mut sockets: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    // Connect to every lower process, in order; the first is process 0,
    // whose run id every process adopts.
    for j in 0..me {
        let mut last_error = String::new();
        let mut stream = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timeout_msg(format!(
                    "process {j} ({}) did not accept a connection ({last_error})",
                    spec.addresses[j]
                )));
            }
            match TcpStream::connect_timeout(&addrs[j], left.min(Duration::from_secs(1))) {
                Ok(s) => break s,
                Err(e) => {
                    last_error = e.to_string();
                    std::thread::sleep(Duration::from_millis(100).min(left));
                }
            }
        };
        handshake_timeouts(&stream, deadline)?;
        hello.write(&mut stream).map_err(|e| format!("process {j} ({}): {e}", spec.addresses[j]))?;
        let theirs = Hello::read(&mut stream).map_err(|e| format!("process {j} ({}): {e}", spec.addresses[j]))?;
        if let Some(why) = hello.mismatch(&theirs, j) {
            return Err(format!("process {j} ({}) cannot run with this one: {why}", spec.addresses[j]));
        }
        if j == 0 {
            hello.run_id = theirs.run_id;
        }
        sockets[j] = Some(stream);
    }
    // Accept every higher process.
    if let Some(listener) = &listener {
        while let Some(missing) = (me + 1..n).find(|&j| sockets[j].is_none()) {
            match listener.accept() {
                Ok((mut stream, from)) => {
                    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
                    handshake_timeouts(&stream, deadline)?;
                    let theirs = Hello::read(&mut stream).map_err(|e| format!("a connection from {from}: {e}"))?;
                    hello.write(&mut stream).map_err(|e| format!("a connection from {from}: {e}"))?;
                    let j = theirs.process as usize;
                    if j <= me || j >= n || sockets[j].is_some() {
                        return Err(format!(
                            "a connection from {from} claims to be process {j}: the processes were given different host lists"
                        ));
                    }
                    if let Some(why) = hello.mismatch(&theirs, j) {
                        return Err(format!("process {j} ({}) cannot run with this one: {why}", spec.addresses[j]));
                    }
                    sockets[j] = Some(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(timeout_msg(format!(
                            "process {missing} ({}) did not connect",
                            spec.addresses[missing]
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("process {me} could not accept connections: {e}")),
            }
        }
    }
    let monitor = Arc::new(Monitor {
        start: Instant::now(),
        peers: spec
            .addresses
            .iter()
            .map(|a| Peer { address: a.clone(), heard: AtomicU64::new(0), lost: Mutex::new(None) })
            .collect(),
        this: me,
        give_up_at: AtomicU64::new(u64::MAX),
        expect_failures: AtomicBool::new(false),
        run_id: hello.run_id,
    });
    let watched = sockets
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.map(|stream| {
                stream.set_read_timeout(Some(POLL)).ok();
                stream.set_write_timeout(Some(POLL)).ok();
                stream.set_nodelay(true).ok();
                Watched { stream, peer: i, monitor: monitor.clone() }
            })
        })
        .collect();
    Ok((watched, monitor))
}

fn handshake_timeouts(stream: &TcpStream, deadline: Instant) -> Result<(), String> {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
    stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(left)).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello { protocol: PROTOCOL, process: 1, processes: 2, threads: 2, fingerprint: 7, run_id: 99, job: "q5".into() }
    }

    #[test]
    fn hello_round_trips() {
        let mut b = Vec::new();
        hello().write(&mut b).unwrap();
        assert_eq!(Hello::read(&mut &b[..]).unwrap(), hello());
    }

    #[test]
    fn mismatches_name_what_differs() {
        let mine = Hello { process: 0, ..hello() };
        assert_eq!(mine.mismatch(&hello(), 1), None);
        let other = Hello { threads: 3, ..hello() };
        assert!(mine.mismatch(&other, 1).unwrap().contains("3 workers per process"));
        let other = Hello { fingerprint: 8, job: "q0".into(), ..hello() };
        assert!(mine.mismatch(&other, 1).unwrap().contains("[q0]"));
        assert!(mine.mismatch(&hello(), 0).unwrap().contains("different host lists"));
        assert!(Hello::read(&mut &b"HTTP/1.1 200 OK\r\n\r\n........................................."[..])
            .unwrap_err()
            .contains("not a Weir process"));
    }
}
