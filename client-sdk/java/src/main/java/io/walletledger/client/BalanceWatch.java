package io.walletledger.client;

import io.grpc.Channel;
import io.walletledger.v1.BalanceUpdate;
import io.walletledger.v1.QueryServiceGrpc;
import io.walletledger.v1.WatchBalancesRequest;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * {@code WatchBalances} that resumes by itself: every account's current balance (or, for an
 * account resumed from a sequence, the changes after it), then every change, per account in
 * sequence order with no gap and no duplicate. After a disconnect, a node restart or a
 * WATCH_LAGGED cut-off it calls again (on the next read endpoint) with
 * {@code resume_after_sequence} = the last sequence it delivered per account, and drops any
 * update at or below it. Iterate it; {@link #close()} ends it.
 */
public final class BalanceWatch extends ResumingStream<BalanceUpdate> {
  private final List<String> accountIds;
  private final Map<String, Long> last;
  private final Function<Channel, QueryServiceGrpc.QueryServiceBlockingStub> stubs;

  BalanceWatch(
      List<String> endpoints,
      Function<String, Channel> channels,
      Function<Channel, QueryServiceGrpc.QueryServiceBlockingStub> stubs,
      List<String> accountIds,
      Map<String, Long> resumeAfter,
      int resumesMax) {
    super(endpoints, channels, resumesMax);
    this.accountIds = List.copyOf(accountIds);
    this.last = new HashMap<>(resumeAfter);
    this.stubs = stubs;
  }

  @Override
  protected Iterator<BalanceUpdate> open(Channel channel) {
    WatchBalancesRequest request = WatchBalancesRequest.newBuilder()
        .addAllAccountIds(accountIds)
        .putAllResumeAfterSequence(last)
        .build();
    return stubs.apply(channel).watchBalances(request);
  }

  @Override
  protected boolean accept(BalanceUpdate update) {
    if (!update.hasBalance()) {
      return false;
    }
    String account = update.getBalance().getAccountId();
    long sequence = update.getBalance().getSequence();
    Long seen = last.get(account);
    if (seen != null && Long.compareUnsigned(sequence, seen) <= 0) {
      return false; // delivered before a reconnect: never hand it out twice
    }
    last.put(account, sequence);
    return true;
  }

  /** The last sequence delivered per account (what a resume asks to continue after). */
  public synchronized Map<String, Long> lastSequences() {
    return Map.copyOf(last);
  }
}
