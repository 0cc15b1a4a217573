//! `weir verify`: run the reference queries as separate `weir nexmark`
//! processes (threads and a two-process cluster on 127.0.0.1) and compare
//! rows and sha256 with the reference table of `shared/nexmark/README.md`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;
use weir_nexmark::Query;

use crate::run::Summary;

/// Arguments of `weir verify`.
#[derive(Args, Clone, Debug)]
pub struct VerifyArgs {
    /// `e1m.jsonl`, or a folder of its shards; repeat to check several.
    #[arg(long, required = true)]
    pub input: Vec<String>,
    /// Worker threads to check with, in one process.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Also check on this many processes (1 worker each) on 127.0.0.1; 0 to skip.
    #[arg(long, default_value_t = 2)]
    pub processes: usize,
    /// Queries to check (default: every query with a reference result).
    #[arg(long, value_delimiter = ',')]
    pub queries: Option<Vec<Query>>,
    /// The shared folder holding nexmark/README.md (default: $WEIR_SHARED,
    /// else the nearest `shared/` in this folder or above).
    #[arg(long)]
    pub shared: Option<PathBuf>,
    /// Where the runs write their results.
    #[arg(long, default_value = "results/verify")]
    pub out: PathBuf,
}

/// The reference table: query name → (rows, sha256).
pub fn reference_table(shared: &Path) -> Result<BTreeMap<String, (u64, String)>> {
    let path = shared.join("nexmark/README.md");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut table = BTreeMap::new();
    let section = text.split("## Reference results").nth(1).context("no reference-results section")?;
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let [_, q, rows, sha, ..] = cells.as_slice() {
            if let Ok(rows) = rows.parse::<u64>() {
                if q.starts_with('q') && sha.len() == 64 {
                    table.insert(q.to_string(), (rows, sha.to_string()));
                }
            }
        }
    }
    if table.is_empty() {
        bail!("no reference rows found in {}", path.display());
    }
    Ok(table)
}

/// The shared folder: `--shared`, `$WEIR_SHARED`, or the first `shared/`
/// holding `nexmark/` in the current folder or one of its ancestors.
pub fn shared_dir(given: Option<&Path>) -> PathBuf {
    if let Some(dir) = given.map(Path::to_path_buf).or_else(|| std::env::var_os("WEIR_SHARED").map(PathBuf::from)) {
        return dir;
    }
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    here.ancestors()
        .map(|d| d.join("shared"))
        .find(|d| d.join("nexmark").is_dir())
        .unwrap_or_else(|| PathBuf::from("../shared"))
}

fn summary_of(out: &Path, q: Query) -> Result<Summary> {
    let path = out.join(format!("{q}.summary.json"));
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Summary::from_json(&serde_json::from_slice(&bytes)?)
}

/// Free ports on 127.0.0.1 for a local cluster.
pub fn local_hosts(n: usize, dir: &Path) -> Result<PathBuf> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    let lines: Vec<String> =
        listeners.iter().map(|l| l.local_addr().map(|a| a.to_string())).collect::<Result<_, _>>()?;
    drop(listeners);
    std::fs::create_dir_all(dir)?;
    let path = dir.join("hosts.txt");
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(path)
}

/// Run `weir nexmark` as child processes: one, or a cluster of `processes`.
pub fn run_child(q: Query, input_args: &[String], workers: usize, processes: usize, out: &Path) -> Result<Summary> {
    run_child_of(&std::env::current_exe()?, q, input_args, workers, processes, out)
}

/// [`run_child`] with another `weir` executable (a baseline build).
/// Let a child process use transparent huge pages as the system says:
/// `weir` turns them off for itself (main.rs), and the kernel's flag would
/// otherwise pass to every child — a baseline build or Flink's JVM would
/// then be measured under this build's setting, not its own.
pub fn huge_pages_as_configured(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec and
        // makes one system call (async-signal-safe), allocating nothing.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(
                    libc::PR_SET_THP_DISABLE,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                );
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

pub fn run_child_of(
    exe: &Path,
    q: Query,
    input_args: &[String],
    workers: usize,
    processes: usize,
    out: &Path,
) -> Result<Summary> {
    std::fs::create_dir_all(out)?;
    // The children report through their summary files; their standard
    // output carries only Timely's connection messages.
    let base = |cmd: &mut Command| {
        cmd.arg("nexmark").arg("--query").arg(q.name()).args(input_args).arg("--out").arg(out).arg("--quiet");
        cmd.stdout(std::process::Stdio::null());
    };
    if processes <= 1 {
        let mut cmd = Command::new(exe);
        huge_pages_as_configured(&mut cmd);
        base(&mut cmd);
        cmd.arg("--workers").arg(workers.to_string());
        let status = cmd.status()?;
        if !status.success() {
            bail!("weir nexmark --query {q} failed ({status})");
        }
    } else {
        let hosts = local_hosts(processes, out)?;
        let children: Vec<std::process::Child> = (0..processes)
            .map(|i| {
                let mut cmd = Command::new(exe);
                huge_pages_as_configured(&mut cmd);
                base(&mut cmd);
                cmd.arg("--workers").arg(workers.to_string());
                cmd.arg("--processes").arg(processes.to_string()).arg("--process-index").arg(i.to_string());
                cmd.arg("--hosts").arg(&hosts);
                cmd.spawn()
            })
            .collect::<Result<_, _>>()?;
        for (i, mut c) in children.into_iter().enumerate() {
            let status = c.wait()?;
            if !status.success() {
                bail!("process {i} of weir nexmark --query {q} failed ({status})");
            }
        }
    }
    summary_of(out, q)
}

pub fn main(a: VerifyArgs) -> Result<()> {
    let table = reference_table(&shared_dir(a.shared.as_deref()))?;
    let queries = a.queries.clone().unwrap_or_else(|| Query::REFERENCE.to_vec());
    let mut configs: Vec<(usize, usize)> = a.workers.iter().map(|&w| (w, 1)).collect();
    if a.processes > 1 {
        configs.push((1, a.processes));
    }
    let mut failures = 0;
    let mut checks = 0;
    for input in &a.input {
        for &(workers, processes) in &configs {
            for &q in &queries {
                let Some((rows, sha)) = table.get(q.name()) else {
                    bail!("{q} has no reference result");
                };
                let out = a.out.join(format!("w{workers}-p{processes}"));
                let s = run_child(q, &["--input".to_string(), input.clone()], workers, processes, &out)?;
                checks += 1;
                let ok = s.rows == *rows && s.sha256 == *sha;
                if !ok {
                    failures += 1;
                }
                println!(
                    "{} {q:>4} {input} {workers} worker(s) x {processes} process(es): {} rows, sha256 {}{}",
                    if ok { "ok  " } else { "FAIL" },
                    s.rows,
                    s.sha256,
                    if ok { String::new() } else { format!(" (expected {rows} rows, {sha})") }
                );
            }
        }
    }
    println!("{} passed, {} failed", checks - failures, failures);
    if failures > 0 {
        bail!("{failures} of {checks} runs differ from the reference");
    }
    Ok(())
}
