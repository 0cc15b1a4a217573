//! The JetStream source: one split per source, read through a durable
//! pull consumer whose acknowledgements follow the job's committed
//! checkpoints.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::Acker;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use weir_model::{Duration, Timestamp, WindowingStrategy};
use weir_pipeline::{PCollection, Pipeline};
use weir_runtime::split::{DeadLetter, ReadResult, Split, SplitOutput, SplitReader, SplitSource, WatermarkPolicy};
use weir_runtime::{Data, NodeKind, PipelineError, Source, SourceFactory, WorkerInfo};

use crate::{runtime, NatsError};

/// A message as the decoding and event-time functions see it.
#[derive(Debug, Clone, Copy)]
pub struct NatsRecord<'a> {
    /// Its subject.
    pub subject: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
    /// Its sequence number in the stream.
    pub stream_sequence: u64,
    /// When the server stored it (milliseconds since the Unix epoch).
    pub published_ms: i64,
}

type Decode<T> = Arc<dyn Fn(&NatsRecord<'_>) -> Result<T, String> + Send + Sync>;
type EventTime<T> = Arc<dyn Fn(&T, &NatsRecord<'_>) -> Timestamp + Send + Sync>;

/// How to read a JetStream stream (see [`read_jetstream`]).
///
/// The source reads through a durable pull consumer (created if missing,
/// with `AckPolicy::All`; one that exists with another policy is refused):
/// a message is acknowledged only once a committed checkpoint covers it,
/// so the consumer's acknowledgement floor shows how far the job is. Its
/// position in Weir's checkpoints is the last stream sequence processed;
/// on recovery the consumer is created again to deliver from the one
/// after it, so nothing a checkpoint does not cover is lost and nothing it
/// covers is read again (exactly once into Weir's state). A run that
/// starts without a checkpoint starts after what the consumer
/// acknowledged (the consumer is created again there, so that messages an
/// earlier run read but did not acknowledge come at once); a run without
/// checkpoints acknowledges nothing. One split: one worker reads it.
///
/// ```no_run
/// use weir_nats::{read_jetstream, JetStreamSource};
/// use weir_pipeline::prelude::*;
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
/// struct Click { user: String, at_ms: i64 }
/// let p = Pipeline::new();
/// let source = JetStreamSource::<Click>::json("127.0.0.1:4222", "CLICKS", "weir-clicks")
///     .event_time(|c| c.at_ms)
///     .out_of_orderness(Duration::from_secs(5));
/// let (clicks, dead_letters) = read_jetstream(&p, source).unwrap();
/// ```
pub struct JetStreamSource<T> {
    url: String,
    stream: String,
    consumer: String,
    decode: Decode<T>,
    time: EventTime<T>,
    out_of_orderness: Duration,
    idle_after: Option<Duration>,
    bounded: bool,
    stop_at: Option<Timestamp>,
    filter_subject: Option<String>,
    ack_wait: StdDuration,
    name: String,
}

impl<T: DeserializeOwned + Data> JetStreamSource<T> {
    /// Messages whose payloads are JSON values of `T`.
    pub fn json(url: impl Into<String>, stream: impl Into<String>, consumer: impl Into<String>) -> Self {
        JetStreamSource::new(url, stream, consumer, |r: &NatsRecord<'_>| {
            serde_json::from_slice(r.payload).map_err(|e| e.to_string())
        })
    }
}

impl<T: Data> JetStreamSource<T> {
    /// Messages decoded by `decode` (an `Err` goes to the dead letters).
    pub fn new(
        url: impl Into<String>,
        stream: impl Into<String>,
        consumer: impl Into<String>,
        decode: impl Fn(&NatsRecord<'_>) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        let stream = stream.into();
        JetStreamSource {
            url: url.into(),
            name: format!("ReadJetStream({stream})"),
            stream,
            consumer: consumer.into(),
            decode: Arc::new(decode),
            time: Arc::new(|_: &T, r: &NatsRecord<'_>| Timestamp::from_millis(r.published_ms)),
            out_of_orderness: Duration::ZERO,
            idle_after: None,
            bounded: false,
            stop_at: None,
            filter_subject: None,
            ack_wait: StdDuration::from_secs(600),
        }
    }

    /// Event time from the value (milliseconds); by default, when the
    /// server stored the message.
    pub fn event_time(mut self, f: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        self.time = Arc::new(move |v: &T, _: &NatsRecord<'_>| Timestamp::from_millis(f(v)));
        self
    }

    /// How late a message may come after a later one (the watermark trails
    /// the largest event time by this much).
    pub fn out_of_orderness(mut self, d: Duration) -> Self {
        self.out_of_orderness = d;
        self
    }

    /// A stream quiet for `d` stops holding the watermark back (and holds
    /// it again when messages come).
    pub fn idle_after(mut self, d: Duration) -> Self {
        self.idle_after = Some(d);
        self
    }

    /// Read up to the stream's last message as of when the pipeline is
    /// built, then finish (a batch job over a stream). Not with a filter
    /// subject (the stream's last message may not be the subject's).
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// Finish at the first message at or after event time `at`
    /// (milliseconds), which is not read.
    pub fn stop_at_event_time(mut self, at: i64) -> Self {
        self.stop_at = Some(Timestamp::from_millis(at));
        self
    }

    /// Only messages of this subject (wildcards allowed), for a consumer
    /// the source creates.
    pub fn filter_subject(mut self, subject: impl Into<String>) -> Self {
        self.filter_subject = Some(subject.into());
        self
    }

    /// How long the server waits for an acknowledgement before it sends a
    /// message again (default 10 minutes): longer than a checkpoint takes.
    /// A message sent again that the job already read is skipped.
    pub fn ack_wait(mut self, d: StdDuration) -> Self {
        self.ack_wait = d;
        self
    }

    /// The transform's name (default `ReadJetStream(<stream>)`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    fn consumer_config(&self, deliver_policy: DeliverPolicy) -> PullConfig {
        PullConfig {
            durable_name: Some(self.consumer.clone()),
            deliver_policy,
            ack_policy: AckPolicy::All,
            ack_wait: self.ack_wait,
            max_ack_pending: -1,
            filter_subject: self.filter_subject.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// What every split of a source shares.
struct Shared<T> {
    url: String,
    stream: String,
    consumer: String,
    config: PullConfig,
    decode: Decode<T>,
    time: EventTime<T>,
    stop_at: Option<Timestamp>,
}

/// The source's one split: its durable consumer.
struct ConsumerSplits<T> {
    shared: Arc<Shared<T>>,
    end: Option<u64>,
}

impl<T: Data> SplitSource for ConsumerSplits<T> {
    type Split = ConsumerSplit<T>;
    fn splits(&self, _workers: usize) -> Result<Vec<ConsumerSplit<T>>, PipelineError> {
        // A bounded read of an empty stream has nothing to read.
        if self.end == Some(0) {
            return Ok(Vec::new());
        }
        Ok(vec![ConsumerSplit {
            id: format!("{}/{}", self.shared.stream, self.shared.consumer),
            shared: self.shared.clone(),
            end: self.end,
            last: 0,
            restart_at: None,
            conn: None,
            held: VecDeque::new(),
            empty_at: None,
            warned: None,
            stopped: false,
        }])
    }
}

/// A connection and the consumer, on their own small runtime (which keeps
/// the connection alive between reads).
struct Conn {
    rt: tokio::runtime::Runtime,
    consumer: PullConsumer,
}

/// How long an empty fetch keeps the split from asking again.
const QUIET_POLL: StdDuration = StdDuration::from_millis(20);
/// How long a request to the server may take.
const REQUEST_TIMEOUT: StdDuration = StdDuration::from_secs(10);

struct ConsumerSplit<T> {
    id: String,
    shared: Arc<Shared<T>>,
    /// Bounded: the last stream sequence to read.
    end: Option<u64>,
    /// The last stream sequence read (0: none).
    last: u64,
    /// After a seek: create the consumer again, delivering from here.
    restart_at: Option<u64>,
    conn: Option<Conn>,
    /// (last stream sequence of a read, what acknowledges it and, with
    /// `AckPolicy::All`, everything before it), oldest first.
    held: VecDeque<(u64, Acker)>,
    empty_at: Option<Instant>,
    warned: Option<Instant>,
    /// A message at or after the stop time came.
    stopped: bool,
}

impl<T: Data> ConsumerSplit<T> {
    fn fail(&self, what: &str, e: impl std::fmt::Display) -> PipelineError {
        PipelineError::Runner(format!("nats: {}: {what}: {e}", self.id))
    }

    fn open(&mut self) -> Result<Conn, PipelineError> {
        let rt = runtime().map_err(|e| self.fail("starting its runtime", e))?;
        let s = &self.shared;
        let mut config = s.config.clone();
        let restart_at = self.restart_at;
        let consumer = rt.block_on(async {
            let client = tokio::time::timeout(REQUEST_TIMEOUT, async_nats::connect(s.url.as_str()))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
            let js = async_nats::jetstream::new(client);
            let stream = js.get_stream(&s.stream).await.map_err(|e| format!("stream {}: {e}", s.stream))?;
            // The consumer is created again to deliver from where the run
            // starts: after the checkpoint it restores, or else after what
            // the consumer has acknowledged (messages an earlier run read
            // but did not acknowledge come again at once, not after the
            // acknowledgement wait).
            let from = match restart_at {
                Some(from) => Some(from),
                None => stream.consumer_info(&s.consumer).await.ok().map(|i| i.ack_floor.stream_sequence + 1),
            };
            if let Some(from) = from {
                config.deliver_policy = DeliverPolicy::ByStartSequence { start_sequence: from };
            }
            let _ = stream.delete_consumer(&s.consumer).await;
            stream.create_consumer(config).await.map_err(|e| e.to_string())
        });
        let consumer = consumer.map_err(|e| self.fail("opening the consumer", e))?;
        self.restart_at = None;
        Ok(Conn { rt, consumer })
    }
}

impl<T: Data> Split for ConsumerSplit<T> {
    type Item = T;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn read(&mut self, max: usize, out: &mut SplitOutput<'_, T>) -> Result<ReadResult, PipelineError> {
        if self.stopped || self.end.is_some_and(|end| self.last >= end) {
            return Ok(ReadResult::Done);
        }
        if self.empty_at.is_some_and(|t| t.elapsed() < QUIET_POLL) {
            return Ok(ReadResult::Idle);
        }
        if self.conn.is_none() {
            self.conn = Some(self.open()?);
        }
        let conn = self.conn.as_ref().expect("opened above");
        let fetched = conn.rt.block_on(async {
            let mut batch = conn.consumer.fetch().max_messages(max.clamp(1, 10_000)).messages().await?;
            let mut messages = Vec::new();
            while let Some(m) = batch.next().await {
                messages.push(m?);
            }
            Ok::<_, async_nats::Error>(messages)
        });
        let messages = match fetched {
            Ok(m) => m,
            Err(e) => {
                if self.warned.is_none_or(|t| t.elapsed() >= StdDuration::from_secs(30)) {
                    eprintln!("weir: nats: {}: fetching failed (retrying): {e}", self.id);
                    self.warned = Some(Instant::now());
                }
                self.empty_at = Some(Instant::now());
                return Ok(ReadResult::Idle);
            }
        };
        let mut newest = None;
        let mut read = 0;
        for m in messages {
            let (seq, published_ms) = match m.info() {
                Ok(i) => (i.stream_sequence, (i.published.unix_timestamp_nanos() / 1_000_000) as i64),
                Err(e) => return Err(self.fail("a message without JetStream metadata", e)),
            };
            // Sent again (not acknowledged in time), or past a bounded end.
            if seq <= self.last || self.end.is_some_and(|end| seq > end) {
                continue;
            }
            let (message, acker) = m.split();
            let record = NatsRecord {
                subject: message.subject.as_str(),
                payload: &message.payload,
                stream_sequence: seq,
                published_ms,
            };
            match (self.shared.decode)(&record) {
                Ok(v) => {
                    let at = (self.shared.time)(&v, &record);
                    if self.shared.stop_at.is_some_and(|stop| at >= stop) {
                        self.stopped = true;
                        break;
                    }
                    out.push(v, at);
                }
                Err(reason) => out.dead_letter(DeadLetter {
                    file: self.id.clone(),
                    line: String::from_utf8_lossy(record.payload).into_owned(),
                    reason: format!("stream sequence {seq}: {reason}"),
                }),
            }
            self.last = seq;
            newest = Some(acker);
            read += 1;
        }
        if let Some(acker) = newest {
            self.held.push_back((self.last, acker));
        }
        if self.stopped || self.end.is_some_and(|end| self.last >= end) {
            return Ok(ReadResult::Done);
        }
        if read == 0 {
            self.empty_at = Some(Instant::now());
            return Ok(ReadResult::Idle);
        }
        self.empty_at = None;
        Ok(ReadResult::Data)
    }

    /// The last stream sequence read, and (bounded) the last to read.
    fn position(&self) -> Option<Vec<u8>> {
        let mut at = self.last.to_le_bytes().to_vec();
        at.extend_from_slice(&self.end.unwrap_or(0).to_le_bytes());
        Some(at)
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), PipelineError> {
        let (last, end) = decode_position(&self.id, position)?;
        self.last = last;
        self.end = end;
        self.held.clear();
        self.conn = None;
        self.stopped = false;
        self.restart_at = Some(last + 1);
        Ok(())
    }

    /// Acknowledge (all up to) the last message the committed checkpoint
    /// covers. A failed acknowledgement is reported; the next one covers it.
    fn committed(&mut self, position: &[u8]) -> Result<(), PipelineError> {
        let (covered, _) = decode_position(&self.id, position)?;
        let mut newest = None;
        while self.held.front().is_some_and(|(seq, _)| *seq <= covered) {
            newest = self.held.pop_front();
        }
        let (Some((seq, acker)), Some(conn)) = (newest, &self.conn) else { return Ok(()) };
        let acked = conn.rt.block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, acker.ack()).await });
        match acked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("weir: nats: {}: acknowledging up to stream sequence {seq} failed: {e}", self.id),
            Err(_) => eprintln!("weir: nats: {}: acknowledging up to stream sequence {seq} timed out", self.id),
        }
        Ok(())
    }
}

fn decode_position(id: &str, position: &[u8]) -> Result<(u64, Option<u64>), PipelineError> {
    if position.len() != 16 {
        return Err(PipelineError::Runner(format!(
            "nats: {id}: a JetStream position is 16 bytes, not {}",
            position.len()
        )));
    }
    let last = u64::from_le_bytes(position[..8].try_into().expect("8 bytes"));
    let end = u64::from_le_bytes(position[8..].try_into().expect("8 bytes"));
    Ok((last, (end > 0).then_some(end)))
}

/// Read a JetStream stream: its messages, and those that could not be
/// decoded (as dead letters, counted in the transform's metrics). The
/// server, the stream and the consumer are checked here (the consumer is
/// created if missing), so a wrong address or stream is an error before
/// the pipeline runs.
pub fn read_jetstream<T: Data>(
    p: &Pipeline,
    source: JetStreamSource<T>,
) -> Result<(PCollection<T>, PCollection<DeadLetter>), NatsError> {
    if source.bounded && source.filter_subject.is_some() {
        return Err(NatsError::Config("a bounded read cannot have a filter subject".into()));
    }
    let config = source.consumer_config(DeliverPolicy::All);
    let rt = runtime().map_err(|e| NatsError::Server(format!("starting a runtime: {e}")))?;
    let end = rt.block_on(async {
        let client = tokio::time::timeout(REQUEST_TIMEOUT, async_nats::connect(source.url.as_str()))
            .await
            .map_err(|_| "timed out".to_string())
            .and_then(|c| c.map_err(|e| e.to_string()))
            .map_err(|message| NatsError::Connect { url: source.url.clone(), message })?;
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(&source.stream).await.map_err(|e| NatsError::NoStream {
            url: source.url.clone(),
            stream: source.stream.clone(),
            message: e.to_string(),
        })?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(&source.consumer, config.clone())
            .await
            .map_err(|e| NatsError::Server(format!("consumer {}: {e}", source.consumer)))?;
        if consumer.cached_info().config.ack_policy != AckPolicy::All {
            return Err(NatsError::Config(format!(
                "consumer {} of stream {} exists with ack policy {:?}; Weir needs AckPolicy::All (delete it, or \
                 name another)",
                source.consumer,
                source.stream,
                consumer.cached_info().config.ack_policy
            )));
        }
        let last = stream.info().await.map_err(|e| NatsError::Server(e.to_string()))?.state.last_sequence;
        Ok::<_, NatsError>(source.bounded.then_some(last))
    })?;
    let mut policy = WatermarkPolicy::bounded_out_of_orderness(source.out_of_orderness);
    if let Some(quiet) = source.idle_after {
        policy = policy.idle_after(quiet);
    }
    let shared = Arc::new(Shared {
        url: source.url.clone(),
        stream: source.stream.clone(),
        consumer: source.consumer.clone(),
        config,
        decode: source.decode.clone(),
        time: source.time.clone(),
        stop_at: source.stop_at,
    });
    let splits = Arc::new(ConsumerSplits { shared, end });
    let factory: SourceFactory = Arc::new(move |w: &WorkerInfo| {
        let reader = SplitReader::for_worker(&*splits, w, policy.clone(), true)
            .expect("the JetStream split is planned when the pipeline is built");
        Box::new(reader) as Box<dyn Source>
    });
    let idx = p.add_node(&source.name, vec![], 2, NodeKind::Source(factory));
    let s = Arc::new(WindowingStrategy::default());
    Ok((p.collection(idx, 0, s.clone()), p.collection(idx, 1, s)))
}
