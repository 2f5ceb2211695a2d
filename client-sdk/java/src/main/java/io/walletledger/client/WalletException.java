package io.walletledger.client;

import io.grpc.Status;
import java.time.Duration;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * A failed wallet call: either {@link RejectedException} (definite: nothing was applied,
 * asking again gives the same answer) or {@link UnavailableException} (the outcome is unknown
 * and the retries ran out: retry with the same transaction id). Match on {@link #reason()}
 * (stable, see {@link Reasons}), not on the message.
 */
public abstract class WalletException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final transient ErrorDetails details;
  private final String reason;

  WalletException(ErrorDetails details, String reason, Throwable cause) {
    super(details.code() + " " + reason + ": " + details.message(), cause);
    this.details = details;
    this.reason = reason;
  }

  /** The gRPC status code. */
  public Status.Code code() {
    return details.code();
  }

  /**
   * The stable reason: {@code ErrorInfo.reason}, or for a status without one the code's name
   * ({@link Reasons#TRANSPORT_ERROR} for a transport failure, {@link Reasons#DEADLINE_EXCEEDED}
   * for a timeout).
   */
  public String reason() {
    return reason;
  }

  /** The status message (for people; never match on it). */
  public String statusMessage() {
    return details.message();
  }

  /** The offending request field (the first {@code BadRequest} field violation), if any. */
  public Optional<String> field() {
    return details.fieldViolations().stream()
        .map(v -> v.field)
        .filter(f -> f != null && !f.isEmpty())
        .findFirst();
  }

  /** {@code RetryInfo}'s delay, if the node sent one. */
  public Optional<Duration> retryDelay() {
    return details.retryDelay();
  }

  /** Everything decoded from the status. */
  public ErrorDetails details() {
    return details;
  }

  /**
   * True when an earlier log entry decided this outcome and this call found it recorded (a
   * retry): {@code ErrorInfo} metadata {@link Reasons#METADATA_REPLAYED} = "true" (or, for a
   * {@code TransferResult}, its {@code replayed}). Older nodes never set it.
   */
  public boolean replayed() {
    return "true".equals(details.metadata().get(Reasons.METADATA_REPLAYED));
  }

  /**
   * For a refused {@code TransferLegs}: the index (0-based) of the first leg refused, from the
   * {@code ErrorInfo} metadata {@link Reasons#METADATA_LEG} (for insufficient funds, the leg of
   * the account's first debit); empty when the error names no leg (e.g.
   * {@link Reasons#REPEATED_LEG}, or another call).
   */
  public OptionalInt leg() {
    String value = details.metadata().get(Reasons.METADATA_LEG);
    if (value == null || value.isEmpty() || value.length() > 9 || !value.chars().allMatch(c -> c >= '0' && c <= '9')) {
      return OptionalInt.empty();
    }
    return OptionalInt.of(Integer.parseInt(value));
  }

  /** True when nothing was applied and asking again gives the same answer. */
  public abstract boolean isDefinite();
}
