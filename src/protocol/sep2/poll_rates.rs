//! Per-resource IEEE 2030.5 poll rates set by the utility at run time.
//!
//! 2030.5 servers tell clients how often to poll through the `pollRate` attribute of the
//! DeviceCapability and of the lists a client polls. The configured `sep2.poll_rate_seconds`
//! is announced everywhere until the operator API sets a rate for one kind of resource
//! (`/api/v1/sep2-poll-rates`, keyed by the 2030.5 resource name). Rates are read on every
//! served document, so they are kept in memory: the registry's commit hook drops the copy
//! when a rate changes, and a copy older than the poll cache's maximum age is reloaded (a
//! rate written by another node becomes visible within that time).

use crate::domain::EpochSeconds;
use crate::registry::entity::{Entity, Filter, common_accessors};
use crate::registry::validate::Checker;
use crate::registry::{Change, MAX_PAGE, Registry, RegistryError};
use crate::store::record::{int, text};
use crate::store::{Record, StoreError, Value};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use utoipa::ToSchema;

/// The resources whose pollRate can be set, by their 2030.5 names.
pub const RESOURCES: &[&str] = &[
    "DeviceCapability",
    "EndDeviceList",
    "FunctionSetAssignmentsList",
    "DERProgramList",
    "DERList",
    "MirrorUsagePointList",
    "SubscriptionList",
];

/// Shortest and longest accepted rate, seconds. 2030.5 gives no bounds; a client told to
/// poll every second by mistake would load the server, and a day is the longest a CSIP
/// client is expected to go without looking.
pub const MIN_SECONDS: u32 = 5;
pub const MAX_SECONDS: u32 = 86_400;

/// The pollRate of one kind of resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PollRateRecord {
    /// The 2030.5 resource name, one of [`RESOURCES`].
    pub resource: String,
    /// Seconds between polls.
    pub seconds: u32,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for PollRateRecord {
    const TABLE: &'static str = "sep2_poll_rates";
    const KEY: &'static str = "resource";
    const COLUMNS: &'static [&'static str] = &["resource", "seconds", "created_at", "updated_at"];
    fn key(&self) -> &str {
        &self.resource
    }
    fn values(&self) -> Vec<Value> {
        vec![
            self.resource.clone().into(),
            i64::from(self.seconds).into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(PollRateRecord {
            resource: text(row, "resource")?,
            seconds: u32::try_from(int(row, "seconds")?)
                .map_err(|_| StoreError::Corrupt("seconds".into()))?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

impl Entity for PollRateRecord {
    const NAME: &'static str = "2030.5 poll rate";
    const COLLECTION: &'static str = "sep2-poll-rates";
    const FILTERS: &'static [Filter] = &[];
    common_accessors!(resource);

    fn validate(&self, c: &mut Checker) {
        if !RESOURCES.contains(&self.resource.as_str()) {
            c.fail(
                "resource",
                format!("must be one of {}", RESOURCES.join(", ")),
            );
        }
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&self.seconds) {
            c.fail(
                "seconds",
                format!("must be {MIN_SECONDS}-{MAX_SECONDS}, got {}", self.seconds),
            );
        }
    }

    fn check_change(old: &Self, new: &Self) -> Result<(), RegistryError> {
        if old.resource != new.resource {
            return Err(RegistryError::invalid("resource", "cannot be changed"));
        }
        Ok(())
    }
}

struct Loaded {
    at: EpochSeconds,
    rates: HashMap<String, u32>,
}

/// The rates in memory, shared by the handlers of one server.
pub struct PollRates {
    default: u32,
    max_age_s: u32,
    /// Bumped by every committed change, so that a load that raced one is not kept.
    generation: AtomicU64,
    loaded: RwLock<Option<Loaded>>,
}

impl std::fmt::Debug for PollRates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollRates")
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl PollRates {
    /// Rates defaulting to `default`, with the copy dropped on every change `registry`
    /// commits to them and reloaded after `max_age_s` (0: read on every use).
    pub fn attached(registry: &Registry, default: u32, max_age_s: u32) -> Arc<Self> {
        let rates = Arc::new(PollRates {
            default,
            max_age_s,
            generation: AtomicU64::new(0),
            loaded: RwLock::new(None),
        });
        let weak = Arc::downgrade(&rates);
        registry.on_commit(Arc::new(move |change: &Change| {
            if change.collection == PollRateRecord::COLLECTION
                && let Some(r) = weak.upgrade()
            {
                r.generation.fetch_add(1, Ordering::SeqCst);
                *r.loaded.write().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }));
        rates
    }

    /// The pollRate to announce on `resource` (a name from [`RESOURCES`]).
    pub async fn get(&self, registry: &Registry, resource: &str) -> Result<u32, RegistryError> {
        let now = crate::domain::now_epoch();
        {
            let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = loaded.as_ref()
                && now < l.at.saturating_add(i64::from(self.max_age_s))
            {
                return Ok(l.rates.get(resource).copied().unwrap_or(self.default));
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let rows = registry
            .list::<PollRateRecord>(&[], None, MAX_PAGE)
            .await?
            .items;
        let rates: HashMap<String, u32> =
            rows.into_iter().map(|r| (r.resource, r.seconds)).collect();
        let rate = rates.get(resource).copied().unwrap_or(self.default);
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        // A change committed while the rows were read may be missing from them.
        if self.generation.load(Ordering::SeqCst) == generation {
            *loaded = Some(Loaded { at: now, rates });
        }
        Ok(rate)
    }
}
