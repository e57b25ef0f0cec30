//! IEEE 2030.5 FunctionSetAssignments of their own for DER programs.
//!
//! Every EndDevice has a default FunctionSetAssignments (`/edev/{id}/fsa/1`) whose
//! DERProgramList (`/edev/{id}/derp`) holds the programs that reach it. The utility can
//! place a program in a FunctionSetAssignments of its own (`POST /api/v1/sep2-function-sets`
//! with the program's id): the EndDevices that program reaches then see an extra
//! FunctionSetAssignments (`/edev/{id}/fsa/{fsa}`) whose DERProgramList
//! (`/edev/{id}/fsa/{fsa}/derp`) holds that program, and the default one no longer lists it.
//! The default FunctionSetAssignments is left out of the list once it has no program left
//! and others exist, so a client walking every FunctionSetAssignments finds each program
//! exactly once. The program itself keeps its URI (`/edev/{id}/derp/{program}`).

use crate::domain::EpochSeconds;
use crate::envelope::records::ControlProgram;
use crate::registry::entity::{Entity, Filter, Reference, common_accessors, text_filter};
use crate::registry::validate::Checker;
use crate::registry::{Registry, RegistryError};
use crate::store::record::{dynamic, int, text};
use crate::store::{Record, StoreError, Value};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use std::collections::HashMap;
use utoipa::ToSchema;

/// The `{fsa}` of the default FunctionSetAssignments.
pub const DEFAULT_FSA: &str = "1";

/// A program's own FunctionSetAssignments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionSetRecord {
    /// The `{fsa}` of `/edev/{id}/fsa/{fsa}`; generated when not given. Never `1`.
    #[serde(default)]
    pub id: String,
    /// The control program this FunctionSetAssignments holds (one per program).
    pub program_id: String,
    /// Served as the FunctionSetAssignments' description.
    pub description: String,
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl Record for FunctionSetRecord {
    const TABLE: &'static str = "sep2_function_sets";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "program_id",
        "description",
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
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(FunctionSetRecord {
            id: text(row, "id")?,
            program_id: text(row, "program_id")?,
            description: text(row, "description")?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

impl Entity for FunctionSetRecord {
    const NAME: &'static str = "2030.5 function set assignments";
    const COLLECTION: &'static str = "sep2-function-sets";
    const FILTERS: &'static [Filter] = &[text_filter("program_id")];
    common_accessors!(id);

    fn validate(&self, c: &mut Checker) {
        c.ident("id", &self.id);
        if self.id == DEFAULT_FSA {
            c.fail(
                "id",
                "1 is every EndDevice's default FunctionSetAssignments",
            );
        }
        c.ident("program_id", &self.program_id);
        c.text("description", &self.description);
        // The schema's String32.
        if self.description.chars().count() > 32 {
            c.fail("description", "longer than 32 characters");
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
        if old.program_id != new.program_id {
            return Err(RegistryError::invalid(
                "program_id",
                "cannot be changed; create another FunctionSetAssignments",
            ));
        }
        Ok(())
    }
}

/// One FunctionSetAssignments as an EndDevice sees it.
#[derive(Debug, Clone)]
pub struct FunctionSet {
    /// The `{fsa}` of its URI.
    pub id: String,
    pub description: String,
    /// Its programs that reach the EndDevice, in primacy order.
    pub programs: Vec<ControlProgram>,
}

/// The FunctionSetAssignments of an EndDevice reached by `programs` (primacy order): the
/// default one first (unless it is empty and others exist), then one per program placed
/// apart, in primacy order.
pub async fn arrange(
    registry: &Registry,
    programs: Vec<ControlProgram>,
) -> Result<Vec<FunctionSet>, RegistryError> {
    let mut default = FunctionSet {
        id: DEFAULT_FSA.to_string(),
        description: "Operating envelopes".into(),
        programs: Vec::new(),
    };
    let mut apart = Vec::new();
    // One query for all the programs: an EndDeviceList renders this for every EndDevice.
    let own: HashMap<String, FunctionSetRecord> = if programs.is_empty() {
        HashMap::new()
    } else {
        let marks: Vec<String> = (1..=programs.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE program_id IN ({})",
            FunctionSetRecord::COLUMNS.join(", "),
            FunctionSetRecord::TABLE,
            marks.join(", ")
        );
        let mut q = dynamic(sql);
        for p in &programs {
            q = q.bind(p.id.clone());
        }
        q.fetch_all(registry.store().pool())
            .await
            .map_err(StoreError::from)?
            .iter()
            .map(|row| FunctionSetRecord::from_row(row).map(|f| (f.program_id.clone(), f)))
            .collect::<Result<_, StoreError>>()?
    };
    for p in programs {
        match own.get(&p.id) {
            Some(f) => apart.push(FunctionSet {
                id: f.id.clone(),
                description: f.description.clone(),
                programs: vec![p],
            }),
            None => default.programs.push(p),
        }
    }
    let mut sets = Vec::with_capacity(apart.len() + 1);
    if !default.programs.is_empty() || apart.is_empty() {
        sets.push(default);
    }
    sets.extend(apart);
    Ok(sets)
}
