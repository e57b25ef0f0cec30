//! The `readings` table: batch insert that ignores duplicates, and range queries.
//!
//! The table's primary key is (source_id, measurand, instant). Inserts use
//! `INSERT ... ON CONFLICT (...) DO NOTHING`, which SQLite (3.24+) and PostgreSQL both
//! accept, so a reading delivered again is skipped by the database itself rather than by
//! a check that a concurrent writer could race. The first value stored for a key wins; a
//! later, different value for the same key is not applied (corrections are a separate
//! concern, not something a retried POST should do silently).

use super::{Measurand, Reading, TelemetryError};
use crate::domain::EpochSeconds;
use crate::store::Store;
use crate::store::record::{dynamic, float, int, parsed, text};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

const COLUMNS: &[&str] = &[
    "source_id",
    "source_kind",
    "measurand",
    "instant",
    "value",
    "quality",
    "received_at",
];

/// Rows per INSERT statement: well under SQLite's limit of 32766 bound parameters, and
/// large enough that a day of five-minute readings goes in one round trip.
const ROWS_PER_STATEMENT: usize = 1000;

/// The statement sizes a batch is split into, largest first.
const STATEMENT_SIZES: [usize; 5] = [ROWS_PER_STATEMENT, 200, 40, 8, 1];

/// What a batch insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsertOutcome {
    /// Readings newly stored.
    pub inserted: u64,
    /// Readings skipped because one with the same key was already stored (or appeared
    /// earlier in the same batch).
    pub duplicates: u64,
}

/// Validates and stores `readings` in one transaction; nothing is stored if any reading is
/// invalid. `now` is the server's time, used for validation and as the receipt time.
pub async fn insert_batch(
    store: &Store,
    readings: &[Reading],
    now: EpochSeconds,
) -> Result<InsertOutcome, TelemetryError> {
    // Validate before opening a transaction: a refused batch costs no database work.
    for r in readings {
        r.validate(now)?;
    }
    let mut tx = store.pool().begin().await?;
    let outcome = insert_in(&mut tx, readings, now).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// As [`insert_batch`], on a connection the caller holds, so that readings can be stored in
/// the same transaction as the protocol records that carried them. The caller commits.
pub async fn insert_in(
    conn: &mut AnyConnection,
    readings: &[Reading],
    now: EpochSeconds,
) -> Result<InsertOutcome, TelemetryError> {
    for r in readings {
        r.validate(now)?;
    }
    let mut inserted = 0;
    let mut rest = readings;
    while !rest.is_empty() {
        // Statements of a few fixed sizes only, so that the prepared-statement cache hits:
        // preparing a statement of thousands of placeholders for every odd-sized batch
        // costs more than executing it.
        let size = STATEMENT_SIZES
            .iter()
            .copied()
            .find(|s| *s <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut sql = format!("INSERT INTO readings ({}) VALUES ", COLUMNS.join(", "));
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let first = i * COLUMNS.len();
            let placeholders: Vec<String> = (1..=COLUMNS.len())
                .map(|c| format!("${}", first + c))
                .collect();
            sql.push('(');
            sql.push_str(&placeholders.join(", "));
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT (source_id, measurand, instant) DO NOTHING");
        let mut q = dynamic(sql);
        for r in chunk {
            q = q
                .bind(r.source_id.clone())
                .bind(r.source_kind.as_str())
                .bind(r.measurand.as_str())
                .bind(r.instant)
                .bind(r.value)
                .bind(r.quality.as_str())
                .bind(now);
        }
        // Both engines count only the rows actually inserted, not the skipped conflicts.
        inserted += q.execute(&mut *conn).await?.rows_affected();
    }
    // Late data revises stored aggregates in the same transaction (telemetry::revisions).
    super::revisions::revise_in(&mut *conn, readings, now).await?;
    Ok(InsertOutcome {
        inserted,
        duplicates: readings.len() as u64 - inserted,
    })
}

/// The readings of `source_id` with `from <= instant < to`, optionally of one measurand,
/// in time order.
pub async fn query(
    store: &Store,
    source_id: &str,
    measurand: Option<Measurand>,
    from: EpochSeconds,
    to: EpochSeconds,
) -> Result<Vec<Reading>, TelemetryError> {
    if to < from {
        return Err(TelemetryError::EmptyRange { from, to });
    }
    let mut sql = format!(
        "SELECT {} FROM readings WHERE source_id = $1 AND instant >= $2 AND instant < $3",
        COLUMNS.join(", ")
    );
    if measurand.is_some() {
        sql.push_str(" AND measurand = $4");
    }
    sql.push_str(" ORDER BY instant, measurand");
    let mut q = dynamic(sql).bind(source_id.to_string()).bind(from).bind(to);
    if let Some(m) = measurand {
        q = q.bind(m.as_str());
    }
    let rows = q.fetch_all(store.pool()).await?;
    rows.iter().map(from_row).collect()
}

/// The latest reading of `measurand` at or before `at` of each of `source_ids`, in their
/// order; a source without one is left out. One indexed lookup per source (the readings
/// key starts with the source), so the cost follows the number of sources asked for, not
/// the size of the table.
pub async fn latest(
    store: &Store,
    source_ids: &[String],
    measurand: Measurand,
    at: EpochSeconds,
) -> Result<Vec<Reading>, TelemetryError> {
    let sql = format!(
        "SELECT {} FROM readings WHERE source_id = $1 AND measurand = $2 AND instant <= $3 \
         ORDER BY instant DESC LIMIT 1",
        COLUMNS.join(", ")
    );
    let mut out = Vec::with_capacity(source_ids.len());
    for id in source_ids {
        let row = dynamic(sql.clone())
            .bind(id.clone())
            .bind(measurand.as_str())
            .bind(at)
            .fetch_optional(store.pool())
            .await?;
        if let Some(r) = row {
            out.push(from_row(&r)?);
        }
    }
    Ok(out)
}

pub(super) fn from_row(row: &AnyRow) -> Result<Reading, TelemetryError> {
    Ok(Reading {
        source_id: text(row, "source_id")?,
        source_kind: parsed(row, "source_kind")?,
        measurand: parsed(row, "measurand")?,
        instant: int(row, "instant")?,
        value: float(row, "value")?,
        quality: parsed(row, "quality")?,
    })
}
