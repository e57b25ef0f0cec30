//! Switchyard: a DER interoperability server.
//!
//! Protocols live at the edge and the engine in the middle knows none of them:
//!
//! - [`domain`]: the engine's vocabulary (ids, enumerations, units, certificate identities).
//! - [`store`]: persistence over sqlx, SQLite by default and PostgreSQL for multi-node use.
//! - [`registry`]: the asset registry (accounts, sites, meters, DERs, identities, programs,
//!   enrolments, groups), its rules, bulk import and the ISO inventory export.
//! - [`telemetry`]: readings from every source in SI units, with quality, deduplicated by
//!   source, measurand and instant.
//! - [`dispatch`]: allocation of dispatch requests under envelopes, SoC and ratings, and
//!   per-device control schedules.
//! - [`settlement`]: baselines, event performance and reconciliation of settlement
//!   statements.
//! - [`api`]: the operator JSON API with roles, problem+json errors and OpenAPI.
//! - [`pki`]: the development PKI (`switchyard certs`).
//! - [`conformance`]: IEEE 2030.5 conformance procedures as data and their runner.
//! - [`config`], [`app`], [`demo`]: configuration, wiring and the demo portfolio.

pub mod aggregation;
pub mod api;
pub mod app;
pub mod config;
pub mod conformance;
pub mod demo;
pub mod dispatch;
pub mod domain;
pub mod envelope;
pub mod pki;
pub mod protocol;
pub mod registry;
pub mod settlement;
pub mod store;
pub mod telemetry;
