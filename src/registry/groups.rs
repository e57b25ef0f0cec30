//! Group membership: recomputation of the materialized `group_members` table, member
//! listing and aggregates.
//!
//! A DER belongs to a group when every criterion the group sets holds: its class, an
//! `enrolled` enrolment in the group's program, and each level of grid location the group
//! names. Decommissioned DERs belong to no group. The recomputation runs inside the caller's
//! transaction, so a change and its membership effect commit together.

use super::model::{Der, Group, GroupAggregate};
use crate::domain::{DerStatus, GridLocation};
use crate::store::record::{Value, dynamic, insert_rows};
use crate::store::{Record, StoreError};
use sqlx::{AnyConnection, Row};

/// The join that decides membership; callers add a restriction with `AND ...`.
const MATCH: &str = "INSERT INTO group_members (group_id, der_id) \
    SELECT g.id, d.id FROM ders d JOIN sites s ON s.id = d.site_id CROSS JOIN der_groups g \
    WHERE d.status <> 'decommissioned' \
    AND (g.der_class IS NULL OR g.der_class = d.der_class) \
    AND (g.substation IS NULL OR g.substation = s.substation) \
    AND (g.feeder IS NULL OR g.feeder = s.feeder) \
    AND (g.feeder_section IS NULL OR g.feeder_section = s.feeder_section) \
    AND (g.transformer IS NULL OR g.transformer = s.transformer) \
    AND (g.program_id IS NULL OR EXISTS (SELECT 1 FROM enrolments e \
         WHERE e.der_id = d.id AND e.program_id = g.program_id AND e.status = 'enrolled'))";

/// Recomputes every group's membership of one DER.
pub async fn refresh_der(conn: &mut AnyConnection, der_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM group_members WHERE der_id = $1")
        .bind(der_id)
        .execute(&mut *conn)
        .await?;
    dynamic(format!("{MATCH} AND d.id = $1"))
        .bind(der_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Recomputes membership of every DER at a site (after its grid location changed).
pub async fn refresh_site(conn: &mut AnyConnection, site_id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM group_members WHERE der_id IN (SELECT id FROM ders WHERE site_id = $1)",
    )
    .bind(site_id)
    .execute(&mut *conn)
    .await?;
    dynamic(format!("{MATCH} AND d.site_id = $1"))
        .bind(site_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Recomputes one group's membership (after its definition changed).
pub async fn refresh_group(conn: &mut AnyConnection, group_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM group_members WHERE group_id = $1")
        .bind(group_id)
        .execute(&mut *conn)
        .await?;
    dynamic(format!("{MATCH} AND g.id = $1"))
        .bind(group_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Recomputes all memberships; used after bulk import, where one set-based statement beats
/// a refresh per DER.
pub async fn refresh_all(conn: &mut AnyConnection) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM group_members")
        .execute(&mut *conn)
        .await?;
    dynamic(MATCH.to_string()).execute(&mut *conn).await?;
    Ok(())
}

/// Whether a DER that has no enrolments yet (one being created) belongs to `group`, with
/// the rule [`MATCH`] applies in SQL: a group that names a program never holds it, since
/// membership through a program needs an `enrolled` enrolment.
pub fn matches_new_der(group: &Group, der: &Der, site: &GridLocation) -> bool {
    fn level(criterion: &Option<String>, actual: &Option<String>) -> bool {
        criterion.is_none() || criterion == actual
    }
    let g = &group.grid_location;
    der.status != DerStatus::Decommissioned
        && group.program_id.is_none()
        && group.der_class.is_none_or(|c| c == der.der_class)
        && level(&g.substation, &site.substation)
        && level(&g.feeder, &site.feeder)
        && level(&g.feeder_section, &site.feeder_section)
        && level(&g.transformer, &site.transformer)
}

/// Writes memberships computed outside SQL (by a bulk import, with [`matches_new_der`]),
/// as `(group id, DER id)` pairs.
pub async fn insert_members(
    conn: &mut AnyConnection,
    pairs: &[(String, String)],
) -> Result<(), StoreError> {
    insert_rows(
        conn,
        "group_members",
        &["group_id", "der_id"],
        pairs
            .iter()
            .map(|(g, d)| vec![Value::from(g.as_str()), Value::from(d.as_str())])
            .collect(),
    )
    .await
}

/// Member DERs of a group in id order, keyset-paginated.
pub async fn members(
    conn: &mut AnyConnection,
    group_id: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Der>, StoreError> {
    let cols: Vec<String> = Der::COLUMNS.iter().map(|c| format!("d.{c}")).collect();
    let sql = format!(
        "SELECT {} FROM group_members m JOIN ders d ON d.id = m.der_id \
         WHERE m.group_id = $1 AND m.der_id > $2 ORDER BY m.der_id LIMIT {limit}",
        cols.join(", ")
    );
    let rows = dynamic(sql)
        .bind(group_id)
        .bind(after.unwrap_or(""))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(Der::from_row).collect()
}

/// Count, rated power and storage energy of a group's members.
pub async fn aggregate(
    conn: &mut AnyConnection,
    group_id: &str,
) -> Result<GroupAggregate, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(d.rated_kw), 0.0) AS kw, \
         COALESCE(SUM(d.storage_kwh), 0.0) AS kwh \
         FROM group_members m JOIN ders d ON d.id = m.der_id WHERE m.group_id = $1",
    )
    .bind(group_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(GroupAggregate {
        group_id: group_id.to_string(),
        der_count: row.try_get::<i64, _>("n")?,
        rated_kw: row.try_get::<f64, _>("kw")?,
        storage_kwh: row.try_get::<f64, _>("kwh")?,
    })
}
