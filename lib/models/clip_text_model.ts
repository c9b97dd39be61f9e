// transformers' CLIPTextModel over the native network (native/nn/clip_text_model.cpp).
import { PiaError, fromNativeError, invalidArgument, throwIfAborted, assertFiniteNumber } from '../errors.js';
import { addon } from '../native/addon.js';
import { loadNativeHandle } from '../native/load_handle.js';
import type { NativeLoraContribution, NativeLoraTarget, NativeModelHandle } from '../native/types.js';
import type { WeightSource } from '../loaders/key_map.js';
import type { Tensor } from '../tensor.js';
import { readModelFolder, type FromPretrainedOptions } from './model_files.js';
import { modelPlacement, type PlacementOptions, type ResolvedPlacement } from '../loaders/device_options.js';
import type { ModelCpuOffload } from './model_cpu_offload.js';

/** config.json of the text encoder (Hugging Face keys; the fields the network reads, and the rest). */
export interface CLIPTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: string;
  layer_norm_eps: number;
  eos_token_id: number;
  [key: string]: unknown;
}

export interface CLIPTextModelOutput {
  /** [B, S, hidden]; with `clipSkip: k`, `final_layer_norm(hidden_states[-(k+1)])` (diffusers' encode_prompt). */
  lastHiddenState: Tensor;
  /** [B, hidden]: the last layer's (final-normed) state at the EOS position, as transformers pools. */
  poolerOutput: Tensor;
  /** With `outputHiddenStates`: the embeddings output, then each layer's output before final_layer_norm. */
  hiddenStates?: Tensor[];
}

export interface CLIPTextEncodeOptions {
  clipSkip?: number;
  /** Scale of the loaded LoRA's text-encoder branches (diffusers' PatchedLoraProjection.lora_scale); default 1. */
  loraScale?: number;
  outputHiddenStates?: boolean;
  signal?: AbortSignal;
}

// transformers CLIPTextConfig defaults (v4.37).
const DEFAULTS = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  eos_token_id: 49407,
};

function textConfig(raw: Record<string, unknown>): CLIPTextConfig {
  // A whole CLIPModel config: CLIPTextConfig.from_pretrained uses its text_config.
  const src = raw.model_type === 'clip' && raw.text_config && typeof raw.text_config === 'object'
    ? (raw.text_config as Record<string, unknown>)
    : raw;
  const out: Record<string, unknown> = { ...src };
  for (const [k, v] of Object.entries(DEFAULTS)) if (out[k] === undefined || out[k] === null) out[k] = v;
  return Object.freeze(out) as CLIPTextConfig;
}

export class CLIPTextModel {
  #config: CLIPTextConfig;
  /** Where it runs (lib/loaders/device_options.ts). */
  readonly placement: ResolvedPlacement;
  /** Set by a pipeline's enableModelCpuOffload. */
  cpuOffload: ModelCpuOffload | undefined;
  #handle: NativeModelHandle | undefined;

  private constructor(handle: NativeModelHandle, config: CLIPTextConfig, placement: ResolvedPlacement) {
    this.#handle = handle;
    this.placement = placement;
    this.#config = config;
  }

  /** The config (vocab_size grows with textual-inversion tokens, as resize_token_embeddings updates it). */
  get config(): CLIPTextConfig {
    return this.#config;
  }

  /**
   * Loads `config.json` and `model[.<variant>].safetensors` (or its shards) from a folder, or from a repo id in
   * the Hugging Face cache (`revision`, `subfolder: 'text_encoder'`). Weights must match the
   * config exactly: a missing, unexpected or misshapen key is E_WEIGHTS_MISMATCH naming the key.
   */
  static async fromPretrained(dirOrRepo: string, options: FromPretrainedOptions = {}): Promise<CLIPTextModel> {
    const folder = await readModelFolder(dirOrRepo, {
      weightNames: ['model'],
      variant: options.variant,
      revision: options.revision,
      subfolder: options.subfolder,
      what: 'text encoder',
      signal: options.signal,
    });
    throwIfAborted(options.signal);
    const placement = modelPlacement(options);
    const handle = await loadNativeHandle(() => addon().clipTextModel.load(folder.configJson, folder.weightPaths, placement), (h) => addon().clipTextModel.dispose(h), options.signal);
    return new CLIPTextModel(handle, textConfig(folder.config), placement);
  }

  /**
   * A text encoder from a config object and weight sources (files with key maps, e.g. the
   * `cond_stage_model.transformer.*` tensors of a single-file checkpoint; lib/loaders/single_file.ts).
   */
  static async fromWeightSources(
    config: Record<string, unknown>, sources: WeightSource[], options: { signal?: AbortSignal } & PlacementOptions = {},
  ): Promise<CLIPTextModel> {
    throwIfAborted(options.signal);
    const placement = modelPlacement(options);
    const handle = await loadNativeHandle(() => addon().clipTextModel.load(JSON.stringify(config), sources, placement), (h) => addon().clipTextModel.dispose(h), options.signal);
    return new CLIPTextModel(handle, textConfig(config), placement);
  }

  /** Runs the encoder on token ids ([batch][seq_len], e.g. CLIPTokenizer's `inputIds`). */
  async encode(inputIds: number[][], options: CLIPTextEncodeOptions = {}): Promise<CLIPTextModelOutput> {
    const handle = this.#live();
    throwIfAborted(options.signal);
    if (!Array.isArray(inputIds) || inputIds.length === 0 || !inputIds.every(Array.isArray)) {
      throw invalidArgument('inputIds', 'expected a non-empty array of token id arrays');
    }
    const batch = inputIds.length;
    const seqLen = inputIds[0].length;
    const maxLen = this.config.max_position_embeddings;
    if (seqLen === 0 || seqLen > maxLen) {
      throw invalidArgument('inputIds', `sequences must hold 1..${maxLen} tokens (max_position_embeddings), got ${seqLen}`);
    }
    const ids = new Int32Array(batch * seqLen);
    for (let b = 0; b < batch; b++) {
      const row = inputIds[b];
      if (row.length !== seqLen) throw invalidArgument('inputIds', `all sequences must have the same length (row ${b} has ${row.length}, row 0 ${seqLen})`);
      for (let s = 0; s < seqLen; s++) {
        const id = row[s];
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocab_size) {
          throw invalidArgument('inputIds', `token id ${id} at [${b}][${s}] is outside the vocabulary [0, ${this.config.vocab_size})`);
        }
        ids[b * seqLen + s] = id;
      }
    }
    let clipSkip = -1;
    if (options.clipSkip !== undefined && options.clipSkip !== null) {
      const k = options.clipSkip;
      if (!Number.isInteger(k) || k < 0 || k > this.config.num_hidden_layers) {
        throw invalidArgument('clipSkip', `must be an integer in 0..${this.config.num_hidden_layers}, got ${k}`);
      }
      clipSkip = k;
    }
    const outputHiddenStates = options.outputHiddenStates === true;
    const loraScale = options.loraScale ?? 1;
    assertFiniteNumber(loraScale, 'loraScale');
    let out;
    try {
      out = await this.#placed(() => addon().clipTextModel.forward(handle, ids, batch, seqLen, clipSkip, outputHiddenStates, loraScale));
    } catch (e) {
      throw fromNativeError(e);
    }
    throwIfAborted(options.signal);
    const result: CLIPTextModelOutput = { lastHiddenState: out.lastHiddenState, poolerOutput: out.poolerOutput };
    if (outputHiddenStates) result.hiddenStates = out.hiddenStates ?? [];
    return result;
  }

  /** The Linear modules a LoRA may target (lib/loaders/lora.ts maps file keys onto these names). */
  loraTargets(): NativeLoraTarget[] {
    return addon().clipTextModel.loraTargets(this.#live());
  }

  /** Replaces the LoRA contributions applied by every later encode (built by lib/loaders/lora.ts). */
  async setLora(contributions: NativeLoraContribution[]): Promise<void> {
    try {
      await addon().clipTextModel.setLora(this.#live(), contributions);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  /**
   * Textual inversion: appends `rows` [n, hidden] to the token embedding (ids vocab_size … vocab_size + n - 1,
   * as resize_token_embeddings then row assignment) and returns their ids.
   */
  async addTokenEmbeddings(rows: Tensor): Promise<number[]> {
    const handle = this.#live();
    const hidden = this.#config.hidden_size;
    if (!rows || rows.shape?.length !== 2 || rows.shape[1] !== hidden || rows.shape[0] < 1) {
      throw invalidArgument('rows', `expected [n, ${hidden}]`);
    }
    const first = this.#config.vocab_size;
    try {
      await addon().clipTextModel.addTokens(handle, rows);
    } catch (e) {
      throw fromNativeError(e);
    }
    this.#config = Object.freeze({ ...this.#config, vocab_size: first + rows.shape[0] });
    return Array.from({ length: rows.shape[0] }, (_, i) => first + i);
  }

  /** Rows of the token embedding table, [ids.length, hidden]. */
  tokenEmbeddingRows(ids: readonly number[]): Tensor {
    try {
      return addon().clipTextModel.tokenEmbeddingRows(this.#live(), Int32Array.from(ids));
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  /** Frees the native weights; further calls fail. Safe to call twice. */
  /** The weights to the GPU (true) or host memory (false); model CPU offload (lib/models/model_cpu_offload.ts). */
  async setResident(onDevice: boolean): Promise<void> {
    if (!this.#handle) return;  // disposed: no weights left to move (an offload group may still list it)
    try {
      await addon().clipTextModel.setResident(this.#handle, onDevice);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  #placed<T>(call: () => Promise<T>): Promise<T> {
    return this.cpuOffload ? this.cpuOffload.run(this, call) : call();
  }

  dispose(): void {
    if (this.#handle) addon().clipTextModel.dispose(this.#handle);
    this.#handle = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #live(): NativeModelHandle {
    if (!this.#handle) throw new PiaError('E_INVALID_ARGUMENT', 'CLIPTextModel: the model was disposed');
    return this.#handle;
  }
}
