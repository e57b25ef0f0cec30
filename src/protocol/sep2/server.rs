//! The IEEE 2030.5 resource server: routes and handlers over the mutual-TLS listener.
//!
//! Every request carries the client's certificate identity (from the TLS layer); nothing in
//! a request body can change who the caller is. A device certificate sees only its own
//! EndDevice; an aggregator certificate (an aggregator identity in the registry) sees the
//! EndDevices it registered. Anything else is answered 404, so the existence of another
//! party's resource is never revealed.
//!
//! Served: DeviceCapability, Time, EndDeviceList (GET, POST registration), EndDevice,
//! Registration, FunctionSetAssignments, DERProgram, DERControl (all / active), DefaultDERControl,
//! DERList / DER and the DER information resources (PUT/GET). Function sets in
//! their own modules add DER curves ([`super::curves`]), log events ([`super::log_events`]),
//! the metering mirror ([`super::mirror`]), responses
//! ([`super::responses`]), subscriptions ([`super::subscriptions`]) and device information
//! ([`super::device_info`]). Every GET also answers HEAD.

use super::convert::{self, mrid_for};
use super::function_sets::{self, DEFAULT_FSA, FunctionSet};
use super::model::{
    DefaultDerControl, Der, DerControlList, DerList, DerProgram, DerProgramList, DeviceCapability,
    EndDevice, EndDeviceList, FunctionSetAssignments, FunctionSetAssignmentsList, Link, ListLink,
    Registration, SepResource, Time,
};
use super::model::{DerAvailability, DerCapability, DerSettings};
use super::poll_cache::{PollCache, PollKey};
use super::poll_rates::PollRates;
use super::read_model::ReadModel;
use super::records::{DerResource, EndDeviceRecord, get_der_resource, put_der_resource};
use super::tls::PeerIdentity;
use super::xml::{self, CsipAusVersion, XmlError};
use crate::domain::identity::{Lfdi, Sfdi};
use crate::domain::{EpochSeconds, IdentityKind, now_epoch};
use crate::envelope::records::{ControlProgram, ControlRecord};
use crate::envelope::{event_status, timelines};
use crate::registry::{Registry, RegistryError};
use crate::store::Record;
use crate::store::record::dynamic;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The media type of every 2030.5 document.
pub const SEP_XML: &str = "application/sep+xml";

/// Per-deployment settings of the 2030.5 server.
#[derive(Debug, Clone)]
pub struct Sep2Settings {
    /// pollRate announced on lists and the DeviceCapability, seconds.
    pub poll_rate: u32,
    /// postRate announced on MirrorUsagePoints, seconds.
    pub post_rate: u32,
    /// Which CSIP-AUS namespace to write, or None for plain CSIP.
    pub csipaus: Option<CsipAusVersion>,
    /// Largest accepted request body, bytes.
    pub body_limit: usize,
    /// The deployment's randomization seed (see the envelope engine).
    pub seed: u64,
    /// Whether POST /edev registers EndDevices (false: out-of-band registration only).
    pub in_band_registration: bool,
}

/// What the handlers share.
#[derive(Clone)]
pub struct Sep2State {
    pub registry: Registry,
    pub settings: Arc<Sep2Settings>,
    /// Rendered poll documents (see [`super::poll_cache`]), kept current by `registry`'s
    /// commit hooks.
    pub poll_cache: Arc<PollCache>,
    /// The registry rows the poll path renders from (see [`super::read_model`]).
    pub read_model: Arc<ReadModel>,
    /// pollRates set at run time (see [`super::poll_rates`]).
    pub poll_rates: Arc<PollRates>,
    /// What each subscription's subscriber was last sent or knows (see
    /// [`super::notifier::baseline`]).
    pub notified: super::notifier::Latest,
}

impl Sep2State {
    /// The state for `registry` with the read model and the poll cache attached to its commit
    /// hooks; entries live at most `cache_max_age_s` seconds, cached bodies take at most
    /// `cache_max_bytes` together. `cache_max_age_s == 0` turns both off: every request
    /// reads the database.
    pub fn new(
        registry: Registry,
        settings: Sep2Settings,
        cache_max_age_s: u32,
        cache_max_bytes: usize,
    ) -> Self {
        let poll_cache = PollCache::attached(&registry, cache_max_age_s, cache_max_bytes);
        let read_model = ReadModel::attached(&registry, cache_max_age_s);
        let poll_rates = PollRates::attached(&registry, settings.poll_rate, cache_max_age_s);
        Sep2State {
            registry,
            settings: Arc::new(settings),
            poll_cache,
            read_model,
            poll_rates,
            notified: Default::default(),
        }
    }

    /// The pollRate to announce on `resource` (a 2030.5 resource name from
    /// [`super::poll_rates::RESOURCES`]).
    pub async fn poll_rate(&self, resource: &str) -> Result<u32> {
        Ok(self.poll_rates.get(&self.registry, resource).await?)
    }
}

/// A refused or failed 2030.5 request. Bodies are short plain-text reasons; 2030.5 defines
/// no error document.
#[derive(Debug, thiserror::Error)]
pub enum Sep2Error {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// The request clashes with what exists, for example an mRID another client uses.
    #[error("{0}")]
    Conflict(String),
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("content type must be application/sep+xml")]
    UnsupportedMediaType,
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for Sep2Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Sep2Error::NotFound => StatusCode::NOT_FOUND,
            Sep2Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Sep2Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Sep2Error::Conflict(_) => StatusCode::CONFLICT,
            Sep2Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Sep2Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Sep2Error::Internal(detail) => {
                tracing::error!(%detail, "2030.5 request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain")],
            self.to_string(),
        )
            .into_response()
    }
}

impl From<RegistryError> for Sep2Error {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound { .. } => Sep2Error::NotFound,
            RegistryError::Invalid(v) => Sep2Error::BadRequest(
                v.iter()
                    .map(|v| format!("{}: {}", v.field, v.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            other => Sep2Error::Internal(other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for Sep2Error {
    fn from(e: crate::store::StoreError) -> Self {
        Sep2Error::Internal(e.to_string())
    }
}

impl From<sqlx::Error> for Sep2Error {
    fn from(e: sqlx::Error) -> Self {
        Sep2Error::Internal(e.to_string())
    }
}

impl From<crate::envelope::ScaleError> for Sep2Error {
    fn from(e: crate::envelope::ScaleError) -> Self {
        Sep2Error::Internal(format!("value cannot be sent: {e}"))
    }
}

pub(crate) type Result<T> = std::result::Result<T, Sep2Error>;

/// The 2030.5 router; the TLS layer supplies `Extension<PeerIdentity>` on every request.
pub fn router(state: Sep2State) -> Router {
    Router::new()
        .route("/dcap", get(device_capability))
        .route("/tm", get(time))
        .route("/edev", get(end_device_list).post(register))
        .route("/edev/{edev}", get(end_device))
        .route("/edev/{edev}/rg", get(registration))
        .route("/edev/{edev}/fsa", get(fsa_list))
        .route("/edev/{edev}/fsa/{fsa}", get(fsa))
        .route("/edev/{edev}/fsa/{fsa}/derp", get(fsa_program_list))
        .route("/edev/{edev}/derp", get(program_list))
        .route("/edev/{edev}/derp/{prog}", get(program))
        .route("/edev/{edev}/derp/{prog}/derc", get(control_list))
        .route("/edev/{edev}/derp/{prog}/actderc", get(active_control_list))
        .route("/edev/{edev}/derp/{prog}/derc/{mrid}", get(control))
        .route("/edev/{edev}/derp/{prog}/dderc", get(default_control))
        .route("/edev/{edev}/der", get(der_list))
        .route("/edev/{edev}/der/1", get(der))
        .route("/edev/{edev}/der/1/dercap", get(get_dercap).put(put_dercap))
        .route("/edev/{edev}/der/1/derg", get(get_derg).put(put_derg))
        .route(
            "/edev/{edev}/der/1/ders",
            get(super::der_status::get_ders).put(super::der_status::put_ders),
        )
        .route("/edev/{edev}/der/1/dera", get(get_dera).put(put_dera))
        .merge(super::subscriptions::routes())
        .merge(super::curves::routes())
        .merge(super::log_events::routes())
        // Function sets implemented in their own modules add their routes here.
        .merge(super::device_info::routes())
        .merge(super::mirror::routes())
        .merge(super::responses::routes())
        .fallback(|| async { Sep2Error::NotFound })
        .with_state(state)
}

/// Who is calling, from the certificate alone.
pub(crate) struct Caller {
    pub(crate) lfdi: String,
    pub(crate) aggregator: bool,
}

pub(crate) fn caller(state: &Sep2State, peer: &PeerIdentity) -> Caller {
    let lfdi = peer.lfdi();
    let aggregator = state
        .registry
        .identities()
        .lookup(&lfdi)
        .is_some_and(|i| i.kind == IdentityKind::Aggregator);
    Caller {
        lfdi: lfdi.to_hex(),
        aggregator,
    }
}

pub(crate) fn sees(caller: &Caller, ed: &EndDeviceRecord) -> bool {
    ed.lfdi == caller.lfdi || ed.owner_lfdi.as_deref() == Some(caller.lfdi.as_str())
}

/// An EndDevice the caller may see and use; anything else is 404 (or 403 when disabled).
pub(crate) async fn visible_end_device(
    state: &Sep2State,
    caller: &Caller,
    id: &str,
) -> Result<EndDeviceRecord> {
    let ed: EndDeviceRecord = match state.read_model.end_device(&state.registry, id).await {
        Ok(ed) => EndDeviceRecord::clone(&ed),
        Err(RegistryError::NotFound { .. }) => return Err(Sep2Error::NotFound),
        Err(e) => return Err(e.into()),
    };
    if !sees(caller, &ed) {
        return Err(Sep2Error::NotFound);
    }
    Ok(ed)
}

pub(crate) async fn enabled_end_device(
    state: &Sep2State,
    caller: &Caller,
    id: &str,
) -> Result<EndDeviceRecord> {
    let ed = visible_end_device(state, caller, id).await?;
    if !ed.enabled {
        return Err(Sep2Error::Forbidden("this EndDevice is disabled".into()));
    }
    Ok(ed)
}

/// Renders a resource as a 2030.5 document.
pub(crate) fn xml<T: SepResource + Serialize>(state: &Sep2State, value: &T) -> Result<Response> {
    let body = xml::encode(value, state.settings.csipaus)
        .map_err(|e| Sep2Error::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, SEP_XML)], body).into_response())
}

/// Encodes a document for the poll cache: its body and when its content may next change.
pub(crate) fn rendered<T: SepResource + Serialize>(
    state: &Sep2State,
    value: &T,
    valid_until: Option<EpochSeconds>,
) -> Result<(String, Option<EpochSeconds>)> {
    let body = xml::encode(value, state.settings.csipaus)
        .map_err(|e| Sep2Error::Internal(e.to_string()))?;
    Ok((body, valid_until))
}

/// Serves a GET from the poll cache, or renders it with `render` and keeps the result.
///
/// The cache's generation is read before `render` reads any row, so a write committing
/// meanwhile makes the new body stale at once (see [`super::poll_cache`]).
pub(crate) async fn cached<F, Fut>(
    state: &Sep2State,
    peer: &PeerIdentity,
    uri: &Uri,
    render: F,
) -> Result<Response>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(String, Option<EpochSeconds>)>>,
{
    let now = now_epoch();
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let key = PollKey::new(*peer.lfdi().as_bytes(), path);
    if let Some(body) = state.poll_cache.get(&key, now) {
        return Ok(([(header::CONTENT_TYPE, SEP_XML)], body).into_response());
    }
    let generation = state.poll_cache.generation();
    let (body, valid_until) = render().await?;
    let body = Bytes::from(body);
    state
        .poll_cache
        .put(key, generation, body.clone(), now, valid_until);
    Ok(([(header::CONTENT_TYPE, SEP_XML)], body).into_response())
}

/// Checks the content type and size of a request body and decodes it.
pub(crate) fn read_xml<T: SepResource + DeserializeOwned>(
    state: &Sep2State,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.split(';').next().map(str::trim) != Some(SEP_XML) {
        return Err(Sep2Error::UnsupportedMediaType);
    }
    xml::decode(body, state.settings.body_limit).map_err(|e| match e {
        XmlError::TooLarge { .. } => Sep2Error::TooLarge(state.settings.body_limit),
        other => Sep2Error::BadRequest(other.to_string()),
    })
}

/// Reads a request body with the configured limit (413 beyond it).
pub(crate) async fn body_bytes(state: &Sep2State, body: Body) -> Result<Bytes> {
    axum::body::to_bytes(body, state.settings.body_limit)
        .await
        .map_err(|_| Sep2Error::TooLarge(state.settings.body_limit))
}

/// The standard list query: `s` start index, `a` after time, `l` limit (default 1).
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    pub(crate) s: Option<u32>,
    /// `a`: only items changed after this time (applied where a list has change times).
    pub(crate) a: Option<i64>,
    pub(crate) l: Option<u32>,
}

impl ListQuery {
    pub(crate) fn window<T>(&self, items: Vec<T>) -> (u32, Vec<T>) {
        let all = items.len() as u32;
        let start = self.s.unwrap_or(0) as usize;
        // 2030.5: without `l` a list returns one item.
        let limit = self.l.unwrap_or(1).min(1000) as usize;
        (all, items.into_iter().skip(start).take(limit).collect())
    }
}

async fn device_capability(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
) -> Result<Response> {
    let caller = caller(&state, &peer);
    let count = visible_end_devices(&state, &caller).await?.len() as u32;
    let mirrors = super::mirror::visible_count(&state, &caller).await?;
    xml(
        &state,
        &DeviceCapability {
            href: Some("/dcap".into()),
            poll_rate: Some(state.poll_rate("DeviceCapability").await?),
            time_link: Some(Link::new("/tm")),
            end_device_list_link: Some(ListLink::with_all("/edev", count)),
            mirror_usage_point_list_link: Some(ListLink::with_all("/mup", mirrors)),
            // No count: it would take every program of every EndDevice the caller sees.
            response_set_list_link: Some(ListLink::new("/rsps")),
            ..DeviceCapability::default()
        },
    )
}

async fn time(State(state): State<Sep2State>) -> Result<Response> {
    let now = now_epoch();
    xml(
        &state,
        &Time {
            href: Some("/tm".into()),
            poll_rate: Some(state.settings.poll_rate),
            current_time: now,
            dst_end_time: 0,
            dst_offset: 0,
            dst_start_time: 0,
            local_time: Some(now),
            // 4: synchronised to an NTP level-3 source.
            quality: 4,
            tz_offset: 0,
        },
    )
}

pub(crate) async fn visible_end_devices(
    state: &Sep2State,
    caller: &Caller,
) -> Result<Vec<EndDeviceRecord>> {
    let sql = format!(
        "SELECT {} FROM sep2_end_devices WHERE lfdi = $1 OR owner_lfdi = $1 ORDER BY sfdi",
        EndDeviceRecord::COLUMNS.join(", ")
    );
    let rows = dynamic(sql)
        .bind(caller.lfdi.clone())
        .fetch_all(state.registry.store().pool())
        .await?;
    Ok(rows
        .iter()
        .map(EndDeviceRecord::from_row)
        .collect::<std::result::Result<_, _>>()?)
}

/// A device certificate whose own EndDevice the operator disabled has lost its access: the
/// lists that would serve it answer 403 (CSIP-AUS S-ALL-05 expects the EndDeviceList to be
/// refused or empty). The EndDevice itself stays readable, so the client can read
/// `enabled` false there. An aggregator keeps its access when one of its devices is
/// disabled; that device alone is refused.
pub(crate) fn refuse_withdrawn(caller: &Caller, devices: &[EndDeviceRecord]) -> Result<()> {
    if !caller.aggregator
        && devices
            .iter()
            .any(|ed| ed.lfdi == caller.lfdi && !ed.enabled)
    {
        return Err(Sep2Error::Forbidden(
            "this client's access has been withdrawn (its EndDevice is disabled)".into(),
        ));
    }
    Ok(())
}

/// An EndDevice as served, with the number of its FunctionSetAssignments.
async fn end_device_view(state: &Sep2State, ed: &EndDeviceRecord) -> Result<EndDevice> {
    let sets = function_sets_for(state, ed).await?.len() as u32;
    Ok(end_device_doc(ed, state.settings.csipaus.is_some(), sets))
}

fn end_device_doc(ed: &EndDeviceRecord, csipaus: bool, function_sets: u32) -> EndDevice {
    let base = format!("/edev/{}", ed.id);
    EndDevice {
        href: Some(base.clone()),
        der_list_link: Some(ListLink::with_all(format!("{base}/der"), 1)),
        l_fdi: Some(ed.lfdi.clone()),
        s_fdi: ed.sfdi,
        changed_time: ed.changed_time,
        enabled: Some(ed.enabled),
        function_set_assignments_list_link: Some(ListLink::with_all(
            format!("{base}/fsa"),
            function_sets,
        )),
        registration_link: Some(Link::new(format!("{base}/rg"))),
        device_information_link: Some(Link::new(format!("{base}/di"))),
        log_event_list_link: Some(ListLink::new(format!("{base}/lel"))),
        connection_point_link: csipaus.then(|| Link::new(format!("{base}/cp"))),
        subscription_list_link: Some(ListLink::new(format!("{base}/sub"))),
        device_category: ed.device_category.clone(),
        ..EndDevice::default()
    }
}

async fn end_device_list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let caller = caller(&state, &peer);
    xml(&state, &end_device_list_doc(&state, &caller, &q).await?)
}

/// The EndDeviceList `caller` sees, windowed by `q` (also what its notifications carry).
pub(crate) async fn end_device_list_doc(
    state: &Sep2State,
    caller: &Caller,
    q: &ListQuery,
) -> Result<EndDeviceList> {
    let devices = visible_end_devices(state, caller).await?;
    refuse_withdrawn(caller, &devices)?;
    let devices: Vec<EndDeviceRecord> = devices
        .into_iter()
        .filter(|ed| q.a.is_none_or(|a| ed.changed_time > a))
        .collect();
    let (all, page) = q.window(devices);
    let mut end_devices = Vec::with_capacity(page.len());
    for ed in &page {
        end_devices.push(end_device_view(state, ed).await?);
    }
    Ok(EndDeviceList {
        href: Some("/edev".into()),
        subscribable: Some(1),
        all,
        results: page.len() as u32,
        poll_rate: Some(state.poll_rate("EndDeviceList").await?),
        end_devices,
    })
}

/// In-band registration (POST /edev). A device certificate may register only its own LFDI;
/// an aggregator certificate registers the devices it manages. Registering an LFDI again
/// is refused with 409 (and the existing EndDevice's Location); no duplicate is created.
async fn register(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    if !state.settings.in_band_registration {
        return Err(Sep2Error::Forbidden(
            "this server registers EndDevices out of band only; ask the utility to register this device".into(),
        ));
    }
    let caller = caller(&state, &peer);
    let bytes = body_bytes(&state, body).await?;
    let posted: EndDevice = read_xml(&state, &headers, &bytes)?;
    let lfdi = match &posted.l_fdi {
        Some(l) => l
            .parse::<Lfdi>()
            .map_err(|e| Sep2Error::BadRequest(format!("lFDI: {e}")))?,
        None if !caller.aggregator => peer.lfdi(),
        None => return Err(Sep2Error::BadRequest("lFDI is required".into())),
    };
    if Sfdi::from_lfdi(&lfdi).value() != posted.s_fdi {
        return Err(Sep2Error::BadRequest(format!(
            "sFDI {} does not belong to lFDI {}",
            posted.s_fdi,
            lfdi.to_hex()
        )));
    }
    if !caller.aggregator && lfdi != peer.lfdi() {
        return Err(Sep2Error::BadRequest(
            "a device certificate may register only its own LFDI".into(),
        ));
    }
    let existing = state
        .registry
        .list::<EndDeviceRecord>(&[("lfdi", lfdi.to_hex().into())], None, 1)
        .await?
        .items
        .pop();
    if let Some(ed) = existing {
        if !sees(&caller, &ed) {
            // Registered by someone else; do not reveal it.
            return Err(Sep2Error::BadRequest(
                "this LFDI cannot be registered".into(),
            ));
        }
        // The CSIP-AUS procedures expect a repeated registration to be refused rather than
        // answered as new; the Location still tells the client where its EndDevice is.
        let location = format!("/edev/{}", ed.id);
        return Ok((
            StatusCode::CONFLICT,
            [(header::LOCATION, location.clone())],
            format!("this LFDI is already registered at {location}"),
        )
            .into_response());
    }
    let created = state
        .registry
        .create(EndDeviceRecord {
            id: String::new(),
            lfdi: lfdi.to_hex(),
            sfdi: 0,
            certificate_pem: None,
            owner_lfdi: caller.aggregator.then(|| caller.lfdi.clone()),
            der_id: None,
            site_id: None,
            enabled: true,
            pin: None,
            device_category: posted.device_category.clone(),
            changed_time: 0,
            created_at: 0,
            updated_at: 0,
        })
        .await?;
    let location = format!("/edev/{}", created.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

async fn end_device(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
) -> Result<Response> {
    let ed = visible_end_device(&state, &caller(&state, &peer), &id).await?;
    xml(&state, &end_device_view(&state, &ed).await?)
}

async fn registration(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
) -> Result<Response> {
    let ed = visible_end_device(&state, &caller(&state, &peer), &id).await?;
    xml(
        &state,
        &Registration {
            href: Some(format!("/edev/{}/rg", ed.id)),
            poll_rate: Some(state.settings.poll_rate),
            date_time_registered: ed.created_at,
            p_in: ed.pin.unwrap_or(0),
        },
    )
}

fn fsa_doc(ed: &EndDeviceRecord, set: &FunctionSet) -> FunctionSetAssignments {
    FunctionSetAssignments {
        href: Some(format!("/edev/{}/fsa/{}", ed.id, set.id)),
        der_program_list_link: Some(ListLink::with_all(
            fsa_program_list_href(ed, &set.id),
            set.programs.len() as u32,
        )),
        time_link: Some(Link::new("/tm")),
        // The default set keeps the mRID it had before sets could be placed apart.
        m_rid: if set.id == DEFAULT_FSA {
            mrid_for(&format!("fsa:{}", ed.id))
        } else {
            mrid_for(&format!("fsa:{}:{}", ed.id, set.id))
        },
        description: Some(set.description.clone()),
        ..FunctionSetAssignments::default()
    }
}

/// Where a FunctionSetAssignments' DERProgramList is served.
fn fsa_program_list_href(ed: &EndDeviceRecord, fsa: &str) -> String {
    if fsa == DEFAULT_FSA {
        format!("/edev/{}/derp", ed.id)
    } else {
        format!("/edev/{}/fsa/{fsa}/derp", ed.id)
    }
}

/// The FunctionSetAssignments an EndDevice sees (see [`super::function_sets`]).
pub(crate) async fn function_sets_for(
    state: &Sep2State,
    ed: &EndDeviceRecord,
) -> Result<Vec<FunctionSet>> {
    let programs = programs_for(state, ed).await?;
    Ok(function_sets::arrange(&state.registry, programs).await?)
}

/// One FunctionSetAssignments of an EndDevice, or 404. The default one always exists.
pub(crate) async fn function_set(
    state: &Sep2State,
    ed: &EndDeviceRecord,
    fsa: &str,
) -> Result<FunctionSet> {
    let programs = programs_for(state, ed).await?;
    let sets = function_sets::arrange(&state.registry, programs).await?;
    if let Some(found) = sets.iter().find(|s| s.id == fsa) {
        return Ok(found.clone());
    }
    if fsa == DEFAULT_FSA {
        return Ok(FunctionSet {
            id: DEFAULT_FSA.into(),
            description: "Operating envelopes".into(),
            programs: Vec::new(),
        });
    }
    Err(Sep2Error::NotFound)
}

/// An EndDevice's FunctionSetAssignmentsList, windowed by `q` (also what its notifications
/// carry).
pub(crate) async fn fsa_list_doc(
    state: &Sep2State,
    ed: &EndDeviceRecord,
    q: &ListQuery,
) -> Result<FunctionSetAssignmentsList> {
    let docs: Vec<FunctionSetAssignments> = function_sets_for(state, ed)
        .await?
        .iter()
        .map(|set| fsa_doc(ed, set))
        .collect();
    let (all, page) = q.window(docs);
    Ok(FunctionSetAssignmentsList {
        href: Some(format!("/edev/{}/fsa", ed.id)),
        subscribable: Some(1),
        all,
        results: page.len() as u32,
        poll_rate: Some(state.poll_rate("FunctionSetAssignmentsList").await?),
        function_set_assignments: page,
    })
}

/// The control programs that reach an EndDevice, in primacy order.
pub(crate) async fn programs_for(
    state: &Sep2State,
    ed: &EndDeviceRecord,
) -> Result<Vec<ControlProgram>> {
    // The same reach as `envelope::records::applicable`, from the read model.
    let reach = match (&ed.der_id, &ed.site_id) {
        (Some(d), _) => state.read_model.reach(&state.registry, true, d).await?,
        (None, Some(s)) => state.read_model.reach(&state.registry, false, s).await?,
        (None, None) => return Ok(Vec::new()),
    };
    let mut programs = Vec::new();
    for (kind, id) in &reach.targets {
        let found = state.read_model.programs(&state.registry, kind, id).await?;
        programs.extend(found.iter().cloned());
    }
    programs.sort_by(|a, b| a.primacy.cmp(&b.primacy).then(a.id.cmp(&b.id)));
    programs.dedup_by(|a, b| a.id == b.id);
    Ok(programs)
}

async fn fsa_list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    cached(&state, &peer, &uri, || async {
        let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
        rendered(&state, &fsa_list_doc(&state, &ed, &q).await?, None)
    })
    .await
}

async fn fsa(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    uri: Uri,
    Path((id, fsa)): Path<(String, String)>,
) -> Result<Response> {
    cached(&state, &peer, &uri, || async {
        let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
        let set = function_set(&state, &ed, &fsa).await?;
        rendered(&state, &fsa_doc(&ed, &set), None)
    })
    .await
}

/// The DERProgramList of a FunctionSetAssignments placed apart (the default one's is
/// `/edev/{id}/derp`).
async fn fsa_program_list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    uri: Uri,
    Path((id, fsa)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    if fsa == DEFAULT_FSA {
        return Err(Sep2Error::NotFound);
    }
    cached(&state, &peer, &uri, || async {
        let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
        let set = function_set(&state, &ed, &fsa).await?;
        rendered(
            &state,
            &set_program_list_doc(&state, &ed, &set, &q).await?,
            None,
        )
    })
    .await
}

fn program_doc(ed: &EndDeviceRecord, p: &ControlProgram) -> DerProgram {
    let base = format!("/edev/{}/derp/{}", ed.id, p.id);
    DerProgram {
        href: Some(base.clone()),
        subscribable: Some(0),
        m_rid: mrid_for(&p.id),
        description: Some(p.name.clone()),
        version: None,
        active_der_control_list_link: Some(ListLink::new(format!("{base}/actderc"))),
        default_der_control_link: Some(Link::new(format!("{base}/dderc"))),
        der_control_list_link: Some(ListLink::new(format!("{base}/derc"))),
        // No count: curves are not part of the cached poll path (see super::curves).
        der_curve_list_link: Some(ListLink::new(super::curves::list_href(&ed.id, &p.id))),
        primacy: p.primacy,
    }
}

async fn program_list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    cached(&state, &peer, &uri, || async {
        let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
        rendered(&state, &program_list_doc(&state, &ed, &q).await?, None)
    })
    .await
}

/// An EndDevice's DERProgramList (its default FunctionSetAssignments' programs), windowed
/// by `q` (also what its notifications carry).
pub(crate) async fn program_list_doc(
    state: &Sep2State,
    ed: &EndDeviceRecord,
    q: &ListQuery,
) -> Result<DerProgramList> {
    let set = function_set(state, ed, DEFAULT_FSA).await?;
    set_program_list_doc(state, ed, &set, q).await
}

pub(crate) async fn set_program_list_doc(
    state: &Sep2State,
    ed: &EndDeviceRecord,
    set: &FunctionSet,
    q: &ListQuery,
) -> Result<DerProgramList> {
    let docs: Vec<DerProgram> = set.programs.iter().map(|p| program_doc(ed, p)).collect();
    let (all, page) = q.window(docs);
    Ok(DerProgramList {
        href: Some(fsa_program_list_href(ed, &set.id)),
        subscribable: Some(1),
        all,
        results: page.len() as u32,
        poll_rate: Some(state.poll_rate("DERProgramList").await?),
        der_programs: page,
    })
}

/// The EndDevice and one of its programs, or 404.
pub(crate) async fn device_program(
    state: &Sep2State,
    peer: &PeerIdentity,
    id: &str,
    prog: &str,
) -> Result<(EndDeviceRecord, ControlProgram)> {
    let ed = enabled_end_device(state, &caller(state, peer), id).await?;
    let program = programs_for(state, &ed)
        .await?
        .into_iter()
        .find(|p| p.id == prog)
        .ok_or(Sep2Error::NotFound)?;
    Ok((ed, program))
}

async fn program(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    uri: Uri,
    Path((id, prog)): Path<(String, String)>,
) -> Result<Response> {
    cached(&state, &peer, &uri, || async {
        let (ed, p) = device_program(&state, &peer, &id, &prog).await?;
        rendered(&state, &program_doc(&ed, &p), None)
    })
    .await
}

/// The key that randomizes an EndDevice's offsets: the DER or site it controls.
pub(crate) fn randomization_key(ed: &EndDeviceRecord) -> String {
    ed.der_id
        .clone()
        .or_else(|| ed.site_id.clone())
        .unwrap_or_else(|| ed.id.clone())
}

pub(crate) async fn rating_w(state: &Sep2State, ed: &EndDeviceRecord) -> Result<Option<f64>> {
    match &ed.der_id {
        Some(d) => Ok(state
            .read_model
            .reach(&state.registry, true, d)
            .await?
            .rated_w),
        None => Ok(None),
    }
}

/// The program's controls as devices see them, newest first, with completed ones left out,
/// and the first instant at which any of them may change status for this EndDevice (None
/// when none ever will): how long the documents may be cached.
pub(crate) async fn control_docs_until(
    state: &Sep2State,
    ed: &EndDeviceRecord,
    p: &ControlProgram,
    active_only: bool,
) -> Result<(Vec<super::model::DerControl>, Option<EpochSeconds>)> {
    let records: Arc<Vec<ControlRecord>> =
        state.read_model.controls(&state.registry, &p.id).await?;
    let controls: Vec<_> = records.iter().map(ControlRecord::to_control).collect();
    let key = randomization_key(ed);
    let now = now_epoch();
    let rating = rating_w(state, ed).await?;
    let lines = timelines(&controls, &key, state.settings.seed);
    let next_change = lines.iter().filter_map(|l| l.next_transition(now)).min();
    let mut docs = Vec::new();
    for (rec, control) in records.iter().zip(controls.iter()) {
        // Completed controls (None) are no longer served.
        let Some(status) = event_status(control, &controls, &key, state.settings.seed, now) else {
            continue;
        };
        let Some(line) = lines.iter().find(|l| l.control.id == control.id) else {
            continue;
        };
        if active_only && status != crate::envelope::EventStatus::Active {
            continue;
        }
        let status_time = match status {
            crate::envelope::EventStatus::Active => line.window.start,
            crate::envelope::EventStatus::Cancelled
            | crate::envelope::EventStatus::CancelledWithRandomization => {
                rec.cancelled_at.unwrap_or(rec.updated_at)
            }
            crate::envelope::EventStatus::Superseded => {
                line.superseded_at.unwrap_or(rec.created_at)
            }
            crate::envelope::EventStatus::Scheduled => rec.created_at,
        };
        let base = format!("/edev/{}/derp/{}/derc/{}", ed.id, p.id, rec.id);
        let mut doc = convert::der_control(
            rec,
            status,
            status_time,
            base,
            Some(super::responses::response_list_href(&p.id)),
            rating,
        )?;
        super::curves::attach_links(
            &mut doc.der_control_base,
            &rec.modes.curves,
            &super::curves::list_href(&ed.id, &p.id),
        );
        docs.push(doc);
    }
    docs.sort_by(|a, b| {
        b.creation_time
            .cmp(&a.creation_time)
            .then(b.m_rid.cmp(&a.m_rid))
    });
    Ok((docs, next_change))
}

async fn control_list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    uri: Uri,
    Path((id, prog)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    list_controls(state, peer, uri, id, prog, q, false).await
}

async fn active_control_list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    uri: Uri,
    Path((id, prog)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    list_controls(state, peer, uri, id, prog, q, true).await
}

/// The poll path: served from the cache until the next write or status change.
async fn list_controls(
    state: Sep2State,
    peer: PeerIdentity,
    uri: Uri,
    id: String,
    prog: String,
    q: ListQuery,
    active_only: bool,
) -> Result<Response> {
    cached(&state, &peer, &uri, || async {
        let (ed, p) = device_program(&state, &peer, &id, &prog).await?;
        let (doc, until) = control_list_doc_until(&state, &ed, &p, &q, active_only).await?;
        rendered(&state, &doc, until)
    })
    .await
}

/// A program's DERControlList (or ActiveDERControlList) for an EndDevice, windowed by `q`
/// (also what DERControlList notifications carry).
pub(crate) async fn control_list_doc(
    state: &Sep2State,
    ed: &EndDeviceRecord,
    p: &ControlProgram,
    q: &ListQuery,
    active_only: bool,
) -> Result<DerControlList> {
    Ok(control_list_doc_until(state, ed, p, q, active_only)
        .await?
        .0)
}

/// [`control_list_doc`] with the instant its content may next change.
async fn control_list_doc_until(
    state: &Sep2State,
    ed: &EndDeviceRecord,
    p: &ControlProgram,
    q: &ListQuery,
    active_only: bool,
) -> Result<(DerControlList, Option<EpochSeconds>)> {
    let (docs, until) = control_docs_until(state, ed, p, active_only).await?;
    let docs: Vec<_> = docs
        .into_iter()
        .filter(|c| q.a.is_none_or(|a| c.creation_time > a))
        .collect();
    let (all, page) = q.window(docs);
    let segment = if active_only { "actderc" } else { "derc" };
    let doc = DerControlList {
        href: Some(format!("/edev/{}/derp/{}/{segment}", ed.id, p.id)),
        // Only the full list takes subscriptions: the active list changes with the clock
        // as well as with writes, and nothing would notify the clock's changes.
        subscribable: Some(if active_only { 0 } else { 1 }),
        all,
        results: page.len() as u32,
        der_controls: page,
    };
    Ok((doc, until))
}

async fn control(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    uri: Uri,
    Path((id, prog, mrid)): Path<(String, String, String)>,
) -> Result<Response> {
    cached(&state, &peer, &uri, || async {
        let (ed, p) = device_program(&state, &peer, &id, &prog).await?;
        let (docs, until) = control_docs_until(&state, &ed, &p, false).await?;
        let doc = docs
            .into_iter()
            .find(|c| c.m_rid.eq_ignore_ascii_case(&mrid))
            .ok_or(Sep2Error::NotFound)?;
        rendered(&state, &doc, until)
    })
    .await
}

async fn default_control(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    uri: Uri,
    Path((id, prog)): Path<(String, String)>,
) -> Result<Response> {
    cached(&state, &peer, &uri, || async {
        let (ed, p) = device_program(&state, &peer, &id, &prog).await?;
        let doc = default_control_doc(&state, &ed, &p)
            .await?
            .ok_or(Sep2Error::NotFound)?;
        rendered(&state, &doc, None)
    })
    .await
}

/// A program's DefaultDERControl for an EndDevice, or None while the program has none.
pub(crate) async fn default_control_doc(
    state: &Sep2State,
    ed: &EndDeviceRecord,
    p: &ControlProgram,
) -> Result<Option<DefaultDerControl>> {
    let Some(d) = state
        .read_model
        .default_control(&state.registry, &p.id)
        .await?
    else {
        return Ok(None);
    };
    let rating = rating_w(state, ed).await?;
    let mut base = convert::control_base(&d.modes, rating)?;
    super::curves::attach_links(
        &mut base,
        &d.modes.curves,
        &super::curves::list_href(&ed.id, &p.id),
    );
    Ok(Some(DefaultDerControl {
        href: Some(format!("/edev/{}/derp/{}/dderc", ed.id, p.id)),
        subscribable: Some(1),
        m_rid: mrid_for(&format!("dderc:{}", p.id)),
        description: Some(format!("{} default", p.name)),
        der_control_base: base,
        // setGradW is hundredths of a percent of setMaxW per second.
        set_grad_w: d
            .modes
            .set_grad_w
            .map(|g| (g * 100.0).round().clamp(0.0, u16::MAX as f64) as u16),
        ..DefaultDerControl::default()
    }))
}

fn der_doc(ed: &EndDeviceRecord) -> Der {
    let base = format!("/edev/{}/der/1", ed.id);
    Der {
        href: Some(base.clone()),
        der_availability_link: Some(Link::new(format!("{base}/dera"))),
        der_capability_link: Some(Link::new(format!("{base}/dercap"))),
        der_settings_link: Some(Link::new(format!("{base}/derg"))),
        der_status_link: Some(Link::new(format!("{base}/ders"))),
        ..Der::default()
    }
}

async fn der_list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    let (all, page) = q.window(vec![der_doc(&ed)]);
    xml(
        &state,
        &DerList {
            href: Some(format!("/edev/{}/der", ed.id)),
            all,
            results: page.len() as u32,
            poll_rate: Some(state.poll_rate("DERList").await?),
            ders: page,
        },
    )
}

async fn der(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
) -> Result<Response> {
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    xml(&state, &der_doc(&ed))
}

/// What a DER resource adds to telemetry when it is written, or why it is refused.
pub(super) type DerTelemetry<T> = fn(
    &T,
    &EndDeviceRecord,
    EpochSeconds,
)
    -> std::result::Result<Vec<crate::telemetry::Reading>, String>;

/// For the DER resources that carry no measurements.
fn no_readings<T>(
    _: &T,
    _: &EndDeviceRecord,
    _: EpochSeconds,
) -> std::result::Result<Vec<crate::telemetry::Reading>, String> {
    Ok(Vec::new())
}

/// Stores a DER resource an EndDevice PUTs, with the readings `telemetry` derives from it,
/// in one transaction; a refusal from `telemetry` is a 400 and stores nothing.
pub(super) async fn put_der_info<T>(
    state: Sep2State,
    peer: PeerIdentity,
    id: String,
    kind: DerResource,
    headers: HeaderMap,
    body: Body,
    telemetry: DerTelemetry<T>,
) -> Result<Response>
where
    T: SepResource + Serialize + DeserializeOwned,
{
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    let bytes = body_bytes(&state, body).await?;
    let doc: T = read_xml(&state, &headers, &bytes)?;
    let now = now_epoch();
    let readings = telemetry(&doc, &ed, now).map_err(Sep2Error::BadRequest)?;
    // Store the server's canonical rendering, so what is served back is always valid.
    let canonical = xml::encode(&doc, state.settings.csipaus)
        .map_err(|e| Sep2Error::BadRequest(e.to_string()))?;
    put_der_resource(
        state.registry.store(),
        &ed.id,
        kind,
        &canonical,
        now,
        &readings,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn get_der_info(
    state: Sep2State,
    peer: PeerIdentity,
    id: String,
    kind: DerResource,
) -> Result<Response> {
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    match get_der_resource(state.registry.store(), &ed.id, kind).await? {
        Some(body) => Ok(([(header::CONTENT_TYPE, SEP_XML)], body).into_response()),
        None => Err(Sep2Error::NotFound),
    }
}

macro_rules! der_info_handlers {
    ($get:ident, $put:ident, $ty:ty, $kind:expr) => {
        async fn $get(
            State(state): State<Sep2State>,
            Extension(peer): Extension<PeerIdentity>,
            Path(id): Path<String>,
        ) -> Result<Response> {
            get_der_info(state, peer, id, $kind).await
        }

        async fn $put(
            State(state): State<Sep2State>,
            Extension(peer): Extension<PeerIdentity>,
            Path(id): Path<String>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Response> {
            put_der_info::<$ty>(state, peer, id, $kind, headers, body, no_readings).await
        }
    };
}

der_info_handlers!(
    get_dercap,
    put_dercap,
    DerCapability,
    DerResource::Capability
);
der_info_handlers!(get_derg, put_derg, DerSettings, DerResource::Settings);
der_info_handlers!(
    get_dera,
    put_dera,
    DerAvailability,
    DerResource::Availability
);
