//! Peak EWMA of a backend's latency (Finagle, linkerd, tower): a slower sample takes over at
//! once, faster ones pull the estimate down gradually, and with no samples the estimate decays
//! so that a backend that was slow once gets tried again.

use std::time::{Duration, Instant};

/// How fast old samples fade: after `DECAY` without samples the estimate is down to 1/e.
pub(crate) const DECAY: Duration = Duration::from_secs(10);

/// A latency estimate; pure, with the time passed in.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PeakEwma {
    /// Seconds, and when they were last updated; None until the first sample.
    estimate: Option<(f64, Instant)>,
}

impl PeakEwma {
    /// Adds a sample taken at `now`.
    pub(crate) fn observe(&mut self, sample: Duration, now: Instant) {
        let sample = sample.as_secs_f64();
        let next = match self.estimate {
            None => sample,
            Some(_) => {
                let current = self.decayed(now).unwrap_or(sample);
                if sample > current {
                    sample
                } else {
                    let weight = self.weight(now);
                    current * weight + sample * (1.0 - weight)
                }
            }
        };
        self.estimate = Some((next, now));
    }

    /// The estimate at `now`, None if never measured.
    pub(crate) fn estimate(&self, now: Instant) -> Option<Duration> {
        self.decayed(now).map(Duration::from_secs_f64)
    }

    fn decayed(&self, now: Instant) -> Option<f64> {
        let (value, _) = self.estimate?;
        Some(value * self.weight(now))
    }

    /// exp(-elapsed / DECAY): 1 right after the last update, towards 0 later.
    fn weight(&self, now: Instant) -> f64 {
        let elapsed = self.estimate.map_or(Duration::ZERO, |(_, stamp)| {
            now.saturating_duration_since(stamp)
        });
        (-elapsed.as_secs_f64() / DECAY.as_secs_f64()).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn close(a: Option<Duration>, b: Duration) -> bool {
        a.is_some_and(|a| a.abs_diff(b) < Duration::from_micros(50))
    }

    #[test]
    fn unmeasured_until_the_first_sample() {
        let mut ewma = PeakEwma::default();
        let now = Instant::now();
        assert_eq!(ewma.estimate(now), None);
        ewma.observe(20 * MS, now);
        assert!(close(ewma.estimate(now), 20 * MS));
    }

    #[test]
    fn a_slower_sample_takes_over_at_once() {
        let mut ewma = PeakEwma::default();
        let now = Instant::now();
        ewma.observe(10 * MS, now);
        ewma.observe(200 * MS, now + MS);
        assert!(close(ewma.estimate(now + MS), 200 * MS));
    }

    #[test]
    fn faster_samples_pull_it_down_gradually() {
        let mut ewma = PeakEwma::default();
        let start = Instant::now();
        ewma.observe(100 * MS, start);
        let mut at = start;
        let mut last = 100 * MS;
        for _ in 0..20 {
            at += Duration::from_millis(500);
            ewma.observe(10 * MS, at);
            let estimate = ewma.estimate(at).expect("measured");
            assert!(estimate < last && estimate > 10 * MS, "{estimate:?}");
            last = estimate;
        }
        // Ten seconds of 10 ms samples: mostly forgotten the 100 ms peak.
        assert!(last < 20 * MS, "{last:?}");
    }

    #[test]
    fn without_samples_it_decays() {
        let mut ewma = PeakEwma::default();
        let now = Instant::now();
        ewma.observe(100 * MS, now);
        let later = ewma.estimate(now + DECAY).expect("measured");
        assert!(close(Some(later), (100 * MS).mul_f64((-1.0f64).exp())));
    }
}
