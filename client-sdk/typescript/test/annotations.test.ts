// Unit tests of a transfer's optional reference and metadata against an in-process fake write
// node and read node (@grpc/grpc-js on loopback ports): transfer() (unary and down the
// stream), transferBatch() and authorizeTransfer() put them in the request, empty when not
// given; getTransfer() and watchTransfer() hand back what the nodes answer, with the
// TransferUpdate's `status` (wallet.TransferStatus). An account's reference and metadata
// likewise: openAccount() (object and positional forms) and openAccounts() (streamed, and an item
// the stream answers "unavailable" retried alone) send them; the Account answered,
// getAccount() and the read node's Balance (getBalance(), watchBalances()) carry them
// (node --test).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Server, ServerCredentials, status as Code, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall, type ServerWritableStream } from "@grpc/grpc-js";

import { QueryClient, Rejected, WalletClient, newTransactionId, openAccountRequest, transferRequest, wallet } from "../src";
import {
  Balance,
  type BalanceUpdate,
  type GetBalanceRequest,
  QueryServiceService,
  TransferState,
  type TransferUpdate,
  type WatchBalancesRequest,
  type WatchTransferRequest,
} from "../src/gen/wallet/v1/query";
import {
  type Account,
  type AuthorizeTransferRequest,
  type GetAccountRequest,
  type GetTransferRequest,
  type OpenAccountRequest,
  type OpenAccountResult,
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
          legs: [],
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

const ACCOUNT_METADATA = { tier: "gold", region: "eu" };

/** The reference and metadata of a request, account or balance. */
const annotationsOf = (m: { reference: string; metadata: { [key: string]: string } }) => [m.reference, m.metadata];

/**
 * A write node that records every OpenAccountRequest (how it came: "unary" OpenAccount,
 * "stream" OpenAccounts) and answers the account as asked, reference and metadata included;
 * GetAccount answers the last one opened under the id. OpenAccounts answers the ids in
 * `unavailable` "unavailable", for the client to retry them alone, and refuses an account
 * opened before with other annotations (ALREADY_EXISTS), as a node would.
 */
class FakeAccountsNode {
  readonly server = new Server();
  address = "";
  opened: { how: string; request: OpenAccountRequest }[] = [];
  unavailable = new Set<string>();

  static account(r: OpenAccountRequest): Account {
    return wallet.Account.fromPartial({
      accountId: r.accountId,
      currency: r.currency,
      allowNegativeBalance: r.allowNegativeBalance,
      balance: "0.00",
      status: wallet.AccountStatus.ACCOUNT_STATUS_ACTIVE,
      reference: r.reference,
      metadata: r.metadata,
    });
  }

  async start(): Promise<void> {
    this.server.addService(WalletServiceService, {
      openAccount: (call: ServerUnaryCall<OpenAccountRequest, unknown>, callback: sendUnaryData<unknown>) => {
        this.opened.push({ how: "unary", request: call.request });
        callback(null, { account: FakeAccountsNode.account(call.request) });
      },
      openAccounts: (call: ServerDuplexStream<OpenAccountRequest, OpenAccountResult>) => {
        call.on("data", (r: OpenAccountRequest) => {
          if (this.unavailable.has(r.accountId)) {
            call.write({ accountId: r.accountId, status: "unavailable", account: undefined, error: undefined });
            return;
          }
          const before = this.opened.find((o) => o.request.accountId === r.accountId)?.request;
          if (before !== undefined && JSON.stringify(annotationsOf(before)) !== JSON.stringify(annotationsOf(r))) {
            call.write({
              accountId: r.accountId,
              status: "rejected",
              account: undefined,
              error: { code: Code.ALREADY_EXISTS, reason: "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS", message: "no", field: "" },
            });
            return;
          }
          this.opened.push({ how: "stream", request: r });
          call.write({ accountId: r.accountId, status: "success", account: FakeAccountsNode.account(r), error: undefined });
        });
        call.on("end", () => call.end());
      },
      getAccount: (call: ServerUnaryCall<GetAccountRequest, unknown>, callback: sendUnaryData<unknown>) => {
        const last = [...this.opened].reverse().find((o) => o.request.accountId === call.request.accountId);
        if (last === undefined) return callback({ code: Code.NOT_FOUND, details: "no" });
        callback(null, { account: FakeAccountsNode.account(last.request), position: "p" });
      },
    } as never);
    this.address = await listen(this.server);
  }
}

describe("account reference and metadata", () => {
  const node = new FakeAccountsNode();
  let w: WalletClient;
  before(async () => {
    await node.start();
    w = new WalletClient([node.address], FAST);
  });
  after(() => {
    w.close();
    node.server.forceShutdown();
  });

  it("openAccount() sends them, empty when not given; the account and getAccount() carry them", async () => {
    node.opened = [];
    const metadata = { ...ACCOUNT_METADATA };
    const opened = await w.openAccount({ accountId: "cust", currency: "USD", reference: "cust-42", metadata });
    metadata.tier = "changed after the call"; // the request had its own copy
    const plain = await w.openAccount("plain", "USD", true);
    assert.deepEqual(
      node.opened.map((o) => [o.how, o.request.accountId, o.request.allowNegativeBalance, ...annotationsOf(o.request)]),
      [
        ["unary", "cust", false, "cust-42", ACCOUNT_METADATA],
        ["unary", "plain", true, "", {}],
      ],
    );
    assert.deepEqual(annotationsOf(opened), ["cust-42", ACCOUNT_METADATA]);
    assert.deepEqual(annotationsOf(plain), ["", {}]);
    const got = await w.getAccount("cust");
    assert.deepEqual(annotationsOf(got.account!), ["cust-42", ACCOUNT_METADATA]);
  });

  it("openAccounts() sends each item's own, also when an item is retried alone", async () => {
    node.opened = [];
    node.unavailable = new Set(["elsewhere"]);
    try {
      const outcomes = await w.openAccounts([
        { accountId: "a1", currency: "USD", reference: "r1", metadata: { k: "v1" } },
        { accountId: "elsewhere", currency: "EUR", reference: "r2", metadata: { k: "v2" } },
        { accountId: "a3", currency: "USD" },
      ]);
      assert.deepEqual(
        node.opened.map((o) => [o.how, o.request.accountId, ...annotationsOf(o.request)]),
        [
          ["stream", "a1", "r1", { k: "v1" }],
          ["stream", "a3", "", {}],
          ["unary", "elsewhere", "r2", { k: "v2" }],
        ],
      );
      assert.deepEqual(
        outcomes.map((o) => (o instanceof Rejected ? o.reason : [(o as Account).accountId, ...annotationsOf(o as Account)])),
        [
          ["a1", "r1", { k: "v1" }],
          ["elsewhere", "r2", { k: "v2" }],
          ["a3", "", {}],
        ],
      );
      const [refused] = await w.openAccounts([{ accountId: "a1", currency: "USD", reference: "other" }]);
      assert.ok(refused instanceof Rejected, String(refused));
      assert.equal(refused.reason, "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS");
    } finally {
      node.unavailable = new Set();
    }
  });

  it("openAccountRequest() copies metadata and refuses what is not an object of strings", () => {
    const metadata = { a: "1" };
    const request = openAccountRequest({ accountId: "x", currency: "USD", metadata });
    metadata.a = "changed";
    assert.deepEqual(request, { accountId: "x", currency: "USD", allowNegativeBalance: false, reference: "", metadata: { a: "1" } });
    assert.throws(() => openAccountRequest({ accountId: "x", currency: "USD", metadata: new Map([["a", "1"]]) as never }), TypeError);
    assert.throws(() => openAccountRequest({ accountId: "x", currency: "USD", metadata: { a: 1 } as never }), TypeError);
  });
});

describe("the read node's balances carry an account's reference and metadata", () => {
  const server = new Server();
  let address = "";
  const balanceRequests: GetBalanceRequest[] = [];
  const balances: Record<string, Balance> = {
    cust: Balance.fromPartial({ accountId: "cust", currency: "USD", balance: "1.00", sequence: "1", reference: "cust-42", metadata: ACCOUNT_METADATA }),
    plain: Balance.fromPartial({ accountId: "plain", currency: "USD", balance: "0.00" }),
  };
  before(async () => {
    server.addService(QueryServiceService, {
      getBalance: (call: ServerUnaryCall<GetBalanceRequest, unknown>, callback: sendUnaryData<unknown>) => {
        balanceRequests.push(call.request);
        const found = balances[call.request.accountId];
        if (found === undefined) return callback({ code: Code.NOT_FOUND, details: "no" });
        callback(null, { balance: found, position: "v1.0.1" });
      },
      watchBalances: (call: ServerWritableStream<WatchBalancesRequest, BalanceUpdate>) => {
        for (const id of call.request.accountIds) {
          call.write({ snapshot: true, balance: balances[id], deltaMinor: "0", delta: "", transactionId: "", counterparty: "", position: "v1.0.1" });
        }
      },
    } as never);
    address = await listen(server);
  });
  after(() => server.forceShutdown());

  it("getBalance() and watchBalances() pass them through, empty when the account has none", async () => {
    const q = new QueryClient([address], FAST);
    try {
      const got = await q.getBalance("cust", "tok");
      const bare = await q.getBalance("plain");
      assert.deepEqual(balanceRequests.map((r) => [r.accountId, r.consistencyToken]), [["cust", "tok"], ["plain", ""]]);
      assert.deepEqual(annotationsOf(got.balance!), ["cust-42", ACCOUNT_METADATA]);
      assert.deepEqual(annotationsOf(bare.balance!), ["", {}]);
      const watch = q.watchBalances(["cust"], {}, { timeoutMs: 5_000 });
      const first = await watch[Symbol.asyncIterator]().next();
      watch.cancel();
      assert.equal(first.done, false);
      assert.deepEqual(annotationsOf((first.value as BalanceUpdate).balance!), ["cust-42", ACCOUNT_METADATA]);
    } finally {
      q.close();
    }
  });
});
