//! Durations as operators write them: `500ms`, `1s`, `1.5s`, `2m`, `1h`.

use std::time::Duration;

/// Parses a duration: a non-negative decimal number and a unit, `ms`, `s`, `m` or `h`.
/// The error says what was expected; callers prefix the field name.
///
/// ```
/// use qlb_lb::config::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert!(parse_duration("10").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(expected(text)),
    };
    let number: f64 = number.parse().map_err(|_| expected(text))?;
    Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| expected(text))
}

fn expected(text: &str) -> String {
    format!("expected a duration such as \"500ms\", \"1s\" or \"2m\", got {text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_refuses_the_rest() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 60s "), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0.25ms"), Ok(Duration::from_micros(250)));
        for bad in ["", "s", "10", "-1s", "1x", "1.2.3s", "1e3s", "1 s", "inf s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
