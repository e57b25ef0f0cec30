//! Customer baselines from interval data: "high X of Y" day matching with a same-day
//! adjustment. Pure functions over an interval series; no store, no clock.
//!
//! The rules (also in docs/settlement.md):
//!
//! 1. Days are calendar days in a fixed local offset (`utc_offset_s`, standard time; no
//!    daylight-saving shift, so give the offset the program's settlement rules use).
//! 2. Candidate days are the days before the event day, most recent first, up to
//!    `lookback_days` back. A day is skipped when it is a weekend day (if
//!    `exclude_weekends`), a listed holiday, an event day (the caller says which days had
//!    events), or when any interval the baseline needs on that day (the event period, and
//!    the adjustment window when an adjustment is configured) has no data.
//! 3. The first `candidate_days` (Y) eligible days are ranked by their energy over the
//!    event period, highest first (the more recent day wins a tie); the top `high_days` (X)
//!    are selected. Fewer than Y eligible days is an error: the baseline would not be the
//!    one the program defines.
//! 4. The unadjusted baseline of each event interval is the mean, over the selected days,
//!    of the same interval of day.
//! 5. Same-day adjustment compares the event day's metered energy with the unadjusted
//!    baseline over the adjustment window, `[start - window_offset_s, start -
//!    window_offset_s + window_s)`, which must end at or before the event start so that the
//!    event's own load drop never feeds its baseline. *Additive*: every interval moves by
//!    the mean difference per interval, capped at `cap_pct` % of the window's mean
//!    baseline per interval. *Multiplicative*: every interval is scaled by the ratio of
//!    the sums, clamped to `1 ± cap_pct/100`; a window whose baseline sums to zero or less
//!    cannot be scaled, and the factor is 1.
//!
//! Values are net energy per interval in Wh (import minus export); nothing here assumes a
//! sign.

use crate::domain::EpochSeconds;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Net energy per interval, Wh, keyed by interval start (epoch seconds).
pub type Series = BTreeMap<EpochSeconds, f64>;

/// A day number: days since 1970-01-01 in the configured local offset.
pub type Day = i64;

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// Longest lookback accepted, days.
pub const MAX_LOOKBACK_DAYS: u32 = 120;

/// Which same-day adjustment applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentKind {
    /// The unadjusted baseline is used as is.
    None,
    /// Add the mean per-interval difference seen in the adjustment window.
    #[default]
    Additive,
    /// Scale by the ratio of metered to baseline energy in the adjustment window.
    Multiplicative,
}

/// The same-day adjustment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdjustmentConfig {
    pub kind: AdjustmentKind,
    /// The window starts this many seconds before the event start (default 4 h).
    pub window_offset_s: i64,
    /// The window's length, seconds (default 3 h: the hour just before the event is left
    /// out, since customers may pre-cool or otherwise act on notice).
    pub window_s: i64,
    /// Cap, percent: of the window's mean baseline (additive) or of the factor's distance
    /// from 1 (multiplicative). `null` for no cap. Default 20.
    pub cap_pct: Option<f64>,
}

impl Default for AdjustmentConfig {
    fn default() -> Self {
        AdjustmentConfig {
            kind: AdjustmentKind::Additive,
            window_offset_s: 4 * 3600,
            window_s: 3 * 3600,
            cap_pct: Some(20.0),
        }
    }
}

/// How a baseline is computed. Every field has a documented default ("high 10 of 10" with
/// a capped additive adjustment, weekends excluded, UTC days).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineConfig {
    /// X: how many of the candidate days are averaged (the highest by event-period load).
    pub high_days: u32,
    /// Y: how many eligible days are candidates.
    pub candidate_days: u32,
    /// How far back eligible days are searched, days.
    pub lookback_days: u32,
    /// Leave Saturdays and Sundays out.
    pub exclude_weekends: bool,
    /// Days left out, `YYYY-MM-DD` in the local offset.
    pub holidays: Vec<String>,
    /// The offset of local (standard) time from UTC, seconds, for day boundaries.
    pub utc_offset_s: i32,
    pub adjustment: AdjustmentConfig,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            high_days: 10,
            candidate_days: 10,
            lookback_days: 45,
            exclude_weekends: true,
            holidays: Vec::new(),
            utc_offset_s: 0,
            adjustment: AdjustmentConfig::default(),
        }
    }
}

/// A half-open time window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Window {
    pub start: EpochSeconds,
    pub end: EpochSeconds,
}

/// Why a baseline could not be computed. Each variant names the setting or data at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BaselineError {
    #[error("{field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("the event window [{start}, {end}) is empty or longer than a day")]
    BadWindow {
        start: EpochSeconds,
        end: EpochSeconds,
    },
    #[error(
        "the event window [{start}, {end}) is not aligned to the {interval_s} s metering interval"
    )]
    NotAligned {
        start: EpochSeconds,
        end: EpochSeconds,
        interval_s: i64,
    },
    #[error(
        "only {found} eligible day(s) with complete data in the {lookback_days} days before {event_day}; the baseline needs {needed}"
    )]
    NotEnoughDays {
        found: usize,
        needed: u32,
        lookback_days: u32,
        event_day: String,
    },
    #[error(
        "no metered data on the event day for the adjustment window interval starting {missing}"
    )]
    NoAdjustmentData { missing: EpochSeconds },
}

impl BaselineError {
    /// The configuration field at fault, as a JSON path below the baseline settings.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            BaselineError::Config { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Why a day before the event was not a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    Weekend,
    Holiday,
    EventDay,
    IncompleteData,
}

/// A day looked at, with what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DayOutcome {
    /// `YYYY-MM-DD` in the local offset.
    pub date: String,
    /// Energy over the event period on that day, Wh (candidates only).
    pub event_period_wh: Option<f64>,
    /// True for the X days averaged.
    pub selected: bool,
    /// Why the day was not a candidate.
    pub excluded: Option<Exclusion>,
}

/// The adjustment as applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppliedAdjustment {
    pub kind: AdjustmentKind,
    /// The adjustment window on the event day.
    pub window: Option<Window>,
    /// Additive: Wh per interval before the cap; multiplicative: the factor before the cap.
    pub raw: f64,
    /// What was applied.
    pub applied: f64,
    /// True when the cap bound.
    pub capped: bool,
}

/// One event interval's baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BaselineInterval {
    pub start: EpochSeconds,
    pub unadjusted_wh: f64,
    pub baseline_wh: f64,
}

/// A computed baseline over an event window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Baseline {
    pub window: Window,
    pub interval_s: i64,
    /// Every day looked at, most recent first, until Y candidates were found.
    pub days: Vec<DayOutcome>,
    pub adjustment: AppliedAdjustment,
    pub intervals: Vec<BaselineInterval>,
}

impl Baseline {
    /// Baseline energy over the window, Wh.
    pub fn total_wh(&self) -> f64 {
        self.intervals.iter().map(|i| i.baseline_wh).sum()
    }

    /// The dates averaged.
    pub fn selected_dates(&self) -> Vec<&str> {
        self.days
            .iter()
            .filter(|d| d.selected)
            .map(|d| d.date.as_str())
            .collect()
    }
}

/// The day of `t` in local offset `utc_offset_s`.
pub fn day_of(t: EpochSeconds, utc_offset_s: i32) -> Day {
    (t + i64::from(utc_offset_s)).div_euclid(86_400)
}

/// `YYYY-MM-DD` of a day number.
pub fn date_string(day: Day) -> String {
    match time::Date::from_julian_day((day + UNIX_EPOCH_JULIAN_DAY) as i32) {
        Ok(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        Err(_) => format!("day {day}"),
    }
}

/// The day number of a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<Day> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), fmt)
        .ok()
        .map(|d| i64::from(d.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
}

/// Saturday or Sunday (1970-01-01 was a Thursday).
fn is_weekend(day: Day) -> bool {
    (day + 3).rem_euclid(7) >= 5
}

impl BaselineConfig {
    /// Checks the settings; returns the holidays as day numbers.
    pub fn validate(&self, interval_s: i64) -> Result<BTreeSet<Day>, BaselineError> {
        let bad = |field, reason: String| Err(BaselineError::Config { field, reason });
        if self.high_days == 0 {
            return bad("high_days", "must be at least 1".into());
        }
        if self.candidate_days < self.high_days {
            return bad(
                "candidate_days",
                format!(
                    "must be at least high_days ({}), got {}",
                    self.high_days, self.candidate_days
                ),
            );
        }
        if self.lookback_days < self.candidate_days || self.lookback_days > MAX_LOOKBACK_DAYS {
            return bad(
                "lookback_days",
                format!(
                    "must be between candidate_days ({}) and {MAX_LOOKBACK_DAYS}, got {}",
                    self.candidate_days, self.lookback_days
                ),
            );
        }
        if self.utc_offset_s.abs() > 14 * 3600 {
            return bad(
                "utc_offset_s",
                format!("must be within ±14 h, got {}", self.utc_offset_s),
            );
        }
        let mut holidays = BTreeSet::new();
        for (i, h) in self.holidays.iter().enumerate() {
            match parse_date(h) {
                Some(d) => {
                    holidays.insert(d);
                }
                None => {
                    return Err(BaselineError::Config {
                        field: "holidays",
                        reason: format!("entry {i} '{h}' is not a YYYY-MM-DD date"),
                    });
                }
            }
        }
        let a = &self.adjustment;
        if a.kind != AdjustmentKind::None {
            if a.window_s <= 0 || a.window_s % interval_s != 0 {
                return bad(
                    "adjustment.window_s",
                    format!(
                        "must be a positive multiple of the {interval_s} s interval, got {}",
                        a.window_s
                    ),
                );
            }
            if a.window_offset_s < a.window_s
                || a.window_offset_s % interval_s != 0
                || a.window_offset_s > 86_400
            {
                return bad(
                    "adjustment.window_offset_s",
                    format!(
                        "must be a multiple of the {interval_s} s interval, at least window_s ({}) so the window ends by the event start, and at most one day; got {}",
                        a.window_s, a.window_offset_s
                    ),
                );
            }
            if let Some(c) = a.cap_pct
                && !(c.is_finite() && c >= 0.0)
            {
                return bad(
                    "adjustment.cap_pct",
                    format!("must be a non-negative number, got {c}"),
                );
            }
        }
        Ok(holidays)
    }
}

fn steps(w: Window, interval_s: i64) -> impl Iterator<Item = EpochSeconds> {
    (w.start..w.end).step_by(interval_s as usize)
}

/// The baseline of `series` (net Wh per `interval_s` interval) over `event`, leaving out
/// `event_days` (day numbers in the configured offset). See the module rules.
pub fn compute(
    series: &Series,
    interval_s: i64,
    event: Window,
    event_days: &BTreeSet<Day>,
    cfg: &BaselineConfig,
) -> Result<Baseline, BaselineError> {
    if interval_s <= 0 || 86_400 % interval_s != 0 {
        return Err(BaselineError::Config {
            field: "interval_s",
            reason: format!("must divide a day evenly, got {interval_s}"),
        });
    }
    let holidays = cfg.validate(interval_s)?;
    if event.end <= event.start || event.end - event.start > 86_400 {
        return Err(BaselineError::BadWindow {
            start: event.start,
            end: event.end,
        });
    }
    if event.start.rem_euclid(interval_s) != 0 || event.end.rem_euclid(interval_s) != 0 {
        return Err(BaselineError::NotAligned {
            start: event.start,
            end: event.end,
            interval_s,
        });
    }
    let adj = &cfg.adjustment;
    let adj_window = (adj.kind != AdjustmentKind::None).then(|| Window {
        start: event.start - adj.window_offset_s,
        end: event.start - adj.window_offset_s + adj.window_s,
    });
    let event_steps: Vec<EpochSeconds> = steps(event, interval_s).collect();
    let adj_steps: Vec<EpochSeconds> = adj_window
        .map(|w| steps(w, interval_s).collect())
        .unwrap_or_default();
    let event_day = day_of(event.start, cfg.utc_offset_s);

    // Candidate search, most recent day first.
    let mut days = Vec::new();
    let mut candidates: Vec<(usize, i64, f64)> = Vec::new(); // (index in days, shift, energy)
    for k in 1..=i64::from(cfg.lookback_days) {
        if candidates.len() as u32 >= cfg.candidate_days {
            break;
        }
        let day = event_day - k;
        let shift = k * 86_400;
        let excluded = if cfg.exclude_weekends && is_weekend(day) {
            Some(Exclusion::Weekend)
        } else if holidays.contains(&day) {
            Some(Exclusion::Holiday)
        } else if event_days.contains(&day) {
            Some(Exclusion::EventDay)
        } else if event_steps
            .iter()
            .chain(adj_steps.iter())
            .any(|t| !series.contains_key(&(t - shift)))
        {
            Some(Exclusion::IncompleteData)
        } else {
            None
        };
        let energy = excluded
            .is_none()
            .then(|| event_steps.iter().map(|t| series[&(t - shift)]).sum());
        if let Some(e) = energy {
            candidates.push((days.len(), shift, e));
        }
        days.push(DayOutcome {
            date: date_string(day),
            event_period_wh: energy,
            selected: false,
            excluded,
        });
    }
    if (candidates.len() as u32) < cfg.candidate_days {
        return Err(BaselineError::NotEnoughDays {
            found: candidates.len(),
            needed: cfg.candidate_days,
            lookback_days: cfg.lookback_days,
            event_day: date_string(event_day),
        });
    }
    // Highest event-period energy first; the stable sort keeps the more recent day first
    // among equals.
    candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
    let selected = &candidates[..cfg.high_days as usize];
    for (i, _, _) in selected {
        days[*i].selected = true;
    }
    let n = selected.len() as f64;
    let mean_at = |t: EpochSeconds| {
        selected
            .iter()
            .map(|(_, s, _)| series[&(t - s)])
            .sum::<f64>()
            / n
    };

    let applied = match adj_window {
        None => AppliedAdjustment {
            kind: AdjustmentKind::None,
            window: None,
            raw: 0.0,
            applied: 0.0,
            capped: false,
        },
        Some(w) => {
            let mut actual = 0.0;
            let mut base = 0.0;
            for t in &adj_steps {
                actual += *series
                    .get(t)
                    .ok_or(BaselineError::NoAdjustmentData { missing: *t })?;
                base += mean_at(*t);
            }
            let count = adj_steps.len() as f64;
            let cap = adj.cap_pct.map(|c| c / 100.0);
            let (raw, applied) = match adj.kind {
                AdjustmentKind::Additive => {
                    let raw = (actual - base) / count;
                    let applied = match cap {
                        Some(c) => {
                            let limit = c * (base / count).abs();
                            raw.clamp(-limit, limit)
                        }
                        None => raw,
                    };
                    (raw, applied)
                }
                _ => {
                    let raw = if base > 0.0 { actual / base } else { 1.0 };
                    let applied = match cap {
                        Some(c) => raw.clamp((1.0 - c).max(0.0), 1.0 + c),
                        None => raw,
                    };
                    (raw, applied)
                }
            };
            AppliedAdjustment {
                kind: adj.kind,
                window: Some(w),
                raw,
                applied,
                capped: applied != raw,
            }
        }
    };
    let intervals = event_steps
        .iter()
        .map(|t| {
            let unadjusted = mean_at(*t);
            let baseline = match applied.kind {
                AdjustmentKind::None => unadjusted,
                AdjustmentKind::Additive => unadjusted + applied.applied,
                AdjustmentKind::Multiplicative => unadjusted * applied.applied,
            };
            BaselineInterval {
                start: *t,
                unadjusted_wh: unadjusted,
                baseline_wh: baseline,
            }
        })
        .collect();
    Ok(Baseline {
        window: event,
        interval_s,
        days,
        adjustment: applied,
        intervals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-06-17, a Wednesday, 00:00 UTC.
    const WED: EpochSeconds = 1_781_654_400;
    const H: i64 = 3600;

    fn series(days: i64, f: impl Fn(EpochSeconds) -> f64) -> Series {
        (WED - days * 86_400..WED + 86_400)
            .step_by(H as usize)
            .map(|t| (t, f(t)))
            .collect()
    }

    fn event() -> Window {
        Window {
            start: WED + 14 * H,
            end: WED + 18 * H,
        }
    }

    #[test]
    fn calendar_helpers() {
        assert_eq!(date_string(day_of(WED, 0)), "2026-06-17");
        assert_eq!(parse_date("2026-06-17"), Some(day_of(WED, 0)));
        assert!(!is_weekend(day_of(WED, 0)));
        assert!(is_weekend(day_of(WED + 3 * 86_400, 0)));
        assert!(is_weekend(day_of(WED + 4 * 86_400, 0)));
        assert!(!is_weekend(day_of(WED + 5 * 86_400, 0)));
        // Local offset moves the day boundary.
        assert_eq!(day_of(WED + 2 * H, -5 * 3600), day_of(WED, 0) - 1);
        assert_eq!(parse_date("2026-13-01"), None);
    }

    #[test]
    fn high_days_are_the_highest_by_event_period_load() {
        // Each weekday's load at every hour is its day index, so the baseline of "high 5 of
        // 10" is the mean of the five most recent weekdays (the highest values).
        let s = series(30, |t| (t / 86_400) as f64);
        let cfg = BaselineConfig {
            high_days: 5,
            adjustment: AdjustmentConfig {
                kind: AdjustmentKind::None,
                ..Default::default()
            },
            ..Default::default()
        };
        let b = compute(&s, H, event(), &BTreeSet::new(), &cfg).unwrap();
        let selected = b.selected_dates();
        assert_eq!(selected.len(), 5);
        assert_eq!(
            selected,
            [
                "2026-06-16",
                "2026-06-15",
                "2026-06-12",
                "2026-06-11",
                "2026-06-10"
            ]
        );
        let expect = [1, 2, 5, 6, 7]
            .iter()
            .map(|k| (WED / 86_400 - k) as f64)
            .sum::<f64>()
            / 5.0;
        assert!(
            b.intervals
                .iter()
                .all(|i| (i.baseline_wh - expect).abs() < 1e-9)
        );
        assert_eq!(b.intervals.len(), 4);
        // Weekends were looked at and skipped.
        assert!(
            b.days
                .iter()
                .any(|d| d.excluded == Some(Exclusion::Weekend))
        );
    }

    #[test]
    fn event_days_holidays_and_gaps_are_skipped() {
        let mut s = series(30, |_| 1000.0);
        let yesterday = day_of(WED, 0) - 1;
        // A gap two days back inside the event period.
        s.remove(&(WED - 2 * 86_400 + 15 * H));
        let cfg = BaselineConfig {
            holidays: vec!["2026-06-12".into()],
            ..Default::default()
        };
        let b = compute(&s, H, event(), &BTreeSet::from([yesterday]), &cfg).unwrap();
        let outcome = |date: &str| b.days.iter().find(|d| d.date == date).unwrap().clone();
        assert_eq!(outcome("2026-06-16").excluded, Some(Exclusion::EventDay));
        assert_eq!(
            outcome("2026-06-15").excluded,
            Some(Exclusion::IncompleteData)
        );
        assert_eq!(outcome("2026-06-12").excluded, Some(Exclusion::Holiday));
        assert_eq!(b.selected_dates().len(), 10);
    }

    #[test]
    fn too_little_history_names_what_is_missing() {
        let s = series(5, |_| 1000.0);
        let err =
            compute(&s, H, event(), &BTreeSet::new(), &BaselineConfig::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "only 3 eligible day(s) with complete data in the 45 days before 2026-06-17; the baseline needs 10"
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        let s = series(30, |_| 1.0);
        let check = |cfg: BaselineConfig, field: &str| {
            let e = compute(&s, H, event(), &BTreeSet::new(), &cfg).unwrap_err();
            assert_eq!(e.field(), Some(field), "{e}");
        };
        check(
            BaselineConfig {
                high_days: 11,
                ..Default::default()
            },
            "candidate_days",
        );
        check(
            BaselineConfig {
                holidays: vec!["June 1".into()],
                ..Default::default()
            },
            "holidays",
        );
        check(
            BaselineConfig {
                adjustment: AdjustmentConfig {
                    window_offset_s: H,
                    window_s: 2 * H,
                    ..Default::default()
                },
                ..Default::default()
            },
            "adjustment.window_offset_s",
        );
        let e = compute(
            &s,
            H,
            Window {
                start: WED + 14 * H + 60,
                end: WED + 18 * H,
            },
            &BTreeSet::new(),
            &BaselineConfig::default(),
        )
        .unwrap_err();
        assert!(matches!(e, BaselineError::NotAligned { .. }), "{e}");
    }

    #[test]
    fn cap_bounds_the_adjustment() {
        // Event-day load is double the history before the event: the multiplicative
        // factor 2 is capped at 1.2, the additive +1000 Wh at +200 Wh.
        let s = series(30, |t| if t >= WED { 2000.0 } else { 1000.0 });
        for (kind, expect) in [
            (AdjustmentKind::Multiplicative, 1200.0),
            (AdjustmentKind::Additive, 1200.0),
        ] {
            let cfg = BaselineConfig {
                adjustment: AdjustmentConfig {
                    kind,
                    ..Default::default()
                },
                ..Default::default()
            };
            let b = compute(&s, H, event(), &BTreeSet::new(), &cfg).unwrap();
            assert!(b.adjustment.capped);
            assert!(
                b.intervals
                    .iter()
                    .all(|i| (i.baseline_wh - expect).abs() < 1e-9)
            );
            let uncapped = BaselineConfig {
                adjustment: AdjustmentConfig {
                    kind,
                    cap_pct: None,
                    ..Default::default()
                },
                ..Default::default()
            };
            let b = compute(&s, H, event(), &BTreeSet::new(), &uncapped).unwrap();
            assert!(
                b.intervals
                    .iter()
                    .all(|i| (i.baseline_wh - 2000.0).abs() < 1e-9)
            );
        }
    }

    fn cfg_strategy() -> impl Strategy<Value = BaselineConfig> {
        (
            1u32..=10,
            0u32..=5,
            prop_oneof![
                Just(AdjustmentKind::None),
                Just(AdjustmentKind::Additive),
                Just(AdjustmentKind::Multiplicative)
            ],
            1i64..=4,
            0i64..=3,
            prop::option::of(0.0f64..50.0),
            any::<bool>(),
        )
            .prop_map(
                |(x, extra, kind, len_h, gap_h, cap, weekends)| BaselineConfig {
                    high_days: x,
                    candidate_days: x + extra,
                    lookback_days: 40,
                    exclude_weekends: weekends,
                    holidays: Vec::new(),
                    utc_offset_s: 0,
                    adjustment: AdjustmentConfig {
                        kind,
                        window_offset_s: (len_h + gap_h) * H,
                        window_s: len_h * H,
                        cap_pct: cap,
                    },
                },
            )
    }

    proptest! {
        /// A flat load's baseline is that load, whatever X, Y and adjustment.
        #[test]
        fn flat_load_baseline_equals_the_load(cfg in cfg_strategy(), load in 0.0f64..1.0e6, start_h in 8i64..20, len_h in 1i64..=4) {
            let s = series(60, |_| load);
            let w = Window { start: WED + start_h * H, end: WED + (start_h + len_h) * H };
            let b = compute(&s, H, w, &BTreeSet::new(), &cfg).unwrap();
            prop_assert_eq!(b.intervals.len() as i64, len_h);
            for i in &b.intervals {
                prop_assert!((i.baseline_wh - load).abs() <= 1e-9 * load.max(1.0));
            }
            prop_assert!(!b.adjustment.capped);
        }

        /// What the customer does during the event (and between the adjustment window and
        /// the event) never changes the baseline: only the adjustment window of the event
        /// day is read.
        #[test]
        fn load_outside_the_adjustment_window_does_not_move_the_baseline(cfg in cfg_strategy(), drop in 0.0f64..1.0) {
            let hist = |t: EpochSeconds| 500.0 + ((t / H) % 24) as f64 * 20.0 + ((t / 86_400) % 7) as f64;
            let s = series(60, hist);
            let w = event();
            let a = compute(&s, H, w, &BTreeSet::new(), &cfg).unwrap();
            let adj_end = w.start - cfg.adjustment.window_offset_s + cfg.adjustment.window_s;
            let mut dropped = s.clone();
            for (t, v) in dropped.iter_mut() {
                if *t >= adj_end || (cfg.adjustment.kind == AdjustmentKind::None && *t >= WED) {
                    *v *= drop;
                }
            }
            let b = compute(&dropped, H, w, &BTreeSet::new(), &cfg).unwrap();
            prop_assert_eq!(a, b);
        }

        /// An uncapped additive adjustment carries a constant shift seen in the window into
        /// the baseline; an uncapped multiplicative one carries a constant ratio.
        #[test]
        fn adjustment_follows_the_window(mut cfg in cfg_strategy(), shift in -300.0f64..300.0, ratio in 0.5f64..1.5) {
            let hist = |t: EpochSeconds| 800.0 + ((t / H) % 24) as f64 * 10.0;
            let s = series(60, hist);
            let w = event();
            cfg.adjustment.cap_pct = None;
            cfg.adjustment.kind = AdjustmentKind::None;
            let plain = compute(&s, H, w, &BTreeSet::new(), &cfg).unwrap();
            for (kind, f) in [
                (AdjustmentKind::Additive, Box::new(move |v: f64| v + shift) as Box<dyn Fn(f64) -> f64>),
                (AdjustmentKind::Multiplicative, Box::new(move |v: f64| v * ratio)),
            ] {
                cfg.adjustment.kind = kind;
                let mut today = s.clone();
                for (t, v) in today.iter_mut() {
                    if *t >= WED {
                        *v = f(*v);
                    }
                }
                let b = compute(&today, H, w, &BTreeSet::new(), &cfg).unwrap();
                for (p, q) in plain.intervals.iter().zip(&b.intervals) {
                    prop_assert!((f(p.baseline_wh) - q.baseline_wh).abs() < 1e-6, "{kind:?}: {} vs {}", f(p.baseline_wh), q.baseline_wh);
                }
            }
        }
    }
}
