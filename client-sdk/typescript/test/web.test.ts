// Unit tests of the browser entry point (src/web.ts) against a fake fetch: gRPC-web framing
// (frames split across chunks, several frames in one chunk, the 0x80 trailer frame), the
// status from the trailer frame or the headers, errors decoded into the SDK's typed errors
// (grpc-status-details-bin), retries, and a watch that resumes after the last delivered
// sequence; then the published bundle (dist/web/index.mjs) itself, loaded without @grpc/grpc-js.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";

import { BadRequest, ErrorInfo } from "../src/gen/google/rpc/error_details";
import { Status } from "../src/gen/google/rpc/status";
import { BalanceUpdate, GetBalanceRequest, GetBalanceResponse, WatchBalancesRequest } from "../src/gen/wallet/v1/query";
import { AccountStatus } from "../src/gen/wallet/v1/wallet";
import {
  FrameParser,
  GrpcWebError,
  GrpcWebTransport,
  Indefinite,
  Rejected,
  TRAILER_FLAG,
  WebQueryClient,
  encodeFrame,
  normalizeWebEndpoint,
  parseTrailers,
} from "../src/web";

const FAST = { callTimeoutMs: 1_000, totalDeadlineMs: 3_000, attemptsMax: 3, backoffBaseMs: 1, backoffMaxMs: 4 };

function frame(data: Uint8Array, flags = 0): Uint8Array {
  const out = encodeFrame(data);
  out[0] = flags;
  return out;
}

function trailer(text: string): Uint8Array {
  return frame(new TextEncoder().encode(text), TRAILER_FLAG);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** `bytes` cut into chunks of `size` bytes (1: byte by byte). */
function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.slice(i, i + size));
  return out;
}

function balanceResponse(account: string, sequence: number): GetBalanceResponse {
  return {
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
    position: `v1.0.${sequence}`,
  } as GetBalanceResponse;
}

function update(account: string, sequence: number, snapshot = false): BalanceUpdate {
  return BalanceUpdate.fromPartial({
    snapshot,
    balance: balanceResponse(account, sequence).balance,
    deltaMinor: snapshot ? "0" : "100",
    delta: snapshot ? "" : "1.00",
    position: `v1.0.${sequence}`,
  });
}

interface Answer {
  status?: number;
  headers?: Record<string, string>;
  /** Body chunks, sent one by one (a pause between them); an Error breaks the body there. */
  body?: (Uint8Array | Error)[];
}

/** A fetch answering each call with the next answer; records the requests. */
function fakeFetch(answers: Answer[]) {
  const requests: { url: string; headers: Record<string, string>; body: Uint8Array }[] = [];
  const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries((init?.headers ?? {}) as Record<string, string>)) headers[k.toLowerCase()] = v;
    requests.push({ url: String(input), headers, body: new Uint8Array(init?.body as Uint8Array) });
    const answer = answers.shift();
    if (answer === undefined) throw new TypeError("fetch failed (no more answers)");
    const parts = [...(answer.body ?? [])];
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        const next = parts.shift();
        if (next === undefined) controller.close();
        else if (next instanceof Error) controller.error(next);
        else controller.enqueue(next);
      },
    });
    return new Response(body, {
      status: answer.status ?? 200,
      headers: { "content-type": "application/grpc-web+proto", ...answer.headers },
    });
  }) as typeof fetch;
  return { fetchImpl, requests };
}

function statusDetails(code: number, message: string, reason: string, field?: string): string {
  const details = [
    {
      typeUrl: "type.googleapis.com/google.rpc.ErrorInfo",
      value: Buffer.from(ErrorInfo.encode({ reason, domain: "wallet.ledger", metadata: {} }).finish()),
    },
  ];
  if (field !== undefined) {
    details.push({
      typeUrl: "type.googleapis.com/google.rpc.BadRequest",
      value: Buffer.from(BadRequest.encode({ fieldViolations: [{ field, description: message }] } as BadRequest).finish()),
    });
  }
  // Unpadded, as some servers send it.
  return Buffer.from(Status.encode({ code, message, details }).finish()).toString("base64").replace(/=+$/, "");
}

describe("gRPC-web framing", () => {
  it("reassembles frames split across chunks, byte by byte, and several in one chunk", () => {
    const a = GetBalanceResponse.encode(balanceResponse("a", 1)).finish();
    const b = GetBalanceResponse.encode(balanceResponse("b", 2)).finish();
    const body = concat(frame(a), frame(b), trailer("grpc-status:0\r\ngrpc-message:\r\n"));
    for (const size of [1, 2, 3, 5, 7, body.length]) {
      const parser = new FrameParser();
      const frames = chunks(body, size).flatMap((chunk) => parser.push(chunk));
      assert.equal(frames.length, 3, `chunks of ${size}`);
      assert.deepEqual(frames[0], { trailer: false, data: a });
      assert.deepEqual(frames[1], { trailer: false, data: b });
      assert.equal(frames[2].trailer, true);
      assert.equal(parseTrailers(frames[2].data).first("grpc-status"), "0");
      assert.equal(parser.pending, 0);
    }
  });

  it("keeps an incomplete frame pending, and takes an empty message", () => {
    const parser = new FrameParser();
    assert.deepEqual(parser.push(frame(new Uint8Array(0))), [{ trailer: false, data: new Uint8Array(0) }]);
    assert.deepEqual(parser.push(frame(new Uint8Array([1, 2, 3])).slice(0, 6)), []);
    assert.equal(parser.pending, 6);
  });

  it("refuses compressed frames (none asked for)", () => {
    assert.throws(() => new FrameParser().push(frame(new Uint8Array([1]), 0x01)), GrpcWebError);
  });

  it("reads trailers with -bin values (base64, unpadded) and mixed-case names", () => {
    const metadata = parseTrailers(new TextEncoder().encode("Grpc-Status: 5\r\ngrpc-status-details-bin:AQID\r\nx:y"));
    assert.equal(metadata.first("grpc-status"), "5");
    assert.deepEqual(metadata.get("grpc-status-details-bin")[0], new Uint8Array([1, 2, 3]));
    assert.equal(metadata.first("x"), "y");
  });

  it("normalizes endpoints to origins", () => {
    assert.equal(normalizeWebEndpoint("127.0.0.1:50061"), "http://127.0.0.1:50061");
    assert.equal(normalizeWebEndpoint("https://read.example:443/"), "https://read.example");
    assert.throws(() => normalizeWebEndpoint("http://h:1/path"), RangeError);
    assert.throws(() => normalizeWebEndpoint("ftp://h:1"), RangeError);
  });
});

describe("GrpcWebTransport and WebQueryClient", () => {
  it("sends a gRPC-web unary call and decodes the answer split across chunks", async () => {
    const body = concat(frame(GetBalanceResponse.encode(balanceResponse("alice", 3)).finish()), trailer("grpc-status:0\r\n"));
    const { fetchImpl, requests } = fakeFetch([{ body: chunks(body, 4) }]);
    const client = new WebQueryClient("http://127.0.0.1:1/", { ...FAST, fetch: fetchImpl, token: "secret" });
    const response = await client.getBalance("alice", "tok");
    assert.equal(response.balance?.balance, "3.00");
    assert.equal(requests.length, 1);
    const request = requests[0];
    assert.equal(request.url, "http://127.0.0.1:1/wallet.v1.QueryService/GetBalance");
    assert.equal(request.headers["content-type"], "application/grpc-web+proto");
    assert.equal(request.headers["x-grpc-web"], "1");
    assert.equal(request.headers.authorization, "Bearer secret");
    assert.match(request.headers["grpc-timeout"], /^\d+m$/);
    const frames = new FrameParser().push(request.body);
    assert.deepEqual(GetBalanceRequest.decode(frames[0].data), { accountId: "alice", consistencyToken: "tok" });
  });

  it("turns an error status in the trailer frame into the SDK's typed error, details decoded", async () => {
    const details = statusDetails(5, "no account ghost", "ACCOUNT_NOT_FOUND", "account_id");
    const { fetchImpl, requests } = fakeFetch([
      { body: [trailer(`grpc-status:5\r\ngrpc-message:no%20account%20ghost\r\ngrpc-status-details-bin:${details}\r\n`)] },
    ]);
    const client = new WebQueryClient(["127.0.0.1:1"], { ...FAST, fetch: fetchImpl });
    const error = await client.getBalance("ghost").then(
      () => assert.fail("resolved"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof Rejected, String(error));
    assert.equal(error.reason, "ACCOUNT_NOT_FOUND");
    assert.equal(error.field, "account_id");
    assert.equal(error.details.domain, "wallet.ledger");
    assert.equal(error.details.message, "no account ghost");
    assert.equal(requests.length, 1, "a definite answer is not retried");
  });

  it("reads a trailers-only answer (the status in the headers)", async () => {
    const { fetchImpl } = fakeFetch([{ headers: { "grpc-status": "16", "grpc-message": "a token is needed" } }]);
    const client = new WebQueryClient("127.0.0.1:1", { ...FAST, fetch: fetchImpl });
    await assert.rejects(client.getBalance("a"), (e: unknown) => e instanceof Rejected && e.reason === "UNAUTHENTICATED");
  });

  it("retries an unknown outcome (HTTP 503, a body cut off, fetch failing) on the next endpoint", async () => {
    const ok = concat(frame(GetBalanceResponse.encode(balanceResponse("a", 1)).finish()), trailer("grpc-status:0\r\n"));
    const { fetchImpl, requests } = fakeFetch([{ status: 503 }, { body: [ok.slice(0, 8)] }, { body: [ok] }]);
    const client = new WebQueryClient("http://r1:1,http://r2:2", { ...FAST, attemptsMax: 4, fetch: fetchImpl });
    const response = await client.getBalance("a");
    assert.equal(response.balance?.sequence, "1");
    assert.deepEqual(
      requests.map((r) => new URL(r.url).host),
      ["r1:1", "r2:2", "r1:1"],
    );
    const failing = new WebQueryClient("http://r1:1", { ...FAST, attemptsMax: 2, fetch: fakeFetch([]).fetchImpl });
    await assert.rejects(failing.getBalance("a"), (e: unknown) => e instanceof Indefinite && e.reason === "TRANSPORT_ERROR");
  });

  it("streams: emits each message as its frame completes, then end", async () => {
    const body = concat(
      frame(BalanceUpdate.encode(update("a", 0, true)).finish()),
      frame(BalanceUpdate.encode(update("a", 1)).finish()),
      trailer("grpc-status:0\r\n"),
    );
    const { fetchImpl } = fakeFetch([{ body: chunks(body, 3) }]);
    const stream = new GrpcWebTransport({ fetch: fetchImpl }).serverStream(
      "http://h:1",
      "/wallet.v1.QueryService/WatchBalances",
      new Uint8Array(0),
      (b) => BalanceUpdate.decode(b),
    );
    const seen: string[] = [];
    await new Promise<void>((resolve, reject) => {
      stream.on("data", (u: BalanceUpdate) => seen.push(u.balance!.sequence));
      stream.on("error", reject);
      stream.on("end", () => resolve());
    });
    assert.deepEqual(seen, ["0", "1"]);
  });

  it("watchBalances resumes after the last delivered sequence, without repeats", async () => {
    const encoded = (u: BalanceUpdate) => frame(BalanceUpdate.encode(u).finish());
    const { fetchImpl, requests } = fakeFetch([
      // The first read node: the snapshot and one change, then the connection breaks.
      { body: [encoded(update("a", 0, true)), encoded(update("a", 1)), new Error("connection reset")] },
      // The second: a stream error the watch may get past (WATCH_LAGGED).
      { body: [trailer(`grpc-status:10\r\ngrpc-message:lagged\r\ngrpc-status-details-bin:${statusDetails(10, "lagged", "WATCH_LAGGED")}\r\n`)] },
      // The first again: replays #1 (dropped), then #2 and #3.
      { body: [encoded(update("a", 1)), encoded(update("a", 2)), encoded(update("a", 3)), trailer("grpc-status:0\r\n")] },
    ]);
    const client = new WebQueryClient(["http://r1:1", "http://r2:2"], { fetch: fetchImpl });
    const watch = client.watchBalances(["a"]);
    const seen: string[] = [];
    for await (const u of watch) {
      seen.push(`${u.snapshot ? "s" : ""}${u.balance!.sequence}`);
      if (seen.length === 4) break;
    }
    assert.deepEqual(seen, ["s0", "1", "2", "3"]);
    assert.equal(watch.resumes, 2);
    const resumes = requests.map((r) => WatchBalancesRequest.decode(new FrameParser().push(r.body)[0].data).resumeAfterSequence);
    assert.deepEqual(resumes, [{}, { a: "1" }, { a: "1" }]);
    assert.deepEqual(
      requests.map((r) => new URL(r.url).host),
      ["r1:1", "r2:2", "r1:1"],
    );
  });

  it("watchBalances fails with a typed error on a definite answer", async () => {
    const details = statusDetails(5, "no account ghost", "ACCOUNT_NOT_FOUND", "account_ids");
    const { fetchImpl } = fakeFetch([{ body: [trailer(`grpc-status:5\r\ngrpc-status-details-bin:${details}\r\n`)] }]);
    const watch = new WebQueryClient("http://r1:1", { fetch: fetchImpl }).watchBalances(["ghost"]);
    await assert.rejects(
      (async () => {
        for await (const _ of watch) assert.fail("an update");
      })(),
      (e: unknown) => e instanceof Rejected && e.reason === "ACCOUNT_NOT_FOUND",
    );
  });
});

describe("the browser bundle (dist/web/index.mjs)", () => {
  const bundle = join(__dirname, "..", "web", "index.mjs");

  it("has no @grpc/grpc-js, and works on fetch alone", async () => {
    const text = readFileSync(bundle, "utf8");
    assert.doesNotMatch(text, /\brequire\(["']|\bimport\(["']|from\s*["'](@grpc\/grpc-js|node:)/);
    // A real dynamic import (tsc would turn `import()` into require under commonjs).
    const load = new Function("url", "return import(url)") as (url: string) => Promise<typeof import("../src/web")>;
    const web = await load(pathToFileURL(bundle).href);
    const body = concat(frame(GetBalanceResponse.encode(balanceResponse("b", 7)).finish()), trailer("grpc-status:0\r\n"));
    const client = new web.WebQueryClient("http://h:1", { ...FAST, fetch: fakeFetch([{ body: chunks(body, 2) }]).fetchImpl });
    assert.equal((await client.getBalance("b")).balance?.balance, "7.00");
    const details = statusDetails(5, "gone", "ACCOUNT_NOT_FOUND", "account_id");
    const failing = new web.WebQueryClient("http://h:1", { ...FAST, fetch: fakeFetch([{ body: [trailer(`grpc-status:5\r\ngrpc-status-details-bin:${details}\r\n`)] }]).fetchImpl });
    await assert.rejects(failing.getBalance("b"), (e: unknown) => e instanceof web.Rejected && e.field === "account_id");
  });
});
