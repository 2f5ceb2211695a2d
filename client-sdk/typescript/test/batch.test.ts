// Unit tests of transparent batching and of the connection settings, against an in-process
// fake WalletService (@grpc/grpc-js on a loopback port); no cluster needed (node --test).
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";

import {
  Metadata,
  Server,
  ServerCredentials,
  status as Code,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceError,
} from "@grpc/grpc-js";

import { Indefinite, Rejected, WalletClient, bearer, type TransferParams } from "../src";
import { Connection } from "../src/connection";
import {
  WalletServiceService,
  type TransferBatchRequest,
  type TransferBatchResponse,
  type TransferRequest,
  type TransferResponse,
  type TransferResult,
} from "../src/gen/wallet/v1/wallet";

type BatchReply = (error: Partial<ServiceError> | null, response?: TransferBatchResponse) => void;
type UnaryReply = (error: Partial<ServiceError> | null, response?: TransferResponse) => void;

/** A WalletService whose TransferBatch and Transfer answers the test decides, call by call. */
class FakeWallet {
  readonly server = new Server();
  address = "";
  /** Every TransferBatch call: its transfers, its metadata, and how to answer it. */
  batches: { transfers: TransferRequest[]; metadata: Metadata; reply: BatchReply }[] = [];
  unaries: { request: TransferRequest; metadata: Metadata; reply: UnaryReply }[] = [];
  inFlight = 0;
  inFlightPeak = 0;
  /** Called on each batch as it arrives; by default every item succeeds at once. */
  onBatch: (transfers: TransferRequest[], reply: BatchReply) => void = (transfers, reply) =>
    reply(null, { results: transfers.map(success) });
  onUnary: (request: TransferRequest, reply: UnaryReply) => void = (request, reply) =>
    reply(null, { status: "success", transactionId: request.transactionId, consistencyToken: `unary:${request.transactionId}` });

  async start(): Promise<void> {
    const unimplemented = (_: unknown, callback: sendUnaryData<unknown>) =>
      callback({ code: Code.UNIMPLEMENTED, details: "fake" });
    this.server.addService(WalletServiceService, {
      openAccount: unimplemented,
      openAccounts: () => {},
      submitTransfers: () => {},
      getAccount: unimplemented,
      getTransfer: unimplemented,
      transfer: (call: ServerUnaryCall<TransferRequest, TransferResponse>, callback: sendUnaryData<TransferResponse>) => {
        const reply: UnaryReply = (error, response) => callback(error, response);
        this.unaries.push({ request: call.request, metadata: call.metadata, reply });
        this.onUnary(call.request, reply);
      },
      transferBatch: (
        call: ServerUnaryCall<TransferBatchRequest, TransferBatchResponse>,
        callback: sendUnaryData<TransferBatchResponse>,
      ) => {
        this.inFlight += 1;
        this.inFlightPeak = Math.max(this.inFlightPeak, this.inFlight);
        let answered = false;
        const reply: BatchReply = (error, response) => {
          if (answered) return;
          answered = true;
          this.inFlight -= 1;
          callback(error, response);
        };
        call.on("cancelled", () => {
          if (!answered) {
            answered = true;
            this.inFlight -= 1;
          }
        });
        this.batches.push({ transfers: call.request.transfers, metadata: call.metadata, reply });
        this.onBatch(call.request.transfers, reply);
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    this.address = `127.0.0.1:${port}`;
  }

  reset(): void {
    this.batches = [];
    this.unaries = [];
    this.inFlightPeak = this.inFlight;
    this.onBatch = (transfers, reply) => reply(null, { results: transfers.map(success) });
    this.onUnary = (request, reply) =>
      reply(null, { status: "success", transactionId: request.transactionId, consistencyToken: `unary:${request.transactionId}` });
  }
}

function success(t: TransferRequest): TransferResult {
  return { transactionId: t.transactionId, status: "success", consistencyToken: `batch:${t.transactionId}`, error: undefined };
}

let serial = 0;
function params(overrides: Partial<TransferParams> = {}): TransferParams {
  serial += 1;
  const id = `00000000-0000-4000-8000-${serial.toString().padStart(12, "0")}`;
  return { transactionId: id, fromAccount: "alice", toAccount: "bob", amount: "1.00", currency: "USD", ...overrides };
}

const waitFor = async (what: string, condition: () => boolean, ms = 2000) => {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
};

const FAST = { callTimeoutMs: 2000, totalDeadlineMs: 4000, attemptsMax: 4, backoffBaseMs: 1, backoffMaxMs: 5 };

describe("transparent batching", () => {
  const fake = new FakeWallet();
  let clients: WalletClient[] = [];
  const client = (options: object = {}) => {
    const c = new WalletClient([fake.address], { ...FAST, ...options });
    clients.push(c);
    return c;
  };

  before(() => fake.start());
  after(() => fake.server.forceShutdown());
  beforeEach(() => {
    for (const c of clients) c.close();
    clients = [];
    fake.reset();
  });

  it("sends a lone call at once, as a batch of one", async () => {
    const wallet = client();
    const p = params();
    const response = await wallet.transfer(p);
    assert.deepEqual(response, { status: "success", transactionId: p.transactionId, consistencyToken: `batch:${p.transactionId}` });
    assert.equal(fake.batches.length, 1);
    assert.equal(fake.unaries.length, 0);
    assert.equal(wallet.leader("alice"), fake.address);
    assert.deepEqual(
      { ...wallet.stats() },
      { transfers: 1, batchCalls: 1, batchedTransfers: 1, largestBatch: 1, batchCallsFailed: 0, fallbacks: 0, unaryTransfers: 0 },
    );
  });

  it("keeps at most batchInFlightMax batches in flight and sends the queue, in order, as the next", async () => {
    const wallet = client({ batchInFlightMax: 2 });
    fake.onBatch = () => {}; // held until the test answers
    const calls = Array.from({ length: 10 }, () => params());
    const outcomes = calls.map((p) => wallet.transfer(p));
    await waitFor("two batches", () => fake.batches.length === 2);
    assert.deepEqual(fake.batches.map((b) => b.transfers.map((t) => t.transactionId)), [
      [calls[0].transactionId],
      [calls[1].transactionId],
    ]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(fake.batches.length, 2, "a third batch went while two were in flight");
    // The first returns: the eight queued go together, in arrival order.
    fake.batches[0].reply(null, { results: fake.batches[0].transfers.map(success) });
    await waitFor("the third batch", () => fake.batches.length === 3);
    assert.deepEqual(fake.batches[2].transfers, calls.slice(2).map((p) => ({ ...p })));
    fake.batches[1].reply(null, { results: fake.batches[1].transfers.map(success) });
    fake.batches[2].reply(null, { results: fake.batches[2].transfers.map(success) });
    const responses = await Promise.all(outcomes);
    assert.deepEqual(responses.map((r) => r.consistencyToken), calls.map((p) => `batch:${p.transactionId}`));
    assert.ok(fake.inFlightPeak <= 2, `peak ${fake.inFlightPeak}`);
    assert.equal(wallet.stats().batchCalls, 3);
    assert.equal(wallet.stats().largestBatch, 8);
  });

  it("splits a long queue into batches of at most 1,024", async () => {
    const wallet = client({ batchInFlightMax: 1 });
    let first = true;
    fake.onBatch = (transfers, reply) => {
      if (first) first = false; // held: everything else queues behind it
      else reply(null, { results: transfers.map(success) });
    };
    const outcomes = Array.from({ length: 1 + 1030 }, () => wallet.transfer(params()));
    await waitFor("the first batch", () => fake.batches.length === 1);
    fake.batches[0].reply(null, { results: fake.batches[0].transfers.map(success) });
    await Promise.all(outcomes);
    assert.deepEqual(fake.batches.map((b) => b.transfers.length), [1, 1024, 6]);
  });

  it("matches results by position: success, rejected as the unary error, unavailable retried unary", async () => {
    const wallet = client({ batchInFlightMax: 1 });
    fake.onBatch = () => {};
    const blocker = wallet.transfer(params());
    await waitFor("the first batch", () => fake.batches.length === 1);
    const [ok, poor, bad, moved, nobody] = [params(), params({ amount: "1000.00" }), params({ amount: "abc" }), params(), params({ toAccount: "nobody" })];
    const outcomes = [ok, poor, bad, moved, nobody].map((p) =>
      wallet.transfer(p).then(
        (response) => ({ response }),
        (error: unknown) => ({ error }),
      ),
    );
    fake.batches[0].reply(null, { results: fake.batches[0].transfers.map(success) });
    await waitFor("the second batch", () => fake.batches.length === 2);
    const error = (code: Code, reason: string, message: string, field = "") => ({ code, reason, message, field });
    fake.batches[1].reply(null, {
      results: [
        success(ok),
        { transactionId: poor.transactionId, status: "rejected", consistencyToken: "", error: error(Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", "balance too low") },
        { transactionId: bad.transactionId, status: "rejected", consistencyToken: "", error: error(Code.INVALID_ARGUMENT, "INVALID_AMOUNT", "amount: not a number", "amount") },
        { transactionId: moved.transactionId, status: "unavailable", consistencyToken: "", error: error(Code.UNAVAILABLE, "NOT_LEADER", "not the leader") },
        { transactionId: nobody.transactionId, status: "rejected", consistencyToken: "", error: error(Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", "no such account", "to_account") },
      ],
    });
    const [a, b, c, d, e] = await Promise.all(outcomes);
    await blocker;
    assert.equal("response" in a && a.response.consistencyToken, `batch:${ok.transactionId}`);
    assert.ok("error" in b && b.error instanceof Rejected);
    assert.deepEqual([b.error.code, b.error.reason, b.error.field, b.error.definite], [Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", undefined, true]);
    assert.ok("error" in c && c.error instanceof Rejected);
    assert.deepEqual([c.error.code, c.error.reason, c.error.field], [Code.INVALID_ARGUMENT, "INVALID_AMOUNT", "amount"]);
    assert.match(c.error.message, /INVALID_ARGUMENT INVALID_AMOUNT: amount: not a number/);
    // As from the unary call, whose trailer has a BadRequest field only for INVALID_ARGUMENT.
    assert.ok("error" in e && e.error instanceof Rejected);
    assert.deepEqual([e.error.code, e.error.reason, e.error.field, e.error.details.domain], [Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", undefined, "wallet.ledger"]);
    // The unavailable one went again, alone, unary, with the very same request.
    assert.equal("response" in d && d.response.consistencyToken, `unary:${moved.transactionId}`);
    assert.deepEqual(fake.unaries.map((u) => u.request), [{ ...moved }]);
    assert.equal(wallet.stats().fallbacks, 1);
  });

  it("retries every call of a failed batch through the unary path", async () => {
    for (const [code, details] of [
      [Code.UNIMPLEMENTED, "unknown method TransferBatch"],
      [Code.UNAVAILABLE, "shutting down"],
      [Code.RESOURCE_EXHAUSTED, "overloaded"],
    ] as const) {
      fake.reset();
      const wallet = client();
      fake.onBatch = (_, reply) => reply({ code, details });
      const calls = [params(), params(), params()];
      const responses = await Promise.all(calls.map((p) => wallet.transfer(p)));
      assert.deepEqual(responses.map((r) => r.consistencyToken), calls.map((p) => `unary:${p.transactionId}`), `${code}`);
      assert.deepEqual(
        fake.unaries.map((u) => u.request.transactionId).sort(),
        calls.map((p) => p.transactionId).sort(),
      );
      assert.ok(wallet.stats().batchCallsFailed >= 1);
    }
  });

  it("retries malformed results (wrong count, wrong id, unknown status) through the unary path", async () => {
    const wallet = client({ batchInFlightMax: 1 });
    const [x, y] = [params(), params()];
    fake.onBatch = (transfers, reply) => reply(null, { results: transfers.slice(0, 1).map(success) });
    assert.equal((await wallet.transfer(x)).consistencyToken, `batch:${x.transactionId}`); // one for one
    fake.onBatch = (transfers, reply) =>
      reply(null, { results: transfers.map((t) => ({ ...success(t), transactionId: y.transactionId, status: "weird" })) });
    assert.equal((await wallet.transfer(y)).consistencyToken, `unary:${y.transactionId}`);
    fake.onBatch = (_, reply) => reply(null, { results: [] });
    const z = params();
    assert.equal((await wallet.transfer(z)).consistencyToken, `unary:${z.transactionId}`);
    fake.onBatch = (transfers, reply) =>
      reply(null, { results: transfers.map((t) => ({ ...success(t), status: "rejected", consistencyToken: "" })) });
    const w = params(); // "rejected" without the error that says why
    assert.equal((await wallet.transfer(w)).consistencyToken, `unary:${w.transactionId}`);
    assert.equal(wallet.stats().fallbacks, 3);
  });

  it("rejects what is still queued when the client closes", async () => {
    const wallet = new WalletClient([fake.address], { ...FAST, callTimeoutMs: 200, batchInFlightMax: 1 });
    fake.onBatch = () => {};
    const sent = wallet.transfer(params()).catch((e: unknown) => e);
    const queued = wallet.transfer(params()).catch((e: unknown) => e);
    await waitFor("the first batch", () => fake.batches.length === 1);
    wallet.close();
    assert.match(String(await queued), /closed before the transfer was sent/);
    // The batch in flight times out; its call is not retried on a closed client.
    assert.match(String(await sent), /the client is closed/);
    assert.equal(fake.batches.length, 1);
    assert.equal(fake.unaries.length, 0);
    await assert.rejects(wallet.transfer(params()), /the client is closed/);
  });

  it("keeps each caller's deadline, in flight, queued, and in the unary retry", async () => {
    const wallet = client({ batchInFlightMax: 1, totalDeadlineMs: 300, callTimeoutMs: 5000 });
    fake.onBatch = () => {}; // never answered
    const started = Date.now();
    const outcomes = [params(), params(), params()].map((p) => wallet.transfer(p).catch((e: unknown) => e));
    for (const error of await Promise.all(outcomes)) {
      assert.ok(error instanceof Indefinite, `${error}`);
      assert.equal(error.code, Code.DEADLINE_EXCEEDED);
      assert.equal(error.reason, "DEADLINE_EXCEEDED");
    }
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 280 && elapsed < 1500, `settled after ${elapsed} ms`);
    assert.equal(fake.batches.length, 1, "the queued calls were sent although their deadline passed");

    // The unary retry after a batch gets only what is left of the caller's time.
    fake.reset();
    const other = client({ totalDeadlineMs: 400, callTimeoutMs: 5000 });
    fake.onBatch = (transfers, reply) =>
      setTimeout(() => reply(null, { results: transfers.map((t) => ({ ...success(t), status: "unavailable" })) }), 250);
    fake.onUnary = () => {}; // never answered
    const t0 = Date.now();
    const error = await other.transfer(params()).catch((e: unknown) => e);
    const took = Date.now() - t0;
    assert.ok(error instanceof Indefinite, `${error}`);
    assert.ok(took >= 380 && took < 1500, `unary retry ended after ${took} ms`);
    assert.equal(fake.unaries.length, 1);
  });

  it("sends plain unary transfers when batchInFlightMax is 0", async () => {
    const wallet = client({ batchInFlightMax: 0 });
    const calls = [params(), params()];
    const responses = await Promise.all(calls.map((p) => wallet.transfer(p)));
    assert.deepEqual(responses.map((r) => r.consistencyToken), calls.map((p) => `unary:${p.transactionId}`));
    assert.equal(fake.batches.length, 0);
    assert.deepEqual(wallet.stats().unaryTransfers, 2);
    assert.throws(() => new WalletClient([fake.address], { batchInFlightMax: -1 }), RangeError);
  });

  it("still takes the positional form", async () => {
    const wallet = client();
    const p = params();
    const response = await wallet.transfer(p.transactionId, p.fromAccount, p.toAccount, p.amount, p.currency);
    assert.equal(response.transactionId, p.transactionId);
    assert.deepEqual(fake.batches[0].transfers, [{ ...p }]);
  });

  it("sends the bearer token on batches and unary calls", async () => {
    const wallet = client({ token: " s3cret-token\n" });
    fake.onBatch = (_, reply) => reply({ code: Code.UNAVAILABLE, details: "down" });
    await wallet.transfer(params());
    assert.deepEqual(fake.batches[0].metadata.get("authorization"), ["Bearer s3cret-token"]);
    assert.deepEqual(fake.unaries[0].metadata.get("authorization"), ["Bearer s3cret-token"]);
    const anonymous = client();
    await anonymous.transfer(params());
    assert.deepEqual(fake.batches[1].metadata.get("authorization"), []);
  });
});

describe("connection settings", () => {
  it("checks tokens as the nodes expect them", () => {
    assert.equal(bearer("abc.DEF_123-x"), "Bearer abc.DEF_123-x");
    assert.equal(bearer("  padded\n"), "Bearer padded");
    for (const bad of ["", "   ", "two words", "naïve", "x".repeat(513)]) {
      assert.throws(() => bearer(bad), RangeError, JSON.stringify(bad));
    }
    const metadata = new Connection({ token: "t0k" }).metadata();
    assert.deepEqual(metadata.get("authorization"), ["Bearer t0k"]);
    assert.deepEqual(new Connection({}).metadata().get("authorization"), []);
  });

  it("builds TLS credentials with the server name override, and checks endpoints against the mode", () => {
    assert.throws(() => new Connection({ tls: { caCert: "" } }), /caCert/);
    assert.throws(() => new Connection({ tls: { caCert: "x", clientCert: "y" } }), /together/);
    const plain = new Connection({});
    assert.equal(plain.tls, false);
    assert.equal(plain.credentials._isSecure(), false);
    assert.equal(plain.normalize(" http://127.0.0.1:1/ "), "127.0.0.1:1");
    assert.throws(() => plain.normalize("https://127.0.0.1:1"), /host:port/);
    const secure = new Connection({ tls: { caCert: Buffer.from("placeholder"), serverName: "wallet.internal" } });
    assert.equal(secure.tls, true);
    assert.equal(secure.credentials._isSecure(), true);
    assert.deepEqual(secure.channelOptions, { "grpc.ssl_target_name_override": "wallet.internal" });
    assert.equal(secure.normalize("https://node-0:50051"), "node-0:50051");
    assert.throws(() => secure.normalize("http://node-0:50051"), /TLS is configured/);
    assert.deepEqual(new Connection({}).channelOptions, {});
  });

  it("takes retry policy fields as options, defaults for the rest", () => {
    const c = new Connection({ callTimeoutMs: 123 });
    assert.equal(c.policy.callTimeoutMs, 123);
    assert.equal(c.policy.totalDeadlineMs, 15_000);
    assert.throws(() => new Connection({ attemptsMax: 0 }), RangeError);
  });
});
