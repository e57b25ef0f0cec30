//! Protocol adapters at the edge of the engine. Each speaks one standard and translates
//! to and from the engine's domain types; none of them is known to the engine.

pub mod delivery;
pub mod greenbutton;
pub mod mqtt;
pub mod openadr2;
pub mod openadr3;
pub mod sep2;
pub mod sunspec;
