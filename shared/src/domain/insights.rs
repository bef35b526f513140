//! The assessment's stored LLM insights (`assessments.insights`), as later stages read them.

/// The titles of the stored recommendations, in order: the "problems" an email and the report's
/// storefront page name. Anything missing or malformed reads as no recommendations.
pub fn recommendation_titles(insights: Option<&serde_json::Value>) -> Vec<String> {
    insights
        .and_then(|i| i.get("recommendations"))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("title").and_then(|t| t.as_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_in_order_and_nothing_from_malformed_insights() {
        let v = serde_json::json!({"recommendations": [
            {"title": "Speed up the homepage"}, {"impact": "high"}, {"title": "Add a title"}
        ]});
        assert_eq!(
            recommendation_titles(Some(&v)),
            ["Speed up the homepage", "Add a title"]
        );
        assert!(recommendation_titles(None).is_empty());
        assert!(
            recommendation_titles(Some(&serde_json::json!({"recommendations": "x"}))).is_empty()
        );
    }
}
