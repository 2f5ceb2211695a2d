package io.walletledger.client;

import io.grpc.Channel;
import io.walletledger.v1.BalanceUpdate;
import io.walletledger.v1.GetBalanceAtRequest;
import io.walletledger.v1.GetBalanceAtResponse;
import io.walletledger.v1.GetBalanceRequest;
import io.walletledger.v1.GetBalanceResponse;
import io.walletledger.v1.ListTransfersRequest;
import io.walletledger.v1.ListTransfersResponse;
import io.walletledger.v1.QueryServiceGrpc;
import io.walletledger.v1.TransferUpdate;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * The read API ({@code wallet.v1.QueryService}) of one or more read nodes (all fold the same
 * log, so any will do): unary calls move to the next read node when one is unreachable, and
 * watches resume on any of them from the last sequence delivered. TLS and token as for
 * {@link WalletClient}. Thread-safe; close it to close its channels.
 */
public final class QueryClient implements AutoCloseable {
  private final Channels channels;
  private final Retry retry;
  private final int watchResumesMax;

  private QueryClient(Builder b) {
    channels = new Channels(b.endpoints, b.tls, b.token, 0, false);
    retry = new Retry(b.policy);
    watchResumesMax = b.watchResumesMax;
  }

  public static Builder builder() {
    return new Builder();
  }

  public List<String> endpoints() {
    return channels.endpoints();
  }

  /** The channel to {@code endpoint} (token attached), for calls of your own. */
  public Channel channel(String endpoint) {
    return channels.get(endpoint);
  }

  private QueryServiceGrpc.QueryServiceBlockingStub stub(String endpoint, Duration timeout) {
    return QueryServiceGrpc.newBlockingStub(channels.get(endpoint))
        .withDeadlineAfter(timeout.toNanos(), TimeUnit.NANOSECONDS);
  }

  private <T> T call(Retry.Send<T> send) {
    return retry.call(send, channels.endpoints(), null, null);
  }

  /** The projected balance. */
  public GetBalanceResponse getBalance(String accountId) {
    return getBalance(accountId, "");
  }

  /**
   * The projected balance; with a consistency token from the write API (e.g.
   * {@code TransferResponse.getConsistencyToken()}), at least that fresh (read-your-writes).
   */
  public GetBalanceResponse getBalance(String accountId, String consistencyToken) {
    GetBalanceRequest request = GetBalanceRequest.newBuilder()
        .setAccountId(accountId)
        .setConsistencyToken(consistencyToken == null ? "" : consistencyToken)
        .build();
    return call((e, t) -> stub(e, t).getBalance(request));
  }

  /** The account's balance changes, newest first; {@code pageToken} "" for the newest page. */
  public ListTransfersResponse listTransfers(String accountId, String pageToken, int pageSize) {
    ListTransfersRequest request = ListTransfersRequest.newBuilder()
        .setAccountId(accountId)
        .setPageToken(pageToken == null ? "" : pageToken)
        .setPageSize(pageSize)
        .build();
    return call((e, t) -> stub(e, t).listTransfers(request));
  }

  /** The balance right after the log entry at {@code position} (a position token). */
  public GetBalanceAtResponse getBalanceAtPosition(String accountId, String position) {
    GetBalanceAtRequest request =
        GetBalanceAtRequest.newBuilder().setAccountId(accountId).setPosition(position).build();
    return call((e, t) -> stub(e, t).getBalanceAt(request));
  }

  /** The balance after the last change at or before {@code timestampMs} (Unix epoch ms). */
  public GetBalanceAtResponse getBalanceAtTime(String accountId, long timestampMs) {
    GetBalanceAtRequest request = GetBalanceAtRequest.newBuilder()
        .setAccountId(accountId).setTimestampMs(timestampMs).build();
    return call((e, t) -> stub(e, t).getBalanceAt(request));
  }

  /**
   * Every account's current balance, then every change, per account in sequence order with no
   * gap and no duplicate, resuming by itself after disconnects (see {@link BalanceWatch}).
   * Iterate it on one thread; {@code close()} it (from any thread) to end it.
   */
  public BalanceWatch watchBalances(List<String> accountIds) {
    return watchBalances(accountIds, Map.of());
  }

  /**
   * {@link #watchBalances(List)}, resuming the accounts in {@code resumeAfter} (account id to
   * the last sequence already seen) with the changes after it instead of a snapshot.
   */
  public BalanceWatch watchBalances(List<String> accountIds, Map<String, Long> resumeAfter) {
    return new BalanceWatch(channels.endpoints(), channels::get,
        QueryServiceGrpc::newBlockingStub, accountIds, resumeAfter, watchResumesMax);
  }

  /**
   * The callback form: {@code onUpdate} gets every update on a daemon thread, {@code onError}
   * a definite failure (or giving up). Close the returned watch to stop.
   */
  public BalanceWatch watchBalances(
      List<String> accountIds,
      Map<String, Long> resumeAfter,
      Consumer<BalanceUpdate> onUpdate,
      Consumer<WalletException> onError) {
    BalanceWatch watch = watchBalances(accountIds, resumeAfter);
    watch.pump("wallet-ledger-watch", onUpdate, onError);
    return watch;
  }

  /**
   * The transfer's current state, then every state change until a final one (then the
   * iterator ends), resuming by itself after disconnects.
   */
  public TransferWatch watchTransfer(String transactionId) {
    return new TransferWatch(channels.endpoints(), channels::get,
        QueryServiceGrpc::newBlockingStub, transactionId, watchResumesMax);
  }

  /** The callback form of {@link #watchTransfer(String)}. */
  public TransferWatch watchTransfer(
      String transactionId, Consumer<TransferUpdate> onUpdate, Consumer<WalletException> onError) {
    TransferWatch watch = watchTransfer(transactionId);
    watch.pump("wallet-ledger-transfer-watch", onUpdate, onError);
    return watch;
  }

  @Override
  public void close() {
    channels.close();
  }

  /** Options: endpoints (required), TLS, bearer token, retry policy, watch resume limit. */
  public static final class Builder {
    private List<String> endpoints = List.of();
    private TlsConfig tls;
    private String token;
    private RetryPolicy policy = RetryPolicy.defaults();
    private int watchResumesMax;

    public Builder endpoints(String... endpoints) {
      return endpoints(Arrays.asList(endpoints));
    }

    public Builder endpoints(List<String> endpoints) {
      this.endpoints = List.copyOf(endpoints);
      return this;
    }

    public Builder tls(TlsConfig tls) {
      this.tls = tls;
      return this;
    }

    public Builder token(String token) {
      this.token = token;
      return this;
    }

    public Builder retryPolicy(RetryPolicy policy) {
      this.policy = policy;
      return this;
    }

    /**
     * Consecutive failed (re)connections (no update in between) after which a watch gives up
     * with the last error; 0 (the default) keeps resuming, like the Rust SDK.
     */
    public Builder watchResumesMax(int n) {
      if (n < 0) {
        throw new IllegalArgumentException("watchResumesMax must be >= 0");
      }
      this.watchResumesMax = n;
      return this;
    }

    public QueryClient build() {
      return new QueryClient(this);
    }
  }
}
