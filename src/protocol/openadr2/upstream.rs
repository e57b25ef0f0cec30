//! The upstream OpenADR 2.0b VEN as `switchyard serve` runs it (`[openadr2.upstream]`):
//! registers with the utility's VTN, polls it, turns each event into dispatch plans for the
//! configured group (planned and handed to the dispatch executor like an operator's
//! dispatch), opts in or out by the plan's feasibility, stops the plans of modified and
//! cancelled events, and reports the group's live aggregate power.
//!
//! The task survives VTN outages: every failure is logged and retried with exponential
//! backoff (1 s doubling to `max_backoff_seconds`); a VTN that forgot the registration
//! (463, or a request to re-register) is registered with again.

use super::upstream_map::{SignalMapping, map_event};
use super::upstream_store::{self as decisions, Decision};
use super::ven::{EventOpt, Polled, Ven, VenError, VenSettings};
use crate::aggregation::estimate::EstimatorKind;
use crate::aggregation::live::{LiveQuery, live_estimate};
use crate::aggregation::response::ResponseModel;
use crate::api::envelopes::RANDOMIZATION_SEED;
use crate::dispatch::delivery::{self, PlanEvent};
use crate::dispatch::execute::{ExecuteError, Executor, OperatorInstruction};
use crate::dispatch::portfolio::{Assumptions, plan};
use crate::dispatch::records::{self as plans, PlanRecord};
use crate::dispatch::{DispatchRequest, activation_offsets};
use crate::domain::{EpochSeconds, now_epoch};
use crate::registry::Registry;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// When the VEN opts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptPolicy {
    /// Opt in when every plan of the event is feasible (no shortfall), else opt out and
    /// plan nothing.
    #[default]
    Feasible,
    /// Opt in to every event it can map, and deliver what the group can.
    Always,
}

/// `[openadr2.upstream]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// The utility VTN's base URL, ending in `/OpenADR2/Simple/2.0b`.
    pub vtn_url: String,
    /// The venName sent at registration.
    pub ven_name: String,
    /// The registry group the utility's events dispatch and whose aggregate is reported.
    pub group_id: String,
    /// PEM file of the CAs the VTN's certificate must chain to (https).
    pub ca_cert: Option<PathBuf>,
    /// PEM file of the VEN's client certificate: its fingerprint is the VEN's 2.0b identity.
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub client_key: Option<PathBuf>,
    /// How often to oadrPoll, seconds.
    pub poll_interval_seconds: u64,
    /// How often to send the aggregate report once the VTN asked for it, seconds.
    pub report_interval_seconds: u64,
    /// Longest wait between retries after a failure, seconds.
    pub max_backoff_seconds: u64,
    /// Longest time one exchange with the VTN may take, seconds.
    pub timeout_seconds: u64,
    pub opt_policy: OptPolicy,
    /// How signal values become kW.
    pub signals: SignalMapping,
    /// Planning assumptions for the events' dispatch plans.
    pub assumptions: Assumptions,
    /// Grid frequency and voltage announced with the power report (the schema wants them).
    pub grid_hertz: f64,
    pub grid_voltage: f64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            vtn_url: String::new(),
            ven_name: "switchyard".into(),
            group_id: String::new(),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            poll_interval_seconds: 10,
            report_interval_seconds: 60,
            max_backoff_seconds: 300,
            timeout_seconds: 30,
            opt_policy: OptPolicy::Feasible,
            signals: SignalMapping::default(),
            assumptions: Assumptions::default(),
            grid_hertz: 60.0,
            grid_voltage: 240.0,
        }
    }
}

/// Why the upstream VEN could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("openadr2.upstream.{field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("openadr2.upstream TLS: {0}")]
    Tls(String),
}

fn config_error(field: &'static str, reason: impl Into<String>) -> UpstreamError {
    UpstreamError::Config {
        field,
        reason: reason.into(),
    }
}

impl UpstreamConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), UpstreamError> {
        if !(self.vtn_url.starts_with("http://") || self.vtn_url.starts_with("https://")) {
            return Err(config_error("vtn_url", "must be an http(s) URL"));
        }
        if self.ven_name.trim().is_empty() {
            return Err(config_error("ven_name", "must not be empty"));
        }
        if self.group_id.trim().is_empty() {
            return Err(config_error("group_id", "must name a registry group"));
        }
        if self.poll_interval_seconds == 0 || self.report_interval_seconds == 0 {
            return Err(config_error(
                "poll_interval_seconds",
                "poll and report intervals must be at least 1 s",
            ));
        }
        let tls = [&self.ca_cert, &self.client_cert, &self.client_key];
        let given = tls.iter().filter(|p| p.is_some()).count();
        if given != 0 && given != 3 {
            return Err(config_error(
                "client_cert",
                "ca_cert, client_cert and client_key go together",
            ));
        }
        if self.vtn_url.starts_with("https://") && given == 0 {
            return Err(config_error(
                "client_cert",
                "an https VTN needs ca_cert, client_cert and client_key (2.0b identifies the VEN by its certificate)",
            ));
        }
        if self
            .signals
            .simple_level_kw
            .iter()
            .any(|k| !(k.is_finite() && *k >= 0.0))
        {
            return Err(config_error(
                "signals.simple_level_kw",
                "levels must be finite and >= 0 kW",
            ));
        }
        Ok(())
    }

    fn http(&self) -> Result<reqwest::Client, UpstreamError> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(self.timeout_seconds.max(1)))
            .redirect(reqwest::redirect::Policy::none());
        if let (Some(ca), Some(cert), Some(key)) =
            (&self.ca_cert, &self.client_cert, &self.client_key)
        {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p)
                    .map_err(|e| UpstreamError::Tls(format!("cannot read {}: {e}", p.display())))
            };
            let tls =
                crate::protocol::sep2::tls::client_config(&read(ca)?, &read(cert)?, &read(key)?)
                    .map_err(|e| UpstreamError::Tls(e.to_string()))?;
            b = b.tls_backend_preconfigured(tls);
        }
        b.build().map_err(|e| UpstreamError::Tls(e.to_string()))
    }
}

/// What handling an event needs.
struct Context {
    registry: Registry,
    executor: Option<Executor>,
    config: UpstreamConfig,
}

/// Checks `config`, then runs the VEN until `shutdown` is raised.
pub fn spawn(
    config: UpstreamConfig,
    registry: Registry,
    executor: Option<Executor>,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, UpstreamError> {
    config.validate()?;
    let http = config.http()?;
    let ven = Ven::new(
        http,
        VenSettings {
            vtn_url: config.vtn_url.clone(),
            ven_name: config.ven_name.clone(),
            group_id: config.group_id.clone(),
            grid_hertz: config.grid_hertz,
            grid_voltage: config.grid_voltage,
        },
    );
    let ctx = Context {
        registry,
        executor,
        config,
    };
    Ok(tokio::spawn(run(ctx, ven, shutdown)))
}

/// `GET /api/v1/openadr2/upstream/events`: every stored decision (operator API, behind its
/// token check).
pub fn operator_router(store: crate::store::Store) -> axum::Router {
    async fn list(
        axum::extract::State(store): axum::extract::State<crate::store::Store>,
    ) -> Result<axum::Json<Vec<Decision>>, crate::api::problem::Problem> {
        decisions::all(&store).await.map(axum::Json).map_err(|e| {
            let p = crate::api::problem::Problem::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; quote the correlation id to the operator",
            );
            tracing::error!(correlation_id = %p.correlation_id, error = %e, "upstream decisions unreadable");
            p
        })
    }
    axum::Router::new()
        .route("/api/v1/openadr2/upstream/events", axum::routing::get(list))
        .with_state(store)
}

/// Sleeps `d`; false when shutdown was raised meanwhile.
async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|s| *s) => true,
    };
    !stopped && !*shutdown.borrow()
}

async fn run(ctx: Context, mut ven: Ven, mut shutdown: watch::Receiver<bool>) {
    let c = &ctx.config;
    let max_backoff = Duration::from_secs(c.max_backoff_seconds.max(1));
    let poll_every = Duration::from_secs(c.poll_interval_seconds);
    let report_every = Duration::from_secs(c.report_interval_seconds);
    let mut backoff = Duration::from_secs(1);
    let mut registered = false;
    let mut next_report = tokio::time::Instant::now();
    tracing::info!(vtn = %c.vtn_url, group = %c.group_id, "upstream OpenADR 2.0b VEN starting");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let step = if registered {
            poll_once(&ctx, &mut ven).await
        } else {
            ven.register().await.map(|()| {
                tracing::info!(ven_id = ?ven.ven_id, registration_id = ?ven.registration_id, "registered with the upstream VTN");
                registered = true;
            })
        };
        if let Err(e) = step {
            if matches!(
                &e,
                VenError::NotRegistered | VenError::Refused { .. } | VenError::Unexpected { .. }
            ) {
                registered = false;
            }
            tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "upstream OpenADR 2.0b VTN exchange failed");
            if !pause(backoff, &mut shutdown).await {
                break;
            }
            backoff = (backoff * 2).min(max_backoff);
            continue;
        }
        backoff = Duration::from_secs(1);
        if registered && ven.report_request.is_some() && tokio::time::Instant::now() >= next_report
        {
            next_report = tokio::time::Instant::now() + report_every;
            if let Err(e) = report_once(&ctx, &mut ven).await {
                tracing::warn!(error = %e, "upstream aggregate report not sent");
            }
        }
        if !pause(poll_every, &mut shutdown).await {
            break;
        }
    }
    tracing::info!("upstream OpenADR 2.0b VEN stopped");
}

/// Polls once and answers any events.
async fn poll_once(ctx: &Context, ven: &mut Ven) -> Result<(), VenError> {
    let Polled::Events { request_id, events } = ven.poll().await? else {
        return Ok(());
    };
    let mut opts = Vec::new();
    for e in &events {
        let d = match decide(ctx, &e.event, now_epoch()).await {
            Ok(d) => d,
            Err(err) => {
                // The store failed: no answer now; the VTN sends the event again.
                tracing::error!(event = %e.event.descriptor.event_id, error = %err, "upstream event not handled");
                continue;
            }
        };
        if e.response_required == "always" {
            opts.push(EventOpt {
                event_id: e.event.descriptor.event_id.clone(),
                modification_number: e.event.descriptor.modification_number,
                opt_in: d.opt_type == "optIn",
                reason: d.reason,
            });
        }
    }
    ven.respond(&request_id, &opts).await
}

/// Sends the group's live aggregate (latest-sum estimate, W, positive into the sites).
async fn report_once(ctx: &Context, ven: &mut Ven) -> Result<(), String> {
    let at = now_epoch();
    let q = LiveQuery {
        group_id: ctx.config.group_id.clone(),
        estimator: EstimatorKind::LatestSum,
        at,
        read_interval_s: None,
        latency_s: 0.0,
        model: ResponseModel::default(),
    };
    let e = live_estimate(&ctx.registry, &q)
        .await
        .map_err(|e| format!("live estimate of group {}: {e}", ctx.config.group_id))?;
    if e.reporting == 0 {
        return Err(format!(
            "no member of group {} has reported power yet",
            ctx.config.group_id
        ));
    }
    ven.report(at, e.value_w).await.map_err(|e| e.to_string())
}

/// The decision for one received event: the stored one when this modification was seen
/// before, else a new one (stopping the plans of the previous modification first).
async fn decide(
    ctx: &Context,
    event: &super::model::EiEvent,
    now: EpochSeconds,
) -> Result<Decision, StoreError> {
    let store = ctx.registry.store();
    let d = &event.descriptor;
    let modification = i64::from(d.modification_number);
    let prior = decisions::latest(store, &d.event_id).await?;
    if let Some(p) = &prior
        && p.modification_number >= modification
    {
        return Ok(p.clone());
    }
    let status = d.event_status.as_str();
    if let Some(p) = &prior {
        let why = if status == "cancelled" {
            "OpenADR event cancelled by the VTN"
        } else {
            "OpenADR event modified by the VTN"
        };
        stop_plans(ctx, &p.plan_ids, why, now).await?;
    }
    let mut decision = Decision {
        event_id: d.event_id.clone(),
        modification_number: modification,
        event_status: status.to_string(),
        opt_type: "optIn".into(),
        reason: String::new(),
        plan_ids: vec![],
        decided_at: now,
    };
    match status {
        "cancelled" => {
            decision.reason = "cancelled: its dispatch plans are stopped".into();
        }
        "completed" => {
            decision.reason = "completed: nothing to dispatch".into();
        }
        _ => {
            let (opt_in, reason, records) = plan_event(ctx, event, now).await;
            decision.opt_type = if opt_in { "optIn" } else { "optOut" }.into();
            decision.reason = reason;
            let mut written = Vec::new();
            for (rec, _) in &records {
                if let Err(e) = plans::insert(store, rec).await {
                    undo(ctx, &written).await;
                    return Err(e);
                }
                written.push(rec.id.clone());
            }
            decision.plan_ids = written.clone();
            if let Err(e) = decisions::insert(store, &decision).await {
                undo(ctx, &written).await;
                return Err(e);
            }
            if let Some(x) = &ctx.executor {
                for (rec, (request, problem, plan)) in records {
                    let offsets = activation_offsets(&plan, request.ramp);
                    x.submit(&rec.id, request, problem, plan, &offsets).await;
                }
            }
            tracing::info!(event = %d.event_id, modification, opt = %decision.opt_type, reason = %decision.reason, plans = decision.plan_ids.len(), "upstream OpenADR event decided");
            return Ok(decision);
        }
    }
    decisions::insert(store, &decision).await?;
    tracing::info!(event = %d.event_id, modification, status, "upstream OpenADR event ended");
    Ok(decision)
}

type Planned = (
    PlanRecord,
    (
        DispatchRequest,
        crate::dispatch::Problem,
        crate::dispatch::Plan,
    ),
);

/// Maps and plans an event without writing: (opt in?, reason, plans to store and run).
async fn plan_event(
    ctx: &Context,
    event: &super::model::EiEvent,
    now: EpochSeconds,
) -> (bool, String, Vec<Planned>) {
    let c = &ctx.config;
    let requests = match map_event(event, &c.group_id, &c.signals) {
        Ok(r) => r,
        Err(e) => return (false, format!("not dispatchable: {e}"), vec![]),
    };
    if requests.is_empty() {
        return (true, "asks for no change of power".into(), vec![]);
    }
    let mut out = Vec::new();
    let mut short = Vec::new();
    for r in requests {
        let (problem, p, _) =
            match plan(&ctx.registry, &r, now, &c.assumptions, RANDOMIZATION_SEED).await {
                Ok(x) => x,
                Err(e) => {
                    return (
                        false,
                        format!(
                            "cannot plan {} kW for group {}: {e}",
                            r.power_kw, c.group_id
                        ),
                        vec![],
                    );
                }
            };
        if !p.feasible() {
            short.push(format!(
                "{} kW from {} for {} s falls short by {:.1} kWh",
                r.power_kw,
                super::event::datetime(r.start),
                r.duration_s,
                p.shortfall_kwh()
            ));
        }
        let rec = match PlanRecord::of_plan(&r, &c.assumptions, &p, now) {
            Ok(rec) => rec,
            Err(e) => return (false, format!("internal error: {e}"), vec![]),
        };
        out.push((rec, (r, problem, p)));
    }
    let group = &c.group_id;
    match (short.is_empty(), c.opt_policy) {
        (true, _) => (
            true,
            format!("group {group} can deliver every interval"),
            out,
        ),
        (false, OptPolicy::Always) => (
            true,
            format!("group {group} delivers what it can: {}", short.join("; ")),
            out,
        ),
        (false, OptPolicy::Feasible) => (
            false,
            format!("group {group} cannot deliver: {}", short.join("; ")),
            vec![],
        ),
    }
}

/// Stops running plans (the executor's `stop`); a plan the executor does not run (it
/// ended, or dispatch delivery is off) gets the `stop` recorded in its events only.
async fn stop_plans(
    ctx: &Context,
    ids: &[String],
    why: &str,
    now: EpochSeconds,
) -> Result<(), StoreError> {
    for id in ids {
        let ran = match &ctx.executor {
            Some(x) => match x.instruct(id, OperatorInstruction::Stop, now).await {
                Ok(_) => true,
                Err(ExecuteError::NotRunning(_)) | Err(ExecuteError::Schedule(_)) => false,
                Err(ExecuteError::Store(e)) => return Err(e),
            },
            None => false,
        };
        if !ran {
            delivery::insert_event(
                ctx.registry.store(),
                &PlanEvent {
                    id: uuid::Uuid::now_v7().to_string(),
                    plan_id: id.clone(),
                    at: now,
                    kind: "stop".into(),
                    detail: serde_json::json!({ "reason": why }),
                },
            )
            .await?;
        }
        tracing::info!(plan = %id, reason = why, "dispatch plan stopped");
    }
    Ok(())
}

/// Deletes plans written before a later write failed.
async fn undo(ctx: &Context, ids: &[String]) {
    for id in ids {
        let r = crate::store::record::dynamic("DELETE FROM dispatch_plans WHERE id = $1".into())
            .bind(id.clone())
            .execute(ctx.registry.store().pool())
            .await;
        if let Err(e) = r {
            tracing::error!(plan = %id, error = %e, "could not delete an upstream event's plan");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<UpstreamConfig, String> {
        let c: crate::config::Config = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        let u = c.openadr2.upstream.ok_or("no upstream section")?;
        u.validate().map_err(|e| e.to_string())?;
        Ok(u)
    }

    #[test]
    fn upstream_section_parses_with_defaults() {
        let u = parse(
            "[openadr2.upstream]\nvtn_url = \"http://vtn.example/OpenADR2/Simple/2.0b\"\n\
             group_id = \"g1\"\nopt_policy = \"always\"\n\
             [openadr2.upstream.signals]\nsimple_level_kw = [0, 1, 2, 3]\n",
        )
        .unwrap();
        assert_eq!(u.opt_policy, OptPolicy::Always);
        assert_eq!(u.signals.simple_level_kw, [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(u.poll_interval_seconds, 10);
        assert_eq!(u.ven_name, "switchyard");
        assert!(
            crate::config::Config::default().openadr2.upstream.is_none(),
            "off unless configured"
        );
    }

    #[test]
    fn bad_upstream_sections_are_refused_naming_the_key() {
        let base = "[openadr2.upstream]\ngroup_id = \"g1\"\n";
        for (extra, want) in [
            ("vtn_url = \"ftp://x\"\n", "vtn_url"),
            (
                "vtn_url = \"https://vtn/OpenADR2/Simple/2.0b\"\n",
                "an https VTN needs",
            ),
            (
                "vtn_url = \"http://vtn\"\nclient_cert = \"c.pem\"\n",
                "go together",
            ),
            (
                "vtn_url = \"http://vtn\"\npoll_interval_seconds = 0\n",
                "at least 1 s",
            ),
            (
                "vtn_url = \"http://vtn\"\nopt_policy = \"sometimes\"\n",
                "sometimes",
            ),
            ("vtn_url = \"http://vtn\"\nvenname = \"x\"\n", "venname"),
        ] {
            let e = parse(&format!("{base}{extra}")).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
        let e = parse("[openadr2.upstream]\nvtn_url = \"http://vtn\"\n").unwrap_err();
        assert!(e.contains("group_id"), "{e}");
    }
}
