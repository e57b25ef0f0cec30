//! Dispatch: turning an instruction ("reduce 2 MW at feeder X for 3 hours from 16:00") into
//! per-device control schedules that respect every envelope, rating, reserve and
//! subscriber's self-consumption policy.
//!
//! Pure engine logic with no protocol types: protocol adapters translate the
//! [`ControlSchedule`]s into their own commands (2030.5 DERControls, OpenADR events, SunSpec
//! writes, MQTT messages), and the operator API, OpenADR or an ISO instruction produce the
//! [`DispatchRequest`]. Time is an argument everywhere.
//!
//! - [`request`]: the request and its validation.
//! - [`input`]: the allocator's plain inputs, with limits taken from the envelope engine.
//! - [`level`]: the water-level solver behind balanced allocation.
//! - [`allocate`]: the allocator and its plan with per-step shortfall and binding
//!   constraints.
//! - [`portfolio`]: loading a problem from the registry, envelopes and telemetry.
//! - [`forecast`]: baseline load and flex up / down with P10 / P50 / P90.
//! - [`records`]: stored plans (`dispatch_plans`).
//! - [`execute`]: the executor that delivers running plans to devices through delivery
//!   channels, applies `stop` / `limit`, and re-dispatches on telemetry.
//! - [`delivery`]: stored delivery status and plan events (`dispatch_deliveries`,
//!   `dispatch_events`).
//! - [`schedule`]: staggered activation, per-device control schedules, `stop` and `limit`,
//!   and re-dispatch when devices drop out or under-deliver.

pub mod allocate;
pub mod delivery;
pub mod execute;
pub mod forecast;
pub mod input;
pub mod level;
pub mod portfolio;
pub mod records;
pub mod request;
pub mod schedule;

#[cfg(test)]
mod proptests;

pub use allocate::{Binding, Constraint, Plan, StepReport, allocate};
pub use input::{
    DerInput, DeviceLimits, FlowLimits, Problem, ProblemError, SiteInput, Storage, ZoneInput,
};
pub use request::{Direction, DispatchRequest, Pacing, Ramp, RequestError, RequestSource, Target};
pub use schedule::{
    Command, ControlSchedule, DeviceEvent, ScheduleError, activation_offsets, detect_deviations,
    redispatch, schedules,
};
