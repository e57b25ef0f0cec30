//! Operator set-up through Switchyard's operator API.
//!
//! Procedures describe set-up as operator actions ([`OperatorAction`]); this module performs
//! them with the JSON API (`/api/v1/...`) and a bearer token. Each procedure gets fixtures of
//! its own, named after the run and the procedure: an account, a site, a DER rated
//! `rating_w`, and a first DER program (primacy 1) targeting the site. "The client's
//! EndDevice is registered" then means: the EndDevice with the client's LFDI exists, is
//! enabled, carries the configured PIN and is bound to this procedure's DER, so it sees this
//! procedure's programs and nothing left over from another one; its MirrorUsagePoints left
//! over from earlier procedures are removed at the first registration.
//!
//! Actions the operator API cannot express are refused before the procedure starts (see
//! [`Operator::unsupported`]), and the procedure is reported as needing set-up.

use super::procedure::{ControlState, EnvelopeValues, OperatorAction, Role};
use super::template::{Vars, number};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Where the operator API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Base URL, for example `http://127.0.0.1:8080`.
    pub url: String,
    /// A bearer token with the operator role.
    pub token: String,
}

/// A failed operator call.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("operator API {method} {path}: {source}")]
    Transport {
        method: &'static str,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("operator API {method} {path} answered {status}: {body}")]
    Refused {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The identity of one client as set-up needs it.
#[derive(Debug, Clone)]
pub struct ClientFacts {
    /// The LFDI of the EndDevice the client acts for (its own, or for an aggregator the
    /// device it manages).
    pub lfdi: String,
    /// For an aggregator: its own certificate (registered as an aggregator identity).
    pub aggregator_pem: Option<String>,
    /// For an aggregator: its own LFDI, which owns the managed EndDevice.
    pub aggregator_lfdi: Option<String>,
}

#[derive(Debug, Clone)]
struct Fixture {
    site: String,
    der: String,
    /// (program id, primacy)
    programs: Vec<(String, u8)>,
    /// End of the latest scheduled control, to stack the next one after it.
    schedule_end: i64,
}

/// Performs operator actions for one procedure.
pub struct Operator {
    http: Client,
    config: OperatorConfig,
    prefix: String,
    rating_w: f64,
    pin: u32,
    fixtures: BTreeMap<Role, Fixture>,
    /// See [`super::RunnerConfig::time_scale`].
    time_scale: f64,
    /// LFDIs whose leftover MirrorUsagePoints this procedure has cleared (once, at the
    /// first registration, so a later re-registration keeps what the procedure created).
    commissioned: BTreeSet<String>,
}

impl Operator {
    /// Set-up for one procedure; `prefix` makes its fixture ids unique.
    pub fn new(
        http: Client,
        config: OperatorConfig,
        prefix: String,
        rating_w: f64,
        pin: u32,
    ) -> Self {
        Operator {
            http,
            config,
            prefix,
            rating_w,
            pin,
            fixtures: BTreeMap::new(),
            time_scale: 1.0,
            commissioned: BTreeSet::new(),
        }
    }

    /// Multiplies the start offsets and durations of the controls it creates by `scale`
    /// (see [`super::RunnerConfig::time_scale`]).
    pub fn with_time_scale(mut self, scale: f64) -> Self {
        if scale.is_finite() && scale > 0.0 {
            self.time_scale = scale;
        }
        self
    }

    /// Why Switchyard's operator API cannot perform `action`, if it cannot.
    pub fn unsupported(action: &OperatorAction) -> Option<&'static str> {
        match action {
            OperatorAction::PostRate { resource, .. } if resource != "MirrorUsagePoint" => {
                Some("2030.5 announces postRate on MirrorUsagePoints only")
            }
            _ => None,
        }
    }

    /// Performs one action for `role` (the step's client unless the action names one).
    pub async fn perform(
        &mut self,
        action: &OperatorAction,
        role: Role,
        facts: &ClientFacts,
        vars: &Vars,
        now: i64,
    ) -> Result<(), OperatorError> {
        if let Some(why) = Self::unsupported(action) {
            return Err(OperatorError::Invalid(why.to_owned()));
        }
        match action {
            OperatorAction::EndDevice { registered, .. } => {
                if facts.aggregator_pem.is_some() {
                    self.ensure_aggregator(facts).await?;
                }
                if *registered {
                    self.register(role, facts).await
                } else {
                    self.unregister(facts).await
                }
            }
            OperatorAction::Program { primacy, .. } => {
                self.program(role, *primacy).await.map(|_| ())
            }
            OperatorAction::Control {
                state,
                primacy,
                start_offset_s,
                duration_s,
                randomize_start_s,
                randomize_duration_s,
                modes,
                ramp_tms,
                ..
            } => {
                let program = self.program(role, primacy.unwrap_or(1)).await?;
                let mut modes = modes_json(modes, vars)?;
                if let (Some(t), Some(m)) = (ramp_tms, modes.as_object_mut()) {
                    // rampTms is hundredths of a second; the operator API takes seconds.
                    m.insert("ramp_s".into(), json!(f64::from(*t) / 100.0));
                }
                let time_scale = self.time_scale;
                let fixture = self.fixture(role).await?;
                let scale = |s: i64| scale_secs(time_scale, s);
                let span = |d: u32| u32::try_from(scale(i64::from(d))).unwrap_or(d);
                let (start, duration) = match state {
                    ControlState::Active => (
                        now + start_offset_s.map_or(-5, scale),
                        duration_s.map_or(3600, span),
                    ),
                    ControlState::Scheduled => {
                        let d = span(duration_s.unwrap_or(300));
                        let s = match start_offset_s {
                            Some(o) => now + scale(*o),
                            None => (now + scale(300)).max(fixture.schedule_end + scale(10)),
                        };
                        (s, d)
                    }
                };
                if *state == ControlState::Scheduled {
                    fixture.schedule_end = fixture.schedule_end.max(start + i64::from(duration));
                }
                self.call(
                    "POST",
                    "/api/v1/controls",
                    Some(json!({
                        "program_id": program,
                        "start": start,
                        "duration_s": duration,
                        "randomize_start_s": randomize_start_s.unwrap_or(0),
                        "randomize_duration_s": randomize_duration_s.unwrap_or(0),
                        "response_required": true,
                        "modes": modes,
                    })),
                    &[],
                )
                .await
                .map(|_| ())
            }
            OperatorAction::DefaultControl { primacy, modes, .. } => {
                let program = self.program(role, primacy.unwrap_or(1)).await?;
                let modes = modes_json(modes, vars)?;
                self.call(
                    "DELETE",
                    &format!("/api/v1/default-controls/{program}"),
                    None,
                    &[StatusCode::NOT_FOUND],
                )
                .await?;
                self.call(
                    "POST",
                    "/api/v1/default-controls",
                    Some(json!({ "program_id": program, "modes": modes })),
                    &[],
                )
                .await
                .map(|_| ())
            }
            OperatorAction::CancelControls { .. } => {
                let programs: Vec<String> = self
                    .fixture(role)
                    .await?
                    .programs
                    .iter()
                    .map(|(id, _)| id.clone())
                    .collect();
                for p in programs {
                    let page = self
                        .call(
                            "GET",
                            &format!("/api/v1/controls?program_id={p}&limit=1000"),
                            None,
                            &[],
                        )
                        .await?;
                    let items = page["items"].as_array().cloned().unwrap_or_default();
                    // A control that has ended is over; cancelling it would bring it back
                    // into the list as Cancelled.
                    let running = |c: &&Value| {
                        let end = c["start"].as_i64().unwrap_or(0)
                            + c["duration_s"].as_i64().unwrap_or(0);
                        c["cancelled_at"].is_null() && end > now
                    };
                    for c in items.iter().filter(running) {
                        let id = c["id"].as_str().unwrap_or_default();
                        self.call(
                            "POST",
                            &format!("/api/v1/controls/{id}/cancel"),
                            Some(json!({})),
                            &[],
                        )
                        .await?;
                    }
                }
                Ok(())
            }
            OperatorAction::PollRate { resource, seconds } => {
                let path = format!("/api/v1/sep2-poll-rates/{resource}");
                let set = self
                    .call(
                        "PATCH",
                        &path,
                        Some(json!({ "seconds": seconds })),
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                if set.is_null() {
                    self.call(
                        "POST",
                        "/api/v1/sep2-poll-rates",
                        Some(json!({ "resource": resource, "seconds": seconds })),
                        &[],
                    )
                    .await?;
                }
                Ok(())
            }
            OperatorAction::SeparateFunctionSets { .. } => {
                let programs = self.fixture(role).await?.programs.clone();
                for (id, primacy) in programs {
                    self.call(
                        "POST",
                        "/api/v1/sep2-function-sets",
                        Some(json!({
                            "id": format!("{id}-fsa"),
                            "program_id": id,
                            "description": format!("Program of primacy {primacy}"),
                        })),
                        &[StatusCode::CONFLICT],
                    )
                    .await?;
                }
                Ok(())
            }
            OperatorAction::Access { granted, .. } => {
                let id = self.end_device_id(&facts.lfdi).await?;
                self.call(
                    "PATCH",
                    &format!("/api/v1/end-devices/{id}"),
                    Some(json!({"enabled": granted})),
                    &[],
                )
                .await
                .map(|_| ())
            }
            // Other resources were refused above.
            OperatorAction::PostRate { seconds, .. } => self.set_post_rates(facts, *seconds).await,
            OperatorAction::ClearMirrors { .. } => self.clear_mirrors(facts).await,
        }
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Value>,
        tolerated: &[StatusCode],
    ) -> Result<Value, OperatorError> {
        let url = format!("{}{}", self.config.url.trim_end_matches('/'), path);
        let builder = match method {
            "GET" => self.http.get(&url),
            "POST" => self.http.post(&url),
            "DELETE" => self.http.delete(&url),
            "PUT" => self.http.put(&url),
            _ => self.http.patch(&url),
        };
        let mut builder = builder.bearer_auth(&self.config.token);
        if let Some(b) = body {
            let ct = if method == "PATCH" {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            builder = builder
                .header("content-type", ct)
                .body(serde_json::to_vec(&b).unwrap_or_default());
        }
        let transport = |source| OperatorError::Transport {
            method,
            path: path.to_owned(),
            source,
        };
        let resp = builder.send().await.map_err(transport)?;
        let status = resp.status();
        let text = resp.text().await.map_err(transport)?;
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        if tolerated.contains(&status) {
            return Ok(Value::Null);
        }
        Err(OperatorError::Refused {
            method,
            path: path.to_owned(),
            status: status.as_u16(),
            body: text.chars().take(300).collect(),
        })
    }

    async fn fixture(&mut self, role: Role) -> Result<&mut Fixture, OperatorError> {
        if !self.fixtures.contains_key(&role) {
            let id = format!("{}-{}", self.prefix, role.as_str());
            self.call(
                "POST",
                "/api/v1/accounts",
                Some(json!({"id": id, "account_number": id, "name": "Switchyard conformance", "kind": "residential"})),
                &[],
            )
            .await?;
            self.call(
                "POST",
                "/api/v1/sites",
                Some(json!({"id": id, "account_id": id, "territory": "conformance", "interconnection_type": "nem"})),
                &[],
            )
            .await?;
            self.call(
                "POST",
                "/api/v1/ders",
                Some(json!({
                    "id": id, "site_id": id, "der_class": "battery", "manufacturer": "Switchyard",
                    "model": "conformance", "serial": id, "rated_kw": self.rating_w / 1000.0,
                    "storage_kwh": 10.0, "status": "active"
                })),
                &[],
            )
            .await?;
            self.fixtures.insert(
                role,
                Fixture {
                    site: id.clone(),
                    der: id,
                    programs: Vec::new(),
                    schedule_end: 0,
                },
            );
            self.program(role, 1).await?;
        }
        Ok(self.fixtures.get_mut(&role).expect("inserted above"))
    }

    /// The id of the role's program with `primacy`, created when missing.
    async fn program(&mut self, role: Role, primacy: u8) -> Result<String, OperatorError> {
        if !self.fixtures.contains_key(&role) {
            // Creating the fixture creates the primacy-1 program.
            Box::pin(self.fixture(role)).await?;
        }
        let f = self.fixtures.get(&role).expect("created above");
        if let Some((id, _)) = f.programs.iter().find(|(_, p)| *p == primacy) {
            return Ok(id.clone());
        }
        let id = format!("{}-p{primacy}", f.site);
        let site = f.site.clone();
        self.call(
            "POST",
            "/api/v1/control-programs",
            Some(json!({"id": id, "name": id, "primacy": primacy, "target_kind": "site", "target_id": site})),
            &[],
        )
        .await?;
        self.fixtures
            .get_mut(&role)
            .expect("exists")
            .programs
            .push((id.clone(), primacy));
        Ok(id)
    }

    async fn ensure_aggregator(&self, facts: &ClientFacts) -> Result<(), OperatorError> {
        let pem = facts.aggregator_pem.as_deref().unwrap_or_default();
        self.call(
            "POST",
            "/api/v1/identities",
            Some(json!({"kind": "aggregator", "certificate_pem": pem})),
            &[StatusCode::CONFLICT],
        )
        .await
        .map(|_| ())
    }

    async fn end_device(&self, lfdi: &str) -> Result<Option<Value>, OperatorError> {
        let page = self
            .call(
                "GET",
                &format!("/api/v1/end-devices?lfdi={lfdi}"),
                None,
                &[],
            )
            .await?;
        Ok(page["items"].as_array().and_then(|a| a.first().cloned()))
    }

    /// The id of the EndDevice with `lfdi`; an error when there is none.
    async fn end_device_id(&self, lfdi: &str) -> Result<String, OperatorError> {
        let ed = self.end_device(lfdi).await?.ok_or_else(|| {
            OperatorError::Invalid(format!(
                "no EndDevice with LFDI {lfdi}; register it first (op = \"end-device\")"
            ))
        })?;
        Ok(ed["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Sets the postRate of every MirrorUsagePoint of the client's EndDevice.
    async fn set_post_rates(&self, facts: &ClientFacts, seconds: u32) -> Result<(), OperatorError> {
        let page = self
            .call(
                "GET",
                &format!(
                    "/api/v1/mirror-usage-points?device_lfdi={}&limit=1000",
                    facts.lfdi
                ),
                None,
                &[],
            )
            .await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return Err(OperatorError::Invalid(format!(
                "the EndDevice with LFDI {} has no MirrorUsagePoint to set a post rate on",
                facts.lfdi
            )));
        }
        for m in &items {
            let id = m["id"].as_str().unwrap_or_default();
            self.call(
                "PUT",
                &format!("/api/v1/mirror-usage-points/{id}/post-rate"),
                Some(json!({ "seconds": seconds })),
                &[],
            )
            .await?;
        }
        Ok(())
    }

    /// Removes the MirrorUsagePoints of the client's EndDevice, if it has one.
    async fn clear_mirrors(&self, facts: &ClientFacts) -> Result<(), OperatorError> {
        if let Some(ed) = self.end_device(&facts.lfdi).await? {
            let id = ed["id"].as_str().unwrap_or_default();
            self.call(
                "DELETE",
                &format!("/api/v1/end-devices/{id}/mirror-usage-points"),
                None,
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        }
        Ok(())
    }

    async fn register(&mut self, role: Role, facts: &ClientFacts) -> Result<(), OperatorError> {
        let der = self.fixture(role).await?.der.clone();
        match self.end_device(&facts.lfdi).await? {
            Some(ed) => {
                let id = ed["id"].as_str().unwrap_or_default().to_owned();
                self.call(
                    "PATCH",
                    &format!("/api/v1/end-devices/{id}"),
                    Some(json!({"der_id": der, "site_id": null, "enabled": true, "pin": self.pin})),
                    &[],
                )
                .await?;
                // Each procedure starts from a freshly commissioned device: usage points an
                // earlier procedure created with the same certificate are not its own.
                if self.commissioned.insert(facts.lfdi.clone()) {
                    self.clear_mirrors(facts).await?;
                }
            }
            None => {
                self.call(
                    "POST",
                    "/api/v1/end-devices",
                    Some(json!({
                        "lfdi": facts.lfdi, "der_id": der, "pin": self.pin,
                        "owner_lfdi": facts.aggregator_lfdi,
                    })),
                    &[],
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn unregister(&self, facts: &ClientFacts) -> Result<(), OperatorError> {
        if let Some(ed) = self.end_device(&facts.lfdi).await? {
            let id = ed["id"].as_str().unwrap_or_default();
            self.call(
                "DELETE",
                &format!("/api/v1/end-devices/{id}"),
                None,
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        }
        Ok(())
    }
}

/// `secs` of procedure time as server time under `scale`: whole seconds (what 2030.5
/// carries), and never 0 for a non-zero span.
fn scale_secs(scale: f64, secs: i64) -> i64 {
    if scale == 1.0 || secs == 0 {
        return secs;
    }
    let s = (secs as f64 * scale).round() as i64;
    if s == 0 { secs.signum() } else { s }
}

/// Envelope values as the operator API's `modes` object (SI units; setGradW converted from
/// hundredths of a percent per second to percent per second).
fn modes_json(v: &EnvelopeValues, vars: &Vars) -> Result<Value, OperatorError> {
    let n = |x: &Option<super::procedure::Num>| -> Result<Value, OperatorError> {
        match x {
            Some(x) => number(x, vars)
                .map(|f| json!(f))
                .map_err(OperatorError::Invalid),
            None => Ok(Value::Null),
        }
    };
    let mut m = serde_json::Map::new();
    for (key, value) in [
        ("exp_lim_w", n(&v.exp_lim_w)?),
        ("imp_lim_w", n(&v.imp_lim_w)?),
        ("gen_lim_w", n(&v.gen_lim_w)?),
        ("load_lim_w", n(&v.load_lim_w)?),
        ("max_lim_w", n(&v.max_lim_w)?),
        ("connect", json!(v.connect)),
        ("energize", json!(v.energize)),
        (
            "set_grad_w",
            json!(v.set_grad_w.map(|g| f64::from(g) / 100.0)),
        ),
    ] {
        if !value.is_null() {
            m.insert(key.to_owned(), value);
        }
    }
    Ok(Value::Object(m))
}
