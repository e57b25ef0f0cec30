//! Bulk asset import from CSV: one row per DER, with its account, site and meter.
//!
//! Every row is validated and every bad row is reported with its reason; only a file
//! without a single bad row is kept. Valid rows are written while the file is still being
//! read, in one transaction with multi-row inserts, and that transaction is rolled back if
//! any row turns out bad. The new DERs' group memberships are computed as rows are read
//! ([`groups::matches_new_der`]), so an import costs O(file), not O(portfolio). Accounts,
//! sites and meters that already exist (by account number, connection point id and MPID)
//! are reused; DERs must be new. The columns are documented in docs/operator-api.md.

use super::entity::Entity;
use super::model::{Account, Der, Group, Meter, Site};
use super::{Registry, RegistryError, groups};
use crate::domain::{
    AccountKind, DerClass, DerStatus, GridLocation, InterconnectionType, now_epoch,
};
use crate::store::Record;
use crate::store::StoreError;
use crate::store::record::{dynamic, insert_many_owned};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use std::collections::{HashMap, HashSet};
use utoipa::ToSchema;

/// One CSV row, exactly as the documented columns name it.
#[derive(Debug, Clone, Deserialize)]
// Fields borrow from the CSV record: a row costs no allocation until it becomes records.
#[serde(deny_unknown_fields)]
pub struct AssetRow<'a> {
    pub account_number: &'a str,
    pub account_name: &'a str,
    #[serde(default, borrow)]
    pub account_kind: Option<&'a str>,
    #[serde(default, borrow)]
    pub subscriber_id: Option<&'a str>,
    pub connection_point_id: &'a str,
    pub territory: &'a str,
    pub interconnection_type: &'a str,
    #[serde(default, borrow)]
    pub address: Option<&'a str>,
    #[serde(default, borrow)]
    pub substation: Option<&'a str>,
    #[serde(default, borrow)]
    pub feeder: Option<&'a str>,
    #[serde(default, borrow)]
    pub feeder_section: Option<&'a str>,
    #[serde(default, borrow)]
    pub transformer: Option<&'a str>,
    #[serde(default, borrow)]
    pub meter_mpid: Option<&'a str>,
    #[serde(default, borrow)]
    pub meter_revenue_grade: Option<&'a str>,
    #[serde(default, borrow)]
    pub meter_interval_seconds: Option<&'a str>,
    pub der_class: &'a str,
    pub manufacturer: &'a str,
    pub model: &'a str,
    pub serial: &'a str,
    pub rated_kw: &'a str,
    #[serde(default, borrow)]
    pub storage_kwh: Option<&'a str>,
    #[serde(default, borrow)]
    pub reserve_pct: Option<&'a str>,
    #[serde(default, borrow)]
    pub status: Option<&'a str>,
    #[serde(default, borrow)]
    pub aggregator_lfdi: Option<&'a str>,
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
    /// The runtime shut down while the import was writing; nothing was committed.
    #[error("the import was interrupted before it committed; nothing was written")]
    Interrupted,
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

/// A site a row may refer to by connection point id: one already in the store or one
/// created earlier in the same file.
struct KnownSite {
    id: String,
    account_id: String,
    location: GridLocation,
    /// For a site first described earlier in this file: how it was described, so that a
    /// later row describing it differently is refused.
    from_file: Option<(String, InterconnectionType)>,
}

/// What already exists in the store (and, as the file is read, in earlier rows), keyed the
/// way CSV rows refer to it.
#[derive(Default)]
struct Existing {
    accounts: HashMap<String, String>,
    sites: HashMap<String, KnownSite>,
    /// MPID -> site id
    meters: HashMap<String, String>,
    ders: HashSet<(String, String)>,
    aggregators: HashSet<String>,
    /// Every group, so that new DERs' memberships are computed as the rows are read.
    groups: Vec<Group>,
}

async fn load_existing(conn: &mut AnyConnection) -> Result<Existing, StoreError> {
    let mut ex = Existing::default();
    for r in sqlx::query("SELECT account_number, id FROM accounts")
        .fetch_all(&mut *conn)
        .await?
    {
        ex.accounts.insert(r.try_get(0)?, r.try_get(1)?);
    }
    for r in sqlx::query(
        "SELECT connection_point_id, id, account_id, substation, feeder, feeder_section, \
         transformer FROM sites WHERE connection_point_id IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let site = KnownSite {
            id: r.try_get(1)?,
            account_id: r.try_get(2)?,
            location: GridLocation {
                substation: r.try_get(3)?,
                feeder: r.try_get(4)?,
                feeder_section: r.try_get(5)?,
                transformer: r.try_get(6)?,
            },
            from_file: None,
        };
        ex.sites.insert(r.try_get(0)?, site);
    }
    for r in sqlx::query("SELECT mpid, site_id FROM meters")
        .fetch_all(&mut *conn)
        .await?
    {
        ex.meters.insert(r.try_get(0)?, r.try_get(1)?);
    }
    for r in sqlx::query("SELECT manufacturer, serial FROM ders")
        .fetch_all(&mut *conn)
        .await?
    {
        ex.ders.insert((r.try_get(0)?, r.try_get(1)?));
    }
    for r in sqlx::query("SELECT lfdi FROM identities WHERE kind = 'aggregator'")
        .fetch_all(&mut *conn)
        .await?
    {
        ex.aggregators.insert(r.try_get(0)?);
    }
    let sql = format!("SELECT {} FROM der_groups", Group::COLUMNS.join(", "));
    for r in dynamic(sql).fetch_all(&mut *conn).await? {
        ex.groups.push(Group::from_row(&r)?);
    }
    Ok(ex)
}

/// Records to insert, built from valid rows. The reader hands one to the writer task every
/// [`CHUNK_DERS`] DERs; within one, rows are written parents first.
#[derive(Default)]
struct Batch {
    accounts: Vec<Account>,
    sites: Vec<Site>,
    meters: Vec<Meter>,
    ders: Vec<Der>,
    /// (group id, DER id) memberships of the new DERs.
    members: Vec<(String, String)>,
}

impl Batch {
    async fn write(self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        insert_many_owned(&mut *conn, self.accounts).await?;
        insert_many_owned(&mut *conn, self.sites).await?;
        insert_many_owned(&mut *conn, self.meters).await?;
        insert_many_owned(&mut *conn, self.ders).await?;
        groups::insert_members(&mut *conn, &self.members).await
    }
}

/// DERs per batch handed from the reader to the writer: large enough that each batch is a
/// few full-size multi-row statements, small enough that reading and writing overlap.
const CHUNK_DERS: usize = 4000;

fn opt(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
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
/// of a bulk import appending instead of splitting pages at random), consulting and
/// updating what the store and earlier rows hold. Nothing is added to `batch` or `ex`
/// unless the whole row is valid, so a bad row leaves no trace for later rows to trip on.
fn build_row(
    row: &AssetRow<'_>,
    now: i64,
    ex: &mut Existing,
    batch: &mut Batch,
) -> Result<(), (String, String)> {
    let account_number = row.account_number.trim();
    let new_account = match ex.accounts.get(account_number) {
        Some(_) => None,
        None => {
            let kind = match opt(row.account_kind) {
                Some(k) => parse_enum::<AccountKind>("account_kind", &k)?,
                None => AccountKind::Residential,
            };
            let acc = Account {
                id: uuid::Uuid::now_v7().to_string(),
                account_number: account_number.to_string(),
                subscriber_id: opt(row.subscriber_id),
                name: row.account_name.trim().to_string(),
                kind,
                created_at: now,
                updated_at: now,
            };
            check("account", &acc)?;
            Some(acc)
        }
    };
    let account_id = match (&new_account, ex.accounts.get(account_number)) {
        (Some(acc), _) => acc.id.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => unreachable!("an account is either known or new"),
    };

    let cp = row.connection_point_id.trim();
    let interconnection_type: InterconnectionType =
        parse_enum("interconnection_type", row.interconnection_type)?;
    let territory = row.territory.trim();
    let location = GridLocation {
        substation: opt(row.substation),
        feeder: opt(row.feeder),
        feeder_section: opt(row.feeder_section),
        transformer: opt(row.transformer),
    };
    let (site_id, new_site) = match ex.sites.get(cp) {
        Some(known) => {
            if known.account_id != account_id {
                return Err((
                    "connection_point_id".into(),
                    format!("site {cp} belongs to another account"),
                ));
            }
            if let Some((first_territory, first_type)) = &known.from_file
                && (first_territory != territory
                    || *first_type != interconnection_type
                    || known.location != location)
            {
                return Err((
                    "connection_point_id".into(),
                    format!("site {cp} is described differently on an earlier row"),
                ));
            }
            (known.id.clone(), None)
        }
        None => {
            let site = Site {
                id: uuid::Uuid::now_v7().to_string(),
                account_id: account_id.clone(),
                connection_point_id: Some(cp.to_string()),
                territory: territory.to_string(),
                interconnection_type,
                address: opt(row.address),
                grid_location: location.clone(),
                created_at: now,
                updated_at: now,
            };
            check("site", &site)?;
            (site.id.clone(), Some(site))
        }
    };

    let new_meter = match opt(row.meter_mpid) {
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
    let new_meter = match new_meter {
        Some(mpid) => {
            let revenue_grade = match opt(row.meter_revenue_grade).as_deref() {
                None | Some("true") | Some("1") | Some("yes") => true,
                Some("false") | Some("0") | Some("no") => false,
                Some(other) => {
                    return Err((
                        "meter_revenue_grade".into(),
                        format!("'{other}' is not true/false"),
                    ));
                }
            };
            let interval_seconds = match opt(row.meter_interval_seconds) {
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
                mpid,
                revenue_grade,
                interval_seconds,
                created_at: now,
                updated_at: now,
            };
            check("meter", &m)?;
            Some(m)
        }
        None => None,
    };

    let der_class: DerClass = parse_enum("der_class", row.der_class)?;
    let status = match opt(row.status) {
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
        rated_kw: parse_num("rated_kw", row.rated_kw)?,
        storage_kwh: opt(row.storage_kwh)
            .map(|s| parse_num("storage_kwh", &s))
            .transpose()?,
        reserve_pct: opt(row.reserve_pct)
            .map(|s| parse_num("reserve_pct", &s))
            .transpose()?,
        status,
        aggregator_lfdi: opt(row.aggregator_lfdi),
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
    if ex.ders.contains(&key) {
        return Err((
            "serial".into(),
            format!(
                "a DER from {} with serial {} already exists",
                der.manufacturer, der.serial
            ),
        ));
    }

    // The row is valid: record it.
    ex.ders.insert(key);
    if let Some(acc) = new_account {
        ex.accounts
            .insert(acc.account_number.clone(), acc.id.clone());
        batch.accounts.push(acc);
    }
    if let Some(site) = new_site {
        ex.sites.insert(
            cp.to_string(),
            KnownSite {
                id: site.id.clone(),
                account_id: site.account_id.clone(),
                location: site.grid_location.clone(),
                from_file: Some((site.territory.clone(), site.interconnection_type)),
            },
        );
        batch.sites.push(site);
    }
    if let Some(m) = new_meter {
        ex.meters.insert(m.mpid.clone(), m.site_id.clone());
        batch.meters.push(m);
    }
    let location = &ex.sites[cp].location;
    for g in &ex.groups {
        if groups::matches_new_der(g, &der, location) {
            batch.members.push((g.id.clone(), der.id.clone()));
        }
    }
    batch.ders.push(der);
    Ok(())
}

/// Imports a CSV from `input`. Bad rows are listed in the report and then nothing is
/// written; an unusable header is an error.
///
/// Valid rows are written while later rows are still being read: a spawned writer task
/// inserts each [`Batch`] into the import's transaction, so parsing and SQLite's work run
/// on different cores. The first bad row stops the writing, reading goes on to report every
/// bad row, and the transaction is then rolled back, so a refused file leaves nothing.
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

    // What exists is read inside the import's transaction, so the groups whose
    // memberships are computed here are the ones the commit applies to.
    let mut tx = registry.store().begin_write().await?;
    let mut ex = load_existing(&mut tx).await?;
    let (to_writer, mut from_reader) = tokio::sync::mpsc::channel::<Batch>(2);
    let writer = tokio::spawn(async move {
        while let Some(batch) = from_reader.recv().await {
            batch.write(&mut tx).await?;
        }
        Ok::<_, StoreError>(tx)
    });

    let now = now_epoch();
    let mut report = ImportReport::default();
    let mut batch = Batch::default();
    let mut writer_gone = false;
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
        let outcome = match record.deserialize::<AssetRow<'_>>(Some(&headers)) {
            Ok(row) => build_row(&row, now, &mut ex, &mut batch),
            Err(e) => Err((String::new(), e.to_string())),
        };
        if let Err((column, reason)) = outcome {
            report.rejected.push(RejectedRow {
                line,
                column,
                reason,
            });
            // Nothing more will be written; keep reading only to report every bad row.
            batch = Batch::default();
        }
        if batch.ders.len() >= CHUNK_DERS && report.rejected.is_empty() && !writer_gone {
            count_created(&mut report, &batch);
            writer_gone = to_writer.send(std::mem::take(&mut batch)).await.is_err();
            // Let the writer pick the batch up now, also on a single-threaded runtime.
            tokio::task::yield_now().await;
        }
        if writer_gone {
            // The writer failed; its error is returned below.
            break;
        }
    }
    if report.rejected.is_empty() && !writer_gone {
        if let Some(p) = progress {
            p.set_message("all rows valid; finishing the writes");
            p.enable_steady_tick(std::time::Duration::from_millis(200));
        }
        count_created(&mut report, &batch);
        writer_gone = to_writer.send(std::mem::take(&mut batch)).await.is_err();
    }
    drop(to_writer);
    let tx = match writer.await {
        Ok(written) => written?,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => return Err(ImportError::Interrupted),
    };
    debug_assert!(
        !writer_gone,
        "a writer that stopped early returned its error above"
    );
    if !report.rejected.is_empty() {
        tx.rollback().await?;
        report.accounts_created = 0;
        report.sites_created = 0;
        report.meters_created = 0;
        report.ders_created = 0;
        return Ok(report);
    }
    tx.commit().await?;
    // New DERs can join groups; caches derived from the registry must not outlive that.
    registry.announce_bulk_write("ders");
    Ok(report)
}

fn count_created(report: &mut ImportReport, batch: &Batch) {
    report.accounts_created += batch.accounts.len() as u64;
    report.sites_created += batch.sites.len() as u64;
    report.meters_created += batch.meters.len() as u64;
    report.ders_created += batch.ders.len() as u64;
}
