// The pipeline `pia animate` runs: the user's model, or the bundled demo model.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { PiaError } from '../errors.js';
import { loadVae } from '../loaders/single_file.js';
import { MotionAdapter } from '../models/motion_adapter.js';
import { packageRoot } from '../native/package_root.js';
import { PIAPipeline } from '../pipelines/pia.js';
import { CLIPTokenizer } from '../tokenizers/clip_tokenizer.js';
import type { EmbeddingArg, LoraArg } from './weight_args.js';
import { withPipelinePlacement, type PipelineDevice, type PipelineDtype } from '../loaders/device_options.js';

export const DEMO_MODEL_DIR = join(packageRoot, 'assets', 'demo-model');
export const DEMO_ADAPTER_DIR = join(packageRoot, 'assets', 'demo-motion-adapter');

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * `model` and `adapter` are folders, Hugging Face repo ids (resolved offline from the local cache) or
 * single files (an original SD-1.x checkpoint; PIA's original motion checkpoint); `vae` a folder or file.
 */
export async function loadCliPipeline(o: {
  model?: string;
  adapter?: string;
  vae?: string;
  /** A diffusers folder or repo id with the configs and tokenizer of a single-file `model`. */
  config?: string;
  /** Each becomes an adapter (default_0, default_1, …); the scales are the set_adapters weights. */
  loras?: readonly LoraArg[];
  embeddings?: readonly EmbeddingArg[];
  /** Of the model (the adapter loads its `main`). */
  revision?: string;
  /** Of the model's components, where they have such files (diffusers' per-component rule). */
  variant?: string;
  device?: PipelineDevice;
  dtype?: PipelineDtype;
  signal?: AbortSignal;
}): Promise<{ pipe: PIAPipeline; demo: boolean; description: string }> {
  const demo = o.model === undefined;
  const modelDir = o.model ?? DEMO_MODEL_DIR;
  const adapterDir = o.adapter ?? (demo ? DEMO_ADAPTER_DIR : 'openmmlab/PIA-condition-adapter');
  const motionAdapter = isFile(adapterDir)
    ? await MotionAdapter.fromSingleFile(adapterDir, { signal: o.signal })
    : await MotionAdapter.fromPretrained(adapterDir, { signal: o.signal });
  let pipe: PIAPipeline;
  if (isFile(modelDir)) {
    if (o.revision !== undefined || o.variant !== undefined) {
      throw new PiaError('E_INVALID_ARGUMENT', `--${o.revision !== undefined ? 'revision' : 'variant'} does not apply to a single-file --model`, {
        option: o.revision !== undefined ? 'revision' : 'variant',
      });
    }
    pipe = await PIAPipeline.fromSingleFile(modelDir, { motionAdapter, vae: o.vae, config: o.config, device: o.device, dtype: o.dtype, signal: o.signal });
  } else {
    if (o.config !== undefined) {
      throw new PiaError('E_INVALID_ARGUMENT', '--config applies to a single-file --model (a folder or repo id carries its own configs)', { option: 'config' });
    }
    // The demo model has no tokenizer folder: it uses the CLIP tokenizer shipped with the package.
    const tokenizer = demo ? await CLIPTokenizer.bundled() : undefined;
    pipe = await PIAPipeline.fromPretrained(modelDir, {
      motionAdapter, tokenizer, revision: o.revision, variant: o.variant, device: o.device, dtype: o.dtype, signal: o.signal,
    });
    if (o.vae !== undefined) {
      try {
        const vae = await withPipelinePlacement(pipe.placement, () => loadVae(o.vae!, o.signal));
        pipe.vae.dispose();
        pipe.vae = vae;
      } catch (e) {
        pipe.dispose();
        throw e;
      }
    }
  }
  try {
    const loras = o.loras ?? [];
    if (loras.length > 0) {
      const names: string[] = [];
      for (const l of loras) names.push(await pipe.loadLoraWeights(l.path));
      await pipe.setAdapters(names, loras.map((l) => l.scale));
    }
    for (const e of o.embeddings ?? []) await pipe.loadTextualInversion(e.path, e.token === undefined ? {} : { token: e.token });
  } catch (e) {
    pipe.dispose();
    throw e;
  }
  const rev = o.revision === undefined ? '' : `@${o.revision}`;
  const variant = o.variant === undefined ? '' : ` (${o.variant})`;
  const vae = o.vae === undefined ? '' : ` (vae ${o.vae})`;
  const extras = [
    ...(o.loras ?? []).map((l) => ` + LoRA ${l.path}${l.scale === 1 ? '' : ` ×${l.scale}`}`),
    ...(o.embeddings ?? []).map((e) => ` + embedding ${e.path}${e.token === undefined ? '' : ` as ${e.token}`}`),
  ].join('');
  return { pipe, demo, description: `${demo ? 'bundled demo model (random weights)' : `${modelDir}${rev}${variant}${vae} + ${adapterDir}`}${extras}` };
}
