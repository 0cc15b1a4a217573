//! `weir cluster -n N -- nexmark …`: run and supervise an N-process
//! cluster on this machine. Every process is this `weir` with the given
//! command and `--processes N --process-index I --hosts FILE` (fresh ports
//! on 127.0.0.1 for each start). When one process fails, the others stop
//! on their own within the peer timeout (or are killed after a grace
//! period), and every process is started again; with `--checkpoint-dir`
//! they resume from the last checkpoint. On several machines a process
//! manager does the same: see the README.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

/// Arguments of `weir cluster`.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Processes of the cluster.
    #[arg(short = 'n', long, default_value_t = 2)]
    pub processes: usize,
    /// Times the whole cluster is started again after a failure.
    #[arg(long, default_value_t = 10)]
    pub restarts: usize,
    /// How long the other processes get to stop on their own after one
    /// failed, before they are killed.
    #[arg(long, default_value_t = 60)]
    pub grace_s: u64,
    /// The command each process runs (e.g. `nexmark --query q5 --events
    /// 1000000 --checkpoint-dir ckpt`), after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start(a: &ClusterArgs, hosts: &std::path::Path) -> Result<Vec<Child>> {
    let me = std::env::current_exe().context("finding the weir executable")?;
    (0..a.processes)
        .map(|i| {
            Command::new(&me)
                .args(&a.command)
                .args(["--processes", &a.processes.to_string(), "--process-index", &i.to_string(), "--hosts"])
                .arg(hosts)
                .spawn()
                .with_context(|| format!("starting process {i}"))
        })
        .collect()
}

/// Wait until every process ended, or one failed: then give the others
/// `grace` to stop and kill those that do not. Returns the first failure.
fn supervise(children: &mut [Child], grace: Duration) -> Result<Option<(usize, ExitStatus)>> {
    let mut status: Vec<Option<ExitStatus>> = vec![None; children.len()];
    let mut failed_at: Option<(Instant, usize)> = None;
    loop {
        for (i, c) in children.iter_mut().enumerate() {
            if status[i].is_none() {
                status[i] = c.try_wait()?;
                if let Some(s) = status[i] {
                    if !s.success() && failed_at.is_none() {
                        eprintln!("weir cluster: process {i} failed ({s})");
                        failed_at = Some((Instant::now(), i));
                    }
                }
            }
        }
        if status.iter().all(Option::is_some) {
            return Ok(failed_at.map(|(_, i)| (i, status[i].expect("ended"))));
        }
        if let Some((at, _)) = failed_at {
            if at.elapsed() > grace {
                for (i, c) in children.iter_mut().enumerate() {
                    if status[i].is_none() {
                        eprintln!("weir cluster: process {i} did not stop within {grace:?}: killing it");
                        let _ = c.kill();
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn main(a: ClusterArgs) -> Result<()> {
    if a.processes == 0 {
        bail!("-n must be at least 1");
    }
    if a.command.iter().any(|c| c == "--processes" || c == "--process-index" || c == "--hosts") {
        bail!("weir cluster sets --processes, --process-index and --hosts itself: leave them out of the command");
    }
    let dir = std::env::temp_dir().join(format!("weir-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let hosts = dir.join("hosts");
    for attempt in 0..=a.restarts {
        let ports = (0..a.processes).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
        std::fs::write(&hosts, ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>())?;
        let mut children = start(&a, &hosts)?;
        match supervise(&mut children, Duration::from_secs(a.grace_s))? {
            None => {
                let _ = std::fs::remove_dir_all(&dir);
                return Ok(());
            }
            Some((i, s)) if attempt < a.restarts => {
                eprintln!(
                    "weir cluster: process {i} failed ({s}); starting all {} processes again ({} of {} restarts)",
                    a.processes,
                    attempt + 1,
                    a.restarts
                );
            }
            Some((i, s)) => {
                let _ = std::fs::remove_dir_all(&dir);
                bail!("process {i} failed ({s}) after {} restarts: giving up", a.restarts);
            }
        }
    }
    unreachable!("the loop returns")
}
