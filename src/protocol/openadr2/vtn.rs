//! The 2.0b VTN's behaviour, independent of HTTP: one decoded message from an identified
//! caller in, one message out, with everything persisted in the store.
//!
//! Protocol errors are answered as 2.0b wants, inside the payload: an `oadrResponse` whose
//! `ei:responseCode` is one of [`ResponseCode`] (452 for an unknown or foreign id, 463 for
//! a VEN that is not registered or not the certificate's, 454 for invalid data, 453 for a
//! message the service does not take). Every check runs before anything is written, and
//! each request's writes share one transaction, so a refused request changes nothing.

use super::engine::{ReportPoint, map_report};
use super::event::{EventDefinition, StoredEvent, iso_duration, to_oadr};
use super::model::*;
use crate::domain::{EpochSeconds, now_epoch};
use crate::store::record::{dynamic, int, opt_text, text};
use crate::store::{Store, StoreError};
use sqlx::any::AnyRow;

/// The 2.0b response codes the VTN uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCode {
    Ok = 200,
    OutOfSequence = 450,
    NotAllowed = 451,
    InvalidId = 452,
    NotRecognized = 453,
    InvalidData = 454,
    ReportNotSupported = 461,
    NotRegisteredOrAuthorized = 463,
}

/// A refusal: the code and a description for the VEN's operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: ResponseCode,
    pub description: String,
}

fn refuse(code: ResponseCode, description: impl Into<String>) -> Refusal {
    Refusal {
        code,
        description: description.into(),
    }
}

/// Who is calling, as the transport established it.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// Mutual TLS: the 2.0b fingerprint of the client certificate.
    Certificate { fingerprint: String },
    /// The plain-HTTP test-lab listener: the VEN is whoever the venID in the body says.
    TestLab,
}

/// The endpoint (2.0b service) a message was posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    EiRegisterParty,
    EiEvent,
    EiReport,
    EiOpt,
    OadrPoll,
}

impl Service {
    /// The service named in the URL path.
    pub fn from_path(s: &str) -> Option<Service> {
        Some(match s {
            "EiRegisterParty" => Service::EiRegisterParty,
            "EiEvent" => Service::EiEvent,
            "EiReport" => Service::EiReport,
            "EiOpt" => Service::EiOpt,
            "OadrPoll" => Service::OadrPoll,
            _ => return None,
        })
    }

    fn accepts(self, m: &Message) -> bool {
        use Message as M;
        match self {
            Service::EiRegisterParty => matches!(
                m,
                M::QueryRegistration(_)
                    | M::CreatePartyRegistration(_)
                    | M::CancelPartyRegistration(_)
                    | M::CanceledPartyRegistration(_)
                    | M::Response(_)
            ),
            Service::EiEvent => matches!(m, M::RequestEvent(_) | M::CreatedEvent(_)),
            Service::EiReport => matches!(
                m,
                M::RegisterReport(_)
                    | M::CreatedReport(_)
                    | M::UpdateReport(_)
                    | M::Response(_)
                    | M::RegisteredReport(_)
            ),
            Service::EiOpt => matches!(m, M::CreateOpt(_) | M::CancelOpt(_)),
            Service::OadrPoll => matches!(m, M::Poll(_)),
        }
    }
}

/// Settings of the VTN's behaviour.
#[derive(Debug, Clone)]
pub struct Settings {
    pub vtn_id: String,
    pub poll_freq_seconds: u32,
    pub market_context: String,
    /// Report granularity requested when a VEN's sampling rate says nothing usable.
    pub default_granularity: String,
}

/// A registered VEN.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Ven {
    pub ven_id: String,
    pub registration_id: String,
    pub ven_name: String,
    pub fingerprint: Option<String>,
    pub http_pull_model: bool,
    pub transport_address: Option<String>,
    pub report_only: bool,
    pub registered_at: EpochSeconds,
}

fn ven_from_row(r: &AnyRow) -> Result<Ven, StoreError> {
    Ok(Ven {
        ven_id: text(r, "ven_id")?,
        registration_id: text(r, "registration_id")?,
        ven_name: text(r, "ven_name")?,
        fingerprint: opt_text(r, "fingerprint")?,
        http_pull_model: int(r, "http_pull_model")? != 0,
        transport_address: opt_text(r, "transport_address")?,
        report_only: int(r, "report_only")? != 0,
        registered_at: int(r, "registered_at")?,
    })
}

const VEN_COLUMNS: &str = "ven_id, registration_id, ven_name, fingerprint, http_pull_model, \
                           transport_address, report_only, registered_at";

/// Why the VTN could not answer at all (the store failed, or an operator request was
/// refused).
#[derive(Debug, thiserror::Error)]
pub enum VtnError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

impl From<sqlx::Error> for VtnError {
    fn from(e: sqlx::Error) -> Self {
        VtnError::Store(StoreError::Database(e))
    }
}

/// The VTN.
pub struct Vtn {
    store: Store,
    settings: Settings,
}

fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn response(code: ResponseCode, description: &str, request_id: &str, ven: Option<&str>) -> Message {
    Message::Response(Response {
        schema_version: Some(SCHEMA_VERSION.into()),
        response: EiResponse::new(code as u16, description, request_id),
        ven_id: ven.map(str::to_string),
    })
}

/// The requestID of a message, for echoing in refusals.
fn request_id_of(m: &Message) -> &str {
    match m {
        Message::QueryRegistration(x) => &x.request_id,
        Message::CreatePartyRegistration(x) => &x.request_id,
        Message::CancelPartyRegistration(x) => &x.request_id,
        Message::RequestEvent(x) => &x.ei_request_event.request_id,
        Message::CreatedEvent(x) => &x.ei_created_event.response.request_id,
        Message::RegisterReport(x) => &x.request_id,
        Message::CreatedReport(x) => &x.response.request_id,
        Message::UpdateReport(x) => &x.request_id,
        Message::CreateOpt(x) => &x.request_id,
        Message::CancelOpt(x) => &x.request_id,
        Message::Response(x) => &x.response.request_id,
        _ => "",
    }
}

impl Vtn {
    pub fn new(store: Store, settings: Settings) -> Self {
        Vtn { store, settings }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Answers one message posted to `service` by `caller`.
    pub async fn handle(
        &self,
        service: Service,
        caller: &Caller,
        message: Message,
    ) -> Result<Message, VtnError> {
        let request_id = request_id_of(&message).to_string();
        if !service.accepts(&message) {
            return Ok(response(
                ResponseCode::NotRecognized,
                &format!("{} is not accepted by {service:?}", message.name()),
                &request_id,
                message.ven_id(),
            ));
        }
        let now = now_epoch();
        let result = match message {
            Message::QueryRegistration(m) => self.query_registration(caller, m).await,
            Message::CreatePartyRegistration(m) => self.register(caller, m, now).await,
            other => {
                let ven = match self.identify(caller, other.ven_id()).await? {
                    Ok(v) => v,
                    Err(r) => {
                        return Ok(response(
                            r.code,
                            &r.description,
                            &request_id,
                            other.ven_id(),
                        ));
                    }
                };
                self.handle_registered(&ven, other, now).await
            }
        }?;
        Ok(match result {
            Ok(m) => m,
            Err(r) => response(r.code, &r.description, &request_id, None),
        })
    }

    /// The registered VEN the caller is, or a refusal.
    async fn identify(
        &self,
        caller: &Caller,
        claimed: Option<&str>,
    ) -> Result<Result<Ven, Refusal>, VtnError> {
        match caller {
            Caller::Certificate { fingerprint } => {
                let Some(ven) = self.ven_by_fingerprint(fingerprint).await? else {
                    return Ok(Err(refuse(
                        ResponseCode::NotRegisteredOrAuthorized,
                        "this certificate has no registration; send oadrCreatePartyRegistration first",
                    )));
                };
                if let Some(c) = claimed
                    && c != ven.ven_id
                {
                    return Ok(Err(refuse(
                        ResponseCode::InvalidId,
                        format!("venID '{c}' is not the venID of this certificate"),
                    )));
                }
                Ok(Ok(ven))
            }
            Caller::TestLab => {
                let Some(c) = claimed else {
                    return Ok(Err(refuse(
                        ResponseCode::NotRegisteredOrAuthorized,
                        "no venID in the message",
                    )));
                };
                match self.ven_by_id(c).await? {
                    Some(v) => Ok(Ok(v)),
                    None => Ok(Err(refuse(
                        ResponseCode::InvalidId,
                        format!("venID '{c}' is not registered"),
                    ))),
                }
            }
        }
    }

    pub async fn ven_by_fingerprint(&self, fp: &str) -> Result<Option<Ven>, VtnError> {
        let row = dynamic(format!(
            "SELECT {VEN_COLUMNS} FROM oadr2_vens WHERE fingerprint = $1"
        ))
        .bind(fp.to_string())
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.as_ref().map(ven_from_row).transpose()?)
    }

    pub async fn ven_by_id(&self, id: &str) -> Result<Option<Ven>, VtnError> {
        let row = dynamic(format!(
            "SELECT {VEN_COLUMNS} FROM oadr2_vens WHERE ven_id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.as_ref().map(ven_from_row).transpose()?)
    }

    /// Every registered VEN.
    pub async fn vens(&self) -> Result<Vec<Ven>, VtnError> {
        let rows = dynamic(format!(
            "SELECT {VEN_COLUMNS} FROM oadr2_vens ORDER BY ven_id"
        ))
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows.iter().map(ven_from_row).collect::<Result<_, _>>()?)
    }

    fn created_party_registration(&self, request_id: &str, ven: Option<&Ven>) -> Message {
        Message::CreatedPartyRegistration(CreatedPartyRegistration {
            schema_version: Some(SCHEMA_VERSION.into()),
            response: EiResponse::new(200, "OK", request_id),
            registration_id: ven.map(|v| v.registration_id.clone()),
            ven_id: ven.map(|v| v.ven_id.clone()),
            vtn_id: self.settings.vtn_id.clone(),
            profiles: Profiles {
                profiles: vec![Profile {
                    profile_name: "2.0b".into(),
                    transports: Transports {
                        transports: vec![Transport {
                            transport_name: "simpleHttp".into(),
                        }],
                    },
                }],
            },
            poll_freq: Some(IcalDuration {
                duration: iso_duration(self.settings.poll_freq_seconds.into()),
            }),
        })
    }

    async fn query_registration(
        &self,
        caller: &Caller,
        m: QueryRegistration,
    ) -> Result<Result<Message, Refusal>, VtnError> {
        let ven = match caller {
            Caller::Certificate { fingerprint } => self.ven_by_fingerprint(fingerprint).await?,
            Caller::TestLab => None,
        };
        Ok(Ok(
            self.created_party_registration(&m.request_id, ven.as_ref())
        ))
    }

    async fn register(
        &self,
        caller: &Caller,
        m: CreatePartyRegistration,
        now: EpochSeconds,
    ) -> Result<Result<Message, Refusal>, VtnError> {
        if m.profile_name != "2.0b" {
            return Ok(Err(refuse(
                ResponseCode::NotAllowed,
                format!(
                    "profile '{}' is not offered; this VTN speaks 2.0b",
                    m.profile_name
                ),
            )));
        }
        if m.transport_name != "simpleHttp" {
            return Ok(Err(refuse(
                ResponseCode::NotAllowed,
                format!(
                    "transport '{}' is not offered; use simpleHttp",
                    m.transport_name
                ),
            )));
        }
        let pull = m.http_pull_model.unwrap_or(true);
        let address = m.transport_address.clone().filter(|a| !a.trim().is_empty());
        if !pull {
            match &address {
                Some(a) if a.starts_with("http://") || a.starts_with("https://") => {}
                _ => {
                    return Ok(Err(refuse(
                        ResponseCode::InvalidData,
                        "push mode (oadrHttpPullModel false) needs an http(s) oadrTransportAddress",
                    )));
                }
            }
        }
        let existing = match caller {
            Caller::Certificate { fingerprint } => {
                let v = self.ven_by_fingerprint(fingerprint).await?;
                if let Some(claimed) = m.ven_id.as_deref().filter(|s| !s.is_empty())
                    && v.as_ref().map(|v| v.ven_id.as_str()) != Some(claimed)
                {
                    return Ok(Err(refuse(
                        ResponseCode::InvalidId,
                        format!("venID '{claimed}' is not the venID of this certificate"),
                    )));
                }
                v
            }
            Caller::TestLab => match m.ven_id.as_deref().filter(|s| !s.is_empty()) {
                Some(id) => match self.ven_by_id(id).await? {
                    Some(v) => Some(v),
                    None => {
                        return Ok(Err(refuse(
                            ResponseCode::InvalidId,
                            format!("venID '{id}' is not registered"),
                        )));
                    }
                },
                None => None,
            },
        };
        if let (Some(v), Some(reg)) = (&existing, m.registration_id.as_deref())
            && !reg.is_empty()
            && reg != v.registration_id
        {
            return Ok(Err(refuse(
                ResponseCode::InvalidId,
                format!("registrationID '{reg}' is not this VEN's registration"),
            )));
        }
        let ven_name = m
            .ven_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "unnamed VEN".into());
        let fingerprint = match caller {
            Caller::Certificate { fingerprint } => Some(fingerprint.clone()),
            Caller::TestLab => None,
        };
        let ven = Ven {
            ven_id: existing
                .as_ref()
                .map(|v| v.ven_id.clone())
                .unwrap_or_else(new_id),
            registration_id: new_id(),
            ven_name,
            fingerprint,
            http_pull_model: pull,
            transport_address: address,
            report_only: m.report_only,
            registered_at: now,
        };
        let mut tx = self.store.begin_write().await?;
        if existing.is_some() {
            // A new registration starts over: report points and requests are registered
            // again by the VEN, and it should be sent its events again.
            for t in [
                "oadr2_vens",
                "oadr2_deliveries",
                "oadr2_report_points",
                "oadr2_report_requests",
            ] {
                dynamic(format!("DELETE FROM {t} WHERE ven_id = $1"))
                    .bind(ven.ven_id.clone())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        dynamic(format!(
            "INSERT INTO oadr2_vens ({VEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(ven.ven_id.clone())
        .bind(ven.registration_id.clone())
        .bind(ven.ven_name.clone())
        .bind(ven.fingerprint.clone())
        .bind(ven.http_pull_model as i64)
        .bind(ven.transport_address.clone())
        .bind(ven.report_only as i64)
        .bind(ven.registered_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(ven_id = %ven.ven_id, name = %ven.ven_name, "OpenADR 2.0b VEN registered");
        Ok(Ok(
            self.created_party_registration(&m.request_id, Some(&ven))
        ))
    }

    async fn handle_registered(
        &self,
        ven: &Ven,
        message: Message,
        now: EpochSeconds,
    ) -> Result<Result<Message, Refusal>, VtnError> {
        match message {
            Message::CancelPartyRegistration(m) => self.cancel_registration(ven, m).await,
            Message::Response(m) => Ok(Ok(response(
                ResponseCode::Ok,
                "OK",
                &m.response.request_id,
                Some(&ven.ven_id),
            ))),
            Message::CanceledPartyRegistration(m) => Ok(Ok(response(
                ResponseCode::Ok,
                "OK",
                &m.response.request_id,
                Some(&ven.ven_id),
            ))),
            Message::RequestEvent(m) => Ok(Ok(self
                .distribute(ven, &m.ei_request_event.request_id, now, false)
                .await?
                .expect("always some when not only_new"))),
            Message::CreatedEvent(m) => self.created_event(ven, m, now).await,
            Message::RegisterReport(m) => self.register_report(ven, m, now).await,
            Message::RegisteredReport(m) => Ok(Ok(response(
                ResponseCode::Ok,
                "OK",
                &m.response.request_id,
                Some(&ven.ven_id),
            ))),
            Message::CreatedReport(m) => self.created_report(ven, m).await,
            Message::UpdateReport(m) => self.update_report(ven, m, now).await,
            Message::CreateOpt(m) => self.create_opt(ven, m, now).await,
            Message::CancelOpt(m) => self.cancel_opt(ven, m, now).await,
            Message::Poll(_) => Ok(Ok(self.poll(ven, now).await?)),
            other => Ok(Err(refuse(
                ResponseCode::NotRecognized,
                format!("{} is not a message a VEN sends", other.name()),
            ))),
        }
    }

    async fn cancel_registration(
        &self,
        ven: &Ven,
        m: CancelPartyRegistration,
    ) -> Result<Result<Message, Refusal>, VtnError> {
        if m.registration_id != ven.registration_id {
            return Ok(Err(refuse(
                ResponseCode::InvalidId,
                format!(
                    "registrationID '{}' is not this VEN's registration",
                    m.registration_id
                ),
            )));
        }
        let mut tx = self.store.begin_write().await?;
        for t in [
            "oadr2_vens",
            "oadr2_deliveries",
            "oadr2_report_points",
            "oadr2_report_requests",
        ] {
            dynamic(format!("DELETE FROM {t} WHERE ven_id = $1"))
                .bind(ven.ven_id.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(ven_id = %ven.ven_id, "OpenADR 2.0b VEN cancelled its registration");
        Ok(Ok(Message::CanceledPartyRegistration(
            CanceledPartyRegistration {
                schema_version: Some(SCHEMA_VERSION.into()),
                response: EiResponse::new(200, "OK", &m.request_id),
                registration_id: Some(ven.registration_id.clone()),
                ven_id: Some(ven.ven_id.clone()),
            },
        )))
    }

    // ------------------------------------------------------------------ events

    /// Stores a new event (operator API). Targets must all be registered VENs.
    pub async fn create_event(&self, def: EventDefinition) -> Result<StoredEvent, VtnError> {
        def.validate()
            .map_err(|e| VtnError::Invalid(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for v in &def.ven_ids {
            if !seen.insert(v) {
                return Err(VtnError::Invalid(format!("venID '{v}' is targeted twice")));
            }
            if self.ven_by_id(v).await?.is_none() {
                return Err(VtnError::Invalid(format!(
                    "target venID '{v}' matches no registered VEN"
                )));
            }
        }
        let now = now_epoch();
        if def.end() <= now {
            return Err(VtnError::Invalid(format!(
                "the event ended at {} (before now, {now}); nothing to distribute",
                def.end()
            )));
        }
        let event = StoredEvent {
            event_id: def.event_id.clone().unwrap_or_else(new_id),
            modification_number: 0,
            status: "active".into(),
            created_at: now,
            market_context: def
                .market_context
                .clone()
                .unwrap_or_else(|| self.settings.market_context.clone()),
            definition: def,
        };
        let body = serde_json::to_string(&event).expect("events serialize");
        let mut tx = self.store.begin_write().await?;
        let inserted = dynamic(
            "INSERT INTO oadr2_events (event_id, modification_number, status, ends_at, created_at, body) \
             VALUES ($1, 0, 'active', $2, $3, $4)"
                .into(),
        )
        .bind(event.event_id.clone())
        .bind(event.definition.end())
        .bind(now)
        .bind(body)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            let e = StoreError::Database(e);
            if e.is_unique_violation() {
                return Err(VtnError::Conflict(format!(
                    "an event with id '{}' exists",
                    event.event_id
                )));
            }
            return Err(e.into());
        }
        for v in &event.definition.ven_ids {
            dynamic("INSERT INTO oadr2_event_targets (event_id, ven_id) VALUES ($1, $2)".into())
                .bind(event.event_id.clone())
                .bind(v.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(event_id = %event.event_id, "OpenADR 2.0b event created");
        Ok(event)
    }

    /// Cancels an event (operator API): its modification number goes up and VENs are sent
    /// the cancellation at their next poll.
    pub async fn cancel_event(&self, event_id: &str) -> Result<StoredEvent, VtnError> {
        let Some(mut e) = self.event(event_id).await? else {
            return Err(VtnError::NotFound(format!("no event '{event_id}'")));
        };
        if e.status == "cancelled" {
            return Ok(e);
        }
        e.status = "cancelled".into();
        e.modification_number += 1;
        dynamic(
            "UPDATE oadr2_events SET status = 'cancelled', modification_number = $2, body = $3 \
             WHERE event_id = $1"
                .into(),
        )
        .bind(e.event_id.clone())
        .bind(i64::from(e.modification_number))
        .bind(serde_json::to_string(&e).expect("events serialize"))
        .execute(self.store.pool())
        .await?;
        Ok(e)
    }

    /// One event.
    pub async fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, VtnError> {
        let row = dynamic("SELECT body FROM oadr2_events WHERE event_id = $1".into())
            .bind(event_id.to_string())
            .fetch_optional(self.store.pool())
            .await?;
        row.map(|r| parse_event(&text(&r, "body")?)).transpose()
    }

    /// All events, oldest first.
    pub async fn events(&self) -> Result<Vec<StoredEvent>, VtnError> {
        let rows = dynamic("SELECT body FROM oadr2_events ORDER BY created_at, event_id".into())
            .fetch_all(self.store.pool())
            .await?;
        rows.iter()
            .map(|r| parse_event(&text(r, "body")?))
            .collect()
    }

    /// The events for `ven_id` that have not ended by `now`.
    async fn events_for(
        &self,
        ven_id: &str,
        now: EpochSeconds,
    ) -> Result<Vec<StoredEvent>, VtnError> {
        let rows = dynamic(
            "SELECT e.body FROM oadr2_events e WHERE e.ends_at > $2 AND (\
               NOT EXISTS (SELECT 1 FROM oadr2_event_targets t WHERE t.event_id = e.event_id) \
               OR EXISTS (SELECT 1 FROM oadr2_event_targets t WHERE t.event_id = e.event_id AND t.ven_id = $1)) \
             ORDER BY e.created_at, e.event_id"
                .into(),
        )
        .bind(ven_id.to_string())
        .bind(now)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| parse_event(&text(r, "body")?))
            .collect()
    }

    /// The `oadrDistributeEvent` for `ven` with all its current events, recorded as
    /// delivered. With `only_new`, `None` when every event was already delivered at its
    /// current modification.
    pub async fn distribute(
        &self,
        ven: &Ven,
        request_id: &str,
        now: EpochSeconds,
        only_new: bool,
    ) -> Result<Option<Message>, VtnError> {
        let events = self.events_for(&ven.ven_id, now).await?;
        let delivered = dynamic(
            "SELECT event_id, modification_number FROM oadr2_deliveries WHERE ven_id = $1".into(),
        )
        .bind(ven.ven_id.clone())
        .fetch_all(self.store.pool())
        .await?;
        let mut known = std::collections::HashMap::new();
        for r in &delivered {
            known.insert(text(r, "event_id")?, int(r, "modification_number")?);
        }
        let fresh = events
            .iter()
            .any(|e| known.get(&e.event_id).copied() != Some(i64::from(e.modification_number)));
        if only_new && !fresh {
            return Ok(None);
        }
        let mut tx = self.store.begin_write().await?;
        for e in &events {
            dynamic("DELETE FROM oadr2_deliveries WHERE ven_id = $1 AND event_id = $2".into())
                .bind(ven.ven_id.clone())
                .bind(e.event_id.clone())
                .execute(&mut *tx)
                .await?;
            dynamic(
                "INSERT INTO oadr2_deliveries (ven_id, event_id, modification_number, delivered_at) \
                 VALUES ($1, $2, $3, $4)"
                    .into(),
            )
            .bind(ven.ven_id.clone())
            .bind(e.event_id.clone())
            .bind(i64::from(e.modification_number))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(Message::DistributeEvent(DistributeEvent {
            schema_version: Some(SCHEMA_VERSION.into()),
            response: Some(EiResponse::new(200, "OK", request_id)),
            request_id: if request_id.is_empty() {
                new_id()
            } else {
                request_id.to_string()
            },
            vtn_id: self.settings.vtn_id.clone(),
            events: events.iter().map(|e| to_oadr(e, now)).collect(),
        })))
    }

    async fn created_event(
        &self,
        ven: &Ven,
        m: CreatedEvent,
        now: EpochSeconds,
    ) -> Result<Result<Message, Refusal>, VtnError> {
        let request_id = m.ei_created_event.response.request_id.clone();
        let responses = m
            .ei_created_event
            .event_responses
            .map(|r| r.responses)
            .unwrap_or_default();
        let mine = self.events_for(&ven.ven_id, i64::MIN).await?;
        for r in &responses {
            let id = &r.qualified_event_id.event_id;
            let Some(e) = mine.iter().find(|e| &e.event_id == id) else {
                return Ok(Err(refuse(
                    ResponseCode::InvalidId,
                    format!("eventID '{id}' is not an event for this VEN"),
                )));
            };
            if r.qualified_event_id.modification_number > e.modification_number {
                return Ok(Err(refuse(
                    ResponseCode::InvalidId,
                    format!(
                        "event '{id}' has modificationNumber {}, not {}",
                        e.modification_number, r.qualified_event_id.modification_number
                    ),
                )));
            }
            if r.opt_type != "optIn" && r.opt_type != "optOut" {
                return Ok(Err(refuse(
                    ResponseCode::InvalidData,
                    format!("optType must be optIn or optOut, got '{}'", r.opt_type),
                )));
            }
        }
        let mut tx = self.store.begin_write().await?;
        for r in &responses {
            dynamic("DELETE FROM oadr2_event_responses WHERE event_id = $1 AND ven_id = $2".into())
                .bind(r.qualified_event_id.event_id.clone())
                .bind(ven.ven_id.clone())
                .execute(&mut *tx)
                .await?;
            dynamic(
                "INSERT INTO oadr2_event_responses (event_id, ven_id, modification_number, opt_type, \
                 response_code, received_at) VALUES ($1, $2, $3, $4, $5, $6)"
                    .into(),
            )
            .bind(r.qualified_event_id.event_id.clone())
            .bind(ven.ven_id.clone())
            .bind(i64::from(r.qualified_event_id.modification_number))
            .bind(r.opt_type.clone())
            .bind(r.response_code.clone())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Ok(response(
            ResponseCode::Ok,
            "OK",
            &request_id,
            Some(&ven.ven_id),
        )))
    }

    /// The VENs' answers to an event: (venID, optType, modificationNumber).
    pub async fn event_responses(
        &self,
        event_id: &str,
    ) -> Result<Vec<(String, String, i64)>, VtnError> {
        let rows = dynamic(
            "SELECT ven_id, opt_type, modification_number FROM oadr2_event_responses \
             WHERE event_id = $1 ORDER BY ven_id"
                .into(),
        )
        .bind(event_id.to_string())
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    text(r, "ven_id")?,
                    text(r, "opt_type")?,
                    int(r, "modification_number")?,
                ))
            })
            .collect()
    }

    // ------------------------------------------------------------------ poll

    async fn poll(&self, ven: &Ven, now: EpochSeconds) -> Result<Message, VtnError> {
        if let Some(m) = self.distribute(ven, &new_id(), now, true).await? {
            return Ok(m);
        }
        let rows = dynamic(
            "SELECT report_request_id, body FROM oadr2_report_requests \
             WHERE ven_id = $1 AND delivered = 0 ORDER BY created_at, report_request_id"
                .into(),
        )
        .bind(ven.ven_id.clone())
        .fetch_all(self.store.pool())
        .await?;
        if !rows.is_empty() {
            let mut requests = Vec::new();
            let mut tx = self.store.begin_write().await?;
            for r in &rows {
                let body: ReportRequest = serde_json::from_str(&text(r, "body")?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                requests.push(body);
                dynamic(
                    "UPDATE oadr2_report_requests SET delivered = 1 WHERE report_request_id = $1"
                        .into(),
                )
                .bind(text(r, "report_request_id")?)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            return Ok(Message::CreateReport(CreateReport {
                schema_version: Some(SCHEMA_VERSION.into()),
                request_id: new_id(),
                report_requests: requests,
                ven_id: Some(ven.ven_id.clone()),
            }));
        }
        Ok(response(ResponseCode::Ok, "OK", "", Some(&ven.ven_id)))
    }

    // ------------------------------------------------------------------ reports

    async fn register_report(
        &self,
        ven: &Ven,
        m: RegisterReport,
        now: EpochSeconds,
    ) -> Result<Result<Message, Refusal>, VtnError> {
        let mut points = Vec::new();
        let mut requests = Vec::new();
        for r in &m.reports {
            let name = r.report_name.clone().unwrap_or_default();
            let base = name.strip_prefix("METADATA_").unwrap_or(&name);
            if r.report_specifier_id.trim().is_empty() {
                return Ok(Err(refuse(
                    ResponseCode::InvalidData,
                    "a report without reportSpecifierID",
                )));
            }
            let mut rids = std::collections::HashSet::new();
            for d in &r.descriptions {
                if !rids.insert(d.r_id.clone()) {
                    return Ok(Err(refuse(
                        ResponseCode::InvalidData,
                        format!(
                            "rID '{}' appears twice in report '{}'",
                            d.r_id, r.report_specifier_id
                        ),
                    )));
                }
                let (item, base_item) = [
                    ("powerReal", &d.power_real),
                    ("powerReactive", &d.power_reactive),
                    ("energyReal", &d.energy_real),
                    ("voltage", &d.voltage),
                    ("frequency", &d.frequency),
                    ("customUnit", &d.custom_unit),
                ]
                .into_iter()
                .find_map(|(n, b)| b.as_ref().map(|b| (Some(n.to_string()), Some(b.clone()))))
                .unwrap_or((None, None));
                points.push((
                    r.report_specifier_id.clone(),
                    base.to_string(),
                    ReportPoint {
                        r_id: d.r_id.clone(),
                        resource_id: d
                            .data_source
                            .as_ref()
                            .and_then(|t| t.resource_ids.first().cloned()),
                        item,
                        units: base_item.as_ref().map(|b| b.item_units.clone()),
                        si_scale: base_item.and_then(|b| b.si_scale_code),
                        reading_type: d.reading_type.clone(),
                    },
                    d.sampling_rate.as_ref().map(|s| s.min_period.clone()),
                ));
            }
            if (base == "TELEMETRY_USAGE" || base == "TELEMETRY_STATUS")
                && !r.descriptions.is_empty()
            {
                let granularity = r
                    .descriptions
                    .iter()
                    .find_map(|d| d.sampling_rate.as_ref().map(|s| s.min_period.clone()))
                    .unwrap_or_else(|| self.settings.default_granularity.clone());
                requests.push(ReportRequest {
                    report_request_id: new_id(),
                    specifier: ReportSpecifier {
                        report_specifier_id: r.report_specifier_id.clone(),
                        granularity: DurationProp {
                            duration: granularity.clone(),
                        },
                        report_back_duration: Some(DurationProp {
                            duration: granularity,
                        }),
                        payloads: r
                            .descriptions
                            .iter()
                            .map(|d| SpecifierPayload {
                                r_id: d.r_id.clone(),
                                reading_type: d.reading_type.clone(),
                            })
                            .collect(),
                    },
                });
            }
        }
        let mut tx = self.store.begin_write().await?;
        // A registration replaces what the VEN registered before.
        for t in ["oadr2_report_points", "oadr2_report_requests"] {
            dynamic(format!("DELETE FROM {t} WHERE ven_id = $1"))
                .bind(ven.ven_id.clone())
                .execute(&mut *tx)
                .await?;
        }
        for (spec, name, p, min_period) in &points {
            dynamic(
                "INSERT INTO oadr2_report_points (ven_id, report_specifier_id, r_id, report_name, \
                 resource_id, item, units, si_scale, reading_type, min_period) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                    .into(),
            )
            .bind(ven.ven_id.clone())
            .bind(spec.clone())
            .bind(p.r_id.clone())
            .bind(name.clone())
            .bind(p.resource_id.clone())
            .bind(p.item.clone())
            .bind(p.units.clone())
            .bind(p.si_scale.clone())
            .bind(p.reading_type.clone())
            .bind(min_period.clone())
            .execute(&mut *tx)
            .await?;
        }
        for rq in &requests {
            dynamic(
                "INSERT INTO oadr2_report_requests (report_request_id, ven_id, report_specifier_id, \
                 body, delivered, acknowledged, created_at) VALUES ($1, $2, $3, $4, 1, 0, $5)"
                    .into(),
            )
            .bind(rq.report_request_id.clone())
            .bind(ven.ven_id.clone())
            .bind(rq.specifier.report_specifier_id.clone())
            .bind(serde_json::to_string(rq).expect("requests serialize"))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Ok(Message::RegisteredReport(RegisteredReport {
            schema_version: Some(SCHEMA_VERSION.into()),
            response: EiResponse::new(200, "OK", &m.request_id),
            report_requests: requests,
            ven_id: Some(ven.ven_id.clone()),
        })))
    }

    async fn created_report(
        &self,
        ven: &Ven,
        m: CreatedReport,
    ) -> Result<Result<Message, Refusal>, VtnError> {
        let ids = &m.pending_reports.report_request_ids;
        for id in ids {
            if !self.report_request_exists(&ven.ven_id, id).await? {
                return Ok(Err(refuse(
                    ResponseCode::InvalidId,
                    format!("reportRequestID '{id}' was not requested from this VEN"),
                )));
            }
        }
        let mut tx = self.store.begin_write().await?;
        for id in ids {
            dynamic(
                "UPDATE oadr2_report_requests SET acknowledged = 1 \
                 WHERE report_request_id = $1 AND ven_id = $2"
                    .into(),
            )
            .bind(id.clone())
            .bind(ven.ven_id.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Ok(response(
            ResponseCode::Ok,
            "OK",
            &m.response.request_id,
            Some(&ven.ven_id),
        )))
    }

    async fn report_request_exists(&self, ven_id: &str, id: &str) -> Result<bool, VtnError> {
        Ok(dynamic(
            "SELECT 1 AS x FROM oadr2_report_requests WHERE report_request_id = $1 AND ven_id = $2"
                .into(),
        )
        .bind(id.to_string())
        .bind(ven_id.to_string())
        .fetch_optional(self.store.pool())
        .await?
        .is_some())
    }

    async fn report_points(&self, ven_id: &str, spec: &str) -> Result<Vec<ReportPoint>, VtnError> {
        let rows = dynamic(
            "SELECT r_id, resource_id, item, units, si_scale, reading_type FROM oadr2_report_points \
             WHERE ven_id = $1 AND report_specifier_id = $2"
                .into(),
        )
        .bind(ven_id.to_string())
        .bind(spec.to_string())
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportPoint {
                    r_id: text(r, "r_id")?,
                    resource_id: opt_text(r, "resource_id")?,
                    item: opt_text(r, "item")?,
                    units: opt_text(r, "units")?,
                    si_scale: opt_text(r, "si_scale")?,
                    reading_type: text(r, "reading_type")?,
                })
            })
            .collect()
    }

    async fn update_report(
        &self,
        ven: &Ven,
        m: UpdateReport,
        now: EpochSeconds,
    ) -> Result<Result<Message, Refusal>, VtnError> {
        let mut rows = Vec::new();
        let mut readings = Vec::new();
        for r in &m.reports {
            if !self
                .report_request_exists(&ven.ven_id, &r.report_request_id)
                .await?
            {
                return Ok(Err(refuse(
                    ResponseCode::InvalidId,
                    format!(
                        "reportRequestID '{}' was not requested from this VEN",
                        r.report_request_id
                    ),
                )));
            }
            let points = self
                .report_points(&ven.ven_id, &r.report_specifier_id)
                .await?;
            let mapped = match map_report(&ven.ven_id, r, &points) {
                Ok(x) => x,
                Err(e) => return Ok(Err(refuse(ResponseCode::InvalidData, e))),
            };
            for reading in &mapped.readings {
                if let Err(e) = reading.validate(now) {
                    return Ok(Err(refuse(ResponseCode::InvalidData, e.to_string())));
                }
            }
            rows.push((r, mapped.values, mapped.readings.len(), mapped.online));
            readings.extend(mapped.readings);
        }
        let mut tx = self.store.begin_write().await?;
        for (r, values, n, online) in &rows {
            dynamic(
                "INSERT INTO oadr2_report_updates (id, ven_id, report_request_id, report_specifier_id, \
                 report_name, values_count, readings_count, online, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    .into(),
            )
            .bind(new_id())
            .bind(ven.ven_id.clone())
            .bind(r.report_request_id.clone())
            .bind(r.report_specifier_id.clone())
            .bind(r.report_name.clone().unwrap_or_default())
            .bind(*values as i64)
            .bind(*n as i64)
            .bind(online.map(i64::from))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        crate::telemetry::insert_in(&mut tx, &readings, now)
            .await
            .map_err(|e| match e {
                crate::telemetry::TelemetryError::Store(s) => VtnError::Store(s),
                other => VtnError::Invalid(other.to_string()),
            })?;
        tx.commit().await?;
        Ok(Ok(Message::UpdatedReport(UpdatedReport {
            schema_version: Some(SCHEMA_VERSION.into()),
            response: EiResponse::new(200, "OK", &m.request_id),
            ven_id: Some(ven.ven_id.clone()),
        })))
    }

    /// Count of report updates received from a VEN.
    pub async fn report_updates(&self, ven_id: &str) -> Result<i64, VtnError> {
        let r = dynamic("SELECT COUNT(*) AS n FROM oadr2_report_updates WHERE ven_id = $1".into())
            .bind(ven_id.to_string())
            .fetch_one(self.store.pool())
            .await?;
        Ok(int(&r, "n")?)
    }

    // ------------------------------------------------------------------ opts

    async fn create_opt(
        &self,
        ven: &Ven,
        m: CreateOpt,
        now: EpochSeconds,
    ) -> Result<Result<Message, Refusal>, VtnError> {
        if m.opt_type != "optIn" && m.opt_type != "optOut" {
            return Ok(Err(refuse(
                ResponseCode::InvalidData,
                format!("optType must be optIn or optOut, got '{}'", m.opt_type),
            )));
        }
        if m.opt_id.trim().is_empty() {
            return Ok(Err(refuse(ResponseCode::InvalidId, "empty optID")));
        }
        if let Some(q) = &m.qualified_event_id {
            let mine = self.events_for(&ven.ven_id, i64::MIN).await?;
            if !mine.iter().any(|e| e.event_id == q.event_id) {
                return Ok(Err(refuse(
                    ResponseCode::InvalidId,
                    format!("eventID '{}' is not an event for this VEN", q.event_id),
                )));
            }
        }
        let inserted = dynamic(
            "INSERT INTO oadr2_opts (opt_id, ven_id, opt_type, opt_reason, event_id, market_context, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                .into(),
        )
        .bind(m.opt_id.clone())
        .bind(ven.ven_id.clone())
        .bind(m.opt_type.clone())
        .bind(m.opt_reason.clone())
        .bind(m.qualified_event_id.as_ref().map(|q| q.event_id.clone()))
        .bind(m.market_context.clone())
        .bind(now)
        .execute(self.store.pool())
        .await;
        if let Err(e) = inserted {
            let e = StoreError::Database(e);
            if e.is_unique_violation() {
                return Ok(Err(refuse(
                    ResponseCode::InvalidId,
                    format!("optID '{}' is already in use", m.opt_id),
                )));
            }
            return Err(e.into());
        }
        Ok(Ok(Message::CreatedOpt(CreatedOpt {
            schema_version: Some(SCHEMA_VERSION.into()),
            response: EiResponse::new(200, "OK", &m.request_id),
            opt_id: m.opt_id,
        })))
    }

    async fn cancel_opt(
        &self,
        ven: &Ven,
        m: CancelOpt,
        now: EpochSeconds,
    ) -> Result<Result<Message, Refusal>, VtnError> {
        let n = dynamic(
            "UPDATE oadr2_opts SET canceled_at = $3 WHERE opt_id = $1 AND ven_id = $2 \
             AND canceled_at IS NULL"
                .into(),
        )
        .bind(m.opt_id.clone())
        .bind(ven.ven_id.clone())
        .bind(now)
        .execute(self.store.pool())
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(Err(refuse(
                ResponseCode::InvalidId,
                format!("optID '{}' is not an open opt of this VEN", m.opt_id),
            )));
        }
        Ok(Ok(Message::CanceledOpt(CanceledOpt {
            schema_version: Some(SCHEMA_VERSION.into()),
            response: EiResponse::new(200, "OK", &m.request_id),
            opt_id: m.opt_id,
        })))
    }

    /// A VEN's opts: (optID, optType, eventID, cancelled).
    pub async fn opts(
        &self,
        ven_id: &str,
    ) -> Result<Vec<(String, String, Option<String>, bool)>, VtnError> {
        let rows = dynamic(
            "SELECT opt_id, opt_type, event_id, canceled_at FROM oadr2_opts WHERE ven_id = $1 \
             ORDER BY created_at, opt_id"
                .into(),
        )
        .bind(ven_id.to_string())
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let canceled: Option<i64> = sqlx::Row::try_get(r, "canceled_at")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((
                    text(r, "opt_id")?,
                    text(r, "opt_type")?,
                    opt_text(r, "event_id")?,
                    canceled.is_some(),
                ))
            })
            .collect()
    }

    /// The push-mode VENs an event goes to.
    pub async fn push_targets(&self, e: &StoredEvent) -> Result<Vec<Ven>, VtnError> {
        let vens = self.vens().await?;
        Ok(vens
            .into_iter()
            .filter(|v| !v.http_pull_model && v.transport_address.is_some())
            .filter(|v| e.definition.ven_ids.is_empty() || e.definition.ven_ids.contains(&v.ven_id))
            .collect())
    }
}

fn parse_event(body: &str) -> Result<StoredEvent, VtnError> {
    serde_json::from_str(body).map_err(|e| VtnError::Store(StoreError::Corrupt(e.to_string())))
}
