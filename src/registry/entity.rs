//! What the generic registry operations need to know about each record type: its API
//! names, list filters, validation, references to other records, unique keys, cross-record
//! rules, and the side effects of a write (group membership, the identity index).

use super::eligibility;
use super::groups;
use super::model::{Account, Der, Enrolment, Group, Identity, Meter, Program, Site};
use super::validate::{Checker, MAX_RATED_KW, MAX_STORAGE_KWH};
use super::{Registry, RegistryError};
use crate::domain::identity::Lfdi;
use crate::domain::{DerClass, EnrolmentStatus, IdentityKind};
use crate::store::record::{exists, get};
use crate::store::{Record, StoreError, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::AnyConnection;
use std::future::Future;
use utoipa::ToSchema;

/// A list filter: `?param=value` selects rows whose `column` equals the value.
pub struct Filter {
    pub param: &'static str,
    pub column: &'static str,
    /// Rejects values that can never match (an unknown enum name), so a typo gets a 400
    /// instead of an empty list.
    pub check: fn(&str) -> Result<(), String>,
}

fn any_text(_: &str) -> Result<(), String> {
    Ok(())
}

fn enum_value<T: std::str::FromStr>(v: &str) -> Result<(), String>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>().map(|_| ()).map_err(|e| e.to_string())
}

/// A filter on the column of the same name that accepts any text.
pub const fn text_filter(name: &'static str) -> Filter {
    Filter {
        param: name,
        column: name,
        check: any_text,
    }
}

/// A field that names another record, which must exist.
pub struct Reference {
    pub field: &'static str,
    pub table: &'static str,
    /// What the referenced record is called in messages.
    pub kind: &'static str,
    pub key_column: &'static str,
    pub value: String,
}

/// Fields whose values must be unique across a table.
pub struct UniqueKey {
    pub field: &'static str,
    pub columns: Vec<(&'static str, Value)>,
}

/// A registry record type served by the generic operations and routes.
pub trait Entity: Record + Clone + Serialize + DeserializeOwned + ToSchema {
    /// Singular name used in messages ("site").
    const NAME: &'static str;
    /// Collection path segment in the API ("sites").
    const COLLECTION: &'static str;
    /// List filters.
    const FILTERS: &'static [Filter];

    fn set_key(&mut self, key: String);

    /// The canonical form of a key given in a request (LFDIs are stored in upper case).
    fn canonical_key(key: &str) -> String {
        key.to_string()
    }
    fn set_times(&mut self, created_at: i64, updated_at: i64);
    fn created_at(&self) -> i64;

    /// Derives server-computed fields before validation.
    fn prepare(&mut self) -> Result<(), RegistryError> {
        Ok(())
    }

    /// Field rules that need no other record.
    fn validate(&self, c: &mut Checker);

    /// Other records this one points at.
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }

    /// Unique keys besides the primary key.
    fn unique_keys(&self) -> Vec<UniqueKey> {
        Vec::new()
    }

    /// Rules that read other records (eligibility, the kind of a referenced identity).
    fn check<'a>(
        &'a self,
        _conn: &'a mut AnyConnection,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send + 'a {
        async { Ok(()) }
    }

    /// Last adjustments to a new record inside its transaction, after the server set its
    /// times (e.g. making creation order strict where precedence depends on it).
    fn before_insert<'a>(
        &'a mut self,
        _conn: &'a mut AnyConnection,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send + 'a {
        async { Ok(()) }
    }

    /// Refuses a delete that would leave dangling references the schema cannot express.
    fn check_delete<'a>(
        _conn: &'a mut AnyConnection,
        _key: &'a str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send + 'a {
        async { Ok(()) }
    }

    /// Records that must stay visible after deletion (IEEE 2030.5 serves deleted controls
    /// as Cancelled) return the tombstoned form here; DELETE then stores it instead of
    /// removing the row.
    fn tombstone(&self, _now: i64) -> Option<Self> {
        None
    }

    /// Rules about what an update may change (some records are immutable once published).
    fn check_change(_old: &Self, _new: &Self) -> Result<(), RegistryError> {
        Ok(())
    }

    /// Side effects inside the write's transaction.
    fn after_write<'a>(
        _conn: &'a mut AnyConnection,
        _old: Option<&'a Self>,
        _new: Option<&'a Self>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
        async { Ok(()) }
    }

    /// Side effects after the transaction committed (in-memory indexes).
    fn after_commit(_registry: &Registry, _old: Option<&Self>, _new: Option<&Self>) {}
}

/// Gives a record keyed by a 2030.5-style mRID its key: a fresh random 128-bit one when the
/// client left it empty, and always in upper case, the form 2030.5 serves and lookups use.
pub fn assign_mrid(id: &mut String) {
    if id.is_empty() {
        *id = uuid::Uuid::new_v4().simple().to_string();
    }
    id.make_ascii_uppercase();
}

/// Implements the bookkeeping accessors every record has in the same shape.
macro_rules! common_accessors {
    ($key:ident) => {
        fn set_key(&mut self, key: String) {
            self.$key = key;
        }
        fn set_times(&mut self, created_at: i64, updated_at: i64) {
            self.created_at = created_at;
            self.updated_at = updated_at;
        }
        fn created_at(&self) -> i64 {
            self.created_at
        }
    };
}
pub(crate) use common_accessors;

impl Entity for Account {
    const NAME: &'static str = "account";
    const COLLECTION: &'static str = "accounts";
    const FILTERS: &'static [Filter] = &[
        text_filter("account_number"),
        Filter {
            param: "kind",
            column: "kind",
            check: enum_value::<crate::domain::AccountKind>,
        },
    ];
    common_accessors!(id);

    fn validate(&self, c: &mut Checker) {
        c.ident("id", &self.id);
        c.text("account_number", &self.account_number);
        c.opt_text("subscriber_id", self.subscriber_id.as_deref());
        c.text("name", &self.name);
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey {
            field: "account_number",
            columns: vec![("account_number", self.account_number.clone().into())],
        }]
    }
}

fn check_grid_location(c: &mut Checker, g: &crate::domain::GridLocation) {
    c.opt_text("grid_location.substation", g.substation.as_deref());
    c.opt_text("grid_location.feeder", g.feeder.as_deref());
    c.opt_text("grid_location.feeder_section", g.feeder_section.as_deref());
    c.opt_text("grid_location.transformer", g.transformer.as_deref());
}

impl Entity for Site {
    const NAME: &'static str = "site";
    const COLLECTION: &'static str = "sites";
    const FILTERS: &'static [Filter] = &[
        text_filter("account_id"),
        text_filter("connection_point_id"),
        text_filter("territory"),
        Filter {
            param: "interconnection_type",
            column: "interconnection_type",
            check: enum_value::<crate::domain::InterconnectionType>,
        },
        text_filter("substation"),
        text_filter("feeder"),
        text_filter("feeder_section"),
        text_filter("transformer"),
    ];
    common_accessors!(id);

    fn validate(&self, c: &mut Checker) {
        c.ident("id", &self.id);
        if let Some(cp) = &self.connection_point_id
            && (cp.is_empty() || cp.len() > 32 || !cp.chars().all(|ch| ch.is_ascii_alphanumeric()))
        {
            c.fail(
                "connection_point_id",
                "an NMI or MPID is 1-32 letters and digits",
            );
        }
        c.text("territory", &self.territory);
        c.opt_text("address", self.address.as_deref());
        check_grid_location(c, &self.grid_location);
    }

    fn references(&self) -> Vec<Reference> {
        vec![Reference {
            field: "account_id",
            table: "accounts",
            kind: "account",
            key_column: "id",
            value: self.account_id.clone(),
        }]
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        match &self.connection_point_id {
            Some(cp) => vec![UniqueKey {
                field: "connection_point_id",
                columns: vec![("connection_point_id", cp.clone().into())],
            }],
            None => Vec::new(),
        }
    }

    async fn after_write(
        conn: &mut AnyConnection,
        old: Option<&Self>,
        new: Option<&Self>,
    ) -> Result<(), StoreError> {
        // Only a moved site changes topology groups; a new site has no DERs yet.
        if let (Some(old), Some(new)) = (old, new)
            && old.grid_location != new.grid_location
        {
            groups::refresh_site(conn, &new.id).await?;
        }
        Ok(())
    }
}

impl Entity for Meter {
    const NAME: &'static str = "meter";
    const COLLECTION: &'static str = "meters";
    const FILTERS: &'static [Filter] = &[text_filter("site_id"), text_filter("mpid")];
    common_accessors!(id);

    fn validate(&self, c: &mut Checker) {
        c.ident("id", &self.id);
        c.text("mpid", &self.mpid);
        let i = self.interval_seconds;
        if !(1..=86_400).contains(&i) || 86_400 % i != 0 {
            c.fail(
                "interval_seconds",
                format!("must divide a day evenly (60, 300, 900, 1800, 3600, ...), got {i}"),
            );
        }
    }

    fn references(&self) -> Vec<Reference> {
        vec![Reference {
            field: "site_id",
            table: "sites",
            kind: "site",
            key_column: "id",
            value: self.site_id.clone(),
        }]
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey {
            field: "mpid",
            columns: vec![("mpid", self.mpid.clone().into())],
        }]
    }
}

impl Entity for Der {
    const NAME: &'static str = "DER";
    const COLLECTION: &'static str = "ders";
    const FILTERS: &'static [Filter] = &[
        text_filter("site_id"),
        Filter {
            param: "der_class",
            column: "der_class",
            check: enum_value::<DerClass>,
        },
        Filter {
            param: "status",
            column: "status",
            check: enum_value::<crate::domain::DerStatus>,
        },
        text_filter("manufacturer"),
        text_filter("aggregator_lfdi"),
    ];
    common_accessors!(id);

    fn prepare(&mut self) -> Result<(), RegistryError> {
        if let Some(l) = &self.aggregator_lfdi {
            self.aggregator_lfdi = Some(l.to_ascii_uppercase());
        }
        Ok(())
    }

    fn validate(&self, c: &mut Checker) {
        c.ident("id", &self.id);
        c.text("manufacturer", &self.manufacturer);
        c.text("model", &self.model);
        c.text("serial", &self.serial);
        if self.rated_kw.is_nan() || self.rated_kw <= 0.0 {
            c.fail(
                "rated_kw",
                format!("must be greater than 0, got {}", self.rated_kw),
            );
        } else {
            c.range("rated_kw", self.rated_kw, 0.0, MAX_RATED_KW);
        }
        if let Some(kwh) = self.storage_kwh {
            c.range("storage_kwh", kwh, 0.0, MAX_STORAGE_KWH);
        } else if self.der_class == DerClass::Battery {
            c.fail("storage_kwh", "is required for a battery");
        }
        if let Some(r) = self.reserve_pct {
            c.range("reserve_pct", r, 0.0, 100.0);
        }
        if let Some(l) = &self.aggregator_lfdi
            && let Err(e) = l.parse::<Lfdi>()
        {
            c.fail("aggregator_lfdi", e.to_string());
        }
    }

    fn references(&self) -> Vec<Reference> {
        let mut refs = vec![Reference {
            field: "site_id",
            table: "sites",
            kind: "site",
            key_column: "id",
            value: self.site_id.clone(),
        }];
        if let Some(l) = &self.aggregator_lfdi {
            refs.push(Reference {
                field: "aggregator_lfdi",
                table: "identities",
                kind: "identity",
                key_column: "lfdi",
                value: l.clone(),
            });
        }
        refs
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey {
            field: "serial",
            columns: vec![
                ("manufacturer", self.manufacturer.clone().into()),
                ("serial", self.serial.clone().into()),
            ],
        }]
    }

    async fn check(&self, conn: &mut AnyConnection) -> Result<(), RegistryError> {
        if let Some(l) = &self.aggregator_lfdi {
            let ident: Option<Identity> = get(conn, l).await?;
            if ident.map(|i| i.kind) != Some(IdentityKind::Aggregator) {
                return Err(RegistryError::invalid(
                    "aggregator_lfdi",
                    "names an identity that is not an aggregator",
                ));
            }
        }
        Ok(())
    }

    async fn after_write(
        conn: &mut AnyConnection,
        _old: Option<&Self>,
        new: Option<&Self>,
    ) -> Result<(), StoreError> {
        // Deleted DERs leave their groups through ON DELETE CASCADE.
        if let Some(new) = new {
            groups::refresh_der(conn, &new.id).await?;
        }
        Ok(())
    }
}

impl Entity for Identity {
    const NAME: &'static str = "identity";
    const COLLECTION: &'static str = "identities";
    const FILTERS: &'static [Filter] = &[
        Filter {
            param: "kind",
            column: "kind",
            check: enum_value::<IdentityKind>,
        },
        text_filter("der_id"),
    ];
    common_accessors!(lfdi);

    fn canonical_key(key: &str) -> String {
        key.to_ascii_uppercase()
    }

    fn prepare(&mut self) -> Result<(), RegistryError> {
        if let Some(pem) = &self.certificate_pem {
            let der = certificate_der_from_pem(pem)
                .map_err(|reason| RegistryError::invalid("certificate_pem", reason))?;
            let from_cert = Lfdi::from_certificate_der(&der);
            if !self.lfdi.is_empty() && !self.lfdi.eq_ignore_ascii_case(&from_cert.to_hex()) {
                return Err(RegistryError::invalid(
                    "lfdi",
                    format!(
                        "does not match the certificate, whose LFDI is {}",
                        from_cert.to_hex()
                    ),
                ));
            }
            self.lfdi = from_cert.to_hex();
        }
        if self.lfdi.is_empty() {
            return Err(RegistryError::invalid(
                "lfdi",
                "give the LFDI or the certificate_pem it is derived from",
            ));
        }
        let lfdi: Lfdi =
            self.lfdi
                .parse()
                .map_err(|e: crate::domain::identity::IdentityError| {
                    RegistryError::invalid("lfdi", e.to_string())
                })?;
        self.lfdi = lfdi.to_hex();
        self.sfdi = lfdi.sfdi().value();
        Ok(())
    }

    fn validate(&self, c: &mut Checker) {
        match (self.kind, &self.der_id) {
            (IdentityKind::Device, None) => c.fail("der_id", "is required for a device identity"),
            (IdentityKind::Aggregator, Some(_)) => c.fail(
                "der_id",
                "must be absent for an aggregator; set aggregator_lfdi on its DERs instead",
            ),
            _ => {}
        }
        c.opt_text("description", self.description.as_deref());
    }

    fn references(&self) -> Vec<Reference> {
        self.der_id
            .iter()
            .map(|d| Reference {
                field: "der_id",
                table: "ders",
                kind: "DER",
                key_column: "id",
                value: d.clone(),
            })
            .collect()
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey {
            field: "sfdi",
            columns: vec![("sfdi", (self.sfdi as i64).into())],
        }]
    }

    async fn check_delete(conn: &mut AnyConnection, key: &str) -> Result<(), RegistryError> {
        if exists(conn, "ders", &[("aggregator_lfdi", key.into())], None).await? {
            return Err(RegistryError::InUse {
                kind: "identity",
                key: key.to_string(),
                detail: "DERs still name this aggregator in aggregator_lfdi".into(),
            });
        }
        Ok(())
    }

    fn after_commit(registry: &Registry, old: Option<&Self>, new: Option<&Self>) {
        if let Some(old) = old {
            registry.identities().remove(&old.lfdi);
        }
        if let Some(new) = new {
            registry.identities().insert(new);
        }
    }
}

/// Extracts the DER bytes of the first certificate in a PEM text.
pub fn certificate_der_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("is not a PEM certificate: {e}"))?;
    if parsed.label != "CERTIFICATE" {
        return Err(format!("holds a '{}', not a CERTIFICATE", parsed.label));
    }
    x509_parser::parse_x509_certificate(&parsed.contents)
        .map_err(|e| format!("is not a valid X.509 certificate: {e}"))?;
    Ok(parsed.contents)
}

impl Entity for Program {
    const NAME: &'static str = "program";
    const COLLECTION: &'static str = "programs";
    const FILTERS: &'static [Filter] = &[text_filter("name")];
    common_accessors!(id);

    fn validate(&self, c: &mut Checker) {
        c.ident("id", &self.id);
        c.text("name", &self.name);
        c.opt_text("description", self.description.as_deref());
        for (i, t) in self.eligible_territories.iter().enumerate() {
            c.text(&format!("eligible_territories[{i}]"), t);
        }
        if let Some(m) = self.min_rated_kw {
            c.range("min_rated_kw", m, 0.0, MAX_RATED_KW);
        }
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey {
            field: "name",
            columns: vec![("name", self.name.clone().into())],
        }]
    }
}

impl Entity for Enrolment {
    const NAME: &'static str = "enrolment";
    const COLLECTION: &'static str = "enrolments";
    const FILTERS: &'static [Filter] = &[
        text_filter("program_id"),
        text_filter("der_id"),
        Filter {
            param: "status",
            column: "status",
            check: enum_value::<EnrolmentStatus>,
        },
    ];
    common_accessors!(id);

    fn validate(&self, c: &mut Checker) {
        c.ident("id", &self.id);
    }

    fn references(&self) -> Vec<Reference> {
        vec![
            Reference {
                field: "program_id",
                table: "programs",
                kind: "program",
                key_column: "id",
                value: self.program_id.clone(),
            },
            Reference {
                field: "der_id",
                table: "ders",
                kind: "DER",
                key_column: "id",
                value: self.der_id.clone(),
            },
        ]
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey {
            field: "der_id",
            columns: vec![
                ("program_id", self.program_id.clone().into()),
                ("der_id", self.der_id.clone().into()),
            ],
        }]
    }

    async fn check(&self, conn: &mut AnyConnection) -> Result<(), RegistryError> {
        if self.status != EnrolmentStatus::Enrolled {
            return Ok(());
        }
        // References were checked just before, in the same transaction.
        let program: Program = get(conn, &self.program_id)
            .await?
            .ok_or_else(|| RegistryError::invalid("program_id", "does not exist"))?;
        let der: Der = get(conn, &self.der_id)
            .await?
            .ok_or_else(|| RegistryError::invalid("der_id", "does not exist"))?;
        let site: Site = get(conn, &der.site_id)
            .await?
            .ok_or_else(|| RegistryError::invalid("der_id", "DER has no site"))?;
        eligibility::check(&program, &der, &site).map_err(|reasons| RegistryError::Ineligible {
            program: program.name.clone(),
            reasons,
        })
    }

    async fn after_write(
        conn: &mut AnyConnection,
        old: Option<&Self>,
        new: Option<&Self>,
    ) -> Result<(), StoreError> {
        if let Some(old) = old {
            groups::refresh_der(conn, &old.der_id).await?;
        }
        if let Some(new) = new
            && old.map(|o| o.der_id.as_str()) != Some(new.der_id.as_str())
        {
            groups::refresh_der(conn, &new.der_id).await?;
        }
        Ok(())
    }
}

impl Entity for Group {
    const NAME: &'static str = "group";
    const COLLECTION: &'static str = "groups";
    const FILTERS: &'static [Filter] = &[
        text_filter("name"),
        Filter {
            param: "der_class",
            column: "der_class",
            check: enum_value::<DerClass>,
        },
        text_filter("program_id"),
        text_filter("substation"),
        text_filter("feeder"),
    ];
    common_accessors!(id);

    fn validate(&self, c: &mut Checker) {
        c.ident("id", &self.id);
        c.text("name", &self.name);
        check_grid_location(c, &self.grid_location);
        let g = &self.grid_location;
        if self.der_class.is_none()
            && self.program_id.is_none()
            && g.substation.is_none()
            && g.feeder.is_none()
            && g.feeder_section.is_none()
            && g.transformer.is_none()
        {
            c.fail(
                "der_class",
                "a group needs at least one criterion: der_class, program_id or a grid_location level",
            );
        }
    }

    fn references(&self) -> Vec<Reference> {
        self.program_id
            .iter()
            .map(|p| Reference {
                field: "program_id",
                table: "programs",
                kind: "program",
                key_column: "id",
                value: p.clone(),
            })
            .collect()
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey {
            field: "name",
            columns: vec![("name", self.name.clone().into())],
        }]
    }

    async fn after_write(
        conn: &mut AnyConnection,
        _old: Option<&Self>,
        new: Option<&Self>,
    ) -> Result<(), StoreError> {
        if let Some(new) = new {
            groups::refresh_group(conn, &new.id).await?;
        }
        Ok(())
    }
}
