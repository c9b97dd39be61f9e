import { closeSync, openSync, readSync } from 'node:fs';
import { PiaError, invalidArgument } from '../errors.js';
import { readSafetensors } from './safetensors.js';
import type { RawTensor, SafetensorsDtype } from './safetensors.js';
import { isTorchTensor, readTorchCheckpoint } from './torch_checkpoint.js';
import type { PickleValue, TorchTensor } from './torch_checkpoint.js';

/** Named tensors of a weight file, whatever its format. */
export interface StateDict {
  readonly path: string;
  readonly format: 'safetensors' | 'torch';
  /** safetensors `__metadata__`; absent for torch checkpoints. */
  readonly metadata?: Record<string, string>;
  /** Tensor names, sorted. */
  names(): string[];
  info(name: string): { dtype: SafetensorsDtype; shape: number[] };
  get(name: string): RawTensor;
  close(): void;
  [Symbol.dispose](): void;
}

/** torch.save writes a zip (local header "PK\x03\x04"); older torch a pickle (PROTO opcode 0x80). */
function isTorchFile(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return false; // the safetensors reader reports the missing/unreadable file with its code
  }
  try {
    const head = Buffer.alloc(9);
    const n = readSync(fd, head, 0, 9, 0);
    const zip = n >= 2 && head[0] === 0x50 && head[1] === 0x4b;
    // A safetensors header length can start with 0x80 too; its JSON header begins at byte 8.
    if (!zip && n >= 9 && head[8] === 0x7b) return false;
    return zip || (n >= 1 && head[0] === 0x80);
  } finally {
    closeSync(fd);
  }
}

function missing(path: string, name: string): PiaError {
  return new PiaError('E_WEIGHTS_MISMATCH', `${path}: no tensor named '${name}'`, { key: name, file: path });
}

/**
 * Opens .safetensors, .ckpt, .pt or .bin alike (chosen by content). For a torch checkpoint the
 * tensors are those directly under the top-level dict — a `state_dict` wrapper is NOT unwrapped
 * here (the single-file loader does that, as diffusers does) — or under the dict at `options.at`
 * (e.g. `['state_dict']`, `['string_to_param']`).
 */
export function readStateDict(path: string, options: { at?: string[] } = {}): StateDict {
  if (typeof path !== 'string' || path.length === 0) throw invalidArgument('path', 'must be a non-empty string');
  if (!isTorchFile(path)) {
    if (options.at?.length) throw invalidArgument('at', 'only applies to torch checkpoints');
    const f = readSafetensors(path);
    return {
      path, format: 'safetensors', metadata: f.metadata,
      names: () => f.names(), info: (n) => f.info(n), get: (n) => f.get(n),
      close: () => f.close(), [Symbol.dispose]: () => f.close(),
    };
  }
  const ckpt = readTorchCheckpoint(path);
  let dict: PickleValue = ckpt.root;
  for (const k of options.at ?? []) {
    dict = dict !== null && typeof dict === 'object' && !Array.isArray(dict) && !(dict instanceof Map) && !isTorchTensor(dict)
      ? (dict as { [key: string]: PickleValue })[k] ?? null : null;
  }
  if (dict === null || typeof dict !== 'object' || Array.isArray(dict) || dict instanceof Uint8Array || isTorchTensor(dict) || 'torchGlobal' in dict) {
    ckpt.close();
    const where = options.at?.length ? ` at [${options.at.map((k) => `'${k}'`).join('][')}]` : '';
    throw new PiaError('E_UNSUPPORTED', `${path}: the checkpoint holds no dict of tensors${where}`, { file: path });
  }
  const tensors = new Map<string, TorchTensor>();
  const entries = dict instanceof Map ? [...dict.entries()] : Object.entries(dict);
  for (const [k, v] of entries) if (typeof k === 'string' && isTorchTensor(v)) tensors.set(k, v);
  const names = [...tensors.keys()].sort();
  const tensor = (name: string): TorchTensor => {
    const t = tensors.get(name);
    if (!t) throw missing(path, name);
    return t;
  };
  return {
    path, format: 'torch',
    names: () => [...names],
    info: (n) => ({ dtype: tensor(n).dtype, shape: [...tensor(n).shape] }),
    get: (n) => tensor(n),
    close: () => ckpt.close(), [Symbol.dispose]: () => ckpt.close(),
  };
}
