// Browser builds with esbuild (npm run build runs this after tsc):
//   dist/web/index.mjs  the SDK's browser entry point, src/web.ts, as one ES module: what
//                       `import ... from "@wallet-ledger/client/web"` gets (package.json exports)
//   web/build/          the live-balance page: index.html and app.js (web/app.ts), never committed
// @grpc/grpc-js (Node's http2) cannot run in a page: the modules src/web.ts reuses import it
// for the status codes and, in the generated src/gen files, for the Node clients made at load
// time; here it is replaced by src/browser/grpc-js-stub.ts (the codes, and clients that throw
// if constructed), `node:events` by the `events` package, `Buffer` (google.protobuf.Any's bytes)
// by src/browser/buffer-shim.ts, `process.nextTick` by `queueMicrotask`. The build fails if
// anything of @grpc/grpc-js, or a Node built-in, still ends up in a bundle.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const sdk = join(dirname(fileURLToPath(import.meta.url)), "..");
const common = {
  bundle: true,
  platform: "browser",
  format: "esm",
  target: ["es2020"],
  sourcemap: true,
  metafile: true,
  logLevel: "warning",
  alias: {
    "@grpc/grpc-js": join(sdk, "src/browser/grpc-js-stub.ts"),
    "node:events": "events",
  },
  inject: [join(sdk, "src/browser/buffer-shim.ts")],
  define: { "process.nextTick": "queueMicrotask" },
};

function check(result, what) {
  for (const input of Object.keys(result.metafile.inputs)) {
    if (input.includes("@grpc/grpc-js") || input.startsWith("node:")) {
      throw new Error(`${what}: the browser bundle contains ${input}`);
    }
  }
}

const entry = await esbuild.build({
  ...common,
  entryPoints: [join(sdk, "src/web.ts")],
  outfile: join(sdk, "dist/web/index.mjs"),
});
check(entry, "dist/web/index.mjs");

const page = join(sdk, "web/build");
rmSync(page, { recursive: true, force: true });
mkdirSync(page, { recursive: true });
const app = await esbuild.build({
  ...common,
  entryPoints: [join(sdk, "web/app.ts")],
  outfile: join(page, "app.js"),
});
check(app, "web/build/app.js");
copyFileSync(join(sdk, "web/index.html"), join(page, "index.html"));
