/** Clients of the write nodes (`WalletService`) and of a read node (`QueryService`). */
import { randomUUID } from "node:crypto";

import { type ClientReadableStream, type Metadata, type ServiceError } from "@grpc/grpc-js";

import { Connection, type ConnectionOptions } from "./connection";
import {
  BalanceUpdate,
  GetBalanceResponse,
  QueryServiceClient,
} from "./gen/wallet/v1/query";
import {
  Account,
  GetAccountResponse,
  Transfer,
  TransferRequest,
  TransferResponse,
  WalletServiceClient,
} from "./gen/wallet/v1/wallet";
import { TransferPipeline, type TransferStats } from "./pipeline";
import { callWithRetry, type RetryPolicy } from "./retry";

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

/** Options of a `WalletClient`: the connection's, the retry policy's, and pipelining. */
export interface WalletClientOptions extends ConnectionOptions {
  /**
   * Send concurrent `transfer()` calls down one shared `SubmitTransfers` stream per node
   * (default true). false: every transfer is a unary `Transfer` call.
   */
  pipelineTransfers?: boolean;
}

/** Options of a `QueryClient`. */
export type QueryClientOptions = ConnectionOptions;

/** One transfer: the fields of a `TransferRequest`. */
export interface TransferParams {
  /** The idempotency key (`newTransactionId()`): keep it until the outcome is known. */
  transactionId: string;
  /** The account debited (also the routing key: its partition's leader gets the call). */
  fromAccount: string;
  /** The account credited. */
  toAccount: string;
  /** Decimal string in the currency's major unit, e.g. "12.34". */
  amount: string;
  /** ISO 4217 code, the currency of both accounts. */
  currency: string;
}

/** One generated client per node, made on first use; closed together. */
class Clients<C extends { close(): void }> {
  readonly endpoints: string[];
  private readonly clients = new Map<string, C>();
  private closed = false;

  constructor(
    endpoints: readonly string[],
    normalize: (endpoint: string) => string,
    private readonly make: (address: string) => C,
  ) {
    this.endpoints = [...new Set(endpoints.map(normalize))];
    if (this.endpoints.length === 0) throw new RangeError("at least one endpoint is required");
  }

  get(endpoint: string): C {
    if (this.closed) throw new Error("the client is closed");
    let client = this.clients.get(endpoint);
    if (client === undefined) {
      client = this.make(endpoint);
      if (this.clients.size < this.endpoints.length + DISCOVERED_ENDPOINTS_MAX) {
        this.clients.set(endpoint, client);
      }
    }
    return client;
  }

  /** Closes every connection; calls made (or retried) afterwards fail at once. */
  close(): void {
    this.closed = true;
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
function unary<Req, Resp>(method: Unary<Req, Resp>, request: Req, metadata: Metadata, deadline: Date): Promise<Resp> {
  return new Promise((resolve, reject) => {
    method(request, metadata, { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

/** The options argument, or a full `RetryPolicy` as earlier versions took. */
function optionsOf<O extends ConnectionOptions>(options: O | RetryPolicy | undefined): O {
  return (options ?? {}) as O;
}

/**
 * The write API with routing and retries. Writes go to the account's partition leader, learnt
 * from NOT_LEADER hints; calls whose outcome is unknown are retried with the same request
 * (same transaction_id) under `policy`. Concurrent `transfer()` calls are pipelined
 * transparently (one `SubmitTransfers` stream per node; see README.md, "Pipelining").
 */
export class WalletClient {
  readonly policy: RetryPolicy;
  private readonly connection: Connection;
  private readonly clients: Clients<WalletServiceClient>;
  private readonly leaders = new Map<string, string>();
  private readonly pipeline: TransferPipeline;

  constructor(endpoints: readonly string[], options?: WalletClientOptions | RetryPolicy) {
    const opts = optionsOf<WalletClientOptions>(options);
    this.connection = new Connection(opts);
    this.policy = this.connection.policy;
    const { credentials, channelOptions } = this.connection;
    this.clients = new Clients(
      endpoints,
      (e) => this.connection.normalize(e),
      (a) => new WalletServiceClient(a, credentials, channelOptions),
    );
    // Given every write node, the client routes by leader hints (a hop fewer); given one
    // address (a Service, a port-forward, a load balancer), the nodes forward.
    this.connection.routesItself = this.clients.endpoints.length > 1;
    if (opts.pipelineTransfers !== undefined && typeof opts.pipelineTransfers !== "boolean") {
      throw new RangeError("pipelineTransfers must be a boolean");
    }
    this.pipeline = new TransferPipeline(
      {
        route: (key) => this.leaders.get(key) ?? this.clients.endpoints[0],
        open: (endpoint) => this.clients.get(endpoint).submitTransfers(this.connection.metadata()),
        unary: (request, deadline) => this.call((c) => c.transfer, request, request.fromAccount, deadline),
        setLeader: (key, endpoint) => this.setLeader(key, endpoint),
        callTimeoutMs: this.policy.callTimeoutMs,
      },
      opts.pipelineTransfers ?? true,
    );
  }

  /**
   * Closes the connections and ends the transfer streams, so Node can exit. Transfers not
   * yet written to a stream are rejected; those written get the node's answer if it comes
   * before the connection closes, and none is retried.
   */
  close(): void {
    this.pipeline.close(new Error("WalletClient closed before the transfer was sent"));
    this.clients.close();
  }

  /** Counters of `transfer()` calls, the streams that carried them and the unary fallbacks. */
  stats(): TransferStats {
    return this.pipeline.stats();
  }

  /** The node last seen leading `routingKey`'s partition (an account id), if known. */
  leader(routingKey: string): string | undefined {
    return this.leaders.get(routingKey);
  }

  private setLeader(routingKey: string, endpoint: string): void {
    if (this.leaders.size >= LEADER_CACHE_MAX && !this.leaders.has(routingKey)) this.leaders.clear();
    this.leaders.set(routingKey, endpoint);
  }

  private call<Req, Resp>(
    pick: (client: WalletServiceClient) => Unary<Req, Resp>,
    request: Req,
    routingKey = "",
    deadline?: number,
  ): Promise<Resp> {
    return callWithRetry(
      (endpoint, attemptDeadline) => {
        const client = this.clients.get(endpoint);
        return unary(pick(client).bind(client), request, this.connection.metadata(), attemptDeadline);
      },
      this.clients.endpoints,
      this.policy,
      {
        first: routingKey ? this.leaders.get(routingKey) : undefined,
        deadline,
        onSuccess: routingKey ? (endpoint) => this.setLeader(routingKey, endpoint) : undefined,
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
   * Concurrent calls share one `SubmitTransfers` stream per node; each still gets its own
   * outcome and error, as soon as its transfer is final, within its own deadline
   * (`totalDeadlineMs`); without a definite outcome from the stream it goes on unary.
   */
  transfer(transfer: TransferParams): Promise<TransferResponse>;
  /** @deprecated Pass one object: `transfer({ transactionId, fromAccount, toAccount, amount, currency })`. */
  transfer(
    transactionId: string,
    fromAccount: string,
    toAccount: string,
    amount: string,
    currency: string,
  ): Promise<TransferResponse>;
  transfer(
    first: TransferParams | string,
    fromAccount?: string,
    toAccount?: string,
    amount?: string,
    currency?: string,
  ): Promise<TransferResponse> {
    const t: TransferParams =
      typeof first === "string"
        ? { transactionId: first, fromAccount: fromAccount!, toAccount: toAccount!, amount: amount!, currency: currency! }
        : first;
    const request: TransferRequest = {
      transactionId: t.transactionId,
      fromAccount: t.fromAccount,
      toAccount: t.toAccount,
      amount: t.amount,
      currency: t.currency,
    };
    return this.pipeline.transfer(request, Date.now() + this.policy.totalDeadlineMs);
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
  readonly policy: RetryPolicy;
  private readonly connection: Connection;
  private readonly clients: Clients<QueryServiceClient>;

  constructor(endpoints: readonly string[], options?: QueryClientOptions | RetryPolicy) {
    this.connection = new Connection(optionsOf<QueryClientOptions>(options));
    this.policy = this.connection.policy;
    const { credentials, channelOptions } = this.connection;
    this.clients = new Clients(
      endpoints,
      (e) => this.connection.normalize(e),
      (a) => new QueryServiceClient(a, credentials, channelOptions),
    );
  }

  close(): void {
    this.clients.close();
  }

  /** The projected balance; with a token from the write API, at least that fresh. */
  getBalance(accountId: string, consistencyToken = ""): Promise<GetBalanceResponse> {
    return callWithRetry(
      (endpoint, deadline) => {
        const client = this.clients.get(endpoint);
        return unary(
          client.getBalance.bind(client),
          { accountId, consistencyToken },
          this.connection.metadata(),
          deadline,
        );
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
      .watchBalances({ accountIds: [...accountIds], resumeAfterSequence }, this.connection.metadata());
  }
}
