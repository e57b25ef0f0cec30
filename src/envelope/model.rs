//! The vocabulary of operating envelopes: programs, controls, default controls, the control
//! modes they carry and the IEEE 2030.5 event status codes.
//!
//! Every quantity is in SI units (W, Wh, %, s) as `f64`. Protocol adapters convert wire
//! encodings (percentages of rated power, power-of-ten multipliers, booleans with inverted
//! meanings) into these types at the edge; nothing here knows a wire format.

use super::curves::CurveType;
use crate::domain::EpochSeconds;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps an identifier.
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
    };
}

string_id!(
    /// Identifies one control (an IEEE 2030.5 DERControl, a CSIP-AUS envelope). Ordered
    /// byte-wise: when two controls share a creation time the larger id counts as the newer.
    /// 2030.5 mRIDs are fixed-length hex, for which byte order equals numeric order.
    ControlId
);

string_id!(
    /// Identifies a program (an IEEE 2030.5 DERProgram, a CSIP-AUS control group).
    ProgramId
);

/// A program that controls belong to. Its primacy ranks it against other programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub id: ProgramId,
    /// As in IEEE 2030.5: the lower the value, the higher the priority (0 outranks 1).
    pub primacy: u8,
}

/// The sign convention of a fixed power factor: which way reactive power flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Excitation {
    /// The DER injects reactive power. IEEE 2030.5 `PowerFactorWithExcitation.excitation`
    /// is `false` for this.
    OverExcited,
    /// The DER absorbs reactive power. The 2030.5 `excitation` flag is `true` for this.
    UnderExcited,
}

/// A displacement power factor with the direction of reactive power (2030.5
/// `PowerFactorWithExcitation`, used by opModFixedPFInjectW).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerFactor {
    /// cos(φ), within 0..=1.
    pub displacement: f64,
    pub excitation: Excitation,
}

/// The operating modes one control (or default control) may set. Every field is optional:
/// a control sets only the modes it names, and an unset mode leaves the decision to other
/// controls or to the defaults.
///
/// Sign convention for signed powers: positive means power flowing out of the device towards
/// the grid (generation, battery discharge), negative means consumption (load, charging).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ControlModes {
    /// opModConnect: `false` asks the device to disconnect from the grid.
    pub connect: Option<bool>,
    /// opModEnergize: `false` asks the device to stop energizing the grid (cease to energize).
    pub energize: Option<bool>,
    /// opModMaxLimW: upper limit on the device's active power output, in W. IEEE 2030.5
    /// sends this as a percentage of the device's rated maximum (setMaxW); the 2030.5 adapter
    /// converts it with the device's rating before it reaches the engine.
    pub max_lim_w: Option<f64>,
    /// opModFixedW: a fixed active power set point, in W (signed, see above). 2030.5 sends
    /// it as a signed percentage of setMaxW; the adapter converts.
    pub fixed_w: Option<f64>,
    /// opModTargetW: a target active power, in W (signed).
    pub target_w: Option<f64>,
    /// opModFixedPFInjectW: a fixed power factor applied while the device injects active
    /// power.
    pub fixed_pf_inject: Option<PowerFactor>,
    /// setGradW: the ramp rate for active power changes, in **percent of the device's rated
    /// maximum active power (setMaxW) per second**. This stays relative, as 2030.5 defines it
    /// (which sends hundredths of a percent per second), because one control often reaches
    /// devices of different sizes and the engine must not need each rating to resolve it.
    /// Dispatch multiplies by the rating when it needs W/s.
    pub set_grad_w: Option<f64>,
    /// CSIP-AUS opModImpLimW: site import limit, in W (the most the site may draw from the
    /// grid).
    pub imp_lim_w: Option<f64>,
    /// CSIP-AUS opModExpLimW: site export limit, in W (the most the site may send to the
    /// grid).
    pub exp_lim_w: Option<f64>,
    /// CSIP-AUS opModGenLimW: device generation (or discharge) limit, in W.
    pub gen_lim_w: Option<f64>,
    /// CSIP-AUS opModLoadLimW: device load (or charge) limit, in W.
    pub load_lim_w: Option<f64>,
    /// CSIP-AUS opModStorageTargetW: storage active power set point, in W (positive
    /// discharges, negative charges).
    pub storage_target_w: Option<f64>,
    /// A reserve of stored energy, in Wh, that the device must keep (in the manner of
    /// 2030.5 setMinWh): dispatch must not discharge below it.
    pub min_wh: Option<f64>,
    /// Not a mode: how long the device should take to move to this control's values, in
    /// seconds (2030.5 rampTms, sent in hundredths of a second, 0 to 655.35 s). It neither
    /// makes a control non-empty nor takes part in superseding.
    pub ramp_s: Option<f64>,
    /// Curve modes (2030.5 opModVoltVar, opModFreqWatt, ...): the id of the DER curve each
    /// one switches on, keyed by curve type. The curve must belong to the same program and be
    /// of that type. The engine carries these to devices and never evaluates them: they do
    /// not change [`crate::envelope::limits_in_force`]. A curve mode does make a control
    /// non-empty, and two controls linking curves of the same type share that mode for
    /// superseding.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub curves: BTreeMap<CurveType, String>,
}

/// How several values of one mode combine when more than one source sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Limits: the smallest value is the most restrictive and always holds.
    Minimum,
    /// Reserves: the largest value is the most restrictive.
    Maximum,
    /// Connect/energize: a single `false` wins, because keeping a device off the grid when
    /// one party asks for it is the safe outcome.
    FalseWins,
    /// Set points: values cannot be merged, so the highest-ranked source decides.
    Winner,
}

/// One of the modes in [`ControlModes`], used to name fields in errors and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Connect,
    Energize,
    MaxLimW,
    FixedW,
    TargetW,
    FixedPfInject,
    SetGradW,
    ImpLimW,
    ExpLimW,
    GenLimW,
    LoadLimW,
    StorageTargetW,
    MinWh,
}

impl Mode {
    /// Every mode, in the declaration order of [`ControlModes`].
    pub const ALL: [Mode; 13] = [
        Mode::Connect,
        Mode::Energize,
        Mode::MaxLimW,
        Mode::FixedW,
        Mode::TargetW,
        Mode::FixedPfInject,
        Mode::SetGradW,
        Mode::ImpLimW,
        Mode::ExpLimW,
        Mode::GenLimW,
        Mode::LoadLimW,
        Mode::StorageTargetW,
        Mode::MinWh,
    ];

    /// The field name in [`ControlModes`].
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Connect => "connect",
            Mode::Energize => "energize",
            Mode::MaxLimW => "max_lim_w",
            Mode::FixedW => "fixed_w",
            Mode::TargetW => "target_w",
            Mode::FixedPfInject => "fixed_pf_inject",
            Mode::SetGradW => "set_grad_w",
            Mode::ImpLimW => "imp_lim_w",
            Mode::ExpLimW => "exp_lim_w",
            Mode::GenLimW => "gen_lim_w",
            Mode::LoadLimW => "load_lim_w",
            Mode::StorageTargetW => "storage_target_w",
            Mode::MinWh => "min_wh",
        }
    }

    /// How values of this mode from several sources combine.
    pub fn combine(self) -> Combine {
        match self {
            Mode::Connect | Mode::Energize => Combine::FalseWins,
            Mode::MaxLimW | Mode::ImpLimW | Mode::ExpLimW | Mode::GenLimW | Mode::LoadLimW => {
                Combine::Minimum
            }
            Mode::MinWh => Combine::Maximum,
            Mode::FixedW
            | Mode::TargetW
            | Mode::FixedPfInject
            | Mode::SetGradW
            | Mode::StorageTargetW => Combine::Winner,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ControlModes {
    /// Whether this set names the given mode.
    pub fn is_set(&self, mode: Mode) -> bool {
        match mode {
            Mode::Connect => self.connect.is_some(),
            Mode::Energize => self.energize.is_some(),
            Mode::MaxLimW => self.max_lim_w.is_some(),
            Mode::FixedW => self.fixed_w.is_some(),
            Mode::TargetW => self.target_w.is_some(),
            Mode::FixedPfInject => self.fixed_pf_inject.is_some(),
            Mode::SetGradW => self.set_grad_w.is_some(),
            Mode::ImpLimW => self.imp_lim_w.is_some(),
            Mode::ExpLimW => self.exp_lim_w.is_some(),
            Mode::GenLimW => self.gen_lim_w.is_some(),
            Mode::LoadLimW => self.load_lim_w.is_some(),
            Mode::StorageTargetW => self.storage_target_w.is_some(),
            Mode::MinWh => self.min_wh.is_some(),
        }
    }

    /// The modes this set names, in declaration order.
    pub fn set_modes(&self) -> impl Iterator<Item = Mode> + '_ {
        Mode::ALL.into_iter().filter(|m| self.is_set(*m))
    }

    /// Whether no mode is set (curve modes included).
    pub fn is_empty(&self) -> bool {
        self.set_modes().next().is_none() && self.curves.is_empty()
    }

    /// Whether both sets name at least one common mode (the 2030.5 condition, together with
    /// overlapping in time, for one control to supersede another).
    pub fn shares_mode_with(&self, other: &ControlModes) -> bool {
        Mode::ALL
            .into_iter()
            .any(|m| self.is_set(m) && other.is_set(m))
            || self.curves.keys().any(|t| other.curves.contains_key(t))
    }
}

/// Records that an operator cancelled or deleted a control. The control stays in the set the
/// engine sees so that it can still be served with a Cancelled status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// When the cancellation was made (2030.5 `Status.dateTime`); it takes effect from here.
    pub at: EpochSeconds,
    /// Cancelled with randomization (status 3): devices already running the control end it
    /// after a random delay instead of all at once, so that they do not step together.
    pub randomized: bool,
}

/// One scheduled control (a 2030.5 DERControl / CSIP-AUS operating envelope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Control {
    pub id: ControlId,
    pub program: ProgramId,
    /// 2030.5 creationTime: orders controls for superseding and for precedence within one
    /// primacy. Equal times are ordered by [`ControlId`].
    pub created: EpochSeconds,
    /// The scheduled start (2030.5 `interval.start`).
    pub start: EpochSeconds,
    /// The scheduled length (2030.5 `interval.duration`), at least one second.
    pub duration_s: u32,
    /// 2030.5 randomizeStart: each device shifts its start by a random offset between 0 and
    /// this many seconds (negative values shift earlier).
    pub randomize_start_s: i32,
    /// 2030.5 randomizeDuration: each device lengthens (or, if negative, shortens) its run by
    /// a random offset between 0 and this many seconds.
    pub randomize_duration_s: i32,
    pub modes: ControlModes,
    /// Set when the operator cancelled or deleted the control.
    #[serde(default)]
    pub cancelled: Option<Cancellation>,
}

/// A program's default control (2030.5 DefaultDERControl): the modes that apply when no
/// active control sets them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefaultControl {
    pub program: ProgramId,
    pub modes: ControlModes,
}

/// The IEEE 2030.5 `EventStatus.currentStatus` codes, exactly as the standard numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum EventStatus {
    /// 0: announced and not yet started.
    Scheduled = 0,
    /// 1: running.
    Active = 1,
    /// 2: cancelled; devices stop at once.
    Cancelled = 2,
    /// 3: cancelled; running devices stop after a random delay.
    CancelledWithRandomization = 3,
    /// 4: replaced by a newer overlapping control of the same program.
    Superseded = 4,
}

/// A status code that IEEE 2030.5 does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown 2030.5 event status code {0} (expected 0 to 4)")]
pub struct UnknownEventStatus(pub u8);

impl EventStatus {
    /// The 2030.5 code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for EventStatus {
    type Error = UnknownEventStatus;

    /// Unknown codes are an error: a status the engine does not understand must not be
    /// silently read as, say, Scheduled.
    fn try_from(code: u8) -> Result<Self, Self::Error> {
        match code {
            0 => Ok(EventStatus::Scheduled),
            1 => Ok(EventStatus::Active),
            2 => Ok(EventStatus::Cancelled),
            3 => Ok(EventStatus::CancelledWithRandomization),
            4 => Ok(EventStatus::Superseded),
            other => Err(UnknownEventStatus(other)),
        }
    }
}

impl From<EventStatus> for u8 {
    fn from(s: EventStatus) -> u8 {
        s.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_status_codes_are_exact_and_round_trip() {
        let expected = [
            (0, EventStatus::Scheduled),
            (1, EventStatus::Active),
            (2, EventStatus::Cancelled),
            (3, EventStatus::CancelledWithRandomization),
            (4, EventStatus::Superseded),
        ];
        for (code, status) in expected {
            assert_eq!(status.code(), code);
            assert_eq!(EventStatus::try_from(code), Ok(status));
            assert_eq!(u8::from(status), code);
        }
    }

    #[test]
    fn unknown_event_status_codes_are_errors() {
        for code in [5u8, 6, 99, 255] {
            let err = EventStatus::try_from(code).unwrap_err();
            assert_eq!(err, UnknownEventStatus(code));
            assert!(err.to_string().contains(&code.to_string()), "{err}");
        }
    }

    #[test]
    fn modes_report_what_they_set() {
        let m = ControlModes {
            exp_lim_w: Some(1500.0),
            connect: Some(true),
            ..Default::default()
        };
        assert_eq!(
            m.set_modes().collect::<Vec<_>>(),
            vec![Mode::Connect, Mode::ExpLimW]
        );
        assert!(!m.is_empty());
        assert!(ControlModes::default().is_empty());
        let other = ControlModes {
            exp_lim_w: Some(0.0),
            ..Default::default()
        };
        assert!(m.shares_mode_with(&other));
        let disjoint = ControlModes {
            imp_lim_w: Some(0.0),
            ..Default::default()
        };
        assert!(!m.shares_mode_with(&disjoint));
    }

    #[test]
    fn curve_modes_count_as_modes_without_entering_the_limits() {
        let vv = |id: &str| ControlModes {
            curves: [(CurveType::VoltVar, id.to_string())].into(),
            ..Default::default()
        };
        // A control that only links a curve is a real control...
        assert!(!vv("A").is_empty());
        assert_eq!(vv("A").set_modes().count(), 0);
        // ...and a newer one linking another volt-var curve shares its mode (supersedes).
        assert!(vv("A").shares_mode_with(&vv("B")));
        let vw = ControlModes {
            curves: [(CurveType::VoltWatt, "C".to_string())].into(),
            ..Default::default()
        };
        assert!(!vv("A").shares_mode_with(&vw));
        // Stored controls written before curves existed still read.
        let old: ControlModes = serde_json::from_str(r#"{"exp_lim_w":1500.0}"#).unwrap();
        assert!(old.curves.is_empty());
        assert!(!serde_json::to_string(&old).unwrap().contains("curves"));
    }

    #[test]
    fn every_mode_has_a_distinct_field_name() {
        let mut names: Vec<_> = Mode::ALL.iter().map(|m| m.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Mode::ALL.len());
    }
}
