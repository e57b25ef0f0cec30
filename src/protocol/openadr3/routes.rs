//! HTTP handlers of the OpenADR 3.1 API: they parse the query and body, call [`Vtn`]
//! with the authenticated [`Caller`], and write the JSON it returns.

use super::VtnState;
use super::auth::Caller;
use super::config::ClientRole;
use super::error::OadrError;
use super::model::{
    EventRequest, ObjectType, ProgramRequest, ReportRequest, ResourceRequest, SubscriptionRequest,
    VenRequest,
};
use super::schema::{self, RequestSchema};
use super::store::ReportFilter;
use super::validate;
use super::vtn::{Page, Vtn};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// Largest `limit` the specification allows, and the default when none is given.
pub const MAX_LIMIT: u32 = 50;

fn json(status: StatusCode, body: Bytes) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON array of already-rendered objects.
fn array(items: Vec<Bytes>) -> Response {
    let mut out = Vec::with_capacity(2 + items.iter().map(|b| b.len() + 1).sum::<usize>());
    out.push(b'[');
    for (i, b) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b);
    }
    out.push(b']');
    json(StatusCode::OK, Bytes::from(out))
}

/// The decoded query string, repeated keys kept (`targets=a&targets=b`).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<String>) -> Self {
        Query(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn one(&self, key: &str) -> Result<Option<&str>, OadrError> {
        let mut it = self.0.iter().filter(|(k, _)| k == key);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(OadrError::invalid(key, "given more than once"));
        }
        Ok(first)
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn id(&self, key: &str) -> Result<Option<&str>, OadrError> {
        let v = self.one(key)?;
        if let Some(v) = v {
            validate::object_id(key, v)?;
        }
        Ok(v)
    }

    fn name(&self, key: &str) -> Result<Option<&str>, OadrError> {
        let v = self.one(key)?;
        if let Some(v) = v {
            validate::name(key, v)?;
        }
        Ok(v)
    }

    fn targets(&self) -> Result<Vec<String>, OadrError> {
        let t = self.all("targets");
        for v in &t {
            validate::name("targets", v)?;
        }
        Ok(t)
    }

    fn page(&self) -> Result<Page, OadrError> {
        let int = |key: &str, default: u32, max: Option<u32>| -> Result<u32, OadrError> {
            match self.one(key)? {
                None => Ok(default),
                Some(v) => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| OadrError::invalid(key, format!("'{v}' is not an integer")))?;
                    let hi = max.map_or(i32::MAX as i64, i64::from);
                    if n < 0 || n > hi {
                        return Err(OadrError::invalid(
                            key,
                            format!("must be 0 to {hi}, got {n}"),
                        ));
                    }
                    Ok(n as u32)
                }
            }
        };
        Ok(Page {
            skip: int("skip", 0, None)?,
            limit: int("limit", MAX_LIMIT, Some(MAX_LIMIT))?,
        })
    }
}

/// Reads and decodes a JSON request body: 413 past the limit, 400 for another media type,
/// 400 for malformed JSON or a wrong shape (naming the field).
async fn body<T: DeserializeOwned>(
    state: &VtnState,
    headers: &HeaderMap,
    body: Body,
    schema: RequestSchema,
) -> Result<T, OadrError> {
    let bytes = crate::api::body::read_limited(body, state.body_limit).await?;
    // The specification documents 400, not 415, for a request it cannot use.
    crate::api::body::require_content_type(headers, &["application/json"])
        .map_err(|p| OadrError::bad_request(p.detail))?;
    let mut value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| OadrError::bad_request(format!("malformed JSON: {e}")))?;
    integral_floats(&mut value);
    schema::check(schema, &value)?;
    Ok(crate::api::body::from_value(value)?)
}

/// JSON Schema counts 1.0 as an integer, so a client may send an int32 field that way;
/// serde would refuse it. Numbers with no fraction become integers before decoding (a
/// float field still accepts them).
fn integral_floats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64()
                && !n.is_i64()
                && !n.is_u64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *n = serde_json::Number::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats),
        _ => {}
    }
}

fn path_id(field: &str, id: &str) -> Result<(), OadrError> {
    validate::object_id(field, id)
}

type Res = Result<Response, OadrError>;

// ----- create, get, update and delete, alike for every collection -----

/// One collection of the API (`/programs`, `/events`, ...): what its create, get, update
/// and delete handlers differ in. Listing differs in its query and stays per collection.
pub trait Collection {
    /// The path parameter naming one object, as the document spells it.
    const ID: &'static str;
    /// The objects, as a refusal for the wrong role names them.
    const PLURAL: &'static str;
    /// The only role that may create and update them, checked before the body is read;
    /// None: either role (the VTN decides per object).
    const WRITER: Option<ClientRole>;
    const SCHEMA: RequestSchema;
    type Request: DeserializeOwned + Send;

    fn create(
        vtn: &Vtn,
        c: &Caller,
        req: Self::Request,
    ) -> impl Future<Output = Result<Bytes, OadrError>> + Send;
    fn get(
        vtn: &Vtn,
        c: &Caller,
        id: &str,
    ) -> impl Future<Output = Result<Bytes, OadrError>> + Send;
    fn update(
        vtn: &Vtn,
        c: &Caller,
        id: &str,
        req: Self::Request,
    ) -> impl Future<Output = Result<Bytes, OadrError>> + Send;
    fn delete(
        vtn: &Vtn,
        c: &Caller,
        id: &str,
    ) -> impl Future<Output = Result<Bytes, OadrError>> + Send;
}

/// 403 unless the caller has the role that writes `K` (`verb`: create or update).
fn may_write<K: Collection>(c: &Caller, verb: &str) -> Result<(), OadrError> {
    match K::WRITER {
        None => Ok(()),
        Some(ClientRole::Bl) => c.require_bl(&format!("{verb} {}", K::PLURAL)),
        Some(ClientRole::Ven) => c.require_ven(&format!("{verb} {}", K::PLURAL)),
    }
}

/// `POST /{collection}`.
pub async fn create_one<K: Collection>(
    State(s): State<VtnState>,
    c: Caller,
    h: HeaderMap,
    b: Body,
) -> Res {
    may_write::<K>(&c, "create")?;
    let req = body(&s, &h, b, K::SCHEMA).await?;
    Ok(json(StatusCode::CREATED, K::create(&s.vtn, &c, req).await?))
}

/// `GET /{collection}/{id}`.
pub async fn get_one<K: Collection>(
    State(s): State<VtnState>,
    c: Caller,
    Path(id): Path<String>,
) -> Res {
    path_id(K::ID, &id)?;
    Ok(json(StatusCode::OK, K::get(&s.vtn, &c, &id).await?))
}

/// `PUT /{collection}/{id}`.
pub async fn update_one<K: Collection>(
    State(s): State<VtnState>,
    c: Caller,
    Path(id): Path<String>,
    h: HeaderMap,
    b: Body,
) -> Res {
    path_id(K::ID, &id)?;
    may_write::<K>(&c, "update")?;
    let req = body(&s, &h, b, K::SCHEMA).await?;
    Ok(json(StatusCode::OK, K::update(&s.vtn, &c, &id, req).await?))
}

/// `DELETE /{collection}/{id}`.
pub async fn delete_one<K: Collection>(
    State(s): State<VtnState>,
    c: Caller,
    Path(id): Path<String>,
) -> Res {
    path_id(K::ID, &id)?;
    Ok(json(StatusCode::OK, K::delete(&s.vtn, &c, &id).await?))
}

/// Declares, for each line, the [`Collection`] `$marker` for `/$path`: its objects are
/// named by the path parameter `$id`, written only by `$writer` (None: either role),
/// checked against `RequestSchema::$schema`, and handled by the VTN methods named. A
/// `get` method that reads the store is marked `.await`.
macro_rules! collections {
    ($($marker:ident $path:literal $id:literal, $writer:expr, $schema:ident, $req:ty =>
        $create:ident, $get:ident $(. $aw:tt)?, $update:ident, $delete:ident;)*) => {$(
        #[doc = concat!("`/", $path, "`.")]
        pub struct $marker;

        impl Collection for $marker {
            const ID: &'static str = $id;
            const PLURAL: &'static str = $path;
            const WRITER: Option<ClientRole> = $writer;
            const SCHEMA: RequestSchema = RequestSchema::$schema;
            type Request = $req;

            async fn create(vtn: &Vtn, c: &Caller, req: $req) -> Result<Bytes, OadrError> {
                vtn.$create(c, req).await
            }
            async fn get(vtn: &Vtn, c: &Caller, id: &str) -> Result<Bytes, OadrError> {
                vtn.$get(c, id) $(. $aw)?
            }
            async fn update(vtn: &Vtn, c: &Caller, id: &str, req: $req) -> Result<Bytes, OadrError> {
                vtn.$update(c, id, req).await
            }
            async fn delete(vtn: &Vtn, c: &Caller, id: &str) -> Result<Bytes, OadrError> {
                vtn.$delete(c, id).await
            }
        }
    )*};
}

collections! {
    Programs "programs" "programID", Some(ClientRole::Bl), Program, ProgramRequest =>
        create_program, get_program, update_program, delete_program;
    Events "events" "eventID", Some(ClientRole::Bl), Event, EventRequest =>
        create_event, get_event, update_event, delete_event;
    Reports "reports" "reportID", Some(ClientRole::Ven), Report, ReportRequest =>
        create_report, get_report.await, update_report, delete_report;
    Subscriptions "subscriptions" "subscriptionID", None, Subscription, SubscriptionRequest =>
        create_subscription, get_subscription, update_subscription, delete_subscription;
    Vens "vens" "venID", None, Ven, VenRequest =>
        create_ven, get_ven, update_ven, delete_ven;
    Resources "resources" "resourceID", None, Resource, ResourceRequest =>
        create_resource, get_resource, update_resource, delete_resource;
}

// ----- programs -----

pub async fn list_programs(State(s): State<VtnState>, c: Caller, RawQuery(q): RawQuery) -> Res {
    let q = Query::parse(q);
    Ok(array(s.vtn.list_programs(&c, &q.targets()?, q.page()?)))
}

// ----- events -----

pub async fn list_events(State(s): State<VtnState>, c: Caller, RawQuery(q): RawQuery) -> Res {
    let q = Query::parse(q);
    let active = match q.one("active")? {
        None | Some("false") => None,
        Some("true") => Some(time::OffsetDateTime::now_utc().unix_timestamp() as f64),
        Some(other) => {
            return Err(OadrError::invalid(
                "active",
                format!("'{other}' is not true or false"),
            ));
        }
    };
    let program = q.id("programID")?;
    Ok(array(s.vtn.list_events(
        &c,
        program,
        &q.targets()?,
        active,
        q.page()?,
    )))
}

// ----- reports -----

pub async fn list_reports(State(s): State<VtnState>, c: Caller, RawQuery(q): RawQuery) -> Res {
    let q = Query::parse(q);
    let filter = ReportFilter {
        program_id: q.id("programID")?.map(str::to_string),
        event_id: q.id("eventID")?.map(str::to_string),
        client_name: q.name("clientName")?.map(str::to_string),
        client_id: None,
    };
    Ok(array(s.vtn.list_reports(&c, filter, q.page()?).await?))
}

// ----- subscriptions -----

pub async fn list_subscriptions(
    State(s): State<VtnState>,
    c: Caller,
    RawQuery(q): RawQuery,
) -> Res {
    let q = Query::parse(q);
    let mut objects = Vec::new();
    for o in q.all("objects") {
        objects.push(ObjectType::parse(&o).ok_or_else(|| {
            OadrError::invalid(
                "objects",
                format!("'{o}' is not one of PROGRAM, EVENT, REPORT, SUBSCRIPTION, VEN, RESOURCE"),
            )
        })?);
    }
    Ok(array(s.vtn.list_subscriptions(
        &c,
        q.id("programID")?,
        q.name("clientName")?,
        &objects,
        q.page()?,
    )))
}

// ----- vens -----

pub async fn list_vens(State(s): State<VtnState>, c: Caller, RawQuery(q): RawQuery) -> Res {
    let q = Query::parse(q);
    Ok(array(s.vtn.list_vens(
        &c,
        q.name("venName")?,
        &q.targets()?,
        q.page()?,
    )))
}

// ----- resources -----

pub async fn list_resources(State(s): State<VtnState>, c: Caller, RawQuery(q): RawQuery) -> Res {
    let q = Query::parse(q);
    Ok(array(s.vtn.list_resources(
        &c,
        q.name("resourceName")?,
        q.id("venID")?,
        &q.targets()?,
        q.page()?,
    )))
}

// ----- notifiers -----

/// `GET /notifiers`: webhooks always; MQTT when a broker is configured.
pub async fn notifiers(State(s): State<VtnState>, _c: Caller) -> Res {
    let body = match &s.mqtt {
        None => serde_json::json!({"WEBHOOK": true}),
        Some(m) => serde_json::json!({
            "WEBHOOK": true,
            "MQTT": {
                "URIS": m.announced_uris(),
                "serialization": "JSON",
                "authentication": {"method": "ANONYMOUS"}
            }
        }),
    };
    Ok(json(StatusCode::OK, Bytes::from(body.to_string())))
}

fn topics(s: &VtnState, path: &str, with_create: bool) -> Res {
    let prefix = s.mqtt.as_ref().map_or("", |m| m.topic_prefix.as_str());
    let body = super::mqtt::topics(prefix, path, with_create);
    Ok(json(StatusCode::OK, Bytes::from(body.to_string())))
}

/// `GET /notifiers/mqtt/topics/{programs|events|reports|subscriptions|vens|resources}`.
pub async fn topics_all(State(s): State<VtnState>, c: Caller, kind: &'static str) -> Res {
    if kind != "programs" {
        // read_bl in the document.
        c.require_bl(&format!("list the topics of all {kind}"))?;
    }
    topics(&s, kind, true)
}

/// `GET /notifiers/mqtt/topics/programs/{programID}[/events]`.
pub async fn topics_program(
    State(s): State<VtnState>,
    c: Caller,
    Path(id): Path<String>,
    events: bool,
) -> Res {
    path_id("programID", &id)?;
    s.vtn.get_program(&c, &id)?;
    if events {
        topics(&s, &format!("programs/{id}/events"), true)
    } else {
        topics(&s, &format!("programs/{id}"), false)
    }
}

/// `GET /notifiers/mqtt/topics/vens/{venID}[/events|/programs|/resources]`.
pub async fn topics_ven(
    State(s): State<VtnState>,
    c: Caller,
    Path(id): Path<String>,
    sub: Option<&'static str>,
) -> Res {
    path_id("venID", &id)?;
    s.vtn.get_ven(&c, &id)?;
    match sub {
        None => topics(&s, &format!("vens/{id}"), false),
        Some(kind) => topics(&s, &format!("vens/{id}/{kind}"), true),
    }
}
