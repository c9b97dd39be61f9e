// The pipeline `pia animate` runs: the user's model, or the bundled demo model.
import { join } from 'node:path';
import { MotionAdapter } from '../models/motion_adapter.js';
import { packageRoot } from '../native/package_root.js';
import { PIAPipeline } from '../pipelines/pia.js';
import { CLIPTokenizer } from '../tokenizers/clip_tokenizer.js';

export const DEMO_MODEL_DIR = join(packageRoot, 'assets', 'demo-model');
export const DEMO_ADAPTER_DIR = join(packageRoot, 'assets', 'demo-motion-adapter');

/** `model` and `adapter` are folders or Hugging Face repo ids (resolved offline from the local cache). */
export async function loadCliPipeline(o: {
  model?: string;
  adapter?: string;
  /** Of the model (the adapter loads its `main`). */
  revision?: string;
  /** Of the model's components, where they have such files (diffusers' per-component rule). */
  variant?: string;
  signal?: AbortSignal;
}): Promise<{ pipe: PIAPipeline; demo: boolean; description: string }> {
  const demo = o.model === undefined;
  const modelDir = o.model ?? DEMO_MODEL_DIR;
  const adapterDir = o.adapter ?? (demo ? DEMO_ADAPTER_DIR : 'openmmlab/PIA-condition-adapter');
  const motionAdapter = await MotionAdapter.fromPretrained(adapterDir, { signal: o.signal });
  // The demo model has no tokenizer folder: it uses the CLIP tokenizer shipped with the package.
  const tokenizer = demo ? await CLIPTokenizer.bundled() : undefined;
  const pipe = await PIAPipeline.fromPretrained(modelDir, { motionAdapter, tokenizer, revision: o.revision, variant: o.variant, signal: o.signal });
  const rev = o.revision === undefined ? '' : `@${o.revision}`;
  const variant = o.variant === undefined ? '' : ` (${o.variant})`;
  return { pipe, demo, description: demo ? 'bundled demo model (random weights)' : `${modelDir}${rev}${variant} + ${adapterDir}` };
}
