// LoRA files (kohya / A1111 and diffusers formats) onto our networks, the way diffusers v0.26.3 loads them
// without PEFT (loaders/lora.py: lora_state_dict, _convert_kohya_lora_to_diffusers, load_lora_into_unet,
// load_lora_into_text_encoder; models/lora.py for the math). The math runs natively (native/nn/lora.h):
// this file maps keys to module names, computes each module's alpha/rank, and keeps the adapters so that
// setAdapters / fuse / unfuse / unload / save can rebuild what the networks apply.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { PiaError, invalidArgument, assertFiniteNumber } from '../errors.js';
import { readSafetensors, saveSafetensors, type SaveableTensor } from '../io/safetensors.js';
import type { NativeLoraContribution, NativeLoraTarget } from '../native/types.js';
import { copyTensor, type Tensor } from '../tensor.js';

export type LoraNetwork = 'unet' | 'textEncoder';

/** One module's low-rank pair as read (float32, the file's shapes), with its alpha/rank factor. */
export interface LoraModuleWeights {
  module: string;
  down: Tensor;
  up: Tensor;
  rank: number;
  /** network_alpha / rank; 1 when the file has no alpha (diffusers format), as diffusers does. */
  alphaOverRank: number;
}

export interface LoraAdapter {
  name: string;
  unet: LoraModuleWeights[];
  textEncoder: LoraModuleWeights[];
}

/** What a network exposes to the loader (UNetMotionModel, CLIPTextModel). */
export interface LoraTargetNetwork {
  loraTargets(): NativeLoraTarget[];
  setLora(contributions: NativeLoraContribution[]): Promise<void>;
}

// diffusers' default file name (LORA_WEIGHT_NAME_SAFE).
export const LORA_WEIGHT_NAME = 'pytorch_lora_weights.safetensors';

interface RawPair {
  down?: Tensor;
  up?: Tensor;
  alpha?: number;
  keys: string[];
}

// LoRA variants diffusers v0.26.3 cannot load either (LyCORIS LoHa/LoKr, DoRA, full diffs).
const UNSUPPORTED_PARTS = ['hada_', 'lokr_', 'dora_scale', 'lora_mid', '.diff', '.diff_b', '.w_norm', '.b_norm'];

/**
 * The per-module pairs of a LoRA file, keyed by network and by the module name AS WRITTEN (kohya: the
 * underscored path; diffusers: the dotted path), before matching against a network.
 */
function readPairs(path: string): { unet: Map<string, RawPair>; textEncoder: Map<string, RawPair>; kohya: boolean } {
  const file = readSafetensors(path);
  try {
    const names = file.names();
    const unet = new Map<string, RawPair>();
    const textEncoder = new Map<string, RawPair>();
    const pair = (net: LoraNetwork, module: string, key: string) => {
      const m = net === 'unet' ? unet : textEncoder;
      let p = m.get(module);
      if (!p) m.set(module, (p = { keys: [] }));
      p.keys.push(key);
      return p;
    };
    const kohya = names.length > 0 && names.every((k) => k.startsWith('lora_unet_') || k.startsWith('lora_te_'));
    for (const key of names) {
      const bad = UNSUPPORTED_PARTS.find((part) => key.includes(part));
      if (bad) throw new PiaError('E_UNSUPPORTED', `LoRA ${path}: '${key}' is a LoRA variant (${bad}) that is not supported`, { key, file: path });
      let m: RegExpMatchArray | null;
      if (kohya) {
        // lora_unet_<path with . → _>.{lora_down.weight, lora_up.weight, alpha}
        m = key.match(/^lora_(unet|te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$/);
        if (!m) throw mismatch(path, [key], 'is not a kohya LoRA key (lora_unet_*/lora_te_* .lora_down.weight/.lora_up.weight/.alpha)');
        const p = pair(m[1] === 'unet' ? 'unet' : 'textEncoder', m[2], key);
        assign(p, m[3] === 'alpha' ? 'alpha' : m[3].startsWith('lora_down') ? 'down' : 'up', file, key, path);
        continue;
      }
      // diffusers: unet.<m>.lora.{down,up}.weight, text_encoder.<m>.lora_linear_layer.{down,up}.weight; also the
      // PEFT names (lora_A = down, lora_B = up) and a per-module `.alpha` when present.
      m = key.match(/^(unet|text_encoder)\.(.+?)\.(?:lora\.|lora_linear_layer\.)?(down|up|lora_A|lora_B)\.weight$/) ??
        key.match(/^(unet|text_encoder)\.(.+)\.(alpha)$/);
      if (!m) throw mismatch(path, [key], 'is not a LoRA key of the diffusers format (unet.<module>.lora.{down,up}.weight, text_encoder.<module>.lora_linear_layer.{down,up}.weight)');
      const what = m[3] === 'alpha' ? 'alpha' : m[3] === 'down' || m[3] === 'lora_A' ? 'down' : 'up';
      assign(pair(m[1] === 'unet' ? 'unet' : 'textEncoder', m[2], key), what, file, key, path);
    }
    for (const [net, map] of [['unet', unet], ['textEncoder', textEncoder]] as const) {
      for (const [module, p] of map) {
        if (!p.down || !p.up) {
          throw mismatch(path, p.keys, `(${net} module '${module}') lacks its ${p.down ? 'up' : 'down'} weight`);
        }
      }
    }
    return { unet, textEncoder, kohya };
  } finally {
    file.close();
  }
}

function assign(p: RawPair, what: 'down' | 'up' | 'alpha', file: ReturnType<typeof readSafetensors>, key: string, path: string): void {
  if (p[what] !== undefined) throw mismatch(path, [key], 'names a module twice');
  if (what === 'alpha') {
    const t = file.get(key);
    if (t.shape.length > 1 || t.data.length !== 1) throw mismatch(path, [key], `must be a scalar, got shape [${t.shape}]`);
    p.alpha = t.toFloat32()[0];
  } else {
    p[what] = copyTensor(file.get(key));
  }
}

function mismatch(path: string, keys: string[], why: string): PiaError {
  const shown = keys.slice(0, 5).map((k) => `'${k}'`).join(', ') + (keys.length > 5 ? ` and ${keys.length - 5} more` : '');
  return new PiaError('E_WEIGHTS_MISMATCH', `LoRA ${path}: ${shown} ${why}`, { key: keys[0], file: path });
}

/**
 * Matches a file's pairs to a network's real module names. kohya names are module paths with '.' → '_';
 * rather than undoing that with string replacements (diffusers' _convert_kohya_lora_to_diffusers), each is
 * looked up among the network's own names with the same substitution applied. Shapes are checked against
 * the module (Linear [r, in]/[out, r]; a 1×1 conv also as [r, in, 1, 1]/[out, r, 1, 1]).
 */
function matchPairs(path: string, pairs: Map<string, RawPair>, targets: NativeLoraTarget[], kohya: boolean, net: LoraNetwork): LoraModuleWeights[] {
  const byName = new Map<string, NativeLoraTarget>();
  for (const t of targets) {
    const key = kohya ? t.name.replaceAll('.', '_') : t.name;
    if (byName.has(key)) throw new PiaError('E_UNSUPPORTED', `LoRA ${path}: module names '${byName.get(key)!.name}' and '${t.name}' are ambiguous in kohya form`);
    byName.set(key, t);
  }
  const out: LoraModuleWeights[] = [];
  const unmatched: string[] = [];
  for (const [written, p] of pairs) {
    const t = byName.get(written);
    if (!t) {
      unmatched.push(...p.keys);
      continue;
    }
    const down = p.down!, up = p.up!;
    const r = down.shape[0];
    const conv = down.shape.length === 4;
    const k = t.kind === 'conv' ? t.kernel : 1;
    const wantDown = conv ? [r, t.inFeatures, k, k] : [r, t.inFeatures];
    const wantUp = conv ? [t.outFeatures, r, 1, 1] : [t.outFeatures, r];
    const okRank = (conv && t.kind === 'conv') || (!conv && (t.kind === 'linear' || k === 1));
    if (!okRank || down.shape.join() !== wantDown.join() || up.shape.join() !== wantUp.join()) {
      throw mismatch(path, p.keys, `(${net} module '${t.name}', ${t.kind} ${t.inFeatures}→${t.outFeatures}) have shapes down [${down.shape}] / up [${up.shape}], expected [${wantDown}] / [${wantUp}]`);
    }
    out.push({ module: t.name, down, up, rank: r, alphaOverRank: p.alpha === undefined ? 1 : p.alpha / r });
  }
  if (unmatched.length) throw mismatch(path, unmatched, `name no ${net === 'unet' ? 'UNet' : 'text encoder'} Linear or Conv2d module`);
  return out;
}

/** Resolves diffusers' (folder, weight_name) or a file path to the .safetensors file. */
export function resolveLoraFile(path: string, weightName?: string): string {
  if (typeof path !== 'string' || path.length === 0) throw invalidArgument('path', 'must be a non-empty string');
  if (!existsSync(path)) throw new PiaError('E_MODEL_NOT_FOUND', `LoRA: no file or folder at ${path}`, { file: path });
  if (statSync(path).isDirectory()) {
    const file = join(path, weightName ?? LORA_WEIGHT_NAME);
    if (!existsSync(file)) {
      throw new PiaError('E_MODEL_NOT_FOUND', `LoRA: ${file} does not exist${weightName ? '' : ' (pass weightName for another file of the folder)'}`, { file });
    }
    return file;
  }
  if (!path.endsWith('.safetensors')) {
    throw new PiaError('E_UNSUPPORTED', `LoRA: ${path}: only .safetensors LoRA files are supported`, { file: path });
  }
  return path;
}

/** Reads a LoRA file and matches it to the networks' modules (E_WEIGHTS_MISMATCH naming keys that match nothing). */
export function readLoraAdapter(file: string, name: string, unet: LoraTargetNetwork, textEncoder: LoraTargetNetwork | undefined): LoraAdapter {
  const pairs = readPairs(file);
  if (pairs.unet.size === 0 && pairs.textEncoder.size === 0) throw new PiaError('E_WEIGHTS_MISMATCH', `LoRA ${file}: no LoRA weights found`, { file });
  if (pairs.textEncoder.size && !textEncoder) throw new PiaError('E_UNSUPPORTED', `LoRA ${file}: has text-encoder weights but the pipeline has no native text encoder`);
  return {
    name,
    unet: matchPairs(file, pairs.unet, unet.loraTargets(), pairs.kohya, 'unet'),
    textEncoder: textEncoder ? matchPairs(file, pairs.textEncoder, textEncoder.loraTargets(), pairs.kohya, 'textEncoder') : [],
  };
}

/**
 * diffusers' save_lora_weights layout (v0.26.3): `unet.<m>.lora.{down,up}.weight` and
 * `text_encoder.<m>.lora_linear_layer.{down,up}.weight`. The format has no alphas (diffusers drops
 * network_alpha here, so a kohya LoRA it saves reloads at alpha/rank 1); we fold alpha/rank into up,
 * as the diffusers-format fixture is, so the saved file reproduces the loaded adapter.
 */
export function saveLoraAdapter(path: string, adapter: LoraAdapter): string {
  const file = path.endsWith('.safetensors') ? path : join(path, LORA_WEIGHT_NAME);
  const tensors: Record<string, SaveableTensor> = {};
  const put = (prefix: string, inner: string, m: LoraModuleWeights) => {
    const up = m.alphaOverRank === 1 ? m.up.data : m.up.data.map((v) => v * m.alphaOverRank);
    tensors[`${prefix}.${m.module}.${inner}.down.weight`] = { data: m.down.data, shape: m.down.shape };
    tensors[`${prefix}.${m.module}.${inner}.up.weight`] = { data: up, shape: m.up.shape };
  };
  for (const m of adapter.unet) put('unet', 'lora', m);
  for (const m of adapter.textEncoder) put('text_encoder', 'lora_linear_layer', m);
  saveSafetensors(file, tensors, { format: 'pt' });
  return file;
}

interface ActiveAdapter {
  name: string;
  weight: number;
}

/**
 * The LoRA state of a pipeline: loaded adapters, the active set with their weights (setAdapters), and what
 * fuse_lora merged. Every change is pushed to both networks as a full list of contributions.
 */
export class LoraAdapters {
  readonly #adapters = new Map<string, LoraAdapter>();
  #active: ActiveAdapter[] = [];
  // fuse_lora: the adapters merged into the weights and the scale; `permanent` after unload (diffusers keeps
  // fused weights when the LoRA layers are removed).
  #fused: { adapters: { adapter: LoraAdapter; weight: number }[]; scale: number; permanent: boolean } | null = null;

  constructor(private readonly unet: LoraTargetNetwork, private readonly textEncoder: LoraTargetNetwork | undefined) {}

  get names(): string[] {
    return [...this.#adapters.keys()];
  }

  get active(): { name: string; weight: number }[] {
    return this.#active.map((a) => ({ ...a }));
  }

  get fused(): boolean {
    return this.#fused !== null;
  }

  async load(path: string, options: { adapterName?: string; scale?: number; weightName?: string } = {}): Promise<string> {
    const name = options.adapterName ?? `default_${this.#adapters.size}`;
    if (typeof name !== 'string' || name.length === 0) throw invalidArgument('adapterName', 'must be a non-empty string');
    if (this.#adapters.has(name)) throw invalidArgument('adapterName', `an adapter named '${name}' is already loaded`);
    const weight = options.scale ?? 1;
    assertFiniteNumber(weight, 'scale');
    const file = resolveLoraFile(path, options.weightName);
    const adapter = readLoraAdapter(file, name, this.unet, this.textEncoder);
    this.#adapters.set(name, adapter);
    this.#active.push({ name, weight });
    try {
      await this.#apply();
    } catch (e) {
      this.#adapters.delete(name);
      this.#active = this.#active.filter((a) => a.name !== name);
      await this.#apply();
      throw e;
    }
    return name;
  }

  async setAdapters(names: string | string[], weights?: number | number[]): Promise<void> {
    const list = typeof names === 'string' ? [names] : names;
    if (!Array.isArray(list) || list.some((n) => typeof n !== 'string')) throw invalidArgument('adapterNames', 'must be a string or an array of strings');
    const w = weights === undefined ? list.map(() => 1) : typeof weights === 'number' ? list.map(() => weights) : weights;
    if (!Array.isArray(w) || w.length !== list.length || w.some((x) => typeof x !== 'number' || !Number.isFinite(x))) {
      throw invalidArgument('weights', `must be a number or ${list.length} finite numbers`);
    }
    for (const n of list) if (!this.#adapters.has(n)) throw invalidArgument('adapterNames', `no adapter named '${n}' is loaded (loaded: ${this.names.join(', ') || 'none'})`);
    if (new Set(list).size !== list.length) throw invalidArgument('adapterNames', 'names an adapter twice');
    this.#active = list.map((name, i) => ({ name, weight: w[i] }));
    await this.#apply();
  }

  /** fuse_lora: W += loraScale · weight · alpha/rank · up @ down for the active adapters (a no-op when already fused). */
  async fuse(loraScale = 1): Promise<void> {
    assertFiniteNumber(loraScale, 'loraScale');
    if (this.#fused && !this.#fused.permanent) return;
    if (this.#fused?.permanent) throw new PiaError('E_UNSUPPORTED', 'fuseLora: an unloaded LoRA is already fused into the weights');
    this.#fused = { adapters: this.#active.map((a) => ({ adapter: this.#adapters.get(a.name)!, weight: a.weight })), scale: loraScale, permanent: false };
    await this.#apply();
  }

  /** unfuse_lora: the original weights again, the adapters as branches (a no-op when nothing is fused). */
  async unfuse(): Promise<void> {
    if (!this.#fused || this.#fused.permanent) return;
    this.#fused = null;
    await this.#apply();
  }

  /** unload_lora_weights: every adapter removed; weights fused before stay fused, as in diffusers. */
  async unload(): Promise<void> {
    this.#adapters.clear();
    this.#active = [];
    if (this.#fused) this.#fused.permanent = true;
    await this.#apply();
  }

  save(path: string, adapterName?: string): string {
    if (typeof path !== 'string' || path.length === 0) throw invalidArgument('path', 'must be a non-empty string');
    let adapter: LoraAdapter | undefined;
    if (adapterName !== undefined) adapter = this.#adapters.get(adapterName);
    else if (this.#adapters.size === 1) adapter = [...this.#adapters.values()][0];
    if (!adapter) {
      throw invalidArgument('adapterName', this.#adapters.size === 0 ? 'no LoRA is loaded' : `name one of the loaded adapters: ${this.names.join(', ')}`);
    }
    return saveLoraAdapter(path, adapter);
  }

  contributions(net: LoraNetwork): NativeLoraContribution[] {
    const out: NativeLoraContribution[] = [];
    const fusedNames = new Set<string>();
    if (this.#fused) {
      for (const { adapter, weight } of this.#fused.adapters) {
        if (!this.#fused.permanent) fusedNames.add(adapter.name);
        for (const m of adapter[net]) {
          out.push({ module: m.module, down: m.down, up: m.up, factor: this.#fused.scale * weight * m.alphaOverRank, fused: true });
        }
      }
    }
    for (const a of this.#active) {
      if (fusedNames.has(a.name)) continue;
      for (const m of this.#adapters.get(a.name)![net]) {
        out.push({ module: m.module, down: m.down, up: m.up, factor: a.weight * m.alphaOverRank, fused: false });
      }
    }
    return out;
  }

  async #apply(): Promise<void> {
    await this.unet.setLora(this.contributions('unet'));
    if (this.textEncoder) await this.textEncoder.setLora(this.contributions('textEncoder'));
  }
}
