//! Duration flags, bounded: the libraries add them to an `Instant` (which panics on
//! overflow) and refuse absurd values at build time too, but a flag parser naming the flag
//! is the clearer refusal. A day bounds timers; a year bounds ages and run lengths.

use std::time::Duration;

use qlb_lb::config::parse_duration;

const DAY: Duration = Duration::from_secs(24 * 3600);
const YEAR: Duration = Duration::from_secs(365 * DAY.as_secs());

/// A duration flag of at most a day (timeouts, idle times, periods).
pub(crate) fn up_to_a_day(text: &str) -> Result<Duration, String> {
    at_most(text, DAY, "1 day")
}

/// A duration flag of at most a year (connection ages and lifetimes, run lengths).
pub(crate) fn up_to_a_year(text: &str) -> Result<Duration, String> {
    at_most(text, YEAR, "1 year")
}

fn at_most(text: &str, max: Duration, name: &str) -> Result<Duration, String> {
    let value = parse_duration(text)?;
    if value > max {
        return Err(format!("{value:?} exceeds the maximum of {name}"));
    }
    Ok(value)
}
