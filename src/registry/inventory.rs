//! The ISO/RTO enrolment inventory export: one row per DER with the fields that PJM, ISO-NE
//! and NYISO registration asks for (account, territory, interconnection type, meter point
//! id, inverter make and model, storage kWh and kW, status), plus grid location and the
//! programs the DER is enrolled in.

use crate::store::{Store, StoreError};
use serde::Serialize;
use sqlx::Row;
use std::collections::HashMap;
use utoipa::ToSchema;

/// One exported DER.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InventoryRow {
    pub account_number: String,
    pub subscriber_id: Option<String>,
    pub territory: String,
    pub interconnection_type: String,
    /// The site's revenue-grade meter point id, or its connection point id when it has no
    /// revenue-grade meter.
    pub meter_point_id: Option<String>,
    pub der_id: String,
    pub der_class: String,
    pub inverter_make: String,
    pub inverter_model: String,
    pub serial: String,
    pub storage_kwh: Option<f64>,
    pub rated_kw: f64,
    pub status: String,
    pub substation: Option<String>,
    pub feeder: Option<String>,
    /// Names of the programs the DER is enrolled in, in name order.
    pub programs: Vec<String>,
}

/// Reads the inventory, optionally restricted to DERs enrolled in `program_id`.
pub async fn collect(
    store: &Store,
    program_id: Option<&str>,
) -> Result<Vec<InventoryRow>, StoreError> {
    let pool = store.pool();
    let mut programs: HashMap<String, Vec<String>> = HashMap::new();
    for r in sqlx::query(
        "SELECT e.der_id, p.name FROM enrolments e JOIN programs p ON p.id = e.program_id \
         WHERE e.status = 'enrolled' ORDER BY p.name",
    )
    .fetch_all(pool)
    .await?
    {
        programs
            .entry(r.try_get(0)?)
            .or_default()
            .push(r.try_get(1)?);
    }
    let base = "SELECT a.account_number, a.subscriber_id, s.territory, s.interconnection_type, \
        COALESCE((SELECT MIN(m.mpid) FROM meters m WHERE m.site_id = s.id AND m.revenue_grade = 1), \
                 s.connection_point_id) AS meter_point_id, \
        d.id, d.der_class, d.manufacturer, d.model, d.serial, d.storage_kwh, d.rated_kw, d.status, \
        s.substation, s.feeder \
        FROM ders d JOIN sites s ON s.id = d.site_id JOIN accounts a ON a.id = s.account_id";
    let rows = match program_id {
        Some(p) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{base} WHERE EXISTS (SELECT 1 FROM enrolments e WHERE e.der_id = d.id \
                 AND e.program_id = $1 AND e.status = 'enrolled') ORDER BY a.account_number, d.id"
            )))
            .bind(p.to_string())
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{base} ORDER BY a.account_number, d.id"
            )))
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter()
        .map(|r| {
            let der_id: String = r.try_get(5)?;
            Ok(InventoryRow {
                account_number: r.try_get(0)?,
                subscriber_id: r.try_get(1)?,
                territory: r.try_get(2)?,
                interconnection_type: r.try_get(3)?,
                meter_point_id: r.try_get(4)?,
                programs: programs.remove(&der_id).unwrap_or_default(),
                der_id,
                der_class: r.try_get(6)?,
                inverter_make: r.try_get(7)?,
                inverter_model: r.try_get(8)?,
                serial: r.try_get(9)?,
                storage_kwh: r.try_get(10)?,
                rated_kw: r.try_get(11)?,
                status: r.try_get(12)?,
                substation: r.try_get(13)?,
                feeder: r.try_get(14)?,
            })
        })
        .collect()
}

/// Renders rows as CSV with a header; programs are joined with ';'.
pub fn to_csv(rows: &[InventoryRow]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "account_number",
        "subscriber_id",
        "territory",
        "interconnection_type",
        "meter_point_id",
        "der_id",
        "der_class",
        "inverter_make",
        "inverter_model",
        "serial",
        "storage_kwh",
        "rated_kw",
        "status",
        "substation",
        "feeder",
        "programs",
    ])?;
    for r in rows {
        let opt_num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        w.write_record([
            r.account_number.as_str(),
            r.subscriber_id.as_deref().unwrap_or(""),
            &r.territory,
            &r.interconnection_type,
            r.meter_point_id.as_deref().unwrap_or(""),
            &r.der_id,
            &r.der_class,
            &r.inverter_make,
            &r.inverter_model,
            &r.serial,
            &opt_num(r.storage_kwh),
            &r.rated_kw.to_string(),
            &r.status,
            r.substation.as_deref().unwrap_or(""),
            r.feeder.as_deref().unwrap_or(""),
            &r.programs.join(";"),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
