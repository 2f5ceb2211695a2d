// Unit tests of the watches that resume by themselves and of the read and bulk-write wrappers,
// against in-process fake nodes (@grpc/grpc-js on loopback ports): a stream dropped mid-way,
// old updates replayed, a WATCH_LAGGED cut-off, failover to the next read node, a read node
// restarted on the same port, the deadline, the resumption limit, cancel (node --test).
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import {
  Metadata,
  Server,
  ServerCredentials,
  status as Code,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
} from "@grpc/grpc-js";

import { Indefinite, QueryClient, Rejected, WalletClient, type TransferParams } from "../src";
import { ClusterServiceService } from "../src/gen/wallet/v1/cluster";
import { ErrorInfo } from "../src/gen/google/rpc/error_details";
import { Status } from "../src/gen/google/rpc/status";
import {
  QueryServiceService,
  type BalanceUpdate,
  type GetBalanceAtRequest,
  type ListTransfersRequest,
  type TransferUpdate,
  type WatchBalancesRequest,
  type WatchTransferRequest,
} from "../src/gen/wallet/v1/query";
import {
  Account,
  AccountStatus,
  TransferStatus,
  WalletServiceService,
  type OpenAccountRequest,
  type OpenAccountResult,
  type TransferBatchRequest,
  type TransferRequest,
  type TransferResult,
} from "../src/gen/wallet/v1/wallet";

const FAST = { callTimeoutMs: 2_000, totalDeadlineMs: 4_000, attemptsMax: 3, backoffBaseMs: 1, backoffMaxMs: 4 };

/** A script step: an update, a failure (code + reason), a pause, or "hang" until cancelled. */
type Step = BalanceUpdate | TransferUpdate | { fail: Code; reason: string } | { sleepMs: number } | "hang";

function balance(account: string, sequence: number, snapshot = false): BalanceUpdate {
  return {
    snapshot,
    balance: {
      accountId: account,
      currency: "USD",
      allowNegativeBalance: false,
      balance: `${sequence}.00`,
      balanceMinor: String(sequence * 100),
      sequence: String(sequence),
      partition: 0,
      index: String(sequence),
      timestampMs: "0",
      held: "0.00",
      available: `${sequence}.00`,
      status: AccountStatus.ACCOUNT_STATUS_ACTIVE,
      overdraftLimit: "0.00",
      reference: "",
      metadata: {},
    },
    deltaMinor: snapshot ? "0" : "100",
    delta: snapshot ? "" : "1.00",
    transactionId: "",
    counterparty: "",
    position: `v1.0.${sequence}`,
  };
}

function state(version: number, isFinal = false): TransferUpdate {
  return {
    transactionId: "t1",
    fromAccount: "a",
    toAccount: "b",
    amount: "1.00",
    amountMinor: "100",
    currency: "USD",
    state: isFinal ? 2 : 1,
    rejectReason: "",
    version,
    isFinal,
    position: "",
    timestampMs: "0",
    status: isFinal ? TransferStatus.TRANSFER_STATUS_COMPLETED : TransferStatus.TRANSFER_STATUS_IN_FLIGHT,
    reference: "",
    metadata: {},
    legs: [],
  };
}

const fail = (code: Code, reason: string): Step => ({ fail: code, reason });

function richError(code: Code, reason: string) {
  const info = ErrorInfo.encode({ reason, domain: "wallet.ledger", metadata: {} }).finish();
  const status = Status.encode({
    code,
    message: reason,
    details: [{ typeUrl: "type.googleapis.com/google.rpc.ErrorInfo", value: Buffer.from(info) }],
  }).finish();
  const metadata = new Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(status));
  return { code, details: reason, metadata };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A read node (QueryService + ClusterService) whose watches follow scripts, one per call. */
class FakeReadNode {
  server = new Server();
  address = "";
  watchRequests: WatchBalancesRequest[] = [];
  transferRequests: WatchTransferRequest[] = [];

  constructor(
    private readonly watches: Step[][] = [],
    private readonly transferWatches: Step[][] = [],
  ) {}

  private async play(call: ServerWritableStream<unknown, unknown>, script: Step[] | undefined): Promise<void> {
    let cancelled = false;
    call.on("cancelled", () => (cancelled = true));
    call.on("error", () => {});
    for (const step of script ?? []) {
      if (cancelled) return;
      if (step === "hang") return; // never ends: the client cancels
      if ("fail" in step) {
        call.emit("error", Object.assign(new Error(step.reason), richError(step.fail, step.reason)));
        return;
      }
      if ("sleepMs" in step) {
        await sleep(step.sleepMs);
        continue;
      }
      call.write(step);
    }
    if (!cancelled) call.end();
  }

  async start(port = 0): Promise<this> {
    const unimplemented = (_: unknown, callback: sendUnaryData<unknown>) => callback({ code: Code.UNIMPLEMENTED, details: "fake" });
    this.server.addService(QueryServiceService, {
      getBalance: unimplemented,
      watchBalances: (call: ServerWritableStream<WatchBalancesRequest, BalanceUpdate>) => {
        const n = this.watchRequests.push(call.request) - 1;
        void this.play(call as ServerWritableStream<unknown, unknown>, this.watches[Math.min(n, this.watches.length - 1)]);
      },
      watchTransfer: (call: ServerWritableStream<WatchTransferRequest, TransferUpdate>) => {
        const n = this.transferRequests.push(call.request) - 1;
        void this.play(call as ServerWritableStream<unknown, unknown>, this.transferWatches[Math.min(n, this.transferWatches.length - 1)]);
      },
      listTransfers: (call: ServerUnaryCall<ListTransfersRequest, unknown>, callback: sendUnaryData<unknown>) => {
        if (call.request.accountId !== "h") return callback(Object.assign(new Error("no"), richError(Code.NOT_FOUND, "ACCOUNT_NOT_FOUND")));
        const size = call.request.pageSize || 2;
        const top = call.request.pageToken ? Number(call.request.pageToken) : 5;
        const sequences = Array.from({ length: Math.min(size, top) }, (_, i) => top - i);
        const rest = top - sequences.length;
        callback(null, {
          entries: sequences.map((s) => ({ sequence: String(s), transactionId: "", deltaMinor: "100", delta: "1.00", balanceAfterMinor: "0", balanceAfter: `${s}.00`, counterparty: "", currency: "USD", position: "", timestampMs: "0", reference: `ref-${s}`, metadata: { seq: String(s) } })),
          nextPageToken: rest > 0 ? String(rest) : "",
        });
      },
      getBalanceAt: (call: ServerUnaryCall<GetBalanceAtRequest, unknown>, callback: sendUnaryData<unknown>) => {
        const sequence = call.request.position !== undefined ? Number(call.request.position.split(".").pop()) : Number(call.request.timestampMs) / 1000;
        callback(null, { balance: balance(call.request.accountId, sequence).balance });
      },
    });
    this.server.addService(ClusterServiceService, {
      getClusterStatus: (_: unknown, callback: sendUnaryData<unknown>) => callback(null, { nodeId: "7", nodes: [], partitions: [] }),
    });
    const bound = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    this.address = `127.0.0.1:${bound}`;
    return this;
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

const sequences = (updates: BalanceUpdate[], account: string) =>
  updates.filter((u) => u.balance!.accountId === account).map((u) => Number(u.balance!.sequence));

async function take<T>(watch: AsyncIterable<T>, count: number): Promise<T[]> {
  const out: T[] = [];
  const iterator = watch[Symbol.asyncIterator]();
  while (out.length < count) {
    const next = await iterator.next();
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

const DROPPED_REPLAYED_LAGGED: Step[][] = [
  [balance("a", 0, true), balance("b", 0, true), balance("a", 1), balance("a", 2), fail(Code.UNAVAILABLE, "SHUTTING_DOWN")],
  [balance("a", 1), balance("a", 2), balance("a", 3), balance("b", 1), fail(Code.ABORTED, "WATCH_LAGGED")],
  [balance("a", 3), balance("b", 1), balance("a", 4), balance("b", 2), "hang"],
];

describe("watchBalances resumes by itself", () => {
  const nodes: FakeReadNode[] = [];
  const clients: { close(): void }[] = [];
  after(() => {
    for (const c of clients) c.close();
    for (const n of nodes) n.stop();
  });
  const node = async (watches: Step[][] = [], transfers: Step[][] = [], port = 0) => {
    const n = await new FakeReadNode(watches, transfers).start(port);
    nodes.push(n);
    return n;
  };
  const query = (...endpoints: string[]) => {
    const q = new QueryClient(endpoints, FAST);
    clients.push(q);
    return q;
  };

  it("after a drop, a replay and WATCH_LAGGED: every update once, in order", async () => {
    const n = await node(DROPPED_REPLAYED_LAGGED);
    const watch = query(n.address).watchBalances(["a", "b"], {}, { timeoutMs: 10_000 });
    const updates = await take(watch, 8);
    watch.cancel();
    assert.deepEqual(sequences(updates, "a"), [0, 1, 2, 3, 4]);
    assert.deepEqual(sequences(updates, "b"), [0, 1, 2]);
    assert.deepEqual(
      n.watchRequests.map((r) => r.resumeAfterSequence),
      [{}, { a: "2", b: "0" }, { a: "3", b: "1" }],
    );
    assert.deepEqual(watch.lastSequences(), { a: "4", b: "2" });
    assert.equal(watch.resumes, 2);
  });

  it("with events: data, then a quiet end on cancel", async () => {
    const n = await node(DROPPED_REPLAYED_LAGGED);
    const watch = query(n.address).watchBalances(["a", "b"]);
    const seen: number[] = [];
    await new Promise<void>((resolve, reject) => {
      watch.on("data", (u: BalanceUpdate) => {
        seen.push(Number(u.balance!.sequence));
        if (seen.length === 8) watch.cancel();
      });
      watch.on("error", reject);
      watch.on("end", resolve);
    });
    assert.deepEqual(seen, [0, 0, 1, 2, 3, 1, 4, 2]);
  });

  it("given resume sequences, drops what is at or below them", async () => {
    const n = await node([[balance("a", 4), balance("a", 5), balance("a", 6), "hang"]]);
    const watch = query(n.address).watchBalances(["a"], { a: 5 });
    assert.deepEqual(sequences(await take(watch, 1), "a"), [6]);
    watch.cancel();
    assert.deepEqual(n.watchRequests[0].resumeAfterSequence, { a: "5" });
  });

  it("fails over to the next read node", async () => {
    const one = await node([[balance("a", 0, true), balance("a", 1), fail(Code.UNAVAILABLE, "SHUTTING_DOWN")]]);
    const two = await node([[balance("a", 1), balance("a", 2), "hang"]]);
    const watch = query(one.address, two.address).watchBalances(["a"]);
    assert.deepEqual(sequences(await take(watch, 3), "a"), [0, 1, 2]);
    watch.cancel();
    assert.equal(one.watchRequests.length, 1);
    assert.deepEqual(two.watchRequests[0].resumeAfterSequence, { a: "1" });
  });

  it("survives the read node going away and coming back on the same port", async () => {
    const first = await node([[balance("a", 0, true), balance("a", 1), "hang"]]);
    const port = Number(first.address.split(":")[1]);
    const watch = query(first.address).watchBalances(["a"], {}, { timeoutMs: 20_000 });
    const iterator = watch[Symbol.asyncIterator]();
    const got = [(await iterator.next()).value, (await iterator.next()).value] as BalanceUpdate[];
    first.stop();
    await sleep(500);
    const second = await node([[balance("a", 1), balance("a", 2), balance("a", 3), "hang"]], [], port);
    got.push((await iterator.next()).value as BalanceUpdate, (await iterator.next()).value as BalanceUpdate);
    watch.cancel();
    assert.deepEqual(sequences(got, "a"), [0, 1, 2, 3]);
    assert.ok(watch.resumes >= 1);
    assert.deepEqual(second.watchRequests[0].resumeAfterSequence, { a: "1" });
  });

  it("ends with Rejected on a definite error", async () => {
    const n = await node([[fail(Code.NOT_FOUND, "ACCOUNT_NOT_FOUND")]]);
    await assert.rejects(take(query(n.address).watchBalances(["nobody"]), 1), (e: unknown) => e instanceof Rejected && e.reason === "ACCOUNT_NOT_FOUND");
    assert.equal(n.watchRequests.length, 1);
  });

  it("maxResumes bounds the reconnections", async () => {
    const n = await node([[fail(Code.UNAVAILABLE, "SHUTTING_DOWN")]]);
    await assert.rejects(
      take(query(n.address).watchBalances(["a"], {}, { maxResumes: 2 }), 1),
      (e: unknown) => e instanceof Indefinite && e.reason === "SHUTTING_DOWN",
    );
    assert.equal(n.watchRequests.length, 3);
  });

  it("timeoutMs bounds the whole watch", async () => {
    const n = await node([[balance("a", 0, true), { sleepMs: 200 }, fail(Code.UNAVAILABLE, "SHUTTING_DOWN")]]);
    const started = Date.now();
    await assert.rejects(take(query(n.address).watchBalances(["a"], {}, { timeoutMs: 1_000 }), 100), (e: unknown) => e instanceof Indefinite);
    assert.ok(Date.now() - started < 3_000);
    assert.ok(n.watchRequests.length >= 2);
  });

  it("watchTransfer resumes and delivers each version once until the final one", async () => {
    const n = await node([], [[state(1), fail(Code.UNAVAILABLE, "SHUTTING_DOWN")], [state(1), state(2), state(3, true)]]);
    const versions: number[] = [];
    for await (const update of query(n.address).watchTransfer("t1", { timeoutMs: 10_000 })) versions.push(update.version);
    assert.deepEqual(versions, [1, 2, 3]);
    assert.equal(n.transferRequests.length, 2);
  });

  it("listTransfers pages, iterateTransfers walks them all, getBalanceAt, getClusterStatus", async () => {
    const n = await node();
    const q = query(n.address);
    const page = await q.listTransfers({ accountId: "h", pageSize: 2 });
    assert.deepEqual(page.entries.map((e) => e.sequence), ["5", "4"]);
    // Each entry's reference and metadata come through as the node sent them.
    assert.deepEqual(page.entries.map((e) => [e.reference, e.metadata]), [["ref-5", { seq: "5" }], ["ref-4", { seq: "4" }]]);
    assert.equal(page.nextPageToken, "3");
    const all: string[] = [];
    for await (const entry of q.iterateTransfers("h", 2)) all.push(entry.sequence);
    assert.deepEqual(all, ["5", "4", "3", "2", "1"]);
    await assert.rejects(q.listTransfers({ accountId: "nobody" }), (e: unknown) => e instanceof Rejected && e.reason === "ACCOUNT_NOT_FOUND");
    assert.equal((await q.getBalanceAt("a", { position: "v1.0.3" })).sequence, "3");
    assert.equal((await q.getBalanceAt("a", { timestampMs: 4000 })).balance, "4.00");
    assert.equal((await q.getClusterStatus()).nodeId, "7");
  });
});

describe("write wrappers", () => {
  const server = new Server();
  let address = "";
  const unary: string[] = [];
  const openedUnary: string[] = [];
  let wallet: WalletClient;
  after(() => {
    wallet.close();
    server.forceShutdown();
  });
  const t = (id: string): TransferParams => ({ transactionId: id, fromAccount: "a", toAccount: "b", amount: "1.00", currency: "USD" });

  it("starts", async () => {
    const unimplemented = (_: unknown, callback: sendUnaryData<unknown>) => callback({ code: Code.UNIMPLEMENTED, details: "fake" });
    server.addService(WalletServiceService, {
      openAccount: (call: ServerUnaryCall<OpenAccountRequest, unknown>, callback: sendUnaryData<unknown>) => {
        openedUnary.push(call.request.accountId);
        callback(null, { account: Account.fromPartial({ accountId: call.request.accountId, currency: "USD" }) });
      },
      openAccounts: (call: ServerDuplexStream<OpenAccountRequest, OpenAccountResult>) => {
        call.on("data", (r: OpenAccountRequest) => {
          if (r.accountId === "elsewhere") call.write({ accountId: r.accountId, status: "unavailable", account: undefined, error: undefined });
          else if (r.currency === "EUR")
            call.write({ accountId: r.accountId, status: "rejected", account: undefined, error: { code: 6, reason: "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS", message: "no", field: "" } });
          else call.write({ accountId: r.accountId, status: "success", account: Account.fromPartial({ accountId: r.accountId }), error: undefined });
        });
        call.on("end", () => call.end());
      },
      transferBatch: (call: ServerUnaryCall<TransferBatchRequest, unknown>, callback: sendUnaryData<unknown>) => {
        callback(null, {
          results: call.request.transfers.map((r): TransferResult => {
            if (r.transactionId === "t2") return { transactionId: r.transactionId, status: "unavailable", consistencyToken: "", error: { code: 14, reason: "NOT_LEADER", message: "", field: "" }, replayed: false };
            if (r.transactionId === "bad") return { transactionId: r.transactionId, status: "rejected", consistencyToken: "", error: { code: 9, reason: "INSUFFICIENT_FUNDS", message: "no", field: "" }, replayed: true };
            return { transactionId: r.transactionId, status: "success", consistencyToken: "b", error: undefined, replayed: true };
          }),
        });
      },
      transfer: (call: ServerUnaryCall<TransferRequest, unknown>, callback: sendUnaryData<unknown>) => {
        unary.push(call.request.transactionId);
        callback(null, { status: "success", transactionId: call.request.transactionId, consistencyToken: "unary" });
      },
      submitTransfers: (call: ServerDuplexStream<TransferRequest, TransferResult>) => {
        call.on("data", (r: TransferRequest) => call.write({ transactionId: r.transactionId, status: "success", consistencyToken: "s", error: undefined, replayed: false }));
        call.on("end", () => call.end());
      },
      getAccount: unimplemented,
      getTransfer: unimplemented,
    });
    server.addService(ClusterServiceService, {
      getClusterStatus: (_: unknown, callback: sendUnaryData<unknown>) => callback(null, { nodeId: "3", nodes: [], partitions: [] }),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    address = `127.0.0.1:${port}`;
    wallet = new WalletClient([address], FAST);
  });

  it("transferBatch retries unavailable items alone", async () => {
    const outcomes = await wallet.transferBatch([t("t1"), t("t2"), t("bad")]);
    assert.equal((outcomes[0] as { consistencyToken: string }).consistencyToken, "b");
    assert.equal((outcomes[1] as { consistencyToken: string }).consistencyToken, "unary");
    assert.ok(outcomes[2] instanceof Rejected && outcomes[2].reason === "INSUFFICIENT_FUNDS");
    // TransferResult.replayed reaches the outcome and the typed error; the unary answer says false.
    assert.equal((outcomes[0] as { replayed: boolean }).replayed, true);
    assert.equal((outcomes[1] as { replayed?: boolean }).replayed ?? false, false);
    assert.equal((outcomes[2] as Rejected).replayed, true);
    assert.deepEqual(unary, ["t2"]);
  });

  it("openAccounts, submitTransfers, getClusterStatus", async () => {
    const outcomes = await wallet.openAccounts([
      { accountId: "x", currency: "USD" },
      { accountId: "elsewhere", currency: "USD" },
      { accountId: "y", currency: "EUR" },
    ]);
    assert.equal((outcomes[0] as Account).accountId, "x", String(outcomes[0]));
    assert.equal((outcomes[1] as { currency: string }).currency, "USD");
    assert.ok(outcomes[2] instanceof Rejected && outcomes[2].code === Code.ALREADY_EXISTS);
    assert.deepEqual(openedUnary, ["elsewhere"]);
    const stream = wallet.submitTransfers();
    const results: string[] = [];
    await new Promise<void>((resolve, reject) => {
      stream.on("data", (r: TransferResult) => results.push(r.transactionId));
      stream.on("error", reject);
      stream.on("end", resolve);
      stream.write({ transactionId: "s1", fromAccount: "a", toAccount: "b", amount: "1.00", currency: "USD", reference: "", metadata: {} });
      stream.write({ transactionId: "s2", fromAccount: "a", toAccount: "b", amount: "1.00", currency: "USD", reference: "", metadata: {} });
      stream.end();
    });
    assert.deepEqual(results.sort(), ["s1", "s2"]);
    assert.equal((await wallet.getClusterStatus()).nodeId, "3");
  });
});
