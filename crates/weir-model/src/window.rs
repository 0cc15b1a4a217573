//! Where in event time: windows and window functions.
//!
//! A [`Window`] is either the [`Window::Global`] window or an
//! [`IntervalWindow`] `[start, end)`. A [`WindowFn`] assigns each element to
//! windows by its timestamp and, for merging functions such as [`Sessions`],
//! merges overlapping windows of one key. The built-in functions are
//! [`GlobalWindows`], [`FixedWindows`], [`SlidingWindows`] and [`Sessions`];
//! [`AnyWindowFn`] holds any of them, or a user's own `WindowFn`, with static
//! dispatch for the built-ins.

use std::fmt;
use std::sync::Arc;

use crate::error::ModelError;
use crate::time::{Duration, Timestamp};

/// A half-open interval of event time `[start, end)`.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct IntervalWindow {
    /// Inclusive start.
    pub start: Timestamp,
    /// Exclusive end.
    pub end: Timestamp,
}

impl IntervalWindow {
    /// The window `[start, end)`.
    pub const fn new(start: Timestamp, end: Timestamp) -> IntervalWindow {
        IntervalWindow { start, end }
    }

    /// The last timestamp inside the window: `end − 1`.
    pub const fn max_timestamp(&self) -> Timestamp {
        self.end.prev()
    }

    /// True unless one window ends at or before the other starts (windows
    /// that merely touch do not intersect).
    pub fn intersects(&self, other: &IntervalWindow) -> bool {
        !(self.end <= other.start || other.end <= self.start)
    }

    /// The smallest window covering both.
    pub fn span(&self, other: &IntervalWindow) -> IntervalWindow {
        IntervalWindow::new(self.start.min(other.start), self.end.max(other.end))
    }
}

impl fmt::Debug for IntervalWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// A window: the single global window or an interval.
///
/// ```
/// use weir_model::{Timestamp, Window};
/// let w = Window::interval(0, 10);
/// assert_eq!(w.max_timestamp(), Timestamp::from_millis(9));
/// assert_eq!(Window::Global.max_timestamp(), Timestamp::END_OF_GLOBAL_WINDOW);
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Window {
    /// The one window that covers all of time.
    Global,
    /// `[start, end)`.
    Interval(IntervalWindow),
}

impl Window {
    /// The interval window `[start, end)` in milliseconds.
    pub const fn interval(start: i64, end: i64) -> Window {
        Window::Interval(IntervalWindow::new(Timestamp::from_millis(start), Timestamp::from_millis(end)))
    }

    /// The interval window `[start, end)`.
    ///
    /// ```
    /// use weir_model::{Timestamp, Window};
    /// let t = Timestamp::from_millis;
    /// assert_eq!(Window::between(t(0), t(10)), Window::interval(0, 10));
    /// ```
    pub const fn between(start: Timestamp, end: Timestamp) -> Window {
        Window::Interval(IntervalWindow::new(start, end))
    }

    /// The latest timestamp an element of this window may have; it drives
    /// triggers, timers and garbage collection.
    pub const fn max_timestamp(&self) -> Timestamp {
        match self {
            Window::Global => Timestamp::END_OF_GLOBAL_WINDOW,
            Window::Interval(w) => w.max_timestamp(),
        }
    }

    /// The start of the window (`MIN` for the global window).
    pub const fn start(&self) -> Timestamp {
        match self {
            Window::Global => Timestamp::MIN,
            Window::Interval(w) => w.start,
        }
    }

    /// The interval, if this is an interval window.
    pub const fn as_interval(&self) -> Option<&IntervalWindow> {
        match self {
            Window::Global => None,
            Window::Interval(w) => Some(w),
        }
    }

    /// The garbage-collection time for this window: `max_timestamp +
    /// allowed_lateness`, or the end of the global window if that would be
    /// later (Java `LateDataUtils.garbageCollectionTime`, including its
    /// treatment of windows that end after the global window).
    pub fn gc_time(&self, allowed_lateness: Duration) -> Timestamp {
        let max = self.max_timestamp();
        if max > Timestamp::END_OF_GLOBAL_WINDOW - allowed_lateness {
            Timestamp::END_OF_GLOBAL_WINDOW
        } else {
            max + allowed_lateness
        }
    }
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Global => f.write_str("GlobalWindow"),
            Window::Interval(w) => w.fmt(f),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One merge decided by a merging window function: `sources` become `result`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeGroup {
    /// The windows to merge (two or more, or one that is replaced by a
    /// different result).
    pub sources: Vec<Window>,
    /// The window they become.
    pub result: Window,
}

/// Assigns elements to windows and, for merging functions, merges them.
///
/// Implement this to write your own window function. A window function may
/// only assign an element to windows whose `max_timestamp()` is at or after
/// the element's timestamp.
///
/// ```
/// use weir_model::{Timestamp, Window, WindowFn};
///
/// /// Every element goes to the window of its calendar day (UTC).
/// #[derive(Debug)]
/// struct Daily;
///
/// impl WindowFn for Daily {
///     fn assign_windows(&self, t: Timestamp, out: &mut Vec<Window>) {
///         let day = 86_400_000;
///         let start = t.millis() - t.millis().rem_euclid(day);
///         out.push(Window::interval(start, start + day));
///     }
/// }
///
/// let mut out = Vec::new();
/// Daily.assign_windows(Timestamp::from_millis(90_000_000), &mut out);
/// assert_eq!(out, vec![Window::interval(86_400_000, 172_800_000)]);
/// ```
pub trait WindowFn: Send + Sync + fmt::Debug + 'static {
    /// Append the windows for an element at `timestamp` to `out`.
    fn assign_windows(&self, timestamp: Timestamp, out: &mut Vec<Window>);

    /// Whether this function merges windows (then [`merge_windows`](Self::merge_windows)
    /// is called once per bundle and key).
    fn is_merging(&self) -> bool {
        false
    }

    /// Given the windows of one key (sorted, without duplicates), say which
    /// must be merged into which.
    fn merge_windows(&self, windows: &[Window], merges: &mut Vec<MergeGroup>) {
        let _ = (windows, merges);
    }

    /// The output time of an element under the `EARLIEST_TRANSFORMED`
    /// timestamp combiner. Defaults to the element's own timestamp.
    fn transformed_output_time(&self, window: &Window, timestamp: Timestamp) -> Timestamp {
        let _ = window;
        timestamp
    }
}

/// Every element goes to the one global window.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalWindows;

impl WindowFn for GlobalWindows {
    fn assign_windows(&self, _timestamp: Timestamp, out: &mut Vec<Window>) {
        out.push(Window::Global);
    }
}

/// Tumbling windows `[k·size + offset, (k+1)·size + offset)`.
///
/// ```
/// use weir_model::{Duration, FixedWindows, Timestamp, Window, WindowFn};
/// let fixed = FixedWindows::new(Duration::from_millis(10), Duration::ZERO).unwrap();
/// let mut out = Vec::new();
/// fixed.assign_windows(Timestamp::from_millis(-3), &mut out);
/// assert_eq!(out, vec![Window::interval(-10, 0)]); // floored: negative times work
/// assert!(FixedWindows::new(Duration::ZERO, Duration::ZERO).is_err());
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FixedWindows {
    size: i64,
    offset: i64,
}

impl FixedWindows {
    /// Fixed windows of `size`, shifted by `offset` (`0 ≤ offset < size`).
    pub fn new(size: Duration, offset: Duration) -> Result<FixedWindows, ModelError> {
        let (size, offset) = (size.millis(), offset.millis());
        let name = || format!("FixedWindows(size={size}ms, offset={offset}ms)");
        if size <= 0 {
            return Err(ModelError::InvalidWindowFn { window_fn: name(), reason: "size must be positive".into() });
        }
        if !(0..size).contains(&offset) {
            return Err(ModelError::InvalidWindowFn {
                window_fn: name(),
                reason: "offset must be in [0, size)".into(),
            });
        }
        Ok(FixedWindows { size, offset })
    }

    /// Fixed windows of `size` with no offset.
    pub fn of(size: Duration) -> Result<FixedWindows, ModelError> {
        FixedWindows::new(size, Duration::ZERO)
    }

    /// The window containing `t`.
    #[inline]
    pub fn window_for(&self, t: Timestamp) -> Window {
        let t = t.millis();
        let start = t - (t - self.offset).rem_euclid(self.size);
        Window::Interval(IntervalWindow::new(
            Timestamp::from_millis(start),
            Timestamp::from_millis(start.saturating_add(self.size)),
        ))
    }

    /// The window size.
    pub fn size(&self) -> Duration {
        Duration::from_millis(self.size)
    }
}

impl WindowFn for FixedWindows {
    fn assign_windows(&self, timestamp: Timestamp, out: &mut Vec<Window>) {
        out.push(self.window_for(timestamp));
    }
}

/// Overlapping windows of `size` starting every `period`.
///
/// ```
/// use weir_model::{Duration, SlidingWindows, Timestamp, Window, WindowFn};
/// let sliding = SlidingWindows::new(Duration::from_millis(10), Duration::from_millis(5), Duration::ZERO).unwrap();
/// let mut out = Vec::new();
/// sliding.assign_windows(Timestamp::from_millis(7), &mut out);
/// assert_eq!(out, vec![Window::interval(5, 15), Window::interval(0, 10)]);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SlidingWindows {
    size: i64,
    period: i64,
    offset: i64,
}

impl SlidingWindows {
    /// Windows of `size` every `period`, shifted by `offset` (`0 ≤ offset < period`).
    pub fn new(size: Duration, period: Duration, offset: Duration) -> Result<SlidingWindows, ModelError> {
        let (size, period, offset) = (size.millis(), period.millis(), offset.millis());
        let err = |reason: &str| ModelError::InvalidWindowFn {
            window_fn: format!("SlidingWindows(size={size}ms, period={period}ms, offset={offset}ms)"),
            reason: reason.into(),
        };
        if size <= 0 {
            return Err(err("size must be positive"));
        }
        if period <= 0 {
            return Err(err("period must be positive"));
        }
        if !(0..period).contains(&offset) {
            return Err(err("offset must be in [0, period)"));
        }
        Ok(SlidingWindows { size, period, offset })
    }

    /// Java's `SlidingWindows.of(size)` default period: 1 h if size > 1 h,
    /// else 1 min if size > 1 min, else 1 s if size > 1 s, else 1 ms.
    pub fn of(size: Duration) -> Result<SlidingWindows, ModelError> {
        let s = size.millis();
        let period = if s > 3_600_000 {
            3_600_000
        } else if s > 60_000 {
            60_000
        } else if s > 1_000 {
            1_000
        } else {
            1
        };
        SlidingWindows::new(size, Duration::from_millis(period), Duration::ZERO)
    }
}

impl WindowFn for SlidingWindows {
    fn assign_windows(&self, timestamp: Timestamp, out: &mut Vec<Window>) {
        let t = timestamp.millis();
        let last = t - (t - self.offset).rem_euclid(self.period);
        let mut start = last;
        while start > t - self.size {
            out.push(Window::Interval(IntervalWindow::new(
                Timestamp::from_millis(start),
                Timestamp::from_millis(start.saturating_add(self.size)),
            )));
            start -= self.period;
        }
    }
}

/// Session windows: each element opens `[t, t + gap)`; overlapping windows
/// of a key merge.
///
/// ```
/// use weir_model::{Duration, Sessions, Window, WindowFn};
/// let sessions = Sessions::with_gap(Duration::from_millis(10)).unwrap();
/// let mut merges = Vec::new();
/// sessions.merge_windows(&[Window::interval(1, 11), Window::interval(5, 15), Window::interval(30, 40)], &mut merges);
/// assert_eq!(merges.len(), 1);
/// assert_eq!(merges[0].result, Window::interval(1, 15));
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Sessions {
    gap: i64,
}

impl Sessions {
    /// Sessions that close after `gap` without data.
    pub fn with_gap(gap: Duration) -> Result<Sessions, ModelError> {
        if gap.millis() <= 0 {
            return Err(ModelError::InvalidWindowFn {
                window_fn: format!("Sessions(gap={}ms)", gap.millis()),
                reason: "gap must be positive".into(),
            });
        }
        Ok(Sessions { gap: gap.millis() })
    }
}

impl WindowFn for Sessions {
    fn assign_windows(&self, timestamp: Timestamp, out: &mut Vec<Window>) {
        out.push(Window::Interval(IntervalWindow::new(timestamp, timestamp + Duration::from_millis(self.gap))));
    }

    fn is_merging(&self) -> bool {
        true
    }

    fn merge_windows(&self, windows: &[Window], merges: &mut Vec<MergeGroup>) {
        merge_overlapping_intervals(windows, merges)
    }
}

/// Beam's `MergeOverlappingIntervalWindows`: sweep the windows in order and
/// merge every run that overlaps (strictly) into its span. Usable by custom
/// merging window functions.
pub fn merge_overlapping_intervals(windows: &[Window], merges: &mut Vec<MergeGroup>) {
    let mut sorted: Vec<IntervalWindow> = windows.iter().filter_map(|w| w.as_interval().copied()).collect();
    sorted.sort();
    let mut group: Vec<Window> = Vec::new();
    let mut union: Option<IntervalWindow> = None;
    let mut flush = |group: &mut Vec<Window>, union: Option<IntervalWindow>| {
        if group.len() > 1 {
            merges.push(MergeGroup { sources: std::mem::take(group), result: Window::Interval(union.unwrap()) });
        }
        group.clear();
    };
    for w in sorted {
        match union {
            Some(u) if u.intersects(&w) => {
                union = Some(u.span(&w));
                group.push(Window::Interval(w));
            }
            _ => {
                flush(&mut group, union);
                union = Some(w);
                group.push(Window::Interval(w));
            }
        }
    }
    flush(&mut group, union);
}

/// Any window function: a built-in one (dispatched statically) or a custom
/// [`WindowFn`].
#[derive(Clone, Debug)]
pub enum AnyWindowFn {
    /// [`GlobalWindows`].
    Global(GlobalWindows),
    /// [`FixedWindows`].
    Fixed(FixedWindows),
    /// [`SlidingWindows`].
    Sliding(SlidingWindows),
    /// [`Sessions`].
    Sessions(Sessions),
    /// A user-defined window function.
    Custom(Arc<dyn WindowFn>),
}

impl AnyWindowFn {
    /// Wrap a user-defined window function.
    pub fn custom(f: impl WindowFn) -> AnyWindowFn {
        AnyWindowFn::Custom(Arc::new(f))
    }
}

impl Default for AnyWindowFn {
    fn default() -> Self {
        AnyWindowFn::Global(GlobalWindows)
    }
}

macro_rules! dispatch {
    ($self:ident, $f:ident => $e:expr) => {
        match $self {
            AnyWindowFn::Global($f) => $e,
            AnyWindowFn::Fixed($f) => $e,
            AnyWindowFn::Sliding($f) => $e,
            AnyWindowFn::Sessions($f) => $e,
            AnyWindowFn::Custom($f) => $e,
        }
    };
}

impl WindowFn for AnyWindowFn {
    #[inline]
    fn assign_windows(&self, timestamp: Timestamp, out: &mut Vec<Window>) {
        dispatch!(self, f => f.assign_windows(timestamp, out))
    }
    fn is_merging(&self) -> bool {
        dispatch!(self, f => f.is_merging())
    }
    fn merge_windows(&self, windows: &[Window], merges: &mut Vec<MergeGroup>) {
        dispatch!(self, f => f.merge_windows(windows, merges))
    }
    fn transformed_output_time(&self, window: &Window, timestamp: Timestamp) -> Timestamp {
        dispatch!(self, f => f.transformed_output_time(window, timestamp))
    }
}

impl From<GlobalWindows> for AnyWindowFn {
    fn from(f: GlobalWindows) -> Self {
        AnyWindowFn::Global(f)
    }
}
impl From<FixedWindows> for AnyWindowFn {
    fn from(f: FixedWindows) -> Self {
        AnyWindowFn::Fixed(f)
    }
}
impl From<SlidingWindows> for AnyWindowFn {
    fn from(f: SlidingWindows) -> Self {
        AnyWindowFn::Sliding(f)
    }
}
impl From<Sessions> for AnyWindowFn {
    fn from(f: Sessions) -> Self {
        AnyWindowFn::Sessions(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(f: &impl WindowFn, t: i64) -> Vec<Window> {
        let mut out = Vec::new();
        f.assign_windows(Timestamp::from_millis(t), &mut out);
        out
    }

    #[test]
    fn fixed_assignment_with_offset_and_negative_times() {
        let f = FixedWindows::new(Duration::from_millis(10), Duration::from_millis(3)).unwrap();
        assert_eq!(assign(&f, 3), vec![Window::interval(3, 13)]);
        assert_eq!(assign(&f, 2), vec![Window::interval(-7, 3)]);
        assert_eq!(assign(&f, -7), vec![Window::interval(-7, 3)]);
        assert_eq!(assign(&f, -8), vec![Window::interval(-17, -7)]);
        let f = FixedWindows::of(Duration::from_millis(10)).unwrap();
        assert_eq!(assign(&f, -10), vec![Window::interval(-10, 0)]);
        assert_eq!(assign(&f, -1), vec![Window::interval(-10, 0)]);
        assert_eq!(assign(&f, 0), vec![Window::interval(0, 10)]);
    }

    #[test]
    fn invalid_parameters_are_errors() {
        assert!(FixedWindows::new(Duration::from_millis(10), Duration::from_millis(10)).is_err());
        assert!(FixedWindows::new(Duration::from_millis(10), Duration::from_millis(-1)).is_err());
        assert!(FixedWindows::new(Duration::from_millis(-5), Duration::ZERO).is_err());
        assert!(SlidingWindows::new(Duration::from_millis(10), Duration::ZERO, Duration::ZERO).is_err());
        assert!(
            SlidingWindows::new(Duration::from_millis(10), Duration::from_millis(5), Duration::from_millis(5)).is_err()
        );
        assert!(Sessions::with_gap(Duration::ZERO).is_err());
        let msg = FixedWindows::new(Duration::ZERO, Duration::ZERO).unwrap_err().to_string();
        assert!(msg.contains("size must be positive"), "{msg}");
    }

    #[test]
    fn sliding_counts() {
        let s = SlidingWindows::new(Duration::from_millis(10), Duration::from_millis(3), Duration::ZERO).unwrap();
        // size/period = 3.33: 3 or 4 windows depending on t
        for t in -20..20 {
            let ws = assign(&s, t);
            assert!(ws.len() == 3 || ws.len() == 4, "t={t} {ws:?}");
            for w in &ws {
                let iv = w.as_interval().unwrap();
                assert!(iv.start.millis() <= t && t < iv.end.millis());
                assert_eq!(iv.start.millis().rem_euclid(3), 0);
            }
        }
        // period > size: some timestamps have no window
        let s = SlidingWindows::new(Duration::from_millis(2), Duration::from_millis(5), Duration::ZERO).unwrap();
        assert_eq!(assign(&s, 0), vec![Window::interval(0, 2)]);
        assert_eq!(assign(&s, 3), vec![]);
        assert_eq!(assign(&s, -4), vec![Window::interval(-5, -3)]);
        assert_eq!(assign(&s, -2), vec![]);
        assert_eq!(assign(&s, -5), vec![Window::interval(-5, -3)]);
    }

    #[test]
    fn sliding_default_period() {
        let s = SlidingWindows::of(Duration::from_mins(10)).unwrap();
        assert_eq!(s.period, 60_000);
        let s = SlidingWindows::of(Duration::from_hours(2)).unwrap();
        assert_eq!(s.period, 3_600_000);
        let s = SlidingWindows::of(Duration::from_millis(500)).unwrap();
        assert_eq!(s.period, 1);
    }

    #[test]
    fn interval_relations() {
        let a = IntervalWindow::new(Timestamp::from_millis(0), Timestamp::from_millis(10));
        let b = IntervalWindow::new(Timestamp::from_millis(10), Timestamp::from_millis(20));
        let c = IntervalWindow::new(Timestamp::from_millis(9), Timestamp::from_millis(12));
        assert!(!a.intersects(&b));
        assert!(a.intersects(&c) && b.intersects(&c));
        assert_eq!(a.span(&b), IntervalWindow::new(Timestamp::from_millis(0), Timestamp::from_millis(20)));
    }

    #[test]
    fn session_merging_sweeps() {
        let s = Sessions::with_gap(Duration::from_millis(10)).unwrap();
        let mut merges = Vec::new();
        // touching windows do not merge; chains do.
        s.merge_windows(
            &[Window::interval(0, 10), Window::interval(10, 20), Window::interval(15, 25), Window::interval(24, 34)],
            &mut merges,
        );
        assert_eq!(merges.len(), 1);
        assert_eq!(merges[0].result, Window::interval(10, 34));
        assert_eq!(merges[0].sources.len(), 3);
    }

    #[test]
    fn gc_time_clamps() {
        assert_eq!(Window::interval(0, 10).gc_time(Duration::from_millis(5)), Timestamp::from_millis(14));
        assert_eq!(Window::Global.gc_time(Duration::from_hours(100)), Timestamp::END_OF_GLOBAL_WINDOW);
        let w = Window::Interval(IntervalWindow::new(Timestamp::MIN, Timestamp::MAX));
        // Java clamps every GC time to the end of the global window.
        assert_eq!(w.gc_time(Duration::from_secs(5)), Timestamp::END_OF_GLOBAL_WINDOW);
        let late = Window::interval(0, Timestamp::END_OF_GLOBAL_WINDOW.millis() - 10);
        assert_eq!(late.gc_time(Duration::from_hours(1)), Timestamp::END_OF_GLOBAL_WINDOW);
    }
}
