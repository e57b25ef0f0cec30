//! Stored DER curves of a control program, as the utility creates them through the operator
//! API, and the checks on the links controls and default controls make to them.
//!
//! A curve is immutable once created, like a control: devices that already run it must not
//! see it change under the same mRID. A new curve (linked by a new control, which supersedes
//! the old one) is how a curve changes. A curve that a control or default control links
//! cannot be deleted, because devices would follow a dead link.

use super::ControlModes;
use super::curves::{self, Curve, CurvePoint, CurveType, UnitRef};
use crate::domain::EpochSeconds;
use crate::registry::RegistryError;
use crate::registry::entity::{Entity, Filter, Reference, text_filter};
use crate::registry::validate::Checker;
use crate::store::record::{int, opt_text, text};
use crate::store::{Record, StoreError, Value};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

/// A DER curve (IEEE 2030.5 DERCurve) of one control program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DerCurveRecord {
    /// The curve's mRID: 32 hexadecimal characters, generated when omitted.
    #[serde(default)]
    pub id: String,
    pub program_id: String,
    #[serde(default)]
    pub description: Option<String>,
    pub curve_type: CurveType,
    /// What the y values are a percentage of (2030.5 yRefType).
    pub y_ref_type: UnitRef,
    /// 1 to 10 points with strictly increasing x, in the units the curve type defines.
    pub points: Vec<CurvePoint>,
    /// Power of ten of the x values on the wire; chosen (most precise that fits Int16) when
    /// omitted.
    #[serde(default)]
    pub x_multiplier: Option<i8>,
    /// Power of ten of the y values on the wire; chosen when omitted.
    #[serde(default)]
    pub y_multiplier: Option<i8>,
    /// volt_var only: whether the reference voltage adjusts itself.
    #[serde(default)]
    pub autonomous_v_ref_enable: Option<bool>,
    /// volt_var only: time constant of that adjustment, seconds.
    #[serde(default)]
    pub autonomous_v_ref_time_constant_s: Option<u32>,
    /// Reference voltage as a percentage of nominal (2030.5 vRef), 0 to 100.
    #[serde(default)]
    pub v_ref_percent: Option<f64>,
    /// Open loop response time, seconds (0 to 655.35).
    #[serde(default)]
    pub open_loop_s: Option<f64>,
    /// Decreasing ramp time, seconds.
    #[serde(default)]
    pub ramp_dec_s: Option<f64>,
    /// Increasing ramp time, seconds.
    #[serde(default)]
    pub ramp_inc_s: Option<f64>,
    /// First-order low-pass time constant, seconds.
    #[serde(default)]
    pub ramp_pt1_s: Option<f64>,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl DerCurveRecord {
    /// The engine's view of the curve, for [`curves::check`].
    pub fn curve(&self) -> Curve<'_> {
        Curve {
            curve_type: self.curve_type,
            y_ref_type: self.y_ref_type,
            points: &self.points,
            x_multiplier: self.x_multiplier,
            y_multiplier: self.y_multiplier,
            autonomous_v_ref_enable: self.autonomous_v_ref_enable,
            autonomous_v_ref_time_constant_s: self.autonomous_v_ref_time_constant_s,
            v_ref_percent: self.v_ref_percent,
            times_s: [
                ("open_loop_s", self.open_loop_s),
                ("ramp_dec_s", self.ramp_dec_s),
                ("ramp_inc_s", self.ramp_inc_s),
                ("ramp_pt1_s", self.ramp_pt1_s),
            ],
        }
    }
}

fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}

fn opt_float(row: &AnyRow, col: &str) -> Result<Option<f64>, StoreError> {
    Ok(row.try_get::<Option<f64>, _>(col)?)
}

fn narrow<T: TryFrom<i64>>(v: Option<i64>, col: &str) -> Result<Option<T>, StoreError> {
    v.map(|v| T::try_from(v).map_err(|_| StoreError::Corrupt(col.to_string())))
        .transpose()
}

impl Record for DerCurveRecord {
    const TABLE: &'static str = "der_curves";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "program_id",
        "description",
        "curve_type",
        "y_ref_type",
        "points",
        "x_multiplier",
        "y_multiplier",
        "autonomous_v_ref_enable",
        "autonomous_v_ref_time_constant_s",
        "v_ref_percent",
        "open_loop_s",
        "ramp_dec_s",
        "ramp_inc_s",
        "ramp_pt1_s",
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
            self.curve_type.as_str().into(),
            self.y_ref_type.as_str().into(),
            // Numbers and enum names always serialize.
            Value::Text(Some(
                serde_json::to_string(&self.points).unwrap_or_else(|_| "[]".into()),
            )),
            Value::Int(self.x_multiplier.map(i64::from)),
            Value::Int(self.y_multiplier.map(i64::from)),
            Value::Int(self.autonomous_v_ref_enable.map(i64::from)),
            Value::Int(self.autonomous_v_ref_time_constant_s.map(i64::from)),
            self.v_ref_percent.into(),
            self.open_loop_s.into(),
            self.ramp_dec_s.into(),
            self.ramp_inc_s.into(),
            self.ramp_pt1_s.into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let parse = |col: &str| -> Result<String, StoreError> { text(row, col) };
        Ok(DerCurveRecord {
            id: text(row, "id")?,
            program_id: text(row, "program_id")?,
            description: opt_text(row, "description")?,
            curve_type: parse("curve_type")?.parse().map_err(StoreError::Corrupt)?,
            y_ref_type: parse("y_ref_type")?.parse().map_err(StoreError::Corrupt)?,
            points: serde_json::from_str(&text(row, "points")?)
                .map_err(|e| StoreError::Corrupt(format!("points: {e}")))?,
            x_multiplier: narrow(opt_int(row, "x_multiplier")?, "x_multiplier")?,
            y_multiplier: narrow(opt_int(row, "y_multiplier")?, "y_multiplier")?,
            autonomous_v_ref_enable: opt_int(row, "autonomous_v_ref_enable")?.map(|v| v != 0),
            autonomous_v_ref_time_constant_s: narrow(
                opt_int(row, "autonomous_v_ref_time_constant_s")?,
                "autonomous_v_ref_time_constant_s",
            )?,
            v_ref_percent: opt_float(row, "v_ref_percent")?,
            open_loop_s: opt_float(row, "open_loop_s")?,
            ramp_dec_s: opt_float(row, "ramp_dec_s")?,
            ramp_inc_s: opt_float(row, "ramp_inc_s")?,
            ramp_pt1_s: opt_float(row, "ramp_pt1_s")?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

impl Entity for DerCurveRecord {
    const NAME: &'static str = "DER curve";
    const COLLECTION: &'static str = "der-curves";
    const FILTERS: &'static [Filter] = &[text_filter("program_id")];

    crate::registry::entity::common_accessors!(id);
    fn canonical_key(key: &str) -> String {
        key.to_ascii_uppercase()
    }

    /// Generates the mRID and fixes the multipliers, so the stored curve says exactly what
    /// devices will read.
    fn prepare(&mut self) -> Result<(), RegistryError> {
        crate::registry::entity::assign_mrid(&mut self.id);
        if let Ok((x, y)) = curves::check(&self.curve()) {
            self.x_multiplier = Some(x);
            self.y_multiplier = Some(y);
        }
        Ok(())
    }

    fn validate(&self, c: &mut Checker) {
        if self.id.len() != 32 || !self.id.chars().all(|ch| ch.is_ascii_hexdigit()) {
            c.fail("id", "an mRID is 32 hexadecimal characters");
        }
        c.opt_text("description", self.description.as_deref());
        if let Err(e) = curves::check(&self.curve()) {
            c.fail(&e.field, e.reason);
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

    fn check_change(old: &Self, new: &Self) -> Result<(), RegistryError> {
        let frozen = DerCurveRecord {
            description: old.description.clone(),
            created_at: old.created_at,
            updated_at: old.updated_at,
            ..new.clone()
        };
        if &frozen != old {
            return Err(RegistryError::invalid(
                "points",
                "a published curve cannot change; create a new curve and link it from a new \
                 control",
            ));
        }
        Ok(())
    }

    async fn check_delete(conn: &mut AnyConnection, key: &str) -> Result<(), RegistryError> {
        if let Some(user) = linked_by(conn, key).await? {
            return Err(RegistryError::Conflict {
                field: "id".into(),
                detail: format!("DER curve '{key}' is linked by {user}; it cannot be deleted"),
            });
        }
        Ok(())
    }
}

/// The first control or default control linking curve `id`, described for a message.
async fn linked_by(conn: &mut AnyConnection, id: &str) -> Result<Option<String>, StoreError> {
    // Curve ids are 32 hex characters, so the quoted id cannot match anything but a link.
    let pattern = format!("%\"{id}\"%");
    let control: Option<String> =
        sqlx::query_scalar("SELECT id FROM controls WHERE modes LIKE $1 LIMIT 1")
            .bind(pattern.clone())
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(c) = control {
        return Ok(Some(format!("control '{c}'")));
    }
    let default: Option<String> =
        sqlx::query_scalar("SELECT program_id FROM default_controls WHERE modes LIKE $1 LIMIT 1")
            .bind(pattern)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(default.map(|p| format!("the default control of program '{p}'")))
}

/// Upper-cases the curve ids a set of modes links (mRIDs are compared in upper case).
pub fn normalize_links(modes: &mut ControlModes) {
    for id in modes.curves.values_mut() {
        *id = id.to_ascii_uppercase();
    }
}

/// Checks that every curve `modes` links exists, belongs to `program_id` and is of the type
/// of the mode that links it. Errors name the field (`modes.curves.volt_var`).
pub async fn check_links(
    conn: &mut AnyConnection,
    program_id: &str,
    modes: &ControlModes,
) -> Result<(), RegistryError> {
    for (mode, id) in &modes.curves {
        let field = format!("modes.curves.{mode}");
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT program_id, curve_type FROM der_curves WHERE id = $1")
                .bind(id.to_ascii_uppercase())
                .fetch_optional(&mut *conn)
                .await
                .map_err(StoreError::from)?;
        let Some((curve_program, curve_type)) = row else {
            return Err(RegistryError::invalid(
                &field,
                format!("DER curve '{id}' does not exist"),
            ));
        };
        if curve_program != program_id {
            return Err(RegistryError::invalid(
                &field,
                format!(
                    "DER curve '{id}' belongs to program '{curve_program}'; a control links \
                     only curves of its own program"
                ),
            ));
        }
        if curve_type != mode.as_str() {
            return Err(RegistryError::invalid(
                &field,
                format!("DER curve '{id}' is a {curve_type} curve, not {mode}"),
            ));
        }
    }
    Ok(())
}
