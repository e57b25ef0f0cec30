//! Subscriptions, notifications, responses (with the response sets that hold them) and log
//! events.

use serde::{Deserialize, Serialize, Serializer};

use super::{ListLink, ResponseStatus, SepResource, TimeType, sep_resources};
use crate::protocol::sep2::xml::{XSI_NS, serialize_with_attributes};

sep_resources!(
    SubscriptionList => "SubscriptionList",
    Subscription => "Subscription",
    ResponseSetList => "ResponseSetList",
    ResponseSet => "ResponseSet",
    ResponseList => "ResponseList",
    Response => "Response",
    DerControlResponse => "DERControlResponse",
    LogEventList => "LogEventList",
    LogEvent => "LogEvent",
);

/// A list of [`Subscription`]s (`SubscriptionList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscriptionList {
    /// URI of this list.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Number of items in the whole list.
    #[serde(rename = "@all")]
    pub all: u32,
    /// Number of items in this page.
    #[serde(rename = "@results")]
    pub results: u32,
    /// Seconds between polls the server asks for.
    #[serde(rename = "@pollRate", skip_serializing_if = "Option::is_none")]
    pub poll_rate: Option<u32>,
    /// The subscriptions of this page.
    #[serde(
        rename = "Subscription",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subscriptions: Vec<Subscription>,
}

/// A threshold condition on a subscription (`Condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Condition {
    /// Which attribute the thresholds apply to (0 = Reading value).
    #[serde(rename = "attributeIdentifier")]
    pub attribute_identifier: u8,
    /// Notify when the value drops below this.
    #[serde(rename = "lowerThreshold")]
    pub lower_threshold: i64,
    /// Notify when the value rises above this.
    #[serde(rename = "upperThreshold")]
    pub upper_threshold: i64,
}

/// A client's request to be notified of changes to a resource (`Subscription`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subscription {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// The resource watched.
    #[serde(rename = "subscribedResource")]
    pub subscribed_resource: String,
    /// Optional thresholds.
    #[serde(rename = "Condition", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// Notification encoding (0 application/sep+xml, 1 application/sep-exi, 2-255 reserved).
    #[serde(rename = "encoding")]
    pub encoding: u8,
    /// Function set level, e.g. `"+S1"` (at most 16 characters).
    #[serde(rename = "level")]
    pub level: String,
    /// Maximum number of list items per notification.
    #[serde(rename = "limit")]
    pub limit: u32,
    /// Absolute URI notifications are posted to.
    #[serde(rename = "notificationURI")]
    pub notification_uri: String,
}

/// A notification posted to a subscriber (`Notification`), carrying the changed resource.
///
/// The schema types the `Resource` element as the abstract base `Resource`, so the concrete
/// type is named with `xsi:type` (for example `xsi:type="DERControlList"`); the encoder adds
/// that attribute from `R`'s [`SepResource::ELEMENT`]. The decoder ignores `xsi:type` and
/// reads the element as `R`, so decode with the type you expect.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(bound(
    serialize = "R: Serialize + SepResource",
    deserialize = "R: Deserialize<'de>"
))]
pub struct Notification<R> {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// The resource the subscription watches.
    #[serde(rename = "subscribedResource")]
    pub subscribed_resource: String,
    /// The new location of a moved resource (absolute URI).
    #[serde(rename = "newResourceURI", skip_serializing_if = "Option::is_none")]
    pub new_resource_uri: Option<String>,
    /// The resource's current representation.
    #[serde(
        rename = "Resource",
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_typed_resource"
    )]
    pub resource: Option<R>,
    /// 0 default, 1 cancelled, 2 cancelled (moved), 3 cancelled (definition changed),
    /// 4 cancelled (no longer exists).
    #[serde(rename = "status")]
    pub status: u8,
    /// The subscription that triggered this notification (absolute URI).
    #[serde(rename = "subscriptionURI")]
    pub subscription_uri: String,
}

impl<R> SepResource for Notification<R> {
    const ELEMENT: &'static str = "Notification";
}

/// Writes the notification's resource as `<Resource xsi:type="...">`. The `xsi` prefix is
/// declared on the element itself so the root stays as the encoder writes it.
fn serialize_typed_resource<R, S>(resource: &Option<R>, serializer: S) -> Result<S::Ok, S::Error>
where
    R: Serialize + SepResource,
    S: Serializer,
{
    match resource {
        Some(resource) => serialize_with_attributes(
            resource,
            serializer,
            &[("@xmlns:xsi", XSI_NS), ("@xsi:type", R::ELEMENT)],
        ),
        None => serializer.serialize_none(),
    }
}

/// A list of [`ResponseSet`]s (`ResponseSetList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResponseSetList {
    /// URI of this list.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Number of items in the whole list.
    #[serde(rename = "@all")]
    pub all: u32,
    /// Number of items in this page.
    #[serde(rename = "@results")]
    pub results: u32,
    /// Seconds between polls the server asks for.
    #[serde(rename = "@pollRate", skip_serializing_if = "Option::is_none")]
    pub poll_rate: Option<u32>,
    /// The response sets of this page.
    #[serde(rename = "ResponseSet", default, skip_serializing_if = "Vec::is_empty")]
    pub response_sets: Vec<ResponseSet>,
}

/// A set of responses to the events of one program or function set (`ResponseSet`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResponseSet {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Master resource identifier (hex, 128 bits).
    #[serde(rename = "mRID")]
    pub m_rid: String,
    /// Human-readable description (at most 32 characters).
    #[serde(rename = "description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Version of this resource.
    #[serde(rename = "version", skip_serializing_if = "Option::is_none")]
    pub version: Option<u16>,
    /// `ResponseListLink`: where the responses are read and posted.
    #[serde(rename = "ResponseListLink", skip_serializing_if = "Option::is_none")]
    pub response_list_link: Option<ListLink>,
}

/// A list of [`Response`]s (`ResponseList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResponseList {
    /// URI of this list.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Number of items in the whole list.
    #[serde(rename = "@all")]
    pub all: u32,
    /// Number of items in this page.
    #[serde(rename = "@results")]
    pub results: u32,
    /// The responses of this page.
    #[serde(rename = "Response", default, skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<Response>,
}

/// A client's response to an event (`Response`), the item type of [`ResponseList`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// When the client produced the response, epoch seconds.
    #[serde(rename = "createdDateTime", skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<TimeType>,
    /// LFDI of the responding device (40 hex digits).
    #[serde(rename = "endDeviceLFDI")]
    pub end_device_lfdi: String,
    /// The response code; unknown codes fail decoding.
    #[serde(rename = "status", skip_serializing_if = "Option::is_none")]
    pub status: Option<ResponseStatus>,
    /// mRID of the event responded to.
    #[serde(rename = "subject")]
    pub subject: String,
}

/// A response to a [`super::DerControl`] (`DERControlResponse`), what clients post to the
/// control's `replyTo`. Same content as [`Response`] under its own root element name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerControlResponse {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// When the client produced the response, epoch seconds.
    #[serde(rename = "createdDateTime", skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<TimeType>,
    /// LFDI of the responding device (40 hex digits).
    #[serde(rename = "endDeviceLFDI")]
    pub end_device_lfdi: String,
    /// The response code; unknown codes fail decoding.
    #[serde(rename = "status", skip_serializing_if = "Option::is_none")]
    pub status: Option<ResponseStatus>,
    /// mRID of the DERControl responded to.
    #[serde(rename = "subject")]
    pub subject: String,
}

impl From<DerControlResponse> for Response {
    fn from(r: DerControlResponse) -> Self {
        Self {
            href: r.href,
            created_date_time: r.created_date_time,
            end_device_lfdi: r.end_device_lfdi,
            status: r.status,
            subject: r.subject,
        }
    }
}

impl From<Response> for DerControlResponse {
    fn from(r: Response) -> Self {
        Self {
            href: r.href,
            created_date_time: r.created_date_time,
            end_device_lfdi: r.end_device_lfdi,
            status: r.status,
            subject: r.subject,
        }
    }
}

/// A list of [`LogEvent`]s (`LogEventList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogEventList {
    /// URI of this list.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Subscription support.
    #[serde(rename = "@subscribable", skip_serializing_if = "Option::is_none")]
    pub subscribable: Option<u8>,
    /// Number of items in the whole list.
    #[serde(rename = "@all")]
    pub all: u32,
    /// Number of items in this page.
    #[serde(rename = "@results")]
    pub results: u32,
    /// Seconds between polls the server asks for.
    #[serde(rename = "@pollRate", skip_serializing_if = "Option::is_none")]
    pub poll_rate: Option<u32>,
    /// The log events of this page.
    #[serde(rename = "LogEvent", default, skip_serializing_if = "Vec::is_empty")]
    pub log_events: Vec<LogEvent>,
}

/// An event a device logged (`LogEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogEvent {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// When the event happened, epoch seconds.
    #[serde(rename = "createdDateTime")]
    pub created_date_time: TimeType,
    /// Free-form details (at most 32 characters).
    #[serde(rename = "details", skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// Extra data defined by the event code's owner.
    #[serde(rename = "extendedData", skip_serializing_if = "Option::is_none")]
    pub extended_data: Option<u32>,
    /// Function set that logged the event.
    #[serde(rename = "functionSet")]
    pub function_set: u8,
    /// Event code within the profile.
    #[serde(rename = "logEventCode")]
    pub log_event_code: u8,
    /// Identifier distinguishing events with the same code.
    #[serde(rename = "logEventID")]
    pub log_event_id: u16,
    /// Private enterprise number of the code's owner.
    #[serde(rename = "logEventPEN")]
    pub log_event_pen: u32,
    /// Profile the code belongs to (0 general, 1 IEEE 2030.5, ...).
    #[serde(rename = "profileID")]
    pub profile_id: u8,
}
