//! What a homepage says about the site, read with a real HTML parser (html5ever via `scraper`).

use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use scraper::{Html, Selector};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    pub title: Option<String>,
    pub meta_description: Option<String>,
    pub h1: Option<String>,
    pub h1_count: usize,
    pub has_viewport: bool,
    pub canonical: Option<String>,
    pub has_open_graph: bool,
    pub analytics: Vec<String>,
    pub cms: Option<String>,
    pub jquery_version: Option<String>,
    pub copyright_year: Option<i32>,
    pub contact_emails: Vec<String>,
    pub contact_phones: Vec<String>,
    pub has_contact_form: bool,
    pub image_count: usize,
    pub uses_tables_for_layout: bool,
}

fn sel(s: &'static str) -> Selector {
    // Constant selectors: parsing cannot fail for these literals.
    Selector::parse(s).unwrap_or_else(|_| Selector::parse("*").expect("universal selector parses"))
}

static TITLE: LazyLock<Selector> = LazyLock::new(|| sel("title"));
static META: LazyLock<Selector> = LazyLock::new(|| sel("meta"));
static H1: LazyLock<Selector> = LazyLock::new(|| sel("h1"));
static LINK_CANONICAL: LazyLock<Selector> = LazyLock::new(|| sel(r#"link[rel="canonical"]"#));
static SCRIPT: LazyLock<Selector> = LazyLock::new(|| sel("script"));
static ANCHOR: LazyLock<Selector> = LazyLock::new(|| sel("a[href]"));
static FORM: LazyLock<Selector> = LazyLock::new(|| sel("form"));
static IMG: LazyLock<Selector> = LazyLock::new(|| sel("img"));
static TABLE_WIDTH: LazyLock<Selector> = LazyLock::new(|| sel("table[width]"));

static JQUERY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"jquery[-.]?(\d+\.\d+(?:\.\d+)?)")
        .unwrap_or_else(|_| Regex::new("$^").expect("empty regex"))
});
static COPYRIGHT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:©|&copy;|copyright)\s*(?:\d{4}\s*[-–]\s*)?((?:19|20)\d{2})")
        .unwrap_or_else(|_| Regex::new("$^").expect("empty regex"))
});
/// CMS fingerprints, case-insensitive, in order of preference (one pass over the page, no
/// lower-cased copy of it).
const CMS_MARKERS: [(&str, &str); 5] = [
    ("wp-content", "WordPress"),
    ("wp-includes", "WordPress"),
    ("static.wixstatic.com", "Wix"),
    ("squarespace.com", "Squarespace"),
    ("cdn.shopify.com", "Shopify"),
];
static CMS: LazyLock<Option<RegexSet>> = LazyLock::new(|| {
    RegexSet::new(
        CMS_MARKERS
            .iter()
            .map(|(needle, _)| format!("(?i){}", regex::escape(needle))),
    )
    .ok()
});
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
        .unwrap_or_else(|_| Regex::new("$^").expect("empty regex"))
});

fn text_of(el: scraper::ElementRef<'_>) -> String {
    el.text()
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn clip(s: String, n: usize) -> String {
    s.chars().take(n).collect()
}

pub fn analyze(html: &str) -> Checks {
    let doc = Html::parse_document(html);
    let mut c = Checks {
        title: doc
            .select(&TITLE)
            .next()
            .map(text_of)
            .filter(|t| !t.is_empty())
            .map(|t| clip(t, 300)),
        ..Checks::default()
    };
    for m in doc.select(&META) {
        let v = m.value();
        let name = v
            .attr("name")
            .or(v.attr("property"))
            .unwrap_or_default()
            .to_lowercase();
        let content = v.attr("content").unwrap_or_default().trim().to_owned();
        match name.as_str() {
            "description" if !content.is_empty() => c.meta_description = Some(clip(content, 500)),
            "viewport" if content.contains("width") => c.has_viewport = true,
            "generator" if !content.is_empty() => c.cms = Some(clip(content, 100)),
            n if n.starts_with("og:") => c.has_open_graph = true,
            _ => {}
        }
    }
    let h1s: Vec<String> = doc
        .select(&H1)
        .map(text_of)
        .filter(|t| !t.is_empty())
        .collect();
    c.h1_count = h1s.len();
    c.h1 = h1s.into_iter().next().map(|t| clip(t, 300));
    c.canonical = doc
        .select(&LINK_CANONICAL)
        .next()
        .and_then(|l| l.value().attr("href"))
        .map(|h| clip(h.to_owned(), 500));
    let scripts: String = doc
        .select(&SCRIPT)
        .map(|s| {
            format!(
                "{} {}",
                s.value().attr("src").unwrap_or_default(),
                s.inner_html()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase();
    for (needle, name) in [
        ("googletagmanager.com/gtag/js", "google-analytics-4"),
        ("google-analytics.com/analytics.js", "universal-analytics"),
        ("googletagmanager.com/gtm.js", "google-tag-manager"),
        ("fbq(", "meta-pixel"),
        ("plausible.io", "plausible"),
        ("static.hotjar.com", "hotjar"),
    ] {
        if scripts.contains(needle) {
            c.analytics.push(name.to_owned());
        }
    }
    if c.cms.is_none() {
        c.cms = CMS
            .as_ref()
            .and_then(|set| set.matches(html).iter().next())
            .and_then(|i| CMS_MARKERS.get(i))
            .map(|(_, cms)| (*cms).to_owned());
    }
    c.jquery_version = JQUERY
        .captures(&scripts)
        .and_then(|m| m.get(1))
        .map(|m| m.as_str().to_owned());
    c.copyright_year = COPYRIGHT
        .captures_iter(html)
        .filter_map(|m| m.get(1)?.as_str().parse().ok())
        .max();
    let mut emails: Vec<String> = Vec::new();
    let mut phones: Vec<String> = Vec::new();
    for a in doc.select(&ANCHOR) {
        let href = a.value().attr("href").unwrap_or_default().trim();
        if let Some(m) = href.strip_prefix("mailto:") {
            emails.push(m.split('?').next().unwrap_or_default().to_owned());
        } else if let Some(t) = href.strip_prefix("tel:") {
            phones.push(t.to_owned());
        }
    }
    let body_text: String = doc.root_element().text().collect::<Vec<_>>().join(" ");
    emails.extend(EMAIL.find_iter(&body_text).map(|m| m.as_str().to_owned()));
    let mut valid: Vec<String> = emails
        .iter()
        .filter_map(|e| shared::domain::Email::parse(e).ok())
        .filter(|e| {
            ![".png", ".jpg", ".gif", ".webp", ".svg"]
                .iter()
                .any(|x| e.as_str().ends_with(x))
        })
        .map(|e| e.to_string())
        .collect();
    valid.dedup();
    valid.sort();
    valid.dedup();
    c.contact_emails = valid.into_iter().take(10).collect();
    c.contact_phones = phones.into_iter().take(10).collect();
    c.has_contact_form = doc.select(&FORM).next().is_some();
    c.image_count = doc.select(&IMG).count();
    c.uses_tables_for_layout = doc.select(&TABLE_WIDTH).next().is_some();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_good_page() {
        let html = r#"<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title> Joe's Pizza | San Jose </title><meta name="description" content="Wood-fired pizza.">
<link rel="canonical" href="https://joes.example/"><meta property="og:title" content="Joe's">
<script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script></head>
<body><h1>Joe's Pizza</h1><a href="mailto:info@joes.example?subject=hi">Mail</a><a href="tel:+14085550100">Call</a>
<footer>&copy; 2026 Joe's</footer></body></html>"#;
        let c = analyze(html);
        assert_eq!(c.title.as_deref(), Some("Joe's Pizza | San Jose"));
        assert_eq!(c.meta_description.as_deref(), Some("Wood-fired pizza."));
        assert_eq!((c.h1.as_deref(), c.h1_count), (Some("Joe's Pizza"), 1));
        assert!(c.has_viewport && c.has_open_graph);
        assert_eq!(c.canonical.as_deref(), Some("https://joes.example/"));
        assert_eq!(c.analytics, vec!["google-analytics-4"]);
        assert_eq!(c.copyright_year, Some(2026));
        assert_eq!(c.contact_emails, vec!["info@joes.example"]);
        assert_eq!(c.contact_phones, vec!["+14085550100"]);
    }

    #[test]
    fn reads_an_outdated_page() {
        let html = r#"<html><head><meta name="generator" content="WordPress 4.2.1"><title>Home</title>
<script type="text/javascript" src="/wp-includes/js/jquery/jquery-1.8.3.min.js"></script></head>
<body><table width="800"><tr><td>Welcome</td></tr></table><p>Write to owner@old.example.com</p>
<footer>Copyright 2009 - 2014 Old Diner</footer></body></html>"#;
        let c = analyze(html);
        assert_eq!(c.cms.as_deref(), Some("WordPress 4.2.1"));
        assert_eq!(c.jquery_version.as_deref(), Some("1.8.3"));
        assert_eq!(c.copyright_year, Some(2014));
        assert!(
            !c.has_viewport
                && c.h1.is_none()
                && c.meta_description.is_none()
                && c.analytics.is_empty()
        );
        assert!(c.uses_tables_for_layout);
        assert_eq!(c.contact_emails, vec!["owner@old.example.com"]);
    }

    #[test]
    fn names_the_cms_from_its_markers_in_any_case_first_listed_wins() {
        let cms = |html: &str| analyze(html).cms;
        assert_eq!(
            cms(r#"<img src="https://CDN.Shopify.com/x.png">"#).as_deref(),
            Some("Shopify")
        );
        assert_eq!(
            cms(r#"<img src="//static.wixstatic.com/a.png"><link href="/WP-CONTENT/s.css">"#)
                .as_deref(),
            Some("WordPress")
        );
        assert_eq!(cms("<p>wp content, not a marker</p>"), None);
    }

    #[test]
    fn survives_garbage() {
        let c = analyze("<<<>>\u{0}<html><title></title><h1></h1><a href=mailto:nope>");
        assert!(c.title.is_none() && c.h1.is_none() && c.contact_emails.is_empty());
        let _ = analyze(&"<div>".repeat(10_000));
    }
}
