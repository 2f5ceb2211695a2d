/**
 * `Buffer`, as far as the generated codecs use it at run time in a page (esbuild injects this
 * where `Buffer` is not defined): `google.protobuf.Any`'s `bytes` field (`Buffer.from` of the
 * bytes read, `Buffer.alloc(0)` as the default). Plain `Uint8Array`s, which the decoders take.
 */
export const Buffer = {
  from(bytes: ArrayLike<number> | ArrayBufferLike): Uint8Array {
    return bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes as ArrayLike<number>);
  },
  alloc(size: number): Uint8Array {
    return new Uint8Array(size);
  },
};
