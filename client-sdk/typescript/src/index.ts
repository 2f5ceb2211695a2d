/**
 * TypeScript client of the wallet ledger: the generated `wallet.v1` types and @grpc/grpc-js
 * clients (`./gen`), typed errors, the Rust SDK's retry loop, transparent pipelining of
 * `transfer()`, TLS and bearer tokens. See README.md.
 */
export { PIPE_IDLE_MS, PIPE_QUEUE_MAX, type TransferStats } from "./pipeline";
export * from "./client";
export { AUTHORIZATION_HEADER, NO_FORWARD_HEADER, bearer, type ConnectionOptions, type TlsOptions } from "./connection";
export * from "./errors";
export * from "./retry";
export * from "./watch";
export * as wallet from "./gen/wallet/v1/wallet";
export * as query from "./gen/wallet/v1/query";
export * as cluster from "./gen/wallet/v1/cluster";
