/**
 * TypeScript client of the wallet ledger: the generated `wallet.v1` types and @grpc/grpc-js
 * clients (`./gen`), typed errors and the Rust SDK's retry loop. See README.md.
 */
export * from "./client";
export * from "./errors";
export * from "./retry";
export * as wallet from "./gen/wallet/v1/wallet";
export * as query from "./gen/wallet/v1/query";
export * as cluster from "./gen/wallet/v1/cluster";
