package io.walletledger.client;

import io.walletledger.v1.TransferRequest;
import java.util.Objects;
import java.util.UUID;

/**
 * One transfer's parameters: move {@code amount} (a decimal string in the currency's major
 * unit, e.g. {@code "12.34"}) of {@code currency} from {@code from} to {@code to}.
 * {@code transactionId} is the idempotency key (a canonical UUID, {@link #newTransactionId()}):
 * keep the same {@code Transfer} for every retry until the outcome is known.
 */
public record Transfer(String transactionId, String from, String to, String amount, String currency) {
  public Transfer {
    Objects.requireNonNull(transactionId, "transactionId");
    Objects.requireNonNull(from, "from");
    Objects.requireNonNull(to, "to");
    Objects.requireNonNull(amount, "amount");
    Objects.requireNonNull(currency, "currency");
  }

  /** A fresh idempotency key: a random UUID in canonical form. One per intended transfer. */
  public static String newTransactionId() {
    return UUID.randomUUID().toString();
  }

  public static Builder builder() {
    return new Builder();
  }

  /** A builder preset with these parameters (e.g. to change one for a test). */
  public Builder toBuilder() {
    return new Builder().transactionId(transactionId).from(from).to(to).amount(amount)
        .currency(currency);
  }

  /** The wire request. */
  public TransferRequest toRequest() {
    return TransferRequest.newBuilder()
        .setTransactionId(transactionId)
        .setFromAccount(from)
        .setToAccount(to)
        .setAmount(amount)
        .setCurrency(currency)
        .build();
  }

  public static final class Builder {
    private String transactionId;
    private String from;
    private String to;
    private String amount;
    private String currency;

    /** Defaults to a fresh {@link Transfer#newTransactionId()} when not set. */
    public Builder transactionId(String id) {
      transactionId = id;
      return this;
    }

    public Builder from(String account) {
      from = account;
      return this;
    }

    public Builder to(String account) {
      to = account;
      return this;
    }

    public Builder amount(String decimal) {
      amount = decimal;
      return this;
    }

    public Builder currency(String code) {
      currency = code;
      return this;
    }

    public Transfer build() {
      return new Transfer(
          transactionId == null ? newTransactionId() : transactionId, from, to, amount, currency);
    }
  }
}
