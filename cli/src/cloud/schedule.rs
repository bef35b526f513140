//! EventBridge schedule expressions (`cron(…)` and `rate(…)`) and the stand-in's clock, which can
//! run faster than real time so that a night's schedules, batching windows and visibility
//! timeouts pass in minutes. Function timeouts are never scaled: they bound real work.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule {0:?}: expected cron(…) or rate(…)")]
    Form(String),
    #[error("schedule {expr:?}: {reason}")]
    Invalid { expr: String, reason: String },
}

/// A parsed schedule expression.
#[derive(Debug, Clone)]
pub enum Expression {
    Rate(Duration),
    Cron(Box<croner::Cron>),
}

impl FromStr for Expression {
    type Err = ScheduleError;

    fn from_str(expr: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| ScheduleError::Invalid {
            expr: expr.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(body) = expr.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) {
            let (n, unit) = body
                .trim()
                .split_once(' ')
                .ok_or_else(|| invalid("expected rate(<n> <unit>)"))?;
            let n: u64 = n.parse().map_err(|_| invalid("the rate is not a number"))?;
            if n == 0 {
                return Err(invalid("the rate must be positive"));
            }
            let unit = match unit.trim() {
                "minute" | "minutes" => 60,
                "hour" | "hours" => 3_600,
                "day" | "days" => 86_400,
                _ => return Err(invalid("the unit is minute(s), hour(s) or day(s)")),
            };
            return Ok(Expression::Rate(Duration::from_secs(n * unit)));
        }
        if let Some(body) = expr.strip_prefix("cron(").and_then(|s| s.strip_suffix(')')) {
            // EventBridge: minutes hours day-of-month month day-of-week year, with `?` for
            // "any" and days of the week 1-7 from Sunday; croner: five fields, Sunday 0.
            let fields: Vec<&str> = body.split_whitespace().collect();
            let [min, hour, dom, month, dow, year] = fields[..] else {
                return Err(invalid("cron takes six fields"));
            };
            if year != "*" {
                return Err(invalid("only `*` years are supported"));
            }
            let dow = dow
                .split(',')
                .map(|d| match d.parse::<u8>() {
                    Ok(n @ 1..=7) => Ok((n - 1).to_string()),
                    Ok(_) => Err(invalid("days of the week are 1-7")),
                    Err(_) => Ok(d.to_owned()),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(",");
            let any = |f: &str| {
                if f == "?" {
                    "*".to_owned()
                } else {
                    f.to_owned()
                }
            };
            let pattern = format!("{min} {hour} {} {month} {}", any(dom), any(&dow));
            let cron = croner::Cron::from_str(&pattern).map_err(|e| invalid(&e.to_string()))?;
            return Ok(Expression::Cron(Box::new(cron)));
        }
        Err(ScheduleError::Form(expr.to_owned()))
    }
}

impl Expression {
    /// The first firing strictly after `t`. A rate fires every period from `origin` (when the
    /// rule was created).
    pub fn next_after(&self, t: DateTime<Utc>, origin: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Expression::Rate(period) => {
                let period = chrono::Duration::from_std(*period).ok()?;
                let elapsed = (t - origin).num_milliseconds().max(0);
                let n = elapsed / period.num_milliseconds().max(1) + 1;
                Some(origin + period * i32::try_from(n).ok()?)
            }
            Expression::Cron(c) => c.find_next_occurrence(&t, false).ok(),
        }
    }
}

/// Virtual time: `factor` times as fast as real time from the moment it started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub factor: f64,
    real_origin: std::time::Instant,
    virtual_origin: DateTime<Utc>,
}

/// `60x` or `60`: how many times faster than real time.
pub fn parse_factor(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim_end_matches(['x', 'X'])
        .parse()
        .map_err(|_| format!("{s:?} is not a speed like 60x"))?;
    if n.is_finite() && (1.0..=100_000.0).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{s:?}: the speed is between 1x and 100000x"))
    }
}

impl Clock {
    pub fn new(factor: f64, start: DateTime<Utc>) -> Clock {
        Clock {
            factor: factor.max(1.0),
            real_origin: std::time::Instant::now(),
            virtual_origin: start,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let real = self.real_origin.elapsed().mul_f64(self.factor);
        self.virtual_origin + chrono::Duration::from_std(real).unwrap_or_default()
    }

    /// Real time that passes while `d` passes on this clock.
    pub fn real(&self, d: Duration) -> Duration {
        d.div_f64(self.factor)
    }

    /// Real time until the clock shows `t` (zero if it is past).
    pub fn until(&self, t: DateTime<Utc>) -> Duration {
        (t - self.now())
            .to_std()
            .map(|d| self.real(d))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, h, m, 0).unwrap()
    }

    #[test]
    fn cron_expressions_fire_at_their_utc_minute() {
        let e: Expression = "cron(0 2 * * ? *)".parse().unwrap();
        assert_eq!(e.next_after(at(1, 0), at(0, 0)), Some(at(2, 0)));
        assert_eq!(
            e.next_after(at(2, 0), at(0, 0)),
            Some(Utc.with_ymd_and_hms(2026, 12, 3, 2, 0, 0).unwrap())
        );
        // 2026-12-02 is a Wednesday: EventBridge's day 4.
        let wed: Expression = "cron(15 5 ? * 4 *)".parse().unwrap();
        assert_eq!(wed.next_after(at(0, 0), at(0, 0)), Some(at(5, 15)));
    }

    #[test]
    fn rates_fire_every_period_from_their_origin() {
        let e: Expression = "rate(5 minutes)".parse().unwrap();
        assert_eq!(e.next_after(at(0, 0), at(0, 0)), Some(at(0, 5)));
        assert_eq!(e.next_after(at(0, 7), at(0, 0)), Some(at(0, 10)));
        let h: Expression = "rate(1 hour)".parse().unwrap();
        assert_eq!(h.next_after(at(0, 59), at(0, 0)), Some(at(1, 0)));
    }

    #[test]
    fn malformed_expressions_are_refused_with_the_reason() {
        for bad in [
            "cron(0 2 * *)",
            "rate(0 minutes)",
            "rate(5 weeks)",
            "every day",
            "cron(0 2 * * 9 *)",
        ] {
            assert!(bad.parse::<Expression>().is_err(), "{bad}");
        }
        assert!(parse_factor("60x").is_ok());
        assert!(parse_factor("0.5x").is_err());
    }
}
