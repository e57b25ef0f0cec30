//! Carries an event's [`Translation`] into the registry and the dispatch planner: links
//! checked against the registry, dispatch requests planned, then controls created (one
//! control program per event and linked site or group) and plans stored; and the controls
//! of an event cancelled when it changes or goes.
//!
//! Order is what keeps an event from half-happening: [`prepare`] does every check and
//! every plan without writing, so an event the engine cannot take is refused with nothing
//! written. [`commit`] then writes through the registry (which announces each control on
//! its change feed, as IEEE 2030.5 subscribers need); should the store fail part-way, what
//! it wrote is undone (controls cancelled, plans deleted) before the error is answered.

use super::error::OadrError;
use super::events::{EngineConfig, Link, Translation, translate};
use super::model::EventRequest;
use crate::api::envelopes::RANDOMIZATION_SEED;
use crate::dispatch::portfolio::{Assumptions, PortfolioError, plan};
use crate::dispatch::records::{self as plans, PlanRecord};
use crate::domain::EpochSeconds;
use crate::envelope::records::{ControlProgram, ControlRecord, TargetKind};
use crate::registry::model::{Group, Site};
use crate::registry::{Registry, RegistryError};
use crate::store::StoreError;
use crate::store::record::{dynamic, text};

/// Where an event's targets may point in the registry, as found in the VTN's objects.
#[derive(Debug, Default)]
pub struct Candidates {
    /// `group:<id>` targets: the group must exist.
    pub groups: Vec<String>,
    /// `site:<id>` targets: the site must exist.
    pub sites: Vec<String>,
}

fn registry_error(e: RegistryError) -> OadrError {
    match e {
        RegistryError::Store(s) => s.into(),
        other => {
            let p = OadrError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; quote the correlation id to the operator",
            );
            tracing::error!(correlation_id = %p.0.correlation_id, error = %other, "openadr3 engine write failed");
            p
        }
    }
}

/// The registry objects `c` names; a named group or site that does not exist refuses the
/// event.
pub async fn resolve(registry: &Registry, c: &Candidates) -> Result<Vec<Link>, OadrError> {
    let mut links = Vec::new();
    for g in &c.groups {
        match registry.get::<Group>(g).await {
            Ok(_) => links.push(Link::Group(g.clone())),
            Err(RegistryError::NotFound { .. }) => {
                return Err(OadrError::invalid(
                    "targets",
                    format!("'group:{g}' names no registry group"),
                ));
            }
            Err(e) => return Err(registry_error(e)),
        }
    }
    for s in &c.sites {
        match registry.get::<Site>(s).await {
            Ok(_) => links.push(Link::Site(s.clone())),
            Err(RegistryError::NotFound { .. }) => {
                return Err(OadrError::invalid(
                    "targets",
                    format!("'site:{s}' names no registry site"),
                ));
            }
            Err(e) => return Err(registry_error(e)),
        }
    }
    Ok(links)
}

/// An event's engine work, checked and planned, not yet written.
#[derive(Debug)]
pub struct Prepared {
    pub translation: Translation,
    pub plans: Vec<PlanRecord>,
}

fn portfolio_error(r: &str, e: PortfolioError) -> OadrError {
    let detail = format!("dispatch request {r}: {e}");
    match e {
        PortfolioError::Request(_) | PortfolioError::NothingToDispatch => {
            OadrError::invalid("targets", detail)
        }
        PortfolioError::Registry(RegistryError::Store(s)) => s.into(),
        other => registry_error(RegistryError::Store(StoreError::Corrupt(other.to_string()))),
    }
}

/// Translates and plans `event` without writing anything.
pub async fn prepare(
    registry: &Registry,
    config: &EngineConfig,
    event_id: &str,
    event: &EventRequest,
    links: Vec<Link>,
    now: EpochSeconds,
) -> Result<Prepared, OadrError> {
    let translation = translate(event_id, event, links, now, config)?;
    let mut out = Vec::new();
    let assumptions = Assumptions::default();
    for request in &translation.requests {
        let (_, p, _) = plan(registry, request, now, &assumptions, RANDOMIZATION_SEED)
            .await
            .map_err(|e| portfolio_error(&request.id, e))?;
        out.push(PlanRecord::of_plan(request, &assumptions, &p, now)?);
    }
    Ok(Prepared {
        translation,
        plans: out,
    })
}

/// The prefix of the ids of an event's control programs.
fn program_prefix(event_id: &str) -> String {
    format!("oadr3:{}:", event_id.replace('-', ""))
}

fn kind_of(l: &Link) -> (TargetKind, &str) {
    match l {
        Link::Group(g) => (TargetKind::Group, g),
        Link::Site(s) => (TargetKind::Site, s),
    }
}

/// What [`commit`] wrote, so that it can be undone.
#[derive(Debug, Default)]
pub struct Written {
    pub controls: Vec<String>,
    pub plans: Vec<String>,
}

/// Writes a prepared event; on failure undoes what it wrote.
pub async fn commit(
    registry: &Registry,
    config: &EngineConfig,
    event_id: &str,
    p: &Prepared,
) -> Result<Written, OadrError> {
    let mut written = Written::default();
    match write(registry, config, event_id, p, &mut written).await {
        Ok(()) => Ok(written),
        Err(e) => {
            undo(registry, &written).await;
            Err(e)
        }
    }
}

async fn write(
    registry: &Registry,
    config: &EngineConfig,
    event_id: &str,
    p: &Prepared,
    written: &mut Written,
) -> Result<(), OadrError> {
    if !p.translation.controls.is_empty() {
        let prefix = program_prefix(event_id);
        let existing = dynamic(
            "SELECT id, target_kind, target_id FROM control_programs WHERE id LIKE $1".into(),
        )
        .bind(format!("{prefix}%"))
        .fetch_all(registry.store().pool())
        .await
        .map_err(StoreError::from)?;
        let mut known = Vec::new();
        for r in &existing {
            known.push((
                text(r, "id")?,
                text(r, "target_kind")?,
                text(r, "target_id")?,
            ));
        }
        for link in &p.translation.links {
            let (kind, target) = kind_of(link);
            let kind_name = match kind {
                TargetKind::Group => "group",
                TargetKind::Site => "site",
                TargetKind::Der => "der",
            };
            let program_id = match known.iter().find(|(_, k, t)| k == kind_name && t == target) {
                Some((id, _, _)) => id.clone(),
                None => {
                    let id = format!("{prefix}{}", known.len());
                    registry
                        .create(ControlProgram {
                            id: id.clone(),
                            name: format!("OpenADR 3 event {event_id} for {kind_name} {target}"),
                            description: Some(format!(
                                "capacity limits of OpenADR 3 event {event_id}"
                            )),
                            primacy: config.envelope_primacy,
                            target_kind: kind,
                            target_id: target.to_string(),
                            created_at: 0,
                            updated_at: 0,
                        })
                        .await
                        .map_err(registry_error)?;
                    known.push((id.clone(), kind_name.into(), target.to_string()));
                    id
                }
            };
            for c in &p.translation.controls {
                let rec = registry
                    .create(ControlRecord {
                        id: String::new(),
                        program_id: program_id.clone(),
                        description: Some(format!(
                            "OpenADR 3 event {event_id} interval {}",
                            c.interval_id
                        )),
                        start: c.start,
                        duration_s: c.duration_s,
                        randomize_start_s: 0,
                        randomize_duration_s: 0,
                        modes: c.modes.clone(),
                        response_required: false,
                        cancelled_at: None,
                        cancel_randomized: false,
                        created_at: 0,
                        updated_at: 0,
                    })
                    .await
                    .map_err(registry_error)?;
                written.controls.push(rec.id);
            }
        }
    }
    for plan in &p.plans {
        plans::insert(registry.store(), plan).await?;
        written.plans.push(plan.id.clone());
    }
    Ok(())
}

/// Undoes a commit: its controls cancelled (devices may already have seen them), its
/// plans deleted. Failures are logged; there is nothing left to answer them with.
pub async fn undo(registry: &Registry, w: &Written) {
    for c in &w.controls {
        if let Err(e) = registry.delete::<ControlRecord>(c).await {
            tracing::error!(control = %c, error = %e, "could not cancel an OpenADR event's control");
        }
    }
    for p in &w.plans {
        let r = dynamic("DELETE FROM dispatch_plans WHERE id = $1".into())
            .bind(p.clone())
            .execute(registry.store().pool())
            .await;
        if let Err(e) = r {
            tracing::error!(plan = %p, error = %e, "could not delete an OpenADR event's plan");
        }
    }
}

/// Cancels the event's controls that are still in force, except those in `keep`.
pub async fn cancel(registry: &Registry, event_id: &str, keep: &[String]) -> Result<(), OadrError> {
    let rows = dynamic(
        "SELECT c.id FROM controls c JOIN control_programs p ON p.id = c.program_id \
         WHERE p.id LIKE $1 AND c.cancelled_at IS NULL"
            .into(),
    )
    .bind(format!("{}%", program_prefix(event_id)))
    .fetch_all(registry.store().pool())
    .await
    .map_err(StoreError::from)?;
    for r in &rows {
        let id = text(r, "id")?;
        if keep.contains(&id) {
            continue;
        }
        registry
            .delete::<ControlRecord>(&id)
            .await
            .map_err(registry_error)?;
    }
    Ok(())
}
