//! Checks of OpenADR 3 requests beyond their JSON shape: the length, pattern and range
//! limits of the 3.1.0 schemas, and the rules of the specification text that a schema
//! cannot say (an interval must last a positive time). Each failure names the field.

use super::duration::{parse_datetime, seconds};
use super::error::OadrError;
use super::model::*;

type Check = Result<(), OadrError>;

fn len(field: &str, s: &str, min: usize, max: usize) -> Check {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(OadrError::invalid(
            field,
            format!("must be {min} to {max} characters long, got {n}"),
        ));
    }
    Ok(())
}

/// `objectID`: 1-128 characters of `[a-zA-Z0-9_-]`.
pub fn object_id(field: &str, s: &str) -> Check {
    len(field, s, 1, 128)?;
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(OadrError::invalid(
            field,
            format!("'{s}' is not an object ID (letters, digits, '_' and '-' only)"),
        ));
    }
    Ok(())
}

/// A name-like string of the specification (clientName, venName, resourceName, target,
/// payload type): 1-128 characters.
pub fn name(field: &str, s: &str) -> Check {
    len(field, s, 1, 128)
}

fn opt_name(field: &str, s: &Option<String>) -> Check {
    s.as_deref().map_or(Ok(()), |v| name(field, v))
}

fn targets(field: &str, t: &Option<Vec<String>>) -> Check {
    for (i, s) in t.iter().flatten().enumerate() {
        name(&format!("{field}[{i}]"), s)?;
    }
    Ok(())
}

fn uri(field: &str, s: &str, http_only: bool) -> Check {
    len(field, s, 2, 8000)?;
    let parsed = reqwest::Url::parse(s)
        .map_err(|e| OadrError::invalid(field, format!("'{s}' is not an absolute URI: {e}")))?;
    if http_only && !matches!(parsed.scheme(), "http" | "https") {
        return Err(OadrError::invalid(
            field,
            format!(
                "callbacks must be http or https URLs, got '{}'",
                parsed.scheme()
            ),
        ));
    }
    Ok(())
}

fn duration(field: &str, d: &str) -> Result<f64, OadrError> {
    seconds(d).ok_or_else(|| {
        OadrError::invalid(
            field,
            format!("'{d}' is not an ISO 8601 duration such as PT1H"),
        )
    })
}

/// An interval period. `positive`: its duration, when given, must be longer than zero
/// (an interval of zero or negative length is a mistake, never a request).
fn interval_period(field: &str, p: &Option<IntervalPeriod>, positive: bool) -> Check {
    let Some(p) = p else { return Ok(()) };
    if let Some(start) = &p.start
        && parse_datetime(start).is_none()
    {
        return Err(OadrError::invalid(
            format!("{field}.start"),
            format!("'{start}' is not an RFC 3339 date-time"),
        ));
    }
    if let Some(d) = &p.duration {
        let s = duration(&format!("{field}.duration"), d)?;
        if s < 0.0 {
            return Err(OadrError::invalid(
                format!("{field}.duration"),
                format!("'{d}' is negative: the interval would end before it starts"),
            ));
        }
        if positive && s == 0.0 {
            return Err(OadrError::invalid(
                format!("{field}.duration"),
                format!("'{d}' is zero: an interval must last some time"),
            ));
        }
    }
    if let Some(r) = &p.randomize_start
        && duration(&format!("{field}.randomizeStart"), r)? < 0.0
    {
        return Err(OadrError::invalid(
            format!("{field}.randomizeStart"),
            "must not be negative",
        ));
    }
    Ok(())
}

fn values_maps(field: &str, maps: &[ValuesMap]) -> Check {
    for (i, m) in maps.iter().enumerate() {
        name(&format!("{field}[{i}].type"), &m.kind)?;
    }
    Ok(())
}

fn intervals(field: &str, list: &[Interval]) -> Check {
    for (i, iv) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        interval_period(&format!("{f}.intervalPeriod"), &iv.interval_period, true)?;
        values_maps(&format!("{f}.payloads"), &iv.payloads)?;
    }
    Ok(())
}

fn units(field: &str, u: &Option<String>) -> Check {
    opt_name(field, u)
}

fn event_descriptor(field: &str, d: &EventPayloadDescriptor) -> Check {
    name(&format!("{field}.payloadType"), &d.payload_type)?;
    units(&format!("{field}.units"), &d.units)
}

fn report_descriptor_payload(field: &str, d: &ReportPayloadDescriptor) -> Check {
    name(&format!("{field}.payloadType"), &d.payload_type)?;
    opt_name(&format!("{field}.readingType"), &d.reading_type)?;
    units(&format!("{field}.units"), &d.units)?;
    if d.confidence.is_some_and(|c| c > 100) {
        return Err(OadrError::invalid(
            format!("{field}.confidence"),
            "must be 0 to 100",
        ));
    }
    Ok(())
}

pub fn program(p: &ProgramRequest) -> Check {
    name("programName", &p.program_name)?;
    interval_period("intervalPeriod", &p.interval_period, true)?;
    for (i, d) in p.program_descriptions.iter().flatten().enumerate() {
        uri(&format!("programDescriptions[{i}].URL"), &d.url, false)?;
    }
    for (i, d) in p.payload_descriptors.iter().flatten().enumerate() {
        let f = format!("payloadDescriptors[{i}]");
        match d {
            PayloadDescriptor::Event(e) => event_descriptor(&f, e)?,
            PayloadDescriptor::Report(r) => report_descriptor_payload(&f, r)?,
        }
    }
    values_maps("attributes", p.attributes.as_deref().unwrap_or_default())?;
    targets("targets", &p.targets)
}

pub fn event(e: &EventRequest) -> Check {
    object_id("programID", &e.program_id)?;
    if let Some(d) = &e.duration
        && duration("duration", d)? < 0.0
    {
        return Err(OadrError::invalid("duration", "must not be negative"));
    }
    targets("targets", &e.targets)?;
    for (i, r) in e.report_descriptors.iter().flatten().enumerate() {
        let f = format!("reportDescriptors[{i}]");
        name(&format!("{f}.payloadType"), &r.payload_type)?;
        opt_name(&format!("{f}.readingType"), &r.reading_type)?;
        units(&format!("{f}.units"), &r.units)?;
        targets(&format!("{f}.targets"), &r.targets)?;
    }
    for (i, d) in e.payload_descriptors.iter().flatten().enumerate() {
        event_descriptor(&format!("payloadDescriptors[{i}]"), d)?;
    }
    interval_period("intervalPeriod", &e.interval_period, true)?;
    intervals("intervals", &e.intervals)
}

pub fn report(r: &ReportRequest) -> Check {
    object_id("eventID", &r.event_id)?;
    name("clientName", &r.client_name)?;
    for (i, d) in r.payload_descriptors.iter().flatten().enumerate() {
        report_descriptor_payload(&format!("payloadDescriptors[{i}]"), d)?;
    }
    for (i, res) in r.resources.iter().enumerate() {
        let f = format!("resources[{i}]");
        name(&format!("{f}.resourceName"), &res.resource_name)?;
        interval_period(&format!("{f}.intervalPeriod"), &res.interval_period, true)?;
        intervals(&format!("{f}.intervals"), &res.intervals)?;
    }
    Ok(())
}

pub fn subscription(s: &SubscriptionRequest) -> Check {
    name("clientName", &s.client_name)?;
    if let Some(p) = &s.program_id {
        object_id("programID", p)?;
    }
    for (i, o) in s.object_operations.iter().enumerate() {
        uri(
            &format!("objectOperations[{i}].callbackUrl"),
            &o.callback_url,
            true,
        )?;
    }
    targets("targets", &s.targets)
}

pub fn ven(v: &VenRequest) -> Check {
    name("venName", &v.ven_name)?;
    opt_name("clientID", &v.client_id)?;
    values_maps("attributes", v.attributes.as_deref().unwrap_or_default())?;
    targets("targets", &v.targets)
}

pub fn resource(r: &ResourceRequest) -> Check {
    name("resourceName", &r.resource_name)?;
    object_id("venID", &r.ven_id)?;
    opt_name("clientID", &r.client_id)?;
    values_maps("attributes", r.attributes.as_deref().unwrap_or_default())?;
    targets("targets", &r.targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(json: serde_json::Value) -> EventRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn intervals_must_last() {
        let ok = ev(serde_json::json!({"programID": "p",
            "intervalPeriod": {"start": "2024-01-01T00:00:00Z", "duration": "PT1H"},
            "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}]}));
        assert!(event(&ok).is_ok());
        for (period, field) in [
            (
                serde_json::json!({"duration": "PT0S"}),
                "intervalPeriod.duration",
            ),
            (
                serde_json::json!({"duration": "-PT1H"}),
                "intervalPeriod.duration",
            ),
            (
                serde_json::json!({"duration": "1 hour"}),
                "intervalPeriod.duration",
            ),
            (
                serde_json::json!({"start": "yesterday"}),
                "intervalPeriod.start",
            ),
        ] {
            let mut e = ok.clone();
            e.interval_period = serde_json::from_value(period).unwrap();
            let err = event(&e).unwrap_err();
            assert_eq!(err.0.field.as_deref(), Some(field));
            assert_eq!(err.status(), 400);
        }
        let mut e = ok.clone();
        e.intervals[0].interval_period = Some(IntervalPeriod {
            duration: Some("PT0S".into()),
            ..Default::default()
        });
        assert_eq!(
            event(&e).unwrap_err().0.field.as_deref(),
            Some("intervals[0].intervalPeriod.duration")
        );
    }

    #[test]
    fn ids_and_names() {
        assert!(object_id("id", "abc-9_Z").is_ok());
        assert!(object_id("id", "a b").is_err());
        assert!(object_id("id", "").is_err());
        assert!(name("n", &"x".repeat(129)).is_err());
    }
}
