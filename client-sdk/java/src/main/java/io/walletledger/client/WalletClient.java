package io.walletledger.client;

import io.grpc.Channel;
import io.grpc.stub.StreamObserver;
import io.walletledger.v1.Account;
import io.walletledger.v1.AccountStatus;
import io.walletledger.v1.AuthorizeTransferRequest;
import io.walletledger.v1.CaptureTransferRequest;
import io.walletledger.v1.CloseAccountRequest;
import io.walletledger.v1.ClusterServiceGrpc;
import io.walletledger.v1.FreezeAccountRequest;
import io.walletledger.v1.GetAccountRequest;
import io.walletledger.v1.GetAccountResponse;
import io.walletledger.v1.GetClusterStatusRequest;
import io.walletledger.v1.GetClusterStatusResponse;
import io.walletledger.v1.GetTransferRequest;
import io.walletledger.v1.HoldResponse;
import io.walletledger.v1.OpenAccountRequest;
import io.walletledger.v1.OpenAccountResult;
import io.walletledger.v1.SetOverdraftLimitRequest;
import io.walletledger.v1.TransferBatchRequest;
import io.walletledger.v1.TransferBatchResponse;
import io.walletledger.v1.TransferError;
import io.walletledger.v1.TransferLegsRequest;
import io.walletledger.v1.TransferRequest;
import io.walletledger.v1.TransferResponse;
import io.walletledger.v1.TransferResult;
import io.walletledger.v1.UnfreezeAccountRequest;
import io.walletledger.v1.VoidTransferRequest;
import io.walletledger.v1.WalletServiceGrpc;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The write API ({@code wallet.v1.WalletService}, plus {@code ClusterService}) over one or more
 * write nodes, with routing and retries. Writes go to the partition leader of the account they
 * debit or open, learnt from NOT_LEADER hints ({@code leader_address}) and cached per account;
 * calls whose outcome is unknown are retried with the same request (the same transaction id)
 * under the {@link RetryPolicy}. Thread-safe: share one client. Close it to close its channels.
 *
 * <pre>{@code
 * try (WalletClient wallet = WalletClient.builder().endpoints("127.0.0.1:50051").build()) {
 *   wallet.openAccount("alice", "USD", false);
 *   wallet.transfer(Transfer.builder().from("issuer").to("alice").amount("1.00").currency("USD").build());
 * }
 * }</pre>
 */
public final class WalletClient implements AutoCloseable {
  /** Channels kept to nodes learnt from leader hints rather than configured. */
  public static final int DISCOVERED_ENDPOINTS_MAX = 16;
  /** Routing keys (accounts) whose last known leader is remembered. */
  public static final int LEADER_CACHE_MAX = 4096;

  private final Channels channels;
  private final Retry retry;
  private final Map<String, String> leaders = new LinkedHashMap<>();

  private WalletClient(Builder b) {
    channels = new Channels(b.endpoints, b.tls, b.token, DISCOVERED_ENDPOINTS_MAX, true);
    retry = new Retry(b.policy);
  }

  public static Builder builder() {
    return new Builder();
  }

  /** A fresh idempotency key (a random canonical UUID); same as {@link Transfer#newTransactionId()}. */
  public static String newTransactionId() {
    return Transfer.newTransactionId();
  }

  /** The configured endpoints ({@code host:port}, duplicates removed), in routing order. */
  public List<String> endpoints() {
    return channels.endpoints();
  }

  public RetryPolicy policy() {
    return retry.policy();
  }

  /** The node last seen leading {@code account}'s partition, or null. */
  public String leader(String account) {
    synchronized (leaders) {
      return leaders.get(account);
    }
  }

  private void remember(String account, String endpoint) {
    synchronized (leaders) {
      if (leaders.size() >= LEADER_CACHE_MAX) {
        leaders.clear();
      }
      leaders.put(account, endpoint);
    }
  }

  /** The channel to {@code endpoint} (token attached), for calls of your own. */
  public Channel channel(String endpoint) {
    return channels.get(endpoint);
  }

  private WalletServiceGrpc.WalletServiceBlockingStub stub(String endpoint, Duration timeout) {
    return WalletServiceGrpc.newBlockingStub(channels.get(endpoint))
        .withDeadlineAfter(timeout.toNanos(), TimeUnit.NANOSECONDS);
  }

  private <T> T call(Retry.Send<T> send, String routingKey) {
    if (routingKey == null || routingKey.isEmpty()) {
      return retry.call(send, channels.endpoints(), null, null);
    }
    return retry.call(send, channels.endpoints(), leader(routingKey),
        endpoint -> remember(routingKey, endpoint));
  }

  /**
   * Opens a single-currency account; the same call again is a no-op success, with other
   * parameters it is {@link RejectedException} ALREADY_EXISTS
   * ({@link Reasons#ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS}).
   */
  public Account openAccount(String accountId, String currency, boolean allowNegativeBalance) {
    return openAccount(openAccountRequest(accountId, currency, allowNegativeBalance, "", Map.of()));
  }

  public Account openAccount(String accountId, String currency) {
    return openAccount(accountId, currency, false);
  }

  /**
   * Opens a single-currency account with the caller's own {@code reference} (a customer
   * number) and string {@code metadata}, both optional ({@code null} or empty: none): set
   * when the account is opened and never changed, returned by every read of it
   * ({@code Account.getReference()} / {@code getMetadataMap()}, and the read node's
   * {@code Balance}). They are among the parameters compared when the account exists
   * already: another reference or other metadata is ALREADY_EXISTS
   * {@link Reasons#ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS}, like another currency. Their limits
   * are a transfer's (see {@link Transfer}: INVALID_ARGUMENT {@link Reasons#INVALID_REFERENCE},
   * {@link Reasons#INVALID_METADATA}; no account is opened).
   */
  public Account openAccount(
      String accountId, String currency, boolean allowNegativeBalance, String reference, Map<String, String> metadata) {
    return openAccount(openAccountRequest(accountId, currency, allowNegativeBalance, reference, metadata));
  }

  /**
   * The {@code OpenAccountRequest} of one account (e.g. an item of {@link #openAccounts}):
   * {@code reference} and {@code metadata} optional ({@code null}: none), null metadata keys
   * or values refused.
   */
  public static OpenAccountRequest openAccountRequest(
      String accountId, String currency, boolean allowNegativeBalance, String reference, Map<String, String> metadata) {
    return OpenAccountRequest.newBuilder()
        .setAccountId(java.util.Objects.requireNonNull(accountId, "accountId"))
        .setCurrency(java.util.Objects.requireNonNull(currency, "currency"))
        .setAllowNegativeBalance(allowNegativeBalance)
        .setReference(reference == null ? "" : reference)
        .putAllMetadata(Transfer.copyOf(metadata))
        .build();
  }

  public Account openAccount(OpenAccountRequest request) {
    return call((e, t) -> stub(e, t).openAccount(request), request.getAccountId()).getAccount();
  }

  /**
   * Bulk opening down one {@code OpenAccounts} stream to the first endpoint; each account's
   * result, in request order. Items the node answers "unavailable" (e.g. NOT_LEADER) are
   * retried one by one through {@link #openAccount(OpenAccountRequest)} (always safe), so each
   * result is "success" or "rejected" unless that retry ran out too ("unavailable"). Each
   * request carries its own reference and metadata ({@link #openAccountRequest}).
   */
  public List<OpenAccountResult> openAccounts(List<OpenAccountRequest> requests) {
    Map<String, OpenAccountResult> byId = new LinkedHashMap<>();
    if (!requests.isEmpty()) {
      try {
        List<OpenAccountResult> streamed = this.<OpenAccountRequest, OpenAccountResult>bidi(
            channels.endpoints().get(0), requests, (stub, observer) -> stub.openAccounts(observer));
        for (OpenAccountResult r : streamed) {
          byId.put(r.getAccountId(), r);
        }
      } catch (WalletException e) {
        // the stream broke or was refused: every item goes through the unary path
      }
    }
    List<OpenAccountResult> results = new ArrayList<>();
    for (OpenAccountRequest request : requests) {
      OpenAccountResult r = byId.get(request.getAccountId());
      if (r == null || !(r.getStatus().equals("success") || r.getStatus().equals("rejected"))) {
        OpenAccountResult.Builder retried =
            OpenAccountResult.newBuilder().setAccountId(request.getAccountId());
        try {
          retried.setStatus("success").setAccount(openAccount(request));
        } catch (WalletException e) {
          retried.setStatus(e.isDefinite() ? "rejected" : "unavailable").setError(toError(e));
        }
        r = retried.build();
      }
      results.add(r);
    }
    return results;
  }

  /**
   * Moves {@code transfer.amount()} and answers once the transfer is final ("success"), with
   * its consistency token. Rejections throw {@link RejectedException}; an unknown outcome after
   * the retries {@link UnavailableException}: call again with the same {@code Transfer} (same
   * transaction id) to learn it — a retry returns the original outcome and never pays twice.
   * The optional {@link Transfer#reference()} and {@link Transfer#metadata()} go with it (see
   * {@link Transfer}).
   */
  public TransferResponse transfer(Transfer transfer) {
    TransferRequest request = transfer.toRequest();
    return call((e, t) -> stub(e, t).transfer(request), transfer.from());
  }

  /**
   * {@code TransferLegs}: a multi-leg transfer. Its legs (1 to 64, all in one currency) move
   * money all together or not at all, applied in order; answers once the set is final, like
   * {@link #transfer(Transfer)} ("success", {@code getTransactionId()},
   * {@code getConsistencyToken()}, {@code getReplayed()}). A refusal moves nothing.
   *
   * <p>Routed to the leader of the partition of the first leg's {@code from} and retried like
   * {@link #transfer(Transfer)}: the same request, same transaction id. After an
   * {@link UnavailableException} call again with the same {@code TransferLegs} to learn the
   * outcome: the same id and legs answer the original one ({@code getReplayed()}); the same id
   * with other legs (or a transfer or hold under it) throws {@link RejectedException}
   * ALREADY_EXISTS {@link Reasons#TRANSACTION_ID_REUSED}.
   *
   * <p>Refusals throw {@link RejectedException}. A refusal of one leg (e.g. FAILED_PRECONDITION
   * {@link Reasons#INSUFFICIENT_FUNDS}, or INVALID_ARGUMENT {@link Reasons#INVALID_AMOUNT} with
   * field {@code legs}) names the index of the first leg refused, 0-based:
   * {@link WalletException#leg()} (ErrorInfo metadata {@link Reasons#METADATA_LEG}). The whole
   * set is refused as INVALID_ARGUMENT (field {@code legs}) {@link Reasons#LEGS_OUT_OF_RANGE} (no
   * legs, more than 64), {@link Reasons#REPEATED_LEG} (two legs with the same from and to: merge
   * them) or {@link Reasons#MIXED_CURRENCIES}.
   *
   * <p>A set may span partitions. It is applied all or none, step by step: every partition's
   * part is checked and its debits taken first, then the home partition (that of the first
   * leg's {@code from}) decides, then every part is resolved; the answer comes once every part
   * is. A refusal by any part refuses the whole set with that part's reason and leg, and
   * nothing moves anywhere. {@code getConsistencyToken()} names a position in every partition
   * the set touches (a retry's may name other ones than the first answer's). Nodes before 0.3,
   * which did not move sets across partitions, refuse such a set as FAILED_PRECONDITION
   * {@link Reasons#LEGS_SPAN_PARTITIONS}.
   */
  public TransferResponse transferLegs(TransferLegs transfer) {
    TransferLegsRequest request = transfer.toRequest();
    String key = transfer.legs().isEmpty() ? null : transfer.legs().get(0).from();
    return call((e, t) -> stub(e, t).transferLegs(request), key);
  }

  /**
   * {@code AuthorizeTransfer}: holds {@code amount} on {@code from} for {@code timeout} (whole
   * milliseconds, 1 ms to 30 days; otherwise {@link Reasons#HOLD_TIMEOUT_OUT_OF_RANGE}): the
   * account's available amount drops, its balance does not, until the hold is captured
   * ({@link #captureTransfer}), voided ({@link #voidTransfer}) or expires. Answers the hold
   * ({@code getTransfer()}, status PENDING, {@code getHold().getExpiresAt()}) and
   * {@code getReplayed()}. Routed and retried as {@link #transfer(Transfer)}: the same
   * {@code transactionId} again answers the original hold.
   */
  public HoldResponse authorizeTransfer(
      String transactionId, String from, String to, String amount, String currency, Duration timeout) {
    return authorizeTransfer(new Transfer(transactionId, from, to, amount, currency), timeout);
  }

  /**
   * {@code AuthorizeTransfer} of {@code hold} (its id, accounts, amount, currency, and its
   * optional {@link Transfer#reference()} and {@link Transfer#metadata()}, which the hold keeps)
   * for {@code timeout}: as {@link #authorizeTransfer(String, String, String, String, String,
   * Duration)}. Build it with {@link Transfer#builder()}.
   */
  public HoldResponse authorizeTransfer(Transfer hold, Duration timeout) {
    java.util.Objects.requireNonNull(timeout, "timeout");
    AuthorizeTransferRequest request = AuthorizeTransferRequest.newBuilder()
        .setTransactionId(hold.transactionId())
        .setFromAccount(hold.from())
        .setToAccount(hold.to())
        .setAmount(hold.amount())
        .setCurrency(hold.currency())
        .setTimeout(com.google.protobuf.Duration.newBuilder()
            .setSeconds(timeout.getSeconds()).setNanos(timeout.getNano()))
        .setReference(hold.reference())
        .putAllMetadata(hold.metadata())
        .build();
    return call((e, t) -> stub(e, t).authorizeTransfer(request), hold.from());
  }

  /**
   * {@code CaptureTransfer}: moves {@code amount} (at most the held amount; {@code null}: all
   * of it) of the hold {@code transactionId} of account {@code from} to its target and
   * releases the rest, exactly once (a retry with the same amount answers the capture,
   * {@code getReplayed()}). Refusals throw {@link RejectedException}:
   * {@link Reasons#HOLD_NOT_FOUND}, {@link Reasons#CAPTURE_EXCEEDS_HOLD},
   * {@link Reasons#HOLD_ALREADY_CAPTURED}, {@link Reasons#HOLD_EXPIRED}, ...
   */
  public HoldResponse captureTransfer(String transactionId, String from, String amount) {
    CaptureTransferRequest request = CaptureTransferRequest.newBuilder()
        .setTransactionId(transactionId)
        .setFromAccount(from)
        .setAmount(amount == null ? "" : amount)
        .build();
    return call((e, t) -> stub(e, t).captureTransfer(request), from);
  }

  /** {@code CaptureTransfer} of the whole hold: {@code captureTransfer(transactionId, from, null)}. */
  public HoldResponse captureTransfer(String transactionId, String from) {
    return captureTransfer(transactionId, from, null);
  }

  /**
   * {@code VoidTransfer}: releases the pending hold {@code transactionId} of account {@code from}
   * (status VOIDED); a retry answers the void ({@code getReplayed()}). Throws
   * {@link RejectedException} {@link Reasons#HOLD_ALREADY_CAPTURED} after a capture,
   * {@link Reasons#HOLD_EXPIRED} after the expiry, ...
   */
  public HoldResponse voidTransfer(String transactionId, String from) {
    VoidTransferRequest request = VoidTransferRequest.newBuilder()
        .setTransactionId(transactionId)
        .setFromAccount(from)
        .build();
    return call((e, t) -> stub(e, t).voidTransfer(request), from);
  }

  /**
   * {@code FreezeAccount}: until unfrozen the account neither sends nor receives (a transfer from
   * or to it, a hold from it, a capture touching it throw {@link RejectedException}
   * {@link Reasons#ACCOUNT_FROZEN}). Answers the account after the change ({@code getStatus()}
   * {@link AccountStatus#ACCOUNT_STATUS_FROZEN}). Idempotent by effect (freezing a frozen account
   * answers it unchanged), so it is routed to the leader of the account's partition and retried
   * like {@link #openAccount(OpenAccountRequest)}. Throws {@link RejectedException}
   * {@link Reasons#ACCOUNT_NOT_FOUND}, {@link Reasons#ACCOUNT_CLOSED}; needs the admin scope when
   * the nodes check tokens.
   */
  public Account freezeAccount(String accountId) {
    FreezeAccountRequest request = FreezeAccountRequest.newBuilder().setAccountId(accountId).build();
    return call((e, t) -> stub(e, t).freezeAccount(request), accountId).getAccount();
  }

  /**
   * {@code UnfreezeAccount}: the account sends and receives again ({@code getStatus()}
   * {@link AccountStatus#ACCOUNT_STATUS_ACTIVE}). Idempotent, routed and retried like
   * {@link #freezeAccount}.
   */
  public Account unfreezeAccount(String accountId) {
    UnfreezeAccountRequest request = UnfreezeAccountRequest.newBuilder().setAccountId(accountId).build();
    return call((e, t) -> stub(e, t).unfreezeAccount(request), accountId).getAccount();
  }

  /**
   * {@code CloseAccount}: closes the account for good ({@link AccountStatus#ACCOUNT_STATUS_CLOSED}):
   * afterwards it neither sends nor receives ({@link Reasons#ACCOUNT_CLOSED}) and stays readable.
   * Only at a zero balance (else {@link RejectedException} {@link Reasons#ACCOUNT_NOT_EMPTY}),
   * with no pending hold from it ({@link Reasons#ACCOUNT_HAS_PENDING_HOLDS}) and no
   * cross-partition transfer from it in flight ({@link Reasons#ACCOUNT_HAS_TRANSFERS_IN_FLIGHT}:
   * call again shortly). Idempotent, routed and retried like {@link #freezeAccount}.
   */
  public Account closeAccount(String accountId) {
    CloseAccountRequest request = CloseAccountRequest.newBuilder().setAccountId(accountId).build();
    return call((e, t) -> stub(e, t).closeAccount(request), accountId).getAccount();
  }

  /**
   * {@code SetOverdraftLimit}: how far below zero the ordinary account may go; {@code limit} is
   * a decimal string in {@code currency}, the account's ("50.00"; "0" for none, the default). A
   * transfer or hold then throws {@link Reasons#INSUFFICIENT_FUNDS} only beyond the available
   * amount plus the limit. Answers the account ({@code getOverdraftLimit()} set). Throws
   * {@link RejectedException} {@link Reasons#OVERDRAFT_UNLIMITED} for an account opened with
   * {@code allowNegativeBalance}, {@link Reasons#CURRENCY_MISMATCH} for another currency,
   * {@link Reasons#INVALID_AMOUNT} for a malformed limit. Idempotent, routed and retried like
   * {@link #freezeAccount}.
   */
  public Account setOverdraftLimit(String accountId, String limit, String currency) {
    SetOverdraftLimitRequest request = SetOverdraftLimitRequest.newBuilder()
        .setAccountId(accountId)
        .setOverdraftLimit(limit)
        .setCurrency(currency)
        .build();
    return call((e, t) -> stub(e, t).setOverdraftLimit(request), accountId).getAccount();
  }

  /**
   * {@code TransferBatch}: 1 to 1,024 transfers, each decided on its own, one result per
   * transfer in order. Sent to the leader of the first transfer's source account and retried
   * as a whole with the same ids (safe). Items answered "unavailable" (their source partition
   * is led elsewhere) are then retried one by one through {@link #transfer(Transfer)}.
   */
  public List<TransferResult> transferBatch(List<Transfer> transfers) {
    TransferBatchRequest.Builder batch = TransferBatchRequest.newBuilder();
    for (Transfer t : transfers) {
      batch.addTransfers(t.toRequest());
    }
    TransferBatchRequest request = batch.build();
    String key = transfers.isEmpty() ? null : transfers.get(0).from();
    TransferBatchResponse response = call((e, t) -> stub(e, t).transferBatch(request), key);
    List<TransferResult> results = new ArrayList<>(response.getResultsList());
    for (int i = 0; i < results.size() && i < transfers.size(); i++) {
      if (results.get(i).getStatus().equals("unavailable")) {
        results.set(i, transferResult(transfers.get(i)));
      }
    }
    return results;
  }

  /**
   * {@code SubmitTransfers}: every transfer down one stream to the leader of the first
   * transfer's source account (or the first endpoint); the results as they arrive (any order),
   * each naming its transaction id, "success", "rejected" or "unavailable" (retry that one with
   * the same transaction id, e.g. with {@link #transfer(Transfer)}). Not retried.
   */
  public List<TransferResult> submitTransfers(List<Transfer> transfers) {
    List<TransferRequest> requests = new ArrayList<>();
    for (Transfer t : transfers) {
      requests.add(t.toRequest());
    }
    String node = transfers.isEmpty() ? null : leader(transfers.get(0).from());
    return this.<TransferRequest, TransferResult>bidi(
        node == null ? channels.endpoints().get(0) : node, requests,
        (stub, observer) -> stub.submitTransfers(observer));
  }

  /**
   * The raw {@code SubmitTransfers} stream to {@code endpoint}: write requests to the returned
   * observer (then {@code onCompleted()}), results arrive on {@code results}.
   */
  public StreamObserver<TransferRequest> submitTransfersStream(
      String endpoint, StreamObserver<TransferResult> results) {
    return WalletServiceGrpc.newStub(channels.get(endpoint)).submitTransfers(results);
  }

  /** The raw {@code OpenAccounts} stream to {@code endpoint}. */
  public StreamObserver<OpenAccountRequest> openAccountsStream(
      String endpoint, StreamObserver<OpenAccountResult> results) {
    return WalletServiceGrpc.newStub(channels.get(endpoint)).openAccounts(results);
  }

  /** The authoritative account, read linearizably, with the position it reflects. */
  public GetAccountResponse getAccount(String accountId) {
    GetAccountRequest request = GetAccountRequest.newBuilder().setAccountId(accountId).build();
    return call((e, t) -> stub(e, t).getAccount(request), accountId);
  }

  /** A transfer's status and outcome; {@link RejectedException} NOT_FOUND if unknown. */
  public io.walletledger.v1.Transfer getTransfer(String transactionId) {
    GetTransferRequest request =
        GetTransferRequest.newBuilder().setTransactionId(transactionId).build();
    return call((e, t) -> stub(e, t).getTransfer(request), null).getTransfer();
  }

  /** {@code ClusterService.GetClusterStatus} of the first write node that answers. */
  public GetClusterStatusResponse getClusterStatus(boolean includeStateDigest) {
    GetClusterStatusRequest request =
        GetClusterStatusRequest.newBuilder().setIncludeStateDigest(includeStateDigest).build();
    return call((e, t) -> ClusterServiceGrpc.newBlockingStub(channels.get(e))
        .withDeadlineAfter(t.toNanos(), TimeUnit.NANOSECONDS).getClusterStatus(request), null);
  }

  /** {@code ClusterService.GetClusterStatus} of one node (no retry). */
  public GetClusterStatusResponse getClusterStatus(String endpoint, boolean includeStateDigest) {
    try {
      return ClusterServiceGrpc.newBlockingStub(channels.get(endpoint))
          .withDeadlineAfter(retry.policy().callTimeout().toNanos(), TimeUnit.NANOSECONDS)
          .getClusterStatus(GetClusterStatusRequest.newBuilder()
              .setIncludeStateDigest(includeStateDigest).build());
    } catch (RuntimeException e) {
      throw Errors.classify(e);
    }
  }

  private TransferResult transferResult(Transfer transfer) {
    TransferResult.Builder r = TransferResult.newBuilder().setTransactionId(transfer.transactionId());
    try {
      TransferResponse response = transfer(transfer);
      return r.setStatus("success").setConsistencyToken(response.getConsistencyToken())
          .setReplayed(response.getReplayed()).build();
    } catch (WalletException e) {
      return r.setStatus(e.isDefinite() ? "rejected" : "unavailable").setError(toError(e))
          .setReplayed(e.isDefinite() && e.replayed()).build();
    }
  }

  static TransferError toError(WalletException e) {
    return TransferError.newBuilder()
        .setCode(e.code().value())
        .setReason(e.reason())
        .setMessage(e.statusMessage())
        .setField(e.field().orElse(""))
        .build();
  }

  private interface Opener<Q, R> {
    StreamObserver<Q> open(WalletServiceGrpc.WalletServiceStub stub, StreamObserver<R> responses);
  }

  /** Sends every request down one bidi stream and gathers every result until it ends. */
  private <Q, R> List<R> bidi(String endpoint, List<Q> requests, Opener<Q, R> opener) {
    List<R> results = new ArrayList<>();
    CompletableFuture<List<R>> done = new CompletableFuture<>();
    WalletServiceGrpc.WalletServiceStub stub = WalletServiceGrpc.newStub(channels.get(endpoint))
        .withDeadlineAfter(retry.policy().totalDeadline().toNanos(), TimeUnit.NANOSECONDS);
    StreamObserver<Q> out = opener.open(stub, new StreamObserver<R>() {
      @Override
      public void onNext(R value) {
        synchronized (results) {
          results.add(value);
        }
      }

      @Override
      public void onError(Throwable t) {
        done.completeExceptionally(t);
      }

      @Override
      public void onCompleted() {
        synchronized (results) {
          done.complete(new ArrayList<>(results));
        }
      }
    });
    try {
      for (Q q : requests) {
        out.onNext(q);
      }
      out.onCompleted();
    } catch (RuntimeException e) {
      out.onError(e);
      throw Errors.classify(e);
    }
    try {
      return done.get(retry.policy().totalDeadline().toMillis() + 1000, TimeUnit.MILLISECONDS);
    } catch (ExecutionException e) {
      throw Errors.classify(e.getCause());
    } catch (TimeoutException e) {
      throw Errors.deadlineExceeded("the stream did not end in time");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw Errors.classify(e);
    }
  }

  /** Closes the channels (calls in flight fail). */
  @Override
  public void close() {
    channels.close();
  }

  /** Options: endpoints (required), TLS, bearer token, retry policy. */
  public static final class Builder {
    private List<String> endpoints = List.of();
    private TlsConfig tls;
    private String token;
    private RetryPolicy policy = RetryPolicy.defaults();

    /** Write nodes: {@code host:port}, {@code http://host:port} or (TLS) {@code https://host:port}. */
    public Builder endpoints(String... endpoints) {
      return endpoints(Arrays.asList(endpoints));
    }

    public Builder endpoints(List<String> endpoints) {
      this.endpoints = List.copyOf(endpoints);
      return this;
    }

    /** Switches every channel to TLS. */
    public Builder tls(TlsConfig tls) {
      this.tls = tls;
      return this;
    }

    /** Sent as {@code authorization: Bearer <token>} on every call, streams included. */
    public Builder token(String token) {
      this.token = token;
      return this;
    }

    public Builder retryPolicy(RetryPolicy policy) {
      this.policy = policy;
      return this;
    }

    public WalletClient build() {
      return new WalletClient(this);
    }
  }
}
