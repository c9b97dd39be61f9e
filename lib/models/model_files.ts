// Reading one diffusers / transformers model folder: `config.json` plus the safetensors weights
// (a single file, or the shards listed by `<name>.safetensors.index.json`). Shared by every
// model class in lib/models so that "where did it look" errors read the same everywhere.
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PiaError, throwIfAborted } from '../errors.js';

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
  signal?: AbortSignal;
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
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
  const abs = resolve(dir);
  if (!existsSync(abs) || !statSync(abs).isDirectory()) {
    throw new PiaError('E_MODEL_NOT_FOUND', `${opts.what}: no folder at ${abs}`, { file: abs });
  }
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
  const suffix = opts.variant ? `.${opts.variant}.safetensors` : '.safetensors';
  for (const stem of opts.weightNames) {
    const single = join(abs, stem + suffix);
    tried.push(single);
    if (isFile(single)) return { dir: abs, configPath, configJson, config, weightPaths: [single] };
    const index = single + '.index.json';
    tried.push(index);
    if (isFile(index)) return { dir: abs, configPath, configJson, config, weightPaths: await shardPaths(abs, index) };
  }
  const pickled = opts.weightNames.map((s) => join(abs, s + (opts.variant ? `.${opts.variant}` : '') + '.bin')).filter(isFile);
  if (pickled.length > 0) {
    throw new PiaError(
      'E_UNSUPPORTED',
      `${opts.what}: ${pickled[0]} holds pickled weights; this loader reads safetensors only (looked for ${tried.join(', ')})`,
      { file: pickled[0] },
    );
  }
  throw new PiaError('E_MODEL_NOT_FOUND', `${opts.what}: no weights in ${abs} (looked for ${tried.join(', ')})`, { file: abs });
}
