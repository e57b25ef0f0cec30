//! Engine values to IEEE 2030.5 wire values: SI watts to `value × 10^multiplier` Int16
//! pairs, watts to percentages of the device rating, power factors, and control records to
//! `DERControl` documents with their EventStatus.

use super::model::{
    ActivePower, DateTimeInterval, DerControl, DerControlBase, EventStatus, EventStatusCode,
    PowerFactorWithExcitation,
};
use crate::envelope::records::ControlRecord;
use crate::envelope::{self, ControlModes, Excitation, ScaleError};
use sha2::{Digest, Sha256};

/// A 2030.5 mRID (HexBinary128) for an engine id that is not one: the first 128 bits of its
/// SHA-256, so it is stable across restarts and nodes.
pub fn mrid_for(id: &str) -> String {
    hex::encode_upper(&Sha256::digest(id.as_bytes())[..16])
}

/// Watts as an ActivePower with the most precise multiplier that fits Int16.
pub fn active_power(w: f64) -> Result<ActivePower, ScaleError> {
    let (value, multiplier) = envelope::to_int16_scaled(w)?;
    Ok(ActivePower::new(value, multiplier))
}

/// Watts as a 2030.5 PerCent of the rating (hundredths of a percent, 0..=10000).
pub fn percent_of_rating(w: f64, rating_w: f64) -> Option<u16> {
    (rating_w > 0.0 && w.is_finite())
        .then(|| ((w / rating_w) * 10_000.0).round().clamp(0.0, 10_000.0) as u16)
}

/// Signed watts as a 2030.5 SignedPerCent of the rating (hundredths, -10000..=10000).
pub fn signed_percent_of_rating(w: f64, rating_w: f64) -> Option<i16> {
    (rating_w > 0.0 && w.is_finite()).then(|| {
        ((w / rating_w) * 10_000.0)
            .round()
            .clamp(-10_000.0, 10_000.0) as i16
    })
}

/// The DERControlBase carrying `modes`. Percentage modes (opModMaxLimW, opModFixedW) need
/// the device's rating and are left out when it is unknown (a site-level EndDevice).
pub fn control_base(
    modes: &ControlModes,
    rating_w: Option<f64>,
) -> Result<DerControlBase, ScaleError> {
    let opt_power = |v: Option<f64>| v.map(active_power).transpose();
    Ok(DerControlBase {
        op_mod_connect: modes.connect,
        op_mod_energize: modes.energize,
        op_mod_fixed_pf_inject_w: modes.fixed_pf_inject.map(|pf| {
            PowerFactorWithExcitation::new(
                (pf.displacement * 1000.0).round().clamp(0.0, 1000.0) as u16,
                -3,
                pf.excitation == Excitation::UnderExcited,
            )
        }),
        op_mod_fixed_w: modes
            .fixed_w
            .zip(rating_w)
            .and_then(|(w, r)| signed_percent_of_rating(w, r)),
        op_mod_max_lim_w: modes
            .max_lim_w
            .zip(rating_w)
            .and_then(|(w, r)| percent_of_rating(w, r)),
        op_mod_target_w: opt_power(modes.target_w)?,
        op_mod_imp_lim_w: opt_power(modes.imp_lim_w)?,
        op_mod_exp_lim_w: opt_power(modes.exp_lim_w)?,
        op_mod_gen_lim_w: opt_power(modes.gen_lim_w)?,
        op_mod_load_lim_w: opt_power(modes.load_lim_w)?,
        op_mod_storage_target_w: opt_power(modes.storage_target_w)?,
        ramp_tms: modes
            .ramp_s
            .map(|s| (s * 100.0).round().clamp(0.0, f64::from(u16::MAX)) as u16),
        ..DerControlBase::default()
    })
}

/// The wire code of an engine event status.
pub fn status_code(s: envelope::EventStatus) -> EventStatusCode {
    match s {
        envelope::EventStatus::Scheduled => EventStatusCode::Scheduled,
        envelope::EventStatus::Active => EventStatusCode::Active,
        envelope::EventStatus::Cancelled => EventStatusCode::Cancelled,
        envelope::EventStatus::CancelledWithRandomization => {
            EventStatusCode::CancelledWithRandomization
        }
        envelope::EventStatus::Superseded => EventStatusCode::Superseded,
    }
}

/// A control as the DERControl a device reads. `status_time` is when the status took
/// effect; `reply_to` is where Responses go when the control asks for them.
pub fn der_control(
    rec: &ControlRecord,
    status: envelope::EventStatus,
    status_time: i64,
    href: String,
    reply_to: Option<String>,
    rating_w: Option<f64>,
) -> Result<DerControl, ScaleError> {
    // randomize* are Int16 on the wire; the operator API accepts i32, so larger values are
    // clamped to what can be sent rather than silently wrapped.
    let clamp16 = |v: i32| (v != 0).then(|| v.clamp(i16::MIN as i32, i16::MAX as i32) as i16);
    Ok(DerControl {
        href: Some(href),
        reply_to: if rec.response_required {
            reply_to
        } else {
            None
        },
        // Bits 0 and 1: the device confirms receipt and reports when it starts and ends.
        response_required: rec.response_required.then(|| "03".to_string()),
        subscribable: Some(0),
        m_rid: rec.id.clone(),
        description: rec.description.clone(),
        version: None,
        creation_time: rec.created_at,
        event_status: EventStatus {
            current_status: status_code(status),
            date_time: status_time,
            potentially_superseded: false,
            potentially_superseded_time: None,
            reason: None,
        },
        interval: DateTimeInterval::new(rec.start, rec.duration_s),
        randomize_duration: clamp16(rec.randomize_duration_s),
        randomize_start: clamp16(rec.randomize_start_s),
        der_control_base: control_base(&rec.modes, rating_w)?,
        device_category: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::PowerFactor;

    #[test]
    fn watts_scale_into_int16() {
        let p = active_power(50_000.0).unwrap();
        assert_eq!((p.value, p.multiplier), (5000, 1));
        let p = active_power(1500.0).unwrap();
        assert_eq!((p.value, p.multiplier), (15000, -1));
        assert!(active_power(f64::NAN).is_err());
    }

    #[test]
    fn percentages_of_rating_are_hundredths() {
        assert_eq!(percent_of_rating(2500.0, 5000.0), Some(5000));
        assert_eq!(percent_of_rating(9000.0, 5000.0), Some(10_000));
        assert_eq!(signed_percent_of_rating(-1000.0, 5000.0), Some(-2000));
        assert_eq!(percent_of_rating(1.0, 0.0), None);
    }

    #[test]
    fn control_base_maps_each_mode() {
        let modes = ControlModes {
            connect: Some(true),
            max_lim_w: Some(2500.0),
            exp_lim_w: Some(1500.0),
            fixed_pf_inject: Some(PowerFactor {
                displacement: 0.95,
                excitation: Excitation::UnderExcited,
            }),
            ..ControlModes::default()
        };
        let base = control_base(&modes, Some(5000.0)).unwrap();
        assert_eq!(base.op_mod_connect, Some(true));
        assert_eq!(base.op_mod_max_lim_w, Some(5000));
        let exp = base.op_mod_exp_lim_w.unwrap();
        assert_eq!((exp.value, exp.multiplier), (15000, -1));
        let pf = base.op_mod_fixed_pf_inject_w.unwrap();
        assert_eq!(
            (pf.displacement, pf.multiplier, pf.excitation),
            (950, -3, true)
        );
        // Without a rating the percentage modes cannot be expressed and are left out.
        assert_eq!(control_base(&modes, None).unwrap().op_mod_max_lim_w, None);
    }

    #[test]
    fn mrids_are_stable_hex128() {
        assert_eq!(mrid_for("doe-s1"), mrid_for("doe-s1"));
        assert_eq!(mrid_for("doe-s1").len(), 32);
        assert_ne!(mrid_for("doe-s1"), mrid_for("doe-s2"));
    }
}
