// Unit tests of the hold calls (authorizeTransfer, captureTransfer, voidTransfer) against
// in-process fake write nodes (@grpc/grpc-js on loopback ports): the request carries the
// fields and goes to the leader of fromAccount (following a NOT_LEADER hint) with the
// no-forward header; replayed comes back; a refusal surfaces with its reason (node --test).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Metadata, Server, ServerCredentials, status as Code, type sendUnaryData, type ServerUnaryCall, type ServiceError } from "@grpc/grpc-js";

import { NO_FORWARD_HEADER, REASON_NOT_LEADER, Rejected, WalletClient, durationOfMs, newTransactionId, wallet } from "../src";
import { ErrorInfo } from "../src/gen/google/rpc/error_details";
import { Status } from "../src/gen/google/rpc/status";
import {
  type AuthorizeTransferRequest,
  type CaptureTransferRequest,
  type HoldResponse,
  type VoidTransferRequest,
  WalletServiceService,
} from "../src/gen/wallet/v1/wallet";

function richError(code: Code, reason: string, metadata: Record<string, string> = {}): Partial<ServiceError> {
  const info = ErrorInfo.encode({ reason, domain: "wallet.ledger", metadata }).finish();
  const status = Status.encode({
    code,
    message: reason,
    details: [{ typeUrl: "type.googleapis.com/google.rpc.ErrorInfo", value: Buffer.from(info) }],
  }).finish();
  const trailers = new Metadata();
  trailers.set("grpc-status-details-bin", Buffer.from(status));
  return { code, details: reason, metadata: trailers };
}

type HoldRequest = AuthorizeTransferRequest | CaptureTransferRequest | VoidTransferRequest;

/** A write node's hold calls: each recorded (method, request, no-forward header), answered by `answer`. */
class FakeHolds {
  readonly server = new Server();
  address = "";
  seen: { method: string; request: HoldRequest; noForward: string[] }[] = [];
  answer: (method: string, request: HoldRequest) => HoldResponse | Partial<ServiceError> = (_method, request) => ({
    transfer: { ...wallet.Transfer.fromPartial({ transactionId: request.transactionId, status: wallet.TransferStatus.TRANSFER_STATUS_PENDING }) },
    replayed: false,
    consistencyToken: "hold",
  });

  async start(): Promise<void> {
    const handle =
      (method: string) =>
      (call: ServerUnaryCall<HoldRequest, HoldResponse>, reply: sendUnaryData<HoldResponse>): void => {
        this.seen.push({ method, request: call.request, noForward: call.metadata.get(NO_FORWARD_HEADER).map(String) });
        const answer = this.answer(method, call.request);
        if ("replayed" in answer) reply(null, answer as HoldResponse);
        else reply(answer as Partial<ServiceError>);
      };
    this.server.addService(WalletServiceService, {
      authorizeTransfer: handle("AuthorizeTransfer"),
      captureTransfer: handle("CaptureTransfer"),
      voidTransfer: handle("VoidTransfer"),
    } as never);
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))),
    );
    this.address = `127.0.0.1:${port}`;
  }
}

const FAST = { callTimeoutMs: 2000, totalDeadlineMs: 4000, attemptsMax: 4, backoffBaseMs: 1, backoffMaxMs: 5 };

describe("holds", () => {
  const leader = new FakeHolds();
  const follower = new FakeHolds();
  before(async () => {
    await leader.start();
    await follower.start();
    follower.answer = () => richError(Code.UNAVAILABLE, REASON_NOT_LEADER, { leader_id: "2", leader_address: leader.address });
  });
  after(() => {
    leader.server.forceShutdown();
    follower.server.forceShutdown();
  });

  it("sends the fields to the leader of fromAccount, with the no-forward header, and passes replayed on", async () => {
    const client = new WalletClient([follower.address, leader.address], FAST);
    try {
      const id = newTransactionId();
      const held = await client.authorizeTransfer({
        transactionId: id,
        fromAccount: "alice",
        toAccount: "bob",
        amount: "10.00",
        currency: "USD",
        timeoutMs: 90_500,
      });
      assert.equal(held.transfer?.transactionId, id);
      assert.equal(held.transfer?.status, wallet.TransferStatus.TRANSFER_STATUS_PENDING);
      assert.equal(held.replayed, false);
      assert.equal(client.leader("alice"), leader.address);
      await client.captureTransfer({ transactionId: id, fromAccount: "alice", amount: "4.00" });
      await client.captureTransfer({ transactionId: id, fromAccount: "alice" });
      leader.answer = (_method, request) => ({ transfer: wallet.Transfer.fromPartial({ transactionId: request.transactionId }), replayed: true, consistencyToken: "" });
      assert.equal((await client.voidTransfer({ transactionId: id, fromAccount: "alice" })).replayed, true);

      assert.deepEqual(follower.seen.map((s) => s.method), ["AuthorizeTransfer"]);
      assert.deepEqual(leader.seen.map((s) => s.method), ["AuthorizeTransfer", "CaptureTransfer", "CaptureTransfer", "VoidTransfer"]);
      assert.deepEqual(leader.seen[0].request, {
        transactionId: id,
        fromAccount: "alice",
        toAccount: "bob",
        amount: "10.00",
        currency: "USD",
        timeout: { seconds: "90", nanos: 500_000_000 },
        reference: "",
        metadata: {},
      });
      assert.deepEqual(leader.seen[1].request, { transactionId: id, fromAccount: "alice", amount: "4.00" });
      assert.deepEqual(leader.seen[2].request, { transactionId: id, fromAccount: "alice", amount: "" });
      assert.deepEqual(leader.seen[3].request, { transactionId: id, fromAccount: "alice" });
      for (const s of [...follower.seen, ...leader.seen]) assert.deepEqual(s.noForward, ["sdk"]);
    } finally {
      client.close();
    }
  });

  it("surfaces HOLD_EXPIRED as its reason, unretried", async () => {
    const node = new FakeHolds();
    await node.start();
    node.answer = () => richError(Code.FAILED_PRECONDITION, "HOLD_EXPIRED");
    const client = new WalletClient([node.address], FAST);
    try {
      await assert.rejects(client.captureTransfer({ transactionId: newTransactionId(), fromAccount: "alice", amount: "1.00" }), (error: unknown) => {
        assert.ok(error instanceof Rejected);
        assert.equal(error.reason, "HOLD_EXPIRED");
        assert.equal(error.code, Code.FAILED_PRECONDITION);
        return true;
      });
      assert.equal(node.seen.length, 1);
    } finally {
      client.close();
      node.server.forceShutdown();
    }
  });

  it("converts milliseconds to a Duration", () => {
    assert.deepEqual(durationOfMs(1), { seconds: "0", nanos: 1_000_000 });
    assert.deepEqual(durationOfMs(30 * 24 * 3600 * 1000), { seconds: "2592000", nanos: 0 });
    assert.throws(() => durationOfMs(-1), RangeError);
  });
});
