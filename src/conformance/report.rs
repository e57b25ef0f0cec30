//! Printing outcomes: an aligned table with a summary, or one JSON object per line.

use super::{Outcome, Status};
use std::fmt::Write as _;

/// The table: id, result, title and reason, then a summary line.
pub fn table(outcomes: &[Outcome]) -> String {
    let id_w = outcomes
        .iter()
        .map(|o| o.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let title_w = outcomes
        .iter()
        .map(|o| o.title.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 60);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<id_w$}  {:<11}  {:<title_w$}  REASON",
        "ID", "RESULT", "TITLE"
    );
    for o in outcomes {
        let title: String = o.title.chars().take(title_w).collect();
        let _ = writeln!(
            s,
            "{:<id_w$}  {:<11}  {:<title_w$}  {}",
            o.id,
            o.status.label(),
            title,
            o.reason
        );
    }
    let _ = writeln!(s, "{}", summary(outcomes));
    s
}

/// "N procedures: a pass, b fail, c needs set-up, d skipped".
pub fn summary(outcomes: &[Outcome]) -> String {
    let n = |st: Status| outcomes.iter().filter(|o| o.status == st).count();
    format!(
        "{} procedures: {} pass, {} fail, {} needs set-up, {} skipped",
        outcomes.len(),
        n(Status::Pass),
        n(Status::Fail),
        n(Status::NeedsSetup),
        n(Status::Skip)
    )
}

/// One JSON object per procedure, one per line.
pub fn json_lines(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    for o in outcomes {
        // Outcome holds strings, numbers and enums only; serializing cannot fail.
        let line = serde_json::to_string(o).unwrap_or_default();
        s.push_str(&line);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{Profile, StepReport, StepStatus};

    fn outcome(id: &str, status: Status, reason: &str) -> Outcome {
        Outcome {
            id: id.into(),
            title: "A title".into(),
            profile: Profile::CsipAus,
            area: "registration".into(),
            status,
            reason: reason.into(),
            steps: vec![StepReport {
                name: "s".into(),
                status: StepStatus::Pass,
                detail: String::new(),
            }],
            seconds: 0.5,
        }
    }

    #[test]
    fn table_and_json_carry_every_outcome() {
        let all = [
            outcome("S-ALL-01", Status::Pass, ""),
            outcome("S-ALL-06", Status::Skip, "requires 'mirror'"),
            outcome("S-ALL-11", Status::Fail, "step 'x': boom"),
        ];
        let t = table(&all);
        assert!(t.contains("S-ALL-11  FAIL"), "{t}");
        assert!(t.contains("NEEDS-SETUP") || t.contains("SKIP"));
        assert!(t.ends_with("3 procedures: 1 pass, 1 fail, 0 needs set-up, 1 skipped\n"));
        let j = json_lines(&all);
        let first: serde_json::Value = serde_json::from_str(j.lines().next().unwrap()).unwrap();
        assert_eq!(first["status"], "PASS");
        assert_eq!(first["profile"], "csip-aus");
        let third: serde_json::Value = serde_json::from_str(j.lines().nth(2).unwrap()).unwrap();
        assert_eq!(third["reason"], "step 'x': boom");
    }
}
