//! In-memory LFDI index: certificate identity to device or aggregator, in O(1).
//!
//! Every TLS request of a 2030.5 client starts with this lookup, so it must not touch the
//! database. The index is loaded from the store at start and kept current by the registry
//! after each committed identity write. Keys are the 20 raw LFDI bytes to keep a million
//! entries compact.

use super::model::Identity;
use crate::domain::IdentityKind;
use crate::domain::identity::Lfdi;
use crate::store::{Store, StoreError};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::RwLock;

/// What a certificate identity is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedIdentity {
    pub kind: IdentityKind,
    /// The DER a device identity speaks for.
    pub der_id: Option<Box<str>>,
}

/// LFDI -> binding, shared by all request handlers.
#[derive(Debug, Default)]
pub struct IdentityIndex {
    map: RwLock<HashMap<[u8; 20], IndexedIdentity>>,
}

impl IdentityIndex {
    /// Loads every identity from the store.
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let rows = sqlx::query("SELECT lfdi, kind, der_id FROM identities")
            .fetch_all(store.pool())
            .await?;
        let mut map = HashMap::with_capacity(rows.len());
        for row in rows {
            let lfdi: String = row.try_get("lfdi")?;
            let kind: String = row.try_get("kind")?;
            let der_id: Option<String> = row.try_get("der_id")?;
            let lfdi: Lfdi = lfdi
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("identities.lfdi: {e}")))?;
            let kind = kind
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("identities.kind: {e}")))?;
            map.insert(
                *lfdi.as_bytes(),
                IndexedIdentity {
                    kind,
                    der_id: der_id.map(String::into_boxed_str),
                },
            );
        }
        Ok(IdentityIndex {
            map: RwLock::new(map),
        })
    }

    /// The binding of `lfdi`, if registered.
    pub fn lookup(&self, lfdi: &Lfdi) -> Option<IndexedIdentity> {
        self.read().get(lfdi.as_bytes()).cloned()
    }

    /// Number of indexed identities.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when no identity is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn insert(&self, ident: &Identity) {
        if let Ok(lfdi) = ident.lfdi.parse::<Lfdi>() {
            let entry = IndexedIdentity {
                kind: ident.kind,
                der_id: ident.der_id.clone().map(String::into_boxed_str),
            };
            self.write().insert(*lfdi.as_bytes(), entry);
        }
    }

    pub(crate) fn remove(&self, lfdi: &str) {
        if let Ok(lfdi) = lfdi.parse::<Lfdi>() {
            self.write().remove(lfdi.as_bytes());
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<[u8; 20], IndexedIdentity>> {
        // A panic while holding the lock cannot leave the map half-updated (each operation
        // is a single insert or remove), so a poisoned lock is safe to keep using.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 20], IndexedIdentity>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}
