//! Aperture balancing, as Finagle's deterministic aperture: clients and backends each sit
//! on a ring of circumference 1; client `i` of `N` covers the arc `[i/N, i/N + width)`,
//! `width = max(size / M, 1/N)` for an aperture of `size` of the `M` backends, and sends
//! only to the backends under its arc, each in proportion to how much of it the arc covers.
//! Together the clients cover every backend evenly, and each keeps connections to a few.
//! The size follows the load: it grows while requests in flight per backend of the window
//! stay above `high_load`, shrinks while below `low_load`. Pure: loads in, window out.

use crate::error::BuildError;

/// A client's place among its peers, for deterministic aperture: it is `index` of `count`
/// clients of the same fleet.
///
/// ```
/// let me = qlb_client::Coordinate { index: 3, count: 20 };
/// # let _ = me;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coordinate {
    /// This client's position, below `count` (a pod's ordinal, for instance).
    pub index: usize,
    /// Clients in all.
    pub count: usize,
}

/// How the `aperture` picker sizes and places its window.
///
/// ```
/// use qlb_client::{ApertureSettings, Coordinate};
///
/// let aperture = ApertureSettings {
///     min_aperture: 2,
///     coordinate: Some(Coordinate { index: 0, count: 8 }),
///     ..ApertureSettings::default()
/// };
/// assert_eq!(aperture.max_aperture, usize::MAX);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ApertureSettings {
    /// The smallest window, in backends (at most the fleet). Default 12 (Finagle's).
    pub min_aperture: usize,
    /// The largest window. Default: the whole fleet.
    pub max_aperture: usize,
    /// Requests in flight per backend of the window below which it shrinks. Default 0.5.
    pub low_load: f64,
    /// Requests in flight per backend of the window above which it grows. Default 2.0.
    pub high_load: f64,
    /// This client's place among its peers. Default: a random place (even coverage only
    /// on average).
    pub coordinate: Option<Coordinate>,
}

impl Default for ApertureSettings {
    fn default() -> Self {
        Self {
            min_aperture: 12,
            max_aperture: usize::MAX,
            low_load: 0.5,
            high_load: 2.0,
            coordinate: None,
        }
    }
}

impl ApertureSettings {
    /// Refuses settings out of range, naming the field.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        let field = |field, problem: &str| {
            Err(BuildError::Field {
                field,
                problem: problem.to_owned(),
            })
        };
        if self.min_aperture == 0 {
            return field("aperture.min_aperture", "must be at least 1");
        }
        if self.min_aperture > self.max_aperture {
            return field(
                "aperture.min_aperture",
                "must be at most aperture.max_aperture",
            );
        }
        if !(self.low_load.is_finite() && self.low_load >= 0.0) {
            return field("aperture.low_load", "must be a finite number at least 0");
        }
        if !(self.high_load.is_finite() && self.high_load > self.low_load) {
            return field(
                "aperture.high_load",
                "must be finite and above aperture.low_load",
            );
        }
        match self.coordinate {
            Some(Coordinate { count: 0, .. }) => {
                field("aperture.coordinate.count", "must be at least 1")
            }
            Some(Coordinate { index, count }) if index >= count => field(
                "aperture.coordinate.index",
                "must be below aperture.coordinate.count",
            ),
            _ => Ok(()),
        }
    }
}

/// How fast the load estimate follows the requests in flight, per pick.
const LOAD_SMOOTHING: f64 = 0.05;

/// One client's aperture: its place on the ring and its current size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Aperture {
    settings: ApertureSettings,
    /// Where its arc starts.
    offset: f64,
    /// The arc of one client: 1/N (0 without a coordinate).
    unit: f64,
    size: usize,
    /// Requests in flight, smoothed over picks.
    load: f64,
}

impl Aperture {
    /// The aperture of `settings`; `random` in [0, 1) places a client without coordinate.
    pub(crate) fn new(settings: ApertureSettings, random: f64) -> Self {
        let (offset, unit) = match settings.coordinate {
            Some(Coordinate { index, count }) => (index as f64 / count as f64, 1.0 / count as f64),
            None => (random.clamp(0.0, 1.0), 0.0),
        };
        Self {
            settings,
            offset,
            unit,
            size: settings.min_aperture,
            load: 0.0,
        }
    }

    /// Takes the requests in flight at a pick; grows or shrinks the aperture by one when the
    /// load per backend of the window leaves the watermarks.
    pub(crate) fn observe(&mut self, in_flight: usize, fleet: usize) {
        self.load += LOAD_SMOOTHING * (in_flight as f64 - self.load);
        let size = self.size(fleet);
        let per_backend = self.load / size.max(1) as f64;
        if per_backend > self.settings.high_load {
            self.size = (size + 1).min(self.settings.max_aperture);
        } else if per_backend < self.settings.low_load {
            self.size = size.saturating_sub(1).max(self.settings.min_aperture);
        }
    }

    /// The aperture size over a fleet of `fleet`: within the bounds, at most the fleet.
    pub(crate) fn size(&self, fleet: usize) -> usize {
        self.size
            .clamp(self.settings.min_aperture, self.settings.max_aperture)
            .min(fleet)
    }

    /// The backends of a fleet of `fleet` (indices in ring order) under the arc, each with
    /// the length of arc over it.
    pub(crate) fn window(&self, fleet: usize) -> Vec<(usize, f64)> {
        if fleet == 0 {
            return Vec::new();
        }
        let slice = 1.0 / fleet as f64;
        let width = (self.size(fleet) as f64 * slice).max(self.unit).min(1.0);
        // The arc, unwrapped into at most two pieces of [0, 1).
        let end = self.offset + width;
        let pieces = if end <= 1.0 {
            [(self.offset, end), (0.0, 0.0)]
        } else {
            [(self.offset, 1.0), (0.0, end - 1.0)]
        };
        (0..fleet)
            .filter_map(|index| {
                let (low, high) = (index as f64 * slice, (index + 1) as f64 * slice);
                let covered: f64 = pieces
                    .iter()
                    .map(|&(start, stop)| (stop.min(high) - start.max(low)).max(0.0))
                    .sum();
                // Float edges: a sliver of a billionth is no coverage.
                (covered > 1e-9).then_some((index, covered))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(min: usize, max: usize, index: usize, count: usize) -> ApertureSettings {
        ApertureSettings {
            min_aperture: min,
            max_aperture: max,
            coordinate: Some(Coordinate { index, count }),
            ..ApertureSettings::default()
        }
    }

    #[test]
    fn twenty_clients_cover_ten_backends_evenly() {
        let mut coverage = [0.0_f64; 10];
        for index in 0..20 {
            let aperture = Aperture::new(settings(1, 10, index, 20), 0.0);
            let window = aperture.window(10);
            assert!(window.len() <= 2, "{index}: {window:?}");
            for (backend, share) in window {
                coverage[backend] += share;
            }
        }
        for share in coverage {
            assert!((share - 0.2).abs() < 1e-9, "{coverage:?}");
        }
    }

    #[test]
    fn arcs_wrap_around_the_ring() {
        let aperture = Aperture::new(settings(3, 3, 9, 10), 0.0);
        let window: Vec<usize> = aperture.window(5).iter().map(|&(index, _)| index).collect();
        // [0.9, 1.5): backends 4 (0.8..1.0), 0 and 1 (0..0.4), and 2 (0.4..0.5).
        assert_eq!(window, [0, 1, 2, 4]);
        let total: f64 = aperture.window(5).iter().map(|&(_, share)| share).sum();
        assert!((total - 0.6).abs() < 1e-9);
    }

    #[test]
    fn the_aperture_grows_under_load_and_shrinks_when_idle_within_bounds() {
        let mut aperture = Aperture::new(settings(2, 5, 0, 1), 0.0);
        assert_eq!(aperture.size(10), 2);
        for _ in 0..500 {
            aperture.observe(40, 10);
        }
        assert_eq!(aperture.size(10), 5);
        for _ in 0..500 {
            aperture.observe(0, 10);
        }
        assert_eq!(aperture.size(10), 2);
        // Never more than the fleet.
        assert_eq!(Aperture::new(settings(4, 8, 0, 1), 0.0).size(3), 3);
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (bad, field) in [
            (settings(0, 5, 0, 1), "aperture.min_aperture"),
            (settings(6, 5, 0, 1), "aperture.min_aperture"),
            (settings(1, 5, 3, 3), "aperture.coordinate.index"),
            (settings(1, 5, 0, 0), "aperture.coordinate.count"),
            (
                ApertureSettings {
                    high_load: 0.1,
                    ..ApertureSettings::default()
                },
                "aperture.high_load",
            ),
        ] {
            let message = bad.validate().expect_err(field).to_string();
            assert!(message.starts_with(field), "{message}");
        }
        assert!(ApertureSettings::default().validate().is_ok());
    }
}
