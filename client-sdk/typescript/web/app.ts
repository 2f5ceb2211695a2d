/**
 * The live-balance page (web/index.html): `?read=http://127.0.0.1:PORT&account=ID` (several
 * read nodes comma-separated; optionally `&token=T`). Shows the account's balance from
 * `WebQueryClient.watchBalances` (the snapshot, then each change as it arrives, resuming by
 * itself if the stream breaks). The latest balance and sequence are in the DOM for tests:
 * `<output id="balance" data-sequence="N" data-balance-minor="M" data-updated-at="ms since epoch">`.
 */
import { WebQueryClient, type BalanceUpdate, type WalletError } from "../src/web";

const params = new URLSearchParams(location.search);
const read = params.get("read") ?? "";
const account = params.get("account") ?? "";
const token = params.get("token") ?? undefined;

const balanceEl = document.getElementById("balance") as HTMLOutputElement;
const statusEl = document.getElementById("status") as HTMLElement;
const accountEl = document.getElementById("account") as HTMLElement;
const changesEl = document.getElementById("changes") as HTMLOListElement;

function status(state: string, text: string): void {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

function show(update: BalanceUpdate): void {
  const balance = update.balance!;
  balanceEl.value = `${balance.balance} ${balance.currency}`;
  balanceEl.dataset.balance = balance.balance;
  balanceEl.dataset.balanceMinor = balance.balanceMinor;
  balanceEl.dataset.sequence = balance.sequence;
  balanceEl.dataset.updatedAt = String(Date.now());
  if (!update.snapshot) {
    const item = document.createElement("li");
    const from = update.counterparty ? ` (${update.counterparty})` : "";
    item.textContent = `#${balance.sequence}: ${update.delta}${from} → ${balance.balance}`;
    changesEl.prepend(item);
  }
}

if (read === "" || account === "") {
  status("error", "give ?read=http(s)://host:port&account=ID");
} else {
  accountEl.textContent = account;
  try {
    const client = new WebQueryClient(read, { token });
    const watch = client.watchBalances([account]);
    watch.on("data", (update: BalanceUpdate) => {
      show(update);
      status("live", watch.resumes > 0 ? `live (resumed ${watch.resumes}×)` : "live");
    });
    watch.on("error", (error: WalletError) => status("error", `${error.reason}: ${error.details.message}`));
    addEventListener("pagehide", () => client.close());
  } catch (error) {
    status("error", String(error));
  }
}
