//! The statistics of an A/B test on conversion: Wilson score intervals per variant and a
//! two-proportion z-test against the control, with a minimum sample before anyone is called a
//! winner.

use statrs::distribution::{ContinuousCDF, Normal};

fn z_for(confidence: f64) -> f64 {
    Normal::standard().inverse_cdf(1.0 - (1.0 - confidence) / 2.0)
}

/// The Wilson score interval of `successes / n` at `confidence`.
pub fn wilson(successes: i64, n: i64, confidence: f64) -> (f64, f64) {
    if n <= 0 {
        return (0.0, 0.0);
    }
    let (n, p) = (n as f64, successes as f64 / n as f64);
    let z = z_for(confidence);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n) + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Two-sided p-value of the difference between two proportions (pooled z-test); 1 when either
/// side is empty or there is no variation at all.
pub fn two_proportion_p(s1: i64, n1: i64, s2: i64, n2: i64) -> f64 {
    if n1 <= 0 || n2 <= 0 {
        return 1.0;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let pooled = (s1 + s2) as f64 / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se == 0.0 {
        return 1.0;
    }
    let z = ((s1 as f64 / n1f) - (s2 as f64 / n2f)) / se;
    2.0 * (1.0 - Normal::standard().cdf(z.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_a_reference_value() {
        // 20 of 100 at 95 %: (0.1333, 0.2888) by the textbook formula.
        let (lo, hi) = wilson(20, 100, 0.95);
        assert!(
            (lo - 0.1333).abs() < 0.001 && (hi - 0.2888).abs() < 0.001,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0, 0.95), (0.0, 0.0));
    }

    #[test]
    fn the_z_test_separates_real_differences_from_noise() {
        // 10 % vs 20 % of 500 each is significant; 10 % vs 11 % of 100 each is not.
        assert!(two_proportion_p(50, 500, 100, 500) < 0.001);
        assert!(two_proportion_p(10, 100, 11, 100) > 0.5);
        assert_eq!(two_proportion_p(0, 10, 0, 10), 1.0);
    }
}
