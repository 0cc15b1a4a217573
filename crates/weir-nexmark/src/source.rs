//! Where events come from: JSON-lines files (a file, a folder of shards or a
//! glob), or Weir's in-process [`Generator`](crate::Generator).
//!
//! Files are read in parallel by every worker (`weir_io::stripes`): one split
//! per shard, or blocks of a single file dealt to the workers, each split in
//! file order. A split's watermark is the largest event time it has read
//! minus [`OUT_OF_ORDERNESS`] (the reference runs' policy); the source's
//! watermark is the minimum over the splits not yet finished. Lines that are
//! not events go to the dead-letter output, with a count, and never stop the
//! job.

use std::path::PathBuf;
use std::sync::Arc;

use weir_io::stripes::{self, LineSplit};
use weir_io::DeadLetter;
use weir_model::{Duration, Timestamp, WindowingStrategy};
use weir_pipeline::graph::SourceFactory;
use weir_pipeline::{
    NodeCounters, NodeKind, OpContext, PCollection, Pipeline, Source, SourceStatus, WindowedValue, WorkerInfo,
};

use crate::generator::{Generator, GeneratorConfig};
use crate::model::Event;
use crate::NexmarkError;

/// How far behind the latest event time a split's watermark is (the
/// reference runs use 4 s).
pub const OUT_OF_ORDERNESS: Duration = Duration::from_millis(4_000);

/// Where a run's events come from.
#[derive(Clone, Debug)]
pub enum Input {
    /// JSON-lines files: a file, a folder (one split per file) or a glob.
    Files(String),
    /// The in-process generator: no files, no JSON.
    Generated(GeneratorConfig),
}

struct SplitProgress {
    split: LineSplit,
    max_seen: Timestamp,
    done: bool,
}

struct FileSource {
    splits: Vec<SplitProgress>,
    next: usize,
    watermark: Timestamp,
    max_skew: Option<Duration>,
}

/// How events are read from files.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// An event more than this far ahead of the latest event read from its
    /// split so far goes to the dead letters instead of moving the
    /// watermark: one far-future timestamp would otherwise make every later
    /// event of the split late (`None`: no limit).
    pub max_skew: Option<Duration>,
}

/// A serde_json error without its "line 1 column N" (the record is one
/// line; where the line is in the file is said separately).
fn json_reason(e: &NexmarkError) -> String {
    let text = e.to_string();
    match text.rfind(" at line 1 column ") {
        Some(i) => format!("{} (column {})", &text[..i], &text[i + " at line 1 column ".len()..]),
        None => text,
    }
}

impl Source for FileSource {
    fn poll(&mut self, max_records: usize, cx: &mut OpContext<'_>) -> SourceStatus {
        let live: Vec<usize> = (0..self.splits.len()).filter(|&i| !self.splits[i].done).collect();
        if let Some(&i) = live.get(self.next % live.len().max(1)) {
            self.next = self.next.wrapping_add(1);
            let s = &mut self.splits[i];
            let mut out = Vec::with_capacity(max_records);
            let mut dead = Vec::new();
            let max_seen = &mut s.max_seen;
            let max_skew = self.max_skew;
            let file = s.split.path().display().to_string();
            let more = s.split.read_lines(max_records, |line, at| {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return;
                }
                let event = Event::from_json(line).map_err(|e| json_reason(&e)).and_then(|e| {
                    let ts = Timestamp::from_millis(e.date_time());
                    match max_skew {
                        Some(skew) if *max_seen > Timestamp::MIN && ts > *max_seen + skew => Err(format!(
                            "dateTime {} is {} ms ahead of the latest event of its split ({}), more than the \
                             allowed skew of {} ms",
                            ts.millis(),
                            ts.since(*max_seen).millis(),
                            max_seen.millis(),
                            skew.millis()
                        )),
                        _ => Ok((e, ts)),
                    }
                });
                match event {
                    Ok((e, ts)) => {
                        *max_seen = (*max_seen).max(ts);
                        out.push(WindowedValue::in_global(e, ts));
                    }
                    Err(reason) => dead.push(WindowedValue::in_global(
                        DeadLetter {
                            file: file.clone(),
                            line: String::from_utf8_lossy(line).into_owned(),
                            reason: format!("{at}: {reason}"),
                        },
                        Timestamp::MIN,
                    )),
                }
            });
            match more {
                Ok(more) => s.done = !more,
                Err(e) => {
                    cx.fail_with(e.to_string());
                    s.done = true;
                }
            }
            NodeCounters::add(&cx.counters.elements_out, out.len() as u64);
            NodeCounters::add(&cx.counters.dead_letters, dead.len() as u64);
            cx.out.emit(0, out);
            cx.out.emit(1, dead);
        }
        let wm = self
            .splits
            .iter()
            .filter(|s| !s.done)
            .map(|s| if s.max_seen == Timestamp::MIN { Timestamp::MIN } else { s.max_seen - OUT_OF_ORDERNESS })
            .min()
            .unwrap_or(Timestamp::MAX);
        self.watermark = self.watermark.max(wm);
        SourceStatus { watermark: self.watermark, idle: false, processing_time: None }
    }
}

struct GeneratorSource {
    generator: Generator,
}

impl Source for GeneratorSource {
    fn poll(&mut self, max_records: usize, cx: &mut OpContext<'_>) -> SourceStatus {
        let mut out = Vec::with_capacity(max_records);
        self.generator.fill(max_records, |e| {
            let ts = Timestamp::from_millis(e.date_time());
            out.push(WindowedValue::in_global(e, ts));
        });
        NodeCounters::add(&cx.counters.elements_out, out.len() as u64);
        cx.out.emit(0, out);
        // The generator's events come in time order per worker: every later
        // event of this worker is at or after the next one.
        let watermark = self.generator.next_timestamp().map_or(Timestamp::MAX, Timestamp::from_millis);
        SourceStatus { watermark, idle: false, processing_time: None }
    }
}

/// The name of the source transform (its counters: events read, dead letters).
pub const SOURCE_NAME: &str = "ReadEvents";

/// Read NEXMark events: the events, and the lines that were not events.
///
/// ```
/// use weir_nexmark::{read_events, GeneratorConfig, Input};
/// use weir_pipeline::prelude::*;
/// let p = Pipeline::new();
/// let (events, _dead) = read_events(&p, &Input::Generated(GeneratorConfig::new(1000))).unwrap();
/// let n = events.map(|_| ((), 1u64)).combine_per_key(Sum::new()).values().collect();
/// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
/// assert_eq!(n.values(), vec![1000]);
/// ```
pub fn read_events(p: &Pipeline, input: &Input) -> Result<(PCollection<Event>, PCollection<DeadLetter>), NexmarkError> {
    read_events_with(p, input, &ReadOptions::default())
}

/// [`read_events`] with options for file input.
pub fn read_events_with(
    p: &Pipeline,
    input: &Input,
    options: &ReadOptions,
) -> Result<(PCollection<Event>, PCollection<DeadLetter>), NexmarkError> {
    let max_skew = options.max_skew;
    let factory: SourceFactory = match input {
        Input::Files(path) => {
            let files: Arc<Vec<PathBuf>> = Arc::new(weir_io::resolve_inputs(path)?);
            Arc::new(move |w: &WorkerInfo| {
                Box::new(FileSource {
                    splits: stripes::plan(&files, w)
                        .into_iter()
                        .map(|split| SplitProgress { split, max_seen: Timestamp::MIN, done: false })
                        .collect(),
                    next: 0,
                    watermark: Timestamp::MIN,
                    max_skew,
                }) as Box<dyn Source>
            })
        }
        Input::Generated(config) => {
            config.validate()?;
            let config = config.clone();
            Arc::new(move |w: &WorkerInfo| {
                Box::new(GeneratorSource { generator: Generator::for_worker(&config, w.index, w.peers) })
                    as Box<dyn Source>
            })
        }
    };
    let idx = p.add_node(SOURCE_NAME, vec![], 2, NodeKind::Source(factory));
    let s = Arc::new(WindowingStrategy::default());
    Ok((p.collection(idx, 0, s.clone()), p.collection(idx, 1, s)))
}
