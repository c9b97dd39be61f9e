// Builds safetensors images byte by byte, so tests can write files the project's own writer
// would refuse to produce (bad headers, holes, overlaps...).

export function safetensorsBytes(header: unknown, data: Uint8Array, opts: { rawHeader?: string | Uint8Array; headerLength?: bigint } = {}): Buffer {
  const raw = opts.rawHeader ?? JSON.stringify(header);
  const json = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : Buffer.from(raw);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.headerLength ?? BigInt(json.length));
  return Buffer.concat([len, json, Buffer.from(data)]);
}
