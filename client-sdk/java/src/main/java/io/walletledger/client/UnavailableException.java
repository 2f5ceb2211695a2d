package io.walletledger.client;

/**
 * Indefinite: the outcome is unknown (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED or
 * CANCELLED) and the SDK's retries ran out. The request may or may not have been applied: retry
 * with the same transaction id to learn the outcome (the ledger deduplicates by it, so a retry
 * never pays twice). {@link #retryDelay()} is the node's {@code RetryInfo}, if it sent one.
 */
public final class UnavailableException extends WalletException {
  private static final long serialVersionUID = 1L;

  public UnavailableException(ErrorDetails details, String reason, Throwable cause) {
    super(details, reason, cause);
  }

  @Override
  public boolean isDefinite() {
    return false;
  }
}
