//! Settlement and performance: after an event, what each resource delivered against its
//! baseline, from finalized meter data, and whether a settlement statement agrees
//! (docs/settlement.md).
//!
//! - [`baseline`]: "high X of Y" day-matching baselines with same-day adjustment (pure).
//! - [`performance`]: delivered energy per resource and per aggregate (pure).
//! - [`reconcile`]: the statement CSV and its matching against performance (pure).
//! - [`store`]: the thin I/O layer: meters of a target, interval series from telemetry,
//!   event days, and the stored results (migration 0014).
//!
//! The engine knows no protocol: Green Button files arrive as interval-energy telemetry
//! readings (`interval_energy_imported_wh` / `_exported_wh`), which is all it reads.

pub mod baseline;
pub mod performance;
pub mod reconcile;
pub mod store;

pub use baseline::{Baseline, BaselineConfig, BaselineError, Window};
pub use performance::{AggregatePerformance, EventSpec, ResourcePerformance};
pub use reconcile::{ReconciliationReport, StatementError, Tolerance};
pub use store::{
    AdHocEvent, BaselineRequest, PerformanceRequest, SettlementTarget, baseline_for_meter,
    get_performance, get_reconciliation, performance, reconcile_statement,
};

use crate::store::StoreError;
use crate::telemetry::TelemetryError;

/// Why a settlement operation did nothing. Variants name the field at fault where there is
/// one; nothing is stored when any is returned.
#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    /// A request field is wrong.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The request names something that does not exist.
    #[error("{field}: unknown {kind} '{id}'")]
    Unknown {
        field: String,
        kind: &'static str,
        id: String,
    },
    /// The event asked about does not exist (no dispatch plan, no computed performance).
    #[error("unknown event '{0}': no dispatch plan or computed performance has that id")]
    UnknownEvent(String),
    /// No stored reconciliation has that id.
    #[error("no reconciliation '{0}'")]
    UnknownReconciliation(String),
    /// The event's target holds no meter.
    #[error("the event's target {0} has no meter")]
    NoResources(String),
    /// Not one resource has metered data in the window.
    #[error(
        "no metered interval data for any of the {meters} meter(s) of {target} in the window [{start}, {end})"
    )]
    NoData {
        target: String,
        meters: usize,
        start: i64,
        end: i64,
    },
    #[error("baseline: {0}")]
    Baseline(#[from] BaselineError),
    #[error("statement: {0}")]
    Statement(#[from] StatementError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for SettlementError {
    fn from(e: sqlx::Error) -> Self {
        SettlementError::Store(StoreError::Database(e))
    }
}

impl SettlementError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SettlementError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
