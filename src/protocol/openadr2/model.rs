//! OpenADR 2.0b profile B payloads as plain serde types (quick-xml serde), no I/O.
//!
//! One set of types serves both directions. Element names are declared with the prefix the
//! VTN writes (`oadr:`, `ei:`, `pyld:`, `emix:`, `xcal:`, `strm:`, `power:`, `scale:`) and
//! an alias with the bare local name, because quick-xml's deserializer matches by local name
//! (a peer may use any prefix it likes; [`super::xml`] checks the namespaces before the
//! deserializer runs). The prefixes are all bound on the root `oadr:oadrPayload`, so every
//! document [`super::xml::encode`] writes is namespace-well-formed. Fields are declared in
//! the order of the schema's sequences (oadr_20b.xsd and the EI schemas it imports) because
//! the serializer writes them in declaration order; the tests validate what is written with
//! xmllint.

use serde::{Deserialize, Serialize};

/// Namespaces of the 2.0b schema set, with the prefix the VTN writes for each.
pub const NAMESPACES: &[(&str, &str)] = &[
    ("oadr", "http://openadr.org/oadr-2.0b/2012/07"),
    ("ei", "http://docs.oasis-open.org/ns/energyinterop/201110"),
    (
        "pyld",
        "http://docs.oasis-open.org/ns/energyinterop/201110/payloads",
    ),
    ("emix", "http://docs.oasis-open.org/ns/emix/2011/06"),
    ("xcal", "urn:ietf:params:xml:ns:icalendar-2.0"),
    ("strm", "urn:ietf:params:xml:ns:icalendar-2.0:stream"),
    ("power", "http://docs.oasis-open.org/ns/emix/2011/06/power"),
    (
        "scale",
        "http://docs.oasis-open.org/ns/emix/2011/06/siscale",
    ),
];

/// Further namespaces a peer's document may use (signatures, Green Button, GML, Atom)
/// whose content the VTN skips.
pub const OTHER_NAMESPACES: &[&str] = &[
    "http://www.w3.org/2000/09/xmldsig#",
    "http://www.w3.org/2009/xmldsig11#",
    "http://openadr.org/oadr-2.0b/2012/07/xmldsig-properties",
    "http://www.w3.org/2005/Atom",
    "http://naesb.org/espi",
    "http://www.opengis.net/gml/3.2",
    "http://docs.oasis-open.org/ns/emix/2011/06/siscale",
];

/// The value of `ei:schemaVersion` on every message.
pub const SCHEMA_VERSION: &str = "2.0b";

fn schema_version() -> Option<String> {
    Some(SCHEMA_VERSION.to_string())
}

/// `<oadr:oadrPayload>`: the document root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OadrPayload {
    #[serde(rename = "oadr:oadrSignedObject", alias = "oadrSignedObject")]
    pub signed_object: SignedObject,
}

/// `<oadr:oadrSignedObject>`: exactly one message. An XML signature beside it is skipped;
/// identity comes from the TLS client certificate (docs/openadr2b.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedObject {
    #[serde(rename = "$value")]
    pub message: Message,
}

/// Every 2.0b message, VTN to VEN and VEN to VTN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    #[serde(rename = "oadr:oadrQueryRegistration", alias = "oadrQueryRegistration")]
    QueryRegistration(QueryRegistration),
    #[serde(
        rename = "oadr:oadrCreatePartyRegistration",
        alias = "oadrCreatePartyRegistration"
    )]
    CreatePartyRegistration(CreatePartyRegistration),
    #[serde(
        rename = "oadr:oadrCreatedPartyRegistration",
        alias = "oadrCreatedPartyRegistration"
    )]
    CreatedPartyRegistration(CreatedPartyRegistration),
    #[serde(
        rename = "oadr:oadrCancelPartyRegistration",
        alias = "oadrCancelPartyRegistration"
    )]
    CancelPartyRegistration(CancelPartyRegistration),
    #[serde(
        rename = "oadr:oadrCanceledPartyRegistration",
        alias = "oadrCanceledPartyRegistration"
    )]
    CanceledPartyRegistration(CanceledPartyRegistration),
    #[serde(
        rename = "oadr:oadrRequestReregistration",
        alias = "oadrRequestReregistration"
    )]
    RequestReregistration(RequestReregistration),
    #[serde(rename = "oadr:oadrRequestEvent", alias = "oadrRequestEvent")]
    RequestEvent(RequestEvent),
    #[serde(rename = "oadr:oadrDistributeEvent", alias = "oadrDistributeEvent")]
    DistributeEvent(DistributeEvent),
    #[serde(rename = "oadr:oadrCreatedEvent", alias = "oadrCreatedEvent")]
    CreatedEvent(CreatedEvent),
    #[serde(rename = "oadr:oadrResponse", alias = "oadrResponse")]
    Response(Response),
    #[serde(rename = "oadr:oadrRegisterReport", alias = "oadrRegisterReport")]
    RegisterReport(RegisterReport),
    #[serde(rename = "oadr:oadrRegisteredReport", alias = "oadrRegisteredReport")]
    RegisteredReport(RegisteredReport),
    #[serde(rename = "oadr:oadrCreateReport", alias = "oadrCreateReport")]
    CreateReport(CreateReport),
    #[serde(rename = "oadr:oadrCreatedReport", alias = "oadrCreatedReport")]
    CreatedReport(CreatedReport),
    #[serde(rename = "oadr:oadrUpdateReport", alias = "oadrUpdateReport")]
    UpdateReport(UpdateReport),
    #[serde(rename = "oadr:oadrUpdatedReport", alias = "oadrUpdatedReport")]
    UpdatedReport(UpdatedReport),
    #[serde(rename = "oadr:oadrCreateOpt", alias = "oadrCreateOpt")]
    CreateOpt(CreateOpt),
    #[serde(rename = "oadr:oadrCreatedOpt", alias = "oadrCreatedOpt")]
    CreatedOpt(CreatedOpt),
    #[serde(rename = "oadr:oadrCancelOpt", alias = "oadrCancelOpt")]
    CancelOpt(CancelOpt),
    #[serde(rename = "oadr:oadrCanceledOpt", alias = "oadrCanceledOpt")]
    CanceledOpt(CanceledOpt),
    #[serde(rename = "oadr:oadrPoll", alias = "oadrPoll")]
    Poll(Poll),
}

impl Message {
    /// The message's element name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::QueryRegistration(_) => "oadrQueryRegistration",
            Message::CreatePartyRegistration(_) => "oadrCreatePartyRegistration",
            Message::CreatedPartyRegistration(_) => "oadrCreatedPartyRegistration",
            Message::CancelPartyRegistration(_) => "oadrCancelPartyRegistration",
            Message::CanceledPartyRegistration(_) => "oadrCanceledPartyRegistration",
            Message::RequestReregistration(_) => "oadrRequestReregistration",
            Message::RequestEvent(_) => "oadrRequestEvent",
            Message::DistributeEvent(_) => "oadrDistributeEvent",
            Message::CreatedEvent(_) => "oadrCreatedEvent",
            Message::Response(_) => "oadrResponse",
            Message::RegisterReport(_) => "oadrRegisterReport",
            Message::RegisteredReport(_) => "oadrRegisteredReport",
            Message::CreateReport(_) => "oadrCreateReport",
            Message::CreatedReport(_) => "oadrCreatedReport",
            Message::UpdateReport(_) => "oadrUpdateReport",
            Message::UpdatedReport(_) => "oadrUpdatedReport",
            Message::CreateOpt(_) => "oadrCreateOpt",
            Message::CreatedOpt(_) => "oadrCreatedOpt",
            Message::CancelOpt(_) => "oadrCancelOpt",
            Message::CanceledOpt(_) => "oadrCanceledOpt",
            Message::Poll(_) => "oadrPoll",
        }
    }

    /// The venID the message names, if any (used in plain-HTTP test-lab mode, and checked
    /// against the certificate's VEN over TLS).
    pub fn ven_id(&self) -> Option<&str> {
        let v = match self {
            Message::CreatePartyRegistration(m) => &m.ven_id,
            Message::CancelPartyRegistration(m) => &m.ven_id,
            Message::RequestEvent(m) => &m.ei_request_event.ven_id,
            Message::CreatedEvent(m) => &m.ei_created_event.ven_id,
            Message::Response(m) => &m.ven_id,
            Message::RegisterReport(m) => &m.ven_id,
            Message::CreatedReport(m) => &m.ven_id,
            Message::UpdateReport(m) => &m.ven_id,
            Message::CreateOpt(m) => &m.ven_id,
            Message::CancelOpt(m) => &m.ven_id,
            Message::Poll(m) => &m.ven_id,
            _ => return None,
        };
        v.as_deref().filter(|s| !s.is_empty())
    }
}

/// `ei:eiResponse`: the outcome of a request, `responseCode` 200 or a 4xx code.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EiResponse {
    #[serde(rename = "ei:responseCode", alias = "responseCode")]
    pub response_code: String,
    #[serde(
        rename = "ei:responseDescription",
        alias = "responseDescription",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_description: Option<String>,
    #[serde(rename = "pyld:requestID", alias = "requestID", default)]
    pub request_id: String,
}

impl EiResponse {
    /// A response with `code` (200 OK, or a 4xx of [`super::ResponseCode`]).
    pub fn new(code: u16, description: &str, request_id: &str) -> Self {
        EiResponse {
            response_code: code.to_string(),
            response_description: Some(description.to_string()),
            request_id: request_id.to_string(),
        }
    }
}

/// `xcal:duration` wrapper holding an ISO 8601 duration (`PT10S`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationProp {
    #[serde(rename = "xcal:duration", alias = "duration")]
    pub duration: String,
}

/// `xcal:dtstart` wrapper holding a date-time (`2024-01-01T00:00:00Z`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DtStart {
    #[serde(rename = "xcal:date-time", alias = "date-time")]
    pub date_time: String,
}

// ---------------------------------------------------------------- EiRegisterParty

/// `oadrQueryRegistration`: a VEN asks what the VTN offers before registering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRegistration {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "pyld:requestID", alias = "requestID")]
    pub request_id: String,
}

/// `oadrCreatePartyRegistration`: a VEN registers (or re-registers with its registrationID).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatePartyRegistration {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "pyld:requestID", alias = "requestID")]
    pub request_id: String,
    #[serde(
        rename = "ei:registrationID",
        alias = "registrationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub registration_id: Option<String>,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_id: Option<String>,
    #[serde(rename = "oadr:oadrProfileName", alias = "oadrProfileName")]
    pub profile_name: String,
    #[serde(rename = "oadr:oadrTransportName", alias = "oadrTransportName")]
    pub transport_name: String,
    #[serde(
        rename = "oadr:oadrTransportAddress",
        alias = "oadrTransportAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transport_address: Option<String>,
    #[serde(rename = "oadr:oadrReportOnly", alias = "oadrReportOnly")]
    pub report_only: bool,
    #[serde(rename = "oadr:oadrXmlSignature", alias = "oadrXmlSignature")]
    pub xml_signature: bool,
    #[serde(
        rename = "oadr:oadrVenName",
        alias = "oadrVenName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_name: Option<String>,
    #[serde(
        rename = "oadr:oadrHttpPullModel",
        alias = "oadrHttpPullModel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub http_pull_model: Option<bool>,
}

/// `oadrCreatedPartyRegistration`: the VTN's answer to a query or a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedPartyRegistration {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "ei:eiResponse", alias = "eiResponse")]
    pub response: EiResponse,
    #[serde(
        rename = "ei:registrationID",
        alias = "registrationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub registration_id: Option<String>,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_id: Option<String>,
    #[serde(rename = "ei:vtnID", alias = "vtnID")]
    pub vtn_id: String,
    #[serde(rename = "oadr:oadrProfiles", alias = "oadrProfiles")]
    pub profiles: Profiles,
    #[serde(
        rename = "oadr:oadrRequestedOadrPollFreq",
        alias = "oadrRequestedOadrPollFreq",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub poll_freq: Option<IcalDuration>,
}

/// A bare `duration` element in the xCal namespace (`oadrRequestedOadrPollFreq`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IcalDuration {
    #[serde(rename = "xcal:duration", alias = "duration")]
    pub duration: String,
}

/// `oadr:oadrProfiles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profiles {
    #[serde(rename = "oadr:oadrProfile", alias = "oadrProfile", default)]
    pub profiles: Vec<Profile>,
}

/// One profile and the transports it is offered over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(rename = "oadr:oadrProfileName", alias = "oadrProfileName")]
    pub profile_name: String,
    #[serde(rename = "oadr:oadrTransports", alias = "oadrTransports")]
    pub transports: Transports,
}

/// `oadr:oadrTransports`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transports {
    #[serde(rename = "oadr:oadrTransport", alias = "oadrTransport", default)]
    pub transports: Vec<Transport>,
}

/// `oadr:oadrTransport`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transport {
    #[serde(rename = "oadr:oadrTransportName", alias = "oadrTransportName")]
    pub transport_name: String,
}

/// `oadrCancelPartyRegistration`: either side ends a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelPartyRegistration {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "pyld:requestID", alias = "requestID")]
    pub request_id: String,
    #[serde(rename = "ei:registrationID", alias = "registrationID")]
    pub registration_id: String,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_id: Option<String>,
}

/// `oadrCanceledPartyRegistration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanceledPartyRegistration {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "ei:eiResponse", alias = "eiResponse")]
    pub response: EiResponse,
    #[serde(
        rename = "ei:registrationID",
        alias = "registrationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub registration_id: Option<String>,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_id: Option<String>,
}

/// `oadrRequestReregistration`: the VTN asks a VEN to register again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestReregistration {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "ei:venID", alias = "venID")]
    pub ven_id: String,
}

// ---------------------------------------------------------------- EiEvent

/// `oadrRequestEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEvent {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "pyld:eiRequestEvent", alias = "eiRequestEvent")]
    pub ei_request_event: EiRequestEvent,
}

/// `pyld:eiRequestEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EiRequestEvent {
    #[serde(rename = "pyld:requestID", alias = "requestID")]
    pub request_id: String,
    #[serde(rename = "ei:venID", alias = "venID", default)]
    pub ven_id: Option<String>,
    #[serde(
        rename = "pyld:replyLimit",
        alias = "replyLimit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_limit: Option<u32>,
}

/// `oadrDistributeEvent`: the events in force for a VEN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributeEvent {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(
        rename = "ei:eiResponse",
        alias = "eiResponse",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response: Option<EiResponse>,
    #[serde(rename = "pyld:requestID", alias = "requestID")]
    pub request_id: String,
    #[serde(rename = "ei:vtnID", alias = "vtnID")]
    pub vtn_id: String,
    #[serde(rename = "oadr:oadrEvent", alias = "oadrEvent", default)]
    pub events: Vec<OadrEvent>,
}

/// `oadr:oadrEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OadrEvent {
    #[serde(rename = "ei:eiEvent", alias = "eiEvent")]
    pub event: EiEvent,
    /// `always` or `never`.
    #[serde(rename = "oadr:oadrResponseRequired", alias = "oadrResponseRequired")]
    pub response_required: String,
}

/// `ei:eiEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EiEvent {
    #[serde(rename = "ei:eventDescriptor", alias = "eventDescriptor")]
    pub descriptor: EventDescriptor,
    #[serde(rename = "ei:eiActivePeriod", alias = "eiActivePeriod")]
    pub active_period: ActivePeriod,
    #[serde(rename = "ei:eiEventSignals", alias = "eiEventSignals")]
    pub signals: EventSignals,
    #[serde(rename = "ei:eiTarget", alias = "eiTarget", default)]
    pub target: Target,
}

/// `ei:eventDescriptor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDescriptor {
    #[serde(rename = "ei:eventID", alias = "eventID")]
    pub event_id: String,
    #[serde(rename = "ei:modificationNumber", alias = "modificationNumber")]
    pub modification_number: u32,
    #[serde(
        rename = "ei:modificationDateTime",
        alias = "modificationDateTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub modification_date_time: Option<String>,
    #[serde(
        rename = "ei:modificationReason",
        alias = "modificationReason",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub modification_reason: Option<String>,
    #[serde(
        rename = "ei:priority",
        alias = "priority",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub priority: Option<u32>,
    #[serde(rename = "ei:eiMarketContext", alias = "eiMarketContext")]
    pub market_context: EiMarketContext,
    #[serde(rename = "ei:createdDateTime", alias = "createdDateTime")]
    pub created_date_time: String,
    /// `none`, `far`, `near`, `active`, `completed` or `cancelled`.
    #[serde(rename = "ei:eventStatus", alias = "eventStatus")]
    pub event_status: String,
    #[serde(
        rename = "ei:testEvent",
        alias = "testEvent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub test_event: Option<String>,
    #[serde(
        rename = "ei:vtnComment",
        alias = "vtnComment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vtn_comment: Option<String>,
}

/// `ei:eiMarketContext`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EiMarketContext {
    #[serde(rename = "emix:marketContext", alias = "marketContext")]
    pub market_context: String,
}

/// `ei:eiActivePeriod`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivePeriod {
    #[serde(rename = "xcal:properties", alias = "properties")]
    pub properties: ActiveProperties,
    #[serde(rename = "xcal:components", alias = "components", default)]
    pub components: Components,
}

/// The always-empty `xcal:components` the schema requires.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Components {}

/// `xcal:properties` of an active period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveProperties {
    #[serde(rename = "xcal:dtstart", alias = "dtstart")]
    pub dtstart: DtStart,
    #[serde(rename = "xcal:duration", alias = "duration")]
    pub duration: DurationProp,
    #[serde(
        rename = "xcal:tolerance",
        alias = "tolerance",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tolerance: Option<Tolerance>,
    #[serde(
        rename = "ei:x-eiNotification",
        alias = "x-eiNotification",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub notification: Option<DurationProp>,
    #[serde(
        rename = "ei:x-eiRampUp",
        alias = "x-eiRampUp",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ramp_up: Option<DurationProp>,
    #[serde(
        rename = "ei:x-eiRecovery",
        alias = "x-eiRecovery",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub recovery: Option<DurationProp>,
}

/// `xcal:tolerance` (randomized start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    #[serde(rename = "xcal:tolerate", alias = "tolerate")]
    pub tolerate: Tolerate,
}

/// `xcal:tolerate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tolerate {
    #[serde(rename = "xcal:startafter", alias = "startafter")]
    pub start_after: String,
}

/// `ei:eiEventSignals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSignals {
    #[serde(rename = "ei:eiEventSignal", alias = "eiEventSignal", default)]
    pub signals: Vec<EventSignal>,
}

/// `ei:eiEventSignal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSignal {
    #[serde(rename = "strm:intervals", alias = "intervals")]
    pub intervals: Intervals,
    #[serde(
        rename = "ei:eiTarget",
        alias = "eiTarget",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target: Option<Target>,
    /// `SIMPLE`, `ELECTRICITY_PRICE`, `LOAD_DISPATCH`, ...
    #[serde(rename = "ei:signalName", alias = "signalName")]
    pub signal_name: String,
    /// `level`, `delta`, `setpoint`, `price`, ...
    #[serde(rename = "ei:signalType", alias = "signalType")]
    pub signal_type: String,
    #[serde(rename = "ei:signalID", alias = "signalID")]
    pub signal_id: String,
    /// The signal's item base when it is real power (`power:powerReal`, e.g. for
    /// LOAD_DISPATCH): the units of its values.
    #[serde(
        rename = "power:powerReal",
        alias = "powerReal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub power_real: Option<ItemBase>,
    #[serde(
        rename = "ei:currentValue",
        alias = "currentValue",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub current_value: Option<CurrentValue>,
}

/// `ei:currentValue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentValue {
    #[serde(rename = "ei:payloadFloat", alias = "payloadFloat")]
    pub payload_float: PayloadFloat,
}

/// `strm:intervals`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Intervals {
    #[serde(rename = "ei:interval", alias = "interval", default)]
    pub intervals: Vec<Interval>,
}

/// `ei:interval`, of an event signal (with a signalPayload) or of a report (with report
/// payloads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    #[serde(
        rename = "xcal:dtstart",
        alias = "dtstart",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dtstart: Option<DtStart>,
    #[serde(
        rename = "xcal:duration",
        alias = "duration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<DurationProp>,
    #[serde(
        rename = "xcal:uid",
        alias = "uid",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub uid: Option<Uid>,
    #[serde(
        rename = "ei:signalPayload",
        alias = "signalPayload",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub signal_payload: Option<SignalPayload>,
    #[serde(
        rename = "oadr:oadrReportPayload",
        alias = "oadrReportPayload",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub report_payloads: Vec<ReportPayload>,
}

/// `xcal:uid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Uid {
    #[serde(rename = "xcal:text", alias = "text")]
    pub text: String,
}

/// `ei:signalPayload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalPayload {
    #[serde(rename = "ei:payloadFloat", alias = "payloadFloat")]
    pub payload_float: PayloadFloat,
}

/// `ei:payloadFloat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayloadFloat {
    #[serde(rename = "ei:value", alias = "value")]
    pub value: f64,
}

/// `ei:eiTarget`: who an event (or opt) is for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Target {
    #[serde(
        rename = "ei:groupID",
        alias = "groupID",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub group_ids: Vec<String>,
    #[serde(
        rename = "ei:resourceID",
        alias = "resourceID",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_ids: Vec<String>,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ven_ids: Vec<String>,
    #[serde(
        rename = "ei:partyID",
        alias = "partyID",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub party_ids: Vec<String>,
}

/// `oadrCreatedEvent`: a VEN opts in or out of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedEvent {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "pyld:eiCreatedEvent", alias = "eiCreatedEvent")]
    pub ei_created_event: EiCreatedEvent,
}

/// `pyld:eiCreatedEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EiCreatedEvent {
    #[serde(rename = "ei:eiResponse", alias = "eiResponse")]
    pub response: EiResponse,
    #[serde(
        rename = "ei:eventResponses",
        alias = "eventResponses",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub event_responses: Option<EventResponses>,
    #[serde(rename = "ei:venID", alias = "venID", default)]
    pub ven_id: Option<String>,
}

/// `ei:eventResponses`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventResponses {
    #[serde(rename = "ei:eventResponse", alias = "eventResponse", default)]
    pub responses: Vec<EventResponse>,
}

/// `ei:eventResponse`: one event's opt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventResponse {
    #[serde(rename = "ei:responseCode", alias = "responseCode")]
    pub response_code: String,
    #[serde(
        rename = "ei:responseDescription",
        alias = "responseDescription",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_description: Option<String>,
    #[serde(rename = "pyld:requestID", alias = "requestID", default)]
    pub request_id: String,
    #[serde(rename = "ei:qualifiedEventID", alias = "qualifiedEventID")]
    pub qualified_event_id: QualifiedEventId,
    /// `optIn` or `optOut`.
    #[serde(rename = "ei:optType", alias = "optType")]
    pub opt_type: String,
}

/// `ei:qualifiedEventID`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualifiedEventId {
    #[serde(rename = "ei:eventID", alias = "eventID")]
    pub event_id: String,
    #[serde(rename = "ei:modificationNumber", alias = "modificationNumber")]
    pub modification_number: u32,
}

/// `oadrResponse`: a plain acknowledgement (also the answer to a poll with nothing new).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "ei:eiResponse", alias = "eiResponse")]
    pub response: EiResponse,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_id: Option<String>,
}

// ---------------------------------------------------------------- EiReport

/// `oadrRegisterReport`: a VEN describes the reports it can send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterReport {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "pyld:requestID", alias = "requestID")]
    pub request_id: String,
    #[serde(rename = "oadr:oadrReport", alias = "oadrReport", default)]
    pub reports: Vec<OadrReport>,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_id: Option<String>,
    #[serde(
        rename = "ei:reportRequestID",
        alias = "reportRequestID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub report_request_id: Option<String>,
}

/// `oadr:oadrReport`: metadata (in a registration) or data (in an update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OadrReport {
    #[serde(
        rename = "xcal:dtstart",
        alias = "dtstart",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dtstart: Option<DtStart>,
    #[serde(
        rename = "xcal:duration",
        alias = "duration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<DurationProp>,
    #[serde(
        rename = "strm:intervals",
        alias = "intervals",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub intervals: Option<Intervals>,
    #[serde(
        rename = "ei:eiReportID",
        alias = "eiReportID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub report_id: Option<String>,
    #[serde(
        rename = "oadr:oadrReportDescription",
        alias = "oadrReportDescription",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub descriptions: Vec<ReportDescription>,
    #[serde(rename = "ei:reportRequestID", alias = "reportRequestID")]
    pub report_request_id: String,
    #[serde(rename = "ei:reportSpecifierID", alias = "reportSpecifierID")]
    pub report_specifier_id: String,
    /// `METADATA_TELEMETRY_USAGE`, `TELEMETRY_USAGE`, `TELEMETRY_STATUS`, ...
    #[serde(
        rename = "ei:reportName",
        alias = "reportName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub report_name: Option<String>,
    #[serde(rename = "ei:createdDateTime", alias = "createdDateTime")]
    pub created_date_time: String,
}

/// `oadr:oadrReportDescription`: one data point (rID) a VEN offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportDescription {
    #[serde(rename = "ei:rID", alias = "rID")]
    pub r_id: String,
    #[serde(
        rename = "ei:reportDataSource",
        alias = "reportDataSource",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_source: Option<Target>,
    #[serde(rename = "ei:reportType", alias = "reportType")]
    pub report_type: String,
    #[serde(
        rename = "power:powerReal",
        alias = "powerReal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub power_real: Option<ItemBase>,
    #[serde(
        rename = "power:powerReactive",
        alias = "powerReactive",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub power_reactive: Option<ItemBase>,
    #[serde(
        rename = "power:energyReal",
        alias = "energyReal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub energy_real: Option<ItemBase>,
    #[serde(
        rename = "power:voltage",
        alias = "voltage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub voltage: Option<ItemBase>,
    #[serde(
        rename = "oadr:frequency",
        alias = "frequency",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub frequency: Option<ItemBase>,
    #[serde(
        rename = "oadr:customUnit",
        alias = "customUnit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub custom_unit: Option<ItemBase>,
    #[serde(rename = "ei:readingType", alias = "readingType")]
    pub reading_type: String,
    #[serde(
        rename = "emix:marketContext",
        alias = "marketContext",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub market_context: Option<String>,
    #[serde(
        rename = "oadr:oadrSamplingRate",
        alias = "oadrSamplingRate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sampling_rate: Option<SamplingRate>,
}

/// An EMIX item base (`power:powerReal`, `power:energyReal`, ...): what a value measures.
/// The element name says what, `itemUnits` and `siScaleCode` in which unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemBase {
    #[serde(rename = "power:itemDescription", alias = "itemDescription")]
    pub item_description: String,
    #[serde(rename = "power:itemUnits", alias = "itemUnits")]
    pub item_units: String,
    #[serde(
        rename = "scale:siScaleCode",
        alias = "siScaleCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub si_scale_code: Option<String>,
    /// Required by the schema on power items.
    #[serde(
        rename = "power:powerAttributes",
        alias = "powerAttributes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub power_attributes: Option<PowerAttributes>,
}

/// `power:powerAttributes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerAttributes {
    #[serde(rename = "power:hertz", alias = "hertz")]
    pub hertz: f64,
    #[serde(rename = "power:voltage", alias = "voltage")]
    pub voltage: f64,
    #[serde(rename = "power:ac", alias = "ac")]
    pub ac: bool,
}

/// `oadr:oadrSamplingRate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingRate {
    #[serde(rename = "oadr:oadrMinPeriod", alias = "oadrMinPeriod")]
    pub min_period: String,
    #[serde(rename = "oadr:oadrMaxPeriod", alias = "oadrMaxPeriod")]
    pub max_period: String,
    #[serde(rename = "oadr:oadrOnChange", alias = "oadrOnChange")]
    pub on_change: bool,
}

/// `oadr:oadrReportPayload`: one value of an update report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportPayload {
    #[serde(rename = "ei:rID", alias = "rID")]
    pub r_id: String,
    #[serde(
        rename = "ei:confidence",
        alias = "confidence",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub confidence: Option<u32>,
    #[serde(
        rename = "ei:accuracy",
        alias = "accuracy",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub accuracy: Option<f64>,
    #[serde(
        rename = "ei:payloadFloat",
        alias = "payloadFloat",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub payload_float: Option<PayloadFloat>,
    #[serde(
        rename = "oadr:oadrPayloadResourceStatus",
        alias = "oadrPayloadResourceStatus",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_status: Option<ResourceStatus>,
    #[serde(
        rename = "oadr:oadrDataQuality",
        alias = "oadrDataQuality",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_quality: Option<String>,
}

/// `oadr:oadrPayloadResourceStatus` (TELEMETRY_STATUS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceStatus {
    #[serde(rename = "oadr:oadrOnline", alias = "oadrOnline")]
    pub online: bool,
    #[serde(rename = "oadr:oadrManualOverride", alias = "oadrManualOverride")]
    pub manual_override: bool,
}

/// `oadrRegisteredReport`: the VTN acknowledges a registration and asks for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredReport {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "ei:eiResponse", alias = "eiResponse")]
    pub response: EiResponse,
    #[serde(
        rename = "oadr:oadrReportRequest",
        alias = "oadrReportRequest",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub report_requests: Vec<ReportRequest>,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_id: Option<String>,
}

/// `oadr:oadrReportRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRequest {
    #[serde(rename = "ei:reportRequestID", alias = "reportRequestID")]
    pub report_request_id: String,
    #[serde(rename = "ei:reportSpecifier", alias = "reportSpecifier")]
    pub specifier: ReportSpecifier,
}

/// `ei:reportSpecifier`: which rIDs, how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSpecifier {
    #[serde(rename = "ei:reportSpecifierID", alias = "reportSpecifierID")]
    pub report_specifier_id: String,
    #[serde(rename = "xcal:granularity", alias = "granularity")]
    pub granularity: DurationProp,
    #[serde(
        rename = "ei:reportBackDuration",
        alias = "reportBackDuration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub report_back_duration: Option<DurationProp>,
    #[serde(rename = "ei:specifierPayload", alias = "specifierPayload", default)]
    pub payloads: Vec<SpecifierPayload>,
}

/// `ei:specifierPayload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecifierPayload {
    #[serde(rename = "ei:rID", alias = "rID")]
    pub r_id: String,
    #[serde(rename = "ei:readingType", alias = "readingType")]
    pub reading_type: String,
}

/// `oadrCreateReport`: the VTN asks for reports (delivered by poll).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateReport {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "pyld:requestID", alias = "requestID")]
    pub request_id: String,
    #[serde(
        rename = "oadr:oadrReportRequest",
        alias = "oadrReportRequest",
        default
    )]
    pub report_requests: Vec<ReportRequest>,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_id: Option<String>,
}

/// `oadrCreatedReport`: a VEN acknowledges report requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedReport {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "ei:eiResponse", alias = "eiResponse")]
    pub response: EiResponse,
    #[serde(
        rename = "oadr:oadrPendingReports",
        alias = "oadrPendingReports",
        default
    )]
    pub pending_reports: PendingReports,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_id: Option<String>,
}

/// `oadr:oadrPendingReports`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PendingReports {
    #[serde(
        rename = "ei:reportRequestID",
        alias = "reportRequestID",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub report_request_ids: Vec<String>,
}

/// `oadrUpdateReport`: a VEN sends report data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateReport {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "pyld:requestID", alias = "requestID")]
    pub request_id: String,
    #[serde(rename = "oadr:oadrReport", alias = "oadrReport", default)]
    pub reports: Vec<OadrReport>,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_id: Option<String>,
}

/// `oadrUpdatedReport`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdatedReport {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "ei:eiResponse", alias = "eiResponse")]
    pub response: EiResponse,
    #[serde(
        rename = "ei:venID",
        alias = "venID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ven_id: Option<String>,
}

// ---------------------------------------------------------------- EiOpt

/// `oadrCreateOpt`: a VEN declares availability or opts in/out of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateOpt {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "ei:optID", alias = "optID")]
    pub opt_id: String,
    /// `optIn` or `optOut`.
    #[serde(rename = "ei:optType", alias = "optType")]
    pub opt_type: String,
    #[serde(rename = "ei:optReason", alias = "optReason")]
    pub opt_reason: String,
    #[serde(
        rename = "emix:marketContext",
        alias = "marketContext",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub market_context: Option<String>,
    #[serde(rename = "ei:venID", alias = "venID", default)]
    pub ven_id: Option<String>,
    #[serde(rename = "ei:createdDateTime", alias = "createdDateTime")]
    pub created_date_time: String,
    #[serde(rename = "pyld:requestID", alias = "requestID")]
    pub request_id: String,
    #[serde(
        rename = "ei:qualifiedEventID",
        alias = "qualifiedEventID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub qualified_event_id: Option<QualifiedEventId>,
    #[serde(rename = "ei:eiTarget", alias = "eiTarget", default)]
    pub target: Target,
}

/// `oadrCreatedOpt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedOpt {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "ei:eiResponse", alias = "eiResponse")]
    pub response: EiResponse,
    #[serde(rename = "ei:optID", alias = "optID")]
    pub opt_id: String,
}

/// `oadrCancelOpt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOpt {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "pyld:requestID", alias = "requestID")]
    pub request_id: String,
    #[serde(rename = "ei:optID", alias = "optID")]
    pub opt_id: String,
    #[serde(rename = "ei:venID", alias = "venID", default)]
    pub ven_id: Option<String>,
}

/// `oadrCanceledOpt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanceledOpt {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "ei:eiResponse", alias = "eiResponse")]
    pub response: EiResponse,
    #[serde(rename = "ei:optID", alias = "optID")]
    pub opt_id: String,
}

// ---------------------------------------------------------------- OadrPoll

/// `oadrPoll`: a pull-mode VEN asks for what is waiting for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Poll {
    #[serde(
        rename = "@ei:schemaVersion",
        alias = "@schemaVersion",
        default = "schema_version"
    )]
    pub schema_version: Option<String>,
    #[serde(rename = "ei:venID", alias = "venID", default)]
    pub ven_id: Option<String>,
}
