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
//! - [`pending`]: authorizations started and waiting for the customer's redirect.
//! - [`batchlist`]: the ESPI `BatchList` a Data Custodian POSTs as a notification.
//! - [`notify`]: which authorizations a notification concerns, and their fetches in the
//!   background, coalesced per authorization.
//! - [`endpoints`]: the redirect URI and the notification endpoint `switchyard serve`
//!   answers on the operator listener.

pub mod batchlist;
pub mod config;
pub mod connect;
pub mod endpoints;
pub mod import;
pub mod model;
pub mod notify;
pub mod parse;
pub mod pending;
pub mod series;

pub use parse::{ParseError, parse_feed};
