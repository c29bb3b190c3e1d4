//! Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, 2018): a backend
//! takes a request only while its load stays within `ceil((1 + epsilon) * average)`; a key
//! whose backend is full walks on to its next preference. With `epsilon` small the load is
//! even; with it large, affinity is strict.

/// The most requests in flight any backend may carry after one more is placed, when
/// `in_flight` requests run on `backends` backends now.
#[must_use]
pub(crate) fn cap(in_flight: usize, backends: usize, epsilon: f64) -> usize {
    if backends == 0 {
        return 0;
    }
    let average = (in_flight as f64 + 1.0) / backends as f64;
    // At least one, so that an idle fleet takes its first request.
    ((1.0 + epsilon) * average).ceil().max(1.0) as usize
}

/// The first backend of `preference` whose load (`load(index)`, requests in flight) is
/// below `cap`; the first of `preference` when every one is full (cannot happen with a cap
/// from [`cap`], which leaves room somewhere).
#[must_use]
pub(crate) fn choose(
    preference: impl Iterator<Item = usize>,
    load: impl Fn(usize) -> usize,
    cap: usize,
) -> Option<usize> {
    let mut first = None;
    for index in preference {
        if load(index) < cap {
            return Some(index);
        }
        first.get_or_insert(index);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_the_ceiling_of_one_plus_epsilon_times_the_average() {
        assert_eq!(cap(0, 4, 0.25), 1);
        assert_eq!(cap(19, 4, 0.25), 7); // 1.25 * 20 / 4 = 6.25
        assert_eq!(cap(7, 4, 1.0), 4);
        assert_eq!(cap(3, 0, 0.25), 0);
    }

    #[test]
    fn a_full_backend_passes_the_key_to_its_next_preference() {
        let loads = [5, 1, 0];
        assert_eq!(choose([0, 1, 2].into_iter(), |i| loads[i], 6), Some(0));
        assert_eq!(choose([0, 1, 2].into_iter(), |i| loads[i], 5), Some(1));
        assert_eq!(choose([0, 1, 2].into_iter(), |i| loads[i], 1), Some(2));
        assert_eq!(choose([0, 1].into_iter(), |i| loads[i], 1), Some(0));
        assert_eq!(choose(std::iter::empty(), |i| loads[i], 1), None);
    }

    #[test]
    fn a_hot_key_never_pushes_a_backend_over_the_cap() {
        // Every request has the same key: the cap spreads them in preference order.
        let mut loads = vec![0_usize; 4];
        for placed in 0..40 {
            let cap = cap(placed, loads.len(), 0.25);
            let index = choose([2, 0, 3, 1].into_iter(), |i| loads[i], cap).expect("room");
            loads[index] += 1;
            assert!(loads.iter().all(|&load| load <= cap), "{loads:?} cap {cap}");
        }
        assert_eq!(loads.iter().sum::<usize>(), 40);
        assert!(loads[2] >= loads[0] && loads[0] >= loads[3], "{loads:?}");
    }
}
