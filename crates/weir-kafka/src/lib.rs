//! # weir-kafka
//!
//! Kafka topics in and out of Weir pipelines, through librdkafka (the
//! `rdkafka` crate, built from its bundled sources). Kept in its own crate
//! so that pipelines that do not read Kafka do not build librdkafka.
//!
//! - **Source** ([`read_kafka`], configured by a [`KafkaSource`]): one
//!   split per partition, dealt to the workers and processes like any split
//!   source; each partition has its own watermark (event time from a user
//!   function or the record timestamp, bounded out-of-orderness) and may be
//!   declared idle after a quiet spell, so a quiet partition does not stall
//!   windows. A split's position is its next offset: it is stored in Weir's
//!   checkpoints and the split seeks back to it on recovery, so what was
//!   read before the checkpoint is neither lost nor read twice. Records
//!   that cannot be decoded go to a dead-letter output, with a count.
//!   Partitions added to the topic while an unbounded job runs are found
//!   (every 30 s by default, [`KafkaSource::discover_partitions_every`])
//!   and read from their first record.
//! - **Sink** ([`KafkaSinkExt::write_kafka`]): the idempotent producer
//!   (no duplicates from the producer's own retries), keyed records,
//!   delivery errors fail the job, and everything sent is flushed at every
//!   checkpoint. The delivery guarantee is **at least once**: after a
//!   recovery, what was sent after the restored checkpoint is sent again.
//!   Give each record a deterministic key (from its window, key and pane)
//!   so that consumers can drop what a recovery re-sends.
//! - **Admin helpers** ([`admin`]): create a topic, load lines into it.
//!
//! ```no_run
//! use weir_kafka::{read_kafka, KafkaSinkExt, KafkaSource, StartFrom};
//! use weir_pipeline::prelude::*;
//! #[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
//! struct Click { user: String, at_ms: i64 }
//! let p = Pipeline::new();
//! let source = KafkaSource::<Click>::json("127.0.0.1:9092", "clicks")
//!     .event_time(|c| c.at_ms)
//!     .out_of_orderness(weir_model::Duration::from_millis(2_000))
//!     .idle_after(weir_model::Duration::from_millis(10_000))
//!     .start_from(StartFrom::Earliest);
//! let (clicks, _dead) = read_kafka(&p, source).unwrap();
//! clicks
//!     .map(|c: Click| (c.user, 1u64))
//!     .combine_per_key(Sum::new())
//!     .write_kafka("127.0.0.1:9092", "counts", |(user, n): &(String, u64)| {
//!         (Some(user.clone().into_bytes()), n.to_string().into_bytes())
//!     });
//! ```

mod error;
mod sink;
mod source;

pub mod admin;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::KafkaError;
pub use sink::{result_id, KafkaSinkExt, RESULT_ID};
pub use source::{read_kafka, KafkaRecord, KafkaSource, StartFrom};
