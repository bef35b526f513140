//! Deterministic businesses and websites. Everything derives from (seed, ZIP, category), so the
//! same seed always yields the same world, and a site's slug is enough to regenerate its business.
//!
//! The world is deliberately untidy, as the real one is: phones in varied formats, ~20 % of
//! businesses without a website, ~5 % permanently closed, near-duplicate listings (same phone,
//! name with a legal suffix, another Yelp id), and websites of varied quality.

use sha2::{Digest, Sha256};

/// How a simulated website behaves, and what PageSpeed says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteProfile {
    Good,
    NoViewport,
    NoHttpsRedirect,
    MissingMeta,
    Outdated,
    Slow,
    Huge,
    RedirectChain,
    NotFound,
    ServerError,
}

impl SiteProfile {
    const WEIGHTED: [(SiteProfile, u32); 10] = [
        (SiteProfile::Good, 18),
        (SiteProfile::NoViewport, 14),
        (SiteProfile::NoHttpsRedirect, 10),
        (SiteProfile::MissingMeta, 14),
        (SiteProfile::Outdated, 20),
        (SiteProfile::Slow, 6),
        (SiteProfile::Huge, 3),
        (SiteProfile::RedirectChain, 7),
        (SiteProfile::NotFound, 4),
        (SiteProfile::ServerError, 4),
    ];

    fn pick(n: u64) -> SiteProfile {
        let total: u32 = Self::WEIGHTED.iter().map(|(_, w)| w).sum();
        let mut r = (n % u64::from(total)) as u32;
        for (p, w) in Self::WEIGHTED {
            if r < w {
                return p;
            }
            r -= w;
        }
        SiteProfile::Good
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimBusiness {
    pub yelp_id: String,
    pub alias: String,
    pub name: String,
    pub category: String,
    pub zip: String,
    pub city: String,
    pub state: String,
    pub address1: String,
    pub display_phone: String,
    pub phone_e164: String,
    pub latitude: f64,
    pub longitude: f64,
    pub rating: f64,
    pub review_count: u32,
    pub is_closed: bool,
    /// `www.<slug>.test`, when the business has a website.
    pub site_slug: Option<String>,
    pub site: Option<SiteProfile>,
    /// Index of the listing this one duplicates (same business listed twice).
    pub duplicate_of: Option<usize>,
}

/// How many listings each (ZIP, category) has: as deep as Yelp lets a search go (240), so a
/// campaign goes deeper night after night before its area is used up.
pub const PER_LOCATION: usize = 240;

fn h(seed: u64, parts: &[&str]) -> u64 {
    let mut d = Sha256::new();
    d.update(seed.to_le_bytes());
    for p in parts {
        d.update(p.as_bytes());
        d.update([0]);
    }
    let out = d.finalize();
    u64::from_le_bytes([
        out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7],
    ])
}

const FIRST: &[&str] = &[
    "Joe's",
    "Maria's",
    "Golden",
    "Blue Door",
    "Corner",
    "Sunrise",
    "Old Town",
    "Lucky",
    "Green Leaf",
    "Harbor",
    "Main Street",
    "Red Rooster",
    "Silver Spoon",
    "Little",
    "Big Sky",
    "Oak & Ash",
    "Riverside",
    "Uptown",
    "Family",
    "Northside",
];
const NOUN: &[(&str, &[&str])] = &[
    (
        "restaurants",
        &[
            "Pizza",
            "Diner",
            "Kitchen",
            "Bistro",
            "Grill",
            "Taqueria",
            "Noodle House",
            "Cafe",
            "Trattoria",
            "BBQ",
        ],
    ),
    (
        "plumbers",
        &[
            "Plumbing",
            "Rooter",
            "Pipe Works",
            "Drain Pros",
            "Plumbing & Heating",
        ],
    ),
    (
        "dentists",
        &[
            "Dental",
            "Family Dentistry",
            "Smiles",
            "Dental Care",
            "Orthodontics",
        ],
    ),
    (
        "hair",
        &["Salon", "Barbers", "Hair Studio", "Cuts", "Beauty Bar"],
    ),
    (
        "autorepair",
        &[
            "Auto Repair",
            "Garage",
            "Motors",
            "Tire & Brake",
            "Auto Care",
        ],
    ),
];
const STREETS: &[&str] = &[
    "Main St",
    "Oak Ave",
    "1st St",
    "Elm St",
    "Park Blvd",
    "Market St",
    "Lincoln Ave",
    "Washington St",
    "N 2nd St",
    "Mission Rd",
];
const SUFFIXES: &[&str] = &["", "", "", " LLC", " Inc", " Co"];

/// A ZIP code's city, state and centre (a few real ones, the rest synthesised).
pub fn place_of(zip: &str) -> (String, String, f64, f64) {
    match zip {
        "95113" => ("San Jose".into(), "CA".into(), 37.3337, -121.8907),
        "94103" => ("San Francisco".into(), "CA".into(), 37.7725, -122.4091),
        "10001" => ("New York".into(), "NY".into(), 40.7506, -73.9972),
        "60601" => ("Chicago".into(), "IL".into(), 41.8858, -87.6181),
        "78701" => ("Austin".into(), "TX".into(), 30.2711, -97.7437),
        _ => {
            let n = h(0, &[zip]);
            (
                "Springfield".into(),
                ["IL", "MO", "OR", "MA"][(n % 4) as usize].into(),
                39.0 + (n % 500) as f64 / 100.0,
                -90.0 - (n % 700) as f64 / 100.0,
            )
        }
    }
}

fn phone_formats(area: u32, exch: u32, line: u32, style: u64) -> String {
    match style % 4 {
        0 => format!("({area}) {exch}-{line:04}"),
        1 => format!("{area}-{exch}-{line:04}"),
        2 => format!("{area}.{exch}.{line:04}"),
        _ => format!("+1 {area} {exch} {line:04}"),
    }
}

/// The listings for one (ZIP, category), in Yelp's best-match order.
pub fn businesses(seed: u64, zip: &str, category: &str) -> Vec<SimBusiness> {
    let (city, state, lat, lng) = place_of(zip);
    let nouns = NOUN
        .iter()
        .find(|(c, _)| *c == category)
        .map(|(_, n)| *n)
        .unwrap_or(NOUN[0].1);
    let mut out: Vec<SimBusiness> = Vec::with_capacity(PER_LOCATION);
    for i in 0..PER_LOCATION {
        let n = h(seed, &[zip, category, &i.to_string()]);
        // Every 12th listing (from the 12th) is a second listing of an earlier business.
        if i >= 12 && i % 12 == 0 {
            let orig_idx = (n % i as u64) as usize;
            let orig = out[orig_idx].clone();
            if orig.duplicate_of.is_none() {
                let suffix = if orig.name.ends_with("LLC") {
                    ""
                } else {
                    " LLC"
                };
                let mut dup = orig.clone();
                dup.yelp_id = yelp_id(seed, zip, category, i);
                dup.name = format!("{}{suffix}", orig.name);
                dup.alias = format!("{}-{}", orig.alias, 2);
                dup.display_phone = phone_formats(
                    orig.phone_e164[2..5].parse().unwrap_or(408),
                    orig.phone_e164[5..8].parse().unwrap_or(555),
                    orig.phone_e164[8..].parse().unwrap_or(0),
                    n >> 3,
                );
                dup.review_count = 1 + (n % 9) as u32;
                dup.duplicate_of = Some(orig_idx);
                out.push(dup);
                continue;
            }
        }
        let name_base = format!(
            "{} {}",
            FIRST[(n % FIRST.len() as u64) as usize],
            nouns[((n >> 8) % nouns.len() as u64) as usize]
        );
        // Keep names unique within the location.
        let name_core = if out.iter().any(|b| b.name.starts_with(&name_base)) {
            format!(
                "{name_base} {}",
                ["II", "East", "West", "Express", "on Main"][i % 5]
            )
        } else {
            name_base
        };
        let name = format!(
            "{name_core}{}",
            SUFFIXES[((n >> 16) % SUFFIXES.len() as u64) as usize]
        );
        let area = 200 + ((n >> 20) % 700) as u32;
        let exch = 200 + ((n >> 30) % 700) as u32;
        let line = ((n >> 40) % 10_000) as u32;
        let has_site = (n >> 12) % 10 >= 2;
        let slug = shared::domain::slug(&format!("{name_core} {zip}"));
        out.push(SimBusiness {
            yelp_id: yelp_id(seed, zip, category, i),
            alias: format!(
                "{}-{}",
                shared::domain::slug(&name_core),
                shared::domain::slug(&city)
            ),
            name,
            category: category.to_owned(),
            zip: zip.to_owned(),
            city: city.clone(),
            state: state.clone(),
            address1: format!(
                "{} {}",
                100 + (n >> 44) % 8_900,
                STREETS[((n >> 24) % STREETS.len() as u64) as usize]
            ),
            display_phone: phone_formats(area, exch, line, n >> 5),
            phone_e164: format!("+1{area}{exch}{line:04}"),
            latitude: lat + ((n >> 2) % 2_000) as f64 / 100_000.0 - 0.01,
            longitude: lng + ((n >> 6) % 2_000) as f64 / 100_000.0 - 0.01,
            rating: 2.0 + ((n >> 50) % 7) as f64 * 0.5,
            review_count: 1 + ((n >> 33) % 600) as u32,
            is_closed: (n >> 56).is_multiple_of(20),
            site_slug: has_site.then(|| slug.clone()),
            site: has_site.then(|| SiteProfile::pick(n >> 28)),
            duplicate_of: None,
        });
    }
    out
}

fn yelp_id(seed: u64, zip: &str, category: &str, i: usize) -> String {
    let n = h(seed, &["yelp", zip, category, &i.to_string()]);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = n ^ (n >> 7).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..22)
        .map(|_| {
            let c = alphabet[(x % 64) as usize] as char;
            x = x.rotate_right(6) ^ 0x5DEE_CE66;
            c
        })
        .collect()
}

/// Every category the generator knows (Yelp aliases).
pub fn categories() -> Vec<&'static str> {
    NOUN.iter().map(|(c, _)| *c).collect()
}

/// Finds the business whose site has `slug`, searching the ZIP encoded at the slug's end.
pub fn by_slug(seed: u64, slug: &str) -> Option<SimBusiness> {
    let zip = slug.rsplit('-').next()?;
    categories()
        .into_iter()
        .flat_map(|c| businesses(seed, zip, c))
        .find(|b| b.site_slug.as_deref() == Some(slug))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_untidy() {
        let a = businesses(42, "95113", "restaurants");
        assert_eq!(a, businesses(42, "95113", "restaurants"));
        assert_ne!(a, businesses(43, "95113", "restaurants"));
        assert_eq!(a.len(), PER_LOCATION);
        let no_site = a.iter().filter(|b| b.site.is_none()).count();
        // Between a twelfth and five twelfths of the listings have no website.
        assert!(
            (PER_LOCATION / 12..=PER_LOCATION * 5 / 12).contains(&no_site),
            "{no_site} without sites"
        );
        let dups: Vec<_> = a.iter().filter(|b| b.duplicate_of.is_some()).collect();
        assert!(!dups.is_empty());
        for d in dups {
            let o = &a[d.duplicate_of.unwrap()];
            assert_eq!(d.phone_e164, o.phone_e164);
            assert_ne!(d.yelp_id, o.yelp_id);
        }
        let ids: std::collections::HashSet<_> = a.iter().map(|b| &b.yelp_id).collect();
        assert_eq!(ids.len(), a.len());
        let slug = a.iter().find_map(|b| b.site_slug.clone()).unwrap();
        assert_eq!(
            by_slug(42, &slug).unwrap().site_slug.as_deref(),
            Some(slug.as_str())
        );
    }
}
