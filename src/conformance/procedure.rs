//! Conformance procedures as data: the serde types of `conformance/sep2/*.toml`, loading
//! (embedded or from a directory) and the checks a procedure file must pass before it runs.
//!
//! A procedure is a list of steps. A step may first perform operator set-up (through the
//! operator API), then one client action (GET following links, a POST/PUT/DELETE, a wait, a
//! TLS probe or collecting notifications), then its checks on what came back. Every field
//! is described on its type; `conformance/README.md` explains the format with examples.

use super::ConformanceError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// Which profile a procedure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// CSIP-AUS (the Australian profile of IEEE 2030.5).
    CsipAus,
    /// CSIP (the California profile of IEEE 2030.5).
    Csip,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::CsipAus => "csip-aus",
            Profile::Csip => "csip",
        })
    }
}

/// The certificate a step runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A direct device client (`--cert/--key`).
    Device,
    /// A second, unrelated device client (`--second-cert/--second-key`).
    SecondDevice,
    /// An aggregator client (`--aggregator-cert/--aggregator-key`), acting for a device it
    /// manages.
    Aggregator,
}

impl Role {
    /// The name used in variables (`${second-device.lfdi}`) and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::SecondDevice => "second-device",
            Role::Aggregator => "aggregator",
        }
    }
}

fn default_clients() -> Vec<Role> {
    vec![Role::Device]
}

/// One conformance procedure.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Procedure {
    /// The public procedure id, kept for traceability (for example `S-ALL-11`, `CORE-005`).
    pub id: String,
    /// A short title in our words.
    pub title: String,
    pub profile: Profile,
    /// The server area: registration, monitoring, active-control, default-control,
    /// subscription, response, poll-rate, scheduling, randomisation, scaling,
    /// multiple-programs, edge-case, security, time, ...
    pub area: String,
    /// What the procedure establishes, in our words.
    pub purpose: String,
    /// Where the procedure comes from (package and version, or document), for traceability.
    #[serde(default)]
    pub source: Option<String>,
    /// Features the whole procedure needs; `--skip-tag` skips procedures carrying a tag.
    #[serde(default)]
    pub requires: Vec<String>,
    /// The certificates the procedure uses; the first is the default client of each step.
    #[serde(default = "default_clients")]
    pub clients: Vec<Role>,
    /// The steps, run in order; the first failure ends the procedure.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

/// One step: operator set-up, then at most one client action, then checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// The client that acts; default the procedure's first client.
    #[serde(default)]
    pub client: Option<Role>,
    /// Features this step needs; a skipped tag skips the step (the result says so).
    #[serde(default)]
    pub requires: Vec<String>,
    /// Operator set-up performed before the client action.
    #[serde(default)]
    pub operator: Vec<OperatorAction>,
    /// GET, following links.
    #[serde(default)]
    pub get: Option<GetAction>,
    /// POST, PUT or DELETE.
    #[serde(default)]
    pub send: Option<SendAction>,
    /// Wait this many seconds.
    #[serde(default)]
    pub wait_s: Option<u64>,
    /// A TLS handshake probe.
    #[serde(default)]
    pub tls: Option<TlsProbe>,
    /// Collect the notifications received on a channel of the runner's listener.
    #[serde(default)]
    pub notifications: Option<AwaitNotifications>,
    /// Make a channel of the runner's listener refuse (or accept again) notifications, to
    /// simulate a client that cannot be reached.
    #[serde(default)]
    pub listener: Option<ListenerState>,
    /// Checks on the documents the action returned.
    #[serde(default, rename = "check")]
    pub checks: Vec<Check>,
    /// Variables to keep for later steps: name -> element path (`EndDevice/@href`), or
    /// `#href` for the URL of the first document fetched, or `#location` for the Location
    /// header of a POST. A leading `?` makes the value optional.
    #[serde(default)]
    pub save: BTreeMap<String, String>,
    /// Repeat the client action and checks for up to this many seconds until they pass.
    #[serde(default)]
    pub retry_s: u64,
    /// Run the client action and checks this many times, pausing between runs (a client
    /// polling over a long period); every run must pass.
    #[serde(default)]
    pub repeat: Option<Repeat>,
}

/// See [`Step::repeat`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub times: u32,
    pub every_s: u64,
}

impl Step {
    /// The names of the client actions set on this step.
    pub fn actions(&self) -> Vec<&'static str> {
        let mut a = Vec::new();
        if self.get.is_some() {
            a.push("get");
        }
        if self.send.is_some() {
            a.push("send");
        }
        if self.wait_s.is_some() {
            a.push("wait_s");
        }
        if self.tls.is_some() {
            a.push("tls");
        }
        if self.notifications.is_some() {
            a.push("notifications");
        }
        if self.listener.is_some() {
            a.push("listener");
        }
        a
    }
}

/// GET a resource, reached by following links.
///
/// `follow` is a chain separated by `>`: the first hop is `dcap` (the DeviceCapability
/// path), an absolute path, or a `${variable}` holding one; every further hop names an
/// element of the documents fetched so far, optionally with a `[child=value]` predicate,
/// whose `href` is fetched in turn (every matching element is followed). A hop naming a
/// `...ListLink` asks for up to `limit` items.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetAction {
    pub follow: String,
    /// Items requested from lists (`l`); default 100.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Status of the last hop; default 200. Earlier hops must answer 200.
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// The methods a [`SendAction`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SendMethod {
    Post,
    Put,
    Delete,
}

/// POST, PUT or DELETE to the href reached by `to` (a `follow` chain whose last hop is not
/// fetched).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendAction {
    pub method: SendMethod,
    pub to: String,
    /// The body, with `${variables}` substituted.
    #[serde(default)]
    pub body: Option<String>,
    /// Default `application/sep+xml`.
    #[serde(default)]
    pub content_type: Option<String>,
    pub expect: Expect,
}

/// An expected HTTP status: a code, a class (`"2xx"`, `"4xx"`), `"any"`, or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Expect {
    Code(u16),
    Class(String),
    Any(Vec<Expect>),
}

impl Expect {
    /// Whether `status` satisfies this expectation.
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            Expect::Code(c) => *c == status,
            Expect::Class(c) => match c.as_str() {
                "any" => true,
                class => {
                    let digit = class.as_bytes().first().map(|d| d - b'0');
                    class.len() == 3
                        && class.ends_with("xx")
                        && digit.is_some_and(|d| u16::from(d) == status / 100)
                }
            },
            Expect::Any(list) => list.iter().any(|e| e.accepts(status)),
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Expect::Code(c) if (100..600).contains(c) => Ok(()),
            Expect::Code(c) => Err(format!("status {c} is not an HTTP status")),
            Expect::Class(c)
                if c == "any"
                    || (c.len() == 3
                        && c.ends_with("xx")
                        && matches!(c.as_bytes()[0], b'1'..=b'5')) =>
            {
                Ok(())
            }
            Expect::Class(c) => Err(format!("status '{c}' must be a code, 1xx..5xx or \"any\"")),
            Expect::Any(list) => list.iter().try_for_each(Expect::validate),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Code(c) => write!(f, "{c}"),
            Expect::Class(c) => f.write_str(c),
            Expect::Any(list) => {
                let parts: Vec<String> = list.iter().map(ToString::to_string).collect();
                f.write_str(&parts.join(" or "))
            }
        }
    }
}

/// What a TLS probe expects of the handshake and first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsOutcome {
    /// The handshake completes and `GET <dcap>` is answered.
    Accepted,
    /// The handshake fails or the connection closes before an HTTP answer.
    Refused,
}

/// Connects with a chosen TLS configuration and sends one request for the DeviceCapability.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsProbe {
    /// Cipher suites to offer (rustls names such as `TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8`);
    /// default all IEEE 2030.5 suites.
    #[serde(default)]
    pub suites: Vec<String>,
    /// Whether to present the client's certificate; default true.
    #[serde(default = "yes")]
    pub client_certificate: bool,
    pub expect: TlsOutcome,
}

fn yes() -> bool {
    true
}

/// Waits for notifications on one channel of the runner's listener; the bodies received
/// become the step's documents. The URL of a channel is `${notify.<channel>}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwaitNotifications {
    pub channel: String,
    /// How long to wait for the first one; default 30 s.
    #[serde(default)]
    pub within_s: Option<u64>,
}

/// Whether a notification channel accepts deliveries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerState {
    pub channel: String,
    /// false: answer 503 to every delivery on the channel.
    pub available: bool,
}

/// A number, or an expression over variables such as `"${rating_w} * 0.5"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Num {
    Value(f64),
    Expr(String),
}

/// A scalar written in a procedure file, compared as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Text(t) => f.write_str(t),
        }
    }
}

/// A check on the step's documents: select elements, keep those meeting every condition,
/// and compare how many remain. With no count given, at least one must remain.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Element path; its first name may match at any depth, the rest are children
    /// (`DERControlList/DERControl`, `DERControl`). Default: each document's root.
    #[serde(default)]
    pub select: Option<String>,
    #[serde(default, rename = "where")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub count: Option<usize>,
    #[serde(default)]
    pub min: Option<usize>,
    #[serde(default)]
    pub max: Option<usize>,
    /// Features this check needs; a skipped tag skips the check.
    #[serde(default)]
    pub requires: Vec<String>,
}

/// One condition on a selected element. `path` is relative to it (`.` is the element,
/// `@name` an attribute, `A/B` children). Every test given must hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(default = "dot")]
    pub path: String,
    /// The element (or attribute) exists, or (false) does not.
    #[serde(default)]
    pub present: Option<bool>,
    /// Text equals this (after `${variable}` substitution); see `ignore_case`.
    #[serde(default)]
    pub equals: Option<Scalar>,
    #[serde(default)]
    pub ignore_case: bool,
    /// Text equals one of these.
    #[serde(default)]
    pub one_of: Vec<Scalar>,
    /// Hexadecimal text whose numeric value equals this hexadecimal number.
    #[serde(default)]
    pub hex: Option<String>,
    /// An ActivePower-like element (`value` x 10^`multiplier`) worth this many watts.
    #[serde(default)]
    pub watts: Option<Num>,
    /// A number at least / at most this.
    #[serde(default)]
    pub at_least: Option<Num>,
    #[serde(default)]
    pub at_most: Option<Num>,
    /// Epoch seconds within this many seconds of the runner's clock.
    #[serde(default)]
    pub near_now: Option<i64>,
}

fn dot() -> String {
    ".".into()
}

/// Control states the operator can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlState {
    /// Started a few seconds ago.
    Active,
    /// Starts later (after `start_offset_s`, or after the previous scheduled control).
    Scheduled,
}

/// Operating-envelope values of a control or default control (CSIP-AUS modes in W; setGradW
/// in hundredths of a percent of setMaxW per second, as 2030.5 sends it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeValues {
    #[serde(default)]
    pub exp_lim_w: Option<Num>,
    #[serde(default)]
    pub imp_lim_w: Option<Num>,
    #[serde(default)]
    pub gen_lim_w: Option<Num>,
    #[serde(default)]
    pub load_lim_w: Option<Num>,
    /// opModMaxLimW as W (the server sends a percentage of the device rating).
    #[serde(default)]
    pub max_lim_w: Option<Num>,
    #[serde(default)]
    pub connect: Option<bool>,
    #[serde(default)]
    pub energize: Option<bool>,
    #[serde(default)]
    pub set_grad_w: Option<u32>,
}

/// Server state a procedure needs, expressed as what a utility operator would do. The
/// runner performs these through the operator API (`--operator-url/--operator-token`);
/// without it, procedures that need them are reported NEEDS-SETUP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OperatorAction {
    /// The client's EndDevice exists (registered out of band, bound to a DER of
    /// `rating_w`, with the configured PIN), or does not exist.
    EndDevice {
        #[serde(default)]
        client: Option<Role>,
        registered: bool,
    },
    /// An additional DER program with this primacy reaches the client's DER.
    Program {
        #[serde(default)]
        client: Option<Role>,
        primacy: u8,
    },
    /// A control in the program with `primacy` (default the first program).
    Control {
        #[serde(default)]
        client: Option<Role>,
        state: ControlState,
        #[serde(default)]
        primacy: Option<u8>,
        #[serde(default)]
        start_offset_s: Option<i64>,
        #[serde(default)]
        duration_s: Option<u32>,
        #[serde(default)]
        randomize_start_s: Option<i32>,
        #[serde(default)]
        randomize_duration_s: Option<i32>,
        /// DERControlBase rampTms, hundredths of a second.
        #[serde(default)]
        ramp_tms: Option<u32>,
        #[serde(default)]
        modes: EnvelopeValues,
    },
    /// Replaces the default control of the program with `primacy` (default the first).
    DefaultControl {
        #[serde(default)]
        client: Option<Role>,
        #[serde(default)]
        primacy: Option<u8>,
        #[serde(default)]
        modes: EnvelopeValues,
    },
    /// Cancels every control of the client's programs that is not cancelled yet.
    CancelControls {
        #[serde(default)]
        client: Option<Role>,
    },
    /// Withdraws (or restores) the client's access to the server.
    Access {
        #[serde(default)]
        client: Option<Role>,
        granted: bool,
    },
    /// Sets the pollRate announced on one resource type (for example `EndDeviceList`).
    PollRate { resource: String, seconds: u32 },
    /// Sets the postRate announced on MirrorUsagePoints.
    PostRate { resource: String, seconds: u32 },
    /// Places each DER program of the client in a FunctionSetAssignments of its own.
    SeparateFunctionSets {
        #[serde(default)]
        client: Option<Role>,
    },
    /// Removes the client's MirrorUsagePoints.
    ClearMirrors {
        #[serde(default)]
        client: Option<Role>,
    },
}

impl OperatorAction {
    /// The action's name as written in files (`op = "..."`).
    pub fn name(&self) -> &'static str {
        match self {
            OperatorAction::EndDevice { .. } => "end-device",
            OperatorAction::Program { .. } => "program",
            OperatorAction::Control { .. } => "control",
            OperatorAction::DefaultControl { .. } => "default-control",
            OperatorAction::CancelControls { .. } => "cancel-controls",
            OperatorAction::Access { .. } => "access",
            OperatorAction::PollRate { .. } => "poll-rate",
            OperatorAction::PostRate { .. } => "post-rate",
            OperatorAction::SeparateFunctionSets { .. } => "separate-function-sets",
            OperatorAction::ClearMirrors { .. } => "clear-mirrors",
        }
    }

    /// The client the action concerns, when it names one.
    pub fn client(&self) -> Option<Role> {
        match self {
            OperatorAction::EndDevice { client, .. }
            | OperatorAction::Program { client, .. }
            | OperatorAction::Control { client, .. }
            | OperatorAction::DefaultControl { client, .. }
            | OperatorAction::CancelControls { client }
            | OperatorAction::Access { client, .. }
            | OperatorAction::SeparateFunctionSets { client }
            | OperatorAction::ClearMirrors { client } => *client,
            OperatorAction::PollRate { .. } | OperatorAction::PostRate { .. } => None,
        }
    }
}

impl Procedure {
    /// Parses one procedure file and checks it (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Procedure, ConformanceError> {
        let p: Procedure = toml::from_str(text).map_err(|e| ConformanceError::Procedure {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?;
        p.validate().map_err(|reason| ConformanceError::Procedure {
            origin: origin.to_owned(),
            reason,
        })?;
        Ok(p)
    }

    /// Every client a step or operator action of this procedure uses.
    pub fn roles(&self) -> BTreeSet<Role> {
        let mut roles: BTreeSet<Role> = self.clients.iter().copied().collect();
        for s in &self.steps {
            roles.extend(s.client);
            roles.extend(s.operator.iter().filter_map(OperatorAction::client));
        }
        roles
    }

    /// Structural checks beyond what serde enforces.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() || self.title.trim().is_empty() {
            return Err("id and title must not be empty".into());
        }
        if self.clients.is_empty() {
            return Err("clients must name at least one role".into());
        }
        if self.steps.is_empty() {
            return Err("a procedure needs at least one step".into());
        }
        let mut names = BTreeSet::new();
        for s in &self.steps {
            let at = |m: String| format!("step '{}': {m}", s.name);
            if !names.insert(s.name.as_str()) {
                return Err(at("step names must be unique".into()));
            }
            let actions = s.actions();
            if actions.len() > 1 {
                return Err(at(format!(
                    "one client action per step, found {}",
                    actions.join(", ")
                )));
            }
            if actions.is_empty() && s.operator.is_empty() {
                return Err(at(
                    "a step needs an operator action or a client action".into()
                ));
            }
            if actions.is_empty() && !s.checks.is_empty() {
                return Err(at("checks need a client action to check".into()));
            }
            if let Some(r) = s.client.filter(|r| !self.clients.contains(r)) {
                return Err(at(format!(
                    "client {} is not listed in the procedure's clients",
                    r.as_str()
                )));
            }
            if let Some(g) = &s.get {
                if let Some(e) = &g.expect {
                    e.validate().map_err(at)?;
                }
                if g.follow.trim().is_empty() {
                    return Err(at("get.follow is empty".into()));
                }
            }
            if let Some(send) = &s.send {
                send.expect.validate().map_err(at)?;
                if send.method != SendMethod::Delete && send.body.is_none() {
                    return Err(at(format!("{:?} needs a body", send.method)));
                }
            }
            for (name, path) in &s.save {
                if name.is_empty() || path.is_empty() {
                    return Err(at("save entries need a name and a path".into()));
                }
            }
            for c in &s.checks {
                if c.count.is_some() && (c.min.is_some() || c.max.is_some()) {
                    return Err(at("a check gives count or min/max, not both".into()));
                }
                for cond in &c.conditions {
                    let tests = [
                        cond.present.is_some(),
                        cond.equals.is_some(),
                        !cond.one_of.is_empty(),
                        cond.hex.is_some(),
                        cond.watts.is_some(),
                        cond.at_least.is_some() || cond.at_most.is_some(),
                        cond.near_now.is_some(),
                    ];
                    if !tests.contains(&true) {
                        return Err(at(format!("condition on '{}' tests nothing", cond.path)));
                    }
                }
            }
        }
        Ok(())
    }
}

/// One embedded procedure file.
macro_rules! embedded {
    ($($name:literal),+ $(,)?) => {
        /// The procedure files compiled into the binary: (file name, contents).
        pub const EMBEDDED: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../../conformance/sep2/", $name)))),+
        ];
    };
}

embedded!(
    "S-ALL-01.toml",
    "S-ALL-02.toml",
    "S-ALL-03.toml",
    "S-ALL-04.toml",
    "S-ALL-05.toml",
    "S-ALL-06.toml",
    "S-ALL-07.toml",
    "S-ALL-08.toml",
    "S-ALL-09.toml",
    "S-ALL-10.toml",
    "S-ALL-11.toml",
    "S-ALL-12.toml",
    "S-ALL-13.toml",
    "S-ALL-14.toml",
    "S-ALL-15.toml",
    "S-ALL-16.toml",
    "S-ALL-17.toml",
    "S-ALL-18.toml",
    "S-ALL-19.toml",
    "S-ALL-20.toml",
    "S-ALL-21.toml",
    "S-ALL-22.toml",
    "S-ALL-23.toml",
    "S-ALL-24.toml",
    "S-ALL-25.toml",
    "S-ALL-26.toml",
    "S-ALL-27.toml",
    "S-ALL-28.toml",
    "S-ALL-29.toml",
    "S-ALL-30.toml",
    "S-ALL-31.toml",
    "S-ALL-32.toml",
    "S-ALL-33.toml",
    "S-ALL-34.toml",
    "S-ALL-35.toml",
    "S-ALL-36.toml",
    "S-ALL-37.toml",
    "S-ALL-38.toml",
    "S-ALL-39.toml",
    "S-ALL-40.toml",
    "S-ALL-41.toml",
    "S-ALL-42.toml",
    "S-ALL-43.toml",
    "S-ALL-44.toml",
    "S-ALL-45.toml",
    "S-ALL-46.toml",
    "S-ALL-47.toml",
    "S-ALL-48.toml",
    "S-ALL-49.toml",
    "S-ALL-50.toml",
    "S-ALL-51.toml",
    "S-ALL-52.toml",
    "S-ALL-53.toml",
    "S-ALL-55.toml",
    "S-ALL-56.toml",
    "S-ALL-57.toml",
    "S-OPT-01.toml",
    "S-OPT-02.toml",
    "S-OPT-03.toml",
    "S-OPT-04.toml",
    "S-OPT-05.toml",
    "CSIP-COMM-002.toml",
    "CSIP-COMM-003.toml",
    "CSIP-CORE-005.toml",
    "CSIP-CORE-009.toml",
    "CSIP-CORE-010.toml",
    "CSIP-CORE-012.toml",
    "CSIP-CORE-014.toml",
    "CSIP-CORE-018.toml",
    "CSIP-CORE-021.toml",
    "CSIP-CORE-022.toml",
    "CSIP-BASIC-001.toml",
    "CSIP-BASIC-007.toml",
    "CSIP-BASIC-009.toml",
    "CSIP-BASIC-010.toml",
    "CSIP-BASIC-016.toml",
    "CSIP-BASIC-017.toml",
    "CSIP-BASIC-028.toml",
    "CSIP-BASIC-029.toml",
);

/// The embedded procedure set, parsed, in file order.
pub fn embedded() -> Result<Vec<Procedure>, ConformanceError> {
    let procedures: Vec<Procedure> = EMBEDDED
        .iter()
        .map(|(name, text)| Procedure::parse(text, name))
        .collect::<Result<_, _>>()?;
    unique(&procedures)?;
    Ok(procedures)
}

/// Every `*.toml` file of `dir`, parsed, sorted by file name.
pub fn from_dir(dir: &Path) -> Result<Vec<Procedure>, ConformanceError> {
    let io = |e: std::io::Error| ConformanceError::Io {
        path: dir.display().to_string(),
        source: e,
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut procedures = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| ConformanceError::Io {
            path: f.display().to_string(),
            source: e,
        })?;
        procedures.push(Procedure::parse(&text, &f.display().to_string())?);
    }
    unique(&procedures)?;
    Ok(procedures)
}

fn unique(procedures: &[Procedure]) -> Result<(), ConformanceError> {
    let mut seen = BTreeSet::new();
    for p in procedures {
        if !seen.insert(p.id.as_str()) {
            return Err(ConformanceError::Procedure {
                origin: p.id.clone(),
                reason: "two procedures have this id".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_procedure_parses_and_ids_are_unique() {
        let all = embedded().unwrap();
        assert_eq!(all.len(), EMBEDDED.len());
        for p in &all {
            assert!(!p.purpose.trim().is_empty(), "{}", p.id);
        }
    }

    #[test]
    fn the_embedded_list_is_the_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/sep2");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "add new files to the embedded! list");
        assert_eq!(from_dir(&dir).unwrap().len(), EMBEDDED.len());
    }

    #[test]
    fn expectations_accept_codes_classes_and_lists() {
        assert!(Expect::Code(201).accepts(201));
        assert!(Expect::Class("4xx".into()).accepts(404));
        assert!(!Expect::Class("4xx".into()).accepts(500));
        assert!(Expect::Class("any".into()).accepts(503));
        let both = Expect::Any(vec![Expect::Code(200), Expect::Class("4xx".into())]);
        assert!(both.accepts(200) && both.accepts(403) && !both.accepts(201));
        assert!(Expect::Class("6xx".into()).validate().is_err());
    }

    #[test]
    fn malformed_procedures_are_refused_with_a_reason() {
        let two_actions = r#"
id = "X"
title = "t"
profile = "csip"
area = "a"
purpose = "p"
[[step]]
name = "s"
wait_s = 1
get = { follow = "dcap" }
"#;
        let e = Procedure::parse(two_actions, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("one client action per step"), "{e}");
        let typo = two_actions
            .replace("wait_s = 1\n", "")
            .replace("follow", "folow");
        let e = Procedure::parse(&typo, "x.toml").unwrap_err().to_string();
        assert!(e.contains("folow"), "{e}");
        let bad_op = r#"
id = "X"
title = "t"
profile = "csip"
area = "a"
purpose = "p"
[[step]]
name = "s"
operator = [{ op = "control", state = "active", modes = { exp_lim_w = 0, colour = "red" } }]
"#;
        assert!(Procedure::parse(bad_op, "x.toml").is_err());
    }
}
