//! CloudWatch Embedded Metric Format: a metric is a JSON log line that CloudWatch turns into a
//! metric, with no API call and no agent. One helper builds every line, so all functions share a
//! namespace and dimension scheme; lines are written per batch, not per call, to keep log volume
//! and cost low.

use std::collections::BTreeMap;
use std::io::Write;

pub const NAMESPACE: &str = "LeadFactory";

/// Whether metric lines are written (decided once per process).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            || std::env::var("LF_METRICS").is_ok_and(|v| v == "emf")
    })
}

/// A unit CloudWatch understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::None => "None",
        }
    }
}

/// One EMF line: dimensions, then named values.
#[derive(Debug, Clone, Default)]
pub struct MetricLine {
    dimensions: BTreeMap<String, String>,
    values: Vec<(String, f64, Unit)>,
}

impl MetricLine {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn dimension(mut self, name: &str, value: &str) -> Self {
        self.dimensions.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn value(mut self, name: &str, value: f64, unit: Unit) -> Self {
        self.values.push((name.to_owned(), value, unit));
        self
    }

    /// The JSON line, stamped with `timestamp_ms`.
    pub fn render(&self, timestamp_ms: i64) -> String {
        let mut root = serde_json::Map::new();
        let metrics: Vec<serde_json::Value> = self
            .values
            .iter()
            .map(|(n, _, u)| serde_json::json!({ "Name": n, "Unit": u.as_str() }))
            .collect();
        root.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{ "Namespace": NAMESPACE, "Dimensions": [self.dimensions.keys().collect::<Vec<_>>()], "Metrics": metrics }]
            }),
        );
        for (k, v) in &self.dimensions {
            root.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        for (n, v, _) in &self.values {
            root.insert(n.clone(), serde_json::json!(v));
        }
        serde_json::Value::Object(root).to_string()
    }

    /// Writes the line to stdout (CloudWatch Logs) when running in Lambda or with
    /// `LF_METRICS=emf`; the local run's terminal stays readable.
    pub fn emit(&self) {
        if !enabled() || self.values.is_empty() {
            return;
        }
        let line = self.render(chrono::Utc::now().timestamp_millis());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_valid_emf_line() {
        let line = MetricLine::new()
            .dimension("Stage", "sourcing")
            .value("Processed", 10.0, Unit::Count)
            .value("BatchMs", 120.5, Unit::Milliseconds)
            .render(1_700_000_000_000);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(cw["Namespace"], NAMESPACE);
        assert_eq!(cw["Dimensions"], serde_json::json!([["Stage"]]));
        assert_eq!(
            cw["Metrics"][1],
            serde_json::json!({ "Name": "BatchMs", "Unit": "Milliseconds" })
        );
        // Every dimension and metric named in the directive is a top-level member.
        assert_eq!(
            (
                v["Stage"].as_str(),
                v["Processed"].as_f64(),
                v["BatchMs"].as_f64()
            ),
            (Some("sourcing"), Some(10.0), Some(120.5))
        );
    }
}
