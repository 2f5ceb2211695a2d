package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertThrows;

import io.grpc.Server;
import io.grpc.Status;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import io.walletledger.v1.AuthorizeTransferRequest;
import io.walletledger.v1.GetTransferRequest;
import io.walletledger.v1.GetTransferResponse;
import io.walletledger.v1.HoldResponse;
import io.walletledger.v1.TransferBatchRequest;
import io.walletledger.v1.TransferBatchResponse;
import io.walletledger.v1.TransferRequest;
import io.walletledger.v1.TransferResponse;
import io.walletledger.v1.TransferResult;
import io.walletledger.v1.TransferStatus;
import io.walletledger.v1.WalletServiceGrpc;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.After;
import org.junit.Test;

/**
 * A transfer's optional reference and metadata against a fake write node on a loopback
 * socket: {@code transfer}, {@code transferBatch}, {@code submitTransfers} and
 * {@code authorizeTransfer} put them in the request (empty when not given), and
 * {@code getTransfer} hands back what the node answers; the {@link Transfer} record keeps an
 * unmodifiable copy and compares them.
 */
public class AnnotationsTest {
  static final Map<String, String> METADATA = Map.of("channel", "sdk-java", "note", "ünïcode ✓");

  final List<Server> servers = new ArrayList<>();

  @After
  public void stop() throws InterruptedException {
    for (Server s : servers) {
      s.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /** How each request came ("unary", "batch", "stream", "authorize"), its id, reference and metadata. */
  record Seen(String how, String id, String reference, Map<String, String> metadata) {}

  Server node(List<Seen> seen) throws Exception {
    WalletServiceGrpc.WalletServiceImplBase service = new WalletServiceGrpc.WalletServiceImplBase() {
      @Override
      public void transfer(TransferRequest r, StreamObserver<TransferResponse> out) {
        seen.add(new Seen("unary", r.getTransactionId(), r.getReference(), r.getMetadataMap()));
        out.onNext(TransferResponse.newBuilder().setStatus("success").setTransactionId(r.getTransactionId()).build());
        out.onCompleted();
      }

      @Override
      public void transferBatch(TransferBatchRequest request, StreamObserver<TransferBatchResponse> out) {
        TransferBatchResponse.Builder response = TransferBatchResponse.newBuilder();
        for (TransferRequest r : request.getTransfersList()) {
          seen.add(new Seen("batch", r.getTransactionId(), r.getReference(), r.getMetadataMap()));
          response.addResults(TransferResult.newBuilder().setTransactionId(r.getTransactionId()).setStatus("success"));
        }
        out.onNext(response.build());
        out.onCompleted();
      }

      @Override
      public StreamObserver<TransferRequest> submitTransfers(StreamObserver<TransferResult> out) {
        return new StreamObserver<>() {
          @Override
          public void onNext(TransferRequest r) {
            seen.add(new Seen("stream", r.getTransactionId(), r.getReference(), r.getMetadataMap()));
            out.onNext(TransferResult.newBuilder().setTransactionId(r.getTransactionId()).setStatus("success").build());
          }

          @Override
          public void onError(Throwable t) {}

          @Override
          public void onCompleted() {
            out.onCompleted();
          }
        };
      }

      @Override
      public void authorizeTransfer(AuthorizeTransferRequest r, StreamObserver<HoldResponse> out) {
        seen.add(new Seen("authorize", r.getTransactionId(), r.getReference(), r.getMetadataMap()));
        out.onNext(HoldResponse.newBuilder().setTransfer(io.walletledger.v1.Transfer.newBuilder()
            .setTransactionId(r.getTransactionId()).setStatus(TransferStatus.TRANSFER_STATUS_PENDING)
            .setReference(r.getReference()).putAllMetadata(r.getMetadataMap())).build());
        out.onCompleted();
      }

      @Override
      public void getTransfer(GetTransferRequest request, StreamObserver<GetTransferResponse> out) {
        for (int i = seen.size() - 1; i >= 0; i--) {
          Seen s = seen.get(i);
          if (s.id().equals(request.getTransactionId())) {
            out.onNext(GetTransferResponse.newBuilder().setTransfer(io.walletledger.v1.Transfer.newBuilder()
                .setTransactionId(s.id()).setStatus(TransferStatus.TRANSFER_STATUS_COMPLETED)
                .setReference(s.reference()).putAllMetadata(s.metadata())).build());
            out.onCompleted();
            return;
          }
        }
        out.onError(Status.NOT_FOUND.asRuntimeException());
      }
    };
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(service).build().start();
    servers.add(server);
    return server;
  }

  @Test
  public void transferSendsReferenceAndMetadataAndGetTransferReturnsThem() throws Exception {
    List<Seen> seen = new CopyOnWriteArrayList<>();
    Server server = node(seen);
    Transfer annotated = Transfer.builder().from("a").to("b").amount("1.00").currency("USD")
        .reference("order-42").metadata(METADATA).build();
    Transfer plain = new Transfer(Transfer.newTransactionId(), "a", "b", "1.00", "USD");
    try (WalletClient wallet = WalletClient.builder().endpoints("127.0.0.1:" + server.getPort()).build()) {
      wallet.transfer(annotated);
      wallet.transfer(plain);
      io.walletledger.v1.Transfer got = wallet.getTransfer(annotated.transactionId());
      assertEquals("order-42", got.getReference());
      assertEquals(METADATA, got.getMetadataMap());
    }
    assertEquals(List.of(
        new Seen("unary", annotated.transactionId(), "order-42", METADATA),
        new Seen("unary", plain.transactionId(), "", Map.of())), seen);
  }

  @Test
  public void batchStreamAndHoldCarryEachItemsOwn() throws Exception {
    List<Seen> seen = new CopyOnWriteArrayList<>();
    Server server = node(seen);
    try (WalletClient wallet = WalletClient.builder().endpoints("127.0.0.1:" + server.getPort()).build()) {
      wallet.transferBatch(List.of(
          Transfer.builder().transactionId("t1").from("a").to("b").amount("1.00").currency("USD")
              .reference("r1").putMetadata("k", "v1").build(),
          Transfer.builder().transactionId("t2").from("a").to("b").amount("2.00").currency("USD")
              .reference("r2").build()));
      List<TransferResult> streamed = wallet.submitTransfers(List.of(
          Transfer.builder().transactionId("s1").from("a").to("b").amount("1.00").currency("USD")
              .reference("r3").putMetadata("k", "v3").build()));
      assertEquals("success", streamed.get(0).getStatus());
      Transfer hold = Transfer.builder().transactionId("h1").from("a").to("b").amount("5.00").currency("USD")
          .reference("inv-7").putMetadata("channel", "pos").build();
      HoldResponse held = wallet.authorizeTransfer(hold, Duration.ofMinutes(1));
      assertEquals("inv-7", held.getTransfer().getReference());
      assertEquals(Map.of("channel", "pos"), held.getTransfer().getMetadataMap());
      wallet.authorizeTransfer("h2", "a", "b", "5.00", "USD", Duration.ofMinutes(1));
    }
    assertEquals(List.of(
        new Seen("batch", "t1", "r1", Map.of("k", "v1")),
        new Seen("batch", "t2", "r2", Map.of()),
        new Seen("stream", "s1", "r3", Map.of("k", "v3")),
        new Seen("authorize", "h1", "inv-7", Map.of("channel", "pos")),
        new Seen("authorize", "h2", "", Map.of())), seen);
  }

  @Test
  public void theRecordKeepsAnUnmodifiableCopyAndComparesThem() {
    Map<String, String> metadata = new HashMap<>(Map.of("k", "v"));
    Transfer t = new Transfer("id", "a", "b", "1.00", "USD", null, metadata);
    metadata.put("k", "changed");
    assertEquals("", t.reference());
    assertEquals(Map.of("k", "v"), t.metadata());
    assertThrows(UnsupportedOperationException.class, () -> t.metadata().put("x", "y"));
    assertEquals(t, t.toBuilder().build());
    assertNotEquals(t, t.toBuilder().putMetadata("k", "other").build());
    assertNotEquals(t, t.toBuilder().reference("r").build());
    assertEquals(new Transfer("id", "a", "b", "1.00", "USD"), new Transfer("id", "a", "b", "1.00", "USD", "", null));
    assertEquals(Map.of("k", "v"), t.toRequest().getMetadataMap());
    Map<String, String> withNull = new HashMap<>();
    withNull.put("k", null);
    assertThrows(NullPointerException.class, () -> new Transfer("id", "a", "b", "1", "USD", "", withNull));
  }

  @Test
  public void theNewReasonsAreKnown() {
    assertEquals("INVALID_REFERENCE", Reasons.INVALID_REFERENCE);
    assertEquals("INVALID_METADATA", Reasons.INVALID_METADATA);
  }
}
