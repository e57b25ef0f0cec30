//! The IEEE 2030.5 metering mirror function set: devices (and aggregators for their
//! devices) create MirrorUsagePoints and post MirrorMeterReadings, whose readings become
//! telemetry [`Reading`]s in SI units.
//!
//! Routes: `GET /mup` (the caller's usage points), `POST /mup` (create, or update the one
//! with that mRID, redefining its MirrorMeterReadings as posted), `GET /mup/{id}`,
//! `POST /mup/{id}` (a `MirrorMeterReading` or a `MirrorMeterReadingList`) and
//! `DELETE /mup/{id}`.
//!
//! Ownership comes from the certificate: a usage point belongs to an EndDevice, which for a
//! device certificate is its own (the body's `deviceLFDI` must be the certificate's LFDI)
//! and for an aggregator certificate one of the EndDevices it registered. Anyone else gets
//! 404. An mRID that an EndDevice the caller does not see already uses is refused (409):
//! mRIDs are global in 2030.5. The operator sees and deletes usage points through the
//! registry entity [`MirrorUsagePointRecord`] (`/api/v1/mirror-usage-points`), sets their
//! postRate and clears a device's usage points (`api::mirror`).
//!
//! Units: a reading's value is `value × 10^powerOfTenMultiplier` in the unit of its
//! ReadingType's `uom`; [`channel`] maps the unit (and flow direction) to a
//! [`Measurand`]. Units the engine has no measurand for are refused with 400, and the whole
//! document with them: a post is stored completely or not at all.

use super::convert::mrid_for;
use super::model::{
    MirrorMeterReading, MirrorMeterReadingList, MirrorUsagePoint, MirrorUsagePointList,
    Reading as WireReading, ReadingType, SepResource,
};
use super::records::EndDeviceRecord;
use super::server::{
    Caller, ListQuery, Result, Sep2Error, Sep2State, body_bytes, caller, enabled_end_device,
    read_xml, refuse_withdrawn, sees, visible_end_device, visible_end_devices, xml,
};
use super::tls::PeerIdentity;
use super::xml::{self as codec, XmlError};
use crate::domain::identity::Lfdi;
use crate::domain::{EpochSeconds, now_epoch};
use crate::registry::RegistryError;
use crate::registry::entity::{Entity, Filter, Reference, UniqueKey, text_filter};
use crate::registry::validate::Checker;
use crate::store::record::{dynamic, int, opt_text, text};
use crate::store::{Backend, Record, StoreError, Value};
use crate::telemetry::{self, Measurand, Quality, Reading, SourceKind, TelemetryError};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;
use utoipa::ToSchema;

/// Routes of this function set.
pub fn routes() -> Router<Sep2State> {
    Router::new()
        .route("/mup", get(list).post(create))
        .route("/mup/{mup}", get(read).post(post_readings).delete(remove))
}

/// A MirrorUsagePoint as stored. Its id is derived from the owning EndDevice's LFDI and
/// the mRID ([`mup_id`]), so posting the same mRID again finds the same usage point, and
/// readings keep their source id if the operator deletes it and the device creates it
/// anew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MirrorUsagePointRecord {
    /// 32 hexadecimal characters; also the telemetry source id of its readings.
    #[schema(read_only)]
    pub id: String,
    /// The EndDevice it belongs to (its SFDI).
    pub end_device_id: String,
    /// LFDI of that EndDevice, from the certificate or the aggregator's registration.
    pub device_lfdi: String,
    /// The mRID the client gave it (upper-case hex).
    pub mrid: String,
    #[serde(default)]
    pub description: Option<String>,
    /// 2030.5 roleFlags (hex bitmap: bit 0 mirror, 1 premises aggregation point, 3 DER, ...).
    pub role_flags: String,
    /// 2030.5 ServiceKind (0 electricity).
    pub service_category_kind: u8,
    /// 0 off, 1 on.
    pub status: u8,
    /// postRate served on this usage point, seconds, as the operator set it
    /// (`PUT /api/v1/mirror-usage-points/{id}/post-rate`); absent: the deployment's
    /// `sep2.post_rate_seconds`.
    #[serde(default)]
    #[schema(read_only)]
    pub post_rate: Option<u32>,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for MirrorUsagePointRecord {
    const TABLE: &'static str = "sep2_mirror_usage_points";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "end_device_id",
        "device_lfdi",
        "mrid",
        "description",
        "role_flags",
        "service_category_kind",
        "status",
        "post_rate",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn values(&self) -> Vec<Value> {
        vec![
            self.id.clone().into(),
            self.end_device_id.clone().into(),
            self.device_lfdi.clone().into(),
            self.mrid.clone().into(),
            self.description.clone().into(),
            self.role_flags.clone().into(),
            i64::from(self.service_category_kind).into(),
            i64::from(self.status).into(),
            Value::Int(self.post_rate.map(i64::from)),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> std::result::Result<Self, StoreError> {
        let byte = |col: &str| -> std::result::Result<u8, StoreError> {
            u8::try_from(int(row, col)?).map_err(|_| StoreError::Corrupt(col.to_string()))
        };
        Ok(MirrorUsagePointRecord {
            id: text(row, "id")?,
            end_device_id: text(row, "end_device_id")?,
            device_lfdi: text(row, "device_lfdi")?,
            mrid: text(row, "mrid")?,
            description: opt_text(row, "description")?,
            role_flags: text(row, "role_flags")?,
            service_category_kind: byte("service_category_kind")?,
            status: byte("status")?,
            post_rate: row
                .try_get::<Option<i64>, _>("post_rate")?
                .map(|r| u32::try_from(r).map_err(|_| StoreError::Corrupt("post_rate".into())))
                .transpose()?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

/// Served read-and-delete in the operator API (see `api::resources::register_read_delete`):
/// usage points are created by devices over 2030.5, the operator clears them.
impl Entity for MirrorUsagePointRecord {
    const NAME: &'static str = "mirror usage point";
    const COLLECTION: &'static str = "mirror-usage-points";
    const FILTERS: &'static [Filter] = &[
        text_filter("end_device_id"),
        text_filter("device_lfdi"),
        text_filter("mrid"),
    ];

    crate::registry::entity::common_accessors!(id);

    fn canonical_key(key: &str) -> String {
        key.to_ascii_uppercase()
    }

    fn validate(&self, c: &mut Checker) {
        c.opt_text("description", self.description.as_deref());
        if let Err(e) = self.device_lfdi.parse::<Lfdi>() {
            c.fail("device_lfdi", e.to_string());
        }
        if self.post_rate == Some(0) {
            c.fail("post_rate", "must be at least 1 second".to_string());
        }
    }

    fn references(&self) -> Vec<Reference> {
        vec![Reference {
            field: "end_device_id",
            table: "sep2_end_devices",
            kind: "end device",
            key_column: "id",
            value: self.end_device_id.clone(),
        }]
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey {
            field: "mrid",
            columns: vec![
                ("device_lfdi", self.device_lfdi.clone().into()),
                ("mrid", self.mrid.clone().into()),
            ],
        }]
    }
}

/// The id of the usage point with `mrid` belonging to the EndDevice with `lfdi` (both in
/// canonical upper-case hex).
pub fn mup_id(lfdi: &str, mrid: &str) -> String {
    mrid_for(&format!("mup:{lfdi}:{mrid}"))
}

/// Why a ReadingType cannot be mapped to a measurand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// A unit code the engine has no measurand for.
    #[error(
        "uom {0} is not supported; supported units are 38 (W), 63 (var), 72 (Wh), 29 (V) and 33 (Hz)"
    )]
    UnknownUom(u8),
    /// No unit, and a kind that does not imply one.
    #[error(
        "the ReadingType names no unit (uom 0 or absent) and kind {0} does not imply one; give uom 38 (W), 63 (var), 72 (Wh), 29 (V) or 33 (Hz)"
    )]
    NoUnit(u8),
    /// A flowDirection code outside FlowDirectionType.
    #[error("flowDirection {0} is not defined (0 not applicable, 1 forward, 19 reverse)")]
    UnknownFlowDirection(u8),
    /// Energy needs a direction to be import or export.
    #[error(
        "uom 72 (Wh) needs flowDirection 1 (forward: imported) or 19 (reverse: exported), got {0}"
    )]
    EnergyWithoutDirection(u8),
    /// Energy that is not a cumulative register.
    #[error(
        "uom 72 (Wh) with accumulationBehaviour {0} is not supported; post the cumulative register (3)"
    )]
    EnergyAccumulation(u8),
}

/// What the readings of one MirrorMeterReading measure, derived from its ReadingType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// The engine's measurand, which fixes the SI unit.
    pub measurand: Measurand,
    /// `powerOfTenMultiplier`, applied to every value.
    pub power_of_ten: i8,
    /// True for power measured in the reverse direction (flowDirection 19): the values
    /// count export as positive and are negated into the engine's import-positive sign.
    pub reversed: bool,
    /// The 2030.5 PhaseCode, 0 when the reading is not per phase.
    pub phase: u8,
}

impl Channel {
    /// A wire value (`Reading.value`) in the measurand's SI unit.
    pub fn si_value(&self, raw: i64) -> f64 {
        let p = i32::from(self.power_of_ten);
        // Dividing by an exact power of ten rounds once; multiplying by 10^-p (itself
        // inexact) would round twice, and 1234 × 10^-3 would not come out as 1.234.
        let scaled = if p >= 0 {
            raw as f64 * 10f64.powi(p)
        } else {
            raw as f64 / 10f64.powi(-p)
        };
        if self.reversed { -scaled } else { scaled }
    }

    /// The telemetry source id of this channel's readings within usage point `mup_id`.
    /// Per-phase readings get their own series, or phase B would be taken for a duplicate
    /// of phase A at the same instant.
    pub fn source_id(&self, mup_id: &str) -> String {
        if self.phase == 0 {
            mup_id.to_string()
        } else {
            format!("{mup_id}/phase-{}", self.phase)
        }
    }
}

/// Maps a ReadingType to the measurand its readings carry.
///
/// - uom 38 (W) and 63 (var) are active and reactive power; flowDirection 19 (reverse)
///   flips the sign so that import stays positive.
/// - uom 72 (Wh) is a cumulative energy register: flowDirection 1 (forward, delivered to
///   the customer) is energy imported, 19 (reverse) energy exported. Interval (delta)
///   energy is refused rather than mixed into the register series.
/// - uom 29 (V) is voltage, 33 (Hz) frequency.
/// - uom 0 or absent takes the unit from kind: 37 (power) is W, 12 (energy) Wh.
/// - Anything else is refused, naming the code.
pub fn channel(rt: &ReadingType) -> std::result::Result<Channel, UnitError> {
    let flow = rt.flow_direction.unwrap_or(0);
    if !matches!(flow, 0 | 1 | 19) {
        return Err(UnitError::UnknownFlowDirection(flow));
    }
    let uom = match rt.uom.unwrap_or(0) {
        0 => match rt.kind.unwrap_or(0) {
            37 => 38,
            12 => 72,
            kind => return Err(UnitError::NoUnit(kind)),
        },
        uom => uom,
    };
    let (measurand, reversed) = match uom {
        38 => (Measurand::ActivePower, flow == 19),
        63 => (Measurand::ReactivePower, flow == 19),
        72 => {
            // 3 cumulative and 9 summation are running registers; absent or 0 (not
            // applicable) is read as the register, the common case for meters.
            let accumulation = rt.accumulation_behaviour.unwrap_or(0);
            if !matches!(accumulation, 0 | 3 | 9) {
                return Err(UnitError::EnergyAccumulation(accumulation));
            }
            match flow {
                1 => (Measurand::EnergyImported, false),
                19 => (Measurand::EnergyExported, false),
                other => return Err(UnitError::EnergyWithoutDirection(other)),
            }
        }
        29 => (Measurand::Voltage, false),
        33 => (Measurand::Frequency, false),
        other => return Err(UnitError::UnknownUom(other)),
    };
    Ok(Channel {
        measurand,
        power_of_ten: rt.power_of_ten_multiplier.unwrap_or(0),
        reversed,
        phase: rt.phase.unwrap_or(0),
    })
}

/// qualityFlags bits (2030.5 ReadingBase).
const MANUALLY_EDITED: u16 = 1 << 1;
const ESTIMATED_REFERENCE_DAY: u16 = 1 << 2;
const ESTIMATED_INTERPOLATION: u16 = 1 << 3;
const QUESTIONABLE: u16 = 1 << 4;
const PROJECTED: u16 = 1 << 6;

/// Maps a 2030.5 qualityFlags bitmap (hex) to the engine's quality. The worst applicable
/// flag wins: questionable (failed a check) over manually edited over estimated or
/// projected; "valid" and "derived" alone, or no flags, are measured values.
pub fn quality(flags: Option<&str>) -> std::result::Result<Quality, String> {
    let Some(flags) = flags.map(str::trim) else {
        return Ok(Quality::Measured);
    };
    let bits = (!flags.is_empty() && flags.len() <= 4)
        .then(|| u16::from_str_radix(flags, 16).ok())
        .flatten()
        .ok_or_else(|| format!("qualityFlags '{flags:.8}' is not a 16-bit hex bitmap"))?;
    Ok(if bits & QUESTIONABLE != 0 {
        Quality::OutOfRange
    } else if bits & MANUALLY_EDITED != 0 {
        Quality::Substituted
    } else if bits & (ESTIMATED_REFERENCE_DAY | ESTIMATED_INTERPOLATION | PROJECTED) != 0 {
        Quality::Estimated
    } else {
        Quality::Measured
    })
}

/// The telemetry readings a posted MirrorMeterReading carries: its `Reading` and the
/// readings of its `MirrorReadingSet`s. A reading's instant is its timePeriod start; a
/// lone Reading without one takes the MirrorMeterReading's lastUpdateTime, and a reading of
/// a set without one takes its place in the set (set start + index × intervalLength).
pub fn readings_of(
    mmr: &MirrorMeterReading,
    rt: &ReadingType,
    channel: &Channel,
    mup_id: &str,
) -> std::result::Result<Vec<Reading>, String> {
    let source_id = channel.source_id(mup_id);
    let convert = |r: &WireReading, instant: EpochSeconds, what: &str| {
        let raw = r.value.ok_or_else(|| format!("{what} has no value"))?;
        // Reading.value is an Int48 in 2030.5; anything wider is not a reading.
        const INT48_MAX: i64 = (1 << 47) - 1;
        if !(-INT48_MAX - 1..=INT48_MAX).contains(&raw) {
            return Err(format!(
                "{what}: value {raw} does not fit the 48-bit range of Reading.value"
            ));
        }
        let quality = quality(r.quality_flags.as_deref()).map_err(|e| format!("{what}: {e}"))?;
        Ok::<_, String>(Reading {
            source_id: source_id.clone(),
            source_kind: SourceKind::Sep2Mirror,
            measurand: channel.measurand,
            instant,
            value: channel.si_value(raw),
            quality,
        })
    };
    let mut out = Vec::new();
    if let Some(r) = &mmr.reading {
        let instant = r
            .time_period
            .map(|tp| tp.start)
            .or(mmr.last_update_time)
            .ok_or("the Reading has no timePeriod and the MirrorMeterReading no lastUpdateTime")?;
        out.push(convert(r, instant, "the Reading")?);
    }
    let interval = rt.interval_length.filter(|l| *l > 0).map(i64::from);
    for set in &mmr.mirror_reading_sets {
        for (i, r) in set.readings.iter().enumerate() {
            let what = format!("Reading {i} of MirrorReadingSet {:.32}", set.m_rid);
            let instant = match (r.time_period, interval) {
                (Some(tp), _) => tp.start,
                (None, Some(len)) => set.time_period.start.saturating_add(i as i64 * len),
                (None, None) if set.readings.len() == 1 => set.time_period.start,
                (None, None) => {
                    return Err(format!(
                        "{what} has no timePeriod and the ReadingType no intervalLength"
                    ));
                }
            };
            out.push(convert(r, instant, &what)?);
        }
    }
    Ok(out)
}

impl From<TelemetryError> for Sep2Error {
    fn from(e: TelemetryError) -> Self {
        if e.is_invalid_input() {
            Sep2Error::BadRequest(e.to_string())
        } else {
            Sep2Error::Internal(e.to_string())
        }
    }
}

/// A 2030.5 mRID (HexBinary128) in canonical upper case, or 400 naming `field`.
pub(crate) fn canonical_mrid(field: &str, value: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty()
        || v.len() > 32
        || !v.len().is_multiple_of(2)
        || !v.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(Sep2Error::BadRequest(format!(
            "{field} '{v:.40}' is not an mRID: 2 to 32 hexadecimal digits, an even number of them"
        )));
    }
    Ok(v.to_ascii_uppercase())
}

/// The EndDevice a posted usage point belongs to. A device certificate may name only its
/// own LFDI; an aggregator certificate one of the EndDevices it registered. Either way the
/// EndDevice must be registered and enabled.
async fn owning_end_device(
    state: &Sep2State,
    caller: &Caller,
    device_lfdi: &str,
) -> Result<EndDeviceRecord> {
    let lfdi = device_lfdi
        .trim()
        .parse::<Lfdi>()
        .map_err(|e| Sep2Error::BadRequest(format!("deviceLFDI: {e}")))?
        .to_hex();
    if !caller.aggregator && lfdi != caller.lfdi {
        return Err(Sep2Error::BadRequest(format!(
            "deviceLFDI {lfdi} is not the LFDI of this client's certificate ({})",
            caller.lfdi
        )));
    }
    let ed = state
        .registry
        .list::<EndDeviceRecord>(&[("lfdi", lfdi.clone().into())], None, 1)
        .await?
        .items
        .pop();
    match ed {
        // The same answer whether the EndDevice is unknown or someone else's, so that
        // an aggregator cannot probe for other parties' devices.
        Some(ed) if sees(caller, &ed) => {
            if !ed.enabled {
                return Err(Sep2Error::Forbidden("this EndDevice is disabled".into()));
            }
            Ok(ed)
        }
        _ => Err(Sep2Error::BadRequest(format!(
            "deviceLFDI {lfdi} names no EndDevice registered by this client; register it at /edev first"
        ))),
    }
}

/// Checks the usage point fields of a posted document and builds the record to store.
fn record_from(
    posted: &MirrorUsagePoint,
    ed: &EndDeviceRecord,
    now: EpochSeconds,
) -> Result<MirrorUsagePointRecord> {
    let mrid = canonical_mrid("mRID", &posted.m_rid)?;
    if let Some(d) = &posted.description
        && d.chars().count() > 32
    {
        return Err(Sep2Error::BadRequest(
            "description has more than 32 characters".into(),
        ));
    }
    let flags = posted.role_flags.trim();
    if !matches!(flags.len(), 2 | 4) || !flags.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Sep2Error::BadRequest(format!(
            "roleFlags '{flags:.8}' is not a 16-bit hex bitmap (2 or 4 hexadecimal digits)"
        )));
    }
    // Readings are mapped to electrical measurands; gas, water and heat usage points
    // would only ever have their readings refused.
    if posted.service_category_kind != 0 {
        return Err(Sep2Error::BadRequest(format!(
            "serviceCategoryKind {} is not supported; only 0 (electricity) is mirrored",
            posted.service_category_kind
        )));
    }
    Ok(MirrorUsagePointRecord {
        id: mup_id(&ed.lfdi, &mrid),
        end_device_id: ed.id.clone(),
        device_lfdi: ed.lfdi.clone(),
        mrid,
        description: posted.description.clone(),
        role_flags: flags.to_ascii_uppercase(),
        service_category_kind: posted.service_category_kind,
        status: posted.status,
        post_rate: None,
        created_at: now,
        updated_at: now,
    })
}

/// A MirrorMeterReading as stored: what it measures, never its readings.
struct StoredMeterReading {
    mrid: String,
    description: Option<String>,
    reading_type: ReadingType,
}

async fn stored_meter_readings(
    conn: &mut AnyConnection,
    mup: &str,
) -> Result<Vec<StoredMeterReading>> {
    let rows = sqlx::query(
        "SELECT mrid, description, reading_type FROM sep2_mirror_meter_readings WHERE mup_id = $1 ORDER BY mrid",
    )
    .bind(mup.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let reading_type = serde_json::from_str(&text(row, "reading_type")?)
                .map_err(|e| StoreError::Corrupt(format!("reading_type: {e}")))?;
            Ok(StoredMeterReading {
                mrid: text(row, "mrid")?,
                description: opt_text(row, "description")?,
                reading_type,
            })
        })
        .collect()
}

/// Whether `mrid` is already used by a usage point (`what = Usage`) or a
/// MirrorMeterReading (`what = Meter`) of an EndDevice that `caller_lfdi` does not see.
/// mRIDs identify a resource globally in 2030.5; letting a second party take one another
/// party uses would put two parties' meters under one identifier.
///
/// Check-then-insert is made safe per backend: SQLite write transactions already hold the
/// database write lock (`Store::begin_write`); on PostgreSQL a transaction-scoped advisory
/// lock on the mRID makes two first claims of one mRID wait for each other.
async fn claimed_by_another(
    conn: &mut AnyConnection,
    backend: Backend,
    what: MridOf,
    mrid: &str,
    caller_lfdi: &str,
) -> Result<bool> {
    if backend == Backend::Postgres {
        // Selected through a subquery: the Any driver cannot describe pg's `void` type.
        sqlx::query(
            "SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext('sep2-mrid:' || $1))) AS l",
        )
        .bind(mrid.to_string())
        .execute(&mut *conn)
        .await?;
    }
    let sql = match what {
        MridOf::Usage => {
            "SELECT 1 FROM sep2_mirror_usage_points m JOIN sep2_end_devices e ON e.id = m.end_device_id \
             WHERE m.mrid = $1 AND e.lfdi <> $2 AND COALESCE(e.owner_lfdi, '') <> $2 LIMIT 1"
        }
        MridOf::Meter => {
            "SELECT 1 FROM sep2_mirror_meter_readings r JOIN sep2_mirror_usage_points m ON m.id = r.mup_id \
             JOIN sep2_end_devices e ON e.id = m.end_device_id \
             WHERE r.mrid = $1 AND e.lfdi <> $2 AND COALESCE(e.owner_lfdi, '') <> $2 LIMIT 1"
        }
    };
    Ok(sqlx::query(sql)
        .bind(mrid.to_string())
        .bind(caller_lfdi.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

/// Which kind of mirror resource an mRID names.
#[derive(Clone, Copy)]
enum MridOf {
    Usage,
    Meter,
}

/// How a post treats a ReadingType given for a MirrorMeterReading the usage point already
/// has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// A re-post of the whole MirrorUsagePoint (POST /mup): it defines the usage point, so
    /// a changed ReadingType or description replaces the stored one. Readings already
    /// stored keep their measurand; later ones follow the new ReadingType.
    Redefine,
    /// Readings posted to the usage point (POST /mup/{id}): what a MirrorMeterReading
    /// measures is fixed, and a different unit under its mRID is refused.
    Keep,
}

/// Stores the MirrorMeterReadings of a post (new ones, and with [`Existing::Redefine`]
/// changed ones) and their readings, on the caller's transaction. Every reading is checked
/// before the first is written, so an error leaves nothing behind once the caller drops the
/// transaction. Returns how many MirrorMeterReadings were created.
async fn apply_meter_readings(
    conn: &mut AnyConnection,
    backend: Backend,
    mup: &str,
    caller_lfdi: &str,
    posted: &[MirrorMeterReading],
    existing: Existing,
    now: EpochSeconds,
) -> Result<usize> {
    let mut known: HashMap<String, (Option<String>, ReadingType)> =
        stored_meter_readings(conn, mup)
            .await?
            .into_iter()
            .map(|m| (m.mrid, (m.description, m.reading_type)))
            .collect();
    let mut new_types: Vec<(String, Option<String>, ReadingType)> = Vec::new();
    let mut changed: Vec<(String, Option<String>, ReadingType)> = Vec::new();
    let mut readings = Vec::new();
    for mmr in posted {
        let mrid = canonical_mrid("MirrorMeterReading mRID", &mmr.m_rid)?;
        let refuse =
            |reason: String| Sep2Error::BadRequest(format!("MirrorMeterReading {mrid}: {reason}"));
        if mmr
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 32)
        {
            return Err(refuse("description has more than 32 characters".into()));
        }
        let rt = match (&mmr.reading_type, known.get(&mrid)) {
            (Some(new), Some((old_description, old))) => {
                let (a, b) = (channel(new), channel(old));
                let mut new = new.clone();
                new.href = None;
                match existing {
                    Existing::Redefine => {
                        a.map_err(|e| refuse(e.to_string()))?;
                        if &new != old || &mmr.description != old_description {
                            changed.push((mrid.clone(), mmr.description.clone(), new.clone()));
                            known.insert(mrid.clone(), (mmr.description.clone(), new.clone()));
                        }
                        new
                    }
                    // A different unit under the same mRID would corrupt its series.
                    Existing::Keep if a != b => {
                        return Err(refuse(
                            "its ReadingType cannot change here; post the MirrorUsagePoint again to redefine it, or use another mRID".into(),
                        ));
                    }
                    Existing::Keep => old.clone(),
                }
            }
            (Some(new), None) => {
                channel(new).map_err(|e| refuse(e.to_string()))?;
                if claimed_by_another(conn, backend, MridOf::Meter, &mrid, caller_lfdi).await? {
                    return Err(Sep2Error::Conflict(format!(
                        "MirrorMeterReading mRID {mrid} is already in use; choose another"
                    )));
                }
                let mut rt = new.clone();
                rt.href = None;
                known.insert(mrid.clone(), (mmr.description.clone(), rt.clone()));
                new_types.push((mrid.clone(), mmr.description.clone(), rt.clone()));
                rt
            }
            (None, Some((_, old))) => old.clone(),
            (None, None) => {
                return Err(refuse(
                    "it is new, so it needs a ReadingType saying what it measures".into(),
                ));
            }
        };
        let ch = channel(&rt).map_err(|e| refuse(e.to_string()))?;
        readings.extend(readings_of(mmr, &rt, &ch, mup).map_err(refuse)?);
    }
    for r in &readings {
        r.validate(now)?;
    }
    for (mrid, description, rt) in &new_types {
        let json = serde_json::to_string(rt)
            .map_err(|e| Sep2Error::Internal(format!("ReadingType: {e}")))?;
        sqlx::query(
            "INSERT INTO sep2_mirror_meter_readings (mup_id, mrid, description, reading_type, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (mup_id, mrid) DO NOTHING",
        )
        .bind(mup.to_string())
        .bind(mrid.clone())
        .bind(description.clone())
        .bind(json)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    for (mrid, description, rt) in &changed {
        let json = serde_json::to_string(rt)
            .map_err(|e| Sep2Error::Internal(format!("ReadingType: {e}")))?;
        sqlx::query(
            "UPDATE sep2_mirror_meter_readings SET description = $3, reading_type = $4 \
             WHERE mup_id = $1 AND mrid = $2",
        )
        .bind(mup.to_string())
        .bind(mrid.clone())
        .bind(description.clone())
        .bind(json)
        .execute(&mut *conn)
        .await?;
    }
    if !new_types.is_empty() || !changed.is_empty() {
        // New or redefined MirrorMeterReadings change the usage point's representation.
        sqlx::query("UPDATE sep2_mirror_usage_points SET updated_at = $2 WHERE id = $1")
            .bind(mup.to_string())
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    let outcome = telemetry::insert_in(conn, &readings, now).await?;
    tracing::debug!(
        mup,
        inserted = outcome.inserted,
        duplicates = outcome.duplicates,
        "mirror readings stored"
    );
    Ok(new_types.len())
}

/// The usage points of every EndDevice the caller sees, by id.
async fn visible_usage_points(
    state: &Sep2State,
    caller: &Caller,
) -> Result<Vec<MirrorUsagePointRecord>> {
    let columns: Vec<String> = MirrorUsagePointRecord::COLUMNS
        .iter()
        .map(|c| format!("m.{c}"))
        .collect();
    let sql = format!(
        "SELECT {} FROM sep2_mirror_usage_points m JOIN sep2_end_devices e ON e.id = m.end_device_id \
         WHERE e.lfdi = $1 OR e.owner_lfdi = $1 ORDER BY m.id",
        columns.join(", ")
    );
    let rows = dynamic(sql)
        .bind(caller.lfdi.clone())
        .fetch_all(state.registry.store().pool())
        .await?;
    Ok(rows
        .iter()
        .map(MirrorUsagePointRecord::from_row)
        .collect::<std::result::Result<_, _>>()?)
}

/// How many usage points the caller sees (for the DeviceCapability's list link).
pub(crate) async fn visible_count(state: &Sep2State, caller: &Caller) -> Result<u32> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM sep2_mirror_usage_points m JOIN sep2_end_devices e ON e.id = m.end_device_id \
         WHERE e.lfdi = $1 OR e.owner_lfdi = $1",
    )
    .bind(caller.lfdi.clone())
    .fetch_one(state.registry.store().pool())
    .await?;
    Ok(row.try_get::<i64, _>(0)?.try_into().unwrap_or(u32::MAX))
}

/// A usage point the caller may see, with its EndDevice; 404 otherwise.
async fn visible_usage_point(
    state: &Sep2State,
    caller: &Caller,
    id: &str,
    need_enabled: bool,
) -> Result<MirrorUsagePointRecord> {
    let rec: MirrorUsagePointRecord = match state.registry.get(id).await {
        Ok(r) => r,
        Err(RegistryError::NotFound { .. }) => return Err(Sep2Error::NotFound),
        Err(e) => return Err(e.into()),
    };
    if need_enabled {
        enabled_end_device(state, caller, &rec.end_device_id).await?;
    } else {
        visible_end_device(state, caller, &rec.end_device_id).await?;
    }
    Ok(rec)
}

async fn usage_point_doc(
    state: &Sep2State,
    rec: &MirrorUsagePointRecord,
) -> Result<MirrorUsagePoint> {
    let mut conn = state.registry.store().pool().acquire().await?;
    let meter_readings = stored_meter_readings(&mut conn, &rec.id)
        .await?
        .into_iter()
        .map(|m| MirrorMeterReading {
            m_rid: m.mrid,
            description: m.description,
            reading_type: Some(m.reading_type),
            ..MirrorMeterReading::default()
        })
        .collect();
    Ok(MirrorUsagePoint {
        href: Some(format!("/mup/{}", rec.id)),
        m_rid: rec.mrid.clone(),
        description: rec.description.clone(),
        version: None,
        role_flags: rec.role_flags.clone(),
        service_category_kind: rec.service_category_kind,
        status: rec.status,
        device_lfdi: rec.device_lfdi.clone(),
        mirror_meter_readings: meter_readings,
        post_rate: Some(rec.post_rate.unwrap_or(state.settings.post_rate)),
    })
}

async fn list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let caller = caller(&state, &peer);
    if !caller.aggregator {
        refuse_withdrawn(&caller, &visible_end_devices(&state, &caller).await?)?;
    }
    let points: Vec<_> = visible_usage_points(&state, &caller)
        .await?
        .into_iter()
        .filter(|m| q.a.is_none_or(|a| m.updated_at > a))
        .collect();
    let (all, page) = q.window(points);
    let mut docs = Vec::with_capacity(page.len());
    for rec in &page {
        docs.push(usage_point_doc(&state, rec).await?);
    }
    xml(
        &state,
        &MirrorUsagePointList {
            href: Some("/mup".into()),
            all,
            results: docs.len() as u32,
            poll_rate: Some(state.poll_rate("MirrorUsagePointList").await?),
            mirror_usage_points: docs,
        },
    )
}

/// POST /mup: creates a usage point, with any MirrorMeterReadings (and readings) it
/// carries. Posting an mRID the EndDevice already has updates that usage point and
/// answers 204 with its Location instead of creating a second one.
async fn create(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let caller = caller(&state, &peer);
    let bytes = body_bytes(&state, body).await?;
    let posted: MirrorUsagePoint = read_xml(&state, &headers, &bytes)?;
    let ed = owning_end_device(&state, &caller, &posted.device_lfdi).await?;
    let now = now_epoch();
    let rec = record_from(&posted, &ed, now)?;

    let mut tx = state.registry.store().begin_write().await?;
    let backend = state.registry.store().backend();
    if claimed_by_another(&mut tx, backend, MridOf::Usage, &rec.mrid, &caller.lfdi).await? {
        return Err(Sep2Error::Conflict(format!(
            "MirrorUsagePoint mRID {} is already in use; choose another",
            rec.mrid
        )));
    }
    // ON CONFLICT rather than check-then-insert: two simultaneous first posts of the same
    // mRID must both end up at the one usage point.
    let placeholders: Vec<String> = (1..=MirrorUsagePointRecord::COLUMNS.len())
        .map(|i| format!("${i}"))
        .collect();
    let sql = format!(
        "INSERT INTO sep2_mirror_usage_points ({}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
        MirrorUsagePointRecord::COLUMNS.join(", "),
        placeholders.join(", ")
    );
    let mut insert = dynamic(sql);
    for v in rec.values() {
        insert = v.bind_to(insert);
    }
    let created = insert.execute(&mut *tx).await?.rows_affected() == 1;
    if !created {
        sqlx::query(
            "UPDATE sep2_mirror_usage_points SET description = $2, role_flags = $3, \
             service_category_kind = $4, status = $5, updated_at = $6 WHERE id = $1",
        )
        .bind(rec.id.clone())
        .bind(rec.description.clone())
        .bind(rec.role_flags.clone())
        .bind(i64::from(rec.service_category_kind))
        .bind(i64::from(rec.status))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    apply_meter_readings(
        &mut tx,
        backend,
        &rec.id,
        &caller.lfdi,
        &posted.mirror_meter_readings,
        Existing::Redefine,
        now,
    )
    .await?;
    tx.commit().await?;

    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    };
    Ok((status, [(header::LOCATION, format!("/mup/{}", rec.id))]).into_response())
}

async fn read(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
) -> Result<Response> {
    let rec = visible_usage_point(&state, &caller(&state, &peer), &id, false).await?;
    xml(&state, &usage_point_doc(&state, &rec).await?)
}

/// The MirrorMeterReadings of a POST to a usage point: one `MirrorMeterReading` or a
/// `MirrorMeterReadingList`, told apart by the root element.
fn read_meter_readings(
    state: &Sep2State,
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<Vec<MirrorMeterReading>> {
    match codec::decode::<MirrorMeterReading>(bytes, state.settings.body_limit) {
        Err(XmlError::WrongRoot { found, .. }) if found == MirrorMeterReadingList::ELEMENT => {
            Ok(read_xml::<MirrorMeterReadingList>(state, headers, bytes)?.mirror_meter_readings)
        }
        // Decoded again through read_xml, which also checks the content type and maps
        // every decoding error to its answer.
        _ => Ok(vec![read_xml::<MirrorMeterReading>(state, headers, bytes)?]),
    }
}

/// POST /mup/{id}: readings for a usage point. 201 with the usage point's Location when
/// the post created a MirrorMeterReading, 204 when it only added readings.
async fn post_readings(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let caller = caller(&state, &peer);
    let rec = visible_usage_point(&state, &caller, &id, true).await?;
    let bytes = body_bytes(&state, body).await?;
    let posted = read_meter_readings(&state, &headers, &bytes)?;
    let now = now_epoch();
    let mut tx = state.registry.store().begin_write().await?;
    let created = apply_meter_readings(
        &mut tx,
        state.registry.store().backend(),
        &rec.id,
        &caller.lfdi,
        &posted,
        Existing::Keep,
        now,
    )
    .await?;
    tx.commit().await?;
    if created > 0 {
        Ok((
            StatusCode::CREATED,
            [(header::LOCATION, format!("/mup/{}", rec.id))],
        )
            .into_response())
    } else {
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

/// DELETE /mup/{id}: removes the usage point and its MirrorMeterReadings. Readings already
/// stored stay in telemetry: they were measured whatever happens to the mirror.
async fn remove(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
) -> Result<Response> {
    let rec = visible_usage_point(&state, &caller(&state, &peer), &id, true).await?;
    state
        .registry
        .delete::<MirrorUsagePointRecord>(&rec.id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sep2::model::{DateTimeInterval, MirrorReadingSet};

    fn rt(uom: u8, p10: i8, flow: Option<u8>) -> ReadingType {
        ReadingType {
            uom: Some(uom),
            power_of_ten_multiplier: Some(p10),
            flow_direction: flow,
            ..ReadingType::default()
        }
    }

    #[test]
    fn units_map_to_measurands() {
        let cases = [
            (rt(38, 0, None), Measurand::ActivePower, false),
            (rt(38, 0, Some(19)), Measurand::ActivePower, true),
            (rt(63, 0, Some(1)), Measurand::ReactivePower, false),
            (rt(72, 0, Some(1)), Measurand::EnergyImported, false),
            (rt(72, 0, Some(19)), Measurand::EnergyExported, false),
            (rt(29, 0, None), Measurand::Voltage, false),
            (rt(33, 0, None), Measurand::Frequency, false),
        ];
        for (t, measurand, reversed) in cases {
            let c = channel(&t).unwrap();
            assert_eq!((c.measurand, c.reversed), (measurand, reversed), "{t:?}");
        }
        // Without a unit, the kind supplies it.
        let power = ReadingType {
            kind: Some(37),
            ..ReadingType::default()
        };
        assert_eq!(channel(&power).unwrap().measurand, Measurand::ActivePower);
        let energy = ReadingType {
            kind: Some(12),
            flow_direction: Some(19),
            ..ReadingType::default()
        };
        assert_eq!(
            channel(&energy).unwrap().measurand,
            Measurand::EnergyExported
        );
    }

    #[test]
    fn unmappable_units_are_refused_by_code() {
        assert_eq!(channel(&rt(61, 0, None)), Err(UnitError::UnknownUom(61)));
        assert!(
            UnitError::UnknownUom(61).to_string().contains("uom 61"),
            "the message names the code"
        );
        assert_eq!(channel(&ReadingType::default()), Err(UnitError::NoUnit(0)));
        assert_eq!(
            channel(&rt(72, 0, None)),
            Err(UnitError::EnergyWithoutDirection(0))
        );
        assert_eq!(
            channel(&rt(38, 0, Some(7))),
            Err(UnitError::UnknownFlowDirection(7))
        );
        let delta = ReadingType {
            accumulation_behaviour: Some(4),
            ..rt(72, 0, Some(1))
        };
        assert_eq!(channel(&delta), Err(UnitError::EnergyAccumulation(4)));
    }

    #[test]
    fn multipliers_scale_into_si() {
        let kw = channel(&rt(38, 3, None)).unwrap();
        assert_eq!(kw.si_value(5), 5000.0);
        let deci = channel(&rt(38, -1, None)).unwrap();
        assert_eq!(deci.si_value(15_000), 1500.0);
        let milli = channel(&rt(29, -3, None)).unwrap();
        assert_eq!(milli.si_value(230_125), 230.125);
        assert_eq!(milli.si_value(1234), 1.234);
        let export = channel(&rt(38, 0, Some(19))).unwrap();
        assert_eq!(export.si_value(1200), -1200.0);
        let kwh = channel(&rt(72, 3, Some(1))).unwrap();
        assert_eq!(kwh.si_value(12_345), 12_345_000.0);
        // Extreme multipliers do not overflow the exponent arithmetic.
        assert_eq!(channel(&rt(33, -128, None)).unwrap().si_value(0), 0.0);
        assert!(channel(&rt(33, 127, None)).unwrap().si_value(1).is_finite());
    }

    #[test]
    fn phases_get_their_own_series() {
        let mut t = rt(29, 0, None);
        assert_eq!(channel(&t).unwrap().source_id("M"), "M");
        t.phase = Some(64);
        assert_eq!(channel(&t).unwrap().source_id("M"), "M/phase-64");
    }

    #[test]
    fn quality_flags_map_worst_first() {
        assert_eq!(quality(None), Ok(Quality::Measured));
        assert_eq!(quality(Some("01")), Ok(Quality::Measured));
        assert_eq!(quality(Some("0008")), Ok(Quality::Estimated));
        assert_eq!(quality(Some("02")), Ok(Quality::Substituted));
        assert_eq!(quality(Some("12")), Ok(Quality::OutOfRange));
        assert!(quality(Some("xyz")).is_err());
        assert!(quality(Some("12345")).is_err());
    }

    #[test]
    fn readings_take_their_instants_from_the_document() {
        let t = ReadingType {
            interval_length: Some(300),
            ..rt(38, 0, None)
        };
        let ch = channel(&t).unwrap();
        let value = |v: i64| WireReading {
            value: Some(v),
            ..WireReading::default()
        };
        let mmr = MirrorMeterReading {
            m_rid: "01".into(),
            last_update_time: Some(1_700_000_900),
            reading: Some(value(5)),
            mirror_reading_sets: vec![MirrorReadingSet {
                m_rid: "02".into(),
                time_period: DateTimeInterval::new(1_700_000_000, 900),
                readings: vec![
                    value(1),
                    value(2),
                    WireReading {
                        time_period: Some(DateTimeInterval::new(1_700_000_777, 300)),
                        ..value(3)
                    },
                ],
                ..MirrorReadingSet::default()
            }],
            ..MirrorMeterReading::default()
        };
        let got: Vec<(i64, f64)> = readings_of(&mmr, &t, &ch, "M")
            .unwrap()
            .iter()
            .map(|r| (r.instant, r.value))
            .collect();
        assert_eq!(
            got,
            [
                (1_700_000_900, 5.0),
                (1_700_000_000, 1.0),
                (1_700_000_300, 2.0),
                (1_700_000_777, 3.0)
            ]
        );
        // No value, or no way to tell when: refused, naming the reading.
        let mut bad = mmr.clone();
        bad.reading = Some(WireReading::default());
        assert!(
            readings_of(&bad, &t, &ch, "M")
                .unwrap_err()
                .contains("no value")
        );
        let mut bad = mmr;
        bad.last_update_time = None;
        assert!(
            readings_of(&bad, &t, &ch, "M")
                .unwrap_err()
                .contains("lastUpdateTime")
        );
    }

    #[test]
    fn mrids_are_checked_and_canonical() {
        assert_eq!(canonical_mrid("mRID", " ab01 ").unwrap(), "AB01");
        for bad in ["", "ABC", "XYZ0", &"00".repeat(17)] {
            assert!(canonical_mrid("mRID", bad).is_err(), "{bad}");
        }
        assert_eq!(mup_id("L", "M"), mup_id("L", "M"));
        assert_ne!(mup_id("L", "M"), mup_id("K", "M"));
    }
}
