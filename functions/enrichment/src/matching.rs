//! Is this Places result the business we sourced? Name similarity (token overlap of normalised
//! names) must be high, and the address or the phone must agree.

use shared::domain::{Phone, normalize_address, normalize_name};
use shared::vendors::places::Place;

use crate::Known;

/// Minimum name similarity, and the confidence needed to accept a match.
pub const MIN_NAME_SIMILARITY: f64 = 0.6;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchScore {
    pub name: f64,
    pub address: bool,
    pub phone: bool,
    /// 0.6 × name + 0.2 × address + 0.2 × phone.
    pub confidence: f64,
}

impl MatchScore {
    pub fn accepted(&self) -> bool {
        self.name >= MIN_NAME_SIMILARITY && (self.address || self.phone)
    }
}

fn tokens(s: &str) -> std::collections::HashSet<String> {
    normalize_name(s)
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Jaccard similarity of the normalised names' words.
pub fn name_similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (tokens(a), tokens(b));
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    a.intersection(&b).count() as f64 / a.union(&b).count() as f64
}

pub fn score_match(known: &Known, place: &Place) -> MatchScore {
    let place_name = place
        .display_name
        .as_ref()
        .map(|d| d.text.as_str())
        .unwrap_or_default();
    let name = name_similarity(&known.name, place_name);
    let address = match (&known.address1, &place.formatted_address) {
        (Some(a), Some(f)) if !a.trim().is_empty() => {
            let street = normalize_address(a);
            normalize_address(f).starts_with(&street)
                && known.zip.as_deref().is_none_or(|z| f.contains(z))
        }
        _ => false,
    };
    let place_phone = place
        .international_phone_number
        .as_deref()
        .or(place.national_phone_number.as_deref())
        .and_then(|p| Phone::parse(p).ok());
    let phone = matches!((&known.phone, place_phone), (Some(k), Some(p)) if k == p.as_str());
    let confidence =
        0.6 * name + 0.2 * f64::from(u8::from(address)) + 0.2 * f64::from(u8::from(phone));
    MatchScore {
        name,
        address,
        phone,
        confidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::vendors::places::LocalizedText;

    fn known() -> Known {
        Known {
            name: "Joe's Pizza LLC".into(),
            address1: Some("12 Main St".into()),
            city: Some("San Jose".into()),
            state: Some("CA".into()),
            zip: Some("95113".into()),
            phone: Some("+14082984008".into()),
        }
    }

    fn place(name: &str, addr: &str, phone: &str) -> Place {
        Place {
            display_name: Some(LocalizedText {
                text: name.into(),
                language_code: None,
            }),
            formatted_address: Some(addr.into()),
            national_phone_number: Some(phone.into()),
            ..Place::default()
        }
    }

    #[test]
    fn accepts_the_same_business_listed_slightly_differently() {
        let s = score_match(
            &known(),
            &place(
                "Joe's Pizza",
                "12 Main Street, San Jose, CA 95113, USA",
                "(408) 298-4008",
            ),
        );
        assert!(s.accepted(), "{s:?}");
        assert!((s.confidence - 1.0).abs() < 1e-9);
        // Name and phone agree, address differs (moved): still accepted.
        assert!(
            score_match(
                &known(),
                &place(
                    "Joes Pizza",
                    "99 Oak Ave, San Jose, CA 95113, USA",
                    "408-298-4008"
                )
            )
            .accepted()
        );
    }

    #[test]
    fn refuses_a_different_business_or_a_name_only_match() {
        // Same street, other business.
        assert!(
            !score_match(
                &known(),
                &place(
                    "Blue Door Cafe",
                    "12 Main Street, San Jose, CA 95113, USA",
                    "(408) 555-0100"
                )
            )
            .accepted()
        );
        // Same name elsewhere with another phone: name alone is not enough.
        assert!(
            !score_match(
                &known(),
                &place(
                    "Joe's Pizza",
                    "400 Elm St, Austin, TX 78701, USA",
                    "(512) 555-0100"
                )
            )
            .accepted()
        );
        assert_eq!(name_similarity("", "x"), 0.0);
    }
}
