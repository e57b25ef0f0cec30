//! Green Button (ESPI) parsing and import, on the real sample feeds in
//! tests/fixtures/greenbutton (Apache-2.0, see SOURCES.md there), on SQLite and PostgreSQL.

mod common;

use common::TestDb;
use std::collections::HashMap;
use switchyard::domain::{AccountKind, GridLocation, InterconnectionType};
use switchyard::protocol::greenbutton::import::{ImportError, import_series};
use switchyard::protocol::greenbutton::model::Feed;
use switchyard::protocol::greenbutton::series::{self, Direction, SeriesError, UsagePointSeries};
use switchyard::protocol::greenbutton::{ParseError, parse_feed};
use switchyard::registry::model::{Account, Meter, Site};
use switchyard::telemetry::{self, Measurand};

const NOW: i64 = 1_900_000_000;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/greenbutton/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn parse(xml: &str) -> Result<Feed, ParseError> {
    parse_feed(xml.as_bytes())
}

fn build(xml: &str) -> Vec<UsagePointSeries> {
    series::build(&parse(xml).unwrap()).unwrap()
}

/// An oracle independent of the parser: the IntervalReading `<value>`s by plain text scan.
fn scanned_values(xml: &str) -> Vec<i64> {
    xml.split("<IntervalReading>")
        .skip(1)
        .map(|r| {
            let v = r.split("<value>").nth(1).unwrap();
            v.split("</value>").next().unwrap().trim().parse().unwrap()
        })
        .collect()
}

#[test]
fn samples_parse_into_checked_series() {
    let xml = fixture("abridged_electric_containerized.xml");
    let s = build(&xml);
    assert_eq!(s.len(), 1);
    let sum = s[0].summary();
    let values = scanned_values(&xml);
    assert_eq!(sum.intervals, values.len() as u64);
    assert_eq!(sum.wh_delivered, values.iter().sum::<i64>() as f64);
    assert_eq!(
        sum.usage_point,
        "urn:uuid:C4B46B5D-D4AC-4CD3-9E29-13717DD04140"
    );
    assert_eq!(sum.first_start, Some(1_293_868_800));

    // Cost, LocalTimeParameters and the 15-minute ReadingType of the GBA sample.
    let xml = fixture("gba_electric_15min_cost_1day.xml");
    let feed = parse(&xml).unwrap();
    assert_eq!(feed.local_time[0].tz_offset, Some(-18000));
    assert_eq!(
        feed.local_time[0].dst_start_rule.as_deref(),
        Some("360E2000")
    );
    assert_eq!(feed.reading_types[0].interval_length, Some(900));
    let s = series::build(&feed).unwrap();
    let c = &s[0].channels[0];
    assert_eq!(c.intervals.len(), 96);
    assert!(
        c.intervals
            .iter()
            .all(|i| i.cost.is_some() && i.duration == 900)
    );
    assert_eq!(s[0].summary().gaps, 0);
}

#[test]
fn received_energy_is_export_and_padded_numbers_parse() {
    let xml = fixture("openespi_batch_3usagepoints_netmeter_flow19.xml");
    let s = build(&xml);
    assert_eq!(s.len(), 3);
    let net = s
        .iter()
        .find(|u| {
            u.channels
                .iter()
                .any(|c| c.direction == Direction::Received)
        })
        .expect("a net meter with a received channel");
    let sum = net.summary();
    assert!(sum.wh_received > 0.0 && sum.wh_delivered > 0.0, "{sum:?}");
    let total: u64 = s.iter().map(|u| u.summary().intervals).sum();
    assert_eq!(total, scanned_values(&xml).len() as u64);

    // `<kind> 12 </kind>`-style padding throughout this feed.
    let xml = fixture("openespi_hourly_5usagepoints_32days.xml");
    let s = build(&xml);
    assert_eq!(s.len(), 5);
    let total: u64 = s.iter().map(|u| u.summary().intervals).sum();
    assert_eq!(total, scanned_values(&xml).len() as u64);
}

#[test]
fn truncated_and_invalid_xml_are_refused_with_a_position() {
    let xml = fixture("gba_electric_15min_cost_1day.xml");
    let cut = &xml[..xml.len() / 2];
    let err = parse(cut).unwrap_err();
    assert!(matches!(err, ParseError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    let broken = xml.replacen("</IntervalReading>", "</IntervalReadin>", 1);
    let err = parse(&broken).unwrap_err();
    assert!(matches!(err, ParseError::Xml { .. }), "{err}");

    let err = parse("<html><body/></html>").unwrap_err();
    assert!(matches!(err, ParseError::NotAtom(_)), "{err}");
    let err = parse("").unwrap_err();
    assert!(matches!(err, ParseError::NotAtom(_)), "{err}");

    let bad_number = xml.replacen("<value>", "<value>12x", 1);
    let err = parse(&bad_number).unwrap_err();
    assert!(err.to_string().contains("<value>"), "{err}");
}

#[test]
fn units_other_than_wh_are_refused_by_name() {
    let xml =
        fixture("abridged_electric_containerized.xml").replace("<uom>72</uom>", "<uom>9999</uom>");
    let err = series::build(&parse(&xml).unwrap()).unwrap_err();
    assert!(matches!(err, SeriesError::UnknownUom { .. }), "{err}");
    assert!(err.to_string().contains("uom 9999"), "{err}");

    let gas = fixture("openespi_gas_monthly.xml");
    let err = series::build(&parse(&gas).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("uom 169 (therm) is not electric energy"),
        "{err}"
    );
}

/// The abridged feed with its first IntervalBlock entry appended again, changed by `edit`.
fn with_block_again(edit: impl Fn(&str) -> String) -> String {
    let xml = fixture("abridged_electric_containerized.xml");
    let start = xml.find("<entry>\n    <id>urn:uuid:4BFE01BF").unwrap();
    let end = start + xml[start..].find("</entry>").unwrap() + "</entry>".len();
    let block = edit(&xml[start..end]);
    xml.replacen("</feed>", &format!("{block}\n</feed>"), 1)
}

#[test]
fn duplicate_intervals_are_kept_once_and_conflicts_refused() {
    let plain = build(&fixture("abridged_electric_containerized.xml"))[0].summary();
    let twice = build(&with_block_again(|b| b.to_string()));
    assert_eq!(
        twice[0].summary(),
        plain,
        "a repeated block changes nothing"
    );
    assert_eq!(twice[0].repeated, 4);

    let conflicting =
        with_block_again(|b| b.replacen("<value>450</value>", "<value>451</value>", 1));
    let err = series::build(&parse(&conflicting).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            SeriesError::Conflict {
                start: 1_293_868_800,
                ..
            }
        ),
        "{err}"
    );

    // Shifted by half an hour: overlaps the original intervals.
    let overlapping = with_block_again(|b| {
        b.replace("<start>1293868800</start>", "<start>1293870600</start>")
            .replace("<start>1293872400</start>", "<start>1293874200</start>")
            .replace("<start>1293876000</start>", "<start>1293877800</start>")
            .replace("<start>1293879600</start>", "<start>1293881400</start>")
    });
    let err = series::build(&parse(&overlapping).unwrap()).unwrap_err();
    assert!(matches!(err, SeriesError::Overlap { .. }), "{err}");
}

#[test]
fn daylight_saving_changes() {
    // The 15-day GBA feed runs across the US spring-forward of 2012-03-11 (its
    // LocalTimeParameters: UTC-5 with DST): in UTC the 15-minute series is continuous.
    let xml = fixture("gba_electric_15min_cost_15days.xml");
    let s = build(&xml);
    let c = &s[0].channels[0];
    let dst = 1_331_449_200; // 2012-03-11T07:00:00Z, 02:00 local
    assert!(c.intervals.first().unwrap().start < dst && c.intervals.last().unwrap().start > dst);
    let around: Vec<_> = c
        .intervals
        .iter()
        .filter(|i| (dst - 3600..dst + 3600).contains(&i.start))
        .collect();
    assert_eq!(around.len(), 8, "no hour lost or doubled at the change");
    assert!(around.windows(2).all(|w| w[1].start == w[0].start + 900));

    // A feed stamped in local time repeats the autumn hour: two different values for one
    // start, refused with the daylight-saving hint.
    let repeated = with_block_again(|b| {
        b.replacen("<value>430</value>", "<value>999</value>", 1)
            .replacen("<value>450</value>", "<value>998</value>", 1)
    });
    let err = series::build(&parse(&repeated).unwrap()).unwrap_err();
    assert!(err.to_string().contains("daylight-saving"), "{err}");
}

/// The sample feeds against the official ESPI 4.0 schema (xmllint). Five are valid; the
/// OpenESPI hourly feed pads its numbers (`<intervalLength> 3600 </intervalLength>`), which
/// the schema forbids: that is the real-world input the parser's trimming exists for, so
/// the test pins both facts (the file is invalid, and for that reason only).
#[test]
fn sample_feeds_against_the_espi_schema() {
    let Some(schema) = common::espi::espi_schema() else {
        return;
    };
    for name in [
        "abridged_electric_containerized.xml",
        "gba_electric_15min_cost_1day.xml",
        "gba_electric_15min_cost_15days.xml",
        "openespi_batch_3usagepoints_netmeter_flow19.xml",
        "openespi_gas_monthly.xml",
    ] {
        schema.validate(name, &fixture(name));
    }
    let padded = fixture("openespi_hourly_5usagepoints_32days.xml");
    let report = schema
        .check("padded", &padded)
        .expect_err("the padded OpenESPI feed is not schema-valid");
    assert!(
        report
            .lines()
            .filter(|l| l.contains("validity error"))
            .all(|l| l.contains("' 3600 ' is not a valid value")),
        "{report}"
    );
    // Trimmed, it is valid: padding is its only fault.
    let trimmed = padded.replace("> 3600 <", ">3600<");
    schema.validate("trimmed", &trimmed);

    // The schema is strict enough to catch what the parser refuses: a reading whose value
    // is not an integer.
    let bad = fixture("abridged_electric_containerized.xml").replacen("<value>", "<value>12x", 1);
    assert!(schema.check("bad-value", &bad).is_err());
}

async fn registry_meter(db: &TestDb, mpid: &str) -> String {
    let reg = db.registry().await;
    let n = uuid::Uuid::new_v4().simple().to_string();
    let acct = reg
        .create(Account {
            id: format!("acct-{n}"),
            account_number: format!("A-{n}"),
            subscriber_id: None,
            name: "Utility customer".into(),
            kind: AccountKind::Residential,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let site = reg
        .create(Site {
            id: format!("site-{n}"),
            account_id: acct.id,
            connection_point_id: None,
            territory: "NORTH".into(),
            interconnection_type: InterconnectionType::Nem,
            address: None,
            grid_location: GridLocation::default(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let meter = reg
        .create(Meter {
            id: format!("meter-{n}"),
            site_id: site.id,
            mpid: mpid.into(),
            revenue_grade: true,
            interval_seconds: 900,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    meter.id
}

async fn count(db: &TestDb, source: &str) -> usize {
    telemetry::query(&db.store, source, None, 0, i64::MAX)
        .await
        .unwrap()
        .len()
}

async fn import_is_idempotent_and_all_or_nothing(db: TestDb) {
    let xml = fixture("gba_electric_15min_cost_15days.xml");
    let s = build(&xml);
    let up = s[0].usage_point.id.clone();
    // Mapped by the MPID equal to the UsagePoint's uuid, without its urn prefix.
    let meter = registry_meter(&db, up.trim_start_matches("urn:uuid:")).await;
    let n = s[0].summary().intervals as usize;

    let first = import_series(&db.store, &s, &HashMap::new(), NOW)
        .await
        .unwrap();
    assert_eq!(first.outcome.inserted as usize, n);
    assert_eq!(first.usage_points[0].1, meter);
    let stored = telemetry::query(
        &db.store,
        &meter,
        Some(Measurand::IntervalEnergyImported),
        0,
        i64::MAX,
    )
    .await
    .unwrap();
    assert_eq!(stored.len(), n);
    assert_eq!(
        stored.iter().map(|r| r.value).sum::<f64>(),
        s[0].summary().wh_delivered
    );
    let again = import_series(&db.store, &s, &HashMap::new(), NOW)
        .await
        .unwrap();
    assert_eq!(
        (
            again.outcome.inserted as usize,
            again.outcome.duplicates as usize
        ),
        (0, n)
    );
    assert_eq!(count(&db, &meter).await, n);

    // Two feeds at once, the second's UsagePoints unknown to the registry: nothing of the
    // first is stored either.
    let mut both = build(&fixture("abridged_electric_containerized.xml"));
    let abridged_meter = registry_meter(&db, "C4B46B5D-D4AC-4CD3-9E29-13717DD04140").await;
    both.extend(build(&fixture(
        "openespi_batch_3usagepoints_netmeter_flow19.xml",
    )));
    let err = import_series(&db.store, &both, &HashMap::new(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::NoMeter { .. }), "{err}");
    assert_eq!(count(&db, &abridged_meter).await, 0);

    // A mapping file entry naming a meter that does not exist is refused too.
    let map = HashMap::from([(both[0].usage_point.id.clone(), "no-such-meter".to_string())]);
    let err = import_series(&db.store, &both[..1], &map, NOW)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-meter"), "{err}");
    // With a valid mapping (by meter id) it goes in.
    let map = HashMap::from([(both[0].usage_point.id.clone(), abridged_meter.clone())]);
    import_series(&db.store, &both[..1], &map, NOW)
        .await
        .unwrap();
    assert_eq!(count(&db, &abridged_meter).await, 8);
}

on_both_backends!(import_is_idempotent_and_all_or_nothing);
