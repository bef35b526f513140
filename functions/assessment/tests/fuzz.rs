//! Property-based fuzzing of the homepage scanner (see `shared/tests/fuzz.rs` for
//! why proptest and how `scripts/fuzz` runs it): any bytes, in any chunking, in any declared
//! charset, never panic and never leave a NUL in a stored field.

use assessment::analyze::PageScan;
use proptest::prelude::*;

/// HTML-ish bytes: tags, attributes, entities and text, sometimes anything at all.
fn htmlish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"<title>".to_vec()),
        Just(b"</title>".to_vec()),
        Just(b"<h1>".to_vec()),
        Just(b"<meta name=\"description\" content=\"".to_vec()),
        Just(b"<meta charset=\"shift_jis\">".to_vec()),
        Just(b"<a href=\"mailto:".to_vec()),
        Just(b"<a href=\"tel:".to_vec()),
        Just(b"\">".to_vec()),
        Just(b"&#0;".to_vec()),
        Just(b"&amp;".to_vec()),
        Just(b"<!--".to_vec()),
        Just(b"<script>".to_vec()),
        Just(b"\0".to_vec()),
        Just("é©😀".as_bytes().to_vec()),
        "[a-z@. ]{0,10}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..6),
    ];
    proptest::collection::vec(piece, 0..60).prop_map(|p| p.concat())
}

proptest! {
    #[test]
    fn the_page_scanner_never_panics_and_stores_no_nul(
        page in htmlish(),
        chunk in 1usize..64,
        charset in prop_oneof![Just(None), Just(Some("shift_jis")), Just(Some("utf-16le")), Just(Some("windows-1251"))],
    ) {
        let mut scan = PageScan::with_charset(charset);
        for c in page.chunks(chunk) {
            scan.write(c);
        }
        let c = scan.finish();
        for f in [&c.title, &c.meta_description, &c.h1, &c.canonical, &c.cms] {
            prop_assert!(!f.as_deref().unwrap_or_default().contains('\0'));
        }
        for p in &c.contact_phones {
            prop_assert!(!p.contains('\0'));
        }
    }
}
