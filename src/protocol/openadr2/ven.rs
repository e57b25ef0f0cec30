//! An upstream OpenADR 2.0b VEN: Switchyard registering with a utility's VTN as one VEN for
//! a group of its devices. It registers (pull mode), offers one TELEMETRY_USAGE report (the
//! group's aggregate real power, rID `aggregate`), polls, turns the events it receives into
//! engine [`DispatchRequest`]s for the configured group (source `openadr_event`), answers
//! them with oadrCreatedEvent (opt in, or out when asked), and sends report updates.
//!
//! Mapping of an event to dispatch requests: one request per signal interval whose value is
//! not zero, from the interval's start for its duration; `power_kw = |value| * kw_per_unit`
//! (for a SIMPLE level signal, `kw_per_unit` is the kW shed per level; for setpoints and
//! deltas in kW, 1.0), direction `discharge` for positive values and `charge` for
//! negative. Cancelled and completed events produce nothing. The caller plans and executes
//! the requests; this module does no I/O besides talking to the VTN.

use super::model::*;
use super::xml;
use crate::dispatch::DispatchRequest;
use crate::dispatch::request::{Direction, Pacing, Ramp, RequestSource, Target as DispatchTarget};
use crate::domain::EpochSeconds;
use crate::protocol::openadr3::duration::{parse_datetime, seconds};

/// Why the VEN could not talk to the VTN, or the VTN refused.
#[derive(Debug, thiserror::Error)]
pub enum VenError {
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("VTN answered HTTP {0}: {1}")]
    Status(u16, String),
    #[error("VTN payload: {0}")]
    Xml(#[from] xml::XmlError),
    #[error("VTN refused {what}: {code} {description}")]
    Refused {
        what: &'static str,
        code: String,
        description: String,
    },
    #[error("VTN answered {got} to {what}")]
    Unexpected {
        what: &'static str,
        got: &'static str,
    },
    #[error("not registered")]
    NotRegistered,
}

/// The VEN's configuration.
#[derive(Debug, Clone)]
pub struct VenSettings {
    /// The VTN's base URL, ending in `/OpenADR2/Simple/2.0b`.
    pub vtn_url: String,
    pub ven_name: String,
    /// The engine group the utility's events dispatch.
    pub group_id: String,
    /// kW per unit of signal value.
    pub kw_per_unit: f64,
    /// Whether to opt in to events (out otherwise).
    pub opt_in: bool,
    /// Grid frequency and voltage announced with the power report (the schema wants them).
    pub grid_hertz: f64,
    pub grid_voltage: f64,
}

/// The upstream VEN.
pub struct Ven {
    http: reqwest::Client,
    settings: VenSettings,
    pub ven_id: Option<String>,
    pub registration_id: Option<String>,
    /// The VTN's request for our TELEMETRY_USAGE report, once made.
    pub report_request: Option<String>,
    seq: u64,
}

const SPECIFIER: &str = "switchyard-aggregate";
const RID: &str = "aggregate";

fn ts(t: EpochSeconds) -> String {
    super::event::datetime(t)
}

impl Ven {
    /// A VEN posting with `http` (which carries the client certificate for mutual TLS).
    pub fn new(http: reqwest::Client, settings: VenSettings) -> Ven {
        Ven {
            http,
            settings,
            ven_id: None,
            registration_id: None,
            report_request: None,
            seq: 0,
        }
    }

    fn request_id(&mut self) -> String {
        self.seq += 1;
        format!("sy-{}-{}", crate::domain::now_epoch(), self.seq)
    }

    async fn post(&self, service: &str, m: &Message) -> Result<Message, VenError> {
        let url = format!("{}/{service}", self.settings.vtn_url.trim_end_matches('/'));
        let r = self
            .http
            .post(url)
            .header("content-type", "application/xml")
            .body(xml::encode(m))
            .send()
            .await?;
        if !r.status().is_success() {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            return Err(VenError::Status(status, text.chars().take(500).collect()));
        }
        let body = r.bytes().await?;
        Ok(xml::decode(&body, 4 << 20)?)
    }

    fn ven(&self) -> Result<String, VenError> {
        self.ven_id.clone().ok_or(VenError::NotRegistered)
    }

    /// Registers (query, then create party registration), then offers the report.
    pub async fn register(&mut self) -> Result<(), VenError> {
        let q = Message::QueryRegistration(QueryRegistration {
            schema_version: Some(SCHEMA_VERSION.into()),
            request_id: self.request_id(),
        });
        self.post("EiRegisterParty", &q).await?;
        let m = Message::CreatePartyRegistration(CreatePartyRegistration {
            schema_version: Some(SCHEMA_VERSION.into()),
            request_id: self.request_id(),
            registration_id: self.registration_id.clone(),
            ven_id: self.ven_id.clone(),
            profile_name: "2.0b".into(),
            transport_name: "simpleHttp".into(),
            transport_address: None,
            report_only: false,
            xml_signature: false,
            ven_name: Some(self.settings.ven_name.clone()),
            http_pull_model: Some(true),
        });
        match self.post("EiRegisterParty", &m).await? {
            Message::CreatedPartyRegistration(r) if r.response.response_code == "200" => {
                self.ven_id = r.ven_id.filter(|v| !v.is_empty());
                self.registration_id = r.registration_id.filter(|v| !v.is_empty());
                if self.ven_id.is_none() || self.registration_id.is_none() {
                    return Err(VenError::NotRegistered);
                }
            }
            Message::CreatedPartyRegistration(r) => {
                return Err(VenError::Refused {
                    what: "registration",
                    code: r.response.response_code,
                    description: r.response.response_description.unwrap_or_default(),
                });
            }
            other => {
                return Err(VenError::Unexpected {
                    what: "registration",
                    got: other.name(),
                });
            }
        }
        self.register_report().await
    }

    async fn register_report(&mut self) -> Result<(), VenError> {
        let ven = self.ven()?;
        let now = crate::domain::now_epoch();
        let m = Message::RegisterReport(RegisterReport {
            schema_version: Some(SCHEMA_VERSION.into()),
            request_id: self.request_id(),
            reports: vec![OadrReport {
                dtstart: None,
                duration: Some(DurationProp {
                    duration: "PT1H".into(),
                }),
                intervals: None,
                report_id: None,
                descriptions: vec![ReportDescription {
                    r_id: RID.into(),
                    data_source: Some(Target {
                        resource_ids: vec![self.settings.group_id.clone()],
                        ..Target::default()
                    }),
                    report_type: "reading".into(),
                    power_real: Some(ItemBase {
                        item_description: "RealPower".into(),
                        item_units: "W".into(),
                        si_scale_code: Some("none".into()),
                        power_attributes: Some(PowerAttributes {
                            hertz: self.settings.grid_hertz,
                            voltage: self.settings.grid_voltage,
                            ac: true,
                        }),
                    }),
                    power_reactive: None,
                    energy_real: None,
                    voltage: None,
                    frequency: None,
                    custom_unit: None,
                    reading_type: "Direct Read".into(),
                    market_context: None,
                    sampling_rate: Some(SamplingRate {
                        min_period: "PT1S".into(),
                        max_period: "PT1H".into(),
                        on_change: false,
                    }),
                }],
                report_request_id: "0".into(),
                report_specifier_id: SPECIFIER.into(),
                report_name: Some("METADATA_TELEMETRY_USAGE".into()),
                created_date_time: ts(now),
            }],
            ven_id: Some(ven),
            report_request_id: None,
        });
        if let Message::RegisteredReport(r) = self.post("EiReport", &m).await? {
            self.take_report_requests(&r.report_requests, &r.response.request_id)
                .await?;
        }
        Ok(())
    }

    /// Keeps the request for our report and acknowledges it with oadrCreatedReport.
    async fn take_report_requests(
        &mut self,
        requests: &[ReportRequest],
        request_id: &str,
    ) -> Result<(), VenError> {
        let ids: Vec<String> = requests
            .iter()
            .filter(|r| r.specifier.report_specifier_id == SPECIFIER)
            .map(|r| r.report_request_id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.report_request = ids.first().cloned();
        let m = Message::CreatedReport(CreatedReport {
            schema_version: Some(SCHEMA_VERSION.into()),
            response: EiResponse::new(200, "OK", request_id),
            pending_reports: PendingReports {
                report_request_ids: ids,
            },
            ven_id: Some(self.ven()?),
        });
        self.post("EiReport", &m).await?;
        Ok(())
    }

    /// Polls once; returns the dispatch requests of any events received (after answering
    /// them).
    pub async fn poll(&mut self) -> Result<Vec<DispatchRequest>, VenError> {
        let m = Message::Poll(Poll {
            schema_version: Some(SCHEMA_VERSION.into()),
            ven_id: Some(self.ven()?),
        });
        match self.post("OadrPoll", &m).await? {
            Message::DistributeEvent(d) => self.on_events(d).await,
            Message::CreateReport(c) => {
                self.take_report_requests(&c.report_requests, &c.request_id)
                    .await?;
                Ok(Vec::new())
            }
            Message::RegisteredReport(r) => {
                self.take_report_requests(&r.report_requests, &r.response.request_id)
                    .await?;
                Ok(Vec::new())
            }
            Message::RequestReregistration(_) => {
                self.register().await?;
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    async fn on_events(&mut self, d: DistributeEvent) -> Result<Vec<DispatchRequest>, VenError> {
        let mut requests = Vec::new();
        let mut responses = Vec::new();
        for e in &d.events {
            let status = e.event.descriptor.event_status.as_str();
            if status != "cancelled" && status != "completed" {
                requests.extend(to_dispatch(
                    &e.event,
                    &self.settings.group_id,
                    self.settings.kw_per_unit,
                ));
            }
            if e.response_required == "always" {
                responses.push(EventResponse {
                    response_code: "200".into(),
                    response_description: Some("OK".into()),
                    request_id: d.request_id.clone(),
                    qualified_event_id: QualifiedEventId {
                        event_id: e.event.descriptor.event_id.clone(),
                        modification_number: e.event.descriptor.modification_number,
                    },
                    opt_type: if self.settings.opt_in {
                        "optIn"
                    } else {
                        "optOut"
                    }
                    .into(),
                });
            }
        }
        if !responses.is_empty() {
            let m = Message::CreatedEvent(CreatedEvent {
                schema_version: Some(SCHEMA_VERSION.into()),
                ei_created_event: EiCreatedEvent {
                    response: EiResponse::new(200, "OK", &d.request_id),
                    event_responses: Some(EventResponses { responses }),
                    ven_id: Some(self.ven()?),
                },
            });
            self.post("EiEvent", &m).await?;
        }
        Ok(requests)
    }

    /// Sends the group's aggregate real power (W) measured at `at`.
    pub async fn report(&mut self, at: EpochSeconds, watts: f64) -> Result<(), VenError> {
        let Some(request) = self.report_request.clone() else {
            return Err(VenError::Unexpected {
                what: "report",
                got: "no report request from the VTN yet",
            });
        };
        let m = Message::UpdateReport(UpdateReport {
            schema_version: Some(SCHEMA_VERSION.into()),
            request_id: self.request_id(),
            reports: vec![OadrReport {
                dtstart: Some(DtStart { date_time: ts(at) }),
                duration: None,
                intervals: Some(Intervals {
                    intervals: vec![Interval {
                        dtstart: Some(DtStart { date_time: ts(at) }),
                        duration: None,
                        uid: None,
                        signal_payload: None,
                        report_payloads: vec![ReportPayload {
                            r_id: RID.into(),
                            confidence: None,
                            accuracy: None,
                            payload_float: Some(PayloadFloat { value: watts }),
                            resource_status: None,
                            data_quality: None,
                        }],
                    }],
                }),
                report_id: Some(self.request_id()),
                descriptions: vec![],
                report_request_id: request,
                report_specifier_id: SPECIFIER.into(),
                report_name: Some("TELEMETRY_USAGE".into()),
                created_date_time: ts(crate::domain::now_epoch()),
            }],
            ven_id: Some(self.ven()?),
        });
        match self.post("EiReport", &m).await? {
            Message::UpdatedReport(r) if r.response.response_code != "200" => {
                Err(VenError::Refused {
                    what: "report",
                    code: r.response.response_code,
                    description: r.response.response_description.unwrap_or_default(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// The dispatch requests of one event for `group_id` (see the module documentation).
pub fn to_dispatch(event: &EiEvent, group_id: &str, kw_per_unit: f64) -> Vec<DispatchRequest> {
    let Some(start) = parse_datetime(&event.active_period.properties.dtstart.date_time)
        .map(|t| t.unix_timestamp())
    else {
        return Vec::new();
    };
    let priority = event.descriptor.priority.unwrap_or(0).min(255) as u8;
    let mut out = Vec::new();
    for signal in &event.signals.signals {
        let mut t = start;
        for (i, iv) in signal.intervals.intervals.iter().enumerate() {
            let from = iv
                .dtstart
                .as_ref()
                .and_then(|d| parse_datetime(&d.date_time))
                .map(|d| d.unix_timestamp())
                .unwrap_or(t);
            let duration = iv
                .duration
                .as_ref()
                .and_then(|d| seconds(&d.duration))
                .unwrap_or(0.0) as i64;
            t = from + duration;
            let value = iv
                .signal_payload
                .as_ref()
                .map(|p| p.payload_float.value)
                .unwrap_or(0.0);
            if value == 0.0 || !value.is_finite() || duration <= 0 {
                continue;
            }
            out.push(DispatchRequest {
                id: format!("{}:{}:{}", event.descriptor.event_id, signal.signal_id, i),
                target: DispatchTarget::Group {
                    group_id: group_id.to_string(),
                },
                direction: if value > 0.0 {
                    Direction::Discharge
                } else {
                    Direction::Charge
                },
                power_kw: value.abs() * kw_per_unit,
                start: from,
                duration_s: duration,
                ramp: Ramp::Simultaneous,
                priority,
                source: RequestSource::OpenadrEvent {
                    event_id: event.descriptor.event_id.clone(),
                },
                pacing: Pacing::default(),
            });
        }
    }
    out
}
