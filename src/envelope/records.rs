//! Stored control programs, controls and default controls, as the utility creates them
//! through the operator API, and the query that gathers what applies to a site or DER and
//! asks [`limits_in_force`] for the answer.
//!
//! A program targets one site, one DER or one registry group. Controls are immutable once
//! created except for cancellation (a changed control must be a new control, which
//! supersedes the old one, so every device sees the same history); deleting a control only
//! cancels it, because devices must still be able to see it as Cancelled.

use super::{
    Cancellation, Control, ControlId, ControlModes, DefaultControl, InForce, Program, ProgramId,
    limits_in_force,
};
use crate::domain::EpochSeconds;
use crate::registry::entity::{Entity, Filter, Reference, UniqueKey, text_filter};
use crate::registry::model::Der;
use crate::registry::validate::Checker;
use crate::registry::{Registry, RegistryError};
use crate::store::record::{dynamic, int, opt_text, text};
use crate::store::{Record, StoreError, Value};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

/// What a control program applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Site,
    Der,
    Group,
}

impl TargetKind {
    fn as_str(self) -> &'static str {
        match self {
            TargetKind::Site => "site",
            TargetKind::Der => "der",
            TargetKind::Group => "group",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "site" => Ok(TargetKind::Site),
            "der" => Ok(TargetKind::Der),
            "group" => Ok(TargetKind::Group),
            other => Err(StoreError::Corrupt(format!("target_kind '{other}'"))),
        }
    }
}

/// A program of operating-envelope controls (IEEE 2030.5 DERProgram).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlProgram {
    #[serde(default)]
    pub id: String,
    /// Unique.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Lower values take precedence (0 outranks 1), as in IEEE 2030.5.
    pub primacy: u8,
    pub target_kind: TargetKind,
    /// Id of the site, DER or group.
    pub target_id: String,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for ControlProgram {
    const TABLE: &'static str = "control_programs";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "name",
        "description",
        "primacy",
        "target_kind",
        "target_id",
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
            (self.primacy as i64).into(),
            self.target_kind.as_str().into(),
            self.target_id.clone().into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(ControlProgram {
            id: text(row, "id")?,
            name: text(row, "name")?,
            description: opt_text(row, "description")?,
            primacy: u8::try_from(int(row, "primacy")?)
                .map_err(|_| StoreError::Corrupt("primacy".into()))?,
            target_kind: TargetKind::parse(&text(row, "target_kind")?)?,
            target_id: text(row, "target_id")?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

impl Entity for ControlProgram {
    const NAME: &'static str = "control program";
    const COLLECTION: &'static str = "control-programs";
    const FILTERS: &'static [Filter] = &[text_filter("target_kind"), text_filter("target_id")];

    crate::registry::entity::common_accessors!(id);

    fn validate(&self, c: &mut Checker) {
        c.ident("id", &self.id);
        c.text("name", &self.name);
        c.opt_text("description", self.description.as_deref());
    }

    fn references(&self) -> Vec<Reference> {
        let (table, kind) = match self.target_kind {
            TargetKind::Site => ("sites", "site"),
            TargetKind::Der => ("ders", "DER"),
            TargetKind::Group => ("der_groups", "group"),
        };
        vec![Reference {
            field: "target_id",
            table,
            kind,
            key_column: "id",
            value: self.target_id.clone(),
        }]
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey {
            field: "name",
            columns: vec![("name", self.name.clone().into())],
        }]
    }
}

/// A time-bounded control (IEEE 2030.5 DERControl), with its modes in SI units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlRecord {
    /// The control's mRID: 32 hexadecimal characters, generated when omitted.
    #[serde(default)]
    pub id: String,
    pub program_id: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Scheduled start, epoch seconds.
    pub start: EpochSeconds,
    pub duration_s: u32,
    #[serde(default)]
    pub randomize_start_s: i32,
    #[serde(default)]
    pub randomize_duration_s: i32,
    pub modes: ControlModes,
    /// Whether devices must send Responses (2030.5 responseRequired bits 0-1).
    #[serde(default)]
    pub response_required: bool,
    /// When the control was cancelled or deleted; set by the server.
    #[serde(default)]
    #[schema(read_only)]
    pub cancelled_at: Option<EpochSeconds>,
    /// Whether the cancellation applies randomization (2030.5 status 3 rather than 2).
    #[serde(default)]
    #[schema(read_only)]
    pub cancel_randomized: bool,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl ControlRecord {
    /// The engine's view of this control.
    pub fn to_control(&self) -> Control {
        Control {
            id: ControlId::new(self.id.clone()),
            program: ProgramId::new(self.program_id.clone()),
            created: self.created_at,
            start: self.start,
            duration_s: self.duration_s,
            randomize_start_s: self.randomize_start_s,
            randomize_duration_s: self.randomize_duration_s,
            modes: self.modes.clone(),
            cancelled: self.cancelled_at.map(|at| Cancellation {
                at,
                randomized: self.cancel_randomized,
            }),
        }
    }
}

fn modes_json(m: &ControlModes) -> Value {
    // A struct of numbers and booleans always serializes.
    Value::Text(Some(
        serde_json::to_string(m).unwrap_or_else(|_| "{}".into()),
    ))
}

fn modes_from(row: &AnyRow) -> Result<ControlModes, StoreError> {
    serde_json::from_str(&text(row, "modes")?)
        .map_err(|e| StoreError::Corrupt(format!("modes: {e}")))
}

impl Record for ControlRecord {
    const TABLE: &'static str = "controls";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "program_id",
        "description",
        "start_at",
        "duration_s",
        "randomize_start_s",
        "randomize_duration_s",
        "modes",
        "response_required",
        "cancelled_at",
        "cancel_randomized",
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
            self.description.clone().into(),
            self.start.into(),
            (self.duration_s as i64).into(),
            (self.randomize_start_s as i64).into(),
            (self.randomize_duration_s as i64).into(),
            modes_json(&self.modes),
            self.response_required.into(),
            Value::Int(self.cancelled_at),
            self.cancel_randomized.into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let narrow = |col: &str| -> Result<i32, StoreError> {
            i32::try_from(int(row, col)?).map_err(|_| StoreError::Corrupt(col.to_string()))
        };
        Ok(ControlRecord {
            id: text(row, "id")?,
            program_id: text(row, "program_id")?,
            description: opt_text(row, "description")?,
            start: int(row, "start_at")?,
            duration_s: u32::try_from(int(row, "duration_s")?)
                .map_err(|_| StoreError::Corrupt("duration_s".into()))?,
            randomize_start_s: narrow("randomize_start_s")?,
            randomize_duration_s: narrow("randomize_duration_s")?,
            modes: modes_from(row)?,
            response_required: int(row, "response_required")? != 0,
            cancelled_at: row.try_get::<Option<i64>, _>("cancelled_at")?,
            cancel_randomized: int(row, "cancel_randomized")? != 0,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

impl Entity for ControlRecord {
    const NAME: &'static str = "control";
    const COLLECTION: &'static str = "controls";
    const FILTERS: &'static [Filter] = &[text_filter("program_id")];

    crate::registry::entity::common_accessors!(id);
    fn canonical_key(key: &str) -> String {
        key.to_ascii_uppercase()
    }

    fn prepare(&mut self) -> Result<(), RegistryError> {
        crate::registry::entity::assign_mrid(&mut self.id);
        super::curve_records::normalize_links(&mut self.modes);
        Ok(())
    }

    /// Linked curves must exist, be of the linking mode's type and belong to this program.
    fn check<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
    ) -> impl std::future::Future<Output = Result<(), RegistryError>> + Send + 'a {
        super::curve_records::check_links(conn, &self.program_id, &self.modes)
    }

    fn validate(&self, c: &mut Checker) {
        if self.id.len() != 32 || !self.id.chars().all(|ch| ch.is_ascii_hexdigit()) {
            c.fail("id", "an mRID is 32 hexadecimal characters");
        }
        c.opt_text("description", self.description.as_deref());
        if let Err(e) = self.to_control().validate() {
            fail_with(c, &e);
        }
    }

    fn references(&self) -> Vec<Reference> {
        vec![Reference {
            field: "program_id",
            table: "control_programs",
            kind: "control program",
            key_column: "id",
            value: self.program_id.clone(),
        }]
    }

    /// Newness decides superseding and precedence, and two controls created in the same
    /// second would otherwise be ordered by their random mRIDs. Creation times are therefore
    /// kept strictly increasing within a program.
    async fn before_insert(&mut self, conn: &mut AnyConnection) -> Result<(), RegistryError> {
        // Cancellation is the server's to record (DELETE or /cancel), never part of a create.
        self.cancelled_at = None;
        self.cancel_randomized = false;
        let latest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(created_at) FROM controls WHERE program_id = $1")
                .bind(self.program_id.clone())
                .fetch_one(&mut *conn)
                .await?;
        if let Some(latest) = latest.filter(|l| *l >= self.created_at) {
            self.created_at = latest + 1;
            self.updated_at = self.created_at;
        }
        Ok(())
    }

    fn tombstone(&self, now: i64) -> Option<Self> {
        let mut t = self.clone();
        if t.cancelled_at.is_none() {
            t.cancelled_at = Some(now);
        }
        Some(t)
    }

    fn check_change(old: &Self, new: &Self) -> Result<(), RegistryError> {
        let frozen = ControlRecord {
            description: old.description.clone(),
            cancelled_at: None,
            cancel_randomized: false,
            updated_at: 0,
            ..new.clone()
        };
        let was = ControlRecord {
            cancelled_at: None,
            cancel_randomized: false,
            updated_at: 0,
            ..old.clone()
        };
        if frozen != was {
            return Err(RegistryError::invalid(
                "modes",
                "a published control cannot change; create a new control (it supersedes this \
                 one) or cancel this one",
            ));
        }
        if old.cancelled_at.is_some()
            && (new.cancelled_at != old.cancelled_at
                || new.cancel_randomized != old.cancel_randomized)
        {
            return Err(RegistryError::invalid(
                "cancelled_at",
                "a cancellation cannot be undone",
            ));
        }
        Ok(())
    }
}

/// A program's default control (IEEE 2030.5 DefaultDERControl); keyed by its program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultControlRecord {
    pub program_id: String,
    pub modes: ControlModes,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for DefaultControlRecord {
    const TABLE: &'static str = "default_controls";
    const KEY: &'static str = "program_id";
    const COLUMNS: &'static [&'static str] = &["program_id", "modes", "created_at", "updated_at"];
    fn key(&self) -> &str {
        &self.program_id
    }
    fn values(&self) -> Vec<Value> {
        vec![
            self.program_id.clone().into(),
            modes_json(&self.modes),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(DefaultControlRecord {
            program_id: text(row, "program_id")?,
            modes: modes_from(row)?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

impl Entity for DefaultControlRecord {
    const NAME: &'static str = "default control";
    const COLLECTION: &'static str = "default-controls";
    const FILTERS: &'static [Filter] = &[];

    crate::registry::entity::common_accessors!(program_id);

    fn prepare(&mut self) -> Result<(), RegistryError> {
        super::curve_records::normalize_links(&mut self.modes);
        Ok(())
    }

    /// Linked curves must exist, be of the linking mode's type and belong to this program.
    fn check<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
    ) -> impl std::future::Future<Output = Result<(), RegistryError>> + Send + 'a {
        super::curve_records::check_links(conn, &self.program_id, &self.modes)
    }

    fn validate(&self, c: &mut Checker) {
        let d = DefaultControl {
            program: ProgramId::new(self.program_id.clone()),
            modes: self.modes.clone(),
        };
        if let Err(e) = d.validate() {
            fail_with(c, &e);
        }
    }

    fn references(&self) -> Vec<Reference> {
        vec![Reference {
            field: "program_id",
            table: "control_programs",
            kind: "control program",
            key_column: "id",
            value: self.program_id.clone(),
        }]
    }
}

/// Records an engine validation error under its field, without repeating the field name.
fn fail_with(c: &mut Checker, e: &super::ValidationError) {
    let field = e.field();
    let message = e.to_string();
    let reason = message
        .strip_prefix(&format!("{field}: "))
        .unwrap_or(&message)
        .to_string();
    c.fail(&field, reason);
}

/// Whose limits are asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InForceTarget {
    /// A site: programs for the site and for groups holding any of its DERs.
    Site(String),
    /// A DER: programs for the DER, its site, and groups holding it.
    Der(String),
}

/// Everything the envelope engine needs to answer for one target.
#[derive(Debug, Clone, Default)]
pub struct Applicable {
    pub programs: Vec<Program>,
    pub controls: Vec<Control>,
    pub defaults: Vec<DefaultControl>,
}

fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The records of `R` (controls or defaults) that belong to one of the programs `ids`.
async fn of_programs<R: Record>(
    pool: &sqlx::AnyPool,
    ids: &[String],
) -> Result<Vec<R>, StoreError> {
    let sql = format!(
        "SELECT {} FROM {} WHERE program_id IN ({})",
        R::COLUMNS.join(", "),
        R::TABLE,
        placeholders(1, ids.len())
    );
    let mut q = dynamic(sql);
    for id in ids {
        q = q.bind(id.clone());
    }
    q.fetch_all(pool).await?.iter().map(R::from_row).collect()
}

/// Reads the programs, controls and defaults that apply to `target`.
pub async fn applicable(
    registry: &Registry,
    target: &InForceTarget,
) -> Result<Applicable, RegistryError> {
    let pool = registry.store().pool();
    let mut targets: Vec<(&str, String)> = Vec::new();
    let group_sql = match target {
        InForceTarget::Der(id) => {
            let der: Der = registry.get(id).await?;
            targets.push(("der", der.id.clone()));
            targets.push(("site", der.site_id.clone()));
            "SELECT group_id FROM group_members WHERE der_id = $1"
        }
        InForceTarget::Site(id) => {
            let site: crate::registry::model::Site = registry.get(id).await?;
            targets.push(("site", site.id.clone()));
            "SELECT DISTINCT m.group_id FROM group_members m JOIN ders d ON d.id = m.der_id \
             WHERE d.site_id = $1"
        }
    };
    let key = match target {
        InForceTarget::Der(id) | InForceTarget::Site(id) => id.clone(),
    };
    for row in sqlx::query(group_sql).bind(key).fetch_all(pool).await? {
        targets.push(("group", row.try_get::<String, _>(0)?));
    }

    let clauses: Vec<String> = (0..targets.len())
        .map(|i| {
            format!(
                "(target_kind = ${} AND target_id = ${})",
                2 * i + 1,
                2 * i + 2
            )
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM control_programs WHERE {}",
        ControlProgram::COLUMNS.join(", "),
        clauses.join(" OR ")
    );
    let mut q = dynamic(sql);
    for (kind, id) in &targets {
        q = q.bind(kind.to_string()).bind(id.clone());
    }
    let programs: Vec<ControlProgram> = q
        .fetch_all(pool)
        .await?
        .iter()
        .map(ControlProgram::from_row)
        .collect::<Result<_, _>>()?;
    if programs.is_empty() {
        return Ok(Applicable::default());
    }
    let ids: Vec<String> = programs.iter().map(|p| p.id.clone()).collect();

    let controls: Vec<Control> = of_programs::<ControlRecord>(pool, &ids)
        .await?
        .iter()
        .map(ControlRecord::to_control)
        .collect();
    let defaults: Vec<DefaultControl> = of_programs::<DefaultControlRecord>(pool, &ids)
        .await?
        .into_iter()
        .map(|d| DefaultControl {
            program: ProgramId::new(d.program_id),
            modes: d.modes,
        })
        .collect();

    Ok(Applicable {
        programs: programs
            .iter()
            .map(|p| Program {
                id: ProgramId::new(p.id.clone()),
                primacy: p.primacy,
            })
            .collect(),
        controls,
        defaults,
    })
}

/// The limits in force for `target` at `t`: the single answer that dispatch and the
/// protocol views derive from. `seed` is the deployment's randomization seed.
pub async fn in_force(
    registry: &Registry,
    target: &InForceTarget,
    t: EpochSeconds,
    seed: u64,
) -> Result<InForce, RegistryError> {
    let a = applicable(registry, target).await?;
    let key = match target {
        InForceTarget::Der(id) | InForceTarget::Site(id) => id.as_str(),
    };
    Ok(limits_in_force(
        &a.programs,
        &a.controls,
        &a.defaults,
        key,
        seed,
        t,
    ))
}
