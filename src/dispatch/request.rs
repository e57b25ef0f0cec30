//! What a dispatch instruction asks for, and the checks it must pass before the allocator
//! sees it.
//!
//! The request is an engine type: the operator API, an OpenADR event or an ISO instruction
//! is translated into it at the edge. Validation takes "now" and a way to ask whether a
//! group exists, so it stays pure; a request that fails it changes nothing.

use crate::domain::EpochSeconds;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Which way the portfolio should move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Reduce the portfolio's net load: batteries discharge, flexible loads curtail.
    Discharge,
    /// Increase the portfolio's net load: batteries charge, flexible loads switch on.
    Charge,
}

/// How devices are switched on at the start of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Ramp {
    /// Every device starts at the window start.
    Simultaneous,
    /// Devices start one after another over `over_s` seconds, ordered so that the aggregate
    /// rises linearly in power (this is what keeps a control room's metering error small).
    Staggered { over_s: u32 },
}

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RequestSource {
    /// An operator through the API or CLI.
    Operator,
    /// An OpenADR event (its id in the VTN).
    OpenadrEvent { event_id: String },
    /// An ISO/RTO dispatch instruction (its id in the ISO's system).
    IsoInstruction { instruction_id: String },
}

/// What the request targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Target {
    /// Every DER of a registry group.
    Group { group_id: String },
    /// Every DER of the listed sites.
    Sites { site_ids: Vec<String> },
}

/// How the stored energy of a battery is spent over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// Meet the request for as long as the energy lasts, then report the shortfall. All
    /// batteries still share the load so that they reach their reserve together.
    #[default]
    AsLongAsPossible,
    /// Commit only the level every battery can hold until the end of the window: a lower,
    /// firm delivery instead of full delivery followed by a drop.
    Sustained,
}

/// A dispatch instruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DispatchRequest {
    /// Caller's identifier of this request (kept in plans and logs).
    pub id: String,
    pub target: Target,
    pub direction: Direction,
    /// Requested change of the portfolio's net power, in kW (positive).
    pub power_kw: f64,
    /// Window start, epoch seconds UTC.
    pub start: EpochSeconds,
    /// Window length in seconds.
    pub duration_s: i64,
    pub ramp: Ramp,
    /// Higher values win when requests compete for the same devices (0-255).
    pub priority: u8,
    pub source: RequestSource,
    #[serde(default)]
    pub pacing: Pacing,
}

/// Why a request was refused. Each variant names the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("target.group_id: unknown group '{0}'")]
    UnknownGroup(String),
    #[error("target.site_ids: unknown site '{0}'")]
    UnknownSite(String),
    #[error("target.site_ids: the list is empty")]
    NoSites,
    #[error("target.site_ids: site '{0}' is listed twice")]
    DuplicateSite(String),
    #[error("duration_s: must be positive, got {0}")]
    NonPositiveDuration(i64),
    #[error("power_kw: must be a positive finite number, got {0}")]
    BadPower(f64),
    #[error("start: the window [{start}, {end}) has already ended (now {now})")]
    WindowInPast {
        start: EpochSeconds,
        end: EpochSeconds,
        now: EpochSeconds,
    },
    #[error("ramp.over_s: a staggered ramp of {over_s} s does not fit in a {duration_s} s window")]
    RampLongerThanWindow { over_s: u32, duration_s: i64 },
    #[error("id: must not be empty")]
    EmptyId,
}

impl RequestError {
    /// The request field at fault, as a JSON path.
    pub fn field(&self) -> &'static str {
        match self {
            RequestError::UnknownGroup(_) => "target.group_id",
            RequestError::UnknownSite(_)
            | RequestError::NoSites
            | RequestError::DuplicateSite(_) => "target.site_ids",
            RequestError::NonPositiveDuration(_) => "duration_s",
            RequestError::BadPower(_) => "power_kw",
            RequestError::WindowInPast { .. } => "start",
            RequestError::RampLongerThanWindow { .. } => "ramp.over_s",
            RequestError::EmptyId => "id",
        }
    }
}

impl DispatchRequest {
    /// The end of the window (exclusive).
    pub fn end(&self) -> EpochSeconds {
        self.start.saturating_add(self.duration_s)
    }

    /// Checks the request against the clock and the registry. `group_exists` and
    /// `site_exists` answer for the registry; they are only asked about the ids the target
    /// names. A window that started before `now` but has not ended is accepted: the plan then
    /// covers the part from `now` on (an instruction that arrives late still counts).
    pub fn validate(
        &self,
        now: EpochSeconds,
        group_exists: impl Fn(&str) -> bool,
        site_exists: impl Fn(&str) -> bool,
    ) -> Result<(), RequestError> {
        if self.id.trim().is_empty() {
            return Err(RequestError::EmptyId);
        }
        if !(self.power_kw.is_finite() && self.power_kw > 0.0) {
            return Err(RequestError::BadPower(self.power_kw));
        }
        if self.duration_s <= 0 {
            return Err(RequestError::NonPositiveDuration(self.duration_s));
        }
        if self.end() <= now {
            return Err(RequestError::WindowInPast {
                start: self.start,
                end: self.end(),
                now,
            });
        }
        if let Ramp::Staggered { over_s } = self.ramp
            && i64::from(over_s) > self.duration_s
        {
            return Err(RequestError::RampLongerThanWindow {
                over_s,
                duration_s: self.duration_s,
            });
        }
        match &self.target {
            Target::Group { group_id } => {
                if !group_exists(group_id) {
                    return Err(RequestError::UnknownGroup(group_id.clone()));
                }
            }
            Target::Sites { site_ids } => {
                if site_ids.is_empty() {
                    return Err(RequestError::NoSites);
                }
                let mut seen = HashSet::with_capacity(site_ids.len());
                for s in site_ids {
                    if !seen.insert(s.as_str()) {
                        return Err(RequestError::DuplicateSite(s.clone()));
                    }
                    if !site_exists(s) {
                        return Err(RequestError::UnknownSite(s.clone()));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> DispatchRequest {
        DispatchRequest {
            id: "r1".into(),
            target: Target::Group {
                group_id: "feeder-7".into(),
            },
            direction: Direction::Discharge,
            power_kw: 2000.0,
            start: 10_000,
            duration_s: 7200,
            ramp: Ramp::Staggered { over_s: 120 },
            priority: 5,
            source: RequestSource::Operator,
            pacing: Pacing::AsLongAsPossible,
        }
    }

    fn check(r: &DispatchRequest, now: i64) -> Result<(), RequestError> {
        r.validate(now, |g| g == "feeder-7", |s| s.starts_with("site-"))
    }

    #[test]
    fn a_well_formed_request_passes() {
        assert_eq!(check(&req(), 9_000), Ok(()));
        // Started already but not ended: accepted, the plan covers the rest.
        assert_eq!(check(&req(), 12_000), Ok(()));
    }

    #[test]
    fn unknown_group_is_named() {
        let mut r = req();
        r.target = Target::Group {
            group_id: "feeder-9".into(),
        };
        assert_eq!(
            check(&r, 0),
            Err(RequestError::UnknownGroup("feeder-9".into()))
        );
    }

    #[test]
    fn zero_and_negative_durations_are_refused() {
        for d in [0, -60] {
            let mut r = req();
            r.duration_s = d;
            assert_eq!(check(&r, 0), Err(RequestError::NonPositiveDuration(d)));
        }
    }

    #[test]
    fn a_window_that_has_ended_is_refused() {
        let r = req();
        let err = check(&r, 17_200).unwrap_err();
        assert_eq!(
            err,
            RequestError::WindowInPast {
                start: 10_000,
                end: 17_200,
                now: 17_200
            }
        );
        assert!(err.to_string().contains("already ended"));
    }

    #[test]
    fn bad_power_ramp_and_sites_are_refused() {
        for p in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            let mut r = req();
            r.power_kw = p;
            assert!(matches!(check(&r, 0), Err(RequestError::BadPower(_))));
        }
        let mut r = req();
        r.ramp = Ramp::Staggered { over_s: 8000 };
        assert!(matches!(
            check(&r, 0),
            Err(RequestError::RampLongerThanWindow { .. })
        ));
        r.ramp = Ramp::Simultaneous;
        r.target = Target::Sites { site_ids: vec![] };
        assert_eq!(check(&r, 0), Err(RequestError::NoSites));
        r.target = Target::Sites {
            site_ids: vec!["site-1".into(), "site-1".into()],
        };
        assert_eq!(
            check(&r, 0),
            Err(RequestError::DuplicateSite("site-1".into()))
        );
        r.target = Target::Sites {
            site_ids: vec!["site-1".into(), "elsewhere".into()],
        };
        assert_eq!(
            check(&r, 0),
            Err(RequestError::UnknownSite("elsewhere".into()))
        );
        r.id = " ".into();
        assert_eq!(check(&r, 0), Err(RequestError::EmptyId));
    }
}
