package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
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
import io.walletledger.v1.Balance;
import io.walletledger.v1.BalanceUpdate;
import io.walletledger.v1.QueryServiceGrpc;
import io.walletledger.v1.TransferStatus;
import io.walletledger.v1.TransferUpdate;
import io.walletledger.v1.WatchBalancesRequest;
import io.walletledger.v1.WatchTransferRequest;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.After;
import org.junit.Test;

/**
 * Watch resumption against small fake QueryService servers on real loopback sockets: the first
 * read node sends a few updates and then dies mid-stream, the watch fails over to the second
 * with {@code resume_after_sequence}, which repeats an update (dropped), cuts the watch off
 * (ABORTED WATCH_LAGGED), and is resumed again: every update exactly once, in order.
 */
public class WatchResumeTest {
  final List<Server> servers = new ArrayList<>();

  @After
  public void stop() throws InterruptedException {
    for (Server s : servers) {
      s.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  static BalanceUpdate update(String account, long sequence, String balance, boolean snapshot) {
    return BalanceUpdate.newBuilder()
        .setSnapshot(snapshot)
        .setDelta(snapshot ? "" : "1.00")
        .setBalance(Balance.newBuilder().setAccountId(account).setSequence(sequence)
            .setBalance(balance).setCurrency("USD"))
        .build();
  }

  /** Records the authorization header of every call. */
  static ServerInterceptor recordAuthorization(List<String> seen) {
    return new ServerInterceptor() {
      @Override
      public <Q, R> ServerCall.Listener<Q> interceptCall(
          ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
        String value = headers.get(Channels.AUTHORIZATION);
        seen.add(value == null ? "" : value);
        return next.startCall(call, headers);
      }
    };
  }

  Server start(QueryServiceGrpc.QueryServiceImplBase service, List<String> authorization) throws Exception {
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(ServerInterceptors.intercept(service, recordAuthorization(authorization)))
        .build()
        .start();
    servers.add(server);
    return server;
  }

  @Test
  public void balanceWatchResumesAcrossNodesWithoutGapOrRepeat() throws Exception {
    List<WatchBalancesRequest> firstRequests = new CopyOnWriteArrayList<>();
    List<WatchBalancesRequest> secondRequests = new CopyOnWriteArrayList<>();
    List<String> authorization = new CopyOnWriteArrayList<>();
    CountDownLatch thirdCallOpen = new CountDownLatch(1);
    Server[] first = new Server[1];
    first[0] = start(new QueryServiceGrpc.QueryServiceImplBase() {
      @Override
      public void watchBalances(WatchBalancesRequest request, StreamObserver<BalanceUpdate> out) {
        firstRequests.add(request);
        out.onNext(update("a", 0, "0.00", true));
        out.onNext(update("b", 0, "0.00", true));
        out.onNext(update("a", 1, "1.00", false));
        // Then the node dies mid-stream (no status: the connection just goes away).
        new Thread(() -> {
          try {
            Thread.sleep(200);
          } catch (InterruptedException e) {
            return;
          }
          first[0].shutdownNow();
        }).start();
      }
    }, authorization);
    AtomicInteger calls = new AtomicInteger();
    Server second = start(new QueryServiceGrpc.QueryServiceImplBase() {
      @Override
      public void watchBalances(WatchBalancesRequest request, StreamObserver<BalanceUpdate> out) {
        secondRequests.add(request);
        if (calls.incrementAndGet() == 1) {
          out.onNext(update("a", 1, "1.00", false)); // already delivered: dropped
          out.onNext(update("b", 1, "1.00", false));
          out.onNext(update("a", 2, "2.00", false));
          out.onError(StatusProto.toStatusRuntimeException(com.google.rpc.Status.newBuilder()
              .setCode(Status.Code.ABORTED.value()).setMessage("lagged")
              .addDetails(com.google.protobuf.Any.pack(ErrorsTest.info(Reasons.WATCH_LAGGED)))
              .build()));
        } else {
          out.onNext(update("a", 3, "3.00", false));
          thirdCallOpen.countDown(); // and stays open
        }
      }
    }, authorization);

    List<String> endpoints = List.of("127.0.0.1:" + first[0].getPort(), "127.0.0.1:" + second.getPort());
    List<String> delivered = new ArrayList<>();
    try (QueryClient query = QueryClient.builder().endpoints(endpoints).token("t0k").build()) {
      BalanceWatch watch = query.watchBalances(List.of("a", "b"));
      while (delivered.size() < 6) {
        assertTrue("the watch ended early after " + delivered, watch.hasNext());
        BalanceUpdate u = watch.next();
        delivered.add(u.getBalance().getAccountId() + "#" + u.getBalance().getSequence()
            + (u.getSnapshot() ? " snapshot" : " change"));
      }
      assertEquals(List.of("a#0 snapshot", "b#0 snapshot", "a#1 change", "b#1 change",
          "a#2 change", "a#3 change"), delivered);
      assertTrue(thirdCallOpen.await(5, TimeUnit.SECONDS));
      assertEquals(Map.of("a", 3L, "b", 1L), watch.lastSequences());
      assertTrue("resumed " + watch.resumes() + " times", watch.resumes() >= 2);

      // close() from another thread ends a blocked hasNext().
      new Thread(() -> {
        try {
          Thread.sleep(200);
        } catch (InterruptedException e) {
          return;
        }
        watch.close();
      }).start();
      long started = System.nanoTime();
      assertFalse(watch.hasNext());
      assertTrue(System.nanoTime() - started < TimeUnit.SECONDS.toNanos(3));
    }
    assertEquals(1, firstRequests.size());
    assertEquals(Map.of(), firstRequests.get(0).getResumeAfterSequenceMap());
    assertEquals(List.of("a", "b"), firstRequests.get(0).getAccountIdsList());
    assertEquals(2, secondRequests.size());
    assertEquals(Map.of("a", 1L, "b", 0L), secondRequests.get(0).getResumeAfterSequenceMap());
    assertEquals(Map.of("a", 2L, "b", 1L), secondRequests.get(1).getResumeAfterSequenceMap());
    assertFalse(authorization.isEmpty());
    for (String value : authorization) {
      assertEquals("Bearer t0k", value); // on every stream, resumed ones included
    }
  }

  @Test
  public void definiteErrorsEndTheWatch() throws Exception {
    Server server = start(new QueryServiceGrpc.QueryServiceImplBase() {
      @Override
      public void watchBalances(WatchBalancesRequest request, StreamObserver<BalanceUpdate> out) {
        out.onError(StatusProto.toStatusRuntimeException(com.google.rpc.Status.newBuilder()
            .setCode(Status.Code.INVALID_ARGUMENT.value()).setMessage("no accounts")
            .addDetails(com.google.protobuf.Any.pack(ErrorsTest.info(Reasons.INVALID_ACCOUNT_ID)))
            .addDetails(com.google.protobuf.Any.pack(ErrorsTest.field("account_ids")))
            .build()));
      }
    }, new CopyOnWriteArrayList<>());
    try (QueryClient query = QueryClient.builder().endpoints("127.0.0.1:" + server.getPort()).build();
        BalanceWatch watch = query.watchBalances(List.of())) {
      watch.hasNext();
      fail("an empty watch was accepted");
    } catch (RejectedException e) {
      assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
      assertEquals(Reasons.INVALID_ACCOUNT_ID, e.reason());
      assertEquals("account_ids", e.field().get());
    }
  }

  @Test
  public void transferWatchResumesAndEndsAtTheFinalState() throws Exception {
    AtomicInteger calls = new AtomicInteger();
    Server server = start(new QueryServiceGrpc.QueryServiceImplBase() {
      @Override
      public void watchTransfer(WatchTransferRequest request, StreamObserver<TransferUpdate> out) {
        TransferUpdate inFlight = TransferUpdate.newBuilder().setTransactionId(request.getTransactionId())
            .setStatus(TransferStatus.TRANSFER_STATUS_IN_FLIGHT).setVersion(1).build();
        out.onNext(inFlight);
        if (calls.incrementAndGet() == 1) {
          out.onError(Status.UNAVAILABLE.withDescription("restarting").asRuntimeException());
          return;
        }
        out.onNext(inFlight.toBuilder().setStatus(TransferStatus.TRANSFER_STATUS_COMPLETED)
            .setVersion(2).setIsFinal(true).build());
        out.onCompleted();
      }
    }, new CopyOnWriteArrayList<>());
    List<String> states = new ArrayList<>();
    try (QueryClient query = QueryClient.builder().endpoints("127.0.0.1:" + server.getPort()).build()) {
      TransferWatch watch = query.watchTransfer("tx");
      while (watch.hasNext()) {
        TransferUpdate u = watch.next();
        states.add(u.getVersion() + " " + u.getStatus());
      }
    }
    assertEquals(List.of("1 TRANSFER_STATUS_IN_FLIGHT", "2 TRANSFER_STATUS_COMPLETED"), states);
    assertEquals(2, calls.get());
  }
}
