//! `weir`: run NEXMark queries on Weir's runners, check them against the
//! reference results, and benchmark them.
//!
//! ```text
//! weir nexmark --query q5 --events 10000000            # built-in generator
//! weir nexmark --query q5 --input data/e1m.jsonl --workers 2 --out results/
//! weir verify --input data/e1m.jsonl                   # every reference query, 1 and 2 workers, 2 processes
//! weir bench --input data/e10m.jsonl --report bench.md # events/s, peak memory, ratio to the parse floor
//! ```

mod bench;
mod bench_pipeline;
mod checkpoints;
mod cluster;
mod kafka;
mod latency;
mod run;
mod verify;

use clap::{Parser, Subcommand};

/// Events are many small strings: mimalloc allocates and frees them faster
/// than the system allocator, from several worker threads at once.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the same in its v2 and v3 headers;
/// not named by `libmimalloc-sys`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory instead of giving it back to the OS 10 ms later
/// (mimalloc's default), unless `MIMALLOC_PURGE_DELAY` says otherwise. A
/// pipeline frees and allocates its batches all the time: giving the pages
/// back made the kernel zero them again on every reuse, about a fifth of
/// q5's time (BENCHMARKS.md, "Allocator"). Peak memory is unchanged; the
/// process keeps what it peaked at until it ends, as a JVM's heap does.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one option of the allocator linked into this
        // binary; any value is valid for it.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    }
}

/// No transparent huge pages for this process from now on, unless
/// `MIMALLOC_ALLOW_THP` is set. mimalloc asks the kernel for them
/// (`madvise`) on the memory it reserves, and where the kernel then
/// compacts memory to find them on the spot (`defrag` = `madvise`, the
/// default), page faults stall: measured with `farm-bench`, 8 runs in one
/// sitting, the users' pipeline (`weir bench-pipeline`, 1 worker) took
/// 2.46 s without them against 7.13 s with them (4.6 s of it in the
/// kernel zeroing and compacting), and q5 on 5 M events with 2 workers
/// 3.52 s against 4.29 s. mimalloc's own option is read when it starts,
/// before `main`, so the process asks the kernel directly, as mimalloc
/// does for that option.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a
        // flag of this process; a failure (an old kernel) changes nothing.
        unsafe {
            libc::prctl(
                libc::PR_SET_THP_DISABLE,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            );
        }
    }
}

#[derive(Parser)]
#[command(name = "weir", version, about = "Weir: Beam-model stream processing in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one NEXMark query and write its canonical result.
    Nexmark(run::NexmarkArgs),
    /// Run the reference queries and compare rows and sha256 with the
    /// results of Flink, Beam and Bytewax (shared/nexmark/README.md).
    Verify(verify::VerifyArgs),
    /// Benchmark queries: repetitions, 1 and 2 workers, a Markdown table.
    Bench(bench::BenchArgs),
    /// A user's own batch pipeline (count and bytes per user and hour of
    /// a JSON-lines log) beside a hand-written single-threaded loop.
    BenchPipeline(bench_pipeline::BenchPipelineArgs),
    /// How long after a window's end its pane comes out, with the
    /// generator live at a fixed rate (`weir latency --query q5 --rate 50000`).
    Latency(latency::LatencyArgs),
    /// What a checkpoint location holds: `list` or `inspect`.
    Checkpoints(checkpoints::CheckpointsArgs),
    /// Run and supervise an N-process cluster on this machine: every
    /// process is started again after a failure (`weir cluster -n 2 --
    /// nexmark --query q5 --events 1000000 --checkpoint-dir ckpt`).
    Cluster(cluster::ClusterArgs),
    /// Load a JSON-lines file into a Kafka topic, line i to partition i % N
    /// (`weir kafka-load data/e1m.jsonl kafka://127.0.0.1:9092/events --partitions 4`).
    KafkaLoad(kafka::LoadArgs),
}

fn main() {
    keep_freed_memory();
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Nexmark(a) => run::main(a),
        Command::Verify(a) => verify::main(a),
        Command::Bench(a) => bench::main(a),
        Command::BenchPipeline(a) => bench_pipeline::main(a),
        Command::Latency(a) => latency::main(a),
        Command::Checkpoints(a) => checkpoints::main(a),
        Command::Cluster(a) => cluster::main(a),
        Command::KafkaLoad(a) => kafka::load(a),
    };
    if let Err(e) = result {
        eprintln!("weir: error: {e:#}");
        // 3: the cluster failed (a process lost, unreachable or running a
        // different job); 2: bad arguments (clap); 1: anything else.
        let cluster = e.chain().any(|c| matches!(c.downcast_ref(), Some(weir::pipeline::PipelineError::Cluster(_))));
        std::process::exit(if cluster { 3 } else { 1 });
    }
}
