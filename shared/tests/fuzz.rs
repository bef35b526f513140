//! Property-based fuzzing of every parser that reads outside input: the JSON
//! boundary, the queue envelope, both webhooks' signature checks and bodies, and the vendors'
//! answer types. cargo-fuzz needs a nightly toolchain, which a fresh CI machine cannot fetch, so
//! the targets are proptest properties: `scripts/test` runs each with proptest's default number
//! of cases; `scripts/fuzz` runs them in release with `PROPTEST_CASES` (1,000,000 by default).
//!
//! The property everywhere: no input panics, and what passes the boundary holds no text
//! PostgreSQL refuses.

use proptest::prelude::*;
use shared::bus::Envelope;
use shared::domain::storable_json;
use shared::pipeline::messages::LeadRef;

/// JSON-ish bytes: mostly the characters JSON is made of, escapes included, so the parsers get
/// past their first byte; sometimes anything at all.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\"".to_vec()),
        Just(b":".to_vec()),
        Just(b",".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just(b"\\ud800".to_vec()),
        Just(b"\\udc00".to_vec()),
        Just(b"\\ud83d\\ude00".to_vec()),
        Just(b"\\u00".to_vec()),
        Just(b"\"error\"".to_vec()),
        Just(b"\"tenant_id\"".to_vec()),
        Just(b"null".to_vec()),
        Just(b"1e999".to_vec()),
        "[a-z0-9 ]{0,8}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

proptest! {
    #[test]
    fn the_json_boundary_never_panics_and_lets_no_nul_through(body in jsonish()) {
        let clean = storable_json(&body);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&clean) {
            prop_assert!(!has_nul(&v), "{v}");
        }
        // Cleaning is idempotent: a second pass changes nothing.
        let twice = storable_json(&clean).into_owned();
        prop_assert_eq!(twice.as_slice(), clean.as_ref());
    }

    #[test]
    fn the_envelope_never_panics(body in jsonish()) {
        let text = String::from_utf8_lossy(&body);
        let _ = Envelope::<LeadRef>::parse(&text);
    }

    #[test]
    fn webhook_signatures_and_bodies_never_panic(
        body in jsonish(),
        header in "[ -~]{0,120}",
        ts in "[0-9 -]{0,12}",
    ) {
        let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let public = shared::webhook::sendgrid::public_key_base64(&key).unwrap();
        let sg = shared::webhook::sendgrid::SendGridKey::from_base64_der(&public).unwrap();
        let _ = sg.verify(Some(&header), Some(&ts), &body, 1_700_000_000, 600);
        let _ = shared::webhook::stripe::verify("whsec_x", Some(&header), &body, 1_700_000_000, 300);
        let clean = storable_json(&body);
        let _ = serde_json::from_slice::<Vec<shared::webhook::sendgrid::Event>>(&clean);
        let _ = serde_json::from_slice::<shared::webhook::stripe::Event>(&clean);
    }

    #[test]
    fn vendor_answers_never_panic(body in jsonish()) {
        let clean = storable_json(&body);
        let _ = serde_json::from_slice::<shared::vendors::yelp::SearchResponse>(&clean);
        let _ = serde_json::from_slice::<shared::vendors::places::TextSearchResponse>(&clean);
        let _ = serde_json::from_slice::<shared::vendors::openai::ChatResponse>(&clean);
        if let Ok(p) = serde_json::from_slice::<shared::vendors::pagespeed::PsiResponse>(&clean) {
            let _ = p.summary();
        }
    }
}
