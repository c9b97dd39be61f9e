// PIAPipeline: diffusers v0.26.3 pipelines/pia/pipeline_pia.py, step for step, so that the same
// weights, seed and options give the same video. Numbered comments follow diffusers' __call__.
import { randomBytes } from 'node:crypto';
import { PiaError, invalidArgument, throwIfAborted, assertFiniteNumber } from '../errors.js';
import { freeInitFilter, freqMix3d, resolveFreeInit, type FreeInitOptions, type ResolvedFreeInit } from '../freeinit.js';
import { Generator } from '../random/generator.js';
import type { SchedulerBase } from '../schedulers/index.js';
import { assertTensor, numel, type Tensor } from '../tensor.js';
import { prepareMaskCoefByStatistics, RANGE_LIST } from './mask_coef.js';
import type { TextEncoderLike, TokenizerLike, UNetLike, VaeLike } from './pipeline_components.js';
import { catBatch, catChannels, chunk2, decodedToVideo, framesToBatch, interpolateNearest, scale } from './video_tensors.js';
import { framesFromTensor, loadImage, preprocessImage, type Frame, type ImageInput } from '../io/image.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readdirSync } from 'node:fs';
import { isFile, resolveModel } from '../loaders/hub.js';
import {
  resolvePlacement, withPipelinePlacement, type PipelineDevice, type PipelineDtype, type ResolvedPlacement,
} from '../loaders/device_options.js';
import { ModelCpuOffload } from '../models/model_cpu_offload.js';
import { CLIPTokenizer } from '../tokenizers/clip_tokenizer.js';
import { CLIPTextModel } from '../models/clip_text_model.js';
import { AutoencoderKL } from '../models/autoencoder_kl.js';
import { MotionAdapter } from '../models/motion_adapter.js';
import { UNet2DConditionModel } from '../models/unet_2d_condition_model.js';
import { UNetMotionModel } from '../models/unet_motion_model.js';
import { loadSingleFileComponents, withUnetFileKeys } from '../loaders/single_file.js';
import { schedulerFromConfig } from '../schedulers/index.js';
import { LoraAdapters } from '../loaders/lora.js';
import { IPAdapterMixin, isPixelValues, type ImageEmbeds, type LoadIpAdapterOptions } from '../loaders/ip_adapter_mixin.js';
import { CLIPImageProcessor, clipImageProcessorOptions } from '../models/clip_image_processor.js';
import { CLIPVisionModelWithProjection } from '../models/clip_vision_model.js';
import { maybeConvertPrompt, readTextualInversion } from '../loaders/textual_inversion.js';
import { parseConfigJson } from '../config_json.js';

export interface StepEndResult {
  latents?: Tensor;
}

export interface ProgressInfo {
  /** 1-based step within the current denoising pass. */
  step: number;
  total: number;
  timestep: number;
  /** FreeInit iteration (0-based) and count; 0 and 1 without FreeInit. */
  iteration: number;
  iterations: number;
}

export interface PIAGenerateOptions {
  image: ImageInput;
  prompt?: string | string[];
  negativePrompt?: string | string[];
  strength?: number;
  numFrames?: number;
  height?: number;
  width?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  /** Accepted and ignored, as diffusers v0.26.3 resets it to 1. */
  numVideosPerPrompt?: number;
  eta?: number;
  generator?: Generator;
  latents?: Tensor;
  promptEmbeds?: Tensor;
  negativePromptEmbeds?: Tensor;
  motionScale?: number;
  outputType?: 'frames' | 'tensor' | 'latent';
  clipSkip?: number;
  loraScale?: number;
  /** The image prompt (needs loadIpAdapter); an image, or preprocessed pixel_values [1, 3, 224, 224]. */
  ipAdapterImage?: ImageInput | Tensor;
  onStepEnd?: (step: number, timestep: number, state: { latents: Tensor }) => void | StepEndResult | Promise<void | StepEndResult>;
  onProgress?: (info: ProgressInfo) => void;
  signal?: AbortSignal;
}

export interface PIAPipelineOutput {
  /** Frame[][] ('frames'), a [B, F, H, W, 3] tensor in [0, 1] ('tensor'), or the final latents ('latent'). */
  frames: Frame[][] | Tensor;
}

export interface EncodePromptOptions {
  negativePrompt?: string | string[];
  clipSkip?: number;
  loraScale?: number;
  doClassifierFreeGuidance?: boolean;
  promptEmbeds?: Tensor;
  negativePromptEmbeds?: Tensor;
  signal?: AbortSignal;
}

export interface PIAFromPretrainedOptions {
  motionAdapter: MotionAdapter;
  /** Components to use instead of the folder's (as diffusers' from_pretrained(..., tokenizer=...)). */
  tokenizer?: TokenizerLike;
  scheduler?: SchedulerBase;
  imageEncoder?: CLIPVisionModelWithProjection;
  featureExtractor?: CLIPImageProcessor;
  /** A branch, tag or commit of a repo id in the Hugging Face cache (default `main`). */
  revision?: string;
  /** `fp16` → each component's `*.fp16.safetensors`, for the components that have such files (as diffusers). */
  variant?: string;
  /** 'auto' (default: the first GPU when CUDA is usable, else the CPU; PIA_DEVICE pins it), 'cpu', 'cuda' or 'cuda:N'. */
  device?: PipelineDevice;
  /** What a GPU computes in (default float32; a float16 pipeline keeps the VAE in float32); the CPU computes in float32. */
  dtype?: PipelineDtype;
  signal?: AbortSignal;
}

export interface PIAFromSingleFileOptions {
  motionAdapter: MotionAdapter;
  /** A VAE replacing the checkpoint's: a diffusers folder, or a single file (`first_stage_model.*` or bare LDM VAE names). */
  vae?: string;
  /** A diffusers pipeline folder whose component configs, tokenizer and scheduler are used (diffusers' `config=`). */
  config?: string;
  device?: PipelineDevice;
  dtype?: PipelineDtype;
  signal?: AbortSignal;
}

export interface PIAPipelineComponents {
  tokenizer: TokenizerLike;
  textEncoder: TextEncoderLike;
  vae: VaeLike;
  unet: UNetLike;
  scheduler: SchedulerBase;
  /** motion_max_seq_length of the motion adapter: the most frames the positional table covers. */
  maxFrames?: number;
  /** The optional IP-Adapter components (diffusers' image_encoder / feature_extractor). */
  imageEncoder?: CLIPVisionModelWithProjection | null;
  featureExtractor?: CLIPImageProcessor | null;
}

function randomGenerator(): Generator {
  return new Generator().manualSeed(randomBytes(8).readBigUInt64LE());
}

export class PIAPipeline {
  tokenizer: TokenizerLike;
  textEncoder: TextEncoderLike;
  vae: VaeLike;
  unet: UNetLike;
  #scheduler: SchedulerBase;
  readonly maxFrames: number;
  // IP-Adapter state (load_ip_adapter sets the image encoder and feature extractor).
  readonly #ip = new IPAdapterMixin();
  #freeInit: ResolvedFreeInit | undefined;
  #lora: LoraAdapters | undefined;
  // diffusers' non-PEFT text LoRA scale is sticky: encode_prompt(lora_scale=s) sets it on the patched
  // projections (adjust_lora_scale_text_encoder) and it stays until set again.
  #textLoraScale = 1;

  constructor(c: PIAPipelineComponents) {
    this.tokenizer = c.tokenizer;
    this.textEncoder = c.textEncoder;
    this.vae = c.vae;
    this.unet = c.unet;
    this.#scheduler = c.scheduler;
    this.maxFrames = c.maxFrames ?? 32;
    this.#ip.imageEncoder = c.imageEncoder ?? null;
    this.#ip.featureExtractor = c.featureExtractor ?? null;
  }

  /**
   * A diffusers pipeline folder (model_index.json, text_encoder/, tokenizer/, unet/, vae/, scheduler/),
   * or a repo id in the Hugging Face cache (`revision`), plus a MotionAdapter, as
   * `PIAPipeline.from_pretrained(dir_or_repo, motion_adapter=adapter, variant=...)`.
   */
  static async fromPretrained(dirOrRepo: string, options: PIAFromPretrainedOptions): Promise<PIAPipeline> {
    if (!options || !(options.motionAdapter instanceof MotionAdapter)) {
      throw invalidArgument('motionAdapter', 'is required: PIAPipeline.fromPretrained(dirOrRepo, { motionAdapter: await MotionAdapter.fromPretrained(...) })');
    }
    // Every component is placed alike (the VAE in float32 where float16 would overflow: device_options.ts).
    const placement = resolvePlacement(options.device, options.dtype);
    return withPipelinePlacement(placement, () => PIAPipeline.#loadPretrained(dirOrRepo, options));
  }

  static async #loadPretrained(dirOrRepo: string, options: PIAFromPretrainedOptions): Promise<PIAPipeline> {
    const { signal, variant, revision } = options;
    if (variant !== undefined && (typeof variant !== 'string' || !/^[\w-]+$/.test(variant))) {
      throw invalidArgument('variant', `expected a name such as 'fp16', got ${JSON.stringify(variant)}`);
    }
    // The repo is resolved once; every component is then a subfolder of that one snapshot.
    const root = resolveModel(dirOrRepo, { revision, what: 'pipeline', option: 'dirOrRepo', signal });
    const indexPath = join(root, 'model_index.json');
    if (!isFile(indexPath)) {
      throw new PiaError('E_MODEL_NOT_FOUND', `not a diffusers pipeline folder: ${indexPath} is missing`, { file: indexPath });
    }
    let index: Record<string, unknown>;
    try {
      index = JSON.parse(await readFile(indexPath, 'utf8'));
    } catch (e) {
      throw new PiaError('E_WEIGHTS_CORRUPT', `${indexPath}: invalid JSON (${(e as Error).message})`, { file: indexPath, cause: e });
    }
    // diffusers v0.26.3 DiffusionPipeline.from_pretrained ("model_variants"): a component loads the
    // variant only when its folder holds a file whose second dot-part starts with it
    // (`diffusion_pytorch_model.fp16.safetensors`, `model.fp16-00001-of-00002.safetensors`); the others
    // load their plain weights.
    const variantOf = (sub: string): string | undefined => {
      if (variant === undefined || !(sub in index)) return undefined;
      let names: string[];
      try {
        names = readdirSync(join(root, sub));
      } catch {
        return undefined;
      }
      return names.some((n) => n.split('.')[1]?.startsWith(variant)) ? variant : undefined;
    };
    let scheduler = options.scheduler;
    if (!scheduler) {
      const schedPath = join(root, 'scheduler', 'scheduler_config.json');
      if (!isFile(schedPath)) throw new PiaError('E_MODEL_NOT_FOUND', `scheduler config missing: ${schedPath}`, { file: schedPath });
      const schedConfig = parseConfigJson(await readFile(schedPath, 'utf8')) as Record<string, unknown>;
      const declared = Array.isArray(index.scheduler) ? (index.scheduler[1] as string | undefined) : undefined;
      scheduler = schedulerFromConfig(schedConfig, declared ?? undefined);
    }
    // The optional components a saved pipeline may hold (model_index.json names them, non-null).
    const listed = (name: string) => Array.isArray(index[name]) && (index[name] as unknown[])[1] != null;
    let featureExtractor = options.featureExtractor;
    const fePath = join(root, 'feature_extractor', 'preprocessor_config.json');
    if (!featureExtractor && listed('feature_extractor') && isFile(fePath)) {
      featureExtractor = new CLIPImageProcessor(clipImageProcessorOptions(parseConfigJson(await readFile(fePath, 'utf8')) as Record<string, unknown>, fePath));
    }
    const tokenizer = options.tokenizer ?? (await CLIPTokenizer.fromPretrained(root, { subfolder: 'tokenizer', signal }));
    const unet2d = await UNet2DConditionModel.fromPretrained(root, { subfolder: 'unet', variant: variantOf('unet'), signal });
    const textEncoder = await CLIPTextModel.fromPretrained(root, { subfolder: 'text_encoder', variant: variantOf('text_encoder'), signal });
    try {
      const vae = await AutoencoderKL.fromPretrained(root, { subfolder: 'vae', variant: variantOf('vae'), signal });
      try {
        const unet = await UNetMotionModel.fromUnet2d(unet2d, options.motionAdapter, { signal });
        let imageEncoder = options.imageEncoder ?? null;
        if (!imageEncoder && listed('image_encoder')) {
          try {
            imageEncoder = await CLIPVisionModelWithProjection.fromPretrained(root, {
              subfolder: 'image_encoder', variant: variantOf('image_encoder'), signal,
            });
          } catch (e) {
            unet.dispose();
            throw e;
          }
        }
        return new PIAPipeline({
          tokenizer, textEncoder, vae, unet, scheduler, imageEncoder, featureExtractor,
          maxFrames: options.motionAdapter.config.motion_max_seq_length,
        });
      } catch (e) {
        vae.dispose();
        throw e;
      }
    } catch (e) {
      textEncoder.dispose();
      throw e;
    }
  }

  /**
   * An original (CompVis/LDM) SD-1.x single-file checkpoint, .safetensors or .ckpt, as A1111 and model
   * sites ship them (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.transformer.*`),
   * plus a MotionAdapter. The architecture is read from the tensor shapes; `config` (a diffusers folder)
   * supplies what shapes cannot tell (e.g. the text tower's head count). Without it: SD-1.5's stock
   * values, the CLIP tokenizer shipped in the package and DDIM with PIA's linear betas
   * (lib/loaders/single_file.ts says why). SD-2.x, SDXL and inpainting files are E_UNSUPPORTED.
   */
  static async fromSingleFile(path: string, options: PIAFromSingleFileOptions): Promise<PIAPipeline> {
    if (!options || !(options.motionAdapter instanceof MotionAdapter)) {
      throw invalidArgument('motionAdapter', 'is required: PIAPipeline.fromSingleFile(path, { motionAdapter: await MotionAdapter.fromPretrained(...) })');
    }
    const placement = resolvePlacement(options.device, options.dtype);
    return withPipelinePlacement(placement, () => PIAPipeline.#loadSingleFile(path, options));
  }

  static async #loadSingleFile(path: string, options: PIAFromSingleFileOptions): Promise<PIAPipeline> {
    const c = await loadSingleFileComponents(path, { vae: options.vae, config: options.config, signal: options.signal });
    try {
      const unet = await withUnetFileKeys(() => UNetMotionModel.fromUnet2d(c.unet, options.motionAdapter, { signal: options.signal }), c.unet);
      return new PIAPipeline({
        tokenizer: c.tokenizer, textEncoder: c.textEncoder, vae: c.vae, unet, scheduler: c.scheduler,
        maxFrames: options.motionAdapter.config.motion_max_seq_length,
      });
    } catch (e) {
      c.textEncoder.dispose();
      c.vae.dispose();
      throw e;
    }
  }

  get scheduler(): SchedulerBase {
    return this.#scheduler;
  }

  set scheduler(s: SchedulerBase) {
    if (!s || typeof s.step !== 'function' || typeof s.setTimesteps !== 'function') {
      throw invalidArgument('scheduler', 'must be a scheduler (e.g. EulerDiscreteScheduler.fromConfig(pipe.scheduler.config))');
    }
    this.#scheduler = s;
  }

  /** Where the UNet runs, as the loaders resolved `device`/`dtype` (diffusers' pipe.device, pipe.dtype). */
  get placement(): ResolvedPlacement {
    return this.unet instanceof UNetMotionModel ? this.unet.placement : { device: 'cpu', dtype: 'float32' };
  }

  /** 2^(len(vae.block_out_channels) - 1), as diffusers' vae_scale_factor. */
  get vaeScaleFactor(): number {
    const blocks = this.vae.config.block_out_channels;
    return 2 ** ((Array.isArray(blocks) ? blocks.length : 4) - 1);
  }

  get scalingFactor(): number {
    return this.vae.config.scaling_factor ?? 0.18215;
  }

  enableFreeInit(options: FreeInitOptions = {}): void {
    this.#freeInit = resolveFreeInit(options);
  }

  disableFreeInit(): void {
    this.#freeInit = undefined;
  }

  get freeInitEnabled(): boolean {
    return this.#freeInit !== undefined;
  }

  enableFreeU(options: { s1: number; s2: number; b1: number; b2: number }): void {
    this.unet.enableFreeU(options);
  }

  disableFreeU(): void {
    this.unet.disableFreeU();
  }

  enableVaeSlicing(): void { this.vae.enableSlicing(); }
  disableVaeSlicing(): void { this.vae.disableSlicing(); }
  enableVaeTiling(): void { this.vae.enableTiling(); }
  disableVaeTiling(): void { this.vae.disableTiling(); }

  /**
   * diffusers' enable_model_cpu_offload: of the text encoder, UNet and VAE only the one running keeps its
   * weights on the GPU; the others wait in host memory (lib/models/model_cpu_offload.ts). An IP-Adapter's
   * image encoder stays where it is (it is small). Nothing moves for networks on the CPU.
   */
  enableModelCpuOffload(): void {
    const parts = [this.textEncoder, this.unet, this.vae].filter(
      (m): m is CLIPTextModel | UNetMotionModel | AutoencoderKL =>
        m instanceof CLIPTextModel || m instanceof UNetMotionModel || m instanceof AutoencoderKL,
    );
    const group = new ModelCpuOffload(parts);
    for (const m of parts) m.cpuOffload = group.has(m) ? group : undefined;
  }

  dispose(): void {
    this.#ip.dispose();
    this.textEncoder.dispose();
    this.vae.dispose();
    this.unet.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  // ---- IP-Adapter (diffusers IPAdapterMixin; lib/loaders/ip_adapter_mixin.ts) ----------------------------

  /** The CLIP image encoder loadIpAdapter loaded (null without an IP-Adapter). */
  get imageEncoder(): CLIPVisionModelWithProjection | null {
    return this.#ip.imageEncoder;
  }

  /** The CLIPImageProcessor (diffusers' defaults) loadIpAdapter created (null without an IP-Adapter). */
  get featureExtractor(): CLIPImageProcessor | null {
    return this.#ip.featureExtractor;
  }

  #ipUnet(): UNetMotionModel {
    if (!(this.unet instanceof UNetMotionModel)) throw new PiaError('E_UNSUPPORTED', 'IP-Adapter needs the native UNetMotionModel');
    return this.unet;
  }

  /**
   * load_ip_adapter: `<pathOrRepo>/<subfolder>/<weightName>` (.safetensors, or a torch .bin), a local folder or a
   * repo id in the Hugging Face cache; the image encoder comes from `<pathOrRepo>/<subfolder>/image_encoder` when
   * the pipeline has none. The adapter's scale starts at 1.0; a second call replaces the adapter.
   */
  async loadIpAdapter(pathOrRepo: string, options: LoadIpAdapterOptions): Promise<void> {
    await this.#ip.load(this.#ipUnet(), pathOrRepo, options);
  }

  /** set_ip_adapter_scale: how much the image prompt counts (0 gives the no-adapter output exactly). */
  setIpAdapterScale(scale: number): void {
    this.#ip.setScale(this.#ipUnet(), scale);
  }

  /** unload_ip_adapter: removes the adapter, the image encoder and the feature extractor. */
  unloadIpAdapter(): void {
    this.#ip.unload(this.unet instanceof UNetMotionModel ? this.unet : undefined);
  }

  /**
   * encode_image: `{ imageEmbeds, negativeImageEmbeds }` as the loaded adapter wants them (base: projected
   * embeds and zeros; plus: penultimate hidden states of the image and of an all-zero pixel input).
   * `image` may also be a preprocessed pixel_values tensor [B, 3, 224, 224].
   */
  async encodeImage(image: ImageInput | Tensor, options: { outputHiddenStates?: boolean; signal?: AbortSignal } = {}): Promise<ImageEmbeds> {
    return this.#ip.encodeImage(image, options);
  }

  // ---- loaders (diffusers LoraLoaderMixin / TextualInversionLoaderMixin) ------------------------------

  #loraAdapters(): LoraAdapters {
    if (!this.#lora) {
      if (!(this.unet instanceof UNetMotionModel)) throw new PiaError('E_UNSUPPORTED', 'LoRA needs the native UNetMotionModel');
      const te = this.textEncoder instanceof CLIPTextModel ? this.textEncoder : undefined;
      this.#lora = new LoraAdapters(this.unet, te);
    }
    return this.#lora;
  }

  /**
   * diffusers' load_lora_weights: a kohya/A1111 (`lora_unet_*`, `lora_te_*`, per-module alpha) or diffusers-format
   * .safetensors file (or a folder + `weightName`, default pytorch_lora_weights.safetensors), applied to the UNet and
   * text encoder. `scale` is the adapter's weight (as setAdapters sets it); loading adds the adapter to the active ones.
   * Returns the adapter name (default `default_<n>`).
   */
  async loadLoraWeights(path: string, options: { adapterName?: string; scale?: number; weightName?: string } = {}): Promise<string> {
    return this.#loraAdapters().load(path, options);
  }

  /** The active adapters and their weights (diffusers' set_adapters; weights default to 1). */
  async setAdapters(adapterNames: string | string[], adapterWeights?: number | number[]): Promise<void> {
    await this.#loraAdapters().setAdapters(adapterNames, adapterWeights);
  }

  /** Names of the loaded adapters and the active ones with their weights. */
  getListAdapters(): { loaded: string[]; active: { name: string; weight: number }[]; fused: boolean } {
    const l = this.#lora;
    return { loaded: l?.names ?? [], active: l?.active ?? [], fused: l?.fused ?? false };
  }

  /** fuse_lora: merges the active adapters, times `loraScale`, into the weights (the per-call scale no longer applies to them). */
  async fuseLora(options: { loraScale?: number } = {}): Promise<void> {
    await this.#loraAdapters().fuse(options.loraScale ?? 1);
  }

  /** unfuse_lora: the original weights back (exactly: the merged copy is dropped). */
  async unfuseLora(): Promise<void> {
    await this.#lora?.unfuse();
  }

  /** unload_lora_weights: removes every adapter (fused weights stay fused, as in diffusers). */
  async unloadLoraWeights(): Promise<void> {
    await this.#lora?.unload();
  }

  /**
   * save_lora_weights' file for the loaded adapter (diffusers format, alpha/rank folded into up); `path` is a
   * .safetensors file or a folder (pytorch_lora_weights.safetensors). Returns the file written.
   */
  saveLoraWeights(path: string, options: { adapterName?: string } = {}): string {
    if (!this.#lora) throw invalidArgument('saveLoraWeights', 'no LoRA is loaded');
    return this.#lora.save(path, options.adapterName);
  }

  /**
   * diffusers' load_textual_inversion: an A1111 .pt (`string_to_param`), a .safetensors (`emb_params` or one
   * token → tensor), a diffusers learned_embeds file or its folder (`weightName`, else learned_embeds.safetensors,
   * then learned_embeds.bin), or the tensor / dict itself; `token` overrides the
   * file's name. Multi-vector embeddings become `<tok> <tok>_1 …`; the token embedding grows from the current
   * vocabulary size. Refused (E_INVALID_ARGUMENT) when the token is already in the vocabulary.
   */
  async loadTextualInversion(
    pretrainedModelNameOrPath: string | Tensor | Record<string, Tensor> | (string | Tensor | Record<string, Tensor>)[],
    options: { token?: string | string[]; weightName?: string } = {},
  ): Promise<void> {
    const tokenizer = this.tokenizer;
    const te = this.textEncoder;
    if (!(tokenizer instanceof CLIPTokenizer) || !(te instanceof CLIPTextModel)) {
      throw new PiaError('E_UNSUPPORTED', 'loadTextualInversion needs the CLIPTokenizer and the native CLIPTextModel');
    }
    const sources = Array.isArray(pretrainedModelNameOrPath) ? pretrainedModelNameOrPath : [pretrainedModelNameOrPath];
    const tokens = options.token === undefined ? [] : Array.isArray(options.token) ? options.token : [options.token];
    if (tokens.length > 0 && tokens.length !== sources.length) {
      throw invalidArgument('token', `give one token per embedding (${sources.length}), got ${tokens.length}`);
    }
    const read = sources.map((src, i) => readTextualInversion(src, tokens[i], te.config.hidden_size, options.weightName));
    const seen = new Set<string>();
    for (const { tokens: toks } of read) {
      // _check_text_inv_inputs / _retrieve_tokens_and_embeddings: refuse names the vocabulary already has.
      if (tokenizer.hasToken(toks[0]) || seen.has(toks[0])) {
        throw invalidArgument('token', `Token ${toks[0]} already in tokenizer vocabulary. Please choose a different token name or remove ${toks[0]} and embedding from the tokenizer and text encoder.`);
      }
      if (tokenizer.hasToken(`${toks[0]}_1`)) {
        throw invalidArgument('token', `Multi-vector Token ${toks[0]}_1 already in tokenizer vocabulary. Please choose a different token name.`);
      }
      for (const t of toks) seen.add(t);
    }
    if (tokenizer.length !== te.config.vocab_size) {
      throw new PiaError('E_UNSUPPORTED', `loadTextualInversion: the tokenizer has ${tokenizer.length} tokens, the text encoder ${te.config.vocab_size} embeddings`);
    }
    for (const { tokens: toks, embeddings } of read) {
      const rowIds = await te.addTokenEmbeddings(embeddings);
      const ids = tokenizer.addTokens(toks);
      if (ids.join() !== rowIds.join()) throw new PiaError('E_BACKEND', `loadTextualInversion: token ids [${ids}] differ from the new embedding rows [${rowIds}]`);
    }
  }

  #convertPrompts(prompts: string[]): string[] {
    const tokenizer = this.tokenizer;
    if (!(tokenizer instanceof CLIPTokenizer)) return prompts;
    return prompts.map((p) => maybeConvertPrompt(p, (t) => tokenizer.tokenize(t), (t) => tokenizer.isAddedToken(t)));
  }

  /** diffusers' maybe_convert_prompt: the prompt as encodePrompt tokenizes it (`<tok>` → `<tok> <tok>_1 …`). */
  maybeConvertPrompt(prompt: string): string;
  maybeConvertPrompt(prompt: string[]): string[];
  maybeConvertPrompt(prompt: string | string[]): string | string[] {
    if (typeof prompt === 'string') return this.#convertPrompts([prompt])[0];
    if (!Array.isArray(prompt) || prompt.some((p) => typeof p !== 'string')) throw invalidArgument('prompt', 'must be a string or an array of strings');
    return this.#convertPrompts(prompt);
  }

  /** diffusers' encode_prompt (with num_images_per_prompt = 1). */
  async encodePrompt(prompt: string | string[] | undefined, options: EncodePromptOptions = {}): Promise<{ promptEmbeds: Tensor; negativePromptEmbeds?: Tensor }> {
    const cfg = options.doClassifierFreeGuidance ?? true;
    if (options.loraScale !== undefined) {
      assertFiniteNumber(options.loraScale, 'loraScale');
      this.#textLoraScale = options.loraScale;
    }
    const loraScale = this.#textLoraScale;
    let promptEmbeds = options.promptEmbeds;
    let batch: number;
    if (prompt !== undefined) {
      const prompts = typeof prompt === 'string' ? [prompt] : prompt;
      batch = prompts.length;
      if (!promptEmbeds) {
        const { inputIds } = this.tokenizer.encode(this.#convertPrompts(prompts), { padding: 'max_length', maxLength: this.tokenizer.modelMaxLength, truncation: true });
        promptEmbeds = (await this.textEncoder.encode(inputIds, { clipSkip: options.clipSkip, loraScale, signal: options.signal })).lastHiddenState;
      }
    } else {
      if (!promptEmbeds) throw invalidArgument('prompt', 'provide either prompt or promptEmbeds');
      batch = promptEmbeds.shape[0];
    }
    let negativePromptEmbeds = options.negativePromptEmbeds;
    if (cfg && !negativePromptEmbeds) {
      const neg = options.negativePrompt;
      let uncond: string[];
      if (neg === undefined) uncond = Array(batch).fill('');
      else if (prompt !== undefined && typeof prompt !== typeof neg) {
        throw invalidArgument('negativePrompt', 'must be of the same type as prompt (string or string[])');
      } else if (typeof neg === 'string') uncond = [neg];
      else if (neg.length !== batch) throw invalidArgument('negativePrompt', `has ${neg.length} entries, prompt has ${batch}`);
      else uncond = neg;
      const { inputIds } = this.tokenizer.encode(this.#convertPrompts(uncond), { padding: 'max_length', maxLength: promptEmbeds.shape[1], truncation: true });
      // The negative prompt never takes clip_skip (diffusers' encode_prompt).
      negativePromptEmbeds = (await this.textEncoder.encode(inputIds, { loraScale, signal: options.signal })).lastHiddenState;
    }
    return { promptEmbeds, negativePromptEmbeds: cfg ? negativePromptEmbeds : undefined };
  }

  #validate(o: PIAGenerateOptions): void {
    const posInt = (v: unknown, name: string, max = Number.MAX_SAFE_INTEGER) => {
      if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > max) throw invalidArgument(name, `must be an integer in 1..${max}`);
    };
    if (o.image === undefined || o.image === null) throw invalidArgument('image', 'is required');
    if (o.prompt !== undefined && o.promptEmbeds !== undefined) throw invalidArgument('prompt', 'give prompt or promptEmbeds, not both');
    if (o.prompt === undefined && o.promptEmbeds === undefined) throw invalidArgument('prompt', 'provide either prompt or promptEmbeds');
    if (o.prompt !== undefined && typeof o.prompt !== 'string' && !(Array.isArray(o.prompt) && o.prompt.length > 0 && o.prompt.every((p) => typeof p === 'string'))) {
      throw invalidArgument('prompt', 'must be a string or a non-empty array of strings');
    }
    if (o.negativePrompt !== undefined && o.negativePromptEmbeds !== undefined) {
      throw invalidArgument('negativePrompt', 'give negativePrompt or negativePromptEmbeds, not both');
    }
    if (o.promptEmbeds !== undefined) assertTensor(o.promptEmbeds, 'promptEmbeds', 3);
    if (o.negativePromptEmbeds !== undefined) assertTensor(o.negativePromptEmbeds, 'negativePromptEmbeds', 3);
    if (o.promptEmbeds && o.negativePromptEmbeds && o.promptEmbeds.shape.join() !== o.negativePromptEmbeds.shape.join()) {
      throw invalidArgument('negativePromptEmbeds', `shape [${o.negativePromptEmbeds.shape}] differs from promptEmbeds [${o.promptEmbeds.shape}]`);
    }
    for (const k of ['height', 'width'] as const) {
      const v = o[k];
      if (v !== undefined && (!Number.isInteger(v) || v < 8 || v % 8 !== 0 || v > 8192)) throw invalidArgument(k, 'must be a multiple of 8 in 8..8192');
    }
    if (o.numFrames !== undefined) posInt(o.numFrames, 'numFrames', this.maxFrames);
    if (o.numInferenceSteps !== undefined) posInt(o.numInferenceSteps, 'numInferenceSteps', 1000);
    if (o.strength !== undefined && !(o.strength >= 0 && o.strength <= 1)) throw invalidArgument('strength', 'must be in [0, 1]');
    if (o.guidanceScale !== undefined) assertFiniteNumber(o.guidanceScale, 'guidanceScale');
    if (o.eta !== undefined && !(o.eta >= 0 && Number.isFinite(o.eta))) throw invalidArgument('eta', 'must be a number >= 0');
    if (o.motionScale !== undefined && !(Number.isInteger(o.motionScale) && o.motionScale >= 0 && o.motionScale < RANGE_LIST.length)) {
      throw invalidArgument('motionScale', `must be an integer in 0..${RANGE_LIST.length - 1}`);
    }
    if (o.outputType !== undefined && !['frames', 'tensor', 'latent'].includes(o.outputType)) {
      throw invalidArgument('outputType', "must be 'frames', 'tensor' or 'latent'");
    }
    if (o.clipSkip !== undefined && !(Number.isInteger(o.clipSkip) && o.clipSkip >= 0 && o.clipSkip < this.textEncoder.config.num_hidden_layers)) {
      throw invalidArgument('clipSkip', `must be an integer in 0..${this.textEncoder.config.num_hidden_layers - 1}`);
    }
    if (o.generator !== undefined && !(o.generator instanceof Generator)) throw invalidArgument('generator', 'must be a Generator');
    if (o.loraScale !== undefined) assertFiniteNumber(o.loraScale, 'loraScale');
    if (o.latents !== undefined) assertTensor(o.latents, 'latents', 5);
    if (o.ipAdapterImage !== undefined && !this.#ip.adapter) {
      throw invalidArgument('ipAdapterImage', 'no IP-Adapter is loaded (pipe.loadIpAdapter first)');
    }
    if (o.ipAdapterImage === undefined && this.#ip.adapter) {
      // diffusers' UNet refuses to run without image_embeds once an adapter is loaded.
      throw invalidArgument('ipAdapterImage', 'an IP-Adapter is loaded, so ipAdapterImage is required (or unloadIpAdapter)');
    }
    if (o.onStepEnd !== undefined && typeof o.onStepEnd !== 'function') throw invalidArgument('onStepEnd', 'must be a function');
  }

  async generate(options: PIAGenerateOptions): Promise<PIAPipelineOutput> {
    const o = options;
    this.#validate(o);
    const signal = o.signal;
    throwIfAborted(signal);
    const vsf = this.vaeScaleFactor;
    const sampleSize = this.unet.config.sample_size ?? 64;
    const height = o.height ?? sampleSize * vsf;
    const width = o.width ?? sampleSize * vsf;
    const numFrames = o.numFrames ?? 16;
    const numInferenceSteps = o.numInferenceSteps ?? 50;
    const guidanceScale = o.guidanceScale ?? 7.5;
    const strength = o.strength ?? 1.0;
    const cfg = guidanceScale > 1;
    const generator = o.generator ?? randomGenerator();
    const scheduler = this.#scheduler;

    // The condition image is read first: a bad image must fail before any network runs.
    // VaeImageProcessor.preprocess: the image keeps its own size, rounded down to a multiple of vsf.
    const image = preprocessImage(await loadImage(o.image, { signal }), { vaeScaleFactor: vsf });
    const ipImage = o.ipAdapterImage === undefined || isPixelValues(o.ipAdapterImage) ? o.ipAdapterImage : await loadImage(o.ipAdapterImage, { signal });
    throwIfAborted(signal);

    // 2. Batch size.
    const batch = o.prompt !== undefined ? (typeof o.prompt === 'string' ? 1 : o.prompt.length) : o.promptEmbeds!.shape[0];
    if (o.latents) {
      const want = [batch, 4, numFrames, height / vsf, width / vsf];
      if (o.latents.shape.join() !== want.join()) throw invalidArgument('latents', `shape must be [${want}], got [${o.latents.shape}]`);
    }

    // 3. Prompt embeddings; under CFG the batch is [negative, positive].
    const enc = await this.encodePrompt(o.prompt, {
      negativePrompt: o.negativePrompt,
      clipSkip: o.clipSkip,
      loraScale: o.loraScale,
      doClassifierFreeGuidance: cfg,
      promptEmbeds: o.promptEmbeds,
      negativePromptEmbeds: o.negativePromptEmbeds,
      signal,
    });
    const promptEmbeds = cfg ? catBatch([enc.negativePromptEmbeds!, enc.promptEmbeds]) : enc.promptEmbeds;
    // prepare_ip_adapter_image_embeds (v0.27, the fixed PIA path): no randomness, so the draws below are unchanged.
    const imageEmbeds = ipImage === undefined ? undefined : await this.#ip.prepareImageEmbeds(ipImage, cfg, batch, signal);

    // 4. Timesteps, cut by strength (get_timesteps).
    scheduler.setTimesteps(numInferenceSteps);
    const initTimestep = Math.min(Math.floor(numInferenceSteps * strength), numInferenceSteps);
    const tStart = Math.max(numInferenceSteps - initTimestep, 0);
    let timesteps = [...scheduler.timesteps].slice(tStart * scheduler.order);
    if (timesteps.length === 0) {
      throw invalidArgument('strength', `strength ${strength} with ${numInferenceSteps} steps leaves no denoising step`);
    }

    // 5. Latents: the first draw from the generator.
    const h = height / vsf, w = width / vsf;
    const latentShape = [batch, 4, numFrames, h, w];
    let latents = o.latents ? { data: Float32Array.from(o.latents.data), shape: [...o.latents.shape] } : generator.randn(latentShape);
    latents = scale(latents, scheduler.initNoiseSigma);

    // prepare_masked_condition: VAE sample (second draw), nearest-resized to the latent size,
    // repeated over frames; the mask holds one coefficient per frame.
    const dist = await this.vae.encode(image, { signal });
    const imageLatent = scale(interpolateNearest(dist.sample(generator), h, w), this.scalingFactor);
    const coef = prepareMaskCoefByStatistics(numFrames, 0, o.motionScale ?? 0);
    const hw = h * w;
    const mask = { data: new Float32Array(batch * numFrames * hw), shape: [batch, 1, numFrames, h, w] };
    const masked = { data: new Float32Array(batch * 4 * numFrames * hw), shape: [batch, 4, numFrames, h, w] };
    for (let b = 0; b < batch; b++) {
      for (let f = 0; f < numFrames; f++) {
        mask.data.fill(Math.fround(coef[f]), (b * numFrames + f) * hw, (b * numFrames + f + 1) * hw);
        for (let c = 0; c < 4; c++) {
          masked.data.set(imageLatent.data.subarray(c * hw, (c + 1) * hw), ((b * 4 + c) * numFrames + f) * hw);
        }
      }
    }
    const maskIn = cfg ? catBatch([mask, mask]) : mask;
    const maskedIn = cfg ? catBatch([masked, masked]) : masked;

    if (strength < 1) {
      // Third draw; diffusers noises masked_image[0] (identical for every batch item) at the first timestep.
      const noise = generator.randn(latentShape);
      latents = scheduler.addNoise(masked, noise, Array(batch).fill(timesteps[0]));
    }

    const denoise = async (startLatents: Tensor, ts: number[], iteration: number, iterations: number): Promise<Tensor> => {
      let lat = startLatents;
      for (let i = 0; i < ts.length; i++) {
        throwIfAborted(signal);
        const t = ts[i];
        let modelInput = cfg ? catBatch([lat, lat]) : lat;
        modelInput = scheduler.scaleModelInput(modelInput, t);
        modelInput = catChannels([modelInput, maskIn, maskedIn]);
        let noisePred = await this.unet.forward(modelInput, t, promptEmbeds, { signal, loraScale: o.loraScale, imageEmbeds });
        if (cfg) {
          const [uncond, text] = chunk2(noisePred);
          const g = Math.fround(guidanceScale);
          for (let k = 0; k < uncond.data.length; k++) uncond.data[k] = uncond.data[k] + Math.fround(g * Math.fround(text.data[k] - uncond.data[k]));
          noisePred = uncond;
        }
        lat = scheduler.step(noisePred, t, lat, { generator, eta: o.eta ?? 0 }).prevSample;
        if (o.onStepEnd) {
          const r = await o.onStepEnd(i, t, { latents: lat });
          if (r && r.latents) {
            assertTensor(r.latents, 'onStepEnd latents');
            if (r.latents.shape.join() !== lat.shape.join()) throw invalidArgument('onStepEnd', 'returned latents of another shape');
            lat = r.latents;
          }
        }
        o.onProgress?.({ step: i + 1, total: ts.length, timestep: t, iteration, iterations });
      }
      return lat;
    };

    const fi = this.#freeInit;
    if (!fi) {
      latents = await denoise(latents, timesteps, 0, 1);
    } else {
      // _free_init_loop
      const lpf = freeInitFilter(numFrames, h, w, fi.method, fi.order, fi.spatialStopFrequency, fi.temporalStopFrequency);
      const fiGenerator = fi.generator ?? randomGenerator();
      const trainSteps = Number(scheduler.config.num_train_timesteps ?? 1000);
      let initialNoise = latents;
      for (let it = 0; it < fi.numIters; it++) {
        if (it === 0) {
          initialNoise = { data: Float32Array.from(latents.data), shape: [...latents.shape] };
        } else {
          const zT = scheduler.addNoise(latents, initialNoise, Array(batch).fill(trainSteps - 1));
          const zRand = fiGenerator.randn(latentShape);
          latents = freqMix3d(zT, zRand, lpf);
        }
        if (fi.useFastSampling) {
          // Coarse-to-fine: more steps each iteration (this ignores strength, as diffusers does).
          scheduler.setTimesteps(Math.floor((numInferenceSteps / fi.numIters) * (it + 1)));
          timesteps = [...scheduler.timesteps];
        }
        latents = await denoise(latents, timesteps, it, fi.numIters);
      }
    }

    const outputType = o.outputType ?? 'frames';
    if (outputType === 'latent') return { frames: latents };

    // decode_latents
    throwIfAborted(signal);
    const z = framesToBatch(scale(latents, 1 / this.scalingFactor));
    const decoded = await this.#decodeLatents(z, signal);
    const video = decodedToVideo(decoded, batch);
    if (numel(video.shape) !== video.data.length) throw new PiaError('E_BACKEND', 'decoder returned an unexpected shape');
    return { frames: outputType === 'tensor' ? video : framesFromTensor(video) };
  }

  // A decode that runs out of memory is retried one frame at a time: the VAE works per image, so
  // slicing gives the same frames, and a long job is not lost in its last step. diffusers would
  // raise instead; the retry is all it takes to finish on a GPU where the 16-frame batch does not fit.
  async #decodeLatents(z: Tensor, signal: AbortSignal | undefined): Promise<Tensor> {
    try {
      return await this.vae.decode(z, { signal });
    } catch (e) {
      if (!(e instanceof PiaError) || e.code !== 'E_OUT_OF_MEMORY' || this.vae.useSlicing || z.shape[0] <= 1) throw e;
      return this.vae.decode(z, { signal, slicing: true });
    }
  }
}
