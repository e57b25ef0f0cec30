//! DER curves (the IEEE 2030.5 DERCurve): piecewise-linear characteristics such as volt-var
//! or frequency-watt that a control or default control switches on by linking them.
//!
//! The engine carries curves; it does not evaluate them. [`limits_in_force`] resolves the
//! W limits and set points as before, and a curve reaches a device only as a link in the
//! control that names it. What this module owns is the vocabulary, the validation the
//! standard implies (1 to 10 points, strictly increasing x, the excitation rule of
//! power-factor curves, which reference types each curve may use) and the choice of the
//! power-of-ten multipliers under which every point fits a 16-bit integer.
//!
//! [`limits_in_force`]: super::limits_in_force

use super::model::Excitation;
use super::scale::{MAX_MULTIPLIER, MIN_MULTIPLIER, from_int16_scaled, to_int16_scaled};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The most points a curve may have (2030.5 `CurveData` maxOccurs).
pub const MAX_POINTS: usize = 10;

/// The longest time the 2030.5 `*Tms` fields can carry: 65535 hundredths of a second.
pub const MAX_TMS_S: f64 = 655.35;

macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident, $unknown:literal { $($(#[$vmeta:meta])* $variant:ident = $code:literal, $text:literal;)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)*
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The 2030.5 code.
            pub fn code(self) -> u8 {
                self as u8
            }

            /// The name used in the operator API and in stored records.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl TryFrom<u8> for $name {
            type Error = String;
            fn try_from(code: u8) -> Result<Self, String> {
                match code {
                    $($code => Ok($name::$variant),)*
                    other => Err(format!(concat!($unknown, " {}"), other)),
                }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)*
                    other => Err(format!(concat!($unknown, " '{}'"), other)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

code_enum!(
    /// What a curve controls: 2030.5 `DERCurveType`, numbered as the standard numbers it.
    /// Each type is also the control mode (opModVoltVar, ...) that links a curve of it.
    CurveType, "unknown curve type" {
        /// opModFreqWatt: x frequency (Hz), y active power.
        FreqWatt = 0, "freq_watt";
        /// opModHFRTMayTrip: x duration (s), y frequency (Hz).
        HfrtMayTrip = 1, "hfrt_may_trip";
        /// opModHFRTMustTrip.
        HfrtMustTrip = 2, "hfrt_must_trip";
        /// opModHVRTMayTrip: x duration (s), y effective percent voltage.
        HvrtMayTrip = 3, "hvrt_may_trip";
        /// opModHVRTMomentaryCessation.
        HvrtMomentaryCessation = 4, "hvrt_momentary_cessation";
        /// opModHVRTMustTrip.
        HvrtMustTrip = 5, "hvrt_must_trip";
        /// opModLFRTMayTrip.
        LfrtMayTrip = 6, "lfrt_may_trip";
        /// opModLFRTMustTrip.
        LfrtMustTrip = 7, "lfrt_must_trip";
        /// opModLVRTMayTrip.
        LvrtMayTrip = 8, "lvrt_may_trip";
        /// opModLVRTMomentaryCessation.
        LvrtMomentaryCessation = 9, "lvrt_momentary_cessation";
        /// opModLVRTMustTrip.
        LvrtMustTrip = 10, "lvrt_must_trip";
        /// opModVoltVar: x effective percent voltage, y reactive power (signed percent).
        VoltVar = 11, "volt_var";
        /// opModVoltWatt: x effective percent voltage, y active power (percent).
        VoltWatt = 12, "volt_watt";
        /// opModWattPF: x active power (percent of setMaxW), y displacement power factor.
        WattPf = 13, "watt_pf";
        /// opModWattVar: x active power (percent of setMaxW), y reactive power.
        WattVar = 14, "watt_var";
    }
);

code_enum!(
    /// What a curve's y values are a percentage of: 2030.5 `DERUnitRefType`.
    UnitRef, "unknown unit reference type" {
        /// 0: not applicable (absolute values such as hertz or a power factor).
        NotApplicable = 0, "not_applicable";
        /// 1: percent of setMaxW.
        SetMaxW = 1, "set_max_w";
        /// 2: percent of setMaxVar.
        SetMaxVar = 2, "set_max_var";
        /// 3: percent of statVarAvail.
        StatVarAvail = 3, "stat_var_avail";
        /// 4: percent of setEffectiveV.
        SetEffectiveV = 4, "set_effective_v";
        /// 5: percent of setMaxChargeRateW.
        SetMaxChargeRateW = 5, "set_max_charge_rate_w";
        /// 6: percent of setMaxDischargeRateW.
        SetMaxDischargeRateW = 6, "set_max_discharge_rate_w";
        /// 7: percent of statWAvail.
        StatWAvail = 7, "stat_w_avail";
    }
);

impl CurveType {
    /// The y reference types the standard allows for this curve, or None when it names
    /// none (ride-through and power-factor curves).
    pub fn allowed_y_refs(self) -> Option<&'static [UnitRef]> {
        match self {
            CurveType::VoltVar | CurveType::WattVar => {
                Some(&[UnitRef::SetMaxW, UnitRef::SetMaxVar, UnitRef::StatVarAvail])
            }
            CurveType::VoltWatt | CurveType::FreqWatt => {
                Some(&[UnitRef::SetMaxW, UnitRef::StatWAvail])
            }
            _ => None,
        }
    }
}

/// One point of a curve, in the units its type defines (before any multiplier).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CurvePoint {
    pub x: f64,
    pub y: f64,
    /// Required on every point of a watt_pf curve (which way reactive power flows at that
    /// power factor) and refused on any other curve, as 2030.5 `CurveData` specifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excitation: Option<Excitation>,
}

/// A curve as the utility defines it; see [`check`] for the rules it must meet.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve<'a> {
    pub curve_type: CurveType,
    pub y_ref_type: UnitRef,
    pub points: &'a [CurvePoint],
    /// Explicit multipliers, or None to let [`choose_multiplier`] pick them.
    pub x_multiplier: Option<i8>,
    pub y_multiplier: Option<i8>,
    pub autonomous_v_ref_enable: Option<bool>,
    pub autonomous_v_ref_time_constant_s: Option<u32>,
    pub v_ref_percent: Option<f64>,
    /// openLoopTms, rampDecTms, rampIncTms, rampPT1Tms in seconds, with their field names.
    pub times_s: [(&'static str, Option<f64>); 4],
}

/// Why a curve was refused; `field` names the offending field for API errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CurveError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> CurveError {
    CurveError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The multiplier under which every value fits a 16-bit integer with the most precision
/// kept, or None when some value does not fit at any multiplier the standard allows.
pub fn choose_multiplier(values: impl IntoIterator<Item = f64>) -> Option<i8> {
    let mut m = None::<i8>;
    for v in values {
        let (mantissa, mult) = to_int16_scaled(v).ok()?;
        // Zero fits under every multiplier and says nothing about the scale.
        if mantissa != 0 {
            m = Some(m.map_or(mult, |cur| cur.max(mult)));
        }
    }
    Some(m.unwrap_or(0))
}

/// `value / 10^multiplier` as the integer sent on the wire, if it fits an Int16.
pub fn scaled(value: f64, multiplier: i8) -> Option<i16> {
    if !value.is_finite() {
        return None;
    }
    let mantissa = (value / from_int16_scaled(1, multiplier)).round();
    (f64::from(i16::MIN)..=f64::from(i16::MAX))
        .contains(&mantissa)
        .then_some(mantissa as i16)
}

/// Checks `c` against the rules of 2030.5 and returns the multipliers (x, y) its points
/// are sent with. The first violation is reported.
pub fn check(c: &Curve<'_>) -> Result<(i8, i8), CurveError> {
    let n = c.points.len();
    if n == 0 || n > MAX_POINTS {
        return Err(err(
            "points",
            format!("a curve has 1 to {MAX_POINTS} points, got {n}"),
        ));
    }
    for (i, p) in c.points.iter().enumerate() {
        if !p.x.is_finite() {
            return Err(err(format!("points[{i}].x"), "must be a finite number"));
        }
        if !p.y.is_finite() {
            return Err(err(format!("points[{i}].y"), "must be a finite number"));
        }
        if i > 0 && p.x <= c.points[i - 1].x {
            return Err(err(
                format!("points[{i}].x"),
                format!(
                    "x values must increase strictly, but {} follows {}",
                    p.x,
                    c.points[i - 1].x
                ),
            ));
        }
        let pf = c.curve_type == CurveType::WattPf;
        match (pf, p.excitation.is_some()) {
            (true, false) => {
                return Err(err(
                    format!("points[{i}].excitation"),
                    "every point of a watt_pf curve needs an excitation",
                ));
            }
            (false, true) => {
                return Err(err(
                    format!("points[{i}].excitation"),
                    "only watt_pf curves carry an excitation",
                ));
            }
            _ => {}
        }
        if pf && !(p.y > 0.0 && p.y <= 1.0) {
            return Err(err(
                format!("points[{i}].y"),
                format!(
                    "a power factor is a positive displacement up to 1, got {}",
                    p.y
                ),
            ));
        }
    }
    if let Some(allowed) = c.curve_type.allowed_y_refs()
        && !allowed.contains(&c.y_ref_type)
    {
        let names: Vec<_> = allowed.iter().map(|u| u.as_str()).collect();
        return Err(err(
            "y_ref_type",
            format!(
                "a {} curve's y values refer to one of {}, not {}",
                c.curve_type,
                names.join(", "),
                c.y_ref_type
            ),
        ));
    }
    if c.curve_type != CurveType::VoltVar
        && (c.autonomous_v_ref_enable.is_some() || c.autonomous_v_ref_time_constant_s.is_some())
    {
        return Err(err(
            "autonomous_v_ref_enable",
            "only volt_var curves adjust their reference voltage autonomously",
        ));
    }
    if c.autonomous_v_ref_enable == Some(true) && c.autonomous_v_ref_time_constant_s.is_none() {
        return Err(err(
            "autonomous_v_ref_time_constant_s",
            "required when autonomous_v_ref_enable is true",
        ));
    }
    if let Some(v) = c.v_ref_percent
        && !(v.is_finite() && (0.0..=100.0).contains(&v))
    {
        return Err(err(
            "v_ref_percent",
            format!("a percentage from 0 to 100, got {v}"),
        ));
    }
    for (field, t) in c.times_s {
        if let Some(t) = t
            && !(t.is_finite() && (0.0..=MAX_TMS_S).contains(&t))
        {
            return Err(err(
                field,
                format!("a number of seconds from 0 to {MAX_TMS_S}, got {t}"),
            ));
        }
    }
    let x = axis_multiplier("x", c.x_multiplier, c.points.iter().map(|p| p.x))?;
    let y = axis_multiplier("y", c.y_multiplier, c.points.iter().map(|p| p.y))?;
    Ok((x, y))
}

fn axis_multiplier(
    axis: &str,
    given: Option<i8>,
    values: impl Iterator<Item = f64> + Clone,
) -> Result<i8, CurveError> {
    let m = match given {
        Some(m) if !(MIN_MULTIPLIER..=MAX_MULTIPLIER).contains(&m) => {
            return Err(err(
                format!("{axis}_multiplier"),
                format!("a power of ten from {MIN_MULTIPLIER} to {MAX_MULTIPLIER}, got {m}"),
            ));
        }
        Some(m) => m,
        None => choose_multiplier(values.clone()).ok_or_else(|| {
            err(
                format!("{axis}_multiplier"),
                format!("the {axis} values do not fit a 16-bit integer at any multiplier"),
            )
        })?,
    };
    for (i, v) in values.enumerate() {
        if scaled(v, m).is_none() {
            return Err(err(
                format!("points[{i}].{axis}"),
                format!("{v} does not fit a 16-bit integer times 10^{m}"),
            ));
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(t: CurveType, r: UnitRef, points: &[CurvePoint]) -> Curve<'_> {
        Curve {
            curve_type: t,
            y_ref_type: r,
            points,
            x_multiplier: None,
            y_multiplier: None,
            autonomous_v_ref_enable: None,
            autonomous_v_ref_time_constant_s: None,
            v_ref_percent: None,
            times_s: [
                ("open_loop_s", None),
                ("ramp_dec_s", None),
                ("ramp_inc_s", None),
                ("ramp_pt1_s", None),
            ],
        }
    }

    fn pts(xy: &[(f64, f64)]) -> Vec<CurvePoint> {
        xy.iter()
            .map(|&(x, y)| CurvePoint {
                x,
                y,
                excitation: None,
            })
            .collect()
    }

    #[test]
    fn codes_are_the_standards() {
        assert_eq!(CurveType::FreqWatt.code(), 0);
        assert_eq!(CurveType::LvrtMustTrip.code(), 10);
        assert_eq!(CurveType::VoltVar.code(), 11);
        assert_eq!(CurveType::WattVar.code(), 14);
        assert_eq!(CurveType::ALL.len(), 15);
        assert!(CurveType::try_from(15).is_err());
        assert_eq!(UnitRef::StatWAvail.code(), 7);
        assert!(UnitRef::try_from(8).is_err());
        for t in CurveType::ALL {
            assert_eq!(t.as_str().parse::<CurveType>(), Ok(*t));
            assert_eq!(CurveType::try_from(t.code()), Ok(*t));
        }
    }

    #[test]
    fn volt_var_gets_the_most_precise_multipliers() {
        let p = pts(&[(92.0, 30.0), (98.0, 0.0), (102.0, 0.0), (108.0, -30.0)]);
        let c = curve(CurveType::VoltVar, UnitRef::SetMaxVar, &p);
        assert_eq!(check(&c), Ok((-2, -3)));
        assert_eq!(scaled(108.0, -2), Some(10800));
        assert_eq!(scaled(-30.0, -3), Some(-30000));
    }

    #[test]
    fn refusals_name_the_field() {
        let p = pts(&[(100.0, 0.0), (99.0, 1.0)]);
        let e = check(&curve(CurveType::VoltVar, UnitRef::SetMaxVar, &p)).unwrap_err();
        assert_eq!(e.field, "points[1].x");
        let p = pts(&[(1.0, 1.0); 11]);
        assert_eq!(
            check(&curve(CurveType::VoltVar, UnitRef::SetMaxVar, &p))
                .unwrap_err()
                .field,
            "points"
        );
        let p = pts(&[(50.0, 1.0)]);
        assert_eq!(
            check(&curve(CurveType::WattPf, UnitRef::NotApplicable, &p))
                .unwrap_err()
                .field,
            "points[0].excitation"
        );
        assert_eq!(
            check(&curve(CurveType::VoltWatt, UnitRef::SetMaxVar, &p))
                .unwrap_err()
                .field,
            "y_ref_type"
        );
        let mut c = curve(CurveType::VoltWatt, UnitRef::SetMaxW, &p);
        c.y_multiplier = Some(-5);
        let e = check(&c).unwrap_err();
        assert_eq!(e.field, "points[0].y");
        let big = pts(&[(1.0, 4e13)]);
        assert_eq!(
            check(&curve(CurveType::VoltWatt, UnitRef::SetMaxW, &big))
                .unwrap_err()
                .field,
            "y_multiplier"
        );
    }

    #[test]
    fn zeros_do_not_force_a_tiny_multiplier() {
        assert_eq!(choose_multiplier([0.0, 0.0]), Some(0));
        assert_eq!(choose_multiplier([0.0, 50.0]), Some(-2));
    }
}
