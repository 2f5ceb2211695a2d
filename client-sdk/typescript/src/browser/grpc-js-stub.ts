/**
 * What the browser build (`web/build.mjs`, esbuild) puts in place of `@grpc/grpc-js`, which
 * needs Node's http2 and cannot run in a page. The modules the browser entry point (`../web`)
 * reaches import it for two things: the `status` codes (errors, watches) and, in the generated
 * `src/gen` files, the Node clients and service definitions, made at load time but never
 * called in a page. So: the codes (the same numbers as gRPC's), and stand-ins that throw if a
 * Node-only client is ever constructed. Not part of the Node build (it never imports this).
 */

export enum status {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

function nodeOnly(what: string): never {
  throw new Error(`${what} needs @grpc/grpc-js (Node.js); in a browser use WebQueryClient from @wallet-ledger/client/web`);
}

/** The generated `XxxServiceClient` constructors: classes that refuse to be constructed. */
export function makeGenericClientConstructor(): unknown {
  return class {
    constructor() {
      nodeOnly("the gRPC client");
    }
  };
}

export class Client {
  constructor() {
    nodeOnly("the gRPC client");
  }
}

export class Metadata {
  constructor() {
    nodeOnly("Metadata");
  }
}

export const ChannelCredentials = {
  createInsecure: (): never => nodeOnly("ChannelCredentials"),
  createSsl: (): never => nodeOnly("ChannelCredentials"),
};
