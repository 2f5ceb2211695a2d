package io.walletledger.client;

import io.walletledger.v1.ErrorReason;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.Set;

/**
 * The stable {@code google.rpc.ErrorInfo} reasons the nodes send (domain {@link #DOMAIN}),
 * initialised at class load from the generated {@link ErrorReason} enum
 * ({@code proto/wallet/v1/errors.proto}): each is the value's name without
 * {@code ERROR_REASON_}. Plus the ones the SDK gives to failures that never reached a node
 * ({@link #TRANSPORT_ERROR}, {@link #DEADLINE_EXCEEDED}). Match on these, never on the message;
 * a reason outside {@link #ALL} (from a newer node) comes as it is: decide by the gRPC code then.
 * Being read from the enum, the reason fields are not compile-time constants: compare with
 * {@code equals} (a {@code switch} needs {@code ErrorReason}, e.g. via {@link #toEnum}).
 */
public final class Reasons {
  private Reasons() {}

  private static final String PREFIX = "ERROR_REASON_";

  /**
   * The reason string of an {@link ErrorReason} value ({@code ERROR_REASON_INSUFFICIENT_FUNDS}
   * is "INSUFFICIENT_FUNDS"); "" for {@code ERROR_REASON_UNSPECIFIED} and {@code UNRECOGNIZED}.
   */
  public static String of(ErrorReason reason) {
    if (reason == ErrorReason.ERROR_REASON_UNSPECIFIED || reason == ErrorReason.UNRECOGNIZED
        || !reason.name().startsWith(PREFIX)) {
      return "";
    }
    return reason.name().substring(PREFIX.length());
  }

  /** The {@link ErrorReason} value of a reason string, or {@code UNRECOGNIZED}. */
  public static ErrorReason toEnum(String reason) {
    if (reason == null || reason.isEmpty()) {
      return ErrorReason.UNRECOGNIZED;
    }
    for (ErrorReason value : ErrorReason.values()) {
      if (!of(value).isEmpty() && of(value).equals(reason)) {
        return value;
      }
    }
    return ErrorReason.UNRECOGNIZED;
  }

  /** Every reason of the {@link ErrorReason} enum, in its order. */
  public static final Set<String> ALL;

  static {
    Set<String> all = new LinkedHashSet<>();
    for (ErrorReason value : ErrorReason.values()) {
      String reason = of(value);
      if (!reason.isEmpty()) {
        all.add(reason);
      }
    }
    ALL = Collections.unmodifiableSet(all);
  }

  /** Whether {@code reason} is one of the {@link ErrorReason} enum's. */
  public static boolean isKnown(String reason) {
    return ALL.contains(reason);
  }

  /** The {@code ErrorInfo.domain} of every wallet error. */
  public static final String DOMAIN = "wallet.ledger";
  /** {@code ErrorInfo} metadata key of a NOT_LEADER redirect: the leader's {@code host:port}. */
  public static final String METADATA_LEADER_ADDRESS = "leader_address";
  /** {@code ErrorInfo} metadata key of a NOT_LEADER redirect: the leader's node id. */
  public static final String METADATA_LEADER_ID = "leader_id";
  /** {@code ErrorInfo} metadata key of SCOPE_DENIED / ISSUE_SCOPE_REQUIRED: the scope needed. */
  public static final String METADATA_SCOPE = "scope";
  /**
   * {@code ErrorInfo} metadata key set to "true" when an earlier log entry decided this
   * rejection and this call found it recorded (a retry): {@link WalletException#replayed()}.
   */
  public static final String METADATA_REPLAYED = "replayed";
  /**
   * {@code ErrorInfo} metadata key of a {@code TransferLegs} refusal: the index (0-based, a
   * decimal string) of the first leg refused ({@link WalletException#leg()}).
   */
  public static final String METADATA_LEG = "leg";

  // --- INVALID_ARGUMENT (+ BadRequest field) -------------------------------------------------
  public static final String INVALID_TRANSACTION_ID = of(ErrorReason.ERROR_REASON_INVALID_TRANSACTION_ID);
  public static final String INVALID_ACCOUNT_ID = of(ErrorReason.ERROR_REASON_INVALID_ACCOUNT_ID);
  public static final String INVALID_AMOUNT = of(ErrorReason.ERROR_REASON_INVALID_AMOUNT);
  public static final String UNKNOWN_CURRENCY = of(ErrorReason.ERROR_REASON_UNKNOWN_CURRENCY);
  public static final String SAME_ACCOUNT = of(ErrorReason.ERROR_REASON_SAME_ACCOUNT);
  /** {@code TransferBatch} with no transfer or more than 1,024 (field {@code transfers}). */
  public static final String INVALID_BATCH_SIZE = of(ErrorReason.ERROR_REASON_INVALID_BATCH_SIZE);
  public static final String AMOUNT_OUT_OF_RANGE = of(ErrorReason.ERROR_REASON_AMOUNT_OUT_OF_RANGE);
  public static final String NIL_TRANSACTION_ID = of(ErrorReason.ERROR_REASON_NIL_TRANSACTION_ID);
  public static final String WRONG_PARTITION = of(ErrorReason.ERROR_REASON_WRONG_PARTITION);
  public static final String CREDIT_FROM_LOCAL_ACCOUNT = of(ErrorReason.ERROR_REASON_CREDIT_FROM_LOCAL_ACCOUNT);
  public static final String SETTLE_OF_UNKNOWN_TRANSFER = of(ErrorReason.ERROR_REASON_SETTLE_OF_UNKNOWN_TRANSFER);
  public static final String TOO_MANY_CREDITS = of(ErrorReason.ERROR_REASON_TOO_MANY_CREDITS);
  // read node
  public static final String INVALID_CONSISTENCY_TOKEN = of(ErrorReason.ERROR_REASON_INVALID_CONSISTENCY_TOKEN);
  public static final String INVALID_POSITION = of(ErrorReason.ERROR_REASON_INVALID_POSITION);
  public static final String POSITION_PARTITION_MISMATCH = of(ErrorReason.ERROR_REASON_POSITION_PARTITION_MISMATCH);
  public static final String MISSING_POINT = of(ErrorReason.ERROR_REASON_MISSING_POINT);
  public static final String INVALID_PAGE_TOKEN = of(ErrorReason.ERROR_REASON_INVALID_PAGE_TOKEN);
  public static final String PAGE_SIZE_TOO_LARGE = of(ErrorReason.ERROR_REASON_PAGE_SIZE_TOO_LARGE);
  public static final String TOO_MANY_ACCOUNTS = of(ErrorReason.ERROR_REASON_TOO_MANY_ACCOUNTS);
  public static final String INVALID_RESUME_SEQUENCE = of(ErrorReason.ERROR_REASON_INVALID_RESUME_SEQUENCE);
  // event log
  public static final String INVALID_PARTITION = of(ErrorReason.ERROR_REASON_INVALID_PARTITION);
  public static final String INVALID_FROM_INDEX = of(ErrorReason.ERROR_REASON_INVALID_FROM_INDEX);
  // INVALID_ARGUMENT without a field: the whole message
  public static final String MALFORMED_MESSAGE = of(ErrorReason.ERROR_REASON_MALFORMED_MESSAGE);
  public static final String MESSAGE_TOO_LARGE = of(ErrorReason.ERROR_REASON_MESSAGE_TOO_LARGE);

  // --- NOT_FOUND (+ BadRequest field) --------------------------------------------------------
  public static final String ACCOUNT_NOT_FOUND = of(ErrorReason.ERROR_REASON_ACCOUNT_NOT_FOUND);
  public static final String TRANSFER_NOT_FOUND = of(ErrorReason.ERROR_REASON_TRANSFER_NOT_FOUND);

  // --- FAILED_PRECONDITION ---------------------------------------------------------------------
  public static final String INSUFFICIENT_FUNDS = of(ErrorReason.ERROR_REASON_INSUFFICIENT_FUNDS);
  public static final String CURRENCY_MISMATCH = of(ErrorReason.ERROR_REASON_CURRENCY_MISMATCH);

  // --- ALREADY_EXISTS --------------------------------------------------------------------------
  public static final String TRANSACTION_ID_REUSED = of(ErrorReason.ERROR_REASON_TRANSACTION_ID_REUSED);
  public static final String ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS = of(ErrorReason.ERROR_REASON_ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS);

  // --- UNAVAILABLE (indefinite: retried) -------------------------------------------------------
  /** Metadata {@link #METADATA_LEADER_ID}, {@link #METADATA_LEADER_ADDRESS}. */
  public static final String NOT_LEADER = of(ErrorReason.ERROR_REASON_NOT_LEADER);
  public static final String NO_LEADER = of(ErrorReason.ERROR_REASON_NO_LEADER);
  public static final String OUTCOME_UNKNOWN = of(ErrorReason.ERROR_REASON_OUTCOME_UNKNOWN);
  public static final String READ_TIMEOUT = of(ErrorReason.ERROR_REASON_READ_TIMEOUT);
  public static final String SHUTTING_DOWN = of(ErrorReason.ERROR_REASON_SHUTTING_DOWN);
  public static final String STORAGE_FAILURE = of(ErrorReason.ERROR_REASON_STORAGE_FAILURE);
  public static final String CONSISTENCY_WAIT_TIMEOUT = of(ErrorReason.ERROR_REASON_CONSISTENCY_WAIT_TIMEOUT);
  public static final String PARTITION_STUCK = of(ErrorReason.ERROR_REASON_PARTITION_STUCK);

  // --- RESOURCE_EXHAUSTED (+ RetryInfo; indefinite: retried) -----------------------------------
  public static final String OVERLOADED = of(ErrorReason.ERROR_REASON_OVERLOADED);
  public static final String TOO_MANY_WATCHERS = of(ErrorReason.ERROR_REASON_TOO_MANY_WATCHERS);
  public static final String TOO_MANY_SUBSCRIBERS = of(ErrorReason.ERROR_REASON_TOO_MANY_SUBSCRIBERS);

  // --- ABORTED ---------------------------------------------------------------------------------
  /** A watcher fell behind and was cut off: resume from the last sequence (the SDK does). */
  public static final String WATCH_LAGGED = of(ErrorReason.ERROR_REASON_WATCH_LAGGED);

  // --- DATA_LOSS -------------------------------------------------------------------------------
  public static final String EVENT_LOG_CORRUPT = of(ErrorReason.ERROR_REASON_EVENT_LOG_CORRUPT);

  // --- UNAUTHENTICATED / PERMISSION_DENIED (tokens, TLS) ---------------------------------------
  public static final String MISSING_TOKEN = of(ErrorReason.ERROR_REASON_MISSING_TOKEN);
  public static final String INVALID_TOKEN = of(ErrorReason.ERROR_REASON_INVALID_TOKEN);
  public static final String SCOPE_DENIED = of(ErrorReason.ERROR_REASON_SCOPE_DENIED);
  public static final String ISSUE_SCOPE_REQUIRED = of(ErrorReason.ERROR_REASON_ISSUE_SCOPE_REQUIRED);
  public static final String ACCOUNT_PREFIX_DENIED = of(ErrorReason.ERROR_REASON_ACCOUNT_PREFIX_DENIED);
  public static final String PEER_CERT_REQUIRED = of(ErrorReason.ERROR_REASON_PEER_CERT_REQUIRED);
  public static final String NOT_A_PEER = of(ErrorReason.ERROR_REASON_NOT_A_PEER);

  // --- UNIMPLEMENTED ---------------------------------------------------------------------------
  public static final String UNKNOWN_METHOD = of(ErrorReason.ERROR_REASON_UNKNOWN_METHOD);
  public static final String UNSUPPORTED_COMPRESSION = of(ErrorReason.ERROR_REASON_UNSUPPORTED_COMPRESSION);

  // --- internal PeerService --------------------------------------------------------------------
  public static final String MISADDRESSED_MESSAGE = of(ErrorReason.ERROR_REASON_MISADDRESSED_MESSAGE);
  public static final String SNAPSHOT_NOT_FOUND = of(ErrorReason.ERROR_REASON_SNAPSHOT_NOT_FOUND);

  // --- sent by the nodes, outside the README's table ----------------------------------------
  /** UNAVAILABLE: a node forwarded the write and got no answer. */
  public static final String FORWARD_FAILED = of(ErrorReason.ERROR_REASON_FORWARD_FAILED);
  /** INTERNAL: a read node's unexpected failure (the message says what). */
  public static final String INTERNAL = of(ErrorReason.ERROR_REASON_INTERNAL);
  /** INTERNAL: the event log could not be read. */
  public static final String EVENT_LOG_UNREADABLE = of(ErrorReason.ERROR_REASON_EVENT_LOG_UNREADABLE);

  // --- holds (AuthorizeTransfer, CaptureTransfer, VoidTransfer) ---------------------------------
  /** NOT_FOUND: no hold with this transaction id (of this from_account). */
  public static final String HOLD_NOT_FOUND = of(ErrorReason.ERROR_REASON_HOLD_NOT_FOUND);
  /** FAILED_PRECONDITION: the transaction id names an ordinary transfer. */
  public static final String NOT_A_HOLD = of(ErrorReason.ERROR_REASON_NOT_A_HOLD);
  /** FAILED_PRECONDITION: the capture's amount exceeds the held amount. */
  public static final String CAPTURE_EXCEEDS_HOLD = of(ErrorReason.ERROR_REASON_CAPTURE_EXCEEDS_HOLD);
  /** FAILED_PRECONDITION: captured with another amount, or a void after the capture. */
  public static final String HOLD_ALREADY_CAPTURED = of(ErrorReason.ERROR_REASON_HOLD_ALREADY_CAPTURED);
  /** FAILED_PRECONDITION: the hold was voided. */
  public static final String HOLD_ALREADY_VOIDED = of(ErrorReason.ERROR_REASON_HOLD_ALREADY_VOIDED);
  /** FAILED_PRECONDITION: the hold expired before it was captured or voided. */
  public static final String HOLD_EXPIRED = of(ErrorReason.ERROR_REASON_HOLD_EXPIRED);
  /** FAILED_PRECONDITION: the hold's authorization was refused; nothing is held. */
  public static final String HOLD_NOT_AUTHORIZED = of(ErrorReason.ERROR_REASON_HOLD_NOT_AUTHORIZED);
  /** FAILED_PRECONDITION: the target refused a cross-partition capture; nothing is held. */
  public static final String HOLD_CAPTURE_REFUSED = of(ErrorReason.ERROR_REASON_HOLD_CAPTURE_REFUSED);
  /** RESOURCE_EXHAUSTED: the partition keeps its maximum of pending holds; retry later. */
  public static final String HOLDS_LIMIT_REACHED = of(ErrorReason.ERROR_REASON_HOLDS_LIMIT_REACHED);
  /** INVALID_ARGUMENT: timeout missing, under 1 ms or over 30 days. */
  public static final String HOLD_TIMEOUT_OUT_OF_RANGE = of(ErrorReason.ERROR_REASON_HOLD_TIMEOUT_OUT_OF_RANGE);
  /** INVALID_ARGUMENT (read node): BatchGetTransfers with more than 1,000 ids. */
  public static final String TOO_MANY_TRANSFERS = of(ErrorReason.ERROR_REASON_TOO_MANY_TRANSFERS);
  /** INVALID_ARGUMENT (read node): ListTransfers with end_time before start_time, or a bad timestamp. */
  public static final String INVALID_TIME_RANGE = of(ErrorReason.ERROR_REASON_INVALID_TIME_RANGE);
  /** FAILED_PRECONDITION: the account is frozen: it neither sends nor receives until unfrozen. */
  public static final String ACCOUNT_FROZEN = of(ErrorReason.ERROR_REASON_ACCOUNT_FROZEN);
  /** FAILED_PRECONDITION: the account is closed: it neither sends nor receives, and nothing about it changes. */
  public static final String ACCOUNT_CLOSED = of(ErrorReason.ERROR_REASON_ACCOUNT_CLOSED);
  /** FAILED_PRECONDITION: CloseAccount needs a zero balance. */
  public static final String ACCOUNT_NOT_EMPTY = of(ErrorReason.ERROR_REASON_ACCOUNT_NOT_EMPTY);
  /** FAILED_PRECONDITION: CloseAccount needs every hold from the account captured, voided or expired. */
  public static final String ACCOUNT_HAS_PENDING_HOLDS = of(ErrorReason.ERROR_REASON_ACCOUNT_HAS_PENDING_HOLDS);
  /** FAILED_PRECONDITION: CloseAccount while a transfer from the account to another partition is not settled; retry shortly. */
  public static final String ACCOUNT_HAS_TRANSFERS_IN_FLIGHT = of(ErrorReason.ERROR_REASON_ACCOUNT_HAS_TRANSFERS_IN_FLIGHT);
  /** FAILED_PRECONDITION: SetOverdraftLimit on an account opened with allow_negative_balance, which has no limit. */
  public static final String OVERDRAFT_UNLIMITED = of(ErrorReason.ERROR_REASON_OVERDRAFT_UNLIMITED);
  /** INVALID_ARGUMENT: SetOverdraftLimit with a limit below 0 or above 1e15 minor units. */
  public static final String OVERDRAFT_LIMIT_OUT_OF_RANGE = of(ErrorReason.ERROR_REASON_OVERDRAFT_LIMIT_OUT_OF_RANGE);
  /** INVALID_ARGUMENT (field {@code reference}): a transfer's reference over 128 bytes or with control characters. */
  public static final String INVALID_REFERENCE = of(ErrorReason.ERROR_REASON_INVALID_REFERENCE);
  /**
   * INVALID_ARGUMENT (field {@code metadata}): a transfer's metadata over its limits: more than 16 entries, a key not of
   * 1 to 64 characters from [A-Za-z0-9_.:-], a value over 512 bytes or with control characters, or more than 4096 bytes
   * in all.
   */
  public static final String INVALID_METADATA = of(ErrorReason.ERROR_REASON_INVALID_METADATA);
  /** FAILED_PRECONDITION (field {@code overdraft_limit}): SetOverdraftLimit below what the account owes. */
  public static final String OVERDRAFT_LIMIT_BELOW_DEBT = of(ErrorReason.ERROR_REASON_OVERDRAFT_LIMIT_BELOW_DEBT);
  /** FAILED_PRECONDITION: the call needs a newer release than a write node it would reach runs; retry once the rolling upgrade is complete. */
  public static final String CLUSTER_UPGRADING = of(ErrorReason.ERROR_REASON_CLUSTER_UPGRADING);

  // --- multi-leg transfers (TransferLegs) --------------------------------------------------------
  /** INVALID_ARGUMENT (field {@code legs}): TransferLegs without legs or with more than 64. */
  public static final String LEGS_OUT_OF_RANGE = of(ErrorReason.ERROR_REASON_LEGS_OUT_OF_RANGE);
  /** INVALID_ARGUMENT (field {@code legs}): two legs with the same from_account and to_account; merge them. */
  public static final String REPEATED_LEG = of(ErrorReason.ERROR_REASON_REPEATED_LEG);
  /** INVALID_ARGUMENT (field {@code legs}): legs in different currencies. */
  public static final String MIXED_CURRENCIES = of(ErrorReason.ERROR_REASON_MIXED_CURRENCIES);
  /** FAILED_PRECONDITION: the accounts of the legs are not all in one partition; answered only by nodes before 0.3, which did not move sets across partitions. */
  public static final String LEGS_SPAN_PARTITIONS = of(ErrorReason.ERROR_REASON_LEGS_SPAN_PARTITIONS);
  /** INVALID_ARGUMENT (field {@code legs}): a peer's step of a multi-leg transfer across partitions that is not the partition's part of the set (never a client's call). */
  public static final String INVALID_LEGS_PART = of(ErrorReason.ERROR_REASON_INVALID_LEGS_PART);
  /** INVALID_ARGUMENT (field {@code legs}): a peer's step of a multi-leg transfer across partitions that needs an earlier one (never a client's call). */
  public static final String LEGS_NOT_PREPARED = of(ErrorReason.ERROR_REASON_LEGS_NOT_PREPARED);
  /** FAILED_PRECONDITION: a peer's raft frames from a write node whose data directory was lost or replaced while a partition still counts it as a replica (never a client's call). */
  public static final String NODE_DATA_LOST = of(ErrorReason.ERROR_REASON_NODE_DATA_LOST);

  // --- given by the SDK ------------------------------------------------------------------------
  /** A failure made by the gRPC library (connection refused, reset, closed mid-call). */
  public static final String TRANSPORT_ERROR = "TRANSPORT_ERROR";
  /** An attempt or the whole call ran out of time. */
  public static final String DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED";
}
