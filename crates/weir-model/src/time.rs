//! Event and processing time: [`Timestamp`] and [`Duration`], both in
//! milliseconds, with arithmetic that clamps instead of overflowing.

use std::fmt;
use std::ops::{Add, Sub};

use crate::error::ModelError;

/// A point in time, in milliseconds since the Unix epoch, always within
/// [`Timestamp::MIN`] ..= [`Timestamp::MAX`].
///
/// `MIN` stands for "minus infinity" (the watermark before any data) and `MAX`
/// for "plus infinity" (the watermark once input is done). The bounds are
/// Beam's: chosen so that the value in microseconds still fits in an `i64`.
///
/// ```
/// use weir_model::{Duration, Timestamp};
/// let t = Timestamp::from_millis(1_000);
/// assert_eq!((t + Duration::from_secs(2)).millis(), 3_000);
/// // Arithmetic clamps at the bounds instead of overflowing.
/// assert_eq!(Timestamp::MAX + Duration::from_millis(5), Timestamp::MAX);
/// assert_eq!(Timestamp::from_millis(i64::MIN), Timestamp::MIN);
/// ```
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Timestamp(i64);

/// The smallest representable timestamp in milliseconds (Beam's `MIN_TIMESTAMP`).
pub const MIN_TIMESTAMP_MILLIS: i64 = -9_223_372_036_854_775;
/// The largest representable timestamp in milliseconds (Beam's `MAX_TIMESTAMP`).
pub const MAX_TIMESTAMP_MILLIS: i64 = 9_223_372_036_854_775;
const ONE_DAY_MILLIS: i64 = 86_400_000;

impl Timestamp {
    /// Minus infinity: the watermark before any data.
    pub const MIN: Timestamp = Timestamp(MIN_TIMESTAMP_MILLIS);
    /// Plus infinity: the watermark once all input has been seen.
    pub const MAX: Timestamp = Timestamp(MAX_TIMESTAMP_MILLIS);
    /// The max timestamp of the global window: `MAX − 1 day`, leaving room
    /// for timers and garbage-collection times after it.
    pub const END_OF_GLOBAL_WINDOW: Timestamp = Timestamp(MAX_TIMESTAMP_MILLIS - ONE_DAY_MILLIS);

    /// A timestamp from milliseconds, clamped into `[MIN, MAX]`.
    pub const fn from_millis(millis: i64) -> Timestamp {
        if millis < MIN_TIMESTAMP_MILLIS {
            Timestamp::MIN
        } else if millis > MAX_TIMESTAMP_MILLIS {
            Timestamp::MAX
        } else {
            Timestamp(millis)
        }
    }

    /// A timestamp for an *element*: it must lie in `[MIN, MAX)`.
    ///
    /// ```
    /// use weir_model::Timestamp;
    /// assert!(Timestamp::element(5).is_ok());
    /// assert!(Timestamp::element(Timestamp::MAX.millis()).is_err());
    /// ```
    pub fn element(millis: i64) -> Result<Timestamp, ModelError> {
        if (MIN_TIMESTAMP_MILLIS..MAX_TIMESTAMP_MILLIS).contains(&millis) {
            Ok(Timestamp(millis))
        } else {
            Err(ModelError::TimestampOutOfRange { millis })
        }
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// The timestamp one millisecond earlier (clamped).
    pub const fn prev(self) -> Timestamp {
        Timestamp::from_millis(self.0 - 1)
    }

    /// The timestamp one millisecond later (clamped).
    pub const fn next(self) -> Timestamp {
        Timestamp::from_millis(self.0 + 1)
    }

    /// The signed distance `self − earlier`.
    pub const fn since(self, earlier: Timestamp) -> Duration {
        Duration(self.0 - earlier.0)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Timestamp::MIN => f.write_str("-inf"),
            Timestamp::MAX => f.write_str("+inf"),
            Timestamp::END_OF_GLOBAL_WINDOW => f.write_str("end-of-global-window"),
            Timestamp(t) => write!(f, "{t}"),
        }
    }
}

/// A signed span of time in milliseconds.
///
/// ```
/// use weir_model::Duration;
/// assert_eq!(Duration::from_mins(2), Duration::from_secs(120));
/// ```
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Duration(i64);

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(0);
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: i64) -> Duration {
        Duration(ms)
    }
    /// A duration of `s` seconds (saturating).
    pub const fn from_secs(s: i64) -> Duration {
        Duration(s.saturating_mul(1_000))
    }
    /// A duration of `m` minutes (saturating).
    pub const fn from_mins(m: i64) -> Duration {
        Duration(m.saturating_mul(60_000))
    }
    /// A duration of `h` hours (saturating).
    pub const fn from_hours(h: i64) -> Duration {
        Duration(h.saturating_mul(3_600_000))
    }
    /// A duration of `d` days of 24 hours (saturating).
    ///
    /// ```
    /// use weir_model::Duration;
    /// assert_eq!(Duration::from_days(2), Duration::from_hours(48));
    /// ```
    pub const fn from_days(d: i64) -> Duration {
        Duration(d.saturating_mul(86_400_000))
    }
    /// The length in milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// In days, hours, minutes and seconds, exactly: `1h30m`, `2.5s`, `250ms`,
/// `1d2h`, `0s`.
///
/// ```
/// use weir_model::Duration;
/// let shown = |ms: i64| Duration::from_millis(ms).to_string();
/// assert_eq!(shown(0), "0s");
/// assert_eq!(shown(250), "250ms");
/// assert_eq!(shown(2_500), "2.5s");
/// assert_eq!(shown(90_000), "1m30s");
/// assert_eq!(shown(5_400_000), "1h30m");
/// assert_eq!(shown(93_600_001), "1d2h0.001s");
/// assert_eq!(shown(-60_000), "-1m");
/// ```
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        if self.0 < 0 {
            f.write_str("-")?;
        }
        let ms = self.0.unsigned_abs();
        let (d, h, m) = (ms / 86_400_000, ms / 3_600_000 % 24, ms / 60_000 % 60);
        let (s, rest) = (ms / 1_000 % 60, ms % 1_000);
        for (n, unit) in [(d, "d"), (h, "h"), (m, "m")] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        match (s, rest) {
            (0, 0) => Ok(()),
            (0, rest) if ms < 1_000 => write!(f, "{rest}ms"),
            (s, 0) => write!(f, "{s}s"),
            (s, rest) => write!(f, "{s}.{}s", format!("{rest:03}").trim_end_matches('0')),
        }
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// Clamped addition: the result stays within `[MIN, MAX]`.
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp::from_millis(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    /// Clamped subtraction: the result stays within `[MIN, MAX]`.
    fn sub(self, rhs: Duration) -> Timestamp {
        Timestamp::from_millis(self.0.saturating_sub(rhs.0))
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration(self.0.saturating_add(rhs.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_beam() {
        assert_eq!(Timestamp::MIN.millis(), -9_223_372_036_854_775);
        assert_eq!(Timestamp::MAX.millis(), 9_223_372_036_854_775);
        assert_eq!(Timestamp::END_OF_GLOBAL_WINDOW.millis(), 9_223_371_950_454_775);
        assert!(Timestamp::MIN.millis().checked_mul(1000).is_some());
        assert!(Timestamp::MAX.millis().checked_mul(1000).is_some());
    }

    #[test]
    fn arithmetic_clamps() {
        assert_eq!(Timestamp::END_OF_GLOBAL_WINDOW + Duration::from_hours(48), Timestamp::MAX);
        assert_eq!(Timestamp::MIN - Duration::from_millis(1), Timestamp::MIN);
        assert_eq!(Timestamp::MAX + Duration::from_millis(i64::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::MIN + Duration::from_millis(i64::MIN), Timestamp::MIN);
        assert_eq!(Timestamp::from_millis(10) - Duration::from_millis(3), Timestamp::from_millis(7));
    }

    #[test]
    fn element_range() {
        assert!(Timestamp::element(MIN_TIMESTAMP_MILLIS).is_ok());
        assert!(Timestamp::element(MIN_TIMESTAMP_MILLIS - 1).is_err());
        assert!(Timestamp::element(MAX_TIMESTAMP_MILLIS - 1).is_ok());
        assert!(matches!(Timestamp::element(MAX_TIMESTAMP_MILLIS), Err(ModelError::TimestampOutOfRange { .. })));
    }
}
