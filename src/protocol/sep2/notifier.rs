//! Delivery of IEEE 2030.5 notifications: the task that turns registry changes into
//! `Notification` POSTs to subscribers.
//!
//! # Design
//!
//! One **dispatcher** task listens to the registry's change feed
//! ([`crate::registry::Registry::subscribe_changes`]). For each burst of changes (it takes
//! what is already waiting, so a bulk write is handled in one pass) it works out which
//! subscriptions may be affected ([`classify`], then [`affects`]), renders each one's
//! resource as the subscribing EndDevice would GET it now, and wraps it in a `Notification`
//! (status 0, the resource inside, as 2030.5 requires). A rendering identical to the last
//! one queued for that subscription is not sent again, so a change that does not alter a
//! device's view (another device's program, a default rewritten with the same values)
//! costs no traffic.
//!
//! Notifications are queued per **endpoint** (notificationURI), each endpoint with its own
//! worker task. A worker POSTs its queue in order, with a timeout per attempt and
//! exponential backoff between attempts ([`backoff`]), up to a configured number of
//! attempts. So one subscription's notifications arrive in order, and a dead or slow
//! endpoint only delays itself. Since each notification carries the whole current resource,
//! a newer notification for a subscription replaces an older one still waiting (and ends
//! the retries of one in flight): the subscriber gets the latest state sooner, and queues
//! stay bounded by the number of subscriptions. A worker with nothing to do for a while
//! exits; the next notification for its endpoint starts a new one.
//!
//! # What can be missed, and what is done about it
//!
//! - **The dispatcher falls behind the change feed** (`RecvError::Lagged`): the feed has
//!   dropped changes it will never see. It then re-renders *every* subscription and sends
//!   those whose document differs from the last one queued (or that have none since the
//!   server started). Subscribers may get a notification they did not strictly need; none
//!   misses a change.
//! - **An endpoint fails every attempt**: the notification is dropped with a warning, and
//!   the subscription's "last queued" state is forgotten, so the next change sends the
//!   whole current resource again. The subscription is kept; 2030.5 clients also poll.
//! - **Shutdown**: queued notifications are dropped.
//! - Changes the feed does not carry (other nodes on the same database, the passage of
//!   time turning a scheduled control active) are not notified; clients poll at `pollRate`.
//!
//! A new subscription's resource is rendered once as it is created, before the client gets
//! its 201 ([`baseline`]), and that rendering is taken as already known to the subscriber
//! (it can GET it), without being sent: so a later change that leaves the subscriber's view as it was (another
//! client's EndDevice, another device's program) sends nothing, even as the first change
//! after subscribing.
//!
//! When the watched resource disappears (its program no longer reaches the EndDevice), the
//! subscriber gets a `Notification` with status 4 (subscription cancelled, resource
//! deleted) and the subscription is removed. A DefaultDERControl that is deleted while its
//! program remains is not announced; the subscription stays and notifies again when a
//! default is set.

use super::function_sets::FunctionSetRecord;
use super::model::{DerControlList, Notification, SepResource};
use super::poll_rates::PollRateRecord;
use super::records::EndDeviceRecord;
use super::server::{
    Caller, ListQuery, SEP_XML, Sep2Error, Sep2State, control_list_doc, default_control_doc,
    end_device_list_doc, fsa_list_doc, function_set, program_list_doc, programs_for,
    set_program_list_doc,
};
use super::subscriptions::{Subscribed, SubscriptionRecord};
use super::xml;
use crate::config::NotificationConfig;
use crate::envelope::records::{ControlProgram, ControlRecord, DefaultControlRecord};
use crate::registry::{Change, ChangeKind, Entity, RegistryError};
use crate::store::Record;
use crate::store::record::dynamic;
use bytes::Bytes;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// The HTTP client could not be built from the TLS configuration.
    #[error("cannot build the notification HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Why one delivery attempt failed. The peer refusing and the link breaking are kept
/// apart because only some of them are worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The endpoint answered with a status that a retry will not change (4xx).
    #[error("endpoint refused the notification: HTTP {0}")]
    Refused(u16),
    /// The endpoint answered that it cannot take it now (5xx, 408, 429).
    #[error("endpoint unavailable: HTTP {0}")]
    Unavailable(u16),
    /// No answer: connection refused or reset, TLS failure, timeout.
    #[error("no answer from endpoint: {0}")]
    Link(String),
}

impl DeliveryError {
    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, DeliveryError::Refused(_))
    }

    /// Classifies an HTTP status; `None` means delivered.
    pub fn from_status(status: u16) -> Option<DeliveryError> {
        match status {
            200..=299 => None,
            408 | 429 | 500..=599 => Some(DeliveryError::Unavailable(status)),
            other => Some(DeliveryError::Refused(other)),
        }
    }
}

/// Delivery timing, from [`NotificationConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifierSettings {
    /// Attempts per notification, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Longest time one POST may take.
    pub timeout: Duration,
    /// How long an endpoint's worker waits for more work before it exits.
    pub idle: Duration,
}

impl From<&NotificationConfig> for NotifierSettings {
    fn from(c: &NotificationConfig) -> Self {
        NotifierSettings {
            max_attempts: c.max_attempts.max(1),
            initial_backoff: Duration::from_millis(c.initial_backoff_ms),
            max_backoff: Duration::from_secs(c.max_backoff_seconds),
            timeout: Duration::from_secs(c.timeout_seconds.max(1)),
            idle: Duration::from_secs(60),
        }
    }
}

/// The wait before retry number `retry` (1 for the first retry): `initial` doubled for each
/// earlier retry, never more than `max` (1 s, 2 s, 4 s, ... with the defaults).
pub fn backoff(retry: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// Which subscribed resources a change may alter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Affects {
    /// A program's controls changed: its DERControlLists.
    Controls(String),
    /// A program's default changed: its DefaultDERControls.
    Default(String),
    /// A program itself changed (created, renamed, retargeted, deleted): every
    /// DERProgramList (which devices it reaches is not known without asking; those whose
    /// rendering did not change are not sent again), and the program's own lists and
    /// defaults.
    Program(String),
    /// An EndDevice changed (bound to another DER, enabled): all its subscriptions.
    EndDevice(String),
    /// Unknown: re-check every subscription.
    Everything,
}

/// What to do about one change, before any lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// The change affects these resources.
    Affects(Affects),
    /// A control changed; which program it belongs to must be read first.
    ControlOfUnknownProgram(String),
    /// A subscription was deleted: stop sending to it.
    SubscriptionDeleted(String),
}

/// Sorts a change by what it can affect; `None` for changes no subscription watches.
pub fn classify(change: &Change) -> Option<Classified> {
    let key = change.key.clone();
    match change.collection {
        c if c == ControlRecord::COLLECTION => Some(Classified::ControlOfUnknownProgram(key)),
        c if c == DefaultControlRecord::COLLECTION => {
            Some(Classified::Affects(Affects::Default(key)))
        }
        c if c == ControlProgram::COLLECTION => Some(Classified::Affects(Affects::Program(key))),
        c if c == EndDeviceRecord::COLLECTION => Some(Classified::Affects(Affects::EndDevice(key))),
        c if c == SubscriptionRecord::COLLECTION && change.kind == ChangeKind::Deleted => {
            Some(Classified::SubscriptionDeleted(key))
        }
        // pollRates appear in every list; a program moved into (or out of) a
        // FunctionSetAssignments of its own changes FunctionSetAssignments and DERProgram
        // lists of every EndDevice it reaches.
        c if c == PollRateRecord::COLLECTION || c == FunctionSetRecord::COLLECTION => {
            Some(Classified::Affects(Affects::Everything))
        }
        _ => None,
    }
}

/// Whether a change of kind `a` may alter the resource `s` watched by a subscription of
/// EndDevice `end_device`.
pub fn affects(s: &Subscribed, end_device: &str, a: &Affects) -> bool {
    match a {
        Affects::Everything => true,
        // Any EndDevice may be one the subscriber's certificate sees in the EndDeviceList;
        // renderings that did not change are not sent.
        Affects::EndDevice(e) => e == end_device || matches!(s, Subscribed::EndDeviceList),
        Affects::Controls(p) => matches!(s, Subscribed::Controls { program, .. } if program == p),
        Affects::Default(p) => matches!(s, Subscribed::Default { program, .. } if program == p),
        Affects::Program(p) => match s {
            Subscribed::EndDeviceList => false,
            Subscribed::ProgramList { .. }
            | Subscribed::SetProgramList { .. }
            | Subscribed::FunctionSets { .. } => true,
            Subscribed::Controls { program, .. } | Subscribed::Default { program, .. } => {
                program == p
            }
        },
    }
}

/// One notification on its way to an endpoint.
#[derive(Debug, Clone)]
struct Delivery {
    subscription: String,
    body: Bytes,
    /// Fingerprint of `body`; a delivery whose fingerprint is no longer the subscription's
    /// latest has been superseded (or the subscription deleted) and is dropped.
    fingerprint: u64,
    /// A cancellation (status 4) goes out even though its subscription is gone.
    is_final: bool,
}

/// Queues `d`, replacing a waiting delivery of the same subscription in place: the newer
/// one carries the whole current resource, so the older one has nothing left to say, and
/// taking its place keeps the order of the other subscriptions' deliveries.
fn enqueue(queue: &mut VecDeque<Delivery>, d: Delivery) {
    match queue.iter_mut().find(|q| q.subscription == d.subscription) {
        Some(waiting) => *waiting = d,
        None => queue.push_back(d),
    }
}

fn fingerprint(body: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    h.finish()
}

/// The last fingerprint queued per subscription, shared by the dispatcher (which sets it),
/// the workers (which check it before each attempt and forget it when they give up) and the
/// subscription handler (which sets a new subscription's [`baseline`]). Lives in
/// [`Sep2State::notified`].
pub type Latest = Arc<Mutex<HashMap<String, u64>>>;

/// Records what a new subscription's resource renders to now as known to its subscriber
/// (it can GET it), so that the first notification is for a change that alters it. Called
/// before the subscription's 201 is sent, so any change the client makes happen afterwards
/// is a change from this rendering.
pub async fn baseline(state: &Sep2State, sub: &SubscriptionRecord) {
    let Ok(target) = sub.subscribed() else {
        return;
    };
    match render(state, sub, &target).await {
        Ok(Rendered::Send(body)) => {
            lock(&state.notified)
                .entry(sub.id.clone())
                .or_insert_with(|| fingerprint(&body));
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(
            subscription = %sub.href(), error = %e,
            "cannot render a new subscription's resource"
        ),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; carry on with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One endpoint's queue, shared by the dispatcher and the endpoint's worker.
#[derive(Default)]
struct Endpoint {
    queue: Mutex<EndpointQueue>,
    wake: Notify,
}

#[derive(Default)]
struct EndpointQueue {
    pending: VecDeque<Delivery>,
    /// Set by the worker as it exits idle; the dispatcher then starts a new one.
    closed: bool,
}

/// Starts the notifier: the dispatcher over `changes` (take the receiver before the server
/// accepts writes, so nothing committed after start-up is missed), stopping when
/// `shutdown` turns true. `tls` is the client configuration for https notificationURIs.
pub fn spawn(
    state: Sep2State,
    tls: rustls::ClientConfig,
    settings: NotifierSettings,
    changes: broadcast::Receiver<Change>,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, NotifierError> {
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        // Notifications go where the subscriber said, not where a redirect or a proxy
        // variable would send them.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(settings.timeout)
        .timeout(settings.timeout)
        .build()?;
    let latest = state.notified.clone();
    let dispatcher = Dispatcher {
        state,
        client,
        settings,
        latest,
        endpoints: HashMap::new(),
        workers: JoinSet::new(),
        shutdown,
    };
    Ok(tokio::spawn(dispatcher.run(changes)))
}

struct Dispatcher {
    state: Sep2State,
    client: reqwest::Client,
    settings: NotifierSettings,
    latest: Latest,
    endpoints: HashMap<String, Arc<Endpoint>>,
    workers: JoinSet<()>,
    shutdown: watch::Receiver<bool>,
}

/// What one pass has to do.
#[derive(Default)]
struct Work {
    affects: BTreeSet<Affects>,
    controls: BTreeSet<String>,
    deleted: Vec<String>,
}

impl Work {
    fn add(&mut self, change: &Change) {
        match classify(change) {
            Some(Classified::Affects(a)) => {
                self.affects.insert(a);
            }
            Some(Classified::ControlOfUnknownProgram(k)) => {
                self.controls.insert(k);
            }
            Some(Classified::SubscriptionDeleted(k)) => self.deleted.push(k),
            None => {}
        }
    }

    fn lagged(&mut self, missed: u64) {
        tracing::warn!(
            missed,
            "2030.5 notifier fell behind the change feed; re-checking every subscription"
        );
        self.affects.insert(Affects::Everything);
    }

    fn is_empty(&self) -> bool {
        self.affects.is_empty() && self.controls.is_empty() && self.deleted.is_empty()
    }
}

/// What a subscription's resource renders to now.
enum Rendered {
    /// The notification to send.
    Send(Bytes),
    /// The resource is gone: send this cancellation and remove the subscription.
    Gone(Bytes),
    /// Nothing to send (EndDevice disabled or gone, no default yet).
    Nothing,
}

impl Dispatcher {
    async fn run(mut self, mut changes: broadcast::Receiver<Change>) {
        use broadcast::error::{RecvError, TryRecvError};
        let mut stop = self.shutdown.clone();
        loop {
            let mut work = Work::default();
            let first = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                r = changes.recv() => r,
            };
            match first {
                Ok(c) => work.add(&c),
                Err(RecvError::Lagged(n)) => work.lagged(n),
                Err(RecvError::Closed) => break,
            }
            // Take the rest of a burst now, so each subscription is rendered once for it.
            let mut closed = false;
            loop {
                match changes.try_recv() {
                    Ok(c) => work.add(&c),
                    Err(TryRecvError::Lagged(n)) => work.lagged(n),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => {
                        closed = true;
                        break;
                    }
                }
            }
            if !work.is_empty() {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = self.process(work) => {}
                }
            }
            if closed {
                break;
            }
            // Collect the workers that exited idle.
            while self.workers.try_join_next().is_some() {}
        }
        self.workers.shutdown().await;
        tracing::debug!("2030.5 notifier stopped");
    }

    async fn process(&mut self, mut work: Work) {
        for id in &work.deleted {
            lock(&self.latest).remove(id);
        }
        self.notify(&mut work).await;
    }

    async fn notify(&mut self, work: &mut Work) {
        for key in std::mem::take(&mut work.controls) {
            match self.state.registry.get::<ControlRecord>(&key).await {
                Ok(c) => {
                    work.affects.insert(Affects::Controls(c.program_id));
                }
                // Controls are kept when deleted; one that cannot be read is a surprise,
                // so look at everything rather than guess.
                Err(e) => {
                    tracing::debug!(control = %key, error = %e, "control not readable");
                    work.affects.insert(Affects::Everything);
                }
            }
        }
        if work.affects.is_empty() {
            return;
        }
        let candidates = match self.candidates(&work.affects).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "2030.5 notifier cannot read subscriptions");
                return;
            }
        };
        if work.affects.contains(&Affects::Everything) {
            // Forget subscriptions that no longer exist (deleted with their EndDevice).
            let live: std::collections::HashSet<&str> =
                candidates.iter().map(|s| s.id.as_str()).collect();
            lock(&self.latest).retain(|id, _| live.contains(id.as_str()));
        }
        for sub in candidates {
            let Ok(target) = sub.subscribed() else {
                continue;
            };
            if !work
                .affects
                .iter()
                .any(|a| affects(&target, &sub.end_device_id, a))
            {
                continue;
            }
            match render(&self.state, &sub, &target).await {
                Ok(Rendered::Send(body)) => self.dispatch(&sub, body, false),
                Ok(Rendered::Gone(body)) => {
                    self.dispatch(&sub, body, true);
                    match self
                        .state
                        .registry
                        .delete::<SubscriptionRecord>(&sub.id)
                        .await
                    {
                        Ok(()) | Err(RegistryError::NotFound { .. }) => {}
                        Err(e) => tracing::error!(
                            subscription = %sub.href(), error = %e,
                            "cannot remove a subscription whose resource is gone"
                        ),
                    }
                }
                Ok(Rendered::Nothing) => {}
                Err(e) => tracing::error!(
                    subscription = %sub.href(), error = %e,
                    "cannot render a 2030.5 notification"
                ),
            }
        }
    }

    /// The subscriptions that can be affected, narrowed in SQL; [`affects`] decides.
    async fn candidates(
        &self,
        affects: &BTreeSet<Affects>,
    ) -> Result<Vec<SubscriptionRecord>, crate::store::StoreError> {
        let mut clauses = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        let mut everything = false;
        for a in affects {
            match a {
                Affects::Everything => everything = true,
                Affects::Controls(p) | Affects::Default(p) => {
                    binds.push(p.clone());
                    clauses.push(format!("program_id = ${}", binds.len()));
                }
                Affects::Program(p) => {
                    binds.push(p.clone());
                    clauses.push(format!(
                        "(program_id = ${} OR resource_kind IN ('derp', 'fsa', 'fsaderp'))",
                        binds.len()
                    ));
                }
                Affects::EndDevice(e) => {
                    binds.push(e.clone());
                    clauses.push(format!(
                        "(end_device_id = ${} OR resource_kind = 'edev')",
                        binds.len()
                    ));
                }
            }
        }
        let mut sql = format!(
            "SELECT {} FROM {}",
            SubscriptionRecord::COLUMNS.join(", "),
            SubscriptionRecord::TABLE
        );
        if !everything {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" OR "));
        }
        sql.push_str(" ORDER BY end_device_id, seq");
        let mut q = dynamic(sql);
        if !everything {
            for b in binds {
                q = q.bind(b);
            }
        }
        let rows = q.fetch_all(self.state.registry.store().pool()).await?;
        rows.iter().map(SubscriptionRecord::from_row).collect()
    }

    /// Queues a rendered notification unless it repeats the last one queued.
    fn dispatch(&mut self, sub: &SubscriptionRecord, body: Bytes, is_final: bool) {
        let fp = fingerprint(&body);
        {
            let mut latest = lock(&self.latest);
            if !is_final && latest.get(&sub.id) == Some(&fp) {
                return;
            }
            if is_final {
                latest.remove(&sub.id);
            } else {
                latest.insert(sub.id.clone(), fp);
            }
        }
        let delivery = Delivery {
            subscription: sub.id.clone(),
            body,
            fingerprint: fp,
            is_final,
        };
        loop {
            let endpoint = self.endpoint(&sub.notification_uri);
            // The worker may have exited idle since `endpoint` looked; the check and the
            // push share one lock, and a closed queue means: start another worker.
            let queued = {
                let mut q = lock(&endpoint.queue);
                if !q.closed {
                    enqueue(&mut q.pending, delivery.clone());
                }
                !q.closed
            };
            if queued {
                endpoint.wake.notify_one();
                return;
            }
        }
    }

    /// The endpoint's queue, with a live worker behind it.
    fn endpoint(&mut self, uri: &str) -> Arc<Endpoint> {
        if let Some(e) = self.endpoints.get(uri)
            && !lock(&e.queue).closed
        {
            return e.clone();
        }
        let endpoint = Arc::new(Endpoint::default());
        self.endpoints.insert(uri.to_string(), endpoint.clone());
        // Drop the entries of endpoints whose workers have exited.
        self.endpoints.retain(|_, e| !lock(&e.queue).closed);
        self.workers.spawn(worker(
            endpoint.clone(),
            uri.to_string(),
            self.client.clone(),
            self.settings,
            self.latest.clone(),
            self.shutdown.clone(),
        ));
        endpoint
    }
}

/// Renders the notification for `sub` from the current state.
async fn render(
    state: &Sep2State,
    sub: &SubscriptionRecord,
    target: &Subscribed,
) -> Result<Rendered, Sep2Error> {
    let ed: EndDeviceRecord = match state.registry.get(&sub.end_device_id).await {
        Ok(ed) => ed,
        Err(RegistryError::NotFound { .. }) => return Ok(Rendered::Nothing),
        Err(e) => return Err(e.into()),
    };
    // A disabled device is refused its resources when it asks; it is not sent them either.
    if !ed.enabled {
        return Ok(Rendered::Nothing);
    }
    let window = ListQuery {
        s: Some(0),
        a: None,
        l: Some(sub.limit),
    };
    let program = match target.program() {
        Some(p) => match programs_for(state, &ed)
            .await?
            .into_iter()
            .find(|x| x.id == p)
        {
            Some(found) => Some(found),
            None => return Ok(Rendered::Gone(cancellation(state, sub)?)),
        },
        None => None,
    };
    let body = match (target, program) {
        (Subscribed::EndDeviceList, _) => {
            // The list as the certificate that holds the subscription sees it: an
            // aggregator's EndDevices are those it registered.
            let caller = Caller {
                lfdi: ed.owner_lfdi.clone().unwrap_or_else(|| ed.lfdi.clone()),
                aggregator: ed.owner_lfdi.is_some(),
            };
            notification(
                state,
                sub,
                end_device_list_doc(state, &caller, &window).await?,
            )?
        }
        (Subscribed::FunctionSets { .. }, _) => {
            notification(state, sub, fsa_list_doc(state, &ed, &window).await?)?
        }
        (Subscribed::ProgramList { .. }, _) => {
            notification(state, sub, program_list_doc(state, &ed, &window).await?)?
        }
        (Subscribed::SetProgramList { fsa, .. }, _) => {
            // The FunctionSetAssignments is gone when its record is deleted or its program
            // no longer reaches the EndDevice.
            let set = match function_set(state, &ed, fsa).await {
                Ok(set) => set,
                Err(Sep2Error::NotFound) => return Ok(Rendered::Gone(cancellation(state, sub)?)),
                Err(e) => return Err(e),
            };
            notification(
                state,
                sub,
                set_program_list_doc(state, &ed, &set, &window).await?,
            )?
        }
        (Subscribed::Controls { .. }, Some(p)) => notification(
            state,
            sub,
            control_list_doc(state, &ed, &p, &window, false).await?,
        )?,
        (Subscribed::Default { .. }, Some(p)) => match default_control_doc(state, &ed, &p).await? {
            Some(doc) => notification(state, sub, doc)?,
            None => return Ok(Rendered::Nothing),
        },
        _ => return Ok(Rendered::Nothing),
    };
    Ok(Rendered::Send(body))
}

fn encode<R: SepResource + Serialize>(
    state: &Sep2State,
    n: &Notification<R>,
) -> Result<Bytes, Sep2Error> {
    xml::encode(n, state.settings.csipaus)
        .map(Bytes::from)
        .map_err(|e| Sep2Error::Internal(e.to_string()))
}

/// A status 0 notification carrying `resource`.
fn notification<R: SepResource + Serialize>(
    state: &Sep2State,
    sub: &SubscriptionRecord,
    resource: R,
) -> Result<Bytes, Sep2Error> {
    encode(
        state,
        &Notification {
            href: None,
            subscribed_resource: sub.subscribed_resource.clone(),
            new_resource_uri: None,
            resource: Some(resource),
            status: 0,
            // The server knows no public base URL of its own; the path is what clients
            // use to address the subscription (and DELETE it).
            subscription_uri: sub.href(),
        },
    )
}

/// A status 4 notification (subscription cancelled, resource deleted), without resource.
fn cancellation(state: &Sep2State, sub: &SubscriptionRecord) -> Result<Bytes, Sep2Error> {
    encode(
        state,
        &Notification::<DerControlList> {
            href: None,
            subscribed_resource: sub.subscribed_resource.clone(),
            new_resource_uri: None,
            resource: None,
            status: 4,
            subscription_uri: sub.href(),
        },
    )
}

/// Whether `d` is still worth sending: a newer notification for its subscription has not
/// been queued since, and the subscription has not been deleted.
fn current(latest: &Latest, d: &Delivery) -> bool {
    d.is_final || lock(latest).get(&d.subscription) == Some(&d.fingerprint)
}

/// Forgets what was queued for a subscription whose delivery failed for good, so that the
/// next change sends the whole resource again instead of being taken for a repeat.
fn forget(latest: &Latest, d: &Delivery) {
    let mut l = lock(latest);
    if l.get(&d.subscription) == Some(&d.fingerprint) {
        l.remove(&d.subscription);
    }
}

/// Serves one endpoint's queue in order until shutdown, or until idle.
async fn worker(
    endpoint: Arc<Endpoint>,
    uri: String,
    client: reqwest::Client,
    settings: NotifierSettings,
    latest: Latest,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let next = lock(&endpoint.queue).pending.pop_front();
        let Some(d) = next else {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                // notify_one keeps a permit when nobody waits, so a delivery queued
                // between the pop above and this wait is not slept through.
                _ = endpoint.wake.notified() => continue,
                _ = tokio::time::sleep(settings.idle) => {
                    let mut q = lock(&endpoint.queue);
                    if q.pending.is_empty() {
                        q.closed = true;
                        return;
                    }
                    continue;
                }
            }
        };
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = deliver(&client, &uri, &d, settings, &latest) => {}
        }
    }
}

/// Sends one notification, retrying as configured.
async fn deliver(
    client: &reqwest::Client,
    uri: &str,
    d: &Delivery,
    settings: NotifierSettings,
    latest: &Latest,
) {
    for attempt in 1..=settings.max_attempts {
        if !current(latest, d) {
            tracing::debug!(%uri, "notification superseded before delivery");
            return;
        }
        match post(client, uri, d.body.clone()).await {
            Ok(()) => {
                tracing::debug!(%uri, attempt, "2030.5 notification delivered");
                return;
            }
            Err(e) if !e.retryable() || attempt == settings.max_attempts => {
                tracing::warn!(%uri, attempt, error = %e, "2030.5 notification dropped");
                if !d.is_final {
                    forget(latest, d);
                }
                return;
            }
            Err(e) => {
                let wait = backoff(attempt, settings.initial_backoff, settings.max_backoff);
                tracing::debug!(%uri, attempt, error = %e, ?wait, "2030.5 notification will be retried");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn post(client: &reqwest::Client, uri: &str, body: Bytes) -> Result<(), DeliveryError> {
    let response = client
        .post(uri)
        .header(reqwest::header::CONTENT_TYPE, SEP_XML)
        .body(body)
        .send()
        .await
        .map_err(|e| DeliveryError::Link(e.to_string()))?;
    match DeliveryError::from_status(response.status().as_u16()) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=8)
            .map(|r| backoff(r, S, Duration::from_secs(30)).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        // No overflow however far it goes.
        assert_eq!(
            backoff(200, S, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            backoff(1, Duration::from_millis(100), S),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn statuses_split_into_delivered_refused_and_unavailable() {
        assert!(DeliveryError::from_status(204).is_none());
        assert!(!DeliveryError::from_status(404).unwrap().retryable());
        for s in [408, 429, 500, 503] {
            assert!(DeliveryError::from_status(s).unwrap().retryable(), "{s}");
        }
    }

    fn change(collection: &'static str, key: &str, kind: ChangeKind) -> Change {
        Change {
            collection,
            key: key.into(),
            kind,
        }
    }

    #[test]
    fn classifies_changes_by_collection() {
        assert_eq!(
            classify(&change("controls", "C1", ChangeKind::Created)),
            Some(Classified::ControlOfUnknownProgram("C1".into()))
        );
        assert_eq!(
            classify(&change("default-controls", "doe", ChangeKind::Updated)),
            Some(Classified::Affects(Affects::Default("doe".into())))
        );
        assert_eq!(
            classify(&change("control-programs", "doe", ChangeKind::Deleted)),
            Some(Classified::Affects(Affects::Program("doe".into())))
        );
        assert_eq!(
            classify(&change("end-devices", "7", ChangeKind::Updated)),
            Some(Classified::Affects(Affects::EndDevice("7".into())))
        );
        assert_eq!(
            classify(&change("sep2-subscriptions", "x", ChangeKind::Deleted)),
            Some(Classified::SubscriptionDeleted("x".into()))
        );
        assert_eq!(
            classify(&change("sep2-subscriptions", "x", ChangeKind::Created)),
            None
        );
        assert_eq!(classify(&change("sites", "s1", ChangeKind::Updated)), None);
    }

    #[test]
    fn decides_which_subscriptions_a_change_affects() {
        let list = Subscribed::parse("/edev/7/derp").unwrap();
        let doe = Subscribed::parse("/edev/7/derp/doe/derc").unwrap();
        let doe_default = Subscribed::parse("/edev/7/derp/doe/dderc").unwrap();
        let other = Subscribed::parse("/edev/7/derp/vpp/derc").unwrap();
        let controls = Affects::Controls("doe".into());
        assert!(affects(&doe, "7", &controls));
        assert!(!affects(&doe_default, "7", &controls));
        assert!(!affects(&other, "7", &controls));
        assert!(!affects(&list, "7", &controls));
        let default = Affects::Default("doe".into());
        assert!(affects(&doe_default, "7", &default));
        assert!(!affects(&doe, "7", &default));
        let program = Affects::Program("doe".into());
        assert!(affects(&list, "7", &program));
        assert!(affects(&doe, "7", &program));
        assert!(affects(&doe_default, "7", &program));
        assert!(!affects(&other, "7", &program));
        let device = Affects::EndDevice("7".into());
        assert!(affects(&other, "7", &device));
        assert!(!affects(&other, "8", &device));
        assert!(affects(&other, "8", &Affects::Everything));
    }

    #[test]
    fn a_lagging_feed_means_rechecking_everything() {
        let mut work = Work::default();
        work.add(&change("default-controls", "doe", ChangeKind::Updated));
        work.lagged(17);
        assert!(work.affects.contains(&Affects::Everything));
        assert!(work.affects.contains(&Affects::Default("doe".into())));
    }

    fn delivery(sub: &str, body: &'static str) -> Delivery {
        Delivery {
            subscription: sub.into(),
            body: Bytes::from_static(body.as_bytes()),
            fingerprint: fingerprint(body.as_bytes()),
            is_final: false,
        }
    }

    #[test]
    fn a_newer_notification_replaces_a_waiting_one_in_place() {
        let mut q = VecDeque::new();
        enqueue(&mut q, delivery("a", "a1"));
        enqueue(&mut q, delivery("b", "b1"));
        enqueue(&mut q, delivery("a", "a2"));
        let bodies: Vec<&[u8]> = q.iter().map(|d| d.body.as_ref()).collect();
        assert_eq!(bodies, [b"a2".as_ref(), b"b1".as_ref()]);
    }

    #[test]
    fn superseded_and_deleted_deliveries_are_not_current() {
        let latest: Latest = Arc::default();
        let old = delivery("a", "a1");
        let new = delivery("a", "a2");
        lock(&latest).insert("a".into(), new.fingerprint);
        assert!(!current(&latest, &old));
        assert!(current(&latest, &new));
        // Giving up on the old one must not forget the newer one.
        forget(&latest, &old);
        assert!(current(&latest, &new));
        forget(&latest, &new);
        assert!(!current(&latest, &new));
        let last_word = Delivery {
            is_final: true,
            ..old
        };
        assert!(current(&latest, &last_word));
    }
}
