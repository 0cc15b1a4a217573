//! Throughput of the grouping state machine on one thread, for common
//! strategies: events per second through `GroupAlsoByWindow` (window
//! assignment, holds, triggers, combining, firing and GC), with the input
//! generated in memory. A measurement, not a test.
//!
//! Run: `cargo run --release -p weir-model --example grouping_throughput [events]`

use std::time::Instant;

use weir_model::*;

struct Sum;
impl Aggregator<u64> for Sum {
    type Acc = u64;
    type Out = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, v: u64) {
        *acc += v
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other
    }
    fn extract(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Events: key = i % keys, timestamp advancing 1 ms per event with a little
/// disorder; the watermark trails by 5 s and advances every 1000 events.
fn measure(name: &str, strategy: WindowingStrategy, events: u64, keys: u64) -> Result<(), ModelError> {
    let mut g = GroupAlsoByWindow::new(strategy, Sum)?;
    let mut out = Vec::new();
    let mut panes = 0u64;
    let start = Instant::now();
    let mut bundle: Vec<(u64, Timestamp)> = Vec::with_capacity(1);
    for i in 0..events {
        let ts = i as i64 - ((i * 7919) % 1000) as i64;
        bundle.clear();
        bundle.push((1, Timestamp::from_millis(ts)));
        g.process_bundle(&(i % keys), bundle.drain(..), &mut out);
        if i % 1000 == 999 {
            g.advance_processing_time(Timestamp::from_millis(i as i64), &mut out);
            g.advance_input_watermark(Timestamp::from_millis(i as i64 - 5_000), &mut out);
            panes += out.len() as u64;
            out.clear();
        }
    }
    g.advance_input_watermark(Timestamp::MAX, &mut out);
    panes += out.len() as u64;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<58} {:>12.0} events/s  ({events} events, {keys} keys, {panes} panes, {secs:.2} s)",
        events as f64 / secs
    );
    Ok(())
}

fn main() -> Result<(), ModelError> {
    let events: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    let ms = Duration::from_millis;
    measure("fixed 10s, default trigger, sum", WindowingStrategy::new(FixedWindows::of(ms(10_000))?), events, 1000)?;
    measure(
        "sliding 10s every 2s, default trigger, sum",
        WindowingStrategy::new(SlidingWindows::new(ms(10_000), ms(2_000), Duration::ZERO)?),
        events,
        1000,
    )?;
    measure(
        "fixed 10s, early every 100 elements + late, accumulating",
        WindowingStrategy::new(FixedWindows::of(ms(10_000))?)
            .trigger(
                Trigger::after_watermark()
                    .with_early_firings(Trigger::after_count(100))
                    .with_late_firings(Trigger::after_count(1)),
            )
            .accumulation(AccumulationMode::Accumulating)
            .allowed_lateness(ms(10_000)),
        events,
        1000,
    )?;
    measure(
        "sessions gap 2s, default trigger, sum",
        WindowingStrategy::new(Sessions::with_gap(ms(2_000))?),
        events,
        1000,
    )?;
    measure(
        "global, repeatedly every 10 elements, sum",
        WindowingStrategy::new(GlobalWindows).trigger(Trigger::repeatedly(Trigger::after_count(10))),
        events,
        1000,
    )?;
    Ok(())
}
