// The components of PIAPipeline.fromSingleFile: an original SD-1.x checkpoint's UNet, VAE and text
// encoder built from one file through key maps (lib/loaders/ldm_to_diffusers*.ts), configs from a
// diffusers folder (`config`) where given, the package's CLIP tokenizer and a stock scheduler otherwise.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { statSync } from 'node:fs';
import { PiaError, throwIfAborted } from '../errors.js';
import { parseConfigJson } from '../config_json.js';
import { AutoencoderKL } from '../models/autoencoder_kl.js';
import { CLIPTextModel } from '../models/clip_text_model.js';
import { UNet2DConditionModel, type UNet2DConditionConfig } from '../models/unet_2d_condition_model.js';
import { DDIMScheduler, schedulerFromConfig, type SchedulerBase } from '../schedulers/index.js';
import { CLIPTokenizer } from '../tokenizers/clip_tokenizer.js';
import { CheckpointView, readCheckpointHeader } from './checkpoint_view.js';
import type { KeyMap } from './key_map.js';
import { convertLdmCheckpoint } from './ldm_to_diffusers.js';
import { ldmKeyForDiffusers } from './ldm_from_diffusers.js';
import { convertLdmVae, VAE_PREFIX } from './ldm_to_diffusers_vae.js';
import { resolveModel } from './hub.js';

/**
 * The scheduler without `config`: diffusers v0.26.3 from_single_file builds (create_scheduler_from_ldm,
 * default scheduler_type "ddim") a DDIMScheduler from SCHEDULER_DEFAULT_CONFIG with the LDM yaml's
 * betas and beta_schedule "scaled_linear". PIA was trained and released with beta_schedule "linear"
 * (open-mmlab/PIA example/config/base.yaml noise_scheduler_kwargs; openmmlab/PIA-condition-adapter's
 * pipeline), which is what PIAPipeline runs with when loaded from a diffusers folder, so we keep
 * diffusers' DDIM values and take PIA's linear schedule.
 */
export const SINGLE_FILE_SCHEDULER_CONFIG: Readonly<Record<string, unknown>> = Object.freeze({
  _class_name: 'DDIMScheduler',
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'linear',
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
});

export interface SingleFileOptions {
  /** A diffusers pipeline folder or Hugging Face repo id whose unet/vae/text_encoder configs, tokenizer and scheduler are used. */
  config?: string;
  /** A VAE to use instead of the checkpoint's: a diffusers folder or a single file (LDM names). */
  vae?: string;
  signal?: AbortSignal;
}

export interface SingleFileComponents {
  tokenizer: CLIPTokenizer;
  textEncoder: CLIPTextModel;
  vae: AutoencoderKL;
  unet: UNet2DConditionModel;
  scheduler: SchedulerBase;
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new PiaError('E_MODEL_NOT_FOUND', `config: ${path} is missing`, { file: path, option: 'config', cause: e });
  }
  return parseConfigJson(text) as Record<string, unknown>;
}

// Native load errors name diffusers keys; a user holding an LDM file wants its own names too.
async function withFileKeys<T>(load: () => Promise<T>, keyMap: KeyMap, component: 'unet' | 'vae' | 'text', prefix: string, view: CheckpointView): Promise<T> {
  try {
    return await load();
  } catch (e) {
    if (e instanceof PiaError && e.code === 'E_WEIGHTS_MISMATCH' && e.key && !keyMap.fileKey(e.key)) {
      const original = ldmKeyForDiffusers(component, e.key, view, prefix);
      if (original !== undefined) {
        e.message += ` (in ${view.path} it would be '${view.fileKey(original)}')`;
        e.file ??= view.path;
      }
    }
    throw e;
  }
}

/** Refuses what is not a file before anything is read. */
function checkFile(path: unknown, option: string): string {
  if (typeof path !== 'string' || path.length === 0) {
    throw new PiaError('E_INVALID_ARGUMENT', `${option}: expected a path to a .safetensors or .ckpt file`, { option });
  }
  const abs = resolve(path);
  let ok = false;
  try {
    ok = statSync(abs).isFile();
  } catch {
    ok = false;
  }
  if (!ok) throw new PiaError('E_MODEL_NOT_FOUND', `${option}: no file at ${abs}`, { file: abs, option });
  return abs;
}

/** A VAE from a diffusers folder, or from a single file (`first_stage_model.*` or bare LDM VAE names). */
export async function loadVae(path: string, signal?: AbortSignal): Promise<AutoencoderKL> {
  if (isDirectory(path)) return AutoencoderKL.fromPretrained(path, { signal });
  const file = checkFile(path, 'vae');
  const view = new CheckpointView(await readCheckpointHeader(file));
  const prefix = view.keys.some((k) => k.startsWith(VAE_PREFIX)) ? VAE_PREFIX : '';
  const vae = convertLdmVae(view, prefix);
  return withFileKeys(() => AutoencoderKL.fromWeightSources(vae.config, [vae.keyMap.source(file, view.at)], { signal }), vae.keyMap, 'vae', prefix, view);
}

export async function loadSingleFileComponents(path: string, options: SingleFileOptions = {}): Promise<SingleFileComponents> {
  const { signal } = options;
  const file = checkFile(path, 'path');
  // diffusers' from_single_file(config=...): a pipeline folder or a repo id (here read offline from the hub cache).
  const configDir = options.config === undefined
    ? undefined
    : resolveModel(options.config, { what: 'single-file config (a diffusers pipeline folder or repo id)', option: 'config', signal });
  throwIfAborted(signal);
  const view = new CheckpointView(await readCheckpointHeader(file));
  const ldm = convertLdmCheckpoint(view);
  if (!ldm.textEncoder) {
    throw new PiaError('E_WEIGHTS_MISMATCH', `${file}: no CLIP text encoder (cond_stage_model.transformer.*) in the checkpoint`, { file });
  }
  if (!ldm.vae && options.vae === undefined) {
    throw new PiaError('E_WEIGHTS_MISMATCH', `${file}: no VAE (first_stage_model.*) in the checkpoint: pass one as the \`vae\` option`, { file });
  }
  const unetConfig = configDir ? await readJson(join(configDir, 'unet', 'config.json')) : ldm.unet.config;
  const textConfig = configDir ? await readJson(join(configDir, 'text_encoder', 'config.json')) : ldm.textEncoder.config;
  let scheduler: SchedulerBase;
  if (configDir) {
    const sched = await readJson(join(configDir, 'scheduler', 'scheduler_config.json'));
    scheduler = schedulerFromConfig(sched);
  } else {
    scheduler = DDIMScheduler.fromConfig({ ...SINGLE_FILE_SCHEDULER_CONFIG });
  }
  const tokenizer = configDir ? await CLIPTokenizer.fromPretrained(join(configDir, 'tokenizer'), { signal }) : await CLIPTokenizer.bundled({ signal });
  throwIfAborted(signal);

  const unet = UNet2DConditionModel.fromWeightSources(unetConfig as UNet2DConditionConfig, [ldm.unet.keyMap.source(file, view.at)], file);
  const text = ldm.textEncoder;
  const textEncoder = await withFileKeys(
    () => CLIPTextModel.fromWeightSources(textConfig, [text.keyMap.source(file, view.at)], { signal }), text.keyMap, 'text', '', view);
  try {
    let vae: AutoencoderKL;
    if (options.vae !== undefined) {
      vae = await loadVae(options.vae, signal);
    } else {
      const v = ldm.vae!;
      const vaeConfig = configDir ? await readJson(join(configDir, 'vae', 'config.json')) : v.config;
      vae = await withFileKeys(() => AutoencoderKL.fromWeightSources(vaeConfig, [v.keyMap.source(file, view.at)], { signal }), v.keyMap, 'vae', VAE_PREFIX, view);
    }
    return { tokenizer, textEncoder, vae, unet, scheduler };
  } catch (e) {
    textEncoder.dispose();
    throw e;
  }
}

/** Adds the checkpoint's own name of a diffusers key to a UNet load error (UNetMotionModel.fromUnet2d). */
export async function withUnetFileKeys<T>(load: () => Promise<T>, unet: UNet2DConditionModel): Promise<T> {
  const src = unet.weightSources[0];
  if (typeof src === 'string' || src === undefined) return load();
  try {
    return await load();
  } catch (e) {
    if (e instanceof PiaError && e.code === 'E_WEIGHTS_MISMATCH' && e.key && e.message.includes('missing weight')) {
      const view = new CheckpointView(await readCheckpointHeader(src.path));
      const original = ldmKeyForDiffusers('unet', e.key, view, '');
      if (original !== undefined) e.message += ` (in ${src.path} it would be '${view.fileKey(original)}')`;
    }
    throw e;
  }
}
