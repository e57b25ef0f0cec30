//! IEEE 2030.5 device identifiers.
//!
//! IEEE 2030.5 (SEP 2.0) does not give devices a free-form name: a device is
//! identified by the certificate it presents during the TLS handshake.
//!
//! * The **LFDI** (Long-form Device Identifier) is the first 160 bits of the
//!   SHA-256 hash of the DER-encoded device certificate, shown as 40 hex
//!   characters. It is what resources such as `EndDevice.lFDI` carry and what
//!   the server uses to match a TLS client to its registration.
//! * The **SFDI** (Short-form Device Identifier) is a shorter, human-enterable
//!   form: the first 36 bits of the same hash as a decimal number, followed by
//!   a check digit so that typing errors can be caught at installation time.
//!
//! This module provides validated newtypes for both so that the rest of the
//! crate never has to pass identifiers around as unchecked strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Number of bytes in an LFDI (160 bits).
const LFDI_LEN: usize = 20;

/// Number of hash bits that make up the SFDI before its check digit.
const SFDI_HASH_BITS: u32 = 36;

/// Largest value of the 36-bit hash prefix that forms the SFDI.
const SFDI_PREFIX_MAX: u64 = (1 << SFDI_HASH_BITS) - 1;

/// Errors produced when parsing or validating device identifiers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The text is not a valid LFDI; the string explains why.
    #[error("invalid LFDI: {0}")]
    InvalidLfdi(String),
    /// The text or number is not a valid SFDI; the string explains why.
    #[error("invalid SFDI: {0}")]
    InvalidSfdi(String),
}

/// Long-form Device Identifier: the first 160 bits of the SHA-256 hash of a
/// device's DER-encoded certificate.
///
/// Displays, parses and serializes as 40 hex characters. Output is always
/// uppercase (the form used in the IEEE 2030.5 examples); input is accepted
/// in either case because devices and tools are not consistent about it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lfdi([u8; LFDI_LEN]);

impl Lfdi {
    /// Computes the LFDI of a DER-encoded certificate.
    ///
    /// The hash must be taken over the exact DER bytes presented in the TLS
    /// handshake; re-encoding a parsed certificate could change them.
    pub fn from_certificate_der(der: &[u8]) -> Lfdi {
        let digest: [u8; 32] = Sha256::digest(der).into();
        Lfdi::from_sha256_digest(&digest)
    }

    /// Builds an LFDI from an already computed SHA-256 certificate
    /// fingerprint by truncating it to 160 bits.
    ///
    /// Useful when the fingerprint comes from elsewhere (for example a TLS
    /// library or a device label) rather than from the certificate itself.
    pub fn from_sha256_digest(digest: &[u8; 32]) -> Lfdi {
        let mut bytes = [0u8; LFDI_LEN];
        bytes.copy_from_slice(&digest[..LFDI_LEN]);
        Lfdi(bytes)
    }

    /// Wraps 20 raw bytes as an LFDI.
    pub fn from_bytes(bytes: [u8; LFDI_LEN]) -> Lfdi {
        Lfdi(bytes)
    }

    /// The raw 20 bytes of the identifier.
    pub fn as_bytes(&self) -> &[u8; LFDI_LEN] {
        &self.0
    }

    /// The identifier as 40 uppercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.0)
    }

    /// The short-form identifier derived from this LFDI.
    pub fn sfdi(&self) -> Sfdi {
        Sfdi::from_lfdi(self)
    }
}

impl fmt::Display for Lfdi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

// Hand-written so that logs and test failures show the familiar hex form
// rather than a list of 20 decimal bytes.
impl fmt::Debug for Lfdi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lfdi({})", self.to_hex())
    }
}

impl FromStr for Lfdi {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != LFDI_LEN * 2 {
            return Err(IdentityError::InvalidLfdi(format!(
                "expected {} hex characters, got {}",
                LFDI_LEN * 2,
                s.chars().count()
            )));
        }
        // `hex::decode_to_slice` accepts both cases, which is what we want.
        let mut bytes = [0u8; LFDI_LEN];
        hex::decode_to_slice(s, &mut bytes)
            .map_err(|e| IdentityError::InvalidLfdi(format!("not hexadecimal: {e}")))?;
        Ok(Lfdi(bytes))
    }
}

impl Serialize for Lfdi {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Lfdi {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Owned `String` rather than `&str` so that formats which cannot
        // borrow (e.g. JSON strings containing escapes) still work.
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Short-form Device Identifier: the first 36 bits of the certificate hash
/// as a decimal number, with one check digit appended.
///
/// The check digit makes the sum of all decimal digits a multiple of ten, so
/// the stored value is `prefix * 10 + check`. Serializes as a plain integer,
/// matching the `SFDIType` (UInt40) in the IEEE 2030.5 schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Sfdi(u64);

impl Sfdi {
    /// Derives the SFDI from an LFDI (both come from the same hash, and the
    /// 36-bit prefix of the LFDI is the 36-bit prefix of the hash).
    pub fn from_lfdi(lfdi: &Lfdi) -> Sfdi {
        let b = lfdi.as_bytes();
        // Take the first 40 bits big-endian and drop the low 4 to keep 36.
        let first40 = b[..5]
            .iter()
            .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte));
        let prefix = first40 >> 4;
        Sfdi(prefix * 10 + check_digit(prefix))
    }

    /// Validates a complete SFDI value (including its check digit).
    pub fn from_value(value: u64) -> Result<Sfdi, IdentityError> {
        let prefix = value / 10;
        let check = value % 10;
        if prefix > SFDI_PREFIX_MAX {
            return Err(IdentityError::InvalidSfdi(format!(
                "{value} is out of range (the hash part must fit in {SFDI_HASH_BITS} bits)"
            )));
        }
        let expected = check_digit(prefix);
        if check != expected {
            return Err(IdentityError::InvalidSfdi(format!(
                "{value} has check digit {check}, expected {expected}"
            )));
        }
        Ok(Sfdi(value))
    }

    /// The SFDI as an integer, check digit included.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// The digit that brings the decimal digit sum of `prefix` up to a multiple
/// of ten.
fn check_digit(prefix: u64) -> u64 {
    let mut sum = 0u64;
    let mut n = prefix;
    while n > 0 {
        sum += n % 10;
        n /= 10;
    }
    (10 - sum % 10) % 10
}

impl fmt::Display for Sfdi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Sfdi {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `u64::from_str` would accept a leading '+'; an SFDI is digits only.
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(IdentityError::InvalidSfdi(format!(
                "{s:?} is not a string of decimal digits"
            )));
        }
        let value: u64 = s
            .parse()
            .map_err(|_| IdentityError::InvalidSfdi(format!("{s:?} is out of range")))?;
        Sfdi::from_value(value)
    }
}

impl TryFrom<u64> for Sfdi {
    type Error = IdentityError;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Sfdi::from_value(value)
    }
}

impl From<Sfdi> for u64 {
    fn from(sfdi: Sfdi) -> u64 {
        sfdi.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Certificate fingerprint from the IEEE 2030.5 worked example.
    const EXAMPLE_FINGERPRINT: &str =
        "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5349E2AD745672ED145EE213A";
    const EXAMPLE_LFDI: &str = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5";
    const EXAMPLE_SFDI: u64 = 167_261_211_391;

    fn example_digest() -> [u8; 32] {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(EXAMPLE_FINGERPRINT, &mut digest).expect("valid hex");
        digest
    }

    #[test]
    fn ieee_2030_5_worked_example() {
        let lfdi = Lfdi::from_sha256_digest(&example_digest());
        assert_eq!(lfdi.to_hex(), EXAMPLE_LFDI);
        assert_eq!(lfdi.to_string(), EXAMPLE_LFDI);
        // 0x3E4F45AB3 = 16726121139, digit sum 39, so the check digit is 1.
        assert_eq!(0x3E4F45AB3_u64, 16_726_121_139);
        assert_eq!(lfdi.sfdi().value(), EXAMPLE_SFDI);
        assert_eq!(Sfdi::from_lfdi(&lfdi).to_string(), "167261211391");
    }

    #[test]
    fn lfdi_parses_case_insensitively_and_prints_uppercase() {
        let lower: Lfdi = EXAMPLE_LFDI.to_lowercase().parse().expect("lowercase ok");
        let upper: Lfdi = EXAMPLE_LFDI.parse().expect("uppercase ok");
        assert_eq!(lower, upper);
        assert_eq!(lower.to_hex(), EXAMPLE_LFDI);
        assert_eq!(format!("{lower:?}"), format!("Lfdi({EXAMPLE_LFDI})"));
    }

    #[test]
    fn lfdi_rejects_wrong_length_and_non_hex() {
        let short = &EXAMPLE_LFDI[..39];
        assert!(matches!(
            short.parse::<Lfdi>(),
            Err(IdentityError::InvalidLfdi(_))
        ));
        let long = format!("{EXAMPLE_LFDI}0");
        assert!(matches!(
            long.parse::<Lfdi>(),
            Err(IdentityError::InvalidLfdi(_))
        ));
        let non_hex = format!("{}G", &EXAMPLE_LFDI[..39]);
        assert!(matches!(
            non_hex.parse::<Lfdi>(),
            Err(IdentityError::InvalidLfdi(_))
        ));
        assert!("".parse::<Lfdi>().is_err());
        // 40 bytes but not 40 characters: must not panic on a char boundary.
        let multibyte = "é".repeat(20);
        assert!(multibyte.parse::<Lfdi>().is_err());
    }

    #[test]
    fn sfdi_parses_and_checks_digit() {
        let sfdi: Sfdi = "167261211391".parse().expect("valid SFDI");
        assert_eq!(sfdi.value(), EXAMPLE_SFDI);
        for wrong in ["167261211390", "167261211392", "167261211399"] {
            assert!(
                matches!(wrong.parse::<Sfdi>(), Err(IdentityError::InvalidSfdi(_))),
                "{wrong} should be rejected"
            );
        }
    }

    #[test]
    fn sfdi_rejects_bad_text_and_range() {
        for bad in ["", "+167261211391", "-1", "1672612113 91", "abc"] {
            assert!(bad.parse::<Sfdi>().is_err(), "{bad:?} should be rejected");
        }
        // Prefix one past the 36-bit maximum; give it a correct check digit
        // so that only the range check can reject it.
        let prefix = SFDI_PREFIX_MAX + 1;
        let value = prefix * 10 + check_digit(prefix);
        assert!(Sfdi::from_value(value).is_err());
        assert!(Sfdi::from_value(u64::MAX).is_err());
        assert!("99999999999999999999999".parse::<Sfdi>().is_err());
        // The largest possible SFDI is accepted.
        let max = SFDI_PREFIX_MAX * 10 + check_digit(SFDI_PREFIX_MAX);
        assert_eq!(Sfdi::from_value(max).map(|s| s.value()), Ok(max));
        // All-zero hash prefix: digit sum 0, check digit 0.
        assert_eq!(Sfdi::from_value(0).map(|s| s.value()), Ok(0));
    }

    #[test]
    fn check_digit_makes_digit_sum_multiple_of_ten() {
        for prefix in [0, 1, 9, 10, 19, 12345, 16_726_121_139, SFDI_PREFIX_MAX] {
            let value = prefix * 10 + check_digit(prefix);
            let digit_sum: u64 = value.to_string().bytes().map(|c| u64::from(c - b'0')).sum();
            assert_eq!(digit_sum % 10, 0, "prefix {prefix}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let lfdi = Lfdi::from_sha256_digest(&example_digest());
        let json = serde_json::to_string(&lfdi).expect("serialize");
        assert_eq!(json, format!("\"{EXAMPLE_LFDI}\""));
        let back: Lfdi = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, lfdi);
        let from_lower: Lfdi =
            serde_json::from_str(&json.to_lowercase()).expect("lowercase deserialize");
        assert_eq!(from_lower, lfdi);
        assert!(serde_json::from_str::<Lfdi>("\"ABC\"").is_err());
        assert!(serde_json::from_str::<Lfdi>("42").is_err());

        let sfdi = lfdi.sfdi();
        let json = serde_json::to_string(&sfdi).expect("serialize");
        assert_eq!(json, "167261211391");
        let back: Sfdi = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, sfdi);
        assert!(serde_json::from_str::<Sfdi>("167261211390").is_err());
        assert!(serde_json::from_str::<Sfdi>("\"167261211391\"").is_err());
    }

    #[test]
    fn from_certificate_der_is_truncated_sha256() {
        // The function only hashes bytes, so any byte string exercises it.
        let der = b"\x30\x03\x02\x01\x05 not really a certificate";
        let digest = Sha256::digest(der);
        let lfdi = Lfdi::from_certificate_der(der);
        assert_eq!(lfdi.as_bytes()[..], digest[..20]);
        let digest_array: [u8; 32] = digest.into();
        assert_eq!(Lfdi::from_sha256_digest(&digest_array), lfdi);
        assert_eq!(Lfdi::from_bytes(*lfdi.as_bytes()), lfdi);
    }
}
