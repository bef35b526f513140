//! Score = 100 × Σ weight × need, each factor's need in 0..1 (1 = this is a strong reason to
//! buy an audit). Every factor's contribution is kept as the breakdown. Then qualification:
//! reachable (a contact email), the site answered, not closed, not suppressed, tier allowed.

use serde::{Deserialize, Serialize};
use shared::domain::{Score, Tier};

use crate::rules::Rules;

/// What scoring knows about one lead.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub vertical: String,
    pub http_ok: bool,
    pub https: bool,
    pub has_viewport: bool,
    pub has_title: bool,
    pub has_meta_description: bool,
    pub has_h1: bool,
    pub analytics: bool,
    pub jquery_version: Option<String>,
    pub copyright_year: Option<i32>,
    pub cms: Option<String>,
    pub tables_for_layout: bool,
    pub performance: Option<u8>,
    pub seo: Option<u8>,
    pub lcp_ms: Option<f64>,
    pub cls: Option<f64>,
    pub rating: Option<f64>,
    pub review_count: Option<u32>,
    pub email: Option<String>,
    pub closed: bool,
    pub suppressed: bool,
    pub this_year: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub score: Score,
    pub tier: Tier,
    pub breakdown: serde_json::Value,
    pub qualified: bool,
    pub disqualify_reason: Option<String>,
}

fn band_below(bands: &[(f64, f64)], v: f64) -> f64 {
    bands.iter().find(|(t, _)| v < *t).map_or(0.0, |(_, n)| *n)
}

fn band_above(bands: &[(f64, f64)], v: f64) -> f64 {
    bands.iter().find(|(t, _)| v > *t).map_or(0.0, |(_, n)| *n)
}

/// Each factor's need, 0..1.
pub fn needs(r: &Rules, f: &Facts) -> Vec<(&'static str, f64)> {
    let o = &r.factors.outdated;
    let mut outdated: f64 = 0.0;
    if f.jquery_version
        .as_deref()
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| m < o.jquery_major_below)
    {
        outdated += 0.4;
    }
    if f.copyright_year
        .is_some_and(|y| f.this_year - y >= o.copyright_years_old)
    {
        outdated += 0.3;
    }
    if f.cms
        .as_deref()
        .is_some_and(|c| o.old_cms_markers.iter().any(|m| c.starts_with(m.as_str())))
    {
        outdated += 0.2;
    }
    if o.tables_for_layout && f.tables_for_layout {
        outdated += 0.1;
    }
    let basics = [f.has_title, f.has_meta_description, f.has_h1]
        .iter()
        .filter(|x| !**x)
        .count() as f64
        / 3.0;
    let vitals = (f
        .lcp_ms
        .map_or(0.0, |l| band_above(&r.factors.vitals.lcp_ms_above, l))
        + f.cls
            .map_or(0.0, |c| band_above(&r.factors.vitals.cls_above, c)))
    .min(1.0);
    let rep = &r.factors.reputation;
    let reputation = match (f.rating, f.review_count) {
        (Some(rt), Some(n)) if rt >= rep.good_rating && n >= rep.good_reviews => 1.0,
        (Some(rt), _) if rt >= rep.good_rating => 0.6,
        (Some(rt), _) if rt >= 3.0 => 0.3,
        _ => 0.0,
    };
    vec![
        (
            "performance",
            f.performance.map_or(0.0, |p| {
                band_below(&r.factors.performance.below, f64::from(p))
            }),
        ),
        ("vitals", vitals),
        (
            "seo",
            f.seo
                .map_or(0.0, |s| band_below(&r.factors.seo.below, f64::from(s))),
        ),
        ("mobile", if f.has_viewport { 0.0 } else { 1.0 }),
        ("https", if f.https { 0.0 } else { 1.0 }),
        ("basics", basics),
        ("outdated", outdated.min(1.0)),
        ("no_analytics", if f.analytics { 0.0 } else { 1.0 }),
        ("reputation", reputation),
    ]
}

pub fn score(r: &Rules, f: &Facts, qualify_tiers: &[Tier]) -> Outcome {
    let weights = r.weights_for(&f.vertical);
    let mut total = 0.0;
    let mut breakdown = serde_json::Map::new();
    for (name, need) in needs(r, f) {
        let w = weights.get(name).copied().unwrap_or(0.0);
        let points = 100.0 * w * need;
        total += points;
        breakdown.insert(name.to_owned(), serde_json::json!({ "weight": w, "need": need, "points": (points * 100.0).round() / 100.0 }));
    }
    let score = Score::clamped(total);
    let thresholds = r.thresholds().unwrap_or_default();
    let tier = thresholds.tier(score);
    let reason = if f.closed {
        Some("closed")
    } else if f.suppressed {
        Some("suppressed")
    } else if r.qualify.require_reachable_site && !f.http_ok {
        Some("site_unreachable")
    } else if r.qualify.require_contact_email && f.email.is_none() {
        Some("no_contact_route")
    } else if !qualify_tiers.contains(&tier) {
        Some("tier_not_targeted")
    } else {
        None
    };
    breakdown.insert("rules_version".into(), serde_json::json!(r.version));
    Outcome {
        score,
        tier,
        breakdown: serde_json::Value::Object(breakdown),
        qualified: reason.is_none(),
        disqualify_reason: reason.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::default_rules().unwrap()
    }

    fn good_site() -> Facts {
        Facts {
            vertical: "plumbers".into(),
            http_ok: true,
            https: true,
            has_viewport: true,
            has_title: true,
            has_meta_description: true,
            has_h1: true,
            analytics: true,
            jquery_version: None,
            copyright_year: Some(2026),
            cms: None,
            tables_for_layout: false,
            performance: Some(94),
            seo: Some(98),
            lcp_ms: Some(1600.0),
            cls: Some(0.02),
            rating: Some(4.5),
            review_count: Some(120),
            email: Some("info@x.example".into()),
            closed: false,
            suppressed: false,
            this_year: 2026,
        }
    }

    fn weak_site() -> Facts {
        Facts {
            https: false,
            has_viewport: false,
            has_meta_description: false,
            has_h1: false,
            analytics: false,
            jquery_version: Some("1.8.3".into()),
            copyright_year: Some(2014),
            cms: Some("WordPress 4.2.1".into()),
            tables_for_layout: true,
            performance: Some(34),
            seo: Some(61),
            lcp_ms: Some(6200.0),
            cls: Some(0.31),
            ..good_site()
        }
    }

    /// Golden values, computed by hand from rules/scoring-v1.json.
    #[test]
    fn golden_scores() {
        let r = rules();
        let ab = [Tier::A, Tier::B];
        // Good site: only reputation (1.0 × 0.10) → 10.
        let g = score(&r, &good_site(), &ab);
        assert_eq!((g.score.value(), g.tier), (10, Tier::D));
        assert_eq!(g.disqualify_reason.as_deref(), Some("tier_not_targeted"));
        // Weak site: 22 + 12 + 10 + 14 + 5 + 10×(2/3) + 12 + 5 + 10 = 96.67 → 97.
        let w = score(&r, &weak_site(), &ab);
        assert_eq!((w.score.value(), w.tier, w.qualified), (97, Tier::A, true));
        assert_eq!(w.breakdown["performance"]["points"], 22.0);
        // Restaurants weigh performance 0.20 and reputation 0.12: 96.67 - 2 + 2 → 97.
        let rest = score(
            &r,
            &Facts {
                vertical: "restaurants".into(),
                ..weak_site()
            },
            &ab,
        );
        assert_eq!(rest.score.value(), 97);
        // Middling: performance 58 (0.5), seo 80 (0.4), no viewport, the rest fine.
        let mid = Facts {
            performance: Some(58),
            seo: Some(80),
            has_viewport: false,
            lcp_ms: Some(3900.0),
            cls: Some(0.18),
            ..good_site()
        };
        // 11 + 12×(0.4+0.15) + 4 + 14 + 10 = 45.6 → 46, tier C.
        let m = score(&r, &mid, &ab);
        assert_eq!((m.score.value(), m.tier), (46, Tier::C));
    }

    #[test]
    fn disqualification_reasons() {
        let r = rules();
        let ab = [Tier::A, Tier::B];
        for (facts, reason) in [
            (
                Facts {
                    email: None,
                    ..weak_site()
                },
                "no_contact_route",
            ),
            (
                Facts {
                    http_ok: false,
                    ..weak_site()
                },
                "site_unreachable",
            ),
            (
                Facts {
                    suppressed: true,
                    ..weak_site()
                },
                "suppressed",
            ),
            (
                Facts {
                    closed: true,
                    ..weak_site()
                },
                "closed",
            ),
        ] {
            let o = score(&r, &facts, &ab);
            assert!(!o.qualified);
            assert_eq!(o.disqualify_reason.as_deref(), Some(reason));
        }
    }

    /// The predecessors' bug: raw points treated as percentages saturated most leads at 100.
    /// Across varied facts the scores must spread over the range.
    #[test]
    fn scores_spread_instead_of_saturating() {
        let r = rules();
        let mut scores = Vec::new();
        for perf in [20u8, 45, 60, 75, 95] {
            for viewport in [true, false] {
                for seo in [50u8, 85, 99] {
                    let f = Facts {
                        performance: Some(perf),
                        has_viewport: viewport,
                        seo: Some(seo),
                        ..good_site()
                    };
                    scores.push(score(&r, &f, &[Tier::A]).score.value());
                }
            }
        }
        let max = *scores.iter().max().unwrap();
        let min = *scores.iter().min().unwrap();
        assert!(max < 100 && min < 20 && max - min > 40, "{scores:?}");
        assert!(scores.iter().filter(|s| **s == max).count() < scores.len() / 4);
    }
}
