//! Clicks per user and minute, from a JetStream stream to another.
//!
//! Start a NATS server with JetStream on 127.0.0.1:4222 first:
//!
//! ```sh
//! apt-get install nats-server   # or any nats-server 2.9 or later
//! nats-server -js -a 127.0.0.1 -p 4222 -sd /tmp/nats &
//! cargo run --release -p weir-nats --example clicks_per_minute -- 127.0.0.1:4222
//! ```
//!
//! The example makes a `CLICKS` stream (subjects `clicks.>`) holding 20,000
//! clicks (10 users, 5 minutes, out of order by up to a second) unless it
//! exists, and a `COUNTS` stream (subjects `counts.>`); it counts the clicks
//! per user and minute in event-time windows, reading through the durable
//! consumer `weir-clicks`, and publishes each count to `counts.per-minute`
//! with the message id `<user>@<minute>`: run it twice and `COUNTS` still
//! holds each count once (the stream's duplicate window drops the rest).

use std::error::Error;

use serde::{Deserialize, Serialize};
use weir_model::{Duration, FixedWindows, WindowingStrategy};
use weir_nats::{read_jetstream, JetStreamSinkExt, JetStreamSource};
use weir_pipeline::prelude::*;
use weir_runner_timely::TimelyRunner;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Click {
    user: String,
    at_ms: i64,
}

/// Make the two streams, and fill `CLICKS` if it is new.
fn set_up(url: &str) -> Result<(), Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url).await?);
        let stream = |name: &str, subjects: &str| async_nats::jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![subjects.to_string()],
            ..Default::default()
        };
        js.get_or_create_stream(stream("COUNTS", "counts.>")).await?;
        let mut clicks = js.get_or_create_stream(stream("CLICKS", "clicks.>")).await?;
        if clicks.info().await?.state.messages == 0 {
            // Click i at i * 15 ms, shifted back by up to 999 ms.
            for i in 0..20_000i64 {
                let click = Click { user: format!("u{}", i % 10), at_ms: i * 15 - (i * 7919) % 1000 };
                js.publish("clicks.web", serde_json::to_vec(&click)?.into()).await?.await?;
            }
        }
        Ok(())
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4222".to_string());
    set_up(&url)?;

    let p = Pipeline::new();
    let source = JetStreamSource::<Click>::json(&url, "CLICKS", "weir-clicks")
        .event_time(|c| c.at_ms)
        .out_of_orderness(Duration::from_millis(1_000))
        .bounded();
    let (clicks, dead_letters) = read_jetstream(&p, source)?;
    let counts = clicks
        .window_into(WindowingStrategy::new(FixedWindows::of(Duration::from_millis(60_000))?))
        .map(|c: Click| ((c.user, c.at_ms.div_euclid(60_000)), 1u64))
        .combine_per_key(Sum::new());
    counts.write_jetstream_with_ids(&url, "counts.per-minute", |((user, minute), n): &((String, i64), u64)| {
        (format!("{user}@{minute}"), n.to_string().into_bytes())
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
        "{} counts published to counts.per-minute; {total} clicks counted; {} dead letters",
        counts.len(),
        dead_letters.values().len()
    );
    Ok(())
}
