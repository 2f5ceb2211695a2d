package io.walletledger.client;

import io.walletledger.v1.TransferRequest;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;

/**
 * One transfer's parameters: move {@code amount} (a decimal string in the currency's major
 * unit, e.g. {@code "12.34"}) of {@code currency} from {@code from} to {@code to}.
 * {@code transactionId} is the idempotency key (a canonical UUID, {@link #newTransactionId()}):
 * keep the same {@code Transfer} for every retry until the outcome is known.
 *
 * <p>{@code reference} and {@code metadata} are optional ({@code ""} and an empty map: none):
 * the caller's own reference (an order or invoice number) and string key/value pairs, stored
 * with the transfer and returned by {@code getTransfer} ({@code io.walletledger.v1.Transfer}),
 * {@code watchTransfer} ({@code TransferUpdate}) and {@code listTransfers}
 * ({@code HistoryEntry}). They are part of the request: a retry must repeat them (the same id
 * with another reference or metadata is ALREADY_EXISTS {@link Reasons#TRANSACTION_ID_REUSED}).
 * The node checks their limits (INVALID_ARGUMENT): a reference of at most 128 bytes without
 * control characters ({@link Reasons#INVALID_REFERENCE}); at most 16 metadata entries, keys of
 * 1 to 64 characters from {@code [A-Za-z0-9_.:-]}, values of at most 512 bytes without control
 * characters, at most 4096 bytes in all ({@link Reasons#INVALID_METADATA}). {@code metadata} is
 * kept as an unmodifiable copy, in the order given.
 */
public record Transfer(
    String transactionId, String from, String to, String amount, String currency,
    String reference, Map<String, String> metadata) {
  public Transfer {
    Objects.requireNonNull(transactionId, "transactionId");
    Objects.requireNonNull(from, "from");
    Objects.requireNonNull(to, "to");
    Objects.requireNonNull(amount, "amount");
    Objects.requireNonNull(currency, "currency");
    reference = reference == null ? "" : reference;
    metadata = copyOf(metadata);
  }

  /** A transfer without reference or metadata. */
  public Transfer(String transactionId, String from, String to, String amount, String currency) {
    this(transactionId, from, to, amount, currency, "", Map.of());
  }

  /** An unmodifiable copy in the given order ({@code null}: empty); null keys or values are refused. */
  static Map<String, String> copyOf(Map<String, String> metadata) {
    if (metadata == null || metadata.isEmpty()) {
      return Map.of();
    }
    Map<String, String> copy = new LinkedHashMap<>();
    metadata.forEach((k, v) -> copy.put(Objects.requireNonNull(k, "metadata key"),
        Objects.requireNonNull(v, () -> "metadata value of " + k)));
    return Collections.unmodifiableMap(copy);
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
        .currency(currency).reference(reference).metadata(metadata);
  }

  /** The wire request. */
  public TransferRequest toRequest() {
    return TransferRequest.newBuilder()
        .setTransactionId(transactionId)
        .setFromAccount(from)
        .setToAccount(to)
        .setAmount(amount)
        .setCurrency(currency)
        .setReference(reference)
        .putAllMetadata(metadata)
        .build();
  }

  public static final class Builder {
    private String transactionId;
    private String from;
    private String to;
    private String amount;
    private String currency;
    private String reference = "";
    private final Map<String, String> metadata = new LinkedHashMap<>();

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

    /** Optional: the caller's own reference, e.g. an order number ({@code null} or "": none). */
    public Builder reference(String reference) {
      this.reference = reference == null ? "" : reference;
      return this;
    }

    /** Optional: replaces the metadata with these entries ({@code null}: none). */
    public Builder metadata(Map<String, String> entries) {
      metadata.clear();
      if (entries != null) {
        entries.forEach(this::putMetadata);
      }
      return this;
    }

    /** Optional: adds (or replaces) one metadata entry. */
    public Builder putMetadata(String key, String value) {
      metadata.put(Objects.requireNonNull(key, "metadata key"), Objects.requireNonNull(value, "metadata value"));
      return this;
    }

    public Transfer build() {
      return new Transfer(
          transactionId == null ? newTransactionId() : transactionId, from, to, amount, currency,
          reference, metadata);
    }
  }
}
