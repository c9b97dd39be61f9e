// diffusers' UNetMotionModel (built like UNetMotionModel.from_unet2d, PIA's 9-channel conv_in
// included) over the native network (native/nn/unet_motion_model.cpp).
import { PiaError, abortError, fromNativeError, invalidArgument, throwIfAborted, assertFiniteNumber } from '../errors.js';
import { addon } from '../native/addon.js';
import { loadNativeHandle } from '../native/load_handle.js';
import type { NativeCancelToken, NativeFreeU, NativeLoraContribution, NativeLoraTarget, NativeModelHandle } from '../native/types.js';
import { assertTensor, type Tensor } from '../tensor.js';
import type { IPAdapter } from '../loaders/ip_adapter.js';
import { MotionAdapter } from './motion_adapter.js';
import { UNet2DConditionModel } from './unet_2d_condition_model.js';
import { modelPlacement, type PlacementOptions, type ResolvedPlacement } from '../loaders/device_options.js';
import type { ModelCpuOffload } from './model_cpu_offload.js';

/** The config UNetMotionModel.from_unet2d derives from the 2-D UNet's and the adapter's. */
export interface UNetMotionConfig {
  _class_name: 'UNetMotionModel';
  sample_size: number | null;
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  downsample_padding: number;
  mid_block_scale_factor: number;
  act_fn: string;
  norm_num_groups: number;
  norm_eps: number;
  cross_attention_dim: number;
  use_linear_projection: boolean;
  num_attention_heads: number[];
  motion_max_seq_length: number;
  motion_num_attention_heads: number;
  use_motion_mid_block: boolean;
  encoder_hid_dim: null;
  encoder_hid_dim_type: null;
}

export interface FreeUOptions {
  s1: number;
  s2: number;
  b1: number;
  b2: number;
}

export interface UNetMotionForwardOptions {
  signal?: AbortSignal;
  loraScale?: number;
  imageEmbeds?: Tensor;
}

// A native call that an AbortSignal stops between network layers (the addon polls a cancel token).
async function cancellable<T>(signal: AbortSignal | undefined, call: (token?: NativeCancelToken) => Promise<T>): Promise<T> {
  throwIfAborted(signal);
  const native = addon().unetMotionModel;
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

export class UNetMotionModel {
  readonly config: UNetMotionConfig;
  /** Where it runs (lib/loaders/device_options.ts); an IP-Adapter attached to it is placed alike. */
  readonly placement: ResolvedPlacement;
  /** Set by a pipeline's enableModelCpuOffload. */
  cpuOffload: ModelCpuOffload | undefined;
  #handle: NativeModelHandle | undefined;
  #freeU: NativeFreeU | null = null;
  #ipAdapter: IPAdapter | undefined;
  #ipScale = 1;

  private constructor(handle: NativeModelHandle, config: UNetMotionConfig, placement: ResolvedPlacement) {
    this.#handle = handle;
    this.placement = placement;
    this.config = config;
  }

  /**
   * diffusers `UNetMotionModel.from_unet2d(unet, motion_adapter)`: the 2-D UNet's weights, the adapter's
   * motion modules and, for PIA adapters (`conv_in_channels`), conv_in = cat(unet conv_in, adapter
   * conv_in[:, 4:]) with the UNet's bias. Unsupported configs are E_UNSUPPORTED; a missing, unexpected
   * or misshapen weight is E_WEIGHTS_MISMATCH naming the key.
   */
  static async fromUnet2d(
    unet: string | UNet2DConditionModel,
    adapter: MotionAdapter,
    options: { signal?: AbortSignal } & PlacementOptions = {},
  ): Promise<UNetMotionModel> {
    throwIfAborted(options.signal);
    const placement = modelPlacement(options);
    if (!(adapter instanceof MotionAdapter)) throw invalidArgument('adapter', 'expected a MotionAdapter (MotionAdapter.fromPretrained)');
    const unet2d = typeof unet === 'string' ? await UNet2DConditionModel.fromPretrained(unet, { signal: options.signal }) : unet;
    if (!(unet2d instanceof UNet2DConditionModel)) {
      throw invalidArgument('unet', 'expected a folder path or a UNet2DConditionModel');
    }
    throwIfAborted(options.signal);
    const native = addon().unetMotionModel;
    const handle = await loadNativeHandle(() => native.load(unet2d.configJson, [...unet2d.weightSources], adapter.configJson, [...adapter.weightSources], placement), (h) => native.dispose(h), options.signal);
    const config = Object.freeze(JSON.parse(native.config(handle))) as UNetMotionConfig;
    return new UNetMotionModel(handle, config, placement);
  }

  /**
   * The noise prediction for `sample` [B, C, F, H, W] (C = config.in_channels: 9 for PIA) at `timestep`
   * (integer or fractional, as the schedulers pass it) with `encoderHiddenStates` [B, S, cross_attention_dim]
   * → [B, out_channels, F, H, W].
   */
  async forward(sample: Tensor, timestep: number, encoderHiddenStates: Tensor, options: UNetMotionForwardOptions = {}): Promise<Tensor> {
    const handle = this.#live();
    throwIfAborted(options.signal);
    const loraScale = options.loraScale ?? 1;
    assertFiniteNumber(loraScale, 'loraScale');
    // UNetMotionModel.forward with encoder_hid_dim_type "ip_image_proj" requires image_embeds; without an
    // adapter there is nothing to project them with.
    const ipAdapter = this.#ipAdapter;
    if (options.imageEmbeds !== undefined && !ipAdapter) {
      throw new PiaError('E_INVALID_ARGUMENT', 'UNetMotionModel.forward: imageEmbeds needs an IP-Adapter, and none is loaded', {
        option: 'imageEmbeds',
      });
    }
    if (ipAdapter && options.imageEmbeds === undefined) {
      throw new PiaError('E_INVALID_ARGUMENT', 'UNetMotionModel.forward: an IP-Adapter is loaded, so imageEmbeds are required', {
        option: 'imageEmbeds',
      });
    }
    if (options.imageEmbeds !== undefined) {
      assertTensor(options.imageEmbeds, 'imageEmbeds');
      if (options.imageEmbeds.shape[0] !== sample.shape?.[0]) {
        throw invalidArgument('imageEmbeds', `batch ${options.imageEmbeds.shape[0]} does not match the sample's ${sample.shape?.[0]}`);
      }
    }
    assertTensor(sample, 'sample', 5);
    assertTensor(encoderHiddenStates, 'encoderHiddenStates', 3);
    const [B, C, F, H, W] = sample.shape;
    const c = this.config;
    if (C !== c.in_channels) throw invalidArgument('sample', `has ${C} channels, the model takes ${c.in_channels}`);
    if (B === 0 || F === 0 || H === 0 || W === 0) throw invalidArgument('sample', `empty shape [${sample.shape.join(', ')}]`);
    if (F > c.motion_max_seq_length) {
      throw invalidArgument('sample', `${F} frames exceed the motion modules' max_seq_length ${c.motion_max_seq_length}`);
    }
    const [eb, , ed] = encoderHiddenStates.shape;
    if (eb !== B || ed !== c.cross_attention_dim) {
      throw invalidArgument(
        'encoderHiddenStates',
        `expected [${B}, S, ${c.cross_attention_dim}], got [${encoderHiddenStates.shape.join(', ')}]`,
      );
    }
    assertFiniteNumber(timestep, 'timestep');
    const freeU = this.#freeU;
    return this.#placed(() => cancellable(options.signal, (token) =>
      addon().unetMotionModel.forward(handle, sample, timestep, encoderHiddenStates, freeU, token, loraScale,
        ipAdapter ? { adapter: ipAdapter.handle, imageEmbeds: options.imageEmbeds!, scale: this.#ipScale } : null)));
  }

  /** The spatial cross-attention layers (attn2 of the Transformer2DModels) an IP-Adapter attaches to. */
  ipAttentionSites(): { name: string; hidden_size: number; cross_attention_dim: number }[] {
    return addon().unetMotionModel.ipAttentionSites(this.#live());
  }

  /**
   * Attaches an IP-Adapter (lib/loaders/ip_adapter.ts; pipelines use loadIpAdapter) or detaches it
   * (undefined). Every later forward then needs `imageEmbeds`. The scale resets to 1.0, as load_ip_adapter's.
   */
  setIpAdapter(adapter: IPAdapter | undefined): void {
    this.#live();
    this.#ipAdapter = adapter;
    this.#ipScale = 1;
  }

  get ipAdapter(): IPAdapter | undefined {
    return this.#ipAdapter;
  }

  /** set_ip_adapter_scale: the weight of the image branch in every IP cross-attention. */
  setIpAdapterScale(scale: number): void {
    assertFiniteNumber(scale, 'scale');
    this.#ipScale = scale;
  }

  get ipAdapterScale(): number {
    return this.#ipScale;
  }

  /** The Linear / Conv2d modules a LoRA may target (lib/loaders/lora.ts maps file keys onto these names). */
  loraTargets(): NativeLoraTarget[] {
    return addon().unetMotionModel.loraTargets(this.#live());
  }

  /**
   * Replaces the LoRA contributions applied by every later forward (lib/loaders/lora.ts builds them;
   * pipelines use loadLoraWeights). A forward already running keeps the previous ones.
   */
  async setLora(contributions: NativeLoraContribution[]): Promise<void> {
    try {
      await addon().unetMotionModel.setLora(this.#live(), contributions);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  /** diffusers `enable_freeu`: FreeU in the first two up blocks (a zero anywhere disables it, as in diffusers). */
  enableFreeU(options: FreeUOptions): void {
    this.#live();
    if (options === null || typeof options !== 'object') throw invalidArgument('enableFreeU', 'expected { s1, s2, b1, b2 }');
    const { s1, s2, b1, b2 } = options;
    for (const [k, v] of Object.entries({ s1, s2, b1, b2 })) {
      assertFiniteNumber(v, k);
    }
    this.#freeU = { s1, s2, b1, b2 };
  }

  disableFreeU(): void {
    this.#freeU = null;
  }

  /** The FreeU settings in effect (null when disabled). */
  get freeU(): Readonly<FreeUOptions> | null {
    return this.#freeU ? { ...this.#freeU } : null;
  }

  /** The weights to the GPU (true) or host memory (false); model CPU offload (lib/models/model_cpu_offload.ts). */
  async setResident(onDevice: boolean): Promise<void> {
    if (!this.#handle) return;  // disposed: no weights left to move (an offload group may still list it)
    try {
      await addon().unetMotionModel.setResident(this.#handle, onDevice);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  #placed<T>(call: () => Promise<T>): Promise<T> {
    return this.cpuOffload ? this.cpuOffload.run(this, call) : call();
  }

  /** Frees the native weights; calls after this throw E_INVALID_ARGUMENT. A forward in flight completes. */
  dispose(): void {
    if (this.#handle) addon().unetMotionModel.dispose(this.#handle);
    this.#handle = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  #live(): NativeModelHandle {
    if (!this.#handle) throw new PiaError('E_INVALID_ARGUMENT', 'UNetMotionModel: the model was disposed');
    return this.#handle;
  }
}
