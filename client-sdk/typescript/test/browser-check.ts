/**
 * The live-balance page (web/) in headless Chromium against a running cluster
 * (client-sdk/test-sdks.sh): serves web/build/ (npm run build) on `--port` (the origin the read
 * node was started with: `--grpc-web-origin http://127.0.0.1:<port>`), opens a funded fresh
 * account's page in Debian's chromium driven by puppeteer-core, waits for the balance, then
 * makes two transfers into the account through the Node SDK and asserts that the page shows each
 * new balance and sequence within `--max-latency-ms` (default 1000) of the transfer call's
 * start, measured with the page's own `data-updated-at` stamp. Prints each latency; exits 1
 * with a clear message otherwise.
 *
 *   node dist/test/browser-check.js --write E,E,E --read 127.0.0.1:R --port P [--chromium /usr/bin/chromium]
 */
import { randomBytes } from "node:crypto";
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { extname, join, normalize } from "node:path";
import { parseArgs } from "node:util";

import puppeteer, { type Browser, type Page } from "puppeteer-core";

import { QueryClient, Rejected, WalletClient, newTransactionId } from "../src";

const PAGE_ROOT = join(__dirname, "..", "..", "web", "build");
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".map": "application/json",
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

class CheckFailed extends Error {}

/** A static server of web/build/ on 127.0.0.1:port. */
function serve(port: number): Promise<Server> {
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://x").pathname;
    const file = normalize(join(PAGE_ROOT, path === "/" ? "index.html" : path));
    if (!file.startsWith(PAGE_ROOT) || !existsSync(file) || !statSync(file).isFile()) {
      response.writeHead(404).end("not found");
      return;
    }
    response.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
    createReadStream(file).pipe(response);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

/** The page's `<output id="balance">`: its balance, sequence and when it was last drawn. */
interface Shown {
  balance: string;
  sequence: string;
  updatedAt: number;
  status: string;
}
async function shown(page: Page): Promise<Shown> {
  return page.evaluate<[], () => Shown>(`(() => {
    const el = document.getElementById("balance");
    return {
      balance: el.dataset.balance ?? "",
      sequence: el.dataset.sequence ?? "",
      updatedAt: Number(el.dataset.updatedAt ?? "0"),
      status: document.getElementById("status").textContent,
    };
  })()`);
}

/** Waits (bounded) until the page shows `sequence`. */
async function waitSequence(page: Page, sequence: string, timeoutMs: number, what: string): Promise<void> {
  try {
    await page.waitForFunction(`document.getElementById("balance").dataset.sequence === ${JSON.stringify(sequence)}`, {
      polling: "mutation",
      timeout: timeoutMs,
    });
  } catch {
    const now = await shown(page);
    throw new CheckFailed(
      `${what}: the page did not show sequence ${sequence} within ${timeoutMs} ms; it shows ${JSON.stringify(now)}`,
    );
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      write: { type: "string" },
      read: { type: "string" },
      port: { type: "string" },
      chromium: { type: "string", default: process.env.CHROMIUM ?? "/usr/bin/chromium" },
      "max-latency-ms": { type: "string", default: "1000" },
      screenshot: { type: "string" },
    },
  });
  if (!values.write || !values.read || !values.port) {
    throw new CheckFailed("usage: browser-check --write E,E,E --read host:port --port P [--chromium PATH]");
  }
  if (!existsSync(join(PAGE_ROOT, "app.js"))) throw new CheckFailed(`${PAGE_ROOT}/app.js is missing: npm run build first`);
  if (!existsSync(values.chromium!)) throw new CheckFailed(`no Chromium at ${values.chromium} (apt-get install chromium)`);
  const maxLatency = Number(values["max-latency-ms"]);
  const port = Number(values.port);
  const readUrl = `http://${values.read.replace(/^https?:\/\//, "")}`;

  const prefix = `web-${randomBytes(4).toString("hex")}-`;
  const issuer = `${prefix}issuer`;
  const account = `${prefix}watched`;
  const wallet = new WalletClient(values.write.split(","));
  const query = new QueryClient([values.read]);
  let server: Server | undefined;
  let browser: Browser | undefined;
  try {
    await wallet.openAccount(issuer, "USD", true);
    await wallet.openAccount(account, "USD");
    await wallet.transfer({ transactionId: newTransactionId(), fromAccount: issuer, toAccount: account, amount: "10.00", currency: "USD" });
    // The read node knows the account once it folded the funding (bounded wait).
    const known = Date.now() + 20_000;
    for (;;) {
      try {
        const balance = (await query.getBalance(account)).balance!;
        if (balance.balance === "10.00") break;
      } catch (error) {
        if (!(error instanceof Rejected) || error.reason !== "ACCOUNT_NOT_FOUND") throw error;
      }
      if (Date.now() > known) throw new CheckFailed(`the read node did not fold ${account}'s funding in 20 s`);
      await sleep(50);
    }

    server = await serve(port);
    const origin = `http://127.0.0.1:${port}`;
    const args = ["--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check"];
    if (process.getuid?.() === 0) args.push("--no-sandbox");
    browser = await puppeteer.launch({ executablePath: values.chromium, headless: true, args });
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warn") pageErrors.push(`console.${message.type()}: ${message.text()}`);
    });
    page.on("pageerror", (error) => pageErrors.push(`pageerror: ${String(error)}`));
    const url = `${origin}/?read=${encodeURIComponent(readUrl)}&account=${encodeURIComponent(account)}`;
    console.error(`browser-check: ${await browser.version()} opens ${url}`);
    await page.goto(url, { waitUntil: "domcontentloaded" });
    try {
      await waitSequence(page, "1", 15_000, "the snapshot");
    } catch (error) {
      if (pageErrors.length > 0) console.error(pageErrors.join("\n"));
      throw error;
    }
    const first = await shown(page);
    if (first.balance !== "10.00") throw new CheckFailed(`the page shows ${first.balance} at first, expected 10.00`);
    console.error(`browser-check: the page shows ${first.balance} USD at sequence ${first.sequence} (${first.status})`);

    const latencies: number[] = [];
    for (const [amount, expected, sequence] of [
      ["2.50", "12.50", "2"],
      ["0.75", "13.25", "3"],
    ]) {
      const started = Date.now();
      await wallet.transfer({ transactionId: newTransactionId(), fromAccount: issuer, toAccount: account, amount, currency: "USD" });
      const acknowledged = Date.now();
      await waitSequence(page, sequence, maxLatency + 5_000, `the transfer of ${amount}`);
      const now = await shown(page);
      if (now.balance !== expected) throw new CheckFailed(`after the transfer of ${amount} the page shows ${now.balance}, expected ${expected}`);
      const latency = now.updatedAt - started;
      latencies.push(latency);
      console.error(
        `browser-check: transfer of ${amount} -> the page shows ${now.balance} (sequence ${now.sequence}) ` +
          `${latency} ms after the transfer call started (${now.updatedAt - acknowledged} ms after it was acknowledged)`,
      );
      if (latency > maxLatency) {
        throw new CheckFailed(`the page showed the new balance ${latency} ms after the transfer (more than ${maxLatency} ms)`);
      }
    }
    if (values.screenshot) await page.screenshot({ path: values.screenshot });
    if (pageErrors.length > 0) console.error(`browser-check: the page logged:\n${pageErrors.join("\n")}`);
    console.log(JSON.stringify({ status: "success", account, balance: "13.25", latency_ms: latencies }));
  } finally {
    await browser?.close().catch(() => {});
    server?.close();
    server?.closeAllConnections();
    wallet.close();
    query.close();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`browser-check: FAILED: ${error instanceof CheckFailed ? error.message : String(error?.stack ?? error)}`);
    process.exit(1);
  },
);
