//! IEEE 2030.5 (CSIP, CSIP-AUS): the XML wire model and codec, transport security with
//! certificate identity, EndDevice records, engine-to-wire conversions, the resource
//! server and its function-set modules (DER curves, log events, metering mirror, responses, subscriptions with the
//! notifier that delivers them, device information), and the in-memory read model and cache of rendered documents behind the poll path.

pub mod convert;
pub mod curves;
pub mod der_status;
pub mod device_info;
pub mod function_sets;
pub mod log_events;
pub mod mirror;
pub mod model;
pub mod notifier;
pub mod poll_cache;
pub mod poll_rates;
pub mod proxy;
pub mod read_model;
pub mod records;
pub mod responses;
pub mod server;
pub mod subscriptions;
pub mod tls;
pub mod xml;
