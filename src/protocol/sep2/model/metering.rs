//! Metering mirror function set: the usage points and readings that clients post
//! (`MirrorUsagePoint`, `MirrorMeterReading`, `ReadingType`, `Reading`).

use serde::{Deserialize, Serialize};

use super::{DateTimeInterval, SepResource, TimeType, UnitValue, sep_resources};

sep_resources!(
    MirrorUsagePointList => "MirrorUsagePointList",
    MirrorUsagePoint => "MirrorUsagePoint",
    MirrorMeterReadingList => "MirrorMeterReadingList",
    MirrorMeterReading => "MirrorMeterReading",
    MirrorReadingSet => "MirrorReadingSet",
    ReadingType => "ReadingType",
    Reading => "Reading",
);

/// A list of [`MirrorUsagePoint`]s (`MirrorUsagePointList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MirrorUsagePointList {
    /// URI of this list.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Number of items in the whole list.
    #[serde(rename = "@all")]
    pub all: u32,
    /// Number of items in this page.
    #[serde(rename = "@results")]
    pub results: u32,
    /// Seconds between polls the server asks for.
    #[serde(rename = "@pollRate", skip_serializing_if = "Option::is_none")]
    pub poll_rate: Option<u32>,
    /// The usage points of this page.
    #[serde(
        rename = "MirrorUsagePoint",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mirror_usage_points: Vec<MirrorUsagePoint>,
}

/// A usage point whose readings the client pushes to the server (`MirrorUsagePoint`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MirrorUsagePoint {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Master resource identifier (hex, 128 bits).
    #[serde(rename = "mRID")]
    pub m_rid: String,
    /// Human-readable description (at most 32 characters).
    #[serde(rename = "description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Version of this resource.
    #[serde(rename = "version", skip_serializing_if = "Option::is_none")]
    pub version: Option<u16>,
    /// Role bitmap (`RoleFlagsType`, hex): premises, DER, submeter, ...
    #[serde(rename = "roleFlags")]
    pub role_flags: String,
    /// Service kind (`ServiceKind`: 0 electricity, ...).
    #[serde(rename = "serviceCategoryKind")]
    pub service_category_kind: u8,
    /// Usage point status (0 off, 1 on).
    #[serde(rename = "status")]
    pub status: u8,
    /// LFDI of the device that posts the readings (40 hex digits).
    #[serde(rename = "deviceLFDI")]
    pub device_lfdi: String,
    /// The meter readings.
    #[serde(
        rename = "MirrorMeterReading",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mirror_meter_readings: Vec<MirrorMeterReading>,
    /// Seconds between posts the server asks for.
    #[serde(rename = "postRate", skip_serializing_if = "Option::is_none")]
    pub post_rate: Option<u32>,
}

/// A list of [`MirrorMeterReading`]s (`MirrorMeterReadingList`), what clients post to add
/// several readings at once.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MirrorMeterReadingList {
    /// URI of this list.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Number of items in the whole list.
    #[serde(rename = "@all")]
    pub all: u32,
    /// Number of items in this page.
    #[serde(rename = "@results")]
    pub results: u32,
    /// The readings.
    #[serde(
        rename = "MirrorMeterReading",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mirror_meter_readings: Vec<MirrorMeterReading>,
}

/// One measured quantity of a mirror usage point (`MirrorMeterReading`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MirrorMeterReading {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Master resource identifier (hex, 128 bits).
    #[serde(rename = "mRID")]
    pub m_rid: String,
    /// Human-readable description (at most 32 characters).
    #[serde(rename = "description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Version of this resource.
    #[serde(rename = "version", skip_serializing_if = "Option::is_none")]
    pub version: Option<u16>,
    /// When the client last updated this reading.
    #[serde(rename = "lastUpdateTime", skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<TimeType>,
    /// Sets of interval readings.
    #[serde(
        rename = "MirrorReadingSet",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mirror_reading_sets: Vec<MirrorReadingSet>,
    /// When the client expects to update next.
    #[serde(rename = "nextUpdateTime", skip_serializing_if = "Option::is_none")]
    pub next_update_time: Option<TimeType>,
    /// A single (latest) reading.
    #[serde(rename = "Reading", skip_serializing_if = "Option::is_none")]
    pub reading: Option<Reading>,
    /// What is measured; required when the reading is first created.
    #[serde(rename = "ReadingType", skip_serializing_if = "Option::is_none")]
    pub reading_type: Option<ReadingType>,
}

/// A set of readings over a period (`MirrorReadingSet`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MirrorReadingSet {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Master resource identifier (hex, 128 bits).
    #[serde(rename = "mRID")]
    pub m_rid: String,
    /// Human-readable description (at most 32 characters).
    #[serde(rename = "description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Version of this resource.
    #[serde(rename = "version", skip_serializing_if = "Option::is_none")]
    pub version: Option<u16>,
    /// The period covered by the set.
    #[serde(rename = "timePeriod")]
    pub time_period: DateTimeInterval,
    /// The readings of the set.
    #[serde(rename = "Reading", default, skip_serializing_if = "Vec::is_empty")]
    pub readings: Vec<Reading>,
}

/// What a reading measures and how (`ReadingType`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReadingType {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Accumulation (`AccumulationBehaviourType`: 3 cumulative, 4 delta, 6 indicating, 12 instantaneous).
    #[serde(
        rename = "accumulationBehaviour",
        skip_serializing_if = "Option::is_none"
    )]
    pub accumulation_behaviour: Option<u8>,
    /// Calorific value (gas).
    #[serde(rename = "calorificValue", skip_serializing_if = "Option::is_none")]
    pub calorific_value: Option<UnitValue>,
    /// Commodity (`CommodityType`: 1 electricity secondary metered, ...).
    #[serde(rename = "commodity", skip_serializing_if = "Option::is_none")]
    pub commodity: Option<u8>,
    /// Conversion factor (gas).
    #[serde(rename = "conversionFactor", skip_serializing_if = "Option::is_none")]
    pub conversion_factor: Option<UnitValue>,
    /// Data qualifier (`DataQualifierType`: 2 average, 8 maximum, 9 minimum, ...).
    #[serde(rename = "dataQualifier", skip_serializing_if = "Option::is_none")]
    pub data_qualifier: Option<u8>,
    /// Flow direction (`FlowDirectionType`: 1 forward/import, 19 reverse/export).
    #[serde(rename = "flowDirection", skip_serializing_if = "Option::is_none")]
    pub flow_direction: Option<u8>,
    /// Interval length in seconds.
    #[serde(rename = "intervalLength", skip_serializing_if = "Option::is_none")]
    pub interval_length: Option<u32>,
    /// Kind (`KindType`: 12 energy, 37 power, 54 voltage, ...).
    #[serde(rename = "kind", skip_serializing_if = "Option::is_none")]
    pub kind: Option<u8>,
    /// Maximum number of intervals kept.
    #[serde(
        rename = "maxNumberOfIntervals",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_number_of_intervals: Option<u8>,
    /// Number of consumption blocks.
    #[serde(
        rename = "numberOfConsumptionBlocks",
        skip_serializing_if = "Option::is_none"
    )]
    pub number_of_consumption_blocks: Option<u8>,
    /// Number of time-of-use tiers.
    #[serde(rename = "numberOfTouTiers", skip_serializing_if = "Option::is_none")]
    pub number_of_tou_tiers: Option<u8>,
    /// Phase (`PhaseCode`: 0 none, 128 A, 64 B, 32 C, ...).
    #[serde(rename = "phase", skip_serializing_if = "Option::is_none")]
    pub phase: Option<u8>,
    /// Power of ten applied to reading values.
    #[serde(
        rename = "powerOfTenMultiplier",
        skip_serializing_if = "Option::is_none"
    )]
    pub power_of_ten_multiplier: Option<i8>,
    /// Sub-interval length in seconds.
    #[serde(rename = "subIntervalLength", skip_serializing_if = "Option::is_none")]
    pub sub_interval_length: Option<u32>,
    /// Supply limit.
    #[serde(rename = "supplyLimit", skip_serializing_if = "Option::is_none")]
    pub supply_limit: Option<u64>,
    /// Whether consumption blocks are tiered.
    #[serde(
        rename = "tieredConsumptionBlocks",
        skip_serializing_if = "Option::is_none"
    )]
    pub tiered_consumption_blocks: Option<bool>,
    /// Unit of measure (`UomType`: 29 V, 33 Hz, 38 W, 63 var, 61 VA, 72 Wh, ...).
    #[serde(rename = "uom", skip_serializing_if = "Option::is_none")]
    pub uom: Option<u8>,
}

/// One reading value (`Reading`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reading {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Subscription support.
    #[serde(rename = "@subscribable", skip_serializing_if = "Option::is_none")]
    pub subscribable: Option<u8>,
    /// Consumption block.
    #[serde(rename = "consumptionBlock", skip_serializing_if = "Option::is_none")]
    pub consumption_block: Option<u8>,
    /// Quality flags (bitmap, hex).
    #[serde(rename = "qualityFlags", skip_serializing_if = "Option::is_none")]
    pub quality_flags: Option<String>,
    /// The period the value covers.
    #[serde(rename = "timePeriod", skip_serializing_if = "Option::is_none")]
    pub time_period: Option<DateTimeInterval>,
    /// Time-of-use tier.
    #[serde(rename = "touTier", skip_serializing_if = "Option::is_none")]
    pub tou_tier: Option<u8>,
    /// The value, scaled by the reading type's powerOfTenMultiplier.
    #[serde(rename = "value", skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    /// Local identifier (hex).
    #[serde(rename = "localID", skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
}
