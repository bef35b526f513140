//! Text written by someone else — a homepage, a vendor's answer, a webhook body — made storable.
//!
//! PostgreSQL refuses U+0000 in `text` and the escape `\u0000` in `jsonb`, and JSON parsers
//! refuse an escaped lone surrogate (`\ud800`): one such character in one field would fail the
//! whole batch's transaction (or its parse), and the batch would be retried, paying its vendors
//! again, until it dead-letters with every good item in it. Two rules close the class at the
//! boundary, before anything is parsed or stored:
//! * [`storable_json`] rewrites a JSON document's string escapes: `\u0000` is dropped and a lone
//!   surrogate becomes U+FFFD — every webhook body and every vendor answer passes through it;
//! * [`ExternalText`] holds text from outside: NULs removed, at most `max` characters — every
//!   page field is one (vendor and webhook strings come through `storable_json`).

use std::borrow::Cow;

use serde::Serialize;

/// Text from outside, without NULs, at most a bounded number of characters. (A Rust string
/// holds no surrogates: lone ones are dealt with where JSON is read, by [`storable_json`].)
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ExternalText(String);

impl ExternalText {
    pub fn new(raw: &str, max_chars: usize) -> Self {
        let mut out = String::with_capacity(raw.len().min(max_chars.saturating_mul(4)));
        for c in raw.chars().filter(|c| *c != '\0').take(max_chars) {
            out.push(c);
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for ExternalText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ExternalText> for String {
    fn from(t: ExternalText) -> String {
        t.0
    }
}

/// `raw` as storable text (see [`ExternalText`]).
pub fn storable(raw: &str, max_chars: usize) -> String {
    ExternalText::new(raw, max_chars).into_string()
}

/// A JSON document whose string escapes PostgreSQL and serde accept: `\u0000` removed, a lone
/// surrogate escape replaced by `\ufffd`. Everything else — structure, other escapes, bytes
/// outside strings — is kept exactly; a document needing no change is borrowed, not copied.
pub fn storable_json(body: &[u8]) -> Cow<'_, [u8]> {
    if !body.windows(2).any(|w| w == b"\\u") {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len());
    let mut changed = false;
    let mut in_string = false;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if !in_string {
            in_string = b == b'"';
            out.push(b);
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = false;
                out.push(b);
                i += 1;
            }
            b'\\' if body.get(i + 1) == Some(&b'u') => {
                let Some(unit) = hex4(body, i + 2) else {
                    // Not a well-formed escape: left for the parser to refuse.
                    out.extend_from_slice(&body[i..(i + 2).min(body.len())]);
                    i += 2;
                    continue;
                };
                match unit {
                    0 => {
                        changed = true;
                    }
                    0xD800..=0xDBFF => {
                        let low = (body.get(i + 6) == Some(&b'\\')
                            && body.get(i + 7) == Some(&b'u'))
                        .then(|| hex4(body, i + 8))
                        .flatten()
                        .filter(|l| (0xDC00..=0xDFFF).contains(l));
                        if low.is_some() {
                            out.extend_from_slice(&body[i..i + 12]);
                            i += 12;
                            continue;
                        }
                        out.extend_from_slice(br"\ufffd");
                        changed = true;
                    }
                    0xDC00..=0xDFFF => {
                        out.extend_from_slice(br"\ufffd");
                        changed = true;
                    }
                    _ => out.extend_from_slice(&body[i..i + 6]),
                }
                i += 6;
            }
            b'\\' => {
                out.extend_from_slice(&body[i..(i + 2).min(body.len())]);
                i += 2;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(body)
    }
}

/// The four hex digits at `at`, as a UTF-16 code unit.
fn hex4(body: &[u8], at: usize) -> Option<u32> {
    let digits = body.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16)
        .ok()
        .filter(|_| digits.iter().all(u8::is_ascii_hexdigit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        String::from_utf8(storable_json(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn nul_escapes_go_and_lone_surrogates_become_replacement_characters() {
        assert_eq!(clean(r#"{"a":"x\u0000y"}"#), r#"{"a":"xy"}"#);
        assert_eq!(clean(r#"{"a":"\ud800"}"#), r#"{"a":"\ufffd"}"#);
        assert_eq!(clean(r#"{"a":"\udc00x"}"#), r#"{"a":"\ufffdx"}"#);
        assert_eq!(clean(r#"{"a":"\ud800\u0041"}"#), r#"{"a":"\ufffd\u0041"}"#);
        // Keys are strings too.
        assert_eq!(clean(r#"{"k\u0000":1}"#), r#"{"k":1}"#);
        // What serde and PostgreSQL accept is kept exactly.
        for ok in [
            r#"{"a":"\ud83d\ude00 \u00e9 \\u0000 \" \n"}"#,
            r#"[1, true, null, "plain"]"#,
            r#"{"a":"\u0041"}"#,
        ] {
            assert!(
                matches!(storable_json(ok.as_bytes()), Cow::Borrowed(_)),
                "{ok}"
            );
        }
        let v: serde_json::Value =
            serde_json::from_str(&clean(r#"["\u0000\ud800\udfff\udfff"]"#)).unwrap();
        // The pair is kept (U+103FF), the NUL dropped, the lone low surrogate replaced.
        assert_eq!(v[0], "\u{103FF}\u{FFFD}");
    }

    #[test]
    fn a_cleaned_document_parses_and_holds_no_nul() {
        for hostile in [
            r#"[{"email":"a@b.example","reason":"bad\u0000mailbox","x":"\ud834"}]"#,
            r#"{"deep":{"list":["\u0000","\udbff\udfff","\udfff\ud800"]}}"#,
            r#"{"truncated":"\u00"}"#,
        ] {
            let cleaned = storable_json(hostile.as_bytes());
            match serde_json::from_slice::<serde_json::Value>(&cleaned) {
                Ok(v) => assert!(!v.to_string().contains("\\u0000"), "{v}"),
                // Malformed JSON stays malformed: the parser refuses it, with its reason.
                Err(e) => assert!(hostile.contains("truncated"), "{hostile}: {e}"),
            }
        }
    }

    #[test]
    fn external_text_drops_nuls_and_caps_length() {
        assert_eq!(ExternalText::new("a\0b\0", 10).as_str(), "ab");
        assert_eq!(ExternalText::new("ééééé", 3).as_str(), "ééé");
        assert_eq!(
            ExternalText::new("a\0b", usize::MAX).as_str(),
            "ab",
            "no bound"
        );
    }
}
