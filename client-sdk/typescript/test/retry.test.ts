// Unit tests of the retry loop and the error decoding, without a cluster (node --test).
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Metadata, status as Code, type ServiceError } from "@grpc/grpc-js";

import * as sdk from "../src";
import {
  ErrorReason,
  Indefinite,
  REASONS,
  REASON_DEADLINE_EXCEEDED,
  REASON_NOT_LEADER,
  REASON_TRANSPORT,
  Rejected,
  classify,
  itemError,
  reasonOf,
  backoffCeiling,
  callWithRetry,
  errorDetails,
  fullJitter,
  type RetryPolicy,
} from "../src";
import { BadRequest, ErrorInfo, RetryInfo } from "../src/gen/google/rpc/error_details";
import { Status } from "../src/gen/google/rpc/status";

type Detail = { type: string; value: Uint8Array };
const info = (reason: string, metadata: Record<string, string> = {}): Detail => ({
  type: "google.rpc.ErrorInfo",
  value: ErrorInfo.encode({ reason, domain: "wallet.ledger", metadata }).finish(),
});

/** A failed call as @grpc/grpc-js reports it, with a rich status in the trailers. */
function serviceError(code: Code, message: string, details: Detail[] | null = []): ServiceError {
  const metadata = new Metadata();
  if (details !== null) {
    const status = Status.encode({
      code,
      message,
      details: details.map((d) => ({ typeUrl: `type.googleapis.com/${d.type}`, value: Buffer.from(d.value) })),
    }).finish();
    metadata.set("grpc-status-details-bin", Buffer.from(status));
  }
  return Object.assign(new Error(`${code} ${message}`), { code, details: message, metadata });
}

const FAST: RetryPolicy = { callTimeoutMs: 500, totalDeadlineMs: 2000, attemptsMax: 5, backoffBaseMs: 1, backoffMaxMs: 4 };
const REQUEST = { transactionId: "3f2504e0-4f89-41d3-9a0c-0305e82c3301" };

/** A `send` that fails with the given errors in turn, then answers "ok"; records calls. */
function recorder(...errors: ServiceError[]) {
  const calls: { endpoint: string; request: object }[] = [];
  const send = async (endpoint: string, deadline: Date) => {
    assert.ok(deadline instanceof Date);
    calls.push({ endpoint, request: REQUEST });
    const error = errors.shift();
    if (error !== undefined) throw error;
    return "ok";
  };
  return { send, calls };
}

describe("backoff", () => {
  it("doubles then caps", () => {
    assert.equal(backoffCeiling(0, 20, 1000), 20);
    assert.equal(backoffCeiling(1, 20, 1000), 40);
    assert.equal(backoffCeiling(5, 20, 1000), 640);
    assert.equal(backoffCeiling(6, 20, 1000), 1000);
    assert.equal(backoffCeiling(10_000, 20, 1000), 1000);
  });
  it("full jitter is bounded and spread", () => {
    const samples = Array.from({ length: 500 }, () => fullJitter(10, 20, 1000));
    assert.ok(samples.every((s) => s >= 0 && s <= 1000));
    assert.ok(samples.some((s) => s < 500) && samples.some((s) => s > 500));
  });
});

describe("callWithRetry", () => {
  it("retries unknown outcomes with the same request", async () => {
    const { send, calls } = recorder(
      serviceError(Code.UNAVAILABLE, "connection refused", null),
      serviceError(Code.UNAVAILABLE, "no leader", [info("NO_LEADER")]),
      serviceError(Code.DEADLINE_EXCEEDED, "slow", null),
    );
    assert.equal(await callWithRetry(send, ["a:1", "b:1", "c:1"], FAST), "ok");
    assert.deepEqual(calls.map((c) => c.endpoint), ["a:1", "b:1", "c:1", "a:1"]);
    assert.ok(calls.every((c) => c.request === REQUEST));
  });

  it("follows a NOT_LEADER hint at once", async () => {
    const sleeps: number[] = [];
    const { send, calls } = recorder(
      serviceError(Code.UNAVAILABLE, "not the leader", [info("NOT_LEADER", { leader_id: "3", leader_address: "c:1" })]),
    );
    await callWithRetry(send, ["a:1", "b:1", "c:1"], FAST, { sleep: async (ms) => void sleeps.push(ms) });
    assert.deepEqual(calls.map((c) => c.endpoint), ["a:1", "c:1"]);
    assert.deepEqual(sleeps, []);
  });

  it("does not retry definite errors", async () => {
    for (const [code, reason] of [
      [Code.INVALID_ARGUMENT, "INVALID_AMOUNT"],
      [Code.NOT_FOUND, "ACCOUNT_NOT_FOUND"],
      [Code.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS"],
      [Code.ALREADY_EXISTS, "TRANSACTION_ID_REUSED"],
      [Code.UNKNOWN, "UNKNOWN"],
    ] as const) {
      const { send, calls } = recorder(serviceError(code, "no", [info(reason)]));
      await assert.rejects(callWithRetry(send, ["a:1"], FAST), (error: unknown) => {
        assert.ok(error instanceof Rejected);
        assert.equal(error.code, code);
        assert.equal(error.reason, reason);
        assert.equal(error.definite, true);
        return true;
      });
      assert.equal(calls.length, 1);
    }
  });

  it("bounds the attempts", async () => {
    const { send, calls } = recorder(...Array.from({ length: 20 }, () => serviceError(Code.UNAVAILABLE, "down", null)));
    await assert.rejects(callWithRetry(send, ["a:1", "b:1"], FAST), (error: unknown) => {
      assert.ok(error instanceof Indefinite);
      assert.equal(error.reason, "TRANSPORT_ERROR");
      assert.equal(error.definite, false);
      return true;
    });
    assert.equal(calls.length, FAST.attemptsMax);
  });

  it("bounds the total time and honours RetryInfo", async () => {
    let now = 0;
    const retry: Detail = {
      type: "google.rpc.RetryInfo",
      value: RetryInfo.encode({ retryDelay: { seconds: "1", nanos: 0 } }).finish(),
    };
    const { send, calls } = recorder(
      ...Array.from({ length: 20 }, () => serviceError(Code.RESOURCE_EXHAUSTED, "busy", [info("OVERLOADED"), retry])),
    );
    const sleep = async (ms: number) => {
      assert.ok(ms >= 1000, `pause ${ms} below RetryInfo`);
      now += ms;
    };
    await assert.rejects(callWithRetry(send, ["a:1"], FAST, { now: () => now, sleep }), (error: unknown) => {
      assert.ok(error instanceof Indefinite);
      assert.equal(error.reason, "OVERLOADED");
      return true;
    });
    assert.ok(now < FAST.totalDeadlineMs);
    assert.equal(calls.length, 2);
  });
});

describe("errorDetails", () => {
  it("decodes ErrorInfo and BadRequest", () => {
    const badRequest: Detail = {
      type: "google.rpc.BadRequest",
      value: BadRequest.encode({
        fieldViolations: [{ field: "amount", description: "x", reason: "", localizedMessage: undefined }],
      }).finish(),
    };
    const details = errorDetails(serviceError(Code.INVALID_ARGUMENT, "amount: bad", [info("INVALID_AMOUNT"), badRequest]));
    assert.equal(details.reason, "INVALID_AMOUNT");
    assert.equal(details.domain, "wallet.ledger");
    assert.deepEqual(details.fieldViolations, [{ field: "amount", description: "x" }]);
  });
});

describe("reason constants", () => {
  const enumReasons = Object.keys(ErrorReason)
    .filter((name) => name.startsWith("ERROR_REASON_") && name !== "ERROR_REASON_UNSPECIFIED")
    .map((name) => name.slice("ERROR_REASON_".length));

  it("are the ErrorReason enum's names without the prefix, every one of them", () => {
    assert.ok(enumReasons.length > 50);
    assert.deepEqual([...REASONS].sort(), [...enumReasons].sort());
    assert.ok(!REASONS.has("UNSPECIFIED") && !REASONS.has("UNRECOGNIZED"));
    assert.equal(reasonOf(ErrorReason.ERROR_REASON_INSUFFICIENT_FUNDS), "INSUFFICIENT_FUNDS");
    assert.equal(reasonOf(ErrorReason.ERROR_REASON_UNSPECIFIED), "");
    assert.equal(reasonOf(ErrorReason.UNRECOGNIZED), "");
  });

  it("every exported REASON_ constant is an enum reason, save the SDK's own two", () => {
    const own = new Set([REASON_TRANSPORT, REASON_DEADLINE_EXCEEDED]);
    const constants = Object.entries(sdk)
      .filter(([name, value]) => name.startsWith("REASON_") && typeof value === "string")
      .map(([, value]) => value as string)
      .filter((value) => !own.has(value));
    assert.ok(constants.includes(REASON_NOT_LEADER));
    for (const value of constants) assert.ok(REASONS.has(value), value);
    for (const value of own) assert.ok(!REASONS.has(value), value);
  });
});

describe("replayed", () => {
  it("is read from ErrorInfo metadata replayed = \"true\"", () => {
    const replayed = classify(serviceError(Code.FAILED_PRECONDITION, "low", [info("INSUFFICIENT_FUNDS", { replayed: "true" })]));
    assert.ok(replayed instanceof Rejected);
    assert.equal(replayed.replayed, true);
    assert.equal(classify(serviceError(Code.FAILED_PRECONDITION, "low", [info("INSUFFICIENT_FUNDS")])).replayed, false);
    assert.equal(classify(serviceError(Code.FAILED_PRECONDITION, "low", [info("INSUFFICIENT_FUNDS", { replayed: "yes" })])).replayed, false);
  });

  it("is read from TransferResult.replayed for an item", () => {
    const error = { code: Code.ALREADY_EXISTS, reason: "TRANSACTION_ID_REUSED", message: "m", field: "" };
    assert.equal(itemError(error, true, true).replayed, true);
    assert.equal(itemError(error, true).replayed, false);
  });
});
