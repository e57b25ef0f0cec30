//! From a parsed feed to interval series per UsagePoint, in Wh, checked: every
//! MeterReading resolves to its UsagePoint and ReadingType, units are electric energy,
//! intervals of one channel neither overlap nor contradict each other. Repeated intervals
//! (the same start, length and value, as overlapping downloads produce) are kept once.
//!
//! Interval starts are epoch seconds UTC in ESPI, so a daylight-saving change is no
//! discontinuity here: a correct feed has 23 or 25 hourly intervals on those local days and
//! no gap. A feed that was stamped in local time repeats an hour at the autumn change, which
//! shows as two different values for one start and is refused as a conflict.

use super::model::*;
use crate::domain::EpochSeconds;
use crate::telemetry::Quality;
use serde::Serialize;

/// Which way a channel's energy went, seen from the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Delivered to the customer (ESPI flowDirection 1): import.
    Delivered,
    /// Received from the customer (flowDirection 19): export.
    Received,
}

/// One interval in Wh.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub start: EpochSeconds,
    pub duration: i64,
    pub wh: f64,
    /// Cost in hundred-thousandths of the ReadingType's currency.
    pub cost: Option<i64>,
    pub quality: Quality,
}

/// One MeterReading's intervals, sorted by start, without repeats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Channel {
    pub meter_reading: String,
    pub direction: Direction,
    pub intervals: Vec<Interval>,
}

/// A UsagePoint with its channels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsagePointSeries {
    pub usage_point: UsagePoint,
    pub channels: Vec<Channel>,
    /// Intervals dropped because an identical one was already present.
    pub repeated: u64,
}

/// The per-UsagePoint summary `--json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub usage_point: String,
    pub intervals: u64,
    pub wh_delivered: f64,
    pub wh_received: f64,
    pub first_start: Option<EpochSeconds>,
    pub last_end: Option<EpochSeconds>,
    /// Places where a channel's next interval starts after the previous one ended.
    pub gaps: u64,
}

/// Why a feed's data cannot be imported.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SeriesError {
    #[error("IntervalBlocks of {0} belong to no MeterReading in the file")]
    OrphanBlocks(String),
    #[error("MeterReading {0} belongs to no UsagePoint in the file")]
    NoUsagePoint(String),
    #[error("MeterReading {0} has no ReadingType in the file")]
    NoReadingType(String),
    #[error(
        "MeterReading {meter_reading}: unknown {uom}; Switchyard imports energy in Wh (uom 72)"
    )]
    UnknownUom { meter_reading: String, uom: String },
    #[error(
        "MeterReading {meter_reading}: {uom} is not electric energy; Switchyard imports energy in Wh (uom 72)"
    )]
    UnsupportedUom { meter_reading: String, uom: String },
    #[error(
        "MeterReading {meter_reading}: flowDirection {code} is neither delivered (1) nor received (19)"
    )]
    FlowDirection { meter_reading: String, code: String },
    #[error("MeterReading {meter_reading}: powerOfTenMultiplier {p} is out of range")]
    Multiplier { meter_reading: String, p: i32 },
    #[error("MeterReading {meter_reading}: interval at {start} has duration {duration}")]
    Duration {
        meter_reading: String,
        start: EpochSeconds,
        duration: i64,
    },
    #[error(
        "MeterReading {meter_reading}: two different intervals start at {start} ({first} and {second}); a feed stamped in local time repeats an hour at the daylight-saving change"
    )]
    Conflict {
        meter_reading: String,
        start: EpochSeconds,
        first: String,
        second: String,
    },
    #[error(
        "MeterReading {meter_reading}: the interval at {start} overlaps the one at {previous_start} (which ends at {previous_end})"
    )]
    Overlap {
        meter_reading: String,
        start: EpochSeconds,
        previous_start: EpochSeconds,
        previous_end: EpochSeconds,
    },
    #[error(
        "UsagePoint {usage_point} has two {direction:?} channels ({first} and {second}); they would be stored as one series"
    )]
    TwoChannels {
        usage_point: String,
        direction: Direction,
        first: String,
        second: String,
    },
    #[error("MeterReading {meter_reading}: unknown ReadingQuality code {code}")]
    Quality { meter_reading: String, code: u16 },
}

/// The telemetry quality of an ESPI QualityOfReading code.
fn quality(code: Option<ReadingQualityCode>, mr: &str) -> Result<Quality, SeriesError> {
    Ok(match code.map(|c| c.0) {
        None | Some(0 | 14 | 17 | 18 | 19) => Quality::Measured,
        Some(7) => Quality::Substituted,
        Some(8 | 9 | 11 | 12 | 13 | 15) => Quality::Estimated,
        Some(10) => Quality::OutOfRange,
        Some(code) => {
            return Err(SeriesError::Quality {
                meter_reading: mr.to_string(),
                code,
            });
        }
    })
}

/// Resolves, converts and checks every MeterReading of `feed` that carries intervals.
pub fn build(feed: &Feed) -> Result<Vec<UsagePointSeries>, SeriesError> {
    let mut out: Vec<UsagePointSeries> = feed
        .usage_points
        .iter()
        .map(|up| UsagePointSeries {
            usage_point: up.clone(),
            channels: Vec::new(),
            repeated: 0,
        })
        .collect();
    for (mr_href, raw) in &feed.intervals {
        let mr = feed
            .meter_readings
            .iter()
            .find(|m| &m.href == mr_href)
            .ok_or_else(|| SeriesError::OrphanBlocks(mr_href.clone()))?;
        let up = out
            .iter_mut()
            .find(|u| u.usage_point.href == mr.usage_point_href)
            .ok_or_else(|| SeriesError::NoUsagePoint(mr.href.clone()))?;
        let rt = mr
            .reading_type_href
            .as_ref()
            .and_then(|h| feed.reading_types.iter().find(|r| &r.href == h))
            .ok_or_else(|| SeriesError::NoReadingType(mr.href.clone()))?;
        match rt.uom {
            Uom::Wh => {}
            Uom::Other(_) => {
                return Err(SeriesError::UnknownUom {
                    meter_reading: mr.href.clone(),
                    uom: rt.uom.describe(),
                });
            }
            other => {
                return Err(SeriesError::UnsupportedUom {
                    meter_reading: mr.href.clone(),
                    uom: other.describe(),
                });
            }
        }
        let direction = match rt.flow_direction {
            // A ReadingType without flowDirection is consumption in every sample we know.
            Some(FlowDirection::Forward) | None => Direction::Delivered,
            Some(FlowDirection::Reverse) => Direction::Received,
            Some(FlowDirection::Other(code)) => {
                return Err(SeriesError::FlowDirection {
                    meter_reading: mr.href.clone(),
                    code: code.to_string(),
                });
            }
        };
        if !(-12..=12).contains(&rt.power_of_ten_multiplier) {
            return Err(SeriesError::Multiplier {
                meter_reading: mr.href.clone(),
                p: rt.power_of_ten_multiplier,
            });
        }
        let scale = 10f64.powi(rt.power_of_ten_multiplier);
        let mut sorted = raw.clone();
        sorted.sort_by_key(|r| (r.start, r.duration));
        let mut intervals: Vec<Interval> = Vec::with_capacity(sorted.len());
        let mut last_raw: Option<IntervalReading> = None;
        for r in sorted {
            if r.duration <= 0 {
                return Err(SeriesError::Duration {
                    meter_reading: mr.href.clone(),
                    start: r.start,
                    duration: r.duration,
                });
            }
            if let Some(prev) = last_raw {
                if prev.start == r.start {
                    if prev.duration == r.duration && prev.value == r.value && prev.cost == r.cost {
                        up.repeated += 1;
                        continue;
                    }
                    return Err(SeriesError::Conflict {
                        meter_reading: mr.href.clone(),
                        start: r.start,
                        first: format!("{} s, value {}", prev.duration, prev.value),
                        second: format!("{} s, value {}", r.duration, r.value),
                    });
                }
                if r.start < prev.start + prev.duration {
                    return Err(SeriesError::Overlap {
                        meter_reading: mr.href.clone(),
                        start: r.start,
                        previous_start: prev.start,
                        previous_end: prev.start + prev.duration,
                    });
                }
            }
            intervals.push(Interval {
                start: r.start,
                duration: r.duration,
                wh: r.value as f64 * scale,
                cost: r.cost,
                quality: quality(r.quality, &mr.href)?,
            });
            last_raw = Some(r);
        }
        if let Some(other) = up.channels.iter().find(|c| c.direction == direction) {
            return Err(SeriesError::TwoChannels {
                usage_point: up.usage_point.id.clone(),
                direction,
                first: other.meter_reading.clone(),
                second: mr.href.clone(),
            });
        }
        up.channels.push(Channel {
            meter_reading: mr.href.clone(),
            direction,
            intervals,
        });
    }
    Ok(out)
}

impl UsagePointSeries {
    /// Totals, extent and gaps of this UsagePoint's channels.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            usage_point: self.usage_point.id.clone(),
            intervals: 0,
            wh_delivered: 0.0,
            wh_received: 0.0,
            first_start: None,
            last_end: None,
            gaps: 0,
        };
        for c in &self.channels {
            s.intervals += c.intervals.len() as u64;
            let total: f64 = c.intervals.iter().map(|i| i.wh).sum();
            match c.direction {
                Direction::Delivered => s.wh_delivered += total,
                Direction::Received => s.wh_received += total,
            }
            if let (Some(first), Some(last)) = (c.intervals.first(), c.intervals.last()) {
                s.first_start = Some(s.first_start.map_or(first.start, |f| f.min(first.start)));
                let end = last.start + last.duration;
                s.last_end = Some(s.last_end.map_or(end, |l| l.max(end)));
            }
            s.gaps += c
                .intervals
                .windows(2)
                .filter(|w| w[1].start > w[0].start + w[0].duration)
                .count() as u64;
        }
        s
    }
}
