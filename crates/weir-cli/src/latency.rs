//! `weir latency`: how long after a window's end its pane comes out, at a
//! fixed input rate well below the maximum.
//!
//! The generator runs live ([`GeneratorConfig::live`]): event time is the
//! wall clock, each event is read no earlier than its timestamp, so the
//! watermark passes a window's end when the clock does (the generator's
//! splits know their watermark exactly: no out-of-orderness bound). Each
//! row of the query's output is timed when it reaches the transform after
//! the query's last one; a pane's latency is that of its last row, from
//! its window's end by the wall clock. Only windows that end while events
//! still come are counted (at the end of the input the watermark jumps to
//! the end of time and every open window fires at once). A source that
//! knows its next event's time moves the watermark past a window's end as
//! soon as the window's last event is read, so a pane can come out up to
//! one event interval before the clock reaches the end (plus a millisecond
//! of rounding): at 1,000 events/s or more such panes count as 0 or -1 ms.
//!
//! `--via kafka://HOST:PORT/TOPIC` puts a broker in between: a producer
//! thread of this process sends each event to a new topic when the clock
//! reaches its time (event `i` to partition `i % --partitions`, JSON, the
//! idempotent producer with `linger.ms` 1), and the query reads the topic
//! (a split per partition, each partition's watermark its latest event
//! time: the generator's events are in time order). A pane's latency is
//! then from the production of its window's last record (the window's end,
//! within one event interval) to its result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use clap::Args;
use weir::pipeline::{DoFn, ElementwiseExt, ProcessContext};
use weir::prelude::*;
use weir_nexmark::{read_events, Event, Generator, GeneratorConfig, Input, Query};

/// Arguments of `weir latency`.
#[derive(Args, Clone, Debug)]
pub struct LatencyArgs {
    /// The query (a windowed one: q5, q7, q8, …).
    #[arg(long, short)]
    pub query: Query,
    /// Events per second, live.
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// How long the input runs.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Through a Kafka topic, kafka://HOST:PORT/TOPIC: a new topic that
    /// this run creates and fills live, and the query reads.
    #[arg(long)]
    pub via: Option<String>,
    /// Partitions of the `--via` topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// librdkafka's `fetch.wait.max.ms` for `--via` (its default, 500):
    /// how long a fetch may wait for records. A broker that answers a fetch
    /// only when it has waited that long (tansu, the test broker, does)
    /// adds up to this much to every pane.
    #[arg(long, default_value_t = 500)]
    pub fetch_wait_ms: u64,
}

/// The highest live rate accepted (events per second).
const MAX_RATE: u64 = 2_000_000;

/// Per window end (epoch ms): the latest arrival of one of its rows (ms
/// after the end) and the number of rows.
type Arrivals = Arc<Mutex<HashMap<i64, (i64, u64)>>>;

/// Times each row against its window's end.
#[derive(Clone)]
struct PaneLatency {
    arrivals: Arrivals,
}

impl DoFn for PaneLatency {
    type In = String;
    type Out = ();
    fn process(&mut self, cx: &mut ProcessContext<'_, String, ()>) {
        let Some(end) = cx.window().as_interval().map(|i| i.end.millis()) else { return };
        let after = unix_millis() - end;
        let mut arrivals = self.arrivals.lock().expect("not poisoned: the lock guards no code that panics");
        let e = arrivals.entry(end).or_insert((i64::MIN, 0));
        e.0 = e.0.max(after);
        e.1 += 1;
    }
}

/// The events of `topic` as the producer sends them: one split per
/// partition, watermarks exactly the latest event time (the events are in
/// time order), each partition finished at its first record at or after
/// `stop_at`; a fetch waits at most `fetch_wait_ms` for records.
fn read_kafka_live(
    p: &Pipeline,
    brokers: &str,
    topic: &str,
    stop_at: i64,
    fetch_wait_ms: u64,
) -> Result<weir::pipeline::PCollection<Event>> {
    let source = crate::kafka::event_source(brokers, topic)
        .out_of_orderness(weir::model::Duration::ZERO)
        .stop_at_event_time(stop_at)
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string());
    Ok(weir_kafka::read_kafka(p, source)?.0)
}

/// An event as a JSON line that [`Event::from_json`] reads.
fn event_json(e: &Event) -> Vec<u8> {
    let null = serde_json::Value::Null;
    let (t, person, auction, bid) = match e {
        Event::Person(x) => (0, serde_json::json!(x), null.clone(), null),
        Event::Auction(x) => (1, null.clone(), serde_json::json!(x), null),
        Event::Bid(x) => (2, null.clone(), null, serde_json::json!(x)),
    };
    serde_json::to_vec(&serde_json::json!({"event_type": t, "person": person, "auction": auction, "bid": bid}))
        .expect("an event serializes")
}

/// A thread that sends the generator's events to `topic`, each when the
/// clock reaches its time, then one record per partition past the last
/// event (where the source stops). Returns how many it sent; if producing
/// fails, the process ends with the error (the query would wait for ever).
fn produce_live(
    brokers: &str,
    topic: &str,
    partitions: i32,
    config: GeneratorConfig,
    stop_at: i64,
) -> std::thread::JoinHandle<Result<u64>> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    std::thread::spawn(move || {
        let mut generator = Generator::for_worker(&config, 0, 1);
        // Event 0 (a person), an hour after the last event.
        let mut past_end = generator.event(0);
        if let Event::Person(person) = &mut past_end {
            person.date_time = stop_at + 3_600_000;
        }
        let mut batch = std::collections::VecDeque::new();
        let live = std::iter::from_fn(|| {
            while batch.is_empty() {
                let next = generator.next_timestamp()?;
                let wait = next - unix_millis();
                if wait > 0 {
                    std::thread::sleep(std::time::Duration::from_millis(wait as u64));
                }
                generator.fill_until(1024, unix_millis(), |e| batch.push_back(event_json(&e)));
            }
            batch.pop_front()
        });
        let tail = (0..partitions).map(|_| event_json(&past_end));
        let options = [("linger.ms", "1")];
        match weir_kafka::admin::load_with(&brokers, &topic, partitions, live.chain(tail), &options) {
            Ok(sent) => Ok(sent),
            Err(e) => {
                // The query would wait for the records past the end for ever.
                eprintln!("weir: latency: producing to '{topic}' failed: {e}");
                std::process::exit(1);
            }
        }
    })
}

fn unix_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// CPU time of this process so far (user and system), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// The `p`-th percentile (nearest rank) of sorted values.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn main(a: LatencyArgs) -> Result<()> {
    if a.rate == 0 || a.seconds == 0 || a.workers == 0 {
        bail!("--rate, --seconds and --workers must be at least 1");
    }
    if a.rate > MAX_RATE {
        bail!(
            "--rate {}: the generator makes a few million events per second at most, so a live rate above {MAX_RATE} \
             cannot be kept (the input would fall behind the clock and every pane would be late)",
            a.rate
        );
    }
    let Some(events) = a.rate.checked_mul(a.seconds) else { bail!("--rate × --seconds is too large") };
    // Time to create the topic and connect to it before the first event.
    let base_time = unix_millis() + if a.via.is_some() { 1_000 } else { 200 };
    let config = GeneratorConfig { rate: a.rate, base_time, live: true, ..GeneratorConfig::new(events) };
    let last_event = base_time + ((events - 1) as i128 * 1000 / a.rate as i128) as i64;
    let p = Pipeline::new();
    let via = a.via.as_deref().map(crate::kafka::parse_url).transpose()?.flatten();
    if let (Some(url), None) = (&a.via, &via) {
        bail!("--via {url}: only a Kafka topic, kafka://HOST:PORT/TOPIC");
    }
    let (events_in, producer) = match &via {
        None => (read_events(&p, &Input::Generated(config))?.0, None),
        Some((brokers, topic)) => {
            if !weir_kafka::admin::create_topic(brokers, topic, a.partitions)? {
                bail!("--via: topic '{topic}' exists on {brokers}: give a new one (the run fills it from the start)");
            }
            let events = read_kafka_live(&p, brokers, topic, last_event + 1, a.fetch_wait_ms)?;
            (events, Some(produce_live(brokers, topic, a.partitions, config, last_event + 1)))
        }
    };
    let arrivals: Arrivals = Arc::default();
    a.query.build_lines(&events_in).par_do(PaneLatency { arrivals: arrivals.clone() });
    let through = via.as_ref().map_or(String::new(), |(b, t)| format!(" through topic '{t}' on {b}"));
    eprintln!("latency: {} live at {} events/s for {} s on {} workers{through}", a.query, a.rate, a.seconds, a.workers);
    let started = std::time::Instant::now();
    p.run_with(&TimelyRunner::threads(a.workers))?;
    if let Some(producer) = producer {
        let sent = producer.join().map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
        eprintln!("latency: {sent} records produced (the events, then one past the end per partition)");
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds();
    let arrivals = std::mem::take(&mut *arrivals.lock().expect("not poisoned"));
    let (mut counted, mut rows) = (Vec::new(), 0);
    for (end, (after, n)) in arrivals {
        if end <= last_event {
            counted.push(after);
            rows += n;
        }
    }
    if counted.is_empty() {
        bail!(
            "{} produced no pane of a window that ended within {} s: not a windowed query, or too short a run",
            a.query,
            a.seconds
        );
    }
    counted.sort_unstable();
    println!(
        "{} at {} events/s, {} workers: {} panes ({rows} rows) in {wall:.1} s; ms from the window's end to its pane: \
         p50 {}, p99 {}, max {}, min {}; CPU {cpu:.1} s ({:.0} % of one core)",
        a.query,
        a.rate,
        a.workers,
        counted.len(),
        percentile(&counted, 50.0),
        percentile(&counted, 99.0),
        counted[counted.len() - 1],
        counted[0],
        cpu * 100.0 / wall,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[1, 2], 50.0), 1);
    }
}
