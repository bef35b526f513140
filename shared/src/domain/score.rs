//! Lead score (0–100, higher = better prospect = weaker website) and its tier.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Score(u8);

impl Score {
    pub fn new(value: i64) -> Result<Self, DomainError> {
        u8::try_from(value)
            .ok()
            .filter(|v| *v <= 100)
            .map(Self)
            .ok_or_else(|| DomainError::new("score", format!("{value} is outside 0..=100")))
    }

    /// Rounds and clamps a computed score into range; for rule engines whose arithmetic is
    /// already bounded, where clamping is the intended behaviour.
    pub fn clamped(value: f64) -> Self {
        if value.is_nan() {
            return Self(0);
        }
        Self(value.round().clamp(0.0, 100.0) as u8)
    }

    pub fn value(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Score {
    type Error = DomainError;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<Score> for i64 {
    fn from(s: Score) -> i64 {
        i64::from(s.0)
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Lead tier; A is the best prospect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    A,
    B,
    C,
    D,
}

impl Tier {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        match raw.trim() {
            "A" | "a" => Ok(Tier::A),
            "B" | "b" => Ok(Tier::B),
            "C" | "c" => Ok(Tier::C),
            "D" | "d" => Ok(Tier::D),
            other => Err(DomainError::new(
                "tier",
                format!("{other:?} is not one of A, B, C, D"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::A => "A",
            Tier::B => "B",
            Tier::C => "C",
            Tier::D => "D",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Minimum scores for tiers A, B and C (below C is D). Defaults from the predecessors: 80/60/40.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierThresholds {
    pub a: u8,
    pub b: u8,
    pub c: u8,
}

impl Default for TierThresholds {
    fn default() -> Self {
        Self {
            a: 80,
            b: 60,
            c: 40,
        }
    }
}

impl TierThresholds {
    /// Refuses thresholds that are not strictly descending within 1..=100.
    pub fn new(a: u8, b: u8, c: u8) -> Result<Self, DomainError> {
        if !(a <= 100 && a > b && b > c && c > 0) {
            return Err(DomainError::new(
                "tier thresholds",
                format!("need 100 >= A > B > C > 0, got A={a} B={b} C={c}"),
            ));
        }
        Ok(Self { a, b, c })
    }

    pub fn tier(&self, score: Score) -> Tier {
        match score.value() {
            s if s >= self.a => Tier::A,
            s if s >= self.b => Tier::B,
            s if s >= self.c => Tier::C,
            _ => Tier::D,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_range_is_enforced() {
        assert!(Score::new(0).is_ok());
        assert!(Score::new(100).is_ok());
        assert!(Score::new(101).is_err());
        assert!(Score::new(-1).is_err());
        assert_eq!(Score::clamped(140.2).value(), 100);
        assert_eq!(Score::clamped(-3.0).value(), 0);
        assert_eq!(Score::clamped(f64::NAN).value(), 0);
        assert_eq!(Score::clamped(59.5).value(), 60);
    }

    #[test]
    fn default_tier_boundaries() {
        let t = TierThresholds::default();
        for (s, tier) in [
            (100, Tier::A),
            (80, Tier::A),
            (79, Tier::B),
            (60, Tier::B),
            (59, Tier::C),
            (40, Tier::C),
            (39, Tier::D),
            (0, Tier::D),
        ] {
            assert_eq!(t.tier(Score::new(s).unwrap()), tier, "{s}");
        }
    }

    #[test]
    fn thresholds_must_descend() {
        assert!(TierThresholds::new(80, 60, 40).is_ok());
        assert!(TierThresholds::new(60, 80, 40).is_err());
        assert!(TierThresholds::new(101, 60, 40).is_err());
        assert!(TierThresholds::new(80, 60, 0).is_err());
        assert!(Tier::parse("E").is_err());
        assert_eq!(Tier::parse("b").unwrap(), Tier::B);
    }
}
