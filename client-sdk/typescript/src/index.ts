/**
 * TypeScript client of the wallet ledger: the generated `wallet.v1` types and @grpc/grpc-js
 * clients (`./gen`), typed errors, the Rust SDK's retry loop, transparent batching of
 * `transfer()`, TLS and bearer tokens. See README.md.
 */
export { DEFAULT_BATCH_IN_FLIGHT_MAX, TRANSFER_BATCH_MAX, type TransferStats } from "./batch";
export * from "./client";
export { AUTHORIZATION_HEADER, bearer, type ConnectionOptions, type TlsOptions } from "./connection";
export * from "./errors";
export * from "./retry";
export * as wallet from "./gen/wallet/v1/wallet";
export * as query from "./gen/wallet/v1/query";
export * as cluster from "./gen/wallet/v1/cluster";
