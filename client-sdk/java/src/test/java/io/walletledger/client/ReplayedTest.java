package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import io.grpc.Server;
import io.grpc.Status;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import io.walletledger.v1.TransferBatchRequest;
import io.walletledger.v1.TransferBatchResponse;
import io.walletledger.v1.TransferError;
import io.walletledger.v1.TransferRequest;
import io.walletledger.v1.TransferResponse;
import io.walletledger.v1.TransferResult;
import io.walletledger.v1.WalletServiceGrpc;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.After;
import org.junit.Test;

/**
 * The replayed flag: {@code TransferResponse.replayed} and {@code TransferResult.replayed} reach
 * the caller, and a rejection says it in {@link WalletException#replayed()} (ErrorInfo metadata
 * {@code replayed} = "true"). A fake node finds the ids starting with "again" recorded.
 */
public class ReplayedTest {
  Server server;

  @After
  public void stop() throws InterruptedException {
    if (server != null) {
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  static boolean again(String id) {
    return id.startsWith("again");
  }

  static final WalletServiceGrpc.WalletServiceImplBase NODE = new WalletServiceGrpc.WalletServiceImplBase() {
    @Override
    public void transfer(TransferRequest request, StreamObserver<TransferResponse> out) {
      String id = request.getTransactionId();
      if (request.getAmount().equals("100.00")) {
        out.onError(ErrorsTest.rich(Status.Code.FAILED_PRECONDITION, "low",
            again(id) ? ErrorsTest.info(Reasons.INSUFFICIENT_FUNDS, Reasons.METADATA_REPLAYED, "true")
                : ErrorsTest.info(Reasons.INSUFFICIENT_FUNDS)));
        return;
      }
      out.onNext(TransferResponse.newBuilder().setStatus("success").setTransactionId(id)
          .setConsistencyToken("u").setReplayed(again(id)).build());
      out.onCompleted();
    }

    @Override
    public void transferBatch(TransferBatchRequest request, StreamObserver<TransferBatchResponse> out) {
      TransferBatchResponse.Builder response = TransferBatchResponse.newBuilder();
      for (TransferRequest t : request.getTransfersList()) {
        TransferResult.Builder r = TransferResult.newBuilder().setTransactionId(t.getTransactionId());
        if (t.getAmount().equals("7.00")) {
          // Led elsewhere: the SDK retries it alone through transfer().
          r.setStatus("unavailable").setError(TransferError.newBuilder()
              .setCode(Status.Code.UNAVAILABLE.value()).setReason(Reasons.NOT_LEADER));
        } else if (t.getAmount().equals("100.00")) {
          r.setStatus("rejected").setReplayed(again(t.getTransactionId())).setError(TransferError.newBuilder()
              .setCode(Status.Code.FAILED_PRECONDITION.value()).setReason(Reasons.INSUFFICIENT_FUNDS));
        } else {
          r.setStatus("success").setConsistencyToken("b").setReplayed(again(t.getTransactionId()));
        }
        response.addResults(r);
      }
      out.onNext(response.build());
      out.onCompleted();
    }
  };

  WalletClient client() throws Exception {
    server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0)).addService(NODE).build().start();
    RetryPolicy quick = RetryPolicy.builder().backoffBase(Duration.ofMillis(1)).backoffMax(Duration.ofMillis(5)).build();
    return WalletClient.builder().endpoints("127.0.0.1:" + server.getPort()).retryPolicy(quick).build();
  }

  static Transfer transfer(String id, String amount) {
    return Transfer.builder().transactionId(id).from("a").to("b").amount(amount).currency("USD").build();
  }

  @Test
  public void errorInfoMetadataSaysReplayed() {
    assertTrue(Errors.classify(ErrorsTest.rich(Status.Code.FAILED_PRECONDITION, "low",
        ErrorsTest.info(Reasons.INSUFFICIENT_FUNDS, Reasons.METADATA_REPLAYED, "true"))).replayed());
    assertFalse(Errors.classify(ErrorsTest.rich(Status.Code.FAILED_PRECONDITION, "low",
        ErrorsTest.info(Reasons.INSUFFICIENT_FUNDS))).replayed());
    assertFalse(Errors.classify(ErrorsTest.rich(Status.Code.FAILED_PRECONDITION, "low",
        ErrorsTest.info(Reasons.INSUFFICIENT_FUNDS, Reasons.METADATA_REPLAYED, "false"))).replayed());
  }

  @Test
  public void transferAndRejectionCarryReplayed() throws Exception {
    try (WalletClient wallet = client()) {
      for (String id : List.of("again-1", "fresh-1")) {
        assertEquals(again(id), wallet.transfer(transfer(id, "1.00")).getReplayed());
        try {
          wallet.transfer(transfer(id, "100.00"));
          fail("expected a rejection");
        } catch (RejectedException e) {
          assertEquals(Reasons.INSUFFICIENT_FUNDS, e.reason());
          assertEquals(again(id), e.replayed());
        }
      }
    }
  }

  @Test
  public void batchResultsCarryReplayedIncludingThoseRetriedAlone() throws Exception {
    try (WalletClient wallet = client()) {
      List<TransferResult> results = wallet.transferBatch(List.of(
          transfer("again-2", "1.00"), transfer("fresh-2", "1.00"),
          transfer("again-3", "100.00"), transfer("fresh-3", "100.00"),
          transfer("again-4", "7.00"), transfer("fresh-4", "7.00")));
      boolean[] expected = {true, false, true, false, true, false};
      for (int i = 0; i < expected.length; i++) {
        assertEquals(results.get(i).getTransactionId(), expected[i], results.get(i).getReplayed());
      }
      assertEquals("rejected", results.get(2).getStatus());
      assertEquals("success", results.get(4).getStatus()); // retried alone, unary
    }
  }
}
