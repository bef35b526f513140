//! Money in integer cents. Floating point never touches what customers pay.

use std::fmt;
use std::ops::Add;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A non-negative amount of US cents.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn from_cents(cents: i64) -> Result<Self, DomainError> {
        if cents < 0 {
            return Err(DomainError::new(
                "money",
                format!("{cents} cents is negative"),
            ));
        }
        Ok(Self(cents))
    }

    /// Parses a decimal dollar amount such as `49`, `49.5` or `49.00`; at most two decimals.
    pub fn parse_dollars(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim().trim_start_matches('$');
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits_ok = |p: &str| p.chars().all(|c| c.is_ascii_digit());
        if whole.is_empty() || !digits_ok(whole) || !digits_ok(frac) || frac.len() > 2 {
            return Err(DomainError::new(
                "money",
                format!("{raw:?} is not a dollar amount"),
            ));
        }
        let whole: i64 = whole
            .parse()
            .map_err(|_| DomainError::new("money", format!("{raw:?} is too large")))?;
        let frac: i64 = format!("{frac:0<2}").parse().unwrap_or(0);
        whole
            .checked_mul(100)
            .and_then(|c| c.checked_add(frac))
            .map(Self)
            .ok_or_else(|| DomainError::new("money", format!("{raw:?} is too large")))
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).filter(|c| *c >= 0).map(Money)
    }
}

impl Add for Money {
    type Output = Money;
    /// Saturating: sums of real money never come near i64::MAX cents.
    fn add(self, rhs: Money) -> Money {
        Money(self.0.saturating_add(rhs.0))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl TryFrom<i64> for Money {
    type Error = DomainError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::from_cents(value)
    }
}

impl From<Money> for i64 {
    fn from(m: Money) -> i64 {
        m.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_dollars() {
        for (raw, cents) in [
            ("49", 4900),
            ("49.5", 4950),
            ("$49.00", 4900),
            ("0.07", 7),
            (" 1.99 ", 199),
        ] {
            assert_eq!(Money::parse_dollars(raw).unwrap().cents(), cents, "{raw}");
        }
        for raw in [
            "",
            "-1",
            "1.999",
            "abc",
            "1,00",
            ".5",
            "99999999999999999999",
        ] {
            assert!(Money::parse_dollars(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn refuses_negative_and_formats() {
        assert!(Money::from_cents(-1).is_err());
        assert_eq!(Money::from_cents(4905).unwrap().to_string(), "$49.05");
        assert_eq!(
            Money::from_cents(5)
                .unwrap()
                .checked_sub(Money::from_cents(6).unwrap()),
            None
        );
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(c in 0i64..10_000_000_000) {
            let m = Money::from_cents(c).unwrap();
            prop_assert_eq!(Money::parse_dollars(&m.to_string()).unwrap(), m);
        }
    }
}
