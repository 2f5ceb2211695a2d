/**
 * How the clients connect: plain text or TLS (a CA, an optional client certificate for
 * nodes that require one, a server name override), and the bearer token sent as
 * `authorization: Bearer <token>` on every call, as the Rust SDK does (`client-sdk/src/auth.rs`).
 */
import { ChannelCredentials, Metadata, type ChannelOptions } from "@grpc/grpc-js";

import { DEFAULT_RETRY_POLICY, validatePolicy, type RetryPolicy } from "./retry";

/** TLS settings. PEM contents (e.g. `fs.readFileSync("ca.crt")`), not file names. */
export interface TlsOptions {
  /** PEM certificate(s) of the CA(s) that sign the nodes' certificates. */
  caCert: string | Buffer;
  /** PEM client certificate chain, for nodes that require one (mTLS); needs `clientKey`. */
  clientCert?: string | Buffer;
  /** PEM private key of `clientCert`. */
  clientKey?: string | Buffer;
  /**
   * The name to verify in the node's certificate instead of the host dialled (sent as
   * `grpc.ssl_target_name_override`), e.g. when dialling 127.0.0.1 through a port-forward.
   */
  serverName?: string;
}

/** What every client takes: the retry policy's fields (each optional), TLS and a token. */
export interface ConnectionOptions extends Partial<RetryPolicy> {
  /** TLS; absent means plain text. Endpoints are `host:port` (or `https://host:port`). */
  tls?: TlsOptions;
  /** A bearer token (from `walletctl token`), sent on every call. */
  token?: string;
}

/** The header a token travels in. */
export const AUTHORIZATION_HEADER = "authorization";
/**
 * The request metadata (any value) asking a write node not to forward a write it does not
 * lead to the leader but to answer NOT_LEADER with the leader's address: sent by a write
 * client given more than one write endpoint, which follows leader hints itself. The one
 * definition is `proto::NO_FORWARD_METADATA` in `proto/src/lib.rs`.
 */
export const NO_FORWARD_HEADER = "wallet-no-forward";
/** Its value (any is accepted; the Rust SDK sends the same). */
export const NO_FORWARD_VALUE = "sdk";
/** Bytes of a token the nodes accept (security::tokens::TOKEN_BYTES_MAX). */
export const TOKEN_BYTES_MAX = 512;

/** A client's connection settings, checked once at construction. */
export class Connection {
  readonly policy: RetryPolicy;
  readonly credentials: ChannelCredentials;
  readonly channelOptions: ChannelOptions;
  readonly tls: boolean;
  private readonly authorization?: string;
  /**
   * Whether every call asks the nodes not to forward (`NO_FORWARD_HEADER`): set by the write
   * client when given more than one distinct endpoint (it routes by itself, a hop fewer);
   * with one (a Service, a port-forward, a load balancer) the nodes forward each write.
   */
  routesItself = false;

  constructor(options: ConnectionOptions) {
    const { tls, token, ...policy } = options;
    const retry: RetryPolicy = { ...DEFAULT_RETRY_POLICY };
    for (const key of Object.keys(DEFAULT_RETRY_POLICY) as (keyof RetryPolicy)[]) {
      if (policy[key] !== undefined) retry[key] = policy[key]!;
    }
    this.policy = validatePolicy(retry);
    this.credentials = tls === undefined ? ChannelCredentials.createInsecure() : sslCredentials(tls);
    this.channelOptions = tls?.serverName ? { "grpc.ssl_target_name_override": tls.serverName } : {};
    this.tls = tls !== undefined;
    this.authorization = token === undefined ? undefined : bearer(token);
  }

  /** Fresh metadata for one call: the token, if any, and the no-forward header if `routesItself`. */
  metadata(): Metadata {
    const metadata = new Metadata();
    if (this.authorization !== undefined) metadata.set(AUTHORIZATION_HEADER, this.authorization);
    if (this.routesItself) metadata.set(NO_FORWARD_HEADER, NO_FORWARD_VALUE);
    return metadata;
  }

  /** `host:port` from an endpoint as given, refusing a scheme that contradicts the TLS setting. */
  normalize(endpoint: string): string {
    let e = endpoint.trim().replace(/\/+$/, "");
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(e)?.[1]?.toLowerCase();
    if (scheme === "http" && !this.tls) e = e.slice("http://".length);
    else if (scheme === "https" && this.tls) e = e.slice("https://".length);
    else if (scheme !== undefined) {
      const expected = this.tls ? "host:port or https://host:port (TLS is configured)" : "host:port (plain-text gRPC; set tls for https)";
      throw new RangeError(`endpoint ${JSON.stringify(endpoint)}: expected ${expected}`);
    }
    if (e === "" || e.includes("/")) throw new RangeError(`endpoint ${JSON.stringify(endpoint)}: expected host:port`);
    return e;
  }
}

function pem(value: string | Buffer | undefined): Buffer | null {
  if (value === undefined) return null;
  return Buffer.isBuffer(value) ? value : Buffer.from(value);
}

function sslCredentials(tls: TlsOptions): ChannelCredentials {
  const ca = pem(tls.caCert);
  if (ca === null || ca.length === 0) throw new RangeError("tls.caCert is required (PEM)");
  if ((tls.clientCert === undefined) !== (tls.clientKey === undefined)) {
    throw new RangeError("tls.clientCert and tls.clientKey go together");
  }
  return ChannelCredentials.createSsl(ca, pem(tls.clientKey), pem(tls.clientCert));
}

/** `Bearer <token>`, checked as the Rust SDK checks it (trimmed, no whitespace, printable ASCII). */
export function bearer(token: string): string {
  const t = token.trim();
  if (t === "" || /\s/.test(t)) throw new RangeError("the token is empty or contains whitespace");
  if (!/^[\x21-\x7e]+$/.test(t)) throw new RangeError("the token must be printable ASCII");
  if (t.length > TOKEN_BYTES_MAX) throw new RangeError(`the token is longer than ${TOKEN_BYTES_MAX} bytes`);
  return `Bearer ${t}`;
}
