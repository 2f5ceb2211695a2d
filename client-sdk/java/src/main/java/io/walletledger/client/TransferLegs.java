package io.walletledger.client;

import io.walletledger.v1.TransferLeg;
import io.walletledger.v1.TransferLegsRequest;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * One multi-leg transfer's parameters ({@link WalletClient#transferLegs}): 1 to 64
 * {@link Leg}s, all in one currency, applied in this order, that move money all together or not
 * at all, under one {@code transactionId} (the idempotency key, shared with transfers and
 * holds: a canonical UUID, {@link Transfer#newTransactionId()}, which {@link Builder#build()}
 * makes when none is set). Keep the same {@code TransferLegs} for every retry until the outcome
 * is known: the same id and legs answer the original outcome ({@code getReplayed()}), the same
 * id with other legs is ALREADY_EXISTS {@link Reasons#TRANSACTION_ID_REUSED}.
 *
 * <p>{@code reference} and {@code metadata} are optional ({@code ""} and an empty map: none),
 * one of each for the whole set, with the meaning and limits of a {@link Transfer}'s.
 * {@code legs} and {@code metadata} are kept as unmodifiable copies, in the order given.
 *
 * <pre>{@code
 * TransferLegs split = TransferLegs.builder()
 *     .leg("alice", "bob", "30.00", "USD")
 *     .leg("alice", "carol", "20.00", "USD")
 *     .reference("split-77")
 *     .build();
 * wallet.transferLegs(split);   // again with `split` after an UnavailableException
 * }</pre>
 */
public record TransferLegs(String transactionId, List<Leg> legs, String reference, Map<String, String> metadata) {
  /**
   * One leg: move {@code amount} (a decimal string in the currency's major unit, e.g.
   * {@code "12.34"}) of {@code currency} from account {@code from} to account {@code to}.
   */
  public record Leg(String from, String to, String amount, String currency) {
    public Leg {
      Objects.requireNonNull(from, "from");
      Objects.requireNonNull(to, "to");
      Objects.requireNonNull(amount, "amount");
      Objects.requireNonNull(currency, "currency");
    }

    /** The wire message. */
    public TransferLeg toProto() {
      return TransferLeg.newBuilder().setFromAccount(from).setToAccount(to).setAmount(amount).setCurrency(currency).build();
    }
  }

  public TransferLegs {
    Objects.requireNonNull(transactionId, "transactionId");
    legs = List.copyOf(Objects.requireNonNull(legs, "legs"));
    reference = reference == null ? "" : reference;
    metadata = Transfer.copyOf(metadata);
  }

  /** Legs without reference or metadata. */
  public TransferLegs(String transactionId, List<Leg> legs) {
    this(transactionId, legs, "", Map.of());
  }

  /** A leg: {@code new Leg(from, to, amount, currency)}. */
  public static Leg leg(String from, String to, String amount, String currency) {
    return new Leg(from, to, amount, currency);
  }

  public static Builder builder() {
    return new Builder();
  }

  /** A builder preset with these parameters (e.g. to change one for a test). */
  public Builder toBuilder() {
    return new Builder().transactionId(transactionId).legs(legs).reference(reference).metadata(metadata);
  }

  /** The wire request: the legs in order. */
  public TransferLegsRequest toRequest() {
    TransferLegsRequest.Builder request = TransferLegsRequest.newBuilder()
        .setTransactionId(transactionId)
        .setReference(reference)
        .putAllMetadata(metadata);
    for (Leg leg : legs) {
      request.addLegs(leg.toProto());
    }
    return request.build();
  }

  public static final class Builder {
    private String transactionId;
    private final List<Leg> legs = new ArrayList<>();
    private String reference = "";
    private final Map<String, String> metadata = new LinkedHashMap<>();

    /** Defaults to a fresh {@link Transfer#newTransactionId()} when not set. */
    public Builder transactionId(String id) {
      transactionId = id;
      return this;
    }

    /** Adds a leg after those already added. */
    public Builder leg(String from, String to, String amount, String currency) {
      return leg(new Leg(from, to, amount, currency));
    }

    /** Adds a leg after those already added. */
    public Builder leg(Leg leg) {
      legs.add(Objects.requireNonNull(leg, "leg"));
      return this;
    }

    /** Replaces the legs with these, in order. */
    public Builder legs(List<Leg> legs) {
      this.legs.clear();
      legs.forEach(this::leg);
      return this;
    }

    /** Optional: the caller's own reference for the whole set ({@code null} or "": none). */
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

    public TransferLegs build() {
      return new TransferLegs(
          transactionId == null ? Transfer.newTransactionId() : transactionId, legs, reference, metadata);
    }
  }
}
