//! A Yelp listing, normalised into what the database and de-duplication use.

use shared::domain::{Phone, normalize_address, normalize_name};
use shared::vendors::yelp::Business;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    pub yelp_id: String,
    pub name: String,
    pub name_norm: String,
    pub address_norm: String,
    pub address1: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    /// E.164, when Yelp's phone parses.
    pub phone: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub categories: Vec<String>,
    pub rating: Option<f64>,
    pub review_count: u32,
    pub is_closed: bool,
}

/// `None` for listings without an id or a name (nothing to key them on).
pub fn from_yelp(b: &Business) -> Option<Candidate> {
    if b.id.trim().is_empty() || b.name.trim().is_empty() {
        return None;
    }
    let phone = [b.phone.as_str(), b.display_phone.as_str()]
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .find_map(|p| Phone::parse(p).ok())
        .map(|p| p.as_str().to_owned());
    let address1 = b.location.address1.clone().filter(|a| !a.trim().is_empty());
    Some(Candidate {
        yelp_id: b.id.clone(),
        name: b.name.trim().to_owned(),
        name_norm: normalize_name(&b.name),
        address_norm: address1
            .as_deref()
            .map(normalize_address)
            .unwrap_or_default(),
        address1,
        city: b.location.city.clone(),
        state: b.location.state.clone(),
        zip: b.location.zip_code.clone(),
        phone,
        latitude: b.coordinates.latitude,
        longitude: b.coordinates.longitude,
        categories: b.categories.iter().map(|c| c.alias.clone()).collect(),
        rating: b.rating.filter(|r| (0.0..=5.0).contains(r)),
        review_count: b.review_count,
        is_closed: b.is_closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_a_listing() {
        let mut b = Business {
            id: "abc".into(),
            name: "Joe's Pizza, LLC".into(),
            phone: "".into(),
            display_phone: "(408) 298-4008".into(),
            ..Business::default()
        };
        b.location.address1 = Some("12 Main St.".into());
        b.rating = Some(9.0);
        let c = from_yelp(&b).unwrap();
        assert_eq!(
            (c.name_norm.as_str(), c.address_norm.as_str()),
            ("joes pizza", "12 main street")
        );
        assert_eq!(c.phone.as_deref(), Some("+14082984008"));
        assert_eq!(c.rating, None, "out-of-range rating dropped");
        assert!(from_yelp(&Business::default()).is_none());
    }
}
