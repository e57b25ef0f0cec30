//! IEEE 2030.5 (CSIP / CSIP-AUS) wire types: plain serde structs, no I/O and no logic.
//!
//! Each struct mirrors one complex type of `sep.xsd` (namespace `urn:ieee:std:2030.5:ns`),
//! with the CSIP-AUS extension elements of `csipaus-ext-v1.x.xsd` added where the
//! `csipaus-core-v1.x.xsd` redefinitions put them. The rules that make the XML valid are
//! encoded in the field declarations, so read them before changing anything:
//!
//! - **Field order is schema order.** `xs:sequence` order is part of validity, and the
//!   serializer writes fields in declaration order. Inherited elements (from `Resource`,
//!   `IdentifiedObject`, `Event`, ...) come first, then the type's own, then CSIP-AUS
//!   extensions (an `xs:redefine` extension appends to the base sequence).
//! - **Optional elements are `Option` and are skipped when `None`**; repeated elements are
//!   `Vec` and are skipped when empty. Required elements are plain fields.
//! - **Attributes** are the fields renamed `@name` (`href`, `all`, `results`, `pollRate`,
//!   `subscribable`, `replyTo`, `responseRequired`).
//! - **CSIP-AUS elements** are renamed `csipaus:<name>` for serialization and `<name>` for
//!   deserialization: the encoder binds the `csipaus` prefix to the namespace of the chosen
//!   CSIP-AUS version, and the decoder matches local names after checking namespaces itself
//!   (see [`super::xml`]).
//! - Integer widths follow the schema (`UInt8` -> `u8`, `Int16` -> `i16`, `UInt40`/`UInt48`
//!   -> `u64`, `Int48` -> `i64`); `TimeType` is `i64` epoch seconds; every `HexBinaryN`
//!   (mRID, LFDI, bitmaps, flags) is a `String` of hex digits, because the codec passes
//!   identifiers through and the identity types of [`crate::domain`] validate them.
//!
//! Rust names spell acronyms as words (`DerControl` for `DERControl`) as Rust style asks;
//! the element names on the wire are set by the `rename` attributes.

mod der;
mod device;
mod metering;
mod pubsub;

pub use der::*;
pub use device::*;
pub use metering::*;
pub use pubsub::*;

use serde::{Deserialize, Serialize};

/// Epoch seconds (UTC), the 2030.5 `TimeType`.
pub type TimeType = i64;

/// A type that can be the root element of a 2030.5 document.
///
/// The encoder names the root after [`SepResource::ELEMENT`] and the decoder refuses a
/// document whose root has another name, so a handler cannot mistake one resource for another.
pub trait SepResource {
    /// Local name of the root element (for example `"DERControl"`).
    const ELEMENT: &'static str;
    /// `true` when the root element lives in the CSIP-AUS namespace instead of the 2030.5 one
    /// (only [`ConnectionPoint`] does).
    const CSIPAUS_ROOT: bool = false;
}

/// Implements [`SepResource`] for a list of `Type => "Element"` pairs.
macro_rules! sep_resources {
    ($($ty:ty => $name:literal),+ $(,)?) => {
        $(impl SepResource for $ty {
            const ELEMENT: &'static str = $name;
        })+
    };
}
pub(crate) use sep_resources;

/// A reference to another resource (2030.5 `Link`): the `href` attribute is required.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Link {
    /// URI of the linked resource.
    #[serde(rename = "@href")]
    pub href: String,
}

impl Link {
    /// A link to `href`.
    pub fn new(href: impl Into<String>) -> Self {
        Self { href: href.into() }
    }
}

/// A reference to a list resource (2030.5 `ListLink`), optionally telling how many items it has.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListLink {
    /// URI of the linked list.
    #[serde(rename = "@href")]
    pub href: String,
    /// Number of items in the list, when the server chooses to say.
    #[serde(rename = "@all", skip_serializing_if = "Option::is_none")]
    pub all: Option<u32>,
}

impl ListLink {
    /// A list link without an item count.
    pub fn new(href: impl Into<String>) -> Self {
        Self {
            href: href.into(),
            all: None,
        }
    }

    /// A list link that also states the number of items.
    pub fn with_all(href: impl Into<String>, all: u32) -> Self {
        Self {
            href: href.into(),
            all: Some(all),
        }
    }
}

/// A time interval (2030.5 `DateTimeInterval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DateTimeInterval {
    /// Length in seconds.
    #[serde(rename = "duration")]
    pub duration: u32,
    /// Start, epoch seconds.
    #[serde(rename = "start")]
    pub start: TimeType,
}

impl DateTimeInterval {
    /// An interval of `duration` seconds starting at `start`.
    pub const fn new(start: TimeType, duration: u32) -> Self {
        Self { duration, start }
    }
}

/// Declares a scaled quantity `value × 10^multiplier`. On the wire `multiplier` comes first
/// (the schema's sequence order), which is why the fields are declared in that order while
/// the constructors take the value first.
macro_rules! scaled_value {
    ($(#[$doc:meta])* $name:ident, $value:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
        pub struct $name {
            /// Power of ten applied to `value`.
            #[serde(rename = "multiplier")]
            pub multiplier: i8,
            /// Unscaled value.
            #[serde(rename = "value")]
            pub value: $value,
        }

        impl $name {
            /// The quantity `value × 10^multiplier`.
            pub const fn new(value: $value, multiplier: i8) -> Self {
                Self { multiplier, value }
            }
        }
    };
}

scaled_value!(
    /// Active power in W (`ActivePower`, signed).
    ActivePower,
    i16
);
scaled_value!(
    /// Reactive power in var (`ReactivePower`, signed).
    ReactivePower,
    i16
);
scaled_value!(
    /// Apparent power in VA (`ApparentPower`).
    ApparentPower,
    u16
);
scaled_value!(
    /// RMS current in A (`CurrentRMS`).
    CurrentRms,
    u16
);
scaled_value!(
    /// RMS voltage in V (`VoltageRMS`).
    VoltageRms,
    u16
);
scaled_value!(
    /// Energy in Wh (`WattHour`).
    WattHour,
    u16
);
scaled_value!(
    /// Charge in Ah (`AmpereHour`).
    AmpereHour,
    u16
);
scaled_value!(
    /// Reactive susceptance in siemens (`ReactiveSusceptance`).
    ReactiveSusceptance,
    u16
);
scaled_value!(
    /// Real energy in Wh (`RealEnergy`, 48-bit).
    RealEnergy,
    u64
);

/// Power factor (`PowerFactor`): `displacement × 10^multiplier` is the cosine of the angle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PowerFactor {
    /// Significand of the power factor.
    #[serde(rename = "displacement")]
    pub displacement: u16,
    /// Power of ten applied to `displacement`.
    #[serde(rename = "multiplier")]
    pub multiplier: i8,
}

impl PowerFactor {
    /// The power factor `displacement × 10^multiplier`.
    pub const fn new(displacement: u16, multiplier: i8) -> Self {
        Self {
            displacement,
            multiplier,
        }
    }
}

/// Power factor with the direction of excitation (`PowerFactorWithExcitation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PowerFactorWithExcitation {
    /// Significand of the power factor.
    #[serde(rename = "displacement")]
    pub displacement: u16,
    /// `true` when the DER absorbs reactive power (under-excited), `false` when it injects
    /// reactive power (over-excited), as sep.xsd documents the flag.
    #[serde(rename = "excitation")]
    pub excitation: bool,
    /// Power of ten applied to `displacement`.
    #[serde(rename = "multiplier")]
    pub multiplier: i8,
}

impl PowerFactorWithExcitation {
    /// The power factor `displacement × 10^multiplier` with the given excitation.
    pub const fn new(displacement: u16, multiplier: i8, excitation: bool) -> Self {
        Self {
            displacement,
            excitation,
            multiplier,
        }
    }
}

/// A fixed reactive power setting as a percentage of a reference (`FixedVar`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FixedVar {
    /// What the percentage refers to (`DERUnitRefType`).
    #[serde(rename = "refType")]
    pub ref_type: u8,
    /// Signed percentage in hundredths of a percent (`SignedPerCent`).
    #[serde(rename = "value")]
    pub value: i16,
}

impl FixedVar {
    /// A fixed var setting of `value` (hundredths of a percent) of reference `ref_type`.
    pub const fn new(ref_type: u8, value: i16) -> Self {
        Self { ref_type, value }
    }
}

/// A value with a unit (`UnitValueType`), used by reading types for conversion factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UnitValue {
    /// Power of ten applied to `value`.
    #[serde(rename = "multiplier")]
    pub multiplier: i8,
    /// Unit of measure (`UomType`).
    #[serde(rename = "unit")]
    pub unit: u8,
    /// Unscaled value.
    #[serde(rename = "value")]
    pub value: i32,
}

impl UnitValue {
    /// The quantity `value × 10^multiplier` in unit `unit`.
    pub const fn new(value: i32, multiplier: i8, unit: u8) -> Self {
        Self {
            multiplier,
            unit,
            value,
        }
    }
}

/// Declares a `u8` code enum carried on the wire as its number, with `TryFrom<u8>` that
/// refuses codes the standard does not define instead of mapping them to a default.
macro_rules! u8_code {
    (
        $(#[$doc:meta])* $name:ident, $err:ident, $what:literal,
        { $($(#[$vdoc:meta])* $variant:ident = $code:literal),+ $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "u8", into = "u8")]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vdoc])* $variant = $code),+
        }

        #[doc = concat!("A number that is not a defined ", $what, ".")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
        #[error("{0} is not a defined {what}", what = $what)]
        pub struct $err(pub u8);

        impl TryFrom<u8> for $name {
            type Error = $err;

            fn try_from(code: u8) -> Result<Self, Self::Error> {
                match code {
                    $($code => Ok(Self::$variant),)+
                    other => Err($err(other)),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(code: $name) -> u8 {
                code as u8
            }
        }
    };
}

u8_code!(
    /// `EventStatus.currentStatus` of an event such as a [`DerControl`].
    EventStatusCode, UnknownEventStatus, "2030.5 EventStatus currentStatus code",
    {
        /// 0: scheduled, not yet started.
        Scheduled = 0,
        /// 1: active now.
        Active = 1,
        /// 2: cancelled.
        Cancelled = 2,
        /// 3: cancelled; clients end with randomization.
        CancelledWithRandomization = 3,
        /// 4: superseded by another event of the same program.
        Superseded = 4,
    }
);

impl Default for EventStatusCode {
    /// Scheduled (0), the status a new event starts with.
    fn default() -> Self {
        Self::Scheduled
    }
}

u8_code!(
    /// `Response.status` as defined by IEEE 2030.5 Table 27 ("Response Types by Function Set").
    ///
    /// `sep.xsd` only refers to that table, so the names follow the standard's table text.
    /// Codes 0, 15-251 and 255 are reserved and are refused.
    ResponseStatus, UnknownResponseStatus, "2030.5 Response status code",
    {
        /// 1: event received.
        EventReceived = 1,
        /// 2: event started.
        EventStarted = 2,
        /// 3: event completed.
        EventCompleted = 3,
        /// 4: the user chose to opt out.
        OptedOut = 4,
        /// 5: the user chose to opt in.
        OptedIn = 5,
        /// 6: event cancelled.
        EventCancelled = 6,
        /// 7: event superseded.
        EventSuperseded = 7,
        /// 8: event partially completed with user opt-out.
        PartiallyCompletedOptOut = 8,
        /// 9: event partially completed due to user opt-in.
        PartiallyCompletedOptIn = 9,
        /// 10: event completed, no user participation (previous opt-out).
        CompletedNoParticipation = 10,
        /// 11: user acknowledgement (messages, prices).
        Acknowledged = 11,
        /// 12: the event/message could not be displayed.
        NotDisplayed = 12,
        /// 13: event aborted because of a server event.
        AbortedServer = 13,
        /// 14: event aborted because of an event of another program.
        AbortedProgram = 14,
        /// 252: rejected, the event is not applicable to this device.
        RejectedNotApplicable = 252,
        /// 253: rejected, the event is invalid.
        RejectedInvalid = 253,
        /// 254: rejected, the event has expired.
        RejectedExpired = 254,
    }
);
