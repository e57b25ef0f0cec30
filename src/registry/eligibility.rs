//! Program eligibility: whether a DER at a site may enrol in a program. A pure function so
//! the rules are testable without a store, and every refusal says why.

use super::model::{Der, Program, Site};

/// Checks every rule of `program` against `der` at `site`; on refusal, returns one reason
/// per broken rule.
pub fn check(program: &Program, der: &Der, site: &Site) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    if !program.eligible_territories.is_empty()
        && !program.eligible_territories.contains(&site.territory)
    {
        reasons.push(format!(
            "territory '{}' is not one of the program's territories {:?}",
            site.territory, program.eligible_territories
        ));
    }
    if !program.eligible_classes.is_empty() && !program.eligible_classes.contains(&der.der_class) {
        let names: Vec<&str> = program
            .eligible_classes
            .iter()
            .map(|c| c.as_str())
            .collect();
        reasons.push(format!(
            "DER class '{}' is not one of the program's classes {:?}",
            der.der_class, names
        ));
    }
    if !program.eligible_interconnections.is_empty()
        && !program
            .eligible_interconnections
            .contains(&site.interconnection_type)
    {
        let names: Vec<&str> = program
            .eligible_interconnections
            .iter()
            .map(|c| c.as_str())
            .collect();
        reasons.push(format!(
            "interconnection type '{}' is not one of {:?}",
            site.interconnection_type, names
        ));
    }
    if let Some(min) = program.min_rated_kw
        && der.rated_kw < min
    {
        reasons.push(format!(
            "rated power {} kW is below the program minimum of {} kW",
            der.rated_kw, min
        ));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DerClass, DerStatus, GridLocation, InterconnectionType};

    fn fixtures() -> (Program, Der, Site) {
        let program = Program {
            id: "p".into(),
            name: "Summer peak".into(),
            description: None,
            eligible_territories: vec!["NORTH".into()],
            eligible_classes: vec![DerClass::Battery],
            eligible_interconnections: vec![InterconnectionType::Nem],
            min_rated_kw: Some(3.0),
            created_at: 0,
            updated_at: 0,
        };
        let der = Der {
            id: "d".into(),
            site_id: "s".into(),
            der_class: DerClass::Battery,
            manufacturer: "Acme".into(),
            model: "B1".into(),
            serial: "1".into(),
            rated_kw: 5.0,
            storage_kwh: Some(13.5),
            reserve_pct: Some(20.0),
            status: DerStatus::Active,
            aggregator_lfdi: None,
            created_at: 0,
            updated_at: 0,
        };
        let site = Site {
            id: "s".into(),
            account_id: "a".into(),
            connection_point_id: None,
            territory: "NORTH".into(),
            interconnection_type: InterconnectionType::Nem,
            address: None,
            grid_location: GridLocation::default(),
            created_at: 0,
            updated_at: 0,
        };
        (program, der, site)
    }

    #[test]
    fn eligible_der_passes() {
        let (p, d, s) = fixtures();
        assert_eq!(check(&p, &d, &s), Ok(()));
    }

    #[test]
    fn each_broken_rule_gives_its_own_reason() {
        let (p, mut d, mut s) = fixtures();
        s.territory = "SOUTH".into();
        d.der_class = DerClass::PvInverter;
        d.rated_kw = 2.0;
        s.interconnection_type = InterconnectionType::NonNem;
        let reasons = check(&p, &d, &s).unwrap_err();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons[0].contains("SOUTH"));
        assert!(reasons[1].contains("pv_inverter"));
        assert!(reasons[2].contains("non_nem"));
        assert!(reasons[3].contains("below the program minimum"));
    }

    #[test]
    fn empty_rules_admit_everything() {
        let (mut p, mut d, _) = fixtures();
        let (_, _, s) = fixtures();
        p.eligible_territories.clear();
        p.eligible_classes.clear();
        p.eligible_interconnections.clear();
        p.min_rated_kw = None;
        d.der_class = DerClass::WaterHeater;
        d.rated_kw = 0.1;
        assert_eq!(check(&p, &d, &s), Ok(()));
    }
}
