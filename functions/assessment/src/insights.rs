//! Three concrete, plain-language problems with fixes: from the LLM (structured output, schema
//! checked) when a key is configured and the budget allows, else from rules over the findings.

use crate::analyze::Checks;
pub use shared::domain::{Insights, Recommendation};
use shared::vendors::pagespeed::PsiSummary;

pub fn schema() -> serde_json::Value {
    let level = serde_json::json!({ "type": "string", "enum": ["high", "medium", "low"] });
    serde_json::json!({
        "type": "object", "additionalProperties": false, "required": ["recommendations"],
        "properties": { "recommendations": {
            "type": "array", "minItems": 3, "maxItems": 3,
            "items": { "type": "object", "additionalProperties": false,
                "required": ["title", "description", "impact", "effort", "steps"],
                "properties": {
                    "title": { "type": "string" }, "description": { "type": "string" },
                    "impact": level, "effort": level,
                    "steps": { "type": "array", "items": { "type": "string" } }
                } } } }
    })
}

/// The facts the LLM is given — and only these, so it cannot invent others.
pub fn facts(business: &str, url: &str, c: &Checks, psi: Option<&PsiSummary>) -> String {
    let mut f = vec![
        format!("Business: {business}"),
        format!("Website: {url}"),
        format!("title: {}", c.title.as_deref().unwrap_or("(missing)")),
        format!(
            "meta_description: {}",
            if c.meta_description.is_some() {
                "present"
            } else {
                "missing"
            }
        ),
        format!("h1: {}", if c.h1.is_some() { "present" } else { "missing" }),
        format!(
            "mobile viewport: {}",
            if c.has_viewport { "present" } else { "missing" }
        ),
        format!(
            "analytics: {}",
            if c.analytics.is_empty() {
                "none".to_owned()
            } else {
                c.analytics.join(", ")
            }
        ),
    ];
    if let Some(v) = &c.jquery_version {
        f.push(format!("jquery version: {v}"));
    }
    if let Some(y) = c.copyright_year {
        f.push(format!("copyright year: {y}"));
    }
    if let Some(p) = psi {
        if let Some(x) = p.performance {
            f.push(format!("mobile performance score: {x}/100"));
        }
        if let Some(x) = p.seo {
            f.push(format!("seo score: {x}/100"));
        }
        if let Some(x) = p.lcp_ms {
            f.push(format!("LCP: {:.1} s", x / 1000.0));
        }
        if let Some(x) = p.cls {
            f.push(format!("CLS: {x:.2}"));
        }
    }
    f.join("\n")
}

pub const SYSTEM_PROMPT: &str = "You audit small-business websites. Using only the facts given, name the three problems that cost this business the most customers, each with a plain-language description and concrete steps to fix it. Do not invent facts. Answer in JSON.";

fn rec(
    title: &str,
    description: String,
    impact: &str,
    effort: &str,
    steps: &[&str],
) -> Recommendation {
    Recommendation {
        title: title.into(),
        description,
        impact: impact.into(),
        effort: effort.into(),
        steps: steps.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Rule-based insights: the template fallback.
pub fn fallback(c: &Checks, psi: Option<&PsiSummary>, this_year: i32) -> Insights {
    let mut r = Vec::new();
    if let Some(p) = psi.and_then(|p| p.performance).filter(|p| *p < 70) {
        r.push(rec("Speed up the homepage", format!("The homepage scores {p}/100 for mobile speed; slow pages lose visitors before they see the menu or the phone number."), "high", "medium", &["Compress and resize images", "Defer scripts that are not needed at first paint", "Turn on browser caching"]));
    }
    if !c.has_viewport {
        r.push(rec(
            "Make the site work on phones",
            "The page has no mobile viewport, so phones show a shrunken desktop page.".into(),
            "high",
            "low",
            &[
                "Add <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
                "Check every page at phone width",
            ],
        ));
    }
    if c.title.is_none() || c.meta_description.is_none() || c.h1.is_none() {
        r.push(rec("Fix the basics search engines read", "The page is missing its title, description or main heading, so search results show little about the business.".into(), "medium", "low", &["Write a title with the business name, service and city", "Add a 150-character description", "Add one H1 heading"]));
    }
    if let Some(v) = &c.jquery_version
        && v.starts_with("1.")
    {
        r.push(rec(
            "Update outdated code",
            format!("The site loads jQuery {v}, a version with known security problems."),
            "medium",
            "medium",
            &["Update the theme and plugins", "Remove unused scripts"],
        ));
    }
    if let Some(y) = c.copyright_year.filter(|y| this_year - y >= 2) {
        r.push(rec(
            "Show the site is current",
            format!(
                "The footer says © {y}, which makes visitors wonder if the business is still open."
            ),
            "low",
            "low",
            &["Update the footer year", "Review hours, prices and menus"],
        ));
    }
    if c.analytics.is_empty() {
        r.push(rec(
            "Measure your visitors",
            "No analytics is installed, so there is no way to know what brings customers in."
                .into(),
            "low",
            "low",
            &[
                "Install privacy-friendly analytics",
                "Track calls and bookings as goals",
            ],
        ));
    }
    r.push(rec(
        "Claim and complete your Google profile",
        "Search results lean on the Google Business Profile as much as on the website.".into(),
        "medium",
        "low",
        &[
            "Claim the profile",
            "Add photos, hours and a link to the site",
        ],
    ));
    r.push(rec(
        "Add a clear call to action",
        "Visitors should see how to call, book or order within the first screen.".into(),
        "medium",
        "low",
        &["Put the phone number and a booking button at the top"],
    ));
    r.push(rec(
        "Turn happy customers into reviews",
        "Recent reviews are what new customers read first, on Google and on the site.".into(),
        "medium",
        "low",
        &[
            "Ask for a review on receipts and follow-up emails",
            "Show the latest reviews on the homepage",
        ],
    ));
    r.truncate(3);
    Insights { recommendations: r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_gives_three_valid_recommendations_led_by_the_worst_problems() {
        let c = Checks {
            has_viewport: false,
            jquery_version: Some("1.8.3".into()),
            copyright_year: Some(2014),
            ..Checks::default()
        };
        let psi = PsiSummary {
            performance: Some(34),
            ..PsiSummary::default()
        };
        let i = fallback(&c, Some(&psi), 2026);
        i.validate().unwrap();
        assert_eq!(i.recommendations[0].title, "Speed up the homepage");
        assert!(i.recommendations[0].description.contains("34/100"));
        assert_eq!(i.recommendations[1].title, "Make the site work on phones");
        let good = Checks {
            has_viewport: true,
            title: Some("t".into()),
            meta_description: Some("d".into()),
            h1: Some("h".into()),
            analytics: vec!["ga".into()],
            copyright_year: Some(2026),
            ..Checks::default()
        };
        fallback(&good, None, 2026).validate().unwrap();
    }

    #[test]
    fn validation_refuses_wrong_shapes() {
        let mut i = fallback(&Checks::default(), None, 2026);
        i.recommendations[0].impact = "huge".into();
        assert!(i.validate().is_err());
        i.recommendations.pop();
        assert!(i.validate().is_err());
    }
}
