//! Bounded memory on the Timely runner: a fast source feeding a slow
//! operator through a skewed exchange (every record to one worker) must not
//! flood it. The runner pauses sources while more than `max_in_flight`
//! records are in flight in the process; nothing is lost.

use weir::pipeline::{ReadResult, UnboundedSource, WatermarkPolicy};
use weir::prelude::*;

const TOTAL: u64 = 1_000_000;
const LIMIT: u64 = 50_000;

struct Generator;

impl UnboundedSource for Generator {
    type Item = u64;
    type Split = (u64, u64);
    fn splits(&self) -> Vec<(String, (u64, u64))> {
        vec![("even".into(), (0, TOTAL / 2)), ("odd".into(), (TOTAL / 2, TOTAL))]
    }
    fn read(&self, split: &mut (u64, u64), max: usize, out: &mut Vec<(u64, Timestamp)>) -> ReadResult {
        let end = (split.0 + max as u64).min(split.1);
        out.extend((split.0..end).map(|i| (i, Timestamp::from_millis(i as i64))));
        split.0 = end;
        if split.0 == split.1 {
            ReadResult::Done
        } else {
            ReadResult::Data
        }
    }
}

#[test]
fn a_fast_source_does_not_flood_a_slow_skewed_operator() {
    let p = Pipeline::new();
    let count = p
        .read_unbounded(Generator, WatermarkPolicy::bounded_out_of_orderness(Duration::ZERO))
        .map(|x| (0u8, x))
        .reshuffle_per_key()
        .map(|(_, x): (u8, u64)| {
            // Slow: some busy work per record.
            let mut h = x;
            for _ in 0..1000 {
                h = h.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(h)
        })
        .combine_globally(Count)
        .collect();
    let result = p.run_with(&TimelyRunner::threads(2).with_max_in_flight(LIMIT)).unwrap();
    assert_eq!(count.values(), vec![TOTAL], "nothing lost");
    let peak = result.peak_in_flight.unwrap();
    eprintln!("peak in flight or parked: {peak}");
    // In flight stays under the limit (each source may overshoot by up to two
    // batches); records parked waiting for progress are bounded per input
    // port (16384), and this pipeline has six input ports.
    let bound = LIMIT + 4 * 8192 + 6 * 16384;
    assert!(peak <= bound, "peak {peak} records in flight or parked, bound {bound}: the source was not held back");
    assert!(peak > 0);
}
