// IP-Adapter weights (diffusers v0.26.3 loaders/ip_adapter.py IPAdapterMixin.load_ip_adapter and
// loaders/unet.py _load_ip_adapter_weights): the original h94 file (.safetensors with flat
// `image_proj.*` / `ip_adapter.*` keys, or a torch .bin holding {'image_proj': {...}, 'ip_adapter': {...}}),
// its image projection keys converted as _convert_ip_adapter_image_proj_to_diffusers converts them, and
// the native IPAdapter built against the UNet's cross-attention layers.
import { join } from 'node:path';
import { PiaError, fromNativeError, invalidArgument, throwIfAborted } from '../errors.js';
import type { RawTensor } from '../io/safetensors.js';
import { readStateDict } from '../io/state_dict.js';
import { readTorchCheckpoint } from '../io/torch_checkpoint.js';
import { addon } from '../native/addon.js';
import type { NativeModelHandle, NativeTensor } from '../native/types.js';
import type { Tensor } from '../tensor.js';
import { isFile, resolveModel } from './hub.js';
import type { ResolvedPlacement } from './device_options.js';

export type IpAdapterKind = 'base' | 'plus';

export interface IpAdapterStateDict {
  /** `image_proj` (original names, prefix stripped) and `ip_adapter` (`<id>.to_k_ip.weight`, ...). */
  imageProj: Map<string, RawTensor>;
  ipAdapter: Map<string, RawTensor>;
}

function tensorDict(v: unknown): v is Record<string, RawTensor> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Map) && !('isTorchTensor' in v);
}

/**
 * The two sub-dicts of an IP-Adapter file. `.safetensors`: only keys starting with `image_proj.` /
 * `ip_adapter.` (prefix stripped), as load_ip_adapter reads them. Torch files: the top-level dict must have
 * exactly the keys ['image_proj', 'ip_adapter'], in that order (diffusers compares the key list).
 */
export function readIpAdapterStateDict(path: string): IpAdapterStateDict {
  const sd = readStateDict(path);
  const out: IpAdapterStateDict = { imageProj: new Map(), ipAdapter: new Map() };
  try {
    if (sd.format === 'safetensors') {
      for (const name of sd.names()) {
        if (name.startsWith('image_proj.')) out.imageProj.set(name.slice('image_proj.'.length), sd.get(name));
        else if (name.startsWith('ip_adapter.')) out.ipAdapter.set(name.slice('ip_adapter.'.length), sd.get(name));
      }
    } else {
      const ckpt = readTorchCheckpoint(path);
      try {
        const root = ckpt.root;
        const keys = tensorDict(root) ? Object.keys(root) : [];
        if (keys.length !== 2 || keys[0] !== 'image_proj' || keys[1] !== 'ip_adapter') {
          throw new PiaError('E_UNSUPPORTED', `${path}: an IP-Adapter checkpoint must hold the dicts ['image_proj', 'ip_adapter'] (in that order), found [${keys.map((k) => `'${k}'`).join(', ')}]`, { file: path });
        }
        for (const [sub, into] of [['image_proj', out.imageProj], ['ip_adapter', out.ipAdapter]] as const) {
          const d = (root as Record<string, unknown>)[sub];
          if (!tensorDict(d)) throw new PiaError('E_UNSUPPORTED', `${path}: '${sub}' is not a dict of tensors`, { file: path });
          for (const [k, t] of Object.entries(d)) {
            if (!(t && typeof t === 'object' && 'isTorchTensor' in t)) {
              throw new PiaError('E_UNSUPPORTED', `${path}: '${sub}.${k}' is not a tensor`, { file: path, key: `${sub}.${k}` });
            }
            into.set(k, t as RawTensor);
          }
        }
        // Read the tensors now: the checkpoint closes below.
        for (const m of [out.imageProj, out.ipAdapter]) for (const t of m.values()) void t.data;
      } finally {
        ckpt.close();
      }
    }
  } finally {
    sd.close();
  }
  if (out.imageProj.size === 0 || out.ipAdapter.size === 0) {
    throw new PiaError('E_WEIGHTS_MISMATCH', `${path}: no image_proj.* / ip_adapter.* tensors (not an IP-Adapter file)`, { file: path });
  }
  return out;
}

/** Which projection the file holds, as _convert_ip_adapter_image_proj_to_diffusers decides it. */
export function ipAdapterKind(imageProj: Map<string, unknown>, file?: string): IpAdapterKind {
  if (imageProj.has('proj.weight')) return 'base';
  if (imageProj.has('proj.3.weight')) {
    throw new PiaError('E_UNSUPPORTED', 'IP-Adapter Full Face (IPAdapterFullImageProjection) is not supported', { file });
  }
  if (imageProj.has('latents')) return 'plus';
  throw new PiaError('E_WEIGHTS_MISMATCH', 'IP-Adapter: image_proj has neither proj.weight nor latents', { file, key: 'image_proj' });
}

/** _convert_ip_adapter_image_proj_to_diffusers's renaming (to_kv is split into to_k | to_v by the caller). */
export function diffusersImageProjName(kind: IpAdapterKind, key: string): string {
  if (kind === 'base') return key.replace('proj', 'image_embeds');
  let n = key.replace('0.to', '2.to');
  n = n.replace('1.0.weight', '3.0.weight').replace('1.0.bias', '3.0.bias');
  n = n.replace('1.1.weight', '3.1.net.0.proj.weight').replace('1.3.weight', '3.1.net.2.weight');
  if (n.includes('norm1')) return n.replace('0.norm1', '0');
  if (n.includes('norm2')) return n.replace('0.norm2', '1');
  if (n.includes('to_out')) return n.replace('to_out', 'to_out.0');
  return n;
}

function f32(t: RawTensor): NativeTensor {
  return { data: t.toFloat32(), shape: [...t.shape] };
}

/** The native tensors: `image_proj.<diffusers name>` and `ip_adapter.<id>.to_{k,v}_ip.weight`, float32. */
export function convertIpAdapter(sd: IpAdapterStateDict, file?: string): { kind: IpAdapterKind; tensors: Record<string, NativeTensor> } {
  const kind = ipAdapterKind(sd.imageProj, file);
  const tensors: Record<string, NativeTensor> = {};
  for (const [key, t] of sd.imageProj) {
    const name = diffusersImageProjName(kind, key);
    if (kind === 'plus' && name.includes('to_kv')) {
      // value.chunk(2, dim=0): rows [0, n/2) are K, [n/2, n) V.
      const v = f32(t);
      const rows = v.shape[0], cols = v.data.length / Math.max(rows, 1);
      if (v.shape.length !== 2 || rows % 2 !== 0) {
        throw new PiaError('E_WEIGHTS_MISMATCH', `IP-Adapter: image_proj.${key} must be [2n, d], got [${v.shape}]`, { file, key: `image_proj.${key}` });
      }
      const half = rows / 2;
      tensors[`image_proj.${name.replace('to_kv', 'to_k')}`] = { data: v.data.slice(0, half * cols), shape: [half, cols] };
      tensors[`image_proj.${name.replace('to_kv', 'to_v')}`] = { data: v.data.slice(half * cols), shape: [half, cols] };
    } else {
      tensors[`image_proj.${name}`] = f32(t);
    }
  }
  for (const [key, t] of sd.ipAdapter) tensors[`ip_adapter.${key}`] = f32(t);
  return { kind, tensors };
}

/** `<pathOrRepo>/<subfolder>/<weightName>`: a local folder or a repo id in the Hugging Face cache. */
export function resolveIpAdapterFile(pathOrRepo: string, options: { subfolder?: string; weightName?: string; revision?: string }): string {
  if (typeof options.weightName !== 'string' || options.weightName.length === 0) {
    throw invalidArgument('weightName', "is required (e.g. 'ip-adapter_sd15.safetensors'), as load_ip_adapter's weight_name");
  }
  const dir = resolveModel(pathOrRepo, { subfolder: options.subfolder || undefined, revision: options.revision, what: 'IP-Adapter', option: 'pathOrRepo' });
  const file = join(dir, options.weightName);
  if (!isFile(file)) throw new PiaError('E_MODEL_NOT_FOUND', `IP-Adapter: no file ${file}`, { file });
  return file;
}

/** A loaded adapter: its native projection and per-layer to_k_ip / to_v_ip, for one UNet's layers. */
export class IPAdapter {
  readonly kind: IpAdapterKind;
  /** Image tokens per image (4 base, the Resampler's queries for plus). */
  readonly file: string | undefined;
  #handle: NativeModelHandle | undefined;

  private constructor(handle: NativeModelHandle, kind: IpAdapterKind, file?: string) {
    this.#handle = handle;
    this.kind = kind;
    this.file = file;
  }

  /**
   * Builds the adapter for a UNet's cross-attention layers (`sites`, UNetMotionModel.ipAttentionSites()).
   * `encoderPositions`: the image encoder's token count (1 + patches), the plus projection's input length.
   */
  static async load(
    sd: IpAdapterStateDict,
    unet: { ipAttentionSites(): unknown[]; config: { cross_attention_dim: number }; placement?: ResolvedPlacement },
    encoderPositions: number,
    options: { file?: string; signal?: AbortSignal } = {},
  ): Promise<IPAdapter> {
    throwIfAborted(options.signal);
    const { kind, tensors } = convertIpAdapter(sd, options.file);
    let handle: NativeModelHandle;
    try {
      handle = await addon().ipAdapter.load(kind, tensors, JSON.stringify(unet.ipAttentionSites()), unet.config.cross_attention_dim, encoderPositions,
        unet.placement);
    } catch (e) {
      const err = fromNativeError(e);
      if (options.file && err instanceof PiaError && !err.file) err.message = `${options.file}: ${err.message}`;
      throw err;
    }
    return new IPAdapter(handle, kind, options.file);
  }

  /** encoder_hid_proj: the image tokens [B, T, cross_attention_dim] of CFG image embeds. */
  async project(imageEmbeds: Tensor): Promise<Tensor> {
    try {
      return await addon().ipAdapter.project(this.handle, imageEmbeds);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  /** The native handle (unetMotionModel.forward takes it). */
  get handle(): NativeModelHandle {
    if (!this.#handle) throw new PiaError('E_INVALID_ARGUMENT', 'IPAdapter: it was unloaded');
    return this.#handle;
  }

  dispose(): void {
    if (this.#handle) addon().ipAdapter.dispose(this.#handle);
    this.#handle = undefined;
  }
}
