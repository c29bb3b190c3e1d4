//! gRPC's static stride scheduler (gRFC A58): weights scaled to 16 bits, and a sequence
//! number that walks the backends in turn, each taking its turn in a generation with a
//! probability of its weight over the largest; the largest takes every turn, so a pick
//! needs at most one pass. Deterministic given the sequence.

/// Weights are clamped to within these ratios of their mean, as gRPC does, so that one
/// report cannot starve a backend or send it everything.
const MAX_RATIO: f64 = 10.0;
const MIN_RATIO: f64 = 0.1;

/// The scheduler's weights for `weights` (None: not known): unknown ones take the mean of
/// the known ones. None when fewer than two are known: round robin then.
#[must_use]
pub(crate) fn scaled(weights: &[Option<f64>]) -> Option<Vec<u16>> {
    let known: Vec<f64> = weights.iter().flatten().copied().collect();
    if known.len() < 2 {
        return None;
    }
    let mean = known.iter().sum::<f64>() / known.len() as f64;
    let clamped: Vec<f64> = weights
        .iter()
        .map(|weight| {
            weight
                .unwrap_or(mean)
                .clamp(mean * MIN_RATIO, mean * MAX_RATIO)
        })
        .collect();
    let max = clamped.iter().copied().fold(0.0_f64, f64::max);
    if !(max.is_finite() && max > 0.0) {
        return None;
    }
    Some(
        clamped
            .iter()
            .map(|weight| (weight / max * f64::from(u16::MAX)).round().max(1.0) as u16)
            .collect(),
    )
}

/// The backend whose turn `sequence` is, if it takes it (`scaled` is not empty).
#[must_use]
pub(crate) fn turn(scaled: &[u16], sequence: u64) -> Option<usize> {
    let n = scaled.len() as u64;
    let index = (sequence % n) as usize;
    let generation = sequence / n;
    let max = u64::from(u16::MAX);
    let weight = u64::from(scaled[index]);
    // Offsets spread the backends' turns over a generation rather than all at its start.
    let offset = max / 2 * index as u64;
    ((weight.wrapping_mul(generation).wrapping_add(offset)) % max >= max - weight).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(scaled: &[u16], picks: usize) -> Vec<usize> {
        let mut counts = vec![0; scaled.len()];
        let mut sequence = 0;
        for _ in 0..picks {
            let index = loop {
                sequence += 1;
                if let Some(index) = turn(scaled, sequence) {
                    break index;
                }
            };
            counts[index] += 1;
        }
        counts
    }

    #[test]
    fn picks_follow_the_weights() {
        let weights = scaled(&[Some(100.0), Some(300.0), Some(600.0)]).expect("weights");
        let counts = histogram(&weights, 10_000);
        for (count, expected) in counts.iter().zip([1000, 3000, 6000]) {
            assert!(count.abs_diff(expected) < 100, "{counts:?}");
        }
    }

    #[test]
    fn unknown_weights_take_the_mean_and_extremes_are_clamped() {
        let weights = scaled(&[Some(100.0), None, Some(300.0)]).expect("weights");
        assert_eq!(weights[1], weights[1].max(1));
        assert_eq!(weights[2], u16::MAX);
        assert_eq!(
            weights[1],
            (f64::from(u16::MAX) * 200.0 / 300.0).round() as u16
        );
        // 1 against 10,000: clamped to a tenth of the mean, not starved.
        let lopsided = scaled(&[Some(1.0), Some(10_000.0)]).expect("weights");
        let counts = histogram(&lopsided, 10_000);
        assert!(counts[0] > 50, "{counts:?}");
    }

    #[test]
    fn fewer_than_two_known_weights_mean_round_robin() {
        assert_eq!(scaled(&[Some(5.0), None, None]), None);
        assert_eq!(scaled(&[]), None);
    }
}
