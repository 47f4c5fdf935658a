//! Durations written as `2s`, `30m`, `12h`, `1d`, or a whole number of seconds.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::fmt;
use std::time::Duration;

/// A positive whole number of seconds, parsed from `"30s"`, `"30m"`, `"12h"`,
/// `"1d"` or a bare integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seconds(u64);

impl Seconds {
    /// Wraps a number of seconds.
    pub const fn new(secs: u64) -> Self {
        Self(secs)
    }

    /// The number of seconds.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// As a `std::time::Duration`.
    pub const fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }

    /// Parses `"30s"`, `"30m"`, `"12h"`, `"1d"` or `"30"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        if digits.is_empty() {
            return Err(format!(
                "`{text}` is not a duration such as 30s, 30m or 12h"
            ));
        }
        let value: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is too large"))?;
        let factor = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => {
                return Err(format!(
                    "`{text}`: unknown unit `{unit}` (use s, m, h or d)"
                ));
            }
        };
        Ok(Self(
            value
                .checked_mul(factor)
                .ok_or_else(|| format!("`{text}` is too large"))?,
        ))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            s if s != 0 && s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s != 0 && s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"30m\", \"12h\", or whole seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(Seconds)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                Seconds::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_seconds() {
        assert_eq!(Seconds::parse("2s").unwrap().get(), 2);
        assert_eq!(Seconds::parse("30m").unwrap().get(), 1800);
        assert_eq!(Seconds::parse("12h").unwrap().get(), 43_200);
        assert_eq!(Seconds::parse("1d").unwrap().get(), 86_400);
        assert_eq!(Seconds::parse("45").unwrap().get(), 45);
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "s", "1.5s", "-1s", "10x", "99999999999999999999"] {
            assert!(Seconds::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        assert_eq!(Seconds::new(1800).to_string(), "30m");
        assert_eq!(Seconds::new(30).to_string(), "30s");
        assert_eq!(Seconds::new(7200).to_string(), "2h");
    }
}
