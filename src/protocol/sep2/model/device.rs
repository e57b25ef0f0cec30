//! Discovery and device resources: DeviceCapability, Time, EndDevice (with its CSIP-AUS
//! ConnectionPoint), Registration, DeviceInformation and FunctionSetAssignments.

use serde::{Deserialize, Serialize};

use super::{ActivePower, Link, ListLink, RealEnergy, SepResource, TimeType, sep_resources};

sep_resources!(
    DeviceCapability => "DeviceCapability",
    Time => "Time",
    EndDeviceList => "EndDeviceList",
    EndDevice => "EndDevice",
    Registration => "Registration",
    DeviceInformation => "DeviceInformation",
    FunctionSetAssignmentsList => "FunctionSetAssignmentsList",
    FunctionSetAssignments => "FunctionSetAssignments",
);

/// The entry point a client reads first (`DeviceCapability`, served at `/dcap`).
///
/// The links up to `usage_point_list_link` come from `FunctionSetAssignmentsBase`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceCapability {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Seconds between polls the server asks for (schema default 900).
    #[serde(rename = "@pollRate", skip_serializing_if = "Option::is_none")]
    pub poll_rate: Option<u32>,
    /// `CustomerAccountListLink`.
    #[serde(
        rename = "CustomerAccountListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub customer_account_list_link: Option<ListLink>,
    /// `DemandResponseProgramListLink`.
    #[serde(
        rename = "DemandResponseProgramListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub demand_response_program_list_link: Option<ListLink>,
    /// `DERProgramListLink`.
    #[serde(rename = "DERProgramListLink", skip_serializing_if = "Option::is_none")]
    pub der_program_list_link: Option<ListLink>,
    /// `FileListLink`.
    #[serde(rename = "FileListLink", skip_serializing_if = "Option::is_none")]
    pub file_list_link: Option<ListLink>,
    /// `MessagingProgramListLink`.
    #[serde(
        rename = "MessagingProgramListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub messaging_program_list_link: Option<ListLink>,
    /// `PrepaymentListLink`.
    #[serde(rename = "PrepaymentListLink", skip_serializing_if = "Option::is_none")]
    pub prepayment_list_link: Option<ListLink>,
    /// `ResponseSetListLink`.
    #[serde(
        rename = "ResponseSetListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_set_list_link: Option<ListLink>,
    /// `TariffProfileListLink`.
    #[serde(
        rename = "TariffProfileListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub tariff_profile_list_link: Option<ListLink>,
    /// `TimeLink`.
    #[serde(rename = "TimeLink", skip_serializing_if = "Option::is_none")]
    pub time_link: Option<Link>,
    /// `UsagePointListLink`.
    #[serde(rename = "UsagePointListLink", skip_serializing_if = "Option::is_none")]
    pub usage_point_list_link: Option<ListLink>,
    /// `EndDeviceListLink`: the client's EndDevices (or an aggregator's).
    #[serde(rename = "EndDeviceListLink", skip_serializing_if = "Option::is_none")]
    pub end_device_list_link: Option<ListLink>,
    /// `MirrorUsagePointListLink`: where clients post meter readings.
    #[serde(
        rename = "MirrorUsagePointListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub mirror_usage_point_list_link: Option<ListLink>,
    /// `SelfDeviceLink`.
    #[serde(rename = "SelfDeviceLink", skip_serializing_if = "Option::is_none")]
    pub self_device_link: Option<Link>,
}

/// The server's clock (`Time`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Time {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Seconds between polls the server asks for.
    #[serde(rename = "@pollRate", skip_serializing_if = "Option::is_none")]
    pub poll_rate: Option<u32>,
    /// Current UTC time, epoch seconds.
    #[serde(rename = "currentTime")]
    pub current_time: TimeType,
    /// End of daylight saving time this year.
    #[serde(rename = "dstEndTime")]
    pub dst_end_time: TimeType,
    /// Daylight saving offset in seconds.
    #[serde(rename = "dstOffset")]
    pub dst_offset: i32,
    /// Start of daylight saving time this year.
    #[serde(rename = "dstStartTime")]
    pub dst_start_time: TimeType,
    /// Local time (UTC plus offsets), epoch-like seconds.
    #[serde(rename = "localTime", skip_serializing_if = "Option::is_none")]
    pub local_time: Option<TimeType>,
    /// Clock quality (3 = intentionally uncoordinated, 4 = NTP level 0, ..., 7 = uncoordinated).
    #[serde(rename = "quality")]
    pub quality: u8,
    /// Time zone offset from UTC in seconds (without DST).
    #[serde(rename = "tzOffset")]
    pub tz_offset: i32,
}

/// A list of [`EndDevice`]s (`EndDeviceList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EndDeviceList {
    /// URI of this list.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Subscription support (0 none, 1 non-conditional, 2 conditional, 3 both).
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
    /// The devices of this page.
    #[serde(rename = "EndDevice", default, skip_serializing_if = "Vec::is_empty")]
    pub end_devices: Vec<EndDevice>,
}

/// A device known to the server (`EndDevice`), also what clients post to register.
///
/// The fields up to `s_fdi` come from `AbstractDevice`; `connection_point_link` is the
/// CSIP-AUS extension.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EndDevice {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Subscription support.
    #[serde(rename = "@subscribable", skip_serializing_if = "Option::is_none")]
    pub subscribable: Option<u8>,
    /// `ConfigurationLink`.
    #[serde(rename = "ConfigurationLink", skip_serializing_if = "Option::is_none")]
    pub configuration_link: Option<Link>,
    /// `DERListLink`: the DERs behind this device.
    #[serde(rename = "DERListLink", skip_serializing_if = "Option::is_none")]
    pub der_list_link: Option<ListLink>,
    /// Device category bitmap (`DeviceCategoryType`, hex).
    #[serde(rename = "deviceCategory", skip_serializing_if = "Option::is_none")]
    pub device_category: Option<String>,
    /// `DeviceInformationLink`.
    #[serde(
        rename = "DeviceInformationLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_information_link: Option<Link>,
    /// `DeviceStatusLink`.
    #[serde(rename = "DeviceStatusLink", skip_serializing_if = "Option::is_none")]
    pub device_status_link: Option<Link>,
    /// `FileStatusLink`.
    #[serde(rename = "FileStatusLink", skip_serializing_if = "Option::is_none")]
    pub file_status_link: Option<Link>,
    /// `IPInterfaceListLink`.
    #[serde(
        rename = "IPInterfaceListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_interface_list_link: Option<ListLink>,
    /// Long-form device identifier (40 hex digits).
    #[serde(rename = "lFDI", skip_serializing_if = "Option::is_none")]
    pub l_fdi: Option<String>,
    /// `LoadShedAvailabilityListLink`.
    #[serde(
        rename = "LoadShedAvailabilityListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_shed_availability_list_link: Option<ListLink>,
    /// `LogEventListLink`.
    #[serde(rename = "LogEventListLink", skip_serializing_if = "Option::is_none")]
    pub log_event_list_link: Option<ListLink>,
    /// `PowerStatusLink`.
    #[serde(rename = "PowerStatusLink", skip_serializing_if = "Option::is_none")]
    pub power_status_link: Option<Link>,
    /// Short-form device identifier (decimal, with check digit).
    #[serde(rename = "sFDI")]
    pub s_fdi: u64,
    /// When this resource last changed, epoch seconds.
    #[serde(rename = "changedTime")]
    pub changed_time: TimeType,
    /// Whether the device is enabled.
    #[serde(rename = "enabled", skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `FlowReservationRequestListLink`.
    #[serde(
        rename = "FlowReservationRequestListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_reservation_request_list_link: Option<ListLink>,
    /// `FlowReservationResponseListLink`.
    #[serde(
        rename = "FlowReservationResponseListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow_reservation_response_list_link: Option<ListLink>,
    /// `FunctionSetAssignmentsListLink`: the programs this device belongs to.
    #[serde(
        rename = "FunctionSetAssignmentsListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub function_set_assignments_list_link: Option<ListLink>,
    /// Seconds between posts the server asks for.
    #[serde(rename = "postRate", skip_serializing_if = "Option::is_none")]
    pub post_rate: Option<u32>,
    /// `RegistrationLink`.
    #[serde(rename = "RegistrationLink", skip_serializing_if = "Option::is_none")]
    pub registration_link: Option<Link>,
    /// `SubscriptionListLink`.
    #[serde(
        rename = "SubscriptionListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub subscription_list_link: Option<ListLink>,
    /// CSIP-AUS `ConnectionPointLink`: where the device's NMI is kept.
    #[serde(
        rename(
            serialize = "csipaus:ConnectionPointLink",
            deserialize = "ConnectionPointLink"
        ),
        skip_serializing_if = "Option::is_none"
    )]
    pub connection_point_link: Option<Link>,
}

/// The PIN a device was registered with (`Registration`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Registration {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Seconds between polls the server asks for.
    #[serde(rename = "@pollRate", skip_serializing_if = "Option::is_none")]
    pub poll_rate: Option<u32>,
    /// When the registration was made, epoch seconds.
    #[serde(rename = "dateTimeRegistered")]
    pub date_time_registered: TimeType,
    /// The registration PIN (`PINType`, with check digit).
    #[serde(rename = "pIN")]
    pub p_in: u32,
}

/// Demand response load control capabilities (`DRLCCapabilities`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DrlcCapabilities {
    /// Average energy use.
    #[serde(rename = "averageEnergy")]
    pub average_energy: RealEnergy,
    /// Maximum demand.
    #[serde(rename = "maxDemand")]
    pub max_demand: ActivePower,
    /// Bitmap of DRLC options (hex).
    #[serde(rename = "optionsImplemented")]
    pub options_implemented: String,
}

/// A location (`GPSLocationType`), as decimal degree strings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GpsLocation {
    /// Latitude.
    #[serde(rename = "lat")]
    pub lat: String,
    /// Longitude.
    #[serde(rename = "lon")]
    pub lon: String,
}

/// Manufacturer information about a device (`DeviceInformation`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceInformation {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Seconds between polls the server asks for.
    #[serde(rename = "@pollRate", skip_serializing_if = "Option::is_none")]
    pub poll_rate: Option<u32>,
    /// `DRLCCapabilities`.
    #[serde(rename = "DRLCCapabilities", skip_serializing_if = "Option::is_none")]
    pub drlc_capabilities: Option<DrlcCapabilities>,
    /// Bitmap of function sets implemented (hex).
    #[serde(
        rename = "functionsImplemented",
        skip_serializing_if = "Option::is_none"
    )]
    pub functions_implemented: Option<String>,
    /// `gpsLocation`.
    #[serde(rename = "gpsLocation", skip_serializing_if = "Option::is_none")]
    pub gps_location: Option<GpsLocation>,
    /// Long-form device identifier (40 hex digits).
    #[serde(rename = "lFDI")]
    pub l_fdi: String,
    /// Manufacture date, epoch seconds.
    #[serde(rename = "mfDate")]
    pub mf_date: TimeType,
    /// Hardware version.
    #[serde(rename = "mfHwVer")]
    pub mf_hw_ver: String,
    /// Manufacturer's IANA private enterprise number.
    #[serde(rename = "mfID")]
    pub mf_id: u32,
    /// Free-form manufacturer information.
    #[serde(rename = "mfInfo", skip_serializing_if = "Option::is_none")]
    pub mf_info: Option<String>,
    /// Model name.
    #[serde(rename = "mfModel")]
    pub mf_model: String,
    /// Serial number.
    #[serde(rename = "mfSerNum")]
    pub mf_ser_num: String,
    /// Primary power source (`PowerSourceType`).
    #[serde(rename = "primaryPower")]
    pub primary_power: u8,
    /// Secondary power source (`PowerSourceType`).
    #[serde(rename = "secondaryPower")]
    pub secondary_power: u8,
    /// `SupportedLocaleListLink`.
    #[serde(
        rename = "SupportedLocaleListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub supported_locale_list_link: Option<ListLink>,
    /// Software activation time, epoch seconds.
    #[serde(rename = "swActTime")]
    pub sw_act_time: TimeType,
    /// Software version.
    #[serde(rename = "swVer")]
    pub sw_ver: String,
}

/// CSIP-AUS `ConnectionPoint`: the network connection point of an EndDevice.
///
/// The root element and `connectionPointId` are in the CSIP-AUS namespace, so a document
/// holding one is written with the CSIP-AUS namespace as its default namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConnectionPoint {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// The connection point identifier, typically the NMI (at most 32 characters).
    #[serde(rename = "connectionPointId")]
    pub connection_point_id: String,
}

impl SepResource for ConnectionPoint {
    const ELEMENT: &'static str = "ConnectionPoint";
    const CSIPAUS_ROOT: bool = true;
}

/// A list of [`FunctionSetAssignments`] (`FunctionSetAssignmentsList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FunctionSetAssignmentsList {
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
    /// The assignments of this page.
    #[serde(
        rename = "FunctionSetAssignments",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub function_set_assignments: Vec<FunctionSetAssignments>,
}

/// A group of function set instances assigned to devices (`FunctionSetAssignments`).
///
/// The schema puts the `FunctionSetAssignmentsBase` links before `mRID`, unlike other
/// identified objects; the field order follows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FunctionSetAssignments {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Subscription support.
    #[serde(rename = "@subscribable", skip_serializing_if = "Option::is_none")]
    pub subscribable: Option<u8>,
    /// `CustomerAccountListLink`.
    #[serde(
        rename = "CustomerAccountListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub customer_account_list_link: Option<ListLink>,
    /// `DemandResponseProgramListLink`.
    #[serde(
        rename = "DemandResponseProgramListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub demand_response_program_list_link: Option<ListLink>,
    /// `DERProgramListLink`: the DER programs of this group.
    #[serde(rename = "DERProgramListLink", skip_serializing_if = "Option::is_none")]
    pub der_program_list_link: Option<ListLink>,
    /// `FileListLink`.
    #[serde(rename = "FileListLink", skip_serializing_if = "Option::is_none")]
    pub file_list_link: Option<ListLink>,
    /// `MessagingProgramListLink`.
    #[serde(
        rename = "MessagingProgramListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub messaging_program_list_link: Option<ListLink>,
    /// `PrepaymentListLink`.
    #[serde(rename = "PrepaymentListLink", skip_serializing_if = "Option::is_none")]
    pub prepayment_list_link: Option<ListLink>,
    /// `ResponseSetListLink`.
    #[serde(
        rename = "ResponseSetListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_set_list_link: Option<ListLink>,
    /// `TariffProfileListLink`.
    #[serde(
        rename = "TariffProfileListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub tariff_profile_list_link: Option<ListLink>,
    /// `TimeLink`.
    #[serde(rename = "TimeLink", skip_serializing_if = "Option::is_none")]
    pub time_link: Option<Link>,
    /// `UsagePointListLink`.
    #[serde(rename = "UsagePointListLink", skip_serializing_if = "Option::is_none")]
    pub usage_point_list_link: Option<ListLink>,
    /// Master resource identifier (hex, 128 bits).
    #[serde(rename = "mRID")]
    pub m_rid: String,
    /// Human-readable description (at most 32 characters).
    #[serde(rename = "description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Version of this resource.
    #[serde(rename = "version", skip_serializing_if = "Option::is_none")]
    pub version: Option<u16>,
}
