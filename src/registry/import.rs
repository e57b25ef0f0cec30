//! Bulk asset import from CSV: one row per DER, with its account, site and meter.
//!
//! The whole file is validated first and every bad row is reported with its reason; only a
//! file without a single bad row is written, in one transaction, with multi-row inserts and
//! one set-based group recomputation at the end. Accounts, sites and meters that already
//! exist (by account number, connection point id and MPID) are reused; DERs must be new.
//! The columns are documented in docs/operator-api.md.

use super::entity::Entity;
use super::model::{Account, Der, Meter, Site};
use super::{Registry, RegistryError, groups};
use crate::domain::{
    AccountKind, DerClass, DerStatus, GridLocation, InterconnectionType, now_epoch,
};
use crate::store::StoreError;
use crate::store::record::insert_many;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use utoipa::ToSchema;

/// One CSV row, exactly as the documented columns name it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetRow {
    pub account_number: String,
    pub account_name: String,
    #[serde(default)]
    pub account_kind: Option<String>,
    #[serde(default)]
    pub subscriber_id: Option<String>,
    pub connection_point_id: String,
    pub territory: String,
    pub interconnection_type: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub substation: Option<String>,
    #[serde(default)]
    pub feeder: Option<String>,
    #[serde(default)]
    pub feeder_section: Option<String>,
    #[serde(default)]
    pub transformer: Option<String>,
    #[serde(default)]
    pub meter_mpid: Option<String>,
    #[serde(default)]
    pub meter_revenue_grade: Option<String>,
    #[serde(default)]
    pub meter_interval_seconds: Option<String>,
    pub der_class: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub rated_kw: String,
    #[serde(default)]
    pub storage_kwh: Option<String>,
    #[serde(default)]
    pub reserve_pct: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub aggregator_lfdi: Option<String>,
}

/// The documented column order (a header row is required; order is free).
pub const COLUMNS: &[&str] = &[
    "account_number",
    "account_name",
    "account_kind",
    "subscriber_id",
    "connection_point_id",
    "territory",
    "interconnection_type",
    "address",
    "substation",
    "feeder",
    "feeder_section",
    "transformer",
    "meter_mpid",
    "meter_revenue_grade",
    "meter_interval_seconds",
    "der_class",
    "manufacturer",
    "model",
    "serial",
    "rated_kw",
    "storage_kwh",
    "reserve_pct",
    "status",
    "aggregator_lfdi",
];

/// A refused row.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RejectedRow {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// The column at fault.
    pub column: String,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ImportReport {
    pub rows: u64,
    pub accounts_created: u64,
    pub sites_created: u64,
    pub meters_created: u64,
    pub ders_created: u64,
    /// Non-empty means nothing was written.
    pub rejected: Vec<RejectedRow>,
}

/// Why an import could not run at all (as opposed to bad rows, which go in the report).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the CSV header is unusable: {0}")]
    Header(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        ImportError::Registry(e.into())
    }
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Registry(e.into())
    }
}

/// What already exists in the store, keyed the way CSV rows refer to it.
#[derive(Default)]
struct Existing {
    accounts: HashMap<String, String>,
    /// connection point id -> (site id, account id)
    sites: HashMap<String, (String, String)>,
    /// MPID -> site id
    meters: HashMap<String, String>,
    ders: HashSet<(String, String)>,
    aggregators: HashSet<String>,
}

async fn load_existing(registry: &Registry) -> Result<Existing, StoreError> {
    let pool = registry.store().pool();
    let mut ex = Existing::default();
    for r in sqlx::query("SELECT account_number, id FROM accounts")
        .fetch_all(pool)
        .await?
    {
        ex.accounts.insert(r.try_get(0)?, r.try_get(1)?);
    }
    for r in sqlx::query(
        "SELECT connection_point_id, id, account_id FROM sites WHERE connection_point_id IS NOT NULL",
    )
    .fetch_all(pool)
    .await?
    {
        ex.sites.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
    }
    for r in sqlx::query("SELECT mpid, site_id FROM meters")
        .fetch_all(pool)
        .await?
    {
        ex.meters.insert(r.try_get(0)?, r.try_get(1)?);
    }
    for r in sqlx::query("SELECT manufacturer, serial FROM ders")
        .fetch_all(pool)
        .await?
    {
        ex.ders.insert((r.try_get(0)?, r.try_get(1)?));
    }
    for r in sqlx::query("SELECT lfdi FROM identities WHERE kind = 'aggregator'")
        .fetch_all(pool)
        .await?
    {
        ex.aggregators.insert(r.try_get(0)?);
    }
    Ok(ex)
}

/// Records to insert, built from a fully valid file.
#[derive(Default)]
struct Batch {
    accounts: Vec<Account>,
    sites: Vec<Site>,
    meters: Vec<Meter>,
    ders: Vec<Der>,
}

fn opt(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn parse_num(column: &str, s: &str) -> Result<f64, (String, String)> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| (column.to_string(), format!("'{s}' is not a number")))
}

fn parse_enum<T: std::str::FromStr>(column: &str, s: &str) -> Result<T, (String, String)>
where
    T::Err: std::fmt::Display,
{
    s.trim()
        .parse::<T>()
        .map_err(|e| (column.to_string(), e.to_string()))
}

/// Maps a record's field name to the CSV column it came from.
fn column_for(record: &str, field: &str) -> String {
    let f = field.trim_start_matches("grid_location.");
    match (record, f) {
        ("account", "name") => "account_name".into(),
        ("account", "kind") => "account_kind".into(),
        ("meter", "mpid") => "meter_mpid".into(),
        ("meter", "interval_seconds") => "meter_interval_seconds".into(),
        _ => f.to_string(),
    }
}

fn check<E: Entity>(record: &str, rec: &E) -> Result<(), (String, String)> {
    let mut c = super::validate::Checker::default();
    rec.validate(&mut c);
    match c.violations.into_iter().next() {
        Some(v) => Err((column_for(record, &v.field), v.reason)),
        None => Ok(()),
    }
}

/// Turns one row into records (ids are UUIDv7: time-ordered keys keep the B-tree inserts
/// of a bulk import appending instead of splitting pages at random), consulting and updating what the file and store already hold.
fn build_row(
    row: &AssetRow,
    now: i64,
    ex: &mut Existing,
    batch: &mut Batch,
    new_sites: &mut HashMap<String, usize>,
) -> Result<(), (String, String)> {
    let account_number = row.account_number.trim().to_string();
    let account_id = match ex.accounts.get(&account_number) {
        Some(id) => id.clone(),
        None => {
            let kind = match opt(&row.account_kind) {
                Some(k) => parse_enum::<AccountKind>("account_kind", &k)?,
                None => AccountKind::Residential,
            };
            let acc = Account {
                id: uuid::Uuid::now_v7().to_string(),
                account_number: account_number.clone(),
                subscriber_id: opt(&row.subscriber_id),
                name: row.account_name.trim().to_string(),
                kind,
                created_at: now,
                updated_at: now,
            };
            check("account", &acc)?;
            batch.accounts.push(acc.clone());
            ex.accounts.insert(account_number.clone(), acc.id.clone());
            acc.id
        }
    };

    let cp = row.connection_point_id.trim().to_string();
    let interconnection_type: InterconnectionType =
        parse_enum("interconnection_type", &row.interconnection_type)?;
    let site = Site {
        id: String::new(),
        account_id: account_id.clone(),
        connection_point_id: Some(cp.clone()),
        territory: row.territory.trim().to_string(),
        interconnection_type,
        address: opt(&row.address),
        grid_location: GridLocation {
            substation: opt(&row.substation),
            feeder: opt(&row.feeder),
            feeder_section: opt(&row.feeder_section),
            transformer: opt(&row.transformer),
        },
        created_at: now,
        updated_at: now,
    };
    let site_id = match ex.sites.get(&cp) {
        Some((id, owner)) => {
            if *owner != account_id {
                return Err((
                    "connection_point_id".into(),
                    format!("site {cp} belongs to another account"),
                ));
            }
            // A site first seen earlier in this file must be described the same way.
            if let Some(&i) = new_sites.get(&cp) {
                let first = &batch.sites[i];
                if first.territory != site.territory
                    || first.interconnection_type != site.interconnection_type
                    || first.grid_location != site.grid_location
                {
                    return Err((
                        "connection_point_id".into(),
                        format!("site {cp} is described differently on an earlier row"),
                    ));
                }
            }
            id.clone()
        }
        None => {
            let mut s = site;
            s.id = uuid::Uuid::now_v7().to_string();
            check("site", &s)?;
            ex.sites
                .insert(cp.clone(), (s.id.clone(), account_id.clone()));
            new_sites.insert(cp.clone(), batch.sites.len());
            let id = s.id.clone();
            batch.sites.push(s);
            id
        }
    };

    let new_meter = match opt(&row.meter_mpid) {
        Some(mpid) => match ex.meters.get(&mpid) {
            Some(owner) if *owner != site_id => {
                return Err((
                    "meter_mpid".into(),
                    format!("meter {mpid} is installed at another site"),
                ));
            }
            Some(_) => None,
            None => Some(mpid),
        },
        None => None,
    };
    if let Some(mpid) = new_meter {
        let revenue_grade = match opt(&row.meter_revenue_grade).as_deref() {
            None | Some("true") | Some("1") | Some("yes") => true,
            Some("false") | Some("0") | Some("no") => false,
            Some(other) => {
                return Err((
                    "meter_revenue_grade".into(),
                    format!("'{other}' is not true/false"),
                ));
            }
        };
        let interval_seconds = match opt(&row.meter_interval_seconds) {
            Some(s) => s.parse::<i64>().map_err(|_| {
                (
                    "meter_interval_seconds".to_string(),
                    format!("'{s}' is not an integer"),
                )
            })?,
            None => 900,
        };
        let m = Meter {
            id: uuid::Uuid::now_v7().to_string(),
            site_id: site_id.clone(),
            mpid: mpid.clone(),
            revenue_grade,
            interval_seconds,
            created_at: now,
            updated_at: now,
        };
        check("meter", &m)?;
        ex.meters.insert(mpid, site_id.clone());
        batch.meters.push(m);
    }

    let der_class: DerClass = parse_enum("der_class", &row.der_class)?;
    let status = match opt(&row.status) {
        Some(s) => parse_enum::<DerStatus>("status", &s)?,
        None => DerStatus::Active,
    };
    let mut der = Der {
        id: uuid::Uuid::now_v7().to_string(),
        site_id,
        der_class,
        manufacturer: row.manufacturer.trim().to_string(),
        model: row.model.trim().to_string(),
        serial: row.serial.trim().to_string(),
        rated_kw: parse_num("rated_kw", &row.rated_kw)?,
        storage_kwh: opt(&row.storage_kwh)
            .map(|s| parse_num("storage_kwh", &s))
            .transpose()?,
        reserve_pct: opt(&row.reserve_pct)
            .map(|s| parse_num("reserve_pct", &s))
            .transpose()?,
        status,
        aggregator_lfdi: opt(&row.aggregator_lfdi),
        created_at: now,
        updated_at: now,
    };
    der.prepare()
        .map_err(|e| ("aggregator_lfdi".to_string(), e.to_string()))?;
    check("der", &der)?;
    if let Some(l) = &der.aggregator_lfdi
        && !ex.aggregators.contains(l)
    {
        return Err((
            "aggregator_lfdi".into(),
            format!("{l} is not a registered aggregator identity"),
        ));
    }
    let key = (der.manufacturer.clone(), der.serial.clone());
    if !ex.ders.insert(key) {
        return Err((
            "serial".into(),
            format!(
                "a DER from {} with serial {} already exists",
                der.manufacturer, der.serial
            ),
        ));
    }
    batch.ders.push(der);
    Ok(())
}

/// Imports a CSV from `input`. Bad rows are listed in the report and then nothing is
/// written; an unusable header is an error.
pub async fn import_csv<R: std::io::Read>(
    registry: &Registry,
    input: R,
    progress: Option<&ProgressBar>,
) -> Result<ImportReport, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| ImportError::Header(e.to_string()))?
        .clone();
    for h in headers.iter() {
        if !COLUMNS.contains(&h) {
            return Err(ImportError::Header(format!(
                "unknown column '{h}'; the columns are: {}",
                COLUMNS.join(", ")
            )));
        }
    }
    for required in [
        "account_number",
        "account_name",
        "connection_point_id",
        "territory",
        "interconnection_type",
        "der_class",
        "manufacturer",
        "model",
        "serial",
        "rated_kw",
    ] {
        if !headers.iter().any(|h| h == required) {
            return Err(ImportError::Header(format!(
                "missing required column '{required}'"
            )));
        }
    }

    let mut ex = load_existing(registry).await?;
    let now = now_epoch();
    let mut report = ImportReport::default();
    let mut batch = Batch::default();
    let mut new_sites = HashMap::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                report.rejected.push(RejectedRow {
                    line,
                    column: String::new(),
                    reason: format!("unreadable CSV: {e}"),
                });
                // A structural error (bad quoting) can desynchronize the reader; stop here.
                break;
            }
        }
        report.rows += 1;
        if let Some(p) = progress {
            p.inc(1);
        }
        let row: AssetRow = match record.deserialize(Some(&headers)) {
            Ok(r) => r,
            Err(e) => {
                report.rejected.push(RejectedRow {
                    line,
                    column: String::new(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if let Err((column, reason)) = build_row(&row, now, &mut ex, &mut batch, &mut new_sites) {
            report.rejected.push(RejectedRow {
                line,
                column,
                reason,
            });
        }
    }
    if !report.rejected.is_empty() {
        return Ok(report);
    }

    if let Some(p) = progress {
        p.set_message("all rows valid; writing to the store");
        p.enable_steady_tick(std::time::Duration::from_millis(200));
    }
    let mut tx = registry.store().pool().begin().await?;
    insert_many(&mut tx, &batch.accounts).await?;
    insert_many(&mut tx, &batch.sites).await?;
    insert_many(&mut tx, &batch.meters).await?;
    insert_many(&mut tx, &batch.ders).await?;
    groups::refresh_all(&mut tx).await?;
    tx.commit().await?;
    report.accounts_created = batch.accounts.len() as u64;
    report.sites_created = batch.sites.len() as u64;
    report.meters_created = batch.meters.len() as u64;
    report.ders_created = batch.ders.len() as u64;
    Ok(report)
}
