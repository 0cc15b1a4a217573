//! Clicks per user and minute, from a Kafka topic to another.
//!
//! Start a Kafka-protocol broker on 127.0.0.1:9092 first, for instance the
//! tansu broker of `shared/bin`:
//!
//! ```sh
//! xz -dc ../shared/bin/tansu-0.6.0-x86_64-linux.xz > target/tansu && chmod +x target/tansu
//! target/tansu broker --listener-url tcp://127.0.0.1:9092 \
//!   --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine sqlite://target/tansu.db &
//! cargo run --release -p weir-kafka --example clicks_per_minute -- 127.0.0.1:9092
//! ```
//!
//! The example makes a `clicks` topic of 2 partitions with 20,000 clicks
//! (10 users, 5 minutes, out of order by up to a second), counts them per
//! user and minute in event-time windows, and writes each count to
//! `clicks-per-minute`, keyed by user and minute (a deterministic key: a
//! consumer can drop what a recovery sends again).

use std::error::Error;

use serde::{Deserialize, Serialize};
use weir_kafka::admin::{create_topic, load_with, ONE_RECORD_PER_BATCH};
use weir_kafka::{read_kafka, KafkaSinkExt, KafkaSource};
use weir_model::{Duration, FixedWindows, WindowingStrategy};
use weir_pipeline::prelude::*;
use weir_runner_timely::TimelyRunner;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Click {
    user: String,
    at_ms: i64,
}

fn main() -> Result<(), Box<dyn Error>> {
    let brokers = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9092".to_string());
    // The input: click i at i * 15 ms, shifted back by up to 999 ms.
    let clicks: Vec<Vec<u8>> = (0..20_000i64)
        .map(|i| {
            let click = Click { user: format!("u{}", i % 10), at_ms: i * 15 - (i * 7919) % 1000 };
            serde_json::to_vec(&click).expect("JSON")
        })
        .collect();
    let fresh = create_topic(&brokers, "clicks", 2)?;
    create_topic(&brokers, "clicks-per-minute", 2)?;
    if fresh {
        // One record per batch, for brokers that count batches when asked
        // where a partition ends (tansu); a Kafka broker does not need it.
        load_with(&brokers, "clicks", 2, &clicks, ONE_RECORD_PER_BATCH)?;
    }

    let p = Pipeline::new();
    let source = KafkaSource::<Click>::json(&brokers, "clicks")
        .event_time(|c| c.at_ms)
        .out_of_orderness(Duration::from_millis(1_000))
        .bounded();
    let (clicks, dead_letters) = read_kafka(&p, source)?;
    let counts = clicks
        .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(60_000))?))
        .map(|c: Click| ((c.user, c.at_ms.div_euclid(60_000)), 1u64))
        .combine_per_key(Sum::new());
    counts.write_kafka(&brokers, "clicks-per-minute", |((user, minute), n): &((String, i64), u64)| {
        (Some(format!("{user}@{minute}").into_bytes()), n.to_string().into_bytes())
    });
    let counts = counts.collect();
    let dead_letters = dead_letters.collect();
    p.run_with(&TimelyRunner::default())?;

    let mut counts = counts.values();
    counts.sort();
    for ((user, minute), n) in counts.iter().filter(|((user, _), _)| user == "u0") {
        println!("{user} minute {minute}: {n} clicks");
    }
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    println!(
        "{} counts sent to clicks-per-minute; {total} clicks counted; {} dead letters",
        counts.len(),
        dead_letters.values().len()
    );
    Ok(())
}
