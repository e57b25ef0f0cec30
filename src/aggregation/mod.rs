//! Aggregation: live virtual meters for the control room and virtual metering accounts.
//!
//! Engine code: plain numbers in, plain numbers out, no protocol types; only
//! [`accounts_store`] and [`live`] touch the store.
//!
//! - [`estimate`]: the live aggregate of a group from each device's latest readings, with a
//!   selectable estimator (`latest-sum`, `subset-latest`, `ramp-adjusted`, `timeshifted`,
//!   `schedule-aware`) and an uncertainty band; [`live`] feeds it a registry group's
//!   latest readings and commands in force from the store.
//! - [`response`]: the per-class response model (delay, delay jitter, ramp, compliance)
//!   that `schedule-aware` uses to say what a device is doing after a command.
//! - [`sim`]: a Monte Carlo simulator of a portfolio dispatched with a simultaneous or
//!   staggered ramp, that scores every estimator against the truth (`switchyard sim
//!   metering`); [`sim_report`] renders its results as a table, JSON lines and an SVG plot.
//! - [`accounts`]: virtual metering accounts: consolidation of member accounts' interval
//!   load and generation and credit allocation by rule, with an audit trail per interval;
//!   [`allocate`] holds the exact integer apportionment (largest remainder) it relies on,
//!   and [`accounts_store`] keeps accounts and every revision of their allocations (the
//!   only module here that does I/O).
//!
//! See docs/aggregation.md for the models, the study grid and the measured results.

pub mod accounts;
pub mod accounts_store;
pub mod allocate;
pub mod estimate;
pub mod live;
pub mod response;
pub mod sim;
pub mod sim_report;

pub use estimate::{
    AggregationError, Command, DeviceView, Estimate, EstimatorKind, Params, Sample, estimate,
};
pub use response::ResponseModel;
