//! Plays procedures against a 2030.5 server over mutual TLS and decides each outcome.

use super::check;
use super::operator::{ClientFacts, Operator, OperatorConfig};
use super::procedure::{
    AwaitNotifications, Expect, GetAction, OperatorAction, Procedure, Role, SendAction, SendMethod,
    Step, TlsOutcome, TlsProbe,
};
use super::template::{Vars, substitute};
use super::xmltree::{self, Element};
use super::{ConformanceError, Outcome, Status, StepReport, StepStatus};
use crate::domain::identity::{Lfdi, Sfdi};
use crate::domain::now_epoch;
use crate::protocol::sep2::model as m;
use crate::protocol::sep2::tls::{client_config, client_config_with_suites, crypto_provider};
use crate::protocol::sep2::xml::{self, CsipAusVersion, SEP_NS, XmlError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The media type every 2030.5 document must carry.
pub const SEP_XML: &str = "application/sep+xml";
/// Largest response body the runner reads.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Default number of items asked of a list.
const DEFAULT_LIST_LIMIT: u32 = 100;

/// A client certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Base URL of the server, for example `https://127.0.0.1:8443`.
    pub target: String,
    /// Path of the DeviceCapability resource.
    pub dcap_path: String,
    /// CA certificates the server's certificate must chain to.
    pub ca_pem: String,
    pub device: Credentials,
    pub second_device: Option<Credentials>,
    pub aggregator: Option<Credentials>,
    pub operator: Option<OperatorConfig>,
    /// Run only these procedure ids (all when empty).
    pub only: Vec<String>,
    /// Skip procedures, steps and checks that require these tags.
    pub skip_tags: Vec<String>,
    /// Rating of the DER the operator set-up creates, W (`${rating_w}`).
    pub rating_w: f64,
    /// Registration PIN the operator set-up gives EndDevices (`${pin}`).
    pub pin: u32,
    /// CSIP-AUS version whose namespace request bodies use (`${csipaus_ns}`).
    pub csipaus: CsipAusVersion,
    pub request_timeout: Duration,
    /// Where to listen for notifications (plain HTTP), if anywhere.
    pub notify_listen: Option<SocketAddr>,
    /// The base URL the server should send notifications to (default `http://<listen>`).
    pub notify_url: Option<String>,
    /// Compresses the time of procedures tagged `long-running`: their waits (`wait_s`),
    /// repeat intervals and the start offsets and durations of the controls the operator
    /// set-up creates for them are multiplied by this (1.0: real time). Other procedures
    /// check durations as given and always run in real time. Deadlines (`retry_s`, `within_s`) are not: they only bound how long a
    /// check may take to hold. For servers whose controls come from the runner's own
    /// operator set-up, so that procedures that take hours run in CI.
    pub time_scale: f64,
    /// Most runs of a repeated step (`repeat.times`), if capped; a capped step says so in
    /// its report.
    pub max_repeats: Option<u32>,
}

impl RunnerConfig {
    /// A configuration with the defaults for everything but the target and credentials.
    pub fn new(target: impl Into<String>, ca_pem: impl Into<String>, device: Credentials) -> Self {
        RunnerConfig {
            target: target.into(),
            dcap_path: "/dcap".into(),
            ca_pem: ca_pem.into(),
            device,
            second_device: None,
            aggregator: None,
            operator: None,
            only: Vec::new(),
            skip_tags: Vec::new(),
            rating_w: 10_000.0,
            pin: 111_115,
            csipaus: CsipAusVersion::V1_3,
            request_timeout: Duration::from_secs(15),
            notify_listen: None,
            notify_url: None,
            time_scale: 1.0,
            max_repeats: None,
        }
    }
}

struct ClientState {
    creds: Credentials,
    http: reqwest::Client,
    facts: ClientFacts,
    lfdi: String,
    sfdi: u64,
    cert_lfdi: String,
}

/// A delivered notification: its content type and body.
type Delivery = (Option<String>, String);

/// Notifications received, by channel key (`<procedure>/<channel>`).
#[derive(Default)]
struct Inbox {
    bodies: Mutex<HashMap<String, Vec<Delivery>>>,
    /// Channels that refuse deliveries.
    down: Mutex<BTreeSet<String>>,
    arrived: tokio::sync::Notify,
}

struct Listener {
    base: String,
    inbox: Arc<Inbox>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs procedures; create one per run.
pub struct Runner {
    config: RunnerConfig,
    clients: BTreeMap<Role, ClientState>,
    operator_http: reqwest::Client,
    run_id: String,
    listener: Option<Listener>,
}

/// A document received from the server.
#[derive(Debug, Clone)]
struct Fetched {
    href: String,
    root: Option<Element>,
}

/// What a client action produced.
#[derive(Default)]
struct ActionResult {
    docs: Vec<Fetched>,
    location: Option<String>,
    href: Option<String>,
}

enum StepFailure {
    /// The server did not behave as the procedure expects.
    Fail(String),
    /// The operator set-up could not be done.
    Setup(String),
}

struct ProcContext<'a> {
    procedure: &'a Procedure,
    vars: Vars,
    operator: Option<Operator>,
    skipped: BTreeSet<String>,
    skipped_checks: usize,
    skipped_steps: Vec<String>,
}

impl Runner {
    /// Prepares HTTP clients for every configured certificate and, when asked, starts the
    /// notification listener. Installs the IEEE 2030.5 crypto provider as the process
    /// default (reqwest needs one even with a preconfigured TLS configuration).
    pub async fn new(config: RunnerConfig) -> Result<Runner, ConformanceError> {
        let _ = crypto_provider().install_default();
        let mut clients = BTreeMap::new();
        let roles = [
            (Role::Device, Some(config.device.clone())),
            (Role::SecondDevice, config.second_device.clone()),
            (Role::Aggregator, config.aggregator.clone()),
        ];
        for (role, creds) in roles {
            let Some(creds) = creds else { continue };
            clients.insert(role, client_state(&config, role, creds)?);
        }
        let operator_http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| ConformanceError::Setup(format!("HTTP client: {e}")))?;
        let listener = match config.notify_listen {
            Some(addr) => Some(listen(addr, config.notify_url.clone()).await?),
            None => None,
        };
        let run_id = hex::encode(&Sha256::digest(uuid::Uuid::new_v4().as_bytes())[..3]);
        Ok(Runner {
            config,
            clients,
            operator_http,
            run_id,
            listener,
        })
    }

    /// Runs the procedures selected by `--only` (all when none), in order.
    pub async fn run(&self, procedures: &[Procedure]) -> Vec<Outcome> {
        let mut out = Vec::new();
        for (i, p) in procedures.iter().enumerate() {
            if !self.config.only.is_empty()
                && !self
                    .config
                    .only
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(&p.id))
            {
                continue;
            }
            out.push(self.run_one(p, i).await);
        }
        out
    }

    /// Runs one procedure; `index` keeps its fixtures apart from other procedures'.
    pub async fn run_one(&self, p: &Procedure, index: usize) -> Outcome {
        let started = Instant::now();
        let mut outcome = Outcome {
            id: p.id.clone(),
            title: p.title.clone(),
            profile: p.profile,
            area: p.area.clone(),
            status: Status::Pass,
            reason: String::new(),
            steps: Vec::new(),
            seconds: 0.0,
        };
        if let Some(reason) = self.precheck(p) {
            outcome.status = reason.0;
            outcome.reason = reason.1;
            return outcome;
        }
        let skipped: BTreeSet<String> = self.config.skip_tags.iter().cloned().collect();
        let prefix = format!("cf-{}-{index}", self.run_id);
        let mut ctx = ProcContext {
            procedure: p,
            vars: self.base_vars(p),
            operator: self.config.operator.clone().map(|o| {
                Operator::new(
                    self.operator_http.clone(),
                    o,
                    prefix,
                    self.config.rating_w,
                    self.config.pin,
                )
                .with_time_scale(self.time_scale(p))
            }),
            skipped,
            skipped_checks: 0,
            skipped_steps: Vec::new(),
        };
        for step in &p.steps {
            if let Some(tag) = step.requires.iter().find(|t| ctx.skipped.contains(*t)) {
                ctx.skipped_steps.push(step.name.clone());
                outcome.steps.push(StepReport {
                    name: step.name.clone(),
                    status: StepStatus::Skipped,
                    detail: format!("needs {tag}"),
                });
                continue;
            }
            match self.run_step(&mut ctx, step).await {
                Ok(()) => outcome.steps.push(StepReport {
                    name: step.name.clone(),
                    status: StepStatus::Pass,
                    detail: String::new(),
                }),
                Err(f) => {
                    let (status, why) = match f {
                        StepFailure::Fail(w) => (Status::Fail, w),
                        StepFailure::Setup(w) => {
                            (Status::NeedsSetup, format!("operator set-up failed: {w}"))
                        }
                    };
                    outcome.steps.push(StepReport {
                        name: step.name.clone(),
                        status: StepStatus::Fail,
                        detail: why.clone(),
                    });
                    outcome.status = status;
                    outcome.reason = format!("step '{}': {why}", step.name);
                    outcome.seconds = started.elapsed().as_secs_f64();
                    return outcome;
                }
            }
        }
        let mut partial = Vec::new();
        if !ctx.skipped_steps.is_empty() {
            partial.push(format!("{} step(s) skipped", ctx.skipped_steps.len()));
        }
        if ctx.skipped_checks > 0 {
            partial.push(format!("{} check(s) skipped", ctx.skipped_checks));
        }
        if !partial.is_empty() {
            let tags: BTreeSet<&str> = p
                .steps
                .iter()
                .flat_map(|s| {
                    s.requires
                        .iter()
                        .chain(s.checks.iter().flat_map(|c| c.requires.iter()))
                })
                .filter(|t| ctx.skipped.contains(*t))
                .map(String::as_str)
                .collect();
            outcome.reason = format!(
                "partial: {} (tags: {})",
                partial.join(", "),
                tags.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        outcome.seconds = started.elapsed().as_secs_f64();
        outcome
    }

    /// SKIP or NEEDS-SETUP decided before anything is sent.
    fn precheck(&self, p: &Procedure) -> Option<(Status, String)> {
        if let Some(tag) = p
            .requires
            .iter()
            .find(|t| self.config.skip_tags.contains(t))
        {
            return Some((
                Status::Skip,
                format!("requires '{tag}', skipped by --skip-tag"),
            ));
        }
        for role in p.roles() {
            if !self.clients.contains_key(&role) {
                let flag = match role {
                    Role::Device => "--cert/--key",
                    Role::SecondDevice => "--second-cert/--second-key",
                    Role::Aggregator => "--aggregator-cert/--aggregator-key",
                };
                return Some((
                    Status::Skip,
                    format!("needs the {} certificate ({flag})", role.as_str()),
                ));
            }
        }
        let active: Vec<&Step> = p
            .steps
            .iter()
            .filter(|s| !s.requires.iter().any(|t| self.config.skip_tags.contains(t)))
            .collect();
        let ops: Vec<&OperatorAction> = active.iter().flat_map(|s| s.operator.iter()).collect();
        if !ops.is_empty() {
            if self.config.operator.is_none() {
                let names: BTreeSet<&str> = ops.iter().map(|o| o.name()).collect();
                return Some((
                    Status::NeedsSetup,
                    format!(
                        "needs operator set-up ({}); give --operator-url and --operator-token",
                        names.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if let Some(why) = ops.iter().find_map(|o| Operator::unsupported(o)) {
                return Some((
                    Status::NeedsSetup,
                    format!("the operator API cannot prepare this: {why}"),
                ));
            }
        }
        let wants_listener = active.iter().any(|s| {
            s.notifications.is_some()
                || s.listener.is_some()
                || s.send
                    .as_ref()
                    .and_then(|x| x.body.as_ref())
                    .is_some_and(|b| b.contains("${notify."))
        });
        if wants_listener && self.listener.is_none() {
            return Some((
                Status::NeedsSetup,
                "needs a notification listener (--notify-listen)".into(),
            ));
        }
        None
    }

    /// The time scale of `p` (see [`RunnerConfig::time_scale`]).
    fn time_scale(&self, p: &Procedure) -> f64 {
        if p.requires.iter().any(|t| t == "long-running") {
            self.config.time_scale
        } else {
            1.0
        }
    }

    /// `secs` of `p`'s time in wall-clock time (see [`RunnerConfig::time_scale`]).
    fn scaled(&self, p: &Procedure, secs: u64) -> Duration {
        let scale = self.time_scale(p);
        if scale.is_finite() && scale > 0.0 {
            Duration::from_secs_f64(secs as f64 * scale)
        } else {
            Duration::from_secs(secs)
        }
    }

    fn base_vars(&self, p: &Procedure) -> Vars {
        let mut v = Vars::new();
        v.insert("rating_w".into(), self.config.rating_w.to_string());
        v.insert("pin".into(), self.config.pin.to_string());
        v.insert(
            "csipaus_ns".into(),
            self.config.csipaus.namespace().to_owned(),
        );
        v.insert("dcap".into(), self.config.dcap_path.clone());
        v.insert("run".into(), self.run_id.clone());
        for (role, c) in &self.clients {
            let r = role.as_str();
            v.insert(format!("{r}.lfdi"), c.lfdi.clone());
            v.insert(format!("{r}.sfdi"), c.sfdi.to_string());
            v.insert(format!("{r}.cert_lfdi"), c.cert_lfdi.clone());
        }
        if let Some(l) = &self.listener {
            let mut channels = BTreeSet::new();
            for s in &p.steps {
                channels.extend(s.notifications.as_ref().map(|n| n.channel.clone()));
                channels.extend(s.listener.as_ref().map(|n| n.channel.clone()));
                let body = s
                    .send
                    .as_ref()
                    .and_then(|x| x.body.as_deref())
                    .unwrap_or("");
                for part in body.split("${notify.").skip(1) {
                    channels.extend(part.split_once('}').map(|(c, _)| c.to_owned()));
                }
            }
            for c in channels {
                v.insert(
                    format!("notify.{c}"),
                    format!("{}/notify/{}/{c}", l.base, p.id),
                );
            }
        }
        v
    }

    async fn run_step(&self, ctx: &mut ProcContext<'_>, step: &Step) -> Result<(), StepFailure> {
        let role = step.client.unwrap_or(ctx.procedure.clients[0]);
        for action in &step.operator {
            let target = action.client().unwrap_or(role);
            let client = &self.clients[&target];
            let now = now_epoch();
            let mut vars = ctx.vars.clone();
            vars.insert("now".into(), now.to_string());
            let op = ctx
                .operator
                .as_mut()
                .ok_or_else(|| StepFailure::Setup("no operator API configured".into()))?;
            op.perform(action, target, &client.facts, &vars, now)
                .await
                .map_err(|e| StepFailure::Setup(e.to_string()))?;
        }
        if step.actions().is_empty() {
            return Ok(());
        }
        if let Some(r) = step.repeat {
            let times = self.config.max_repeats.map_or(r.times, |m| r.times.min(m));
            if times < r.times {
                tracing::info!(
                    step = %step.name,
                    times, of = r.times,
                    "repeated step capped by max_repeats"
                );
            }
            for i in 0..times {
                if i > 0 {
                    tokio::time::sleep(self.scaled(ctx.procedure, r.every_s)).await;
                }
                self.attempt_with_retry(ctx, step, role)
                    .await
                    .map_err(|e| match e {
                        StepFailure::Fail(w) => {
                            StepFailure::Fail(format!("run {} of {}: {w}", i + 1, r.times))
                        }
                        other => other,
                    })?;
            }
            return Ok(());
        }
        self.attempt_with_retry(ctx, step, role).await
    }

    async fn attempt_with_retry(
        &self,
        ctx: &mut ProcContext<'_>,
        step: &Step,
        role: Role,
    ) -> Result<(), StepFailure> {
        let client = &self.clients[&role];
        let deadline = Instant::now() + Duration::from_secs(step.retry_s);
        loop {
            let mut vars = ctx.vars.clone();
            vars.insert("now".into(), now_epoch().to_string());
            vars.insert("lfdi".into(), client.lfdi.clone());
            vars.insert("sfdi".into(), client.sfdi.to_string());
            vars.insert("cert_lfdi".into(), client.cert_lfdi.clone());
            vars.insert(
                "mrid_base".into(),
                mrid_base(&self.run_id, &ctx.procedure.id, &client.lfdi),
            );
            let attempt = self.attempt(ctx, step, client, &vars).await;
            match attempt {
                Ok((saved, skipped_checks)) => {
                    ctx.vars.extend(saved);
                    ctx.skipped_checks += skipped_checks;
                    return Ok(());
                }
                Err(why) if Instant::now() >= deadline => return Err(StepFailure::Fail(why)),
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    /// One try of a step's client action, checks and saves.
    async fn attempt(
        &self,
        ctx: &ProcContext<'_>,
        step: &Step,
        client: &ClientState,
        vars: &Vars,
    ) -> Result<(Vars, usize), String> {
        let result = if let Some(g) = &step.get {
            self.get(client, g, vars).await?
        } else if let Some(s) = &step.send {
            self.send(client, s, vars).await?
        } else if let Some(secs) = step.wait_s {
            tokio::time::sleep(self.scaled(ctx.procedure, secs)).await;
            ActionResult::default()
        } else if let Some(t) = &step.tls {
            self.tls_probe(client, t).await?;
            ActionResult::default()
        } else if let Some(n) = &step.notifications {
            self.notifications(ctx.procedure, n).await?
        } else if let Some(l) = &step.listener {
            let listener = self
                .listener
                .as_ref()
                .ok_or_else(|| "no notification listener".to_owned())?;
            let key = format!("{}/{}", ctx.procedure.id, l.channel);
            if let Ok(mut down) = listener.inbox.down.lock() {
                if l.available {
                    down.remove(&key);
                } else {
                    down.insert(key);
                }
            }
            ActionResult::default()
        } else {
            ActionResult::default()
        };
        let roots: Vec<&Element> = result.docs.iter().filter_map(|d| d.root.as_ref()).collect();
        let now = now_epoch();
        let mut skipped = 0;
        for c in &step.checks {
            if c.requires.iter().any(|t| ctx.skipped.contains(t)) {
                skipped += 1;
                continue;
            }
            check::evaluate(c, &roots, vars, now)?;
        }
        let mut saved = Vars::new();
        for (name, path) in &step.save {
            // A leading '?' makes the value optional: nothing is saved when it is absent.
            let (optional, path) = match path.strip_prefix('?') {
                Some(p) => (true, p),
                None => (false, path.as_str()),
            };
            let value = match path {
                "#href" => result.href.clone(),
                "#location" => result.location.clone(),
                p => {
                    let p = substitute(p, vars)?;
                    let mut found = None;
                    for r in &roots {
                        if let Some(n) = r.select(&p)?.first() {
                            found = Some(n.text().to_owned());
                            break;
                        }
                    }
                    found
                }
            };
            match value {
                Some(v) => {
                    saved.insert(name.clone(), v);
                }
                None if optional => {}
                None => return Err(format!("nothing to save as '{name}' at '{path}'")),
            }
        }
        Ok((saved, skipped))
    }

    fn url(&self, href: &str) -> String {
        if href.starts_with("http://") || href.starts_with("https://") {
            href.to_owned()
        } else {
            format!("{}{}", self.config.target.trim_end_matches('/'), href)
        }
    }

    /// One request. The answer's body is checked when it is a 2xx with content: the media
    /// type must be application/sep+xml, the XML well formed, in the 2030.5 namespace, and
    /// acceptable to Switchyard's typed decoder when the root is a type it knows.
    async fn request(
        &self,
        client: &ClientState,
        method: reqwest::Method,
        href: &str,
        body: Option<(String, String)>,
    ) -> Result<(u16, Option<Fetched>, Option<String>, String), String> {
        let mut req = client.http.request(method.clone(), self.url(href));
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {href}: {}", error_chain(&e)))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("{method} {href}: reading the body: {}", error_chain(&e)))?;
        if bytes.len() > MAX_BODY {
            return Err(format!(
                "{method} {href}: body larger than {MAX_BODY} bytes"
            ));
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !(200..300).contains(&status) || bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((status, None, location, text));
        }
        let doc = validate_document(href, content_type.as_deref(), &bytes)
            .map_err(|e| format!("{method} {href}: {e}"))?;
        Ok((status, Some(doc), location, text))
    }

    /// Follows a link chain; returns the final hrefs, and their documents when fetched.
    async fn navigate(
        &self,
        client: &ClientState,
        follow: &str,
        limit: u32,
        vars: &Vars,
        fetch_last: Option<&Expect>,
    ) -> Result<(Vec<String>, Vec<Fetched>), String> {
        let tokens: Vec<String> = follow
            .split('>')
            .map(|t| substitute(t.trim(), vars))
            .collect::<Result<_, _>>()?;
        let first = &tokens[0];
        let start = if first == "dcap" {
            self.config.dcap_path.clone()
        } else if first.starts_with('/') || first.starts_with("http") {
            first.clone()
        } else {
            return Err(format!(
                "'{first}' must be dcap, a path, or a ${{variable}} holding one"
            ));
        };
        let with_limit = |href: &str, list: bool| {
            if !list {
                href.to_owned()
            } else if href.contains('?') {
                format!("{href}&l={limit}")
            } else {
                format!("{href}?l={limit}")
            }
        };
        let mut hrefs: Vec<(String, bool)> = vec![(start, false)];
        for tok in &tokens[1..] {
            let mut docs = Vec::new();
            for (h, list) in &hrefs {
                let url = with_limit(h, *list);
                let (status, doc, _, text) = self
                    .request(client, reqwest::Method::GET, &url, None)
                    .await?;
                if status != 200 {
                    return Err(format!(
                        "GET {url} answered {status}, expected 200: {}",
                        excerpt(&text)
                    ));
                }
                docs.push(doc.ok_or_else(|| format!("GET {url} answered an empty body"))?);
            }
            let mut next: Vec<(String, bool)> = Vec::new();
            for d in &docs {
                let Some(root) = &d.root else { continue };
                for el in root.find_descendants(tok)? {
                    let href = el
                        .attr("href")
                        .ok_or_else(|| format!("{} in {} has no href", el.name, d.href))?;
                    let item = (href.to_owned(), el.name.ends_with("ListLink"));
                    if !next.contains(&item) {
                        next.push(item);
                    }
                }
            }
            if next.is_empty() {
                let at: Vec<&str> = docs.iter().map(|d| d.href.as_str()).collect();
                return Err(format!("no {tok} in {}", at.join(", ")));
            }
            hrefs = next;
        }
        let Some(expect) = fetch_last else {
            return Ok((hrefs.into_iter().map(|(h, _)| h).collect(), Vec::new()));
        };
        let mut docs = Vec::new();
        for (h, list) in &hrefs {
            let url = with_limit(h, *list);
            let (status, doc, _, text) = self
                .request(client, reqwest::Method::GET, &url, None)
                .await?;
            if !expect.accepts(status) {
                return Err(format!(
                    "GET {url} answered {status}, expected {expect}: {}",
                    excerpt(&text)
                ));
            }
            docs.extend(doc);
        }
        Ok((hrefs.into_iter().map(|(h, _)| h).collect(), docs))
    }

    async fn get(
        &self,
        client: &ClientState,
        g: &GetAction,
        vars: &Vars,
    ) -> Result<ActionResult, String> {
        let expect = g.expect.clone().unwrap_or(Expect::Code(200));
        let (hrefs, docs) = self
            .navigate(
                client,
                &g.follow,
                g.limit.unwrap_or(DEFAULT_LIST_LIMIT),
                vars,
                Some(&expect),
            )
            .await?;
        Ok(ActionResult {
            href: hrefs.first().cloned(),
            docs,
            location: None,
        })
    }

    async fn send(
        &self,
        client: &ClientState,
        s: &SendAction,
        vars: &Vars,
    ) -> Result<ActionResult, String> {
        let (hrefs, _) = self
            .navigate(client, &s.to, DEFAULT_LIST_LIMIT, vars, None)
            .await?;
        let [href] = hrefs.as_slice() else {
            return Err(format!(
                "'{}' reaches {} resources; a {:?} needs exactly one",
                s.to,
                hrefs.len(),
                s.method
            ));
        };
        let method = match s.method {
            SendMethod::Post => reqwest::Method::POST,
            SendMethod::Put => reqwest::Method::PUT,
            SendMethod::Delete => reqwest::Method::DELETE,
        };
        let body = match &s.body {
            Some(b) => Some((
                s.content_type.clone().unwrap_or_else(|| SEP_XML.to_owned()),
                substitute(b, vars)?,
            )),
            None => None,
        };
        let (status, doc, location, text) =
            self.request(client, method.clone(), href, body).await?;
        if !s.expect.accepts(status) {
            return Err(format!(
                "{method} {href} answered {status}, expected {}: {}",
                s.expect,
                excerpt(&text)
            ));
        }
        Ok(ActionResult {
            docs: doc.into_iter().collect(),
            location,
            href: Some(href.clone()),
        })
    }

    async fn tls_probe(&self, client: &ClientState, probe: &TlsProbe) -> Result<(), String> {
        let provider = crypto_provider();
        let suites: Vec<_> = if probe.suites.is_empty() {
            provider.cipher_suites.clone()
        } else {
            probe
                .suites
                .iter()
                .map(|name| {
                    provider
                        .cipher_suites
                        .iter()
                        .find(|s| s.suite().as_str() == Some(name.as_str()))
                        .copied()
                        .ok_or_else(|| format!("unknown or unsupported cipher suite {name}"))
                })
                .collect::<Result<_, _>>()?
        };
        let config = if probe.client_certificate {
            client_config_with_suites(
                &self.config.ca_pem,
                &client.creds.cert_pem,
                &client.creds.key_pem,
                &suites,
            )
            .map_err(|e| format!("TLS configuration: {e}"))?
        } else {
            no_client_auth_config(&self.config.ca_pem, suites)?
        };
        let url = reqwest::Url::parse(&self.config.target)
            .map_err(|e| format!("target {}: {e}", self.config.target))?;
        let host = url.host_str().unwrap_or("localhost").to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let answered = tokio::time::timeout(
            self.config.request_timeout,
            probe_once(config, &host, port, &self.config.dcap_path),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        match (probe.expect, answered) {
            (TlsOutcome::Accepted, Ok(status_line)) if status_line.contains(" 200") => Ok(()),
            (TlsOutcome::Accepted, Ok(status_line)) => Err(format!(
                "the connection was accepted but GET {} answered '{status_line}'",
                self.config.dcap_path
            )),
            (TlsOutcome::Accepted, Err(e)) => Err(format!("the connection failed: {e}")),
            (TlsOutcome::Refused, Err(_)) => Ok(()),
            (TlsOutcome::Refused, Ok(status_line)) => Err(format!(
                "the server answered '{status_line}' where it should have refused the connection"
            )),
        }
    }

    async fn notifications(
        &self,
        p: &Procedure,
        n: &AwaitNotifications,
    ) -> Result<ActionResult, String> {
        let l = self
            .listener
            .as_ref()
            .ok_or_else(|| "no notification listener".to_owned())?;
        let key = format!("{}/{}", p.id, n.channel);
        let deadline = Instant::now() + Duration::from_secs(n.within_s.unwrap_or(30));
        loop {
            let arrived = l.inbox.arrived.notified();
            let bodies = l
                .inbox
                .bodies
                .lock()
                .map(|mut b| b.remove(&key).unwrap_or_default())
                .unwrap_or_default();
            if !bodies.is_empty() {
                let mut docs = Vec::new();
                for (ct, body) in latest_per_resource(bodies) {
                    let href = format!("notification on {key}");
                    docs.push(validate_document(&href, ct.as_deref(), body.as_bytes())?);
                }
                return Ok(ActionResult {
                    docs,
                    ..ActionResult::default()
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no notification arrived on channel '{}' within {} s",
                    n.channel,
                    n.within_s.unwrap_or(30)
                ));
            }
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }
}

/// The last of `bodies` for each subscribed resource, in arrival order. A 2030.5
/// notification carries the whole resource as it is now, so the latest one is what the
/// subscriber knows; earlier ones (sent as the resource changed in steps) are history.
fn latest_per_resource(bodies: Vec<Delivery>) -> Vec<Delivery> {
    let resource = |body: &str| {
        let start = body.find("<subscribedResource>")? + "<subscribedResource>".len();
        let end = body[start..].find("</subscribedResource>")?;
        Some(body[start..start + end].to_owned())
    };
    let mut kept: Vec<(Option<String>, Delivery)> = Vec::new();
    for d in bodies {
        let r = resource(&d.1);
        // Documents without a subscribedResource are each kept (and fail validation).
        if r.is_some() {
            kept.retain(|(k, _)| k != &r);
        }
        kept.push((r, d));
    }
    kept.into_iter().map(|(_, d)| d).collect()
}

fn client_state(
    config: &RunnerConfig,
    role: Role,
    creds: Credentials,
) -> Result<ClientState, ConformanceError> {
    let tls = client_config(&config.ca_pem, &creds.cert_pem, &creds.key_pem)
        .map_err(|e| ConformanceError::Setup(format!("{} certificate: {e}", role.as_str())))?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(config.request_timeout)
        .build()
        .map_err(|e| ConformanceError::Setup(format!("HTTP client: {e}")))?;
    let der = CertificateDer::from_pem_slice(creds.cert_pem.as_bytes())
        .map_err(|e| ConformanceError::Setup(format!("{} certificate PEM: {e}", role.as_str())))?;
    let cert_lfdi = Lfdi::from_certificate_der(der.as_ref());
    let (lfdi, facts) = if role == Role::Aggregator {
        // The device an aggregator acts for: an LFDI derived from the aggregator's, stable
        // for a given certificate.
        let digest: [u8; 32] = Sha256::digest(
            format!("switchyard conformance device of {}", cert_lfdi.to_hex()).as_bytes(),
        )
        .into();
        let managed = Lfdi::from_sha256_digest(&digest);
        (
            managed,
            ClientFacts {
                lfdi: managed.to_hex(),
                aggregator_pem: Some(creds.cert_pem.clone()),
                aggregator_lfdi: Some(cert_lfdi.to_hex()),
            },
        )
    } else {
        (
            cert_lfdi,
            ClientFacts {
                lfdi: cert_lfdi.to_hex(),
                aggregator_pem: None,
                aggregator_lfdi: None,
            },
        )
    };
    Ok(ClientState {
        creds,
        http,
        facts,
        lfdi: lfdi.to_hex(),
        sfdi: Sfdi::from_lfdi(&lfdi).value(),
        cert_lfdi: cert_lfdi.to_hex(),
    })
}

/// Checks a 2xx body: media type, well-formed XML, 2030.5 namespace, typed decode.
fn validate_document(
    href: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<Fetched, String> {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if !media.eq_ignore_ascii_case(SEP_XML) {
        return Err(format!(
            "content type is '{}', not {SEP_XML}",
            content_type.unwrap_or("(none)")
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "the body is not UTF-8".to_owned())?;
    let root = xmltree::parse(text).map_err(|e| e.to_string())?;
    let csipaus_root = root.name == "ConnectionPoint";
    let ns_ok = match root.ns.as_deref() {
        Some(SEP_NS) => true,
        Some(ns) if csipaus_root => CsipAusVersion::from_namespace(ns).is_some(),
        _ => false,
    };
    if !ns_ok {
        return Err(format!(
            "root {} is in namespace {:?}, not {SEP_NS}",
            root.name, root.ns
        ));
    }
    if let Some(Err(e)) = typed_decode(&root.name, bytes) {
        return Err(format!("{} does not decode: {e}", root.name));
    }
    Ok(Fetched {
        href: href.to_owned(),
        root: Some(root),
    })
}

/// Decodes a document into the model type its root names, when there is one.
fn typed_decode(root: &str, bytes: &[u8]) -> Option<Result<(), XmlError>> {
    macro_rules! known {
        ($($name:literal => $ty:ty),+ $(,)?) => {
            match root {
                $($name => Some(xml::decode::<$ty>(bytes, MAX_BODY).map(|_| ())),)+
                _ => None,
            }
        };
    }
    known!(
        "DeviceCapability" => m::DeviceCapability,
        "Time" => m::Time,
        "EndDeviceList" => m::EndDeviceList,
        "EndDevice" => m::EndDevice,
        "Registration" => m::Registration,
        "DeviceInformation" => m::DeviceInformation,
        "FunctionSetAssignmentsList" => m::FunctionSetAssignmentsList,
        "FunctionSetAssignments" => m::FunctionSetAssignments,
        "DERProgramList" => m::DerProgramList,
        "DERProgram" => m::DerProgram,
        "DERControlList" => m::DerControlList,
        "DERControl" => m::DerControl,
        "DefaultDERControl" => m::DefaultDerControl,
        "DERCurveList" => m::DerCurveList,
        "DERCurve" => m::DerCurve,
        "DERList" => m::DerList,
        "DER" => m::Der,
        "DERCapability" => m::DerCapability,
        "DERSettings" => m::DerSettings,
        "DERStatus" => m::DerStatus,
        "DERAvailability" => m::DerAvailability,
        "MirrorUsagePointList" => m::MirrorUsagePointList,
        "MirrorUsagePoint" => m::MirrorUsagePoint,
        "SubscriptionList" => m::SubscriptionList,
        "Subscription" => m::Subscription,
        "ResponseList" => m::ResponseList,
        "ConnectionPoint" => m::ConnectionPoint,
    )
}

fn no_client_auth_config(
    ca_pem: &str,
    suites: Vec<rustls::SupportedCipherSuite>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("CA PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    let mut provider = crypto_provider();
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS13, &rustls::version::TLS12]
            .into_iter()
            .filter(|v| suites.iter().any(|s| s.version() == *v))
            .collect();
    provider.cipher_suites = suites;
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Connects, sends `GET <path>` and returns the status line of the answer.
async fn probe_once(
    config: rustls::ClientConfig,
    host: &str,
    port: u16,
    path: &str,
) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("server name: {e}"))?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = vec![0u8; 256];
    let mut got = 0;
    while got < buf.len() {
        match tls.read(&mut buf[got..]).await {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if buf[..got].contains(&b'\n') {
                    break;
                }
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf[..got]);
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.starts_with("HTTP/") {
        Ok(line)
    } else {
        Err("the connection closed without an HTTP answer".into())
    }
}

async fn listen(addr: SocketAddr, url: Option<String>) -> Result<Listener, ConformanceError> {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ConformanceError::Setup(format!("notification listener on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| ConformanceError::Setup(e.to_string()))?;
    let inbox = Arc::new(Inbox::default());
    let app = axum::Router::new()
        .route(
            "/notify/{procedure}/{channel}",
            axum::routing::post(
                |State(inbox): State<Arc<Inbox>>,
                 Path((procedure, channel)): Path<(String, String)>,
                 headers: HeaderMap,
                 body: String| async move {
                    let key = format!("{procedure}/{channel}");
                    if inbox.down.lock().is_ok_and(|d| d.contains(&key)) {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let ct = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    if let Ok(mut b) = inbox.bodies.lock() {
                        b.entry(key).or_default().push((ct, body));
                    }
                    inbox.arrived.notify_waiters();
                    StatusCode::CREATED
                },
            ),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(inbox.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Listener {
        base: url
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{local}")),
        inbox,
        task,
    })
}

/// 24 hexadecimal digits unique to a run, procedure and client: procedures append 8 more
/// to make mRIDs (HexBinary128) that cannot collide with another run's.
fn mrid_base(run: &str, procedure: &str, lfdi: &str) -> String {
    let d = Sha256::digest(format!("{run}/{procedure}/{lfdi}").as_bytes());
    hex::encode_upper(&d[..12])
}

fn excerpt(text: &str) -> String {
    let t: String = text.trim().chars().take(200).collect();
    if t.is_empty() {
        "(empty body)".into()
    } else {
        t
    }
}

/// An error with its sources, which is where reqwest puts the TLS or connection cause.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_checks_see_the_latest_per_resource() {
        let n = |res: &str, v: u32| {
            (
                Some(SEP_XML.to_owned()),
                format!(
                    "<Notification><subscribedResource>{res}</subscribedResource><v>{v}</v></Notification>"
                ),
            )
        };
        let kept = latest_per_resource(vec![n("/edev", 1), n("/a/derc", 2), n("/edev", 3)]);
        let bodies: Vec<&str> = kept.iter().map(|d| d.1.as_str()).collect();
        assert_eq!(bodies.len(), 2);
        assert!(bodies[0].contains("<v>2</v>") && bodies[1].contains("<v>3</v>"));
        // Documents that name no resource are all kept.
        let odd = (None, "<x/>".to_owned());
        assert_eq!(latest_per_resource(vec![odd.clone(), odd]).len(), 2);
    }

    #[test]
    fn documents_need_the_media_type_namespace_and_a_decodable_root() {
        let time = br#"<Time xmlns="urn:ieee:std:2030.5:ns"><currentTime>1</currentTime><dstEndTime>0</dstEndTime><dstOffset>0</dstOffset><dstStartTime>0</dstStartTime><quality>4</quality><tzOffset>0</tzOffset></Time>"#;
        assert!(validate_document("/tm", Some("application/sep+xml"), time).is_ok());
        assert!(validate_document("/tm", Some("application/sep+xml; charset=utf-8"), time).is_ok());
        let e = validate_document("/tm", Some("application/xml"), time).unwrap_err();
        assert!(e.contains("content type"), "{e}");
        let wrong_ns = br#"<Time xmlns="urn:example"><currentTime>1</currentTime></Time>"#;
        assert!(validate_document("/tm", Some(SEP_XML), wrong_ns).is_err());
        let incomplete =
            br#"<Time xmlns="urn:ieee:std:2030.5:ns"><currentTime>1</currentTime></Time>"#;
        let e = validate_document("/tm", Some(SEP_XML), incomplete).unwrap_err();
        assert!(e.contains("does not decode"), "{e}");
    }
}
