//! SQLite-only schema steps, run after the shared migrations.
//!
//! The migrations in `migrations/` are one set of SQL for both engines. A few layouts only
//! SQLite has (or needs) are applied here instead, idempotently, each recognised by the
//! schema it leaves behind, so a database that already has it is left alone.
//!
//! - `readings` clustered on its key (`WITHOUT ROWID`, primary key (source_id, instant,
//!   measurand)) and without the second index `readings_source_instant` of migration 0004.
//!   A rowid table with two indexes keeps three B-trees per reading; telemetry arriving in
//!   time order from many devices dirties a page per device in each of them on every
//!   commit, and page writes were what limited the telemetry writer (docs/benchmarks.md).
//!   One B-tree ordered by source then time serves every query of the table: one source
//!   over a time range (with or without a measurand) and a source's neighbouring reading
//!   before or after an instant. Uniqueness is still the set (source_id, measurand,
//!   instant), which `ON CONFLICT (source_id, measurand, instant)` names in any order.

use sqlx::AnyPool;

/// The clustered readings table; the columns and their order are those of migration 0004.
const READINGS_CLUSTERED: &str = "CREATE TABLE readings_clustered (
    source_id   TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    measurand   TEXT NOT NULL,
    instant     BIGINT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    quality     TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (source_id, instant, measurand)
) WITHOUT ROWID";

/// Applies every SQLite-only step that the database does not have yet.
pub(super) async fn apply(pool: &AnyPool) -> Result<(), sqlx::Error> {
    if readings_clustered(pool).await? {
        return Ok(());
    }
    // Under the write lock, and checked again: another process may have opened the same
    // file at the same moment and done it first.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let done: Option<String> = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'readings'",
    )
    .fetch_optional(&mut *tx)
    .await?;
    if done.is_some_and(|sql| is_clustered(&sql)) {
        return tx.commit().await;
    }
    sqlx::query(READINGS_CLUSTERED).execute(&mut *tx).await?;
    // Sorted on the new key: the copy appends to the new B-tree instead of scattering.
    sqlx::query(
        "INSERT INTO readings_clustered (source_id, source_kind, measurand, instant, value, \
         quality, received_at) SELECT source_id, source_kind, measurand, instant, value, \
         quality, received_at FROM readings ORDER BY source_id, instant, measurand",
    )
    .execute(&mut *tx)
    .await?;
    // Dropping the table drops readings_source_instant with it.
    sqlx::query("DROP TABLE readings").execute(&mut *tx).await?;
    sqlx::query("ALTER TABLE readings_clustered RENAME TO readings")
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

async fn readings_clustered(pool: &AnyPool) -> Result<bool, sqlx::Error> {
    let sql: Option<String> = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'readings'",
    )
    .fetch_optional(pool)
    .await?;
    Ok(sql.is_some_and(|sql| is_clustered(&sql)))
}

fn is_clustered(sql: &str) -> bool {
    sql.to_ascii_uppercase().contains("WITHOUT ROWID")
}
