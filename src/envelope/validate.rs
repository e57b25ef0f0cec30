//! Validation of controls and their modes before they enter the engine.
//!
//! The engine's functions assume validated input (they never fail), so every edge that
//! accepts a control (2030.5 adapter, operator API, importer) calls these first. Each error
//! names the field so the caller can point at it.

use super::model::{Control, ControlModes, DefaultControl, Mode};

/// Why a control or a set of modes was rejected. Checks run in a fixed order and the first
/// failure is reported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// NaN or infinite.
    #[error("modes.{mode}: must be a finite number, got {value}")]
    NotFinite { mode: Mode, value: f64 },
    /// A limit or reserve below zero. A negative limit has no physical meaning (direction is
    /// already given by which limit it is: import vs export, generation vs load).
    #[error("modes.{mode}: must not be negative, got {value}")]
    Negative { mode: Mode, value: f64 },
    /// A ramp rate of zero or less would freeze the device's output.
    #[error("modes.{mode}: must be greater than zero, got {value}")]
    NotPositive { mode: Mode, value: f64 },
    /// A displacement power factor outside 0..=1.
    #[error("modes.fixed_pf_inject.displacement: power factor must be within 0..=1, got {value}")]
    PowerFactorOutOfRange { value: f64 },
    /// A control of length zero would never be in force.
    #[error("duration_s: a control must last at least one second")]
    ZeroDuration,
    /// A negative duration randomization that could shrink the control to nothing.
    #[error(
        "randomize_duration_s: {randomize_duration_s} s could cancel out the whole {duration_s} s duration"
    )]
    RandomizedAway {
        randomize_duration_s: i32,
        duration_s: u32,
    },
    /// A control that sets no mode would do nothing, which is almost surely a mistake.
    #[error("modes: a control must set at least one mode")]
    NoModeSet,
    /// An identifier that is empty.
    #[error("{field}: must not be empty")]
    EmptyId { field: &'static str },
    /// A ramp time 2030.5 cannot carry (rampTms is hundredths of a second in a UInt16).
    #[error("modes.ramp_s: must be a number of seconds from 0 to 655.35, got {value}")]
    RampOutOfRange { value: f64 },
}

impl ValidationError {
    /// The path of the offending field, for API error bodies.
    pub fn field(&self) -> String {
        match self {
            ValidationError::NotFinite { mode, .. }
            | ValidationError::Negative { mode, .. }
            | ValidationError::NotPositive { mode, .. } => format!("modes.{mode}"),
            ValidationError::PowerFactorOutOfRange { .. } => {
                "modes.fixed_pf_inject.displacement".to_string()
            }
            ValidationError::ZeroDuration => "duration_s".to_string(),
            ValidationError::RandomizedAway { .. } => "randomize_duration_s".to_string(),
            ValidationError::NoModeSet => "modes".to_string(),
            ValidationError::EmptyId { field } => (*field).to_string(),
            ValidationError::RampOutOfRange { .. } => "modes.ramp_s".to_string(),
        }
    }
}

/// The longest ramp 2030.5 can send: 65535 hundredths of a second.
pub const MAX_RAMP_S: f64 = 655.35;

fn finite(mode: Mode, value: f64) -> Result<f64, ValidationError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(ValidationError::NotFinite { mode, value })
    }
}

fn non_negative(mode: Mode, value: Option<f64>) -> Result<(), ValidationError> {
    if let Some(v) = value
        && finite(mode, v)? < 0.0
    {
        return Err(ValidationError::Negative { mode, value: v });
    }
    Ok(())
}

fn signed(mode: Mode, value: Option<f64>) -> Result<(), ValidationError> {
    if let Some(v) = value {
        finite(mode, v)?;
    }
    Ok(())
}

impl ControlModes {
    /// Checks each set value, in declaration order: limits and the reserve must be finite
    /// and not negative, set points finite, the ramp rate finite and positive, the power
    /// factor within 0..=1. An empty set is valid here (a default control may be empty);
    /// [`Control::validate`] rejects empty controls.
    pub fn validate(&self) -> Result<(), ValidationError> {
        non_negative(Mode::MaxLimW, self.max_lim_w)?;
        signed(Mode::FixedW, self.fixed_w)?;
        signed(Mode::TargetW, self.target_w)?;
        if let Some(pf) = self.fixed_pf_inject {
            let value = finite(Mode::FixedPfInject, pf.displacement)?;
            if !(0.0..=1.0).contains(&value) {
                return Err(ValidationError::PowerFactorOutOfRange { value });
            }
        }
        if let Some(v) = self.set_grad_w
            && finite(Mode::SetGradW, v)? <= 0.0
        {
            return Err(ValidationError::NotPositive {
                mode: Mode::SetGradW,
                value: v,
            });
        }
        non_negative(Mode::ImpLimW, self.imp_lim_w)?;
        non_negative(Mode::ExpLimW, self.exp_lim_w)?;
        non_negative(Mode::GenLimW, self.gen_lim_w)?;
        non_negative(Mode::LoadLimW, self.load_lim_w)?;
        signed(Mode::StorageTargetW, self.storage_target_w)?;
        non_negative(Mode::MinWh, self.min_wh)?;
        if let Some(value) = self.ramp_s
            && !(value.is_finite() && (0.0..=MAX_RAMP_S).contains(&value))
        {
            return Err(ValidationError::RampOutOfRange { value });
        }
        Ok(())
    }
}

impl Control {
    /// Checks the identifiers, the duration, the duration randomization, that at least one
    /// mode is set, and then the modes themselves.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.id.as_str().is_empty() {
            return Err(ValidationError::EmptyId { field: "id" });
        }
        if self.program.as_str().is_empty() {
            return Err(ValidationError::EmptyId { field: "program" });
        }
        if self.duration_s == 0 {
            return Err(ValidationError::ZeroDuration);
        }
        // With a negative randomizeDuration some devices could draw an offset that removes
        // the whole duration; the control would silently never run for them.
        if i64::from(self.randomize_duration_s) <= -i64::from(self.duration_s) {
            return Err(ValidationError::RandomizedAway {
                randomize_duration_s: self.randomize_duration_s,
                duration_s: self.duration_s,
            });
        }
        if self.modes.is_empty() {
            return Err(ValidationError::NoModeSet);
        }
        self.modes.validate()
    }
}

impl DefaultControl {
    /// Checks the program identifier and the modes. An empty default is allowed.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.program.as_str().is_empty() {
            return Err(ValidationError::EmptyId { field: "program" });
        }
        self.modes.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::model::{Excitation, PowerFactor};

    fn control(modes: ControlModes) -> Control {
        Control {
            id: "c1".into(),
            program: "p1".into(),
            created: 0,
            start: 1000,
            duration_s: 300,
            randomize_start_s: 0,
            randomize_duration_s: 0,
            modes,
            cancelled: None,
        }
    }

    fn exp(v: f64) -> ControlModes {
        ControlModes {
            exp_lim_w: Some(v),
            ..Default::default()
        }
    }

    #[test]
    fn a_sound_control_passes() {
        assert_eq!(control(exp(5000.0)).validate(), Ok(()));
        assert_eq!(control(exp(0.0)).validate(), Ok(()));
    }

    type FieldMut = fn(&mut ControlModes) -> &mut Option<f64>;

    #[test]
    fn negative_limits_name_the_field() {
        let cases: [(Mode, FieldMut); 6] = [
            (Mode::MaxLimW, |m| &mut m.max_lim_w),
            (Mode::ImpLimW, |m| &mut m.imp_lim_w),
            (Mode::ExpLimW, |m| &mut m.exp_lim_w),
            (Mode::GenLimW, |m| &mut m.gen_lim_w),
            (Mode::LoadLimW, |m| &mut m.load_lim_w),
            (Mode::MinWh, |m| &mut m.min_wh),
        ];
        for (mode, field) in cases {
            let mut modes = ControlModes::default();
            *field(&mut modes) = Some(-1.0);
            let err = control(modes).validate().unwrap_err();
            assert_eq!(err, ValidationError::Negative { mode, value: -1.0 });
            assert_eq!(err.field(), format!("modes.{}", mode.as_str()));
            assert!(err.to_string().starts_with(&err.field()), "{err}");
        }
    }

    #[test]
    fn signed_set_points_may_be_negative_but_must_be_finite() {
        let modes = ControlModes {
            fixed_w: Some(-2000.0),
            target_w: Some(-1.0),
            storage_target_w: Some(-3000.0),
            ..Default::default()
        };
        assert_eq!(control(modes).validate(), Ok(()));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let modes = ControlModes {
                storage_target_w: Some(bad),
                ..Default::default()
            };
            match control(modes).validate() {
                Err(ValidationError::NotFinite { mode, .. }) => {
                    assert_eq!(mode, Mode::StorageTargetW)
                }
                other => panic!("expected NotFinite, got {other:?}"),
            }
        }
    }

    #[test]
    fn nan_and_infinite_limits_are_not_finite_errors() {
        let err = control(exp(f64::NAN)).validate().unwrap_err();
        assert!(matches!(
            err,
            ValidationError::NotFinite {
                mode: Mode::ExpLimW,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "modes.exp_lim_w: must be a finite number, got NaN"
        );
        let err = control(exp(f64::INFINITY)).validate().unwrap_err();
        assert!(matches!(err, ValidationError::NotFinite { .. }));
    }

    #[test]
    fn power_factor_must_be_within_zero_and_one() {
        for (value, ok) in [
            (0.0, true),
            (0.95, true),
            (1.0, true),
            (1.01, false),
            (-0.1, false),
        ] {
            let modes = ControlModes {
                fixed_pf_inject: Some(PowerFactor {
                    displacement: value,
                    excitation: Excitation::OverExcited,
                }),
                ..Default::default()
            };
            let result = control(modes).validate();
            if ok {
                assert_eq!(result, Ok(()), "{value}");
            } else {
                let err = result.unwrap_err();
                assert_eq!(err, ValidationError::PowerFactorOutOfRange { value });
                assert_eq!(err.field(), "modes.fixed_pf_inject.displacement");
            }
        }
        let modes = ControlModes {
            fixed_pf_inject: Some(PowerFactor {
                displacement: f64::NAN,
                excitation: Excitation::UnderExcited,
            }),
            ..Default::default()
        };
        assert!(matches!(
            modes.validate(),
            Err(ValidationError::NotFinite {
                mode: Mode::FixedPfInject,
                ..
            })
        ));
    }

    #[test]
    fn ramp_rate_must_be_positive() {
        for v in [0.0, -5.0] {
            let modes = ControlModes {
                set_grad_w: Some(v),
                ..Default::default()
            };
            assert_eq!(
                modes.validate(),
                Err(ValidationError::NotPositive {
                    mode: Mode::SetGradW,
                    value: v
                })
            );
        }
    }

    #[test]
    fn zero_duration_is_rejected() {
        let mut c = control(exp(1.0));
        c.duration_s = 0;
        let err = c.validate().unwrap_err();
        assert_eq!(err, ValidationError::ZeroDuration);
        assert_eq!(err.field(), "duration_s");
    }

    #[test]
    fn a_control_must_set_a_mode() {
        let err = control(ControlModes::default()).validate().unwrap_err();
        assert_eq!(err, ValidationError::NoModeSet);
        assert_eq!(
            err.to_string(),
            "modes: a control must set at least one mode"
        );
    }

    #[test]
    fn randomized_duration_cannot_erase_the_control() {
        let mut c = control(exp(1.0));
        c.randomize_duration_s = -299;
        assert_eq!(c.validate(), Ok(()));
        c.randomize_duration_s = -300;
        assert!(matches!(
            c.validate(),
            Err(ValidationError::RandomizedAway { .. })
        ));
    }

    #[test]
    fn empty_ids_are_rejected() {
        let mut c = control(exp(1.0));
        c.id = "".into();
        assert_eq!(c.validate(), Err(ValidationError::EmptyId { field: "id" }));
        let mut c = control(exp(1.0));
        c.program = "".into();
        assert_eq!(
            c.validate(),
            Err(ValidationError::EmptyId { field: "program" })
        );
        let d = DefaultControl {
            program: "p".into(),
            modes: ControlModes::default(),
        };
        assert_eq!(d.validate(), Ok(()));
    }
}
