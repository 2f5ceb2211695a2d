package io.walletledger.client;

import java.time.Duration;

/**
 * How long and how often a call is tried (the Rust and Python SDKs' defaults): per-attempt
 * {@code callTimeout} 5 s, {@code totalDeadline} 15 s, {@code attemptsMax} 10, backoff ceiling
 * {@code backoffBase} 20 ms doubling up to {@code backoffMax} 1 s.
 */
public final class RetryPolicy {
  private final Duration callTimeout;
  private final Duration totalDeadline;
  private final int attemptsMax;
  private final Duration backoffBase;
  private final Duration backoffMax;

  private RetryPolicy(Builder b) {
    if (b.attemptsMax < 1 || b.attemptsMax > 100) {
      throw new IllegalArgumentException("attemptsMax must be between 1 and 100");
    }
    if (b.callTimeout.isNegative() || b.callTimeout.isZero()
        || b.totalDeadline.isNegative() || b.totalDeadline.isZero()) {
      throw new IllegalArgumentException("callTimeout and totalDeadline must be positive");
    }
    if (b.backoffBase.isNegative() || b.backoffBase.compareTo(b.backoffMax) > 0) {
      throw new IllegalArgumentException("need 0 <= backoffBase <= backoffMax");
    }
    callTimeout = b.callTimeout;
    totalDeadline = b.totalDeadline;
    attemptsMax = b.attemptsMax;
    backoffBase = b.backoffBase;
    backoffMax = b.backoffMax;
  }

  /** The defaults. */
  public static RetryPolicy defaults() {
    return builder().build();
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Deadline of one attempt (sent to the server as {@code grpc-timeout}). */
  public Duration callTimeout() {
    return callTimeout;
  }

  /** Deadline of a whole call, all attempts and sleeps included. */
  public Duration totalDeadline() {
    return totalDeadline;
  }

  /** Most attempts one call may make, redirects to the leader included. */
  public int attemptsMax() {
    return attemptsMax;
  }

  public Duration backoffBase() {
    return backoffBase;
  }

  public Duration backoffMax() {
    return backoffMax;
  }

  @Override
  public String toString() {
    return "RetryPolicy{callTimeout=" + callTimeout + ", totalDeadline=" + totalDeadline
        + ", attemptsMax=" + attemptsMax + ", backoffBase=" + backoffBase
        + ", backoffMax=" + backoffMax + "}";
  }

  public static final class Builder {
    private Duration callTimeout = Duration.ofSeconds(5);
    private Duration totalDeadline = Duration.ofSeconds(15);
    private int attemptsMax = 10;
    private Duration backoffBase = Duration.ofMillis(20);
    private Duration backoffMax = Duration.ofSeconds(1);

    public Builder callTimeout(Duration d) {
      callTimeout = d;
      return this;
    }

    public Builder totalDeadline(Duration d) {
      totalDeadline = d;
      return this;
    }

    public Builder attemptsMax(int n) {
      attemptsMax = n;
      return this;
    }

    public Builder backoffBase(Duration d) {
      backoffBase = d;
      return this;
    }

    public Builder backoffMax(Duration d) {
      backoffMax = d;
      return this;
    }

    public RetryPolicy build() {
      return new RetryPolicy(this);
    }
  }
}
