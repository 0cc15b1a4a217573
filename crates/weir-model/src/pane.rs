//! How refinements relate: [`PaneInfo`], the description every pane carries.

use std::fmt;

/// When a pane fired relative to the watermark.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Timing {
    /// Before the input watermark passed the end of the window (speculative).
    Early,
    /// The one pane produced when the watermark passed the end of the window.
    OnTime,
    /// After the on-time pane, or after the output watermark passed the window.
    Late,
    /// Not produced by a trigger (elements that never went through a grouping).
    Unknown,
}

impl Timing {
    fn ordinal(self) -> u8 {
        match self {
            Timing::Early => 0,
            Timing::OnTime => 1,
            Timing::Late => 2,
            Timing::Unknown => 3,
        }
    }
    fn from_ordinal(o: u8) -> Timing {
        match o & 3 {
            0 => Timing::Early,
            1 => Timing::OnTime,
            2 => Timing::Late,
            _ => Timing::Unknown,
        }
    }
}

/// Describes one pane of a window: its position among the window's panes and
/// its timing. Mirrors Beam's `PaneInfo`.
///
/// ```
/// use weir_model::{PaneInfo, Timing};
/// let p = PaneInfo::new(true, false, Timing::Early, 0, -1);
/// let bytes = p.encode();
/// assert_eq!(PaneInfo::decode(&bytes).unwrap(), (p, bytes.len()));
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PaneInfo {
    /// First pane of the window (`index == 0`).
    pub is_first: bool,
    /// The window will produce no further pane.
    pub is_last: bool,
    /// Early, on time, late or unknown.
    pub timing: Timing,
    /// 0-based count of panes emitted before this one for the key and window.
    pub index: i64,
    /// −1 for early panes, else the count of earlier non-early panes.
    pub nonspeculative_index: i64,
}

impl PaneInfo {
    /// The pane of elements that never went through a trigger: first, last,
    /// unknown timing, indices 0.
    pub const NO_FIRING: PaneInfo =
        PaneInfo { is_first: true, is_last: true, timing: Timing::Unknown, index: 0, nonspeculative_index: 0 };

    /// A pane description.
    pub const fn new(is_first: bool, is_last: bool, timing: Timing, index: i64, nonspeculative_index: i64) -> Self {
        PaneInfo { is_first, is_last, timing, index, nonspeculative_index }
    }

    /// The `index`-th pane of a window, EARLY (speculative: its
    /// non-speculative index is -1), first if `index` is 0.
    pub const fn early(index: i64, is_last: bool) -> Self {
        PaneInfo::new(index == 0, is_last, Timing::Early, index, -1)
    }
    /// The `index`-th pane of a window, ON_TIME, the `nonspeculative_index`-th
    /// non-early pane.
    pub const fn on_time(index: i64, nonspeculative_index: i64, is_last: bool) -> Self {
        PaneInfo::new(index == 0, is_last, Timing::OnTime, index, nonspeculative_index)
    }
    /// The `index`-th pane of a window, LATE, the `nonspeculative_index`-th
    /// non-early pane.
    pub const fn late(index: i64, nonspeculative_index: i64, is_last: bool) -> Self {
        PaneInfo::new(index == 0, is_last, Timing::Late, index, nonspeculative_index)
    }

    fn header(&self) -> u8 {
        (self.is_first as u8) | ((self.is_last as u8) << 1) | (self.timing.ordinal() << 2)
    }

    /// Beam's wire encoding: one header byte (bit 0 first, bit 1 last, bits
    /// 2–3 timing, high nibble the encoding) followed by zero, one or two
    /// var-int indices, exactly as Java's `PaneInfoCoder`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3);
        self.encode_into(&mut out);
        out
    }

    /// Append the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let header = self.header();
        if (self.index == 0 && self.nonspeculative_index == 0) || self.timing == Timing::Unknown {
            out.push(header);
        } else if self.index == self.nonspeculative_index {
            out.push(header | 0x10);
            write_varint(self.index as u64, out);
        } else {
            out.push(header | 0x20);
            write_varint(self.index as u64, out);
            write_varint(self.nonspeculative_index as u64, out);
        }
    }

    /// Decode a pane from the front of `bytes`; returns it and the number of
    /// bytes read, or `None` if the bytes are not a valid encoding.
    pub fn decode(bytes: &[u8]) -> Option<(PaneInfo, usize)> {
        let header = *bytes.first()?;
        let is_first = header & 1 != 0;
        let is_last = header & 2 != 0;
        let timing = Timing::from_ordinal(header >> 2);
        let mut pos = 1;
        let (index, nsi) = match header >> 4 {
            0 => (0, if timing == Timing::Early { -1 } else { 0 }),
            1 => {
                let i = read_varint(bytes, &mut pos)? as i64;
                (i, i)
            }
            2 => {
                let i = read_varint(bytes, &mut pos)? as i64;
                let n = read_varint(bytes, &mut pos)? as i64;
                (i, n)
            }
            _ => return None,
        };
        Some((PaneInfo { is_first, is_last, timing, index, nonspeculative_index: nsi }, pos))
    }
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

impl fmt::Debug for PaneInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} index={} nsi={}", self.timing, self.index, self.nonspeculative_index)?;
        if self.is_first {
            f.write_str(" first")?;
        }
        if self.is_last {
            f.write_str(" last")?;
        }
        Ok(())
    }
}

impl fmt::Display for PaneInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_java_pane_info_coder() {
        // FIRST encoding: a single byte.
        assert_eq!(PaneInfo::NO_FIRING.encode(), vec![0x0f]);
        assert_eq!(PaneInfo::new(true, true, Timing::OnTime, 0, 0).encode(), vec![0x07]);
        // ONE_INDEX: index == nsi.
        assert_eq!(PaneInfo::new(false, false, Timing::Late, 1, 1).encode(), vec![0x18, 0x01]);
        // TWO_INDICES: early panes carry nsi = -1 as a 10-byte var-int.
        let early = PaneInfo::new(true, false, Timing::Early, 0, -1).encode();
        assert_eq!(early[0], 0x21);
        assert_eq!(early.len(), 1 + 1 + 10);
        let late = PaneInfo::new(false, true, Timing::Late, 300, 2).encode();
        assert_eq!(late, vec![0x2a, 0xac, 0x02, 0x02]);
    }

    #[test]
    fn roundtrip() {
        for timing in [Timing::Early, Timing::OnTime, Timing::Late] {
            for (i, n) in [(0, 0), (0, -1), (5, -1), (3, 3), (7, 2), (1 << 40, 12)] {
                for first in [false, true] {
                    for last in [false, true] {
                        let p = PaneInfo::new(first, last, timing, i, n);
                        let enc = p.encode();
                        let (d, used) = PaneInfo::decode(&enc).unwrap();
                        assert_eq!(used, enc.len());
                        if i == 0 && n == 0 && timing == Timing::Early {
                            // Java decodes the FIRST encoding of an early pane with nsi -1.
                            assert_eq!(d.nonspeculative_index, -1);
                        } else {
                            assert_eq!(d, p);
                        }
                    }
                }
            }
        }
        assert_eq!(PaneInfo::decode(&[]), None);
        assert_eq!(PaneInfo::decode(&[0x30]), None);
        assert_eq!(PaneInfo::decode(&[0x10, 0x80]), None);
    }
}
