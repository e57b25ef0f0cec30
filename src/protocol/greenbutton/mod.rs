//! Green Button (NAESB ESPI): interval data from the utility's meter data system
//! (docs/greenbutton.md).
//!
//! - [`model`]: the ESPI resources as plain data, numeric codes kept exactly.
//! - [`parse`]: the streaming Atom/ESPI parser (quick-xml events, no document tree).
//! - [`series`]: per-UsagePoint interval series in Wh, checked for overlaps and
//!   duplicates, with the summary `switchyard import greenbutton` prints.
//! - [`import`]: mapping UsagePoints to registry meters and storing the intervals as
//!   telemetry readings, all or nothing.
//! - [`connect`]: the Green Button Connect My Data client (OAuth2 Third Party), configured
//!   by [`config`] (`[greenbutton]`).

pub mod config;
pub mod connect;
pub mod import;
pub mod model;
pub mod parse;
pub mod series;

pub use parse::{ParseError, parse_feed};
