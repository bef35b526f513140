//! Length caps for the fields of answers and events from outside, applied as they are read.
//!
//! A vendor's answer or a webhook's event is bounded as a whole (the body cap), but one field of
//! it is not: a 5 MB business name would be stored, rendered into a PDF and an email subject, and
//! a long id in a B-tree index fails its insert ("index row size exceeds maximum") and with it the
//! whole batch. The rule: every string field of a wire struct that is stored or used is read
//! through one of these, with the cap its kind of value names; a value over it is cut (at a
//! character boundary) rather than refused, as a long field is no reason to lose the rest of the
//! answer. Used as `#[serde(deserialize_with = "capped::text::<{ capped::NAME }, _>")]`.

use serde::{Deserialize, Deserializer};

use super::ExternalText;

/// Ids, keys and tokens a vendor gives us (they are indexed: 255 characters stay well inside a
/// B-tree entry whatever the encoding).
pub const ID: usize = 255;
/// Codes, statuses, currencies, phone numbers, postal codes, regions.
pub const SHORT: usize = 64;
/// Names and titles: a business, a category, a city, a person.
pub const NAME: usize = 300;
/// An address line, a displayed value.
pub const LINE: usize = 500;
/// An email address (RFC 5321's limit).
pub const EMAIL: usize = 254;
/// A URL.
pub const URL: usize = 2048;
/// A vendor's error message, a bounce reason.
pub const MESSAGE: usize = 2000;
/// The items of a list (categories, types, address lines).
pub const ITEMS: usize = 50;
/// Strings inside a JSON value kept as it came (an event's raw form, opening hours).
pub const RAW_STRING: usize = 2000;

/// A string field, at most `N` characters, without NULs.
pub fn text<'de, const N: usize, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    Ok(ExternalText::new(&raw, N).into_string())
}

/// An optional string field, at most `N` characters.
pub fn opt<'de, const N: usize, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
    Ok(raw.map(|r| ExternalText::new(&r, N).into_string()))
}

/// A list of strings: at most [`ITEMS`] of them, each at most `N` characters.
pub fn list<'de, const N: usize, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let raw = <Vec<std::borrow::Cow<'de, str>>>::deserialize(d)?;
    Ok(raw
        .iter()
        .take(ITEMS)
        .map(|r| ExternalText::new(r, N).into_string())
        .collect())
}

/// A list of anything, at most [`ITEMS`] of it (each item caps its own fields).
pub fn few<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    let mut items = Vec::<T>::deserialize(d)?;
    items.truncate(ITEMS);
    Ok(items)
}

/// A JSON value kept as it came: every string in it (keys too) at most [`RAW_STRING`]
/// characters.
pub fn json<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
    let mut v = serde_json::Value::deserialize(d)?;
    cap_strings(&mut v, RAW_STRING);
    Ok(v)
}

/// An optional JSON value kept as it came, its strings capped as [`json`]'s are.
pub fn json_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    let mut v = <Option<serde_json::Value>>::deserialize(d)?;
    if let Some(v) = v.as_mut() {
        cap_strings(v, RAW_STRING);
    }
    Ok(v)
}

/// A map of strings (metadata, custom args): each key and value at most `N` characters.
pub fn map<'de, const N: usize, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    let raw = <std::collections::BTreeMap<String, String>>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .take(ITEMS)
        .map(|(k, v)| {
            (
                ExternalText::new(&k, N).into_string(),
                ExternalText::new(&v, N).into_string(),
            )
        })
        .collect())
}

/// Cuts every string in `v` to `max` characters, in place.
pub fn cap_strings(v: &mut serde_json::Value, max: usize) {
    match v {
        serde_json::Value::String(s) => cut(s, max),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| cap_strings(i, max)),
        serde_json::Value::Object(fields) => {
            if fields.keys().any(|k| k.chars().count() > max) {
                *fields = std::mem::take(fields)
                    .into_iter()
                    .map(|(k, v)| (ExternalText::new(&k, max).into_string(), v))
                    .collect();
            }
            fields.values_mut().for_each(|f| cap_strings(f, max));
        }
        _ => {}
    }
}

fn cut(s: &mut String, max: usize) {
    if let Some((at, _)) = s.char_indices().nth(max) {
        s.truncate(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wire {
        #[serde(deserialize_with = "text::<3, _>")]
        name: String,
        #[serde(default, deserialize_with = "opt::<2, _>")]
        city: Option<String>,
        #[serde(default, deserialize_with = "list::<1, _>")]
        tags: Vec<String>,
        #[serde(default, deserialize_with = "json")]
        raw: serde_json::Value,
    }

    #[test]
    fn every_kind_of_field_is_cut_at_its_cap_on_a_character_boundary() {
        let long = "é".repeat(RAW_STRING + 5);
        let many: Vec<String> = (0..ITEMS + 10).map(|i| format!("t{i}")).collect();
        let body = serde_json::json!({
            "name": "ééééé", "city": "abc", "tags": many,
            "raw": {"a": [long.clone()], long.clone(): 1},
        });
        let w: Wire = serde_json::from_value(body).unwrap();
        assert_eq!(w.name, "ééé");
        assert_eq!(w.city.as_deref(), Some("ab"));
        assert_eq!(w.tags.len(), ITEMS);
        assert_eq!(w.tags[0], "t");
        let cut = "é".repeat(RAW_STRING);
        assert_eq!(w.raw["a"][0], cut.as_str());
        assert_eq!(w.raw[cut.as_str()], 1, "keys are cut too");
        // Escaped text is read (Cow owns it) and cut like any other.
        let w: Wire = serde_json::from_str(r#"{"name":"a\"bcd","city":null}"#).unwrap();
        assert_eq!((w.name.as_str(), w.city), ("a\"b", None));
    }
}
