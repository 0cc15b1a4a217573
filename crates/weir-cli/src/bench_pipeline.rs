//! `weir bench-pipeline`: a user's own batch pipeline beside the
//! single-threaded loop a Rust engineer would write by hand for the same
//! work, alternating, each run a separate process, in one sitting.
//!
//! The work: a JSON-lines access log (generated, deterministic), parsed
//! with serde into a struct; per (user, hour) the number of requests and
//! the sum of their bytes. Weir runs it as `read_json_lines` →
//! `map` → `combine_per_key((Count, on(bytes, Sum)))` on 1 and 2 workers;
//! the loop is `BufRead::lines` → `serde_json::from_str` → `HashMap`. Both
//! print a digest of their sorted result, which must agree.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use weir::prelude::*;

/// Arguments of `weir bench-pipeline`.
#[derive(Args, Clone, Debug)]
pub struct BenchPipelineArgs {
    /// The access log; generated (deterministically) if missing.
    #[arg(long, default_value = "data/access-2m.jsonl")]
    pub input: PathBuf,
    /// Lines of a generated log.
    #[arg(long, default_value_t = 2_000_000)]
    pub lines: u64,
    /// Worker counts to measure Weir with.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Repetitions of each run.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// The Markdown report.
    #[arg(long, default_value = "bench-pipeline.md")]
    pub report: PathBuf,
    /// Run once, in this process, and print `seconds digest` (used by the
    /// benchmark for each of its runs): `loop` or `weir`.
    #[arg(long, hide = true)]
    pub once: Option<String>,
}

/// One line of the access log.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Access {
    ts: i64,
    user: String,
    path: String,
    status: u16,
    bytes: u64,
}

const HOUR_MS: i64 = 3_600_000;

/// ((user, hour), (requests, bytes)).
type Row = ((String, i64), (u64, u64));

/// A log of `lines` requests over one day by 20,000 users (a few of them
/// busy), deterministic.
fn generate(path: &Path, lines: u64) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let name = path.file_name().context("--input names a file")?.to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let mut out = BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("{}", tmp.display()))?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        // xorshift64*: fast and deterministic.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let day_start: i64 = 1_700_000_000_000 - 1_700_000_000_000 % (24 * HOUR_MS);
    for i in 0..lines {
        let r = next();
        let user = if r % 10 == 0 { r % 50 } else { r % 20_000 };
        let ts = day_start + (i as i64 * 24 * HOUR_MS) / lines as i64;
        let status = [200, 200, 200, 200, 304, 404, 500][(r >> 20) as usize % 7];
        let access = Access {
            ts,
            user: format!("u{user}"),
            path: format!("/items/{}", (r >> 32) % 1000),
            status,
            bytes: (r >> 40) % 20_000,
        };
        serde_json::to_writer(&mut out, &access)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The result's digest: sha256 of the sorted `user,hour,count,bytes` lines.
fn digest(mut rows: Vec<Row>) -> String {
    rows.sort();
    let mut h = Sha256::new();
    for ((user, hour), (n, bytes)) in rows {
        h.update(format!("{user},{hour},{n},{bytes}\n"));
    }
    format!("{:x}", h.finalize())
}

/// The loop a user would write by hand: one thread, one pass.
fn hand_written(input: &Path) -> Result<Vec<Row>> {
    let file = std::fs::File::open(input)?;
    let mut per: HashMap<(String, i64), (u64, u64)> = HashMap::new();
    for line in std::io::BufReader::with_capacity(1 << 20, file).lines() {
        let line = line?;
        let a: Access = serde_json::from_str(&line)?;
        let e = per.entry((a.user, a.ts / HOUR_MS)).or_default();
        e.0 += 1;
        e.1 += a.bytes;
    }
    Ok(per.into_iter().collect())
}

/// The same work as a Weir pipeline on `workers` workers.
fn weir_pipeline(input: &Path, workers: usize) -> Result<Vec<Row>> {
    let p = Pipeline::new();
    let path = input.to_str().context("a UTF-8 path")?;
    let (log, dead) = weir::io::read_json_lines(&p, path, weir::io::JsonLines::new(|a: &Access| a.ts))?;
    let per = log
        .map(|a: Access| ((a.user, a.ts / HOUR_MS), a.bytes))
        .combine_per_key((Count, on(|b: &u64| *b, Sum::new())))
        .collect();
    let dead = dead.collect();
    let result = p.run_with(&TimelyRunner::threads(workers))?;
    if std::env::var_os("WEIR_BENCH_DEBUG").is_some() {
        eprintln!("{:#?} peak_in_flight {:?}", result.metrics, result.peak_in_flight);
    }
    if !dead.values().is_empty() {
        bail!("{} lines could not be read", dead.values().len());
    }
    Ok(per.values())
}

fn once(how: &str, input: &Path, workers: usize) -> Result<()> {
    let start = Instant::now();
    let rows = match how {
        "loop" => hand_written(input)?,
        "weir" => weir_pipeline(input, workers)?,
        other => bail!("--once {other}: say loop or weir"),
    };
    let secs = start.elapsed().as_secs_f64();
    println!("{secs} {}", digest(rows));
    Ok(())
}

/// One run in a child process: (seconds, digest).
fn child(how: &str, input: &Path, workers: usize) -> Result<(f64, String)> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    crate::verify::huge_pages_as_configured(&mut cmd);
    let out = cmd
        .args(["bench-pipeline", "--once", how, "--workers", &workers.to_string(), "--input"])
        .arg(input)
        .output()?;
    if !out.status.success() {
        bail!("the {how} run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    let (secs, digest) = text.trim().split_once(' ').context("a run's report")?;
    Ok((secs.parse()?, digest.to_string()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn main(a: BenchPipelineArgs) -> Result<()> {
    if let Some(how) = &a.once {
        return once(how, &a.input, a.workers.first().copied().unwrap_or(1));
    }
    if a.reps == 0 || a.workers.contains(&0) {
        bail!("--reps and every --workers count must be at least 1");
    }
    if a.input.exists() && !a.input.is_file() {
        bail!(
            "--input {}: not a regular file (a missing file is generated; nothing else is written over)",
            a.input.display()
        );
    }
    if !a.input.exists() {
        eprintln!("bench-pipeline: generating {} lines into {}", a.lines, a.input.display());
        generate(&a.input, a.lines)?;
    }
    let lines = std::io::BufReader::new(std::fs::File::open(&a.input)?).lines().count() as f64;
    if lines == 0.0 {
        bail!("{} has no lines to measure with", a.input.display());
    }
    // Alternate loop and Weir runs, so that the machine's drift falls on both.
    let mut loop_secs = Vec::new();
    let mut weir_secs: Vec<Vec<f64>> = vec![Vec::new(); a.workers.len()];
    let mut want = None;
    for rep in 0..a.reps {
        let (s, d) = child("loop", &a.input, 1)?;
        eprintln!("bench-pipeline: loop {:.0} lines/s (rep {}/{})", lines / s, rep + 1, a.reps);
        loop_secs.push(s);
        want.get_or_insert(d.clone());
        for (i, &w) in a.workers.iter().enumerate() {
            let (s, got) = child("weir", &a.input, w)?;
            eprintln!("bench-pipeline: weir x{w} {:.0} lines/s (rep {}/{})", lines / s, rep + 1, a.reps);
            if Some(&got) != want.as_ref() {
                bail!("Weir on {w} workers computed another result than the loop (digest {got})");
            }
            weir_secs[i].push(s);
        }
    }
    let loop_rate = lines / median(loop_secs);
    let mut report = String::new();
    writeln!(report, "Command: `weir bench-pipeline {}`", std::env::args().skip(2).collect::<Vec<_>>().join(" "))?;
    writeln!(
        report,
        "\n{lines} lines, {} repetitions, loop and Weir alternating, each run its own process.\n",
        a.reps
    )?;
    writeln!(report, "| program | median lines/s | ratio to the loop |\n|---|---:|---:|")?;
    writeln!(report, "| hand-written loop (1 thread) | {loop_rate:.0} | 1.00 |")?;
    for (i, &w) in a.workers.iter().enumerate() {
        let rate = lines / median(weir_secs[i].clone());
        writeln!(
            report,
            "| Weir, {w} worker{} | {rate:.0} | {:.2} |",
            if w == 1 { "" } else { "s" },
            rate / loop_rate
        )?;
    }
    std::fs::write(&a.report, &report)?;
    print!("{report}");
    Ok(())
}
