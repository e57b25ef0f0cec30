//! The ESPI resources Switchyard reads from a Green Button Atom feed, as plain data: the
//! numeric codes are kept as the standard defines them ([`Uom`], [`FlowDirection`],
//! [`ReadingQualityCode`]), unknown codes included, so that refusing them is a decision
//! made at import with a precise message rather than a silent default.

use crate::domain::EpochSeconds;
use serde::{Deserialize, Serialize};

/// ESPI UnitSymbolKind (`uom`), the codes Switchyard names; anything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Uom {
    /// 72: watt-hours (real energy).
    Wh,
    /// 38: watts.
    W,
    /// 73: var-hours.
    VArh,
    /// 63: vars.
    VAr,
    /// 71: volt-ampere hours.
    VAh,
    /// 61: volt-amperes.
    VA,
    /// 29: volts.
    V,
    /// 5: amperes.
    A,
    /// 33: hertz.
    Hz,
    /// 42: cubic metres.
    M3,
    /// 119: cubic feet.
    Ft3,
    /// 128: US gallons.
    UsGallon,
    /// 169: therms.
    Therm,
    /// 0: no unit.
    NoUnit,
    /// Any other code.
    Other(u16),
}

impl Uom {
    pub fn from_code(c: u16) -> Uom {
        match c {
            72 => Uom::Wh,
            38 => Uom::W,
            73 => Uom::VArh,
            63 => Uom::VAr,
            71 => Uom::VAh,
            61 => Uom::VA,
            29 => Uom::V,
            5 => Uom::A,
            33 => Uom::Hz,
            42 => Uom::M3,
            119 => Uom::Ft3,
            128 => Uom::UsGallon,
            169 => Uom::Therm,
            0 => Uom::NoUnit,
            other => Uom::Other(other),
        }
    }

    /// The code and a name for messages.
    pub fn describe(self) -> String {
        let (code, name) = match self {
            Uom::Wh => (72, "Wh"),
            Uom::W => (38, "W"),
            Uom::VArh => (73, "VArh"),
            Uom::VAr => (63, "VAr"),
            Uom::VAh => (71, "VAh"),
            Uom::VA => (61, "VA"),
            Uom::V => (29, "V"),
            Uom::A => (5, "A"),
            Uom::Hz => (33, "Hz"),
            Uom::M3 => (42, "m3"),
            Uom::Ft3 => (119, "ft3"),
            Uom::UsGallon => (128, "US gallon"),
            Uom::Therm => (169, "therm"),
            Uom::NoUnit => (0, "none"),
            Uom::Other(c) => return format!("uom {c} (not a code Switchyard knows)"),
        };
        format!("uom {code} ({name})")
    }
}

/// ESPI FlowDirectionKind, the codes that say which way energy went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowDirection {
    /// 1 (forward): delivered to the customer: import.
    Forward,
    /// 19 (reverse): received from the customer: export.
    Reverse,
    /// 4 (net), 20 (total) and anything else.
    Other(u16),
}

impl FlowDirection {
    pub fn from_code(c: u16) -> FlowDirection {
        match c {
            1 => FlowDirection::Forward,
            19 => FlowDirection::Reverse,
            other => FlowDirection::Other(other),
        }
    }
}

/// ESPI QualityOfReading code of an IntervalReading's ReadingQuality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReadingQualityCode(pub u16);

/// A ReadingType: what the values of a MeterReading mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingType {
    pub href: String,
    pub uom: Uom,
    /// Values are multiplied by 10^this.
    pub power_of_ten_multiplier: i32,
    pub flow_direction: Option<FlowDirection>,
    pub interval_length: Option<i64>,
    pub kind: Option<u16>,
    pub commodity: Option<u16>,
    pub accumulation_behaviour: Option<u16>,
    /// ISO 4217 numeric currency of `cost`.
    pub currency: Option<u16>,
}

/// One IntervalReading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IntervalReading {
    /// Start, epoch seconds UTC.
    pub start: EpochSeconds,
    /// Duration, seconds.
    pub duration: i64,
    /// The value as written, before `powerOfTenMultiplier`.
    pub value: i64,
    /// Cost in hundred-thousandths of the currency, when given.
    pub cost: Option<i64>,
    pub quality: Option<ReadingQualityCode>,
}

/// A UsagePoint entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsagePoint {
    /// The Atom entry id (e.g. `urn:uuid:...`): the stable identity used for mapping.
    pub id: String,
    /// The self link, normalized (see [`normalize_href`]).
    pub href: String,
    pub title: Option<String>,
    /// ServiceCategory kind (0 electricity, 1 gas, ...).
    pub service_kind: Option<u16>,
}

/// A MeterReading entry with the links that tie it to its UsagePoint and ReadingType.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterReading {
    pub href: String,
    /// The UsagePoint's href (from the self or up link).
    pub usage_point_href: String,
    /// The related ReadingType href.
    pub reading_type_href: Option<String>,
}

/// LocalTimeParameters: the time zone the data custodian's local times use.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LocalTimeParameters {
    pub href: String,
    pub tz_offset: Option<i64>,
    pub dst_offset: Option<i64>,
    pub dst_start_rule: Option<String>,
    pub dst_end_rule: Option<String>,
}

/// An (Electric Power) UsageSummary: the billing period's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageSummary {
    pub href: String,
    pub billing_start: Option<EpochSeconds>,
    pub billing_duration: Option<i64>,
    /// The bill for the last period, hundred-thousandths of the currency.
    pub bill_last_period: Option<i64>,
    pub currency: Option<u16>,
}

/// Everything read from one feed, keyed by normalized hrefs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Feed {
    pub usage_points: Vec<UsagePoint>,
    pub meter_readings: Vec<MeterReading>,
    pub reading_types: Vec<ReadingType>,
    /// IntervalReadings per MeterReading href, in document order.
    pub intervals: Vec<(String, Vec<IntervalReading>)>,
    pub local_time: Vec<LocalTimeParameters>,
    pub summaries: Vec<UsageSummary>,
}

/// Makes hrefs of one feed comparable: drops the scheme and host, anything up to
/// `/resource/` or `/espi/1_1/`, leading and trailing slashes. Feeds link with absolute
/// URLs, root-relative paths or relative paths, sometimes mixed.
pub fn normalize_href(href: &str) -> String {
    let mut h = href.trim();
    if let Some(i) = h.find("://") {
        h = &h[i + 3..];
        h = h.find('/').map_or("", |i| &h[i..]);
    }
    for marker in ["/resource/", "/espi/1_1/"] {
        if let Some(i) = h.rfind(marker) {
            h = &h[i + marker.len()..];
        }
    }
    h.trim_matches('/').to_string()
}

/// The part of `href` before the last `/{segment}` collection, e.g. the MeterReading of
/// `.../MeterReading/01/IntervalBlock/173` for segment `IntervalBlock`.
pub fn parent_of(href: &str, segment: &str) -> Option<String> {
    let pat = format!("/{segment}");
    let i = href.rfind(&pat)?;
    let after = &href[i + pat.len()..];
    (after.is_empty() || after.starts_with('/')).then(|| href[..i].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_normalize_across_styles() {
        let a = "https://x.org/DataCustodian/espi/1_1/resource/RetailCustomer/3/UsagePoint/1/";
        assert_eq!(normalize_href(a), "RetailCustomer/3/UsagePoint/1");
        assert_eq!(
            normalize_href("/User/9b/UsagePoint/01"),
            "User/9b/UsagePoint/01"
        );
        assert_eq!(
            parent_of("U/1/MeterReading/01/IntervalBlock/173", "IntervalBlock").as_deref(),
            Some("U/1/MeterReading/01")
        );
        assert_eq!(
            parent_of("U/1/MeterReading", "MeterReading").as_deref(),
            Some("U/1")
        );
        assert_eq!(parent_of("U/1/MeterReadings", "MeterReading"), None);
    }
}
