//! The PDF audit, drawn with krilla on A4 with fonts shipped in this crate (DejaVu Sans, embedded
//! and subset — no system fonts are assumed). Five pages: cover with the overall score gauge,
//! category scores as a bar chart with the key findings, Core Web Vitals against Google's
//! thresholds, the three problems with their fixes, next steps. The preview is the first two.

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use serde::{Deserialize, Serialize};
use shared::domain::Recommendation;

static REGULAR: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-Bold.ttf");

const W: f32 = 595.0;
const H: f32 = 842.0;
const MARGIN: f32 = 56.0;
const BRAND: (u8, u8, u8) = (24, 62, 112);
const INK: (u8, u8, u8) = (33, 37, 41);
const MUTED: (u8, u8, u8) = (108, 117, 125);
const GOOD: (u8, u8, u8) = (25, 135, 84);
const FAIR: (u8, u8, u8) = (230, 140, 20);
const POOR: (u8, u8, u8) = (200, 35, 51);
const TRACK: (u8, u8, u8) = (226, 230, 234);

/// Everything a report shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub business: String,
    pub location: String,
    pub website: String,
    pub agency: String,
    pub agency_address: String,
    pub date: String,
    pub score: u8,
    pub tier: String,
    pub performance: Option<u8>,
    pub seo: Option<u8>,
    pub accessibility: Option<u8>,
    pub best_practices: Option<u8>,
    pub lcp_ms: Option<f64>,
    pub cls: Option<f64>,
    pub fcp_ms: Option<f64>,
    pub tbt_ms: Option<f64>,
    pub speed_index_ms: Option<f64>,
    pub findings: Vec<String>,
    pub recommendations: Vec<Recommendation>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("font: {0}")]
    Font(&'static str),
    #[error("PDF: {0:?}")]
    Pdf(krilla::error::KrillaError),
}

struct Fonts {
    regular: Font,
    bold: Font,
}

fn color(c: (u8, u8, u8)) -> rgb::Color {
    rgb::Color::new(c.0, c.1, c.2)
}

fn fill(s: &mut Surface<'_>, c: (u8, u8, u8)) {
    s.set_fill(Some(Fill {
        paint: color(c).into(),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }));
}

fn text(s: &mut Surface<'_>, font: &Font, size: f32, x: f32, y: f32, c: (u8, u8, u8), t: &str) {
    fill(s, c);
    s.draw_text(
        Point::from_xy(x, y),
        font.clone(),
        size,
        t,
        false,
        TextDirection::Auto,
    );
}

fn rect(s: &mut Surface<'_>, x: f32, y: f32, w: f32, h: f32, c: (u8, u8, u8)) {
    let Some(r) = Rect::from_xywh(x, y, w.max(0.1), h.max(0.1)) else {
        return;
    };
    let mut pb = PathBuilder::new();
    pb.push_rect(r);
    if let Some(p) = pb.finish() {
        fill(s, c);
        s.set_stroke(None);
        s.draw_path(&p);
    }
}

/// A half ring centred at (`cx`, `cy`): the score gauge.
struct Ring {
    cx: f32,
    cy: f32,
    r: f32,
    width: f32,
}

/// Strokes the ring from `from` to `to` degrees (0 = left, 180 = right, through the top).
fn arc(s: &mut Surface<'_>, ring: &Ring, from: f32, to: f32, c: (u8, u8, u8)) {
    let mut pb = PathBuilder::new();
    let steps = 64;
    for i in 0..=steps {
        let rad = (from + (to - from) * i as f32 / steps as f32).to_radians();
        let (x, y) = (ring.cx - ring.r * rad.cos(), ring.cy - ring.r * rad.sin());
        if i == 0 {
            pb.move_to(x, y);
        } else {
            pb.line_to(x, y);
        }
    }
    if let Some(p) = pb.finish() {
        s.set_fill(None);
        s.set_stroke(Some(Stroke {
            paint: color(c).into(),
            width: ring.width,
            ..Stroke::default()
        }));
        s.draw_path(&p);
        s.set_stroke(None);
    }
}

fn band(v: f64, good: f64, poor: f64) -> (u8, u8, u8) {
    if v <= good {
        GOOD
    } else if v <= poor {
        FAIR
    } else {
        POOR
    }
}

fn score_color(v: u8) -> (u8, u8, u8) {
    if v >= 90 {
        GOOD
    } else if v >= 50 {
        FAIR
    } else {
        POOR
    }
}

/// One Core Web Vital: its name, value, "good" and "poor" thresholds, target text, format.
struct Vital {
    name: &'static str,
    value: Option<f64>,
    good: f64,
    poor: f64,
    target: &'static str,
    show: fn(f64) -> String,
}

/// Greedy word wrap by an average glyph width (DejaVu Sans ≈ 0.55 em).
fn wrap(t: &str, size: f32, width: f32) -> Vec<String> {
    let max = ((width / (size * 0.55)) as usize).max(10);
    let mut lines = Vec::new();
    let mut line = String::new();
    for w in t.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + w.chars().count() > max {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn header(s: &mut Surface<'_>, f: &Fonts, d: &ReportData, page: usize, of: usize) {
    rect(s, 0.0, 0.0, W, 6.0, BRAND);
    text(
        s,
        &f.bold,
        9.0,
        MARGIN,
        32.0,
        BRAND,
        &format!("Website audit — {}", d.business),
    );
    text(
        s,
        &f.regular,
        9.0,
        W - MARGIN - 60.0,
        32.0,
        MUTED,
        &format!("Page {page} of {of}"),
    );
    text(
        s,
        &f.regular,
        8.0,
        MARGIN,
        H - 28.0,
        MUTED,
        &format!("{} · {}", d.agency, d.agency_address),
    );
}

fn cover(s: &mut Surface<'_>, f: &Fonts, d: &ReportData) {
    rect(s, 0.0, 0.0, W, 300.0, BRAND);
    text(
        s,
        &f.regular,
        14.0,
        MARGIN,
        80.0,
        (200, 214, 232),
        "WEBSITE AUDIT",
    );
    let mut y = 130.0;
    for line in wrap(&d.business, 30.0, W - 2.0 * MARGIN)
        .into_iter()
        .take(2)
    {
        text(s, &f.bold, 30.0, MARGIN, y, (255, 255, 255), &line);
        y += 38.0;
    }
    text(
        s,
        &f.regular,
        12.0,
        MARGIN,
        y + 4.0,
        (200, 214, 232),
        &d.location,
    );
    text(
        s,
        &f.regular,
        11.0,
        MARGIN,
        270.0,
        (200, 214, 232),
        &d.website,
    );

    // The gauge: a half ring, filled to the score.
    let (cx, cy, r) = (W / 2.0, 520.0, 120.0);
    let ring = Ring {
        cx,
        cy,
        r,
        width: 22.0,
    };
    arc(s, &ring, 0.0, 180.0, TRACK);
    let c = if d.score >= 60 {
        POOR
    } else if d.score >= 40 {
        FAIR
    } else {
        GOOD
    };
    arc(
        s,
        &ring,
        0.0,
        180.0 * f32::from(d.score.min(100)) / 100.0,
        c,
    );
    let score = d.score.to_string();
    text(
        s,
        &f.bold,
        56.0,
        cx - 17.0 * score.len() as f32,
        cy - 10.0,
        INK,
        &score,
    );
    text(
        s,
        &f.regular,
        12.0,
        cx - 38.0,
        cy + 18.0,
        MUTED,
        "opportunity score",
    );
    text(s, &f.regular, 10.0, cx - r - 14.0, cy + 22.0, MUTED, "0");
    text(s, &f.regular, 10.0, cx + r - 4.0, cy + 22.0, MUTED, "100");
    let verdict = match d.tier.as_str() {
        "A" => "Tier A — your website is holding the business back the most",
        "B" => "Tier B — clear, fixable problems are costing customers",
        "C" => "Tier C — a few improvements would pay off",
        _ => "Tier D — the site is in good shape",
    };
    text(s, &f.bold, 13.0, MARGIN, 600.0, INK, verdict);
    for (i, line) in wrap("The higher the score, the more customers the website is likely losing. This audit explains what we measured, what it means for you, and exactly how to fix it.", 11.0, W - 2.0 * MARGIN).iter().enumerate() {
        text(s, &f.regular, 11.0, MARGIN, 626.0 + 16.0 * i as f32, INK, line);
    }
    text(
        s,
        &f.regular,
        10.0,
        MARGIN,
        760.0,
        MUTED,
        &format!("Prepared by {} on {}", d.agency, d.date),
    );
}

fn summary(s: &mut Surface<'_>, f: &Fonts, d: &ReportData, preview: bool) {
    text(s, &f.bold, 20.0, MARGIN, 80.0, INK, "How your site scores");
    text(
        s,
        &f.regular,
        10.0,
        MARGIN,
        100.0,
        MUTED,
        "Google Lighthouse on a mobile phone, 0–100 (higher is better)",
    );
    let bars = [
        ("Performance", d.performance),
        ("SEO", d.seo),
        ("Accessibility", d.accessibility),
        ("Best practices", d.best_practices),
    ];
    let (x0, bw) = (MARGIN + 110.0, W - 2.0 * MARGIN - 150.0);
    for (i, (name, v)) in bars.iter().enumerate() {
        let y = 130.0 + 40.0 * i as f32;
        text(s, &f.regular, 11.0, MARGIN, y + 13.0, INK, name);
        rect(s, x0, y, bw, 18.0, TRACK);
        match v {
            Some(v) => {
                rect(s, x0, y, bw * f32::from(*v) / 100.0, 18.0, score_color(*v));
                text(
                    s,
                    &f.bold,
                    11.0,
                    x0 + bw + 10.0,
                    y + 13.0,
                    INK,
                    &v.to_string(),
                );
            }
            None => text(s, &f.regular, 10.0, x0 + bw + 10.0, y + 13.0, MUTED, "n/a"),
        }
    }
    text(s, &f.bold, 16.0, MARGIN, 330.0, INK, "What we found");
    let mut y = 356.0;
    for finding in d.findings.iter().take(10) {
        for (j, line) in wrap(finding, 11.0, W - 2.0 * MARGIN - 16.0)
            .iter()
            .enumerate()
        {
            if j == 0 {
                rect(s, MARGIN, y - 8.0, 5.0, 5.0, BRAND);
            }
            text(s, &f.regular, 11.0, MARGIN + 14.0, y, INK, line);
            y += 16.0;
        }
        y += 4.0;
    }
    if preview {
        rect(s, MARGIN, 660.0, W - 2.0 * MARGIN, 90.0, (236, 242, 250));
        text(
            s,
            &f.bold,
            13.0,
            MARGIN + 16.0,
            690.0,
            BRAND,
            "The full report continues",
        );
        for (i, line) in wrap("Core Web Vitals against Google's thresholds, the three problems costing you the most customers, and step-by-step fixes.", 11.0, W - 2.0 * MARGIN - 32.0).iter().enumerate() {
            text(s, &f.regular, 11.0, MARGIN + 16.0, 710.0 + 15.0 * i as f32, INK, line);
        }
    }
}

fn vitals(s: &mut Surface<'_>, f: &Fonts, d: &ReportData) {
    text(s, &f.bold, 20.0, MARGIN, 80.0, INK, "Core Web Vitals");
    text(
        s,
        &f.regular,
        10.0,
        MARGIN,
        100.0,
        MUTED,
        "Lab measurements on a mid-range phone, against Google's \"good\" thresholds",
    );
    let secs = |v: f64| format!("{:.1} s", v / 1000.0);
    let rows = [
        Vital {
            name: "Largest Contentful Paint",
            value: d.lcp_ms,
            good: 2500.0,
            poor: 4000.0,
            target: "≤ 2.5 s",
            show: secs,
        },
        Vital {
            name: "Cumulative Layout Shift",
            value: d.cls,
            good: 0.1,
            poor: 0.25,
            target: "≤ 0.10",
            show: |v| format!("{v:.2}"),
        },
        Vital {
            name: "First Contentful Paint",
            value: d.fcp_ms,
            good: 1800.0,
            poor: 3000.0,
            target: "≤ 1.8 s",
            show: secs,
        },
        Vital {
            name: "Total Blocking Time",
            value: d.tbt_ms,
            good: 200.0,
            poor: 600.0,
            target: "≤ 200 ms",
            show: |v| format!("{v:.0} ms"),
        },
        Vital {
            name: "Speed Index",
            value: d.speed_index_ms,
            good: 3400.0,
            poor: 5800.0,
            target: "≤ 3.4 s",
            show: secs,
        },
    ];
    text(s, &f.bold, 10.0, MARGIN, 140.0, MUTED, "METRIC");
    text(s, &f.bold, 10.0, MARGIN + 250.0, 140.0, MUTED, "YOUR SITE");
    text(s, &f.bold, 10.0, MARGIN + 360.0, 140.0, MUTED, "GOOD");
    for (
        i,
        Vital {
            name,
            value: v,
            good,
            poor,
            target,
            show: fmt,
        },
    ) in rows.iter().enumerate()
    {
        let y = 172.0 + 44.0 * i as f32;
        rect(s, MARGIN, y - 24.0, W - 2.0 * MARGIN, 0.8, TRACK);
        text(s, &f.regular, 12.0, MARGIN, y, INK, name);
        match v {
            Some(v) => {
                let c = band(*v, *good, *poor);
                rect(s, MARGIN + 250.0, y - 10.0, 10.0, 10.0, c);
                text(s, &f.bold, 12.0, MARGIN + 266.0, y, c, &fmt(*v));
            }
            None => text(
                s,
                &f.regular,
                12.0,
                MARGIN + 250.0,
                y,
                MUTED,
                "not measured",
            ),
        }
        text(s, &f.regular, 12.0, MARGIN + 360.0, y, MUTED, target);
    }
    let mut y = 420.0;
    for line in wrap(
        "Google uses these measurements to rank pages in search. Visitors leave a page that takes more than three seconds to show its content, and a page that jumps while it loads makes people tap the wrong thing.",
        11.0,
        W - 2.0 * MARGIN,
    ) {
        text(s, &f.regular, 11.0, MARGIN, y, INK, &line);
        y += 16.0;
    }
    rect(s, MARGIN, 500.0, 10.0, 10.0, GOOD);
    text(s, &f.regular, 10.0, MARGIN + 16.0, 509.0, MUTED, "good");
    rect(s, MARGIN + 70.0, 500.0, 10.0, 10.0, FAIR);
    text(
        s,
        &f.regular,
        10.0,
        MARGIN + 86.0,
        509.0,
        MUTED,
        "needs improvement",
    );
    rect(s, MARGIN + 200.0, 500.0, 10.0, 10.0, POOR);
    text(s, &f.regular, 10.0, MARGIN + 216.0, 509.0, MUTED, "poor");
}

fn problems(s: &mut Surface<'_>, f: &Fonts, d: &ReportData) {
    text(
        s,
        &f.bold,
        20.0,
        MARGIN,
        80.0,
        INK,
        "The three problems to fix first",
    );
    let mut y = 118.0;
    for (i, r) in d.recommendations.iter().take(3).enumerate() {
        rect(s, MARGIN, y - 16.0, 22.0, 22.0, BRAND);
        text(
            s,
            &f.bold,
            13.0,
            MARGIN + 7.0,
            y,
            (255, 255, 255),
            &(i + 1).to_string(),
        );
        text(s, &f.bold, 14.0, MARGIN + 32.0, y, INK, &r.title);
        text(
            s,
            &f.regular,
            9.5,
            MARGIN + 32.0,
            y + 15.0,
            MUTED,
            &format!("Impact: {} · Effort: {}", r.impact, r.effort),
        );
        y += 36.0;
        for line in wrap(&r.description, 11.0, W - 2.0 * MARGIN - 32.0) {
            text(s, &f.regular, 11.0, MARGIN + 32.0, y, INK, &line);
            y += 15.0;
        }
        y += 4.0;
        text(s, &f.bold, 10.5, MARGIN + 32.0, y, INK, "How to fix it:");
        y += 15.0;
        for step in r.steps.iter().take(5) {
            for (j, line) in wrap(step, 10.5, W - 2.0 * MARGIN - 48.0).iter().enumerate() {
                text(
                    s,
                    &f.regular,
                    10.5,
                    MARGIN + 40.0,
                    y,
                    INK,
                    &format!("{}{line}", if j == 0 { "• " } else { "  " }),
                );
                y += 14.0;
            }
        }
        y += 22.0;
    }
}

fn next_steps(s: &mut Surface<'_>, f: &Fonts, d: &ReportData) {
    text(s, &f.bold, 20.0, MARGIN, 80.0, INK, "Next steps");
    let steps = [
        "Start with problem 1: it has the largest effect on customers for the least effort.",
        "Re-test the site after each change — improvements show in the scores within a day.",
        "Keep the Google Business Profile in step with the website: hours, phone, photos.",
        &format!(
            "Want it done for you? {} fixes sites like yours in a week, for a fixed price.",
            d.agency
        ),
    ];
    let mut y = 116.0;
    for (i, step) in steps.iter().enumerate() {
        text(s, &f.bold, 12.0, MARGIN, y, BRAND, &format!("{}.", i + 1));
        for line in wrap(step, 12.0, W - 2.0 * MARGIN - 24.0) {
            text(s, &f.regular, 12.0, MARGIN + 20.0, y, INK, &line);
            y += 17.0;
        }
        y += 10.0;
    }
    rect(s, MARGIN, 360.0, W - 2.0 * MARGIN, 110.0, (236, 242, 250));
    text(
        s,
        &f.bold,
        15.0,
        MARGIN + 20.0,
        395.0,
        BRAND,
        &format!(
            "Questions about this audit? Reply to the email from {}.",
            d.agency
        ),
    );
    text(
        s,
        &f.regular,
        11.0,
        MARGIN + 20.0,
        420.0,
        INK,
        &format!("Audit of {} for {}", d.website, d.business),
    );
    text(
        s,
        &f.regular,
        11.0,
        MARGIN + 20.0,
        440.0,
        INK,
        &format!(
            "Opportunity score {} (tier {}), measured {}",
            d.score, d.tier, d.date
        ),
    );
}

/// Renders the full report (`preview = false`, 5 pages) or its preview (2 pages).
pub fn render(d: &ReportData, preview: bool) -> Result<Vec<u8>, RenderError> {
    let fonts = Fonts {
        regular: Font::new(REGULAR.to_vec().into(), 0)
            .ok_or(RenderError::Font("DejaVuSans.ttf"))?,
        bold: Font::new(BOLD.to_vec().into(), 0).ok_or(RenderError::Font("DejaVuSans-Bold.ttf"))?,
    };
    let mut doc = Document::new();
    doc.set_metadata(
        Metadata::new()
            .title(format!("Website audit — {}", d.business))
            .creator("LeadFactory".into()),
    );
    let pages: Vec<fn(&mut Surface<'_>, &Fonts, &ReportData)> = if preview {
        vec![cover, |s, f, d| summary(s, f, d, true)]
    } else {
        vec![
            cover,
            |s, f, d| summary(s, f, d, false),
            vitals,
            problems,
            next_steps,
        ]
    };
    let n = pages.len();
    for (i, draw) in pages.into_iter().enumerate() {
        let Some(settings) = PageSettings::from_wh(W, H) else {
            return Err(RenderError::Font("page size"));
        };
        let mut page = doc.start_page_with(settings);
        let mut s = page.surface();
        draw(&mut s, &fonts, d);
        if i > 0 {
            header(&mut s, &fonts, d, i + 1, n);
        }
        s.finish();
        page.finish();
    }
    doc.finish().map_err(RenderError::Pdf)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> ReportData {
        ReportData {
            business: "Joe's Pizza & Grill".into(),
            location: "San Jose, CA 95113".into(),
            website: "http://www.joes-pizza.example/".into(),
            agency: "Ann Example Web Studio".into(),
            agency_address: "1 Market St, Suite 300, San Francisco, CA 94105".into(),
            date: "2026-11-25".into(),
            score: 87,
            tier: "A".into(),
            performance: Some(34),
            seo: Some(69),
            accessibility: Some(61),
            best_practices: Some(58),
            lcp_ms: Some(6200.0),
            cls: Some(0.31),
            fcp_ms: Some(3200.0),
            tbt_ms: Some(900.0),
            speed_index_ms: Some(7100.0),
            findings: vec!["No mobile viewport: phones show a shrunken desktop page.".into(), "jQuery 1.8.3 with known security issues.".into(), "Footer says © 2014.".into()],
            recommendations: (1..=3)
                .map(|i| Recommendation {
                    title: format!("Problem number {i}"),
                    description: "A description long enough to wrap over more than one line of the page, so that wrapping is exercised by the test as well as the layout.".into(),
                    impact: "high".into(),
                    effort: "low".into(),
                    steps: vec!["First step".into(), "Second step".into()],
                })
                .collect(),
        }
    }

    /// Page count (lopdf parses the file) and text (poppler's pdftotext reads the embedded
    /// fonts' ToUnicode maps, which lopdf cannot). scripts/test installs poppler-utils.
    fn text_of(pdf: &[u8]) -> (usize, String) {
        let doc = lopdf::Document::load_mem(pdf).unwrap();
        let pages = doc.get_pages().len();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.pdf");
        std::fs::write(&path, pdf).unwrap();
        let out = std::process::Command::new("pdftotext")
            .arg(&path)
            .arg("-")
            .output()
            .unwrap_or_else(|e| {
                panic!("pdftotext (poppler-utils) is needed to read the PDF's text: {e}")
            });
        assert!(
            out.status.success(),
            "pdftotext failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (pages, String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn the_full_report_has_five_pages_naming_the_business_and_score() {
        let pdf = render(&sample(), false).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        let (pages, text) = text_of(&pdf);
        assert_eq!(pages, 5);
        for needle in [
            "Joe's Pizza & Grill",
            "87",
            "Core Web Vitals",
            "Problem number 3",
            "Largest Contentful Paint",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        // Fonts are embedded, not referenced from the system.
        assert!(
            pdf.windows(9).any(|w| w == b"FontFile2"),
            "embedded TrueType font"
        );
    }

    /// Writes the sample to `$LF_REPORT_SAMPLE_DIR` when set, for looking at (pdftoppm -png).
    #[test]
    fn sample_can_be_written_for_inspection() {
        let pdf = render(&sample(), false).unwrap();
        if let Ok(dir) = std::env::var("LF_REPORT_SAMPLE_DIR") {
            std::fs::write(std::path::Path::new(&dir).join("sample-report.pdf"), &pdf).unwrap();
        }
        assert!(
            pdf.len() > 10_000 && pdf.len() < 400_000,
            "{} bytes",
            pdf.len()
        );
    }

    #[test]
    fn the_preview_is_the_first_two_pages_with_a_teaser() {
        let (pages, text) = text_of(&render(&sample(), true).unwrap());
        assert_eq!(pages, 2);
        assert!(text.contains("full report continues"));
        assert!(!text.contains("Problem number 1"));
    }

    #[test]
    fn missing_measurements_and_long_names_do_not_break_the_layout() {
        let d = ReportData {
            business: "A ".repeat(80),
            performance: None,
            lcp_ms: None,
            recommendations: vec![],
            findings: vec![],
            ..sample()
        };
        let (pages, text) = text_of(&render(&d, false).unwrap());
        assert_eq!(pages, 5);
        assert!(text.contains("not measured") && text.contains("n/a"));
    }
}
