//! `${variable}` substitution and the small arithmetic used in procedure values.

use super::procedure::{Num, Scalar};
use std::collections::BTreeMap;

/// Variables visible to a step: built-ins (`lfdi`, `sfdi`, `rating_w`, `now`, ...) and the
/// values saved by earlier steps.
pub type Vars = BTreeMap<String, String>;

/// Replaces every `${name}` in `text`; an unknown name is an error naming it.
pub fn substitute(text: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed '${{' in '{text}'"))?;
        let name = after[..end].trim();
        let value = vars.get(name).ok_or_else(|| {
            format!(
                "unknown variable '{name}' (no earlier step saved it: it was skipped, or the \
                 optional value was absent)"
            )
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Evaluates a number or an expression of numbers and variables joined by `+ - * /`,
/// left to right (no precedence, no parentheses: procedures need no more).
pub fn number(n: &Num, vars: &Vars) -> Result<f64, String> {
    match n {
        Num::Value(v) => Ok(*v),
        Num::Expr(e) => {
            let text = substitute(e, vars)?;
            let mut tokens = text.split_whitespace();
            let operand = |t: Option<&str>| -> Result<f64, String> {
                let t = t.ok_or_else(|| format!("'{e}' ends with an operator"))?;
                t.parse::<f64>()
                    .map_err(|_| format!("'{t}' in '{e}' is not a number"))
            };
            let mut acc = operand(tokens.next())?;
            while let Some(op) = tokens.next() {
                let rhs = operand(tokens.next())?;
                acc = match op {
                    "+" => acc + rhs,
                    "-" => acc - rhs,
                    "*" => acc * rhs,
                    "/" => acc / rhs,
                    other => {
                        return Err(format!(
                            "'{other}' in '{e}' is not an operator (use + - * / with spaces)"
                        ));
                    }
                };
            }
            if acc.is_finite() {
                Ok(acc)
            } else {
                Err(format!("'{e}' is not a finite number"))
            }
        }
    }
}

/// A scalar as text, with variables substituted.
pub fn scalar(s: &Scalar, vars: &Vars) -> Result<String, String> {
    match s {
        Scalar::Text(t) => substitute(t, vars),
        other => Ok(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("rating_w", "10000"), ("lfdi", "ABCD")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn substitutes_known_variables_and_names_unknown_ones() {
        assert_eq!(
            substitute("<lFDI>${lfdi}</lFDI>", &vars()).unwrap(),
            "<lFDI>ABCD</lFDI>"
        );
        assert_eq!(substitute("no vars", &vars()).unwrap(), "no vars");
        assert!(substitute("${nope}", &vars()).unwrap_err().contains("nope"));
        assert!(substitute("${lfdi", &vars()).is_err());
    }

    #[test]
    fn evaluates_numbers_and_expressions() {
        assert_eq!(number(&Num::Value(3.0), &vars()).unwrap(), 3.0);
        let half = Num::Expr("${rating_w} * 0.5".into());
        assert_eq!(number(&half, &vars()).unwrap(), 5000.0);
        let chain = Num::Expr("${rating_w} * 2 + 1".into());
        assert_eq!(number(&chain, &vars()).unwrap(), 20001.0);
        assert!(number(&Num::Expr("${rating_w} *".into()), &vars()).is_err());
        assert!(number(&Num::Expr("${rating_w} % 2".into()), &vars()).is_err());
        assert!(number(&Num::Expr("1 / 0".into()), &vars()).is_err());
    }
}
