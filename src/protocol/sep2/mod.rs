//! IEEE 2030.5 (CSIP, CSIP-AUS): the XML wire model and codec, and transport security with
//! certificate identity. Resource handlers build on these.

pub mod model;
pub mod tls;
pub mod xml;
