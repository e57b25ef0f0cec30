//! DER function set: programs, controls (with the CSIP-AUS dynamic operating envelope
//! extensions), defaults, curves, and the DER resources clients post (capability, settings,
//! status, availability).

use serde::{Deserialize, Serialize};

use super::{
    ActivePower, AmpereHour, ApparentPower, CurrentRms, DateTimeInterval, EventStatusCode,
    FixedVar, Link, ListLink, PowerFactor, PowerFactorWithExcitation, ReactivePower,
    ReactiveSusceptance, SepResource, TimeType, VoltageRms, WattHour, sep_resources,
};

sep_resources!(
    DerProgramList => "DERProgramList",
    DerProgram => "DERProgram",
    DerControlList => "DERControlList",
    DerControl => "DERControl",
    DefaultDerControl => "DefaultDERControl",
    DerCurveList => "DERCurveList",
    DerCurve => "DERCurve",
    DerList => "DERList",
    Der => "DER",
    DerCapability => "DERCapability",
    DerSettings => "DERSettings",
    DerStatus => "DERStatus",
    DerAvailability => "DERAvailability",
);

/// A list of [`DerProgram`]s (`DERProgramList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerProgramList {
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
    /// The programs of this page.
    #[serde(rename = "DERProgram", default, skip_serializing_if = "Vec::is_empty")]
    pub der_programs: Vec<DerProgram>,
}

/// A DER program: a group of controls with a precedence (`DERProgram`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerProgram {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Subscription support.
    #[serde(rename = "@subscribable", skip_serializing_if = "Option::is_none")]
    pub subscribable: Option<u8>,
    /// Master resource identifier (hex, 128 bits).
    #[serde(rename = "mRID")]
    pub m_rid: String,
    /// Human-readable description (at most 32 characters).
    #[serde(rename = "description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Version of this resource.
    #[serde(rename = "version", skip_serializing_if = "Option::is_none")]
    pub version: Option<u16>,
    /// `ActiveDERControlListLink`.
    #[serde(
        rename = "ActiveDERControlListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub active_der_control_list_link: Option<ListLink>,
    /// `DefaultDERControlLink`.
    #[serde(
        rename = "DefaultDERControlLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_der_control_link: Option<Link>,
    /// `DERControlListLink`.
    #[serde(rename = "DERControlListLink", skip_serializing_if = "Option::is_none")]
    pub der_control_list_link: Option<ListLink>,
    /// `DERCurveListLink`.
    #[serde(rename = "DERCurveListLink", skip_serializing_if = "Option::is_none")]
    pub der_curve_list_link: Option<ListLink>,
    /// Program precedence: lower numbers win.
    #[serde(rename = "primacy")]
    pub primacy: u8,
}

/// A list of [`DerControl`]s (`DERControlList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerControlList {
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
    /// The controls of this page.
    #[serde(rename = "DERControl", default, skip_serializing_if = "Vec::is_empty")]
    pub der_controls: Vec<DerControl>,
}

/// The status of an event (`EventStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventStatus {
    /// Current status code.
    #[serde(rename = "currentStatus")]
    pub current_status: EventStatusCode,
    /// When the status was set, epoch seconds.
    #[serde(rename = "dateTime")]
    pub date_time: TimeType,
    /// Whether another event may supersede this one.
    #[serde(rename = "potentiallySuperseded")]
    pub potentially_superseded: bool,
    /// When `potentially_superseded` was set.
    #[serde(
        rename = "potentiallySupersededTime",
        skip_serializing_if = "Option::is_none"
    )]
    pub potentially_superseded_time: Option<TimeType>,
    /// Why the status changed (at most 192 characters).
    #[serde(rename = "reason", skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A scheduled DER control, e.g. a dynamic operating envelope (`DERControl`).
///
/// Inherits from `RespondableSubscribableIdentifiedObject`, `Event` and `RandomizableEvent`,
/// in that order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerControl {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Where clients post their `DERControlResponse`s.
    #[serde(rename = "@replyTo", skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Which responses are required (bitmap, hex; schema default `00`).
    #[serde(rename = "@responseRequired", skip_serializing_if = "Option::is_none")]
    pub response_required: Option<String>,
    /// Subscription support.
    #[serde(rename = "@subscribable", skip_serializing_if = "Option::is_none")]
    pub subscribable: Option<u8>,
    /// Master resource identifier (hex, 128 bits).
    #[serde(rename = "mRID")]
    pub m_rid: String,
    /// Human-readable description (at most 32 characters).
    #[serde(rename = "description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Version of this resource.
    #[serde(rename = "version", skip_serializing_if = "Option::is_none")]
    pub version: Option<u16>,
    /// When the event was created, epoch seconds.
    #[serde(rename = "creationTime")]
    pub creation_time: TimeType,
    /// Current status.
    #[serde(rename = "EventStatus")]
    pub event_status: EventStatus,
    /// When the event applies.
    #[serde(rename = "interval")]
    pub interval: DateTimeInterval,
    /// Randomization of the end, seconds (-3600..=3600).
    #[serde(rename = "randomizeDuration", skip_serializing_if = "Option::is_none")]
    pub randomize_duration: Option<i16>,
    /// Randomization of the start, seconds (-3600..=3600).
    #[serde(rename = "randomizeStart", skip_serializing_if = "Option::is_none")]
    pub randomize_start: Option<i16>,
    /// The controls themselves.
    #[serde(rename = "DERControlBase")]
    pub der_control_base: DerControlBase,
    /// Device categories the event applies to (bitmap, hex).
    #[serde(rename = "deviceCategory", skip_serializing_if = "Option::is_none")]
    pub device_category: Option<String>,
}

/// Frequency droop parameters (`FreqDroopType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FreqDroop {
    /// Over-frequency dead band, hundredths of a hertz.
    #[serde(rename = "dBOF")]
    pub d_bof: u32,
    /// Under-frequency dead band, hundredths of a hertz.
    #[serde(rename = "dBUF")]
    pub d_buf: u32,
    /// Over-frequency droop per-unit, hundredths.
    #[serde(rename = "kOF")]
    pub k_of: u16,
    /// Under-frequency droop per-unit, hundredths.
    #[serde(rename = "kUF")]
    pub k_uf: u16,
    /// Open loop response time, hundredths of a second.
    #[serde(rename = "openLoopTms")]
    pub open_loop_tms: u16,
}

/// The control modes of a DER control or default control (`DERControlBase`), with the
/// CSIP-AUS extensions at the end.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerControlBase {
    /// Connect (`true`) or disconnect from the grid.
    #[serde(rename = "opModConnect", skip_serializing_if = "Option::is_none")]
    pub op_mod_connect: Option<bool>,
    /// Energize (`true`) or cease to energize.
    #[serde(rename = "opModEnergize", skip_serializing_if = "Option::is_none")]
    pub op_mod_energize: Option<bool>,
    /// Fixed power factor when absorbing active power.
    #[serde(
        rename = "opModFixedPFAbsorbW",
        skip_serializing_if = "Option::is_none"
    )]
    pub op_mod_fixed_pf_absorb_w: Option<PowerFactorWithExcitation>,
    /// Fixed power factor when injecting active power.
    #[serde(
        rename = "opModFixedPFInjectW",
        skip_serializing_if = "Option::is_none"
    )]
    pub op_mod_fixed_pf_inject_w: Option<PowerFactorWithExcitation>,
    /// Fixed reactive power.
    #[serde(rename = "opModFixedVar", skip_serializing_if = "Option::is_none")]
    pub op_mod_fixed_var: Option<FixedVar>,
    /// Fixed active power as a signed percentage of setMaxW, hundredths of a percent.
    #[serde(rename = "opModFixedW", skip_serializing_if = "Option::is_none")]
    pub op_mod_fixed_w: Option<i16>,
    /// Frequency droop.
    #[serde(rename = "opModFreqDroop", skip_serializing_if = "Option::is_none")]
    pub op_mod_freq_droop: Option<FreqDroop>,
    /// Frequency-watt curve.
    #[serde(rename = "opModFreqWatt", skip_serializing_if = "Option::is_none")]
    pub op_mod_freq_watt: Option<Link>,
    /// High frequency ride-through, may trip.
    #[serde(rename = "opModHFRTMayTrip", skip_serializing_if = "Option::is_none")]
    pub op_mod_hfrt_may_trip: Option<Link>,
    /// High frequency ride-through, must trip.
    #[serde(rename = "opModHFRTMustTrip", skip_serializing_if = "Option::is_none")]
    pub op_mod_hfrt_must_trip: Option<Link>,
    /// High voltage ride-through, may trip.
    #[serde(rename = "opModHVRTMayTrip", skip_serializing_if = "Option::is_none")]
    pub op_mod_hvrt_may_trip: Option<Link>,
    /// High voltage ride-through, momentary cessation.
    #[serde(
        rename = "opModHVRTMomentaryCessation",
        skip_serializing_if = "Option::is_none"
    )]
    pub op_mod_hvrt_momentary_cessation: Option<Link>,
    /// High voltage ride-through, must trip.
    #[serde(rename = "opModHVRTMustTrip", skip_serializing_if = "Option::is_none")]
    pub op_mod_hvrt_must_trip: Option<Link>,
    /// Low frequency ride-through, may trip.
    #[serde(rename = "opModLFRTMayTrip", skip_serializing_if = "Option::is_none")]
    pub op_mod_lfrt_may_trip: Option<Link>,
    /// Low frequency ride-through, must trip.
    #[serde(rename = "opModLFRTMustTrip", skip_serializing_if = "Option::is_none")]
    pub op_mod_lfrt_must_trip: Option<Link>,
    /// Low voltage ride-through, may trip.
    #[serde(rename = "opModLVRTMayTrip", skip_serializing_if = "Option::is_none")]
    pub op_mod_lvrt_may_trip: Option<Link>,
    /// Low voltage ride-through, momentary cessation.
    #[serde(
        rename = "opModLVRTMomentaryCessation",
        skip_serializing_if = "Option::is_none"
    )]
    pub op_mod_lvrt_momentary_cessation: Option<Link>,
    /// Low voltage ride-through, must trip.
    #[serde(rename = "opModLVRTMustTrip", skip_serializing_if = "Option::is_none")]
    pub op_mod_lvrt_must_trip: Option<Link>,
    /// Maximum active power as a percentage of setMaxW, hundredths of a percent.
    #[serde(rename = "opModMaxLimW", skip_serializing_if = "Option::is_none")]
    pub op_mod_max_lim_w: Option<u16>,
    /// Target reactive power.
    #[serde(rename = "opModTargetVar", skip_serializing_if = "Option::is_none")]
    pub op_mod_target_var: Option<ReactivePower>,
    /// Target active power.
    #[serde(rename = "opModTargetW", skip_serializing_if = "Option::is_none")]
    pub op_mod_target_w: Option<ActivePower>,
    /// Volt-var curve.
    #[serde(rename = "opModVoltVar", skip_serializing_if = "Option::is_none")]
    pub op_mod_volt_var: Option<Link>,
    /// Volt-watt curve.
    #[serde(rename = "opModVoltWatt", skip_serializing_if = "Option::is_none")]
    pub op_mod_volt_watt: Option<Link>,
    /// Watt-power factor curve.
    #[serde(rename = "opModWattPF", skip_serializing_if = "Option::is_none")]
    pub op_mod_watt_pf: Option<Link>,
    /// Watt-var curve.
    #[serde(rename = "opModWattVar", skip_serializing_if = "Option::is_none")]
    pub op_mod_watt_var: Option<Link>,
    /// Ramp time to reach the new setting, hundredths of a second.
    #[serde(rename = "rampTms", skip_serializing_if = "Option::is_none")]
    pub ramp_tms: Option<u16>,
    /// CSIP-AUS: limit on imported active power at the connection point.
    #[serde(
        rename(serialize = "csipaus:opModImpLimW", deserialize = "opModImpLimW"),
        skip_serializing_if = "Option::is_none"
    )]
    pub op_mod_imp_lim_w: Option<ActivePower>,
    /// CSIP-AUS: limit on exported active power at the connection point.
    #[serde(
        rename(serialize = "csipaus:opModExpLimW", deserialize = "opModExpLimW"),
        skip_serializing_if = "Option::is_none"
    )]
    pub op_mod_exp_lim_w: Option<ActivePower>,
    /// CSIP-AUS: limit on generation (discharge) of the device.
    #[serde(
        rename(serialize = "csipaus:opModGenLimW", deserialize = "opModGenLimW"),
        skip_serializing_if = "Option::is_none"
    )]
    pub op_mod_gen_lim_w: Option<ActivePower>,
    /// CSIP-AUS: limit on load (charge) of the device.
    #[serde(
        rename(serialize = "csipaus:opModLoadLimW", deserialize = "opModLoadLimW"),
        skip_serializing_if = "Option::is_none"
    )]
    pub op_mod_load_lim_w: Option<ActivePower>,
    /// CSIP-AUS v1.3 only: target output of the storage within the EndDevice.
    #[serde(
        rename(
            serialize = "csipaus:opModStorageTargetW",
            deserialize = "opModStorageTargetW"
        ),
        skip_serializing_if = "Option::is_none"
    )]
    pub op_mod_storage_target_w: Option<ActivePower>,
}

/// The control that applies when no event is active (`DefaultDERControl`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DefaultDerControl {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Subscription support.
    #[serde(rename = "@subscribable", skip_serializing_if = "Option::is_none")]
    pub subscribable: Option<u8>,
    /// Master resource identifier (hex, 128 bits).
    #[serde(rename = "mRID")]
    pub m_rid: String,
    /// Human-readable description (at most 32 characters).
    #[serde(rename = "description", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Version of this resource.
    #[serde(rename = "version", skip_serializing_if = "Option::is_none")]
    pub version: Option<u16>,
    /// The default controls.
    #[serde(rename = "DERControlBase")]
    pub der_control_base: DerControlBase,
    /// Enter service delay, hundredths of a second.
    #[serde(rename = "setESDelay", skip_serializing_if = "Option::is_none")]
    pub set_es_delay: Option<u32>,
    /// Enter service high frequency, hundredths of a hertz.
    #[serde(rename = "setESHighFreq", skip_serializing_if = "Option::is_none")]
    pub set_es_high_freq: Option<u16>,
    /// Enter service high voltage, hundredths of a percent of nominal.
    #[serde(rename = "setESHighVolt", skip_serializing_if = "Option::is_none")]
    pub set_es_high_volt: Option<i16>,
    /// Enter service low frequency, hundredths of a hertz.
    #[serde(rename = "setESLowFreq", skip_serializing_if = "Option::is_none")]
    pub set_es_low_freq: Option<u16>,
    /// Enter service low voltage, hundredths of a percent of nominal.
    #[serde(rename = "setESLowVolt", skip_serializing_if = "Option::is_none")]
    pub set_es_low_volt: Option<i16>,
    /// Enter service ramp time, hundredths of a second.
    #[serde(rename = "setESRampTms", skip_serializing_if = "Option::is_none")]
    pub set_es_ramp_tms: Option<u32>,
    /// Enter service random delay, hundredths of a second.
    #[serde(rename = "setESRandomDelay", skip_serializing_if = "Option::is_none")]
    pub set_es_random_delay: Option<u32>,
    /// Default ramp rate, hundredths of a percent of setMaxW per second.
    #[serde(rename = "setGradW", skip_serializing_if = "Option::is_none")]
    pub set_grad_w: Option<u16>,
    /// Soft-start ramp rate, hundredths of a percent of setMaxW per second.
    #[serde(rename = "setSoftGradW", skip_serializing_if = "Option::is_none")]
    pub set_soft_grad_w: Option<u16>,
}

/// A list of [`DerCurve`]s (`DERCurveList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerCurveList {
    /// URI of this list.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Number of items in the whole list.
    #[serde(rename = "@all")]
    pub all: u32,
    /// Number of items in this page.
    #[serde(rename = "@results")]
    pub results: u32,
    /// The curves of this page.
    #[serde(rename = "DERCurve", default, skip_serializing_if = "Vec::is_empty")]
    pub der_curves: Vec<DerCurve>,
}

/// One point of a curve (`CurveData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CurveData {
    /// Excitation for power factor curves.
    #[serde(rename = "excitation", skip_serializing_if = "Option::is_none")]
    pub excitation: Option<bool>,
    /// X value (scaled by the curve's xMultiplier).
    #[serde(rename = "xvalue")]
    pub xvalue: i32,
    /// Y value (scaled by the curve's yMultiplier).
    #[serde(rename = "yvalue")]
    pub yvalue: i32,
}

/// A DER curve such as volt-var (`DERCurve`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerCurve {
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
    /// Whether the reference voltage adjusts itself.
    #[serde(
        rename = "autonomousVRefEnable",
        skip_serializing_if = "Option::is_none"
    )]
    pub autonomous_v_ref_enable: Option<bool>,
    /// Time constant of the reference voltage adjustment, seconds.
    #[serde(
        rename = "autonomousVRefTimeConstant",
        skip_serializing_if = "Option::is_none"
    )]
    pub autonomous_v_ref_time_constant: Option<u32>,
    /// When the curve was created, epoch seconds.
    #[serde(rename = "creationTime")]
    pub creation_time: TimeType,
    /// The points (1 to 10).
    #[serde(rename = "CurveData", default)]
    pub curve_data: Vec<CurveData>,
    /// Kind of curve (`DERCurveType`).
    #[serde(rename = "curveType")]
    pub curve_type: u8,
    /// Open loop response time, hundredths of a second.
    #[serde(rename = "openLoopTms", skip_serializing_if = "Option::is_none")]
    pub open_loop_tms: Option<u16>,
    /// Decreasing ramp time, hundredths of a second.
    #[serde(rename = "rampDecTms", skip_serializing_if = "Option::is_none")]
    pub ramp_dec_tms: Option<u16>,
    /// Increasing ramp time, hundredths of a second.
    #[serde(rename = "rampIncTms", skip_serializing_if = "Option::is_none")]
    pub ramp_inc_tms: Option<u16>,
    /// First-order low pass time constant, hundredths of a second.
    #[serde(rename = "rampPT1Tms", skip_serializing_if = "Option::is_none")]
    pub ramp_pt1_tms: Option<u16>,
    /// Reference voltage, hundredths of a percent of nominal.
    #[serde(rename = "vRef", skip_serializing_if = "Option::is_none")]
    pub v_ref: Option<u16>,
    /// Power of ten applied to the x values.
    #[serde(rename = "xMultiplier")]
    pub x_multiplier: i8,
    /// Power of ten applied to the y values.
    #[serde(rename = "yMultiplier")]
    pub y_multiplier: i8,
    /// What the y values refer to (`DERUnitRefType`).
    #[serde(rename = "yRefType")]
    pub y_ref_type: u8,
}

/// A list of [`Der`]s (`DERList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerList {
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
    /// The DERs of this page.
    #[serde(rename = "DER", default, skip_serializing_if = "Vec::is_empty")]
    pub ders: Vec<Der>,
}

/// A DER behind an EndDevice (`DER`): links to what the client reports about it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Der {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Subscription support.
    #[serde(rename = "@subscribable", skip_serializing_if = "Option::is_none")]
    pub subscribable: Option<u8>,
    /// `AssociatedDERProgramListLink`.
    #[serde(
        rename = "AssociatedDERProgramListLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub associated_der_program_list_link: Option<ListLink>,
    /// `AssociatedUsagePointLink`.
    #[serde(
        rename = "AssociatedUsagePointLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub associated_usage_point_link: Option<Link>,
    /// `CurrentDERProgramLink`.
    #[serde(
        rename = "CurrentDERProgramLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub current_der_program_link: Option<Link>,
    /// `DERAvailabilityLink`.
    #[serde(
        rename = "DERAvailabilityLink",
        skip_serializing_if = "Option::is_none"
    )]
    pub der_availability_link: Option<Link>,
    /// `DERCapabilityLink`.
    #[serde(rename = "DERCapabilityLink", skip_serializing_if = "Option::is_none")]
    pub der_capability_link: Option<Link>,
    /// `DERSettingsLink`.
    #[serde(rename = "DERSettingsLink", skip_serializing_if = "Option::is_none")]
    pub der_settings_link: Option<Link>,
    /// `DERStatusLink`.
    #[serde(rename = "DERStatusLink", skip_serializing_if = "Option::is_none")]
    pub der_status_link: Option<Link>,
}

/// Nameplate ratings of a DER (`DERCapability`), with the CSIP-AUS mode bitmaps at the end.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerCapability {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Bitmap of supported control modes (`DERControlType`, hex).
    #[serde(rename = "modesSupported")]
    pub modes_supported: String,
    /// Abnormal performance category (IEEE 1547).
    #[serde(
        rename = "rtgAbnormalCategory",
        skip_serializing_if = "Option::is_none"
    )]
    pub rtg_abnormal_category: Option<u8>,
    /// Maximum continuous current.
    #[serde(rename = "rtgMaxA", skip_serializing_if = "Option::is_none")]
    pub rtg_max_a: Option<CurrentRms>,
    /// Usable energy storage capacity in Ah.
    #[serde(rename = "rtgMaxAh", skip_serializing_if = "Option::is_none")]
    pub rtg_max_ah: Option<AmpereHour>,
    /// Maximum apparent power charge rate.
    #[serde(rename = "rtgMaxChargeRateVA", skip_serializing_if = "Option::is_none")]
    pub rtg_max_charge_rate_va: Option<ApparentPower>,
    /// Maximum active power charge rate.
    #[serde(rename = "rtgMaxChargeRateW", skip_serializing_if = "Option::is_none")]
    pub rtg_max_charge_rate_w: Option<ActivePower>,
    /// Maximum apparent power discharge rate.
    #[serde(
        rename = "rtgMaxDischargeRateVA",
        skip_serializing_if = "Option::is_none"
    )]
    pub rtg_max_discharge_rate_va: Option<ApparentPower>,
    /// Maximum active power discharge rate.
    #[serde(
        rename = "rtgMaxDischargeRateW",
        skip_serializing_if = "Option::is_none"
    )]
    pub rtg_max_discharge_rate_w: Option<ActivePower>,
    /// Maximum AC voltage.
    #[serde(rename = "rtgMaxV", skip_serializing_if = "Option::is_none")]
    pub rtg_max_v: Option<VoltageRms>,
    /// Maximum apparent power.
    #[serde(rename = "rtgMaxVA", skip_serializing_if = "Option::is_none")]
    pub rtg_max_va: Option<ApparentPower>,
    /// Maximum reactive power delivered.
    #[serde(rename = "rtgMaxVar", skip_serializing_if = "Option::is_none")]
    pub rtg_max_var: Option<ReactivePower>,
    /// Maximum reactive power absorbed.
    #[serde(rename = "rtgMaxVarNeg", skip_serializing_if = "Option::is_none")]
    pub rtg_max_var_neg: Option<ReactivePower>,
    /// Maximum active power output.
    #[serde(rename = "rtgMaxW")]
    pub rtg_max_w: ActivePower,
    /// Maximum energy storage capacity.
    #[serde(rename = "rtgMaxWh", skip_serializing_if = "Option::is_none")]
    pub rtg_max_wh: Option<WattHour>,
    /// Minimum power factor, over-excited.
    #[serde(
        rename = "rtgMinPFOverExcited",
        skip_serializing_if = "Option::is_none"
    )]
    pub rtg_min_pf_over_excited: Option<PowerFactor>,
    /// Minimum power factor, under-excited.
    #[serde(
        rename = "rtgMinPFUnderExcited",
        skip_serializing_if = "Option::is_none"
    )]
    pub rtg_min_pf_under_excited: Option<PowerFactor>,
    /// Minimum AC voltage.
    #[serde(rename = "rtgMinV", skip_serializing_if = "Option::is_none")]
    pub rtg_min_v: Option<VoltageRms>,
    /// Normal operating performance category (IEEE 1547).
    #[serde(rename = "rtgNormalCategory", skip_serializing_if = "Option::is_none")]
    pub rtg_normal_category: Option<u8>,
    /// Power factor at rated over-excited active power.
    #[serde(rename = "rtgOverExcitedPF", skip_serializing_if = "Option::is_none")]
    pub rtg_over_excited_pf: Option<PowerFactor>,
    /// Active power at rated over-excited power factor.
    #[serde(rename = "rtgOverExcitedW", skip_serializing_if = "Option::is_none")]
    pub rtg_over_excited_w: Option<ActivePower>,
    /// Reactive susceptance that remains connected to the grid.
    #[serde(
        rename = "rtgReactiveSusceptance",
        skip_serializing_if = "Option::is_none"
    )]
    pub rtg_reactive_susceptance: Option<ReactiveSusceptance>,
    /// Power factor at rated under-excited active power.
    #[serde(rename = "rtgUnderExcitedPF", skip_serializing_if = "Option::is_none")]
    pub rtg_under_excited_pf: Option<PowerFactor>,
    /// Active power at rated under-excited power factor.
    #[serde(rename = "rtgUnderExcitedW", skip_serializing_if = "Option::is_none")]
    pub rtg_under_excited_w: Option<ActivePower>,
    /// Nominal AC voltage.
    #[serde(rename = "rtgVNom", skip_serializing_if = "Option::is_none")]
    pub rtg_v_nom: Option<VoltageRms>,
    /// Kind of DER (`DERType`: 4 PV, 80 storage, 82 PV + storage, ...).
    #[serde(rename = "type")]
    pub der_type: u8,
    /// CSIP-AUS: bitmap of supported DOE controls (hex). Required by the CSIP-AUS schemas.
    #[serde(
        rename(
            serialize = "csipaus:doeModesSupported",
            deserialize = "doeModesSupported"
        ),
        skip_serializing_if = "Option::is_none"
    )]
    pub doe_modes_supported: Option<String>,
    /// CSIP-AUS v1.3 only: bitmap of supported VPP controls (hex).
    #[serde(
        rename(
            serialize = "csipaus:vppModesSupported",
            deserialize = "vppModesSupported"
        ),
        skip_serializing_if = "Option::is_none"
    )]
    pub vpp_modes_supported: Option<String>,
}

/// Settings in force on a DER (`DERSettings`), with the CSIP-AUS extensions at the end.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerSettings {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Subscription support.
    #[serde(rename = "@subscribable", skip_serializing_if = "Option::is_none")]
    pub subscribable: Option<u8>,
    /// Bitmap of enabled control modes (`DERControlType`, hex).
    #[serde(rename = "modesEnabled", skip_serializing_if = "Option::is_none")]
    pub modes_enabled: Option<String>,
    /// Enter service delay, hundredths of a second.
    #[serde(rename = "setESDelay", skip_serializing_if = "Option::is_none")]
    pub set_es_delay: Option<u32>,
    /// Enter service high frequency, hundredths of a hertz.
    #[serde(rename = "setESHighFreq", skip_serializing_if = "Option::is_none")]
    pub set_es_high_freq: Option<u16>,
    /// Enter service high voltage, hundredths of a percent of nominal.
    #[serde(rename = "setESHighVolt", skip_serializing_if = "Option::is_none")]
    pub set_es_high_volt: Option<i16>,
    /// Enter service low frequency, hundredths of a hertz.
    #[serde(rename = "setESLowFreq", skip_serializing_if = "Option::is_none")]
    pub set_es_low_freq: Option<u16>,
    /// Enter service low voltage, hundredths of a percent of nominal.
    #[serde(rename = "setESLowVolt", skip_serializing_if = "Option::is_none")]
    pub set_es_low_volt: Option<i16>,
    /// Enter service ramp time, hundredths of a second.
    #[serde(rename = "setESRampTms", skip_serializing_if = "Option::is_none")]
    pub set_es_ramp_tms: Option<u32>,
    /// Enter service random delay, hundredths of a second.
    #[serde(rename = "setESRandomDelay", skip_serializing_if = "Option::is_none")]
    pub set_es_random_delay: Option<u32>,
    /// Default ramp rate, hundredths of a percent of setMaxW per second.
    #[serde(rename = "setGradW")]
    pub set_grad_w: u16,
    /// Maximum continuous current.
    #[serde(rename = "setMaxA", skip_serializing_if = "Option::is_none")]
    pub set_max_a: Option<CurrentRms>,
    /// Usable energy storage capacity in Ah.
    #[serde(rename = "setMaxAh", skip_serializing_if = "Option::is_none")]
    pub set_max_ah: Option<AmpereHour>,
    /// Maximum apparent power charge rate.
    #[serde(rename = "setMaxChargeRateVA", skip_serializing_if = "Option::is_none")]
    pub set_max_charge_rate_va: Option<ApparentPower>,
    /// Maximum active power charge rate.
    #[serde(rename = "setMaxChargeRateW", skip_serializing_if = "Option::is_none")]
    pub set_max_charge_rate_w: Option<ActivePower>,
    /// Maximum apparent power discharge rate.
    #[serde(
        rename = "setMaxDischargeRateVA",
        skip_serializing_if = "Option::is_none"
    )]
    pub set_max_discharge_rate_va: Option<ApparentPower>,
    /// Maximum active power discharge rate.
    #[serde(
        rename = "setMaxDischargeRateW",
        skip_serializing_if = "Option::is_none"
    )]
    pub set_max_discharge_rate_w: Option<ActivePower>,
    /// Maximum AC voltage.
    #[serde(rename = "setMaxV", skip_serializing_if = "Option::is_none")]
    pub set_max_v: Option<VoltageRms>,
    /// Maximum apparent power.
    #[serde(rename = "setMaxVA", skip_serializing_if = "Option::is_none")]
    pub set_max_va: Option<ApparentPower>,
    /// Maximum reactive power delivered.
    #[serde(rename = "setMaxVar", skip_serializing_if = "Option::is_none")]
    pub set_max_var: Option<ReactivePower>,
    /// Maximum reactive power absorbed.
    #[serde(rename = "setMaxVarNeg", skip_serializing_if = "Option::is_none")]
    pub set_max_var_neg: Option<ReactivePower>,
    /// Maximum active power output.
    #[serde(rename = "setMaxW")]
    pub set_max_w: ActivePower,
    /// Maximum energy storage capacity.
    #[serde(rename = "setMaxWh", skip_serializing_if = "Option::is_none")]
    pub set_max_wh: Option<WattHour>,
    /// Minimum power factor, over-excited.
    #[serde(
        rename = "setMinPFOverExcited",
        skip_serializing_if = "Option::is_none"
    )]
    pub set_min_pf_over_excited: Option<PowerFactor>,
    /// Minimum power factor, under-excited.
    #[serde(
        rename = "setMinPFUnderExcited",
        skip_serializing_if = "Option::is_none"
    )]
    pub set_min_pf_under_excited: Option<PowerFactor>,
    /// Minimum AC voltage.
    #[serde(rename = "setMinV", skip_serializing_if = "Option::is_none")]
    pub set_min_v: Option<VoltageRms>,
    /// Soft-start ramp rate, hundredths of a percent of setMaxW per second.
    #[serde(rename = "setSoftGradW", skip_serializing_if = "Option::is_none")]
    pub set_soft_grad_w: Option<u16>,
    /// Nominal AC voltage.
    #[serde(rename = "setVNom", skip_serializing_if = "Option::is_none")]
    pub set_v_nom: Option<VoltageRms>,
    /// Reference voltage.
    #[serde(rename = "setVRef", skip_serializing_if = "Option::is_none")]
    pub set_v_ref: Option<VoltageRms>,
    /// Reference voltage offset.
    #[serde(rename = "setVRefOfs", skip_serializing_if = "Option::is_none")]
    pub set_v_ref_ofs: Option<VoltageRms>,
    /// When these settings were last changed, epoch seconds.
    #[serde(rename = "updatedTime")]
    pub updated_time: TimeType,
    /// CSIP-AUS: bitmap of enabled DOE controls (hex).
    #[serde(
        rename(serialize = "csipaus:doeModesEnabled", deserialize = "doeModesEnabled"),
        skip_serializing_if = "Option::is_none"
    )]
    pub doe_modes_enabled: Option<String>,
    /// CSIP-AUS v1.3 only: bitmap of enabled VPP controls (hex).
    #[serde(
        rename(serialize = "csipaus:vppModesEnabled", deserialize = "vppModesEnabled"),
        skip_serializing_if = "Option::is_none"
    )]
    pub vpp_modes_enabled: Option<String>,
    /// CSIP-AUS v1.3 only: minimum stored energy kept in reserve.
    #[serde(
        rename(serialize = "csipaus:setMinWh", deserialize = "setMinWh"),
        skip_serializing_if = "Option::is_none"
    )]
    pub set_min_wh: Option<WattHour>,
}

/// A hex-bitmap status with the time it was observed (`ConnectStatusType`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConnectStatus {
    /// When the value was observed, epoch seconds.
    #[serde(rename = "dateTime")]
    pub date_time: TimeType,
    /// Bitmap (hex): bit 0 connected, 1 available, 2 operating, 3 test, 4 fault/error.
    #[serde(rename = "value")]
    pub value: String,
}

/// A numeric status with the time it was observed (`InverterStatusType`,
/// `LocalControlModeStatusType`, `OperationalModeStatusType`, `StorageModeStatusType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CodeStatus {
    /// When the value was observed, epoch seconds.
    #[serde(rename = "dateTime")]
    pub date_time: TimeType,
    /// The status code.
    #[serde(rename = "value")]
    pub value: u8,
}

/// The manufacturer's status text (`ManufacturerStatusType`, at most 6 characters).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ManufacturerStatus {
    /// When the value was observed, epoch seconds.
    #[serde(rename = "dateTime")]
    pub date_time: TimeType,
    /// The status text.
    #[serde(rename = "value")]
    pub value: String,
}

/// State of charge with the time it was observed (`StateOfChargeStatusType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StateOfChargeStatus {
    /// When the value was observed, epoch seconds.
    #[serde(rename = "dateTime")]
    pub date_time: TimeType,
    /// State of charge, hundredths of a percent.
    #[serde(rename = "value")]
    pub value: u16,
}

/// The current status of a DER (`DERStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerStatus {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Subscription support.
    #[serde(rename = "@subscribable", skip_serializing_if = "Option::is_none")]
    pub subscribable: Option<u8>,
    /// Active alarms (bitmap, hex).
    #[serde(rename = "alarmStatus", skip_serializing_if = "Option::is_none")]
    pub alarm_status: Option<String>,
    /// Generator connection status.
    #[serde(rename = "genConnectStatus", skip_serializing_if = "Option::is_none")]
    pub gen_connect_status: Option<ConnectStatus>,
    /// Inverter status code.
    #[serde(rename = "inverterStatus", skip_serializing_if = "Option::is_none")]
    pub inverter_status: Option<CodeStatus>,
    /// Local control mode (0 remote, 1 local).
    #[serde(
        rename = "localControlModeStatus",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_control_mode_status: Option<CodeStatus>,
    /// Manufacturer status text.
    #[serde(rename = "manufacturerStatus", skip_serializing_if = "Option::is_none")]
    pub manufacturer_status: Option<ManufacturerStatus>,
    /// Operational mode code.
    #[serde(
        rename = "operationalModeStatus",
        skip_serializing_if = "Option::is_none"
    )]
    pub operational_mode_status: Option<CodeStatus>,
    /// When the status was read, epoch seconds.
    #[serde(rename = "readingTime")]
    pub reading_time: TimeType,
    /// State of charge.
    #[serde(
        rename = "stateOfChargeStatus",
        skip_serializing_if = "Option::is_none"
    )]
    pub state_of_charge_status: Option<StateOfChargeStatus>,
    /// Storage mode code.
    #[serde(rename = "storageModeStatus", skip_serializing_if = "Option::is_none")]
    pub storage_mode_status: Option<CodeStatus>,
    /// Storage connection status.
    #[serde(rename = "storConnectStatus", skip_serializing_if = "Option::is_none")]
    pub stor_connect_status: Option<ConnectStatus>,
}

/// What a DER can deliver now (`DERAvailability`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DerAvailability {
    /// URI of this resource.
    #[serde(rename = "@href", skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Subscription support.
    #[serde(rename = "@subscribable", skip_serializing_if = "Option::is_none")]
    pub subscribable: Option<u8>,
    /// Seconds the DER can deliver statWAvail.
    #[serde(
        rename = "availabilityDuration",
        skip_serializing_if = "Option::is_none"
    )]
    pub availability_duration: Option<u32>,
    /// Seconds the DER can charge at its maximum rate.
    #[serde(rename = "maxChargeDuration", skip_serializing_if = "Option::is_none")]
    pub max_charge_duration: Option<u32>,
    /// When the availability was read, epoch seconds.
    #[serde(rename = "readingTime")]
    pub reading_time: TimeType,
    /// Reserved charge capacity, hundredths of a percent.
    #[serde(
        rename = "reserveChargePercent",
        skip_serializing_if = "Option::is_none"
    )]
    pub reserve_charge_percent: Option<u16>,
    /// Reserved energy, hundredths of a percent.
    #[serde(rename = "reservePercent", skip_serializing_if = "Option::is_none")]
    pub reserve_percent: Option<u16>,
    /// Available reactive power.
    #[serde(rename = "statVarAvail", skip_serializing_if = "Option::is_none")]
    pub stat_var_avail: Option<ReactivePower>,
    /// Available active power.
    #[serde(rename = "statWAvail", skip_serializing_if = "Option::is_none")]
    pub stat_w_avail: Option<ActivePower>,
}
