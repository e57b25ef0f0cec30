//! The IEEE 2030.5 response function set: devices tell the server what they did with a
//! DERControl (received, started, completed, opted out, rejected, ...).
//!
//! There is one ResponseSet per control program. DERControls that require responses name
//! its ResponseList in `replyTo` ([`response_list_href`]), and devices POST a
//! `DERControlResponse` (or a plain `Response`) there:
//!
//! - `GET /rsps`: the ResponseSets of the programs that reach the caller's EndDevices;
//! - `GET /rsps/{program}`: one ResponseSet;
//! - `GET /rsps/{program}/rsp`: the responses the caller's EndDevices posted;
//! - `POST /rsps/{program}/rsp`: stores a response (201 with its Location);
//! - `GET /rsps/{program}/rsp/{id}`: one stored response.
//!
//! A response is refused with 400, and nothing stored, unless its status is a code the
//! standard defines ([`ResponseStatus`]), its `endDeviceLFDI` is the caller's own
//! EndDevice (or, for an aggregator, one it registered), and its `subject` is the mRID of a
//! control of this program, which must reach that EndDevice (else 404, as for any resource
//! the caller cannot see). The same status for the same control and device is stored once.
//! The operator reads responses per control through the operator API.

use super::convert::mrid_for;
use super::mirror::canonical_mrid;
use super::model::{
    DerControlResponse, ListLink, Response as ResponseDoc, ResponseList, ResponseSet,
    ResponseSetList, ResponseStatus, SepResource,
};
use super::records::EndDeviceRecord;
use super::server::{
    Caller, ListQuery, Result, Sep2Error, Sep2State, body_bytes, caller, programs_for, read_xml,
    sees, visible_end_devices, xml,
};
use super::tls::PeerIdentity;
use super::xml::{self as codec, XmlError};
use crate::domain::identity::Lfdi;
use crate::domain::{EpochSeconds, now_epoch};
use crate::envelope::records::{ControlProgram, ControlRecord};
use crate::registry::{Page, RegistryError};
use crate::store::record::{dynamic, int, text};
use crate::store::{Store, StoreError};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Serialize;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

/// Routes of this function set.
pub fn routes() -> Router<Sep2State> {
    Router::new()
        .route("/rsps", get(set_list))
        .route("/rsps/{program}", get(set))
        .route("/rsps/{program}/rsp", get(list).post(create))
        .route("/rsps/{program}/rsp/{id}", get(read))
}

/// The ResponseList a program's DERControls name in `replyTo`.
pub fn response_list_href(program_id: &str) -> String {
    format!("/rsps/{program_id}/rsp")
}

/// A response as stored, and as the operator API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ResponseRecord {
    /// Server-assigned id (the last segment of the response's 2030.5 URL).
    pub id: String,
    /// The control responded to (its mRID).
    pub control_id: String,
    /// The control's program.
    pub program_id: String,
    /// The EndDevice that responded (its SFDI).
    pub end_device_id: String,
    /// That EndDevice's LFDI.
    pub end_device_lfdi: String,
    /// The 2030.5 response status code (1-14, 252-254).
    pub status: u8,
    /// The code's meaning, e.g. `event_received`.
    pub status_name: String,
    /// When the device says it produced the response (its createdDateTime, or the receipt
    /// time when it gave none), epoch seconds.
    pub created_date_time: EpochSeconds,
    /// When the server received it, epoch seconds.
    pub received_at: EpochSeconds,
}

const COLUMNS: &str = "id, control_id, program_id, end_device_id, end_device_lfdi, status, created_date_time, received_at";

/// The name of a response status, as the operator API shows it.
pub fn status_name(status: ResponseStatus) -> &'static str {
    match status {
        ResponseStatus::EventReceived => "event_received",
        ResponseStatus::EventStarted => "event_started",
        ResponseStatus::EventCompleted => "event_completed",
        ResponseStatus::OptedOut => "opted_out",
        ResponseStatus::OptedIn => "opted_in",
        ResponseStatus::EventCancelled => "event_cancelled",
        ResponseStatus::EventSuperseded => "event_superseded",
        ResponseStatus::PartiallyCompletedOptOut => "partially_completed_opt_out",
        ResponseStatus::PartiallyCompletedOptIn => "partially_completed_opt_in",
        ResponseStatus::CompletedNoParticipation => "completed_no_participation",
        ResponseStatus::Acknowledged => "acknowledged",
        ResponseStatus::NotDisplayed => "not_displayed",
        ResponseStatus::AbortedServer => "aborted_server",
        ResponseStatus::AbortedProgram => "aborted_program",
        ResponseStatus::RejectedNotApplicable => "rejected_not_applicable",
        ResponseStatus::RejectedInvalid => "rejected_invalid",
        ResponseStatus::RejectedExpired => "rejected_expired",
    }
}

fn from_row(row: &AnyRow) -> std::result::Result<ResponseRecord, StoreError> {
    let code = int(row, "status")?;
    let status = u8::try_from(code)
        .ok()
        .and_then(|c| ResponseStatus::try_from(c).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("response status {code}")))?;
    Ok(ResponseRecord {
        id: text(row, "id")?,
        control_id: text(row, "control_id")?,
        program_id: text(row, "program_id")?,
        end_device_id: text(row, "end_device_id")?,
        end_device_lfdi: text(row, "end_device_lfdi")?,
        status: status.into(),
        status_name: status_name(status).into(),
        created_date_time: int(row, "created_date_time")?,
        received_at: int(row, "received_at")?,
    })
}

/// The responses to one control, `limit` at a time in id order after `after` (keyset
/// pagination, as every operator list).
pub async fn responses_to_control(
    store: &Store,
    control_id: &str,
    after: Option<&str>,
    limit: u32,
) -> std::result::Result<Page<ResponseRecord>, StoreError> {
    let limit = limit.clamp(1, crate::registry::MAX_PAGE);
    let mut sql = format!("SELECT {COLUMNS} FROM sep2_responses WHERE control_id = $1");
    if after.is_some() {
        sql.push_str(" AND id > $2");
    }
    // One more than asked tells whether another page exists.
    sql.push_str(&format!(" ORDER BY id LIMIT {}", limit + 1));
    let mut q = dynamic(sql).bind(control_id.to_string());
    if let Some(a) = after {
        q = q.bind(a.to_string());
    }
    let rows = q.fetch_all(store.pool()).await?;
    let mut items: Vec<ResponseRecord> = rows
        .iter()
        .map(from_row)
        .collect::<std::result::Result<_, _>>()?;
    let next_after = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Page { items, next_after })
}

/// The programs that reach the caller's enabled EndDevices, by id.
async fn visible_programs(state: &Sep2State, caller: &Caller) -> Result<Vec<ControlProgram>> {
    let mut programs: Vec<ControlProgram> = Vec::new();
    for ed in visible_end_devices(state, caller).await? {
        if !ed.enabled {
            continue;
        }
        for p in programs_for(state, &ed).await? {
            if !programs.iter().any(|q| q.id == p.id) {
                programs.push(p);
            }
        }
    }
    programs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(programs)
}

/// A program whose ResponseSet the caller may see, or 404.
async fn visible_program(state: &Sep2State, caller: &Caller, id: &str) -> Result<ControlProgram> {
    for ed in visible_end_devices(state, caller).await? {
        if !ed.enabled {
            continue;
        }
        if let Some(p) = programs_for(state, &ed)
            .await?
            .into_iter()
            .find(|p| p.id == id)
        {
            return Ok(p);
        }
    }
    Err(Sep2Error::NotFound)
}

fn set_doc(p: &ControlProgram) -> ResponseSet {
    ResponseSet {
        href: Some(format!("/rsps/{}", p.id)),
        m_rid: mrid_for(&format!("rsps:{}", p.id)),
        // description is a String32 on the wire.
        description: Some(p.name.chars().take(32).collect()),
        version: None,
        response_list_link: Some(ListLink::new(response_list_href(&p.id))),
    }
}

async fn set_list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let caller = caller(&state, &peer);
    let docs: Vec<ResponseSet> = visible_programs(&state, &caller)
        .await?
        .iter()
        .map(set_doc)
        .collect();
    let (all, page) = q.window(docs);
    xml(
        &state,
        &ResponseSetList {
            href: Some("/rsps".into()),
            all,
            results: page.len() as u32,
            poll_rate: Some(state.settings.poll_rate),
            response_sets: page,
        },
    )
}

async fn set(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(program): Path<String>,
) -> Result<Response> {
    let p = visible_program(&state, &caller(&state, &peer), &program).await?;
    xml(&state, &set_doc(&p))
}

fn response_doc(r: &ResponseRecord) -> ResponseDoc {
    ResponseDoc {
        href: Some(format!("{}/{}", response_list_href(&r.program_id), r.id)),
        created_date_time: Some(r.created_date_time),
        end_device_lfdi: r.end_device_lfdi.clone(),
        status: ResponseStatus::try_from(r.status).ok(),
        subject: r.control_id.clone(),
    }
}

/// The responses to a program's controls from the EndDevices the caller sees, oldest first.
async fn visible_responses(
    state: &Sep2State,
    caller: &Caller,
    program: &str,
) -> Result<Vec<ResponseRecord>> {
    let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("r.{c}")).collect();
    let sql = format!(
        "SELECT {} FROM sep2_responses r JOIN sep2_end_devices e ON e.id = r.end_device_id \
         WHERE r.program_id = $1 AND (e.lfdi = $2 OR e.owner_lfdi = $2) ORDER BY r.received_at, r.id",
        columns.join(", ")
    );
    let rows = dynamic(sql)
        .bind(program.to_string())
        .bind(caller.lfdi.clone())
        .fetch_all(state.registry.store().pool())
        .await?;
    Ok(rows
        .iter()
        .map(from_row)
        .collect::<std::result::Result<_, _>>()?)
}

async fn list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(program): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let caller = caller(&state, &peer);
    let p = visible_program(&state, &caller, &program).await?;
    let docs: Vec<ResponseDoc> = visible_responses(&state, &caller, &p.id)
        .await?
        .iter()
        .filter(|r| q.a.is_none_or(|a| r.received_at > a))
        .map(response_doc)
        .collect();
    let (all, page) = q.window(docs);
    xml(
        &state,
        &ResponseList {
            href: Some(response_list_href(&p.id)),
            all,
            results: page.len() as u32,
            responses: page,
        },
    )
}

async fn read(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path((program, id)): Path<(String, String)>,
) -> Result<Response> {
    let caller = caller(&state, &peer);
    let p = visible_program(&state, &caller, &program).await?;
    let r = visible_responses(&state, &caller, &p.id)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or(Sep2Error::NotFound)?;
    xml(&state, &DerControlResponse::from(response_doc(&r)))
}

/// The posted response: a `DERControlResponse`, which is what CSIP asks for, or the
/// plain `Response` that some clients send, told apart by the root element.
fn read_response(state: &Sep2State, headers: &HeaderMap, bytes: &Bytes) -> Result<ResponseDoc> {
    match codec::decode::<DerControlResponse>(bytes, state.settings.body_limit) {
        Err(XmlError::WrongRoot { found, .. }) if found == ResponseDoc::ELEMENT => {
            read_xml::<ResponseDoc>(state, headers, bytes)
        }
        // Decoded again through read_xml, which also checks the content type and maps
        // every decoding error (an undefined status code among them) to its answer.
        _ => Ok(read_xml::<DerControlResponse>(state, headers, bytes)?.into()),
    }
}

/// The EndDevice a response names, which must be the caller's own or, for an aggregator,
/// one it registered. The same refusal either way, so nothing is revealed about LFDIs the
/// caller does not hold.
async fn responding_end_device(
    state: &Sep2State,
    caller: &Caller,
    end_device_lfdi: &str,
) -> Result<EndDeviceRecord> {
    let lfdi = end_device_lfdi
        .trim()
        .parse::<Lfdi>()
        .map_err(|e| Sep2Error::BadRequest(format!("endDeviceLFDI: {e}")))?
        .to_hex();
    let ed = state
        .registry
        .list::<EndDeviceRecord>(&[("lfdi", lfdi.clone().into())], None, 1)
        .await?
        .items
        .pop();
    match ed {
        Some(ed) if sees(caller, &ed) => {
            if !ed.enabled {
                return Err(Sep2Error::Forbidden("this EndDevice is disabled".into()));
            }
            Ok(ed)
        }
        _ => Err(Sep2Error::BadRequest(format!(
            "endDeviceLFDI {lfdi} is not an EndDevice of this client"
        ))),
    }
}

/// POST /rsps/{program}/rsp.
async fn create(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(program): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let caller = caller(&state, &peer);
    // Someone who cannot see the ResponseSet learns nothing from the body's checks.
    visible_program(&state, &caller, &program).await?;
    let bytes = body_bytes(&state, body).await?;
    let posted = read_response(&state, &headers, &bytes)?;
    let status = posted
        .status
        .ok_or_else(|| Sep2Error::BadRequest("status is required".into()))?;
    let ed = responding_end_device(&state, &caller, &posted.end_device_lfdi).await?;
    // The program must reach the responding EndDevice itself, not just another of an
    // aggregator's devices.
    let p = programs_for(&state, &ed)
        .await?
        .into_iter()
        .find(|p| p.id == program)
        .ok_or(Sep2Error::NotFound)?;
    let subject = canonical_mrid("subject", &posted.subject)?;
    let control = match state.registry.get::<ControlRecord>(&subject).await {
        Ok(c) if c.program_id == p.id => c,
        Ok(_) | Err(RegistryError::NotFound { .. }) => {
            return Err(Sep2Error::BadRequest(format!(
                "subject {subject} is not a DERControl of this program"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let now = now_epoch();
    let code = u8::from(status);
    let pool = state.registry.store().pool();
    // A retried POST finds the row the first one stored (same control, device and status).
    sqlx::query(
        "INSERT INTO sep2_responses (id, control_id, program_id, end_device_id, end_device_lfdi, status, created_date_time, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (control_id, end_device_lfdi, status) DO NOTHING",
    )
    .bind(uuid::Uuid::new_v4().simple().to_string())
    .bind(control.id.clone())
    .bind(p.id.clone())
    .bind(ed.id.clone())
    .bind(ed.lfdi.clone())
    .bind(i64::from(code))
    .bind(posted.created_date_time.unwrap_or(now))
    .bind(now)
    .execute(pool)
    .await?;
    let row = sqlx::query(
        "SELECT id FROM sep2_responses WHERE control_id = $1 AND end_device_lfdi = $2 AND status = $3",
    )
    .bind(control.id.clone())
    .bind(ed.lfdi.clone())
    .bind(i64::from(code))
    .fetch_one(pool)
    .await?;
    let id = text(&row, "id")?;
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("{}/{id}", response_list_href(&p.id)),
        )],
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_status_has_a_distinct_name() {
        let defined: Vec<ResponseStatus> = (0..=255u8)
            .filter_map(|c| ResponseStatus::try_from(c).ok())
            .collect();
        assert_eq!(defined.len(), 17);
        let mut names: Vec<&str> = defined.iter().map(|s| status_name(*s)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 17);
        assert_eq!(status_name(ResponseStatus::EventStarted), "event_started");
    }

    #[test]
    fn response_sets_are_valid_string32_and_stable() {
        let p = ControlProgram {
            id: "doe".into(),
            name: "A program whose name is much longer than thirty-two characters".into(),
            description: None,
            primacy: 1,
            target_kind: crate::envelope::records::TargetKind::Site,
            target_id: "s1".into(),
            created_at: 0,
            updated_at: 0,
        };
        let doc = set_doc(&p);
        assert_eq!(doc.description.as_ref().unwrap().chars().count(), 32);
        assert_eq!(doc.m_rid, set_doc(&p).m_rid);
        assert_eq!(doc.response_list_link.unwrap().href, "/rsps/doe/rsp");
    }
}
