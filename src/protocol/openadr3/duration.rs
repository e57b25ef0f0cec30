//! ISO 8601 durations as the OpenADR 3 `duration` schema allows them
//! (`^(-?)P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`),
//! and RFC 3339 date-times.
//!
//! Durations are converted to seconds so that intervals can be checked (a negative or zero
//! interval is refused) and event end times computed. Years and months have no fixed length;
//! like the OpenADR user guide's examples we count 365 and 30 days. "P9999Y" means "no end".

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Seconds counted for "P9999Y" and longer: treated as never ending.
pub const INFINITE_SECONDS: f64 = 9999.0 * 365.0 * 86400.0;

/// Parses a duration into (signed) seconds; None when it does not match the schema pattern.
pub fn seconds(s: &str) -> Option<f64> {
    let (negative, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let rest = rest.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    // The pattern's lookahead: a digit must follow P, or T and a digit.
    if date.is_empty() && time.is_none_or(|t| !t.starts_with(|c: char| c.is_ascii_digit())) {
        return None;
    }
    if !date.is_empty() && !date.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut total = 0.0;
    // Each designator may appear once, in this order.
    let date_units: [(char, f64); 4] = [
        ('Y', 365.0 * 86400.0),
        ('M', 30.0 * 86400.0),
        ('W', 7.0 * 86400.0),
        ('D', 86400.0),
    ];
    total += fields(date, &date_units, false)?;
    // The schema's pattern allows a bare trailing T ("P1DT"); it adds nothing.
    if let Some(t) = time {
        total += fields(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)], true)?;
    }
    Some(if negative { -total } else { total })
}

/// Sums `<number><designator>` pairs in designator order. Only the last designator of the
/// time part (seconds) may carry a fraction; W and D are alternatives in the pattern.
fn fields(mut s: &str, units: &[(char, f64)], time_part: bool) -> Option<f64> {
    let mut total = 0.0;
    let mut next_unit = 0;
    let mut saw_day_or_week = false;
    while !s.is_empty() {
        let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, rest) = s.split_at(end);
        let unit = rest.chars().next()?;
        if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
            return None;
        }
        if num.contains('.') && !(time_part && unit == 'S') {
            return None;
        }
        let pos = units[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
        if !time_part && (unit == 'W' || unit == 'D') {
            if saw_day_or_week {
                return None;
            }
            saw_day_or_week = true;
        }
        total += num.parse::<f64>().ok()? * units[pos].1;
        next_unit = pos + 1;
        s = &rest[unit.len_utf8()..];
    }
    Some(total)
}

/// Parses an RFC 3339 date-time.
pub fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Formats a date-time as RFC 3339 in UTC.
pub fn format_datetime(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Now, as the server stamps objects.
pub fn now() -> String {
    format_datetime(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(seconds("PT1H"), Some(3600.0));
        assert_eq!(seconds("PT0S"), Some(0.0));
        assert_eq!(seconds("-PT15M"), Some(-900.0));
        assert_eq!(seconds("P1DT1.5S"), Some(86401.5));
        assert_eq!(seconds("P2W"), Some(14.0 * 86400.0));
        assert_eq!(seconds("P9999Y"), Some(INFINITE_SECONDS));
        // The schema pattern allows a bare trailing T.
        assert_eq!(seconds("P1DT"), Some(86400.0));
        for bad in [
            "", "P", "PT", "1H", "PT1", "P1H", "PTH", "P1.5D", "PT1S1M", "P1W1D",
        ] {
            assert_eq!(seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn datetimes() {
        let t = parse_datetime("2024-06-01T12:00:00+02:00").unwrap();
        assert_eq!(format_datetime(t), "2024-06-01T10:00:00Z");
        assert!(parse_datetime("2024-06-01 12:00").is_none());
    }
}
