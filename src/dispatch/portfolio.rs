//! Loading a dispatch problem from the registry: the target group's (or sites') DERs, their
//! sites, the envelope limits in force over each step, and each battery's latest state of
//! charge from telemetry. This is the thin I/O layer around the pure allocator.
//!
//! What the registry does not hold yet comes from [`Assumptions`] and is reported back with
//! the plan: the subscriber load forecast (one figure per site until the flexible capacity
//! forecast feeds it), the self-consumption policy, and the state of charge of batteries
//! with no recent reading.

use super::allocate::{Plan, allocate};
use super::input::{DerInput, DeviceLimits, FlowLimits, Problem, ProblemError, SiteInput, Storage};
use super::request::{Direction, DispatchRequest, RequestError, Target};
use crate::domain::{DerClass, DerStatus, EpochSeconds};
use crate::envelope::records::{InForceTarget, applicable};
use crate::registry::model::{Der, Group, Site};
use crate::registry::{MAX_PAGE, Registry, RegistryError};
use crate::store::Record;
use crate::store::record::dynamic;
use crate::telemetry::{Measurand, TelemetryError, store as readings};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Planning inputs the registry does not hold. Every field has a documented default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Assumptions {
    /// Plan step, seconds (60-3600).
    pub step_s: i64,
    /// Share of each subscriber's load the batteries keep covering during a discharge, 0-1.
    pub self_consumption: f64,
    /// Subscriber load per site, kW (net of on-site generation), until a forecast is wired.
    pub site_load_kw: f64,
    /// State of charge assumed for a battery with no reading newer than `soc_max_age_s`.
    pub default_soc_pct: f64,
    /// How old a state-of-charge reading may be and still be used, seconds.
    pub soc_max_age_s: i64,
}

impl Default for Assumptions {
    fn default() -> Self {
        Assumptions {
            step_s: 300,
            self_consumption: 0.5,
            site_load_kw: 0.0,
            default_soc_pct: 50.0,
            soc_max_age_s: 3600,
        }
    }
}

/// Why a plan could not be made from the registry.
#[derive(Debug, thiserror::Error)]
pub enum PortfolioError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("assumptions.{field}: {reason}")]
    BadAssumption { field: &'static str, reason: String },
    #[error("the target holds no DER that can be dispatched")]
    NothingToDispatch,
    #[error(transparent)]
    Problem(#[from] ProblemError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
}

impl Assumptions {
    fn validate(&self) -> Result<(), PortfolioError> {
        let bad = |field, reason: &str| {
            Err(PortfolioError::BadAssumption {
                field,
                reason: reason.to_string(),
            })
        };
        if !(60..=3600).contains(&self.step_s) {
            return bad("step_s", "must be between 60 and 3600");
        }
        if !(0.0..=1.0).contains(&self.self_consumption) {
            return bad("self_consumption", "must be between 0 and 1");
        }
        if !self.site_load_kw.is_finite() {
            return bad("site_load_kw", "must be a finite number");
        }
        if !(0.0..=100.0).contains(&self.default_soc_pct) {
            return bad("default_soc_pct", "must be between 0 and 100");
        }
        if self.soc_max_age_s < 0 {
            return bad("soc_max_age_s", "must not be negative");
        }
        Ok(())
    }
}

/// What the loader used besides the registry, reported with the plan.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LoadNotes {
    pub ders: usize,
    pub sites: usize,
    /// Batteries whose state of charge came from a reading.
    pub soc_from_telemetry: usize,
    /// Batteries planned at `default_soc_pct` for lack of a recent reading.
    pub soc_assumed: usize,
    /// DERs of the target left out: not active, or PV asked to discharge.
    pub left_out: usize,
}

async fn ders_at_sites(
    registry: &Registry,
    site_ids: &[String],
) -> Result<Vec<Der>, RegistryError> {
    let mut out = Vec::new();
    for chunk in site_ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {} FROM ders WHERE site_id IN ({}) ORDER BY id",
            Der::COLUMNS.join(", "),
            marks.join(", ")
        );
        let mut q = dynamic(sql);
        for s in chunk {
            q = q.bind(s.clone());
        }
        let rows = q
            .fetch_all(registry.store().pool())
            .await
            .map_err(crate::store::StoreError::from)?;
        for r in &rows {
            out.push(Der::from_row(r)?);
        }
    }
    Ok(out)
}

/// Builds the allocator's problem for `req` from the registry, envelopes and telemetry, or
/// refuses the request (unknown group or site, window in the past, ...) without side
/// effects. The window starts at `max(req.start, now)`.
pub async fn load(
    registry: &Registry,
    req: &DispatchRequest,
    now: EpochSeconds,
    assumptions: &Assumptions,
    seed: u64,
) -> Result<(Problem, LoadNotes), PortfolioError> {
    assumptions.validate()?;
    // Existence first, so validation can name what is missing.
    let mut known_sites: HashSet<String> = HashSet::new();
    let mut group_known = false;
    match &req.target {
        Target::Group { group_id } => match registry.get::<Group>(group_id).await {
            Ok(_) => group_known = true,
            Err(RegistryError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        },
        Target::Sites { site_ids } => {
            for s in site_ids {
                match registry.get::<Site>(s).await {
                    Ok(_) => {
                        known_sites.insert(s.clone());
                    }
                    Err(RegistryError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    req.validate(now, |_| group_known, |s| known_sites.contains(s))?;

    let all: Vec<Der> = match &req.target {
        Target::Group { group_id } => {
            let mut v = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = registry
                    .group_members(group_id, after.as_deref(), MAX_PAGE)
                    .await?;
                v.extend(page.items);
                match page.next_after {
                    Some(a) => after = Some(a),
                    None => break,
                }
            }
            v
        }
        Target::Sites { site_ids } => ders_at_sites(registry, site_ids).await?,
    };
    let total = all.len();
    // Only active devices are asked. Loads without storage (EV chargers, thermostats, water
    // heaters, C&I loads) are planned as flexible up to their rating; a PV inverter can only
    // help a charge request (by curtailing), since it already produces what it can.
    let ders: Vec<Der> = all
        .into_iter()
        .filter(|d| d.status == DerStatus::Active)
        .filter(|d| d.der_class != DerClass::PvInverter || req.direction == Direction::Charge)
        .collect();
    if ders.is_empty() {
        return Err(PortfolioError::NothingToDispatch);
    }
    let start = req.start.max(now);
    let steps = Problem::uniform_steps(start, req.end(), assumptions.step_s);
    let k = steps.len() - 1;

    let mut site_index: HashMap<String, u32> = HashMap::new();
    let mut sites: Vec<SiteInput> = Vec::new();
    for d in &ders {
        if site_index.contains_key(&d.site_id) {
            continue;
        }
        let a = applicable(registry, &InForceTarget::Site(d.site_id.clone())).await?;
        let limits = (0..k)
            .map(|j| {
                FlowLimits::over_step(
                    &a.programs,
                    &a.controls,
                    &a.defaults,
                    &d.site_id,
                    seed,
                    steps[j],
                    steps[j + 1],
                )
            })
            .collect();
        site_index.insert(d.site_id.clone(), sites.len() as u32);
        sites.push(SiteInput {
            id: d.site_id.clone(),
            zone: None,
            self_consumption: assumptions.self_consumption,
            load_kw: vec![assumptions.site_load_kw],
            limits,
        });
    }

    let mut notes = LoadNotes {
        ders: ders.len(),
        sites: sites.len(),
        soc_from_telemetry: 0,
        soc_assumed: 0,
        left_out: total - ders.len(),
    };
    let mut inputs = Vec::with_capacity(ders.len());
    for d in &ders {
        let a = applicable(registry, &InForceTarget::Der(d.id.clone())).await?;
        let limits: Vec<DeviceLimits> = (0..k)
            .map(|j| {
                DeviceLimits::over_step(
                    &a.programs,
                    &a.controls,
                    &a.defaults,
                    &d.id,
                    seed,
                    steps[j],
                    steps[j + 1],
                )
            })
            .collect();
        let storage = match d.storage_kwh {
            Some(kwh) if kwh > 0.0 || d.der_class == DerClass::Battery => {
                let recent = readings::query(
                    registry.store(),
                    &d.id,
                    Some(Measurand::StateOfCharge),
                    now - assumptions.soc_max_age_s,
                    now + 1,
                )
                .await?;
                let soc = match recent.last() {
                    Some(r) => {
                        notes.soc_from_telemetry += 1;
                        r.value.clamp(0.0, 100.0)
                    }
                    None => {
                        notes.soc_assumed += 1;
                        assumptions.default_soc_pct
                    }
                };
                Some(Storage {
                    capacity_kwh: kwh.max(0.0),
                    soc_pct: soc,
                    reserve_pct: d.reserve_pct.unwrap_or(0.0).clamp(0.0, 100.0),
                })
            }
            _ => None,
        };
        inputs.push(DerInput {
            id: d.id.clone(),
            site: site_index[&d.site_id],
            rated_kw: d.rated_kw.max(0.0),
            storage,
            dispatch_cap_kw: None,
            limits,
        });
    }
    Ok((
        Problem {
            steps,
            ders: inputs,
            sites,
            zones: vec![],
            group_limits: vec![],
        },
        notes,
    ))
}

/// [`load`] then [`allocate`].
pub async fn plan(
    registry: &Registry,
    req: &DispatchRequest,
    now: EpochSeconds,
    assumptions: &Assumptions,
    seed: u64,
) -> Result<(Problem, Plan, LoadNotes), PortfolioError> {
    let (problem, notes) = load(registry, req, now, assumptions, seed).await?;
    let plan = allocate(req, &problem)?;
    Ok((problem, plan, notes))
}

/// Longest history the forecast looks back over, days.
pub const MAX_LOOKBACK_DAYS: u32 = 60;

/// What to forecast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForecastQuery {
    pub group_id: String,
    pub start: EpochSeconds,
    pub end: EpochSeconds,
    pub lookback_days: u32,
}

/// The flexible capacity forecast of a group over `[start, end)`: the group's DERs, limits
/// and state of charge as [`load`] reads them, and each site's load history from the
/// `active_power_w` readings of its meter (the one with the smallest id; positive is
/// import), over the `lookback_days` days before.
pub async fn forecast_group(
    registry: &Registry,
    q: &ForecastQuery,
    now: EpochSeconds,
    assumptions: &Assumptions,
    seed: u64,
) -> Result<super::forecast::FlexForecast, PortfolioError> {
    let ForecastQuery {
        group_id,
        start,
        end,
        lookback_days,
    } = q.clone();
    if !(1..=MAX_LOOKBACK_DAYS).contains(&lookback_days) {
        return Err(PortfolioError::BadAssumption {
            field: "lookback_days",
            reason: format!("must be between 1 and {MAX_LOOKBACK_DAYS}"),
        });
    }
    let req = DispatchRequest {
        id: "flex-forecast".into(),
        target: Target::Group {
            group_id: group_id.clone(),
        },
        direction: Direction::Discharge,
        power_kw: 1.0,
        start,
        duration_s: end - start,
        ramp: super::request::Ramp::Simultaneous,
        priority: 0,
        source: super::request::RequestSource::Operator,
        pacing: super::request::Pacing::Sustained,
    };
    let (problem, _) = load(registry, &req, now, assumptions, seed).await?;
    let k = problem.step_count();
    let (from, to) = (
        problem.steps[0] - i64::from(lookback_days) * 86_400,
        problem.steps[k] - 86_400,
    );
    let mut history = Vec::with_capacity(problem.sites.len());
    for site in &problem.sites {
        let meter: Option<String> =
            sqlx::query("SELECT id FROM meters WHERE site_id = $1 ORDER BY id LIMIT 1")
                .bind(site.id.clone())
                .fetch_optional(registry.store().pool())
                .await
                .map_err(|e| RegistryError::from(crate::store::StoreError::from(e)))?
                .map(|r| sqlx::Row::try_get::<String, _>(&r, 0))
                .transpose()
                .map_err(|e| RegistryError::from(crate::store::StoreError::from(e)))?;
        let samples = match meter {
            Some(m) if to > from => {
                readings::query(registry.store(), &m, Some(Measurand::ActivePower), from, to)
                    .await?
                    .into_iter()
                    .map(|r| (r.instant, r.value / 1000.0))
                    .collect()
            }
            _ => Vec::new(),
        };
        history.push(samples);
    }
    Ok(super::forecast::forecast(
        &problem,
        &history,
        lookback_days,
    )?)
}
