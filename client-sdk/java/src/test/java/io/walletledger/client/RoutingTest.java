package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import io.walletledger.v1.TransferRequest;
import io.walletledger.v1.TransferResponse;
import io.walletledger.v1.WalletServiceGrpc;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.After;
import org.junit.Test;

/**
 * {@code WalletClient} against fake write nodes on loopback sockets: a follower's NOT_LEADER
 * redirect is followed at once and the leader remembered per account; an unknown outcome is
 * retried with the very same request; a rejection is not retried; the token rides along.
 */
public class RoutingTest {
  final List<Server> servers = new ArrayList<>();

  @After
  public void stop() throws InterruptedException {
    for (Server s : servers) {
      s.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /** A write node: records what reached it, and answers with {@code answer}. */
  interface Answer {
    void answer(TransferRequest request, StreamObserver<TransferResponse> out);
  }

  Server node(List<String> log, String name, List<String> authorization, Answer answer) throws Exception {
    WalletServiceGrpc.WalletServiceImplBase service = new WalletServiceGrpc.WalletServiceImplBase() {
      @Override
      public void transfer(TransferRequest request, StreamObserver<TransferResponse> out) {
        log.add(name + " " + request.getTransactionId());
        answer.answer(request, out);
      }
    };
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(ServerInterceptors.intercept(service, WatchResumeTest.recordAuthorization(authorization)))
        .build().start();
    servers.add(server);
    return server;
  }

  static void success(TransferRequest request, StreamObserver<TransferResponse> out) {
    out.onNext(TransferResponse.newBuilder().setStatus("success")
        .setTransactionId(request.getTransactionId()).setConsistencyToken("v1.0.7").build());
    out.onCompleted();
  }

  @Test
  public void followsLeaderHintsAndRemembersTheLeader() throws Exception {
    List<String> log = new CopyOnWriteArrayList<>();
    List<String> authorization = new CopyOnWriteArrayList<>();
    Server leader = node(log, "leader", authorization, RoutingTest::success);
    String leaderAddress = "127.0.0.1:" + leader.getPort();
    Server follower = node(log, "follower", authorization, (request, out) ->
        out.onError(StatusProto.toStatusRuntimeException(com.google.rpc.Status.newBuilder()
            .setCode(Status.Code.UNAVAILABLE.value()).setMessage("not the leader")
            .addDetails(com.google.protobuf.Any.pack(ErrorsTest.info(Reasons.NOT_LEADER,
                Reasons.METADATA_LEADER_ADDRESS, "http://" + leaderAddress)))
            .build())));
    try (WalletClient wallet = WalletClient.builder()
        .endpoints("127.0.0.1:" + follower.getPort(), leaderAddress).token("s3cret").build()) {
      Transfer t = Transfer.builder().from("alice").to("bob").amount("1.00").currency("USD").build();
      TransferResponse r = wallet.transfer(t);
      assertEquals(t.transactionId(), r.getTransactionId());
      assertEquals(List.of("follower " + t.transactionId(), "leader " + t.transactionId()), log);
      assertEquals(leaderAddress, wallet.leader("alice"));
      // The next transfer from alice goes straight to the leader.
      Transfer next = Transfer.builder().from("alice").to("bob").amount("2.00").currency("USD").build();
      wallet.transfer(next);
      assertEquals("leader " + next.transactionId(), log.get(2));
      assertEquals(3, log.size());
    }
    assertEquals(List.of("Bearer s3cret", "Bearer s3cret", "Bearer s3cret"), authorization);
  }

  /** Records each call's {@code wallet-no-forward} header ("" when absent). */
  static ServerInterceptor recordNoForward(List<String> seen) {
    return new ServerInterceptor() {
      @Override
      public <Q, R> ServerCall.Listener<Q> interceptCall(
          ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
        String value = headers.get(Channels.NO_FORWARD);
        seen.add(value == null ? "" : value);
        return next.startCall(call, headers);
      }
    };
  }

  @Test
  public void asksNotToBeForwardedOnlyGivenSeveralEndpoints() throws Exception {
    List<String> noForward = new CopyOnWriteArrayList<>();
    List<String> authorization = new CopyOnWriteArrayList<>();
    WalletServiceGrpc.WalletServiceImplBase service = new WalletServiceGrpc.WalletServiceImplBase() {
      @Override
      public void transfer(TransferRequest request, StreamObserver<TransferResponse> out) {
        success(request, out);
      }
    };
    Server node = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(ServerInterceptors.intercept(service, recordNoForward(noForward),
            WatchResumeTest.recordAuthorization(authorization)))
        .build().start();
    servers.add(node);
    String address = "127.0.0.1:" + node.getPort();
    Transfer t = Transfer.builder().from("alice").to("bob").amount("1.00").currency("USD").build();
    // Every write node (the second is never dialled: the first answers): the client routes itself.
    try (WalletClient wallet = WalletClient.builder().endpoints(address, "127.0.0.1:1").token("s3cret").build()) {
      wallet.transfer(t);
    }
    assertEquals(List.of(Channels.NO_FORWARD_VALUE), noForward);
    // One address (here spelt twice): the nodes forward, so nothing is sent.
    try (WalletClient wallet = WalletClient.builder().endpoints(address, "http://" + address + "/").token("s3cret").build()) {
      wallet.transfer(t);
    }
    assertEquals(List.of(Channels.NO_FORWARD_VALUE, ""), noForward);
    assertEquals(List.of("Bearer s3cret", "Bearer s3cret"), authorization);
  }

  @Test
  public void retriesUnknownOutcomesWithTheSameRequestButNotRejections() throws Exception {
    List<String> log = new CopyOnWriteArrayList<>();
    int[] calls = {0};
    Server flaky = node(log, "n", new CopyOnWriteArrayList<>(), (request, out) -> {
      if (++calls[0] < 3) {
        out.onError(Status.UNAVAILABLE.withDescription("restarting").asRuntimeException());
      } else if (request.getAmount().equals("0.001")) {
        out.onError(StatusProto.toStatusRuntimeException(com.google.rpc.Status.newBuilder()
            .setCode(Status.Code.INVALID_ARGUMENT.value()).setMessage("too many digits")
            .addDetails(com.google.protobuf.Any.pack(ErrorsTest.info(Reasons.INVALID_AMOUNT)))
            .addDetails(com.google.protobuf.Any.pack(ErrorsTest.field("amount"))).build()));
      } else {
        success(request, out);
      }
    });
    RetryPolicy quick = RetryPolicy.builder().backoffBase(Duration.ofMillis(1)).backoffMax(Duration.ofMillis(5)).build();
    try (WalletClient wallet = WalletClient.builder().endpoints("127.0.0.1:" + flaky.getPort())
        .retryPolicy(quick).build()) {
      Transfer t = Transfer.builder().from("a").to("b").amount("1.00").currency("USD").build();
      assertEquals("success", wallet.transfer(t).getStatus());
      assertEquals(List.of("n " + t.transactionId(), "n " + t.transactionId(), "n " + t.transactionId()), log);
      Transfer bad = t.toBuilder().transactionId(Transfer.newTransactionId()).amount("0.001").build();
      try {
        wallet.transfer(bad);
        fail("expected a rejection");
      } catch (RejectedException e) {
        assertEquals(Reasons.INVALID_AMOUNT, e.reason());
        assertEquals("amount", e.field().get());
      }
      assertEquals(4, log.size()); // not retried
    }
  }

  @Test
  public void deadEndpointsGiveAnIndefiniteErrorInTime() {
    RetryPolicy policy = RetryPolicy.builder().totalDeadline(Duration.ofSeconds(1)).attemptsMax(3)
        .backoffBase(Duration.ofMillis(5)).backoffMax(Duration.ofMillis(20)).build();
    long started = System.nanoTime();
    try (WalletClient wallet = WalletClient.builder().endpoints("127.0.0.1:1").retryPolicy(policy).build()) {
      wallet.getAccount("alice");
      fail("a dead node answered");
    } catch (UnavailableException e) {
      assertEquals(Status.Code.UNAVAILABLE, e.code());
      assertEquals(Reasons.TRANSPORT_ERROR, e.reason());
    }
    assertTrue(System.nanoTime() - started < TimeUnit.SECONDS.toNanos(2));
  }
}
