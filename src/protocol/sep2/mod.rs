//! IEEE 2030.5 (CSIP, CSIP-AUS): the XML wire model and codec, transport security with
//! certificate identity, EndDevice records, engine-to-wire conversions and the resource
//! server.

pub mod convert;
pub mod device_info;
pub mod model;
pub mod proxy;
pub mod records;
pub mod server;
pub mod tls;
pub mod xml;
