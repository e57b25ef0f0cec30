//! The engine's vocabulary: identifiers, enumerations and units shared by every module.
//!
//! Nothing in here knows about a protocol. Protocol codecs translate their own codes into
//! these types at the edge, and the engine only ever sees these.

pub mod identity;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Seconds since the Unix epoch, UTC. The engine takes "now" as an argument everywhere so
/// tests and simulations control the clock.
pub type EpochSeconds = i64;

/// The current time as epoch seconds; only the edges (handlers, CLI) call this.
pub fn now_epoch() -> EpochSeconds {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Error for a string that names no variant of a closed enumeration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{value}' (expected one of: {expected})")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Declares a closed string enumeration that serializes as snake_case, parses strictly, and
/// lists its accepted values in error messages. Keeping one definition avoids the wire names
/// drifting between the API, the CSV importer and the store. Paths are absolute so that other
/// engine modules (telemetry) can declare their enumerations with it too.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema,
        )]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire and storage name of this variant.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::domain::UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::domain::UnknownVariant {
                        kind: $kind,
                        value: s.to_string(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}
pub(crate) use string_enum;

string_enum!(
    /// The kind of distributed energy resource.
    DerClass, "der_class", {
        Battery => "battery",
        PvInverter => "pv_inverter",
        EvCharger => "ev_charger",
        Thermostat => "thermostat",
        WaterHeater => "water_heater",
        CiLoad => "ci_load",
    }
);

string_enum!(
    /// How a site is connected under its utility tariff.
    InterconnectionType, "interconnection_type", {
        /// Net energy metering.
        Nem => "nem",
        NonNem => "non_nem",
        SharedFacility => "shared_facility",
    }
);

string_enum!(
    /// Operating status of a DER in the registry.
    DerStatus, "der_status", {
        Commissioning => "commissioning",
        Active => "active",
        Inactive => "inactive",
        Faulted => "faulted",
        Decommissioned => "decommissioned",
    }
);

string_enum!(
    /// Who holds a certificate identity.
    IdentityKind, "identity_kind", {
        /// A single device (one EndDevice / DER).
        Device => "device",
        /// An aggregator head-end that may own many devices.
        Aggregator => "aggregator",
    }
);

string_enum!(
    /// State of a DER's enrolment in a program.
    EnrolmentStatus, "enrolment_status", {
        Enrolled => "enrolled",
        Withdrawn => "withdrawn",
    }
);

string_enum!(
    /// Kind of customer account.
    AccountKind, "account_kind", {
        Residential => "residential",
        Commercial => "commercial",
        Industrial => "industrial",
        Aggregator => "aggregator",
    }
);

/// Where a site sits in the distribution network. Every level is optional because utilities
/// publish topology to different depths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GridLocation {
    pub substation: Option<String>,
    pub feeder: Option<String>,
    pub feeder_section: Option<String>,
    pub transformer: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_reject_unknown() {
        for c in DerClass::ALL {
            assert_eq!(c.as_str().parse::<DerClass>().unwrap(), *c);
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        let err = "nuclear".parse::<DerClass>().unwrap_err();
        assert!(err.to_string().contains("battery"), "{err}");
        assert!(serde_json::from_str::<InterconnectionType>("\"NEM\"").is_err());
    }
}
