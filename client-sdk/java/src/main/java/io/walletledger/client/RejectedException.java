package io.walletledger.client;

/**
 * The ledger refused the request (bad argument, unknown account, insufficient funds, reused
 * transaction id, missing token, ...). Nothing was applied; never retried by the SDK.
 */
public final class RejectedException extends WalletException {
  private static final long serialVersionUID = 1L;

  public RejectedException(ErrorDetails details, String reason, Throwable cause) {
    super(details, reason, cause);
  }

  @Override
  public boolean isDefinite() {
    return true;
  }
}
