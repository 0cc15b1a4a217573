//! `weir bench`: every query, 1 and 2 workers, several repetitions, each in
//! its own process; a Markdown table of median and min events/s, peak
//! memory, and each query's ratio to the `parse` floor of the same run.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use weir_nexmark::Query;

use crate::run::Summary;
use crate::verify::run_child;

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
    writeln!(
        report,
        "| query | workers | median events/s | min events/s | peak RSS running (MiB) | peak RSS with sorted result (MiB) | ratio to parse (median) | rows |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for &w in &a.workers {
        let mut parse_median = 0.0;
        for &q in &queries {
            let mut rates = Vec::new();
            let mut rss = 0;
            let mut run_rss = 0;
            let mut rows = 0;
            for rep in 0..a.reps {
                let s: Summary = run_child(q, &input_args, w, 1, &a.out.join(format!("w{w}")))?;
                eprintln!("bench: {} (rep {}/{})", s.line(), rep + 1, a.reps);
                rates.push(s.events_per_second());
                rss = rss.max(s.peak_rss_bytes);
                run_rss = run_rss.max(s.run_peak_rss_bytes);
                rows = s.rows;
            }
            let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let med = median(&mut rates);
            if q == Query::Parse {
                parse_median = med;
            }
            let ratio = if parse_median > 0.0 { med / parse_median } else { 0.0 };
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
