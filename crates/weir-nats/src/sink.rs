//! The JetStream sink: every record published with an acknowledgement and
//! a message id, so that what a recovery publishes again is dropped by the
//! stream's duplicate window.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_nats::jetstream::message::PublishMessage;
use weir_pipeline::PCollection;
use weir_runtime::{
    Batch, Data, FailedOperator, NodeCounters, NodeKind, OpContext, OpResult, Operator, PipelineError, Rescale,
    Routing, WorkerInfo,
};

use crate::runtime;

/// How long the server may take to acknowledge a batch of publications.
const ACK_TIMEOUT: StdDuration = StdDuration::from_secs(60);

type MessageFn<T> = dyn Fn(&T) -> (String, Vec<u8>) + Send + Sync;

struct JetStreamSinkOp<T> {
    url: String,
    subject: String,
    rt: tokio::runtime::Runtime,
    js: Option<async_nats::jetstream::Context>,
    message: Arc<MessageFn<T>>,
    _t: PhantomData<fn(T)>,
}

impl<T> JetStreamSinkOp<T> {
    fn failed(&self, what: impl std::fmt::Display) -> PipelineError {
        PipelineError::Runner(format!("nats: publishing to '{}' at {}: {what}", self.subject, self.url))
    }
}

impl<T: Data> Operator for JetStreamSinkOp<T> {
    /// Every record of the batch is published, and acknowledged by the
    /// server before the next batch (so a checkpoint covers only what was
    /// stored).
    fn process(&mut self, _port: usize, batch: Batch, cx: &mut OpContext<'_>) -> OpResult {
        let values = batch.into_vec::<T>()?;
        NodeCounters::add(&cx.counters.elements_in, values.len() as u64);
        if self.js.is_none() {
            let url = self.url.as_str();
            let js = self.rt.block_on(async {
                let client = tokio::time::timeout(ACK_TIMEOUT, async_nats::connect(url)).await;
                let client = client.map_err(|_| "connecting timed out".to_string())?.map_err(|e| e.to_string())?;
                Ok::<_, String>(async_nats::jetstream::new(client))
            });
            self.js = Some(js.map_err(|e| self.failed(e))?);
        }
        let js = self.js.as_ref().expect("connected above");
        let (subject, message) = (&self.subject, &self.message);
        let published = self.rt.block_on(async {
            tokio::time::timeout(ACK_TIMEOUT, async {
                let mut acks = Vec::with_capacity(values.len());
                for v in &values {
                    let (id, payload) = message(&v.value);
                    let publish = PublishMessage::build().payload(payload.into()).message_id(id);
                    acks.push(js.send_publish(subject.clone(), publish).await?);
                }
                for ack in acks {
                    ack.await?;
                }
                Ok::<_, async_nats::Error>(())
            })
            .await
        });
        published.map_err(|_| self.failed("the server did not acknowledge in time"))?.map_err(|e| self.failed(e))
    }

    /// Nothing is pending between batches.
    fn snapshot(&self) -> Result<Vec<u8>, PipelineError> {
        Ok(Vec::new())
    }

    fn restore(&mut self, _bytes: &[u8]) -> OpResult {
        Ok(())
    }

    fn restore_rescaled(&mut self, _from: &Rescale<'_>) -> OpResult {
        Ok(())
    }
}

/// A message id from the subject and the payload: the same record
/// published again gets the same id.
fn content_id(subject: &str, payload: &[u8]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(subject.as_bytes());
    h.update(&[0]);
    h.update(payload);
    format!("{:032x}", h.digest128())
}

/// `write_jetstream`: records to a JetStream stream.
pub trait JetStreamSinkExt<T: Data> {
    /// Publish one message per element to `subject` at `url`, its id and
    /// payload made by `message`, each acknowledged by the server (a
    /// failure fails the job). The message id (the `Nats-Msg-Id` header)
    /// makes publishing idempotent within the stream's duplicate window
    /// (2 minutes by default): what a recovery publishes again with the
    /// same id is dropped by the server. Give each distinct result its own
    /// id, stable across runs (from its window, key and pane): a replayed
    /// record may fall in another epoch, so ids from epochs would not be.
    ///
    /// ```no_run
    /// use weir_nats::JetStreamSinkExt;
    /// use weir_pipeline::prelude::*;
    /// let p = Pipeline::new();
    /// let counts = p.create(vec![("a".to_string(), 3u64)]);
    /// counts.write_jetstream_with_ids("127.0.0.1:4222", "counts", |(k, n): &(String, u64)| {
    ///     (format!("count-{k}"), format!("{k},{n}").into_bytes())
    /// });
    /// ```
    fn write_jetstream_with_ids(
        &self,
        url: &str,
        subject: &str,
        message: impl Fn(&T) -> (String, Vec<u8>) + Send + Sync + 'static,
    );

    /// [`write_jetstream_with_ids`](Self::write_jetstream_with_ids) with
    /// the id taken from the subject and payload (a hash): a result
    /// published again is dropped, and so is a second, equal result.
    fn write_jetstream(&self, url: &str, subject: &str, payload: impl Fn(&T) -> Vec<u8> + Send + Sync + 'static) {
        let s = subject.to_string();
        self.write_jetstream_with_ids(url, subject, move |v| {
            let bytes = payload(v);
            (content_id(&s, &bytes), bytes)
        })
    }
}

impl<T: Data> JetStreamSinkExt<T> for PCollection<T> {
    fn write_jetstream_with_ids(
        &self,
        url: &str,
        subject: &str,
        message: impl Fn(&T) -> (String, Vec<u8>) + Send + Sync + 'static,
    ) {
        let (url, subject) = (url.to_string(), subject.to_string());
        let message: Arc<MessageFn<T>> = Arc::new(message);
        self.pipeline().add_node(
            &format!("WriteJetStream({subject})"),
            vec![self.as_input(Routing::Forward)],
            0,
            NodeKind::Operator(Arc::new(move |_: &WorkerInfo| match runtime() {
                Ok(rt) => Box::new(JetStreamSinkOp {
                    url: url.clone(),
                    subject: subject.clone(),
                    rt,
                    js: None,
                    message: message.clone(),
                    _t: PhantomData,
                }) as Box<dyn Operator>,
                Err(e) => Box::new(FailedOperator(PipelineError::Runner(format!("nats: starting a runtime: {e}")))),
            })),
        );
    }
}
