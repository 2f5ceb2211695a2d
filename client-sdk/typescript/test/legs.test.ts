// Unit tests of transferLegs (TransferLegs, multi-leg transfers) against in-process fake write
// nodes (@grpc/grpc-js on loopback ports): the request carries the legs in order (accounts,
// amounts as decimal strings, currency), the reference and metadata, and goes to the leader of
// the first leg's fromAccount (following a NOT_LEADER hint) with the no-forward header; a
// transaction id the client makes is a UUID, kept on every retry (UNAVAILABLE: the same
// request again) and handed back on the response and on the error; a refusal exposes the
// `leg` of its ErrorInfo metadata and is not retried; the four reasons are known (node --test).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Metadata, Server, ServerCredentials, status as Code, type sendUnaryData, type ServerUnaryCall, type ServiceError } from "@grpc/grpc-js";

import {
  Indefinite,
  METADATA_LEG,
  NO_FORWARD_HEADER,
  REASONS,
  REASON_NOT_LEADER,
  Rejected,
  WalletClient,
  newTransactionId,
  transferLegsRequest,
  type TransferLegParams,
} from "../src";
import { ErrorInfo } from "../src/gen/google/rpc/error_details";
import { Status } from "../src/gen/google/rpc/status";
import { type TransferLegsRequest, type TransferResponse, WalletServiceService } from "../src/gen/wallet/v1/wallet";

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

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

/** A write node's TransferLegs: each request recorded (with the no-forward header), answered by `answer`. */
class FakeLegs {
  readonly server = new Server();
  address = "";
  seen: { request: TransferLegsRequest; noForward: string[] }[] = [];
  answer: (request: TransferLegsRequest) => TransferResponse | Partial<ServiceError> = (request) => ({
    status: "success",
    transactionId: request.transactionId,
    consistencyToken: "legs",
    replayed: false,
  });

  async start(): Promise<void> {
    this.server.addService(WalletServiceService, {
      transferLegs: (call: ServerUnaryCall<TransferLegsRequest, TransferResponse>, reply: sendUnaryData<TransferResponse>): void => {
        this.seen.push({ request: call.request, noForward: call.metadata.get(NO_FORWARD_HEADER).map(String) });
        const answer = this.answer(call.request);
        if ("status" in answer && typeof answer.status === "string") reply(null, answer as TransferResponse);
        else reply(answer as Partial<ServiceError>);
      },
    } as never);
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))),
    );
    this.address = `127.0.0.1:${port}`;
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

async function started(): Promise<FakeLegs> {
  const node = new FakeLegs();
  await node.start();
  return node;
}

const FAST = { callTimeoutMs: 2000, totalDeadlineMs: 4000, attemptsMax: 4, backoffBaseMs: 1, backoffMaxMs: 5 };
const LEGS: TransferLegParams[] = [
  { fromAccount: "alice", toAccount: "bob", amount: "30.00", currency: "USD" },
  { fromAccount: "alice", toAccount: "carol", amount: "20.00", currency: "USD" },
  { fromAccount: "bob", toAccount: "dave", amount: "10.5", currency: "USD" },
];

describe("transferLegs", () => {
  const leader = new FakeLegs();
  const follower = new FakeLegs();
  before(async () => {
    await leader.start();
    await follower.start();
    follower.answer = () => richError(Code.UNAVAILABLE, REASON_NOT_LEADER, { leader_id: "2", leader_address: leader.address });
  });
  after(() => {
    leader.stop();
    follower.stop();
  });

  it("sends the legs in order, the reference and metadata, to the leader of the first leg's fromAccount", async () => {
    const client = new WalletClient([follower.address, leader.address], FAST);
    try {
      const id = newTransactionId();
      const metadata: Record<string, string> = { channel: "sdk-ts", note: "ünïcode ✓" };
      const legs = LEGS.map((leg) => ({ ...leg }));
      const done = await client.transferLegs({ transactionId: id, legs, reference: "order-7", metadata });
      assert.deepEqual(done, { status: "success", transactionId: id, consistencyToken: "legs", replayed: false });
      assert.equal(client.leader("alice"), leader.address);
      await client.transferLegs({ transactionId: newTransactionId(), legs: [LEGS[0]] });
      assert.equal(follower.seen.length, 1); // then straight to the known leader
      assert.equal(leader.seen.length, 2);
      const expected = {
        transactionId: id,
        legs: [
          { fromAccount: "alice", toAccount: "bob", amount: "30.00", currency: "USD" },
          { fromAccount: "alice", toAccount: "carol", amount: "20.00", currency: "USD" },
          { fromAccount: "bob", toAccount: "dave", amount: "10.5", currency: "USD" },
        ],
        reference: "order-7",
        metadata: { channel: "sdk-ts", note: "ünïcode ✓" },
      };
      assert.deepEqual(leader.seen[0].request, expected);
      assert.deepEqual(follower.seen[0].request, expected); // a redirect sends the same request
      assert.deepEqual([leader.seen[1].request.reference, leader.seen[1].request.metadata], ["", {}]);
      for (const s of [...follower.seen, ...leader.seen]) assert.deepEqual(s.noForward, ["sdk"]);
    } finally {
      client.close();
    }
  });

  it("builds the request from copies, with a fresh UUID when no id is given", () => {
    const legs = LEGS.map((leg) => ({ ...leg }));
    const metadata: Record<string, string> = { k: "v" };
    const request = transferLegsRequest({ legs, metadata });
    legs[0].amount = "99.00";
    metadata.k = "changed";
    assert.match(request.transactionId, UUID_V4);
    assert.notEqual(transferLegsRequest({ legs }).transactionId, request.transactionId);
    assert.deepEqual(request.legs, LEGS);
    assert.deepEqual([request.reference, request.metadata], ["", { k: "v" }]);
    assert.equal(transferLegsRequest({ transactionId: "mine", legs: [] }).transactionId, "mine");
    assert.throws(() => transferLegsRequest({ legs: [null as never] }), TypeError);
    assert.throws(() => transferLegsRequest({ legs: "x" as never }), TypeError);
    assert.throws(() => transferLegsRequest({ legs, metadata: new Map() as never }), TypeError);
  });

  it("makes a UUID when no id is given and keeps it on every retry", async () => {
    const node = await started();
    let calls = 0;
    node.answer = (request) =>
      ++calls <= 2
        ? richError(Code.UNAVAILABLE, "OUTCOME_UNKNOWN")
        : { status: "success", transactionId: request.transactionId, consistencyToken: "legs", replayed: true };
    const client = new WalletClient([node.address], FAST);
    try {
      const done = await client.transferLegs({ legs: LEGS, reference: "r" });
      const ids = node.seen.map((s) => s.request.transactionId);
      assert.equal(ids.length, 3);
      assert.equal(new Set(ids).size, 1);
      assert.match(ids[0], UUID_V4);
      assert.equal(done.transactionId, ids[0]);
      assert.equal(done.replayed, true);
      for (const s of node.seen) assert.deepEqual(s.request, node.seen[0].request); // the same request each time
    } finally {
      client.close();
      node.stop();
    }
  });

  it("hands the id it made back on an unknown outcome", async () => {
    const node = await started();
    node.answer = () => richError(Code.UNAVAILABLE, "OUTCOME_UNKNOWN");
    const client = new WalletClient([node.address], FAST);
    try {
      await assert.rejects(client.transferLegs({ legs: LEGS }), (error: unknown) => {
        assert.ok(error instanceof Indefinite, `${error}`);
        assert.equal(error.reason, "OUTCOME_UNKNOWN");
        assert.equal(error.transactionId, node.seen[0].request.transactionId);
        return true;
      });
      assert.equal(node.seen.length, FAST.attemptsMax);
    } finally {
      client.close();
      node.stop();
    }
  });

  it("exposes the refused leg, unretried", async () => {
    const node = await started();
    node.answer = () => richError(Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", { [METADATA_LEG]: "2" });
    const client = new WalletClient([node.address], FAST);
    try {
      await assert.rejects(client.transferLegs({ legs: LEGS }), (error: unknown) => {
        assert.ok(error instanceof Rejected, `${error}`);
        assert.deepEqual([error.code, error.reason, error.leg], [Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", 2]);
        assert.equal(error.details.metadata[METADATA_LEG], "2");
        assert.equal(error.transactionId, node.seen[0].request.transactionId);
        return true;
      });
      node.answer = () => richError(Code.INVALID_ARGUMENT, "REPEATED_LEG");
      await assert.rejects(client.transferLegs({ transactionId: "t", legs: [LEGS[0], LEGS[0]] }), (error: unknown) => {
        assert.ok(error instanceof Rejected, `${error}`);
        assert.deepEqual([error.reason, error.leg, error.transactionId], ["REPEATED_LEG", undefined, "t"]);
        return true;
      });
      assert.equal(node.seen.length, 2); // definite: each sent once
      for (const [value, want] of [["0", 0], ["17", 17], ["", undefined], ["-1", undefined], ["x", undefined]] as const) {
        node.answer = () => richError(Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", { [METADATA_LEG]: value });
        await assert.rejects(client.transferLegs({ legs: LEGS }), (error: unknown) => {
          assert.ok(error instanceof Rejected);
          assert.equal(error.leg, want, value);
          return true;
        });
      }
    } finally {
      client.close();
      node.stop();
    }
  });

  it("knows the reasons of TransferLegs", () => {
    for (const reason of ["LEGS_OUT_OF_RANGE", "REPEATED_LEG", "MIXED_CURRENCIES", "LEGS_SPAN_PARTITIONS"]) {
      assert.ok(REASONS.has(reason), reason);
    }
  });
});
