/**
 * Checks against a secured write node (run by client-sdk/test-sdks.sh): TLS with the
 * cluster's CA, a client certificate (the node requires one: mTLS), a server name override
 * (the certificate names only `--server-name`, the node is dialled by IP address), and bearer
 * tokens: with the right token transfers work, pipelined and unary; without one, or with a
 * wrong one, calls are UNAUTHENTICATED; a token without the scope is PERMISSION_DENIED; and
 * without the client certificate or the server name override no connection is made.
 *
 *   WALLET_TOKEN=... WALLET_READ_TOKEN=... node dist/test/secured-check.js \
 *     --write 127.0.0.1:PORT --certs DIR --server-name NAME
 *
 * DIR holds ca.crt, client.crt and client.key (`walletctl dev-certs --out DIR --host NAME`, as
 * test-sdks.sh makes them);
 * WALLET_TOKEN has the admin, issue, transfer and read scopes, WALLET_READ_TOKEN only read.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { status as Code } from "@grpc/grpc-js";

import { Indefinite, Rejected, WalletClient, newTransactionId, type TlsOptions, type WalletClientOptions } from "../src";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { write: { type: "string" }, certs: { type: "string" }, "server-name": { type: "string" } },
  });
  const [endpoint, certs, serverName] = [values.write, values.certs, values["server-name"]];
  assert.ok(endpoint && certs && serverName, "--write, --certs and --server-name are required");
  const [token, readToken] = [process.env.WALLET_TOKEN, process.env.WALLET_READ_TOKEN];
  assert.ok(token && readToken, "WALLET_TOKEN and WALLET_READ_TOKEN are required");
  const tls: TlsOptions = {
    caCert: readFileSync(join(certs, "ca.crt")),
    clientCert: readFileSync(join(certs, "client.crt")),
    clientKey: readFileSync(join(certs, "client.key")),
    serverName,
  };
  const quick = { callTimeoutMs: 2_000, totalDeadlineMs: 3_000, attemptsMax: 3, backoffBaseMs: 10, backoffMaxMs: 100 };
  const clients: WalletClient[] = [];
  const client = (options: WalletClientOptions) => {
    const c = new WalletClient([endpoint], options);
    clients.push(c);
    return c;
  };
  let checks = 0;
  const refused = async (call: Promise<unknown>, code: Code, reason?: string) => {
    await assert.rejects(call, (error: unknown) => {
      assert.ok(error instanceof Rejected, `expected Rejected ${Code[code]}, got ${error}`);
      assert.equal(error.code, code, error.message);
      if (reason !== undefined) assert.equal(error.reason, reason, error.message);
      assert.ok(!error.message.includes(token) && !error.message.includes(readToken), "a token in an error message");
      return true;
    });
    checks += 1;
  };

  try {
    // The node may still be electing its leaders: the first call gets a long deadline.
    const wallet = client({ tls, token, totalDeadlineMs: 60_000, attemptsMax: 100 });
    const prefix = `tls-${randomBytes(4).toString("hex")}-`;
    const [issuer, alice, bob] = ["issuer", "alice", "bob"].map((name) => prefix + name);
    await wallet.openAccount(issuer, "USD", true);
    await wallet.openAccount(alice, "USD");
    await wallet.openAccount(bob, "USD");
    await wallet.transfer({ transactionId: newTransactionId(), fromAccount: issuer, toAccount: alice, amount: "50.00", currency: "USD" });
    // Concurrent calls over TLS with a token go down one SubmitTransfers stream, each with its outcome.
    const payments = Array.from({ length: 20 }, () => ({
      transactionId: newTransactionId(),
      fromAccount: alice,
      toAccount: bob,
      amount: "1.50",
      currency: "USD",
    }));
    const before = wallet.stats();
    const answers = await Promise.all(payments.map((p) => wallet.transfer(p)));
    assert.deepEqual(answers.map((a) => a.transactionId), payments.map((p) => p.transactionId));
    const after = wallet.stats();
    assert.equal(after.pipelinedTransfers - before.pipelinedTransfers, payments.length, JSON.stringify(after));
    assert.deepEqual([after.streamsOpened, after.streamsFailed, after.unaryTransfers], [1, 0, 0], JSON.stringify(after));
    assert.equal((await wallet.getAccount(bob)).account!.balance, "30.00");
    assert.equal((await wallet.getAccount(alice)).account!.balance, "20.00");
    checks += 2;
    // The same over the unary path.
    const unary = client({ tls, token, pipelineTransfers: false });
    await unary.transfer({ ...payments[0] }); // a retry: the original outcome, no second payment
    assert.equal((await unary.getAccount(bob)).account!.balance, "30.00");
    checks += 1;

    // Tokens: none, a wrong one, one without the scope (pipelined and unary alike).
    const pay = () => ({ transactionId: newTransactionId(), fromAccount: alice, toAccount: bob, amount: "1.00", currency: "USD" });
    for (const pipelineTransfers of [true, false]) {
      await refused(client({ tls, ...quick, pipelineTransfers }).transfer(pay()), Code.UNAUTHENTICATED);
      await refused(client({ tls, token: `${token}x`, ...quick, pipelineTransfers }).transfer(pay()), Code.UNAUTHENTICATED);
      await refused(client({ tls, token: readToken, ...quick, pipelineTransfers }).transfer(pay()), Code.PERMISSION_DENIED);
    }
    const reader = client({ tls, token: readToken, ...quick });
    assert.equal((await reader.getAccount(alice)).account!.balance, "20.00");
    checks += 1;

    // TLS: without the client certificate the node refuses the handshake; without the server
    // name override the certificate (for serverName, not 127.0.0.1) does not verify.
    const noClientCert = { caCert: tls.caCert, serverName };
    const noServerName = { ...tls, serverName: undefined };
    for (const bad of [noClientCert, noServerName]) {
      await assert.rejects(client({ tls: bad, token, ...quick }).getAccount(alice), (error: unknown) => {
        assert.ok(error instanceof Indefinite, `${error}`);
        assert.equal(error.code, Code.UNAVAILABLE);
        return true;
      });
      checks += 1;
    }
    // Plain text to a TLS node gets nowhere either.
    await assert.rejects(client({ token, ...quick }).getAccount(alice), Indefinite);
    checks += 1;
    assert.equal((await wallet.getAccount(bob)).account!.balance, "30.00", "a refused call moved money");
  } finally {
    for (const c of clients) c.close();
  }
  console.log(`typescript secured checks: ${checks} passed (TLS, client certificate, server name, tokens)`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
