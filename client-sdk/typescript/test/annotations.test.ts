// Unit tests of a transfer's optional reference and metadata against an in-process fake write
// node and read node (@grpc/grpc-js on loopback ports): transfer() (unary and down the
// stream), transferBatch() and authorizeTransfer() put them in the request, empty when not
// given; getTransfer() and watchTransfer() hand back what the nodes answer, with the
// TransferUpdate's `status` (wallet.TransferStatus) (node --test).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Server, ServerCredentials, status as Code, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall, type ServerWritableStream } from "@grpc/grpc-js";

import { QueryClient, WalletClient, newTransactionId, transferRequest, wallet } from "../src";
import { QueryServiceService, TransferState, type TransferUpdate, type WatchTransferRequest } from "../src/gen/wallet/v1/query";
import {
  type AuthorizeTransferRequest,
  type GetTransferRequest,
  type TransferBatchRequest,
  type TransferRequest,
  type TransferResult,
  WalletServiceService,
} from "../src/gen/wallet/v1/wallet";

const FAST = { callTimeoutMs: 2000, totalDeadlineMs: 4000, attemptsMax: 4, backoffBaseMs: 1, backoffMaxMs: 5 };
const METADATA = { channel: "sdk-typescript", note: "ünïcode ✓" };

async function listen(server: Server): Promise<string> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return `127.0.0.1:${port}`;
}

/** A write node that records every transfer-like request (how it came) and answers success. */
class FakeNode {
  readonly server = new Server();
  address = "";
  seen: { how: string; request: TransferRequest | AuthorizeTransferRequest }[] = [];

  async start(): Promise<void> {
    const unimplemented = (_: unknown, callback: sendUnaryData<unknown>) => callback({ code: Code.UNIMPLEMENTED, details: "fake" });
    this.server.addService(WalletServiceService, {
      transfer: (call: ServerUnaryCall<TransferRequest, unknown>, callback: sendUnaryData<unknown>) => {
        this.seen.push({ how: "unary", request: call.request });
        callback(null, { status: "success", transactionId: call.request.transactionId, consistencyToken: "u", replayed: false });
      },
      submitTransfers: (call: ServerDuplexStream<TransferRequest, TransferResult>) => {
        call.on("data", (r: TransferRequest) => {
          this.seen.push({ how: "stream", request: r });
          call.write({ transactionId: r.transactionId, status: "success", consistencyToken: "s", error: undefined, replayed: false });
        });
        call.on("end", () => call.end());
      },
      transferBatch: (call: ServerUnaryCall<TransferBatchRequest, unknown>, callback: sendUnaryData<unknown>) => {
        for (const r of call.request.transfers) this.seen.push({ how: "batch", request: r });
        callback(null, {
          results: call.request.transfers.map((r): TransferResult => ({ transactionId: r.transactionId, status: "success", consistencyToken: "b", error: undefined, replayed: false })),
        });
      },
      authorizeTransfer: (call: ServerUnaryCall<AuthorizeTransferRequest, unknown>, callback: sendUnaryData<unknown>) => {
        this.seen.push({ how: "authorize", request: call.request });
        const r = call.request;
        callback(null, {
          transfer: wallet.Transfer.fromPartial({ transactionId: r.transactionId, status: wallet.TransferStatus.TRANSFER_STATUS_PENDING, reference: r.reference, metadata: r.metadata }),
          replayed: false,
          consistencyToken: "h",
        });
      },
      getTransfer: (call: ServerUnaryCall<GetTransferRequest, unknown>, callback: sendUnaryData<unknown>) => {
        const last = [...this.seen].reverse().find((s) => s.request.transactionId === call.request.transactionId);
        if (last === undefined) return callback({ code: Code.NOT_FOUND, details: "no" });
        const r = last.request;
        callback(null, {
          transfer: wallet.Transfer.fromPartial({
            transactionId: r.transactionId,
            fromAccount: r.fromAccount,
            toAccount: r.toAccount,
            amount: r.amount,
            currency: r.currency,
            status: wallet.TransferStatus.TRANSFER_STATUS_COMPLETED,
            reference: r.reference,
            metadata: r.metadata,
          }),
        });
      },
      openAccount: unimplemented,
      openAccounts: () => {},
      getAccount: unimplemented,
    } as never);
    this.address = await listen(this.server);
  }
}

describe("transfer reference and metadata", () => {
  const node = new FakeNode();
  const clients: WalletClient[] = [];
  const client = (pipelineTransfers: boolean) => {
    const c = new WalletClient([node.address], { ...FAST, pipelineTransfers });
    clients.push(c);
    return c;
  };
  before(() => node.start());
  after(() => {
    for (const c of clients) c.close();
    node.server.forceShutdown();
  });

  for (const pipelined of [true, false]) {
    it(`transfer() sends them ${pipelined ? "down the stream" : "unary"}, empty when not given; getTransfer() returns them`, async () => {
      node.seen = [];
      const w = client(pipelined);
      const [tx, plain] = [newTransactionId(), newTransactionId()];
      await w.transfer({ transactionId: tx, fromAccount: "a", toAccount: "b", amount: "1.00", currency: "USD", reference: "order-42", metadata: METADATA });
      await w.transfer({ transactionId: plain, fromAccount: "a", toAccount: "b", amount: "1.00", currency: "USD" });
      assert.deepEqual(node.seen.map((s) => s.how), pipelined ? ["stream", "stream"] : ["unary", "unary"]);
      assert.deepEqual(node.seen.map((s) => [s.request.transactionId, s.request.reference, s.request.metadata]), [
        [tx, "order-42", METADATA],
        [plain, "", {}],
      ]);
      const got = await w.getTransfer(tx);
      assert.deepEqual([got.reference, got.metadata], ["order-42", METADATA]);
    });
  }

  it("transferBatch() sends each item's own", async () => {
    node.seen = [];
    const outcomes = await client(true).transferBatch([
      { transactionId: "t1", fromAccount: "a", toAccount: "b", amount: "1.00", currency: "USD", reference: "r1", metadata: { k: "v1" } },
      { transactionId: "t2", fromAccount: "a", toAccount: "b", amount: "2.00", currency: "USD", reference: "r2" },
    ]);
    assert.equal(outcomes.length, 2);
    assert.deepEqual(node.seen.map((s) => [s.how, s.request.transactionId, s.request.reference, s.request.metadata]), [
      ["batch", "t1", "r1", { k: "v1" }],
      ["batch", "t2", "r2", {}],
    ]);
  });

  it("authorizeTransfer() sends them and the hold carries them", async () => {
    node.seen = [];
    const held = await client(true).authorizeTransfer({
      transactionId: "h1", fromAccount: "a", toAccount: "b", amount: "5.00", currency: "USD", timeoutMs: 60_000, reference: "inv-7", metadata: { channel: "pos" },
    });
    assert.deepEqual([held.transfer?.reference, held.transfer?.metadata], ["inv-7", { channel: "pos" }]);
    assert.deepEqual(node.seen.map((s) => [s.how, s.request.reference, s.request.metadata]), [["authorize", "inv-7", { channel: "pos" }]]);
  });

  it("transferRequest() copies metadata and refuses what is not an object of strings", () => {
    const metadata = { a: "1" };
    const request = transferRequest({ transactionId: "t", fromAccount: "a", toAccount: "b", amount: "1", currency: "USD", metadata });
    metadata.a = "changed";
    assert.deepEqual([request.reference, request.metadata], ["", { a: "1" }]);
    const base = { transactionId: "t", fromAccount: "a", toAccount: "b", amount: "1", currency: "USD" };
    assert.throws(() => transferRequest({ ...base, metadata: new Map([["a", "1"]]) as never }), TypeError);
    assert.throws(() => transferRequest({ ...base, metadata: { a: 1 } as never }), TypeError);
  });
});

describe("watchTransfer status and annotations", () => {
  const server = new Server();
  let address = "";
  before(async () => {
    server.addService(QueryServiceService, {
      watchTransfer: (call: ServerWritableStream<WatchTransferRequest, TransferUpdate>) => {
        const update: TransferUpdate = {
          transactionId: call.request.transactionId,
          fromAccount: "a",
          toAccount: "b",
          amount: "1.00",
          amountMinor: "100",
          currency: "USD",
          state: TransferState.TRANSFER_STATE_COMPLETED,
          rejectReason: "",
          version: 1,
          isFinal: true,
          position: "",
          timestampMs: "0",
          status: wallet.TransferStatus.TRANSFER_STATUS_COMPLETED,
          reference: "order-9",
          metadata: { channel: "web" },
        };
        call.write(update);
        call.end();
      },
    } as never);
    address = await listen(server);
  });
  after(() => server.forceShutdown());

  it("passes status (wallet.TransferStatus), reference and metadata through", async () => {
    const q = new QueryClient([address], FAST);
    try {
      const updates: TransferUpdate[] = [];
      for await (const update of q.watchTransfer("t1", { timeoutMs: 5_000 })) updates.push(update);
      assert.equal(updates.length, 1);
      assert.equal(updates[0].status, wallet.TransferStatus.TRANSFER_STATUS_COMPLETED);
      assert.deepEqual([updates[0].reference, updates[0].metadata], ["order-9", { channel: "web" }]);
    } finally {
      q.close();
    }
  });
});
