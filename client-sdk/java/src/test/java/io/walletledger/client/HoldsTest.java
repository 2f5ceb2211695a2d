package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.google.protobuf.Message;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import io.walletledger.v1.AuthorizeTransferRequest;
import io.walletledger.v1.CaptureTransferRequest;
import io.walletledger.v1.HoldResponse;
import io.walletledger.v1.TransferStatus;
import io.walletledger.v1.VoidTransferRequest;
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
 * The hold calls ({@code authorizeTransfer}, {@code captureTransfer}, {@code voidTransfer})
 * against fake write nodes on loopback sockets: the request carries the fields, goes to the
 * leader of {@code from} (following a NOT_LEADER hint) with {@code wallet-no-forward}, the
 * replayed flag comes back, and a refusal surfaces with its reason, unretried.
 */
public class HoldsTest {
  final List<Server> servers = new ArrayList<>();

  @After
  public void stop() throws InterruptedException {
    for (Server s : servers) {
      s.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /** What a fake node answers to every hold call: a HoldResponse, or a status to fail with. */
  interface Answer {
    Object answer(Message request);
  }

  Server node(List<Message> seen, List<String> noForward, Answer answer) throws Exception {
    WalletServiceGrpc.WalletServiceImplBase service = new WalletServiceGrpc.WalletServiceImplBase() {
      @Override
      public void authorizeTransfer(AuthorizeTransferRequest request, StreamObserver<HoldResponse> out) {
        respond(request, out);
      }

      @Override
      public void captureTransfer(CaptureTransferRequest request, StreamObserver<HoldResponse> out) {
        respond(request, out);
      }

      @Override
      public void voidTransfer(VoidTransferRequest request, StreamObserver<HoldResponse> out) {
        respond(request, out);
      }

      void respond(Message request, StreamObserver<HoldResponse> out) {
        seen.add(request);
        Object a = answer.answer(request);
        if (a instanceof HoldResponse r) {
          out.onNext(r);
          out.onCompleted();
        } else {
          out.onError(StatusProto.toStatusRuntimeException((com.google.rpc.Status) a));
        }
      }
    };
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(ServerInterceptors.intercept(service, RoutingTest.recordNoForward(noForward)))
        .build().start();
    servers.add(server);
    return server;
  }

  static HoldResponse pending(String transactionId, boolean replayed) {
    return HoldResponse.newBuilder().setReplayed(replayed).setTransfer(io.walletledger.v1.Transfer.newBuilder()
        .setTransactionId(transactionId).setStatus(TransferStatus.TRANSFER_STATUS_PENDING)).build();
  }

  static com.google.rpc.Status refusal(Status.Code code, String reason, String... metadata) {
    return com.google.rpc.Status.newBuilder().setCode(code.value()).setMessage(reason)
        .addDetails(com.google.protobuf.Any.pack(ErrorsTest.info(reason, metadata))).build();
  }

  @Test
  public void requestsCarryTheFieldsAndGoToTheLeaderOfFrom() throws Exception {
    List<Message> leaderSeen = new CopyOnWriteArrayList<>();
    List<Message> followerSeen = new CopyOnWriteArrayList<>();
    List<String> noForward = new CopyOnWriteArrayList<>();
    Server leader = node(leaderSeen, noForward, request -> pending(
        request instanceof VoidTransferRequest v ? v.getTransactionId() : "", request instanceof VoidTransferRequest));
    String leaderAddress = "127.0.0.1:" + leader.getPort();
    Server follower = node(followerSeen, noForward, request -> refusal(Status.Code.UNAVAILABLE,
        Reasons.NOT_LEADER, Reasons.METADATA_LEADER_ADDRESS, "http://" + leaderAddress));
    String id = Transfer.newTransactionId();
    try (WalletClient wallet = WalletClient.builder()
        .endpoints("127.0.0.1:" + follower.getPort(), leaderAddress).build()) {
      HoldResponse held = wallet.authorizeTransfer(id, "alice", "bob", "10.00", "USD", Duration.ofMillis(90_500));
      assertEquals(TransferStatus.TRANSFER_STATUS_PENDING, held.getTransfer().getStatus());
      assertFalse(held.getReplayed());
      assertEquals(leaderAddress, wallet.leader("alice"));
      wallet.captureTransfer(id, "alice", "4.00");
      wallet.captureTransfer(id, "alice");
      HoldResponse voided = wallet.voidTransfer(id, "alice");
      assertTrue(voided.getReplayed());
      assertEquals(id, voided.getTransfer().getTransactionId());
    }
    assertEquals(1, followerSeen.size());
    assertEquals(4, leaderSeen.size());
    AuthorizeTransferRequest authorize = (AuthorizeTransferRequest) leaderSeen.get(0);
    assertEquals(List.of(id, "alice", "bob", "10.00", "USD"), List.of(authorize.getTransactionId(),
        authorize.getFromAccount(), authorize.getToAccount(), authorize.getAmount(), authorize.getCurrency()));
    assertEquals(90, authorize.getTimeout().getSeconds());
    assertEquals(500_000_000, authorize.getTimeout().getNanos());
    CaptureTransferRequest part = (CaptureTransferRequest) leaderSeen.get(1);
    assertEquals(List.of(id, "alice", "4.00"), List.of(part.getTransactionId(), part.getFromAccount(), part.getAmount()));
    assertEquals("", ((CaptureTransferRequest) leaderSeen.get(2)).getAmount());
    VoidTransferRequest v = (VoidTransferRequest) leaderSeen.get(3);
    assertEquals(List.of(id, "alice"), List.of(v.getTransactionId(), v.getFromAccount()));
    assertEquals(List.of(Channels.NO_FORWARD_VALUE, Channels.NO_FORWARD_VALUE, Channels.NO_FORWARD_VALUE,
        Channels.NO_FORWARD_VALUE, Channels.NO_FORWARD_VALUE), noForward);
  }

  @Test
  public void holdExpiredSurfacesAsItsReason() throws Exception {
    List<Message> seen = new CopyOnWriteArrayList<>();
    Server node = node(seen, new CopyOnWriteArrayList<>(),
        request -> refusal(Status.Code.FAILED_PRECONDITION, Reasons.HOLD_EXPIRED));
    try (WalletClient wallet = WalletClient.builder().endpoints("127.0.0.1:" + node.getPort()).build()) {
      wallet.captureTransfer(Transfer.newTransactionId(), "alice", "1.00");
      fail("expected HOLD_EXPIRED");
    } catch (RejectedException e) {
      assertEquals("HOLD_EXPIRED", e.reason());
      assertEquals(Status.Code.FAILED_PRECONDITION, e.code());
    }
    assertEquals(1, seen.size());
  }
}
