//! Your own source: a feed of sensor readings in several partitions (here
//! generated in memory; in your code, a socket, a queue or an API), read
//! as an `UnboundedSource` with one split per partition. Each split is read
//! in order and has its own event-time watermark (bounded out-of-orderness,
//! idle after a second without data), and a position, so that a
//! checkpointed job resumes where it stopped. Lines that cannot be parsed
//! go to the dead letters, with a count.
//!
//! The pipeline: the hottest reading per sensor per minute of event time.
//!
//! Run: `cargo run --release -p weir --example custom_source`

use weir::prelude::*;

/// A feed of `lines` readings per partition, one every 700 ms of event
/// time per partition, some out of order, every 97th malformed.
pub struct SensorFeed {
    pub partitions: usize,
    pub lines: u64,
}

/// Where a split is: its partition and the next line.
pub struct Cursor {
    partition: usize,
    next: u64,
}

impl SensorFeed {
    /// Line `i` of `partition`: "sensor,celsius,event time in ms".
    fn line(&self, partition: usize, i: u64) -> String {
        if i % 97 == 96 {
            return format!("garbage#{partition}-{i}");
        }
        // Every 5th reading comes 2 s late.
        let at = i * 700 - if i % 5 == 4 { 2_000 } else { 0 };
        let sensor = format!("s{}", (partition as u64 * 7 + i) % 4);
        format!("{sensor},{:.1},{at}", 18.0 + ((i * 37 + partition as u64) % 120) as f64 / 10.0)
    }
}

/// The parsed reading: sensor, tenths of a degree, event time.
fn parse(line: &str) -> Option<(String, i64, i64)> {
    let mut parts = line.split(',');
    let sensor = parts.next()?.to_string();
    let celsius: f64 = parts.next()?.parse().ok()?;
    let celsius = (celsius * 10.0).round() as i64;
    let at = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((sensor, celsius, at))
}

impl UnboundedSource for SensorFeed {
    type Item = (String, i64);
    type Split = Cursor;

    fn splits(&self) -> Vec<(String, Cursor)> {
        (0..self.partitions).map(|p| (format!("partition-{p}"), Cursor { partition: p, next: 0 })).collect()
    }

    fn read(&self, c: &mut Cursor, max: usize, out: &mut SourceOutput<'_, '_, (String, i64)>) -> ReadResult {
        if c.next >= self.lines {
            return ReadResult::Done;
        }
        for _ in 0..max {
            if c.next >= self.lines {
                break;
            }
            let line = self.line(c.partition, c.next);
            c.next += 1;
            match parse(&line) {
                Some((sensor, celsius, at)) => out.push((sensor, celsius), Timestamp::from_millis(at)),
                None => out.dead_letter(line, "expected sensor,celsius,millis"),
            }
        }
        ReadResult::Data
    }

    /// The next line's number: what a checkpoint stores for this split.
    fn position(&self, c: &Cursor) -> Option<Vec<u8>> {
        Some(c.next.to_le_bytes().to_vec())
    }

    fn seek(&self, c: &mut Cursor, position: &[u8]) -> Result<(), PipelineError> {
        let bytes = position.try_into().map_err(|_| PipelineError::Checkpoint("a position of 8 bytes".into()))?;
        c.next = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// The hottest reading per sensor and minute, as "sensor minute celsius".
pub fn build(p: &Pipeline, feed: SensorFeed) -> (PCollection<String>, PCollection<weir::io::DeadLetter>) {
    // Late readings come at most 2 s after their time; a quiet partition
    // stops holding the watermark back after 1 s of processing time.
    let policy = WatermarkPolicy::bounded_out_of_orderness(Duration::from_secs(2)).idle_after(Duration::from_secs(1));
    let (readings, dead) = p.read_unbounded_with_dead_letters(feed, policy);
    let hottest = readings
        .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_mins(1)).unwrap()))
        .combine_per_key(Max::new())
        .par_do(HottestLine);
    (hottest, dead)
}

/// Formats a result with its window.
#[derive(Clone)]
struct HottestLine;

impl DoFn for HottestLine {
    type In = (String, Option<i64>);
    type Out = String;
    fn process(&mut self, cx: &mut ProcessContext<'_, (String, Option<i64>), String>) {
        let minute = match cx.window() {
            Window::Interval(w) => w.start.millis() / 60_000,
            Window::Global => -1,
        };
        let (sensor, tenths) = cx.element().clone();
        let Some(tenths) = tenths else { return };
        cx.output(format!("{sensor} minute {minute:>2}: {}.{} °C", tenths / 10, tenths % 10));
    }
}

#[allow(dead_code)]
fn main() {
    let p = Pipeline::new();
    let (hottest, dead) = build(&p, SensorFeed { partitions: 3, lines: 400 });
    let (hottest, dead) = (hottest.collect(), dead.collect());
    let result = p.run().expect("the pipeline runs");
    let mut lines = hottest.values();
    lines.sort();
    for line in &lines {
        println!("{line}");
    }
    let read = result.counters("ReadUnbounded").expect("the source's counters");
    println!("{} readings, {} dead letters, e.g. {:?}", read.elements_out, read.dead_letters, dead.values().first());
}
