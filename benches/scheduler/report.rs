//! Figures, distributions, the printed table and the JSON lines.

use std::fmt::Write as _;

use serde::Serialize;

/// p50 / p95 / p99 / max of a sample (nearest rank).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Dist {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: usize,
}

impl Dist {
    pub fn of(values: &[f64]) -> Option<Dist> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[i - 1]
        };
        Some(Dist {
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: sorted[sorted.len() - 1],
            samples: sorted.len(),
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    Missed,
    /// A figure with no target (context, or a reference to compare with).
    Info,
    /// Not measured in this run (says why in the target column).
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Value {
    Dist(Dist),
    Scalar { value: f64, samples: usize },
    None,
}

/// One row of the results table.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub scenario: String,
    pub figure: String,
    pub unit: &'static str,
    pub value: Value,
    pub reference: String,
    pub verdict: Verdict,
}

impl Figure {
    pub fn dist(scenario: &str, figure: &str, unit: &'static str, values: &[f64]) -> Figure {
        Figure {
            scenario: scenario.into(),
            figure: figure.into(),
            unit,
            value: Dist::of(values).map_or(Value::None, Value::Dist),
            reference: String::new(),
            verdict: Verdict::Info,
        }
    }

    pub fn scalar(
        scenario: &str,
        figure: &str,
        unit: &'static str,
        value: f64,
        samples: usize,
    ) -> Figure {
        Figure {
            scenario: scenario.into(),
            figure: figure.into(),
            unit,
            value: Value::Scalar { value, samples },
            reference: String::new(),
            verdict: Verdict::Info,
        }
    }

    /// A scenario that was not measured, and why.
    pub fn skipped(scenario: &str, why: &str) -> Figure {
        Figure {
            scenario: scenario.into(),
            figure: "-".into(),
            unit: "",
            value: Value::None,
            reference: why.into(),
            verdict: Verdict::Skipped,
        }
    }

    /// A reference to compare with, no target.
    pub fn reference(mut self, text: &str) -> Figure {
        self.reference = text.into();
        self
    }

    /// A target, and whether it was met.
    pub fn target(mut self, text: &str, met: bool) -> Figure {
        self.reference = text.into();
        self.verdict = if met { Verdict::Met } else { Verdict::Missed };
        self
    }

    pub fn dist_value(&self) -> Option<Dist> {
        match self.value {
            Value::Dist(d) => Some(d),
            _ => None,
        }
    }
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The table: scenario, figure, unit, p50 (or the value), p99, max, samples,
/// target or reference, verdict.
pub fn table(figures: &[Figure]) -> String {
    let header = [
        "scenario",
        "figure",
        "unit",
        "p50/value",
        "p99",
        "max",
        "n",
        "target / reference",
        "verdict",
    ];
    let rows: Vec<[String; 9]> = figures
        .iter()
        .map(|f| {
            let (a, b, c, n) = match &f.value {
                Value::Dist(d) => (num(d.p50), num(d.p99), num(d.max), d.samples.to_string()),
                Value::Scalar { value, samples } => (
                    num(*value),
                    String::new(),
                    String::new(),
                    samples.to_string(),
                ),
                Value::None => Default::default(),
            };
            let verdict = match f.verdict {
                Verdict::Met => "met",
                Verdict::Missed => "MISSED",
                Verdict::Info => "",
                Verdict::Skipped => "skipped",
            };
            [
                f.scenario.clone(),
                f.figure.clone(),
                f.unit.to_string(),
                a,
                b,
                c,
                n,
                f.reference.clone(),
                verdict.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut text = String::from("|");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            // Numbers right-aligned, text left-aligned.
            if (3..=6).contains(&i) {
                let _ = write!(text, " {}{} |", " ".repeat(pad), cell);
            } else {
                let _ = write!(text, " {}{} |", cell, " ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &header.map(String::from));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut out, &rule);
    for row in &rows {
        line(&mut out, row);
    }
    out
}
