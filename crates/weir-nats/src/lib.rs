//! # weir-nats
//!
//! NATS JetStream for Weir, in a crate of its own (the NATS client and its
//! runtime stay out of the core and out of pipelines that do not use it):
//!
//! - [`read_jetstream`] / [`JetStreamSource`]: a source on a durable pull
//!   consumer. Messages are acknowledged only after the checkpoint that
//!   covers them is committed; the last stream sequence read is the
//!   source's position in Weir's checkpoints, and a recovered run has the
//!   consumer deliver from the message after it. Event time from the value
//!   or the time the server stored the message, bounded out-of-orderness,
//!   idleness, dead letters for messages that do not decode.
//! - [`JetStreamSinkExt::write_jetstream`]: every record published and
//!   acknowledged, with a message id, so that the stream's duplicate
//!   window drops what a recovery publishes again.
//!
//! Tested against a real `nats-server -js` (no mocks): `cargo test
//! --release -p weir-nats` starts one on 127.0.0.1.

#![warn(missing_docs)]

mod error;
mod sink;
mod source;

pub use error::NatsError;
pub use sink::JetStreamSinkExt;
pub use source::{read_jetstream, JetStreamSource, NatsRecord};

/// A small runtime of its own for a source or sink instance: one thread
/// that keeps the connection alive between the worker's calls.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("weir-nats").enable_all().build()
}
