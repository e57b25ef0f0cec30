//! Field validation rules shared by every registry record. Each failure names the field it
//! concerns so the operator API can point at it.

use serde::Serialize;
use utoipa::ToSchema;

/// One field that failed validation, and why.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Violation {
    pub field: String,
    pub reason: String,
}

/// Collects violations for one record.
#[derive(Debug, Default)]
pub struct Checker {
    pub violations: Vec<Violation>,
}

/// Largest length accepted for free-text fields; keeps rows and exports bounded.
pub const MAX_TEXT: usize = 256;

impl Checker {
    /// Records a violation.
    pub fn fail(&mut self, field: &str, reason: impl Into<String>) {
        self.violations.push(Violation {
            field: field.to_string(),
            reason: reason.into(),
        });
    }

    /// A required, non-blank text of bounded length without control characters.
    pub fn text(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.fail(field, "must not be empty");
        } else {
            self.opt_text(field, Some(value));
        }
    }

    /// An optional text: when present, bounded and free of control characters.
    pub fn opt_text(&mut self, field: &str, value: Option<&str>) {
        if let Some(v) = value {
            if v.len() > MAX_TEXT {
                self.fail(field, format!("longer than {MAX_TEXT} bytes"));
            } else if v.chars().any(|c| c.is_control()) {
                self.fail(field, "contains control characters");
            }
        }
    }

    /// An identifier: 1-64 characters of letters, digits, '-', '_', '.' or ':'.
    pub fn ident(&mut self, field: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if !ok {
            self.fail(
                field,
                "must be 1-64 characters of letters, digits, '-', '_', '.' or ':'",
            );
        }
    }

    /// A finite number within `[min, max]`.
    pub fn range(&mut self, field: &str, value: f64, min: f64, max: f64) {
        if !value.is_finite() || value < min || value > max {
            self.fail(
                field,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    /// Turns the collected violations into a result.
    pub fn finish(self) -> Result<(), Vec<Violation>> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(self.violations)
        }
    }
}

/// Upper bound on a single DER's rated power, kW. Larger values are data-entry errors
/// (a unit mix-up of W for kW, typically), not distributed resources.
pub const MAX_RATED_KW: f64 = 100_000.0;
/// Upper bound on a single DER's storage energy, kWh.
pub const MAX_STORAGE_KWH: f64 = 1_000_000.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_failing_field() {
        let mut c = Checker::default();
        c.text("name", "  ");
        c.ident("id", "has space");
        c.range("rated_kw", -1.0, 0.0, 10.0);
        c.range("rated_kw2", f64::NAN, 0.0, 10.0);
        c.opt_text("address", Some("ok"));
        let v = c.finish().unwrap_err();
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["name", "id", "rated_kw", "rated_kw2"]);
    }
}
