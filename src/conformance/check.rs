//! Evaluating a procedure's checks against the documents a step fetched.

use super::procedure::{Check, Condition};
use super::template::{Vars, number, scalar, substitute};
use super::xmltree::{Element, Node};

/// Relative tolerance when comparing watts (values are scaled integers on the wire).
const WATTS_TOLERANCE: f64 = 0.005;

/// Evaluates `check` over `roots` (the root elements of the step's documents). `now` is
/// the runner's clock and `tolerance_s` the default clock tolerance. Returns why it failed.
pub fn evaluate(check: &Check, roots: &[&Element], vars: &Vars, now: i64) -> Result<(), String> {
    let select = match &check.select {
        Some(s) => Some(substitute(s, vars)?),
        None => None,
    };
    let mut selected: Vec<&Element> = Vec::new();
    for root in roots {
        match &select {
            None => selected.push(root),
            Some(path) => {
                for node in root.select(path)? {
                    match node {
                        Node::Element(e) => selected.push(e),
                        Node::Attr(_) => {
                            return Err(format!(
                                "select '{path}' reaches an attribute; test attributes in 'where'"
                            ));
                        }
                    }
                }
            }
        }
    }
    let mut kept = 0usize;
    let mut misses: Vec<String> = Vec::new();
    for el in &selected {
        match check
            .conditions
            .iter()
            .try_for_each(|c| condition(c, el, vars, now))
        {
            Ok(()) => kept += 1,
            Err(why) => misses.push(why),
        }
    }
    let (lo, hi) = match (check.count, check.min, check.max) {
        (Some(n), _, _) => (n, Some(n)),
        (None, None, None) => (1, None),
        (None, min, max) => (min.unwrap_or(0), max),
    };
    if kept >= lo && hi.is_none_or(|h| kept <= h) {
        return Ok(());
    }
    let what = describe(check, select.as_deref());
    let wanted = match (lo, hi) {
        (l, Some(h)) if l == h => format!("exactly {l}"),
        (0, Some(h)) => format!("at most {h}"),
        (l, None) => format!("at least {l}"),
        (l, Some(h)) => format!("{l} to {h}"),
    };
    let mut msg = format!(
        "expected {wanted} {what}; found {kept} (of {} selected)",
        selected.len()
    );
    if kept < lo && !misses.is_empty() {
        misses.sort();
        misses.dedup();
        let shown: Vec<&str> = misses.iter().take(3).map(String::as_str).collect();
        msg.push_str(&format!(": {}", shown.join("; ")));
    }
    Err(msg)
}

fn describe(check: &Check, select: Option<&str>) -> String {
    let mut s = select.unwrap_or("document").to_owned();
    let conds: Vec<String> = check.conditions.iter().map(condition_text).collect();
    if !conds.is_empty() {
        s.push_str(" with ");
        s.push_str(&conds.join(", "));
    }
    s
}

fn condition_text(c: &Condition) -> String {
    let mut parts = Vec::new();
    if let Some(p) = c.present {
        parts.push(if p { "present" } else { "absent" }.to_owned());
    }
    if let Some(e) = &c.equals {
        parts.push(format!("= {e}"));
    }
    if !c.one_of.is_empty() {
        let v: Vec<String> = c.one_of.iter().map(ToString::to_string).collect();
        parts.push(format!("in [{}]", v.join(", ")));
    }
    if let Some(h) = &c.hex {
        parts.push(format!("= 0x{h}"));
    }
    if let Some(w) = &c.watts {
        parts.push(format!("= {} W", num_text(w)));
    }
    if let Some(n) = &c.at_least {
        parts.push(format!(">= {}", num_text(n)));
    }
    if let Some(n) = &c.at_most {
        parts.push(format!("<= {}", num_text(n)));
    }
    if let Some(n) = c.near_now {
        parts.push(format!("within {n} s of now"));
    }
    format!("{} {}", c.path, parts.join(" and "))
}

fn num_text(n: &super::procedure::Num) -> String {
    match n {
        super::procedure::Num::Value(v) => v.to_string(),
        super::procedure::Num::Expr(e) => e.clone(),
    }
}

/// Checks one condition on one element; the error says what was found instead.
pub fn condition(c: &Condition, el: &Element, vars: &Vars, now: i64) -> Result<(), String> {
    let path = substitute(&c.path, vars)?;
    let nodes = el.relative(&path)?;
    let label = format!("{}: {path}", el.name);
    if let Some(want) = c.present {
        if want == nodes.is_empty() {
            return Err(if want {
                format!("{label} is missing")
            } else {
                format!("{label} is present ({})", nodes[0].text())
            });
        }
        if !want {
            return Ok(());
        }
    }
    let needs_value = c.equals.is_some()
        || !c.one_of.is_empty()
        || c.hex.is_some()
        || c.watts.is_some()
        || c.at_least.is_some()
        || c.at_most.is_some()
        || c.near_now.is_some();
    if !needs_value {
        return Ok(());
    }
    let Some(node) = nodes.first() else {
        return Err(format!("{label} is missing"));
    };
    let text = node.text();
    let same = |a: &str, b: &str| {
        if c.ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    if let Some(e) = &c.equals {
        let want = scalar(e, vars)?;
        if !same(text, want.trim()) {
            return Err(format!("{label} is '{text}', not '{want}'"));
        }
    }
    if !c.one_of.is_empty() {
        let options = c
            .one_of
            .iter()
            .map(|s| scalar(s, vars))
            .collect::<Result<Vec<_>, _>>()?;
        if !options.iter().any(|o| same(text, o.trim())) {
            return Err(format!("{label} is '{text}', not one of {options:?}"));
        }
    }
    if let Some(h) = &c.hex {
        let want = u128::from_str_radix(h.trim(), 16)
            .map_err(|_| format!("'{h}' in the procedure is not hexadecimal"))?;
        match u128::from_str_radix(text, 16) {
            Ok(v) if v == want => {}
            _ => return Err(format!("{label} is '{text}', not hexadecimal {h}")),
        }
    }
    if let Some(w) = &c.watts {
        let want = number(w, vars)?;
        let got =
            watts_of(node).ok_or_else(|| format!("{label} is not a value/multiplier pair"))?;
        let tolerance = (want.abs() * WATTS_TOLERANCE).max(0.5);
        if (got - want).abs() > tolerance {
            return Err(format!("{label} is {got} W, not {want} W"));
        }
    }
    if c.at_least.is_some() || c.at_most.is_some() {
        let got: f64 = text
            .parse()
            .map_err(|_| format!("{label} is '{text}', not a number"))?;
        if let Some(n) = &c.at_least {
            let lo = number(n, vars)?;
            if got < lo {
                return Err(format!("{label} is {got}, less than {lo}"));
            }
        }
        if let Some(n) = &c.at_most {
            let hi = number(n, vars)?;
            if got > hi {
                return Err(format!("{label} is {got}, more than {hi}"));
            }
        }
    }
    if let Some(tol) = c.near_now {
        let got: i64 = text
            .parse()
            .map_err(|_| format!("{label} is '{text}', not epoch seconds"))?;
        if (got - now).abs() > tol {
            return Err(format!(
                "{label} is {got}, {} s from the runner's clock (tolerance {tol} s)",
                got - now
            ));
        }
    }
    Ok(())
}

/// value x 10^multiplier of an ActivePower-like element (multiplier defaults to 0).
fn watts_of(node: &Node<'_>) -> Option<f64> {
    let el = node.element()?;
    let value: f64 = el.child("value")?.text.trim().parse().ok()?;
    let multiplier: i32 = match el.child("multiplier") {
        Some(m) => m.text.trim().parse().ok()?,
        None => 0,
    };
    Some(value * 10f64.powi(multiplier))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::procedure::{Num, Scalar};
    use crate::conformance::xmltree::parse;

    const DOC: &str = r#"<DERControlList xmlns="urn:ieee:std:2030.5:ns" all="2">
<DERControl><mRID>AA</mRID><EventStatus><currentStatus>1</currentStatus><dateTime>1000</dateTime></EventStatus>
<DERControlBase><opModExpLimW><multiplier>1</multiplier><value>150</value></opModExpLimW></DERControlBase></DERControl>
<DERControl><mRID>BB</mRID><EventStatus><currentStatus>0</currentStatus><dateTime>1000</dateTime></EventStatus>
<DERControlBase><opModExpLimW><value>0</value></opModExpLimW><rampTms>3000</rampTms></DERControlBase></DERControl>
</DERControlList>"#;

    fn cond(path: &str) -> Condition {
        Condition {
            path: path.into(),
            present: None,
            equals: None,
            ignore_case: false,
            one_of: Vec::new(),
            hex: None,
            watts: None,
            at_least: None,
            at_most: None,
            near_now: None,
        }
    }

    fn check(select: &str, conditions: Vec<Condition>) -> Check {
        Check {
            select: Some(select.into()),
            conditions,
            count: None,
            min: None,
            max: None,
            requires: Vec::new(),
        }
    }

    #[test]
    fn counts_elements_meeting_every_condition() {
        let root = parse(DOC).unwrap();
        let vars = Vars::new();
        let mut active = cond("EventStatus/currentStatus");
        active.equals = Some(Scalar::Int(1));
        let mut w1500 = cond("DERControlBase/opModExpLimW");
        w1500.watts = Some(Num::Value(1500.0));
        let mut no_ramp = cond("DERControlBase/rampTms");
        no_ramp.present = Some(false);
        let c = check("DERControl", vec![active, w1500, no_ramp]);
        evaluate(&c, &[&root], &vars, 1000).unwrap();

        let mut zero = cond("DERControlBase/opModExpLimW");
        zero.watts = Some(Num::Value(0.0));
        let mut exactly = check("DERControl", vec![zero]);
        exactly.count = Some(1);
        evaluate(&exactly, &[&root], &vars, 1000).unwrap();
        exactly.count = Some(2);
        let err = evaluate(&exactly, &[&root], &vars, 1000).unwrap_err();
        assert!(
            err.contains("exactly 2") && err.contains("1500 W, not 0 W"),
            "{err}"
        );
    }

    #[test]
    fn attributes_time_hex_and_absence() {
        let root = parse(DOC).unwrap();
        let vars: Vars = [("n".to_owned(), "2".to_owned())].into_iter().collect();
        let mut all = cond("@all");
        all.equals = Some(Scalar::Text("${n}".into()));
        evaluate(
            &Check {
                select: None,
                ..check("x", vec![all])
            },
            &[&root],
            &vars,
            0,
        )
        .unwrap();
        let mut near = cond("EventStatus/dateTime");
        near.near_now = Some(60);
        assert!(
            evaluate(
                &check("DERControl", vec![near.clone()]),
                &[&root],
                &vars,
                1030
            )
            .is_ok()
        );
        assert!(evaluate(&check("DERControl", vec![near]), &[&root], &vars, 2000).is_err());
        let mut hex = cond("mRID");
        hex.hex = Some("aa".into());
        assert!(evaluate(&check("DERControl", vec![hex]), &[&root], &vars, 0).is_ok());
        let mut none = check("DERCurve", vec![]);
        none.max = Some(0);
        assert!(evaluate(&none, &[&root], &vars, 0).is_ok());
        let missing = check("DERCurve", vec![]);
        let err = evaluate(&missing, &[&root], &vars, 0).unwrap_err();
        assert!(err.contains("at least 1 DERCurve"), "{err}");
    }
}
