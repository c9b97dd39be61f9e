// The pipeline `pia animate` runs: the user's model, or the bundled demo model.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { PiaError } from '../errors.js';
import { loadVae } from '../loaders/single_file.js';
import { MotionAdapter } from '../models/motion_adapter.js';
import { packageRoot } from '../native/package_root.js';
import { PIAPipeline } from '../pipelines/pia.js';
import { CLIPTokenizer } from '../tokenizers/clip_tokenizer.js';

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
  /** Of the model (the adapter loads its `main`). */
  revision?: string;
  /** Of the model's components, where they have such files (diffusers' per-component rule). */
  variant?: string;
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
    pipe = await PIAPipeline.fromSingleFile(modelDir, { motionAdapter, vae: o.vae, signal: o.signal });
  } else {
    // The demo model has no tokenizer folder: it uses the CLIP tokenizer shipped with the package.
    const tokenizer = demo ? await CLIPTokenizer.bundled() : undefined;
    pipe = await PIAPipeline.fromPretrained(modelDir, { motionAdapter, tokenizer, revision: o.revision, variant: o.variant, signal: o.signal });
    if (o.vae !== undefined) {
      try {
        const vae = await loadVae(o.vae, o.signal);
        pipe.vae.dispose();
        pipe.vae = vae;
      } catch (e) {
        pipe.dispose();
        throw e;
      }
    }
  }
  const rev = o.revision === undefined ? '' : `@${o.revision}`;
  const variant = o.variant === undefined ? '' : ` (${o.variant})`;
  const vae = o.vae === undefined ? '' : ` (vae ${o.vae})`;
  return { pipe, demo, description: demo ? 'bundled demo model (random weights)' : `${modelDir}${rev}${variant}${vae} + ${adapterDir}` };
}
