//! Normalised names and addresses: the fuzzy half of de-duplication ("Joe's Pizza, LLC" at
//! "12 Main St." is "joes pizza" at "12 main street").

/// A name as a URL/file slug: lower-case ASCII letters and digits, every other run of
/// characters one `-` ("Joe's Pizza & Grill" → "joe-s-pizza-grill").
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

const LEGAL_SUFFIXES: &[&str] = &[
    "llc",
    "inc",
    "corp",
    "ltd",
    "co",
    "company",
    "corporation",
    "incorporated",
    "pllc",
    "lp",
    "llp",
];

const ADDRESS_ABBREVIATIONS: &[(&str, &str)] = &[
    ("st", "street"),
    ("ave", "avenue"),
    ("av", "avenue"),
    ("blvd", "boulevard"),
    ("rd", "road"),
    ("dr", "drive"),
    ("ln", "lane"),
    ("ct", "court"),
    ("pl", "place"),
    ("sq", "square"),
    ("hwy", "highway"),
    ("pkwy", "parkway"),
    ("ste", "suite"),
    ("apt", "apartment"),
    ("fl", "floor"),
    ("n", "north"),
    ("s", "south"),
    ("e", "east"),
    ("w", "west"),
    ("ne", "northeast"),
    ("nw", "northwest"),
    ("se", "southeast"),
    ("sw", "southwest"),
];

fn words(raw: &str) -> impl Iterator<Item = String> + '_ {
    raw.split(|c: char| c.is_whitespace() || c == ',' || c == '-' || c == '/')
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '#')
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
}

/// Lower-cased, punctuation stripped, `&` read as `and`, legal suffixes and a leading `the` removed.
pub fn normalize_name(raw: &str) -> String {
    let replaced = raw.replace('&', " and ").replace('\'', "");
    let mut ws: Vec<String> = words(&replaced).collect();
    while ws.len() > 1
        && ws
            .last()
            .is_some_and(|w| LEGAL_SUFFIXES.contains(&w.as_str()))
    {
        ws.pop();
    }
    if ws.len() > 1 && ws[0] == "the" {
        ws.remove(0);
    }
    ws.join(" ")
}

/// Words that start the unit part of an address line (after abbreviations are expanded).
const UNIT_DESIGNATORS: &[&str] = &[
    "suite",
    "apartment",
    "floor",
    "unit",
    "room",
    "rm",
    "bldg",
    "building",
];

/// Lower-cased, punctuation stripped, street-type and direction abbreviations expanded, and the
/// unit (suite, apartment, floor, `#…`, …) dropped: listings of one business name its suite or
/// not, and a building rarely holds two businesses of one name.
pub fn normalize_address(raw: &str) -> String {
    words(raw)
        .map(|w| {
            ADDRESS_ABBREVIATIONS
                .iter()
                .find(|(abbr, _)| *abbr == w)
                .map(|(_, full)| (*full).to_owned())
                .unwrap_or(w)
        })
        .enumerate()
        .take_while(|(i, w)| {
            *i == 0 || !(w.starts_with('#') || UNIT_DESIGNATORS.contains(&w.as_str()))
        })
        .map(|(_, w)| w)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("Joe's Pizza & Grill"), "joe-s-pizza-grill");
        assert_eq!(slug("  --Blue Door--  "), "blue-door");
        assert_eq!(slug("Café 95113"), "caf-95113");
        assert_eq!(slug("!!!"), "");
    }

    #[test]
    fn names() {
        for (raw, want) in [
            ("Joe's Pizza, LLC", "joes pizza"),
            ("JOE'S PIZZA", "joes pizza"),
            ("The Giving Pies Inc.", "giving pies"),
            ("Smith & Sons Co", "smith and sons"),
            ("Co", "co"),
            ("  Café   Luna ", "café luna"),
        ] {
            assert_eq!(normalize_name(raw), want, "{raw}");
        }
    }

    #[test]
    fn addresses() {
        for (raw, want) in [
            ("12 Main St.", "12 main street"),
            ("12 MAIN STREET", "12 main street"),
            ("400 N. Elm Ave, Ste 5", "400 north elm avenue"),
            ("400 N Elm Avenue Suite 101A", "400 north elm avenue"),
            ("1 Park Blvd #3", "1 park boulevard"),
            ("1 Park Blvd, Unit B", "1 park boulevard"),
            ("9 Market St Fl 2", "9 market street"),
        ] {
            assert_eq!(normalize_address(raw), want, "{raw}");
        }
    }
}
