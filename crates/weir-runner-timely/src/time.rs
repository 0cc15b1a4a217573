//! The timely timestamp: the only place that knows how Weir's time is
//! encoded in timely's progress tracking.
//!
//! Today the timestamp is the watermark alone: a `u64` that is the
//! `Timestamp`'s milliseconds shifted to start at 0, so that timely's
//! frontiers are watermarks and an empty frontier is +infinity. The
//! fault-tolerance work turns it into `Product<epoch, watermark>`
//! (`shared/design/FINDINGS.md`); only this module and the drivers'
//! capability handling change then.

use std::time::{SystemTime, UNIX_EPOCH};

use weir_model::time::MIN_TIMESTAMP_MILLIS;
use weir_model::Timestamp;

/// The timely time of a watermark.
pub(crate) fn enc(t: Timestamp) -> u64 {
    (t.millis() - MIN_TIMESTAMP_MILLIS) as u64
}

/// The watermark of a timely time.
pub(crate) fn dec(t: u64) -> Timestamp {
    Timestamp::from_millis((t as i64).saturating_add(MIN_TIMESTAMP_MILLIS))
}

/// The watermark a frontier stands for (`MAX` when it is empty).
pub(crate) fn frontier_watermark<'a>(frontier: impl IntoIterator<Item = &'a u64>) -> Timestamp {
    frontier.into_iter().min().map_or(Timestamp::MAX, |t| dec(*t))
}

/// The system clock as a processing time.
pub(crate) fn wall_clock() -> Timestamp {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Timestamp::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_order_and_round_trips() {
        let ts = [Timestamp::MIN, Timestamp::from_millis(-1), Timestamp::from_millis(0), Timestamp::MAX];
        for w in ts.windows(2) {
            assert!(enc(w[0]) < enc(w[1]));
        }
        for t in ts {
            assert_eq!(dec(enc(t)), t);
        }
        assert_eq!(frontier_watermark(&[]), Timestamp::MAX);
    }
}
