//! OpenADR 3.1.0 JSON objects as the official OpenAPI document defines them
//! (schemas/openadr3/openadr3-3.1.0.yaml, `components/schemas`): plain serde types with the
//! specification's camelCase names.
//!
//! Each object comes in two shapes: the request a client sends (`programRequest`, ...) and
//! the object the server returns, which is the request plus `objectMetadata` (id, creation
//! and modification times, objectType), all of which the server assigns. Unknown request
//! fields are ignored, as the schemas allow additional properties; server-owned fields a
//! client echoes back (`id`, `createdDateTime`, ...) are ignored for the same reason.

use serde::{Deserialize, Serialize};

/// `objectTypes`: the addressable object kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ObjectType {
    Program,
    Event,
    Report,
    Subscription,
    Ven,
    Resource,
}

impl ObjectType {
    /// The enumeration value as the specification spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Program => "PROGRAM",
            ObjectType::Event => "EVENT",
            ObjectType::Report => "REPORT",
            ObjectType::Subscription => "SUBSCRIPTION",
            ObjectType::Ven => "VEN",
            ObjectType::Resource => "RESOURCE",
        }
    }

    /// Parses the specification's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PROGRAM" => ObjectType::Program,
            "EVENT" => ObjectType::Event,
            "REPORT" => ObjectType::Report,
            "SUBSCRIPTION" => ObjectType::Subscription,
            "VEN" => ObjectType::Ven,
            "RESOURCE" => ObjectType::Resource,
            _ => return None,
        })
    }
}

/// `objectMetadata`: what the server provisions on every object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub id: String,
    /// RFC 3339, UTC.
    pub created_date_time: String,
    pub modification_date_time: String,
    pub object_type: ObjectType,
}

/// `intervalPeriod`: a start, a duration and a randomization window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntervalPeriod {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub randomize_start: Option<String>,
}

/// `point`: a pair of floats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// One item of `valuesMap.values`: number, integer, string, boolean or point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Integer(i64),
    Number(f64),
    Text(String),
    Bool(bool),
    Point(Point),
}

impl Value {
    /// The value as a number, when it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(*i as f64),
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// `valuesMap`: values of one (specification- or privately-defined) type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValuesMap {
    #[serde(rename = "type")]
    pub kind: String,
    pub values: Vec<Value>,
}

/// `interval`: an id, an optional period overriding the event's, and payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    pub id: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_period: Option<IntervalPeriod>,
    pub payloads: Vec<ValuesMap>,
}

/// The discriminator value of `eventPayloadDescriptor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventPayloadDescriptorType {
    #[serde(rename = "EVENT_PAYLOAD_DESCRIPTOR")]
    EventPayloadDescriptor,
}

/// The discriminator value of `reportPayloadDescriptor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportPayloadDescriptorType {
    #[serde(rename = "REPORT_PAYLOAD_DESCRIPTOR")]
    ReportPayloadDescriptor,
}

/// `eventPayloadDescriptor`: context for an event payload type (units, currency).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPayloadDescriptor {
    pub object_type: EventPayloadDescriptorType,
    pub payload_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// `reportPayloadDescriptor`: context for a report payload type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportPayloadDescriptor {
    pub object_type: ReportPayloadDescriptorType,
    pub payload_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reading_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<u8>,
}

/// An item of `programRequest.payloadDescriptors` (either kind, told apart by objectType).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PayloadDescriptor {
    Event(EventPayloadDescriptor),
    Report(ReportPayloadDescriptor),
}

/// `reportDescriptor.reportIntervals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReportIntervals {
    #[default]
    Intervals,
    SubIntervals,
    OpenIntervals,
}

fn minus_one() -> i32 {
    -1
}
fn one() -> i32 {
    1
}
fn yes() -> bool {
    true
}

/// `reportDescriptor`: a report an event asks VENs for. Defaults are the specification's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportDescriptor {
    pub payload_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reading_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    #[serde(default)]
    pub aggregate: bool,
    #[serde(default = "minus_one")]
    pub start_interval: i32,
    #[serde(default = "minus_one")]
    pub num_intervals: i32,
    #[serde(default = "yes")]
    pub historical: bool,
    #[serde(default = "minus_one")]
    pub frequency: i32,
    #[serde(default = "one")]
    pub repeat: i32,
    #[serde(default)]
    pub report_intervals: ReportIntervals,
}

/// An item of `programRequest.programDescriptions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramDescription {
    #[serde(rename = "URL")]
    pub url: String,
}

/// `programRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgramRequest {
    pub program_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_period: Option<IntervalPeriod>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program_descriptions: Option<Vec<ProgramDescription>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_descriptors: Option<Vec<PayloadDescriptor>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<ValuesMap>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
}

/// `eventRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRequest {
    #[serde(rename = "programID")]
    pub program_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Bounded by the served document to 32 bits (the official one has no maximum).
    pub priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_descriptors: Option<Vec<ReportDescriptor>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_descriptors: Option<Vec<EventPayloadDescriptor>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_period: Option<IntervalPeriod>,
    /// Required by the 3.1 user guide for a meaningful event; the schema leaves it optional.
    #[serde(default)]
    pub intervals: Vec<Interval>,
}

/// The data of one resource in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportResource {
    pub resource_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_period: Option<IntervalPeriod>,
    pub intervals: Vec<Interval>,
}

/// `reportRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRequest {
    #[serde(rename = "eventID")]
    pub event_id: String,
    pub client_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_descriptors: Option<Vec<ReportPayloadDescriptor>>,
    pub resources: Vec<ReportResource>,
}

/// `subscriptionRequest.objectOperations[].operations[]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    Read,
    Create,
    Update,
    Delete,
}

/// One entry of `subscriptionRequest.objectOperations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectOperation {
    pub objects: Vec<ObjectType>,
    pub operations: Vec<Operation>,
    pub callback_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
}

/// `subscriptionRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRequest {
    pub client_name: String,
    #[serde(rename = "programID", skip_serializing_if = "Option::is_none")]
    pub program_id: Option<String>,
    pub object_operations: Vec<ObjectOperation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
}

/// Discriminator of `venRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VenRequestType {
    BlVenRequest,
    VenVenRequest,
}

/// `venRequest` (`BlVenRequest` or `VenVenRequest`, told apart by objectType). The BL
/// variant carries `clientID` (the VEN client the object belongs to) and `targets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VenRequest {
    pub object_type: VenRequestType,
    #[serde(rename = "clientID", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub ven_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<ValuesMap>>,
}

/// Discriminator of `resourceRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResourceRequestType {
    BlResourceRequest,
    VenResourceRequest,
}

/// `resourceRequest` (`BlResourceRequest` or `VenResourceRequest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequest {
    pub object_type: ResourceRequestType,
    #[serde(rename = "clientID", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub resource_name: String,
    #[serde(rename = "venID")]
    pub ven_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<ValuesMap>>,
}

/// `program`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Program {
    #[serde(flatten)]
    pub meta: Metadata,
    #[serde(flatten)]
    pub body: ProgramRequest,
}

/// `event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(flatten)]
    pub meta: Metadata,
    #[serde(flatten)]
    pub body: EventRequest,
}

/// `report`: the request plus the `clientID` of the VEN client that sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub meta: Metadata,
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(flatten)]
    pub body: ReportRequest,
}

/// `subscription`: the request plus the subscriber's `clientID`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    #[serde(flatten)]
    pub meta: Metadata,
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(flatten)]
    pub body: SubscriptionRequest,
}

/// `ven` as the server returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ven {
    #[serde(flatten)]
    pub meta: Metadata,
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub ven_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<ValuesMap>>,
}

/// `resource` as the server returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    #[serde(flatten)]
    pub meta: Metadata,
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub resource_name: String,
    #[serde(rename = "venID")]
    pub ven_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<ValuesMap>>,
}

/// `notification`: what a subscriber's callback receives.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification<'a> {
    pub object_type: ObjectType,
    pub operation: Operation,
    pub object: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<&'a [String]>,
}

/// `clientCredentialRequest` (form-encoded, snake case per RFC 6749).
#[derive(Debug, Clone, Deserialize)]
pub struct ClientCredentialRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

/// `clientCredentialResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientCredentialResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// `authServerInfo`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthServerInfo {
    #[serde(rename = "tokenURL")]
    pub token_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trip_uses_spec_names() {
        let json = serde_json::json!({
            "programID": "p1",
            "eventName": "e",
            "intervalPeriod": {"start": "2024-01-01T00:00:00Z", "duration": "PT1H"},
            "intervals": [{"id": 0, "payloads": [{"type": "PRICE", "values": [0.17, 1, "x", true, {"x": 1.0, "y": 2.0}]}]}],
            "reportDescriptors": [{"payloadType": "USAGE"}]
        });
        let e: EventRequest = serde_json::from_value(json).unwrap();
        assert_eq!(e.intervals[0].payloads[0].values.len(), 5);
        let rd = &e.report_descriptors.as_ref().unwrap()[0];
        assert_eq!((rd.start_interval, rd.repeat, rd.historical), (-1, 1, true));
        let back = serde_json::to_value(&e).unwrap();
        assert_eq!(back["programID"], "p1");
        assert_eq!(back["intervalPeriod"]["duration"], "PT1H");
        assert_eq!(back["reportDescriptors"][0]["reportIntervals"], "INTERVALS");
    }

    #[test]
    fn unknown_enum_values_are_refused() {
        let bad = serde_json::json!({"clientName": "c", "objectOperations": [
            {"objects": ["WIDGET"], "operations": ["CREATE"], "callbackUrl": "http://x"}]});
        assert!(serde_json::from_value::<SubscriptionRequest>(bad).is_err());
    }
}
