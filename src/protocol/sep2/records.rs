//! What the 2030.5 server stores of its own: EndDevices and the DER information clients
//! PUT. EndDevices are registry records too, so the operator API can register one out of
//! band (with a PIN), bind it to a DER or site, and enable or disable its access.

use crate::domain::EpochSeconds;
use crate::domain::identity::Lfdi;
use crate::registry::RegistryError;
use crate::registry::entity::{
    Entity, Filter, Reference, UniqueKey, certificate_der_from_pem, text_filter,
};
use crate::registry::validate::Checker;
use crate::store::record::{int, opt_text, text};
use crate::store::{Record, Store, StoreError, Value};
use crate::telemetry::{self, Reading, TelemetryError};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

/// An IEEE 2030.5 EndDevice. Its id is its SFDI, which is what its URL carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndDeviceRecord {
    /// The SFDI in decimal; derived from the LFDI.
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    /// 40 hexadecimal characters; derived from `certificate_pem` when that is given.
    #[serde(default)]
    pub lfdi: String,
    #[serde(default)]
    #[schema(read_only)]
    pub sfdi: u64,
    /// Certificate for out-of-band registration; only its LFDI is kept.
    #[serde(default, skip_serializing)]
    pub certificate_pem: Option<String>,
    /// The aggregator whose certificate registered (and may see) this EndDevice.
    #[serde(default)]
    pub owner_lfdi: Option<String>,
    #[serde(default)]
    pub der_id: Option<String>,
    #[serde(default)]
    pub site_id: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Registration PIN (2030.5 pIN, up to 6 digits incl. check digit).
    #[serde(default)]
    pub pin: Option<u32>,
    #[serde(default)]
    pub device_category: Option<String>,
    #[serde(default)]
    #[schema(read_only)]
    pub changed_time: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

fn yes() -> bool {
    true
}

impl Record for EndDeviceRecord {
    const TABLE: &'static str = "sep2_end_devices";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "lfdi",
        "sfdi",
        "owner_lfdi",
        "der_id",
        "site_id",
        "enabled",
        "pin",
        "device_category",
        "changed_time",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn values(&self) -> Vec<Value> {
        vec![
            self.id.clone().into(),
            self.lfdi.clone().into(),
            (self.sfdi as i64).into(),
            self.owner_lfdi.clone().into(),
            self.der_id.clone().into(),
            self.site_id.clone().into(),
            self.enabled.into(),
            Value::Int(self.pin.map(i64::from)),
            self.device_category.clone().into(),
            self.changed_time.into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(EndDeviceRecord {
            id: text(row, "id")?,
            lfdi: text(row, "lfdi")?,
            sfdi: int(row, "sfdi")? as u64,
            certificate_pem: None,
            owner_lfdi: opt_text(row, "owner_lfdi")?,
            der_id: opt_text(row, "der_id")?,
            site_id: opt_text(row, "site_id")?,
            enabled: int(row, "enabled")? != 0,
            pin: row.try_get::<Option<i64>, _>("pin")?.map(|p| p as u32),
            device_category: opt_text(row, "device_category")?,
            changed_time: int(row, "changed_time")?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

impl Entity for EndDeviceRecord {
    const NAME: &'static str = "end device";
    const COLLECTION: &'static str = "end-devices";
    const FILTERS: &'static [Filter] = &[
        text_filter("lfdi"),
        text_filter("owner_lfdi"),
        text_filter("der_id"),
        text_filter("site_id"),
    ];

    fn set_key(&mut self, key: String) {
        self.id = key;
    }
    fn set_times(&mut self, created_at: i64, updated_at: i64) {
        self.created_at = created_at;
        self.updated_at = updated_at;
        // Any change to an EndDevice is a change clients may need to notice.
        self.changed_time = updated_at;
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }

    fn prepare(&mut self) -> Result<(), RegistryError> {
        if let Some(pem) = self.certificate_pem.take() {
            let der = certificate_der_from_pem(&pem)
                .map_err(|reason| RegistryError::invalid("certificate_pem", reason))?;
            let from_cert = Lfdi::from_certificate_der(&der).to_hex();
            if !self.lfdi.is_empty() && !self.lfdi.eq_ignore_ascii_case(&from_cert) {
                return Err(RegistryError::invalid(
                    "lfdi",
                    format!("does not match the certificate, whose LFDI is {from_cert}"),
                ));
            }
            self.lfdi = from_cert;
        }
        let lfdi: Lfdi =
            self.lfdi
                .parse()
                .map_err(|e: crate::domain::identity::IdentityError| {
                    RegistryError::invalid("lfdi", e.to_string())
                })?;
        self.lfdi = lfdi.to_hex();
        self.sfdi = lfdi.sfdi().value();
        self.id = self.sfdi.to_string();
        if let Some(o) = &self.owner_lfdi {
            self.owner_lfdi = Some(o.to_ascii_uppercase());
        }
        Ok(())
    }

    fn validate(&self, c: &mut Checker) {
        if self.pin.is_some_and(|p| p > 999_999) {
            c.fail("pin", "a registration PIN has at most 6 digits");
        }
        if let Some(Err(e)) = self.owner_lfdi.as_ref().map(|o| o.parse::<Lfdi>()) {
            c.fail("owner_lfdi", e.to_string());
        }
        c.opt_text("device_category", self.device_category.as_deref());
    }

    fn references(&self) -> Vec<Reference> {
        let mut refs = Vec::new();
        if let Some(d) = &self.der_id {
            refs.push(Reference {
                field: "der_id",
                table: "ders",
                kind: "DER",
                key_column: "id",
                value: d.clone(),
            });
        }
        if let Some(s) = &self.site_id {
            refs.push(Reference {
                field: "site_id",
                table: "sites",
                kind: "site",
                key_column: "id",
                value: s.clone(),
            });
        }
        refs
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey {
            field: "lfdi",
            columns: vec![("lfdi", self.lfdi.clone().into())],
        }]
    }
}

/// The documents a client writes about itself and its DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerResource {
    Capability,
    Settings,
    Status,
    Availability,
    DeviceInformation,
    ConnectionPoint,
}

impl DerResource {
    /// The path segment (and stored kind) of the resource.
    pub fn segment(self) -> &'static str {
        match self {
            DerResource::Capability => "dercap",
            DerResource::Settings => "derg",
            DerResource::Status => "ders",
            DerResource::Availability => "dera",
            DerResource::DeviceInformation => "di",
            DerResource::ConnectionPoint => "cp",
        }
    }
}

/// Stores the canonical XML of a DER resource for an EndDevice (replacing the previous one),
/// with the telemetry `readings` it carries in the same transaction.
pub async fn put_der_resource(
    store: &Store,
    end_device: &str,
    kind: DerResource,
    body: &str,
    now: EpochSeconds,
    readings: &[Reading],
) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    sqlx::query("DELETE FROM sep2_der_resources WHERE end_device_id = $1 AND kind = $2")
        .bind(end_device.to_string())
        .bind(kind.segment())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sep2_der_resources (end_device_id, kind, body, updated_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(end_device.to_string())
    .bind(kind.segment())
    .bind(body.to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    telemetry::insert_in(&mut tx, readings, now)
        .await
        .map_err(|e| match e {
            TelemetryError::Store(e) => e,
            // The caller passes only validated readings; anything else is a bug upstream.
            other => StoreError::Corrupt(format!("DER readings refused: {other}")),
        })?;
    tx.commit().await?;
    Ok(())
}

/// The stored XML of a DER resource, if the client has written it.
pub async fn get_der_resource(
    store: &Store,
    end_device: &str,
    kind: DerResource,
) -> Result<Option<String>, StoreError> {
    let row =
        sqlx::query("SELECT body FROM sep2_der_resources WHERE end_device_id = $1 AND kind = $2")
            .bind(end_device.to_string())
            .bind(kind.segment())
            .fetch_optional(store.pool())
            .await?;
    Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
}
