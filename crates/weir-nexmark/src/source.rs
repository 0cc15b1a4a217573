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

use std::sync::Arc;

use weir_io::stripes::LinePosition;
use weir_io::{DeadLetter, LineDecoder};
use weir_model::{Duration, Timestamp, WindowingStrategy};
use weir_pipeline::{PCollection, Pipeline};
use weir_runtime::split::{ReadResult, Split, SplitOutput, SplitReader, SplitSource, WatermarkPolicy};
use weir_runtime::{NodeKind, PipelineError, Source, SourceFactory, WorkerInfo};

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

/// NEXMark JSON events, one per line; events too far ahead of their split
/// go to the dead letters (see [`ReadOptions::max_skew`]). One decoder per
/// split: it tracks the latest event time of its split.
#[derive(Clone)]
struct EventLines {
    max_skew: Option<Duration>,
    max_seen: Timestamp,
}

impl LineDecoder for EventLines {
    type Item = Event;
    fn decode(
        &mut self,
        line: &[u8],
        at: LinePosition,
        file: &str,
        out: &mut SplitOutput<'_, Event>,
    ) -> Result<(), PipelineError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let max_seen = self.max_seen;
        let event = Event::from_json(line).map_err(|e| json_reason(&e)).and_then(|e| {
            let ts = Timestamp::from_millis(e.date_time());
            match self.max_skew {
                Some(skew) if max_seen > Timestamp::MIN && ts > max_seen + skew => Err(format!(
                    "dateTime {} is {} ms ahead of the latest event of its split ({}), more than the allowed skew \
                     of {} ms",
                    ts.millis(),
                    ts.since(max_seen).millis(),
                    max_seen.millis(),
                    skew.millis()
                )),
                _ => Ok((e, ts)),
            }
        });
        match event {
            Ok((e, ts)) => {
                self.max_seen = self.max_seen.max(ts);
                out.push(e, ts);
            }
            Err(reason) => out.dead_letter(DeadLetter {
                file: file.to_string(),
                line: String::from_utf8_lossy(line).into_owned(),
                reason: format!("{at}: {reason}"),
            }),
        }
        Ok(())
    }
}

/// One worker's share of the generated events: a split that knows its
/// watermark (its events come in time order).
struct GeneratedSplit {
    generator: Generator,
    index: usize,
    /// Read each event no earlier than its event time by the wall clock.
    live: bool,
}

/// The wall clock, epoch milliseconds.
fn unix_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Split for GeneratedSplit {
    type Item = Event;
    fn id(&self) -> String {
        format!("generator[{}]", self.index)
    }
    fn read(&mut self, max: usize, out: &mut SplitOutput<'_, Event>) -> Result<ReadResult, PipelineError> {
        let until = if self.live { unix_millis() } else { i64::MAX };
        let mut read = 0;
        self.generator.fill_until(max, until, |e| {
            let ts = Timestamp::from_millis(e.date_time());
            out.push(e, ts);
            read += 1;
        });
        Ok(match self.generator.next_timestamp() {
            None => ReadResult::Done,
            Some(_) if read == 0 => ReadResult::Idle,
            Some(_) => ReadResult::Data,
        })
    }
    /// Every later event of this split is at or after the next one.
    fn known_watermark(&self) -> Option<Timestamp> {
        Some(self.generator.next_timestamp().map_or(Timestamp::MAX, Timestamp::from_millis))
    }
    fn position(&self) -> Option<Vec<u8>> {
        Some(self.generator.position().to_le_bytes().to_vec())
    }
    fn seek(&mut self, position: &[u8]) -> Result<(), PipelineError> {
        let next = position.try_into().map(u64::from_le_bytes).map_err(|_| {
            PipelineError::Runner(format!("{}: a generator position is 8 bytes, not {}", self.id(), position.len()))
        })?;
        self.generator.seek(next);
        Ok(())
    }
}

/// The generator's splits: one per worker.
struct GeneratedSplits(GeneratorConfig);

impl SplitSource for GeneratedSplits {
    type Split = GeneratedSplit;
    fn splits(&self, workers: usize) -> Result<Vec<GeneratedSplit>, PipelineError> {
        Ok((0..workers.max(1))
            .map(|index| GeneratedSplit {
                generator: Generator::for_worker(&self.0, index, workers),
                index,
                live: self.0.live,
            })
            .collect())
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
    let idx = match input {
        Input::Files(path) => {
            let files = weir_io::resolve_inputs(path)?;
            let decoder = EventLines { max_skew: options.max_skew, max_seen: Timestamp::MIN };
            let policy = WatermarkPolicy::bounded_out_of_orderness(OUT_OF_ORDERNESS);
            weir_io::line_source(p, SOURCE_NAME, files, decoder, policy, true)
        }
        Input::Generated(config) => {
            config.validate()?;
            let splits = Arc::new(GeneratedSplits(config.clone()));
            let factory: SourceFactory = Arc::new(move |w: &WorkerInfo| {
                let reader = SplitReader::for_worker(&*splits, w, WatermarkPolicy::from_splits(), true)
                    .expect("generator splits");
                Box::new(reader) as Box<dyn Source>
            });
            p.add_node(SOURCE_NAME, vec![], 2, NodeKind::Source(factory))
        }
    };
    let s = Arc::new(WindowingStrategy::default());
    Ok((p.collection(idx, 0, s.clone()), p.collection(idx, 1, s)))
}
