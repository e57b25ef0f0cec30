//! Decimal scaling of values into a 16-bit integer and a power-of-ten multiplier, the shape
//! IEEE 2030.5 uses on the wire (e.g. `ActivePower { value: Int16, multiplier: Int8 }`,
//! multipliers -9..=9). Pure arithmetic, kept here so the codec and the engine agree on it.
//!
//! The rule: choose the **smallest** multiplier `m` in -9..=9 for which the input, divided
//! by 10^m and rounded to the nearest integer (halves away from zero), fits in an `i16`. The
//! smallest such `m` keeps the most significant digits. Examples: 5000 W is `(5000, 0)`,
//! 50 000 W is `(5000, 1)`, 0.5 is `(5000, -4)` (at -5 the mantissa 50 000 would overflow).
//!
//! Precision: unless the multiplier is -9, the mantissa's magnitude is at least 3277 (at the
//! next smaller multiplier it did not fit), so the relative error is at most
//! 0.5 / 3276.75 ≈ 1.53 × 10⁻⁴; it is at most 10⁻⁴ whenever the mantissa is 5000 or more.
//! No 16-bit decimal encoding can do better for values just above 3276.75 × 10^m.
//! Zero, and anything that rounds to zero at the finest multiplier (|x| < 0.5 × 10⁻⁹), is
//! `(0, 0)`; a negative zero also becomes `(0, 0)`.

/// The smallest multiplier 2030.5 allows.
pub const MIN_MULTIPLIER: i8 = -9;
/// The largest multiplier 2030.5 allows.
pub const MAX_MULTIPLIER: i8 = 9;

/// Exact powers of ten 10^0..=10^9 (every one is exactly representable in an f64).
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// Why a value cannot be scaled.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ScaleError {
    #[error("cannot encode {value}: not a finite number")]
    NotFinite { value: f64 },
    #[error("cannot encode {value}: its magnitude exceeds 32767 x 10^9")]
    TooLarge { value: f64 },
}

/// `value / 10^m`, dividing or multiplying by an exact power so that only one rounding
/// happens.
fn descale(value: f64, m: i8) -> f64 {
    let k = usize::from(m.unsigned_abs());
    match POW10.get(k) {
        Some(p) if m >= 0 => value / p,
        Some(p) => value * p,
        None => value / 10f64.powi(i32::from(m)),
    }
}

/// Encodes `value` as `(mantissa, multiplier)` with `mantissa × 10^multiplier ≈ value`,
/// choosing the smallest multiplier in -9..=9 that fits (see the module documentation).
pub fn to_int16_scaled(value: f64) -> Result<(i16, i8), ScaleError> {
    if !value.is_finite() {
        return Err(ScaleError::NotFinite { value });
    }
    if value == 0.0 {
        return Ok((0, 0));
    }
    for m in MIN_MULTIPLIER..=MAX_MULTIPLIER {
        let mantissa = descale(value, m).round();
        if (f64::from(i16::MIN)..=f64::from(i16::MAX)).contains(&mantissa) {
            // In range and integral, so the conversion is exact.
            let mantissa = mantissa as i16;
            return Ok(if mantissa == 0 { (0, 0) } else { (mantissa, m) });
        }
    }
    Err(ScaleError::TooLarge { value })
}

/// Decodes `(mantissa, multiplier)` into `mantissa × 10^multiplier`. Any multiplier is
/// accepted; within -9..=9 the result is the correctly rounded decimal value (0.5, not
/// 0.50000000000000001).
pub fn from_int16_scaled(v: i16, m: i8) -> f64 {
    let v = f64::from(v);
    let k = usize::from(m.unsigned_abs());
    match POW10.get(k) {
        Some(p) if m >= 0 => v * p,
        Some(p) => v / p,
        None => v * 10f64.powi(i32::from(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_from_the_issue() {
        assert_eq!(to_int16_scaled(5000.0), Ok((5000, 0)));
        assert_eq!(to_int16_scaled(50_000.0), Ok((5000, 1)));
        assert_eq!(to_int16_scaled(0.5), Ok((5000, -4)));
        assert_eq!(from_int16_scaled(5000, -4), 0.5);
        assert_eq!(from_int16_scaled(5000, 1), 50_000.0);
    }

    #[test]
    fn picks_the_most_precise_fit() {
        assert_eq!(to_int16_scaled(32_767.0), Ok((32_767, 0)));
        assert_eq!(to_int16_scaled(32_768.0), Ok((3277, 1)));
        assert_eq!(to_int16_scaled(3.2767), Ok((32_767, -4)));
        assert_eq!(to_int16_scaled(1.0), Ok((10_000, -4)));
        assert_eq!(to_int16_scaled(0.95), Ok((9500, -4)));
        assert_eq!(to_int16_scaled(1e-9), Ok((1, -9)));
        assert_eq!(to_int16_scaled(32_767e9), Ok((32_767, 9)));
    }

    #[test]
    fn negative_values() {
        assert_eq!(to_int16_scaled(-5000.0), Ok((-5000, 0)));
        assert_eq!(to_int16_scaled(-32_768.0), Ok((-32_768, 0)));
        assert_eq!(to_int16_scaled(-32_769.0), Ok((-3277, 1)));
        assert_eq!(to_int16_scaled(-0.25), Ok((-25_000, -5)));
        assert_eq!(from_int16_scaled(-25_000, -5), -0.25);
    }

    #[test]
    fn zero_and_vanishing_values() {
        assert_eq!(to_int16_scaled(0.0), Ok((0, 0)));
        assert_eq!(to_int16_scaled(-0.0), Ok((0, 0)));
        assert_eq!(to_int16_scaled(1e-12), Ok((0, 0)));
        assert_eq!(to_int16_scaled(-1e-12), Ok((0, 0)));
    }

    #[test]
    fn unencodable_values_are_errors() {
        assert!(matches!(
            to_int16_scaled(f64::NAN),
            Err(ScaleError::NotFinite { .. })
        ));
        assert!(matches!(
            to_int16_scaled(f64::INFINITY),
            Err(ScaleError::NotFinite { .. })
        ));
        assert_eq!(
            to_int16_scaled(4e13),
            Err(ScaleError::TooLarge { value: 4e13 })
        );
        assert!(matches!(
            to_int16_scaled(-1e20),
            Err(ScaleError::TooLarge { .. })
        ));
    }

    #[test]
    fn decodes_outside_the_usual_multiplier_range() {
        assert_eq!(from_int16_scaled(1, 12), 1e12);
        assert_eq!(from_int16_scaled(0, -128), 0.0);
    }
}
