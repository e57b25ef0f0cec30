//! The registry's records: accounts, sites, meters, DERs, certificate identities, programs,
//! enrolments and groups, with their table mappings.
//!
//! These are engine types. The operator API serializes them as JSON directly because that
//! API is ours; protocol adapters (2030.5, OpenADR) translate to and from their own wire types.

use crate::domain::{
    AccountKind, DerClass, DerStatus, EnrolmentStatus, EpochSeconds, GridLocation, IdentityKind,
    InterconnectionType,
};
use crate::store::record::{float, int, opt_float, opt_text, parsed, text};
use crate::store::{Record, StoreError, Value};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use utoipa::ToSchema;

/// A customer or subscriber account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Server-assigned when omitted on create.
    #[serde(default)]
    pub id: String,
    /// The utility's account number; unique.
    pub account_number: String,
    /// Subscriber id where the utility distinguishes it from the account.
    #[serde(default)]
    pub subscriber_id: Option<String>,
    pub name: String,
    pub kind: AccountKind,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for Account {
    const TABLE: &'static str = "accounts";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "account_number",
        "subscriber_id",
        "name",
        "kind",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn values(&self) -> Vec<Value> {
        self.clone().into_values()
    }
    // Bulk inserts hand records over, so the strings move into the statement.
    fn into_values(self) -> Vec<Value> {
        vec![
            self.id.into(),
            self.account_number.into(),
            self.subscriber_id.into(),
            self.name.into(),
            self.kind.as_str().into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Account {
            id: text(row, "id")?,
            account_number: text(row, "account_number")?,
            subscriber_id: opt_text(row, "subscriber_id")?,
            name: text(row, "name")?,
            kind: parsed(row, "kind")?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

/// A connection point to the grid: one NMI (Australia) or MPID, in one utility territory,
/// at one place in the network topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    #[serde(default)]
    pub id: String,
    pub account_id: String,
    /// NMI or MPID of the connection point; unique when present.
    #[serde(default)]
    pub connection_point_id: Option<String>,
    /// Utility territory (service area) code.
    pub territory: String,
    pub interconnection_type: InterconnectionType,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub grid_location: GridLocation,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for Site {
    const TABLE: &'static str = "sites";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "account_id",
        "connection_point_id",
        "territory",
        "interconnection_type",
        "address",
        "substation",
        "feeder",
        "feeder_section",
        "transformer",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn values(&self) -> Vec<Value> {
        self.clone().into_values()
    }
    // Bulk inserts hand records over, so the strings move into the statement.
    fn into_values(self) -> Vec<Value> {
        let g = self.grid_location;
        vec![
            self.id.into(),
            self.account_id.into(),
            self.connection_point_id.into(),
            self.territory.into(),
            self.interconnection_type.as_str().into(),
            self.address.into(),
            g.substation.into(),
            g.feeder.into(),
            g.feeder_section.into(),
            g.transformer.into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Site {
            id: text(row, "id")?,
            account_id: text(row, "account_id")?,
            connection_point_id: opt_text(row, "connection_point_id")?,
            territory: text(row, "territory")?,
            interconnection_type: parsed(row, "interconnection_type")?,
            address: opt_text(row, "address")?,
            grid_location: GridLocation {
                substation: opt_text(row, "substation")?,
                feeder: opt_text(row, "feeder")?,
                feeder_section: opt_text(row, "feeder_section")?,
                transformer: opt_text(row, "transformer")?,
            },
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

/// A meter at a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Meter {
    #[serde(default)]
    pub id: String,
    pub site_id: String,
    /// Meter point id; unique.
    pub mpid: String,
    /// Revenue-grade meters are the ones settlement may use.
    pub revenue_grade: bool,
    /// Interval length of the meter's register reads, in seconds.
    pub interval_seconds: i64,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for Meter {
    const TABLE: &'static str = "meters";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "site_id",
        "mpid",
        "revenue_grade",
        "interval_seconds",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn values(&self) -> Vec<Value> {
        self.clone().into_values()
    }
    // Bulk inserts hand records over, so the strings move into the statement.
    fn into_values(self) -> Vec<Value> {
        vec![
            self.id.into(),
            self.site_id.into(),
            self.mpid.into(),
            self.revenue_grade.into(),
            self.interval_seconds.into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Meter {
            id: text(row, "id")?,
            site_id: text(row, "site_id")?,
            mpid: text(row, "mpid")?,
            revenue_grade: int(row, "revenue_grade")? != 0,
            interval_seconds: int(row, "interval_seconds")?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

/// A distributed energy resource at a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Der {
    #[serde(default)]
    pub id: String,
    pub site_id: String,
    pub der_class: DerClass,
    pub manufacturer: String,
    pub model: String,
    /// Unique per manufacturer.
    pub serial: String,
    /// Rated (nameplate) power in kW.
    pub rated_kw: f64,
    /// Usable storage energy in kWh (batteries, EV chargers with V2G).
    #[serde(default)]
    pub storage_kwh: Option<f64>,
    /// State-of-charge reserve the dispatcher must leave, in percent.
    #[serde(default)]
    pub reserve_pct: Option<f64>,
    pub status: DerStatus,
    /// LFDI of the aggregator identity that manages this device, if any.
    #[serde(default)]
    pub aggregator_lfdi: Option<String>,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for Der {
    const TABLE: &'static str = "ders";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "site_id",
        "der_class",
        "manufacturer",
        "model",
        "serial",
        "rated_kw",
        "storage_kwh",
        "reserve_pct",
        "status",
        "aggregator_lfdi",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn values(&self) -> Vec<Value> {
        self.clone().into_values()
    }
    // Bulk inserts hand records over, so the strings move into the statement.
    fn into_values(self) -> Vec<Value> {
        vec![
            self.id.into(),
            self.site_id.into(),
            self.der_class.as_str().into(),
            self.manufacturer.into(),
            self.model.into(),
            self.serial.into(),
            self.rated_kw.into(),
            self.storage_kwh.into(),
            self.reserve_pct.into(),
            self.status.as_str().into(),
            self.aggregator_lfdi.into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Der {
            id: text(row, "id")?,
            site_id: text(row, "site_id")?,
            der_class: parsed(row, "der_class")?,
            manufacturer: text(row, "manufacturer")?,
            model: text(row, "model")?,
            serial: text(row, "serial")?,
            rated_kw: float(row, "rated_kw")?,
            storage_kwh: opt_float(row, "storage_kwh")?,
            reserve_pct: opt_float(row, "reserve_pct")?,
            status: parsed(row, "status")?,
            aggregator_lfdi: opt_text(row, "aggregator_lfdi")?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

/// A certificate identity (IEEE 2030.5 LFDI/SFDI) bound to a device or an aggregator.
///
/// On create, either `certificate_pem` is given (the LFDI is then computed from it, which is
/// the only trustworthy source) or `lfdi` alone for out-of-band registration of a
/// certificate the utility has not seen yet. The SFDI is always derived from the LFDI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// 40 hexadecimal characters; derived from `certificate_pem` when that is given.
    #[serde(default)]
    pub lfdi: String,
    /// Derived from the LFDI.
    #[serde(default)]
    #[schema(read_only)]
    pub sfdi: u64,
    pub kind: IdentityKind,
    /// The DER this device certificate speaks for (device identities only).
    #[serde(default)]
    pub der_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// PEM of the device's certificate, when known.
    #[serde(default)]
    pub certificate_pem: Option<String>,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for Identity {
    const TABLE: &'static str = "identities";
    const KEY: &'static str = "lfdi";
    const COLUMNS: &'static [&'static str] = &[
        "lfdi",
        "sfdi",
        "kind",
        "der_id",
        "description",
        "certificate_pem",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.lfdi
    }
    fn values(&self) -> Vec<Value> {
        vec![
            self.lfdi.clone().into(),
            // SFDIs are at most 12 decimal digits, far inside i64.
            (self.sfdi as i64).into(),
            self.kind.as_str().into(),
            self.der_id.clone().into(),
            self.description.clone().into(),
            self.certificate_pem.clone().into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Identity {
            lfdi: text(row, "lfdi")?,
            sfdi: int(row, "sfdi")? as u64,
            kind: parsed(row, "kind")?,
            der_id: opt_text(row, "der_id")?,
            description: opt_text(row, "description")?,
            certificate_pem: opt_text(row, "certificate_pem")?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

/// A demand-response or flexibility program with its eligibility rules. An empty list means
/// "no restriction" for that rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Program {
    #[serde(default)]
    pub id: String,
    /// Unique.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub eligible_territories: Vec<String>,
    #[serde(default)]
    pub eligible_classes: Vec<DerClass>,
    #[serde(default)]
    pub eligible_interconnections: Vec<InterconnectionType>,
    /// Smallest rated power (kW) a DER must have to enrol.
    #[serde(default)]
    pub min_rated_kw: Option<f64>,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

fn json_list<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T, StoreError> {
    serde_json::from_str(&text(row, col)?).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn to_json_text<T: Serialize>(v: &T) -> Value {
    // Serializing a Vec of strings or closed enums cannot fail.
    Value::Text(Some(
        serde_json::to_string(v).unwrap_or_else(|_| "[]".into()),
    ))
}

impl Record for Program {
    const TABLE: &'static str = "programs";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "name",
        "description",
        "eligible_territories",
        "eligible_classes",
        "eligible_interconnections",
        "min_rated_kw",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn values(&self) -> Vec<Value> {
        vec![
            self.id.clone().into(),
            self.name.clone().into(),
            self.description.clone().into(),
            to_json_text(&self.eligible_territories),
            to_json_text(&self.eligible_classes),
            to_json_text(&self.eligible_interconnections),
            self.min_rated_kw.into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Program {
            id: text(row, "id")?,
            name: text(row, "name")?,
            description: opt_text(row, "description")?,
            eligible_territories: json_list(row, "eligible_territories")?,
            eligible_classes: json_list(row, "eligible_classes")?,
            eligible_interconnections: json_list(row, "eligible_interconnections")?,
            min_rated_kw: opt_float(row, "min_rated_kw")?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

fn default_enrolled() -> EnrolmentStatus {
    EnrolmentStatus::Enrolled
}

/// A DER's enrolment in a program. Eligibility is checked whenever the status is `enrolled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    #[serde(default)]
    pub id: String,
    pub program_id: String,
    pub der_id: String,
    #[serde(default = "default_enrolled")]
    pub status: EnrolmentStatus,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for Enrolment {
    const TABLE: &'static str = "enrolments";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "program_id",
        "der_id",
        "status",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn values(&self) -> Vec<Value> {
        vec![
            self.id.clone().into(),
            self.program_id.clone().into(),
            self.der_id.clone().into(),
            self.status.as_str().into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Enrolment {
            id: text(row, "id")?,
            program_id: text(row, "program_id")?,
            der_id: text(row, "der_id")?,
            status: parsed(row, "status")?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

/// A group of DERs defined by criteria that must all hold: a DER class, an enrolled
/// program, and/or a place in the grid topology. Membership is recomputed by the registry
/// whenever any input to the criteria changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    #[serde(default)]
    pub id: String,
    /// Unique.
    pub name: String,
    #[serde(default)]
    pub der_class: Option<DerClass>,
    #[serde(default)]
    pub program_id: Option<String>,
    #[serde(default)]
    pub grid_location: GridLocation,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for Group {
    const TABLE: &'static str = "der_groups";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "name",
        "der_class",
        "program_id",
        "substation",
        "feeder",
        "feeder_section",
        "transformer",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn values(&self) -> Vec<Value> {
        let g = &self.grid_location;
        vec![
            self.id.clone().into(),
            self.name.clone().into(),
            Value::Text(self.der_class.map(|c| c.as_str().to_string())),
            self.program_id.clone().into(),
            g.substation.clone().into(),
            g.feeder.clone().into(),
            g.feeder_section.clone().into(),
            g.transformer.clone().into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let der_class = opt_text(row, "der_class")?
            .map(|s| s.parse::<DerClass>())
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Group {
            id: text(row, "id")?,
            name: text(row, "name")?,
            der_class,
            program_id: opt_text(row, "program_id")?,
            grid_location: GridLocation {
                substation: opt_text(row, "substation")?,
                feeder: opt_text(row, "feeder")?,
                feeder_section: opt_text(row, "feeder_section")?,
                transformer: opt_text(row, "transformer")?,
            },
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

/// What a group adds up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupAggregate {
    pub group_id: String,
    pub der_count: i64,
    /// Sum of member DERs' rated power, kW.
    pub rated_kw: f64,
    /// Sum of member DERs' storage energy, kWh.
    pub storage_kwh: f64,
}
