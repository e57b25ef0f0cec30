//! IEEE 2030.5 (CSIP, CSIP-AUS): the XML wire model and codec, transport security with
//! certificate identity, EndDevice records, engine-to-wire conversions, the resource
//! server and its function-set modules (metering mirror, responses).

pub mod convert;
pub mod mirror;
pub mod model;
pub mod records;
pub mod responses;
pub mod server;
pub mod tls;
pub mod xml;
