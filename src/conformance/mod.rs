//! Conformance procedures for IEEE 2030.5 servers (CSIP-AUS and CSIP), written as data, and
//! the runner that plays them against any server URL.
//!
//! - [`procedure`]: the procedure format (TOML files in `conformance/sep2/`, embedded in the
//!   binary or read from a directory) and its validation.
//! - [`runner`]: the client side: mutual TLS with the project's 2030.5 TLS configuration,
//!   link following from the DeviceCapability, media-type and document checks on every
//!   answer, notification collection, TLS probes.
//! - [`operator`]: the server-side set-up a procedure needs, performed through Switchyard's
//!   operator API when `--operator-url/--operator-token` are given; otherwise such
//!   procedures are reported NEEDS-SETUP rather than passed or failed.
//! - [`check`], [`xmltree`], [`template`]: assertions by element path over a generic XML
//!   tree, and `${variable}` substitution.
//! - [`report`]: the table and JSON-lines output.
//!
//! Each procedure ends as PASS, FAIL, NEEDS-SETUP or SKIP with a reason. Procedures, steps
//! and checks carry `requires` tags naming the server features they need (`mirror`,
//! `subscription`, `response`, ...), so a run can skip what a server does not implement
//! (`--skip-tag`); against a server lacking a feature, an unskipped procedure fails.

pub mod check;
pub mod operator;
pub mod procedure;
pub mod report;
pub mod runner;
pub mod template;
pub mod xmltree;

pub use operator::OperatorConfig;
pub use procedure::{Procedure, Profile, Role};
pub use runner::{Credentials, Runner, RunnerConfig};

use serde::Serialize;

/// Errors that stop a run before any procedure is played.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// A procedure file is not valid.
    #[error("procedure {origin}: {reason}")]
    Procedure { origin: String, reason: String },
    /// A file or directory could not be read.
    #[error("reading {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Certificates, clients or the notification listener could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// How a procedure ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum Status {
    /// Every step that ran passed (the reason tells when some were skipped by tag).
    Pass,
    /// The server did not behave as the procedure requires.
    Fail,
    /// The server-side set-up could not be made (no operator API, or one that cannot do it).
    NeedsSetup,
    /// Not run: a skipped tag, or a certificate the procedure needs was not given.
    Skip,
}

impl Status {
    /// The label printed in tables.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NeedsSetup => "NEEDS-SETUP",
            Status::Skip => "SKIP",
        }
    }
}

/// How one step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Pass,
    Fail,
    Skipped,
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub status: StepStatus,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// One procedure's result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub id: String,
    pub title: String,
    pub profile: Profile,
    pub area: String,
    pub status: Status,
    /// Why it failed, needs set-up or was skipped; for a pass, what was skipped.
    pub reason: String,
    pub steps: Vec<StepReport>,
    pub seconds: f64,
}
