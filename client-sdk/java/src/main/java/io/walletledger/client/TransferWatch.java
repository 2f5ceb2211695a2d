package io.walletledger.client;

import io.grpc.Channel;
import io.walletledger.v1.QueryServiceGrpc;
import io.walletledger.v1.TransferUpdate;
import io.walletledger.v1.WatchTransferRequest;
import java.util.Iterator;
import java.util.List;
import java.util.function.Function;

/**
 * {@code WatchTransfer} that resumes by itself: the transfer's current state, then every
 * change until a final one (then it ends). After a disconnect it calls again on the next read
 * endpoint and drops the states already delivered (by {@code version}).
 */
public final class TransferWatch extends ResumingStream<TransferUpdate> {
  private final String transactionId;
  private final Function<Channel, QueryServiceGrpc.QueryServiceBlockingStub> stubs;
  private long lastVersion;

  TransferWatch(
      List<String> endpoints,
      Function<String, Channel> channels,
      Function<Channel, QueryServiceGrpc.QueryServiceBlockingStub> stubs,
      String transactionId,
      int resumesMax) {
    super(endpoints, channels, resumesMax);
    this.transactionId = transactionId;
    this.stubs = stubs;
  }

  @Override
  protected Iterator<TransferUpdate> open(Channel channel) {
    return stubs.apply(channel).watchTransfer(
        WatchTransferRequest.newBuilder().setTransactionId(transactionId).build());
  }

  @Override
  protected boolean accept(TransferUpdate update) {
    long version = Integer.toUnsignedLong(update.getVersion());
    if (version <= lastVersion) {
      return false;
    }
    lastVersion = version;
    return true;
  }

  @Override
  protected boolean isLast(TransferUpdate update) {
    return update.getIsFinal();
  }
}
