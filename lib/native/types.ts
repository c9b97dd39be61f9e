// The shape of what the addon exports (native/addon/*.cpp). Internal: users go through lib/.

export interface NativeSafetensorsFile {
  names(): string[];
  metadata(): Record<string, string>;
  info(name: string): { dtype: string; shape: number[]; byteLength: number };
  read(name: string): ArrayBuffer;
  close(): void;
}

/** A value of a checkpoint's pickle as the addon hands it over (lib/io/torch_checkpoint.ts unwraps it). */
export type NativePickleValue =
  | null | boolean | number | bigint | string | Uint8Array
  | { t: 'list' | 'tuple'; items: NativePickleValue[] }
  | { t: 'dict'; keys: NativePickleValue[]; values: NativePickleValue[] }
  | { t: 'tensor'; index: number }
  | { t: 'storage'; key: string }
  | { t: 'global'; name: string };

export interface NativeTorchCheckpoint {
  root(): NativePickleValue;
  tensorInfo(index: number): {
    dtype: string; shape: number[]; strides: number[]; offset: number; storageKey: string; requiresGrad: boolean;
  };
  /** Row-major bytes of the tensor (a copy). */
  readTensor(index: number): ArrayBuffer;
  close(): void;
}

export interface CudaDeviceInfo {
  index: number;
  name: string;
  computeCapability: string;
  totalMemory: number;
  freeMemory: number;
  multiprocessors: number;
  driverVersion: number;
  runtimeVersion: number;
}

/** An optional NVIDIA library the CUDA backend looks for at run time (native/cuda/library_search.h). */
export interface OptionalLibraryInfo {
  found: boolean;
  path?: string;
  /** Opened by the CUDA backend and used. */
  inUse: boolean;
  version?: string;
  /** Why it is not in use, or what it is used for. */
  note?: string;
}

export interface BackendsInfo {
  cpu: { threads: number; features: string[] };
  cuda: {
    available: boolean; reason?: string; library?: string; devices?: CudaDeviceInfo[];
    libraries?: { cublasLt: OptionalLibraryInfo; cudnn: OptionalLibraryInfo };
  };
}

/** Where a network is built (lib/loaders/device_options.ts resolves it; the addon never sees 'auto'). */
export interface NativePlacement {
  device: string;
  dtype: 'float32' | 'float16' | 'bfloat16';
}

/** A loaded network (a type-tagged External); only the addon's own functions accept it. */
export type NativeModelHandle = object & { readonly __nativeModel?: never };

export interface NativeTensor {
  data: Float32Array;
  shape: number[];
}

/**
 * A weight file for the load functions: a path (every tensor under its own name) or a path with a
 * key map, JSON `{"keys": {diffusersKey: fileKey}, "squeeze": [diffusersKey]}` (lib/loaders/key_map.ts).
 */
export type NativeWeightSource = string | { path: string; keyMap: string };

/** A Linear / Conv2d module a LoRA may target (native/nn/lora.h). */
export interface NativeLoraTarget {
  name: string;
  kind: 'linear' | 'conv';
  inFeatures: number;
  outFeatures: number;
  kernel: number;
  /** Whether the module sees the per-call LoRA scale (diffusers' cross_attention_kwargs['scale'] path). */
  scaled: boolean;
}

/** One adapter's matrices for one module: a branch `factor · up(down(x))`, or merged into the weight when `fused`. */
export interface NativeLoraContribution {
  module: string;
  down: NativeTensor;
  up: NativeTensor;
  factor: number;
  fused: boolean;
}

export interface NativeCLIPTextModel {
  load(configJson: string, weightPaths: NativeWeightSource[], placement?: NativePlacement): Promise<NativeModelHandle>;
  /** Weights to the GPU (true) or host memory (false): model CPU offload. */
  setResident(handle: NativeModelHandle, onDevice: boolean): Promise<void>;
  /** clipSkip -1: none. */
  forward(
    handle: NativeModelHandle, ids: Int32Array, batch: number, seqLen: number, clipSkip: number, outputHiddenStates: boolean,
    loraScale?: number,
  ): Promise<{ lastHiddenState: NativeTensor; poolerOutput: NativeTensor; hiddenStates?: NativeTensor[] }>;
  dispose(handle: NativeModelHandle): void;
  loraTargets(handle: NativeModelHandle): NativeLoraTarget[];
  /** Replaces the model's LoRA contributions (the handle then points at a copy sharing the weights). */
  setLora(handle: NativeModelHandle, contributions: NativeLoraContribution[]): Promise<void>;
  /** Appends token embedding rows [n, hidden] (textual inversion). */
  addTokens(handle: NativeModelHandle, rows: NativeTensor): Promise<void>;
  tokenEmbeddingRows(handle: NativeModelHandle, ids: Int32Array): NativeTensor;
}

/** A flag a running native call polls; `cancel(token)` makes it stop with code E_ABORTED. */
export type NativeCancelToken = object & { readonly __nativeCancel?: never };

export interface NativeAutoencoderKL {
  load(configJson: string, weightPaths: NativeWeightSource[], placement?: NativePlacement): Promise<NativeModelHandle>;
  /** Weights to the GPU (true) or host memory (false): model CPU offload. */
  setResident(handle: NativeModelHandle, onDevice: boolean): Promise<void>;
  encode(handle: NativeModelHandle, x: NativeTensor, slicing: boolean, tiling: boolean, cancel?: NativeCancelToken):
    Promise<{ mean: NativeTensor; logvar: NativeTensor; std: NativeTensor }>;
  decode(handle: NativeModelHandle, z: NativeTensor, slicing: boolean, tiling: boolean, cancel?: NativeCancelToken):
    Promise<NativeTensor>;
  dispose(handle: NativeModelHandle): void;
  cancelToken(): NativeCancelToken;
  cancel(token: NativeCancelToken): void;
}

export interface NativeFreeU {
  s1: number;
  s2: number;
  b1: number;
  b2: number;
}

export interface NativeUNetMotionModel {
  load(unetConfigJson: string, unetWeightPaths: NativeWeightSource[], adapterConfigJson: string, adapterWeightPaths: NativeWeightSource[],
    placement?: NativePlacement): Promise<NativeModelHandle>;
  setResident(handle: NativeModelHandle, onDevice: boolean): Promise<void>;
  /** The UNetMotionModel config from_unet2d derived, as JSON. */
  config(handle: NativeModelHandle): string;
  forward(
    handle: NativeModelHandle, sample: NativeTensor, timestep: number, encoderHiddenStates: NativeTensor, freeU: NativeFreeU | null,
    cancel?: NativeCancelToken, loraScale?: number, ip?: NativeIpCall | null,
  ): Promise<NativeTensor>;
  /** The cross-attention layers an IP-Adapter attaches to, in load order. */
  ipAttentionSites(handle: NativeModelHandle): NativeIpAttentionSite[];
  dispose(handle: NativeModelHandle): void;
  cancelToken(): NativeCancelToken;
  cancel(token: NativeCancelToken): void;
  loraTargets(handle: NativeModelHandle): NativeLoraTarget[];
  setLora(handle: NativeModelHandle, contributions: NativeLoraContribution[]): Promise<void>;
}

export interface NativeCLIPVisionModel {
  load(configJson: string, weightPaths: NativeWeightSource[], placement?: NativePlacement): Promise<NativeModelHandle>;
  /** Weights to the GPU (true) or host memory (false): model CPU offload. */
  setResident(handle: NativeModelHandle, onDevice: boolean): Promise<void>;
  forward(handle: NativeModelHandle, pixelValues: NativeTensor, outputHiddenStates: boolean):
    Promise<{ imageEmbeds: NativeTensor; lastHiddenState: NativeTensor; hiddenStates?: NativeTensor[] }>;
  dispose(handle: NativeModelHandle): void;
}

/** A UNet cross-attention layer an IP-Adapter attaches to (native/nn/ip_adapter.h). */
export interface NativeIpAttentionSite {
  name: string;
  hidden_size: number;
  cross_attention_dim: number;
}

export interface NativeIPAdapter {
  /** tensors: diffusers-named `image_proj.*` and original `ip_adapter.<id>.to_{k,v}_ip.weight` (float32). */
  load(kind: 'base' | 'plus', tensors: Record<string, NativeTensor>, sitesJson: string, crossAttentionDim: number,
    encoderPositions: number, placement?: NativePlacement): Promise<NativeModelHandle>;
  /** The image tokens [B, T, cross_attention_dim] of the image embeds (encoder_hid_proj). */
  project(handle: NativeModelHandle, imageEmbeds: NativeTensor): Promise<NativeTensor>;
  dispose(handle: NativeModelHandle): void;
}

/** unetMotionModel.forward's IP-Adapter argument. */
export interface NativeIpCall {
  adapter: NativeModelHandle;
  imageEmbeds: NativeTensor;
  scale: number;
}

export interface NativeAddon {
  abiVersion: number;
  backends(): BackendsInfo;
  setNumThreads(n: number): number;
  cudaSelfTest(device?: number): Promise<boolean>;
  SafetensorsFile: new (path: string) => NativeSafetensorsFile;
  TorchCheckpoint: new (path: string) => NativeTorchCheckpoint;
  unetMotionModel: NativeUNetMotionModel;
  clipTextModel: NativeCLIPTextModel;
  autoencoderKL: NativeAutoencoderKL;
  clipVisionModel: NativeCLIPVisionModel;
  ipAdapter: NativeIPAdapter;
}
