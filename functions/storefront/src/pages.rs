//! The storefront's pages: small, self-contained HTML (no scripts, no external assets), every
//! interpolated value escaped.

/// HTML-escapes text for element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page around `body` (already HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{}</title><style>\
body{{font-family:system-ui,Arial,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1f2933;line-height:1.5}}\
h1{{font-size:1.6rem}} .score{{font-size:3rem;font-weight:700;color:#c0392b}} .tier{{color:#52606d}}\
button{{background:#0b7285;color:#fff;border:0;border-radius:.4rem;padding:.8rem 1.4rem;font-size:1.05rem;cursor:pointer}}\
li{{margin:.3rem 0}} .muted{{color:#7b8794;font-size:.9rem}}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

pub struct Preview<'a> {
    pub business: &'a str,
    pub score: i16,
    pub tier: &'a str,
    pub problems: &'a [String],
    pub price_cents: i64,
    pub token: &'a str,
}

pub fn preview(p: &Preview<'_>) -> String {
    let problems: String = p
        .problems
        .iter()
        .map(|t| format!("<li>{}</li>", escape(t)))
        .collect();
    let t = escape(p.token);
    page(
        &format!("Website audit — {}", p.business),
        &format!(
            "<h1>Website audit for {}</h1>\
<p>Opportunity score <span class=\"score\">{}</span>/100 <span class=\"tier\">(tier {})</span> — the higher, the more your site is costing you.</p>\
<h2>What we found first</h2><ul>{problems}</ul>\
<p><a href=\"/r/{t}/preview.pdf\">Read the two-page preview (PDF)</a></p>\
<h2>The full report</h2><p>Every score explained, Core Web Vitals against Google's thresholds, and each fix step by step — ${}.{:02}.</p>\
<form method=\"post\" action=\"/r/{t}/buy\"><button type=\"submit\">Buy the full report</button></form>\
<p class=\"muted\">Payment by card through Stripe. The report arrives by email right after.</p>",
            escape(p.business),
            p.score,
            escape(p.tier),
            p.price_cents / 100,
            p.price_cents % 100
        ),
    )
}

pub fn message(title: &str, text: &str) -> String {
    page(
        title,
        &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(text)),
    )
}

pub fn unsubscribe_form(token: &str) -> String {
    page(
        "Unsubscribe",
        &format!(
            "<h1>Unsubscribe</h1><p>Press the button and we will not email this address again.</p>\
<form method=\"post\" action=\"/u/{}\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
<button type=\"submit\">Unsubscribe</button></form>",
            escape(token)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_business_is_called_cannot_inject_markup() {
        let html = preview(&Preview {
            business: "<script>x</script> & Sons",
            score: 81,
            tier: "A",
            problems: &["Slow \"hero\" image".into()],
            price_cents: 4900,
            token: "tok",
        });
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt; &amp; Sons"));
        assert!(html.contains("Slow &quot;hero&quot; image"));
        assert!(html.contains("$49.00"));
        assert!(!html.contains("<script>"));
    }
}
