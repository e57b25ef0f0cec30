//! Renderings of simulator results: a side-by-side table, JSON lines and an SVG plot.

use super::estimate::EstimatorKind;
use super::sim::{CellResult, published_latest_sum};
use std::fmt::Write;

/// One line per cell: ramp, read interval, the study's published figure for
/// `latest-sum` when the cell is in its grid, then max/mean error of every estimator.
pub fn table(cells: &[CellResult]) -> String {
    let mut out = String::new();
    let Some(first) = cells.first() else {
        return out;
    };
    let kinds: Vec<EstimatorKind> = first.scores.iter().map(|s| s.estimator).collect();
    let _ = write!(out, "{:<16} {:>6} {:>9}", "ramp", "read_s", "published");
    for k in &kinds {
        let _ = write!(out, " {:>22}", format!("{k} max/mean %"));
    }
    out.push('\n');
    for c in cells {
        let published = published_latest_sum(c.ramp, c.read_s)
            .map_or_else(|| "-".to_string(), |p| format!("{p:.1}"));
        let _ = write!(
            out,
            "{:<16} {:>6} {:>9}",
            c.ramp.to_string(),
            c.read_s,
            published
        );
        for s in &c.scores {
            let _ = write!(
                out,
                " {:>22}",
                format!("{:.2} / {:.2}", s.max_error_pct, s.mean_error_pct)
            );
        }
        out.push('\n');
    }
    out
}

/// One JSON object per cell and estimator.
pub fn json_lines(cells: &[CellResult]) -> String {
    let mut out = String::new();
    for c in cells {
        for s in &c.scores {
            let line = serde_json::json!({
                "ramp": c.ramp.to_string(),
                "ramp_s": c.ramp_s,
                "read_s": c.read_s,
                "estimator": s.estimator,
                "max_error_pct": s.max_error_pct,
                "worst_error_pct": s.worst_error_pct,
                "mean_error_pct": s.mean_error_pct,
                "band_coverage_pct": s.band_coverage_pct,
                "mean_band_pct": s.mean_band_pct,
                "published_max_error_pct": published_latest_sum(c.ramp, c.read_s)
                    .filter(|_| s.estimator == EstimatorKind::LatestSum),
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    out
}

const COLOURS: [&str; 5] = ["#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#1f77b4"];
const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 240.0;
const MARGIN: f64 = 44.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG with one panel per cell (three per row) and, in each, one path per estimator:
/// its mean absolute error (% of capacity) over time since the first command. Each path
/// carries `data-estimator` and `data-cell` attributes.
pub fn svg(cells: &[CellResult]) -> String {
    let cols = cells.len().clamp(1, 3);
    let rows = cells.len().div_ceil(3).max(1);
    let legend_h = 28.0;
    let width = cols as f64 * (PANEL_W + MARGIN) + MARGIN;
    let height = rows as f64 * (PANEL_H + 2.0 * MARGIN) + legend_h + MARGIN;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    if let Some(first) = cells.first() {
        for (i, s) in first.scores.iter().enumerate() {
            let x = MARGIN + i as f64 * 150.0;
            let colour = COLOURS[i % COLOURS.len()];
            let _ = writeln!(
                out,
                r#"<rect x="{x:.0}" y="10" width="14" height="4" fill="{colour}"/><text x="{:.0}" y="16">{}</text>"#,
                x + 18.0,
                s.estimator
            );
        }
    }
    for (n, c) in cells.iter().enumerate() {
        let ox = MARGIN + (n % 3) as f64 * (PANEL_W + MARGIN);
        let oy = legend_h + MARGIN + (n / 3) as f64 * (PANEL_H + 2.0 * MARGIN);
        let steps = c.scores.first().map_or(0, |s| s.trace_pct.len());
        let t_end = c.start_s + steps.saturating_sub(1) as f64 * c.step_s;
        let y_max = c
            .scores
            .iter()
            .flat_map(|s| s.trace_pct.iter().copied())
            .fold(1.0f64, f64::max)
            .ceil();
        let sx = |t: f64| ox + (t - c.start_s) / (t_end - c.start_s).max(1e-9) * PANEL_W;
        let sy = |e: f64| oy + PANEL_H - e / y_max * PANEL_H;
        let cell = escape(&format!("{} read {} s", c.ramp, c.read_s));
        let _ = writeln!(out, r#"<g data-cell="{cell}">"#);
        let _ = writeln!(
            out,
            r##"<rect x="{ox:.1}" y="{oy:.1}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#999"/>"##
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{cell}</text>"#,
            ox,
            oy - 6.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{y_max:.0}%</text><text x="{:.1}" y="{:.1}" text-anchor="end">0</text>"#,
            ox - 4.0,
            oy + 10.0,
            ox - 4.0,
            oy + PANEL_H
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{:.0} s</text><text x="{:.1}" y="{:.1}" text-anchor="end">{:.0} s</text>"#,
            ox,
            oy + PANEL_H + 14.0,
            c.start_s,
            ox + PANEL_W,
            oy + PANEL_H + 14.0,
            t_end
        );
        for (i, s) in c.scores.iter().enumerate() {
            let points: Vec<(String, String)> = s
                .trace_pct
                .iter()
                .enumerate()
                .map(|(k, e)| {
                    let t = c.start_s + k as f64 * c.step_s;
                    (format!("{:.1}", sx(t)), format!("{:.1}", sy(*e)))
                })
                .collect();
            // Long flat stretches (most of an event once everyone has reported) need only
            // their two ends: keep a point only where the drawn height changes around it.
            let mut d = String::new();
            for (k, (x, y)) in points.iter().enumerate() {
                let same_before = k > 0 && points[k - 1].1 == *y;
                let same_after = k + 1 < points.len() && points[k + 1].1 == *y;
                if same_before && same_after {
                    continue;
                }
                let _ = write!(d, "{}{x},{y} ", if d.is_empty() { 'M' } else { 'L' });
            }
            let _ = writeln!(
                out,
                r#"<path data-estimator="{}" data-cell="{cell}" d="{}" fill="none" stroke="{}" stroke-width="1.2"/>"#,
                s.estimator,
                d.trim_end(),
                COLOURS[i % COLOURS.len()]
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregation::sim::{Ramp, Scenario, run_grid};
    use quick_xml::Reader;
    use quick_xml::events::Event;
    use std::collections::BTreeSet;

    fn results() -> Vec<CellResult> {
        let sc = Scenario {
            assets: 100,
            runs: 1,
            step_s: 1.0,
            ..Scenario::default()
        };
        run_grid(
            &sc,
            &[(Ramp::Staggered(60.0), 10.0), (Ramp::Simultaneous, 30.0)],
            &EstimatorKind::ALL,
        )
        .unwrap()
    }

    #[test]
    fn svg_is_xml_with_one_path_per_estimator_and_cell() {
        let cells = results();
        let doc = svg(&cells);
        let mut reader = Reader::from_str(&doc);
        let mut paths = Vec::new();
        let mut root = None;
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) | Event::Empty(e) => {
                    let name = e.name().as_ref().to_string();
                    if root.is_none() {
                        root = Some(name.clone());
                    }
                    if name == "path" {
                        let attr = e
                            .try_get_attribute("data-estimator")
                            .unwrap()
                            .expect("named path");
                        let cell = e.try_get_attribute("data-cell").unwrap().expect("cell");
                        paths.push((attr.value.to_string(), cell.value.to_string()));
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(root.as_deref(), Some("svg"));
        assert_eq!(paths.len(), 2 * EstimatorKind::ALL.len());
        let per_cell: BTreeSet<&str> = paths
            .iter()
            .filter(|p| p.1 == "staggered:60 read 10 s")
            .map(|p| p.0.as_str())
            .collect();
        let expected: BTreeSet<&str> = EstimatorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(per_cell, expected);
    }

    #[test]
    fn json_lines_carry_the_documented_fields() {
        let cells = results();
        let text = json_lines(&cells);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2 * EstimatorKind::ALL.len());
        for l in &lines {
            for f in [
                "ramp_s",
                "read_s",
                "estimator",
                "max_error_pct",
                "mean_error_pct",
            ] {
                assert!(l.get(f).is_some(), "{f} missing in {l}");
            }
        }
        assert_eq!(lines[0]["ramp_s"], 60.0);
        assert_eq!(lines[0]["estimator"], "latest-sum");
        assert_eq!(lines[0]["published_max_error_pct"], 7.8);
    }

    #[test]
    fn table_has_a_row_per_cell_and_a_column_per_estimator() {
        let t = table(&results());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        for k in EstimatorKind::ALL {
            assert!(lines[0].contains(k.as_str()));
        }
        assert!(lines[1].starts_with("staggered:60"));
        assert!(
            lines[2].contains("94.0"),
            "published figure shown: {}",
            lines[2]
        );
    }
}
