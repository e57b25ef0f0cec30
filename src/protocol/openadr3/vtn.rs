//! The VTN's objects and the rules over them: who may read and write what, names that
//! must be unique, references that must exist, and which subscribers hear of each change.
//!
//! Programs, events, VENs, resources and subscriptions are held in memory, each with the
//! JSON the API serves already rendered, and written through to the store; the store is
//! read back in full at start-up. This is what lets a VEN poll `GET /events` at tens of
//! thousands of requests per second (docs/benchmarks.md). Reports, which only grow, live
//! in the store alone. One node owns the VTN's objects: several nodes sharing a PostgreSQL
//! store would each see only their own writes until restarted (docs/openadr3.md).

use super::apply::{self, Candidates};
use super::auth::Caller;
use super::config::ClientRole;
use super::duration::{INFINITE_SECONDS, now, parse_datetime, seconds};
use super::error::OadrError;
use super::events::{EngineConfig, GROUP_PREFIX, SITE_PREFIX};
use super::model::*;
use super::mqtt::{MqttNotifier, op_name};
use super::notify::{Delivery, Notifier};
use super::store::{self, ReportFilter, Row};
use super::validate;
use crate::registry::Registry;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// An object with its rendered JSON.
#[derive(Debug)]
pub struct Entry<T> {
    pub obj: T,
    pub json: Bytes,
    /// Events only: when the last interval ends (Unix seconds); None when open-ended or
    /// not computable (a start of "now", a missing duration).
    pub end: Option<f64>,
}

impl<T: Serialize> Entry<T> {
    fn new(obj: T) -> Arc<Self> {
        let json = Bytes::from(serde_json::to_vec(&obj).expect("model types serialize"));
        Arc::new(Entry {
            obj,
            json,
            end: None,
        })
    }
}

#[derive(Default)]
struct Objects {
    programs: BTreeMap<String, Arc<Entry<Program>>>,
    events: BTreeMap<String, Arc<Entry<Event>>>,
    vens: BTreeMap<String, Arc<Entry<Ven>>>,
    resources: BTreeMap<String, Arc<Entry<Resource>>>,
    subscriptions: BTreeMap<String, Arc<Entry<Subscription>>>,
    /// For each VEN client: the target strings it answers to (its VENs' names and targets,
    /// their resources' names and targets). Rebuilt on every VEN or resource write.
    client_targets: HashMap<String, HashSet<String>>,
    /// Bumped by every write; cached views older than this are stale.
    generation: u64,
}

/// The events one client may see, in order, as of one generation of the objects: deep
/// pages (`skip`) of an unfiltered `GET /events` are then an index, not a scan.
type EventView = (u64, Arc<Vec<Arc<Entry<Event>>>>);

/// Most clients whose event views are kept; past it the cache starts over.
const MAX_VIEWS: usize = 1024;

impl Objects {
    fn rebuild_targets(&mut self) {
        let mut map: HashMap<String, HashSet<String>> = HashMap::new();
        for v in self.vens.values() {
            let set = map.entry(v.obj.client_id.clone()).or_default();
            set.insert(v.obj.ven_name.clone());
            set.extend(v.obj.targets.iter().flatten().cloned());
        }
        for r in self.resources.values() {
            let set = map.entry(r.obj.client_id.clone()).or_default();
            set.insert(r.obj.resource_name.clone());
            set.extend(r.obj.targets.iter().flatten().cloned());
        }
        self.client_targets = map;
    }
}

/// What a caller may read.
enum Scope<'a> {
    All,
    Ven {
        client_id: &'a str,
        targets: Option<&'a HashSet<String>>,
    },
}

impl Scope<'_> {
    /// Targeted objects (programs, events): untargeted ones are for everyone.
    fn sees_targets(&self, targets: &Option<Vec<String>>) -> bool {
        match self {
            Scope::All => true,
            Scope::Ven { targets: mine, .. } => match targets.as_deref() {
                None | Some([]) => true,
                Some(ts) => mine.is_some_and(|m| ts.iter().any(|t| m.contains(t))),
            },
        }
    }

    /// Owned objects (reports, subscriptions, VENs, resources).
    fn owns(&self, owner: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Ven { client_id, .. } => *client_id == owner,
        }
    }
}

fn scope<'a>(objs: &'a Objects, caller: &'a Caller) -> Scope<'a> {
    match caller.role {
        ClientRole::Bl => Scope::All,
        ClientRole::Ven => Scope::Ven {
            client_id: &caller.client_id,
            targets: objs.client_targets.get(&caller.client_id),
        },
    }
}

/// A page request: `skip` and `limit` as validated from the query.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub skip: u32,
    pub limit: u32,
}

/// The `targets` query filter: keep objects whose targets include one of these.
fn matches_filter(filter: &[String], targets: &Option<Vec<String>>) -> bool {
    filter.is_empty() || targets.iter().flatten().any(|t| filter.contains(t))
}

fn take_page<'a, T: 'a>(it: impl Iterator<Item = &'a Arc<Entry<T>>>, page: Page) -> Vec<Bytes> {
    it.skip(page.skip as usize)
        .take(page.limit as usize)
        .map(|e| e.json.clone())
        .collect()
}

fn new_meta(kind: ObjectType) -> Metadata {
    let t = now();
    Metadata {
        id: uuid::Uuid::now_v7().to_string(),
        created_date_time: t.clone(),
        modification_date_time: t,
        object_type: kind,
    }
}

fn touched(meta: &Metadata) -> Metadata {
    Metadata {
        modification_date_time: now(),
        ..meta.clone()
    }
}

/// Event end (Unix seconds) from its interval periods, when computable.
fn event_end(e: &EventRequest) -> Option<f64> {
    let base = e.interval_period.as_ref();
    let start_of = |p: Option<&IntervalPeriod>| {
        p.and_then(|p| p.start.as_deref())
            .and_then(parse_datetime)
            // Year 1 stands for "now" (user guide): open-ended for our purposes.
            .filter(|t| t.year() > 1)
            .map(|t| t.unix_timestamp() as f64)
    };
    let dur_of =
        |p: Option<&IntervalPeriod>| p.and_then(|p| p.duration.as_deref()).and_then(seconds);
    let base_start = start_of(base);
    let base_dur = dur_of(base);
    if let (Some(s), Some(d)) = (base_start, e.duration.as_deref().and_then(seconds))
        && d > 0.0
    {
        return (d < INFINITE_SECONDS).then_some(s + d);
    }
    let mut end: Option<f64> = None;
    let mut cursor = base_start;
    for iv in &e.intervals {
        let p = iv.interval_period.as_ref();
        let start = start_of(p).or(cursor)?;
        let dur = dur_of(p).or(base_dur)?;
        if dur >= INFINITE_SECONDS {
            return None;
        }
        end = Some(end.map_or(start + dur, |x: f64| x.max(start + dur)));
        cursor = Some(start + dur);
    }
    end
}

/// One change, as subscriptions are matched against it.
struct Change<'a> {
    kind: ObjectType,
    op: Operation,
    /// The object as served.
    json: &'a Bytes,
    targets: &'a Option<Vec<String>>,
    /// The program the object belongs to (programs: their own id).
    program_id: Option<&'a str>,
    /// The client owning the object, for owned kinds; None for targeted ones.
    owner: Option<&'a str>,
}

/// The VTN.
pub struct Vtn {
    store: Store,
    objects: RwLock<Objects>,
    /// Serializes writes, so that a uniqueness or reference check and the write it guards
    /// see the same objects.
    write: tokio::sync::Mutex<()>,
    notifier: Notifier,
    views: std::sync::Mutex<HashMap<String, EventView>>,
    /// Client ids of BL clients: their subscriptions hear of every object. Configured
    /// clients, plus external issuer's BL clients as they are seen.
    bl_clients: RwLock<HashSet<String>>,
    /// Where events' limits and dispatch requests go.
    registry: Registry,
    engine: EngineConfig,
    /// Publishes every change to the MQTT broker, when configured.
    mqtt: Option<MqttNotifier>,
}

/// Reads every stored object of one kind into `objs`.
async fn load<T: Kept>(store: &Store, objs: &mut Objects) -> Result<(), StoreError> {
    for body in store::load(store, T::KIND).await? {
        let obj: T = serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("oadr3 object: {e}")))?;
        T::all_mut(objs).insert(obj.meta().id.clone(), obj.into_entry());
    }
    Ok(())
}

impl Vtn {
    /// Loads the stored objects.
    pub async fn open(
        registry: Registry,
        engine: EngineConfig,
        notifier: Notifier,
        mqtt: Option<MqttNotifier>,
        bl_clients: HashSet<String>,
    ) -> Result<Self, StoreError> {
        let store = registry.store().clone();
        let mut objs = Objects::default();
        load::<Program>(&store, &mut objs).await?;
        load::<Event>(&store, &mut objs).await?;
        load::<Ven>(&store, &mut objs).await?;
        load::<Resource>(&store, &mut objs).await?;
        load::<Subscription>(&store, &mut objs).await?;
        objs.rebuild_targets();
        Ok(Vtn {
            store,
            objects: RwLock::new(objs),
            write: tokio::sync::Mutex::new(()),
            notifier,
            views: Default::default(),
            bl_clients: RwLock::new(bl_clients),
            registry,
            engine,
            mqtt,
        })
    }

    /// Records that `client_id` is a BL client (an external issuer's token said so).
    pub fn note_bl_client(&self, client_id: &str) {
        if self
            .bl_clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(client_id)
        {
            return;
        }
        self.bl_clients
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(client_id.to_string());
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Objects> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn modify(&self) -> std::sync::RwLockWriteGuard<'_, Objects> {
        let mut g = self.objects.write().unwrap_or_else(|e| e.into_inner());
        g.generation += 1;
        g
    }

    /// The caller's visible events at the current generation, from the cache or built.
    fn event_view(&self, objs: &Objects, caller: &Caller) -> Arc<Vec<Arc<Entry<Event>>>> {
        let key = match caller.role {
            ClientRole::Bl => String::new(),
            ClientRole::Ven => caller.client_id.clone(),
        };
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, v)) = views.get(&key)
            && *g == objs.generation
        {
            return v.clone();
        }
        let sc = scope(objs, caller);
        let v: Arc<Vec<_>> = Arc::new(
            objs.events
                .values()
                .filter(|e| sc.sees_targets(&e.obj.body.targets))
                .cloned()
                .collect(),
        );
        if views.len() >= MAX_VIEWS {
            views.clear();
        }
        views.insert(key, (objs.generation, v.clone()));
        v
    }

    // ----- notifications -----

    /// Queues a webhook for every subscription that wants this change and whose owner may
    /// read the object. Never waits for delivery.
    fn notify(&self, objs: &Objects, change: Change<'_>) {
        let Change {
            kind,
            op,
            json,
            targets,
            program_id,
            owner,
        } = change;
        let mut body: Option<Bytes> = None;
        if let Some(m) = &self.mqtt {
            let b = body
                .get_or_insert_with(|| notification_body(kind, op, json, targets))
                .clone();
            for topic in mqtt_topics(objs, kind, op, json, targets) {
                m.publish(&topic, &b);
            }
        }
        let bl_clients = self.bl_clients.read().unwrap_or_else(|e| e.into_inner());
        for sub in objs.subscriptions.values() {
            let s = &sub.obj;
            if let (Some(want), Some(have)) = (&s.body.program_id, program_id)
                && want != have
            {
                continue;
            }
            if let (Some(want), Some(have)) = (&s.body.targets, targets)
                && !want.is_empty()
                && !have.iter().any(|t| want.contains(t))
            {
                continue;
            }
            if !bl_clients.contains(&s.client_id) {
                let visible = match owner {
                    Some(o) => o == s.client_id,
                    None => Scope::Ven {
                        client_id: &s.client_id,
                        targets: objs.client_targets.get(&s.client_id),
                    }
                    .sees_targets(targets),
                };
                if !visible {
                    continue;
                }
            }
            for oo in &s.body.object_operations {
                if oo.objects.contains(&kind) && oo.operations.contains(&op) {
                    let body = body
                        .get_or_insert_with(|| notification_body(kind, op, json, targets))
                        .clone();
                    self.notifier.send(Delivery {
                        url: oo.callback_url.clone(),
                        bearer: oo.bearer_token.clone(),
                        body,
                    });
                }
            }
        }
    }

    // ----- what every kept kind shares -----

    /// One page of the objects of kind `T` that the caller may see and `keep` accepts.
    fn list<T: Kept>(
        &self,
        caller: &Caller,
        page: Page,
        keep: impl Fn(&Entry<T>) -> bool,
    ) -> Vec<Bytes> {
        let objs = self.read();
        let sc = scope(&objs, caller);
        take_page(
            T::all(&objs)
                .values()
                .filter(|e| e.obj.visible(&sc) && keep(e)),
            page,
        )
    }

    /// Object `id` of kind `T` when the caller may see it; 404 otherwise.
    fn find<T: Kept>(&self, caller: &Caller, id: &str) -> Result<Arc<Entry<T>>, OadrError> {
        let objs = self.read();
        let sc = scope(&objs, caller);
        T::all(&objs)
            .get(id)
            .filter(|e| e.obj.visible(&sc))
            .cloned()
            .ok_or_else(|| OadrError::not_found(T::NAME, id))
    }

    /// Writes a new (`Create`) or changed (`Update`) object through to the store, puts it
    /// in place and tells subscribers. A name another object holds is refused with 409,
    /// whether this node's objects or the store's unique key find it. The caller holds
    /// the write lock.
    async fn write<T: Kept>(&self, e: Arc<Entry<T>>, op: Operation) -> Result<Bytes, OadrError> {
        if e.obj.name_taken(&self.read()) {
            return Err(e.obj.duplicate().expect("a kind with names has a conflict"));
        }
        let row = T::row(&e);
        let stored = match op {
            Operation::Create => store::insert(&self.store, &row).await,
            _ => store::update(&self.store, &row).await,
        };
        stored.map_err(|err| match e.obj.duplicate() {
            Some(dup) if err.is_unique_violation() => dup,
            _ => err.into(),
        })?;
        let mut objs = self.modify();
        T::all_mut(&mut objs).insert(e.obj.meta().id.clone(), e.clone());
        if T::TARGETING {
            objs.rebuild_targets();
        }
        self.notify(&objs, change(&e, op));
        Ok(e.json.clone())
    }

    /// Takes a deleted object out of `objs` and tells subscribers.
    fn forget<T: Kept>(&self, objs: &mut Objects, old: &Entry<T>) {
        T::all_mut(objs).remove(&old.obj.meta().id);
        if T::TARGETING {
            objs.rebuild_targets();
        }
        self.notify(objs, change(old, Operation::Delete));
    }

    /// Deletes an object with nothing hanging off it from the store and the objects.
    async fn remove<T: Kept>(&self, old: &Entry<T>) -> Result<Bytes, OadrError> {
        store::delete(&self.store, std::slice::from_ref(&old.obj.meta().id)).await?;
        let mut objs = self.modify();
        self.forget(&mut objs, old);
        Ok(old.json.clone())
    }

    // ----- programs -----

    pub fn list_programs(&self, caller: &Caller, filter: &[String], page: Page) -> Vec<Bytes> {
        self.list::<Program>(caller, page, |p| {
            matches_filter(filter, &p.obj.body.targets)
        })
    }

    pub fn get_program(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        Ok(self.find::<Program>(caller, id)?.json.clone())
    }

    pub async fn create_program(
        &self,
        caller: &Caller,
        req: ProgramRequest,
    ) -> Result<Bytes, OadrError> {
        caller.require_bl("create programs")?;
        validate::program(&req)?;
        let _w = self.write.lock().await;
        let e = Entry::new(Program {
            meta: new_meta(ObjectType::Program),
            body: req,
        });
        self.write(e, Operation::Create).await
    }

    pub async fn update_program(
        &self,
        caller: &Caller,
        id: &str,
        req: ProgramRequest,
    ) -> Result<Bytes, OadrError> {
        caller.require_bl("update programs")?;
        validate::program(&req)?;
        let _w = self.write.lock().await;
        let old = self.find::<Program>(caller, id)?;
        let e = Entry::new(Program {
            meta: touched(&old.obj.meta),
            body: req,
        });
        self.write(e, Operation::Update).await
    }

    /// Deletes a program and, with it, its events.
    pub async fn delete_program(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        caller.require_bl("delete programs")?;
        let _w = self.write.lock().await;
        let old = self.find::<Program>(caller, id)?;
        let events: Vec<_> = {
            let objs = self.read();
            objs.events
                .values()
                .filter(|e| e.obj.body.program_id == id)
                .cloned()
                .collect()
        };
        for e in &events {
            apply::cancel(&self.registry, &e.obj.meta.id, &[]).await?;
        }
        let mut ids: Vec<String> = events.iter().map(|e| e.obj.meta.id.clone()).collect();
        ids.push(id.to_string());
        store::delete(&self.store, &ids).await?;
        let mut objs = self.modify();
        for e in &events {
            self.forget(&mut objs, e);
        }
        self.forget(&mut objs, &old);
        Ok(old.json.clone())
    }

    // ----- events -----

    pub fn list_events(
        &self,
        caller: &Caller,
        program_id: Option<&str>,
        filter: &[String],
        active_at: Option<f64>,
        page: Page,
    ) -> Vec<Bytes> {
        if program_id.is_none() && filter.is_empty() && active_at.is_none() {
            let objs = self.read();
            let view = self.event_view(&objs, caller);
            let from = (page.skip as usize).min(view.len());
            let to = (from + page.limit as usize).min(view.len());
            return view[from..to].iter().map(|e| e.json.clone()).collect();
        }
        self.list::<Event>(caller, page, |e| {
            program_id.is_none_or(|p| e.obj.body.program_id == p)
                && matches_filter(filter, &e.obj.body.targets)
                && active_at.is_none_or(|now| e.end.is_none_or(|end| end > now))
        })
    }

    pub fn get_event(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        Ok(self.find::<Event>(caller, id)?.json.clone())
    }

    /// Reference and target checks of an event against the current objects.
    fn check_event(objs: &Objects, req: &EventRequest) -> Result<(), OadrError> {
        if !objs.programs.contains_key(&req.program_id) {
            return Err(OadrError::conflict(
                "programID",
                format!("programID '{}' names no program", req.program_id),
            ));
        }
        if let Some(ts) = req.targets.as_deref().filter(|t| !t.is_empty()) {
            // Registry links (`group:`, `site:`) are checked against the registry later.
            let known = ts
                .iter()
                .any(|t| t.starts_with(GROUP_PREFIX) || t.starts_with(SITE_PREFIX))
                || objs
                    .client_targets
                    .values()
                    .any(|set| ts.iter().any(|t| set.contains(t)));
            if !known {
                return Err(OadrError::invalid(
                    "targets",
                    format!(
                        "{ts:?} match no VEN or resource (neither a venName, a resourceName nor a target assigned to one) and name no registry group or site"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Where the event's targets point in the registry: its own `group:` / `site:`
    /// targets, and those the BL assigned to the VENs and resources its other targets name
    /// (by venName or resourceName, or by a target they hold; a VEN brings its resources'
    /// too). Only BL-assigned targets count, so a VEN cannot steer events to sites it
    /// chooses.
    fn candidates(objs: &Objects, req: &EventRequest) -> Candidates {
        let mut c = Candidates::default();
        let mut take = |targets: &Option<Vec<String>>| {
            for t in targets.iter().flatten() {
                if let Some(g) = t.strip_prefix(GROUP_PREFIX) {
                    c.groups.push(g.to_string());
                } else if let Some(s) = t.strip_prefix(SITE_PREFIX) {
                    c.sites.push(s.to_string());
                }
            }
        };
        take(&req.targets);
        let has = |list: &Option<Vec<String>>, t: &String| list.iter().flatten().any(|x| x == t);
        for t in req.targets.iter().flatten() {
            if t.starts_with(GROUP_PREFIX) || t.starts_with(SITE_PREFIX) {
                continue;
            }
            for v in objs.vens.values() {
                if &v.obj.ven_name == t || has(&v.obj.targets, t) {
                    take(&v.obj.targets);
                    for r in objs
                        .resources
                        .values()
                        .filter(|r| r.obj.ven_id == v.obj.meta.id)
                    {
                        take(&r.obj.targets);
                    }
                }
            }
            for r in objs.resources.values() {
                if &r.obj.resource_name == t || has(&r.obj.targets, t) {
                    take(&r.obj.targets);
                }
            }
        }
        for list in [&mut c.groups, &mut c.sites] {
            list.sort();
            list.dedup();
        }
        c
    }

    /// Checks, plans and writes what `event` asks of the engine. Nothing is written when
    /// it fails.
    async fn engage(&self, event: &Event) -> Result<apply::Written, OadrError> {
        let candidates = Self::candidates(&self.read(), &event.body);
        let links = apply::resolve(&self.registry, &candidates).await?;
        let now = crate::domain::now_epoch();
        let prepared = apply::prepare(
            &self.registry,
            &self.engine,
            &event.meta.id,
            &event.body,
            links,
            now,
        )
        .await?;
        apply::commit(&self.registry, &self.engine, &event.meta.id, &prepared).await
    }

    pub async fn create_event(
        &self,
        caller: &Caller,
        req: EventRequest,
    ) -> Result<Bytes, OadrError> {
        caller.require_bl("create events")?;
        validate::event(&req)?;
        let _w = self.write.lock().await;
        Self::check_event(&self.read(), &req)?;
        let e = Event {
            meta: new_meta(ObjectType::Event),
            body: req,
        }
        .into_entry();
        let written = self.engage(&e.obj).await?;
        let json = self.write(e, Operation::Create).await;
        if json.is_err() {
            apply::undo(&self.registry, &written).await;
        }
        json
    }

    pub async fn update_event(
        &self,
        caller: &Caller,
        id: &str,
        req: EventRequest,
    ) -> Result<Bytes, OadrError> {
        caller.require_bl("update events")?;
        validate::event(&req)?;
        let _w = self.write.lock().await;
        let old = self.find::<Event>(caller, id)?;
        Self::check_event(&self.read(), &req)?;
        let e = Event {
            meta: touched(&old.obj.meta),
            body: req,
        }
        .into_entry();
        let written = self.engage(&e.obj).await?;
        let json = match self.write(e, Operation::Update).await {
            Ok(json) => json,
            Err(err) => {
                apply::undo(&self.registry, &written).await;
                return Err(err);
            }
        };
        // The event as it was no longer holds: its limits are replaced by the new ones.
        // The update itself stands either way; a failure here leaves old limits beside the
        // new ones (the lowest holds) and is answered 500 so that the BL retries.
        apply::cancel(&self.registry, id, &written.controls).await?;
        Ok(json)
    }

    pub async fn delete_event(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        caller.require_bl("delete events")?;
        let _w = self.write.lock().await;
        let old = self.find::<Event>(caller, id)?;
        // Limits go first: should the store fail after, the event is still there to be
        // deleted again, rather than limits outliving their event.
        apply::cancel(&self.registry, id, &[]).await?;
        self.remove(&old).await
    }

    // ----- reports -----

    pub async fn list_reports(
        &self,
        caller: &Caller,
        mut filter: ReportFilter,
        page: Page,
    ) -> Result<Vec<Bytes>, OadrError> {
        if !caller.is_bl() {
            filter.client_id = Some(caller.client_id.clone());
        }
        let bodies = store::list_reports(&self.store, &filter, page.skip, page.limit).await?;
        Ok(bodies.into_iter().map(Bytes::from).collect())
    }

    async fn own_report(&self, caller: &Caller, id: &str) -> Result<Report, OadrError> {
        let (body, owner) = store::get_report(&self.store, id)
            .await?
            .ok_or_else(|| OadrError::not_found("report", id))?;
        if !caller.is_bl() && owner != caller.client_id {
            return Err(OadrError::not_found("report", id));
        }
        serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("report {id}: {e}")).into())
    }

    pub async fn get_report(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        let r = self.own_report(caller, id).await?;
        Ok(Bytes::from(serde_json::to_vec(&r).expect("serializes")))
    }

    /// The program of the event a report is about, when the VEN may see that event.
    fn report_program(&self, caller: &Caller, event_id: &str) -> Result<String, OadrError> {
        let objs = self.read();
        let sc = scope(&objs, caller);
        objs.events
            .get(event_id)
            .filter(|e| sc.sees_targets(&e.obj.body.targets))
            .map(|e| e.obj.body.program_id.clone())
            .ok_or_else(|| {
                OadrError::conflict(
                    "eventID",
                    format!("eventID '{event_id}' names no event this client can see"),
                )
            })
    }

    /// Stores a new (`Create`) or replaced (`Update`) report with the readings it carries,
    /// and tells subscribers.
    async fn store_report(
        &self,
        r: &Report,
        program_id: &str,
        op: Operation,
    ) -> Result<Bytes, OadrError> {
        let json = Bytes::from(serde_json::to_vec(r).expect("serializes"));
        let now = crate::domain::now_epoch();
        let readings = super::engine::readings(r, now);
        let row = report_row(r, program_id, &json);
        store::save_report(&self.store, &row, op == Operation::Update, &readings, now).await?;
        let objs = self.read();
        self.notify(
            &objs,
            Change {
                kind: ObjectType::Report,
                op,
                json: &json,
                targets: &None,
                program_id: Some(program_id),
                owner: Some(&r.client_id),
            },
        );
        Ok(json)
    }

    pub async fn create_report(
        &self,
        caller: &Caller,
        req: ReportRequest,
    ) -> Result<Bytes, OadrError> {
        caller.require_ven("create reports")?;
        validate::report(&req)?;
        let program_id = self.report_program(caller, &req.event_id)?;
        let r = Report {
            meta: new_meta(ObjectType::Report),
            client_id: caller.client_id.clone(),
            body: req,
        };
        self.store_report(&r, &program_id, Operation::Create).await
    }

    pub async fn update_report(
        &self,
        caller: &Caller,
        id: &str,
        req: ReportRequest,
    ) -> Result<Bytes, OadrError> {
        caller.require_ven("update reports")?;
        validate::report(&req)?;
        let old = self.own_report(caller, id).await?;
        let program_id = self.report_program(caller, &req.event_id)?;
        let r = Report {
            meta: touched(&old.meta),
            client_id: old.client_id,
            body: req,
        };
        self.store_report(&r, &program_id, Operation::Update).await
    }

    pub async fn delete_report(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        caller.require_ven("delete reports")?;
        let old = self.own_report(caller, id).await?;
        store::delete(&self.store, &[id.to_string()]).await?;
        let json = Bytes::from(serde_json::to_vec(&old).expect("serializes"));
        let program_id = self
            .read()
            .events
            .get(&old.body.event_id)
            .map(|e| e.obj.body.program_id.clone());
        let objs = self.read();
        self.notify(
            &objs,
            Change {
                kind: ObjectType::Report,
                op: Operation::Delete,
                json: &json,
                targets: &None,
                program_id: program_id.as_deref(),
                owner: Some(&old.client_id),
            },
        );
        Ok(json)
    }

    // ----- subscriptions -----

    pub fn list_subscriptions(
        &self,
        caller: &Caller,
        program_id: Option<&str>,
        client_name: Option<&str>,
        objects: &[ObjectType],
        page: Page,
    ) -> Vec<Bytes> {
        self.list::<Subscription>(caller, page, |s| {
            let b = &s.obj.body;
            program_id.is_none_or(|p| b.program_id.as_deref() == Some(p))
                && client_name.is_none_or(|c| b.client_name == c)
                && (objects.is_empty()
                    || b.object_operations
                        .iter()
                        .any(|o| o.objects.iter().any(|k| objects.contains(k))))
        })
    }

    pub fn get_subscription(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        Ok(self.find::<Subscription>(caller, id)?.json.clone())
    }

    fn check_subscription(
        &self,
        caller: &Caller,
        req: &SubscriptionRequest,
    ) -> Result<(), OadrError> {
        if let Some(p) = &req.program_id {
            let objs = self.read();
            let sc = scope(&objs, caller);
            if !objs
                .programs
                .get(p)
                .is_some_and(|x| sc.sees_targets(&x.obj.body.targets))
            {
                return Err(OadrError::conflict(
                    "programID",
                    format!("programID '{p}' names no program this client can see"),
                ));
            }
        }
        Ok(())
    }

    pub async fn create_subscription(
        &self,
        caller: &Caller,
        req: SubscriptionRequest,
    ) -> Result<Bytes, OadrError> {
        validate::subscription(&req)?;
        let _w = self.write.lock().await;
        self.check_subscription(caller, &req)?;
        let e = Entry::new(Subscription {
            meta: new_meta(ObjectType::Subscription),
            client_id: caller.client_id.clone(),
            body: req,
        });
        self.write(e, Operation::Create).await
    }

    pub async fn update_subscription(
        &self,
        caller: &Caller,
        id: &str,
        req: SubscriptionRequest,
    ) -> Result<Bytes, OadrError> {
        validate::subscription(&req)?;
        let _w = self.write.lock().await;
        let old = self.find::<Subscription>(caller, id)?;
        self.check_subscription(caller, &req)?;
        let e = Entry::new(Subscription {
            meta: touched(&old.obj.meta),
            client_id: old.obj.client_id.clone(),
            body: req,
        });
        self.write(e, Operation::Update).await
    }

    pub async fn delete_subscription(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        let _w = self.write.lock().await;
        let old = self.find::<Subscription>(caller, id)?;
        self.remove(&old).await
    }

    // ----- vens -----

    pub fn list_vens(
        &self,
        caller: &Caller,
        ven_name: Option<&str>,
        filter: &[String],
        page: Page,
    ) -> Vec<Bytes> {
        self.list::<Ven>(caller, page, |v| {
            ven_name.is_none_or(|n| v.obj.ven_name == n) && matches_filter(filter, &v.obj.targets)
        })
    }

    pub fn get_ven(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        Ok(self.find::<Ven>(caller, id)?.json.clone())
    }

    /// The VEN object a request makes, given who asks (and the object it replaces).
    fn ven_from(
        caller: &Caller,
        req: VenRequest,
        meta: Metadata,
        old: Option<&Ven>,
    ) -> Result<Ven, OadrError> {
        let (client_id, targets) = match (caller.role, req.object_type) {
            (ClientRole::Bl, VenRequestType::BlVenRequest) => (
                req.client_id.ok_or_else(|| {
                    OadrError::invalid("clientID", "a BL_VEN_REQUEST must name the VEN's clientID")
                })?,
                req.targets,
            ),
            // Without a clientID the VEN object is the BL's own until a BL_VEN_REQUEST
            // hands it to a VEN client.
            (ClientRole::Bl, VenRequestType::VenVenRequest) => (
                old.map_or_else(|| caller.client_id.clone(), |o| o.client_id.clone()),
                old.and_then(|o| o.targets.clone()),
            ),
            (ClientRole::Ven, VenRequestType::BlVenRequest) => {
                return Err(OadrError::forbidden(
                    "only business logic clients may send BL_VEN_REQUEST (clientID and targets); a VEN sends VEN_VEN_REQUEST",
                ));
            }
            // A VEN keeps the targets its BL assigned.
            (ClientRole::Ven, VenRequestType::VenVenRequest) => (
                caller.client_id.clone(),
                old.and_then(|o| o.targets.clone()),
            ),
        };
        Ok(Ven {
            meta,
            client_id,
            ven_name: req.ven_name,
            targets,
            attributes: req.attributes,
        })
    }

    pub async fn create_ven(&self, caller: &Caller, req: VenRequest) -> Result<Bytes, OadrError> {
        validate::ven(&req)?;
        let ven = Self::ven_from(caller, req, new_meta(ObjectType::Ven), None)?;
        let _w = self.write.lock().await;
        self.write(Entry::new(ven), Operation::Create).await
    }

    pub async fn update_ven(
        &self,
        caller: &Caller,
        id: &str,
        req: VenRequest,
    ) -> Result<Bytes, OadrError> {
        validate::ven(&req)?;
        let _w = self.write.lock().await;
        let old = self.find::<Ven>(caller, id)?;
        let ven = Self::ven_from(caller, req, touched(&old.obj.meta), Some(&old.obj))?;
        self.write(Entry::new(ven), Operation::Update).await
    }

    /// Deletes a VEN and its resources.
    pub async fn delete_ven(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        let _w = self.write.lock().await;
        let old = self.find::<Ven>(caller, id)?;
        let resources: Vec<_> = self
            .read()
            .resources
            .values()
            .filter(|r| r.obj.ven_id == id)
            .cloned()
            .collect();
        let mut ids: Vec<String> = resources.iter().map(|r| r.obj.meta.id.clone()).collect();
        ids.push(id.to_string());
        store::delete(&self.store, &ids).await?;
        let mut objs = self.modify();
        // Not `forget`: the targets are rebuilt once, with the VEN, not for each resource.
        for r in &resources {
            objs.resources.remove(&r.obj.meta.id);
            self.notify(&objs, change(r, Operation::Delete));
        }
        self.forget(&mut objs, &old);
        Ok(old.json.clone())
    }

    // ----- resources -----

    pub fn list_resources(
        &self,
        caller: &Caller,
        resource_name: Option<&str>,
        ven_id: Option<&str>,
        filter: &[String],
        page: Page,
    ) -> Vec<Bytes> {
        self.list::<Resource>(caller, page, |r| {
            resource_name.is_none_or(|n| r.obj.resource_name == n)
                && ven_id.is_none_or(|v| r.obj.ven_id == v)
                && matches_filter(filter, &r.obj.targets)
        })
    }

    pub fn get_resource(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        Ok(self.find::<Resource>(caller, id)?.json.clone())
    }

    fn resource_from(
        &self,
        caller: &Caller,
        req: ResourceRequest,
        meta: Metadata,
        old: Option<&Resource>,
    ) -> Result<Resource, OadrError> {
        let ven = self.find::<Ven>(caller, &req.ven_id).map_err(|_| {
            OadrError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not-found",
                format!("venID '{}' names no VEN this client can see", req.ven_id),
            )
        })?;
        let targets = match (caller.role, req.object_type) {
            (ClientRole::Bl, ResourceRequestType::BlResourceRequest) => req.targets,
            (ClientRole::Bl, ResourceRequestType::VenResourceRequest) => {
                old.and_then(|o| o.targets.clone())
            }
            (ClientRole::Ven, ResourceRequestType::BlResourceRequest) => {
                return Err(OadrError::forbidden(
                    "only business logic clients may send BL_RESOURCE_REQUEST (targets); a VEN sends VEN_RESOURCE_REQUEST",
                ));
            }
            (ClientRole::Ven, ResourceRequestType::VenResourceRequest) => {
                old.and_then(|o| o.targets.clone())
            }
        };
        Ok(Resource {
            meta,
            // A resource belongs to whoever its VEN belongs to.
            client_id: ven.obj.client_id.clone(),
            resource_name: req.resource_name,
            ven_id: req.ven_id,
            targets,
            attributes: req.attributes,
        })
    }

    pub async fn create_resource(
        &self,
        caller: &Caller,
        req: ResourceRequest,
    ) -> Result<Bytes, OadrError> {
        validate::resource(&req)?;
        let _w = self.write.lock().await;
        let r = self.resource_from(caller, req, new_meta(ObjectType::Resource), None)?;
        self.write(Entry::new(r), Operation::Create).await
    }

    pub async fn update_resource(
        &self,
        caller: &Caller,
        id: &str,
        req: ResourceRequest,
    ) -> Result<Bytes, OadrError> {
        validate::resource(&req)?;
        let _w = self.write.lock().await;
        let old = self.find::<Resource>(caller, id)?;
        let r = self.resource_from(caller, req, touched(&old.obj.meta), Some(&old.obj))?;
        self.write(Entry::new(r), Operation::Update).await
    }

    pub async fn delete_resource(&self, caller: &Caller, id: &str) -> Result<Bytes, OadrError> {
        let _w = self.write.lock().await;
        let old = self.find::<Resource>(caller, id)?;
        self.remove(&old).await
    }
}

/// The MQTT topics (below the prefix) a change is published on; see [`super::mqtt`].
fn mqtt_topics(
    objs: &Objects,
    kind: ObjectType,
    op: Operation,
    json: &Bytes,
    targets: &Option<Vec<String>>,
) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Ids {
        id: String,
        #[serde(rename = "programID")]
        program_id: Option<String>,
        #[serde(rename = "venID")]
        ven_id: Option<String>,
    }
    let op = op_name(op);
    let collection = match kind {
        ObjectType::Program => "programs",
        ObjectType::Event => "events",
        ObjectType::Report => "reports",
        ObjectType::Subscription => "subscriptions",
        ObjectType::Ven => "vens",
        ObjectType::Resource => "resources",
    };
    let mut out = vec![format!("{collection}/{op}")];
    let Ok(ids) = serde_json::from_slice::<Ids>(json) else {
        return out;
    };
    // VENs that may read a targeted object hear of it on their own topics.
    let readers = |out: &mut Vec<String>, what: &str| {
        for v in objs.vens.values() {
            let sees = Scope::Ven {
                client_id: &v.obj.client_id,
                targets: objs.client_targets.get(&v.obj.client_id),
            }
            .sees_targets(targets);
            if sees {
                out.push(format!("vens/{}/{what}/{op}", v.obj.meta.id));
            }
        }
    };
    match kind {
        ObjectType::Program => {
            if op != "create" {
                out.push(format!("programs/{}/{op}", ids.id));
            }
            readers(&mut out, "programs");
        }
        ObjectType::Event => {
            if let Some(p) = ids.program_id {
                out.push(format!("programs/{p}/events/{op}"));
            }
            readers(&mut out, "events");
        }
        ObjectType::Ven if op != "create" => out.push(format!("vens/{}/{op}", ids.id)),
        ObjectType::Resource => {
            if let Some(v) = ids.ven_id {
                out.push(format!("vens/{v}/resources/{op}"));
            }
        }
        _ => {}
    }
    out
}

fn notification_body(
    kind: ObjectType,
    op: Operation,
    json: &Bytes,
    targets: &Option<Vec<String>>,
) -> Bytes {
    let op = serde_json::to_string(&op).expect("serializes");
    let mut body = format!(
        r#"{{"objectType":"{}","operation":{op},"object":"#,
        kind.as_str()
    )
    .into_bytes();
    body.extend_from_slice(json);
    if let Some(t) = targets {
        body.extend_from_slice(br#","targets":"#);
        body.extend_from_slice(&serde_json::to_vec(t).expect("serializes"));
    }
    body.push(b'}');
    Bytes::from(body)
}

/// What differs between the kinds the VTN holds in memory (programs, events, VENs,
/// resources, subscriptions), so that finding, writing and deleting one is written once
/// (`Vtn::find`, `Vtn::write`, `Vtn::forget`, `Vtn::remove`). Reports, kept in the store
/// alone, are not one of them.
trait Kept: Serialize + DeserializeOwned + Sized {
    const KIND: ObjectType;
    /// The name a 404 gives the kind.
    const NAME: &'static str;
    /// Whether the kind's names and targets are what VEN clients answer to, so that its
    /// writes rebuild `Objects::client_targets`.
    const TARGETING: bool = false;

    fn all(objs: &Objects) -> &BTreeMap<String, Arc<Entry<Self>>>;
    fn all_mut(objs: &mut Objects) -> &mut BTreeMap<String, Arc<Entry<Self>>>;
    fn meta(&self) -> &Metadata;
    fn targets(&self) -> &Option<Vec<String>>;
    /// The program a subscription on a programID hears this object under.
    fn program_id(&self) -> Option<&str> {
        None
    }
    /// The client that owns the object and alone (with BL clients) sees it; None for the
    /// targeted kinds, which every client they target sees.
    fn owner(&self) -> Option<&str>;
    /// Sets the columns of the kind's store row that queries filter on, and the unique key
    /// that keeps names unique across nodes.
    fn columns(&self, row: &mut Row);

    /// The store row.
    fn row(e: &Entry<Self>) -> Row {
        let mut row = Row {
            id: e.obj.meta().id.clone(),
            object_type: Self::KIND,
            unique_key: None,
            program_id: None,
            event_id: None,
            client_name: None,
            client_id: None,
            body: json_text(&e.json),
        };
        e.obj.columns(&mut row);
        row
    }

    /// Whether another object already holds this one's unique name.
    fn name_taken(&self, _objs: &Objects) -> bool {
        false
    }
    /// The 409 for a name already taken; None for kinds without unique names.
    fn duplicate(&self) -> Option<OadrError> {
        None
    }

    fn into_entry(self) -> Arc<Entry<Self>> {
        Entry::new(self)
    }

    fn visible(&self, sc: &Scope<'_>) -> bool {
        match self.owner() {
            Some(owner) => sc.owns(owner),
            None => sc.sees_targets(self.targets()),
        }
    }
}

/// The change subscribers hear of when `e` is written or deleted.
fn change<T: Kept>(e: &Entry<T>, op: Operation) -> Change<'_> {
    Change {
        kind: T::KIND,
        op,
        json: &e.json,
        targets: e.obj.targets(),
        program_id: e.obj.program_id(),
        owner: e.obj.owner(),
    }
}

/// The accessors each [`Kept`] kind writes alike: its map in [`Objects`], its metadata.
macro_rules! kept_in {
    ($map:ident) => {
        fn all(objs: &Objects) -> &BTreeMap<String, Arc<Entry<Self>>> {
            &objs.$map
        }
        fn all_mut(objs: &mut Objects) -> &mut BTreeMap<String, Arc<Entry<Self>>> {
            &mut objs.$map
        }
        fn meta(&self) -> &Metadata {
            &self.meta
        }
    };
}

impl Kept for Program {
    const KIND: ObjectType = ObjectType::Program;
    const NAME: &'static str = "program";

    kept_in!(programs);

    fn targets(&self) -> &Option<Vec<String>> {
        &self.body.targets
    }
    fn program_id(&self) -> Option<&str> {
        Some(&self.meta.id)
    }
    fn owner(&self) -> Option<&str> {
        None
    }
    fn columns(&self, row: &mut Row) {
        row.unique_key = Some(format!("PROGRAM:{}", self.body.program_name));
        row.program_id = Some(self.meta.id.clone());
    }
    fn name_taken(&self, objs: &Objects) -> bool {
        objs.programs.values().any(|p| {
            p.obj.body.program_name == self.body.program_name && p.obj.meta.id != self.meta.id
        })
    }
    fn duplicate(&self) -> Option<OadrError> {
        Some(OadrError::conflict(
            "programName",
            format!(
                "a program named '{}' already exists",
                self.body.program_name
            ),
        ))
    }
}

impl Kept for Event {
    const KIND: ObjectType = ObjectType::Event;
    const NAME: &'static str = "event";

    kept_in!(events);

    fn targets(&self) -> &Option<Vec<String>> {
        &self.body.targets
    }
    fn program_id(&self) -> Option<&str> {
        Some(&self.body.program_id)
    }
    fn owner(&self) -> Option<&str> {
        None
    }
    fn columns(&self, row: &mut Row) {
        row.program_id = Some(self.body.program_id.clone());
        row.event_id = Some(self.meta.id.clone());
    }
    /// An event's entry also holds when it ends, for `GET /events?active=true`.
    fn into_entry(self) -> Arc<Entry<Self>> {
        let end = event_end(&self.body);
        let json = Bytes::from(serde_json::to_vec(&self).expect("serializes"));
        Arc::new(Entry {
            obj: self,
            json,
            end,
        })
    }
}

impl Kept for Subscription {
    const KIND: ObjectType = ObjectType::Subscription;
    const NAME: &'static str = "subscription";

    kept_in!(subscriptions);

    fn targets(&self) -> &Option<Vec<String>> {
        &self.body.targets
    }
    fn owner(&self) -> Option<&str> {
        Some(&self.client_id)
    }
    fn columns(&self, row: &mut Row) {
        row.program_id = self.body.program_id.clone();
        row.client_name = Some(self.body.client_name.clone());
        row.client_id = Some(self.client_id.clone());
    }
}

impl Kept for Ven {
    const KIND: ObjectType = ObjectType::Ven;
    const NAME: &'static str = "ven";
    const TARGETING: bool = true;

    kept_in!(vens);

    fn targets(&self) -> &Option<Vec<String>> {
        &self.targets
    }
    fn owner(&self) -> Option<&str> {
        Some(&self.client_id)
    }
    fn columns(&self, row: &mut Row) {
        row.unique_key = Some(format!("VEN:{}", self.ven_name));
        row.client_id = Some(self.client_id.clone());
    }
    fn name_taken(&self, objs: &Objects) -> bool {
        objs.vens
            .values()
            .any(|v| v.obj.ven_name == self.ven_name && v.obj.meta.id != self.meta.id)
    }
    fn duplicate(&self) -> Option<OadrError> {
        Some(OadrError::conflict(
            "venName",
            format!("a VEN named '{}' already exists", self.ven_name),
        ))
    }
}

impl Kept for Resource {
    const KIND: ObjectType = ObjectType::Resource;
    const NAME: &'static str = "resource";
    const TARGETING: bool = true;

    kept_in!(resources);

    fn targets(&self) -> &Option<Vec<String>> {
        &self.targets
    }
    fn owner(&self) -> Option<&str> {
        Some(&self.client_id)
    }
    fn columns(&self, row: &mut Row) {
        row.unique_key = Some(format!("RESOURCE:{}:{}", self.ven_id, self.resource_name));
        row.client_id = Some(self.client_id.clone());
    }
    fn name_taken(&self, objs: &Objects) -> bool {
        objs.resources.values().any(|x| {
            x.obj.ven_id == self.ven_id
                && x.obj.resource_name == self.resource_name
                && x.obj.meta.id != self.meta.id
        })
    }
    fn duplicate(&self) -> Option<OadrError> {
        Some(OadrError::conflict(
            "resourceName",
            format!(
                "VEN '{}' already has a resource named '{}'",
                self.ven_id, self.resource_name
            ),
        ))
    }
}

fn json_text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn report_row(r: &Report, program_id: &str, json: &Bytes) -> Row {
    Row {
        id: r.meta.id.clone(),
        object_type: ObjectType::Report,
        unique_key: None,
        program_id: Some(program_id.to_string()),
        event_id: Some(r.body.event_id.clone()),
        client_name: Some(r.body.client_name.clone()),
        client_id: Some(r.client_id.clone()),
        body: json_text(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_end_from_intervals() {
        let e: EventRequest = serde_json::from_value(serde_json::json!({
            "programID": "p",
            "intervalPeriod": {"start": "2024-01-01T00:00:00Z", "duration": "PT1H"},
            "intervals": [{"id": 0, "payloads": []}, {"id": 1, "payloads": []}]
        }))
        .unwrap();
        let start = parse_datetime("2024-01-01T00:00:00Z")
            .unwrap()
            .unix_timestamp() as f64;
        assert_eq!(event_end(&e), Some(start + 7200.0));
        let mut open = e.clone();
        open.interval_period.as_mut().unwrap().start = Some("0001-01-01T00:00:00Z".into());
        assert_eq!(event_end(&open), None);
    }

    #[test]
    fn notification_body_is_the_spec_shape() {
        let b = notification_body(
            ObjectType::Event,
            Operation::Create,
            &Bytes::from_static(b"{\"id\":\"x\"}"),
            &Some(vec!["g1".into()]),
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"objectType": "EVENT", "operation": "CREATE",
                "object": {"id": "x"}, "targets": ["g1"]})
        );
    }
}
