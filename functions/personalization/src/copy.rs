//! The email's words: the LLM's body (checked), or the template; the subject from the
//! experiment variant. Rules from the predecessors: subject 30–60 characters, body at most 150
//! words, no spam-trigger words, no links but ours; a spam-risk score from weighted patterns
//! (< 25 low, < 50 medium, < 75 high, else critical) and nothing at 50 or above is sent.

use std::sync::LazyLock;

use regex::Regex;

pub const MAX_BODY_WORDS: usize = 150;
pub const REFUSE_AT: u8 = 50;

/// (pattern, weight): weighted spam signals, case-insensitive.
const SIGNALS: &[(&str, u8)] = &[
    (r"\bfree\b", 15),
    (r"\burgent\b", 20),
    (r"\bact now\b", 25),
    (r"\bguarantee", 15),
    (r"\bno obligation\b", 15),
    (r"\blimited time\b", 20),
    (r"\bclick here\b", 20),
    (r"\$\$\$", 25),
    (r"!!+", 20),
    (r"\b100% \w+", 10),
    (r"\brisk[- ]free\b", 20),
    (r"\bwinner\b", 20),
];

static PATTERNS: LazyLock<Vec<(Regex, u8)>> = LazyLock::new(|| {
    SIGNALS
        .iter()
        .filter_map(|(p, w)| Regex::new(&format!("(?i){p}")).ok().map(|r| (r, *w)))
        .collect()
});
static URL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\bhttps?://[^\s)>\]]+").ok());

/// 0..100; capitals and links beyond ours add to the pattern weights.
pub fn spam_score(subject: &str, body: &str) -> u8 {
    let text = format!("{subject}\n{body}");
    let mut score: u32 = PATTERNS
        .iter()
        .filter(|(r, _)| r.is_match(&text))
        .map(|(_, w)| u32::from(*w))
        .sum();
    let letters: Vec<char> = subject.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.len() >= 10
        && letters.iter().filter(|c| c.is_uppercase()).count() * 2 > letters.len()
    {
        score += 25;
    }
    score.min(100) as u8
}

pub fn band(score: u8) -> &'static str {
    match score {
        0..25 => "low",
        25..50 => "medium",
        50..75 => "high",
        _ => "critical",
    }
}

/// Why an LLM body cannot be used, if it cannot.
pub fn check_body(body: &str, our_link: &str) -> Result<(), String> {
    let words = body.split_whitespace().count();
    if words == 0 || words > MAX_BODY_WORDS {
        return Err(format!("{words} words (1..={MAX_BODY_WORDS})"));
    }
    if let Some(re) = URL.as_ref()
        && let Some(m) = re
            .find_iter(body)
            .find(|m| !m.as_str().starts_with(our_link))
    {
        return Err(format!("links elsewhere: {}", m.as_str()));
    }
    Ok(())
}

/// A subject with no figure in it, for a variant whose figure is not known for this site (its
/// PageSpeed run failed): the email must not invent a number.
pub const SUBJECT_WITHOUT_FIGURES: &str = "{business}: a few quick fixes for your website";

/// The placeholders a subject may use. The opportunity score is deliberately not one: it is how
/// much the site is costing its owner (higher is worse), and an owner reads "your website
/// scored 93/100" as praise. A number in the copy is the site's own figure.
pub const SUBJECT_PLACEHOLDERS: &[&str] = &["{business}", "{mobile_performance}"];

/// The variant's subject with the business and the site's mobile performance (Lighthouse,
/// 0–100) filled in, cut to 60 characters at a word; [`SUBJECT_WITHOUT_FIGURES`] when it needs
/// the performance and it is unknown.
pub fn subject(template: &str, business: &str, mobile_performance: Option<u8>) -> String {
    let template = match mobile_performance {
        None if template.contains("{mobile_performance}") => SUBJECT_WITHOUT_FIGURES,
        _ => template,
    };
    // A subject is one line: line breaks in a business's name (outside text) become spaces.
    let business = business.split_whitespace().collect::<Vec<_>>().join(" ");
    let s = template.replace("{business}", &business).replace(
        "{mobile_performance}",
        &mobile_performance
            .map(|p| p.to_string())
            .unwrap_or_default(),
    );
    if s.chars().count() <= 60 {
        return s;
    }
    let mut out = String::new();
    for w in s.split_whitespace() {
        if out.chars().count() + w.chars().count() + 1 > 57 {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    format!("{out}…")
}

/// The template body, used without an LLM key, when the budget is closed, or when the LLM's
/// body fails the checks.
pub fn template_body(
    business: &str,
    problems: &[String],
    preview_url: &str,
    sender: &str,
) -> String {
    let list = match problems {
        [] => "a few things that are likely costing you customers".to_owned(),
        [one] => one.to_lowercase(),
        [first, second, ..] => format!("{} and {}", first.to_lowercase(), second.to_lowercase()),
    };
    format!(
        "Hi {business} team,\n\nI took a look at your website and found {list}. I wrote up what I found, with step-by-step fixes, in a short audit you can read here:\n\n{preview_url}\n\nHappy to answer any questions.\n\nBest regards,\n{sender}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spam_score_bands_and_refusal() {
        let calm = spam_score(
            "Three quick fixes for Joe's Pizza",
            "Hi, I looked at your site and found two problems.",
        );
        assert_eq!(band(calm), "low");
        let loud = spam_score(
            "URGENT: FREE WEBSITE AUDIT!!!",
            "Act now, limited time, click here, risk-free!",
        );
        assert!(loud >= REFUSE_AT, "{loud}");
        assert_eq!(band(loud), if loud >= 75 { "critical" } else { "high" });
    }

    #[test]
    fn bodies_are_checked_for_length_and_foreign_links() {
        let ours = "https://reports.example.com/r/abc";
        assert!(
            check_body(
                &format!("Read it here: {ours}"),
                "https://reports.example.com/"
            )
            .is_ok()
        );
        assert!(
            check_body(
                "See https://evil.example.net/x",
                "https://reports.example.com/"
            )
            .is_err()
        );
        assert!(check_body(&"word ".repeat(151), "https://x/").is_err());
        assert!(check_body("   ", "https://x/").is_err());
    }

    #[test]
    fn subjects_fill_in_and_stay_within_sixty_characters() {
        assert_eq!(
            subject("{business}: three quick fixes", "Joe's", Some(80)),
            "Joe's: three quick fixes"
        );
        let long = subject(
            "{business}: three quick fixes for your website",
            &"Very Long Business Name ".repeat(3),
            Some(80),
        );
        assert!(long.chars().count() <= 60, "{long}");
    }

    #[test]
    fn a_business_name_with_line_breaks_makes_a_one_line_subject() {
        let s = subject(
            "Ideas for {business}",
            "Joe's\r\nBcc: all@example.com",
            None,
        );
        assert!(!s.contains(['\r', '\n']), "{s:?}");
        assert_eq!(s, "Ideas for Joe's Bcc: all@example.com");
    }

    #[test]
    fn a_subject_quotes_the_sites_own_figure_or_none() {
        assert_eq!(
            subject(
                "Your site on phones: {mobile_performance}/100 (Google)",
                "x",
                Some(34)
            ),
            "Your site on phones: 34/100 (Google)"
        );
        // Unknown (PageSpeed failed): no number is made up.
        assert_eq!(
            subject(
                "Your site on phones: {mobile_performance}/100",
                "Joe's",
                None
            ),
            "Joe's: a few quick fixes for your website"
        );
    }

    #[test]
    fn the_template_names_the_problems_and_links_the_preview() {
        let b = template_body(
            "Joe's Pizza",
            &["Slow homepage".into(), "No mobile viewport".into()],
            "https://r.example.com/p/t",
            "Ann",
        );
        assert!(
            b.contains("slow homepage and no mobile viewport")
                && b.contains("https://r.example.com/p/t")
        );
        assert!(b.split_whitespace().count() <= MAX_BODY_WORDS);
        assert!(spam_score("x", &b) < 25);
    }
}
