package io.walletledger.client;

import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Full-jitter exponential backoff (the Rust SDK's {@code backoff.rs}): spreads the retries of
 * many clients over time so a recovering cluster is not hit by all of them at once.
 */
public final class Backoff {
  private Backoff() {}

  /** Past this exponent the ceiling is the maximum anyway; stopping keeps it overflow-free. */
  static final int EXPONENT_MAX = 30;

  /** The ceiling after failed attempt number {@code attempt} (0-based): {@code min(max, base * 2^attempt)}. */
  public static Duration ceiling(int attempt, Duration base, Duration max) {
    int exponent = Math.max(0, Math.min(attempt, EXPONENT_MAX));
    long factor = 1L << exponent;
    try {
      Duration d = base.multipliedBy(factor);
      return d.compareTo(max) > 0 ? max : d;
    } catch (ArithmeticException overflow) {
      return max;
    }
  }

  /** A uniformly random sleep in {@code [0, ceiling(attempt, base, max)]}. */
  public static Duration fullJitter(int attempt, Duration base, Duration max) {
    Duration cap = ceiling(attempt, base, max);
    long nanos;
    try {
      nanos = cap.toNanos();
    } catch (ArithmeticException overflow) {
      nanos = Long.MAX_VALUE;
    }
    if (nanos <= 0) {
      return Duration.ZERO;
    }
    long pick =
        nanos == Long.MAX_VALUE
            ? ThreadLocalRandom.current().nextLong(nanos)
            : ThreadLocalRandom.current().nextLong(nanos + 1);
    return Duration.ofNanos(pick);
  }
}
