//! Your own program on several processes (the README's "Your program on a
//! cluster" guide): every process runs this same binary with its index and
//! the same host file; together they count words, and process 0 gets the
//! whole result.
//!
//! On one machine, two processes:
//!
//! ```text
//! printf '127.0.0.1:7000\n127.0.0.1:7001\n' > hosts.txt
//! cargo run --release -p weir --example cluster_word_count -- 0 hosts.txt &
//! cargo run --release -p weir --example cluster_word_count -- 1 hosts.txt
//! ```

use std::path::Path;

use weir::prelude::*;

/// The job: word counts over lines that every process creates the same
/// way (a real job reads files or topics, whose splits are spread over the
/// processes).
pub fn build(p: &Pipeline) -> Collected<(String, u64)> {
    let lines = (0..1000).map(|i| format!("the quick fox {} jumps over the lazy dog {}", i % 7, i % 3));
    p.create(lines.collect::<Vec<_>>())
        .flat_map(|line: String| line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .combine_per_key(Sum::new())
        .collect()
}

/// Run process `index` of the cluster listed in `hosts` (one `host:port`
/// per line, in process order, the same file on every machine) with
/// `threads` workers. Every process returns when the whole job is done;
/// process 0 returns the counts, the others an empty list.
pub fn run_process(index: usize, hosts: &Path, threads: usize) -> Result<Vec<(String, u64)>, PipelineError> {
    let p = Pipeline::new();
    let counts = build(&p);
    let runner = TimelyRunner::cluster_from_hostfile(threads, index, hosts)?
        // What the processes must agree on besides the pipeline's shape:
        // a process started with other settings is refused at start.
        .with_job_description("word count v1");
    let result = p.run_with(&runner)?;
    // The counters are this process's: its workers' share of the work.
    let words = result.counters("CombinePerKey").map_or(0, |c| c.elements_in);
    eprintln!("process {index}: {words} words counted here");
    let mut counts = counts.values();
    counts.sort();
    Ok(counts)
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(index), Some(hosts)) = (args.get(1).and_then(|i| i.parse().ok()), args.get(2)) else {
        eprintln!("usage: cluster_word_count <process index> <host file>");
        std::process::exit(2);
    };
    match run_process(index, Path::new(hosts), 1) {
        Ok(counts) => {
            for (word, n) in counts {
                println!("{word} {n}");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
