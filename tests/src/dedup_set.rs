//! A labelled set for de-duplication quality: distinct businesses as Yelp lists them, a fifth
//! of them listed again under another Yelp id with realistic noise, each listing labelled with
//! the business it is and the kinds of noise it carries. Reproducible from a seed.
//!
//! The noise is what the same business looks like in two listings: a legal suffix (LLC, Inc,
//! Co), its case, a leading "The", doubled spaces and punctuation, its phone in one of five
//! formats or missing, the street type abbreviated or spelt out, a suite appended, its website
//! with another scheme, `www`, a path or no scheme, and its coordinates tens of metres off.
//! Distinct businesses include chains (one name at several addresses with their own phones)
//! and businesses sharing one phone line (a restaurant group's), which must stay apart.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared::vendors::yelp::{Business, Coordinates, Location};

/// One listing: what Yelp returns, the homepage Places would give for it, and the truth.
#[derive(Debug, Clone)]
pub struct Listing {
    pub business: Business,
    pub website: Option<String>,
    /// The business this listing is (listings of one business share it).
    pub entity: usize,
    /// The kinds of noise a duplicate carries (empty for a business's first listing).
    pub noise: Vec<&'static str>,
}

/// Every kind of noise a duplicate can carry.
pub const NOISE: &[&str] = &[
    "legal suffix",
    "case",
    "leading the",
    "spaces and punctuation",
    "phone format",
    "missing phone",
    "street type",
    "suite",
    "website variant",
    "coordinates",
];

const FIRST: &[&str] = &[
    "Golden", "Blue", "Red", "Happy", "Little", "Old", "Green", "Silver", "Lucky", "Royal",
    "Sunny", "Urban", "Rustic", "Crystal", "Coastal", "Maple", "Cedar", "Harbor", "Copper",
    "Velvet", "Iron", "Wild", "Quiet", "Bright", "Noble",
];
const SECOND: &[&str] = &[
    "Dragon", "Door", "Oak", "Garden", "Spoon", "Lantern", "Table", "Fork", "Kettle", "Barrel",
    "Olive", "Pepper", "Basil", "Anchor", "Lotus", "Falcon", "Willow", "Ember", "Harvest",
    "Meadow", "Orchard", "Stone", "River", "Bay", "Crown",
];
const KIND: &[&str] = &[
    "Bistro",
    "Cafe",
    "Kitchen",
    "Grill",
    "Diner",
    "Taqueria",
    "Bakery",
    "Pizzeria",
    "Tavern",
    "Noodle House",
    "Eatery",
    "Brasserie",
    "Cantina",
    "Smokehouse",
    "Trattoria",
];
const STREETS: &[&str] = &[
    "Market",
    "Main",
    "Santa Clara",
    "Almaden",
    "Park",
    "Lincoln",
    "Bascom",
    "Winchester",
    "Stevens Creek",
    "Meridian",
    "Saratoga",
    "Hamilton",
    "Willow",
    "First",
    "Second",
    "Monterey",
    "Story",
    "Tully",
    "Capitol",
    "Blossom Hill",
];
const STREET_TYPES: &[(&str, &str)] = &[
    ("Street", "St"),
    ("Avenue", "Ave"),
    ("Boulevard", "Blvd"),
    ("Road", "Rd"),
    ("Drive", "Dr"),
    ("Lane", "Ln"),
];
const SUFFIXES: &[&str] = &[" LLC", ", Inc.", " Inc", " Co", " Co.", ", LLC"];
const SUITES: &[&str] = &[
    "Suite 200",
    "Ste 5",
    "#12",
    "Unit B",
    "Suite 101A",
    "Ste. 3",
];

struct Truth {
    name: String,
    number: u32,
    street: &'static str,
    street_type: usize,
    zip: String,
    phone: Option<u64>,
    website: Option<String>,
    lat: f64,
    lon: f64,
}

/// The five ways a listing writes a ten-digit NANP number.
fn phone_format(n: u64, style: usize) -> String {
    let (a, b, c) = (n / 10_000_000, (n / 10_000) % 1000, n % 10_000);
    match style % 5 {
        0 => format!("+1{a}{b:03}{c:04}"),
        1 => format!("({a}) {b:03}-{c:04}"),
        2 => format!("{a}-{b:03}-{c:04}"),
        3 => format!("{a}.{b:03}.{c:04}"),
        _ => format!("1 {a} {b:03} {c:04}"),
    }
}

fn listing(t: &Truth, id: String, address: String, name: String, phone: String) -> Business {
    Business {
        id: id.clone(),
        alias: id,
        name,
        is_closed: false,
        review_count: 10,
        rating: Some(4.0),
        coordinates: Coordinates {
            latitude: Some(t.lat),
            longitude: Some(t.lon),
        },
        location: Location {
            address1: Some(address),
            city: Some("San Jose".into()),
            zip_code: Some(t.zip.clone()),
            country: Some("US".into()),
            ..Location::default()
        },
        phone,
        ..Business::default()
    }
}

/// `businesses` distinct businesses (about one in twenty-five a chain branch), each listed once,
/// a fifth listed a second time with one to three kinds of noise; shuffled.
pub fn generate(businesses: usize, seed: u64) -> Vec<Listing> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(businesses * 6 / 5);
    let mut chain_names: Vec<String> = Vec::new();
    for entity in 0..businesses {
        // Names repeat across the set only for chains; others carry a distinguishing word.
        let name = if !chain_names.is_empty() && rng.random_range(0..25) == 0 {
            chain_names[rng.random_range(0..chain_names.len())].clone()
        } else {
            let n = format!(
                "{} {} {} {}",
                FIRST[rng.random_range(0..FIRST.len())],
                SECOND[rng.random_range(0..SECOND.len())],
                KIND[rng.random_range(0..KIND.len())],
                entity
            );
            if rng.random_range(0..50) == 0 {
                chain_names.push(n.clone());
            }
            n
        };
        let t = Truth {
            name,
            number: rng.random_range(1..9999),
            street: STREETS[rng.random_range(0..STREETS.len())],
            street_type: rng.random_range(0..STREET_TYPES.len()),
            zip: format!("951{:02}", rng.random_range(10..40)),
            // Valid NANP numbers (an exchange from 200), distinct per business, but a tenth list
            // none, and one in 200 shares the
            // line of the business before it (a restaurant group's or a food hall's).
            phone: match rng.random_range(0..200) {
                0 if entity > 0 => Some(4_082_000_000 + (entity as u64 - 1) * 7 + 1),
                1..=20 => None,
                _ => Some(4_082_000_000 + entity as u64 * 7 + 1),
            },
            website: (rng.random_range(0..10) < 7)
                .then(|| format!("https://www.site{entity}.example/")),
            lat: 37.2 + rng.random_range(0.0..0.2),
            lon: -121.95 + rng.random_range(0.0..0.2),
        };
        let (long_type, _) = STREET_TYPES[t.street_type];
        let address = format!("{} {} {long_type}", t.number, t.street);
        let phone = t
            .phone
            .map(|p| phone_format(p, rng.random_range(0..5)))
            .unwrap_or_default();
        out.push(Listing {
            business: listing(
                &t,
                format!("yelp-{entity}-a"),
                address,
                t.name.clone(),
                phone,
            ),
            website: t.website.clone(),
            entity,
            noise: Vec::new(),
        });
        if rng.random_range(0..5) == 0 {
            out.push(duplicate(&t, entity, &mut rng));
        }
    }
    // Listings arrive in no particular order across pages and nights.
    for i in (1..out.len()).rev() {
        let j = rng.random_range(0..=i);
        out.swap(i, j);
    }
    out
}

fn duplicate(t: &Truth, entity: usize, rng: &mut StdRng) -> Listing {
    let kinds = rng.random_range(1..=3);
    let mut noise: Vec<&'static str> = Vec::new();
    while noise.len() < kinds {
        let k = NOISE[rng.random_range(0..NOISE.len())];
        if !noise.contains(&k) {
            noise.push(k);
        }
    }
    let has = |k: &str| noise.contains(&k);
    let mut name = t.name.clone();
    if has("leading the") {
        name = format!("The {name}");
    }
    if has("legal suffix") {
        name.push_str(SUFFIXES[rng.random_range(0..SUFFIXES.len())]);
    }
    if has("spaces and punctuation") {
        name = name.replacen(' ', "  ", 1);
        name.push_str([".", "!", " -", ","][rng.random_range(0..4)]);
    }
    if has("case") {
        name = if rng.random_bool(0.5) {
            name.to_uppercase()
        } else {
            name.to_lowercase()
        };
    }
    let (long_type, short_type) = STREET_TYPES[t.street_type];
    let mut address = format!(
        "{} {} {}",
        t.number,
        t.street,
        if has("street type") {
            short_type
        } else {
            long_type
        }
    );
    if has("suite") {
        address = format!(
            "{address}{} {}",
            if rng.random_bool(0.5) { "," } else { "" },
            SUITES[rng.random_range(0..SUITES.len())]
        );
    }
    let phone = match t.phone {
        Some(_) if has("missing phone") => String::new(),
        Some(p) => phone_format(p, rng.random_range(0..5)),
        None => String::new(),
    };
    let website = t.website.as_ref().map(|w| {
        if !has("website variant") {
            return w.clone();
        }
        let bare = w
            .trim_start_matches("https://")
            .trim_start_matches("www.")
            .trim_end_matches('/');
        match rng.random_range(0..4) {
            0 => format!("http://{bare}"),
            1 => format!("https://{bare}/menu"),
            2 => bare.to_owned(),
            _ => format!("http://www.{bare}/?utm_source=yelp"),
        }
    });
    let mut truth = Truth {
        name: t.name.clone(),
        number: t.number,
        street: t.street,
        street_type: t.street_type,
        zip: t.zip.clone(),
        phone: t.phone,
        website: None,
        lat: t.lat,
        lon: t.lon,
    };
    if has("coordinates") {
        // 0.0003° ≈ 33 m of latitude.
        truth.lat += rng.random_range(-0.0003..0.0003);
        truth.lon += rng.random_range(-0.0003..0.0003);
    }
    Listing {
        business: listing(&truth, format!("yelp-{entity}-b"), address, name, phone),
        website,
        entity,
        noise,
    }
}

/// How the de-duplication did on a labelled set.
#[derive(Debug, Clone, Default)]
pub struct Quality {
    pub listings: usize,
    /// Pairs of listings of one business, and how many of them were merged.
    pub planted: usize,
    pub found: usize,
    /// Pairs merged, and how many of them are of two different businesses.
    pub merged: usize,
    pub false_merges: usize,
    /// Missed duplicates by the kinds of noise they carry (a miss counts under each of its kinds).
    pub misses: std::collections::BTreeMap<&'static str, usize>,
    /// Duplicates carrying each kind.
    pub carrying: std::collections::BTreeMap<&'static str, usize>,
    pub seconds: f64,
}

impl Quality {
    pub fn recall(&self) -> f64 {
        if self.planted == 0 {
            1.0
        } else {
            self.found as f64 / self.planted as f64
        }
    }

    pub fn precision(&self) -> f64 {
        if self.merged == 0 {
            1.0
        } else {
            (self.merged - self.false_merges) as f64 / self.merged as f64
        }
    }
}

fn root(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Runs the de-duplication the pipeline applies — sourcing's keys (`sourcing::dedupe`), then
/// enrichment's one business per website domain (`WebsiteUrl`'s registrable domain) — over
/// `set`, and scores it against the labels.
pub fn evaluate(set: &[Listing]) -> Quality {
    let started = std::time::Instant::now();
    let businesses: Vec<Business> = set.iter().map(|l| l.business.clone()).collect();
    let sourced = sourcing::dedupe(&businesses);
    let mut parent: Vec<usize> = (0..set.len()).collect();
    for (i, c) in sourced.iter().enumerate() {
        if let Some(c) = c {
            let (a, b) = (root(&mut parent, i), root(&mut parent, *c));
            parent[a] = b;
        }
    }
    let mut by_domain: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, l) in set.iter().enumerate() {
        let Some(w) = l
            .website
            .as_deref()
            .and_then(|w| shared::domain::WebsiteUrl::parse(w).ok())
        else {
            continue;
        };
        match by_domain.get(w.domain()) {
            Some(&owner) => {
                let (a, b) = (root(&mut parent, i), root(&mut parent, owner));
                parent[a] = b;
            }
            None => {
                by_domain.insert(w.domain().to_owned(), i);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let clusters: Vec<usize> = (0..set.len()).map(|i| root(&mut parent, i)).collect();
    let mut q = Quality {
        listings: set.len(),
        seconds,
        ..Quality::default()
    };
    let mut members: std::collections::HashMap<usize, Vec<usize>> =
        std::collections::HashMap::new();
    for (i, c) in clusters.iter().enumerate() {
        members.entry(*c).or_default().push(i);
    }
    for m in members.values() {
        for (x, &i) in m.iter().enumerate() {
            for &j in &m[x + 1..] {
                q.merged += 1;
                if set[i].entity != set[j].entity {
                    q.false_merges += 1;
                }
            }
        }
    }
    let mut first: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (i, l) in set.iter().enumerate() {
        if l.noise.is_empty() {
            first.insert(l.entity, i);
        }
    }
    for (i, l) in set.iter().enumerate() {
        if l.noise.is_empty() {
            continue;
        }
        let Some(&f) = first.get(&l.entity) else {
            continue;
        };
        q.planted += 1;
        for k in &l.noise {
            *q.carrying.entry(k).or_default() += 1;
        }
        if clusters[i] == clusters[f] {
            q.found += 1;
        } else {
            for k in &l.noise {
                *q.misses.entry(k).or_default() += 1;
            }
        }
    }
    q
}
