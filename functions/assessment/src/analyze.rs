//! What a homepage says about the site, read in one streaming pass: lol_html tokenises the page
//! and calls our handlers for the elements and text we ask about, without building a DOM, so
//! the cost is one linear scan and the memory a few small buffers (building a DOM of every page
//! was about a third of the pipeline's non-PDF CPU per lead, and quadratic on deep nesting).

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use html_escape::decode_html_entities;
use lol_html::html_content::TextChunk;
use lol_html::send::{
    DocumentContentHandlers, Element, ElementContentHandlers, HtmlRewriter, Settings,
};
use lol_html::{HandlerResult, Selector};
use regex::Regex;
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
    /// Every address on the page (linked or written out), normalised, sorted.
    pub contact_emails: Vec<String>,
    /// The page's `mailto:` addresses, normalised, in page order: the ones it presents as its
    /// contact (see `recipient`).
    pub linked_emails: Vec<String>,
    pub contact_phones: Vec<String>,
    pub has_contact_form: bool,
    pub image_count: usize,
    pub uses_tables_for_layout: bool,
}

#[expect(
    clippy::expect_used,
    reason = "a literal pattern, compiled by the unit tests"
)]
static JQUERY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"jquery[-.]?(\d+\.\d+(?:\.\d+)?)").expect("a literal pattern"));
#[expect(
    clippy::expect_used,
    reason = "a literal pattern, compiled by the unit tests"
)]
static COPYRIGHT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:©|copyright)\s*(?:\d{4}\s*[-–]\s*)?((?:19|20)\d{2})")
        .expect("a literal pattern")
});
/// CMS fingerprints in the page's (lower-cased) resource URLs and scripts, in order of preference.
const CMS_MARKERS: [(&str, &str); 5] = [
    ("wp-content", "WordPress"),
    ("wp-includes", "WordPress"),
    ("static.wixstatic.com", "Wix"),
    ("squarespace.com", "Squarespace"),
    ("cdn.shopify.com", "Shopify"),
];
#[expect(
    clippy::expect_used,
    reason = "a literal pattern, compiled by the unit tests"
)]
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").expect("a literal pattern")
});
/// Script sources and bodies that name an analytics product.
const ANALYTICS: [(&str, &str); 6] = [
    ("googletagmanager.com/gtag/js", "google-analytics-4"),
    ("google-analytics.com/analytics.js", "universal-analytics"),
    ("googletagmanager.com/gtm.js", "google-tag-manager"),
    ("fbq(", "meta-pixel"),
    ("plausible.io", "plausible"),
    ("static.hotjar.com", "hotjar"),
];
/// Caps on what a hostile page can make us keep (pages are already capped at 2 MB by the fetch).
const MAX_H1S: usize = 100;
const MAX_LINKS: usize = 100;
const MAX_FIELD: usize = 4096;
const MAX_TEXT: usize = 2 * 1024 * 1024;

/// The elements the scan listens for, parsed once per process.
struct Selectors {
    title: Selector,
    h1: Selector,
    meta: Selector,
    canonical: Selector,
    script: Selector,
    anchor: Selector,
    form: Selector,
    img: Selector,
    table_width: Selector,
    src: Selector,
    href: Selector,
}

static SELECTORS: LazyLock<Option<Selectors>> = LazyLock::new(|| {
    Some(Selectors {
        title: "title".parse().ok()?,
        h1: "h1".parse().ok()?,
        meta: "meta".parse().ok()?,
        canonical: r#"link[rel="canonical" i]"#.parse().ok()?,
        script: "script".parse().ok()?,
        anchor: "a[href]".parse().ok()?,
        form: "form".parse().ok()?,
        img: "img".parse().ok()?,
        table_width: "table[width]".parse().ok()?,
        src: "[src]".parse().ok()?,
        href: "[href]".parse().ok()?,
    })
});

/// What the handlers collect, raw (entities still encoded) until [`Scan::finish`].
#[derive(Default)]
struct Scan {
    titles: usize,
    title: String,
    h1s: Vec<String>,
    h1_total: usize,
    meta_description: Option<String>,
    generator: Option<String>,
    has_viewport: bool,
    has_open_graph: bool,
    canonical: Option<String>,
    /// Every script's `src` and body, lower-cased, for analytics and jQuery fingerprints.
    scripts: String,
    /// Every `src` and `href`, lower-cased, for CMS fingerprints.
    urls: String,
    mailto: Vec<String>,
    tel: Vec<String>,
    has_form: bool,
    images: usize,
    table_layout: bool,
    /// All text of the document (markup and comments excluded), for addresses written out.
    text: String,
}

fn attr(el: &Element<'_, '_>, name: &str) -> Option<String> {
    el.get_attribute(name)
        .map(|v| decode_html_entities(&v).into_owned())
}

/// Appends as much of `chunk` as fits under `cap` bytes, on a character boundary.
fn push_capped(buf: &mut String, chunk: &str, cap: usize) {
    let room = cap.saturating_sub(buf.len());
    if room >= chunk.len() {
        buf.push_str(chunk);
    } else if room > 0 {
        let end = (0..=room)
            .rev()
            .find(|&i| chunk.is_char_boundary(i))
            .unwrap_or(0);
        buf.push_str(&chunk[..end]);
    }
}

/// Entity-decoded, whitespace-collapsed, clipped to `n` characters; `None` when empty.
fn clean(raw: &str, n: usize) -> Option<String> {
    let decoded = decode_html_entities(raw);
    let joined = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    (!joined.is_empty()).then(|| clip(&joined, n))
}

/// At most `n` characters, storable (no NULs: a page is outside text).
fn clip(s: &str, n: usize) -> String {
    shared::domain::storable(s, n)
}

impl Scan {
    fn title_text(&mut self, t: &TextChunk<'_>) {
        if self.titles == 1 {
            push_capped(&mut self.title, t.as_str(), MAX_FIELD);
        }
    }

    fn h1_text(&mut self, t: &TextChunk<'_>) {
        // Only while the latest <h1> is one we kept.
        let kept = self.h1s.len() == self.h1_total;
        if let Some(h1) = self.h1s.last_mut().filter(|_| kept) {
            push_capped(h1, t.as_str(), MAX_FIELD);
        }
    }

    fn canonical(&mut self, el: &Element<'_, '_>) {
        if self.canonical.is_none() {
            self.canonical = attr(el, "href").map(|h| clip(&h, 500));
        }
    }

    fn url(&mut self, el: &Element<'_, '_>, name: &str) {
        if let Some(url) = el.get_attribute(name) {
            push_capped(&mut self.urls, &url.to_lowercase(), MAX_TEXT);
            push_capped(&mut self.urls, "\n", MAX_TEXT);
        }
    }

    fn script_text(&mut self, t: &TextChunk<'_>) {
        push_capped(&mut self.scripts, &t.as_str().to_lowercase(), MAX_TEXT);
    }

    fn h1(&mut self) {
        self.h1_total += 1;
        if self.h1s.len() < MAX_H1S {
            self.h1s.push(String::new());
        }
    }

    fn meta(&mut self, el: &Element<'_, '_>) {
        let name = el
            .get_attribute("name")
            .or_else(|| el.get_attribute("property"))
            .unwrap_or_default()
            .to_lowercase();
        let content = attr(el, "content").unwrap_or_default();
        let content = content.trim();
        match name.as_str() {
            "description" if !content.is_empty() && self.meta_description.is_none() => {
                self.meta_description = Some(clip(content, 500));
            }
            "viewport" if content.contains("width") => self.has_viewport = true,
            "generator" if !content.is_empty() && self.generator.is_none() => {
                self.generator = Some(clip(content, 100));
            }
            n if n.starts_with("og:") => self.has_open_graph = true,
            _ => {}
        }
    }

    fn script(&mut self, el: &Element<'_, '_>) {
        push_capped(&mut self.scripts, "\n", MAX_TEXT);
        if let Some(src) = attr(el, "src") {
            push_capped(&mut self.scripts, &src.to_lowercase(), MAX_TEXT);
            push_capped(&mut self.scripts, " ", MAX_TEXT);
        }
    }

    fn anchor(&mut self, el: &Element<'_, '_>) {
        let Some(href) = attr(el, "href") else {
            return;
        };
        let href = href.trim();
        if let Some(m) = href.strip_prefix("mailto:") {
            if self.mailto.len() < MAX_LINKS {
                let address = m.split('?').next().unwrap_or_default();
                self.mailto.push(address.to_owned());
            }
        } else if let Some(t) = href.strip_prefix("tel:")
            && self.tel.len() < MAX_LINKS
        {
            self.tel.push(clip(t, 100));
        }
    }

    fn text(&mut self, t: &TextChunk<'_>) {
        push_capped(&mut self.text, t.as_str(), MAX_TEXT);
        if t.last_in_text_node() {
            push_capped(&mut self.text, " ", MAX_TEXT);
        }
    }

    fn finish(self) -> Checks {
        let h1s: Vec<String> = self.h1s.iter().filter_map(|h| clean(h, 300)).collect();
        let overflow = self.h1_total.saturating_sub(self.h1s.len());
        let analytics = ANALYTICS
            .iter()
            .filter(|(needle, _)| self.scripts.contains(needle))
            .map(|(_, name)| (*name).to_owned())
            .collect();
        let cms = self.generator.or_else(|| {
            CMS_MARKERS
                .iter()
                .find(|(needle, _)| self.urls.contains(needle) || self.scripts.contains(needle))
                .map(|(_, cms)| (*cms).to_owned())
        });
        let text = decode_html_entities(&self.text);
        let address = |e: &str| {
            shared::domain::Email::parse(e)
                .ok()
                .filter(|e| {
                    ![".png", ".jpg", ".gif", ".webp", ".svg"]
                        .iter()
                        .any(|x| e.as_str().ends_with(x))
                })
                .map(|e| e.to_string())
        };
        let mut linked: Vec<String> = Vec::new();
        for e in self.mailto.iter().filter_map(|e| address(e)) {
            if !linked.contains(&e) && linked.len() < 10 {
                linked.push(e);
            }
        }
        let mut emails: Vec<String> = linked
            .iter()
            .cloned()
            .chain(EMAIL.find_iter(&text).filter_map(|m| address(m.as_str())))
            .collect();
        emails.sort();
        emails.dedup();
        emails.truncate(10);
        let mut phones = self.tel;
        phones.truncate(10);
        Checks {
            title: clean(&self.title, 300),
            meta_description: self.meta_description,
            h1_count: h1s.len() + overflow,
            h1: h1s.into_iter().next(),
            has_viewport: self.has_viewport,
            canonical: self.canonical,
            has_open_graph: self.has_open_graph,
            analytics,
            cms,
            jquery_version: JQUERY
                .captures(&self.scripts)
                .and_then(|m| m.get(1))
                .map(|m| m.as_str().to_owned()),
            copyright_year: COPYRIGHT
                .captures_iter(&text)
                .filter_map(|m| m.get(1)?.as_str().parse().ok())
                .max(),
            contact_emails: emails,
            linked_emails: linked,
            contact_phones: phones,
            has_contact_form: self.has_form,
            image_count: self.images,
            uses_tables_for_layout: self.table_layout,
        }
    }
}

type Handlers = (Cow<'static, Selector>, ElementContentHandlers<'static>);

/// The scan the handlers write to. A `Mutex` (never contended: one page, one task) because the
/// page is read across awaits, so the rewriter and its handlers must be `Send`.
type Shared = Arc<Mutex<Scan>>;

fn with_scan(scan: &Shared, f: impl FnOnce(&mut Scan)) {
    f(&mut scan.lock().unwrap_or_else(PoisonError::into_inner));
}

/// Calls `f` on the scan for every element `sel` matches.
fn on_element(
    sel: &'static Selector,
    scan: &Shared,
    f: fn(&mut Scan, &Element<'_, '_>),
) -> Handlers {
    let scan = scan.clone();
    let handler = move |el: &mut Element<'_, '_>| -> HandlerResult {
        with_scan(&scan, |s| f(s, el));
        Ok(())
    };
    (
        Cow::Borrowed(sel),
        ElementContentHandlers::default().element(handler),
    )
}

/// Calls `f` on the scan for every chunk of text inside an element `sel` matches.
fn on_text(sel: &'static Selector, scan: &Shared, f: fn(&mut Scan, &TextChunk<'_>)) -> Handlers {
    let scan = scan.clone();
    let handler = move |t: &mut TextChunk<'_>| -> HandlerResult {
        with_scan(&scan, |s| f(s, t));
        Ok(())
    };
    (
        Cow::Borrowed(sel),
        ElementContentHandlers::default().text(handler),
    )
}

type Discard = fn(&[u8]);

/// A page read as it arrives: `write` each chunk of the body, then `finish`. Only what the scan
/// keeps (capped) is held, never the page. Markup that no browser would accept still yields what
/// was read before it: the scan never fails, it only finds less.
pub struct PageScan {
    scan: Shared,
    rewriter: Option<HtmlRewriter<'static, Discard>>,
    /// Pages in an encoding the HTML scanner cannot read directly (UTF-16) are transcoded to
    /// UTF-8 as they arrive.
    transcoder: Option<encoding_rs::Decoder>,
}

impl Default for PageScan {
    fn default() -> Self {
        Self::new()
    }
}

impl PageScan {
    /// A UTF-8 page (or one whose `<meta>` names its charset).
    pub fn new() -> Self {
        Self::with_charset(None)
    }

    /// A page in the charset its `Content-Type` header declared (a label such as `Shift_JIS`
    /// or `utf-16le`); without one, a `<meta charset>` in the page decides, else UTF-8.
    pub fn with_charset(label: Option<&str>) -> Self {
        let declared =
            label.and_then(|l| encoding_rs::Encoding::for_label_no_replacement(l.as_bytes()));
        let (encoding, transcoder) = match declared {
            Some(e) if e.is_ascii_compatible() => (lol_html::AsciiCompatibleEncoding::new(e), None),
            Some(e) => (None, Some(e.new_decoder_with_bom_removal())),
            None => (None, None),
        };
        let mut page = Self::build(encoding, declared.is_none());
        page.transcoder = transcoder;
        page
    }

    fn build(encoding: Option<lol_html::AsciiCompatibleEncoding>, follow_meta: bool) -> Self {
        let scan: Shared = Arc::default();
        let rewriter = SELECTORS.as_ref().map(|s| {
            let sc = &scan;
            let handlers = [
                on_element(&s.title, sc, |scan, _| scan.titles += 1),
                on_text(&s.title, sc, Scan::title_text),
                on_element(&s.h1, sc, |scan, _| scan.h1()),
                on_text(&s.h1, sc, Scan::h1_text),
                on_element(&s.meta, sc, Scan::meta),
                on_element(&s.canonical, sc, Scan::canonical),
                on_element(&s.script, sc, Scan::script),
                on_text(&s.script, sc, Scan::script_text),
                on_element(&s.anchor, sc, Scan::anchor),
                on_element(&s.form, sc, |scan, _| scan.has_form = true),
                on_element(&s.img, sc, |scan, _| scan.images += 1),
                on_element(&s.table_width, sc, |scan, _| scan.table_layout = true),
                on_element(&s.src, sc, |scan, el| scan.url(el, "src")),
                on_element(&s.href, sc, |scan, el| scan.url(el, "href")),
            ];
            let all = scan.clone();
            let all_text = move |t: &mut TextChunk<'_>| -> HandlerResult {
                with_scan(&all, |s| s.text(t));
                Ok(())
            };
            let base = Settings::new_send()
                .with_strict(false)
                .with_adjust_charset_on_meta_tag(follow_meta);
            let base = match encoding {
                Some(e) => base.with_encoding(e),
                None => base,
            };
            let settings = handlers
                .into_iter()
                .fold(base, Settings::append_element_content_handler)
                .append_document_content_handler(DocumentContentHandlers::default().text(all_text));
            let discard: Discard = |_| {};
            HtmlRewriter::new(settings, discard)
        });
        Self {
            scan,
            rewriter,
            transcoder: None,
        }
    }

    /// Reads the next chunk of the page.
    pub fn write(&mut self, chunk: &[u8]) {
        match self.transcoder.as_mut() {
            Some(d) => {
                let mut utf8 = String::with_capacity(
                    d.max_utf8_buffer_length(chunk.len())
                        .unwrap_or(chunk.len() * 3),
                );
                let _ = d.decode_to_string(chunk, &mut utf8, false);
                self.feed(utf8.as_bytes());
            }
            None => self.feed(chunk),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        // Handlers never fail and the scan is not strict, so an error can only be the parser
        // giving up on the rest of the page: keep what was read, ignore the rest.
        if let Some(r) = self.rewriter.as_mut()
            && r.write(bytes).is_err()
        {
            self.rewriter = None;
        }
    }

    /// What the page said.
    pub fn finish(mut self) -> Checks {
        if let Some(r) = self.rewriter.take() {
            let _ = r.end();
        }
        let mut scan = self.scan.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *scan).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole page in one chunk.
    fn analyze(html: &str) -> Checks {
        let mut page = PageScan::new();
        page.write(html.as_bytes());
        page.finish()
    }

    #[test]
    fn a_page_is_read_in_the_charset_it_declares() {
        let title = "ジョーのピザ";
        // Shift_JIS, declared by the HTTP header.
        let page = format!("<html><head><title>{title}</title></head></html>");
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(&page);
        let mut p = PageScan::with_charset(Some("Shift_JIS"));
        p.write(&sjis);
        assert_eq!(p.finish().title.as_deref(), Some(title));
        // windows-1251, declared only by the page's <meta>.
        let (cp1251, _, _) = encoding_rs::WINDOWS_1251.encode(
            "<html><head><meta charset=\"windows-1251\"><title>Пицца Джо</title></head></html>",
        );
        let mut p = PageScan::with_charset(None);
        p.write(&cp1251);
        assert_eq!(p.finish().title.as_deref(), Some("Пицца Джо"));
        // UTF-16LE (not ASCII-compatible: transcoded as it arrives, split mid-character).
        let utf16: Vec<u8> = format!("\u{feff}<html><head><title>{title}</title></head></html>")
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut p = PageScan::with_charset(Some("utf-16le"));
        for chunk in utf16.chunks(7) {
            p.write(chunk);
        }
        assert_eq!(p.finish().title.as_deref(), Some(title));
    }

    #[test]
    fn nuls_on_a_page_never_reach_a_stored_field() {
        let c = analyze(
            "<html><head><title>Joe\u{0}'s</title><meta name=\"description\" content=\"a&#0;b\">\
             <meta name=\"generator\" content=\"Word\u{0}Press 6\"><link rel=\"canonical\" href=\"https://j.example/\u{0}\">\
             </head><body><h1>Big &#0; deal</h1><a href=\"tel:+1408\u{0}5550100\">call</a></body></html>",
        );
        let fields = [
            c.title.clone(),
            c.meta_description.clone(),
            c.cms.clone(),
            c.canonical.clone(),
            c.h1.clone(),
        ];
        for f in fields.iter().chain(
            c.contact_phones
                .iter()
                .map(|p| Some(p.clone()))
                .collect::<Vec<_>>()
                .iter(),
        ) {
            let f = f.as_deref().unwrap_or_default();
            assert!(!f.contains('\0'), "{f:?}");
        }
        assert_eq!(c.title.as_deref(), Some("Joe's"));
    }

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
    fn linked_addresses_are_kept_apart_from_the_written_ones_in_page_order() {
        let c = analyze(
            r#"<body><p>Write to bob@joes.example</p><a href="mailto:Zed@Joes.example?subject=Hi">Zed</a>
<a href="mailto:amy@joes.example">Amy</a><a href="mailto:zed@joes.example">again</a></body>"#,
        );
        assert_eq!(
            c.linked_emails,
            vec!["zed@joes.example", "amy@joes.example"]
        );
        assert_eq!(
            c.contact_emails,
            vec!["amy@joes.example", "bob@joes.example", "zed@joes.example"]
        );
    }

    #[test]
    fn a_page_read_in_small_chunks_says_what_the_whole_page_says() {
        // Chunks of 1, 3 and 7 bytes split tags, attributes, entities and the multi-byte
        // characters (é, ©, emoji) across chunk boundaries.
        let html = r#"<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Café Éclair &amp; Co 🍰</title><meta name="description" content="Pâtisserie &quot;fine&quot;.">
<meta name="generator" content="WordPress 6.1"><script src="/js/jquery-3.6.0.min.js"></script>
<script>gtag('config', 'G-1');</script></head><body><h1>Le <b>Café</b></h1><h1>Second</h1>
<form><input name="q"></form><img src="a.png"><a href="mailto:bonjour@cafe.example">Écrire</a>
<a href="tel:+33123456789">Appeler</a><footer>&copy; 2019 Café Éclair</footer></body></html>"#;
        let whole = analyze(html);
        assert_eq!(whole.title.as_deref(), Some("Café Éclair & Co 🍰"));
        assert_eq!(whole.h1_count, 2);
        for size in [1, 3, 7] {
            let mut page = PageScan::new();
            for chunk in html.as_bytes().chunks(size) {
                page.write(chunk);
            }
            assert_eq!(page.finish(), whole, "chunks of {size} bytes");
        }
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
    fn decodes_entities_and_reads_nested_text_like_a_browser() {
        let html = r#"<html><head><title>Joe&#39;s Pizza &amp;
   Pasta</title><title>second</title>
<meta name="Description" content="Fish &amp; chips"><link rel="Canonical" href="/?a=1&amp;b=2"></head>
<body><h1>Joe&rsquo;s <span>Pizza</span></h1><h1> </h1><h1>Menu</h1>
<p>Write to joe&#64;joes.example</p><!-- ignored@comment.example -->
<a href="mailto:Orders@Joes.example">x</a><img src="a.png"><img src="b@2x.png"></body></html>"#;
        let c = analyze(html);
        assert_eq!(c.title.as_deref(), Some("Joe's Pizza & Pasta"));
        assert_eq!(c.meta_description.as_deref(), Some("Fish & chips"));
        assert_eq!(c.canonical.as_deref(), Some("/?a=1&b=2"));
        assert_eq!(
            (c.h1.as_deref(), c.h1_count),
            (Some("Joe\u{2019}s Pizza"), 2)
        );
        assert_eq!(
            c.contact_emails,
            vec!["joe@joes.example", "orders@joes.example"]
        );
        assert_eq!(c.image_count, 2);
    }

    #[test]
    fn scripts_inline_and_external_are_fingerprinted() {
        let html = r#"<script>!function(f,b,e,v,n,t,s){};fbq('init', '1');</script>
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<script src="https://plausible.io/js/script.js"></script><p>no analytics here: fbq( in text</p>"#;
        let c = analyze(html);
        assert_eq!(c.analytics, vec!["meta-pixel", "plausible"]);
        assert_eq!(c.jquery_version.as_deref(), Some("3.7.1"));
        assert!(!c.has_contact_form && !c.uses_tables_for_layout);
    }

    #[test]
    fn comments_are_neither_text_nor_urls_and_deep_nesting_still_reads_the_page() {
        let huge = format!(
            "<title>Big</title><h1>Big</h1><!-- © 2031 {} -->{}<footer>© 2024</footer>",
            "x@y.example wp-content ".repeat(100_000),
            "<div>".repeat(20_000)
        );
        let c = analyze(&huge);
        assert_eq!((c.title.as_deref(), c.h1_count), (Some("Big"), 1));
        assert!(c.contact_emails.is_empty(), "comments are not text");
        assert_eq!(c.copyright_year, Some(2024));
        assert_eq!(c.cms, None, "nor are they resource URLs");
    }

    #[test]
    fn survives_garbage() {
        let c = analyze("<<<>>\u{0}<html><title></title><h1></h1><a href=mailto:nope>");
        assert!(c.title.is_none() && c.h1.is_none() && c.contact_emails.is_empty());
        let _ = analyze(&"<div>".repeat(10_000));
    }
}
