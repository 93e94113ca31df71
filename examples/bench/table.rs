//! The result table: one row per measure, with the baseline, ours, their ratio and the
//! target; and the number formats the rows use.

/// The value at quantile `q` of sorted `v`.
pub(crate) fn quantile(v: &[u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((v.len() as f64) * q).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1] as f64
}

pub(crate) struct Row {
    measure: String,
    baseline: String,
    ours: String,
    ratio: String,
    target: String,
    verdict: String,
}

pub(crate) fn row(
    measure: impl Into<String>,
    baseline: impl Into<String>,
    ours: impl Into<String>,
) -> Row {
    Row {
        measure: measure.into(),
        baseline: baseline.into(),
        ours: ours.into(),
        ratio: String::new(),
        target: "-".to_owned(),
        verdict: String::new(),
    }
}

impl Row {
    pub(crate) fn ratio(mut self, ratio: impl Into<String>) -> Self {
        self.ratio = ratio.into();
        self
    }
    pub(crate) fn target(mut self, target: impl Into<String>, met: bool) -> Self {
        self.target = target.into();
        self.verdict = if met { "met" } else { "MISSED" }.to_owned();
        self
    }
}

pub(crate) fn rate_text(r: f64) -> String {
    let r = r.round() as u64;
    let s = r.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out}/s")
}

/// A measure's median and spread.
pub(crate) struct Spread {
    pub(crate) median: f64,
    low: f64,
    high: f64,
}

impl Spread {
    pub(crate) fn of(v: &[f64]) -> Spread {
        let mut sorted = v.to_vec();
        sorted.sort_by(f64::total_cmp);
        Spread {
            median: sorted[sorted.len() / 2],
            low: sorted[0],
            high: sorted[sorted.len() - 1],
        }
    }

    /// `233,088/s (201,114-240,310/s)`.
    pub(crate) fn text(&self) -> String {
        let bare = |r: f64| rate_text(r).trim_end_matches("/s").to_owned();
        format!(
            "{} ({}-{}/s)",
            rate_text(self.median),
            bare(self.low),
            bare(self.high)
        )
    }
}

pub(crate) fn us(ns: f64) -> String {
    format!("{:.0} µs", ns / 1000.0)
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

pub(crate) fn times(x: f64) -> String {
    format!("{x:.2}×")
}

pub(crate) fn print_table(rows: &[Row]) {
    let header = ["measure", "baseline", "ours", "ours/baseline", "target", ""];
    let cells: Vec<[&str; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.measure.as_str(),
                r.baseline.as_str(),
                r.ours.as_str(),
                r.ratio.as_str(),
                r.target.as_str(),
                r.verdict.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for c in &cells {
        for (w, s) in widths.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[&str; 6]| {
        let parts: Vec<String> = c
            .iter()
            .zip(widths)
            .map(|(s, w)| format!("{s}{}", " ".repeat(w - s.chars().count())))
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(&header);
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for c in &cells {
        line(c);
    }
}
