//! The asset registry: the authoritative portfolio (accounts, sites, meters, DERs,
//! certificate identities, programs, enrolments, groups) and the rules that keep it
//! consistent.
//!
//! Every write runs in one transaction: validation, reference and uniqueness checks,
//! cross-record rules (eligibility), the row change and its group-membership effects all
//! commit together or not at all.
//!
//! After a write commits, the registry announces it on a change feed
//! ([`Registry::subscribe_changes`]) so that protocol adapters can push updates (IEEE 2030.5
//! notifications) instead of waiting to be polled. The feed names only the collection, key
//! and kind of change; it knows nothing of the protocols that listen.

pub mod eligibility;
pub mod entity;
pub mod groups;
pub mod identity_index;
pub mod import;
pub mod inventory;
pub mod model;
pub mod validate;

use crate::domain::now_epoch;
use crate::store::record::{self, exists};
use crate::store::{Store, StoreError};
pub use entity::Entity;
use identity_index::IdentityIndex;
use model::{Der, GroupAggregate};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::broadcast;
use utoipa::ToSchema;
pub use validate::Violation;

/// Why a registry operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid {}", describe(.0))]
    Invalid(Vec<Violation>),
    #[error("{kind} '{key}' not found")]
    NotFound { kind: &'static str, key: String },
    #[error("{field}: {detail}")]
    Conflict { field: String, detail: String },
    #[error("{field} refers to {kind} '{key}', which does not exist")]
    MissingReference {
        field: String,
        kind: String,
        key: String,
    },
    #[error("not eligible for program '{program}': {}", .reasons.join("; "))]
    Ineligible {
        program: String,
        reasons: Vec<String>,
    },
    #[error("{kind} '{key}' is still in use: {detail}")]
    InUse {
        kind: &'static str,
        key: String,
        detail: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe(v: &[Violation]) -> String {
    v.iter()
        .map(|v| format!("{}: {}", v.field, v.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<sqlx::Error> for RegistryError {
    fn from(e: sqlx::Error) -> Self {
        RegistryError::Store(StoreError::Database(e))
    }
}

impl RegistryError {
    /// A single-field validation failure.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        RegistryError::Invalid(vec![Violation {
            field: field.to_string(),
            reason: reason.into(),
        }])
    }
}

/// One page of a keyset-paginated list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// Largest page a list returns.
pub const MAX_PAGE: u32 = 1000;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Created,
    /// Also what a tombstoning delete is: the row stays, changed (a deleted control is
    /// kept as Cancelled).
    Updated,
    /// The row is gone.
    Deleted,
}

/// One committed write, as announced on the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The entity's collection ([`Entity::COLLECTION`], e.g. `"controls"`).
    pub collection: &'static str,
    /// The record's key.
    pub key: String,
    pub kind: ChangeKind,
}

/// Changes a receiver may fall behind by before it starts missing them. A receiver that
/// falls further behind gets [`broadcast::error::RecvError::Lagged`] and must re-read what
/// it cares about; writers never wait for receivers.
pub const CHANGE_FEED_CAPACITY: usize = 1024;

/// A function run synchronously after each committed write, before the write returns to
/// its caller (see [`Registry::on_commit`]).
pub type CommitHook = Arc<dyn Fn(&Change) + Send + Sync>;

/// The registry service: the store plus in-memory indexes built from it.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    identities: Arc<IdentityIndex>,
    changes: broadcast::Sender<Change>,
    hooks: Arc<std::sync::RwLock<Vec<CommitHook>>>,
}

impl Registry {
    /// Builds the registry over `store`, loading the identity index.
    pub async fn open(store: Store) -> Result<Self, RegistryError> {
        let identities = Arc::new(IdentityIndex::load(&store).await?);
        let (changes, _) = broadcast::channel(CHANGE_FEED_CAPACITY);
        Ok(Registry {
            store,
            identities,
            changes,
            hooks: Arc::default(),
        })
    }

    /// A receiver of every write committed through this registry (and its clones) from
    /// now on: creates, updates and deletes, in commit order as seen by this process.
    ///
    /// The feed is best effort by design: it is an in-memory broadcast, so writes made by
    /// other processes (another node on the same PostgreSQL database, bulk CSV import,
    /// which writes rows directly) are not announced, and a receiver more than
    /// [`CHANGE_FEED_CAPACITY`] changes behind loses the oldest ones and is told so with
    /// `RecvError::Lagged`. Receivers must then re-read the state they derive from.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Announces a committed write. Having no receivers is normal (nothing listens unless
    /// a protocol that pushes is enabled), so a send error is not one.
    fn announce<E: Entity>(&self, key: &str, kind: ChangeKind) {
        let change = Change {
            collection: E::COLLECTION,
            key: key.to_string(),
            kind,
        };
        self.run_hooks(&change);
        let _ = self.changes.send(change);
    }

    /// Registers `hook` to run after every write committed through this registry (and its
    /// clones), synchronously, before the write returns. Unlike the change feed it cannot
    /// lag, so a cache invalidated from here never serves a write's caller stale data. Hooks
    /// must be cheap and must not block: they run on the writer's task.
    pub fn on_commit(&self, hook: CommitHook) {
        self.hooks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// Tells the commit hooks (not the change feed) that rows of `collection` were written
    /// in bulk, outside the per-record write path (CSV import). The key is empty.
    pub fn announce_bulk_write(&self, collection: &'static str) {
        self.run_hooks(&Change {
            collection,
            key: String::new(),
            kind: ChangeKind::Created,
        });
    }

    fn run_hooks(&self, change: &Change) {
        // A hook that panicked cannot have left the list half-updated.
        let hooks = self.hooks.read().unwrap_or_else(|p| p.into_inner());
        for hook in hooks.iter() {
            hook(change);
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The LFDI index used for certificate-to-device lookups.
    pub fn identities(&self) -> &IdentityIndex {
        &self.identities
    }

    /// Creates a record. An empty key is replaced by a generated one.
    pub async fn create<E: Entity>(&self, mut rec: E) -> Result<E, RegistryError> {
        rec.prepare()?;
        if rec.key().is_empty() && E::KEY == "id" {
            rec.set_key(uuid::Uuid::new_v4().to_string());
        }
        validate_fields(&rec)?;
        let now = now_epoch();
        rec.set_times(now, now);
        let mut tx = self.store.begin_write().await.map_err(StoreError::from)?;
        if record::get::<E>(&mut tx, rec.key()).await?.is_some() {
            return Err(RegistryError::Conflict {
                field: E::KEY.to_string(),
                detail: format!("{} '{}' already exists", E::NAME, rec.key()),
            });
        }
        check_consistency(&mut tx, &rec, None).await?;
        rec.before_insert(&mut tx).await?;
        record::insert(&mut tx, &rec)
            .await
            .map_err(conflict_on_unique::<E>)?;
        E::after_write(&mut tx, None, Some(&rec)).await?;
        tx.commit().await.map_err(StoreError::from)?;
        E::after_commit(self, None, Some(&rec));
        self.announce::<E>(rec.key(), ChangeKind::Created);
        Ok(rec)
    }

    /// Reads one record.
    pub async fn get<E: Entity>(&self, key: &str) -> Result<E, RegistryError> {
        let key = &E::canonical_key(key);
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        record::get::<E>(&mut conn, key)
            .await?
            .ok_or_else(|| not_found::<E>(key))
    }

    /// Lists records matching `filters`, `limit` at a time after key `after`.
    pub async fn list<E: Entity>(
        &self,
        filters: &[(&str, crate::store::Value)],
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<E>, RegistryError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        // One row more than asked tells whether another page exists.
        let mut items: Vec<E> = record::list(&mut conn, filters, after, limit + 1).await?;
        let next_after = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|r| r.key().to_string())
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    /// Applies `change` to the stored record inside one transaction and writes it back.
    /// `change` receives the current record and returns the new one (or a refusal).
    pub async fn update<E, F>(&self, key: &str, change: F) -> Result<E, RegistryError>
    where
        E: Entity,
        F: FnOnce(&E) -> Result<E, RegistryError> + Send,
    {
        let key = &E::canonical_key(key);
        let mut tx = self.store.begin_write().await.map_err(StoreError::from)?;
        let old: E = record::get(&mut tx, key)
            .await?
            .ok_or_else(|| not_found::<E>(key))?;
        let mut new = change(&old)?;
        new.prepare()?;
        if new.key() != old.key() {
            return Err(RegistryError::invalid(E::KEY, "cannot be changed"));
        }
        validate_fields(&new)?;
        E::check_change(&old, &new)?;
        new.set_times(old.created_at(), now_epoch());
        check_consistency(&mut tx, &new, Some(key)).await?;
        record::update(&mut tx, &new)
            .await
            .map_err(conflict_on_unique::<E>)?;
        E::after_write(&mut tx, Some(&old), Some(&new)).await?;
        tx.commit().await.map_err(StoreError::from)?;
        E::after_commit(self, Some(&old), Some(&new));
        self.announce::<E>(new.key(), ChangeKind::Updated);
        Ok(new)
    }

    /// Deletes a record; refused with [`RegistryError::InUse`] while others refer to it.
    pub async fn delete<E: Entity>(&self, key: &str) -> Result<(), RegistryError> {
        let key = &E::canonical_key(key);
        let mut tx = self.store.begin_write().await.map_err(StoreError::from)?;
        let old: E = record::get(&mut tx, key)
            .await?
            .ok_or_else(|| not_found::<E>(key))?;
        E::check_delete(&mut tx, key).await?;
        if let Some(mut tombstone) = old.tombstone(now_epoch()) {
            tombstone.set_times(old.created_at(), now_epoch());
            record::update(&mut tx, &tombstone).await?;
            E::after_write(&mut tx, Some(&old), Some(&tombstone)).await?;
            tx.commit().await.map_err(StoreError::from)?;
            E::after_commit(self, Some(&old), Some(&tombstone));
            self.announce::<E>(key, ChangeKind::Updated);
            return Ok(());
        }
        match record::delete::<E>(&mut tx, key).await {
            Ok(_) => {}
            Err(e) if e.is_foreign_key_violation() => {
                return Err(RegistryError::InUse {
                    kind: E::NAME,
                    key: key.to_string(),
                    detail: "other records refer to it; delete or move them first".into(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        // After the row is gone, so recomputation no longer sees it.
        E::after_write(&mut tx, Some(&old), None).await?;
        tx.commit().await.map_err(StoreError::from)?;
        E::after_commit(self, Some(&old), None);
        self.announce::<E>(key, ChangeKind::Deleted);
        Ok(())
    }

    /// Member DERs of a group.
    pub async fn group_members(
        &self,
        group_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<Der>, RegistryError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut conn = self.group_connection(group_id).await?;
        let mut items = groups::members(&mut conn, group_id, after, limit + 1).await?;
        let next_after = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|d| d.id.clone())
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    /// A connection to read about group `group_id` with, once the group is known to exist
    /// (404 otherwise).
    async fn group_connection(
        &self,
        group_id: &str,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, RegistryError> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        if record::get::<model::Group>(&mut conn, group_id)
            .await?
            .is_none()
        {
            return Err(not_found::<model::Group>(group_id));
        }
        Ok(conn)
    }

    /// A group's aggregate rated power and energy.
    pub async fn group_aggregate(&self, group_id: &str) -> Result<GroupAggregate, RegistryError> {
        let mut conn = self.group_connection(group_id).await?;
        Ok(groups::aggregate(&mut conn, group_id).await?)
    }
}

fn not_found<E: Entity>(key: &str) -> RegistryError {
    RegistryError::NotFound {
        kind: E::NAME,
        key: key.to_string(),
    }
}

fn validate_fields<E: Entity>(rec: &E) -> Result<(), RegistryError> {
    let mut c = validate::Checker::default();
    rec.validate(&mut c);
    c.finish().map_err(RegistryError::Invalid)
}

/// Reference, uniqueness and cross-record checks, in that order, inside the write's
/// transaction. `except` is the record's own key on update.
async fn check_consistency<E: Entity>(
    conn: &mut sqlx::AnyConnection,
    rec: &E,
    except: Option<&str>,
) -> Result<(), RegistryError> {
    for r in rec.references() {
        if !exists(
            conn,
            r.table,
            &[(r.key_column, r.value.clone().into())],
            None,
        )
        .await?
        {
            return Err(RegistryError::MissingReference {
                field: r.field.to_string(),
                kind: r.kind.to_string(),
                key: r.value,
            });
        }
    }
    for u in rec.unique_keys() {
        let except = except.map(|k| (E::KEY, k));
        if exists(conn, E::TABLE, &u.columns, except).await? {
            return Err(RegistryError::Conflict {
                field: u.field.to_string(),
                detail: format!("another {} already has this {}", E::NAME, u.field),
            });
        }
    }
    rec.check(conn).await
}

/// A concurrent writer can still win the race between our uniqueness check and the insert;
/// the database constraint then reports it, and it is still a 409.
fn conflict_on_unique<E: Entity>(e: StoreError) -> RegistryError {
    if e.is_unique_violation() {
        RegistryError::Conflict {
            field: E::KEY.to_string(),
            detail: format!("a conflicting {} was written concurrently", E::NAME),
        }
    } else {
        e.into()
    }
}
