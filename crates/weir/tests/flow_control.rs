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
    fn read(&self, split: &mut (u64, u64), max: usize, out: &mut SourceOutput<'_, '_, u64>) -> ReadResult {
        let end = (split.0 + max as u64).min(split.1);
        for i in split.0..end {
            out.push(i, Timestamp::from_millis(i as i64));
        }
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

/// Two splits of one source over the same stretch of event time, one read
/// fast and one slowly (a few records per read, with a pause).
struct Uneven;

const SPAN_MS: u64 = 200_000;

impl UnboundedSource for Uneven {
    type Item = u64;
    /// (next timestamp, step between records, records per read)
    type Split = (u64, u64, usize);
    fn splits(&self) -> Vec<(String, (u64, u64, usize))> {
        vec![("fast".into(), (0, 1, usize::MAX)), ("slow".into(), (0, 100, 10))]
    }
    fn read(&self, split: &mut (u64, u64, usize), max: usize, out: &mut SourceOutput<'_, '_, u64>) -> ReadResult {
        if split.2 != usize::MAX {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for _ in 0..max.min(split.2) {
            if split.0 >= SPAN_MS {
                return ReadResult::Done;
            }
            out.push(split.0, Timestamp::from_millis(split.0 as i64));
            split.0 += split.1;
        }
        ReadResult::Data
    }
}

/// With watermark alignment, a source instance never runs more than the
/// allowed drift (plus one poll's worth of event time) ahead of the slowest
/// instance of the same source: the watermarks published while the pipeline
/// runs are sampled and compared (without alignment they drift about 100 s
/// apart here). Nothing is lost.
#[test]
fn watermark_alignment_keeps_source_instances_in_step() {
    let drift = Duration::from_millis(2_000);
    let p = Pipeline::new();
    let count = p
        .read_unbounded(Uneven, WatermarkPolicy::bounded_out_of_orderness(Duration::ZERO))
        .map(|x| ((), x))
        .count_per_key()
        .collect();
    let metrics = p.metrics();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let sampler = std::thread::spawn(move || {
        let mut worst = 0i64;
        while !d.load(std::sync::atomic::Ordering::Relaxed) {
            let wms: Vec<i64> = metrics
                .watermarks()
                .into_iter()
                .filter(|w| w.transform == "ReadUnbounded" && w.output > Timestamp::MIN && w.output < Timestamp::MAX)
                .map(|w| w.output.millis())
                .collect();
            if wms.len() == 2 {
                worst = worst.max(wms[0].abs_diff(wms[1]) as i64);
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        worst
    });
    p.run_with(&TimelyRunner::threads(2).with_max_watermark_drift(drift)).unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = sampler.join().unwrap();
    assert_eq!(count.values(), vec![((), SPAN_MS + SPAN_MS / 100)], "every record counted");
    // One poll reads at most 8192 records of the fast split: 8.192 s here.
    assert!(worst <= drift.millis() + 8_192, "source instances drifted {worst} ms apart");
}
