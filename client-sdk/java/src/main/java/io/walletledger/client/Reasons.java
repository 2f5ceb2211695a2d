package io.walletledger.client;

/**
 * The stable {@code google.rpc.ErrorInfo} reasons the nodes send (domain {@link #DOMAIN}), as
 * documented in {@code proto/wallet/v1/*.proto} and the top-level README, plus the ones the SDK
 * gives to failures that never reached a node ({@link #TRANSPORT_ERROR},
 * {@link #DEADLINE_EXCEEDED}). Match on these, never on the message.
 */
public final class Reasons {
  private Reasons() {}

  /** The {@code ErrorInfo.domain} of every wallet error. */
  public static final String DOMAIN = "wallet.ledger";
  /** {@code ErrorInfo} metadata key of a NOT_LEADER redirect: the leader's {@code host:port}. */
  public static final String METADATA_LEADER_ADDRESS = "leader_address";
  /** {@code ErrorInfo} metadata key of a NOT_LEADER redirect: the leader's node id. */
  public static final String METADATA_LEADER_ID = "leader_id";
  /** {@code ErrorInfo} metadata key of SCOPE_DENIED / ISSUE_SCOPE_REQUIRED: the scope needed. */
  public static final String METADATA_SCOPE = "scope";

  // --- INVALID_ARGUMENT (+ BadRequest field) -------------------------------------------------
  public static final String INVALID_TRANSACTION_ID = "INVALID_TRANSACTION_ID";
  public static final String INVALID_ACCOUNT_ID = "INVALID_ACCOUNT_ID";
  public static final String INVALID_AMOUNT = "INVALID_AMOUNT";
  public static final String UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY";
  public static final String SAME_ACCOUNT = "SAME_ACCOUNT";
  /** {@code TransferBatch} with no transfer or more than 1,024 (field {@code transfers}). */
  public static final String INVALID_BATCH_SIZE = "INVALID_BATCH_SIZE";
  public static final String AMOUNT_OUT_OF_RANGE = "AMOUNT_OUT_OF_RANGE";
  public static final String NIL_TRANSACTION_ID = "NIL_TRANSACTION_ID";
  public static final String WRONG_PARTITION = "WRONG_PARTITION";
  public static final String CREDIT_FROM_LOCAL_ACCOUNT = "CREDIT_FROM_LOCAL_ACCOUNT";
  public static final String SETTLE_OF_UNKNOWN_TRANSFER = "SETTLE_OF_UNKNOWN_TRANSFER";
  public static final String TOO_MANY_CREDITS = "TOO_MANY_CREDITS";
  // read node
  public static final String INVALID_CONSISTENCY_TOKEN = "INVALID_CONSISTENCY_TOKEN";
  public static final String INVALID_POSITION = "INVALID_POSITION";
  public static final String POSITION_PARTITION_MISMATCH = "POSITION_PARTITION_MISMATCH";
  public static final String MISSING_POINT = "MISSING_POINT";
  public static final String INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN";
  public static final String PAGE_SIZE_TOO_LARGE = "PAGE_SIZE_TOO_LARGE";
  public static final String TOO_MANY_ACCOUNTS = "TOO_MANY_ACCOUNTS";
  public static final String INVALID_RESUME_SEQUENCE = "INVALID_RESUME_SEQUENCE";
  // event log
  public static final String INVALID_PARTITION = "INVALID_PARTITION";
  public static final String INVALID_FROM_INDEX = "INVALID_FROM_INDEX";
  // INVALID_ARGUMENT without a field: the whole message
  public static final String MALFORMED_MESSAGE = "MALFORMED_MESSAGE";
  public static final String MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE";

  // --- NOT_FOUND (+ BadRequest field) --------------------------------------------------------
  public static final String ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND";
  public static final String TRANSFER_NOT_FOUND = "TRANSFER_NOT_FOUND";

  // --- FAILED_PRECONDITION ---------------------------------------------------------------------
  public static final String INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS";
  public static final String CURRENCY_MISMATCH = "CURRENCY_MISMATCH";

  // --- ALREADY_EXISTS --------------------------------------------------------------------------
  public static final String TRANSACTION_ID_REUSED = "TRANSACTION_ID_REUSED";
  public static final String ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS =
      "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS";

  // --- UNAVAILABLE (indefinite: retried) -------------------------------------------------------
  /** Metadata {@link #METADATA_LEADER_ID}, {@link #METADATA_LEADER_ADDRESS}. */
  public static final String NOT_LEADER = "NOT_LEADER";
  public static final String NO_LEADER = "NO_LEADER";
  public static final String OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN";
  public static final String READ_TIMEOUT = "READ_TIMEOUT";
  public static final String SHUTTING_DOWN = "SHUTTING_DOWN";
  public static final String STORAGE_FAILURE = "STORAGE_FAILURE";
  public static final String CONSISTENCY_WAIT_TIMEOUT = "CONSISTENCY_WAIT_TIMEOUT";
  public static final String PARTITION_STUCK = "PARTITION_STUCK";

  // --- RESOURCE_EXHAUSTED (+ RetryInfo; indefinite: retried) -----------------------------------
  public static final String OVERLOADED = "OVERLOADED";
  public static final String TOO_MANY_WATCHERS = "TOO_MANY_WATCHERS";
  public static final String TOO_MANY_SUBSCRIBERS = "TOO_MANY_SUBSCRIBERS";

  // --- ABORTED ---------------------------------------------------------------------------------
  /** A watcher fell behind and was cut off: resume from the last sequence (the SDK does). */
  public static final String WATCH_LAGGED = "WATCH_LAGGED";

  // --- DATA_LOSS -------------------------------------------------------------------------------
  public static final String EVENT_LOG_CORRUPT = "EVENT_LOG_CORRUPT";

  // --- UNAUTHENTICATED / PERMISSION_DENIED (tokens, TLS) ---------------------------------------
  public static final String MISSING_TOKEN = "MISSING_TOKEN";
  public static final String INVALID_TOKEN = "INVALID_TOKEN";
  public static final String SCOPE_DENIED = "SCOPE_DENIED";
  public static final String ISSUE_SCOPE_REQUIRED = "ISSUE_SCOPE_REQUIRED";
  public static final String ACCOUNT_PREFIX_DENIED = "ACCOUNT_PREFIX_DENIED";
  public static final String PEER_CERT_REQUIRED = "PEER_CERT_REQUIRED";
  public static final String NOT_A_PEER = "NOT_A_PEER";

  // --- UNIMPLEMENTED ---------------------------------------------------------------------------
  public static final String UNKNOWN_METHOD = "UNKNOWN_METHOD";
  public static final String UNSUPPORTED_COMPRESSION = "UNSUPPORTED_COMPRESSION";

  // --- internal PeerService --------------------------------------------------------------------
  public static final String MISADDRESSED_MESSAGE = "MISADDRESSED_MESSAGE";
  public static final String SNAPSHOT_NOT_FOUND = "SNAPSHOT_NOT_FOUND";

  // --- sent by the nodes, outside the README's table ----------------------------------------
  /** UNAVAILABLE (or DEADLINE_EXCEEDED): a node forwarded the write and got no answer. */
  public static final String FORWARD_FAILED = "FORWARD_FAILED";
  /** INTERNAL: a bug or an unexpected failure on the node. */
  public static final String INTERNAL = "INTERNAL";
  /** INTERNAL: the event log could not be read. */
  public static final String EVENT_LOG_UNREADABLE = "EVENT_LOG_UNREADABLE";

  // --- given by the SDK ------------------------------------------------------------------------
  /** A failure made by the gRPC library (connection refused, reset, closed mid-call). */
  public static final String TRANSPORT_ERROR = "TRANSPORT_ERROR";
  /** An attempt or the whole call ran out of time. */
  public static final String DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED";
}
