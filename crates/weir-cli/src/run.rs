//! `weir nexmark`: one query, one run.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use weir::pipeline::{Metrics, Pipeline, Runner};
use weir::{ReferenceRunner, TimelyRunner};
use weir_nexmark::{read_events_with, CsvSinkExt, GeneratorConfig, Input, Query, ReadOptions, SOURCE_NAME};

/// Arguments of `weir nexmark`.
#[derive(Args, Clone, Debug)]
pub struct NexmarkArgs {
    /// The query: parse, q0, q1, q2, q3, q4, q5, q7, q8, q9, q11, q12, …, q22.
    #[arg(long, short)]
    pub query: Query,
    /// JSON-lines input: a file, or a folder of shards (one split per
    /// file); or a Kafka topic, kafka://HOST:PORT/TOPIC, read up to its end
    /// as of the start (one split per partition; `weir kafka-load` fills one).
    #[arg(long, conflicts_with = "events")]
    pub input: Option<String>,
    /// Use Weir's in-process generator for this many events instead of a file.
    #[arg(long)]
    pub events: Option<u64>,
    /// Event rate of the generator (events per second of event time).
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads per process (default: all cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Number of processes (with --process-index and --hosts).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// This process's index, 0-based.
    #[arg(long, default_value_t = 0)]
    pub process_index: usize,
    /// A file listing `host:port` of every process, one per line.
    #[arg(long)]
    pub hosts: Option<PathBuf>,
    /// Records in flight between operators (per process) above which
    /// sources pause: bounds memory (default: the Timely runner's).
    #[arg(long)]
    pub max_in_flight: Option<u64>,
    /// Watermark alignment: a source instance pauses while its watermark is
    /// more than this many milliseconds of event time ahead of the slowest
    /// one on its process (0: no alignment).
    #[arg(long, default_value_t = 10_000)]
    pub max_drift_ms: i64,
    /// An event more than this many milliseconds of event time ahead of the
    /// latest event of its split goes to the dead letters instead of moving
    /// the watermark (one far-future timestamp would make the rest of the
    /// split late); 0: no limit. File input only (not Kafka).
    #[arg(long, default_value_t = 3_600_000)]
    pub max_skew_ms: i64,
    /// Key groups of the pipeline: the most workers (over all processes)
    /// it can run on; keys are spread over them by a stable hash (default:
    /// 128, or more for more than 85 workers).
    #[arg(long)]
    pub max_key_groups: Option<u32>,
    /// On a cluster: how long to wait for every process to start and connect.
    #[arg(long, default_value_t = 60)]
    pub connect_timeout_s: u64,
    /// On a cluster: how long a process may send nothing before it is taken
    /// for lost and the job fails.
    #[arg(long, default_value_t = 30)]
    pub peer_timeout_s: u64,
    /// Run on the single-threaded reference runner instead of Timely.
    #[arg(long)]
    pub reference_runner: bool,
    /// Where `<query>.csv` and `<query>.summary.json` go.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Also send every result row to a Kafka topic, kafka://HOST:PORT/TOPIC
    /// (it must exist): the row's CSV line as the record's value and key,
    /// so a consumer can drop what a recovery sends again (at least once).
    #[arg(long)]
    pub output: Option<String>,
    /// Do not print the one-line summary.
    #[arg(long)]
    pub quiet: bool,
    /// Print every transform's counters (in, out, dropped, dead letters) to stderr at the end.
    #[arg(long)]
    pub metrics: bool,
    /// Checkpoint the run into this folder, and resume from its last
    /// complete checkpoint: the same command run again continues a killed
    /// run and ends with exactly the output of an uninterrupted one (rows
    /// are committed with each checkpoint). A completed run is not run
    /// again. The folder belongs to this job: another query, input or
    /// configuration is refused.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints: `500ms`, `1s`, `2m`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
    /// Complete checkpoints kept.
    #[arg(long, default_value_t = 3)]
    pub checkpoint_retain: usize,
    /// Take every checkpoint whole, not incremental (by default keyed
    /// operators store only the keys changed since their previous one).
    #[arg(long)]
    pub full_checkpoints: bool,
    /// If the checkpoint folder holds checkpoints but none is usable
    /// (corrupt), start from the beginning instead of refusing to run.
    #[arg(long)]
    pub start_over_if_unusable: bool,
    /// Keep keyed state (groupings, combines) in an on-disk LSM tree
    /// (fjall) under this folder instead of in memory, with at most
    /// `--resident-keys` keys per operator instance in memory: for state
    /// larger than memory. The folder is scratch space (emptied when the
    /// run ends); checkpoints go to `--checkpoint-dir` as usual.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// With `--state-dir`: keys per operator instance kept in memory.
    #[arg(long, default_value_t = 100_000)]
    pub resident_keys: usize,
}

/// `500ms`, `1s`, `1.5s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (like 500ms, 1s, 2m)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit '{other}' in '{s}': use ms, s, m or h")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("'{s}' must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Summary {
    pub query: Query,
    pub rows: u64,
    pub sha256: String,
    pub events: u64,
    pub dead_letters: u64,
    /// Elements dropped by the model as too late (expired or closed windows).
    pub dropped_late: u64,
    pub seconds: f64,
    pub finalize_seconds: f64,
    /// The most memory the process held while the pipeline ran (rows spill
    /// to disk, so this is the engine's memory).
    pub run_peak_rss_bytes: u64,
    /// The most memory the process held, including sorting the result.
    pub peak_rss_bytes: u64,
    pub workers: usize,
    pub processes: usize,
    pub runner: String,
    pub input: String,
}

impl Summary {
    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "query": self.query.name(),
            "rows": self.rows,
            "sha256": self.sha256,
            "events": self.events,
            "dead_letters": self.dead_letters,
            "dropped_late": self.dropped_late,
            "seconds": self.seconds,
            "events_per_second": self.events_per_second().round(),
            "finalize_seconds": self.finalize_seconds,
            "run_peak_rss_bytes": self.run_peak_rss_bytes,
            "peak_rss_bytes": self.peak_rss_bytes,
            "workers": self.workers,
            "processes": self.processes,
            "runner": self.runner,
            "input": self.input,
        })
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Summary> {
        let s = |k: &str| v[k].as_str().map(str::to_string).with_context(|| format!("summary field {k}"));
        let u = |k: &str| v[k].as_u64().with_context(|| format!("summary field {k}"));
        let f = |k: &str| v[k].as_f64().with_context(|| format!("summary field {k}"));
        Ok(Summary {
            query: s("query")?.parse().map_err(anyhow::Error::msg)?,
            rows: u("rows")?,
            sha256: s("sha256")?,
            events: u("events")?,
            dead_letters: u("dead_letters")?,
            dropped_late: u("dropped_late")?,
            seconds: f("seconds")?,
            finalize_seconds: f("finalize_seconds")?,
            run_peak_rss_bytes: u("run_peak_rss_bytes")?,
            peak_rss_bytes: u("peak_rss_bytes")?,
            workers: u("workers")? as usize,
            processes: u("processes")? as usize,
            runner: s("runner")?,
            input: s("input")?,
        })
    }

    pub fn line(&self) -> String {
        format!(
            "{}: {} rows, sha256 {}, {} events in {:.2} s = {:.0} events/s, peak memory {} MiB running, {} MiB with the sorted result ({} workers x {} processes, {}{}{})",
            self.query,
            self.rows,
            self.sha256,
            self.events,
            self.seconds,
            self.events_per_second(),
            self.run_peak_rss_bytes >> 20,
            self.peak_rss_bytes >> 20,
            self.workers,
            self.processes,
            self.runner,
            if self.dead_letters > 0 { format!(", {} dead letters", self.dead_letters) } else { String::new() },
            if self.dropped_late > 0 { format!(", {} dropped as late", self.dropped_late) } else { String::new() },
        )
    }
}

/// The most memory this process has held (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        })
        .map_or(0, |kb| kb * 1024)
}

/// The most worker threads `weir` runs per process.
pub const MAX_WORKERS: usize = 256;

fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A progress bar on stderr while the pipeline runs, if stderr is a terminal.
struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(metrics: Metrics, total: Option<u64>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        if !std::io::stderr().is_terminal() {
            // No bar; still warn while running when much is dropped as late.
            let thread = std::thread::spawn(move || {
                let mut warned = false;
                while !s.load(Ordering::Relaxed) {
                    // Woken at once by `finish`: a sleep kept every run up
                    // to half a second past its end.
                    std::thread::park_timeout(Duration::from_millis(500));
                    warned |= warn_if_late(&metrics, warned);
                }
            });
            return Progress { stop, thread: Some(thread) };
        }
        let thread = std::thread::spawn(move || {
            let mut warned = false;
            let style = match total {
                Some(_) => "{elapsed_precise} [{bar:30}] {human_pos}/{human_len} events, {msg}",
                None => "{elapsed_precise} {spinner} {human_pos} events, {msg}",
            };
            let bar = indicatif::ProgressBar::new(total.unwrap_or(0)).with_style(
                indicatif::ProgressStyle::with_template(style).expect("valid template").progress_chars("=> "),
            );
            let (mut last_n, mut last_t) = (0u64, Instant::now());
            while !s.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_millis(200));
                let n = metrics.get(SOURCE_NAME).map_or(0, |c| c.elements_out);
                let rate = (n - last_n) as f64 / last_t.elapsed().as_secs_f64().max(1e-3);
                (last_n, last_t) = (n, Instant::now());
                let wm = metrics
                    .watermarks()
                    .into_iter()
                    .filter(|w| w.transform == SOURCE_NAME)
                    .map(|w| w.output)
                    .min()
                    .filter(|w| *w > weir::model::Timestamp::MIN && *w < weir::model::Timestamp::MAX)
                    .map_or_else(|| "-".to_string(), |w| weir_nexmark::queries::date_time(w.millis()));
                bar.set_position(n);
                bar.set_message(format!("{:.2} M events/s, watermark {wm}", rate / 1e6));
                if !warned {
                    bar.suspend(|| warned = warn_if_late(&metrics, false));
                }
            }
            bar.finish_and_clear();
        });
        Progress { stop, thread: Some(thread) }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// While a run goes on: once more than 1 % of the events read (and at least
/// 1,000 elements) have been dropped as late, say so at once. Returns
/// whether it warned.
fn warn_if_late(metrics: &Metrics, warned: bool) -> bool {
    if warned {
        return true;
    }
    let events = metrics.get(SOURCE_NAME).map_or(0, |c| c.elements_out);
    let late: u64 = metrics.all().iter().map(|(_, c)| c.dropped_expired + c.dropped_closed).sum();
    if late >= 1000 && late * 100 > events {
        eprintln!(
            "weir: warning: {late} elements dropped as late so far ({events} events read): the watermark runs ahead \
             of the data (see --max-skew-ms)"
        );
        return true;
    }
    false
}

/// A result file, written under a temporary name and renamed when complete
/// (not fsynced: a run's results are reproduced by running it again; the
/// checkpointed, exactly-once output comes with the checkpoint work).
fn shard(path: &Path) -> weir::io::sink::ShardFile {
    weir::io::sink::ShardFile::new(path, path.with_extension("inprogress")).without_sync()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = shard(path);
    file.write_all(bytes)?;
    file.commit()?;
    Ok(())
}

/// Write lines to `path` (atomically: under a temporary name, then
/// renamed) and return their sha256.
fn write_lines(path: &Path, lines: &[&[u8]]) -> Result<String> {
    let mut file = shard(path);
    let mut hasher = Sha256::new();
    for l in lines {
        hasher.update(l);
        file.write_all(l)?;
    }
    file.commit()?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn flow_control(mut r: TimelyRunner, a: &NexmarkArgs) -> TimelyRunner {
    if let Some(dir) = &a.checkpoint_dir {
        let cfg = weir::CheckpointConfig::local(dir.join("checkpoints"), a.checkpoint_interval)
            .retain(a.checkpoint_retain)
            .start_over_if_unusable(a.start_over_if_unusable)
            .incremental(!a.full_checkpoints);
        r = r.with_checkpoints(cfg);
    }
    if let Some(n) = a.max_in_flight {
        r = r.with_max_in_flight(n);
    }
    if let Some(dir) = &a.state_dir {
        r = r.with_state_backend(weir::prelude::StateBackend::Lsm { dir: dir.clone(), resident_keys: a.resident_keys });
    }
    if a.max_drift_ms > 0 {
        r = r.with_max_watermark_drift(weir::model::Duration::from_millis(a.max_drift_ms));
    }
    r
}

fn validate(a: &NexmarkArgs) -> Result<()> {
    if a.input.is_none() && a.events.is_none() {
        bail!("say where the events come from: --input FILE_OR_FOLDER, or --events N for the built-in generator");
    }
    if let Some(output) = &a.output {
        if crate::kafka::parse_url(output)?.is_none() {
            bail!("--output {output}: only a Kafka topic, kafka://HOST:PORT/TOPIC (result files go to --out)");
        }
    }
    if a.checkpoint_dir.is_some() && a.reference_runner {
        bail!("--checkpoint-dir needs the Timely runner: drop --reference-runner");
    }
    if a.resident_keys == 0 {
        bail!("--resident-keys must be at least 1");
    }
    if a.state_dir.is_some() && a.reference_runner {
        bail!("--state-dir needs the Timely runner: drop --reference-runner");
    }
    if let Some(dir) = &a.state_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("--state-dir {}", dir.display()))?;
    }
    if a.checkpoint_retain == 0 {
        bail!("--checkpoint-retain must be at least 1");
    }
    if a.workers == Some(0) {
        bail!("--workers must be at least 1");
    }
    if let Some(w) = a.workers.filter(|&w| w > MAX_WORKERS) {
        bail!(
            "--workers {w} is more than {MAX_WORKERS}: every pair of workers of a process shares channels, so memory \
             grows with the square of the workers; use at most {MAX_WORKERS} (one per core is the default)"
        );
    }
    if a.max_skew_ms < 0 {
        bail!("--max-skew-ms must be 0 (no limit) or more");
    }
    if let Some(groups) = a.max_key_groups {
        let limit = weir::pipeline::runtime::keys::MAX_KEY_GROUPS_LIMIT;
        if groups == 0 || groups > limit {
            bail!("--max-key-groups must be between 1 and {limit}");
        }
        let total = a.workers.unwrap_or_else(default_workers) * a.processes.max(1);
        if total > groups as usize {
            bail!("{total} workers but only {groups} key groups: every worker needs one; raise --max-key-groups");
        }
    }
    if a.connect_timeout_s == 0 || a.peer_timeout_s == 0 {
        bail!("--connect-timeout-s and --peer-timeout-s must be at least 1");
    }
    if a.max_drift_ms < 0 {
        bail!("--max-drift-ms must be 0 (no alignment) or more");
    }
    if a.processes == 0 {
        bail!("--processes must be at least 1");
    }
    if a.processes > 1 {
        if a.hosts.is_none() {
            bail!("--processes {} needs --hosts FILE listing host:port of every process", a.processes);
        }
        if a.process_index >= a.processes {
            bail!("--process-index {} is out of range for --processes {}", a.process_index, a.processes);
        }
        if a.reference_runner {
            bail!("the reference runner is single-threaded and runs in one process: drop --processes or --reference-runner");
        }
    } else if a.process_index != 0 {
        bail!("--process-index needs --processes");
    }
    Ok(())
}

/// What every process of a cluster must agree on, besides the pipeline's
/// shape: the query's input and options.
fn job_description(a: &NexmarkArgs, input: &str) -> String {
    let size = a.input.as_ref().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len());
    format!(
        "weir nexmark --query {} input {input} ({size} bytes) rate {} seed {} max-drift-ms {} max-skew-ms {} \
         max-in-flight {:?} max-key-groups {:?}",
        a.query, a.rate, a.seed, a.max_drift_ms, a.max_skew_ms, a.max_in_flight, a.max_key_groups
    )
}

/// Run a query as `a` says; write its outputs and return the summary
/// (for a cluster, process 0's summary covers every process).
pub fn run(a: &NexmarkArgs) -> Result<Summary> {
    validate(a)?;
    let workers = if a.reference_runner { 1 } else { a.workers.unwrap_or_else(default_workers) };
    let (input, input_name, total) = match (&a.input, a.events) {
        (Some(path), _) => (Input::Files(path.clone()), path.clone(), None),
        (None, Some(n)) => {
            let config = GeneratorConfig { rate: a.rate, seed: a.seed, ..GeneratorConfig::new(n) };
            (Input::Generated(config), format!("generator:{n}"), Some(n))
        }
        (None, None) => unreachable!("validated"),
    };
    let runner: Box<dyn Runner> = if a.reference_runner {
        Box::new(ReferenceRunner::default())
    } else if a.processes > 1 {
        let hosts = a.hosts.as_ref().expect("validated");
        let r = TimelyRunner::cluster_from_hostfile(workers, a.process_index, hosts)?
            .with_connect_timeout(Duration::from_secs(a.connect_timeout_s))
            .with_peer_timeout(Duration::from_secs(a.peer_timeout_s))
            .with_job_description(job_description(a, &input_name));
        if let weir::Deployment::Cluster { addresses, .. } = &r.deployment {
            if addresses.len() != a.processes {
                bail!("{} lists {} processes, but --processes is {}", hosts.display(), addresses.len(), a.processes);
            }
        }
        Box::new(flow_control(r, a))
    } else {
        let r = TimelyRunner::threads(workers).with_job_description(job_description(a, &input_name));
        Box::new(flow_control(r, a))
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    refuse_reading_own_outputs(a)?;
    clear_previous_outputs(a)?;
    let started_at = unix_millis();

    let mut p = Pipeline::new();
    if let Some(groups) = a.max_key_groups {
        p = p.with_max_key_groups(groups);
    }
    let options =
        ReadOptions { max_skew: (a.max_skew_ms > 0).then(|| weir::model::Duration::from_millis(a.max_skew_ms)) };
    let kafka = a.input.as_deref().map(crate::kafka::parse_url).transpose()?.flatten();
    let (events, dead) = match &kafka {
        Some((brokers, topic)) => crate::kafka::read_events(&p, brokers, topic)?,
        None => read_events_with(&p, &input, &options)?,
    };
    // Rows spill to disk as they come, so the run's memory is the engine's.
    let parts = a.out.join(format!(".{}.rows-{}", a.query, a.process_index));
    if parts.exists() {
        std::fs::remove_dir_all(&parts).with_context(|| format!("removing {}", parts.display()))?;
    }
    // Checkpointed: rows and dead letters are committed with each
    // checkpoint into the checkpoint folder (shared by every process),
    // and the result is rebuilt from what was committed.
    let transactional = a.checkpoint_dir.as_ref().map(|d| d.join("output"));
    let (rows, dead_rows) = match &transactional {
        Some(out) => (
            weir_nexmark::CsvOutput::transactional(out.join(a.query.name())),
            weir_nexmark::CsvOutput::transactional(out.join("dead-letters")),
        ),
        None => (weir_nexmark::CsvOutput::spilling_to(&parts), weir_nexmark::CsvOutput::in_memory()),
    };
    match a.output.as_deref().map(crate::kafka::parse_url).transpose()?.flatten() {
        Some((brokers, topic)) => {
            let lines = a.query.build_lines(&events);
            weir::pipeline::ElementwiseExt::map(&lines, weir_nexmark::Raw).write_csv_into(&rows);
            weir_kafka::KafkaSinkExt::write_kafka(&lines, &brokers, &topic, |line: &String| {
                (Some(line.clone().into_bytes()), line.clone().into_bytes())
            });
        }
        None => a.query.build_into(&events, &rows),
    }
    weir::pipeline::ElementwiseExt::map(&dead, |d: weir::io::DeadLetter| {
        weir_nexmark::Raw(format!("{}: {}: {}", d.file, d.reason, d.line))
    })
    .write_csv_into(&dead_rows);
    // Every process's committed output is read by process 0.
    let read_here = transactional.is_none() || a.process_index == 0;

    let progress = Progress::start(p.metrics(), total);
    let started = Instant::now();
    let result = p.run_with(&*runner);
    let seconds = started.elapsed().as_secs_f64();
    progress.finish();
    let result = result?;
    let run_peak_rss_bytes = peak_rss_bytes();
    let finalize = Instant::now();
    if a.metrics {
        for (name, c) in result.metrics.all() {
            eprintln!(
                "{name}: in {}, out {}, dropped expired {}, dropped closed {}, dead letters {}",
                c.elements_in, c.elements_out, c.dropped_expired, c.dropped_closed, c.dead_letters
            );
        }
    }
    let source = result.counters(SOURCE_NAME).unwrap_or_default();
    let dead_letters = source.dead_letters;
    let run_id = result.run_id.map_or_else(|| format!("{started_at:x}"), |id| format!("{id:016x}"));
    // On a cluster each process leaves its parts (rows, dead letters,
    // figures) named after this run; process 0 gathers exactly those.
    let part = |i: usize, ext: &str| a.out.join(format!("{}.part-{i}-of-{}.{run_id}.{ext}", a.query, a.processes));
    let dead_buffers = if read_here { dead_rows.take_buffers()? } else { Vec::new() };
    let dead_letters =
        if transactional.is_some() { weir_nexmark::sorted_lines(&dead_buffers).len() as u64 } else { dead_letters };
    // Checkpointed, every process's rows and dead letters are committed
    // into the shared checkpoint folder, and process 0 reads them there:
    // no parts to exchange (a process restarted after the job completed
    // could not join this run's parts anyway). The figures of the summary
    // (events, seconds) are then process 0's own.
    let gather = a.processes > 1 && transactional.is_none();
    if gather && a.process_index != 0 {
        write_atomic(&part(a.process_index, "dead"), &dead_buffers.concat())?;
    } else if dead_letters > 0 || gather {
        let mut all = dead_buffers;
        for i in (1..a.processes).filter(|_| gather) {
            let path = part(i, "dead");
            wait_for(&path, i)?;
            all.push(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
            std::fs::remove_file(&path)?;
        }
        let lines = weir_nexmark::sorted_lines(&all);
        if !lines.is_empty() {
            let path = a.out.join(format!("{}.dead-letters.txt", a.query));
            write_lines(&path, &lines)?;
            eprintln!(
                "weir: {} input lines were not NEXMark events; they are listed in {}",
                lines.len(),
                path.display()
            );
        }
    }
    if dead_letters > 0 {
        let path = a.out.join(format!("{}.dead-letters.txt", a.query));
        if source.elements_out == 0 && a.processes == 1 {
            bail!(
                "none of the {dead_letters} lines of {input_name} is a NEXMark event (they are listed in {})",
                path.display()
            );
        }
    }
    let late: u64 = result.metrics.all().iter().map(|(_, c)| c.dropped_expired + c.dropped_closed).sum();
    if late * 100 > source.elements_out.max(1) {
        eprintln!(
            "weir: warning: {late} elements ({:.1} % of {} events) were dropped as late: the watermark ran ahead of \
             the data (out-of-order input; see --max-skew-ms)",
            late as f64 * 100.0 / source.elements_out.max(1) as f64,
            source.elements_out
        );
    }
    let runner_name = if a.reference_runner { "reference" } else { "timely" }.to_string();
    let mut summary = Summary {
        query: a.query,
        rows: 0,
        sha256: String::new(),
        events: source.elements_out,
        dead_letters,
        dropped_late: result.metrics.all().iter().map(|(_, c)| c.dropped_expired + c.dropped_closed).sum(),
        seconds,
        finalize_seconds: 0.0,
        run_peak_rss_bytes,
        peak_rss_bytes: 0,
        workers,
        processes: a.processes,
        runner: runner_name,
        input: input_name,
    };
    let mut buffers = if read_here {
        rows.take_buffers().with_context(|| format!("reading the rows back from {}", parts.display()))?
    } else {
        Vec::new()
    };
    let mut checkpoints = serde_json::Value::Null;
    if let Some(r) = result.recovery.as_ref() {
        if let Some(e) = r.resumed_from {
            eprintln!("weir: resumed from checkpoint {e}: the event count covers what this run read after it");
        }
        if !r.committed.is_empty() {
            let n = r.committed.len() as u64;
            let mean = r.committed.iter().map(|c| c.1).sum::<u64>() / n;
            let max = r.committed.iter().map(|c| c.1).max().unwrap_or(0);
            let bytes = r.committed.last().map_or(0, |c| c.2);
            if !a.quiet {
                eprintln!(
                    "weir: {n} checkpoints committed, {mean} ms on average from the end of an epoch to its commit ({max} ms at most), the last one {bytes} bytes"
                );
            }
            checkpoints = serde_json::json!({
                "committed": n, "mean_ms": mean, "max_ms": max, "last_bytes": bytes,
                "resumed_from": r.resumed_from,
            });
        }
    }
    let _ = std::fs::remove_dir(&parts);
    if a.processes > 1 && !gather && a.process_index != 0 {
        if !a.quiet {
            println!("{}: process {} committed its rows for process 0", a.query, a.process_index);
        }
        return Ok(summary);
    }
    if gather {
        if a.process_index != 0 {
            summary.peak_rss_bytes = peak_rss_bytes();
            write_atomic(&part(a.process_index, "csv"), &buffers.concat())?;
            write_atomic(&part(a.process_index, "json"), summary.to_json().to_string().as_bytes())?;
            if !a.quiet {
                println!("{}: process {} wrote its part for process 0", a.query, a.process_index);
            }
            return Ok(summary);
        }
        for i in 1..a.processes {
            let (csv, json) = (part(i, "csv"), part(i, "json"));
            wait_for(&json, i)?;
            let other = Summary::from_json(&serde_json::from_slice(&std::fs::read(&json)?)?)?;
            buffers.push(std::fs::read(&csv)?);
            summary.events += other.events;
            summary.dead_letters += other.dead_letters;
            summary.dropped_late += other.dropped_late;
            summary.seconds = summary.seconds.max(other.seconds);
            summary.peak_rss_bytes = summary.peak_rss_bytes.max(other.peak_rss_bytes);
            summary.run_peak_rss_bytes = summary.run_peak_rss_bytes.max(other.run_peak_rss_bytes);
            std::fs::remove_file(&csv)?;
            std::fs::remove_file(&json)?;
        }
    }
    let lines = weir_nexmark::sorted_lines(&buffers);
    summary.rows = lines.len() as u64;
    summary.sha256 = if a.query == Query::Parse {
        format!("{:x}", Sha256::digest([]))
    } else {
        write_lines(&a.out.join(format!("{}.csv", a.query)), &lines)?
    };
    drop(lines);
    drop(buffers);
    summary.finalize_seconds = finalize.elapsed().as_secs_f64();
    summary.peak_rss_bytes = summary.peak_rss_bytes.max(peak_rss_bytes());
    // Written last: a summary in the folder means the run completed.
    let mut json = summary.to_json();
    json["complete"] = serde_json::json!(true);
    json["run_id"] = serde_json::json!(run_id);
    json["started_at_unix_ms"] = serde_json::json!(started_at);
    json["finished_at_unix_ms"] = serde_json::json!(unix_millis());
    json["checkpoints"] = checkpoints;
    write_atomic(&a.out.join(format!("{}.summary.json", a.query)), serde_json::to_string_pretty(&json)?.as_bytes())?;
    Ok(summary)
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Wait for process `i`'s part at `path` (written when its run ended).
fn wait_for(path: &Path, i: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("process {i} left no result in {} within 300 s (all processes must share --out)", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `--input DIR --out DIR` (or an output folder inside the input folder)
/// would read the run's own outputs as events.
fn refuse_reading_own_outputs(a: &NexmarkArgs) -> Result<()> {
    let Some(input) = &a.input else { return Ok(()) };
    let (Ok(input), Ok(out)) = (std::fs::canonicalize(input), std::fs::canonicalize(&a.out)) else { return Ok(()) };
    if input.is_dir() && out.starts_with(&input) {
        bail!(
            "--out {} is inside --input {}: the run would read its own outputs; write them elsewhere",
            a.out.display(),
            input.display()
        );
    }
    Ok(())
}

/// Remove what an earlier run of this query left in `--out` (results,
/// summary, dead letters, half-written files, spill folders), so that
/// nothing stale looks like this run's output. On a cluster every process
/// removes its own leftovers, process 0 also the query's results.
fn clear_previous_outputs(a: &NexmarkArgs) -> Result<()> {
    let q = a.query.name();
    let mine = |name: &str| {
        let own_part = name.starts_with(&format!("{q}.part-{}-of-", a.process_index));
        let own_spill = name == format!(".{q}.rows-{}", a.process_index);
        // A checkpointed run replaces its results atomically at the end
        // (a completed one with the same bytes): they stay until then.
        let checkpointed = a.checkpoint_dir.is_some();
        let results = a.process_index == 0
            && ((!checkpointed && (name == format!("{q}.csv") || name == format!("{q}.summary.json")))
                || name == format!("{q}.dead-letters.txt")
                || name.starts_with(&format!("{q}.part-"))
                || (name.starts_with(&format!("{q}.")) && name.ends_with(".inprogress")));
        own_part || own_spill || results
    };
    for entry in std::fs::read_dir(&a.out).with_context(|| format!("reading {}", a.out.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if mine(&name) {
            let path = entry.path();
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.with_context(|| format!("removing the stale {}", path.display()))?;
        }
    }
    Ok(())
}

pub fn main(a: NexmarkArgs) -> Result<()> {
    let s = run(&a)?;
    if !a.quiet && (a.processes == 1 || a.process_index == 0) {
        println!("{}", s.line());
    }
    Ok(())
}
