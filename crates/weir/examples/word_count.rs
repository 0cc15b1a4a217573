//! Word count over text files (batch), on the embedded Timely runner.
//!
//! Run: `cargo run --release -p weir --example word_count -- [PATH] [--workers N] [--out DIR]`
//!
//! PATH is a file, a folder or a glob (default: this example's own source
//! files). Prints the ten most frequent words and the throughput; with
//! `--out`, writes every count to sharded files in DIR.

use std::time::Instant;

use weir::prelude::*;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut path = format!("{}/examples/*.rs", env!("CARGO_MANIFEST_DIR"));
    let mut workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut out = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--workers" => {
                workers = args
                    .next()
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("--workers needs a number"))?
            }
            "--out" => out = Some(args.next().ok_or_else(|| anyhow::anyhow!("--out needs a folder"))?),
            other if other.starts_with("--") => anyhow::bail!("unknown option {other}"),
            other => path = other.to_string(),
        }
    }

    let p = Pipeline::new();
    let lines = read_text(&p, &path)?;
    let counts = lines
        .flat_map(|line: String| {
            line.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .named("SplitWords")
        .map(|w| (w, ()))
        .count_per_key();
    if let Some(dir) = &out {
        counts.write_text(dir, "counts", |(w, n): &(String, u64)| format!("{w}\t{n}"));
    }
    let top = counts.map(|(w, n)| (n, w)).combine_globally(TopN::new(10)).collect();

    let start = Instant::now();
    let result = p.run_with(&TimelyRunner::threads(workers))?;
    let secs = start.elapsed().as_secs_f64();

    let read = result.counters("ReadText").map_or(0, |c| c.elements_out);
    let words = result.counters("SplitWords").map_or(0, |c| c.elements_out);
    println!("top words in {path}:");
    for (n, w) in top.values().into_iter().flatten() {
        println!("  {n:>8}  {w}");
    }
    println!(
        "{read} lines, {words} words in {secs:.3} s on {workers} worker(s): {:.0} lines/s, {:.0} words/s",
        read as f64 / secs,
        words as f64 / secs
    );
    if let Some(dir) = out {
        println!("counts written to {dir}/counts-*.txt");
    }
    Ok(())
}
