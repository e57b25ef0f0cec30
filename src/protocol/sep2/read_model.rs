//! The in-memory read model of the 2030.5 poll path: the registry rows a DERControlList,
//! DERProgramList or DefaultDERControl is rendered from, kept between requests so that a
//! poll whose rendered body is not cached ([`super::poll_cache`]) still reads nothing from
//! the database once the rows it needs have been read once.
//!
//! What is kept, each loaded on first use:
//!
//! - **EndDevice** by id: lFDI, owner, enabled, DER or site;
//! - **reach** of a DER or site: the rating (DERs) and every program target it falls under
//!   (the DER, its site, the groups holding it; for a site, the groups holding any of its
//!   DERs), exactly as [`crate::envelope::records::applicable`] decides;
//! - **programs** by target (kind, id);
//! - **controls** by program, and the **default control** by program.
//!
//! It is kept current by the registry's commit hooks, which run before a write returns: a
//! write removes what it may have changed (the EndDevice by key; every reach after a change
//! to DERs, sites, groups or enrolments, since any of those can move group membership; all
//! program lists after a program write; all control lists after a control write, since a
//! control's key does not say its program). Each map has an epoch, bumped under its lock by
//! every removal: rows read while a removal happened are not kept, because they may predate
//! the write. Entries also expire after the cache's maximum age, which bounds how late writes
//! made by other processes (another node on the same PostgreSQL database) are seen.
//!
//! Each map holds at most [`MAX_ENTRIES`] entries and is emptied when full.

use super::records::EndDeviceRecord;
use crate::domain::{EpochSeconds, now_epoch};
use crate::envelope::records::{ControlProgram, ControlRecord, DefaultControlRecord};
use crate::registry::model::{Der, Site};
use crate::registry::{Change, MAX_PAGE, Registry, RegistryError};
use sqlx::Row;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

/// Most entries one map keeps (a million EndDevices is a few hundred MB at most).
pub const MAX_ENTRIES: usize = 2_000_000;

/// Writes to these collections change nothing the read model holds.
const IRRELEVANT: &[&str] = &[
    "sep2-subscriptions",
    "mirror-usage-points",
    "identities",
    "meters",
    "accounts",
];

/// Where an EndDevice's programs come from: its rating and every program target it is under.
#[derive(Debug, Clone, PartialEq)]
pub struct Reach {
    /// The DER's rated power, W (None for an EndDevice bound to a site).
    pub rated_w: Option<f64>,
    /// (target kind, target id) pairs, as control programs name them.
    pub targets: Vec<(&'static str, String)>,
}

struct Entry<V> {
    value: V,
    loaded_at: EpochSeconds,
}

struct MapInner<K, V> {
    epoch: u64,
    map: HashMap<K, Entry<V>>,
}

/// One map of the model: get, insert-if-nothing-changed, remove, clear.
struct Slot<K, V> {
    inner: RwLock<MapInner<K, V>>,
}

impl<K: Hash + Eq, V: Clone> Slot<K, V> {
    fn new() -> Self {
        Slot {
            inner: RwLock::new(MapInner {
                epoch: 0,
                map: HashMap::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MapInner<K, V>> {
        // Every update under the lock is one map operation; a poisoned lock is consistent.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MapInner<K, V>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn get<Q>(&self, key: &Q, oldest: EpochSeconds) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = self.read();
        let e = inner.map.get(key)?;
        (e.loaded_at >= oldest).then(|| e.value.clone())
    }

    fn epoch(&self) -> u64 {
        self.read().epoch
    }

    /// Keeps `value` unless something was removed since `epoch` was read.
    fn insert(&self, epoch: u64, key: K, value: V, now: EpochSeconds) {
        let mut inner = self.write();
        if inner.epoch != epoch {
            return;
        }
        if inner.map.len() >= MAX_ENTRIES {
            inner.map.clear();
        }
        inner.map.insert(
            key,
            Entry {
                value,
                loaded_at: now,
            },
        );
    }

    fn remove<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut inner = self.write();
        inner.epoch += 1;
        inner.map.remove(key);
    }

    fn clear(&self) {
        let mut inner = self.write();
        inner.epoch += 1;
        inner.map.clear();
    }

    fn len(&self) -> usize {
        self.read().map.len()
    }
}

/// The read model of one server.
pub struct ReadModel {
    max_age_s: u32,
    end_devices: Slot<String, Arc<EndDeviceRecord>>,
    reach: Slot<String, Arc<Reach>>,
    programs: Slot<(&'static str, String), Arc<Vec<ControlProgram>>>,
    controls: Slot<String, Arc<Vec<ControlRecord>>>,
    defaults: Slot<String, Option<Arc<DefaultControlRecord>>>,
}

impl std::fmt::Debug for ReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModel")
            .field("max_age_s", &self.max_age_s)
            .field("end_devices", &self.end_devices.len())
            .field("reach", &self.reach.len())
            .finish()
    }
}

impl ReadModel {
    /// A model whose entries live at most `max_age_s` seconds; 0 keeps nothing (every read
    /// goes to the database).
    pub fn new(max_age_s: u32) -> Self {
        ReadModel {
            max_age_s,
            end_devices: Slot::new(),
            reach: Slot::new(),
            programs: Slot::new(),
            controls: Slot::new(),
            defaults: Slot::new(),
        }
    }

    /// A model kept current by `registry`'s commit hooks.
    pub fn attached(registry: &Registry, max_age_s: u32) -> Arc<Self> {
        let model = Arc::new(ReadModel::new(max_age_s));
        let weak = Arc::downgrade(&model);
        registry.on_commit(Arc::new(move |change: &Change| {
            if let Some(model) = weak.upgrade() {
                model.observe(change);
            }
        }));
        model
    }

    fn enabled(&self) -> bool {
        self.max_age_s > 0
    }

    /// Entries loaded before this are stale.
    fn oldest(&self, now: EpochSeconds) -> EpochSeconds {
        now.saturating_sub(i64::from(self.max_age_s))
            .saturating_add(1)
    }

    /// Drops what a committed write may have changed.
    pub fn observe(&self, change: &Change) {
        let key = change.key.as_str();
        match change.collection {
            c if IRRELEVANT.contains(&c) => {}
            "end-devices" if key.is_empty() => self.end_devices.clear(),
            "end-devices" => self.end_devices.remove(key),
            "control-programs" => {
                self.programs.clear();
                // A deleted program's controls go with it, unannounced.
                if key.is_empty() {
                    self.controls.clear();
                    self.defaults.clear();
                } else {
                    self.controls.remove(key);
                    self.defaults.remove(key);
                }
            }
            // A control's key does not say its program.
            "controls" => self.controls.clear(),
            "default-controls" if key.is_empty() => self.defaults.clear(),
            "default-controls" => self.defaults.remove(key),
            // DERs, sites, groups, enrolments, programs (and anything not known here): any
            // of them can change a DER's rating or group membership.
            _ => self.reach.clear(),
        }
    }

    /// The EndDevice `id`.
    pub async fn end_device(
        &self,
        registry: &Registry,
        id: &str,
    ) -> Result<Arc<EndDeviceRecord>, RegistryError> {
        let now = now_epoch();
        if self.enabled()
            && let Some(ed) = self.end_devices.get(id, self.oldest(now))
        {
            return Ok(ed);
        }
        let epoch = self.end_devices.epoch();
        let ed: Arc<EndDeviceRecord> = Arc::new(registry.get(id).await?);
        if self.enabled() {
            // Keyed by the stored id, which is what writes announce.
            self.end_devices
                .insert(epoch, ed.id.clone(), ed.clone(), now);
        }
        Ok(ed)
    }

    /// The reach of a DER (`der == true`) or a site.
    pub async fn reach(
        &self,
        registry: &Registry,
        der: bool,
        id: &str,
    ) -> Result<Arc<Reach>, RegistryError> {
        let now = now_epoch();
        let key = format!("{}:{id}", if der { "der" } else { "site" });
        if self.enabled()
            && let Some(r) = self.reach.get(key.as_str(), self.oldest(now))
        {
            return Ok(r);
        }
        let epoch = self.reach.epoch();
        let pool = registry.store().pool();
        let (rated_w, mut targets, sql) = if der {
            let d: Der = registry.get(id).await?;
            (
                Some(d.rated_kw * 1000.0),
                vec![("der", d.id.clone()), ("site", d.site_id.clone())],
                "SELECT group_id FROM group_members WHERE der_id = $1 ORDER BY group_id",
            )
        } else {
            let s: Site = registry.get(id).await?;
            (
                None,
                vec![("site", s.id.clone())],
                "SELECT DISTINCT m.group_id FROM group_members m JOIN ders d ON d.id = m.der_id \
                 WHERE d.site_id = $1 ORDER BY m.group_id",
            )
        };
        for row in sqlx::query(sql).bind(id).fetch_all(pool).await? {
            targets.push(("group", row.try_get::<String, _>(0)?));
        }
        let reach = Arc::new(Reach { rated_w, targets });
        if self.enabled() {
            self.reach.insert(epoch, key, reach.clone(), now);
        }
        Ok(reach)
    }

    /// The programs targeting `(kind, id)`.
    pub async fn programs(
        &self,
        registry: &Registry,
        kind: &'static str,
        id: &str,
    ) -> Result<Arc<Vec<ControlProgram>>, RegistryError> {
        let now = now_epoch();
        let key = (kind, id.to_string());
        if self.enabled()
            && let Some(p) = self.programs.get(&key, self.oldest(now))
        {
            return Ok(p);
        }
        let epoch = self.programs.epoch();
        let filters = [("target_kind", kind.into()), ("target_id", id.into())];
        let programs = Arc::new(all_pages::<ControlProgram>(registry, &filters).await?);
        if self.enabled() {
            self.programs.insert(epoch, key, programs.clone(), now);
        }
        Ok(programs)
    }

    /// The controls of `program` (cancelled and deleted ones included, as stored).
    pub async fn controls(
        &self,
        registry: &Registry,
        program: &str,
    ) -> Result<Arc<Vec<ControlRecord>>, RegistryError> {
        let now = now_epoch();
        if self.enabled()
            && let Some(c) = self.controls.get(program, self.oldest(now))
        {
            return Ok(c);
        }
        let epoch = self.controls.epoch();
        let filters = [("program_id", program.into())];
        let controls = Arc::new(all_pages::<ControlRecord>(registry, &filters).await?);
        if self.enabled() {
            self.controls
                .insert(epoch, program.to_string(), controls.clone(), now);
        }
        Ok(controls)
    }

    /// The default control of `program`, if it has one.
    pub async fn default_control(
        &self,
        registry: &Registry,
        program: &str,
    ) -> Result<Option<Arc<DefaultControlRecord>>, RegistryError> {
        let now = now_epoch();
        if self.enabled()
            && let Some(d) = self.defaults.get(program, self.oldest(now))
        {
            return Ok(d);
        }
        let epoch = self.defaults.epoch();
        let d = match registry.get::<DefaultControlRecord>(program).await {
            Ok(d) => Some(Arc::new(d)),
            Err(RegistryError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        if self.enabled() {
            self.defaults
                .insert(epoch, program.to_string(), d.clone(), now);
        }
        Ok(d)
    }
}

async fn all_pages<E: crate::registry::Entity>(
    registry: &Registry,
    filters: &[(&str, crate::store::Value)],
) -> Result<Vec<E>, RegistryError> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = registry
            .list::<E>(filters, after.as_deref(), MAX_PAGE)
            .await?;
        all.extend(page.items);
        match page.next_after {
            Some(n) => after = Some(n),
            None => return Ok(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_across_a_removal_are_not_kept() {
        let s: Slot<String, u32> = Slot::new();
        let e = s.epoch();
        s.remove("a"); // a write commits while the row is being read
        s.insert(e, "a".into(), 1, 100);
        assert_eq!(s.get("a", 0), None);
        let e = s.epoch();
        s.insert(e, "a".into(), 2, 100);
        assert_eq!(s.get("a", 0), Some(2));
        assert_eq!(s.get("a", 101), None, "older than allowed");
    }
}
