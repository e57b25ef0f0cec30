//! The dispatch executor: runs stored plans against the clock. At each device's activation
//! instant it hands the device's current command to a delivery [`Channel`]; it applies
//! `stop` and `limit` at once; and every `check_interval_s` it compares telemetry with the
//! plan and re-dispatches the shortfall of devices that dropped out or under-deliver.
//!
//! The engine knows no protocol: a [`Channels`] implementation (in `protocol::delivery`)
//! says which channel reaches a DER and speaks the protocol. Instructions to one device go
//! out in order through a per-device queue, so a `stop` can never overtake the command it
//! replaces; different devices are served concurrently, so a device that never
//! acknowledges does not hold up the fleet.
//!
//! Running plans live in memory (the allocator's problem is not stored); a restart forgets
//! them, and their last retained or scheduled controls stay with the devices until they
//! expire.

use super::delivery::{self, DeliveryRecord, DeliveryStatus, PlanEvent};
use super::request::Direction;
use super::schedule::{DeviceEvent, ScheduleError, detect_deviations, redispatch, schedules};
use super::{DispatchRequest, Plan, Problem};
use crate::domain::EpochSeconds;
use crate::store::{Store, StoreError};
use crate::telemetry::{self, Measurand};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;

/// A boxed future, so channels can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a device is told.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Instruction {
    /// Hold this active power set point (kW, positive discharges or generates) until
    /// `until`, replacing any earlier instruction of the dispatch.
    Hold {
        setpoint_kw: f64,
        until: EpochSeconds,
    },
    /// The dispatch asks nothing more of the device: withdraw earlier instructions.
    Release,
}

/// A channel's answer when it accepted an instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// Whether the device itself confirmed (otherwise it is only sent).
    pub confirmed: bool,
    /// The channel's handle (a control mRID, a command id).
    pub reference: Option<String>,
    /// What the device said, if anything.
    pub note: Option<String>,
}

/// One way of reaching devices (a protocol adapter).
pub trait Channel: Send + Sync {
    /// Short name recorded with each delivery (`sep2`, `mqtt`, `sunspec`).
    fn name(&self) -> &'static str;
    /// Delivers `instruction` to `der` for plan `plan_id` at `now`; the error is the
    /// reason it failed, as the operator will read it.
    fn deliver<'a>(
        &'a self,
        plan_id: &'a str,
        der: &'a str,
        now: EpochSeconds,
        instruction: &'a Instruction,
    ) -> BoxFuture<'a, Result<Accepted, String>>;
}

/// Which channel reaches a DER.
pub trait Channels: Send + Sync {
    /// The channel for `der`, or why there is none.
    fn route<'a>(&'a self, der: &'a str) -> BoxFuture<'a, Result<Arc<dyn Channel>, String>>;
}

/// The executor's settings (`[dispatch]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// Whether `switchyard serve` delivers plans to devices.
    pub enabled: bool,
    /// How often the executor looks at the clock, milliseconds.
    pub tick_ms: u64,
    /// How often telemetry is compared with the plan, seconds.
    pub check_interval_s: u64,
    /// A device is short when it gives the request less than its share by more than this,
    /// kW.
    pub tolerance_kw: f64,
    /// A device's latest `active_power_w` reading counts only if it is at most this old;
    /// older means the device dropped out, seconds.
    pub telemetry_max_age_s: i64,
    /// Time a device has after an instruction before it is checked, seconds.
    pub grace_s: i64,
    /// How long an MQTT command waits for the device's acknowledgement, milliseconds.
    pub ack_timeout_ms: u64,
    /// Primacy of the per-DER 2030.5 programs that carry dispatch controls (lower values
    /// outrank higher ones).
    pub sep2_primacy: u8,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            enabled: true,
            tick_ms: 1000,
            check_interval_s: 30,
            tolerance_kw: 0.2,
            telemetry_max_age_s: 120,
            grace_s: 60,
            ack_timeout_ms: 10_000,
            sep2_primacy: 10,
        }
    }
}

/// Why an instruction to a running plan was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("plan {0} is not running (it has ended, or the server restarted since)")]
    NotRunning(String),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// An operator's instruction to a running plan.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OperatorInstruction {
    /// No more dispatch from now on.
    Stop,
    /// At most `max_kw` from now on.
    Limit { max_kw: f64 },
}

/// What a running plan delivers now.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunningState {
    pub plan_id: String,
    pub at: EpochSeconds,
    /// Dispatch planned for this instant, kW.
    pub planned_kw: f64,
    /// The operator's limit in force, if any (0 after a stop).
    pub max_kw: Option<f64>,
    /// Re-dispatches so far.
    pub redispatches: u32,
    /// Devices with a dispatch share now.
    pub devices_dispatched: usize,
}

struct Running {
    request: DispatchRequest,
    problem: Problem,
    plan: Plan,
    /// Absolute activation instant of each DER (by index).
    activate_at: Vec<EpochSeconds>,
    max_kw: Option<f64>,
    /// The last instruction queued for each DER.
    sent: HashMap<usize, Instruction>,
    /// When each DER was last given a new set point (the grace period runs from there).
    changed_at: HashMap<usize, EpochSeconds>,
    last_check: EpochSeconds,
    redispatches: u32,
}

impl Running {
    fn end(&self) -> EpochSeconds {
        self.plan.steps.last().copied().unwrap_or(0)
    }

    fn step_at(&self, at: EpochSeconds) -> Option<usize> {
        (0..self.plan.step_count())
            .find(|&k| self.plan.steps[k] <= at && at < self.plan.steps[k + 1])
    }

    /// What each DER should be doing at `now`: `Some` for those with a dispatch share.
    fn wanted(&self, now: EpochSeconds) -> HashMap<usize, Instruction> {
        let start = self.plan.steps.first().copied().unwrap_or(0);
        let offsets: Vec<u32> = self
            .activate_at
            .iter()
            .map(|&a| u32::try_from((a - start).max(0)).unwrap_or(u32::MAX))
            .collect();
        let index: HashMap<&str, usize> = self
            .problem
            .ders
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.as_str(), i))
            .collect();
        let mut out = HashMap::new();
        for s in schedules(&self.plan, &self.problem, &offsets) {
            let Some(&i) = index.get(s.der.as_str()) else {
                continue;
            };
            if let Some(c) = s.commands.iter().find(|c| c.start <= now && now < c.end) {
                out.insert(
                    i,
                    Instruction::Hold {
                        setpoint_kw: c.setpoint_kw,
                        until: c.end,
                    },
                );
            }
        }
        out
    }

    fn state(&self, plan_id: &str, at: EpochSeconds) -> RunningState {
        let k = self.step_at(at);
        RunningState {
            plan_id: plan_id.to_string(),
            at,
            planned_kw: k.map_or(0.0, |k| self.plan.report[k].delivered_kw),
            max_kw: self.max_kw,
            redispatches: self.redispatches,
            devices_dispatched: k.map_or(0, |k| {
                (0..self.plan.der_count)
                    .filter(|&i| self.plan.kw(k, i) > 0.0)
                    .count()
            }),
        }
    }
}

/// One queued delivery.
struct Job {
    plan_id: String,
    der: String,
    at: EpochSeconds,
    instruction: Instruction,
}

struct Inner {
    store: Store,
    channels: Arc<dyn Channels>,
    config: ExecutorConfig,
    running: Mutex<HashMap<String, Running>>,
    queues: std::sync::Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>,
    workers: std::sync::Mutex<Vec<JoinHandle<()>>>,
    wake: Notify,
}

/// A handle on the executor; cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// The running executor task.
pub struct ExecutorTask {
    executor: Executor,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ExecutorTask {
    /// Stops the clock, then lets every queued delivery finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        let inner = &self.executor.inner;
        inner.queues.lock().expect("queues").clear();
        let workers = std::mem::take(&mut *inner.workers.lock().expect("workers"));
        for w in workers {
            let _ = w.await;
        }
    }
}

impl Executor {
    pub fn new(store: Store, channels: Arc<dyn Channels>, config: ExecutorConfig) -> Executor {
        Executor {
            inner: Arc::new(Inner {
                store,
                channels,
                config,
                running: Mutex::new(HashMap::new()),
                queues: std::sync::Mutex::new(HashMap::new()),
                workers: std::sync::Mutex::new(Vec::new()),
                wake: Notify::new(),
            }),
        }
    }

    /// Starts the clock: a tick every `tick_ms`, or at once when woken.
    pub fn spawn(&self) -> ExecutorTask {
        let (shutdown, mut stop) = watch::channel(false);
        let me = self.clone();
        let period = Duration::from_millis(self.inner.config.tick_ms.max(10));
        let task = tokio::spawn(async move {
            loop {
                me.tick(crate::domain::now_epoch()).await;
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = me.inner.wake.notified() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        });
        ExecutorTask {
            executor: self.clone(),
            shutdown,
            task,
        }
    }

    /// Takes a freshly made plan into execution. `offsets` are the activation offsets from
    /// the plan's start (see [`super::activation_offsets`]).
    pub async fn submit(
        &self,
        plan_id: &str,
        request: DispatchRequest,
        problem: Problem,
        plan: Plan,
        offsets: &[u32],
    ) {
        let start = plan.steps.first().copied().unwrap_or(0);
        let activate_at = (0..plan.der_count)
            .map(|i| start + i64::from(offsets.get(i).copied().unwrap_or(0)))
            .collect();
        self.inner.running.lock().await.insert(
            plan_id.to_string(),
            Running {
                request,
                problem,
                plan,
                activate_at,
                max_kw: None,
                sent: HashMap::new(),
                changed_at: HashMap::new(),
                last_check: start,
                redispatches: 0,
            },
        );
        self.inner.wake.notify_one();
    }

    /// The state of a running plan, or `None` when it is not running.
    pub async fn state(&self, plan_id: &str, at: EpochSeconds) -> Option<RunningState> {
        let running = self.inner.running.lock().await;
        running.get(plan_id).map(|r| r.state(plan_id, at))
    }

    /// Applies `stop` or `limit` from `at` on; the new commands go out at once.
    pub async fn instruct(
        &self,
        plan_id: &str,
        instruction: OperatorInstruction,
        at: EpochSeconds,
    ) -> Result<RunningState, ExecuteError> {
        let state = {
            let mut running = self.inner.running.lock().await;
            let r = running
                .get_mut(plan_id)
                .ok_or_else(|| ExecuteError::NotRunning(plan_id.to_string()))?;
            let max_kw = match instruction {
                OperatorInstruction::Stop => 0.0,
                OperatorInstruction::Limit { max_kw } => max_kw,
            };
            r.plan.limit(at, max_kw)?;
            r.max_kw = Some(r.max_kw.map_or(max_kw, |m| m.min(max_kw)));
            // Keeping the problem's steps equal to the plan's lets a later re-dispatch
            // start from this plan.
            split_problem(&mut r.problem, &r.plan.steps);
            r.state(plan_id, at)
        };
        let kind = match instruction {
            OperatorInstruction::Stop => "stop",
            OperatorInstruction::Limit { .. } => "limit",
        };
        self.event(plan_id, at, kind, json!({ "instruction": instruction }))
            .await?;
        self.tick(at).await;
        Ok(state)
    }

    async fn event(
        &self,
        plan_id: &str,
        at: EpochSeconds,
        kind: &str,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        delivery::insert_event(
            &self.inner.store,
            &PlanEvent {
                id: uuid::Uuid::now_v7().to_string(),
                plan_id: plan_id.to_string(),
                at,
                kind: kind.to_string(),
                detail,
            },
        )
        .await
    }

    /// One pass at `now`: closed-loop checks that are due, then every change of what a
    /// device should do goes to its queue; plans past their end release their devices and
    /// stop running.
    pub async fn tick(&self, now: EpochSeconds) {
        let mut running = self.inner.running.lock().await;
        let ids: Vec<String> = running.keys().cloned().collect();
        for id in ids {
            let Some(r) = running.get_mut(&id) else {
                continue;
            };
            let due = now - r.last_check >= self.inner.config.check_interval_s as i64
                && now >= r.plan.steps[0]
                && now < r.end();
            if due {
                r.last_check = now;
                if let Err(e) = self.check(&id, r, now).await {
                    tracing::warn!(plan = %id, error = %e, "closed-loop check failed");
                }
            }
            let ended = now >= r.end();
            let wanted = if ended { HashMap::new() } else { r.wanted(now) };
            let mut jobs = Vec::new();
            for (&i, w) in &wanted {
                if r.sent.get(&i) != Some(w) {
                    let new_setpoint = !matches!(
                        (r.sent.get(&i), w),
                        (Some(Instruction::Hold { setpoint_kw: a, .. }), Instruction::Hold { setpoint_kw: b, .. })
                            if (a - b).abs() < 1e-9
                    );
                    if new_setpoint {
                        r.changed_at.insert(i, now);
                    }
                    r.sent.insert(i, w.clone());
                    jobs.push((i, w.clone()));
                }
            }
            let released: Vec<usize> = r
                .sent
                .iter()
                .filter(|(i, s)| **s != Instruction::Release && !wanted.contains_key(i))
                .map(|(i, _)| *i)
                .collect();
            for i in released {
                r.sent.insert(i, Instruction::Release);
                r.changed_at.insert(i, now);
                jobs.push((i, Instruction::Release));
            }
            jobs.sort_by_key(|(i, _)| *i);
            for (i, instruction) in jobs {
                let der = r.problem.ders[i].id.clone();
                self.enqueue(Job {
                    plan_id: id.clone(),
                    der,
                    at: now,
                    instruction,
                });
            }
            if ended {
                running.remove(&id);
                if let Err(e) = self.event(&id, now, "ended", json!({})).await {
                    tracing::warn!(plan = %id, error = %e, "recording the end of a plan failed");
                }
            }
        }
    }

    /// Compares telemetry with the plan at `now`; re-dispatches when devices fall short.
    async fn check(
        &self,
        plan_id: &str,
        r: &mut Running,
        now: EpochSeconds,
    ) -> Result<(), ExecuteError> {
        let Some(k) = r.step_at(now) else {
            return Ok(());
        };
        let cfg = &self.inner.config;
        let sign = match r.plan.direction {
            Direction::Discharge => 1.0,
            Direction::Charge => -1.0,
        };
        // Devices still within their grace period count as delivering their set point.
        let mut measured: HashMap<usize, Option<f64>> = HashMap::new();
        for i in 0..r.plan.der_count {
            let kw = r.plan.kw(k, i);
            if kw <= 0.0 {
                continue;
            }
            let fresh = r.changed_at.get(&i).is_none_or(|&t| now - t < cfg.grace_s)
                || !matches!(r.sent.get(&i), Some(Instruction::Hold { .. }));
            let value = if fresh {
                Some(sign * kw + r.plan.self_kw(k, i))
            } else {
                latest_power_kw(
                    &self.inner.store,
                    &r.problem.ders[i].id,
                    now,
                    cfg.telemetry_max_age_s,
                )
                .await?
            };
            measured.insert(i, value);
        }
        let events = detect_deviations(
            &r.plan,
            now,
            |i| measured.get(&i).copied().flatten(),
            cfg.tolerance_kw,
        );
        if events.is_empty() {
            return Ok(());
        }
        let before = r.plan.report[k].delivered_kw;
        // A fresh state of charge from telemetry beats the plan's own accounting (the
        // devices may not have done what they were told).
        let mut soc: HashMap<usize, f64> = HashMap::new();
        for (i, d) in r.problem.ders.iter().enumerate() {
            if d.storage.is_none() {
                continue;
            }
            let readings = telemetry::query(
                &self.inner.store,
                &d.id,
                Some(Measurand::StateOfCharge),
                now - cfg.telemetry_max_age_s,
                now + telemetry::MAX_FUTURE_SECONDS,
            )
            .await
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if let Some(last) = readings.last() {
                soc.insert(i, last.value);
            }
        }
        let (problem, mut plan) = redispatch(&r.request, &r.problem, &r.plan, now, &events, |i| {
            soc.get(&i).copied()
        })?;
        if let Some(m) = r.max_kw {
            plan.limit(now, m)?;
        }
        let mut problem = problem;
        split_problem(&mut problem, &plan.steps);
        let after = plan.report.first().map_or(0.0, |s| s.delivered_kw);
        let shortfall = plan.report.first().map_or(0.0, |s| s.shortfall_kw);
        let detail: Vec<serde_json::Value> = events
            .iter()
            .map(|e| match *e {
                DeviceEvent::DroppedOut { der } => {
                    json!({ "der_id": r.problem.ders[der].id, "kind": "dropped_out" })
                }
                DeviceEvent::UnderDelivered { der, delivered_kw } => json!({
                    "der_id": r.problem.ders[der].id,
                    "kind": "under_delivered",
                    "delivered_kw": delivered_kw,
                }),
            })
            .collect();
        tracing::info!(plan = %plan_id, devices = events.len(), before, after, "re-dispatch");
        r.problem = problem;
        r.plan = plan;
        r.redispatches += 1;
        self.event(
            plan_id,
            now,
            "redispatch",
            json!({
                "devices": detail,
                "planned_kw_before": before,
                "planned_kw_after": after,
                "shortfall_kw": shortfall,
            }),
        )
        .await?;
        Ok(())
    }

    fn enqueue(&self, job: Job) {
        let mut queues = self.inner.queues.lock().expect("queues");
        let tx = queues.entry(job.der.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let inner = self.inner.clone();
            let worker = tokio::spawn(deliver_in_order(inner, rx));
            self.inner.workers.lock().expect("workers").push(worker);
            tx
        });
        let _ = tx.send(job);
    }
}

/// Makes every boundary of `steps` a step boundary of the problem's own step list, so a
/// plan split by `limit` still matches its problem. Per-step inputs are duplicated across
/// the split.
fn split_problem(problem: &mut Problem, steps: &[EpochSeconds]) {
    if problem.steps == steps {
        return;
    }
    let old = problem.steps.clone();
    let kk = old.len().saturating_sub(1);
    let map: Vec<usize> = steps[..steps.len().saturating_sub(1)]
        .iter()
        .map(|&t| old.partition_point(|&b| b <= t).saturating_sub(1))
        .collect();
    fn remap<T: Copy>(v: &[T], kk: usize, map: &[usize]) -> Vec<T> {
        if v.len() == kk && kk > 1 {
            map.iter().map(|&k| v[k]).collect()
        } else if v.len() == kk && kk == 1 {
            vec![v[0]; map.len()]
        } else {
            v.to_vec()
        }
    }
    problem.group_limits = remap(&problem.group_limits, kk, &map);
    for s in &mut problem.sites {
        s.load_kw = remap(&s.load_kw, kk, &map);
        s.limits = remap(&s.limits, kk, &map);
    }
    for z in &mut problem.zones {
        z.limits = remap(&z.limits, kk, &map);
    }
    for d in &mut problem.ders {
        d.limits = remap(&d.limits, kk, &map);
    }
    problem.steps = steps.to_vec();
}

/// A DER's latest active power in kW, signed as the engine signs set points (positive
/// out of the device), from its `active_power_w` readings (positive into the site), or
/// `None` when none is at most `max_age` seconds old.
pub async fn latest_power_kw(
    store: &Store,
    der: &str,
    now: EpochSeconds,
    max_age: i64,
) -> Result<Option<f64>, StoreError> {
    let readings = telemetry::query(
        store,
        der,
        Some(Measurand::ActivePower),
        now - max_age,
        now + telemetry::MAX_FUTURE_SECONDS,
    )
    .await
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(readings.last().map(|r| -r.value / 1000.0))
}

/// Delivers one device's instructions in order, recording each and its outcome.
async fn deliver_in_order(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = rx.recv().await {
        let (name, channel) = match inner.channels.route(&job.der).await {
            Ok(c) => (c.name().to_string(), Ok(c)),
            Err(reason) => ("none".to_string(), Err(reason)),
        };
        let (kind, setpoint_kw, valid_until) = match job.instruction {
            Instruction::Hold { setpoint_kw, until } => ("hold", Some(setpoint_kw), Some(until)),
            Instruction::Release => ("release", None, None),
        };
        let mut record = DeliveryRecord {
            id: uuid::Uuid::now_v7().to_string(),
            plan_id: job.plan_id.clone(),
            der_id: job.der.clone(),
            channel: name,
            instruction: kind.to_string(),
            setpoint_kw,
            valid_until,
            status: DeliveryStatus::Sent,
            reason: None,
            reference: None,
            created_at: job.at,
            updated_at: job.at,
        };
        let channel = match channel {
            Ok(c) => c,
            Err(reason) => {
                record.status = DeliveryStatus::Failed;
                record.reason = Some(reason);
                if let Err(e) = delivery::insert_delivery(&inner.store, &record).await {
                    tracing::warn!(error = %e, "recording a delivery failed");
                }
                continue;
            }
        };
        if let Err(e) = delivery::insert_delivery(&inner.store, &record).await {
            tracing::warn!(error = %e, "recording a delivery failed");
        }
        let outcome = channel
            .deliver(&job.plan_id, &job.der, job.at, &job.instruction)
            .await;
        let (status, reason, reference) = match outcome {
            Ok(a) if a.confirmed => (DeliveryStatus::Acked, a.note, a.reference),
            Ok(a) => (DeliveryStatus::Sent, a.note, a.reference),
            Err(reason) => {
                tracing::warn!(der = %job.der, %reason, "delivery failed");
                (DeliveryStatus::Failed, Some(reason), None)
            }
        };
        if let Err(e) = delivery::finish_delivery(
            &inner.store,
            &record.id,
            status,
            reason,
            reference,
            crate::domain::now_epoch(),
        )
        .await
        {
            tracing::warn!(error = %e, "recording a delivery outcome failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::allocate::allocate;
    use crate::dispatch::allocate::tests::{battery, request, site};

    #[test]
    fn a_limit_then_a_redispatch_keeps_steps_aligned_and_the_limit_in_force() {
        let mut p = Problem {
            steps: vec![0, 1800, 3600],
            ders: (0..4)
                .map(|i| battery(&format!("b{i}"), i as u32, 5.0, 20.0, 100.0))
                .collect(),
            sites: (0..4).map(|i| site(&format!("s{i}"))).collect(),
            ..Default::default()
        };
        let req = request(Direction::Discharge, 12.0, 0, 3600);
        let mut plan = allocate(&req, &p).unwrap();
        plan.limit(1000, 8.0).unwrap();
        // Without the split, re-dispatch refuses a plan whose steps differ from its problem.
        assert!(redispatch(&req, &p, &plan, 1200, &[], |_| None).is_err());
        split_problem(&mut p, &plan.steps);
        assert_eq!(p.steps, vec![0, 1000, 1800, 3600]);
        let events = [DeviceEvent::DroppedOut { der: 0 }];
        let (next, mut again) = redispatch(&req, &p, &plan, 1200, &events, |_| None).unwrap();
        assert_eq!(next.steps, again.steps);
        assert!(
            (again.report[0].delivered_kw - 12.0).abs() < 1e-9,
            "re-dispatch alone re-plans the request"
        );
        again.limit(1200, 8.0).unwrap();
        assert!((again.report[0].delivered_kw - 8.0).abs() < 1e-9);
        assert_eq!(again.kw(0, 0), 0.0);
        assert!((again.kw(0, 1) - 8.0 / 3.0).abs() < 1e-9);
    }
}
