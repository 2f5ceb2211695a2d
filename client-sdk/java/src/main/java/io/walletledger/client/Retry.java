package io.walletledger.client;

import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.function.Consumer;
import java.util.function.LongSupplier;

/**
 * The retry loop (the Rust SDK's, as in {@code client.rs} and the Python SDK's
 * {@code retry.py}): a call is retried only when its outcome is unknown
 * ({@link Errors#RETRYABLE_CODES}), following NOT_LEADER hints at once and otherwise moving to
 * the next endpoint after a full-jitter exponential backoff (at least {@code RetryInfo}'s
 * delay), within {@link RetryPolicy#attemptsMax()} attempts and
 * {@link RetryPolicy#totalDeadline()}. The same request is sent on every attempt, so a transfer
 * keeps its transaction id and a retry can never pay twice.
 */
public final class Retry {
  /** One attempt: send the (same) request to {@code endpoint} with this timeout. */
  @FunctionalInterface
  public interface Send<T> {
    T send(String endpoint, Duration timeout) throws Exception;
  }

  /** Sleeps; replaced in tests. */
  @FunctionalInterface
  public interface Sleeper {
    void sleep(Duration d) throws InterruptedException;
  }

  /** Floor on one attempt's timeout, so the last attempt before the deadline is usable. */
  static final Duration ATTEMPT_TIMEOUT_MIN = Duration.ofMillis(50);

  private final RetryPolicy policy;
  private final Sleeper sleeper;
  private final LongSupplier nanoClock;

  public Retry(RetryPolicy policy) {
    this(policy, d -> Thread.sleep(d.toMillis(), d.toNanosPart() % 1_000_000), System::nanoTime);
  }

  public Retry(RetryPolicy policy, Sleeper sleeper, LongSupplier nanoClock) {
    this.policy = policy;
    this.sleeper = sleeper;
    this.nanoClock = nanoClock;
  }

  public RetryPolicy policy() {
    return policy;
  }

  /**
   * Calls {@code send} until it returns: {@link RejectedException} at once for a definite
   * answer, {@link UnavailableException} when the attempts or the deadline run out.
   *
   * @param first the endpoint to try first (a cached leader), or null for {@code endpoints[0]}
   * @param onSuccess told the endpoint that answered, or null
   */
  public <T> T call(Send<T> send, List<String> endpoints, String first, Consumer<String> onSuccess) {
    if (endpoints.isEmpty()) {
      throw new IllegalArgumentException("at least one endpoint is required");
    }
    long deadline = nanoClock.getAsLong() + policy.totalDeadline().toNanos();
    String target = first != null ? first : endpoints.get(0);
    int attempt = 0;
    while (true) {
      long remaining = deadline - nanoClock.getAsLong();
      Duration timeout =
          Duration.ofNanos(Math.max(Math.min(policy.callTimeout().toNanos(), remaining),
              ATTEMPT_TIMEOUT_MIN.toNanos()));
      WalletException error;
      try {
        T result = send.send(target, timeout);
        if (onSuccess != null) {
          onSuccess.accept(target);
        }
        return result;
      } catch (Exception e) {
        error = Errors.classify(e);
      }
      attempt++;
      if (error.isDefinite() || attempt >= policy.attemptsMax()) {
        throw error;
      }
      Optional<String> hint = Errors.leaderHint(error);
      if (hint.isPresent() && !hint.get().equals(target)) {
        target = hint.get();
        if (nanoClock.getAsLong() >= deadline) {
          throw error;
        }
        continue;
      }
      target = next(endpoints, target);
      Duration pause = Backoff.fullJitter(attempt - 1, policy.backoffBase(), policy.backoffMax());
      Optional<Duration> asked = error.retryDelay();
      if (asked.isPresent() && asked.get().compareTo(pause) > 0) {
        pause = asked.get();
      }
      if (nanoClock.getAsLong() + pause.toNanos() >= deadline) {
        throw error;
      }
      if (!pause.isZero()) {
        try {
          sleeper.sleep(pause);
        } catch (InterruptedException interrupted) {
          Thread.currentThread().interrupt();
          throw error;
        }
      }
    }
  }

  /** The endpoint after {@code current} (the first if {@code current} came from a hint). */
  static String next(List<String> endpoints, String current) {
    int i = endpoints.indexOf(current);
    return i < 0 ? endpoints.get(0) : endpoints.get((i + 1) % endpoints.size());
  }
}
