//! Operating envelopes: the controls that programs place on sites and devices, the event
//! rules that decide which of them are in force, and the resolution of everything in force
//! into one set of limits per site/device and instant.
//!
//! This is pure domain logic. It knows no protocol: the IEEE 2030.5 / CSIP / CSIP-AUS adapter
//! translates DERControls, DefaultDERControls and DERPrograms into these types (converting
//! percentages of rated power into watts, power-of-ten multipliers into `f64`), and dispatch
//! consumes [`InForce`]. Time is always an argument and randomization is a pure function of
//! (control id, device/site key, seed), so every answer is reproducible.
//!
//! - [`model`]: vocabulary ([`Control`], [`ControlModes`], [`Program`], [`EventStatus`], ...).
//! - [`validate`]: field-by-field validation with errors that name the field.
//! - [`randomize`]: effective windows and the deterministic randomization behind them.
//! - [`status`]: event rules (scheduled, active, superseded, cancelled, completed).
//! - [`resolve`]: [`limits_in_force`], which combines the controls in force.
//! - [`scale`]: 16-bit decimal scaling for the 2030.5 codec.
//! - [`curves`]: DER curves (volt-var, freq-watt, ...), carried to devices, not evaluated;
//!   [`curve_records`] stores them and checks the links controls make to them.

pub mod curve_records;
pub mod curves;
pub mod model;
pub mod randomize;
pub mod records;
pub mod resolve;
pub mod scale;
pub mod status;
pub mod validate;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testing;

pub use model::{
    Cancellation, Combine, Control, ControlId, ControlModes, DefaultControl, EventStatus,
    Excitation, Mode, PowerFactor, Program, ProgramId, UnknownEventStatus,
};
pub use randomize::{Window, effective_window};
pub use resolve::{InForce, Source, Sourced, limits_in_force};
pub use scale::{MAX_MULTIPLIER, MIN_MULTIPLIER, ScaleError, from_int16_scaled, to_int16_scaled};
pub use status::{ControlTimeline, Lifecycle, event_status, lifecycle, newness, timelines};
pub use validate::ValidationError;
