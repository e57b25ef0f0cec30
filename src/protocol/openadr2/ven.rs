//! An upstream OpenADR 2.0b VEN client: Switchyard registering with a utility's VTN as one
//! VEN for a group of its devices. It registers (pull mode), offers one TELEMETRY_USAGE
//! report (the group's aggregate real power, rID `aggregate`), polls, hands the events it
//! receives to its caller, answers them with the caller's oadrCreatedEvent opts, and sends
//! report updates. Only the wire exchange lives here: what an event means to the engine is
//! [`super::upstream_map`], and the task that runs it inside `switchyard serve` is
//! [`super::upstream`].

use super::model::*;
use super::xml;
use crate::domain::EpochSeconds;

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
    /// The engine group the utility's events dispatch (the report's data source).
    pub group_id: String,
    /// Grid frequency and voltage announced with the power report (the schema wants them).
    pub grid_hertz: f64,
    pub grid_voltage: f64,
}

/// What one poll brought.
#[derive(Debug, Clone, PartialEq)]
pub enum Polled {
    /// Nothing for the caller (an oadrResponse, or a report request already taken).
    Nothing,
    /// An oadrDistributeEvent: every event the VTN has for us now.
    Events {
        request_id: String,
        events: Vec<OadrEvent>,
    },
}

/// The VEN's answer to one event, sent in oadrCreatedEvent.
#[derive(Debug, Clone, PartialEq)]
pub struct EventOpt {
    pub event_id: String,
    pub modification_number: u32,
    pub opt_in: bool,
    /// Why (sent as the response description).
    pub reason: String,
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

    /// Polls once; returns the events of an oadrDistributeEvent (answer them with
    /// [`Ven::respond`]). Report requests are taken and re-registration requests obeyed
    /// here.
    pub async fn poll(&mut self) -> Result<Polled, VenError> {
        let m = Message::Poll(Poll {
            schema_version: Some(SCHEMA_VERSION.into()),
            ven_id: Some(self.ven()?),
        });
        match self.post("OadrPoll", &m).await? {
            Message::DistributeEvent(d) => Ok(Polled::Events {
                request_id: d.request_id,
                events: d.events,
            }),
            Message::CreateReport(c) => {
                self.take_report_requests(&c.report_requests, &c.request_id)
                    .await?;
                Ok(Polled::Nothing)
            }
            Message::RegisteredReport(r) => {
                self.take_report_requests(&r.report_requests, &r.response.request_id)
                    .await?;
                Ok(Polled::Nothing)
            }
            Message::RequestReregistration(_) => {
                self.register().await?;
                Ok(Polled::Nothing)
            }
            Message::Response(r) if r.response.response_code == "463" => {
                Err(VenError::NotRegistered)
            }
            _ => Ok(Polled::Nothing),
        }
    }

    /// Answers the events of the oadrDistributeEvent `request_id` with oadrCreatedEvent.
    pub async fn respond(&mut self, request_id: &str, opts: &[EventOpt]) -> Result<(), VenError> {
        if opts.is_empty() {
            return Ok(());
        }
        let responses = opts
            .iter()
            .map(|o| EventResponse {
                response_code: "200".into(),
                response_description: Some(o.reason.chars().take(250).collect()),
                request_id: request_id.to_string(),
                qualified_event_id: QualifiedEventId {
                    event_id: o.event_id.clone(),
                    modification_number: o.modification_number,
                },
                opt_type: if o.opt_in { "optIn" } else { "optOut" }.into(),
            })
            .collect();
        let m = Message::CreatedEvent(CreatedEvent {
            schema_version: Some(SCHEMA_VERSION.into()),
            ei_created_event: EiCreatedEvent {
                response: EiResponse::new(200, "OK", request_id),
                event_responses: Some(EventResponses { responses }),
                ven_id: Some(self.ven()?),
            },
        });
        match self.post("EiEvent", &m).await? {
            Message::Response(r) if r.response.response_code != "200" => Err(VenError::Refused {
                what: "oadrCreatedEvent",
                code: r.response.response_code,
                description: r.response.response_description.unwrap_or_default(),
            }),
            _ => Ok(()),
        }
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
