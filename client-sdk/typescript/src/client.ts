/** Clients of the write nodes (`WalletService`) and of a read node (`QueryService`). */
import { randomUUID } from "node:crypto";

import { ChannelCredentials, Metadata, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";

import {
  BalanceUpdate,
  GetBalanceResponse,
  QueryServiceClient,
} from "./gen/wallet/v1/query";
import {
  Account,
  GetAccountResponse,
  Transfer,
  TransferResponse,
  WalletServiceClient,
} from "./gen/wallet/v1/wallet";
import { DEFAULT_RETRY_POLICY, callWithRetry, validatePolicy, type RetryPolicy } from "./retry";

/** Clients kept for nodes learnt from leader hints rather than configured. */
export const DISCOVERED_ENDPOINTS_MAX = 16;
/** Routing keys (accounts) whose last known leader is remembered. */
export const LEADER_CACHE_MAX = 4096;

/**
 * A fresh idempotency key: a random UUID in canonical form. Make one per intended transfer
 * and keep it for every retry.
 */
export function newTransactionId(): string {
  return randomUUID();
}

function normalize(endpoint: string): string {
  let e = endpoint.trim().replace(/\/+$/, "");
  if (e.startsWith("http://")) e = e.slice("http://".length);
  if (e === "" || e.includes("://")) {
    throw new RangeError(`endpoint ${JSON.stringify(endpoint)}: expected host:port (plain-text gRPC)`);
  }
  return e;
}

/** One generated client per node, made on first use; closed together. */
class Clients<C extends { close(): void }> {
  readonly endpoints: string[];
  private readonly clients = new Map<string, C>();

  constructor(
    endpoints: readonly string[],
    private readonly make: (address: string) => C,
  ) {
    this.endpoints = [...new Set(endpoints.map(normalize))];
    if (this.endpoints.length === 0) throw new RangeError("at least one endpoint is required");
  }

  get(endpoint: string): C {
    let client = this.clients.get(endpoint);
    if (client === undefined) {
      client = this.make(endpoint);
      if (this.clients.size < this.endpoints.length + DISCOVERED_ENDPOINTS_MAX) {
        this.clients.set(endpoint, client);
      }
    }
    return client;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

type Unary<Req, Resp> = (
  request: Req,
  metadata: Metadata,
  options: { deadline: Date },
  callback: (error: ServiceError | null, response: Resp) => void,
) => unknown;

/** One attempt of a unary call, as a promise. */
function unary<Req, Resp>(method: Unary<Req, Resp>, request: Req, deadline: Date): Promise<Resp> {
  return new Promise((resolve, reject) => {
    method(request, new Metadata(), { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

/**
 * The write API with routing and retries. Writes go to the account's partition leader, learnt
 * from NOT_LEADER hints; calls whose outcome is unknown are retried with the same request
 * (same transaction_id) under `policy`.
 */
export class WalletClient {
  private readonly clients: Clients<WalletServiceClient>;
  private readonly leaders = new Map<string, string>();

  constructor(
    endpoints: readonly string[],
    readonly policy: RetryPolicy = DEFAULT_RETRY_POLICY,
  ) {
    validatePolicy(policy);
    this.clients = new Clients(endpoints, (a) => new WalletServiceClient(a, ChannelCredentials.createInsecure()));
  }

  close(): void {
    this.clients.close();
  }

  private call<Req, Resp>(
    pick: (client: WalletServiceClient) => Unary<Req, Resp>,
    request: Req,
    routingKey = "",
  ): Promise<Resp> {
    return callWithRetry(
      (endpoint, deadline) => {
        const client = this.clients.get(endpoint);
        return unary(pick(client).bind(client), request, deadline);
      },
      this.clients.endpoints,
      this.policy,
      {
        first: routingKey ? this.leaders.get(routingKey) : undefined,
        onSuccess: routingKey
          ? (endpoint) => {
              if (this.leaders.size >= LEADER_CACHE_MAX) this.leaders.clear();
              this.leaders.set(routingKey, endpoint);
            }
          : undefined,
      },
    );
  }

  /**
   * Opens a single-currency account; the same call again is a no-op success, with other
   * parameters it is `Rejected` (ALREADY_EXISTS).
   */
  async openAccount(accountId: string, currency: string, allowNegativeBalance = false): Promise<Account> {
    const response = await this.call((c) => c.openAccount, { accountId, currency, allowNegativeBalance }, accountId);
    if (response.account === undefined) throw new Error("OpenAccount answered without an account");
    return response.account;
  }

  /**
   * Moves `amount` (a decimal string, e.g. "12.34") and resolves once the transfer is final.
   * `transactionId` (from `newTransactionId()`) is the idempotency key: keep it until the
   * outcome is known. Every automatic retry sends it again, and so should yours after an
   * `Indefinite` error: a retry returns the original outcome and never pays twice.
   */
  transfer(
    transactionId: string,
    fromAccount: string,
    toAccount: string,
    amount: string,
    currency: string,
  ): Promise<TransferResponse> {
    const request = { transactionId, fromAccount, toAccount, amount, currency };
    return this.call((c) => c.transfer, request, fromAccount);
  }

  /** The authoritative account, read linearizably, with the position it reflects. */
  getAccount(accountId: string): Promise<GetAccountResponse> {
    return this.call((c) => c.getAccount, { accountId });
  }

  /** A transfer's status and outcome; `Rejected` NOT_FOUND if the id is unknown. */
  async getTransfer(transactionId: string): Promise<Transfer> {
    const response = await this.call((c) => c.getTransfer, { transactionId });
    if (response.transfer === undefined) throw new Error("GetTransfer answered without a transfer");
    return response.transfer;
  }
}

/** The read API of one or more read nodes (all fold the same log, so any will do). */
export class QueryClient {
  private readonly clients: Clients<QueryServiceClient>;

  constructor(
    endpoints: readonly string[],
    readonly policy: RetryPolicy = DEFAULT_RETRY_POLICY,
  ) {
    validatePolicy(policy);
    this.clients = new Clients(endpoints, (a) => new QueryServiceClient(a, ChannelCredentials.createInsecure()));
  }

  close(): void {
    this.clients.close();
  }

  /** The projected balance; with a token from the write API, at least that fresh. */
  getBalance(accountId: string, consistencyToken = ""): Promise<GetBalanceResponse> {
    return callWithRetry(
      (endpoint, deadline) => {
        const client = this.clients.get(endpoint);
        return unary(client.getBalance.bind(client), { accountId, consistencyToken }, deadline);
      },
      this.clients.endpoints,
      this.policy,
    );
  }

  /**
   * The current balance of each account, then every change, in order. `.cancel()` ends the
   * watch; errors arrive as the stream's "error" event (decode them with `classify`). To
   * resume, watch again with the last `balance.sequence` seen per account.
   */
  watchBalances(
    accountIds: readonly string[],
    resumeAfterSequence: Record<string, string> = {},
  ): ClientReadableStream<BalanceUpdate> {
    return this.clients
      .get(this.clients.endpoints[0])
      .watchBalances({ accountIds: [...accountIds], resumeAfterSequence });
  }
}
