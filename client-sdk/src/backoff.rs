//! Full-jitter exponential backoff: spreads the retries of many clients over time so a
//! recovering cluster is not hit by all of them at once.

use std::time::Duration;

/// Largest exponent used when doubling the ceiling; past it the ceiling is `max` anyway for
/// any sane base, and stopping here keeps the arithmetic overflow-free.
const EXPONENT_MAX: u32 = 30;

/// The backoff ceiling after failed attempt number `attempt` (0-based):
/// `min(max, base * 2^attempt)`.
pub fn ceiling(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32 << attempt.min(EXPONENT_MAX);
    base.checked_mul(factor).map_or(max, |d| d.min(max))
}

/// A random sleep in `[0, ceiling(attempt, base, max)]`, uniformly distributed ("full
/// jitter").
pub fn full_jitter(attempt: u32, base: Duration, max: Duration) -> Duration {
    let cap = ceiling(attempt, base, max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(20);
    const MAX: Duration = Duration::from_secs(1);

    #[test]
    fn ceiling_doubles_then_caps() {
        assert_eq!(ceiling(0, BASE, MAX), Duration::from_millis(20));
        assert_eq!(ceiling(1, BASE, MAX), Duration::from_millis(40));
        assert_eq!(ceiling(5, BASE, MAX), Duration::from_millis(640));
        assert_eq!(ceiling(6, BASE, MAX), MAX);
        assert_eq!(ceiling(u32::MAX, BASE, MAX), MAX);
        assert_eq!(
            ceiling(40, Duration::from_secs(u64::MAX / 2), Duration::MAX),
            Duration::MAX
        );
    }

    #[test]
    fn jitter_stays_within_bounds() {
        for attempt in 0..50 {
            for _ in 0..100 {
                let sleep = full_jitter(attempt, BASE, MAX);
                assert!(
                    sleep <= ceiling(attempt, BASE, MAX),
                    "attempt {attempt}: {sleep:?}"
                );
            }
        }
        assert_eq!(
            full_jitter(3, Duration::ZERO, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn jitter_is_spread() {
        let samples: Vec<Duration> = (0..200).map(|_| full_jitter(10, BASE, MAX)).collect();
        assert!(samples.iter().any(|d| *d < MAX / 2));
        assert!(samples.iter().any(|d| *d > MAX / 2));
    }
}
