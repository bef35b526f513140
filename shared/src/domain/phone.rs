//! Phone numbers normalised to E.164. North American numbers (the product's market) are checked
//! against the NANP numbering rules; other numbers are accepted only with an explicit `+` and a
//! plausible E.164 length. This is de-duplication key material, so one business's
//! `(408) 298-4008`, `408.298.4008` and `+1 408 298 4008` must all become `+14082984008`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        // Drop an extension ("x123", "ext. 4") before reading digits.
        let lowered = trimmed.to_lowercase();
        let cut = ["ext", "x", "#"]
            .iter()
            .filter_map(|m| lowered.find(m))
            .min()
            .unwrap_or(lowered.len());
        let main = &lowered[..cut];
        if let Some(bad) = main
            .chars()
            .find(|c| !(c.is_ascii_digit() || " ()-.+/".contains(*c)))
        {
            return Err(DomainError::new(
                "phone",
                format!("{trimmed:?} contains {bad:?}"),
            ));
        }
        let international = main.trim_start().starts_with('+');
        let digits: String = main.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Err(DomainError::new(
                "phone",
                format!("{trimmed:?} has no digits"),
            ));
        }
        let national = match (international, digits.len()) {
            (false, 10) => Some(digits.as_str()),
            (_, 11) if digits.starts_with('1') => Some(&digits[1..]),
            (true, _) if digits.starts_with('1') => {
                return Err(DomainError::new(
                    "phone",
                    format!("{trimmed:?}: +1 numbers have 10 digits after the country code"),
                ));
            }
            (true, 8..=15) if !digits.starts_with('0') => None,
            _ => {
                return Err(DomainError::new(
                    "phone",
                    format!("{trimmed:?} is not a 10-digit US number or +E.164"),
                ));
            }
        };
        match national {
            Some(n) => {
                let b = n.as_bytes();
                if !(b'2'..=b'9').contains(&b[0]) {
                    return Err(DomainError::new(
                        "phone",
                        format!("{trimmed:?}: area code cannot start with {}", b[0] as char),
                    ));
                }
                if !(b'2'..=b'9').contains(&b[3]) {
                    return Err(DomainError::new(
                        "phone",
                        format!("{trimmed:?}: exchange cannot start with {}", b[3] as char),
                    ));
                }
                Ok(Self(format!("+1{n}")))
            }
            None => Ok(Self(format!("+{digits}"))),
        }
    }

    /// The E.164 form, e.g. `+14082984008`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Phone {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_us_formats() {
        for raw in [
            "(408) 298-4008",
            "408-298-4008",
            "408.298.4008",
            "4082984008",
            "+14082984008",
            "+1 408 298 4008",
            "1-408-298-4008",
            "408 298 4008 x12",
            "408-298-4008 ext. 7",
        ] {
            assert_eq!(Phone::parse(raw).unwrap().as_str(), "+14082984008", "{raw}");
        }
    }

    #[test]
    fn accepts_international_with_plus() {
        assert_eq!(
            Phone::parse("+44 20 7946 0958").unwrap().as_str(),
            "+442079460958"
        );
    }

    #[test]
    fn rejects_invalid() {
        for raw in [
            "",
            "call us",
            "298-4008",
            "(108) 298-4008",
            "(408) 198-4008",
            "+1 408 298 40",
            "00442079460958",
            "442079460958",
            "408-298-4008; DROP TABLE",
            "+0123456789",
        ] {
            assert!(Phone::parse(raw).is_err(), "{raw:?} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn any_valid_nanp_number_normalises_the_same_in_every_format(
            area in 200u32..1000, exch in 200u32..1000, line in 0u32..10000
        ) {
            let e164 = format!("+1{area}{exch}{line:04}");
            for raw in [
                format!("({area}) {exch}-{line:04}"),
                format!("{area}.{exch}.{line:04}"),
                format!("1 {area} {exch} {line:04}"),
                e164.clone(),
            ] {
                let got = Phone::parse(&raw).unwrap();
                prop_assert_eq!(got.as_str(), e164.as_str());
            }
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = Phone::parse(&s);
        }
    }
}
