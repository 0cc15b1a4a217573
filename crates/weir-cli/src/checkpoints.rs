//! `weir checkpoints list|inspect DIR`: what a checkpoint location holds.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use weir::checkpoint::{CheckpointInfo, Checkpoints, LocalDir, NodeState};

/// Arguments of `weir checkpoints`.
#[derive(Args, Debug)]
pub struct CheckpointsArgs {
    #[command(subcommand)]
    pub command: What,
}

#[derive(Subcommand, Debug)]
pub enum What {
    /// Every checkpoint: epoch, complete or not (and why), when, size.
    List {
        /// The location (a `--checkpoint-dir` of `weir nexmark`, or its `checkpoints` folder).
        dir: PathBuf,
    },
    /// Ask the job running on the location to make its next checkpoint a
    /// savepoint (kept outside retention until removed by hand).
    Savepoint {
        /// The location.
        dir: PathBuf,
    },
    /// One checkpoint in detail: every worker's transforms, their state's size.
    Inspect {
        /// The location.
        dir: PathBuf,
        /// The epoch (default: the newest complete checkpoint).
        #[arg(long)]
        epoch: Option<u64>,
    },
}

fn open(dir: &std::path::Path) -> Result<Checkpoints> {
    if !dir.exists() {
        bail!("{} does not exist", dir.display());
    }
    // `weir nexmark --checkpoint-dir D` keeps its checkpoints in D/checkpoints.
    let root = if dir.join("checkpoints").is_dir() { dir.join("checkpoints") } else { dir.to_path_buf() };
    Ok(Checkpoints::new(Arc::new(LocalDir::new(root))))
}

fn when(ms: u64) -> String {
    let secs = ms / 1000;
    let (d, s) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = d as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC", s / 3600, s % 3600 / 60, s % 60, ms % 1000)
}

fn size(info: &CheckpointInfo) -> u64 {
    info.files.iter().map(|f| f.1).sum()
}

pub fn main(a: CheckpointsArgs) -> Result<()> {
    match a.command {
        What::List { dir } => {
            let c = open(&dir)?;
            match c.job()? {
                Some(job) => println!("job: {} ({:016x})", job.description, job.fingerprint),
                None => println!("job: none claimed this location"),
            }
            if let Some(done) = c.completed()? {
                println!("completed at epoch {} on {}", done.epoch, when(done.completed_unix_ms));
            }
            let infos = c.scan()?;
            if infos.is_empty() {
                println!("no checkpoints");
            }
            for info in infos {
                match (&info.manifest, &info.problem) {
                    (Some(m), _) => println!(
                        "epoch {:>6}  complete{}  {}  {} workers x {} processes  {} bytes",
                        info.epoch,
                        if m.savepoint { " (savepoint)" } else { "" },
                        when(m.created_unix_ms),
                        m.workers,
                        m.processes,
                        size(&info)
                    ),
                    (None, _) if info.retired => println!(
                        "epoch {:>6}  retired: state files kept for newer incremental checkpoints  {} bytes",
                        info.epoch,
                        size(&info)
                    ),
                    (None, problem) => println!(
                        "epoch {:>6}  NOT USABLE: {}  {} bytes",
                        info.epoch,
                        problem.as_deref().unwrap_or("no manifest"),
                        size(&info)
                    ),
                }
            }
        }
        What::Savepoint { dir } => {
            let c = open(&dir)?;
            if c.completed()?.is_some() {
                bail!("the job on {} has completed: there is nothing to take a savepoint of", dir.display());
            }
            c.request_savepoint()?;
            println!("asked for a savepoint: the job's next checkpoint will be one (see `weir checkpoints list`)");
        }
        What::Inspect { dir, epoch } => {
            let c = open(&dir)?;
            let infos = c.scan()?;
            let info = match epoch {
                Some(e) => infos.into_iter().find(|i| i.epoch == e),
                None => infos.into_iter().rev().find(|i| i.manifest.is_some()),
            };
            let Some(info) = info else {
                bail!("no such checkpoint in {} (see `weir checkpoints list`)", dir.display())
            };
            let Some(manifest) = &info.manifest else {
                bail!("checkpoint {} is not usable: {}", info.epoch, info.problem.unwrap_or_default())
            };
            println!(
                "checkpoint {} of \"{}\", committed {}, {} workers x {} processes, splits planned for {} workers, \
                 {} key groups",
                manifest.epoch,
                manifest.job.description,
                when(manifest.created_unix_ms),
                manifest.workers,
                manifest.processes,
                manifest.splits_for,
                manifest.key_groups
            );
            for state in c.read_states(manifest)? {
                let bytes = manifest.files[state.worker as usize].size;
                println!("worker {} ({bytes} bytes):", state.worker);
                for n in &state.nodes {
                    let what = match &n.state {
                        NodeState::Operator(b) if b.is_empty() => "stateless".to_string(),
                        NodeState::Operator(b) => format!("{} bytes of state", b.len()),
                        // Only ever written: read back, it is an Operator entry.
                        NodeState::Streamed(s) => format!("about {} bytes of state", s.size_hint()),
                        NodeState::Stored { whole, .. } => format!("{} bytes of state", whole.len()),
                        NodeState::Changes { since, changes } => {
                            format!("{} bytes of changes since checkpoint {since}", changes.len())
                        }
                        NodeState::Source(splits) => format!(
                            "source, {} splits ({} bytes of positions)",
                            splits.len(),
                            splits.iter().map(|s| s.1.len()).sum::<usize>()
                        ),
                    };
                    println!("  {:>3} {:<32} {what}{}", n.node, n.name, if n.finished { ", finished" } else { "" });
                }
            }
        }
    }
    Ok(())
}
