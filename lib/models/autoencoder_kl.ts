// diffusers' AutoencoderKL over the native network (native/nn/autoencoder_kl.cpp). Slicing and
// tiling are switches held here and passed with each call, as diffusers keeps them on the module.
import { PiaError, abortError, fromNativeError, throwIfAborted } from '../errors.js';
import { addon } from '../native/addon.js';
import { loadNativeHandle } from '../native/load_handle.js';
import type { NativeCancelToken, NativeModelHandle } from '../native/types.js';
import type { WeightSource } from '../loaders/key_map.js';
import { Generator } from '../random/generator.js';
import { assertTensor, type Tensor } from '../tensor.js';
import { readModelFolder, type FromPretrainedOptions } from './model_files.js';
import { modelPlacement, type PlacementOptions, type ResolvedPlacement } from '../loaders/device_options.js';
import type { ModelCpuOffload } from './model_cpu_offload.js';

/**
 * config.json with every AutoencoderKL.__init__ key filled in (diffusers' `vae.config`, snake_case),
 * plus `scalingFactor` as a camelCase alias of `scaling_factor`.
 */
export interface AutoencoderKLConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn: string;
  latent_channels: number;
  norm_num_groups: number;
  sample_size: number | number[];
  scaling_factor: number;
  force_upcast: boolean | number;
  scalingFactor: number;
  [key: string]: unknown;
}

/** diffusers' DiagonalGaussianDistribution (`vae.encode(x).latent_dist`). */
export interface LatentDistribution {
  mean: Tensor;
  /** clamped to [-30, 20] */
  logvar: Tensor;
  /** exp(0.5 · logvar) */
  std: Tensor;
  /**
   * `mean + std * randn(mean.shape, generator)` in float32, drawing exactly like diffusers' `sample(generator)`
   * (a list of generators: one `(1, ...)` draw per batch item, as randn_tensor does; none: a process-wide
   * generator in torch's default state, standing in for torch's global RNG).
   */
  sample(generator?: Generator | Generator[]): Tensor;
  /** `mean` (DiagonalGaussianDistribution.mode()). */
  mode(): Tensor;
}

// AutoencoderKL.__init__ defaults (v0.26.3).
const DEFAULTS = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ['DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D'],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: 'silu',
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32,
  scaling_factor: 0.18215,
  force_upcast: true,
};

function vaeConfig(raw: Record<string, unknown>): AutoencoderKLConfig {
  const out: Record<string, unknown> = { ...raw };
  for (const [k, v] of Object.entries(DEFAULTS)) if (out[k] === undefined || out[k] === null) out[k] = v;
  out.scalingFactor = out.scaling_factor;
  return Object.freeze(out) as AutoencoderKLConfig;
}

// A native call that an AbortSignal stops between network blocks (the addon polls a cancel token).
async function cancellable<T>(signal: AbortSignal | undefined, call: (token?: NativeCancelToken) => Promise<T>): Promise<T> {
  throwIfAborted(signal);
  const native = addon().autoencoderKL;
  const token = signal ? native.cancelToken() : undefined;
  const onAbort = () => native.cancel(token!);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const out = await call(token);
    throwIfAborted(signal);
    return out;
  } catch (e) {
    if ((e as { code?: unknown }).code === 'E_ABORTED') throw abortError(signal);
    throw fromNativeError(e);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

let sharedGenerator: Generator | undefined;
function globalGenerator(): Generator {
  sharedGenerator ??= new Generator();
  return sharedGenerator;
}

function distribution(mean: Tensor, logvar: Tensor, std: Tensor): LatentDistribution {
  return {
    mean,
    logvar,
    std,
    sample(generator?: Generator | Generator[]): Tensor {
      // randn_tensor(mean.shape, generator) then `self.mean + self.std * sample`: two float32 ops.
      // A list of generators (one per batch item, or a single-item list) draws like randn_tensor.
      let noise: Float32Array;
      const gens = generator === undefined ? [globalGenerator()] : Array.isArray(generator) ? generator : [generator];
      if (gens.length === 1) {
        noise = gens[0].randn(mean.shape).data;
      } else {
        const batch = mean.shape[0];
        if (gens.length !== batch) {
          throw new PiaError('E_INVALID_ARGUMENT', `generator: a list of ${gens.length} generators for a batch of ${batch}`, { option: 'generator' });
        }
        noise = new Float32Array(mean.data.length);
        const item = noise.length / batch;
        gens.forEach((g, b) => noise.set(g.randn([1, ...mean.shape.slice(1)]).data, b * item));
      }
      const out = new Float32Array(mean.data.length);
      for (let i = 0; i < out.length; i++) out[i] = Math.fround(mean.data[i] + Math.fround(std.data[i] * noise[i]));
      return { data: out, shape: [...mean.shape] };
    },
    mode(): Tensor {
      return mean;
    },
  };
}

export class AutoencoderKL {
  readonly config: AutoencoderKLConfig;
  /** Where it runs (lib/loaders/device_options.ts); in float32 on a GPU when a pipeline asked for float16 (force_upcast). */
  readonly placement: ResolvedPlacement;
  /** Set by a pipeline's enableModelCpuOffload. */
  cpuOffload: ModelCpuOffload | undefined;
  #handle: NativeModelHandle | undefined;
  #slicing = false;
  #tiling = false;

  private constructor(handle: NativeModelHandle, config: AutoencoderKLConfig, placement: ResolvedPlacement) {
    this.#handle = handle;
    this.config = config;
    this.placement = placement;
  }

  /**
   * Loads `config.json` and `diffusion_pytorch_model[.<variant>].safetensors` (or its shards) from a folder,
   * or from a repo id in the Hugging Face cache (`revision`, `subfolder: 'vae'` as in diffusers).
   */
  static async fromPretrained(dirOrRepo: string, options: FromPretrainedOptions = {}): Promise<AutoencoderKL> {
    const folder = await readModelFolder(dirOrRepo, {
      weightNames: ['diffusion_pytorch_model'],
      variant: options.variant,
      revision: options.revision,
      subfolder: options.subfolder,
      what: 'vae',
      signal: options.signal,
    });
    throwIfAborted(options.signal);
    const placement = modelPlacement(options, folder.config.force_upcast !== false);
    const handle = await loadNativeHandle(() => addon().autoencoderKL.load(folder.configJson, folder.weightPaths, placement), (h) => addon().autoencoderKL.dispose(h), options.signal);
    return new AutoencoderKL(handle, vaeConfig(folder.config), placement);
  }

  /**
   * A VAE from a config object and weight sources (files with key maps, e.g. the `first_stage_model.*`
   * tensors of a single-file checkpoint; lib/loaders/single_file.ts).
   */
  static async fromWeightSources(
    config: Record<string, unknown>, sources: WeightSource[], options: { signal?: AbortSignal } & PlacementOptions = {},
  ): Promise<AutoencoderKL> {
    throwIfAborted(options.signal);
    const placement = modelPlacement(options, config.force_upcast !== false);
    const handle = await loadNativeHandle(() => addon().autoencoderKL.load(JSON.stringify(config), sources, placement), (h) => addon().autoencoderKL.dispose(h), options.signal);
    return new AutoencoderKL(handle, vaeConfig(config), placement);
  }

  /** 2^(len(block_out_channels) - 1), the pipelines' `vae_scale_factor`. */
  get scaleFactor(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  get scalingFactor(): number {
    return this.config.scaling_factor;
  }

  /** Images [B, in_channels, H, W] in [-1, 1] → the latent distribution (`vae.encode(x).latent_dist`). */
  async encode(x: Tensor, options: { signal?: AbortSignal } = {}): Promise<LatentDistribution> {
    const handle = this.#live();
    throwIfAborted(options.signal);
    assertTensor(x, 'x', 4);
    if (x.shape[1] !== this.config.in_channels) {
      throw new PiaError('E_INVALID_ARGUMENT', `x: expected ${this.config.in_channels} channels, got shape [${x.shape.join(', ')}]`, { option: 'x' });
    }
    const input = { data: x.data, shape: x.shape };
    const out = await this.#placed(() =>
      cancellable(options.signal, (token) => addon().autoencoderKL.encode(handle, input, this.#slicing, this.#tiling, token)));
    return distribution(out.mean, out.logvar, out.std);
  }

  /**
   * Latents [B, latent_channels, h, w] (already divided by the scaling factor) → images [B, out_channels, H, W].
   * `slicing` overrides enableSlicing()/disableSlicing() for this call only.
   */
  async decode(z: Tensor, options: { signal?: AbortSignal; slicing?: boolean } = {}): Promise<Tensor> {
    const handle = this.#live();
    throwIfAborted(options.signal);
    assertTensor(z, 'z', 4);
    if (z.shape[1] !== this.config.latent_channels) {
      throw new PiaError('E_INVALID_ARGUMENT', `z: expected ${this.config.latent_channels} channels, got shape [${z.shape.join(', ')}]`, { option: 'z' });
    }
    const input = { data: z.data, shape: z.shape };
    const slicing = options.slicing ?? this.#slicing;
    return this.#placed(() =>
      cancellable(options.signal, (token) => addon().autoencoderKL.decode(handle, input, slicing, this.#tiling, token)));
  }

  /** diffusers enable_slicing(): encode/decode one batch item at a time. */
  enableSlicing(): void {
    this.#slicing = true;
  }

  disableSlicing(): void {
    this.#slicing = false;
  }

  /** diffusers enable_tiling(): inputs larger than a tile are processed in blended, overlapping tiles. */
  enableTiling(): void {
    const s = this.config.sample_size;
    if (Array.isArray(s)) {
      // AutoencoderKL.tiled_encode compares sizes with tile_sample_min_size = config.sample_size.
      throw new PiaError('E_UNSUPPORTED', 'vae tiling needs an integer sample_size in the vae config (diffusers cannot tile with a list)', { option: 'sample_size' });
    }
    this.#tiling = true;
  }

  disableTiling(): void {
    this.#tiling = false;
  }

  get useSlicing(): boolean {
    return this.#slicing;
  }

  get useTiling(): boolean {
    return this.#tiling;
  }

  /** Frees the native weights; further calls fail. Safe to call twice. */
  /** The weights to the GPU (true) or host memory (false); model CPU offload (lib/models/model_cpu_offload.ts). */
  async setResident(onDevice: boolean): Promise<void> {
    if (!this.#handle) return;  // disposed: no weights left to move (an offload group may still list it)
    try {
      await addon().autoencoderKL.setResident(this.#handle, onDevice);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  #placed<T>(call: () => Promise<T>): Promise<T> {
    return this.cpuOffload ? this.cpuOffload.run(this, call) : call();
  }

  dispose(): void {
    if (this.#handle) addon().autoencoderKL.dispose(this.#handle);
    this.#handle = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #live(): NativeModelHandle {
    if (!this.#handle) throw new PiaError('E_INVALID_ARGUMENT', 'AutoencoderKL: the model was disposed');
    return this.#handle;
  }
}
