// The tensor names and shapes of a weight file, seen through the `state_dict` wrapper that .ckpt
// files often carry (diffusers v0.26.3 unwraps with `while "state_dict" in checkpoint`): key
// conversion works on the names inside, and maps back to the file's own names.
import { readStateDict } from '../io/state_dict.js';
import { isTorchTensor, readTorchCheckpoint, type PickleValue } from '../io/torch_checkpoint.js';

export interface CheckpointHeader {
  readonly path: string;
  /** For a torch checkpoint: the keys leading from the pickle's root to the dict of tensors (`['state_dict']`). */
  readonly at: readonly string[];
  names(): string[];
  /** undefined for a name the file does not hold */
  shape(name: string): number[] | undefined;
  dtype(name: string): string | undefined;
}

export class CheckpointView {
  readonly path: string;
  /** The wrapper prefix (`''`, `'state_dict.'`, …) in front of every name used here. */
  readonly root: string;
  /** The torch checkpoint's dict path (CheckpointHeader.at). */
  readonly at: readonly string[];
  readonly keys: readonly string[];
  readonly #header: CheckpointHeader;

  constructor(header: CheckpointHeader) {
    this.#header = header;
    this.path = header.path;
    this.at = header.at;
    let names = header.names();
    let root = '';
    // Nested dicts reach us flattened with '.': a `state_dict` entry shows as its prefix.
    while (names.some((n) => n.startsWith('state_dict.'))) {
      names = names.filter((n) => n.startsWith('state_dict.')).map((n) => n.slice('state_dict.'.length));
      root += 'state_dict.';
    }
    this.root = root;
    this.keys = Object.freeze(names);
  }

  has(key: string): boolean {
    return this.#header.shape(this.root + key) !== undefined;
  }

  shape(key: string): number[] | undefined {
    return this.#header.shape(this.root + key);
  }

  dtype(key: string): string | undefined {
    return this.#header.dtype(this.root + key);
  }

  /** The name in the file. */
  fileKey(key: string): string {
    return this.root + key;
  }

  /** Keys starting with `prefix`, prefix removed. */
  keysUnder(prefix: string): string[] {
    return this.keys.filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  }
}

function isDict(v: PickleValue | undefined): v is { [key: string]: PickleValue } {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Map) && !(v instanceof Uint8Array) &&
    !isTorchTensor(v) && !('torchGlobal' in v);
}

/**
 * The `state_dict` wrappers of a torch checkpoint, outermost first: diffusers' loop
 * `while "state_dict" in checkpoint: checkpoint = checkpoint["state_dict"]`.
 */
function stateDictPath(path: string): string[] {
  const ckpt = readTorchCheckpoint(path);
  try {
    const at: string[] = [];
    let d: PickleValue = ckpt.root;
    while (isDict(d) && isDict(d.state_dict)) {
      at.push('state_dict');
      d = d.state_dict;
    }
    return at;
  } finally {
    ckpt.close();
  }
}

/** Names, shapes and dtypes of a .safetensors file or a torch checkpoint (tensors are not read). */
export async function readCheckpointHeader(path: string): Promise<CheckpointHeader> {
  let f = readStateDict(path);
  let at: string[] = [];
  if (f.format === 'torch') {
    at = stateDictPath(path);
    if (at.length) {
      f.close();
      f = readStateDict(path, { at });
    }
  }
  const info = new Map<string, { dtype: string; shape: number[] }>();
  try {
    for (const n of f.names()) info.set(n, f.info(n));
  } finally {
    f.close();
  }
  return {
    path,
    at,
    names: () => [...info.keys()],
    shape: (n) => info.get(n)?.shape,
    dtype: (n) => info.get(n)?.dtype,
  };
}
