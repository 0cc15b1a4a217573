//! The timely timestamp: the only place that knows how Weir's time is
//! encoded in timely's progress tracking.
//!
//! The timestamp is `Product<epoch, watermark>` (`shared/design/FINDINGS.md`):
//! the outer coordinate is the checkpoint epoch (always 0 without
//! checkpoints), the inner one the watermark, a `u64` that is the
//! `Timestamp`'s milliseconds shifted to start at 0. Under the product's
//! partial order an operator's input watermark is the least inner
//! coordinate of its frontier (an empty frontier is +infinity), and epoch
//! `e` is complete at an operator once every element of its frontier has
//! an outer coordinate above `e`.

use std::time::{SystemTime, UNIX_EPOCH};

use timely::order::Product;
use weir_model::time::MIN_TIMESTAMP_MILLIS;
use weir_model::Timestamp;

/// The timely time: (epoch, encoded watermark).
pub(crate) type Time = Product<u64, u64>;

/// The timely time of a watermark in an epoch.
pub(crate) fn at(epoch: u64, wm: Timestamp) -> Time {
    Product::new(epoch, enc(wm))
}

/// The timely time of a watermark.
pub(crate) fn enc(t: Timestamp) -> u64 {
    (t.millis() - MIN_TIMESTAMP_MILLIS) as u64
}

/// The watermark of a timely time.
pub(crate) fn dec(t: u64) -> Timestamp {
    Timestamp::from_millis((t as i64).saturating_add(MIN_TIMESTAMP_MILLIS))
}

/// The watermark a frontier stands for (`MAX` when it is empty).
pub(crate) fn frontier_watermark<'a>(frontier: impl IntoIterator<Item = &'a Time>) -> Timestamp {
    frontier.into_iter().map(|t| t.inner).min().map_or(Timestamp::MAX, dec)
}

/// The oldest epoch a frontier may still deliver (`u64::MAX` when it is
/// empty): every epoch before it is complete.
pub(crate) fn frontier_epoch<'a>(frontier: impl IntoIterator<Item = &'a Time>) -> u64 {
    frontier.into_iter().map(|t| t.outer).min().unwrap_or(u64::MAX)
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
        // A later epoch at a lower watermark holds the watermark back; the
        // oldest epoch is the least outer coordinate.
        let f = [at(3, Timestamp::from_millis(100)), at(4, Timestamp::from_millis(50))];
        assert_eq!(frontier_watermark(&f), Timestamp::from_millis(50));
        assert_eq!(frontier_epoch(&f), 3);
        assert_eq!(frontier_epoch(&[]), u64::MAX);
    }
}
