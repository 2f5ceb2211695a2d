/**
 * Checks against a live cluster (run by client-sdk/test-sdks.sh): bad input gets the
 * documented code, reason and field violation, decoded from the grpc-status-details-bin
 * trailer, and changes nothing; the retry loop gets past a dead node and gives up, bounded,
 * when all are dead.
 *
 *   node dist/test/live-check.js --write HOST:PORT,... --read HOST:PORT
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";

import { ChannelCredentials, status as Code, type ServiceError } from "@grpc/grpc-js";

import {
  ERROR_DOMAIN,
  Indefinite,
  QueryClient,
  Rejected,
  WalletClient,
  classify,
  codeName,
  newTransactionId,
} from "../src";
import { BadRequest, ErrorInfo } from "../src/gen/google/rpc/error_details";
import { Status } from "../src/gen/google/rpc/status";
import { WalletServiceClient } from "../src/gen/wallet/v1/wallet";

let checks = 0;

async function expectRejected(call: () => Promise<unknown>, code: Code, reason: string, field?: string): Promise<void> {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof Rejected, `expected Rejected, got ${error}`);
    assert.deepEqual(
      [codeName(error.code), error.reason, error.field],
      [codeName(code), reason, field],
      `${error.message}`,
    );
    assert.equal(error.details.domain, ERROR_DOMAIN);
    assert.equal(error.definite, true);
    checks += 1;
    return;
  }
  assert.fail(`expected ${codeName(code)} ${reason}, the call succeeded`);
}

/** Straight from the generated client and the trailer, without the SDK's helpers. */
async function rawStatusDecodes(write: string, issuer: string, alice: string): Promise<void> {
  const client = new WalletServiceClient(write, ChannelCredentials.createInsecure());
  const request = { transactionId: newTransactionId(), fromAccount: issuer, toAccount: alice, amount: "abc", currency: "USD" };
  const error = await new Promise<ServiceError | null>((resolve) => client.transfer(request, (e) => resolve(e)));
  client.close();
  assert.ok(error !== null, "amount 'abc' was accepted");
  const [raw] = error.metadata.get("grpc-status-details-bin");
  assert.ok(Buffer.isBuffer(raw), "no grpc-status-details-bin trailer");
  const status = Status.decode(raw);
  assert.equal(status.code, Code.INVALID_ARGUMENT);
  const byType = new Map(status.details.map((d) => [d.typeUrl, d.value]));
  const info = ErrorInfo.decode(byType.get("type.googleapis.com/google.rpc.ErrorInfo")!);
  assert.deepEqual([info.reason, info.domain], ["INVALID_AMOUNT", ERROR_DOMAIN]);
  const badRequest = BadRequest.decode(byType.get("type.googleapis.com/google.rpc.BadRequest")!);
  assert.deepEqual(badRequest.fieldViolations.map((v) => v.field), ["amount"]);
  checks += 1;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { write: { type: "string" }, read: { type: "string" } } });
  assert.ok(values.write && values.read, "--write and --read are required");
  const writes = values.write.split(",");
  const prefix = `tscheck-${randomBytes(4).toString("hex")}-`;
  const [issuer, alice] = [prefix + "issuer", prefix + "alice"];
  const wallet = new WalletClient(writes);
  const query = new QueryClient([values.read]);
  try {
    await wallet.openAccount(issuer, "USD", true);
    await wallet.openAccount(alice, "USD");
    const funded = await wallet.transfer(newTransactionId(), issuer, alice, "10.00", "USD");
    const pay = (amount: string, opts: { id?: string; to?: string; currency?: string } = {}) => () =>
      wallet.transfer(opts.id ?? newTransactionId(), issuer, opts.to ?? alice, amount, opts.currency ?? "USD");

    const invalid = Code.INVALID_ARGUMENT;
    for (const amount of ["abc", "-1", "0", "1.005", "1e3", " 1.00", "NaN"]) {
      await expectRejected(pay(amount), invalid, "INVALID_AMOUNT", "amount");
    }
    await expectRejected(pay("1.00", { currency: "XYZ" }), invalid, "UNKNOWN_CURRENCY", "currency");
    await expectRejected(pay("1.00", { id: "not-a-uuid" }), invalid, "INVALID_TRANSACTION_ID", "transaction_id");
    await expectRejected(pay("1.00", { to: issuer }), invalid, "SAME_ACCOUNT", "to_account");
    await expectRejected(() => wallet.openAccount("has space", "USD"), invalid, "INVALID_ACCOUNT_ID", "account_id");
    // NOT_FOUND and FAILED_PRECONDITION carry ErrorInfo; BadRequest is for invalid input.
    await expectRejected(pay("1.00", { to: prefix + "nobody" }), Code.NOT_FOUND, "ACCOUNT_NOT_FOUND");
    await expectRejected(
      () => wallet.transfer(newTransactionId(), alice, issuer, "10.01", "USD"),
      Code.FAILED_PRECONDITION,
      "INSUFFICIENT_FUNDS",
    );
    await expectRejected(pay("9.99", { id: funded.transactionId }), Code.ALREADY_EXISTS, "TRANSACTION_ID_REUSED");
    await expectRejected(() => wallet.openAccount(alice, "EUR"), Code.ALREADY_EXISTS, "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS");
    await rawStatusDecodes(writes[0], issuer, alice);

    // The read node's errors decode the same way, streams included.
    await expectRejected(
      () =>
        new Promise((resolve, reject) => {
          const watch = query.watchBalances([]);
          watch.on("data", () => reject(new Error("an empty watch streamed an update")));
          watch.on("error", (error: ServiceError) => reject(classify(error)));
          watch.on("end", resolve);
        }),
      invalid,
      "INVALID_ACCOUNT_ID",
      "account_ids",
    );
    await expectRejected(() => query.getBalance(alice, "garbage"), invalid, "INVALID_CONSISTENCY_TOKEN", "consistency_token");

    // Bad input changed nothing.
    assert.equal((await wallet.getAccount(alice)).account!.balance, "10.00");
    assert.equal((await query.getBalance(alice, funded.consistencyToken)).balance!.balance, "10.00");
  } finally {
    wallet.close();
    query.close();
  }

  // A dead node first in the list: the retry loop moves on with the same request.
  const dead = "127.0.0.1:1";
  const past = new WalletClient([dead, ...writes]);
  assert.equal((await past.getAccount(alice)).account!.balance, "10.00");
  past.close();
  // Only dead nodes: an indefinite error, within the total deadline.
  const policy = { callTimeoutMs: 1000, totalDeadlineMs: 2000, attemptsMax: 4, backoffBaseMs: 10, backoffMaxMs: 50 };
  const down = new WalletClient([dead], policy);
  const started = Date.now();
  await assert.rejects(down.transfer(newTransactionId(), issuer, alice, "1.00", "USD"), (error: unknown) => {
    assert.ok(error instanceof Indefinite, `${error}`);
    assert.equal(error.code, Code.UNAVAILABLE);
    assert.equal(error.reason, "TRANSPORT_ERROR");
    assert.equal(error.definite, false);
    return true;
  });
  assert.ok(Date.now() - started < policy.totalDeadlineMs + 1000);
  down.close();
  checks += 2;
  console.log(`typescript live checks: ${checks} passed`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
