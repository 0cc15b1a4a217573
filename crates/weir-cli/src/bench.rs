//! `weir bench`: every query, 1 and 2 workers, several repetitions, each in
//! its own process; a Markdown table of median and min events/s, peak
//! memory, and each query's ratio to the `parse` floor of the same run.

use std::fmt::Write as _;
use std::path::PathBuf;

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use weir_nexmark::Query;

use crate::run::Summary;
use crate::verify::run_child_of;

/// Arguments of `weir bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// JSON-lines input (file or folder of shards).
    #[arg(long, conflicts_with = "events")]
    pub input: Option<String>,
    /// Use the built-in generator for this many events instead.
    #[arg(long)]
    pub events: Option<u64>,
    /// Queries (default: parse and every deterministic query).
    #[arg(long, value_delimiter = ',')]
    pub queries: Option<Vec<Query>>,
    /// Worker counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Repetitions of each run.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// The Markdown report.
    #[arg(long, default_value = "bench-report.md")]
    pub report: PathBuf,
    /// Where the runs write their results.
    #[arg(long, default_value = "results/bench")]
    pub out: PathBuf,
    /// Another `weir` executable (a baseline build) to measure in the same
    /// sitting: each repetition runs both, in alternating order, and the
    /// report gives both medians and their ratio. Their results must agree.
    #[arg(long, conflicts_with = "flink")]
    pub baseline: Option<PathBuf>,
    /// A Python with PyFlink (`shared/nexmark/peers/README.md`): each
    /// repetition of a query Flink runs also runs it on Flink, right after
    /// Weir, at parallelism = workers, on the same `--input` file; the
    /// report gives Flink's median and Weir's ratio to it. Results must
    /// agree (rows and sha256).
    #[arg(long)]
    pub flink: Option<PathBuf>,
    /// Flink's runner script.
    #[arg(long, default_value = "../shared/nexmark/peers/flink/run.py")]
    pub flink_runner: PathBuf,
}

/// The queries `peers/flink/run.py` runs.
const FLINK_QUERIES: [&str; 9] = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11"];

/// One Flink run of `q` on `input`: its events/s (input events over the
/// job's own runtime, JVM start and submission excluded), rows and sha256.
fn run_flink(a: &BenchArgs, python: &Path, q: Query, input: &str, parallelism: usize) -> Result<(f64, u64, String)> {
    let out = a.out.join(format!("flink-p{parallelism}"));
    std::fs::create_dir_all(&out)?;
    let summary_file = out.join(format!("{}.summary.json", q.name()));
    // A run that ends without writing its summary must not report the last one's.
    let _ = std::fs::remove_file(&summary_file);
    let mut cmd = std::process::Command::new(python);
    crate::verify::huge_pages_as_configured(&mut cmd);
    let status = cmd
        .arg(&a.flink_runner)
        .args(["--query", q.name(), "--input", input, "--parallelism", &parallelism.to_string(), "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("starting {} {}", python.display(), a.flink_runner.display()))?;
    if !status.success() {
        bail!("Flink failed on {q} ({status})");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_file).context("Flink wrote no summary")?)?;
    let rate = summary["events_per_s"].as_f64().context("Flink's summary has no events_per_s")?;
    let rows = summary["rows"].as_u64().context("Flink's summary has no rows")?;
    let sha = summary["sha256"].as_str().context("Flink's summary has no sha256")?.to_string();
    Ok((rate, rows, sha))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn main(a: BenchArgs) -> Result<()> {
    let input_args = match (&a.input, a.events) {
        (Some(i), _) => vec!["--input".to_string(), i.clone()],
        (None, Some(n)) => vec!["--events".to_string(), n.to_string()],
        (None, None) => bail!("say what to measure: --input FILE_OR_FOLDER or --events N"),
    };
    if a.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let this = std::env::current_exe()?;
    if let Some(b) = &a.baseline {
        if !b.is_file() {
            bail!("--baseline {}: no such executable", b.display());
        }
    }
    if a.flink.is_some() && a.input.is_none() {
        bail!("--flink needs --input FILE: Flink reads the same JSON-lines file as Weir");
    }
    if a.flink.is_some() && !a.flink_runner.is_file() {
        bail!("--flink-runner {}: no such file (Flink's runner from shared/nexmark/peers)", a.flink_runner.display());
    }
    let mut queries = a
        .queries
        .clone()
        .unwrap_or_else(|| Query::ALL.into_iter().filter(|q| q.is_deterministic()).collect::<Vec<_>>());
    queries.retain(|q| *q != Query::Parse);
    queries.insert(0, Query::Parse);
    let mut report = String::new();
    writeln!(report, "Command: `weir bench {}`", std::env::args().skip(2).collect::<Vec<_>>().join(" "))?;
    writeln!(
        report,
        "\nMachine: {} cores. {} repetitions per cell, each run a separate process.\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        a.reps
    )?;
    if let Some(b) = &a.baseline {
        writeln!(report, "Baseline: `{}`, run alternately with this build in the same sitting.\n", b.display())?;
        writeln!(
            report,
            "| query | workers | median events/s | baseline median events/s | this / baseline | min events/s | peak RSS running (MiB) | rows |"
        )?;
    } else if a.flink.is_some() {
        writeln!(report, "Flink: each query run right after Weir, at parallelism = workers, on the same file.\n")?;
        writeln!(
            report,
            "| query | workers | median events/s | min events/s | peak RSS running (MiB) | ratio to parse (median) | Flink median events/s | Weir / Flink | rows |"
        )?;
    } else {
        writeln!(
            report,
            "| query | workers | median events/s | min events/s | peak RSS running (MiB) | peak RSS with sorted result (MiB) | ratio to parse (median) | rows |"
        )?;
    }
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|{}", if a.flink.is_some() { "---:|" } else { "" })?;
    for &w in &a.workers {
        let mut parse_median = 0.0;
        for &q in &queries {
            let mut rates = Vec::new();
            let mut base_rates = Vec::new();
            let mut flink_rates = Vec::new();
            let mut rss = 0;
            let mut run_rss = 0;
            let mut rows = 0;
            let out = a.out.join(format!("w{w}"));
            for rep in 0..a.reps {
                let one = |exe: &std::path::Path| run_child_of(exe, q, &input_args, w, 1, &out);
                // Alternate which build runs first, so that drift within a
                // pair does not favour one of them.
                let (s, base): (Summary, Option<Summary>) = match &a.baseline {
                    None => (one(&this)?, None),
                    Some(b) if rep % 2 == 0 => {
                        let s = one(&this)?;
                        (s, Some(one(b)?))
                    }
                    Some(b) => {
                        let base = one(b)?;
                        (one(&this)?, Some(base))
                    }
                };
                eprintln!("bench: {} (rep {}/{})", s.line(), rep + 1, a.reps);
                if let Some(base) = base {
                    eprintln!("bench: baseline: {} (rep {}/{})", base.line(), rep + 1, a.reps);
                    if (base.rows, &base.sha256) != (s.rows, &s.sha256) {
                        bail!("{q}: the baseline's result differs ({} rows, sha256 {})", base.rows, base.sha256);
                    }
                    base_rates.push(base.events_per_second());
                }
                if let (Some(python), Some(input)) = (&a.flink, &a.input) {
                    if FLINK_QUERIES.contains(&q.name()) {
                        let (rate, rows, sha) = run_flink(&a, python, q, input, w)?;
                        eprintln!("bench: flink {q} p{w}: {rate:.0} events/s (rep {}/{})", rep + 1, a.reps);
                        if (rows, &sha) != (s.rows, &s.sha256) {
                            bail!("{q}: Flink's result differs from Weir's ({rows} rows, sha256 {sha})");
                        }
                        flink_rates.push(rate);
                    }
                }
                rates.push(s.events_per_second());
                rss = rss.max(s.peak_rss_bytes);
                run_rss = run_rss.max(s.run_peak_rss_bytes);
                rows = s.rows;
            }
            let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let med = median(&mut rates);
            if !base_rates.is_empty() {
                let base = median(&mut base_rates);
                writeln!(
                    report,
                    "| {q} | {w} | {} | {} | {:.2} | {} | {} | {rows} |",
                    thousands(med),
                    thousands(base),
                    med / base,
                    thousands(min),
                    run_rss >> 20
                )?;
                continue;
            }
            if q == Query::Parse {
                parse_median = med;
            }
            let ratio = if parse_median > 0.0 { med / parse_median } else { 0.0 };
            if a.flink.is_some() {
                let (flink, vs) = match flink_rates.is_empty() {
                    true => ("–".to_string(), "–".to_string()),
                    false => {
                        let f = median(&mut flink_rates);
                        (thousands(f), format!("{:.1}", med / f))
                    }
                };
                writeln!(
                    report,
                    "| {q} | {w} | {} | {} | {} | {ratio:.2} | {flink} | {vs} | {rows} |",
                    thousands(med),
                    thousands(min),
                    run_rss >> 20
                )?;
                continue;
            }
            writeln!(
                report,
                "| {q} | {w} | {} | {} | {} | {} | {:.2} | {rows} |",
                thousands(med),
                thousands(min),
                run_rss >> 20,
                rss >> 20,
                ratio
            )?;
        }
    }
    std::fs::write(&a.report, &report)?;
    print!("{report}");
    eprintln!("bench: report written to {}", a.report.display());
    Ok(())
}
