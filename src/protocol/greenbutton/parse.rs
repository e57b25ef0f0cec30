//! A streaming ESPI Atom parser over quick-xml events: one pass, no document tree, memory
//! proportional to the interval readings kept (not to the XML), so a year of 15-minute data
//! for many usage points parses at the speed of the XML scanner.
//!
//! Elements are matched by local name (feeds use the default namespace or an `espi:`
//! prefix interchangeably). Numbers are trimmed before parsing, because real feeds pad
//! them (`<kind> 12 </kind>`). A feed that ends before its elements close, or is not
//! well-formed, is an error with the byte position: nothing of it is returned.

use super::model::*;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use std::io::BufRead;

/// Why a feed could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid XML at byte {position}: {message}")]
    Xml { position: u64, message: String },
    #[error("truncated: the file ends inside <{open}> (byte {position})")]
    Truncated { open: String, position: u64 },
    #[error("<{element}> at byte {position}: '{text}' is not a number")]
    Number {
        element: &'static str,
        text: String,
        position: u64,
    },
    #[error("<{element}> at byte {position} lacks <{missing}>")]
    Missing {
        element: &'static str,
        missing: &'static str,
        position: u64,
    },
    #[error("not a Green Button file: the root element is <{0}>, not an Atom <feed> or <entry>")]
    NotAtom(String),
    #[error("{0} at byte {1} has no self link")]
    NoSelfLink(&'static str, u64),
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
}

/// The elements the parser reacts to; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Feed,
    Entry,
    Id,
    Title,
    Content,
    UsagePoint,
    MeterReading,
    ReadingType,
    IntervalBlock,
    IntervalReading,
    TimePeriod,
    Interval,
    BillingPeriod,
    ReadingQuality,
    LocalTimeParameters,
    UsageSummary,
    ServiceCategory,
    // Leaves holding numbers or text.
    Start,
    Duration,
    Value,
    Cost,
    Quality,
    Kind,
    Uom,
    PowerOfTen,
    FlowDirection,
    IntervalLength,
    Commodity,
    Accumulation,
    Currency,
    TzOffset,
    DstOffset,
    DstStartRule,
    DstEndRule,
    BillLastPeriod,
    Other,
}

fn tag(name: &str) -> Tag {
    match name {
        "feed" => Tag::Feed,
        "entry" => Tag::Entry,
        "id" => Tag::Id,
        "title" => Tag::Title,
        "content" => Tag::Content,
        "UsagePoint" => Tag::UsagePoint,
        "MeterReading" => Tag::MeterReading,
        "ReadingType" => Tag::ReadingType,
        "IntervalBlock" => Tag::IntervalBlock,
        "IntervalReading" => Tag::IntervalReading,
        "timePeriod" => Tag::TimePeriod,
        "interval" => Tag::Interval,
        "billingPeriod" => Tag::BillingPeriod,
        "ReadingQuality" => Tag::ReadingQuality,
        "LocalTimeParameters" => Tag::LocalTimeParameters,
        "UsageSummary" | "ElectricPowerUsageSummary" => Tag::UsageSummary,
        "ServiceCategory" => Tag::ServiceCategory,
        "start" => Tag::Start,
        "duration" => Tag::Duration,
        "value" => Tag::Value,
        "cost" => Tag::Cost,
        "quality" => Tag::Quality,
        "kind" => Tag::Kind,
        "uom" => Tag::Uom,
        "powerOfTenMultiplier" => Tag::PowerOfTen,
        "flowDirection" => Tag::FlowDirection,
        "intervalLength" => Tag::IntervalLength,
        "commodity" => Tag::Commodity,
        "accumulationBehaviour" => Tag::Accumulation,
        "currency" => Tag::Currency,
        "tzOffset" => Tag::TzOffset,
        "dstOffset" => Tag::DstOffset,
        "dstStartRule" => Tag::DstStartRule,
        "dstEndRule" => Tag::DstEndRule,
        "billLastPeriod" => Tag::BillLastPeriod,
        _ => Tag::Other,
    }
}

fn name_of(t: Tag) -> &'static str {
    match t {
        Tag::Start => "start",
        Tag::Duration => "duration",
        Tag::Value => "value",
        Tag::Cost => "cost",
        Tag::Quality => "quality",
        Tag::Kind => "kind",
        Tag::Uom => "uom",
        Tag::PowerOfTen => "powerOfTenMultiplier",
        Tag::FlowDirection => "flowDirection",
        Tag::IntervalLength => "intervalLength",
        Tag::Commodity => "commodity",
        Tag::Accumulation => "accumulationBehaviour",
        Tag::Currency => "currency",
        Tag::TzOffset => "tzOffset",
        Tag::DstOffset => "dstOffset",
        Tag::BillLastPeriod => "billLastPeriod",
        Tag::IntervalReading => "IntervalReading",
        _ => "element",
    }
}

/// The ESPI resource inside the current entry's `<content>`.
#[derive(Debug, Default)]
enum Resource {
    #[default]
    None,
    UsagePoint {
        service_kind: Option<u16>,
    },
    MeterReading,
    ReadingType(ReadingType),
    IntervalBlock(Vec<IntervalReading>),
    LocalTime(LocalTimeParameters),
    Summary(UsageSummary),
}

/// The Atom entry being read.
#[derive(Debug, Default)]
struct EntryState {
    id: Option<String>,
    title: Option<String>,
    self_href: Option<String>,
    up_href: Option<String>,
    related: Vec<String>,
    resource: Resource,
    start_pos: u64,
}

/// The IntervalReading being read.
#[derive(Debug, Default)]
struct ReadingState {
    start: Option<i64>,
    duration: Option<i64>,
    value: Option<i64>,
    cost: Option<i64>,
    quality: Option<u16>,
}

/// Parses a whole feed (or a single entry document) from `input`.
pub fn parse_feed<R: BufRead>(input: R) -> Result<Feed, ParseError> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().trim_text(true);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut stack: Vec<Tag> = Vec::with_capacity(16);
    let mut names: Vec<String> = Vec::new(); // element names, for the truncation message
    let mut text = String::new();
    let mut feed = Feed::default();
    let mut entry: Option<EntryState> = None;
    let mut reading = ReadingState::default();
    let mut root_seen = false;
    loop {
        let pos = reader.buffer_position();
        let ev = reader.read_event_into(&mut buf).map_err(|e| {
            let message = e.to_string();
            // A file cut inside a comment, tag or CDATA section is a truncation too.
            if message.contains("end of input")
                && let Some(open) = names.last()
            {
                ParseError::Truncated {
                    open: open.clone(),
                    position: reader.error_position(),
                }
            } else {
                ParseError::Xml {
                    position: reader.error_position(),
                    message,
                }
            }
        })?;
        match ev {
            Event::Start(e) => {
                let t = tag(e.local_name().as_ref());
                if !root_seen {
                    root_seen = true;
                    check_root(t, &e)?;
                }
                match t {
                    Tag::Entry => {
                        entry = Some(EntryState {
                            start_pos: pos,
                            ..Default::default()
                        })
                    }
                    Tag::IntervalReading => reading = ReadingState::default(),
                    _ => {}
                }
                if let Some(en) = entry.as_mut() {
                    // One entry may hold several IntervalBlocks in its content: they
                    // all belong to the entry's MeterReading.
                    let more_blocks = t == Tag::IntervalBlock
                        && matches!(en.resource, Resource::IntervalBlock(_));
                    if stack.last() == Some(&Tag::Content) && !more_blocks {
                        en.resource = match t {
                            Tag::UsagePoint => Resource::UsagePoint { service_kind: None },
                            Tag::MeterReading => Resource::MeterReading,
                            Tag::ReadingType => Resource::ReadingType(ReadingType {
                                href: String::new(),
                                uom: Uom::Other(u16::MAX),
                                power_of_ten_multiplier: 0,
                                flow_direction: None,
                                interval_length: None,
                                kind: None,
                                commodity: None,
                                accumulation_behaviour: None,
                                currency: None,
                            }),
                            Tag::IntervalBlock => Resource::IntervalBlock(Vec::new()),
                            Tag::LocalTimeParameters => Resource::LocalTime(Default::default()),
                            Tag::UsageSummary => Resource::Summary(Default::default()),
                            _ => Resource::None,
                        };
                    }
                    if t == Tag::Other && stack.last() == Some(&Tag::Entry) {
                        // <link> elements are usually empty, but may be written open/close.
                        link(&e, en);
                    }
                }
                text.clear();
                stack.push(t);
                names.push(e.name().as_ref().to_string());
            }
            Event::Empty(e) => {
                let t = tag(e.local_name().as_ref());
                if !root_seen {
                    root_seen = true;
                    check_root(t, &e)?;
                }
                if let Some(en) = entry.as_mut()
                    && stack.last() == Some(&Tag::Entry)
                {
                    link(&e, en);
                }
                if let Some(en) = entry.as_mut()
                    && stack.last() == Some(&Tag::Content)
                    && t == Tag::MeterReading
                {
                    en.resource = Resource::MeterReading;
                }
            }
            Event::Text(t) if stack.last().is_some_and(|t| *t != Tag::Other) => {
                text.push_str(&t);
            }
            Event::CData(t) => {
                text.push_str(&t);
            }
            Event::GeneralRef(r) => {
                // Entity references inside text (titles); numbers never carry them.
                if let Ok(s) = quick_xml::escape::unescape(&format!("&{};", &*r)) {
                    text.push_str(&s);
                }
            }
            Event::End(_) => {
                let t = stack.pop().unwrap_or(Tag::Other);
                names.pop();
                let parent = stack.last().copied().unwrap_or(Tag::Other);
                if let Some(en) = entry.as_mut() {
                    end_element(t, parent, &stack, &text, pos, en, &mut reading, &mut feed)?;
                }
                if t == Tag::Entry
                    && let Some(en) = entry.take()
                {
                    finish_entry(en, &mut feed)?;
                }
                text.clear();
            }
            Event::Eof => {
                if let Some(open) = names.last() {
                    return Err(ParseError::Truncated {
                        open: open.clone(),
                        position: reader.buffer_position(),
                    });
                }
                if !root_seen {
                    return Err(ParseError::NotAtom("(none: the file is empty)".into()));
                }
                break;
            }
            _ => {}
        }
        buf.clear();
    }
    Ok(feed)
}

fn check_root(t: Tag, e: &BytesStart) -> Result<(), ParseError> {
    if matches!(t, Tag::Feed | Tag::Entry) {
        Ok(())
    } else {
        Err(ParseError::NotAtom(e.name().as_ref().to_string()))
    }
}

/// Records an Atom `<link rel=... href=...>` of the entry.
fn link(e: &BytesStart, en: &mut EntryState) {
    if e.local_name().as_ref() != "link" {
        return;
    }
    let mut rel = None;
    let mut href = None;
    for a in e.attributes().flatten() {
        match a.key.local_name().as_ref() {
            "rel" => rel = Some(a.value.to_string()),
            "href" => {
                let v = a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .unwrap_or(a.value.clone());
                href = Some(normalize_href(&v));
            }
            _ => {}
        }
    }
    let Some(href) = href else { return };
    match rel.as_deref() {
        Some("self") => en.self_href = Some(href),
        Some("up") => en.up_href = Some(href),
        Some("related") => en.related.push(href),
        _ => {}
    }
}

fn number<T: std::str::FromStr>(t: Tag, text: &str, position: u64) -> Result<T, ParseError> {
    text.trim().parse().map_err(|_| ParseError::Number {
        element: name_of(t),
        text: text.chars().take(40).collect(),
        position,
    })
}

#[allow(clippy::too_many_arguments)]
fn end_element(
    t: Tag,
    parent: Tag,
    stack: &[Tag],
    text: &str,
    pos: u64,
    en: &mut EntryState,
    reading: &mut ReadingState,
    _feed: &mut Feed,
) -> Result<(), ParseError> {
    match (&mut en.resource, t, parent) {
        (_, Tag::Id, Tag::Entry) => en.id = Some(text.trim().to_string()),
        (_, Tag::Title, Tag::Entry) => en.title = Some(text.trim().to_string()),
        (Resource::IntervalBlock(list), _, _)
            if stack.contains(&Tag::IntervalReading) || t == Tag::IntervalReading =>
        {
            match (t, parent) {
                (Tag::Start, Tag::TimePeriod) => reading.start = Some(number(t, text, pos)?),
                (Tag::Duration, Tag::TimePeriod) => reading.duration = Some(number(t, text, pos)?),
                (Tag::Value, Tag::IntervalReading) => reading.value = Some(number(t, text, pos)?),
                (Tag::Cost, Tag::IntervalReading) => reading.cost = Some(number(t, text, pos)?),
                (Tag::Quality, Tag::ReadingQuality) => {
                    reading.quality = Some(number(t, text, pos)?)
                }
                (Tag::IntervalReading, _) => {
                    let missing = |m| ParseError::Missing {
                        element: "IntervalReading",
                        missing: m,
                        position: pos,
                    };
                    list.push(IntervalReading {
                        start: reading.start.ok_or_else(|| missing("timePeriod/start"))?,
                        duration: reading
                            .duration
                            .ok_or_else(|| missing("timePeriod/duration"))?,
                        value: reading.value.ok_or_else(|| missing("value"))?,
                        cost: reading.cost,
                        quality: reading.quality.map(ReadingQualityCode),
                    });
                }
                _ => {}
            }
        }
        (Resource::ReadingType(rt), _, Tag::ReadingType) => match t {
            Tag::Uom => rt.uom = Uom::from_code(number(t, text, pos)?),
            Tag::PowerOfTen => rt.power_of_ten_multiplier = number(t, text, pos)?,
            Tag::FlowDirection => {
                rt.flow_direction = Some(FlowDirection::from_code(number(t, text, pos)?))
            }
            Tag::IntervalLength => rt.interval_length = Some(number(t, text, pos)?),
            Tag::Kind => rt.kind = Some(number(t, text, pos)?),
            Tag::Commodity => rt.commodity = Some(number(t, text, pos)?),
            Tag::Accumulation => rt.accumulation_behaviour = Some(number(t, text, pos)?),
            Tag::Currency => rt.currency = Some(number(t, text, pos)?),
            _ => {}
        },
        (Resource::UsagePoint { service_kind }, Tag::Kind, Tag::ServiceCategory) => {
            *service_kind = Some(number(t, text, pos)?)
        }
        (Resource::LocalTime(lt), _, Tag::LocalTimeParameters) => match t {
            Tag::TzOffset => lt.tz_offset = Some(number(t, text, pos)?),
            Tag::DstOffset => lt.dst_offset = Some(number(t, text, pos)?),
            Tag::DstStartRule => lt.dst_start_rule = Some(text.trim().to_string()),
            Tag::DstEndRule => lt.dst_end_rule = Some(text.trim().to_string()),
            _ => {}
        },
        (Resource::Summary(s), _, _) => match (t, parent) {
            (Tag::Start, Tag::BillingPeriod) => s.billing_start = Some(number(t, text, pos)?),
            (Tag::Duration, Tag::BillingPeriod) => s.billing_duration = Some(number(t, text, pos)?),
            (Tag::BillLastPeriod, Tag::UsageSummary) => {
                s.bill_last_period = Some(number(t, text, pos)?)
            }
            (Tag::Currency, Tag::UsageSummary) => s.currency = Some(number(t, text, pos)?),
            _ => {}
        },
        _ => {}
    }
    Ok(())
}

fn finish_entry(en: EntryState, feed: &mut Feed) -> Result<(), ParseError> {
    let self_or = |what: &'static str| -> Result<String, ParseError> {
        en.self_href
            .clone()
            .ok_or(ParseError::NoSelfLink(what, en.start_pos))
    };
    match en.resource {
        Resource::None => {}
        Resource::UsagePoint { service_kind } => {
            let href = self_or("UsagePoint")?;
            feed.usage_points.push(UsagePoint {
                id: en.id.clone().unwrap_or_else(|| href.clone()),
                href,
                title: en.title.filter(|t| !t.is_empty()),
                service_kind,
            });
        }
        Resource::MeterReading => {
            let href = self_or("MeterReading")?;
            let usage_point_href = parent_of(&href, "MeterReading")
                .or_else(|| {
                    en.up_href
                        .as_deref()
                        .and_then(|u| parent_of(u, "MeterReading"))
                })
                .unwrap_or_default();
            let reading_type_href = en
                .related
                .iter()
                .find(|r| r.contains("ReadingType"))
                .cloned();
            feed.meter_readings.push(MeterReading {
                href,
                usage_point_href,
                reading_type_href,
            });
        }
        Resource::ReadingType(mut rt) => {
            rt.href = self_or("ReadingType")?;
            feed.reading_types.push(rt);
        }
        Resource::IntervalBlock(list) => {
            let mr = en
                .self_href
                .as_deref()
                .and_then(|h| parent_of(h, "IntervalBlock"))
                .or_else(|| {
                    en.up_href
                        .as_deref()
                        .and_then(|u| parent_of(u, "IntervalBlock"))
                })
                .ok_or(ParseError::NoSelfLink("IntervalBlock", en.start_pos))?;
            match feed.intervals.iter_mut().find(|(h, _)| *h == mr) {
                Some((_, v)) => v.extend(list),
                None => feed.intervals.push((mr, list)),
            }
        }
        Resource::LocalTime(mut lt) => {
            lt.href = self_or("LocalTimeParameters")?;
            feed.local_time.push(lt);
        }
        Resource::Summary(mut s) => {
            s.href = en.self_href.unwrap_or_default();
            feed.summaries.push(s);
        }
    }
    Ok(())
}
