//! Effective time windows and the deterministic randomization behind them.
//!
//! IEEE 2030.5 lets a control ask each device to shift its start (randomizeStart) and
//! stretch its duration (randomizeDuration) by a random amount, so that thousands of devices
//! do not all switch in the same second. The engine must give the same answer every time it
//! is asked, so the "random" offsets are a pure function of (control id, device/site key,
//! seed):
//!
//! 1. FNV-1a (64-bit) hashes the control id bytes, one 0xFF separator byte (which never
//!    occurs in UTF-8, so `("ab", "c")` and `("a", "bc")` hash differently), then the key
//!    bytes.
//! 2. That hash XOR the seed is the state of a SplitMix64 generator; successive outputs
//!    give, in order, the start offset, the duration offset and the randomized-cancellation
//!    delay.
//! 3. An output `x` becomes an integer in `0..=n` as `(x * (n + 1)) >> 64` (128-bit
//!    product). Its bias is below 2^-32 for every `n` an `i32` allows, far under anything
//!    observable.
//!
//! A range given by a negative setting is drawn as `-(0..=|setting|)`.
//!
//! Changing any of these steps changes every device's schedule, so a test pins known values.

use super::model::Control;
use crate::domain::EpochSeconds;
use serde::{Deserialize, Serialize};

/// A half-open interval of time `[start, end)`. Empty when `end <= start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: EpochSeconds,
    pub end: EpochSeconds,
}

impl Window {
    /// Whether `t` lies inside the window.
    pub fn contains(&self, t: EpochSeconds) -> bool {
        self.start <= t && t < self.end
    }

    /// Whether the window holds no instant.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether the two windows share at least one instant. Windows that only touch
    /// (`a.end == b.start`) do not overlap: back-to-back controls are the normal case for
    /// 5-minute envelopes and must not supersede one another.
    pub fn overlaps(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// The random offsets one device draws for one control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offsets {
    pub start_s: i64,
    pub duration_s: i64,
    /// Delay before a device ends a control cancelled with randomization.
    pub cancel_delay_s: i64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// SplitMix64 (Steele, Lea and Flood): a tiny generator whose outputs pass BigCrush, ample
/// for spreading devices over a window.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform draw in `0..=|bound|`, negated when `bound` is negative.
    fn offset(&mut self, bound: i64) -> i64 {
        let span = u128::from(bound.unsigned_abs()) + 1;
        let draw = ((u128::from(self.next()) * span) >> 64) as i64;
        if bound < 0 { -draw } else { draw }
    }
}

pub(crate) fn offsets(control: &Control, key: &str, seed: u64) -> Offsets {
    let hash = fnv1a(
        fnv1a(fnv1a(FNV_OFFSET, control.id.as_str().as_bytes()), &[0xff]),
        key.as_bytes(),
    );
    let mut rng = SplitMix64(hash ^ seed);
    let start_s = rng.offset(i64::from(control.randomize_start_s));
    let duration_s = rng.offset(i64::from(control.randomize_duration_s));
    // The cancellation delay spans the larger of the two randomization ranges, which is how
    // we read 2030.5's rule for status 3 (Cancelled with Randomization).
    let cancel_bound = i64::from(control.randomize_start_s.unsigned_abs())
        .max(i64::from(control.randomize_duration_s.unsigned_abs()));
    let cancel_delay_s = rng.offset(cancel_bound);
    Offsets {
        start_s,
        duration_s,
        cancel_delay_s,
    }
}

impl Control {
    /// The window as scheduled, before randomization: `[start, start + duration)`.
    pub fn nominal_window(&self) -> Window {
        Window {
            start: self.start,
            end: self.start.saturating_add(i64::from(self.duration_s)),
        }
    }
}

/// The window during which `control` applies to the device or site identified by `key`:
/// `[start + s, start + duration + s + d)`, where `s` is drawn uniformly from
/// `0..=randomize_start_s` and `d` from `0..=randomize_duration_s` (each range negated when
/// its setting is negative), deterministically from (control id, key, seed) as the module
/// documentation describes. With no randomization this is the nominal window.
///
/// A valid control never yields an empty window; should an unvalidated one shrink below
/// zero length, the end is clamped to the start (the window is empty, the control never
/// applies).
pub fn effective_window(control: &Control, key: &str, seed: u64) -> Window {
    let o = offsets(control, key, seed);
    let start = control.start.saturating_add(o.start_s);
    let end = start
        .saturating_add(i64::from(control.duration_s))
        .saturating_add(o.duration_s);
    Window {
        start,
        end: end.max(start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::model::ControlModes;

    fn control(id: &str, rs: i32, rd: i32) -> Control {
        Control {
            id: id.into(),
            program: "p".into(),
            created: 0,
            start: 10_000,
            duration_s: 600,
            randomize_start_s: rs,
            randomize_duration_s: rd,
            modes: ControlModes {
                exp_lim_w: Some(1.0),
                ..Default::default()
            },
            cancelled: None,
        }
    }

    #[test]
    fn without_randomization_the_window_is_nominal() {
        let c = control("a", 0, 0);
        assert_eq!(
            effective_window(&c, "site-1", 42),
            Window {
                start: 10_000,
                end: 10_600
            }
        );
        assert_eq!(effective_window(&c, "site-1", 42), c.nominal_window());
    }

    #[test]
    fn randomization_is_deterministic_and_within_bounds() {
        let c = control("evt-7", 120, 60);
        let mut seen_starts = std::collections::BTreeSet::new();
        for i in 0..500 {
            let key = format!("device-{i}");
            let w = effective_window(&c, &key, 7);
            assert_eq!(w, effective_window(&c, &key, 7), "same inputs, same window");
            let s = w.start - c.start;
            let d = (w.end - w.start) - 600;
            assert!((0..=120).contains(&s), "start offset {s}");
            assert!((0..=60).contains(&d), "duration offset {d}");
            seen_starts.insert(s);
        }
        // 500 devices over 121 possible offsets: the spread must be wide, not a few values.
        assert!(seen_starts.len() > 100, "{}", seen_starts.len());
        assert!(seen_starts.contains(&0) || seen_starts.contains(&1));
    }

    #[test]
    fn negative_settings_draw_negative_offsets() {
        let c = control("evt-8", -90, -30);
        for i in 0..200 {
            let w = effective_window(&c, &format!("k{i}"), 1);
            assert!((-90..=0).contains(&(w.start - c.start)));
            assert!((-30..=0).contains(&((w.end - w.start) - 600)));
        }
    }

    #[test]
    fn key_seed_and_id_each_change_the_draw() {
        let c = control("evt-9", 3600, 0);
        let base = effective_window(&c, "site-1", 1);
        let differs = |w: Window| w != base;
        assert!((2..40).any(|s| differs(effective_window(&c, "site-1", s))));
        assert!((2..40).any(|k| differs(effective_window(&c, &format!("site-{k}"), 1))));
        assert!((0..40).any(|k| differs(effective_window(
            &control(&format!("e{k}"), 3600, 0),
            "site-1",
            1
        ))));
    }

    #[test]
    fn the_hash_is_pinned() {
        // FNV-1a of the empty string is the offset basis; of "a" a published value.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        // SplitMix64 seeded with 0 starts with this published output.
        assert_eq!(SplitMix64(0).next(), 0xe220_a839_7b1d_cdaf);
        // And a pinned window, so that an accidental change to the recipe shows up.
        let w = effective_window(&control("evt-1", 300, 120), "site-1", 0);
        assert_eq!((w.start - 10_000, w.end - w.start - 600), PINNED);
    }

    // Computed once from the recipe above; see `the_hash_is_pinned`.
    const PINNED: (i64, i64) = (80, 21);

    #[test]
    fn full_i32_ranges_do_not_overflow() {
        let mut c = control("x", i32::MIN, i32::MIN);
        c.start = i64::MAX - 5;
        let w = effective_window(&c, "k", 0);
        assert!(w.end >= w.start);
        let mut c = control("x", i32::MAX, i32::MAX);
        c.start = i64::MAX - 5;
        let w = effective_window(&c, "k", u64::MAX);
        assert_eq!(w.end, i64::MAX);
    }

    #[test]
    fn windows_that_touch_do_not_overlap() {
        let a = Window { start: 0, end: 10 };
        let b = Window { start: 10, end: 20 };
        assert!(!a.overlaps(&b) && !b.overlaps(&a));
        let c = Window { start: 9, end: 11 };
        assert!(a.overlaps(&c) && c.overlaps(&b));
        assert!(a.contains(0) && !a.contains(10));
    }
}
