// Reading one diffusers / transformers model folder: `config.json` plus the safetensors weights
// (a single file, or the shards listed by `<name>.safetensors.index.json`). Shared by every
// model class in lib/models so that "where did it look" errors read the same everywhere.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PiaError, throwIfAborted } from '../errors.js';
import { isFile, resolveModel } from '../loaders/hub.js';
import type { PlacementOptions } from '../loaders/device_options.js';

export interface ModelFolder {
  /** Absolute path of the folder. */
  dir: string;
  configPath: string;
  /** config.json as text (handed to the native loader unchanged) and parsed. */
  configJson: string;
  config: Record<string, unknown>;
  /** Weight files in load order (one, or every shard named by the index). */
  weightPaths: string[];
}

export interface ModelFolderOptions {
  /** File stems to try in order, e.g. ['diffusion_pytorch_model'] or ['model']. */
  weightNames: readonly string[];
  /** diffusers' `variant` (`fp16` → `diffusion_pytorch_model.fp16.safetensors`). */
  variant?: string;
  /** What the folder holds, for error messages ("vae", "text encoder"). */
  what: string;
  /** For a Hugging Face repo id: the branch, tag or commit in the local cache (default `main`). */
  revision?: string;
  /** A folder inside the model or repo (`unet`, `text_encoder`), as diffusers' `subfolder`. */
  subfolder?: string;
  signal?: AbortSignal;
}

/** Options every model class's fromPretrained takes (diffusers' names; device/dtype: lib/loaders/device_options.ts). */
export interface FromPretrainedOptions extends PlacementOptions {
  signal?: AbortSignal;
  variant?: string;
  revision?: string;
  subfolder?: string;
}

// transformers' and diffusers' _add_variant: the variant goes before the last extension, so the
// index of a sharded fp16 checkpoint is `model.safetensors.index.fp16.json`.
function addVariant(name: string, variant: string | undefined): string {
  if (!variant) return name;
  const parts = name.split('.');
  return [...parts.slice(0, -1), variant, parts[parts.length - 1]].join('.');
}

function checkVariant(variant: unknown): void {
  if (variant === undefined) return;
  if (typeof variant !== 'string' || !/^[\w-]+$/.test(variant)) {
    throw new PiaError('E_INVALID_ARGUMENT', `variant: expected a name such as 'fp16', got ${JSON.stringify(variant)}`, { option: 'variant' });
  }
}

async function shardPaths(dir: string, indexPath: string): Promise<string[]> {
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8'));
  } catch (e) {
    throw new PiaError('E_WEIGHTS_CORRUPT', `${indexPath}: not a valid safetensors index (${(e as Error).message})`, {
      file: indexPath,
      cause: e,
    });
  }
  const map = index.weight_map;
  if (!map || typeof map !== 'object') {
    throw new PiaError('E_WEIGHTS_CORRUPT', `${indexPath}: no "weight_map" object`, { file: indexPath });
  }
  const files = [...new Set(Object.values(map))];
  const out: string[] = [];
  for (const f of files) {
    if (typeof f !== 'string' || f.includes('/') || f.includes('\\')) {
      throw new PiaError('E_WEIGHTS_CORRUPT', `${indexPath}: invalid shard name ${JSON.stringify(f)}`, { file: indexPath });
    }
    const p = join(dir, f);
    if (!isFile(p)) throw new PiaError('E_MODEL_NOT_FOUND', `${indexPath} names shard ${f}, which is not in ${dir}`, { file: p });
    out.push(p);
  }
  return out;
}

/**
 * Finds config.json and the weights of a model folder. Missing pieces are E_MODEL_NOT_FOUND
 * naming every path that was tried; a folder with only pickled `.bin` weights is E_UNSUPPORTED.
 */
export async function readModelFolder(dir: string, opts: ModelFolderOptions): Promise<ModelFolder> {
  throwIfAborted(opts.signal);
  if (typeof dir !== 'string' || dir.length === 0) {
    throw new PiaError('E_INVALID_ARGUMENT', `${opts.what}: the model folder must be a non-empty string`, { option: 'dir' });
  }
  checkVariant(opts.variant);
  const abs = resolveModel(dir, { revision: opts.revision, subfolder: opts.subfolder, what: opts.what, signal: opts.signal });
  const configPath = join(abs, 'config.json');
  if (!isFile(configPath)) {
    throw new PiaError('E_MODEL_NOT_FOUND', `${opts.what}: no config.json in ${abs} (looked for ${configPath})`, { file: configPath });
  }
  const configJson = await readFile(configPath, 'utf8');
  let config: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(configJson);
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
    config = parsed as Record<string, unknown>;
  } catch (e) {
    throw new PiaError('E_UNSUPPORTED', `${configPath}: not a valid config (${(e as Error).message})`, { file: configPath, cause: e });
  }

  const tried: string[] = [];
  for (const stem of opts.weightNames) {
    const single = join(abs, addVariant(`${stem}.safetensors`, opts.variant));
    tried.push(single);
    if (isFile(single)) return { dir: abs, configPath, configJson, config, weightPaths: [single] };
    const indexes = [join(abs, addVariant(`${stem}.safetensors.index.json`, opts.variant))];
    // Also `<stem>.<variant>.safetensors.index.json`, the name a variant index gets when renamed by hand.
    if (opts.variant) indexes.push(`${single}.index.json`);
    for (const index of indexes) {
      tried.push(index);
      if (isFile(index)) return { dir: abs, configPath, configJson, config, weightPaths: await shardPaths(abs, index) };
    }
  }
  const pickled = opts.weightNames.map((s) => join(abs, s + (opts.variant ? `.${opts.variant}` : '') + '.bin')).filter(isFile);
  if (pickled.length > 0) {
    throw new PiaError(
      'E_UNSUPPORTED',
      `${opts.what}: ${pickled[0]} holds pickled weights; this loader reads safetensors only (looked for ${tried.join(', ')})`,
      { file: pickled[0] },
    );
  }
  // transformers and diffusers' ModelMixin do not fall back from a missing variant to the plain
  // weights (only a pipeline picks per component, see PIAPipeline.fromPretrained); say it is there.
  const plain = opts.variant ? opts.weightNames.map((s) => join(abs, `${s}.safetensors`)).find(isFile) : undefined;
  const hint = plain ? `; ${plain} exists: load without variant '${opts.variant}'` : '';
  throw new PiaError('E_MODEL_NOT_FOUND', `${opts.what}: no weights in ${abs} (looked for ${tried.join(', ')})${hint}`, { file: abs });
}
