//! IEEE 2030.5 subscriptions (the Subscription / Notification function set): the per
//! EndDevice `SubscriptionList`, and what a subscription may watch.
//!
//! Routes (all under the caller's own EndDevice; another party's EndDevice is 404):
//!
//! - `GET /edev/{id}/sub` the SubscriptionList (`s`, `a`, `l` as every list);
//! - `POST /edev/{id}/sub` a Subscription: 201 with `Location: /edev/{id}/sub/{n}`;
//! - `GET /edev/{id}/sub/{n}`, `DELETE /edev/{id}/sub/{n}` (204).
//!
//! A subscription may watch the resources served with `subscribable="1"`: the
//! EndDeviceList (`/edev`, as the subscribing certificate sees it: a device its own
//! EndDevice, an aggregator the EndDevices it registered), and of the same EndDevice its
//! FunctionSetAssignmentsList (`/edev/{id}/fsa`), its DERProgramList (`/edev/{id}/derp`),
//! the DERProgramList of a FunctionSetAssignments placed apart (`/edev/{id}/fsa/{f}/derp`),
//! and for a program it can see, the DERControlList (`/edev/{id}/derp/{p}/derc`) and the
//! DefaultDERControl (`/edev/{id}/derp/{p}/dderc`). Only non-conditional subscriptions with XML encoding are
//! taken. Anything else is a 400 that names the field, and nothing is stored. Posting the
//! same resource and notificationURI again answers with the existing subscription (its
//! `level` and `limit` updated) rather than creating a second one that would duplicate
//! every notification.
//!
//! Delivery is [`super::notifier`]'s job; this module only keeps the subscriptions.

use super::function_sets::DEFAULT_FSA;
use super::model::{Subscription, SubscriptionList};
use super::server::{
    ListQuery, Result, Sep2Error, Sep2State, body_bytes, caller, enabled_end_device, function_set,
    programs_for, read_xml, visible_end_device, xml,
};
use super::tls::PeerIdentity;
use crate::domain::EpochSeconds;
use crate::registry::entity::{Entity, Filter, Reference};
use crate::registry::validate::Checker;
use crate::registry::{MAX_PAGE, RegistryError};
use crate::store::record::{int, opt_text, text};
use crate::store::{Record, StoreError, Value};
use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

/// Most subscriptions one EndDevice may hold. Each one costs a render and a POST on every
/// matching change, so a misbehaving client must not be able to add them without bound.
pub const MAX_SUBSCRIPTIONS_PER_END_DEVICE: i64 = 32;

/// Largest `limit` (list items per notification) accepted for list resources. Bounds the
/// size of a notification body.
pub const MAX_NOTIFICATION_ITEMS: u32 = 100;

/// Longest accepted `subscribedResource` and `notificationURI`, bytes.
pub const MAX_URI_LEN: usize = 512;

/// Longest `level` (the schema's `String16`), characters.
const MAX_LEVEL_LEN: usize = 16;

/// The only notification encoding served: 0, `application/sep+xml`.
pub const ENCODING_XML: u8 = 0;

/// Why a subscription's resource or notification address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The resource cannot be subscribed to (or is not a 2030.5 path at all).
    #[error(
        "'{0}' cannot be subscribed to; subscribable are /edev, /edev/{{id}}/fsa, \
         /edev/{{id}}/derp, /edev/{{id}}/fsa/{{fsa}}/derp, /edev/{{id}}/derp/{{program}}/derc and \
         /edev/{{id}}/derp/{{program}}/dderc"
    )]
    NotSubscribable(String),
    /// The notification address is not an absolute http(s) URL we are willing to call.
    #[error("must be an absolute http or https URL{0}")]
    NotificationUri(String),
    /// A URI is longer than [`MAX_URI_LEN`].
    #[error("longer than {MAX_URI_LEN} bytes")]
    TooLong,
}

/// What a subscription watches, parsed from its `subscribedResource`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subscribed {
    /// `/edev`: the EndDeviceList as the subscriber's certificate sees it.
    EndDeviceList,
    /// `/edev/{id}/fsa`: the EndDevice's FunctionSetAssignmentsList.
    FunctionSets { end_device: String },
    /// `/edev/{id}/fsa/{fsa}/derp`: the DERProgramList of a FunctionSetAssignments placed
    /// apart (never the default one, `1`, whose list is `/edev/{id}/derp`).
    SetProgramList { end_device: String, fsa: String },
    /// `/edev/{id}/derp`: the EndDevice's DERProgramList.
    ProgramList { end_device: String },
    /// `/edev/{id}/derp/{program}/derc`: a program's DERControlList.
    Controls { end_device: String, program: String },
    /// `/edev/{id}/derp/{program}/dderc`: a program's DefaultDERControl.
    Default { end_device: String, program: String },
}

impl Subscribed {
    /// Parses a `subscribedResource`: a path (`/edev/1/derp`) or an absolute http(s) URL
    /// whose path is one (clients may send either; only the path identifies the resource).
    pub fn parse(uri: &str) -> std::result::Result<Self, SubscriptionError> {
        if uri.len() > MAX_URI_LEN {
            return Err(SubscriptionError::TooLong);
        }
        let refuse = || SubscriptionError::NotSubscribable(uri.to_string());
        let path = if uri.starts_with('/') {
            uri.to_string()
        } else {
            let url = reqwest::Url::parse(uri).map_err(|_| refuse())?;
            if !matches!(url.scheme(), "http" | "https") || url.fragment().is_some() {
                return Err(refuse());
            }
            url.path().to_string()
        };
        // A query would select a window of the list, which `limit` does for notifications.
        if path.contains(['?', '#']) {
            return Err(refuse());
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let ok = |s: &&str| !s.is_empty();
        match segments.as_slice() {
            ["edev"] => Ok(Subscribed::EndDeviceList),
            ["edev", id, "fsa"] if ok(id) => Ok(Subscribed::FunctionSets {
                end_device: id.to_string(),
            }),
            ["edev", id, "fsa", f, "derp"] if ok(id) && ok(f) && *f != DEFAULT_FSA => {
                Ok(Subscribed::SetProgramList {
                    end_device: id.to_string(),
                    fsa: f.to_string(),
                })
            }
            ["edev", id, "derp"] if ok(id) => Ok(Subscribed::ProgramList {
                end_device: id.to_string(),
            }),
            ["edev", id, "derp", p, "derc"] if ok(id) && ok(p) => Ok(Subscribed::Controls {
                end_device: id.to_string(),
                program: p.to_string(),
            }),
            ["edev", id, "derp", p, "dderc"] if ok(id) && ok(p) => Ok(Subscribed::Default {
                end_device: id.to_string(),
                program: p.to_string(),
            }),
            _ => Err(refuse()),
        }
    }

    /// The resource's path, as the server serves it.
    pub fn path(&self) -> String {
        match self {
            Subscribed::EndDeviceList => "/edev".to_string(),
            Subscribed::FunctionSets { end_device } => format!("/edev/{end_device}/fsa"),
            Subscribed::SetProgramList { end_device, fsa } => {
                format!("/edev/{end_device}/fsa/{fsa}/derp")
            }
            Subscribed::ProgramList { end_device } => format!("/edev/{end_device}/derp"),
            Subscribed::Controls {
                end_device,
                program,
            } => format!("/edev/{end_device}/derp/{program}/derc"),
            Subscribed::Default {
                end_device,
                program,
            } => format!("/edev/{end_device}/derp/{program}/dderc"),
        }
    }

    /// The stored `resource_kind`: the last path segment.
    pub fn kind(&self) -> &'static str {
        match self {
            Subscribed::EndDeviceList => "edev",
            Subscribed::FunctionSets { .. } => "fsa",
            Subscribed::SetProgramList { .. } => "fsaderp",
            Subscribed::ProgramList { .. } => "derp",
            Subscribed::Controls { .. } => "derc",
            Subscribed::Default { .. } => "dderc",
        }
    }

    /// The EndDevice whose resource this is (none for the EndDeviceList).
    pub fn end_device(&self) -> Option<&str> {
        match self {
            Subscribed::EndDeviceList => None,
            Subscribed::FunctionSets { end_device }
            | Subscribed::SetProgramList { end_device, .. }
            | Subscribed::ProgramList { end_device }
            | Subscribed::Controls { end_device, .. }
            | Subscribed::Default { end_device, .. } => Some(end_device),
        }
    }

    /// The control program, for the resources of one program.
    pub fn program(&self) -> Option<&str> {
        match self {
            Subscribed::EndDeviceList
            | Subscribed::FunctionSets { .. }
            | Subscribed::SetProgramList { .. }
            | Subscribed::ProgramList { .. } => None,
            Subscribed::Controls { program, .. } | Subscribed::Default { program, .. } => {
                Some(program)
            }
        }
    }

    /// Whether the resource is a list (so that `limit` applies).
    pub fn is_list(&self) -> bool {
        !matches!(self, Subscribed::Default { .. })
    }
}

/// Checks a `notificationURI`: an absolute http or https URL with a host, no credentials
/// and no fragment, at most [`MAX_URI_LEN`] bytes.
pub fn check_notification_uri(uri: &str) -> std::result::Result<reqwest::Url, SubscriptionError> {
    if uri.len() > MAX_URI_LEN {
        return Err(SubscriptionError::TooLong);
    }
    let url = reqwest::Url::parse(uri)
        .map_err(|e| SubscriptionError::NotificationUri(format!(" ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SubscriptionError::NotificationUri(format!(
            ", not {}:",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(SubscriptionError::NotificationUri(" with a host".into()));
    }
    // Credentials would be stored and logged with the URI; a fragment is never sent.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SubscriptionError::NotificationUri(
            " without user name or password".into(),
        ));
    }
    if url.fragment().is_some() {
        return Err(SubscriptionError::NotificationUri(
            " without a fragment".into(),
        ));
    }
    Ok(url)
}

/// A stored subscription of one EndDevice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRecord {
    /// Internal key (generated).
    #[serde(default)]
    pub id: String,
    /// The EndDevice that holds the subscription (and whose resource it watches, or whose
    /// certificate's view of the EndDeviceList).
    pub end_device_id: String,
    /// The `{n}` of `/edev/{id}/sub/{n}`; assigned on creation.
    #[serde(default)]
    pub seq: u32,
    /// The watched resource's path (normalized from what the client sent).
    pub subscribed_resource: String,
    /// `edev`, `fsa`, `fsaderp`, `derp`, `derc` or `dderc`; derived from
    /// `subscribed_resource`.
    #[serde(default)]
    pub resource_kind: String,
    /// The control program of `derc` and `dderc` subscriptions; derived.
    #[serde(default)]
    pub program_id: Option<String>,
    /// Where notifications are POSTed (absolute http or https URL).
    pub notification_uri: String,
    /// Notification encoding; always [`ENCODING_XML`].
    pub encoding: u8,
    /// The function-set level the client asked for (`+S1`); kept and echoed.
    pub level: String,
    /// List items per notification.
    pub limit: u32,
    /// Epoch seconds; set by the server.
    #[serde(default)]
    pub created_at: EpochSeconds,
    /// Epoch seconds; set by the server.
    #[serde(default)]
    pub updated_at: EpochSeconds,
}

impl SubscriptionRecord {
    /// What the subscription watches.
    pub fn subscribed(&self) -> std::result::Result<Subscribed, SubscriptionError> {
        Subscribed::parse(&self.subscribed_resource)
    }

    /// The subscription's own URI.
    pub fn href(&self) -> String {
        format!("/edev/{}/sub/{}", self.end_device_id, self.seq)
    }

    fn doc(&self) -> Subscription {
        Subscription {
            href: Some(self.href()),
            subscribed_resource: self.subscribed_resource.clone(),
            condition: None,
            encoding: self.encoding,
            level: self.level.clone(),
            limit: self.limit,
            notification_uri: self.notification_uri.clone(),
        }
    }
}

impl Record for SubscriptionRecord {
    const TABLE: &'static str = "sep2_subscriptions";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "end_device_id",
        "seq",
        "subscribed_resource",
        "resource_kind",
        "program_id",
        "notification_uri",
        "encoding",
        "level",
        "item_limit",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn values(&self) -> Vec<Value> {
        vec![
            self.id.clone().into(),
            self.end_device_id.clone().into(),
            i64::from(self.seq).into(),
            self.subscribed_resource.clone().into(),
            self.resource_kind.clone().into(),
            self.program_id.clone().into(),
            self.notification_uri.clone().into(),
            i64::from(self.encoding).into(),
            self.level.clone().into(),
            i64::from(self.limit).into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> std::result::Result<Self, StoreError> {
        let narrow = |col: &str| StoreError::Corrupt(col.to_string());
        Ok(SubscriptionRecord {
            id: text(row, "id")?,
            end_device_id: text(row, "end_device_id")?,
            seq: u32::try_from(int(row, "seq")?).map_err(|_| narrow("seq"))?,
            subscribed_resource: text(row, "subscribed_resource")?,
            resource_kind: text(row, "resource_kind")?,
            program_id: opt_text(row, "program_id")?,
            notification_uri: text(row, "notification_uri")?,
            encoding: u8::try_from(int(row, "encoding")?).map_err(|_| narrow("encoding"))?,
            level: text(row, "level")?,
            limit: u32::try_from(int(row, "item_limit")?).map_err(|_| narrow("item_limit"))?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

impl Entity for SubscriptionRecord {
    const NAME: &'static str = "subscription";
    const COLLECTION: &'static str = "sep2-subscriptions";
    const FILTERS: &'static [Filter] = &[];

    fn set_key(&mut self, key: String) {
        self.id = key;
    }
    fn set_times(&mut self, created_at: i64, updated_at: i64) {
        self.created_at = created_at;
        self.updated_at = updated_at;
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }

    /// Normalizes the resource to its path and derives what the notifier selects on.
    fn prepare(&mut self) -> std::result::Result<(), RegistryError> {
        let target = self
            .subscribed()
            .map_err(|e| RegistryError::invalid("subscribedResource", e.to_string()))?;
        self.subscribed_resource = target.path();
        self.resource_kind = target.kind().to_string();
        self.program_id = target.program().map(str::to_string);
        Ok(())
    }

    fn validate(&self, c: &mut Checker) {
        if self
            .subscribed()
            .is_ok_and(|t| t.end_device().is_some_and(|e| e != self.end_device_id))
        {
            c.fail(
                "subscribedResource",
                format!("is not a resource of EndDevice {}", self.end_device_id),
            );
        }
        if let Err(e) = check_notification_uri(&self.notification_uri) {
            c.fail("notificationURI", e.to_string());
        }
        if self.encoding != ENCODING_XML {
            c.fail(
                "encoding",
                format!(
                    "only 0 (application/sep+xml) is served, got {}",
                    self.encoding
                ),
            );
        }
        if self.level.chars().count() > MAX_LEVEL_LEN {
            c.fail("level", format!("longer than {MAX_LEVEL_LEN} characters"));
        } else if self.level.chars().any(char::is_control) {
            c.fail("level", "contains control characters");
        }
        let list = self.subscribed().is_ok_and(|t| t.is_list());
        if list && !(1..=MAX_NOTIFICATION_ITEMS).contains(&self.limit) {
            c.fail(
                "limit",
                format!(
                    "must be 1-{MAX_NOTIFICATION_ITEMS} for a list, got {}",
                    self.limit
                ),
            );
        }
    }

    fn references(&self) -> Vec<Reference> {
        vec![Reference {
            field: "end_device_id",
            table: "sep2_end_devices",
            kind: "end device",
            key_column: "id",
            value: self.end_device_id.clone(),
        }]
    }

    async fn check(&self, conn: &mut AnyConnection) -> std::result::Result<(), RegistryError> {
        // Updates keep their row; only a new subscription counts against the cap.
        if self.seq != 0 {
            return Ok(());
        }
        let held: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sep2_subscriptions WHERE end_device_id = $1")
                .bind(self.end_device_id.clone())
                .fetch_one(&mut *conn)
                .await?;
        if held >= MAX_SUBSCRIPTIONS_PER_END_DEVICE {
            return Err(RegistryError::invalid(
                "Subscription",
                format!(
                    "this EndDevice already holds {MAX_SUBSCRIPTIONS_PER_END_DEVICE} \
                     subscriptions; delete one first"
                ),
            ));
        }
        Ok(())
    }

    /// Numbers the subscription after the EndDevice's highest. A concurrent POST can take
    /// the same number; the unique constraint then refuses one of them, which retries.
    async fn before_insert(
        &mut self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<(), RegistryError> {
        let highest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM sep2_subscriptions WHERE end_device_id = $1")
                .bind(self.end_device_id.clone())
                .fetch_one(&mut *conn)
                .await?;
        let next = highest.unwrap_or(0) + 1;
        self.seq = u32::try_from(next)
            .map_err(|_| RegistryError::invalid("Subscription", "no subscription number left"))?;
        Ok(())
    }

    fn check_change(old: &Self, new: &Self) -> std::result::Result<(), RegistryError> {
        if old.seq != new.seq || old.end_device_id != new.end_device_id {
            return Err(RegistryError::invalid(
                "Subscription",
                "a subscription cannot move",
            ));
        }
        Ok(())
    }
}

/// The subscription routes, merged into [`super::server::router`].
pub fn routes() -> Router<Sep2State> {
    Router::new()
        .route("/edev/{edev}/sub", get(list).post(create))
        .route("/edev/{edev}/sub/{n}", get(read).delete(remove))
}

/// An EndDevice's subscriptions in number order (at most
/// [`MAX_SUBSCRIPTIONS_PER_END_DEVICE`] of them, so one page holds them all).
async fn of_end_device(state: &Sep2State, end_device: &str) -> Result<Vec<SubscriptionRecord>> {
    let mut subs = state
        .registry
        .list::<SubscriptionRecord>(
            &[("end_device_id", end_device.to_string().into())],
            None,
            MAX_PAGE,
        )
        .await?
        .items;
    subs.sort_by_key(|s| s.seq);
    Ok(subs)
}

/// The subscription `/edev/{end_device}/sub/{n}`, or 404.
async fn numbered(state: &Sep2State, end_device: &str, n: &str) -> Result<SubscriptionRecord> {
    let seq: u32 = n.parse().map_err(|_| Sep2Error::NotFound)?;
    let found = state
        .registry
        .list::<SubscriptionRecord>(
            &[
                ("end_device_id", end_device.to_string().into()),
                ("seq", i64::from(seq).into()),
            ],
            None,
            1,
        )
        .await?
        .items
        .pop();
    found.ok_or(Sep2Error::NotFound)
}

async fn list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let ed = visible_end_device(&state, &caller(&state, &peer), &id).await?;
    let docs: Vec<Subscription> = of_end_device(&state, &ed.id)
        .await?
        .iter()
        .filter(|s| q.a.is_none_or(|a| s.updated_at > a))
        .map(SubscriptionRecord::doc)
        .collect();
    let (all, page) = q.window(docs);
    xml(
        &state,
        &SubscriptionList {
            href: Some(format!("/edev/{}/sub", ed.id)),
            all,
            results: page.len() as u32,
            poll_rate: Some(state.poll_rate("SubscriptionList").await?),
            subscriptions: page,
        },
    )
}

async fn read(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response> {
    let ed = visible_end_device(&state, &caller(&state, &peer), &id).await?;
    xml(&state, &numbered(&state, &ed.id, &n).await?.doc())
}

async fn remove(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response> {
    let ed = visible_end_device(&state, &caller(&state, &peer), &id).await?;
    let sub = numbered(&state, &ed.id, &n).await?;
    match state.registry.delete::<SubscriptionRecord>(&sub.id).await {
        // A concurrent DELETE got there first; the outcome is the same.
        Ok(()) | Err(RegistryError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Attempts at numbering a new subscription when concurrent POSTs collide.
const CREATE_ATTEMPTS: usize = 3;

async fn create(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    let bytes = body_bytes(&state, body).await?;
    let posted: Subscription = read_xml(&state, &headers, &bytes)?;
    if posted.condition.is_some() {
        return Err(Sep2Error::BadRequest(
            "Condition: these resources take only non-conditional subscriptions \
             (subscribable=\"1\")"
                .into(),
        ));
    }
    let mut rec = SubscriptionRecord {
        id: String::new(),
        end_device_id: ed.id.clone(),
        seq: 0,
        subscribed_resource: posted.subscribed_resource,
        resource_kind: String::new(),
        program_id: None,
        notification_uri: posted.notification_uri,
        encoding: posted.encoding,
        level: posted.level,
        limit: posted.limit,
        created_at: 0,
        updated_at: 0,
    };
    // Field rules first (the registry would apply them too), so that a malformed resource
    // is named before the question of whether the caller may watch it.
    rec.prepare()?;
    let mut checker = Checker::default();
    rec.validate(&mut checker);
    checker.finish().map_err(RegistryError::Invalid)?;
    if let Some(program) = &rec.program_id
        && !programs_for(&state, &ed)
            .await?
            .iter()
            .any(|p| &p.id == program)
    {
        return Err(Sep2Error::BadRequest(format!(
            "subscribedResource: EndDevice {} has no DERProgram '{program}'",
            ed.id
        )));
    }
    if let Ok(Subscribed::SetProgramList { fsa, .. }) = rec.subscribed()
        && matches!(
            function_set(&state, &ed, &fsa).await,
            Err(Sep2Error::NotFound)
        )
    {
        return Err(Sep2Error::BadRequest(format!(
            "subscribedResource: EndDevice {} has no FunctionSetAssignments '{fsa}'",
            ed.id
        )));
    }

    let existing = of_end_device(&state, &ed.id).await?.into_iter().find(|s| {
        s.subscribed_resource == rec.subscribed_resource
            && s.notification_uri == rec.notification_uri
    });
    let saved = match existing {
        Some(old) => {
            let (level, limit) = (rec.level.clone(), rec.limit);
            state
                .registry
                .update::<SubscriptionRecord, _>(&old.id, move |s| {
                    Ok(SubscriptionRecord {
                        level,
                        limit,
                        ..s.clone()
                    })
                })
                .await?
        }
        None => {
            let mut attempt = 1;
            loop {
                match state.registry.create(rec.clone()).await {
                    Ok(saved) => {
                        super::notifier::baseline(&state, &saved).await;
                        break saved;
                    }
                    Err(RegistryError::Conflict { .. }) if attempt < CREATE_ATTEMPTS => {
                        attempt += 1;
                        rec.id.clear();
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    };
    Ok((StatusCode::CREATED, [(header::LOCATION, saved.href())]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_subscribable_resources() {
        assert_eq!(
            Subscribed::parse("/edev/7/derp").unwrap(),
            Subscribed::ProgramList {
                end_device: "7".into()
            }
        );
        let derc = Subscribed::parse("https://utility.example/edev/7/derp/doe/derc").unwrap();
        assert_eq!(
            derc,
            Subscribed::Controls {
                end_device: "7".into(),
                program: "doe".into()
            }
        );
        assert_eq!(derc.path(), "/edev/7/derp/doe/derc");
        assert_eq!(derc.kind(), "derc");
        let dderc = Subscribed::parse("/edev/7/derp/doe/dderc").unwrap();
        assert_eq!(dderc.program(), Some("doe"));
        assert!(!dderc.is_list());
    }

    #[test]
    fn parses_the_subscribable_lists() {
        let edev = Subscribed::parse("https://utility.example/edev").unwrap();
        assert_eq!(edev, Subscribed::EndDeviceList);
        assert_eq!((edev.path().as_str(), edev.kind()), ("/edev", "edev"));
        assert_eq!(edev.end_device(), None);
        assert!(edev.is_list());
        let fsa = Subscribed::parse("/edev/7/fsa").unwrap();
        assert_eq!(
            fsa,
            Subscribed::FunctionSets {
                end_device: "7".into()
            }
        );
        assert_eq!((fsa.kind(), fsa.end_device()), ("fsa", Some("7")));
        assert_eq!(fsa.program(), None);
        let set = Subscribed::parse("/edev/7/fsa/doe-fsa/derp").unwrap();
        assert_eq!(
            set,
            Subscribed::SetProgramList {
                end_device: "7".into(),
                fsa: "doe-fsa".into()
            }
        );
        assert_eq!(
            (set.kind(), set.path().as_str()),
            ("fsaderp", "/edev/7/fsa/doe-fsa/derp")
        );
        // The default set's list has its own path.
        assert!(Subscribed::parse("/edev/7/fsa/1/derp").is_err());
    }

    #[test]
    fn refuses_everything_else() {
        for uri in [
            "/edev/7",
            "/edev/7/derp/doe",
            "/edev/7/derp/doe/actderc",
            "/edev/7/derp/doe/derc/ABC",
            "/edev/7/derp/doe/derc?l=10",
            "/edev//derp",
            "/edev/7/derp/",
            "/edev/",
            "/edev/7/fsa/1",
            "/edev?l=10",
            "/dcap",
            "edev/7/derp",
            "ftp://h/edev/7/derp",
            "",
        ] {
            assert!(Subscribed::parse(uri).is_err(), "{uri}");
        }
        let long = format!("/edev/7/derp/{}/derc", "p".repeat(MAX_URI_LEN));
        assert_eq!(Subscribed::parse(&long), Err(SubscriptionError::TooLong));
    }

    #[test]
    fn notification_uri_rules() {
        assert!(check_notification_uri("http://127.0.0.1:8080/notify/1").is_ok());
        assert!(check_notification_uri("https://agg.example/n?x=1").is_ok());
        for uri in [
            "/notify",
            "ftp://h/n",
            "mailto:a@b",
            "http://user:pw@h/n",
            "https://h/n#frag",
            "not a url",
        ] {
            assert!(check_notification_uri(uri).is_err(), "{uri}");
        }
    }
}
