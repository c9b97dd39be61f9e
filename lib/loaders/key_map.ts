// A weight file read under other names: diffusers key → the file's key (+ a squeeze flag for 1×1-conv
// weights read as Linear). The map is computed here in TS; the addon registers the mapped tensors as
// borrowed views (native/nn/weight_store add_file_mapped) and nothing else of the file.
import type { NativeWeightSource } from '../native/types.js';

/** One weight file as the native loaders take it: a path (its own keys) or a path with a key map. */
export type WeightSource = NativeWeightSource;

export class KeyMap {
  /** diffusers key → file key */
  readonly keys = new Map<string, string>();
  /** diffusers keys whose [C, C, 1, 1] tensor is read as [C, C]. */
  readonly squeeze = new Set<string>();

  set(diffusersKey: string, fileKey: string, squeeze = false): void {
    const prev = this.keys.get(diffusersKey);
    if (prev !== undefined && prev !== fileKey) {
      throw new Error(`key map: '${diffusersKey}' from both '${prev}' and '${fileKey}'`);
    }
    this.keys.set(diffusersKey, fileKey);
    if (squeeze) this.squeeze.add(diffusersKey);
  }

  /** The file key a diffusers key is read from (error messages). */
  fileKey(diffusersKey: string): string | undefined {
    return this.keys.get(diffusersKey);
  }

  get size(): number {
    return this.keys.size;
  }

  /** `at`: for a torch checkpoint, the keys from the pickle's root to the dict of tensors (a `state_dict` wrapper). */
  source(path: string, at: readonly string[] = []): WeightSource {
    const map: Record<string, unknown> = { keys: Object.fromEntries(this.keys), squeeze: [...this.squeeze] };
    if (at.length) map.at = at;
    return { path, keyMap: JSON.stringify(map) };
  }
}

/** The file paths of some weight sources. */
export function sourcePaths(sources: readonly WeightSource[]): string[] {
  return sources.map((s) => (typeof s === 'string' ? s : s.path));
}
