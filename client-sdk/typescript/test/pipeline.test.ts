// Unit tests of transparent pipelining and of the connection settings, against an in-process
// fake WalletService (@grpc/grpc-js on a loopback port); no cluster needed (node --test).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";

import {
  Metadata,
  Server,
  ServerCredentials,
  status as Code,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServiceError,
} from "@grpc/grpc-js";

import { Indefinite, PIPE_IDLE_MS, PIPE_QUEUE_MAX, Rejected, NO_FORWARD_HEADER, WalletClient, bearer, type TransferParams } from "../src";
import { Connection } from "../src/connection";
import {
  WalletServiceService,
  type TransferError,
  type TransferRequest,
  type TransferResponse,
  type TransferResult,
} from "../src/gen/wallet/v1/wallet";
import { ErrorInfo } from "../src/gen/google/rpc/error_details";
import { Status } from "../src/gen/google/rpc/status";

/** A unary rejection as a node sends it: ErrorInfo in the status trailer, with metadata. */
function richError(code: Code, reason: string, metadata: Record<string, string>): Partial<ServiceError> {
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

type UnaryReply = (error: Partial<ServiceError> | null, response?: TransferResponse) => void;

/**
 * One SubmitTransfers stream as the fake node sees it. Like a node, it ends the stream once
 * the client has half-closed it and every request read has an answer.
 */
class FakeStream {
  received: TransferRequest[] = [];
  answered = 0;
  /** The client half-closed the stream (end()). */
  halfClosed = false;
  cancelled = false;
  ended = false;

  constructor(
    readonly call: ServerDuplexStream<TransferRequest, TransferResult>,
    readonly metadata: Metadata,
    private readonly onRequest: (stream: FakeStream, request: TransferRequest) => void,
  ) {
    call.on("end", () => {
      this.halfClosed = true;
      this.maybeEnd();
    });
    call.on("cancelled", () => (this.cancelled = true));
    call.on("error", () => {});
  }

  /** Reads the client's requests (until then the stream's flow control fills up). */
  read(): void {
    this.call.on("data", (request: TransferRequest) => {
      this.received.push(request);
      this.onRequest(this, request);
    });
  }

  answer(...results: TransferResult[]): void {
    for (const result of results) this.call.write(result);
    this.answered += results.length;
    this.maybeEnd();
  }

  private maybeEnd(): void {
    if (this.halfClosed && this.answered >= this.received.length) this.finish();
  }

  /** Ends the stream with an error status. */
  fail(code: Code, details: string): void {
    this.ended = true;
    this.call.emit("error", { code, details });
  }

  /** Ends the stream with OK. */
  finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.call.end();
  }
}

/** A WalletService whose SubmitTransfers and Transfer answers the test decides. */
class FakeWallet {
  readonly server = new Server();
  address = "";
  streams: FakeStream[] = [];
  unaries: { request: TransferRequest; metadata: Metadata; reply: UnaryReply }[] = [];
  /** Whether a new stream reads its requests at once. */
  reading = true;
  /** Called as each stream opens (e.g. to refuse it). */
  onStream: (stream: FakeStream) => void = () => {};
  /** Called on each streamed request; by default it succeeds at once. */
  onRequest: (stream: FakeStream, request: TransferRequest) => void = (stream, request) => stream.answer(success(request));
  onUnary: (request: TransferRequest, reply: UnaryReply) => void = (request, reply) =>
    reply(null, { status: "success", transactionId: request.transactionId, consistencyToken: `unary:${request.transactionId}`, replayed: false });

  async start(): Promise<void> {
    const unimplemented = (_: unknown, callback: sendUnaryData<unknown>) =>
      callback({ code: Code.UNIMPLEMENTED, details: "fake" });
    this.server.addService(WalletServiceService, {
      openAccount: unimplemented,
      openAccounts: () => {},
      transferBatch: unimplemented,
      getAccount: unimplemented,
      getTransfer: unimplemented,
      transfer: (call: ServerUnaryCall<TransferRequest, TransferResponse>, callback: sendUnaryData<TransferResponse>) => {
        const reply: UnaryReply = (error, response) => callback(error, response);
        this.unaries.push({ request: call.request, metadata: call.metadata, reply });
        this.onUnary(call.request, reply);
      },
      submitTransfers: (call: ServerDuplexStream<TransferRequest, TransferResult>) => {
        const stream = new FakeStream(call, call.metadata, (s, r) => this.onRequest(s, r));
        this.streams.push(stream);
        this.onStream(stream);
        if (this.reading) stream.read();
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    this.address = `127.0.0.1:${port}`;
  }

  reset(): void {
    for (const stream of this.streams) stream.finish();
    this.streams = [];
    this.unaries = [];
    this.reading = true;
    this.onStream = () => {};
    this.onRequest = (stream, request) => stream.answer(success(request));
    this.onUnary = (request, reply) =>
      reply(null, { status: "success", transactionId: request.transactionId, consistencyToken: `unary:${request.transactionId}`, replayed: false });
  }
}

function success(t: Pick<TransferRequest, "transactionId">, token = `stream:${t.transactionId}`, replayed = false): TransferResult {
  return { transactionId: t.transactionId, status: "success", consistencyToken: token, error: undefined, replayed };
}

function failed(t: Pick<TransferRequest, "transactionId">, status: string, error?: Partial<TransferError>, replayed = false): TransferResult {
  return {
    transactionId: t.transactionId,
    status,
    consistencyToken: "",
    error: error === undefined ? undefined : { code: 0, reason: "", message: "", field: "", ...error },
    replayed,
  };
}

let serial = 0;
function params(overrides: Partial<TransferParams> = {}): TransferParams {
  serial += 1;
  const id = `00000000-0000-4000-8000-${serial.toString().padStart(12, "0")}`;
  return { transactionId: id, fromAccount: "alice", toAccount: "bob", amount: "1.00", currency: "USD", ...overrides };
}

/** The request a transfer of `p` sends: `reference` and `metadata` empty when not given. */
const sent = (p: TransferParams): TransferRequest => ({ reference: "", metadata: {}, ...p });

const waitFor = async (what: string, condition: () => boolean, ms = 3000) => {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
};

type Settled = { response: TransferResponse } | { error: unknown };
const settle = (p: Promise<TransferResponse>): Promise<Settled> =>
  p.then(
    (response) => ({ response }),
    (error: unknown) => ({ error }),
  );

const FAST = { callTimeoutMs: 2000, totalDeadlineMs: 4000, attemptsMax: 4, backoffBaseMs: 1, backoffMaxMs: 5 };

describe("transparent pipelining", () => {
  const fake = new FakeWallet();
  let clients: WalletClient[] = [];
  const client = (options: object = {}) => {
    const c = new WalletClient([fake.address], { ...FAST, ...options });
    clients.push(c);
    return c;
  };

  before(() => fake.start());
  after(() => {
    for (const c of clients) c.close();
    fake.server.forceShutdown();
  });
  beforeEach(() => {
    for (const c of clients) c.close();
    clients = [];
    fake.reset();
  });

  it("sends calls down one stream per node, kept open for the next ones", async () => {
    const wallet = client();
    const [p, q] = [params(), params()];
    const response = await wallet.transfer(p);
    assert.deepEqual(response, { status: "success", transactionId: p.transactionId, consistencyToken: `stream:${p.transactionId}`, replayed: false });
    assert.equal((await wallet.transfer(q)).consistencyToken, `stream:${q.transactionId}`);
    const concurrent = Array.from({ length: 50 }, () => params());
    const responses = await Promise.all(concurrent.map((c) => wallet.transfer(c)));
    assert.deepEqual(responses.map((r) => r.transactionId), concurrent.map((c) => c.transactionId));
    assert.equal(fake.streams.length, 1);
    assert.deepEqual(fake.streams[0].received, [p, q, ...concurrent].map(sent));
    assert.equal(fake.unaries.length, 0);
    assert.equal(wallet.leader("alice"), fake.address);
    assert.deepEqual(wallet.stats(), {
      transfers: 52,
      streamsOpened: 1,
      streamsFailed: 0,
      pipelinedTransfers: 52,
      unaryFallbacks: 0,
      unaryTransfers: 0,
    });
  });

  it("matches results by transaction id, in any order: success, rejected as the unary error, unavailable retried unary", async () => {
    const wallet = client();
    fake.onRequest = () => {}; // held until the test answers
    const [ok, poor, bad, moved, nobody, euro] = [
      params(),
      params({ amount: "1000.00" }),
      params({ amount: "abc" }),
      params({ fromAccount: "carol" }),
      params({ toAccount: "nobody" }),
      params({ currency: "EUR" }),
    ];
    const outcomes = [ok, poor, bad, moved, nobody, euro].map((p) => settle(wallet.transfer(p)));
    await waitFor("six requests", () => fake.streams[0]?.received.length === 6);
    fake.streams[0].answer(
      failed(nobody, "rejected", { code: Code.NOT_FOUND, reason: "ACCOUNT_NOT_FOUND", message: "no such account", field: "to_account" }),
      success({ ...ok, transactionId: "00000000-0000-4000-8000-ffffffffffff" }), // nobody waits for it: ignored
      failed(moved, "unavailable", { code: Code.UNAVAILABLE, reason: "NOT_LEADER", message: "not the leader" }),
      failed(bad, "rejected", { code: Code.INVALID_ARGUMENT, reason: "INVALID_AMOUNT", message: "amount: not a number", field: "amount" }),
      failed(poor, "rejected", { code: Code.FAILED_PRECONDITION, reason: "INSUFFICIENT_FUNDS", message: "balance too low" }),
      success(ok),
      failed(euro, "rejected", { code: Code.FAILED_PRECONDITION, reason: "CURRENCY_MISMATCH", message: "m", field: "currency" }),
    );
    const [a, b, c, d, e, f] = await Promise.all(outcomes);
    assert.ok("response" in a, `${JSON.stringify(a)}`);
    assert.equal(a.response.consistencyToken, `stream:${ok.transactionId}`);
    assert.ok("error" in b && b.error instanceof Rejected);
    assert.deepEqual([b.error.code, b.error.reason, b.error.field, b.error.definite], [Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", undefined, true]);
    assert.ok("error" in c && c.error instanceof Rejected);
    assert.deepEqual([c.error.code, c.error.reason, c.error.field], [Code.INVALID_ARGUMENT, "INVALID_AMOUNT", "amount"]);
    assert.match(c.error.message, /INVALID_ARGUMENT INVALID_AMOUNT: amount: not a number/);
    // The field is passed through whatever the code, as the unary call's BadRequest gives it.
    assert.ok("error" in e && e.error instanceof Rejected);
    assert.deepEqual([e.error.code, e.error.reason, e.error.field, e.error.details.domain], [Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", "to_account", "wallet.ledger"]);
    assert.ok("error" in f && f.error instanceof Rejected);
    assert.deepEqual([f.error.code, f.error.reason, f.error.field], [Code.FAILED_PRECONDITION, "CURRENCY_MISMATCH", "currency"]);
    // The unavailable one went again, alone, unary, with the very same request.
    assert.ok("response" in d);
    assert.equal(d.response.consistencyToken, `unary:${moved.transactionId}`);
    assert.deepEqual(fake.unaries.map((u) => u.request), [sent(moved)]);
    // Successes (stream or unary) teach the leader; the others do not.
    assert.equal(wallet.leader("alice"), fake.address);
    assert.equal(wallet.leader("carol"), fake.address);
    assert.deepEqual(
      [wallet.stats().pipelinedTransfers, wallet.stats().unaryFallbacks, wallet.stats().unaryTransfers],
      [6, 1, 1],
    );
  });

  it("carries replayed on pipelined results and rejections, and on unary rejections from ErrorInfo", async () => {
    const wallet = client();
    const [again, fresh, poorAgain, poorFresh] = [params(), params(), params({ amount: "1000.00" }), params({ amount: "1000.00" })];
    fake.onRequest = (stream, request) => {
      const replayed = request.transactionId === again.transactionId || request.transactionId === poorAgain.transactionId;
      if (request.amount === "1000.00") {
        stream.answer(failed(request, "rejected", { code: Code.FAILED_PRECONDITION, reason: "INSUFFICIENT_FUNDS", message: "low" }, replayed));
      } else {
        stream.answer(success(request, undefined, replayed));
      }
    };
    assert.equal((await wallet.transfer(again)).replayed, true);
    assert.equal((await wallet.transfer(fresh)).replayed, false);
    const rejectedAgain = await settle(wallet.transfer(poorAgain));
    assert.ok("error" in rejectedAgain && rejectedAgain.error instanceof Rejected);
    assert.equal(rejectedAgain.error.replayed, true);
    const rejectedFresh = await settle(wallet.transfer(poorFresh));
    assert.ok("error" in rejectedFresh && rejectedFresh.error instanceof Rejected);
    assert.equal(rejectedFresh.error.replayed, false);
    assert.deepEqual(fake.unaries, []);

    const unary = client({ pipelineTransfers: false });
    fake.onUnary = (request, reply) => {
      if (request.amount === "1000.00") {
        const metadata: Record<string, string> = request.transactionId === poorAgain.transactionId ? { replayed: "true" } : {};
        reply(richError(Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", metadata));
      } else {
        reply(null, { status: "success", transactionId: request.transactionId, consistencyToken: "u", replayed: request.transactionId === again.transactionId });
      }
    };
    assert.equal((await unary.transfer(again)).replayed, true);
    assert.equal((await unary.transfer(fresh)).replayed, false);
    const unaryAgain = await settle(unary.transfer(poorAgain));
    assert.ok("error" in unaryAgain && unaryAgain.error instanceof Rejected);
    assert.deepEqual([unaryAgain.error.reason, unaryAgain.error.replayed], ["INSUFFICIENT_FUNDS", true]);
    const unaryFresh = await settle(unary.transfer(poorFresh));
    assert.ok("error" in unaryFresh && unaryFresh.error instanceof Rejected);
    assert.equal(unaryFresh.error.replayed, false);
  });

  it("hands results for the same id to its callers in turn, and sends a conflicting request under that id unary", async () => {
    const wallet = client();
    fake.onRequest = () => {};
    const p = params();
    const first = settle(wallet.transfer(p));
    const second = settle(wallet.transfer({ ...p }));
    // Results name only the id: a different transfer under it cannot share the stream.
    const conflicting = settle(wallet.transfer({ ...p, amount: "2.00" }));
    await waitFor("two requests", () => fake.streams[0]?.received.length === 2);
    assert.deepEqual(fake.streams[0].received, [sent(p), sent(p)]);
    await waitFor("the conflicting request, unary", () => fake.unaries.length === 1);
    assert.deepEqual(fake.unaries[0].request, sent({ ...p, amount: "2.00" }));
    fake.streams[0].answer(success(p, "token-1"));
    const one = await first;
    assert.ok("response" in one && one.response.consistencyToken === "token-1");
    fake.streams[0].answer(success(p, "token-2"));
    const two = await second;
    assert.ok("response" in two && two.response.consistencyToken === "token-2");
    assert.ok("response" in (await conflicting));
    assert.deepEqual(
      [wallet.stats().pipelinedTransfers, wallet.stats().unaryFallbacks, wallet.stats().unaryTransfers],
      [2, 0, 1],
    );
  });

  it("sends reference and metadata down the stream; the same id with other metadata or reference goes unary", async () => {
    const wallet = client();
    fake.onRequest = () => {};
    const p = params({ reference: "order-1", metadata: { channel: "web", note: "ünïcode ✓" } });
    const first = settle(wallet.transfer(p));
    const same = settle(wallet.transfer({ ...p, metadata: { note: "ünïcode ✓", channel: "web" } })); // key order is no difference
    const otherMetadata = settle(wallet.transfer({ ...p, metadata: { channel: "app", note: "ünïcode ✓" } }));
    const otherReference = settle(wallet.transfer({ ...p, reference: "order-2" }));
    const fewerKeys = settle(wallet.transfer({ ...p, metadata: { channel: "web" } }));
    await waitFor("two requests", () => fake.streams[0]?.received.length === 2);
    assert.deepEqual(fake.streams[0].received, [sent(p), sent(p)]);
    await waitFor("the three conflicting requests, unary", () => fake.unaries.length === 3);
    assert.deepEqual(
      fake.unaries.map((u) => JSON.stringify([u.request.reference, u.request.metadata])).sort(),
      [
        ["order-1", { channel: "app", note: "ünïcode ✓" }],
        ["order-1", { channel: "web" }],
        ["order-2", { channel: "web", note: "ünïcode ✓" }],
      ].map((x) => JSON.stringify(x)),
    );
    fake.streams[0].answer(success(p, "token-1"), success(p, "token-2"));
    for (const outcome of await Promise.all([first, same, otherMetadata, otherReference, fewerKeys])) {
      assert.ok("response" in outcome, JSON.stringify(outcome));
    }
    assert.deepEqual([wallet.stats().pipelinedTransfers, wallet.stats().unaryTransfers], [2, 3]);
  });

  it("retries malformed results (unknown status, rejected without an error) through the unary path", async () => {
    const wallet = client();
    const [x, y, z] = [params(), params(), params()];
    fake.onRequest = (stream, request) => {
      if (request.transactionId === x.transactionId) stream.answer({ ...success(x), status: "weird" });
      else if (request.transactionId === y.transactionId) stream.answer(failed(y, "rejected"));
      else stream.answer(failed(z, "rejected", { code: 0, reason: "WHATEVER" }));
    };
    for (const p of [x, y, z]) assert.equal((await wallet.transfer(p)).consistencyToken, `unary:${p.transactionId}`);
    assert.equal(wallet.stats().unaryFallbacks, 3);
    assert.equal(fake.streams.length, 1);
  });

  it("sends every waiter of a failed, refused or ended stream unary, and opens a new stream next time", async () => {
    const cases: [string, (stream: FakeStream) => void][] = [
      ["refused: UNIMPLEMENTED", (s) => s.fail(Code.UNIMPLEMENTED, "unknown method SubmitTransfers")],
      ["refused: UNAVAILABLE", (s) => s.fail(Code.UNAVAILABLE, "shutting down")],
      ["failed mid-stream", (s) => setTimeout(() => s.fail(Code.INTERNAL, "broken"), 20)],
      ["ended by the node", (s) => setTimeout(() => s.finish(), 20)],
    ];
    for (const [name, end] of cases) {
      fake.reset();
      const wallet = client();
      fake.onRequest = () => {};
      fake.onStream = end;
      const calls = [params(), params(), params()];
      const responses = await Promise.all(calls.map((p) => wallet.transfer(p)));
      assert.deepEqual(responses.map((r) => r.consistencyToken), calls.map((p) => `unary:${p.transactionId}`), name);
      assert.deepEqual(fake.unaries.map((u) => u.request.transactionId).sort(), calls.map((p) => p.transactionId).sort(), name);
      const stats = wallet.stats();
      assert.deepEqual([stats.streamsOpened, stats.pipelinedTransfers, stats.unaryFallbacks], [1, 3, 3], name);
      assert.equal(stats.streamsFailed, name === "ended by the node" ? 0 : 1, name);
      // The broken stream is forgotten: the next call opens a new one, which works.
      fake.onStream = () => {};
      fake.onRequest = (stream, request) => stream.answer(success(request));
      const next = params();
      assert.equal((await wallet.transfer(next)).consistencyToken, `stream:${next.transactionId}`, name);
      assert.equal(wallet.stats().streamsOpened, 2, name);
      assert.equal(fake.streams.length, 2, name);
    }
  });

  it("sends a call with no result within the call timeout unary, and ignores the late result", async () => {
    const wallet = client({ callTimeoutMs: 150 });
    fake.onRequest = () => {};
    const p = params();
    const started = Date.now();
    const response = await wallet.transfer(p);
    const took = Date.now() - started;
    assert.equal(response.consistencyToken, `unary:${p.transactionId}`);
    assert.ok(took >= 140 && took < 1500, `went unary after ${took} ms`);
    fake.streams[0].answer(success(p)); // nobody waits for it any more
    // The stream still serves the next call.
    fake.onRequest = (stream, request) => stream.answer(success(request));
    const q = params();
    assert.equal((await wallet.transfer(q)).consistencyToken, `stream:${q.transactionId}`);
    assert.deepEqual([wallet.stats().streamsOpened, wallet.stats().unaryFallbacks], [1, 1]);
  });

  it(`respects the stream's backpressure and sends what exceeds ${PIPE_QUEUE_MAX} waiting requests unary`, async () => {
    const wallet = client({ callTimeoutMs: 10_000, totalDeadlineMs: 20_000 });
    fake.reading = false; // no result comes back until the test says so
    // A burst: the stream takes a few at once (then write() asks to wait for "drain"),
    // PIPE_QUEUE_MAX more wait in the pipe, and the rest go unary at once.
    const calls = Array.from({ length: 2500 }, () => params());
    const outcomes = calls.map((p) => wallet.transfer(p));
    const stats = wallet.stats();
    const unary = stats.unaryTransfers;
    assert.ok(stats.pipelinedTransfers > PIPE_QUEUE_MAX && stats.pipelinedTransfers < PIPE_QUEUE_MAX + 100, JSON.stringify(stats));
    assert.equal(stats.pipelinedTransfers + unary, calls.length, JSON.stringify(stats));
    assert.equal(stats.unaryFallbacks, 0);
    // The node reads: everything pipelined is written and answered.
    await waitFor("the stream", () => fake.streams.length === 1);
    fake.streams[0].read();
    const responses = await Promise.all(outcomes);
    const viaStream = responses.filter((r) => r.consistencyToken.startsWith("stream:")).length;
    assert.equal(viaStream, stats.pipelinedTransfers);
    assert.equal(fake.streams[0].received.length, stats.pipelinedTransfers);
    assert.equal(fake.unaries.length, unary);
    // The requests went in the callers' order.
    const sent = fake.streams[0].received.map((r) => r.transactionId);
    assert.deepEqual(sent, calls.map((c) => c.transactionId).filter((id) => sent.includes(id)));
  });

  it("keeps each caller's deadline, on the stream and in the unary retry", async () => {
    const wallet = client({ totalDeadlineMs: 300, callTimeoutMs: 5000 });
    fake.onRequest = () => {}; // never answered
    const started = Date.now();
    const outcomes = [params(), params(), params()].map((p) => wallet.transfer(p).catch((e: unknown) => e));
    for (const error of await Promise.all(outcomes)) {
      assert.ok(error instanceof Indefinite, `${error}`);
      assert.equal(error.code, Code.DEADLINE_EXCEEDED);
      assert.equal(error.reason, "DEADLINE_EXCEEDED");
    }
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 280 && elapsed < 1500, `settled after ${elapsed} ms`);
    assert.equal(fake.unaries.length, 0, "a call whose deadline passed went unary");

    // The unary retry after the stream gets only what is left of the caller's time.
    fake.reset();
    const other = client({ totalDeadlineMs: 400, callTimeoutMs: 5000 });
    fake.onRequest = (stream, request) =>
      setTimeout(() => stream.answer(failed(request, "unavailable", { code: Code.UNAVAILABLE, reason: "NO_LEADER" })), 250);
    fake.onUnary = () => {}; // never answered
    const t0 = Date.now();
    const error = await other.transfer(params()).catch((e: unknown) => e);
    const took = Date.now() - t0;
    assert.ok(error instanceof Indefinite, `${error}`);
    assert.ok(took >= 380 && took < 1500, `unary retry ended after ${took} ms`);
    assert.equal(fake.unaries.length, 1);
  });

  it("sends plain unary transfers when pipelineTransfers is false", async () => {
    const wallet = client({ pipelineTransfers: false });
    const calls = [params(), params()];
    const responses = await Promise.all(calls.map((p) => wallet.transfer(p)));
    assert.deepEqual(responses.map((r) => r.consistencyToken), calls.map((p) => `unary:${p.transactionId}`));
    assert.equal(fake.streams.length, 0);
    assert.deepEqual(wallet.stats(), {
      transfers: 2,
      streamsOpened: 0,
      streamsFailed: 0,
      pipelinedTransfers: 0,
      unaryFallbacks: 0,
      unaryTransfers: 2,
    });
    assert.throws(() => new WalletClient([fake.address], { pipelineTransfers: "no" as unknown as boolean }), RangeError);
  });

  it("ends its streams on close(); a transfer in flight still gets its answer, a new one is refused", async () => {
    const wallet = new WalletClient([fake.address], FAST);
    fake.onRequest = () => {};
    const p = params();
    const inFlight = settle(wallet.transfer(p));
    await waitFor("the request", () => fake.streams[0]?.received.length === 1);
    wallet.close();
    await waitFor("the stream's end", () => fake.streams[0].halfClosed);
    fake.streams[0].answer(success(p));
    const answered = await inFlight;
    assert.ok("response" in answered, `${JSON.stringify(answered)}`);
    assert.equal(answered.response.consistencyToken, `stream:${p.transactionId}`);
    await assert.rejects(wallet.transfer(params()), /the client is closed/);
    assert.equal(fake.unaries.length, 0);
  });

  it("on close(), rejects what was never written and stops the stream once nobody waits on it", async () => {
    const wallet = new WalletClient([fake.address], { ...FAST, callTimeoutMs: 500 });
    await wallet.transfer(params()); // the stream is open
    fake.onRequest = () => {}; // and now answers nothing
    // A burst (as above: some written, PIPE_QUEUE_MAX waiting to be, the rest unary), then close().
    const outcomes = Array.from({ length: PIPE_QUEUE_MAX + 100 }, () => settle(wallet.transfer(params())));
    const written = wallet.stats().pipelinedTransfers - 1 - PIPE_QUEUE_MAX;
    wallet.close();
    const settled = await Promise.all(outcomes);
    const errors = settled.map((s) => ("error" in s ? String(s.error) : "ok"));
    // Those still waiting to be written are rejected at once (nothing was sent)...
    assert.equal(errors.filter((e) => /closed before the transfer was sent/.test(e)).length, PIPE_QUEUE_MAX);
    // ...those written wait for their answer, none comes, and a closed client retries nothing.
    const rest = errors.filter((e) => !/closed before the transfer was sent/.test(e));
    assert.ok(rest.every((e) => e === "ok" || /the client is closed/.test(e)), rest.join());
    assert.ok(rest.filter((e) => /the client is closed/.test(e)).length >= written);
    await waitFor("the stream's end", () => fake.streams[0].halfClosed);
    assert.equal(fake.streams[0].received.length, 1 + written);
    // Nobody waits on the stream any more, and the node never ended it: the client stops it.
    await waitFor("the stream's cancellation", () => fake.streams[0].cancelled);
  });

  it(`ends a stream nobody waited on for ${PIPE_IDLE_MS} ms; the next call opens a new one`, async () => {
    const wallet = client();
    await wallet.transfer(params());
    await new Promise((resolve) => setTimeout(resolve, PIPE_IDLE_MS / 2));
    await wallet.transfer(params()); // busy again: the idle time starts over
    await new Promise((resolve) => setTimeout(resolve, PIPE_IDLE_MS * 0.7));
    assert.equal(fake.streams[0].halfClosed, false);
    await waitFor("the idle stream's end", () => fake.streams[0].halfClosed, PIPE_IDLE_MS * 2);
    const next = params();
    assert.equal((await wallet.transfer(next)).consistencyToken, `stream:${next.transactionId}`);
    assert.deepEqual([fake.streams.length, wallet.stats().streamsOpened, wallet.stats().streamsFailed], [2, 2, 0]);
  });

  it("lets Node exit: at once after close(), after the idle time without it", async () => {
    const script = (close: boolean) => `
      const { WalletClient } = require(${JSON.stringify(join(__dirname, "..", "src"))});
      const wallet = new WalletClient([${JSON.stringify(fake.address)}]);
      wallet.transfer({ transactionId: "00000000-0000-4000-8000-000000000001", fromAccount: "a", toAccount: "b", amount: "1.00", currency: "USD" })
        .then((r) => {
          const done = Date.now();
          process.on("exit", () => console.log(JSON.stringify({ token: r.consistencyToken, exitAfterMs: Date.now() - done })));
          ${close ? "wallet.close();" : ""}
        });`;
    const run = (close: boolean) =>
      new Promise<{ token: string; exitAfterMs: number }>((resolve, reject) => {
        const child = spawn(process.execPath, ["-e", script(close)], { stdio: ["ignore", "pipe", "inherit"] });
        let out = "";
        child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
        const killer = setTimeout(() => child.kill(), 10_000);
        child.on("exit", (code) => {
          clearTimeout(killer);
          if (code === 0) resolve(JSON.parse(out));
          else reject(new Error(`exit ${code}: ${out}`));
        });
      });
    const [closed, idle] = await Promise.all([run(true), run(false)]);
    assert.equal(closed.token, "stream:00000000-0000-4000-8000-000000000001");
    assert.ok(closed.exitAfterMs < PIPE_IDLE_MS / 2, `exited ${closed.exitAfterMs} ms after close()`);
    assert.ok(idle.exitAfterMs >= PIPE_IDLE_MS * 0.9 && idle.exitAfterMs < PIPE_IDLE_MS * 4, `exited ${idle.exitAfterMs} ms after its last call`);
  });

  it("still takes the positional form", async () => {
    const wallet = client();
    const p = params();
    const response = await wallet.transfer(p.transactionId, p.fromAccount, p.toAccount, p.amount, p.currency);
    assert.equal(response.transactionId, p.transactionId);
    assert.deepEqual(fake.streams[0].received, [sent(p)]);
  });

  it("sends the bearer token on streams and unary calls", async () => {
    const wallet = client({ token: " s3cret-token\n" });
    fake.onRequest = (stream, request) => stream.answer(failed(request, "unavailable", { code: Code.UNAVAILABLE, reason: "NO_LEADER" }));
    await wallet.transfer(params());
    assert.deepEqual(fake.streams[0].metadata.get("authorization"), ["Bearer s3cret-token"]);
    assert.deepEqual(fake.unaries[0].metadata.get("authorization"), ["Bearer s3cret-token"]);
    const anonymous = client();
    await anonymous.transfer(params());
    assert.deepEqual(fake.streams[1].metadata.get("authorization"), []);
  });

  it("asks the nodes not to forward when given several endpoints, and not when given one", async () => {
    // Several: the client follows leader hints itself (the second endpoint is never dialled).
    const routing = new WalletClient([fake.address, "127.0.0.1:1"], FAST);
    clients.push(routing);
    fake.onRequest = (stream, request) => stream.answer(failed(request, "unavailable", { code: Code.UNAVAILABLE, reason: "NO_LEADER" }));
    await routing.transfer(params());
    assert.deepEqual(fake.streams[0].metadata.get(NO_FORWARD_HEADER), ["sdk"]);
    assert.deepEqual(fake.unaries[0].metadata.get(NO_FORWARD_HEADER), ["sdk"]);
    // One (here spelt twice): the nodes forward, so nothing is sent.
    const single = new WalletClient([fake.address, ` ${fake.address}/`], FAST);
    clients.push(single);
    await single.transfer(params());
    assert.deepEqual(fake.streams[1].metadata.get(NO_FORWARD_HEADER), []);
    assert.deepEqual(fake.unaries[1].metadata.get(NO_FORWARD_HEADER), []);
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
    assert.deepEqual(new Connection({}).metadata().get(NO_FORWARD_HEADER), []);
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
