//! Output helpers shared by the benchmarks: the Markdown table they print (and copy into
//! docs/benchmarks.md) and number formatting.

#![allow(dead_code)] // each bench uses its own subset

/// Rows of a three-column Markdown table (measurement, value, notes), printed at the end of
/// a run; every row is also echoed to stderr as it is measured, as progress.
pub struct Table {
    rows: Vec<[String; 3]>,
}

impl Table {
    pub fn new() -> Self {
        Table { rows: Vec::new() }
    }

    pub fn section(&mut self, name: &str) {
        eprintln!("{name}");
        self.rows
            .push([format!("**{name}**"), String::new(), String::new()]);
    }

    pub fn add(&mut self, metric: &str, value: String, note: &str) {
        eprintln!("  {metric}: {value} {note}");
        self.rows
            .push([metric.to_string(), value, note.to_string()]);
    }

    pub fn print(&self) {
        let head = ["Measurement", "Value", "Notes"];
        let mut w = head.map(str::len);
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |c: &[String; 3]| {
            println!(
                "| {:<w0$} | {:>w1$} | {:<w2$} |",
                c[0],
                c[1],
                c[2],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            )
        };
        line(&head.map(String::from));
        println!(
            "|{}|{}:|{}|",
            "-".repeat(w[0] + 2),
            "-".repeat(w[1] + 1),
            "-".repeat(w[2] + 2)
        );
        for r in &self.rows {
            line(r);
        }
    }
}

/// `n` with thousands separators: 1234567 -> "1,234,567".
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
